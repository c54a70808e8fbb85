//! Writing freshly generated key files safely: the private key is created
//! with mode 0600 from the first byte (never world-readable, even briefly),
//! fsync'd, and — with `force` — replaced atomically via a private temporary
//! file and `rename`, so an existing file's looser mode is never reused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::canonical::hex;

/// Mode of private key files.
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of public key files.
pub const PUBLIC_MODE: u32 = 0o644;

/// `sha256:<hex>` of the raw 32-byte public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("sha256:{}", hex(&Sha256::digest(key.as_bytes())))
}

/// A key id derived from the fingerprint: `ed25519-<first 16 hex digits>`.
pub fn suggested_key_id(key: &VerifyingKey) -> String {
    let digest = hex(&Sha256::digest(key.as_bytes()));
    format!("ed25519-{}", &digest[..16])
}

/// Standard base64 of the raw public key (the keyring's `public_key`).
pub fn public_key_base64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

/// Why a key file could not be written.
#[derive(Debug, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum WriteKeyError {
    #[error("{path} already exists (use --force to replace it)")]
    Exists { path: String },
    #[error("failed to write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> WriteKeyError + '_ {
    move |source| WriteKeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Fail early if `path` exists and `force` is off, so no output is written
/// when any would be refused.
pub fn check_writable(path: &Path, force: bool) -> Result<(), WriteKeyError> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(WriteKeyError::Exists {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn create_and_write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Write `bytes` to `path`, created with `mode`. Without `force` the file
/// must not exist (`O_EXCL`); with `force` a temporary sibling is created
/// with `mode`, synced, and renamed over `path`. The directory is synced.
pub fn write_key_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    force: bool,
) -> Result<(), WriteKeyError> {
    let dir = parent_dir(path);
    if !force {
        create_and_write(path, bytes, mode).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                WriteKeyError::Exists {
                    path: path.display().to_string(),
                }
            } else {
                io_err(path)(e)
            }
        })?;
    } else {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_else(|| "key".to_owned());
        let tmp = dir.join(format!(".{name}.csc-keygen-{}.tmp", std::process::id()));
        let result = create_and_write(&tmp, bytes, mode).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(path)(e));
        }
    }
    sync_dir(&dir).map_err(io_err(&dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_force_does_not_inherit_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_key_file(&p, b"one", PRIVATE_MODE, false).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            write_key_file(&p, b"two", PRIVATE_MODE, false),
            Err(WriteKeyError::Exists { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_key_file(&p, b"two", PRIVATE_MODE, true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn fingerprint_and_key_id_are_stable() {
        let vk = ed25519_dalek::SigningKey::from_bytes(&[0; 32]).verifying_key();
        let fp = fingerprint(&vk);
        assert!(fp.starts_with("sha256:") && fp.len() == 71);
        assert_eq!(suggested_key_id(&vk), format!("ed25519-{}", &fp[7..23]));
    }
}
