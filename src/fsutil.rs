//! Small file-system helpers shared by the loaders and the evidence code.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Open `path` for reading only if it is a regular file. The type is
/// checked before opening (opening a FIFO for reading could block), the
/// open is non-blocking anyway, and what was actually opened is re-checked.
pub fn open_regular_file(path: &Path) -> std::io::Result<std::fs::File> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Why [`read_regular_file_capped`] returned no bytes.
#[derive(Debug)]
pub enum CappedReadError {
    /// The path is not a regular file (FIFO, device, directory, ...).
    NotAFile,
    /// The file holds more than the cap; `size` is at least the real size.
    TooLarge { size: u64 },
    /// Any other I/O failure (missing, permission, ...).
    Io(std::io::Error),
}

/// Read a whole regular file of at most `max` bytes without ever blocking
/// on a FIFO and without reading more than `max + 1` bytes, so a growing
/// or lying file cannot exhaust memory.
pub fn read_regular_file_capped(path: &Path, max: u64) -> Result<Vec<u8>, CappedReadError> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(CappedReadError::Io)?;
    if !meta.is_file() {
        return Err(CappedReadError::NotAFile);
    }
    if meta.len() > max {
        return Err(CappedReadError::TooLarge { size: meta.len() });
    }
    let file = open_regular_file(path).map_err(CappedReadError::Io)?;
    let mut bytes = Vec::with_capacity(meta.len().min(max + 1) as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(CappedReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(CappedReadError::TooLarge {
            size: meta.len().max(bytes.len() as u64),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reads_refuse_non_files_and_oversize() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular_file_capped(&f, 5).unwrap(), b"12345");
        assert!(matches!(
            read_regular_file_capped(&f, 4),
            Err(CappedReadError::TooLarge { size: 5 })
        ));
        assert!(matches!(
            read_regular_file_capped(dir.path(), 5),
            Err(CappedReadError::NotAFile)
        ));
        assert!(matches!(
            read_regular_file_capped(Path::new("/dev/null"), 5),
            Err(CappedReadError::NotAFile)
        ));
        assert!(matches!(
            read_regular_file_capped(&dir.path().join("missing"), 5),
            Err(CappedReadError::Io(_))
        ));
    }
}
