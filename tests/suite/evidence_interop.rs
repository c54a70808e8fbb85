//! Signature interop with the Python reference (csc_runner 0.5.2), pinned by
//! committed golden files in `tests/data/interop/` (see its README.md).
//! Every good case is paired with tampered twins.

// SKIP lines bypass libtest output capture so skips are always visible.
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use csc::evidence::keyring::Keyring;
use csc::evidence::keys;
use csc::evidence::signing;
use csc::evidence::verify::{Bindings, ReceiptReport, Verifier};
use csc::protocol::load;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const KEY_ID: &str = "csc-interop-test-key-1";
const REFERENCE_PYTHON: &str = "/tmp/refenv/bin/python";

/// A loud `SKIP:` line, or a failure when `CSC_REQUIRE_REFERENCE=1` (set
/// by `.ci/run`, which installs the pinned reference into /tmp/refenv).
fn skip_reference(message: &str) {
    if std::env::var_os("CSC_REQUIRE_REFERENCE").is_some_and(|v| v == "1") {
        panic!("CSC_REQUIRE_REFERENCE=1 but: {message}");
    }
    let _ = writeln!(std::io::stderr(), "SKIP: {message}");
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/interop")
}

fn json_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden files in {dir}");
    files
}

fn test_key() -> SigningKey {
    keys::load_signing_key(&data().join("keys/test-key.seed.raw")).unwrap()
}

fn verifier() -> Verifier {
    let vk = keys::load_verifying_key(&data().join("keys/test-key.pub.raw")).unwrap();
    Verifier::new(Keyring::single(KEY_ID, vk), Bindings::default())
}

fn codes(report: &ReceiptReport) -> Vec<&'static str> {
    report.problems.iter().map(|p| p.code).collect()
}

fn verify_value(v: &Verifier, receipt: &Value) -> Vec<&'static str> {
    let mut report = ReceiptReport::new("mem");
    v.verify_value(receipt, &mut report);
    codes(&report)
}

#[test]
fn all_key_forms_are_the_same_test_key() {
    let seed_hex = std::fs::read_to_string(data().join("keys/test-key.seed.hex")).unwrap();
    let seed = test_key();
    assert_eq!(csc::canonical::hex(seed.as_bytes()), seed_hex.trim());
    for form in [
        "test-key.seed.raw",
        "test-key.keypair.raw",
        "test-key.pkcs8.pem",
    ] {
        let k = keys::load_signing_key(&data().join("keys").join(form)).unwrap();
        assert_eq!(k.as_bytes(), seed.as_bytes(), "{form}");
    }
    for form in ["test-key.pub.raw", "test-key.pub.pem"] {
        let vk = keys::load_verifying_key(&data().join("keys").join(form)).unwrap();
        assert_eq!(vk, seed.verifying_key(), "{form}");
    }
    // Our PEM writers produce exactly what Python `cryptography` wrote.
    let pem = std::fs::read_to_string(data().join("keys/test-key.pkcs8.pem")).unwrap();
    assert_eq!(keys::signing_key_to_pkcs8_v1_pem(&seed), pem);
    let spki = std::fs::read_to_string(data().join("keys/test-key.pub.pem")).unwrap();
    assert_eq!(keys::verifying_key_to_spki_pem(&seed.verifying_key()), spki);
}

#[test]
fn reference_signed_receipts_verify() {
    let v = verifier();
    let files = json_files("reference-signed");
    assert!(files.len() >= 5);
    for path in files {
        let report = v.verify_file(&path);
        assert!(report.valid, "{}: {:?}", path.display(), report.problems);
        assert_eq!(report.key_id.as_deref(), Some(KEY_ID));
    }
}

#[test]
fn reference_golden_set_covers_the_required_shapes() {
    let load =
        |name: &str| load::load_receipt(&data().join("reference-signed").join(name)).unwrap();
    assert_eq!(load("success.json")["status"], "success");
    assert_eq!(load("failed.json")["status"], "failed");
    let blocked = load("blocked.json");
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["failed_command_id"], Value::Null);
    let unicode = load("error-unicode.json");
    let error = unicode["error"].as_str().unwrap();
    assert!(error.contains('\u{0}') && error.contains('\u{7f}') && error.contains('😀'));
    assert!(error.contains('\u{2028}') && error.contains("日本語"));
    // The same receipt written with and without \u escapes.
    assert_eq!(unicode, load("error-unicode.utf8.json"));
}

/// The hashes the reference computed for the interop contract and policy
/// equal ours, so `--contract`/`--policy` bindings agree across implementations.
#[test]
fn contract_and_policy_hashes_match_the_reference() {
    let expected: Value =
        serde_json::from_slice(&std::fs::read(data().join("expected-hashes.json")).unwrap())
            .unwrap();
    let contract = load::load_contract(&data().join("contract.json")).unwrap();
    assert_eq!(contract.contract.sha256(), expected["contract.json"]);
    let policy = load::load_policy(&data().join("policy.yaml")).unwrap();
    assert_eq!(policy.sha256(), expected["policy.yaml"]);
    let v = Verifier::new(
        Keyring::single(KEY_ID, test_key().verifying_key()),
        Bindings {
            contract_sha256: Some(contract.contract.sha256()),
            policy_sha256: Some(policy.sha256()),
            outputs_dir: None,
        },
    );
    for name in ["success.json", "error-unicode.json"] {
        let report = v.verify_file(&data().join("reference-signed").join(name));
        assert!(report.valid, "{name}: {:?}", report.problems);
    }
    // Twin: the blocked receipt is for a different (denied) contract.
    let report = v.verify_file(&data().join("reference-signed/blocked.json"));
    assert_eq!(codes(&report), ["contract_mismatch"]);
}

#[test]
fn tampered_twins_of_reference_receipts_fail() {
    let v = verifier();
    let vk = test_key().verifying_key();
    for path in json_files("reference-signed") {
        let name = path.display().to_string();
        let good = load::load_receipt(&path).unwrap();
        assert!(verify_value(&v, &good).is_empty(), "{name}");

        // One character of a signed field changed.
        let mut t = good.clone();
        let id = t["contract_id"].as_str().unwrap().to_owned();
        let mut bytes = id.into_bytes();
        bytes[0] ^= 0x01;
        t["contract_id"] = json!(String::from_utf8(bytes).unwrap());
        assert_eq!(
            verify_value(&v, &t),
            ["bad_signature"],
            "{name}: contract_id"
        );

        let mut t = good.clone();
        t["status"] = json!(if good["status"] == "success" {
            "failed"
        } else {
            "success"
        });
        assert_eq!(verify_value(&v, &t), ["bad_signature"], "{name}: status");

        let mut t = good.clone();
        t["error"] = json!(format!("{} ", good["error"].as_str().unwrap_or("")));
        assert_eq!(verify_value(&v, &t), ["bad_signature"], "{name}: error");

        // Dropping a null member changes the payload (nulls are signed).
        let mut t = good.clone();
        t.as_object_mut().unwrap().remove("failed_command_id");
        if good.get("failed_command_id").is_some() {
            assert_eq!(verify_value(&v, &t), ["bad_signature"], "{name}: null");
        }

        // signed_at changed.
        let mut t = good.clone();
        t["signature"]["signed_at"] = json!("2030-01-01T00:00:00+00:00");
        assert_eq!(verify_value(&v, &t), ["bad_signature"], "{name}: signed_at");

        // key_id changed: unknown, and — when the same key is trusted under
        // the new id too — still a bad signature (key_id is authenticated).
        let mut t = good.clone();
        t["signature"]["key_id"] = json!("csc-interop-test-key-2");
        assert_eq!(verify_value(&v, &t), ["unknown_key_id"], "{name}: key_id");
        let both = Verifier::new(
            Keyring::from_bytes(
                format!(
                    r#"{{"keyring_version":"csc.keyring.v1","keys":[
                        {{"key_id":"{KEY_ID}","public_key":"{k}"}},
                        {{"key_id":"csc-interop-test-key-2","public_key":"{k}"}}]}}"#,
                    k = STANDARD.encode(vk.as_bytes())
                )
                .as_bytes(),
                "test",
            )
            .unwrap(),
            Bindings::default(),
        );
        assert!(verify_value(&both, &good).is_empty());
        assert_eq!(verify_value(&both, &t), ["bad_signature"], "{name}: key_id");

        // Signature base64 corrupted: bad alphabet, bad padding, one flipped bit.
        let sig = good["signature"]["signature"].as_str().unwrap().to_owned();
        let mut t = good.clone();
        t["signature"]["signature"] = json!(format!("*{}", &sig[1..]));
        assert_eq!(verify_value(&v, &t), ["bad_signature_encoding"], "{name}");
        let mut t = good.clone();
        t["signature"]["signature"] = json!(sig.trim_end_matches('='));
        assert_eq!(verify_value(&v, &t), ["bad_signature_encoding"], "{name}");
        let mut raw = STANDARD.decode(&sig).unwrap();
        raw[10] ^= 0x04;
        let mut t = good.clone();
        t["signature"]["signature"] = json!(STANDARD.encode(&raw));
        assert_eq!(verify_value(&v, &t), ["bad_signature"], "{name}: bit flip");

        // Algorithm changed, signature removed, signature value removed.
        let mut t = good.clone();
        t["signature"]["algorithm"] = json!("Ed25519");
        assert_eq!(verify_value(&v, &t), ["unsupported_algorithm"], "{name}");
        let mut t = good.clone();
        t.as_object_mut().unwrap().remove("signature");
        assert_eq!(verify_value(&v, &t), ["missing_signature"], "{name}");
        let mut t = good.clone();
        t["signature"].as_object_mut().unwrap().remove("signature");
        assert_eq!(verify_value(&v, &t), ["missing_signature_value"], "{name}");
    }
}

/// One byte of the file on disk changed inside a string value.
#[test]
fn byte_level_file_tamper_fails() {
    let dir = tempfile::tempdir().unwrap();
    let v = verifier();
    for path in json_files("reference-signed") {
        let text = std::fs::read_to_string(&path).unwrap();
        let needle = "\"execution_id\": \"exec";
        let at = text.find(needle).unwrap() + needle.len();
        let mut bytes = text.into_bytes();
        bytes[at] = b'X';
        let twin = dir.path().join(path.file_name().unwrap());
        std::fs::write(&twin, &bytes).unwrap();
        let report = v.verify_file(&twin);
        assert_eq!(codes(&report), ["bad_signature"], "{}", path.display());
    }
}

/// Ed25519 is deterministic: re-signing the reference's receipts with our
/// signer (every key form) gives the reference's exact signature bytes.
#[test]
fn our_signer_reproduces_reference_signatures() {
    for path in json_files("reference-signed") {
        let golden = load::load_receipt(&path).unwrap();
        let sig = &golden["signature"];
        let mut unsigned = golden.clone();
        unsigned.as_object_mut().unwrap().remove("signature");
        for form in [
            "test-key.seed.raw",
            "test-key.keypair.raw",
            "test-key.pkcs8.pem",
        ] {
            let key = keys::load_signing_key(&data().join("keys").join(form)).unwrap();
            let mut ours = unsigned.clone();
            signing::sign_receipt(
                &mut ours,
                &key,
                sig["key_id"].as_str().unwrap(),
                sig["signed_at"].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(
                ours["signature"]["signature"],
                sig["signature"],
                "{} with {form}",
                path.display()
            );
            assert_eq!(ours, golden);
        }
    }
}

/// `ours-signed/` was produced by our signer (examples/interop_sign.rs) and
/// checked by the reference (REFERENCE-VERIFICATION.txt). Re-signing now must
/// reproduce the committed bytes; our verifier accepts them; twins fail.
#[test]
fn ours_signed_golden_files_are_reproducible_and_reference_verified() {
    let key = test_key();
    let v = verifier();
    let record =
        std::fs::read_to_string(data().join("ours-signed/REFERENCE-VERIFICATION.txt")).unwrap();
    assert!(!record.contains("INVALID") && !record.contains("DIFFERENT"));
    for path in json_files("ours-signed") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            record.contains(&format!(
                "{name}: reference verify_receipt_signature: VALID; reference re-sign: identical"
            )),
            "{name} not recorded as reference-verified"
        );
        let golden = load::load_receipt(&path).unwrap();
        let mut ours: Value =
            serde_json::from_slice(&std::fs::read(data().join("unsigned").join(&name)).unwrap())
                .unwrap();
        signing::sign_receipt(
            &mut ours,
            &key,
            KEY_ID,
            golden["signature"]["signed_at"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(ours, golden, "{name}");
        assert!(v.verify_file(&path).valid, "{name}");
        let mut twin = golden.clone();
        twin["execution_id"] = json!("exec-tampered");
        assert_eq!(verify_value(&v, &twin), ["bad_signature"], "{name}");
    }
}

/// Live cross-check: freshly signed receipts (random-ish content) verified
/// by the reference's `verify_receipt_signature`, and signed by the
/// reference to identical bytes. Skips loudly without the reference venv.
#[test]
fn live_reference_cross_check() {
    if !Path::new(REFERENCE_PYTHON).exists() {
        skip_reference(&format!(
            "{REFERENCE_PYTHON} not found; live reference cross-check not run"
        ));
        return;
    }
    let probe = std::process::Command::new(REFERENCE_PYTHON)
        .args(["-c", "import csc_runner.signing"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip_reference(&format!(
            "csc_runner not importable by {REFERENCE_PYTHON}; live cross-check not run"
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = test_key();
    let samples = [
        "plain",
        "é",
        "日本語",
        "😀🦀",
        "\u{0}\u{1}\u{1f}\u{7f}",
        "\n\r\t\u{8}\u{c}",
        "\"\\/",
        "\u{2028}\u{2029}\u{feff}\u{85}",
        "",
    ];
    for (i, s) in samples.iter().enumerate() {
        let mut r = json!({
            "receipt_version": "csc.receipt.v0.1", "contract_id": format!("ctr-{s}-{i}"),
            "execution_id": format!("exec-{i}"), "contract_sha256": "0".repeat(64),
            "status": "failed", "started_at": "2026-11-21T12:00:00+00:00",
            "ended_at": "2026-11-21T12:00:01+00:00", "policy_profile": s,
            "exit_code": -(i as i64), "stdout_hash": format!("sha256:{}", "1".repeat(64)),
            "stderr_hash": format!("sha256:{}", "2".repeat(64)),
            "effect_summary": {"files_written": i, "network_used": i % 2 == 0, "secrets_used": 0},
            "completed_command_ids": [s, format!("{s}{i}")], "failed_command_id": null,
            "error": s.repeat(i + 1), "nested": {"z": [1, null, true], "a": {"é": s}}
        });
        // Not schema-valid ("nested"): the signature layer signs any object.
        signing::sign_receipt(&mut r, &key, KEY_ID, "2026-11-21T12:00:02+00:00").unwrap();
        std::fs::write(
            dir.path().join(format!("r{i}.json")),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
    }
    let script = r#"
import json, sys, pathlib
from csc_runner.signing import StaticKeyResolver, verify_receipt_signature, sign_receipt
d = pathlib.Path(sys.argv[1]); seed = bytes.fromhex(sys.argv[2]); pub = bytes.fromhex(sys.argv[3])
res = StaticKeyResolver(keys={"csc-interop-test-key-1": pub})
n = 0
for p in sorted(d.glob("*.json")):
    r = json.loads(p.read_text("utf-8"))
    verify_receipt_signature(r, resolver=res)
    u = dict(r); del u["signature"]
    again = sign_receipt(u, private_key_bytes=seed, key_id=r["signature"]["key_id"], signed_at=r["signature"]["signed_at"])
    assert again == r, p
    n += 1
print(f"reference verified {n}")
"#;
    let out = std::process::Command::new(REFERENCE_PYTHON)
        .args(["-c", script])
        .arg(dir.path())
        .arg(csc::canonical::hex(key.as_bytes()))
        .arg(csc::canonical::hex(key.verifying_key().as_bytes()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reference rejected: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("reference verified {}", samples.len())
    );
}
