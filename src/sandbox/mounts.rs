//! Mount view: a fresh tmpfs root populated from the plan's mount
//! operations, entered with `pivot_root`, the old root detached.
//!
//! Sequence (as bubblewrap does it, so host paths stay reachable while
//! the new root is built, including paths under the host's `/tmp`):
//! 1. make every mount private;
//! 2. mount a scratch tmpfs on `/tmp`, `pivot_root` into it with the host
//!    root at `/oldroot` (the host `/tmp` is visible again there);
//! 3. mount the new root tmpfs at `/newroot` and execute the plan. A bind
//!    opens `<src>` below `/oldroot` with `openat2(RESOLVE_BENEATH |
//!    RESOLVE_NO_SYMLINKS)` — the plan holds symlink-free paths, so a link
//!    appearing there since csc checked them fails the setup — clones
//!    exactly that object with `open_tree`, sets `nosuid,nodev` (+`ro`
//!    unless writable) on the detached copy, and attaches it with
//!    `move_mount` on a mount point opened the same way below `/newroot`.
//!    The source descriptors are kept for the Landlock rules;
//! 4. detach `/oldroot`, `pivot_root` into `/newroot`, detach the scratch
//!    root, remount `/` read-only.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::plan::{BindAccess, DEV_NODES, MountOp};
use super::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

use super::error::{Cause, StepResult, failed};

const SCRATCH: &str = "/tmp";
const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";
/// Empty file on the scratch root, bound over masked files.
const EMPTY_FILE: &str = "/empty";
/// Empty read-only tmpfs on the scratch root, cloned over masked
/// directories.
const EMPTY_DIR: &str = "/emptydir";

/// Descriptors of the bound host objects, by their path in the view: the
/// objects csc checked and bound, for the Landlock rules.
pub(crate) type Bound = Vec<(PathBuf, OwnedFd)>;

fn under(base: &str, p: &Path) -> PathBuf {
    let rel = p.strip_prefix("/").unwrap_or(p);
    Path::new(base).join(rel)
}

fn mkdir_p(p: &Path) -> StepResult<()> {
    std::fs::create_dir_all(p).map_err(failed(format!("mkdir {}", p.display())))
}

fn ensure_mountpoint(p: &Path, is_dir: bool) -> StepResult<()> {
    if std::fs::symlink_metadata(p).is_ok() {
        return Ok(());
    }
    if is_dir {
        mkdir_p(p)
    } else {
        if let Some(parent) = p.parent() {
            mkdir_p(parent)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .map(drop)
            .map_err(failed(format!("create {}", p.display())))
    }
}

fn tmpfs(target: &Path, data: &str, extra: MsFlags) -> StepResult<()> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | extra,
        Some(data),
    )
    .map_err(failed(format!("mount tmpfs on {}", target.display())))
}

fn bind(src: &Path, dst: &Path, recursive: bool) -> StepResult<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(src), dst, None::<&str>, flags, None::<&str>).map_err(failed(format!(
        "bind {} on {}",
        src.display(),
        dst.display()
    )))
}

fn setattr(p: &Path, set: u64, recursive: bool) -> StepResult<()> {
    sys::mount_setattr(p, set, recursive).map_err(failed(format!("mount_setattr {}", p.display())))
}

fn components(p: &Path) -> Vec<&std::ffi::OsStr> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// `O_PATH` descriptor of one of the scratch root's own entries.
fn open_scratch(path: &str, is_dir: bool) -> StepResult<OwnedFd> {
    use nix::fcntl::OFlag;
    let mut flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if is_dir {
        flags |= OFlag::O_DIRECTORY;
    }
    nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())
        .map_err(failed(format!("open {path}")))
}

fn open_dir(path: &str) -> StepResult<OwnedFd> {
    open_scratch(path, true)
}

fn kind_word(is_dir: bool) -> &'static str {
    if is_dir { "directory" } else { "file" }
}

/// Open the host object `src` (below `/oldroot`) without following any
/// symlink on the way, and check that it still is what the plan says.
fn open_source(old: &OwnedFd, src: &Path, is_dir: bool) -> StepResult<OwnedFd> {
    let rel = src.strip_prefix("/").unwrap_or(src);
    let fd = sys::open_beneath_nofollow(old.as_raw_fd(), rel, false).map_err(|err| {
        let why = match err.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EXDEV) => {
                "a component is now a symbolic link (it changed after csc checked it)".to_owned()
            }
            Some(libc::ENOTDIR) => {
                "a component is no longer a directory (it changed after csc checked it)".to_owned()
            }
            _ => err.to_string(),
        };
        Cause::refused(format!("open {} for binding: {why}", src.display()))
    })?;
    let st = nix::sys::stat::fstat(&fd).map_err(failed(format!("fstat {}", src.display())))?;
    let fmt = st.st_mode & libc::S_IFMT;
    let dir = fmt == libc::S_IFDIR;
    if fmt == libc::S_IFLNK {
        return Err(Cause::refused(format!(
            "open {} for binding: it is now a symbolic link (it changed after csc checked it)",
            src.display()
        )));
    }
    if dir != is_dir {
        return Err(Cause::refused(format!(
            "{} is no longer a {} (it changed after csc checked it)",
            src.display(),
            kind_word(is_dir)
        )));
    }
    Ok(fd)
}

/// Open the mount point `dst` below `/newroot` without following any
/// symlink, creating missing components (directories, and the final file
/// for a file bind) when `create` is set.
fn open_mountpoint(dst: &Path, is_dir: bool, create: bool) -> StepResult<Option<OwnedFd>> {
    let new = open_dir(NEW)?;
    let rel = dst.strip_prefix("/").unwrap_or(dst);
    // Fast paths: the mount point exists, or only its last component is
    // missing (one openat2 each instead of one per component).
    match sys::open_beneath_nofollow(new.as_raw_fd(), rel, is_dir) {
        Ok(fd) => return Ok(Some(fd)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(Cause::refused(format!(
                "open mount point {} (no symbolic links allowed): {err}",
                dst.display()
            )));
        }
    }
    if let (Some(parent), Some(name)) = (rel.parent(), rel.file_name())
        && let Ok(dir) = sys::open_beneath_nofollow(new.as_raw_fd(), parent, true)
    {
        let made = if is_dir {
            sys::mkdirat(dir.as_raw_fd(), name, 0o755)
        } else {
            sys::create_file_at(dir.as_raw_fd(), name)
        };
        made.map_err(failed(format!("create mount point {}", dst.display())))?;
        return sys::open_beneath_nofollow(dir.as_raw_fd(), Path::new(name), is_dir)
            .map(Some)
            .map_err(failed(format!(
                "open mount point {} (no symbolic links allowed)",
                dst.display()
            )));
    }
    let mut cur = new;
    let parts = components(dst);
    for (i, name) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let want_dir = !last || is_dir;
        let opened = match sys::open_beneath_nofollow(cur.as_raw_fd(), Path::new(name), want_dir) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {
                let made = if want_dir {
                    sys::mkdirat(cur.as_raw_fd(), name, 0o755)
                } else {
                    sys::create_file_at(cur.as_raw_fd(), name)
                };
                made.map_err(failed(format!("create mount point {}", dst.display())))?;
                sys::open_beneath_nofollow(cur.as_raw_fd(), Path::new(name), want_dir)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other,
        };
        cur = opened.map_err(failed(format!(
            "open mount point {} (no symbolic links allowed)",
            dst.display()
        )))?;
    }
    Ok(Some(cur))
}

/// Attach a detached copy of the object `from` on `target`, with `set`
/// mount attributes (added on the copy before it becomes visible).
fn attach(
    from: &OwnedFd,
    target: &OwnedFd,
    set: u64,
    recursive: bool,
    what: &Path,
) -> StepResult<()> {
    let tree = sys::open_tree_clone(from, recursive)
        .map_err(failed(format!("open_tree {}", what.display())))?;
    sys::mount_setattr_fd(&tree, set, recursive)
        .map_err(failed(format!("mount_setattr {}", what.display())))?;
    sys::move_mount_fd(&tree, target).map_err(failed(format!("move_mount {}", what.display())))
}

/// Hide `dst` (if it exists in the view) under an empty read-only file or
/// directory. The target is opened without following symlinks.
fn mask(dst: &Path, is_dir: bool) -> StepResult<()> {
    let Some(target) = open_mountpoint(dst, is_dir, false)? else {
        return Ok(());
    };
    let st = nix::sys::stat::fstat(&target).map_err(failed(format!("fstat {}", dst.display())))?;
    let target_is_dir = (st.st_mode & libc::S_IFMT) == libc::S_IFDIR;
    let empty = open_scratch(
        if target_is_dir { EMPTY_DIR } else { EMPTY_FILE },
        target_is_dir,
    )?;
    attach(
        &empty,
        &target,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        false,
        dst,
    )
}

fn apply_op(op: &MountOp, old: &OwnedFd, bound: &mut Bound) -> StepResult<()> {
    match op {
        MountOp::Bind {
            src,
            dst,
            access,
            is_dir,
        } => {
            let source = open_source(old, src, *is_dir)?;
            let target = open_mountpoint(dst, *is_dir, true)?
                .ok_or_else(|| Cause::refused(format!("mount point {} missing", dst.display())))?;
            let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
            if *access != BindAccess::Write {
                set |= MOUNT_ATTR_RDONLY;
            }
            attach(&source, &target, set, true, dst)?;
            bound.push((dst.clone(), source));
            Ok(())
        }
        MountOp::Symlink { target, dst } => {
            let link = under(NEW, dst);
            if let Some(parent) = link.parent() {
                mkdir_p(parent)?;
            }
            std::os::unix::fs::symlink(target, &link)
                .map_err(failed(format!("symlink {}", link.display())))
        }
        MountOp::Tmpfs { dst, size_bytes } => {
            let target = under(NEW, dst);
            mkdir_p(&target)?;
            tmpfs(
                &target,
                &format!("mode=1777,size={size_bytes}"),
                MsFlags::empty(),
            )
        }
        MountOp::Dev { dst } => {
            let target = under(NEW, dst);
            mkdir_p(&target)?;
            tmpfs(&target, "mode=0755,size=65536", MsFlags::MS_NOEXEC)?;
            for n in DEV_NODES {
                let node = target.join(n);
                ensure_mountpoint(&node, false)?;
                bind(&under(OLD, &Path::new("/dev").join(n)), &node, false)?;
                // Device nodes must stay usable: nosuid+noexec, not nodev.
                setattr(&node, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false)?;
            }
            for (name, to) in [
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
            ] {
                std::os::unix::fs::symlink(to, target.join(name))
                    .map_err(failed(format!("symlink /dev/{name}")))?;
            }
            setattr(
                &target,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                false,
            )
        }
        MountOp::Proc { dst } => {
            let target = under(NEW, dst);
            mkdir_p(&target)?;
            mount(
                Some("proc"),
                &target,
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(failed("mount proc"))
        }
        MountOp::Hide { dst } => mask(dst, true),
        MountOp::Mask { dst, is_dir } => mask(dst, *is_dir),
    }
}

/// Build the view and enter it; `cwd` becomes the working directory.
/// Must run inside the new mount and pid namespaces (for /proc). Returns
/// the descriptors of the bound host objects (for Landlock).
pub(crate) fn setup(ops: &[MountOp], cwd: &Path) -> StepResult<Bound> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(failed("make / rprivate"))?;
    // Scratch root on /tmp, pivot into it; the host root ends at /oldroot.
    tmpfs(Path::new(SCRATCH), "mode=0755,size=65536", MsFlags::empty())?;
    let scratch = Path::new(SCRATCH);
    mkdir_p(&scratch.join("oldroot"))?;
    mkdir_p(&scratch.join("newroot"))?;
    nix::unistd::chdir(scratch).map_err(failed("chdir scratch"))?;
    sys::pivot_root(Path::new("."), Path::new("oldroot"))
        .map_err(failed("pivot_root into scratch"))?;
    nix::unistd::chdir("/").map_err(failed("chdir /"))?;

    tmpfs(Path::new(NEW), "mode=0755,size=1048576", MsFlags::empty())?;
    ensure_mountpoint(Path::new(EMPTY_FILE), false)?;
    mkdir_p(Path::new(EMPTY_DIR))?;
    tmpfs(
        Path::new(EMPTY_DIR),
        "mode=0555,size=4096",
        MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
    )?;
    let mut bound = Bound::new();
    let old = open_dir(OLD)?;
    for op in ops {
        apply_op(op, &old, &mut bound)?;
    }
    drop(old);

    // Detach the host root, then make /newroot the root.
    mount(
        None::<&str>,
        OLD,
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(failed("make oldroot rprivate"))?;
    umount2(OLD, MntFlags::MNT_DETACH).map_err(failed("detach old root"))?;
    let scratch_root = std::fs::File::open("/").map_err(failed("open scratch root"))?;
    nix::unistd::chdir(NEW).map_err(failed("chdir newroot"))?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(failed("pivot_root into new root"))?;
    nix::unistd::fchdir(&scratch_root).map_err(failed("fchdir scratch root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(failed("detach scratch root"))?;
    drop(scratch_root);
    nix::unistd::chdir("/").map_err(failed("chdir /"))?;
    setattr(
        Path::new("/"),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        false,
    )?;
    nix::unistd::chdir(cwd).map_err(failed(format!("chdir {}", cwd.display())))?;
    Ok(bound)
}
