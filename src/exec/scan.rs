//! Bounded walking of the declared write scopes, for `files_written`.
//!
//! The tree may have been shaped by the command (the adversary): arbitrarily
//! deep, arbitrarily wide, full of symlinks, with other file systems
//! mounted inside. The walk therefore
//! - resolves every entry relative to its parent's descriptor
//!   (`openat`/`fstatat`), so no path is ever built and `PATH_MAX` does not
//!   apply; symlinks are never followed (`AT_SYMLINK_NOFOLLOW`,
//!   `O_NOFOLLOW`), and each opened directory is checked to be the one that
//!   was stat'ed;
//! - streams each directory with getdents64 into a fixed buffer, so a huge
//!   directory costs no memory;
//! - keeps at most [`ScanLimits::open_dirs`] directory descriptors and
//!   buffers; deeper levels are closed and re-entered through `..`
//!   (verified by device and inode) at their saved getdents position, so
//!   memory is O(depth) small records;
//! - does not cross into other file systems (a directory whose device
//!   differs from its scope root's is skipped);
//! - stops at an entry budget, a depth budget and a time budget.
//!
//! Anything not seen is reported as a [`Shortfall`]: the caller then knows
//! its count is a lower bound, never a silently wrong exact number.

use std::hash::{BuildHasher, Hasher};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};
use nix::unistd::{Whence, lseek};

/// Limits of one scan (all scopes together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Directory entries visited.
    pub max_entries: u64,
    /// Directory levels below a scope root.
    pub max_depth: usize,
    /// Wall-clock time for the whole scan.
    pub max_time: Duration,
    /// Directory descriptors (and read buffers) held open at once.
    pub open_dirs: usize,
}

/// Default entry budget of one scan.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// Default depth budget (far beyond `PATH_MAX`: 4096 bytes is at most
/// 2048 levels).
pub const DEFAULT_MAX_DEPTH: usize = 65_536;
/// Default time budget of one scan.
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(60);

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_time: DEFAULT_MAX_TIME,
            open_dirs: 64,
        }
    }
}

/// Why a scan did not see every file under the scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    missing_docs,
    reason = "variant fields: `root` is the scope root, `name` the entry under it"
)]
pub enum Shortfall {
    /// The entry budget ran out.
    Entries(u64),
    /// The time budget ran out.
    Time(Duration),
    /// A directory was deeper than the depth budget.
    Depth { root: String, depth: usize },
    /// A directory on another file system was not entered.
    OtherFilesystem { root: String, name: String },
    /// Something could not be read.
    Unreadable {
        root: String,
        name: String,
        reason: String,
    },
    /// A directory changed identity while being walked.
    Moved { root: String, name: String },
    /// A scope root is a symbolic link (never followed).
    SymlinkRoot { root: String },
}

fn short(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    if text.chars().count() <= 80 {
        text.into_owned()
    } else {
        text.chars().take(79).collect::<String>() + "…"
    }
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::Entries(n) => write!(f, "the scan stopped at its budget of {n} entries"),
            Shortfall::Time(t) => {
                write!(f, "the scan stopped at its time budget of {}s", t.as_secs())
            }
            Shortfall::Depth { root, depth } => write!(
                f,
                "directories under {root} deeper than {depth} levels were not scanned"
            ),
            Shortfall::OtherFilesystem { root, name } => write!(
                f,
                "{name:?} under {root} is another file system and was not scanned"
            ),
            Shortfall::Unreadable { root, name, reason } => {
                write!(f, "{name:?} under {root} could not be read: {reason}")
            }
            Shortfall::Moved { root, name } => {
                write!(f, "{name:?} under {root} changed while it was scanned")
            }
            Shortfall::SymlinkRoot { root } => {
                write!(
                    f,
                    "scope root {root} is a symbolic link and was not followed"
                )
            }
        }
    }
}

/// A keyed 128-bit hash (two independently keyed SipHash instances). Keys
/// are random per process, so the command cannot aim for collisions.
#[derive(Debug, Clone, Default)]
pub struct Keyed {
    a: std::collections::hash_map::RandomState,
    b: std::collections::hash_map::RandomState,
}

impl Keyed {
    fn hash(&self, tag: u8, parent: u128, name: &[u8], extra: &[i64]) -> u128 {
        let mut ha = self.a.build_hasher();
        let mut hb = self.b.build_hasher();
        for h in [&mut ha, &mut hb] {
            h.write_u8(tag);
            h.write_u128(parent);
            h.write_usize(name.len());
            h.write(name);
            for x in extra {
                h.write_i64(*x);
            }
        }
        (u128::from(ha.finish()) << 64) | u128::from(hb.finish())
    }

    fn root(&self, root: &str) -> u128 {
        self.hash(b'r', 0, root.as_bytes(), &[])
    }

    fn dir(&self, parent: u128, name: &[u8]) -> u128 {
        self.hash(b'd', parent, name, &[])
    }

    fn file(&self, parent: u128, name: &[u8], st: &FileStat) -> u128 {
        self.hash(
            b'f',
            parent,
            name,
            &[
                st.st_dev as i64,
                st.st_ino as i64,
                st.st_size,
                st.st_mtime,
                st.st_mtime_nsec,
                st.st_ctime,
                st.st_ctime_nsec,
            ],
        )
    }
}

/// One regular file seen by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Keyed hash of (path, device, inode, size, mtime, ctime).
    pub key: u128,
    /// Status-change time (seconds, nanoseconds).
    pub ctime: (i64, i64),
}

const BUF_BYTES: usize = 8192;

struct Level {
    fd: Option<OwnedFd>,
    dev: u64,
    ino: u64,
    path: u128,
    /// getdents position after the last entry consumed (`d_off`).
    resume: i64,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl Level {
    fn open(fd: OwnedFd, st: &FileStat, path: u128) -> Level {
        Level {
            fd: Some(fd),
            dev: st.st_dev,
            ino: st.st_ino,
            path,
            resume: 0,
            buf: vec![0; BUF_BYTES],
            pos: 0,
            len: 0,
        }
    }

    fn close(&mut self) {
        self.fd = None;
        self.buf = Vec::new();
        self.pos = 0;
        self.len = 0;
    }
}

/// One parsed `linux_dirent64` record.
struct Dirent<'a> {
    off: i64,
    name: &'a [u8],
}

fn parse(buf: &[u8]) -> Option<(Dirent<'_>, usize)> {
    // d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name NUL-terminated.
    let off = i64::from_ne_bytes(buf.get(8..16)?.try_into().ok()?);
    let reclen = usize::from(u16::from_ne_bytes(buf.get(16..18)?.try_into().ok()?));
    let raw = buf.get(19..reclen)?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    (reclen > 19).then_some((
        Dirent {
            off,
            name: &raw[..end],
        },
        reclen,
    ))
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn errno_text(e: Errno) -> String {
    std::io::Error::from(e).to_string()
}

/// Walks scopes within [`ScanLimits`], reporting each regular file.
pub struct Scanner<'a> {
    limits: ScanLimits,
    keyed: &'a Keyed,
    entries: u64,
    started: Instant,
    shortfall: Option<Shortfall>,
}

/// The scan ran out of a global budget: stop everything.
struct Exhausted;

impl<'a> Scanner<'a> {
    /// A scanner with fresh budgets.
    pub fn new(limits: ScanLimits, keyed: &'a Keyed) -> Self {
        Scanner {
            limits,
            keyed,
            entries: 0,
            started: Instant::now(),
            shortfall: None,
        }
    }

    /// Walk every root (already deduplicated; see [`scan_roots`]) and call
    /// `visit` for each regular file. Returns the first shortfall, if any.
    pub fn scan(mut self, roots: &[String], visit: &mut dyn FnMut(Seen)) -> Option<Shortfall> {
        for root in roots {
            if self.walk_root(root, visit).is_err() {
                break;
            }
        }
        self.shortfall
    }

    fn note(&mut self, s: Shortfall) {
        self.shortfall.get_or_insert(s);
    }

    fn tick(&mut self) -> Result<(), Exhausted> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            self.shortfall = Some(Shortfall::Entries(self.limits.max_entries));
            return Err(Exhausted);
        }
        if self.entries.is_multiple_of(256) && self.started.elapsed() > self.limits.max_time {
            self.shortfall = Some(Shortfall::Time(self.limits.max_time));
            return Err(Exhausted);
        }
        Ok(())
    }

    fn walk_root(&mut self, root: &str, visit: &mut dyn FnMut(Seen)) -> Result<(), Exhausted> {
        self.tick()?;
        let unreadable = |e: Errno| Shortfall::Unreadable {
            root: root.to_owned(),
            name: ".".to_owned(),
            reason: errno_text(e),
        };
        let opath = match nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => {
                self.note(unreadable(e));
                return Ok(());
            }
        };
        let st = match fstat(&opath) {
            Ok(st) => st,
            Err(e) => {
                self.note(unreadable(e));
                return Ok(());
            }
        };
        let path = self.keyed.root(root);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {
                visit(Seen {
                    key: self.keyed.file(path, b"", &st),
                    ctime: (st.st_ctime, st.st_ctime_nsec),
                });
                return Ok(());
            }
            libc::S_IFLNK => {
                self.note(Shortfall::SymlinkRoot {
                    root: root.to_owned(),
                });
                return Ok(());
            }
            libc::S_IFDIR => {}
            _ => return Ok(()),
        }
        let fd = match openat(&opath, ".", dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                self.note(unreadable(e));
                return Ok(());
            }
        };
        match fstat(&fd) {
            Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
            _ => {
                self.note(Shortfall::Moved {
                    root: root.to_owned(),
                    name: ".".to_owned(),
                });
                return Ok(());
            }
        }
        let mut stack = vec![Level::open(fd, &st, path)];
        while !stack.is_empty() {
            self.step(root, &mut stack, visit)?;
        }
        Ok(())
    }

    /// Consume one entry of the deepest level (or finish that level).
    fn step(
        &mut self,
        root: &str,
        stack: &mut Vec<Level>,
        visit: &mut dyn FnMut(Seen),
    ) -> Result<(), Exhausted> {
        let depth = stack.len();
        let Some(i) = depth.checked_sub(1) else {
            return Ok(());
        };
        let top = &mut stack[i];
        let Some(fd) = top.fd.as_ref() else {
            // Invariant: the deepest level is always open.
            stack.pop();
            return Ok(());
        };
        if top.pos >= top.len {
            match crate::exec::sys::getdents(fd.as_fd(), &mut top.buf) {
                Ok(n) if n > 0 => {
                    top.pos = 0;
                    top.len = n;
                }
                Ok(_) => {
                    self.finish_level(root, stack);
                    return Ok(());
                }
                Err(e) => {
                    self.note(Shortfall::Unreadable {
                        root: root.to_owned(),
                        name: "(directory listing)".to_owned(),
                        reason: e.to_string(),
                    });
                    self.finish_level(root, stack);
                    return Ok(());
                }
            }
        }
        let Some((ent, reclen)) = parse(&top.buf[top.pos..top.len]) else {
            // A malformed record: drop the rest of this batch.
            top.pos = top.len;
            return Ok(());
        };
        let name = ent.name.to_vec();
        top.resume = ent.off;
        top.pos += reclen;
        if name == b"." || name == b".." {
            return Ok(());
        }
        self.tick()?;
        let top = &stack[i];
        let Some(fd) = top.fd.as_ref() else {
            return Ok(());
        };
        let st = match fstatat(fd, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                self.note(Shortfall::Unreadable {
                    root: root.to_owned(),
                    name: short(&name),
                    reason: errno_text(e),
                });
                return Ok(());
            }
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => visit(Seen {
                key: self.keyed.file(top.path, &name, &st),
                ctime: (st.st_ctime, st.st_ctime_nsec),
            }),
            libc::S_IFDIR => self.descend(root, stack, &name, &st),
            _ => {}
        }
        Ok(())
    }

    /// Enter directory `name` (seen as `st`) of the deepest level: same
    /// file system, within the depth budget, and still the directory that
    /// was stat'ed when opened.
    fn descend(&mut self, root: &str, stack: &mut Vec<Level>, name: &[u8], st: &FileStat) {
        let depth = stack.len();
        let Some(i) = depth.checked_sub(1) else {
            return;
        };
        let top = &stack[i];
        let Some(fd) = top.fd.as_ref() else {
            return;
        };
        if st.st_dev != top.dev {
            self.note(Shortfall::OtherFilesystem {
                root: root.to_owned(),
                name: short(name),
            });
            return;
        }
        if depth > self.limits.max_depth {
            self.note(Shortfall::Depth {
                root: root.to_owned(),
                depth: self.limits.max_depth,
            });
            return;
        }
        let child = match openat(fd, name, dir_flags(), Mode::empty()) {
            Ok(c) => c,
            Err(Errno::ENOENT) => return,
            Err(e) => {
                self.note(Shortfall::Unreadable {
                    root: root.to_owned(),
                    name: short(name),
                    reason: errno_text(e),
                });
                return;
            }
        };
        match fstat(&child) {
            Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
            _ => {
                self.note(Shortfall::Moved {
                    root: root.to_owned(),
                    name: short(name),
                });
                return;
            }
        }
        let path = self.keyed.dir(top.path, name);
        if depth > self.limits.open_dirs {
            stack[i].close();
        }
        stack.push(Level::open(child, st, path));
    }

    /// Pop the finished deepest level; re-enter its parent through `..`
    /// when the parent's descriptor was closed to save descriptors.
    fn finish_level(&mut self, root: &str, stack: &mut Vec<Level>) {
        let Some(done) = stack.pop() else { return };
        let Some(parent) = stack.last_mut() else {
            return;
        };
        if parent.fd.is_some() {
            return;
        }
        let reopened = done.fd.as_ref().and_then(|fd| {
            let up = openat(fd, "..", dir_flags(), Mode::empty()).ok()?;
            let st = fstat(&up).ok()?;
            (st.st_dev == parent.dev && st.st_ino == parent.ino).then_some(())?;
            lseek(&up, parent.resume, Whence::SeekSet).ok()?;
            Some(up)
        });
        match reopened {
            Some(up) => {
                parent.fd = Some(up);
                parent.buf = vec![0; BUF_BYTES];
                parent.pos = 0;
                parent.len = 0;
            }
            None => {
                self.note(Shortfall::Moved {
                    root: root.to_owned(),
                    name: "(parent directory)".to_owned(),
                });
                // Ancestors without a descriptor are unreachable now.
                while stack.last().is_some_and(|l| l.fd.is_none()) {
                    stack.pop();
                }
            }
        }
    }
}

/// The directories to scan for `write_paths` (declared scopes, may be
/// globs): each scope's literal prefix, normalized, without duplicates and
/// without roots nested in another root (so nothing is counted twice).
pub fn scan_roots(write_paths: &[String]) -> Vec<String> {
    let mut roots: Vec<String> = write_paths
        .iter()
        .map(|p| crate::engine::paths::glob_literal_prefix(p))
        .filter(|p| !p.is_empty())
        .map(|p| match crate::engine::paths::normalize(p) {
            Ok((crate::engine::paths::Flavour::Posix, n)) => n,
            _ => p.to_owned(),
        })
        .collect();
    roots.sort_unstable();
    roots.dedup();
    let mut kept: Vec<String> = Vec::new();
    for r in roots {
        let nested = kept.iter().any(|k| {
            k == "/"
                || r.strip_prefix(k.as_str())
                    .is_some_and(|t| t.starts_with('/'))
        });
        if !nested {
            kept.push(r);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_deduplicated_and_nested_roots_dropped() {
        let scopes: Vec<String> = ["/w/a/**", "/w/a/b/*.txt", "/w/ab", "/w/a//", "/x/./y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(scan_roots(&scopes), vec!["/w/a", "/w/ab", "/x/y"]);
        assert_eq!(
            scan_roots(&["/".to_owned(), "/etc/x".to_owned()]),
            vec!["/"]
        );
    }

    #[test]
    fn parse_rejects_short_records() {
        assert!(parse(&[0u8; 10]).is_none());
        let mut rec = vec![0u8; 24];
        rec[8..16].copy_from_slice(&7i64.to_ne_bytes());
        rec[16..18].copy_from_slice(&24u16.to_ne_bytes());
        rec[19..22].copy_from_slice(b"abc");
        let (d, len) = parse(&rec).unwrap();
        assert_eq!((d.off, d.name, len), (7, &b"abc"[..], 24));
    }
}
