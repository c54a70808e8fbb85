//! `csc run` with approval artifacts: binding, expiry, durable single use.

use crate::common;
use crate::support;

use common::*;
use serde_json::json;
use std::path::PathBuf;

fn approval(ws: &Ws, name: &str, sha: &str, scope: &str, approved: &str, expires: &str) -> PathBuf {
    let a = json!({
        "approval_version": "csc.approval.v0.1", "approval_id": format!("appr-{name}"),
        "contract_sha256": sha, "approver": {"identity": "alice", "method": "cli"},
        "approved_at": approved, "expires_at": expires, "scope": scope
    });
    let p = ws.path(&format!("{name}.approval.json"));
    std::fs::write(&p, serde_json::to_vec(&a).unwrap()).unwrap();
    p
}

fn contract_sha(path: &std::path::Path) -> String {
    let loaded = csc::protocol::load::load_contract(path).unwrap();
    loaded.contract.sha256()
}

fn needs_approval(ws: &Ws, name: &str) -> PathBuf {
    ws.contract_with(name, vec![ws.cmd("t", &["touch", "marker"])], |c| {
        c["approval_mode"] = json!("human_required");
    })
}

fn now_plus(secs: i64) -> String {
    csc::time::rfc3339_in(secs)
}

/// A `single_execution` approval of contract `c`, valid from a minute ago
/// for an hour.
fn fresh_single_use(ws: &Ws, name: &str, c: &std::path::Path) -> PathBuf {
    approval(
        ws,
        name,
        &contract_sha(c),
        "single_execution",
        &now_plus(-60),
        &now_plus(3600),
    )
}

/// The run was blocked before anything started, with `needle` in the
/// receipt's error.
fn assert_blocked(ws: &Ws, r: &Run, needle: &str) {
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.status(), "blocked");
    let error = r.receipt()["error"].as_str().unwrap().to_owned();
    assert!(error.contains(needle), "{error}");
    assert!(!ws.path("marker").exists());
}

#[test]
fn single_execution_is_consumed_once_across_processes() {
    let ws = ws();
    let c = needs_approval(&ws, "c.json");
    let a = fresh_single_use(&ws, "one", &c);
    let a = a.to_str().unwrap();
    let r = ws.run(&c, &["--approval", a]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status(), "success");
    std::fs::remove_file(ws.path("marker")).unwrap();
    let again = ws.run(&c, &["--approval", a]);
    assert_blocked(&ws, &again, "already been consumed");
}

#[test]
fn approval_is_not_consumed_when_nothing_starts() {
    let ws = ws();
    let c = ws.contract_with(
        "c.json",
        vec![ws.cmd("nf", &["nonexistent-cmd-xyz"])],
        |c| {
            c["approval_mode"] = json!("human_required");
        },
    );
    let a = fresh_single_use(&ws, "nf", &c);
    let a = a.to_str().unwrap();
    for _ in 0..2 {
        let r = ws.run(&c, &["--approval", a]);
        assert_eq!(r.status(), "failed");
        assert_eq!(r.receipt()["exit_code"], 127);
    }
}

#[test]
fn concurrent_runs_cannot_share_a_single_execution_approval() {
    let ws = ws();
    let c = needs_approval(&ws, "c.json");
    let a = fresh_single_use(&ws, "race", &c);
    let children: Vec<_> = (0..6)
        .map(|i| {
            std::process::Command::new(CSC)
                .args([
                    "run",
                    c.to_str().unwrap(),
                    ws.s("policy.yaml").as_str(),
                    "--quiet",
                ])
                .args(["--receipt-out", ws.s(&format!("r{i}.json")).as_str()])
                .args(["--state-dir", ws.s("state").as_str()])
                .args(["--approval", a.to_str().unwrap()])
                .current_dir(&ws.root)
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|mut c| c.wait().unwrap().code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 1).count(), 5, "{codes:?}");
}

#[test]
fn time_window_approvals_are_reusable_until_expiry() {
    let ws = ws();
    let c = needs_approval(&ws, "c.json");
    let a = approval(
        &ws,
        "tw",
        &contract_sha(&c),
        "time_window",
        &now_plus(-60),
        &now_plus(3600),
    );
    for _ in 0..2 {
        let r = ws.run(&c, &["--approval", a.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

#[test]
fn expired_approval_yields_expired_receipt() {
    let ws = ws();
    let c = needs_approval(&ws, "c.json");
    let a = approval(
        &ws,
        "old",
        &contract_sha(&c),
        "time_window",
        &now_plus(-7200),
        &now_plus(-3600),
    );
    let r = ws.run(&c, &["--approval", a.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "expired");
    assert!(!ws.path("marker").exists());
}

#[test]
fn approval_for_another_contract_is_blocked() {
    let ws = ws();
    let c = needs_approval(&ws, "c.json");
    let a = approval(
        &ws,
        "other",
        &"0".repeat(64),
        "single_execution",
        &now_plus(-60),
        &now_plus(3600),
    );
    let r = ws.run(&c, &["--approval", a.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "blocked");
    assert!(r.receipt()["error"].as_str().unwrap().contains("mismatch"));
    assert!(!ws.path("marker").exists());
}

#[test]
fn inverted_window_and_malformed_approval_are_blocked() {
    let ws = ws();
    let c = needs_approval(&ws, "c.json");
    let a = approval(
        &ws,
        "inv",
        &contract_sha(&c),
        "time_window",
        &now_plus(3600),
        &now_plus(60),
    );
    let r = ws.run(&c, &["--approval", a.to_str().unwrap()]);
    assert_eq!(r.status(), "blocked");
    std::fs::write(ws.path("junk.json"), b"{\"approval_version\": 3}").unwrap();
    let r = ws.run(&c, &["--approval", ws.s("junk.json").as_str()]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "blocked");
    assert!(!ws.path("marker").exists());
}

#[test]
fn corrupt_state_database_blocks_the_run() {
    let ws = ws();
    std::fs::create_dir(ws.path("state")).unwrap();
    std::fs::write(ws.path("state/approvals.sqlite3"), vec![0x42u8; 16384]).unwrap();
    let c = needs_approval(&ws, "c.json");
    let a = fresh_single_use(&ws, "one", &c);
    let r = ws.run(&c, &["--approval", a.to_str().unwrap()]);
    assert_blocked(&ws, &r, "approvals.sqlite3");
}

/// Consume a single_execution approval once; returns (contract, approval).
fn consumed_once(ws: &Ws) -> (PathBuf, PathBuf) {
    let c = needs_approval(ws, "c.json");
    let a = fresh_single_use(ws, "once", &c);
    let r = ws.run(&c, &["--approval", a.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::remove_file(ws.path("marker")).unwrap();
    (c, a)
}

fn replay_is_refused(ws: &Ws, c: &std::path::Path, a: &std::path::Path, expect: &str) {
    let r = ws.run(c, &["--approval", a.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.status(), "blocked");
    let e = r.receipt()["error"].as_str().unwrap().to_owned();
    assert!(e.contains(expect), "expected {expect:?} in {e}");
    assert!(!ws.path("marker").exists(), "the approval was replayed");
}

#[test]
fn a_deleted_store_is_an_error_not_an_empty_store() {
    let ws = ws();
    let (c, a) = consumed_once(&ws);
    std::fs::remove_file(ws.path("state/approvals.sqlite3")).unwrap();
    replay_is_refused(&ws, &c, &a, "is missing");
}

#[test]
fn a_truncated_store_is_an_error_not_an_empty_store() {
    for len in [0u64, 1] {
        let ws = ws();
        let (c, a) = consumed_once(&ws);
        std::fs::File::options()
            .write(true)
            .open(ws.path("state/approvals.sqlite3"))
            .unwrap()
            .set_len(len)
            .unwrap();
        replay_is_refused(&ws, &c, &a, "approvals.sqlite3");
        // Without the marker too.
        std::fs::remove_file(ws.path("state/approvals.store-id")).unwrap();
        replay_is_refused(&ws, &c, &a, "approvals.sqlite3");
    }
}

#[test]
fn a_store_replaced_by_a_fresh_one_is_an_error() {
    let ws = ws();
    let (c, a) = consumed_once(&ws);
    // A brand-new, empty csc store from elsewhere takes the database's place.
    let other = ws.path("other-state");
    csc::approval::store::Store::open(&other).unwrap();
    // Its database and write-ahead log (where its id may still live).
    for f in ["approvals.sqlite3", "approvals.sqlite3-wal"] {
        std::fs::copy(other.join(f), ws.path(&format!("state/{f}"))).unwrap();
    }
    replay_is_refused(&ws, &c, &a, "belongs to store");
}

#[test]
fn a_missing_marker_next_to_consumed_approvals_is_an_error() {
    let ws = ws();
    let (c, a) = consumed_once(&ws);
    std::fs::remove_file(ws.path("state/approvals.store-id")).unwrap();
    replay_is_refused(&ws, &c, &a, "is missing");
}

#[test]
fn state_owned_by_another_user_or_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::Uid::effective().is_root() {
        common::require::skip_or_fail("ownership test needs root to chown");
        return;
    }
    let ws = ws();
    let (c, a) = consumed_once(&ws);
    let state = ws.path("state");
    let db = ws.path("state/approvals.sqlite3");
    let set = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(&state, 0o777);
    replay_is_refused(&ws, &c, &a, "writable by group or others");
    set(&state, 0o700);
    set(&db, 0o666);
    replay_is_refused(&ws, &c, &a, "writable by group or others");
    set(&db, 0o600);
    std::os::unix::fs::chown(&db, Some(65534), Some(65534)).unwrap();
    replay_is_refused(&ws, &c, &a, "owned by uid 65534");
    std::os::unix::fs::chown(&db, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    replay_is_refused(&ws, &c, &a, "owned by uid 65534");
    std::os::unix::fs::chown(&state, Some(0), Some(0)).unwrap();
    // Restored: the approval is still consumed.
    replay_is_refused(&ws, &c, &a, "already been consumed");
}

#[test]
fn an_approval_from_the_future_is_refused() {
    let ws = ws();
    let c = needs_approval(&ws, "c.json");
    let a = approval(
        &ws,
        "future",
        &contract_sha(&c),
        "single_execution",
        &now_plus(3600),
        &now_plus(7200),
    );
    let r = ws.run(&c, &["--approval", a.to_str().unwrap()]);
    assert_blocked(&ws, &r, "clock skew");
    // Within the allowance it is accepted.
    let a = approval(
        &ws,
        "skewed",
        &contract_sha(&c),
        "single_execution",
        &now_plus(60),
        &now_plus(7200),
    );
    let r = ws.run(&c, &["--approval", a.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// As uid 65534: a state directory owned by root is refused; one owned by
/// the effective uid works (the check is about csc's uid, not about root).
#[test]
fn an_unprivileged_csc_refuses_a_state_dir_owned_by_root() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::Uid::effective().is_root() {
        common::require::skip_or_fail("needs root to switch to uid 65534");
        return;
    }
    let ws = ws();
    let c = needs_approval(&ws, "c.json");
    let a = fresh_single_use(&ws, "nobody", &c);
    std::fs::set_permissions(&ws.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&ws.root).unwrap() {
        std::os::unix::fs::lchown(entry.unwrap().path(), Some(support::NOBODY), None).unwrap();
    }
    std::os::unix::fs::lchown(&ws.root, Some(support::NOBODY), None).unwrap();
    let root_state = ws.path("root-state");
    std::fs::create_dir(&root_state).unwrap();
    let run = |state: &std::path::Path| {
        let receipt = ws.path("receipt.json");
        let _ = std::fs::remove_file(&receipt);
        let out = support::command(support::Who::Nobody)
            .args([
                "run",
                c.to_str().unwrap(),
                ws.s("policy.yaml").as_str(),
                "--quiet",
            ])
            .args(["--receipt-out", receipt.to_str().unwrap()])
            .args(["--state-dir", state.to_str().unwrap()])
            .args(["--approval", a.to_str().unwrap()])
            .current_dir(&ws.root)
            .output()
            .unwrap();
        Run::new(out, &receipt)
    };
    let r = run(&root_state);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let e = r.receipt()["error"].as_str().unwrap().to_owned();
    assert!(
        e.contains("owned by uid 0") && e.contains("uid 65534"),
        "{e}"
    );
    assert!(!ws.path("marker").exists());
    let r = run(&ws.path("state"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(ws.path("marker").exists());
}
