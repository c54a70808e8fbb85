//! The shipped example projects (`examples/projects/`) built and tested
//! through `csc run --mode hardened` with exactly the flags the CI guide
//! (docs/ci-integration.md) uses, then `csc verify-receipt` on the result.
//! Each project is copied to a scratch directory standing in for the CI
//! checkout at `/workspace`; the contract and policy are the shipped ones
//! with `/workspace` replaced by that directory.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{NOBODY, Who, sandbox_test};

const KEY_ID: &str = "ci-example";
const SEED: [u8; 32] = [7u8; 32];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            // Build output of a manual run in the source tree is not copied.
            if e.file_name() != "target" && e.file_name() != "build" {
                copy_tree(&e.path(), &dst);
            }
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

/// A scratch "/workspace" with `project` and the shipped policy, rewritten
/// to live there, plus a signing key outside it; owned by `who`.
struct Checkout {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ws: PathBuf,
}

fn checkout(project: &str, who: Who) -> Checkout {
    let dir = tempfile::Builder::new()
        .prefix("csc-example-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ws = root.join("workspace");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/projects");
    copy_tree(&shipped.join(project), &ws.join(project));
    let rewrite = |from: &Path, to: &Path| {
        let text = std::fs::read_to_string(from).unwrap();
        std::fs::write(to, text.replace("/workspace", ws.to_str().unwrap())).unwrap();
    };
    rewrite(&shipped.join("policy.yaml"), &root.join("policy.yaml"));
    rewrite(
        &shipped.join(project).join("csc-contract.json"),
        &ws.join(project).join("csc-contract.json"),
    );
    std::fs::create_dir(root.join("keys")).unwrap();
    std::fs::write(root.join("keys/key.seed"), SEED).unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&SEED);
    std::fs::write(root.join("key.pub"), sk.verifying_key().as_bytes()).unwrap();
    std::fs::create_dir(root.join("receipts")).unwrap();
    if who == Who::Nobody {
        chown_tree(&root, NOBODY);
    }
    Checkout {
        _dir: dir,
        root,
        ws,
    }
}

/// `csc run --mode hardened` of the project's contract, as the CI guide
/// does it (`extra` = toolchain flags); then verification of the receipt.
fn run_and_verify(co: &Checkout, project: &str, who: Who, extra: &[String]) -> Value {
    let contract = co.ws.join(project).join("csc-contract.json");
    let receipt = co.root.join("receipts/test.json");
    let streams = co.root.join("receipts/streams");
    let out = support::command(who)
        .arg("run")
        .arg(&contract)
        .arg(co.root.join("policy.yaml"))
        .args(["--mode", "hardened", "--sign", "--signing-key"])
        .arg(co.root.join("keys/key.seed"))
        .args(["--key-id", KEY_ID, "--quiet", "--receipt-out"])
        .arg(&receipt)
        .arg("--output-dir")
        .arg(&streams)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    assert!(
        out.status.success() && r["status"] == "success",
        "{project} as {who:?}: {stderr}\nreceipt: {r:#}\nstdout: {}",
        std::fs::read_to_string(streams.join("test.stdout")).unwrap_or_default()
    );
    assert_eq!(r["execution_mode"], "hardened");
    assert_eq!(
        r["error"], "",
        "{project}: a successful run records no error"
    );
    let v = Command::new(support::csc())
        .arg("verify-receipt")
        .arg(&receipt)
        .arg("--public-key")
        .arg(co.root.join("key.pub"))
        .args(["--key-id", KEY_ID, "--contract"])
        .arg(&contract)
        .arg("--policy")
        .arg(co.root.join("policy.yaml"))
        .arg("--outputs")
        .arg(&streams)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "verify {project}: {}",
        String::from_utf8_lossy(&v.stdout) + String::from_utf8_lossy(&v.stderr)
    );
    r
}

/// The policy's allowed write prefixes must exist: the CI guide creates
/// them with `mkdir -p` before the run.
fn mkdir_prefix(co: &Checkout, rel: &str, who: Who) {
    let p = co.ws.join(rel);
    std::fs::create_dir_all(&p).unwrap();
    if who == Who::Nobody {
        chown_tree(&p, NOBODY);
    }
}

sandbox_test!(python_package_unittest_in_hardened_mode);
fn python_package_unittest_in_hardened_mode(who: Who) {
    let co = checkout("python-pkg", who);
    run_and_verify(&co, "python-pkg", who, &[]);
    let out = std::fs::read_to_string(co.root.join("receipts/streams/test.stderr")).unwrap();
    assert!(out.contains("Ran 2 tests") && out.contains("OK"), "{out}");
}

sandbox_test!(make_project_builds_and_tests_in_hardened_mode);
fn make_project_builds_and_tests_in_hardened_mode(who: Who) {
    let co = checkout("make-c", who);
    mkdir_prefix(&co, "make-c/build", who);
    let r = run_and_verify(&co, "make-c", who, &[]);
    let arts = r["artifacts"].as_array().unwrap();
    assert!(
        arts.iter()
            .any(|a| a["path"].as_str().unwrap().ends_with("build/test_add")),
        "{r:#}"
    );
}

/// Where rustup put the toolchain for this process: `$CARGO_HOME`
/// (default `~/.cargo`) and `$RUSTUP_HOME` (default `~/.rustup`).
fn rustup_homes() -> Option<(PathBuf, PathBuf)> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let cargo = std::env::var_os("CARGO_HOME").map_or(home.join(".cargo"), PathBuf::from);
    let rustup = std::env::var_os("RUSTUP_HOME").map_or(home.join(".rustup"), PathBuf::from);
    (cargo.join("bin/cargo").exists() && rustup.is_dir()).then_some((cargo, rustup))
}

fn reachable_by_nobody(p: &Path) -> bool {
    p.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005))
}

sandbox_test!(rust_crate_cargo_test_with_rustup_toolchain_in_hardened_mode);
fn rust_crate_cargo_test_with_rustup_toolchain_in_hardened_mode(who: Who) {
    let Some((cargo_home, rustup_home)) = rustup_homes() else {
        support::require::skip_or_fail("no rustup toolchain under $CARGO_HOME/$RUSTUP_HOME");
        return;
    };
    if who == Who::Nobody
        && !(reachable_by_nobody(&cargo_home) && reachable_by_nobody(&rustup_home))
    {
        // A rustup toolchain in a 0700 home (root's) is not usable by
        // another uid, with or without csc (docs/ci-integration.md).
        eprintln!(
            "note: {} / {} not readable by uid {NOBODY}; the cargo run as nobody is not possible on this host",
            cargo_home.display(),
            rustup_home.display()
        );
        return;
    }
    let co = checkout("rust-crate", who);
    mkdir_prefix(&co, "rust-crate/target", who);
    // Exactly the toolchain flags of docs/ci-integration.md.
    let bin = format!("{}/bin", cargo_home.display());
    let mut extra: Vec<String> = vec![
        "--search-path".into(),
        format!("{bin}:/usr/bin:/bin"),
        "--ro-bind-system".into(),
        bin,
        "--ro-bind-system".into(),
        rustup_home.display().to_string(),
    ];
    for name in ["HOME", "CARGO_HOME", "RUSTUP_HOME"] {
        extra.extend(["--allow-env".into(), name.into()]);
    }
    run_and_verify(&co, "rust-crate", who, &extra);
    let out = std::fs::read_to_string(co.root.join("receipts/streams/test.stdout")).unwrap();
    assert!(
        out.contains("test tests::sums_only_even_numbers ... ok"),
        "{out}"
    );
}

/// The CI guide and both workflow files use the commands tested above.
#[test]
fn ci_guide_and_workflows_use_the_tested_commands() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in [
        "docs/ci-integration.md",
        "examples/ci/github-actions.yml",
        "examples/ci/gitlab-ci.yml",
    ] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for needle in [
            "csc run examples/projects/rust-crate/csc-contract.json examples/projects/policy.yaml",
            "csc run examples/projects/python-pkg/csc-contract.json examples/projects/policy.yaml",
            "--search-path \"$TC_BIN:/usr/bin:/bin\"",
            "--ro-bind-system \"$TC_BIN\" --ro-bind-system \"${RUSTUP_HOME:-$HOME/.rustup}\"",
            "--allow-env HOME --allow-env CARGO_HOME --allow-env RUSTUP_HOME",
            "mkdir -p /workspace/rust-crate/target /workspace/make-c/build",
            "--contract examples/projects/rust-crate/csc-contract.json",
            "--outputs receipts/python",
        ] {
            assert!(text.contains(needle), "{f} lacks {needle:?}");
        }
    }
}

/// `expected_outputs` are hashed as files: a build directory there makes
/// every successful run record an error (the shipped `ci-test-run.json`
/// once listed `/workspace/target/debug`).
#[test]
fn shipped_contracts_expect_files_not_build_directories() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples/contracts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for p in ["rust-crate", "python-pkg", "make-c"] {
        files.push(
            root.join("examples/projects")
                .join(p)
                .join("csc-contract.json"),
        );
    }
    for f in files {
        let c: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for out in c["expected_outputs"].as_array().into_iter().flatten() {
            let last = out
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .rsplit('/')
                .next();
            assert!(
                !matches!(
                    last,
                    Some("debug" | "release" | "target" | "build" | "dist")
                ),
                "{}: expected output {out} is a build directory",
                f.display()
            );
        }
    }
}
