//! `csc check` and `csc explain` make `csc run`'s pre-launch checks that
//! need no file system (environment names against `--allow-env`, command
//! ids against `--output-dir`, hardened egress settings, the operator
//! flags themselves), given the same flags, and say the same thing.

use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

fn verb(ws: &Ws, verb: &str, contract: &Path, extra: &[&str]) -> Output {
    Command::new(CSC)
        .arg(verb)
        .arg(contract)
        .arg(ws.path("policy.yaml"))
        .args(extra)
        .current_dir(&ws.root)
        .output()
        .unwrap()
}

fn check_json(ws: &Ws, contract: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let o = verb(ws, "check", contract, &args);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON ({e}): {o:?}"));
    (o.status.code().unwrap(), v)
}

fn explain_json(ws: &Ws, contract: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let o = verb(ws, "explain", contract, &args);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("explain --json is not JSON ({e}): {o:?}"));
    (o.status.code().unwrap(), v)
}

/// The decision's reason without its `[CSC_...]` tag.
fn untagged(reason: &Value) -> String {
    let r = reason.as_str().unwrap();
    let cut = r.rfind(" [CSC_").expect("tagged with an extension code");
    r[..cut].to_owned()
}

#[test]
fn a_sensitive_env_name_is_refused_by_check_explain_and_run_with_one_message() {
    let ws = ws();
    let mut cmd = ws.cmd("show", &["true"]);
    cmd["env_allow"] = json!(["LANG", "AWS_SECRET_ACCESS_KEY"]);
    let c = ws.contract("c.json", vec![cmd]);

    let run = ws.run(&c, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.status(), "blocked");
    let run_error = run.receipt()["error"].as_str().unwrap().to_owned();
    assert!(run_error.contains("AWS_SECRET_ACCESS_KEY"), "{run_error}");

    let (code, d) = check_json(&ws, &c, &[]);
    assert_eq!(code, 1, "{d}");
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["reason_codes"], json!(["SECRET_REF_NOT_ALLOWED"]));
    assert_eq!(untagged(&d["reasons"][0]), run_error);
    assert!(
        d["reasons"][0]
            .as_str()
            .unwrap()
            .ends_with("[CSC_ENV_NAME_REFUSED]")
    );

    let (code, e) = explain_json(&ws, &c, &[]);
    assert_eq!(code, 1);
    let row = e["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["extension_code"] == "CSC_ENV_NAME_REFUSED")
        .unwrap_or_else(|| panic!("no pre-launch row: {e}"));
    assert_eq!(row["result"], "FAIL");
    assert_eq!(row["stage"], "prelaunch");
    assert_eq!(row["value"], "AWS_SECRET_ACCESS_KEY");
    assert_eq!(untagged(&row["reason"]), run_error);

    // The operator's flag lifts it for all three alike.
    let (code, d) = check_json(&ws, &c, &["--allow-env", "AWS_SECRET_ACCESS_KEY"]);
    assert_eq!((code, d["decision"].as_str()), (0, Some("allow")), "{d}");
    let run = ws.run(&c, &["--allow-env", "AWS_SECRET_ACCESS_KEY"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Reference semantics: the v0.1 decision only.
    let (code, d) = check_json(&ws, &c, &["--reference-semantics"]);
    assert_eq!((code, d["decision"].as_str()), (0, Some("allow")), "{d}");
}

#[test]
fn a_loader_hook_is_refused_by_check_as_by_run_whatever_the_flags() {
    let ws = ws();
    let mut cmd = ws.cmd("show", &["true"]);
    cmd["env_allow"] = json!(["LD_PRELOAD"]);
    let c = ws.contract("c.json", vec![cmd]);
    let (code, d) = check_json(&ws, &c, &["--allow-env", "*"]);
    assert_eq!(code, 1, "{d}");
    let run = ws.run(&c, &["--allow-env", "*"]);
    assert_eq!(run.status(), "blocked");
    assert_eq!(untagged(&d["reasons"][0]), run.receipt()["error"]);
    // Naming it is an operator error, the same in both verbs.
    let run = ws.run(&c, &["--allow-env", "LD_PRELOAD"]);
    let o = verb(&ws, "check", &c, &["--allow-env", "LD_PRELOAD"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr), run.stderr);
}

#[test]
fn an_approval_cannot_lift_a_prelaunch_refusal_so_check_says_deny() {
    let ws = ws();
    let mut cmd = ws.cmd("show", &["true"]);
    cmd["env_allow"] = json!(["GITHUB_TOKEN"]);
    let c = ws.contract_with("c.json", vec![cmd], |c| {
        c["approval_mode"] = json!("human_required");
    });
    let (code, d) = check_json(&ws, &c, &[]);
    assert_eq!(code, 1, "{d}");
    assert_eq!(d["decision"], "deny");
    // Without the pre-launch checks it would need approval.
    let (code, d) = check_json(&ws, &c, &["--reference-semantics"]);
    assert_eq!((code, d["decision"].as_str()), (2, Some("needs_approval")));
}

#[test]
fn an_id_that_cannot_name_a_stream_file_is_refused_with_output_dir_only() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd(".hidden", &["true"])]);
    let out = ws.s("streams");
    let (code, d) = check_json(&ws, &c, &["--output-dir", &out]);
    assert_eq!(code, 1, "{d}");
    assert_eq!(d["reason_codes"], json!(["COMMAND_NOT_ALLOWED"]));
    let run = ws.run(&c, &["--output-dir", &out]);
    assert_eq!(run.status(), "blocked");
    assert_eq!(untagged(&d["reasons"][0]), run.receipt()["error"]);
    // `check --output-dir` only checks: nothing is created.
    let _ = std::fs::remove_dir_all(ws.path("streams"));
    let _ = check_json(&ws, &c, &["--output-dir", &out]);
    assert!(!ws.path("streams").exists());
    // Without --output-dir, neither refuses.
    let (code, _) = check_json(&ws, &c, &[]);
    assert_eq!(code, 0);
    assert_eq!(ws.run(&c, &[]).code, 0);
}

#[test]
fn hardened_allowlisted_network_without_egress_allow_is_refused_by_check_as_by_run() {
    let ws = ws();
    ws.write_policy("");
    let policy = std::fs::read_to_string(ws.path("policy.yaml"))
        .unwrap()
        .replace("network: deny", "network: allowlisted");
    std::fs::write(ws.path("policy.yaml"), policy).unwrap();
    std::fs::write(ws.path("key.seed"), [7u8; 32]).unwrap();
    let mut cmd = ws.cmd("fetch", &["true"]);
    cmd["network"] = json!("allowlisted");
    let c = ws.contract("c.json", vec![cmd]);
    let key = ws.s("key.seed");
    let flags = [
        "--mode",
        "hardened",
        "--sign",
        "--signing-key",
        &key,
        "--key-id",
        "k",
    ];
    let run = ws.run(&c, &flags);
    assert_eq!(run.status(), "blocked", "{}", run.stderr);
    let (code, d) = check_json(&ws, &c, &flags);
    assert_eq!(code, 1, "{d}");
    assert_eq!(d["reason_codes"], json!(["NETWORK_EXCEEDS_POLICY"]));
    assert!(d["reasons"][0].as_str().unwrap().contains("--egress-allow"));
    assert_eq!(untagged(&d["reasons"][0]), run.receipt()["error"]);
    // Local mode has no egress proxy to configure: no refusal.
    let (code, _) = check_json(&ws, &c, &[]);
    assert_eq!(code, 0);
}

#[test]
fn bad_operator_flags_are_the_same_error_in_check_explain_and_run() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["true"])]);
    for flags in [
        &["--stdout-cap", "999999999999"][..],
        &["--mode", "sideways"][..],
        &["--signing-key", "k.pem"][..],
    ] {
        let run = ws.run(&c, flags);
        assert_eq!(run.code, 1);
        let line = run.stderr.lines().next().unwrap().to_owned();
        assert!(line.starts_with("csc: error: "), "{line}");
        for v in ["check", "explain"] {
            let o = verb(&ws, v, &c, flags);
            assert_eq!(o.status.code(), Some(1), "{v} {flags:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(err.lines().next(), Some(line.as_str()), "{v} {flags:?}");
        }
    }
}

/// The CI guide's `csc check` lines pass exactly the `--allow-env` flags
/// its `csc run` lines need: without them check denies, as run would.
#[test]
fn the_ci_guides_check_commands_allow_with_the_run_flags_and_deny_without() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let contract = root.join("examples/projects/rust-crate/csc-contract.json");
    let policy = root.join("examples/projects/policy.yaml");
    let flags = [
        "--allow-env",
        "HOME",
        "--allow-env",
        "CARGO_HOME",
        "--allow-env",
        "RUSTUP_HOME",
    ];
    let check = |extra: &[&str]| {
        Command::new(CSC)
            .arg("check")
            .arg(&contract)
            .arg(&policy)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = check(&flags);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = check(&[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("--allow-env HOME"));
    for f in [
        "docs/ci-integration.md",
        "examples/ci/github-actions.yml",
        "examples/ci/gitlab-ci.yml",
    ] {
        let text = std::fs::read_to_string(root.join(f))
            .unwrap()
            .replace(" \\\n  ", " ");
        assert!(
            text.contains(&format!(
                "csc check examples/projects/rust-crate/csc-contract.json examples/projects/policy.yaml {}",
                flags.join(" ")
            )),
            "{f}"
        );
    }
}
