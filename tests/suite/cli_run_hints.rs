//! Errors that teach: where a user gets stuck, `csc run` names the flag
//! or the cause.

use crate::common;
use crate::support;

use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use support::{NOBODY, Who, skip};

/// A tool missing from the trusted search path but present on the
/// caller's PATH: the error names where it is and the `--search-path`
/// that would trust it (it is never run from there).
#[test]
fn not_found_names_search_path_and_where_the_caller_has_it() {
    let ws = ws();
    std::fs::create_dir(ws.path("bin")).unwrap();
    let tool = ws.path("bin/nonexistent-cmd-xyz");
    std::fs::write(&tool, "#!/bin/sh\necho SHOULD-NOT-RUN\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let contract = ws.contract("c.json", vec![ws.cmd("t", &["nonexistent-cmd-xyz"])]);
    let path = format!("{}:/usr/bin:/bin", ws.s("bin"));
    let r = ws.run_env(&contract, &[], &[("PATH", &path)]);
    assert_eq!(r.status(), "failed");
    let err = r.receipt()["error"].as_str().unwrap();
    assert!(
        err.contains(&format!("it is {} on the caller's PATH", tool.display()))
            && err.contains(&format!("--search-path {}:", ws.s("bin"))),
        "{err}"
    );
    assert!(!r.stdout.contains("SHOULD-NOT-RUN"));
}

/// Hardened mode, project files owned by another uid: the command gets
/// EACCES even as root (no capabilities); csc says why in one line.
#[test]
fn permission_denied_on_foreign_owned_files_gets_a_hint() {
    if skip(
        Who::Root,
        "permission_denied_on_foreign_owned_files_gets_a_hint",
    ) {
        return;
    }
    let ws = ws();
    std::fs::write(ws.path("key.seed"), [5u8; 32]).unwrap();
    let out = ws.path("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut c = ws.cmd("w", &["touch", "out/f"]);
    c["write_paths"] = json!([ws.s("out")]);
    let contract = ws.contract("c.json", vec![c]);
    let key = ws.s("key.seed");
    let r = ws.run(
        &contract,
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
    assert_eq!(r.status(), "failed", "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "hint: {} is owned by uid {NOBODY}, but csc runs as uid 0",
            out.display()
        )),
        "{}",
        r.stderr
    );
}

/// `--receipt-out` named like a stream file in `--output-dir` would be
/// overwritten (or overwrite it): refused before anything runs.
#[test]
fn receipt_out_colliding_with_a_saved_stream_is_refused() {
    let ws = ws();
    std::fs::create_dir(ws.path("streams")).unwrap();
    let marker = ws.path("ran");
    let contract = ws.contract(
        "c.json",
        vec![ws.cmd("test", &["touch", marker.to_str().unwrap()])],
    );
    for name in ["test.json", "test.stdout"] {
        let receipt = ws.path("streams").join(name);
        let out = std::process::Command::new(CSC)
            .arg("run")
            .arg(&contract)
            .arg(ws.path("policy.yaml"))
            .arg("--receipt-out")
            .arg(&receipt)
            .arg("--output-dir")
            .arg(ws.path("streams"))
            .arg("--quiet")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("is the file where --output-dir saves"),
            "{name}: {stderr}"
        );
        assert!(!marker.exists(), "{name}: the command ran");
    }
    // Any other name in the same directory is fine.
    let r = ws.run(
        &contract,
        &["--output-dir", ws.path("streams").to_str().unwrap()],
    );
    assert_eq!(r.status(), "success", "{}", r.stderr);
}
