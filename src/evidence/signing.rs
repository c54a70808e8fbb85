//! Receipt signatures, interoperable with the reference.
//!
//! Payload = canonical JSON of the whole receipt with only the nested
//! `signature.signature` member removed (so `algorithm`, `key_id` and
//! `signed_at` are authenticated). `null` members are kept, exactly as the
//! reference serializes them. Signature = standard padded base64 of the
//! 64-byte Ed25519 signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Value, json};

use crate::canonical::{Nulls, to_canonical_bytes};

/// The only algorithm v0.1 defines.
pub const ALGORITHM: &str = "ed25519";

/// Why a receipt signature does not verify. Each variant is one reason an
/// auditor sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum VerifyError {
    #[error("receipt is not a JSON object")]
    NotAnObject,
    #[error("missing signature")]
    Missing,
    #[error("malformed signature object")]
    Malformed,
    #[error("unsupported algorithm: {0}")]
    Algorithm(String),
    #[error("missing key_id in signature")]
    MissingKeyId,
    #[error("missing signature value")]
    MissingValue,
    #[error("malformed signature encoding: {0}")]
    BadBase64(String),
    #[error("unknown key_id: {0:?}")]
    UnknownKey(String),
    #[error("invalid signature")]
    BadSignature,
}

/// Canonical bytes that are signed for `receipt`.
pub fn signing_payload(receipt: &Value) -> Vec<u8> {
    let mut payload = receipt.clone();
    if let Some(obj) = payload.as_object_mut() {
        match obj.get_mut("signature") {
            Some(Value::Object(sig)) => {
                sig.remove("signature");
            }
            Some(_) => {
                obj.remove("signature");
            }
            None => {}
        }
    }
    to_canonical_bytes(&payload, Nulls::Keep)
}

/// Attach a signature block to `receipt` (which must be a JSON object).
pub fn sign_receipt(
    receipt: &mut Value,
    key: &SigningKey,
    key_id: &str,
    signed_at: &str,
) -> Result<(), String> {
    if key_id.is_empty() {
        return Err("key_id must be non-empty".to_owned());
    }
    let obj = receipt
        .as_object_mut()
        .ok_or("receipt is not a JSON object")?;
    obj.insert(
        "signature".to_owned(),
        json!({"algorithm": ALGORITHM, "key_id": key_id, "signed_at": signed_at}),
    );
    let signature = key.sign(&signing_payload(receipt));
    let encoded = STANDARD.encode(signature.to_bytes());
    if let Some(Value::Object(sig)) = receipt.get_mut("signature") {
        sig.insert("signature".to_owned(), Value::String(encoded));
    }
    Ok(())
}

/// The `key_id` a signed receipt names, if any.
pub fn signature_key_id(receipt: &Value) -> Option<&str> {
    receipt.get("signature")?.get("key_id")?.as_str()
}

/// Verify a receipt's signature, resolving its `key_id` with `resolve`.
pub fn verify_receipt(
    receipt: &Value,
    resolve: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<(), VerifyError> {
    let obj = receipt.as_object().ok_or(VerifyError::NotAnObject)?;
    let sig = match obj.get("signature") {
        None | Some(Value::Null) => return Err(VerifyError::Missing),
        Some(Value::Object(sig)) => sig,
        Some(_) => return Err(VerifyError::Malformed),
    };
    match sig.get("algorithm") {
        Some(Value::String(a)) if a == ALGORITHM => {}
        other => {
            return Err(VerifyError::Algorithm(
                other.map(Value::to_string).unwrap_or_else(|| "none".into()),
            ));
        }
    }
    let key_id = match sig.get("key_id") {
        Some(Value::String(k)) if !k.is_empty() => k,
        _ => return Err(VerifyError::MissingKeyId),
    };
    let value = match sig.get("signature") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(VerifyError::MissingValue),
    };
    let raw = STANDARD
        .decode(value.as_bytes())
        .map_err(|e| VerifyError::BadBase64(e.to_string()))?;
    let raw: [u8; 64] = raw
        .as_slice()
        .try_into()
        .map_err(|_| VerifyError::BadBase64(format!("decoded {} bytes, expected 64", raw.len())))?;
    let key = resolve(key_id).ok_or_else(|| VerifyError::UnknownKey(key_id.clone()))?;
    key.verify_strict(&signing_payload(receipt), &Signature::from_bytes(&raw))
        .map_err(|_| VerifyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Value {
        json!({"receipt_version": "csc.receipt.v0.1", "contract_id": "c-12345678",
               "failed_command_id": null, "error": "é"})
    }

    #[test]
    fn sign_then_verify_and_tampered_twins_fail() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let vk = key.verifying_key();
        let mut r = receipt();
        sign_receipt(&mut r, &key, "k1", "2026-11-21T00:00:00+00:00").unwrap();
        assert_eq!(verify_receipt(&r, |id| (id == "k1").then_some(vk)), Ok(()));

        let mut tampered = r.clone();
        tampered["error"] = json!("x");
        assert_eq!(
            verify_receipt(&tampered, |_| Some(vk)),
            Err(VerifyError::BadSignature)
        );

        let mut meta = r.clone();
        meta["signature"]["signed_at"] = json!("2030-01-01T00:00:00+00:00");
        assert_eq!(
            verify_receipt(&meta, |_| Some(vk)),
            Err(VerifyError::BadSignature)
        );

        assert!(matches!(
            verify_receipt(&r, |_| None),
            Err(VerifyError::UnknownKey(_))
        ));

        let mut b64 = r.clone();
        b64["signature"]["signature"] = json!("!!!");
        assert!(matches!(
            verify_receipt(&b64, |_| Some(vk)),
            Err(VerifyError::BadBase64(_))
        ));

        let mut alg = r.clone();
        alg["signature"]["algorithm"] = json!("rsa");
        assert!(matches!(
            verify_receipt(&alg, |_| Some(vk)),
            Err(VerifyError::Algorithm(_))
        ));

        assert_eq!(
            verify_receipt(&receipt(), |_| Some(vk)),
            Err(VerifyError::Missing)
        );
    }
}
