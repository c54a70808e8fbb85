//! `csc attest` and attestations in `csc verify-receipt` (RFC 0012), and
//! interop with a verifier we did not write: Python `securesystemslib`
//! (DSSE) and `in-toto-attestation` (Statement v1), pinned in
//! `.ci/intoto-requirements.txt` and installed into /tmp/intoto-venv by
//! `.ci/run`. Skips loudly without the venv; FAILS without it when
//! CSC_REQUIRE_SANDBOX=1 (CI).

use crate::common;

use base64::Engine as _;
use common::*;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PYTHON: &str = "/tmp/intoto-venv/bin/python";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

struct A {
    ws: Ws,
    receipt: PathBuf,
    ring: PathBuf,
    attest_key: PathBuf,
}

/// A signed receipt (key "ops", seed 8) with an artifact, and a keyring
/// holding "ops" and the attestation key "att" (seed 9).
fn setup() -> A {
    let ws = ws();
    let op = ws.path("op.seed");
    std::fs::write(&op, [8u8; 32]).unwrap();
    let attest_key = ws.path("att.seed");
    std::fs::write(&attest_key, [9u8; 32]).unwrap();
    let out = ws.path("art.txt");
    let c = ws.contract_with(
        "c.json",
        vec![{
            let mut c = ws.cmd("t", &["sh", "-c", "echo hi; echo data > art.txt"]);
            c["write_paths"] = json!([ws.s("art.txt")]);
            c
        }],
        |c| c["expected_outputs"] = json!([out.display().to_string()]),
    );
    let r = ws.run(
        &c,
        &[
            "--sign",
            "--signing-key",
            op.to_str().unwrap(),
            "--key-id",
            "ops",
        ],
    );
    assert_eq!(r.status(), "success", "{}", r.stderr);
    let receipt = ws.path("kept-receipt.json");
    std::fs::rename(ws.path("receipt.json"), &receipt).unwrap();
    let pk = |s: u8| b64(SigningKey::from_bytes(&[s; 32]).verifying_key().as_bytes());
    let ring = ws.path("ring.json");
    std::fs::write(
        &ring,
        json!({"keyring_version": "csc.keyring.v1", "keys": [
            {"key_id": "ops", "public_key": pk(8)}, {"key_id": "att", "public_key": pk(9)}]})
        .to_string(),
    )
    .unwrap();
    A {
        ws,
        receipt,
        ring,
        attest_key,
    }
}

fn csc(args: &[&str]) -> Output {
    Command::new(CSC).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl A {
    fn attest(&self) -> PathBuf {
        let out = self.ws.path("r.intoto.jsonl");
        let o = csc(&[
            "attest",
            self.receipt.to_str().unwrap(),
            "--signing-key",
            self.attest_key.to_str().unwrap(),
            "--key-id",
            "att",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        out
    }

    fn verify(&self, file: &Path) -> Output {
        csc(&[
            "verify-receipt",
            file.to_str().unwrap(),
            "--keyring",
            self.ring.to_str().unwrap(),
        ])
    }
}

fn payload(line: &str) -> Value {
    let env: Value = serde_json::from_str(line).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(env["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn resign(a: &A, statement: &Value, seed: u8, kid: &str) -> String {
    let env = csc::evidence::dsse::Envelope::sign(
        csc::evidence::attest::PAYLOAD_TYPE,
        serde_json::to_vec(statement).unwrap(),
        &[(&SigningKey::from_bytes(&[seed; 32]), kid)],
    );
    let _ = a;
    String::from_utf8(env.to_line()).unwrap()
}

#[test]
fn attestation_is_a_statement_v1_over_the_receipt_and_verifies() {
    let a = setup();
    let att = a.attest();
    let line = std::fs::read_to_string(&att).unwrap();
    assert_eq!(line.lines().count(), 1);
    let env: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(env["signatures"][0]["keyid"], "att");
    let st = payload(&line);
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], csc::evidence::attest::PREDICATE_TYPE);
    let receipt: Value = serde_json::from_slice(&std::fs::read(&a.receipt).unwrap()).unwrap();
    assert_eq!(st["predicate"], receipt);
    let names: Vec<&str> = st["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"stdout") && names.contains(&"stderr"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with("art.txt")), "{names:?}");
    let stdout_hex = receipt["stdout_hash"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    assert!(
        st["subject"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["digest"]["sha256"] == stdout_hex)
    );

    let o = a.verify(&att);
    assert!(o.status.success(), "{}", text(&o));
    // The plain receipt still verifies too.
    assert!(a.verify(&a.receipt).status.success());
}

#[test]
fn tampered_attestations_fail_with_a_reason() {
    let a = setup();
    let line = std::fs::read_to_string(a.attest()).unwrap();
    let st = payload(&line);
    let bad = a.ws.path("bad.intoto.jsonl");
    let check = |content: String, needle: &str| {
        std::fs::write(&bad, content).unwrap();
        let o = a.verify(&bad);
        assert!(!o.status.success(), "{needle}: accepted");
        assert!(text(&o).contains(needle), "{needle}: {}", text(&o));
    };
    // Payload swapped after signing.
    let mut env: Value = serde_json::from_str(&line).unwrap();
    let mut st2 = st.clone();
    st2["predicate"]["exit_code"] = json!(1);
    env["payload"] = json!(b64(&serde_json::to_vec(&st2).unwrap()));
    check(env.to_string(), "subjects");
    // Same edit with subjects recomputed, re-signed by an untrusted key.
    let st2 = csc::evidence::attest::statement(&st2["predicate"]).unwrap();
    check(resign(&a, &st2, 7, "att"), "attestation_signature");
    // Predicate edited and re-signed by the trusted attestation key: the
    // receipt's own signature catches it.
    check(resign(&a, &st2, 9, "att"), "bad_signature");
    // Signature bytes flipped.
    let mut env: Value = serde_json::from_str(&line).unwrap();
    let sig = env["signatures"][0]["sig"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('A') { "B" } else { "A" },
        &sig[1..]
    );
    env["signatures"][0]["sig"] = json!(flipped);
    check(env.to_string(), "tampered");
    // Unknown attestation key id.
    check(resign(&a, &st, 9, "nobody"), "unknown key_id");
    // Second line broken.
    check(format!("{line}{{\"payloadType\":1}}\n"), "line 2");
}

fn venv() -> bool {
    if Path::new(PYTHON).exists() {
        let probe = Command::new(PYTHON)
            .args([
                "-c",
                "import securesystemslib.dsse, in_toto_attestation.v1.statement",
            ])
            .output();
        if probe.is_ok_and(|o| o.status.success()) {
            return true;
        }
    }
    assert!(
        std::env::var_os("CSC_REQUIRE_SANDBOX").is_none_or(|v| v != "1"),
        "CSC_REQUIRE_SANDBOX=1: {PYTHON} with securesystemslib and in-toto-attestation is required (.ci/run installs it from .ci/intoto-requirements.txt)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIP: {PYTHON} with securesystemslib/in-toto-attestation not found; in-toto interop not checked (see .ci/intoto-requirements.txt)"
    );
    false
}

const PY_VERIFY: &str = r#"
import json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
path, keyid, pub_hex = sys.argv[1:4]
key = SSlibKey(keyid, "ed25519", "ed25519", {"public": pub_hex})
for line in open(path):
    env = Envelope.from_dict(json.loads(line))
    assert env.payload_type == "application/vnd.in-toto+json", env.payload_type
    env.verify([key], 1)
    st = json.loads(env.payload)
    pb = json_format.ParseDict(st, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    print("OK", st["predicateType"], len(st["subject"]))
"#;

const PY_SIGN: &str = r#"
import json, sys, base64
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey
stmt_path, seed_hex, out = sys.argv[1:4]
priv = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
signer = CryptoSigner(priv)
payload = open(stmt_path, "rb").read()
env = Envelope(payload=payload, payload_type="application/vnd.in-toto+json", signatures={})
sig = env.sign(signer)
d = env.to_dict()
print(signer.public_key.keyid)
open(out, "w").write(json.dumps(d) + "\n")
"#;

#[test]
fn python_in_toto_verifies_ours_and_we_verify_theirs() {
    if !venv() {
        return;
    }
    let a = setup();
    let att = a.attest();
    let pub_hex = csc::canonical::hex(SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes());
    let o = Command::new(PYTHON)
        .args(["-c", PY_VERIFY, att.to_str().unwrap(), "att", &pub_hex])
        .output()
        .unwrap();
    assert!(o.status.success(), "python rejected ours: {}", text(&o));
    assert!(
        text(&o).contains(csc::evidence::attest::PREDICATE_TYPE),
        "{}",
        text(&o)
    );
    // Tampered twin: python must reject a flipped payload byte.
    let line = std::fs::read_to_string(&att).unwrap();
    let mut env: Value = serde_json::from_str(&line).unwrap();
    let mut st = payload(&line);
    st["predicate"]["exit_code"] = json!(3);
    env["payload"] = json!(b64(&serde_json::to_vec(&st).unwrap()));
    let bad = a.ws.path("bad.intoto.jsonl");
    std::fs::write(&bad, env.to_string() + "\n").unwrap();
    let o = Command::new(PYTHON)
        .args(["-c", PY_VERIFY, bad.to_str().unwrap(), "att", &pub_hex])
        .output()
        .unwrap();
    assert!(!o.status.success(), "python accepted a tampered envelope");

    // Their envelope over our statement: we verify it with their keyid.
    let stmt = a.ws.path("stmt.json");
    std::fs::write(&stmt, serde_json::to_vec(&payload(&line)).unwrap()).unwrap();
    let theirs = a.ws.path("theirs.intoto.jsonl");
    let o = Command::new(PYTHON)
        .args([
            "-c",
            PY_SIGN,
            stmt.to_str().unwrap(),
            &csc::canonical::hex(&[9u8; 32]),
            theirs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "python sign: {}", text(&o));
    let their_keyid = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let ring = a.ws.path("ring2.json");
    std::fs::write(
        &ring,
        json!({"keyring_version": "csc.keyring.v1", "keys": [
            {"key_id": "ops", "public_key": b64(SigningKey::from_bytes(&[8; 32]).verifying_key().as_bytes())},
            {"key_id": their_keyid, "public_key": b64(SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes())}]})
        .to_string(),
    )
    .unwrap();
    let o = csc(&[
        "verify-receipt",
        theirs.to_str().unwrap(),
        "--keyring",
        ring.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "we rejected theirs: {}", text(&o));
    // Tampered twin of theirs.
    let their_line = std::fs::read_to_string(&theirs).unwrap();
    let mut env: Value = serde_json::from_str(&their_line).unwrap();
    env["payload"] = json!(b64(&serde_json::to_vec(&st).unwrap()));
    std::fs::write(&theirs, env.to_string() + "\n").unwrap();
    let o = csc(&[
        "verify-receipt",
        theirs.to_str().unwrap(),
        "--keyring",
        ring.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}
