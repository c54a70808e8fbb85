//! The fake-file-system seam: host facts the plan builder needs
//! ([`HostFs`]), the real file system ([`RealFs`]) and the test double
//! that simulates a symlink swapped in after the check ([`SwappedFs`]).

use std::path::{Path, PathBuf};

/// Kind of a host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// Directory.
    Dir,
    /// Anything else that can be bound (regular file, device, ...).
    File,
    /// Symbolic link (not followed).
    Symlink,
}

/// Host file-system facts the builder needs.
pub trait HostFs {
    /// Kind of `path` without following a final symlink; `None` if missing.
    fn kind(&self, path: &Path) -> Option<HostKind>;
    /// Canonical path (all symlinks resolved); `None` if missing.
    fn canonicalize(&self, path: &Path) -> Option<PathBuf>;
    /// Target of a symlink.
    fn read_link(&self, path: &Path) -> Option<PathBuf>;
}

/// [`HostFs`] backed by the real file system.
pub struct RealFs;

/// [`HostFs`] that reports every existing path below `under` as already
/// resolved: a plan built with it holds those paths exactly as given, as if
/// a symlink had appeared after csc checked them. Only for tests of the
/// helper's own refusal to bind through symlinks (`csc __sandbox-run
/// --simulate-swap DIR`).
pub struct SwappedFs {
    /// Paths below this one are taken as given.
    pub under: PathBuf,
}

impl HostFs for SwappedFs {
    fn kind(&self, path: &Path) -> Option<HostKind> {
        if !path.starts_with(&self.under) {
            return RealFs.kind(path);
        }
        let m = std::fs::metadata(path).ok()?;
        Some(if m.is_dir() {
            HostKind::Dir
        } else {
            HostKind::File
        })
    }
    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        if !path.starts_with(&self.under) {
            return RealFs.canonicalize(path);
        }
        std::fs::metadata(path).ok().map(|_| path.to_path_buf())
    }
    fn read_link(&self, path: &Path) -> Option<PathBuf> {
        RealFs.read_link(path)
    }
}

impl HostFs for RealFs {
    fn kind(&self, path: &Path) -> Option<HostKind> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(if m.file_type().is_symlink() {
            HostKind::Symlink
        } else if m.is_dir() {
            HostKind::Dir
        } else {
            HostKind::File
        })
    }
    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
    fn read_link(&self, path: &Path) -> Option<PathBuf> {
        std::fs::read_link(path).ok()
    }
}
