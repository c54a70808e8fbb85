//! in-toto attestations of receipts (RFC 0012): an in-toto Statement v1
//! whose predicate is the (signed) receipt, in a DSSE envelope of payload
//! type `application/vnd.in-toto+json`, one envelope per line
//! (`.intoto.jsonl`).
//!
//! Subjects: every `artifacts[]` entry (name = its path), the captured
//! streams the receipt hashes (`stdout`, `stderr`), and the receipt itself
//! (`receipt:<execution_id>`, digest of its canonical bytes), so there is
//! always at least one.

use serde_json::{Map, Value, json};

use super::dsse::{Envelope, SigOutcome};
use super::keyring::Keyring;
use crate::canonical::sha256_hex;

/// DSSE payload type of in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Our predicate: a CSC v0.1 ExecutionReceipt (RFC 0012).
pub const PREDICATE_TYPE: &str = "https://csc.dev/attestation/execution-receipt/v0.1";

/// The subjects a receipt yields, in a fixed order.
pub fn subjects(receipt: &Value) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    if let Some(arts) = receipt.get("artifacts").and_then(Value::as_array) {
        for a in arts {
            let (Some(path), Some(sha)) = (
                a.get("path").and_then(Value::as_str),
                a.get("sha256").and_then(Value::as_str),
            ) else {
                return Err("an artifacts entry has no path/sha256".to_owned());
            };
            out.push(json!({"name": path, "digest": {"sha256": sha}}));
        }
    }
    for stream in ["stdout", "stderr"] {
        if let Some(h) = receipt
            .get(format!("{stream}_hash"))
            .and_then(Value::as_str)
        {
            let hex = h
                .strip_prefix("sha256:")
                .ok_or_else(|| format!("{stream}_hash is not sha256:<hex>"))?;
            out.push(json!({"name": stream, "digest": {"sha256": hex}}));
        }
    }
    let id = receipt
        .get("execution_id")
        .and_then(Value::as_str)
        .ok_or("receipt has no execution_id")?;
    let canonical = crate::canonical::to_canonical_bytes(receipt, crate::canonical::Nulls::Keep);
    out.push(
        json!({"name": format!("receipt:{id}"), "digest": {"sha256": sha256_hex(&canonical)}}),
    );
    Ok(out)
}

/// The in-toto Statement for `receipt`.
pub fn statement(receipt: &Value) -> Result<Value, String> {
    Ok(json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects(receipt)?,
        "predicateType": PREDICATE_TYPE,
        "predicate": receipt,
    }))
}

/// Sign the statement of `receipt` into one DSSE envelope.
pub fn attest(
    receipt: &Value,
    key: &ed25519_dalek::SigningKey,
    key_id: &str,
) -> Result<Envelope, String> {
    let payload = serde_json::to_vec(&statement(receipt)?).map_err(|e| e.to_string())?;
    Ok(Envelope::sign(PAYLOAD_TYPE, payload, &[(key, key_id)]))
}

fn only(obj: &Map<String, Value>, keys: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("statement has unknown member {k:?}")),
        None => Ok(()),
    }
}

/// Check an envelope's shape and statement, returning the receipt it
/// attests. The envelope's signatures are checked by [`verify_envelope`].
pub fn open(envelope: &Envelope) -> Result<Value, String> {
    envelope
        .expect_type(PAYLOAD_TYPE)
        .map_err(|e| e.to_string())?;
    let st = crate::protocol::strict_json::parse(&envelope.payload)
        .map_err(|e| format!("statement is not JSON: {e}"))?;
    let obj = st.as_object().ok_or("statement is not a JSON object")?;
    only(obj, &["_type", "subject", "predicateType", "predicate"])?;
    if obj.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
        return Err(format!("statement _type is not {STATEMENT_TYPE:?}"));
    }
    if obj.get("predicateType").and_then(Value::as_str) != Some(PREDICATE_TYPE) {
        return Err(format!("predicateType is not {PREDICATE_TYPE:?}"));
    }
    let receipt = obj
        .get("predicate")
        .cloned()
        .ok_or("statement has no predicate")?;
    let expected = subjects(&receipt)?;
    if obj.get("subject") != Some(&Value::Array(expected)) {
        return Err(
            "statement subjects do not match the receipt's artifacts, streams and hash".to_owned(),
        );
    }
    Ok(receipt)
}

/// Verify every envelope signature with a keyring key usable at the
/// receipt's `signature.signed_at`; returns the signing key ids.
pub fn verify_envelope(
    envelope: &Envelope,
    receipt: &Value,
    keyring: &Keyring,
) -> Result<Vec<String>, String> {
    let signed_at = receipt
        .get("signature")
        .and_then(|s| s.get("signed_at"))
        .and_then(Value::as_str);
    let mut keys = Vec::new();
    for (kid, outcome) in envelope.verify(|kid| {
        keyring
            .usable_key(kid, signed_at)
            .copied()
            .map_err(|e| e.to_string())
    }) {
        match outcome {
            SigOutcome::Valid => keys.push(kid),
            SigOutcome::KeyRejected(why) => return Err(format!("attestation key: {why}")),
            SigOutcome::BadSignature => {
                return Err(format!(
                    "attestation signature by {kid:?} does not verify (tampered)"
                ));
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn receipt() -> Value {
        json!({
            "receipt_version": "csc.receipt.v0.1", "execution_id": "exec_1",
            "stdout_hash": format!("sha256:{}", "a".repeat(64)),
            "stderr_hash": format!("sha256:{}", "b".repeat(64)),
            "artifacts": [{"path": "/w/out.bin", "sha256": "c".repeat(64)}],
            "status": "success"
        })
    }

    #[test]
    fn statement_roundtrip_and_tampered_twins() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let env = attest(&receipt(), &key, "k").unwrap();
        let st: Value = serde_json::from_slice(&env.payload).unwrap();
        assert_eq!(st["subject"].as_array().unwrap().len(), 4);
        assert_eq!(st["subject"][1]["name"], "stdout");
        assert_eq!(open(&env).unwrap(), receipt());
        let ring = Keyring::single("k", key.verifying_key());
        assert_eq!(verify_envelope(&env, &receipt(), &ring).unwrap(), vec!["k"]);

        // Predicate edited and subjects not updated: refused by shape.
        let mut st2 = st.clone();
        st2["predicate"]["status"] = json!("failed");
        let forged = Envelope::sign(
            PAYLOAD_TYPE,
            serde_json::to_vec(&st2).unwrap(),
            &[(&key, "k")],
        );
        assert!(open(&forged).unwrap_err().contains("subjects"));
        // Payload edited after signing: signature fails.
        let mut t = env.clone();
        t.payload = serde_json::to_vec(&st2).unwrap();
        assert!(
            verify_envelope(&t, &receipt(), &ring)
                .unwrap_err()
                .contains("tampered")
        );
        // Other predicate type, extra member, wrong payload type.
        for edit in [
            json!({"predicateType": "https://slsa.dev/provenance/v1"}),
            json!({"extra": 1}),
            json!({"_type": "https://in-toto.io/Statement/v0.1"}),
        ] {
            let mut s = st.clone();
            s.as_object_mut()
                .unwrap()
                .extend(edit.as_object().unwrap().clone());
            let e = Envelope::sign(
                PAYLOAD_TYPE,
                serde_json::to_vec(&s).unwrap(),
                &[(&key, "k")],
            );
            assert!(open(&e).is_err(), "{s}");
        }
        let e = Envelope::sign("application/json", env.payload.clone(), &[(&key, "k")]);
        assert!(open(&e).is_err());
    }

    proptest::proptest! {
        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let e = Envelope { payload: bytes, payload_type: PAYLOAD_TYPE.into(), signatures: vec![] };
            let _ = open(&e);
        }
    }
}
