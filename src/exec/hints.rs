//! One-line hints for failures whose cause is outside the command: files
//! owned by another uid are not writable in hardened mode, where the
//! command has no capabilities (no `CAP_DAC_OVERRIDE`, even as root).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::engine::paths::glob_literal_prefix;
use crate::protocol::contract::Command;

/// For a hardened command that failed with "Permission denied": the first
/// of its cwd and write scopes (or their nearest existing ancestor) owned
/// by a uid other than `euid` (the uid csc runs as), as a one-line hint.
pub fn foreign_owner_hint(cmd: &Command, stderr_or_error: &str, euid: u32) -> Option<String> {
    if !stderr_or_error.contains("Permission denied") {
        return None;
    }
    let candidates = std::iter::once(cmd.cwd.as_str())
        .chain(cmd.write_paths.iter().map(|p| glob_literal_prefix(p)));
    for declared in candidates {
        let mut p = Path::new(declared);
        let meta = loop {
            match std::fs::metadata(p) {
                Ok(m) => break m,
                Err(_) => p = p.parent()?,
            }
        };
        if meta.uid() != euid {
            return Some(format!(
                "hint: {} is owned by uid {}, but csc runs as uid {euid}; hardened commands have no capabilities, so only the permission bits apply: run csc as uid {} or chown the tree to uid {euid}",
                p.display(),
                meta.uid(),
                meta.uid()
            ));
        }
    }
    None
}
