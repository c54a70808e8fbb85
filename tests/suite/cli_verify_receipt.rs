//! `csc verify-receipt` driven as a real binary.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use csc::evidence::signing;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn csc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csc"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn interop() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/interop")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn receipt(i: usize) -> Value {
    json!({
        "receipt_version": "csc.receipt.v0.1", "contract_id": "ctr-list-repo-0001",
        "execution_id": format!("exec-{i}"),
        "contract_sha256": "5a024e0f0007c896d04cd87fc6ac716bc271e616f4d8c5f439d285f48c4160c5",
        "status": "success", "started_at": "2026-11-21T12:00:00+00:00",
        "ended_at": "2026-11-21T12:00:01+00:00", "policy_profile": "readonly-dev",
        "policy_sha256": "f582b66244ad7f87ebe80fd181a3ae5fa49e7260017fd837746a7793a5b5baf8",
        "exit_code": 0, "stdout_hash": EMPTY, "stderr_hash": EMPTY,
        "completed_command_ids": ["ls-workspace"], "failed_command_id": null, "error": ""
    })
}

fn write_signed(
    dir: &Path,
    name: &str,
    mut r: Value,
    k: &SigningKey,
    id: &str,
    at: &str,
) -> PathBuf {
    signing::sign_receipt(&mut r, k, id, at).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&r).unwrap()).unwrap();
    path
}

fn write_pub(dir: &Path, k: &SigningKey) -> PathBuf {
    let p = dir.join("pub.raw");
    std::fs::write(&p, k.verifying_key().as_bytes()).unwrap();
    p
}

#[test]
fn many_receipts_mixed_valid_and_invalid_names_every_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let pubkey = write_pub(dir.path(), &k);
    let mut paths = Vec::new();
    let mut bad = Vec::new();
    for i in 0..60 {
        let p = write_signed(
            dir.path(),
            &format!("r{i:02}.json"),
            receipt(i),
            &k,
            "k1",
            "2026-11-21T12:00:02+00:00",
        );
        if i % 7 == 3 {
            // tamper after signing
            let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            v["exit_code"] = json!(1);
            std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
            bad.push(p.clone());
        }
        paths.push(p);
    }
    let mut args = vec![
        "verify-receipt",
        "--public-key",
        s(&pubkey),
        "--key-id",
        "k1",
    ];
    args.extend(paths.iter().map(|p| s(p)));
    let o = csc(&args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    for p in &paths {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{}:", p.display())))
            .unwrap();
        if bad.contains(p) {
            assert!(
                line.contains("INVALID") && line.contains("bad_signature"),
                "{line}"
            );
        } else {
            assert!(line.contains(": VALID"), "{line}");
        }
    }
    assert!(
        err.contains(&format!(
            "60 receipt(s), {} valid, {} invalid",
            60 - bad.len(),
            bad.len()
        )),
        "{err}"
    );

    // --json: one object per receipt, in order.
    args.push("--json");
    let o = csc(&args);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 60);
    for (line, p) in lines.iter().zip(&paths) {
        assert_eq!(line["receipt"], s(p));
        assert_eq!(line["valid"], !bad.contains(p));
        if bad.contains(p) {
            assert_eq!(line["problems"][0]["code"], "bad_signature");
        }
    }

    // Only the good ones: exit 0; --quiet prints nothing on stdout.
    let good: Vec<&str> = paths
        .iter()
        .filter(|p| !bad.contains(p))
        .map(|p| s(p))
        .collect();
    let mut args = vec![
        "verify-receipt",
        "-q",
        "--public-key",
        s(&pubkey),
        "--key-id",
        "k1",
    ];
    args.extend(good);
    let o = csc(&args);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(o.stdout.is_empty());
}

#[test]
fn unreadable_malformed_and_schema_invalid_receipts_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let pubkey = write_pub(dir.path(), &k);
    let good = write_signed(
        dir.path(),
        "good.json",
        receipt(0),
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    let mut extra = receipt(1);
    extra["surprise"] = json!(true);
    let schema_bad = write_signed(
        dir.path(),
        "schema.json",
        extra,
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    let mut no_status = receipt(2);
    no_status.as_object_mut().unwrap().remove("status");
    let missing_field = write_signed(
        dir.path(),
        "nostatus.json",
        no_status,
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    let not_json = dir.path().join("garbage.json");
    std::fs::write(&not_json, b"{not json").unwrap();
    let dup = dir.path().join("dup.json");
    std::fs::write(
        &dup,
        br#"{"receipt_version":"csc.receipt.v0.1","receipt_version":"x"}"#,
    )
    .unwrap();
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, vec![b' '; 2 * 1024 * 1024]).unwrap();
    let unsigned = dir.path().join("unsigned.json");
    std::fs::write(&unsigned, serde_json::to_vec(&receipt(3)).unwrap()).unwrap();
    let missing = dir.path().join("missing.json");
    let fifo = dir.path().join("fifo.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let o = csc(&[
        "verify-receipt",
        "--public-key",
        s(&pubkey),
        "--key-id",
        "k1",
        s(&fifo),
        s(&good),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).0.contains("fifo.json: INVALID: receipt")
            && text(&o).0.contains("is not a regular file")
    );
    let o = csc(&[
        "verify-receipt",
        "--public-key",
        s(&pubkey),
        "--key-id",
        "k1",
        s(&good),
        s(&schema_bad),
        s(&missing_field),
        s(&not_json),
        s(&dup),
        s(&huge),
        s(&unsigned),
        s(&missing),
        s(dir.path()),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let line = |p: &Path| {
        out.lines()
            .find(|l| l.starts_with(&format!("{}:", p.display())))
            .unwrap_or_else(|| panic!("{} not reported:\n{out}", p.display()))
            .to_owned()
    };
    assert!(line(&good).contains(": VALID"));
    assert!(line(&schema_bad).contains("(schema)") && line(&schema_bad).contains("surprise"));
    assert!(line(&missing_field).contains("(schema)") && line(&missing_field).contains("status"));
    assert!(line(&not_json).contains("INVALID") && line(&not_json).contains("invalid JSON"));
    assert!(line(&dup).contains("duplicate"), "{}", line(&dup));
    assert!(line(&huge).contains("(too_large)"));
    assert!(line(&unsigned).contains("missing signature (missing_signature)"));
    assert!(line(&missing).contains("(unreadable)"));
    assert!(line(dir.path()).contains("INVALID"));
    assert!(err.contains("9 receipt(s), 1 valid, 8 invalid"), "{err}");
}

#[test]
fn signature_failures_each_have_a_distinct_reason() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let pubkey = write_pub(dir.path(), &k);
    let p = write_signed(
        dir.path(),
        "r.json",
        receipt(0),
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    let good: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    type Tamper = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "unknown",
            Box::new(|v| v["signature"]["key_id"] = json!("k2")),
            "unknown_key_id",
        ),
        (
            "b64",
            Box::new(|v| v["signature"]["signature"] = json!("@@@@")),
            "bad_signature_encoding",
        ),
        (
            "alg",
            Box::new(|v| v["signature"]["algorithm"] = json!("rsa-pss")),
            "unsupported_algorithm",
        ),
        (
            "nosig",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("signature");
            }),
            "missing_signature",
        ),
        (
            "sigstr",
            Box::new(|v| v["signature"] = json!("abc")),
            "malformed_signature",
        ),
        (
            "nokeyid",
            Box::new(|v| {
                v["signature"].as_object_mut().unwrap().remove("key_id");
            }),
            "missing_key_id",
        ),
        (
            "badsig",
            Box::new(|v| v["signature"]["signature"] = json!(STANDARD.encode([0u8; 64]))),
            "bad_signature",
        ),
        (
            "short",
            Box::new(|v| v["signature"]["signature"] = json!(STANDARD.encode([0u8; 32]))),
            "bad_signature_encoding",
        ),
    ];
    let mut args = vec![
        "verify-receipt".to_owned(),
        "--json".into(),
        "--public-key".into(),
        s(&pubkey).into(),
        "--key-id".into(),
        "k1".into(),
    ];
    for (name, f, _) in &cases {
        let mut v = good.clone();
        f(&mut v);
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        args.push(s(&path).to_owned());
    }
    let o = Command::new(env!("CARGO_BIN_EXE_csc"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let (out, _) = text(&o);
    for (line, (name, _, code)) in out.lines().zip(&cases) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            v["receipt"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{name}.json"))
        );
        assert_eq!(v["problems"][0]["code"], *code, "{name}: {line}");
        assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{line}");
    }
}

fn keyring_file(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("keyring.json");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn keyring_rotation_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, leaked) = (key(1), key(2), key(3));
    let b64 = |k: &SigningKey| STANDARD.encode(k.verifying_key().as_bytes());
    let ring = keyring_file(
        dir.path(),
        &format!(
            r#"{{"keyring_version": "csc.keyring.v1", "keys": [
              {{"key_id": "ci-2026a", "public_key": "{}", "not_after": "2026-06-30T23:59:59Z", "comment": "rotated out"}},
              {{"key_id": "ci-2026b", "public_key_pem": {}, "not_before": "2026-07-01T00:00:00Z"}},
              {{"key_id": "ci-leaked", "public_key": "{}", "revoked": true}}]}}"#,
            b64(&old),
            serde_json::to_string(&csc::evidence::keys::verifying_key_to_spki_pem(
                &new.verifying_key()
            ))
            .unwrap(),
            b64(&leaked)
        ),
    );
    let r_old = write_signed(
        dir.path(),
        "old.json",
        receipt(1),
        &old,
        "ci-2026a",
        "2026-03-01T10:00:00+00:00",
    );
    let r_new = write_signed(
        dir.path(),
        "new.json",
        receipt(2),
        &new,
        "ci-2026b",
        "2026-08-01T10:00:00+00:00",
    );
    let o = csc(&[
        "verify-receipt",
        "--keyring",
        s(&ring),
        s(&r_old),
        s(&r_new),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    let late_old = write_signed(
        dir.path(),
        "late-old.json",
        receipt(3),
        &old,
        "ci-2026a",
        "2026-08-01T10:00:00+00:00",
    );
    let early_new = write_signed(
        dir.path(),
        "early-new.json",
        receipt(4),
        &new,
        "ci-2026b",
        "2026-01-01T10:00:00+00:00",
    );
    let revoked = write_signed(
        dir.path(),
        "revoked.json",
        receipt(5),
        &leaked,
        "ci-leaked",
        "2026-03-01T10:00:00+00:00",
    );
    let wrong_key = write_signed(
        dir.path(),
        "wrong.json",
        receipt(6),
        &leaked,
        "ci-2026b",
        "2026-08-01T10:00:00+00:00",
    );
    let bad_time = write_signed(
        dir.path(),
        "badtime.json",
        receipt(7),
        &new,
        "ci-2026b",
        "last tuesday",
    );
    let o = csc(&[
        "verify-receipt",
        "--keyring",
        s(&ring),
        s(&r_old),
        s(&late_old),
        s(&early_new),
        s(&revoked),
        s(&wrong_key),
        s(&bad_time),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let line = |p: &Path| {
        out.lines()
            .find(|l| l.starts_with(&format!("{}:", p.display())))
            .unwrap()
            .to_owned()
    };
    assert!(line(&r_old).contains(": VALID"));
    assert!(line(&late_old).contains("expired at") && line(&late_old).contains("(key_expired)"));
    assert!(line(&early_new).contains("(key_not_yet_valid)"));
    assert!(line(&revoked).contains("\"ci-leaked\" is revoked (key_revoked)"));
    assert!(line(&wrong_key).contains("(bad_signature)"));
    assert!(line(&bad_time).contains("(bad_signed_at)"));
}

#[test]
fn bad_keyrings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let r = write_signed(
        dir.path(),
        "r.json",
        receipt(0),
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    let b = STANDARD.encode(k.verifying_key().as_bytes());
    for (body, needle) in [
        (
            format!(
                r#"{{"keyring_version":"csc.keyring.v1","keys":[{{"key_id":"k1","public_key":"{b}","trust":"yes"}}]}}"#
            ),
            "unknown field `trust`",
        ),
        (
            format!(
                r#"{{"keyring_version":"csc.keyring.v1","keys":[{{"key_id":"k1","public_key":"{b}"}},{{"key_id":"k1","public_key":"{b}"}}]}}"#
            ),
            "duplicate key_id \"k1\"",
        ),
        ("{}".to_owned(), "missing field"),
        ("[]".to_owned(), "keyring"),
        (
            format!(
                r#"{{"keyring_version":"csc.keyring.v2","keys":[{{"key_id":"k1","public_key":"{b}"}}]}}"#
            ),
            "unsupported keyring_version",
        ),
    ] {
        let ring = keyring_file(dir.path(), &body);
        let o = csc(&["verify-receipt", "--keyring", s(&ring), s(&r)]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{body}");
        assert!(
            err.contains(s(&ring)) && err.contains(needle),
            "{body}: {err}"
        );
    }
}

#[test]
fn unusable_public_key_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let r = write_signed(
        dir.path(),
        "r.json",
        receipt(0),
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, b"").unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, [7u8; 31]).unwrap();
    let keydir = dir.path().join("keydir");
    std::fs::create_dir(&keydir).unwrap();
    let missing = dir.path().join("missing.key");
    let private_pem = interop().join("keys/test-key.pkcs8.pem");
    let keypair = interop().join("keys/test-key.keypair.raw");
    for (path, needle) in [
        (&empty, "got 0 bytes"),
        (&short, "got 31 bytes"),
        (&keydir, "not a regular file"),
        (&missing, "failed to read key file"),
        (&private_pem, "PRIVATE key"),
        (&keypair, "seed+public"),
    ] {
        let o = csc(&[
            "verify-receipt",
            "--public-key",
            s(path),
            "--key-id",
            "k1",
            s(&r),
        ]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {out}{err}", path.display());
        assert!(
            err.contains(s(path)) && err.contains(needle),
            "{}: {err}",
            path.display()
        );
        assert!(out.is_empty());
    }
    // A raw 32-byte private seed cannot be told from a public key by its
    // length; either way it verifies nothing (fail closed).
    let o = csc(&[
        "verify-receipt",
        "--public-key",
        s(&interop().join("keys/test-key.seed.raw")),
        "--key-id",
        "csc-interop-test-key-1",
        s(&interop().join("reference-signed/success.json")),
    ]);
    // (This seed happens not to decode as a curve point, so it is refused
    // up front; a seed that does decode yields bad_signature instead.)
    assert_eq!(o.status.code(), Some(1));
    let (out, err) = text(&o);
    assert!(
        out.contains("(bad_signature)") || err.contains("not a valid Ed25519 public key"),
        "{out}{err}"
    );
}

#[test]
fn contract_and_policy_bindings() {
    let d = interop();
    let (pubkey, contract, policy) = (
        d.join("keys/test-key.pub.raw"),
        d.join("contract.json"),
        d.join("policy.yaml"),
    );
    let success = d.join("reference-signed/success.json");
    let ok = csc(&[
        "verify-receipt",
        "--public-key",
        s(&pubkey),
        "--key-id",
        "csc-interop-test-key-1",
        "--contract",
        s(&contract),
        "--policy",
        s(&policy),
        s(&success),
    ]);
    assert_eq!(ok.status.code(), Some(0), "{:?}", text(&ok));
    assert!(
        text(&ok)
            .0
            .contains("checked schema, signature, contract, policy")
    );

    let dir = tempfile::tempdir().unwrap();
    let mut c: Value = serde_json::from_slice(&std::fs::read(&contract).unwrap()).unwrap();
    c["intent"] = json!("something else entirely");
    let other_contract = dir.path().join("other.json");
    std::fs::write(&other_contract, serde_json::to_vec(&c).unwrap()).unwrap();
    let other_policy = dir.path().join("other.yaml");
    std::fs::write(
        &other_policy,
        std::fs::read_to_string(&policy)
            .unwrap()
            .replace("max_timeout_sec: 60", "max_timeout_sec: 61"),
    )
    .unwrap();
    let o = csc(&[
        "verify-receipt",
        "--public-key",
        s(&pubkey),
        "--key-id",
        "csc-interop-test-key-1",
        "--contract",
        s(&other_contract),
        "--policy",
        s(&other_policy),
        s(&success),
    ]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("(contract_mismatch)") && out.contains("(policy_mismatch)"),
        "{out}"
    );

    // A receipt without policy_sha256 cannot be bound to a policy.
    let k = key(1);
    let mut r = receipt(0);
    r.as_object_mut().unwrap().remove("policy_sha256");
    let p = write_signed(
        dir.path(),
        "nopolicy.json",
        r,
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    let pk = write_pub(dir.path(), &k);
    let o = csc(&[
        "verify-receipt",
        "--public-key",
        s(&pk),
        "--key-id",
        "k1",
        "--policy",
        s(&policy),
        s(&p),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).0.contains("(policy_sha256_missing)"));

    // An invalid --contract file is an error, not a silent skip.
    let o = csc(&[
        "verify-receipt",
        "--public-key",
        s(&pk),
        "--key-id",
        "k1",
        "--contract",
        s(&policy),
        s(&p),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains(s(&policy)));
}

fn sha(bytes: &[u8]) -> String {
    csc::canonical::sha256_hex(bytes)
}

#[test]
fn outputs_and_artifacts_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    std::fs::create_dir(&outputs).unwrap();
    let art = dir.path().join("artifact.txt");
    std::fs::write(&art, b"report\n").unwrap();
    let k = key(1);
    let pk = write_pub(dir.path(), &k);
    let mut r = receipt(0);
    r["completed_command_ids"] = json!(["first", "second"]);
    r["stdout_hash"] = json!(format!("sha256:{}", sha(b"hello\n")));
    r["stderr_hash"] = json!(format!("sha256:{}", sha(b"")));
    r["artifacts"] = json!([{"path": s(&art), "sha256": sha(b"report\n")}]);
    let p = write_signed(
        dir.path(),
        "r.json",
        r.clone(),
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    // Earlier commands' outputs may be saved too; the LAST one is bound.
    std::fs::write(outputs.join("first.stdout"), b"other").unwrap();
    std::fs::write(outputs.join("first.stderr"), b"other").unwrap();
    std::fs::write(outputs.join("second.stdout"), b"hello\n").unwrap();
    std::fs::write(outputs.join("second.stderr"), b"").unwrap();
    let run = |p: &Path| {
        csc(&[
            "verify-receipt",
            "--public-key",
            s(&pk),
            "--key-id",
            "k1",
            "--outputs",
            s(&outputs),
            s(p),
        ])
    };
    let o = run(&p);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("outputs, artifacts"));

    std::fs::write(outputs.join("second.stdout"), b"hellO\n").unwrap();
    let o = run(&p);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("second.stdout hashes to") && out.contains("(output_mismatch)"),
        "{out}"
    );
    std::fs::write(outputs.join("second.stdout"), b"hello\n").unwrap();

    std::fs::remove_file(outputs.join("second.stderr")).unwrap();
    let o = run(&p);
    assert!(
        text(&o)
            .0
            .contains("second.stderr is missing (its .stdout exists) (output_missing)")
    );
    std::fs::remove_file(outputs.join("second.stdout")).unwrap();
    // Now "first" is the last command with saved outputs: mismatch.
    let o = run(&p);
    assert!(text(&o).0.contains("first.stdout hashes to"));

    std::fs::write(outputs.join("second.stdout"), b"hello\n").unwrap();
    std::fs::write(outputs.join("second.stderr"), b"").unwrap();
    std::fs::write(&art, b"Report\n").unwrap();
    let o = run(&p);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("(artifact_mismatch)") && out.contains(s(&art)),
        "{out}"
    );
    std::fs::remove_file(&art).unwrap();
    let o = run(&p);
    assert!(text(&o).0.contains("does not exist (artifact_missing)"));

    // A command id that cannot be a file name is reported, not joined.
    let mut evil = r.clone();
    evil["completed_command_ids"] = json!(["../../etc/passwd"]);
    evil["artifacts"] = json!([]);
    let p = write_signed(
        dir.path(),
        "evil.json",
        evil,
        &k,
        "k1",
        "2026-11-21T12:00:02+00:00",
    );
    let o = run(&p);
    assert!(text(&o).0.contains("(output_unusable_command_id)"));

    // --outputs must be a directory.
    let o = csc(&[
        "verify-receipt",
        "--public-key",
        s(&pk),
        "--key-id",
        "k1",
        "--outputs",
        s(&pk),
        s(&p),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("is not a directory"));
}

/// The documented example keyring loads and verifies the golden receipts.
#[test]
fn example_keyring_verifies_golden_receipts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ring = root.join("examples/keyring.json");
    let mut args = vec![
        "verify-receipt".to_owned(),
        "--keyring".into(),
        s(&ring).into(),
    ];
    for dir in ["reference-signed", "ours-signed"] {
        for e in std::fs::read_dir(interop().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                args.push(s(&p).to_owned());
            }
        }
    }
    assert!(args.len() > 8);
    let o = Command::new(env!("CARGO_BIN_EXE_csc"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}
