//! DSSE (Dead Simple Signing Envelope) v1 with Ed25519, as used by
//! in-toto and sigstore:
//!
//! ```json
//! {"payload": "<base64>", "payloadType": "<type>",
//!  "signatures": [{"keyid": "<key id>", "sig": "<base64>"}]}
//! ```
//!
//! Each signature covers `PAE(payloadType, payload)` =
//! `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body` (lengths in ASCII
//! decimal). Parsing is strict: duplicate or unknown members, missing or
//! empty `keyid`, non-canonical base64 and oversized envelopes are errors.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};

/// Largest envelope file csc reads (a 1 MiB document, base64, plus room).
pub const MAX_ENVELOPE_BYTES: usize = 2 * 1024 * 1024;
/// Most signatures one envelope may carry.
pub const MAX_SIGNATURES: usize = 16;
/// Longest `keyid` accepted.
pub const MAX_KEYID_CHARS: usize = 256;

/// Why bytes are not a well-formed DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum DsseError {
    #[error("envelope is {0} bytes (max {MAX_ENVELOPE_BYTES})")]
    TooLarge(usize),
    #[error("envelope is not valid JSON: {0}")]
    Json(String),
    #[error("envelope is malformed: {0}")]
    Malformed(String),
    #[error("envelope payloadType is {found:?}, expected {expected:?}")]
    PayloadType { found: String, expected: String },
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// The signer's key id (a keyring `key_id`).
    pub keyid: String,
    /// The raw 64-byte Ed25519 signature.
    pub sig: [u8; 64],
}

/// A parsed DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// The payload's media type.
    pub payload_type: String,
    /// At least one signature.
    pub signatures: Vec<EnvelopeSignature>,
}

/// What became of one signature during [`Envelope::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigOutcome {
    /// Verified with the key the resolver returned.
    Valid,
    /// The resolver refused the key id (unknown, revoked, outside its window).
    KeyRejected(String),
    /// The key is trusted but the signature does not verify (tampered).
    BadSignature,
}

/// The DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

fn malformed(what: impl Into<String>) -> DsseError {
    DsseError::Malformed(what.into())
}

fn take_string(obj: &mut Map<String, Value>, key: &str, what: &str) -> Result<String, DsseError> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(malformed(format!("{what} `{key}` is not a string"))),
        None => Err(malformed(format!("{what} has no `{key}`"))),
    }
}

fn decode_b64(text: &str, what: &str) -> Result<Vec<u8>, DsseError> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|e| malformed(format!("{what} is not standard padded base64: {e}")))
}

fn no_extra(obj: &Map<String, Value>, what: &str) -> Result<(), DsseError> {
    match obj.keys().next() {
        None => Ok(()),
        Some(k) => Err(malformed(format!("{what} has unknown member {k:?}"))),
    }
}

impl Envelope {
    /// Sign `payload` as `payload_type` with each `(key, key id)`.
    pub fn sign(payload_type: &str, payload: Vec<u8>, signers: &[(&SigningKey, &str)]) -> Self {
        let message = pae(payload_type, &payload);
        let signatures = signers
            .iter()
            .map(|(key, id)| EnvelopeSignature {
                keyid: (*id).to_owned(),
                sig: key.sign(&message).to_bytes(),
            })
            .collect();
        Envelope {
            payload,
            payload_type: payload_type.to_owned(),
            signatures,
        }
    }

    /// Parse and check the shape of an envelope (signatures not verified).
    pub fn parse(bytes: &[u8]) -> Result<Self, DsseError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DsseError::TooLarge(bytes.len()));
        }
        let value = crate::protocol::strict_json::parse(bytes)
            .map_err(|e| DsseError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// Check the shape of an already parsed envelope.
    pub fn from_value(value: Value) -> Result<Self, DsseError> {
        let Value::Object(mut obj) = value else {
            return Err(malformed("not a JSON object"));
        };
        let payload = take_string(&mut obj, "payload", "envelope")?;
        let payload = decode_b64(&payload, "payload")?;
        let payload_type = take_string(&mut obj, "payloadType", "envelope")?;
        if payload_type.is_empty() {
            return Err(malformed("payloadType is empty"));
        }
        let sigs = match obj.remove("signatures") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(malformed("`signatures` is not an array")),
            None => return Err(malformed("envelope has no `signatures`")),
        };
        no_extra(&obj, "envelope")?;
        if sigs.is_empty() {
            return Err(malformed("envelope has no signatures"));
        }
        if sigs.len() > MAX_SIGNATURES {
            return Err(malformed(format!(
                "envelope has {} signatures (max {MAX_SIGNATURES})",
                sigs.len()
            )));
        }
        let mut signatures = Vec::with_capacity(sigs.len());
        for (i, s) in sigs.into_iter().enumerate() {
            let what = format!("signature {i}");
            let Value::Object(mut s) = s else {
                return Err(malformed(format!("{what} is not an object")));
            };
            let keyid = take_string(&mut s, "keyid", &what)?;
            let sig = take_string(&mut s, "sig", &what)?;
            no_extra(&s, &what)?;
            if keyid.is_empty() || keyid.chars().count() > MAX_KEYID_CHARS {
                return Err(malformed(format!(
                    "{what}: keyid must be 1..={MAX_KEYID_CHARS} characters"
                )));
            }
            let raw = decode_b64(&sig, &format!("{what} sig"))?;
            let sig: [u8; 64] = raw.try_into().map_err(|raw: Vec<u8>| {
                malformed(format!(
                    "{what}: sig is {} bytes, an Ed25519 signature is 64",
                    raw.len()
                ))
            })?;
            signatures.push(EnvelopeSignature { keyid, sig });
        }
        Ok(Envelope {
            payload,
            payload_type,
            signatures,
        })
    }

    /// Refuse any payload type but `expected`.
    pub fn expect_type(&self, expected: &str) -> Result<(), DsseError> {
        if self.payload_type == expected {
            Ok(())
        } else {
            Err(DsseError::PayloadType {
                found: self.payload_type.clone(),
                expected: expected.to_owned(),
            })
        }
    }

    /// Verify every signature; `resolve` maps a key id to its trusted key
    /// or a reason it may not be used. One outcome per signature, in order.
    pub fn verify(
        &self,
        resolve: impl Fn(&str) -> Result<VerifyingKey, String>,
    ) -> Vec<(String, SigOutcome)> {
        let message = pae(&self.payload_type, &self.payload);
        self.signatures
            .iter()
            .map(|s| {
                let outcome = match resolve(&s.keyid) {
                    Err(why) => SigOutcome::KeyRejected(why),
                    Ok(key) => {
                        let sig = Signature::from_bytes(&s.sig);
                        if key.verify_strict(&message, &sig).is_ok() {
                            SigOutcome::Valid
                        } else {
                            SigOutcome::BadSignature
                        }
                    }
                };
                (s.keyid.clone(), outcome)
            })
            .collect()
    }

    /// The envelope as JSON (standard padded base64, DSSE member names).
    pub fn to_value(&self) -> Value {
        let sigs: Vec<Value> = self
            .signatures
            .iter()
            .map(|s| json!({"keyid": s.keyid, "sig": STANDARD.encode(s.sig)}))
            .collect();
        json!({
            "payload": STANDARD.encode(&self.payload),
            "payloadType": self.payload_type,
            "signatures": sigs,
        })
    }

    /// One-line JSON with a trailing newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(&self.to_value()).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn resolver(
        keys: Vec<(&'static str, VerifyingKey)>,
    ) -> impl Fn(&str) -> Result<VerifyingKey, String> {
        move |id| {
            keys.iter()
                .find(|(k, _)| *k == id)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("unknown key {id:?}"))
        }
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn sign_roundtrip_and_tampered_twins() {
        let k = key(1);
        let env = Envelope::sign("t/x", b"{\"a\":1}".to_vec(), &[(&k, "k1")]);
        let parsed = Envelope::parse(&env.to_line()).unwrap();
        assert_eq!(parsed, env);
        let ok = resolver(vec![("k1", k.verifying_key())]);
        assert_eq!(parsed.verify(&ok), vec![("k1".into(), SigOutcome::Valid)]);

        let mut payload = parsed.clone();
        payload.payload = b"{\"a\":2}".to_vec();
        assert_eq!(payload.verify(&ok)[0].1, SigOutcome::BadSignature);
        let mut ty = parsed.clone();
        ty.payload_type = "t/y".into();
        assert_eq!(ty.verify(&ok)[0].1, SigOutcome::BadSignature);
        let mut sig = parsed.clone();
        sig.signatures[0].sig[5] ^= 1;
        assert_eq!(sig.verify(&ok)[0].1, SigOutcome::BadSignature);
        let other = resolver(vec![("k1", key(2).verifying_key())]);
        assert_eq!(parsed.verify(&other)[0].1, SigOutcome::BadSignature);
        let none = resolver(vec![]);
        assert!(matches!(
            parsed.verify(&none)[0].1,
            SigOutcome::KeyRejected(_)
        ));
        assert!(parsed.expect_type("t/x").is_ok());
        assert!(matches!(
            parsed.expect_type("t/z"),
            Err(DsseError::PayloadType { .. })
        ));
    }

    #[test]
    fn strict_shape() {
        let k = key(1);
        let good = Envelope::sign("t", b"p".to_vec(), &[(&k, "k")]).to_value();
        let sig = good["signatures"][0]["sig"].as_str().unwrap().to_owned();
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "not a JSON object"),
            (json!({"payloadType": "t", "signatures": []}), "payload"),
            (
                json!({"payload": "cA==", "payloadType": "t", "signatures": []}),
                "no signatures",
            ),
            (
                json!({"payload": "cA==", "payloadType": "", "signatures": [{"keyid": "k", "sig": sig}]}),
                "empty",
            ),
            (
                json!({"payload": "cA", "payloadType": "t", "signatures": [{"keyid": "k", "sig": sig}]}),
                "base64",
            ),
            (
                json!({"payload": "cA==", "payloadType": "t", "signatures": [{"sig": sig}]}),
                "keyid",
            ),
            (
                json!({"payload": "cA==", "payloadType": "t", "signatures": [{"keyid": "", "sig": sig}]}),
                "keyid",
            ),
            (
                json!({"payload": "cA==", "payloadType": "t", "signatures": [{"keyid": "k", "sig": "AAAA"}]}),
                "64",
            ),
            (
                json!({"payload": "cA==", "payloadType": "t", "x": 1, "signatures": [{"keyid": "k", "sig": sig}]}),
                "unknown member",
            ),
            (
                json!({"payload": "cA==", "payloadType": "t", "signatures": [{"keyid": "k", "sig": sig, "y": 2}]}),
                "unknown member",
            ),
            (
                json!({"payload": "cA==", "payloadType": "t", "signatures": vec![json!({"keyid": "k", "sig": sig}); 17]}),
                "max",
            ),
        ];
        for (value, needle) in cases {
            let err = Envelope::from_value(value.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{value}: {err}");
        }
        let dup = br#"{"payload":"cA==","payload":"cA==","payloadType":"t","signatures":[]}"#;
        assert!(matches!(Envelope::parse(dup), Err(DsseError::Json(_))));
        let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(Envelope::parse(&big), Err(DsseError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::parse(&bytes);
        }

        #[test]
        fn any_payload_roundtrips_and_any_flip_breaks_it(
            payload in proptest::collection::vec(any::<u8>(), 0..256),
            ty in "[a-z/.+]{1,40}",
            flip in any::<prop::sample::Index>(),
        ) {
            let k = key(3);
            let env = Envelope::sign(&ty, payload.clone(), &[(&k, "k")]);
            let back = Envelope::parse(&env.to_line()).unwrap();
            let ok = resolver(vec![("k", k.verifying_key())]);
            prop_assert_eq!(back.verify(&ok)[0].1.clone(), SigOutcome::Valid);
            if !payload.is_empty() {
                let mut t = back.clone();
                let i = flip.index(payload.len());
                t.payload[i] ^= 0x01;
                prop_assert_eq!(t.verify(&ok)[0].1.clone(), SigOutcome::BadSignature);
            }
        }
    }
}
