//! The pack × example decision fixtures must carry exactly the shipped
//! files' contents, so examples, packs and `conformance/decisions/packs.json`
//! cannot drift apart.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

use csc::protocol::load::{self, PolicyFormat};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &str, ext: &str) -> BTreeSet<String> {
    std::fs::read_dir(root().join(dir))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
        .filter(|p| p.ends_with(ext))
        .collect()
}

#[test]
fn pack_fixtures_match_the_shipped_files() {
    let text = std::fs::read(root().join("conformance/decisions/packs.json")).unwrap();
    let fixtures: Vec<Value> = serde_json::from_slice(&text).unwrap();
    let mut covered = BTreeSet::new();
    for fx in &fixtures {
        let id = fx["id"].as_str().unwrap();
        let contract_file = fx["sources"]["contract"].as_str().unwrap();
        let policy_file = fx["sources"]["policy"].as_str().unwrap();
        let contract = load::load_contract(&root().join(contract_file)).unwrap();
        assert_eq!(
            fx["contract"], contract.raw,
            "{id}: contract differs from {contract_file}"
        );
        let bytes = std::fs::read(root().join(policy_file)).unwrap();
        let policy = load::policy_from_bytes(&bytes, PolicyFormat::Yaml, policy_file).unwrap();
        assert_eq!(
            fx["policy"], policy.raw,
            "{id}: policy differs from {policy_file}"
        );
        covered.insert((contract_file.to_owned(), policy_file.to_owned()));
    }
    // Every example against every pack.
    for c in files("examples/contracts", ".json") {
        for p in files("policies", ".yaml") {
            assert!(
                covered.contains(&(c.clone(), p.clone())),
                "no fixture in packs.json for {c} x {p}"
            );
        }
    }
}

#[test]
fn every_shipped_file_is_valid() {
    for c in files("examples/contracts", ".json") {
        load::load_contract(&root().join(&c)).unwrap_or_else(|e| panic!("{e}"));
    }
    for p in files("policies", ".yaml") {
        load::load_policy(&root().join(&p)).unwrap_or_else(|e| panic!("{e}"));
    }
}
