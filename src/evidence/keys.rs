//! Ed25519 key material: loading signing keys (raw 32-byte seed, 64-byte
//! seed‖public, PKCS#8 PEM v1/v2) and public keys (raw 32 bytes, PEM SPKI),
//! and writing PKCS#8 v1 PEM that OpenSSL and Python `cryptography` read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::path::Path;

/// Largest key file we read (a PEM key is ~120 bytes).
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// Why key material could not be used.
#[derive(Debug, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum KeyError {
    #[error("failed to read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a regular file")]
    NotAFile { path: String },
    #[error("key file {path} is too large ({size} bytes) to be an Ed25519 key")]
    TooLarge { path: String, size: u64 },
    #[error("key file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    use crate::fsutil::{CappedReadError, read_regular_file_capped};
    let path_shown = path.display().to_string();
    read_regular_file_capped(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        CappedReadError::NotAFile => KeyError::NotAFile { path: path_shown },
        CappedReadError::TooLarge { size } => KeyError::TooLarge {
            path: path_shown,
            size,
        },
        CappedReadError::Io(source) => KeyError::Read {
            path: path_shown,
            source,
        },
    })
}

/// Parse signing-key bytes as the reference accepts them.
pub fn signing_key_from_bytes(bytes: &[u8]) -> Result<SigningKey, String> {
    match bytes.len() {
        32 => {
            let seed: [u8; 32] = bytes.try_into().map_err(|_| "bad seed length")?;
            Ok(SigningKey::from_bytes(&seed))
        }
        64 => {
            let pair: [u8; 64] = bytes.try_into().map_err(|_| "bad keypair length")?;
            SigningKey::from_keypair_bytes(&pair)
                .map_err(|_| "64-byte key: public half does not match the seed".to_owned())
        }
        _ => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| "not a 32/64-byte raw key and not PEM text".to_owned())?;
            if !text.contains("-----BEGIN PRIVATE KEY-----") {
                return Err(
                    "expected a raw 32-byte seed, a 64-byte seed+public key, or a PKCS#8 PEM \
                     (-----BEGIN PRIVATE KEY-----)"
                        .to_owned(),
                );
            }
            SigningKey::from_pkcs8_pem(text.trim())
                .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"))
        }
    }
}

/// Load a signing key from a file.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let bytes = read_key_file(path)?;
    signing_key_from_bytes(&bytes).map_err(|reason| KeyError::Invalid {
        path: path.display().to_string(),
        reason,
    })
}

/// Parse public-key bytes: raw 32 bytes or PEM SPKI.
pub fn verifying_key_from_bytes(bytes: &[u8]) -> Result<VerifyingKey, String> {
    if bytes.len() == 32 {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| "bad public key length")?;
        return VerifyingKey::from_bytes(&raw)
            .map_err(|_| "32 bytes that are not a valid Ed25519 public key".to_owned());
    }
    if bytes.len() == 64 {
        return Err(
            "64 raw bytes look like a private seed+public key pair, not a raw 32-byte public key"
                .to_owned(),
        );
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        format!(
            "expected a raw 32-byte public key or PEM, got {} bytes",
            bytes.len()
        )
    })?;
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "this is a PRIVATE key, not a public key: pass the public key \
             (e.g. from `csc keygen --public-out` or `--raw-public-out`)"
                .to_owned(),
        );
    }
    if !text.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(format!(
            "expected a raw 32-byte public key or a PEM SPKI (-----BEGIN PUBLIC KEY-----), got {} bytes",
            bytes.len()
        ));
    }
    VerifyingKey::from_public_key_pem(text.trim())
        .map_err(|e| format!("not an Ed25519 SPKI public key: {e}"))
}

/// Load a public key from a file.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = read_key_file(path)?;
    verifying_key_from_bytes(&bytes).map_err(|reason| KeyError::Invalid {
        path: path.display().to_string(),
        reason,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PKCS#8 v1 (RFC 8410) PEM of a signing key: no embedded public key, the
/// form OpenSSL and Python `cryptography` accept.
pub fn signing_key_to_pkcs8_v1_pem(key: &SigningKey) -> String {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = Vec::with_capacity(48);
    der.extend_from_slice(&PREFIX);
    der.extend_from_slice(key.as_bytes());
    pem("PRIVATE KEY", &der)
}

/// SPKI PEM of a public key.
pub fn verifying_key_to_spki_pem(key: &VerifyingKey) -> String {
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let mut der = Vec::with_capacity(44);
    der.extend_from_slice(&PREFIX);
    der.extend_from_slice(key.as_bytes());
    pem("PUBLIC KEY", &der)
}

/// A fresh signing key from the OS random source.
pub fn generate_signing_key() -> std::io::Result<SigningKey> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_v1_round_trips_and_all_raw_forms_load() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let pem = signing_key_to_pkcs8_v1_pem(&key);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
        let back = signing_key_from_bytes(pem.as_bytes()).unwrap();
        assert_eq!(back.as_bytes(), key.as_bytes());
        assert_eq!(
            signing_key_from_bytes(&[7u8; 32]).unwrap().as_bytes(),
            key.as_bytes()
        );
        let pair = key.to_keypair_bytes();
        assert_eq!(
            signing_key_from_bytes(&pair).unwrap().as_bytes(),
            key.as_bytes()
        );
        let mut bad_pair = pair;
        bad_pair[63] ^= 1;
        assert!(signing_key_from_bytes(&bad_pair).is_err());
        assert!(signing_key_from_bytes(b"garbage").is_err());
    }

    #[test]
    fn public_keys_load_raw_and_pem() {
        let vk = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        let pem = verifying_key_to_spki_pem(&vk);
        assert_eq!(verifying_key_from_bytes(pem.as_bytes()).unwrap(), vk);
        assert_eq!(verifying_key_from_bytes(vk.as_bytes()).unwrap(), vk);
        assert!(verifying_key_from_bytes(&[0u8; 31]).is_err());
    }
}
