//! Small file-system helpers shared by the loaders and the evidence code.

pub mod hash;

use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, renameat};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    TooLarge {
        /// Bytes seen (at least the real size).
        size: u64,
    },
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

/// Prefix of csc's temp files (`.<final name><TEMP_MARK><pid>.<random>`).
pub const TEMP_MARK: &str = ".csc-tmp.";
/// A temp file whose writer process is gone is removed once it is this old.
pub const STALE_DEAD_WRITER: Duration = Duration::from_secs(30);
/// A temp file is removed once it is this old, whoever wrote it.
pub const STALE_ANY: Duration = Duration::from_secs(10 * 60);

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn random_hex() -> String {
    use std::io::Read;
    let mut raw = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut raw)) {
        Ok(()) => crate::canonical::hex(&raw),
        Err(_) => format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ),
    }
}

/// The one rule, shared by `csc run --output-dir` and `csc verify-receipt
/// --outputs`, for a command id that names saved-output files
/// (`<id>.stdout` ...): non-empty, at most 240 bytes, no `/`, `\`, NUL or
/// `..`, and not starting with `.`.
pub fn is_output_stem(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 240
        && !id.contains(['/', '\\', '\0'])
        && !id.contains("..")
        && !id.starts_with('.')
}

/// Is `name` one plain directory entry name (no `/`, not `.`/`..`, no NUL)?
pub fn is_plain_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

/// A directory csc writes its own evidence into (receipt directory,
/// `--output-dir`), opened once before anything runs. Every later write
/// goes through this descriptor with `O_NOFOLLOW`/`O_EXCL` on the final
/// name, so replacing the directory (or a name in it) with a symlink
/// during the run cannot redirect csc's writes or deletions elsewhere.
#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
    shown: PathBuf,
}

impl DirFd {
    /// Open `path` as a directory (creating it and its parents first when
    /// `create`). The operator's path is resolved once, now.
    pub fn open(path: &Path, create: bool) -> io::Result<DirFd> {
        if create {
            std::fs::create_dir_all(path)?;
        }
        let fd = openat(
            AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(DirFd {
            fd,
            shown: path.to_path_buf(),
        })
    }

    /// The path the operator gave (for messages only).
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// Where the kernel says the opened directory is now.
    pub fn real_path(&self) -> io::Result<PathBuf> {
        let link = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        match std::fs::read_link(link) {
            Ok(p) if p.is_absolute() => Ok(p),
            _ => std::fs::canonicalize(&self.shown),
        }
    }

    fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<std::fs::File> {
        let fd = openat(
            &self.fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(errno)?;
        Ok(std::fs::File::from(fd))
    }

    /// Refuse when an existing entry `name` is not a regular file.
    pub fn check_replaceable(&self, name: &OsStr) -> io::Result<()> {
        match self.stat(name)? {
            Some(st) if st.st_mode & libc::S_IFMT != libc::S_IFREG => Err(io::Error::other(
                "an existing non-regular file (directory, symlink, device, FIFO or socket) is in the way; refusing to replace it",
            )),
            _ => Ok(()),
        }
    }

    /// Replace `name` with a new file holding `bytes`: whatever is at
    /// `name` (a planted symlink included) is unlinked, never followed.
    pub fn replace_file(&self, name: &OsStr, bytes: &[u8]) -> io::Result<()> {
        if !is_plain_name(name) {
            return Err(io::Error::other("not a plain file name"));
        }
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(errno(e)),
        }
        let mut file = self.create_new(name, 0o644)?;
        file.write_all(bytes)
    }

    /// A fresh temp-file name for `name` in this directory
    /// (`.<name>.csc-tmp.<pid>.<random>`).
    pub fn temp_name(&self, name: &OsStr) -> OsString {
        let mut t = OsString::from(".");
        t.push(name);
        t.push(format!(
            "{TEMP_MARK}{}.{}",
            std::process::id(),
            random_hex()
        ));
        t
    }

    /// Check, before anything runs, that `name` can later be written
    /// atomically through the temp name `tmp` (from
    /// [`temp_name`](Self::temp_name)): that temp file can be created (and
    /// is removed again) and no non-regular file sits at `name`.
    pub fn probe(&self, name: &OsStr, tmp: &OsStr) -> io::Result<()> {
        if !is_plain_name(name) || !is_plain_name(tmp) {
            return Err(io::Error::other("not a plain file name"));
        }
        self.check_replaceable(name)?;
        drop(self.create_new(tmp, 0o600)?);
        unlinkat(&self.fd, tmp, UnlinkatFlags::NoRemoveDir).map_err(errno)
    }

    /// Remove temp files for `name` left by interrupted writers: regular
    /// files named `.<name>.csc-tmp.<pid>.<random>` whose writer pid is
    /// not running and that are older than [`STALE_DEAD_WRITER`], or that
    /// are older than [`STALE_ANY`]. Returns how many were removed.
    pub fn remove_stale_temps(&self, name: &OsStr) -> usize {
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(TEMP_MARK);
        let prefix = prefix.as_bytes();
        // Listed through the descriptor (its /proc link names the same
        // directory inode); every entry is then handled relative to the fd.
        let listing = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let Ok(entries) = std::fs::read_dir(listing) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        let mut stale = Vec::new();
        for entry in entries.flatten() {
            let entry_name = entry.file_name();
            let Some(rest) = entry_name.as_bytes().strip_prefix(prefix) else {
                continue;
            };
            let Ok(Some(st)) = self.stat(&entry_name) else {
                continue;
            };
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                continue;
            }
            let mtime = std::time::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
            let age = now.duration_since(mtime).unwrap_or_default();
            let pid = std::str::from_utf8(rest)
                .ok()
                .and_then(|r| r.split('.').next())
                .and_then(|p| p.parse::<i32>().ok());
            let writer_gone = match pid {
                Some(p) if p > 0 => matches!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None),
                    Err(nix::errno::Errno::ESRCH)
                ),
                _ => true,
            };
            if age >= STALE_ANY || (writer_gone && age >= STALE_DEAD_WRITER) {
                stale.push(entry_name);
            }
        }
        stale
            .iter()
            .filter(|n| unlinkat(&self.fd, n.as_os_str(), UnlinkatFlags::NoRemoveDir).is_ok())
            .count()
    }

    /// Write `bytes` to `name` atomically inside this directory: stale
    /// temps removed, temp created `O_EXCL|O_NOFOLLOW`, written,
    /// fsynced, `renameat` over `name` (refused when a non-regular
    /// file is there), directory fsynced. Once this returns `Ok`, the new
    /// content survives a crash under `name`.
    pub fn write_atomic(&self, name: &OsStr, bytes: &[u8]) -> io::Result<()> {
        self.remove_stale_temps(name);
        self.write_atomic_via(name, &self.temp_name(name), bytes)
    }

    /// [`write_atomic`](Self::write_atomic) through the temp name `tmp`
    /// (from [`temp_name`](Self::temp_name)), without the stale-temp
    /// sweep: for a caller that swept and chose the name before the run,
    /// so that after it only the write, the flushes and the rename remain
    /// (no directory listing, no random read).
    pub fn write_atomic_via(&self, name: &OsStr, tmp: &OsStr, bytes: &[u8]) -> io::Result<()> {
        if !is_plain_name(name) || !is_plain_name(tmp) {
            return Err(io::Error::other("not a plain file name"));
        }
        self.check_replaceable(name)?;
        // Created here or not at all: a name already taken is left alone.
        let mut file = self.create_new(tmp, 0o644)?;
        let result = (|| -> io::Result<()> {
            file.write_all(bytes)?;
            // fsync, not fdatasync: for a new file both must commit its
            // size and blocks, and measured on ext4 they cost the same
            // (docs/benchmarks.md); the name is made durable by the
            // directory fsync after the rename.
            file.sync_all()?;
            self.check_replaceable(name)?;
            renameat(&self.fd, tmp, &self.fd, name).map_err(errno)?;
            nix::unistd::fsync(&self.fd).map_err(errno)
        })();
        drop(file);
        if result.is_err() {
            let _ = unlinkat(&self.fd, tmp, UnlinkatFlags::NoRemoveDir);
        }
        result
    }
}

/// Open `path` (absolute) for reading without following any symlink in
/// any component, and only if it is a regular file. Opening never blocks
/// and never opens a device or FIFO for reading: the file is first opened
/// `O_PATH`, checked with `fstat`, then re-opened through its descriptor.
pub fn open_regular_nofollow(path: &Path) -> io::Result<std::fs::File> {
    if !path.is_absolute() {
        return Err(io::Error::other("not an absolute path"));
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let pathfd = match openat2(AT_FDCWD, path, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => walk_nofollow(path)?,
        Err(nix::errno::Errno::ELOOP) => {
            return Err(io::Error::other("a path component is a symlink"));
        }
        Err(e) => return Err(errno(e)),
    };
    reopen_regular(&pathfd)
}

/// The `O_NOFOLLOW` walk used when `openat2` is unavailable: every
/// component is opened relative to its parent's descriptor.
pub fn walk_nofollow(path: &Path) -> io::Result<OwnedFd> {
    use std::path::Component;
    let mut fd = openat(
        AT_FDCWD,
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let parts: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::RootDir | Component::CurDir => None,
            _ => Some(Err(())),
        })
        .collect::<Result<_, _>>()
        .map_err(|()| io::Error::other("'..' is not allowed"))?;
    for part in parts {
        fd = match openat(
            &fd,
            part,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(next) => next,
            Err(e) => return Err(errno(e)),
        };
        if fstat(&fd).map_err(errno)?.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(io::Error::other("a path component is a symlink"));
        }
    }
    Ok(fd)
}

/// Create the directories `names` one below the other under `base` (an
/// existing directory, opened without following any symlink), each with
/// `mkdirat` and then opened `O_DIRECTORY|O_NOFOLLOW` relative to its
/// parent: a symlink or non-directory at any step (one planted in a race
/// included) fails instead of being followed. Existing directories are
/// fine. Returns how many directories were created.
pub fn mkdirs_nofollow(base: &Path, names: &[OsString]) -> io::Result<usize> {
    let mut fd = walk_nofollow(base)?;
    let mut created = 0;
    for name in names {
        if !is_plain_name(name) {
            return Err(io::Error::other(format!("{name:?} is not a plain name")));
        }
        match nix::sys::stat::mkdirat(&fd, name.as_os_str(), Mode::from_bits_truncate(0o777)) {
            Ok(()) => created += 1,
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(errno(e)),
        }
        fd = openat(
            &fd,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP => io::Error::other(format!(
                "{name:?} exists and is not a directory (symlinks are not followed)"
            )),
            e => errno(e),
        })?;
    }
    Ok(created)
}

/// Create the directories `dirs` below `base` as [`mkdirs_nofollow`] does,
/// then an empty regular file `file` in the last one (`O_CREAT|O_EXCL|
/// O_NOFOLLOW`; an existing entry is left alone if it is a regular file).
pub fn mkfile_nofollow(base: &Path, dirs: &[OsString], file: &OsStr) -> io::Result<()> {
    if !is_plain_name(file) {
        return Err(io::Error::other(format!("{file:?} is not a plain name")));
    }
    mkdirs_nofollow(base, dirs)?;
    let mut dir = walk_nofollow(base)?;
    for name in dirs {
        dir = openat(
            &dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
    }
    match openat(
        &dir,
        file,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o666),
    ) {
        Ok(_) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => {
            let st = fstatat(&dir, file, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "{file:?} exists and is not a regular file (symlinks are not followed)"
                )))
            }
        }
        Err(e) => Err(errno(e)),
    }
}

fn reopen_regular(pathfd: &OwnedFd) -> io::Result<std::fs::File> {
    let st = fstat(pathfd).map_err(errno)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(io::Error::other("it is a symlink (not followed)"));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::other("not a regular file"));
    }
    let proc_path = format!("/proc/self/fd/{}", pathfd.as_raw_fd());
    let fd = openat(
        AT_FDCWD,
        proc_path.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let again = fstat(&fd).map_err(errno)?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
        return Err(io::Error::other("file changed while it was opened"));
    }
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {

    #[test]
    fn mkdirs_nofollow_creates_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let names = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(mkdirs_nofollow(&root, &names(&["a", "b"])).unwrap(), 2);
        assert!(root.join("a/b").is_dir());
        assert_eq!(mkdirs_nofollow(&root, &names(&["a", "b"])).unwrap(), 0);
        std::fs::create_dir(root.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), root.join("link")).unwrap();
        assert!(mkdirs_nofollow(&root, &names(&["link", "x"])).is_err());
        assert!(!root.join("elsewhere/x").exists());
        assert!(mkdirs_nofollow(&root.join("link"), &names(&["y"])).is_err());
        assert!(!root.join("elsewhere/y").exists());
    }

    use super::*;

    #[test]
    fn dirfd_writes_never_follow_a_swapped_directory() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let dir = DirFd::open(&out, true).unwrap();
        dir.probe(OsStr::new("r.json"), &dir.temp_name(OsStr::new("r.json")))
            .unwrap();
        // The directory is moved away and replaced by a symlink.
        std::fs::rename(&out, root.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &out).unwrap();
        dir.write_atomic(OsStr::new("r.json"), b"1").unwrap();
        dir.replace_file(OsStr::new("x.stdout"), b"2").unwrap();
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_eq!(
            std::fs::read(root.path().join("moved/r.json")).unwrap(),
            b"1"
        );
        assert_eq!(
            std::fs::read(root.path().join("moved/x.stdout")).unwrap(),
            b"2"
        );
    }

    #[test]
    fn dirfd_refuses_non_regular_targets_and_cleans_stale_temps() {
        let root = tempfile::tempdir().unwrap();
        let dir = DirFd::open(root.path(), false).unwrap();
        std::fs::create_dir(root.path().join("r.json")).unwrap();
        assert!(
            dir.probe(OsStr::new("r.json"), &dir.temp_name(OsStr::new("r.json")))
                .is_err()
        );
        assert!(dir.write_atomic(OsStr::new("r.json"), b"1").is_err());
        std::fs::remove_dir(root.path().join("r.json")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("r.json")).unwrap();
        assert!(
            dir.probe(OsStr::new("r.json"), &dir.temp_name(OsStr::new("r.json")))
                .is_err()
        );
        std::fs::remove_file(root.path().join("r.json")).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        let dead = root.path().join(".r.json.csc-tmp.999999999.aa");
        let fresh_live = root
            .path()
            .join(format!(".r.json.csc-tmp.{}.bb", std::process::id()));
        for p in [&dead, &fresh_live] {
            std::fs::write(p, b"partial").unwrap();
        }
        std::fs::File::options()
            .write(true)
            .open(&dead)
            .unwrap()
            .set_modified(old)
            .unwrap();
        dir.write_atomic(OsStr::new("r.json"), b"ok").unwrap();
        assert!(!dead.exists());
        assert!(fresh_live.exists());
        assert_eq!(std::fs::read(root.path().join("r.json")).unwrap(), b"ok");
    }

    /// Through a temp name chosen earlier: the write replaces the file,
    /// leaves no temp behind, can be repeated with the same name, never
    /// goes through a temp name that is not one plain entry, and a temp
    /// already taken (planted in between) fails the write untouched.
    #[test]
    fn a_write_through_a_temp_named_earlier_is_atomic_and_repeatable() {
        let root = tempfile::tempdir().unwrap();
        let dir = DirFd::open(root.path(), false).unwrap();
        let name = OsStr::new("r.json");
        let tmp = dir.temp_name(name);
        dir.write_atomic_via(name, &tmp, b"1").unwrap();
        dir.write_atomic_via(name, &tmp, b"2").unwrap();
        assert_eq!(std::fs::read(root.path().join("r.json")).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
        assert!(
            dir.write_atomic_via(name, OsStr::new("../x"), b"3")
                .is_err()
        );
        std::fs::write(root.path().join(&tmp), b"planted").unwrap();
        assert!(dir.write_atomic_via(name, &tmp, b"4").is_err());
        assert_eq!(std::fs::read(root.path().join("r.json")).unwrap(), b"2");
        assert_eq!(std::fs::read(root.path().join(&tmp)).unwrap(), b"planted");
    }

    #[test]
    fn nofollow_open_refuses_links_anywhere_and_non_files() {
        let root = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(root.path()).unwrap();
        std::fs::create_dir(real.join("d")).unwrap();
        std::fs::write(real.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink(real.join("d"), real.join("ld")).unwrap();
        std::os::unix::fs::symlink(real.join("d/f"), real.join("lf")).unwrap();
        assert!(open_regular_nofollow(&real.join("d/f")).is_ok());
        assert!(open_regular_nofollow(&real.join("lf")).is_err());
        assert!(open_regular_nofollow(&real.join("ld/f")).is_err());
        assert!(open_regular_nofollow(&real.join("d")).is_err());
        assert!(open_regular_nofollow(Path::new("/dev/null")).is_err());
        assert!(walk_nofollow(&real.join("d/f")).is_ok());
        assert!(walk_nofollow(&real.join("ld/f")).is_err());
        assert!(walk_nofollow(&real.join("lf")).is_err());
    }

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
