//! Trusted receipt-verification keys: the `csc.keyring.v1` JSON format.
//!
//! ```json
//! {"keyring_version": "csc.keyring.v1",
//!  "keys": [{"key_id": "ci-2026", "public_key": "<base64 of the raw 32 bytes>",
//!            "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z",
//!            "revoked": false, "comment": "CI runner key"}]}
//! ```
//!
//! Each key has exactly one of `public_key` (standard base64 of the raw
//! 32-byte Ed25519 key) or `public_key_pem` (SPKI PEM). Unknown fields,
//! duplicate JSON members and duplicate `key_id`s are rejected. A key is
//! usable for a receipt when it is not revoked and the receipt's
//! `signature.signed_at` lies in `[not_before, not_after]` (both inclusive,
//! each bound optional). See `docs/keyring.md`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

use super::keys::verifying_key_from_bytes;
use crate::protocol::strict_json;

/// Version tag of the keyring format.
pub const KEYRING_VERSION: &str = "csc.keyring.v1";

/// Largest keyring file we read.
pub const MAX_KEYRING_BYTES: u64 = 1024 * 1024;

/// Why a keyring file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum KeyringError {
    #[error("failed to read keyring {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("keyring {path} is not a regular file")]
    NotAFile { path: String },
    #[error("keyring {path} is too large ({size} bytes, max {MAX_KEYRING_BYTES})")]
    TooLarge { path: String, size: u64 },
    #[error("keyring {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Why a trusted key may not be used for a particular receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum KeyRejection {
    #[error("unknown key_id: {0:?}")]
    Unknown(String),
    #[error("key {0:?} is revoked")]
    Revoked(String),
    #[error("key {key_id:?} is not valid before {not_before} (receipt signed_at {signed_at})")]
    NotYetValid {
        key_id: String,
        not_before: String,
        signed_at: String,
    },
    #[error("key {key_id:?} expired at {not_after} (receipt signed_at {signed_at})")]
    Expired {
        key_id: String,
        not_after: String,
        signed_at: String,
    },
    #[error(
        "key {key_id:?} has a validity window but signed_at {signed_at:?} is not an RFC 3339 date-time"
    )]
    BadSignedAt { key_id: String, signed_at: String },
}

/// One trusted key and the conditions under which it is trusted.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// The key id receipts name in `signature.key_id`.
    pub key_id: String,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
    /// Earliest acceptable `signed_at` (inclusive).
    pub not_before: Option<Timestamp>,
    /// Latest acceptable `signed_at` (inclusive).
    pub not_after: Option<Timestamp>,
    /// A revoked key verifies nothing, whatever the receipt's `signed_at`.
    pub revoked: bool,
    /// Free text for humans.
    pub comment: Option<String>,
}

/// A set of trusted keys indexed by key id.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: HashMap<String, TrustedKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyring {
    keyring_version: String,
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    key_id: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    public_key_pem: Option<String>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
    #[serde(default)]
    revoked: Option<bool>,
    #[serde(default)]
    comment: Option<String>,
}

fn parse_time(text: &str, field: &str, key_id: &str) -> Result<Timestamp, String> {
    crate::time::parse(text)
        .ok_or_else(|| format!("key {key_id:?}: {field} {text:?} is not an RFC 3339 date-time"))
}

fn trusted_key(raw: RawKey) -> Result<TrustedKey, String> {
    let id = raw.key_id;
    if id.is_empty() {
        return Err("a key has an empty key_id".to_owned());
    }
    let key = match (raw.public_key, raw.public_key_pem) {
        (Some(b64), None) => {
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("key {id:?}: public_key is not standard base64: {e}"))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "key {id:?}: public_key decodes to {} bytes, expected 32",
                    bytes.len()
                ));
            }
            verifying_key_from_bytes(&bytes).map_err(|e| format!("key {id:?}: {e}"))?
        }
        (None, Some(pem)) => {
            verifying_key_from_bytes(pem.as_bytes()).map_err(|e| format!("key {id:?}: {e}"))?
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "key {id:?} has both public_key and public_key_pem; give exactly one"
            ));
        }
        (None, None) => {
            return Err(format!(
                "key {id:?} has neither public_key nor public_key_pem"
            ));
        }
    };
    let not_before = raw
        .not_before
        .as_deref()
        .map(|t| parse_time(t, "not_before", &id))
        .transpose()?;
    let not_after = raw
        .not_after
        .as_deref()
        .map(|t| parse_time(t, "not_after", &id))
        .transpose()?;
    if let (Some(nb), Some(na)) = (not_before, not_after)
        && nb > na
    {
        return Err(format!("key {id:?}: not_before is after not_after"));
    }
    Ok(TrustedKey {
        key_id: id,
        key,
        not_before,
        not_after,
        revoked: raw.revoked.unwrap_or(false),
        comment: raw.comment,
    })
}

impl Keyring {
    /// The trusted key ids, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// A keyring holding one key with no validity window.
    pub fn single(key_id: &str, key: VerifyingKey) -> Self {
        let mut keys = HashMap::new();
        keys.insert(
            key_id.to_owned(),
            TrustedKey {
                key_id: key_id.to_owned(),
                key,
                not_before: None,
                not_after: None,
                revoked: false,
                comment: None,
            },
        );
        Keyring { keys }
    }

    /// Parse keyring JSON; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, KeyringError> {
        let invalid = |reason: String| KeyringError::Invalid {
            path: origin.to_owned(),
            reason,
        };
        let value = strict_json::parse(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
        let raw = RawKeyring::deserialize(&value).map_err(|e| invalid(e.to_string()))?;
        if raw.keyring_version != KEYRING_VERSION {
            return Err(invalid(format!(
                "unsupported keyring_version {:?} (expected {KEYRING_VERSION:?})",
                raw.keyring_version
            )));
        }
        if raw.keys.is_empty() {
            return Err(invalid("keyring has no keys".to_owned()));
        }
        let mut keys = HashMap::with_capacity(raw.keys.len());
        for raw_key in raw.keys {
            let key = trusted_key(raw_key).map_err(invalid)?;
            if keys.contains_key(&key.key_id) {
                return Err(invalid(format!("duplicate key_id {:?}", key.key_id)));
            }
            keys.insert(key.key_id.clone(), key);
        }
        Ok(Keyring { keys })
    }

    /// Load a keyring file.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        use crate::fsutil::{CappedReadError, read_regular_file_capped};
        let shown = path.display().to_string();
        let bytes = read_regular_file_capped(path, MAX_KEYRING_BYTES).map_err(|e| match e {
            CappedReadError::NotAFile => KeyringError::NotAFile {
                path: shown.clone(),
            },
            CappedReadError::TooLarge { size } => KeyringError::TooLarge {
                path: shown.clone(),
                size,
            },
            CappedReadError::Io(source) => KeyringError::Read {
                path: shown.clone(),
                source,
            },
        })?;
        Self::from_bytes(&bytes, &shown)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The entry for `key_id`, whatever its status.
    pub fn get(&self, key_id: &str) -> Option<&TrustedKey> {
        self.keys.get(key_id)
    }

    /// The public key to verify a receipt signed by `key_id` at `signed_at`,
    /// or why that key may not be used.
    pub fn usable_key(
        &self,
        key_id: &str,
        signed_at: Option<&str>,
    ) -> Result<&VerifyingKey, KeyRejection> {
        let entry = self
            .keys
            .get(key_id)
            .ok_or_else(|| KeyRejection::Unknown(key_id.to_owned()))?;
        if entry.revoked {
            return Err(KeyRejection::Revoked(key_id.to_owned()));
        }
        if entry.not_before.is_none() && entry.not_after.is_none() {
            return Ok(&entry.key);
        }
        let shown = signed_at.unwrap_or("(none)");
        let at =
            signed_at
                .and_then(crate::time::parse)
                .ok_or_else(|| KeyRejection::BadSignedAt {
                    key_id: key_id.to_owned(),
                    signed_at: shown.to_owned(),
                })?;
        if let Some(nb) = entry.not_before
            && at < nb
        {
            return Err(KeyRejection::NotYetValid {
                key_id: key_id.to_owned(),
                not_before: nb.to_string(),
                signed_at: shown.to_owned(),
            });
        }
        if let Some(na) = entry.not_after
            && at > na
        {
            return Err(KeyRejection::Expired {
                key_id: key_id.to_owned(),
                not_after: na.to_string(),
                signed_at: shown.to_owned(),
            });
        }
        Ok(&entry.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn b64(seed: u8) -> String {
        STANDARD.encode(
            SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .as_bytes(),
        )
    }

    fn ring(keys: &str) -> Result<Keyring, KeyringError> {
        let text = format!(r#"{{"keyring_version":"csc.keyring.v1","keys":[{keys}]}}"#);
        Keyring::from_bytes(text.as_bytes(), "test")
    }

    #[test]
    fn windows_and_revocation() {
        let r = ring(&format!(
            r#"{{"key_id":"old","public_key":"{}","not_after":"2026-06-30T23:59:59Z"}},
               {{"key_id":"new","public_key":"{}","not_before":"2026-07-01T00:00:00Z"}},
               {{"key_id":"gone","public_key":"{}","revoked":true,"comment":"leaked"}}"#,
            b64(1),
            b64(2),
            b64(3)
        ))
        .unwrap();
        assert_eq!(r.len(), 3);
        assert!(
            r.usable_key("old", Some("2026-06-30T23:59:59+00:00"))
                .is_ok()
        );
        assert!(matches!(
            r.usable_key("old", Some("2026-07-01T00:00:00+00:00")),
            Err(KeyRejection::Expired { .. })
        ));
        assert!(matches!(
            r.usable_key("new", Some("2026-06-30T00:00:00+00:00")),
            Err(KeyRejection::NotYetValid { .. })
        ));
        assert!(
            r.usable_key("new", Some("2027-01-01T00:00:00+02:00"))
                .is_ok()
        );
        assert!(matches!(
            r.usable_key("new", Some("yesterday")),
            Err(KeyRejection::BadSignedAt { .. })
        ));
        assert!(matches!(
            r.usable_key("new", None),
            Err(KeyRejection::BadSignedAt { .. })
        ));
        assert_eq!(
            r.usable_key("gone", None),
            Err(KeyRejection::Revoked("gone".into()))
        );
        assert_eq!(
            r.usable_key("nope", None),
            Err(KeyRejection::Unknown("nope".into()))
        );
    }

    #[test]
    fn rejects_malformed_keyrings() {
        let k = b64(1);
        for (keys, needle) in [
            (
                format!(r#"{{"key_id":"a","public_key":"{k}","extra":1}}"#),
                "unknown field",
            ),
            (
                format!(
                    r#"{{"key_id":"a","public_key":"{k}"}},{{"key_id":"a","public_key":"{k}"}}"#
                ),
                "duplicate key_id",
            ),
            (
                format!(r#"{{"key_id":"","public_key":"{k}"}}"#),
                "empty key_id",
            ),
            (r#"{"key_id":"a"}"#.to_owned(), "neither"),
            (
                r#"{"key_id":"a","public_key":"AAAA"}"#.to_owned(),
                "expected 32",
            ),
            (r#"{"key_id":"a","public_key":"!!"}"#.to_owned(), "base64"),
            (
                format!(
                    r#"{{"key_id":"a","public_key":"{k}","not_before":"2027-01-01T00:00:00Z","not_after":"2026-01-01T00:00:00Z"}}"#
                ),
                "not_before is after",
            ),
            (
                format!(r#"{{"key_id":"a","public_key":"{k}","not_after":"soon"}}"#),
                "RFC 3339",
            ),
            (
                format!(r#"{{"key_id":"a","key_id":"b","public_key":"{k}"}}"#),
                "duplicate",
            ),
            (String::new(), "no keys"),
        ] {
            let err = ring(&keys).unwrap_err().to_string();
            assert!(err.contains(needle), "{keys}: {err}");
        }
        let err = Keyring::from_bytes(br#"{"keyring_version":"v2","keys":[]}"#, "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported keyring_version"), "{err}");
    }

    #[test]
    fn pem_keys_load() {
        let vk = SigningKey::from_bytes(&[5; 32]).verifying_key();
        let pem = super::super::keys::verifying_key_to_spki_pem(&vk);
        let r = ring(&format!(
            r#"{{"key_id":"p","public_key_pem":{}}}"#,
            serde_json::to_string(&pem).unwrap()
        ))
        .unwrap();
        assert_eq!(r.usable_key("p", None), Ok(&vk));
    }
}
