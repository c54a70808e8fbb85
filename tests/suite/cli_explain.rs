//! `csc explain`: every failing check is listed, same verdict as `check`.

use std::process::Command;

fn csc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csc"))
}

fn write_bad_contract(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string("examples/contracts/list-repo.json").unwrap();
    let mut c: serde_json::Value = serde_json::from_str(&text).unwrap();
    c["risk_class"] = "high".into();
    c["commands"][0]["exec"]["argv"] = serde_json::json!(["git", "push", "origin"]);
    c["commands"][0]["write_paths"] = serde_json::json!(["/etc/x"]);
    c["commands"][0]["network"] = "full".into();
    let path = dir.join("bad.json");
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    path
}

#[test]
fn explain_lists_every_failure_while_check_reports_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let contract = write_bad_contract(dir.path());
    let out = csc()
        .args(["explain", "--json"])
        .arg(&contract)
        .arg("policies/readonly-dev.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failing: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["result"] != "pass")
        .map(|f| f["reason_code"].as_str().unwrap())
        .collect();
    assert_eq!(
        failing,
        [
            "RISK_CLASS_NOT_ALLOWED",
            "ARGV_PREFIX_DENIED",
            "NETWORK_EXCEEDS_POLICY",
            "WRITE_PATHS_NOT_EMPTY",
            "WRITE_SCOPE_DENIED"
        ]
    );
    assert_eq!(v["decision"]["reason_codes"][0], "RISK_CLASS_NOT_ALLOWED");

    let check = csc()
        .args(["check", "--json"])
        .arg(&contract)
        .arg("policies/readonly-dev.yaml")
        .output()
        .unwrap();
    let d: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(d["reason_codes"], v["decision"]["reason_codes"]);
    assert_eq!(check.status.code(), Some(1));
}

#[test]
fn explain_table_has_a_remedy_for_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let contract = write_bad_contract(dir.path());
    let out = csc()
        .arg("explain")
        .arg(&contract)
        .arg("policies/readonly-dev.yaml")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("add `high` to allowed_risk_classes"),
        "{text}"
    );
    assert!(text.contains("5 failing"), "{text}");
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = csc().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("explain"), "{shell} completion lacks verbs");
    }
    let man = csc().arg("man").output().unwrap();
    assert!(man.status.success());
    let text = String::from_utf8(man.stdout).unwrap();
    assert!(
        text.contains(".TH csc 1") && text.contains("csc\\-check"),
        "{}",
        &text[..200]
    );
}
