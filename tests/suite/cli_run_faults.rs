//! `csc run` under bad input and faults: keys, receipt targets, paths,
//! hardened mode. Each gets a clear error, a receipt where a runtime
//! outcome exists, and never an unsigned or silent success.

use crate::common;

use common::*;
use serde_json::json;
use std::process::Command;

fn seed_file(ws: &Ws, name: &str, bytes: &[u8]) -> String {
    std::fs::write(ws.path(name), bytes).unwrap();
    ws.s(name)
}

fn verify(receipt: &serde_json::Value, key: &ed25519_dalek::SigningKey) {
    let vk = key.verifying_key();
    csc::evidence::signing::verify_receipt(receipt, |id| (id == "ops-1").then_some(vk)).unwrap();
}

#[test]
fn signs_with_raw_seed_keypair_and_pem() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["true"])]);
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let pem = csc::evidence::keys::signing_key_to_pkcs8_v1_pem(&key);
    for (name, bytes) in [
        ("seed.key", key.to_bytes().to_vec()),
        ("pair.key", key.to_keypair_bytes().to_vec()),
        ("key.pem", pem.into_bytes()),
    ] {
        let path = seed_file(&ws, name, &bytes);
        let r = ws.run(&c, &["--sign", "--signing-key", &path, "--key-id", "ops-1"]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let rec = r.receipt();
        assert_eq!(rec["signature"]["key_id"], "ops-1");
        assert_eq!(rec["signing_key_id"], "ops-1");
        verify(rec, &key);
        let mut tampered = rec.clone();
        tampered["exit_code"] = json!(1);
        assert!(
            csc::evidence::signing::verify_receipt(&tampered, |_| Some(key.verifying_key()))
                .is_err()
        );
    }
}

#[test]
fn blocked_receipts_are_signed_too() {
    let ws = ws();
    let c = ws.contract("deny.json", vec![ws.cmd("x", &["rm", "-rf", "/"])]);
    let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    let path = seed_file(&ws, "seed.key", &key.to_bytes());
    let r = ws.run(&c, &["--sign", "--signing-key", &path, "--key-id", "ops-1"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "blocked");
    verify(r.receipt(), &key);
}

#[test]
fn bad_signing_configuration_fails_before_anything_runs() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["touch", "marker"])]);
    let short = seed_file(&ws, "short.key", &[1u8; 10]);
    let text = seed_file(
        &ws,
        "text.key",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    );
    let bad_pair = {
        let mut b = [1u8; 64];
        b[40] = 0;
        seed_file(&ws, "pair.key", &b)
    };
    let missing = ws.s("missing.key");
    let dir = ws.s("");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--sign", "--signing-key", &missing, "--key-id", "k"],
            "failed to read",
        ),
        (
            vec!["--sign", "--signing-key", &dir, "--key-id", "k"],
            "not a regular file",
        ),
        (
            vec!["--sign", "--signing-key", &short, "--key-id", "k"],
            "invalid signing key",
        ),
        (
            vec!["--sign", "--signing-key", &text, "--key-id", "k"],
            "invalid signing key",
        ),
        (
            vec!["--sign", "--signing-key", &bad_pair, "--key-id", "k"],
            "public half",
        ),
        (vec!["--sign", "--signing-key", &short], "requires both"),
        (vec!["--sign", "--key-id", "k"], "requires both"),
        (vec!["--key-id", "k"], "require the --sign"),
        (vec!["--signing-key", &short], "require the --sign"),
        (
            vec!["--sign", "--signing-key", &short, "--key-id", ""],
            "key",
        ),
    ];
    for (args, needle) in cases {
        let r = ws.run(&c, &args);
        assert_eq!(r.code, 1, "{args:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(r.receipt.is_none(), "{args:?}");
        assert!(!ws.path("marker").exists(), "{args:?}");
    }
}

#[test]
fn hardened_mode_never_runs_unconfined() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["touch", "marker"])]);
    let r = ws.run(&c, &["--mode", "hardened"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("hardened mode requires"), "{}", r.stderr);
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let path = seed_file(&ws, "seed.key", &key.to_bytes());
    let r = ws.run(
        &c,
        &[
            "--mode",
            "hardened",
            "--sign",
            "--signing-key",
            &path,
            "--key-id",
            "ops-1",
        ],
    );
    // Confined: the cwd is not a declared write scope, so it is read-only
    // inside the sandbox and `touch` fails (if the host cannot sandbox at
    // all, the run fails closed instead) — either way nothing is written.
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_ne!(r.status(), "success");
    assert_eq!(r.receipt()["execution_mode"], "hardened");
    verify(r.receipt(), &key);
    assert!(!ws.path("marker").exists());
    let r = ws.run(&c, &["--mode", "sandboxed"]);
    assert_eq!(r.code, 1);
    assert!(r.receipt.is_none());
}

#[test]
fn cwd_symlink_out_of_scope_is_blocked() {
    let ws = ws();
    std::os::unix::fs::symlink("/etc", ws.path("escape")).unwrap();
    let mut cmd = ws.cmd("t", &["touch", "marker"]);
    cmd["cwd"] = json!(ws.s("escape"));
    let c = ws.contract("c.json", vec![ws.cmd("first", &["true"]), cmd]);
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    let rec = r.receipt();
    assert_eq!(rec["status"], "blocked");
    assert_eq!(rec["exit_code"], 126);
    assert_eq!(rec["failed_command_id"], "t");
    assert_eq!(rec["completed_command_ids"], json!(["first"]));
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("outside allowed scope")
    );
    assert!(!std::path::Path::new("/etc/marker").exists());
}

#[test]
fn missing_cwd_fails_with_126() {
    let ws = ws();
    let mut cmd = ws.cmd("t", &["true"]);
    cmd["cwd"] = json!(ws.s("nope"));
    let c = ws.contract("c.json", vec![cmd]);
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "failed");
    assert_eq!(r.receipt()["exit_code"], 126);
}

#[test]
fn read_scope_with_dotdot_is_blocked() {
    let ws = ws();
    let mut cmd = ws.cmd("t", &["touch", "marker"]);
    cmd["read_paths"] = json!([format!("{}/../../etc/*", ws.root.display())]);
    let c = ws.contract("c.json", vec![cmd]);
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "blocked");
    assert!(r.receipt()["error"].as_str().unwrap().contains(".."));
    assert!(!ws.path("marker").exists());
}

#[test]
fn receipt_to_a_device_is_refused() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["true"])]);
    let out = Command::new(CSC)
        .args([
            "run",
            c.to_str().unwrap(),
            ws.s("policy.yaml").as_str(),
            "--quiet",
        ])
        .args(["--receipt-out", "/dev/full"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write receipt"), "{err}");
    assert!(
        !std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_file()
    );
}

fn mount_tmpfs(target: &std::path::Path, opts: &str) -> bool {
    std::fs::create_dir_all(target).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(target)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        common::require::skip_or_fail(&format!(
            "cannot mount tmpfs ({opts}) at {}",
            target.display()
        ));
    }
    ok
}

fn umount(target: &std::path::Path) {
    let _ = Command::new("umount").arg(target).output();
}

#[test]
fn read_only_receipt_directory_is_a_clear_error() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["true"])]);
    let ro = ws.path("ro");
    if !mount_tmpfs(&ro, "ro,size=64k") {
        return;
    }
    let out = Command::new(CSC)
        .args([
            "run",
            c.to_str().unwrap(),
            ws.s("policy.yaml").as_str(),
            "--quiet",
        ])
        .args(["--receipt-out", ws.s("ro/receipt.json").as_str()])
        .output()
        .unwrap();
    umount(&ro);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot write receipt") && err.contains("Read-only"),
        "{err}"
    );
}

#[test]
fn full_receipt_directory_is_a_clear_error() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["true"])]);
    let full = ws.path("full");
    if !mount_tmpfs(&full, "size=16k") {
        return;
    }
    // Fill it up.
    let _ = std::fs::write(full.join("filler"), vec![0u8; 64 * 1024]);
    let out = Command::new(CSC)
        .args([
            "run",
            c.to_str().unwrap(),
            ws.s("policy.yaml").as_str(),
            "--quiet",
        ])
        .args(["--receipt-out", ws.s("full/receipt.json").as_str()])
        .output()
        .unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&full)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    umount(&full);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot write receipt") && err.contains("No space"),
        "{err}"
    );
    assert!(err.contains("commands ran"), "{err}");
    assert_eq!(leftovers.len(), 1, "temp file left behind: {leftovers:?}");
}

#[test]
fn unreadable_contract_or_policy_is_an_error_without_receipt() {
    let ws = ws();
    let r = ws.run(&ws.path("missing.json"), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("failed to read"), "{}", r.stderr);
    assert!(r.receipt.is_none());
}

/// Helper for [`require_sandbox_turns_skips_into_failures`]: always skips.
#[test]
#[ignore = "run by require_sandbox_turns_skips_into_failures"]
fn always_skips() {
    common::require::skip_or_fail("demonstration skip");
}

/// `.ci/run` sets `CSC_REQUIRE_SANDBOX=1`: a kernel-feature skip must then
/// fail the test instead of passing silently.
#[test]
fn require_sandbox_turns_skips_into_failures() {
    let run = |require: Option<&str>| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "suite::cli_run_faults::always_skips",
            "--ignored",
            "--nocapture",
        ])
        .env_remove("CSC_REQUIRE_SANDBOX");
        if let Some(v) = require {
            c.env("CSC_REQUIRE_SANDBOX", v);
        }
        c.output().unwrap()
    };
    let quiet = run(None);
    assert!(quiet.status.success());
    assert!(String::from_utf8_lossy(&quiet.stderr).contains("SKIP: demonstration skip"));
    let required = run(Some("1"));
    assert!(!required.status.success(), "a required skip passed");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&required.stdout),
        String::from_utf8_lossy(&required.stderr)
    );
    assert!(all.contains("CSC_REQUIRE_SANDBOX=1"), "{all}");
}
