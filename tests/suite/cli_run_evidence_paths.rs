//! csc's own evidence writes (receipt, `--output-dir`, approval state,
//! signing key) against a hostile command: paths inside a write scope are
//! refused before anything runs, writes go through directories opened
//! before the run and never follow the command's symlinks, and artifacts
//! are bounded and never follow links.

use crate::common;
use crate::support;

use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::{NOBODY, Who, sandbox_test};

/// `csc run` with the receipt at `receipt` (any path) as `who`.
fn run_as(ws: &Ws, who: Who, contract: &Path, receipt: &Path, extra: &[&str]) -> Run {
    let mut cmd = if who == Who::Root {
        Command::new(CSC)
    } else {
        support::command(who)
    };
    cmd.arg("run")
        .arg(contract)
        .arg(ws.path("policy.yaml"))
        .arg("--receipt-out")
        .arg(receipt)
        .arg("--quiet")
        .arg("--state-dir")
        .arg(ws.path("state"))
        .args(extra)
        .current_dir(&ws.root);
    Run::new(cmd.output().unwrap(), receipt)
}

fn run_at(ws: &Ws, contract: &Path, receipt: &Path, extra: &[&str]) -> Run {
    run_as(ws, Who::Root, contract, receipt, extra)
}

fn writer(ws: &Ws, id: &str, script: &str, scopes: &[String]) -> serde_json::Value {
    let mut c = ws.cmd(id, &["sh", "-c", script]);
    c["write_paths"] = json!(scopes);
    c["proposed_effect_type"] = json!("transform_local");
    c
}

fn error_of(r: &Run) -> String {
    r.receipt()["error"].as_str().unwrap().to_owned()
}

#[test]
fn output_and_receipt_dirs_swapped_for_symlinks_during_the_run_are_not_followed() {
    let ws = ws();
    std::fs::create_dir(ws.path("victim")).unwrap();
    std::fs::write(ws.path("victim/c.stdout"), b"precious").unwrap();
    std::fs::create_dir(ws.path("rdir")).unwrap();
    // Local mode confines nothing: the command moves csc's directories
    // away and plants symlinks to a victim directory in their place.
    let script = "mv out out.moved && ln -s victim out && mv rdir rdir.moved && ln -s victim rdir && echo hi";
    let c = ws.contract("c.json", vec![writer(&ws, "c", script, &[ws.s("work")])]);
    let out = ws.s("out");
    let r = run_at(
        &ws,
        &c,
        &ws.path("rdir/receipt.json"),
        &["--output-dir", &out],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read(ws.path("victim/c.stdout")).unwrap(),
        b"precious"
    );
    assert_eq!(std::fs::read_dir(ws.path("victim")).unwrap().count(), 1);
    assert_eq!(
        std::fs::read(ws.path("out.moved/c.stdout")).unwrap(),
        b"hi\n"
    );
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("rdir.moved/receipt.json")).unwrap())
            .unwrap();
    assert_eq!(receipt["status"], "success");
}

#[test]
fn receipt_inside_a_write_scope_is_refused_before_anything_runs() {
    let ws = ws();
    std::fs::create_dir(ws.path("evidence")).unwrap();
    let c = ws.contract(
        "c.json",
        vec![writer(
            &ws,
            "w",
            "touch marker",
            &[format!("{}/**", ws.s("evidence"))],
        )],
    );
    let r = run_at(&ws, &c, &ws.path("evidence/receipt.json"), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.status(), "blocked");
    let e = error_of(&r);
    assert!(
        e.contains("--receipt-out") && e.contains("lies inside"),
        "{e}"
    );
    assert!(!ws.path("marker").exists());
}

#[test]
fn a_write_scope_reaching_csc_paths_through_a_symlink_is_refused() {
    let ws = ws();
    std::fs::create_dir(ws.path("evidence")).unwrap();
    std::os::unix::fs::symlink(ws.path("evidence"), ws.path("link")).unwrap();
    let c = ws.contract(
        "c.json",
        vec![writer(&ws, "w", "touch marker", &[ws.s("link")])],
    );
    let out = ws.s("evidence/out");
    let r = run_at(&ws, &c, &ws.path("receipt.json"), &["--output-dir", &out]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(error_of(&r).contains("--output-dir"), "{}", error_of(&r));
    assert!(!ws.path("marker").exists());
}

#[test]
fn output_dir_equal_to_or_containing_a_write_scope_is_refused() {
    let ws = ws();
    let out = ws.s("out");
    for scope in [
        ws.s("out"),
        format!("{}/**", ws.s("out")),
        ws.s("out/sub/**"),
    ] {
        let c = ws.contract(
            "c.json",
            vec![writer(
                &ws,
                "w",
                "touch marker",
                std::slice::from_ref(&scope),
            )],
        );
        let r = run_at(&ws, &c, &ws.path("r/receipt.json"), &["--output-dir", &out]);
        assert_eq!(r.code, 1, "{scope}: {}", r.stderr);
        assert!(
            error_of(&r).contains("--output-dir"),
            "{scope}: {}",
            error_of(&r)
        );
        assert!(!ws.path("marker").exists(), "{scope}");
    }
}

#[test]
fn signing_key_inside_a_write_scope_is_refused() {
    let ws = ws();
    std::fs::create_dir(ws.path("keys")).unwrap();
    std::fs::write(ws.path("keys/k.seed"), [9u8; 32]).unwrap();
    let c = ws.contract(
        "c.json",
        vec![writer(&ws, "w", "touch marker", &[ws.s("keys")])],
    );
    let key = ws.s("keys/k.seed");
    let r = run_at(
        &ws,
        &c,
        &ws.path("receipt.json"),
        &["--sign", "--signing-key", &key, "--key-id", "k"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(error_of(&r).contains("--signing-key"), "{}", error_of(&r));
    assert!(!ws.path("marker").exists());
}

#[test]
fn a_receipt_path_that_cannot_be_written_stops_the_run_before_it_starts() {
    let ws = ws();
    std::fs::create_dir(ws.path("receipt.json")).unwrap();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["touch", "marker"])]);
    let r = run_at(&ws, &c, &ws.path("receipt.json"), &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("nothing was run"), "{}", r.stderr);
    assert!(!ws.path("marker").exists());
}

#[test]
fn stale_temp_files_of_an_interrupted_receipt_write_are_removed() {
    let ws = ws();
    let stale = ws.path(".receipt.json.csc-tmp.999999999.0123456789abcdef");
    std::fs::write(&stale, b"{ partial").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["true"])]);
    let r = run_at(&ws, &c, &ws.path("receipt.json"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!stale.exists());
}

#[test]
fn state_dir_inside_a_write_scope_is_refused_and_the_approval_is_not_consumed() {
    let ws = ws();
    for (scope, relation) in [
        (ws.s("state"), "lies inside"),
        (ws.s("state/approvals.sqlite3"), "contains"),
    ] {
        let c = ws.contract_with(
            "c.json",
            vec![writer(
                &ws,
                "w",
                "rm -rf state; touch marker",
                std::slice::from_ref(&scope),
            )],
            |c| c["approval_mode"] = json!("human_required"),
        );
        let sha = csc::protocol::load::load_contract(&c)
            .unwrap()
            .contract
            .sha256();
        let a = json!({
            "approval_version": "csc.approval.v0.1", "approval_id": "appr-state",
            "contract_sha256": sha, "approver": {"identity": "alice", "method": "cli"},
            "approved_at": csc::time::rfc3339_in(-60), "expires_at": csc::time::rfc3339_in(3600),
            "scope": "single_execution"
        });
        std::fs::write(ws.path("a.json"), serde_json::to_vec(&a).unwrap()).unwrap();
        let approval = ws.s("a.json");
        let r = run_at(
            &ws,
            &c,
            &ws.path("receipt.json"),
            &["--approval", &approval],
        );
        assert_eq!(r.code, 1, "{scope}: {}", r.stderr);
        let e = error_of(&r);
        assert!(e.contains("--state-dir") && e.contains(relation), "{e}");
        assert!(!ws.path("marker").exists(), "{scope}");
    }
}

#[test]
fn expected_outputs_outside_every_write_scope_are_refused_by_code() {
    let ws = ws();
    let c = ws.contract_with(
        "c.json",
        vec![writer(&ws, "w", "touch marker", &[ws.s("out")])],
        |c| c["expected_outputs"] = json!(["/etc/shadow"]),
    );
    let r = run_at(&ws, &c, &ws.path("receipt.json"), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.status(), "blocked");
    assert!(
        error_of(&r).contains("CSC_EXPECTED_OUTPUT_OUTSIDE_WRITE_SCOPE"),
        "{}",
        error_of(&r)
    );
    assert!(!ws.path("marker").exists());
}

#[test]
fn expected_outputs_are_never_hashed_through_symlinks() {
    let ws = ws();
    std::fs::write(ws.path("secret"), b"top secret").unwrap();
    std::fs::create_dir(ws.path("out")).unwrap();
    std::fs::create_dir(ws.path("elsewhere")).unwrap();
    std::fs::write(ws.path("elsewhere/f"), b"x").unwrap();
    let script = format!(
        "ln -s {} out/a && ln -s {} out/d",
        ws.s("secret"),
        ws.s("elsewhere")
    );
    let c = ws.contract_with(
        "c.json",
        vec![writer(&ws, "w", &script, &[format!("{}/**", ws.s("out"))])],
        |c| c["expected_outputs"] = json!([ws.s("out/a"), ws.s("out/d/f")]),
    );
    let r = run_at(&ws, &c, &ws.path("receipt.json"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = r.receipt();
    assert_eq!(rec["artifacts"], json!([]));
    let e = error_of(&r);
    assert!(
        e.contains("out/a") && e.contains("out/d/f") && e.contains("symlink"),
        "{e}"
    );
}

fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn artifact_hashing_is_bounded_in_bytes() {
    let ws = ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    sparse(&ws.path("out/big"), 4 << 30);
    std::fs::write(ws.path("out/small"), b"abc").unwrap();
    let big = ws.s("out/big");
    let outputs: Vec<String> = std::iter::repeat_n(big.clone(), 16)
        .chain([ws.s("out/small")])
        .collect();
    let c = ws.contract_with(
        "c.json",
        vec![writer(&ws, "w", "true", &[ws.s("out")])],
        |c| c["expected_outputs"] = json!(outputs),
    );
    // Default budget (1 GiB): the 4 GiB file is not read at all.
    let r = run_at(&ws, &c, &ws.path("receipt.json"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = r.receipt();
    assert_eq!(
        rec["artifacts"],
        json!([{"path": ws.s("out/small"), "sha256": csc::canonical::sha256_hex(b"abc")}])
    );
    assert!(
        error_of(&r).contains("--artifact-max-bytes"),
        "{}",
        error_of(&r)
    );
    // An explicit budget counts every byte hashed.
    let c = ws.contract_with(
        "c2.json",
        vec![writer(&ws, "w", "true", &[ws.s("out")])],
        |c| c["expected_outputs"] = json!([ws.s("out/small"), ws.s("out/small")]),
    );
    let r = run_at(
        &ws,
        &c,
        &ws.path("receipt.json"),
        &["--artifact-max-bytes", "5"],
    );
    assert_eq!(r.receipt()["artifacts"].as_array().unwrap().len(), 1);
}

#[test]
fn artifact_hashing_stops_at_the_contracts_deadline() {
    let ws = ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    sparse(&ws.path("out/huge"), 64 << 30);
    let mut cmd = writer(&ws, "w", "true", &[ws.s("out")]);
    cmd["timeout_sec"] = json!(1);
    let c = ws.contract_with("c.json", vec![cmd], |c| {
        c["expected_outputs"] = json!([ws.s("out/huge")])
    });
    let r = run_at(
        &ws,
        &c,
        &ws.path("receipt.json"),
        &["--artifact-max-bytes", &(1u64 << 40).to_string()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["artifacts"], json!([]));
    assert!(error_of(&r).contains("time budget"), "{}", error_of(&r));
}

#[test]
fn output_ids_follow_one_rule_for_run_and_verify() {
    let ws = ws();
    let out = ws.s("out");
    let c = ws.contract("bad.json", vec![ws.cmd("a\\b", &["touch", "marker"])]);
    let r = run_at(&ws, &c, &ws.path("receipt.json"), &["--output-dir", &out]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "blocked");
    assert!(!ws.path("marker").exists());

    std::fs::write(ws.path("k.seed"), [5u8; 32]).unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    std::fs::write(ws.path("k.pub"), sk.verifying_key().as_bytes()).unwrap();
    let c = ws.contract("ok.json", vec![ws.cmd("build_1-x.y", &["echo", "hi"])]);
    let key = ws.s("k.seed");
    let r = run_at(
        &ws,
        &c,
        &ws.path("receipt.json"),
        &[
            "--output-dir",
            &out,
            "--sign",
            "--signing-key",
            &key,
            "--key-id",
            "k",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = Command::new(CSC)
        .arg("verify-receipt")
        .arg(ws.path("receipt.json"))
        .args([
            "--public-key",
            &ws.s("k.pub"),
            "--key-id",
            "k",
            "--outputs",
            &out,
        ])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

sandbox_test!(hardened_command_cannot_reach_a_sibling_evidence_dir);
/// Hardened mode: the command's write scope is a sibling of csc's
/// evidence directory, so whatever it tries, the receipt and the saved
/// output land where the operator said.
fn hardened_command_cannot_reach_a_sibling_evidence_dir(who: Who) {
    let ws = ws();
    std::fs::create_dir(ws.path("work")).unwrap();
    std::fs::create_dir(ws.path("evidence")).unwrap();
    std::fs::write(ws.path("k.seed"), [7u8; 32]).unwrap();
    if who == Who::Nobody {
        for entry in walk(&ws.root) {
            std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        std::fs::set_permissions(&ws.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = format!(
        "rm -rf {e}/* ; mv {e} {w}/stolen ; ln -s {w} {e} ; echo hi",
        e = ws.s("evidence"),
        w = ws.s("work")
    );
    let mut cmd = writer(&ws, "c", &script, &[ws.s("work")]);
    cmd["read_paths"] = json!([]);
    let c = ws.contract("c.json", vec![cmd]);
    let key = ws.s("k.seed");
    let out = ws.s("evidence/out");
    let r = run_as(
        &ws,
        who,
        &c,
        &ws.path("evidence/receipt.json"),
        &[
            "--mode",
            "hardened",
            "--sign",
            "--signing-key",
            &key,
            "--key-id",
            "k",
            "--output-dir",
            &out,
        ],
    );
    assert!(r.receipt.is_some(), "{who:?}: {}", r.stderr);
    assert!(
        std::fs::symlink_metadata(ws.path("evidence"))
            .unwrap()
            .is_dir(),
        "{who:?}"
    );
    assert_eq!(r.status(), "success", "{who:?}");
    assert_eq!(
        std::fs::read(ws.path("evidence/out/c.stdout")).unwrap(),
        b"hi\n",
        "{who:?}"
    );
    // At most a copy of what the command could see ends up in its own
    // scope; csc's evidence never does.
    assert!(!ws.path("work/stolen/receipt.json").exists(), "{who:?}");
    assert!(!ws.path("work/receipt.json").exists(), "{who:?}");
    // The same refusal as in local mode when the scope covers the evidence.
    let mut cmd = writer(&ws, "c", "touch marker", &[ws.s("evidence")]);
    cmd["read_paths"] = json!([]);
    let c = ws.contract("c2.json", vec![cmd]);
    let r = run_as(
        &ws,
        who,
        &c,
        &ws.path("evidence/receipt.json"),
        &[
            "--mode",
            "hardened",
            "--sign",
            "--signing-key",
            &key,
            "--key-id",
            "k",
        ],
    );
    assert_eq!(r.code, 1, "{who:?}: {}", r.stderr);
    assert_eq!(r.status(), "blocked", "{who:?}");
    assert!(error_of(&r).contains("--receipt-out"), "{who:?}");
    assert!(!ws.path("marker").exists(), "{who:?}");
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![root.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if std::fs::symlink_metadata(&all[i]).unwrap().is_dir() {
            for e in std::fs::read_dir(&all[i]).unwrap() {
                all.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    all
}
