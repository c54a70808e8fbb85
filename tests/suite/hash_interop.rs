//! Contract and policy hashes pinned to the values the Python reference
//! (`csc_runner.utils.hash_contract`, `csc_runner.cli._hash_policy`)
//! computes for the same files. Inputs live in `tests/data/hash/` and the
//! shipped examples; each targets one canonicalization hazard.

use crate::common::shipped_hashes as shipped;

use std::path::{Path, PathBuf};

use csc::protocol::load;

use shipped::SHIPPED;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Contract,
    Policy,
}
use Kind::{Contract, Policy};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hash")
        .join(name)
}

fn hash(kind: Kind, path: &Path) -> String {
    match kind {
        Contract => load::load_contract(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .contract
            .sha256(),
        Policy => load::load_policy(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .sha256(),
    }
}

/// Hashes computed by the reference for `tests/data/hash/*`.
const TRICKY: &[(Kind, &str, &str)] = &[
    // Baseline.
    (
        Contract,
        "plain.contract.json",
        "ad36cb31e4874545f3325890e34b7e1b8a967f2bd418099fad75118ab055f86c",
    ),
    // `expected_outputs: []` hashes like an absent field (model default) ...
    (
        Contract,
        "expected_outputs_empty.contract.json",
        "ad36cb31e4874545f3325890e34b7e1b8a967f2bd418099fad75118ab055f86c",
    ),
    // ... but a non-empty one does not.
    (
        Contract,
        "expected_outputs_set.contract.json",
        "360ae1a43c326f35cffca87a2ffe78ccd4007966a9fa53cb0de85b6930d5bb45",
    ),
    // Non-ASCII kept as UTF-8: umlauts, astral plane, combining marks.
    (
        Contract,
        "non_ascii.contract.json",
        "3e817b62d8fc9e97d9806c879e899bdb1b07a61b7872f096b308ae31b5894dd6",
    ),
    // Every C0 control, DEL, U+2028/2029, quote, backslash, slash.
    (
        Contract,
        "control_chars.contract.json",
        "086c1127be493091fe7d99dff07779e2861fe6237fa1d15167fd0df9dfb32ecd",
    ),
    // Pipelines: `exec` absent is dropped, not hashed as null.
    (
        Contract,
        "pipeline.contract.json",
        "5e0f106bc59554361ba4e08deb5b137d26c6422121a033271051b871e738dd70",
    ),
    // `timeout_sec: 30.0` is the integer 30 after the model.
    (
        Contract,
        "integral_float_timeout.contract.json",
        "ad36cb31e4874545f3325890e34b7e1b8a967f2bd418099fad75118ab055f86c",
    ),
    // Backslashes in Windows/UNC paths.
    (
        Contract,
        "windows_paths.contract.json",
        "4c0ed5886086155a64516846a78254857ef5f77c55c200cc5cf2bc8754a713c6",
    ),
    // Non-ASCII name, escaped control char, `60.0` float kept as parsed.
    (
        Policy,
        "non_ascii_yaml.policy.yaml",
        "eede505a810a6674a5ab758f44c1dc65a720d35d98e070f67ddb9f58b2e572e8",
    ),
    // Policy hashes cover the mapping as parsed: defaults are not filled in ...
    (
        Policy,
        "yaml_defaults_absent.policy.yaml",
        "87772398826c5bcc37e1c882a7843691cce0f33a8704ee1d32c16c58fe3930ad",
    ),
    // ... so spelling a default out changes the hash.
    (
        Policy,
        "yaml_defaults_explicit.policy.yaml",
        "00b8ddb42b13abef4e711151eab6d984ba677fb7e3610f3ab41e0417b6c27cd9",
    ),
    // JSON `1e16` is a float: Python repr `1e+16`.
    (
        Policy,
        "float.policy.json",
        "dc488a87fa0e70d4dc533d84d9666eadd9fade3b085c0c29e4382675a4797c6a",
    ),
];

#[test]
fn tricky_inputs_hash_like_the_reference() {
    let mut wrong = Vec::new();
    for &(kind, file, want) in TRICKY {
        let got = hash(kind, &data(file));
        if got != want {
            wrong.push(format!("{file}: got {got}, reference {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn shipped_examples_hash_like_the_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for &(file, want) in SHIPPED {
        let kind = if file.starts_with("policies/") {
            Policy
        } else {
            Contract
        };
        assert_eq!(hash(kind, &root.join(file)), want, "{file}");
    }
}
