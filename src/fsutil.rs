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
