//! Declared scopes that do not exist at launch: a write scope below an
//! existing allowed write prefix is created (never through a symlink);
//! anything else blocks the run with `CSC_SCOPE_MISSING`, a message naming
//! the path and what to do, the same one `csc explain` prints. Never a
//! silently missing (read-only) view.

use crate::common;
use crate::support;

use common::*;
use serde_json::json;
use std::process::Command;
use support::{Who, skip};

const MODES: [&str; 2] = ["local", "hardened"];

fn mode_args(ws: &Ws, mode: &str) -> Vec<String> {
    if mode == "local" {
        return Vec::new();
    }
    std::fs::write(ws.path("key.seed"), [9u8; 32]).unwrap();
    ["--mode", "hardened", "--sign", "--signing-key"]
        .iter()
        .map(|s| s.to_string())
        .chain([ws.s("key.seed"), "--key-id".into(), "k".into()])
        .collect()
}

fn skip_mode(mode: &str, test: &str) -> bool {
    mode == "hardened" && skip(Who::Root, test)
}

fn run(ws: &Ws, contract: &std::path::Path, mode: &str) -> Run {
    let args = mode_args(ws, mode);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ws.run(contract, &args)
}

fn explain(ws: &Ws, contract: &std::path::Path) -> String {
    let out = Command::new(CSC)
        .arg("explain")
        .arg(contract)
        .arg(ws.path("policy.yaml"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Policy whose only write prefix is `rel` (relative to the workspace).
fn policy_writing(ws: &Ws, rel: &str) {
    let text = std::fs::read_to_string(ws.path("policy.yaml")).unwrap();
    let text = text.replace(
        &format!("allowed_write_prefixes: [\"{}\"]", ws.root.display()),
        &format!("allowed_write_prefixes: [\"{}\"]", ws.s(rel)),
    );
    assert!(text.contains(&ws.s(rel)), "policy not rewritten");
    std::fs::write(ws.path("policy.yaml"), text).unwrap();
}

#[test]
fn missing_write_scope_below_an_existing_prefix_is_created() {
    for mode in MODES {
        if skip_mode(
            mode,
            "missing_write_scope_below_an_existing_prefix_is_created",
        ) {
            continue;
        }
        let ws = ws();
        std::fs::create_dir(ws.path("out")).unwrap();
        policy_writing(&ws, "out");
        let mut c = ws.cmd("w", &["sh", "-c", "echo built > out/new/deep/f"]);
        c["write_paths"] = json!([format!("{}/new/deep/**", ws.s("out"))]);
        let contract = ws.contract("c.json", vec![c]);
        let note = explain(&ws, &contract);
        assert!(
            note.contains(&format!("csc run creates {}", ws.s("out/new/deep"))),
            "{mode}: {note}"
        );
        let r = run(&ws, &contract, mode);
        assert_eq!(r.status(), "success", "{mode}: {}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(ws.path("out/new/deep/f")).unwrap(),
            "built\n"
        );
    }
}

#[test]
fn missing_write_scope_without_an_existing_prefix_blocks_like_explain_says() {
    for mode in MODES {
        if skip_mode(mode, "missing_write_scope_without_an_existing_prefix") {
            continue;
        }
        let ws = ws();
        policy_writing(&ws, "target");
        let mut c = ws.cmd("build", &["sh", "-c", "echo x > target/f"]);
        c["write_paths"] = json!([format!("{}/**", ws.s("target"))]);
        let contract = ws.contract("c.json", vec![c]);
        let r = run(&ws, &contract, mode);
        assert_eq!(r.status(), "blocked", "{mode}: {}", r.stderr);
        let err = r.receipt()["error"].as_str().unwrap().to_owned();
        assert!(err.contains("CSC_SCOPE_MISSING"), "{mode}: {err}");
        assert!(
            err.contains(&format!("mkdir -p {}", ws.s("target"))),
            "{mode}: {err}"
        );
        assert!(!ws.path("target").exists(), "{mode}: nothing is created");
        assert!(explain(&ws, &contract).contains(&err), "{mode}: {err}");
    }
}

#[test]
fn missing_read_scope_blocks_like_explain_says() {
    for mode in MODES {
        if skip_mode(mode, "missing_read_scope_blocks_like_explain_says") {
            continue;
        }
        let ws = ws();
        let mut c = ws.cmd("r", &["true"]);
        c["read_paths"] = json!([format!("{}/**", ws.s("vendor"))]);
        let contract = ws.contract("c.json", vec![c]);
        let r = run(&ws, &contract, mode);
        assert_eq!(r.status(), "blocked", "{mode}: {}", r.stderr);
        let err = r.receipt()["error"].as_str().unwrap().to_owned();
        assert!(
            err.contains("CSC_SCOPE_MISSING") && err.contains(&ws.s("vendor")),
            "{mode}: {err}"
        );
        assert!(explain(&ws, &contract).contains(&err), "{mode}: {err}");
        // Inside another existing scope of the command it is fine.
        std::fs::create_dir(ws.path("src")).unwrap();
        let mut c = ws.cmd("r", &["true"]);
        c["read_paths"] = json!([ws.s("src"), format!("{}/gen/**", ws.s("src"))]);
        let contract = ws.contract("c2.json", vec![c]);
        assert_eq!(run(&ws, &contract, mode).status(), "success", "{mode}");
    }
}

/// An earlier command plants `out/new -> ../secret`: the later command's
/// missing write scope `out/new/x` must not be created through the link.
#[test]
fn missing_write_scope_is_not_created_through_a_planted_link() {
    for mode in MODES {
        if skip_mode(
            mode,
            "missing_write_scope_is_not_created_through_a_planted_link",
        ) {
            continue;
        }
        let ws = ws();
        std::fs::create_dir(ws.path("out")).unwrap();
        std::fs::create_dir(ws.path("secret")).unwrap();
        policy_writing(&ws, "out");
        let mut plant = ws.cmd("plant", &["sh", "-c", "ln -s ../secret out/new"]);
        plant["write_paths"] = json!([ws.s("out")]);
        let mut use_it = ws.cmd("use", &["true"]);
        use_it["write_paths"] = json!([format!("{}/new/x/**", ws.s("out"))]);
        let contract = ws.contract("c.json", vec![plant, use_it]);
        let r = run(&ws, &contract, mode);
        assert_eq!(r.status(), "blocked", "{mode}: {}", r.stderr);
        assert!(
            !ws.path("secret/x").exists(),
            "{mode}: created through the link"
        );
    }
}
