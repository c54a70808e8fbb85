//! `csc approve` and `csc run --approver-keyring / --approvals-required`
//! (RFC 0010): signed approvals, quorum, the approval record bound in the
//! receipt. Every accepted signature is paired with a tampered twin.

use crate::common;

use base64::Engine as _;
use common::*;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const REFERENCE_PYTHON: &str = "/tmp/refenv/bin/python";

fn key_file(ws: &Ws, name: &str, seed: u8) -> PathBuf {
    let p = ws.path(&format!("{name}.seed"));
    std::fs::write(&p, [seed; 32]).unwrap();
    p
}

fn pubkey(seed: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode(
        SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .as_bytes(),
    )
}

/// Keyring in a directory outside the workspace's write scopes.
fn keyring(dir: &Path, entries: &[(&str, u8, Value)]) -> PathBuf {
    let keys: Vec<Value> = entries
        .iter()
        .map(|(id, seed, extra)| {
            let mut k = json!({"key_id": id, "public_key": pubkey(*seed)});
            if let Value::Object(m) = extra {
                k.as_object_mut().unwrap().extend(m.clone());
            }
            k
        })
        .collect();
    let p = dir.join("approvers.json");
    std::fs::write(
        &p,
        serde_json::to_vec(&json!({"keyring_version": "csc.keyring.v1", "keys": keys})).unwrap(),
    )
    .unwrap();
    p
}

fn needs_approval(ws: &Ws, name: &str, risk: &str) -> PathBuf {
    ws.contract_with(name, vec![ws.cmd("t", &["touch", "marker"])], |c| {
        c["approval_mode"] = json!("human_required");
        c["risk_class"] = json!(risk);
    })
}

fn approve(ws: &Ws, contract: &Path, seed: u8, key_id: &str, who: &str, out: &str) -> PathBuf {
    let key = key_file(ws, key_id, seed);
    let out = ws.path(out);
    let o = Command::new(CSC)
        .arg("approve")
        .arg(contract)
        .arg("--signing-key")
        .arg(&key)
        .args(["--key-id", key_id, "--approver", who, "--ticket", "CHG-1"])
        .args(["--reason", "test", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

struct Setup {
    ws: Ws,
    _trusted: tempfile::TempDir,
    ring: PathBuf,
    contract: PathBuf,
}

fn setup(risk: &str) -> Setup {
    let ws = ws();
    let trusted = tempfile::tempdir().unwrap();
    let ring = keyring(
        trusted.path(),
        &[
            ("alice-k", 1, json!({})),
            ("bob-k", 2, json!({})),
            ("carol-k", 3, json!({})),
            ("gone-k", 4, json!({"revoked": true})),
        ],
    );
    let contract = needs_approval(&ws, "c.json", risk);
    Setup {
        ws,
        _trusted: trusted,
        ring,
        contract,
    }
}

impl Setup {
    fn run(&self, approvals: &[&Path], extra: &[&str]) -> Run {
        let mut args: Vec<String> =
            vec!["--approver-keyring".into(), self.ring.display().to_string()];
        for a in approvals {
            args.push("--approval".into());
            args.push(a.display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ws.run(&self.contract, &refs)
    }
}

fn error(r: &Run) -> String {
    r.receipt()["error"].as_str().unwrap().to_owned()
}

fn envelope_payload(path: &Path) -> Value {
    let env: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[test]
fn signed_approval_runs_and_the_receipt_binds_the_record() {
    let s = setup("low");
    let a = approve(&s.ws, &s.contract, 1, "alice-k", "alice", "a.dsse.json");
    let payload = envelope_payload(&a);
    assert_eq!(payload["approval_version"], "csc.approval.v0.1");
    assert_eq!(payload["approver"]["identity"], "alice");
    assert_eq!(payload["ticket_id"], "CHG-1");

    let signer = key_file(&s.ws, "op", 9);
    let r = s.run(
        &[&a],
        &[
            "--sign",
            "--signing-key",
            signer.to_str().unwrap(),
            "--key-id",
            "op",
            "--output-dir",
            s.ws.s("out").as_str(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.status(), "success");
    let arts = r.receipt()["artifacts"].as_array().unwrap();
    let record_path = s.ws.path("receipt.json.approvals.json");
    assert_eq!(arts.len(), 1);
    assert_eq!(arts[0]["path"], record_path.display().to_string());
    let bytes = std::fs::read(&record_path).unwrap();
    assert_eq!(arts[0]["sha256"], csc::canonical::sha256_hex(&bytes));
    let record: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(record["record_version"], "csc.approval-record.v0.1");
    assert_eq!(record["signatures_verified"], true);
    assert_eq!(
        record["approvals"][0]["approval_id"],
        payload["approval_id"]
    );
    assert_eq!(record["approvals"][0]["key_ids"], json!(["alice-k"]));
    assert_eq!(record["execution_id"], r.receipt()["execution_id"]);

    // csc's own verifier: signature and the bound record.
    let pubfile = s.ws.path("op.pub");
    std::fs::write(
        &pubfile,
        SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes(),
    )
    .unwrap();
    let verify = |extra: &[&str]| {
        Command::new(CSC)
            .arg("verify-receipt")
            .arg(s.ws.path("receipt.json"))
            .arg("--public-key")
            .arg(&pubfile)
            .args(["--key-id", "op", "--outputs", s.ws.s("out").as_str()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = verify(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // Tampered twin: an edited record no longer matches the receipt.
    std::fs::write(
        &record_path,
        String::from_utf8(bytes.clone())
            .unwrap()
            .replace("alice-k", "bob-k"),
    )
    .unwrap();
    let o = verify(&[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("artifact"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    std::fs::write(&record_path, &bytes).unwrap();

    // The reference verifier accepts the receipt's signature.
    if !Path::new(REFERENCE_PYTHON).exists() {
        eprintln!("SKIP: {REFERENCE_PYTHON} not found; reference acceptance not checked");
        return;
    }
    let o = Command::new(REFERENCE_PYTHON)
        .args(["-m", "csc_runner.cli", "verify-receipt"])
        .arg(s.ws.path("receipt.json"))
        .arg("--public-key")
        .arg(&pubfile)
        .args(["--key-id", "op"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("VALID"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn unsigned_tampered_revoked_unknown_and_wrong_contract_are_blocked_by_name() {
    let s = setup("low");
    let good = approve(&s.ws, &s.contract, 1, "alice-k", "alice", "a.dsse.json");
    let sha = envelope_payload(&good)["contract_sha256"].clone();

    // Unsigned: the plain payload as a v0.1 artifact.
    let plain = s.ws.path("plain.json");
    std::fs::write(
        &plain,
        serde_json::to_vec(&envelope_payload(&good)).unwrap(),
    )
    .unwrap();
    let r = s.run(&[&plain], &[]);
    assert_eq!((r.code, r.status()), (1, "blocked"));
    assert!(error(&r).contains("unsigned"), "{}", error(&r));

    // Tampered twin: identity edited inside the signed payload.
    let mut env: Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    let mut p = envelope_payload(&good);
    p["approver"]["identity"] = json!("mallory");
    env["payload"] =
        json!(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&p).unwrap()));
    let tampered = s.ws.path("t.dsse.json");
    std::fs::write(&tampered, serde_json::to_vec(&env).unwrap()).unwrap();
    let r = s.run(&[&tampered], &[]);
    assert_eq!(r.status(), "blocked");
    assert!(error(&r).contains("tampered"), "{}", error(&r));

    // Revoked and unknown keys.
    let revoked = approve(&s.ws, &s.contract, 4, "gone-k", "gone", "r.dsse.json");
    let r = s.run(&[&revoked], &[]);
    assert!(error(&r).contains("revoked"), "{}", error(&r));
    let unknown = approve(&s.ws, &s.contract, 7, "stranger", "x", "u.dsse.json");
    let r = s.run(&[&unknown], &[]);
    assert!(error(&r).contains("unknown key_id"), "{}", error(&r));

    // Wrong contract: an approval of another contract.
    let other =
        s.ws.contract_with("other.json", vec![s.ws.cmd("t", &["true"])], |c| {
            c["approval_mode"] = json!("human_required");
        });
    let wrong = approve(&s.ws, &other, 1, "alice-k", "alice", "w.dsse.json");
    let r = s.run(&[&wrong], &[]);
    assert!(
        error(&r).contains("contract_sha256 mismatch"),
        "{}",
        error(&r)
    );

    // Expired (signed by a trusted key, window in the past).
    let past = csc::protocol::approval::Approval {
        approval_version: "csc.approval.v0.1".into(),
        approval_id: "old".into(),
        contract_sha256: sha.as_str().unwrap().into(),
        approver: csc::protocol::approval::Approver {
            identity: "alice".into(),
            method: csc::protocol::approval::ApprovalMethod::Cli,
        },
        approved_at: csc::time::rfc3339_in(-7200),
        expires_at: csc::time::rfc3339_in(-3600),
        scope: csc::protocol::approval::ApprovalScope::SingleExecution,
        ticket_id: None,
        reason: None,
    };
    let env = csc::approval::signed::sign(&past, &SigningKey::from_bytes(&[1; 32]), "alice-k");
    let expired = s.ws.path("x.dsse.json");
    std::fs::write(&expired, env.to_line()).unwrap();
    let r = s.run(&[&expired], &[]);
    assert_eq!(r.status(), "expired");

    assert!(!s.ws.path("marker").exists(), "nothing may have run");
    // The good one still works (nothing above consumed it).
    let r = s.run(&[&good], &[]);
    assert_eq!(r.status(), "success", "{}", r.stderr);
}

#[test]
fn quorum_needs_distinct_approvers_and_keys_per_risk_class() {
    let s = setup("medium");
    let a = approve(&s.ws, &s.contract, 1, "alice-k", "alice", "a.dsse.json");
    let a2 = approve(&s.ws, &s.contract, 2, "bob-k", "alice", "a2.dsse.json");
    let b_same_key = approve(&s.ws, &s.contract, 1, "alice-k", "bob", "bk.dsse.json");
    let b = approve(&s.ws, &s.contract, 2, "bob-k", "bob", "b.dsse.json");
    let c = approve(&s.ws, &s.contract, 3, "carol-k", "carol", "c.dsse.json");
    let req = ["--approvals-required", "medium=2,critical=3"];

    let r = s.run(&[&a], &req);
    assert!(error(&r).contains("quorum not met"), "{}", error(&r));
    let r = s.run(&[&a, &a2], &req);
    assert!(error(&r).contains("distinct approvers"), "{}", error(&r));
    let r = s.run(&[&a, &b_same_key], &req);
    assert!(
        error(&r).contains("distinct approver keys"),
        "{}",
        error(&r)
    );
    let r = s.run(&[&a, &a], &req);
    assert!(error(&r).contains("same approval"), "{}", error(&r));
    assert!(!s.ws.path("marker").exists());

    let r = s.run(&[&a, &b], &req);
    assert_eq!(r.status(), "success", "{}", r.stderr);
    let record: Value =
        serde_json::from_slice(&std::fs::read(s.ws.path("receipt.json.approvals.json")).unwrap())
            .unwrap();
    assert_eq!(record["approvals_required"], 2);
    assert_eq!(record["approvals"].as_array().unwrap().len(), 2);

    // Single use, all or nothing: a is consumed, so (a, c) is refused and
    // does not burn c.
    std::fs::remove_file(s.ws.path("marker")).unwrap();
    let r = s.run(&[&c, &a], &req);
    assert!(error(&r).contains("already been consumed"), "{}", error(&r));
    let d = approve(&s.ws, &s.contract, 2, "bob-k", "bob", "d.dsse.json");
    let r = s.run(&[&c, &d], &req);
    assert_eq!(r.status(), "success", "{}", r.stderr);
}

#[test]
fn keyring_and_quorum_flags_are_checked_before_anything_runs() {
    let s = setup("low");
    let a = approve(&s.ws, &s.contract, 1, "alice-k", "alice", "a.dsse.json");
    // --approvals-required without a keyring, or several unsigned approvals.
    let r = s.ws.run(
        &s.contract,
        &[
            "--approvals-required",
            "2",
            "--approval",
            a.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("needs --approver-keyring"),
        "{}",
        r.stderr
    );
    let r = s.ws.run(
        &s.contract,
        &[
            "--approval",
            a.to_str().unwrap(),
            "--approval",
            a.to_str().unwrap(),
        ],
    );
    assert!(r.stderr.contains("need --approver-keyring"), "{}", r.stderr);
    for bad in ["0", "x", "severe=2"] {
        let r = s.run(&[&a], &["--approvals-required", bad]);
        assert!(
            r.stderr.contains("--approvals-required"),
            "{bad}: {}",
            r.stderr
        );
    }
    // A malformed keyring is an error, not an empty keyring.
    std::fs::write(
        &s.ring,
        b"{\"keyring_version\":\"csc.keyring.v1\",\"keys\":[]}",
    )
    .unwrap();
    let r = s.run(&[&a], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--approver-keyring"), "{}", r.stderr);
    assert!(!s.ws.path("marker").exists());
}

#[test]
fn approver_keyring_inside_a_write_scope_is_refused() {
    // The command could add its own key to the keyring for later runs.
    let s = setup("low");
    std::fs::create_dir(s.ws.path("w")).unwrap();
    let ring_in_ws = s.ws.path("w/ring.json");
    std::fs::copy(&s.ring, &ring_in_ws).unwrap();
    let contract = s.ws.contract_with(
        "w.json",
        vec![{
            let mut c = s.ws.cmd("t", &["touch", "marker"]);
            c["write_paths"] = json!([s.ws.s("w")]);
            c
        }],
        |c| c["approval_mode"] = json!("human_required"),
    );
    let a = approve(&s.ws, &contract, 1, "alice-k", "alice", "a.dsse.json");
    let r = s.ws.run(
        &contract,
        &[
            "--approver-keyring",
            ring_in_ws.to_str().unwrap(),
            "--approval",
            a.to_str().unwrap(),
        ],
    );
    assert_eq!(r.status(), "blocked");
    assert!(error(&r).contains("--approver-keyring"), "{}", error(&r));
    assert!(!s.ws.path("marker").exists());
}

#[test]
fn without_a_keyring_a_signed_approval_is_read_as_v0_1() {
    let s = setup("low");
    let a = approve(&s.ws, &s.contract, 7, "whoever", "alice", "a.dsse.json");
    let r = s.ws.run(&s.contract, &["--approval", a.to_str().unwrap()]);
    assert_eq!(r.status(), "success", "{}", r.stderr);
    assert!(r.stderr.contains("not verified"), "{}", r.stderr);
    let record: Value =
        serde_json::from_slice(&std::fs::read(s.ws.path("receipt.json.approvals.json")).unwrap())
            .unwrap();
    assert_eq!(record["signatures_verified"], false);
}

#[test]
fn approve_refuses_bad_input() {
    let s = setup("low");
    let key = key_file(&s.ws, "k", 1);
    for (flag, value, needle) in [
        ("--expires-in", "0s", "positive"),
        ("--expires-in", "soon", "duration"),
        ("--scope", "forever", "--scope"),
    ] {
        let o = Command::new(CSC)
            .arg("approve")
            .arg(&s.contract)
            .arg("--signing-key")
            .arg(&key)
            .args(["--key-id", "k", "--approver", "a", flag, value, "--out"])
            .arg(s.ws.path("o.json"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{flag} {value}: {err}");
    }
    assert!(!s.ws.path("o.json").exists());
}

#[test]
fn dual_control_contracts_need_two_signed_approvals() {
    let s = setup("low");
    let contract = s.ws.contract_with(
        "dual.json",
        vec![s.ws.cmd("t", &["touch", "marker"])],
        |c| {
            c["approval_mode"] = json!("dual_control_required");
        },
    );
    let a = approve(&s.ws, &contract, 1, "alice-k", "alice", "a.dsse.json");
    let b = approve(&s.ws, &contract, 2, "bob-k", "bob", "b.dsse.json");
    let run = |files: &[&Path]| {
        let mut args = vec![
            "--approver-keyring".to_owned(),
            s.ring.display().to_string(),
        ];
        for f in files {
            args.push("--approval".into());
            args.push(f.display().to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        s.ws.run(&contract, &refs)
    };
    let r = run(&[&a]);
    assert!(error(&r).contains("quorum not met"), "{}", error(&r));
    assert!(!s.ws.path("marker").exists());
    let r = run(&[&a, &b]);
    assert_eq!(r.status(), "success", "{}", r.stderr);
}
