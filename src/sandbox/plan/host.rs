//! The fake-file-system seam: host facts the plan builder needs
//! ([`HostFs`]), the real file system ([`RealFs`]), the test double
//! that simulates a symlink swapped in after the check ([`SwappedFs`]),
//! and the answers' memo the builder asks through ([`Memo`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

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

/// [`HostFs`] that asks `inner` about each path once, and resolves a path
/// from its parent's answer: a name that is no symlink, below a parent that
/// is its own canonical path, is its own canonical path too. Only a path
/// with a symlink on the way (or one not in plain absolute form) is
/// resolved by `inner`. The plan asks about every system path twice and,
/// through `realpath`, about `/etc` once for each of the ~40 entries below
/// it; through the memo that is one `lstat` per path. The answers are
/// `inner`'s (the helper re-checks every bind on descriptors anyway).
pub struct Memo<'a> {
    inner: &'a dyn HostFs,
    // Keyed by the spelling, not by `Path`'s component-wise equality:
    // `rel/` (which follows a symlink) and `rel` are different questions.
    kinds: RefCell<HashMap<OsString, Option<HostKind>>>,
    canonical: RefCell<HashMap<OsString, Option<PathBuf>>>,
}

impl<'a> Memo<'a> {
    /// A memo in front of `inner`.
    pub fn new(inner: &'a dyn HostFs) -> Self {
        Memo {
            inner,
            kinds: RefCell::new(HashMap::new()),
            canonical: RefCell::new(HashMap::new()),
        }
    }

    fn resolve(&self, path: &Path) -> Option<PathBuf> {
        let parent = match path.parent() {
            Some(parent) if is_plain(path) => parent,
            _ => return self.inner.canonicalize(path),
        };
        if self.canonicalize(parent).as_deref() != Some(parent) {
            return self.inner.canonicalize(path);
        }
        match self.kind(path)? {
            HostKind::Symlink => self.inner.canonicalize(path),
            HostKind::Dir | HostKind::File => Some(path.to_path_buf()),
        }
    }
}

/// Absolute, and spelled exactly as its components: no `.`, `..`, doubled
/// or trailing slash (a trailing slash would make `lstat` follow a symlink).
fn is_plain(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)))
        && path
            .components()
            .collect::<PathBuf>()
            .as_os_str()
            .as_bytes()
            == path.as_os_str().as_bytes()
}

impl HostFs for Memo<'_> {
    fn kind(&self, path: &Path) -> Option<HostKind> {
        if let Some(k) = self.kinds.borrow().get(path.as_os_str()) {
            return *k;
        }
        let k = self.inner.kind(path);
        self.kinds.borrow_mut().insert(path.as_os_str().into(), k);
        k
    }
    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        if let Some(c) = self.canonical.borrow().get(path.as_os_str()) {
            return c.clone();
        }
        let c = self.resolve(path);
        self.canonical
            .borrow_mut()
            .insert(path.as_os_str().into(), c.clone());
        c
    }
    fn read_link(&self, path: &Path) -> Option<PathBuf> {
        self.inner.read_link(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// The memo gives `realpath`'s answers for plain paths, paths through
    /// directory and file symlinks (relative and absolute), dangling and
    /// missing paths, and paths not in plain form.
    #[test]
    fn memo_answers_like_the_file_system() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        symlink("a", root.join("rel")).unwrap();
        symlink(root.join("a/b"), root.join("abs")).unwrap();
        symlink("b/f", root.join("a/lf")).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        let names = [
            "",
            "a",
            "a/b",
            "a/b/f",
            "rel",
            "rel/b",
            "rel/b/f",
            "abs",
            "abs/f",
            "a/lf",
            "dangling",
            "missing",
            "missing/x",
            "a/./b",
            "a/../a/b",
            "a//b",
            "a/b/",
            "rel/",
            "a/b/f/x",
        ];
        let memo = Memo::new(&RealFs);
        for round in 0..2 {
            for n in names {
                let p = PathBuf::from(format!("{}/{n}", root.display()));
                assert_eq!(
                    memo.canonicalize(&p),
                    RealFs.canonicalize(&p),
                    "canonicalize {n:?} (round {round})"
                );
                assert_eq!(memo.kind(&p), RealFs.kind(&p), "kind {n:?}");
            }
        }
        assert_eq!(memo.canonicalize(Path::new("/")), Some(PathBuf::from("/")));
        assert_eq!(memo.read_link(&root.join("rel")), Some(PathBuf::from("a")));
    }
}
