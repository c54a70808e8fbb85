//! SHA-256 of files on disk (captured streams, artifacts), read through a
//! fixed buffer and refusing anything that is not a regular file.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

use super::open_regular_file;
use crate::canonical::hex;

/// Lowercase hex SHA-256 of a regular file's contents.
pub fn sha256_regular_file(path: &Path) -> std::io::Result<String> {
    let mut file = open_regular_file(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_files_and_refuses_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"").unwrap();
        assert_eq!(
            sha256_regular_file(&f).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(sha256_regular_file(dir.path()).is_err());
        assert!(sha256_regular_file(Path::new("/dev/null")).is_err());
    }
}
