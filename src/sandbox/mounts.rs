//! Mount view: a fresh tmpfs root populated from the plan's mount
//! operations, entered with `pivot_root`, the old root detached.
//!
//! Sequence (as bubblewrap does it, so host paths stay reachable while
//! the new root is built, including paths under the host's `/tmp`):
//! 1. make every mount private;
//! 2. mount a scratch tmpfs on `/tmp`, `pivot_root` into it with the host
//!    root at `/oldroot` (the host `/tmp` is visible again there);
//! 3. mount the new root tmpfs at `/newroot` and execute the plan, binding
//!    `/oldroot/<src>` to `/newroot/<dst>`; every bind gets `nosuid,nodev`
//!    (+`ro` unless writable) recursively via `mount_setattr`;
//! 4. detach `/oldroot`, `pivot_root` into `/newroot`, detach the scratch
//!    root, remount `/` read-only.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::plan::{BindAccess, DEV_NODES, MountOp};
use super::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

const SCRATCH: &str = "/tmp";
const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";
/// Empty file on the scratch root, bound over masked files.
const EMPTY_FILE: &str = "/empty";

fn under(base: &str, p: &Path) -> PathBuf {
    let rel = p.strip_prefix("/").unwrap_or(p);
    Path::new(base).join(rel)
}

fn e<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |err| format!("{what}: {err}")
}

fn mkdir_p(p: &Path) -> Result<(), String> {
    std::fs::create_dir_all(p).map_err(e(format!("mkdir {}", p.display())))
}

fn ensure_mountpoint(p: &Path, is_dir: bool) -> Result<(), String> {
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
            .map_err(e(format!("create {}", p.display())))
    }
}

fn tmpfs(target: &Path, data: &str, extra: MsFlags) -> Result<(), String> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | extra,
        Some(data),
    )
    .map_err(e(format!("mount tmpfs on {}", target.display())))
}

fn bind(src: &Path, dst: &Path, recursive: bool) -> Result<(), String> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(src), dst, None::<&str>, flags, None::<&str>).map_err(e(format!(
        "bind {} on {}",
        src.display(),
        dst.display()
    )))
}

fn setattr(p: &Path, set: u64, recursive: bool) -> Result<(), String> {
    sys::mount_setattr(p, set, recursive).map_err(e(format!("mount_setattr {}", p.display())))
}

fn apply_op(op: &MountOp) -> Result<(), String> {
    match op {
        MountOp::Bind {
            src,
            dst,
            access,
            is_dir,
        } => {
            let target = under(NEW, dst);
            ensure_mountpoint(&target, *is_dir)?;
            bind(&under(OLD, src), &target, true)?;
            let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
            if *access != BindAccess::Write {
                set |= MOUNT_ATTR_RDONLY;
            }
            setattr(&target, set, true)
        }
        MountOp::Symlink { target, dst } => {
            let link = under(NEW, dst);
            if let Some(parent) = link.parent() {
                mkdir_p(parent)?;
            }
            std::os::unix::fs::symlink(target, &link)
                .map_err(e(format!("symlink {}", link.display())))
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
                    .map_err(e(format!("symlink /dev/{name}")))?;
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
            .map_err(e("mount proc"))
        }
        MountOp::Hide { dst } | MountOp::Mask { dst, is_dir: true } => {
            let target = under(NEW, dst);
            mkdir_p(&target)?;
            tmpfs(
                &target,
                "mode=0555,size=4096",
                MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
            )
        }
        MountOp::Mask { dst, is_dir: false } => {
            let target = under(NEW, dst);
            bind(Path::new(EMPTY_FILE), &target, false)?;
            setattr(
                &target,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                false,
            )
        }
    }
}

/// Build the view and enter it; `cwd` becomes the working directory.
/// Must run inside the new mount and pid namespaces (for /proc).
pub(crate) fn setup(ops: &[MountOp], cwd: &Path) -> Result<(), String> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(e("make / rprivate"))?;
    // Scratch root on /tmp, pivot into it; the host root ends at /oldroot.
    tmpfs(Path::new(SCRATCH), "mode=0755,size=65536", MsFlags::empty())?;
    let scratch = Path::new(SCRATCH);
    mkdir_p(&scratch.join("oldroot"))?;
    mkdir_p(&scratch.join("newroot"))?;
    nix::unistd::chdir(scratch).map_err(e("chdir scratch"))?;
    sys::pivot_root(Path::new("."), Path::new("oldroot")).map_err(e("pivot_root into scratch"))?;
    nix::unistd::chdir("/").map_err(e("chdir /"))?;

    tmpfs(Path::new(NEW), "mode=0755,size=1048576", MsFlags::empty())?;
    ensure_mountpoint(Path::new(EMPTY_FILE), false)?;
    for op in ops {
        apply_op(op)?;
    }

    // Detach the host root, then make /newroot the root.
    mount(
        None::<&str>,
        OLD,
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(e("make oldroot rprivate"))?;
    umount2(OLD, MntFlags::MNT_DETACH).map_err(e("detach old root"))?;
    let scratch_root = std::fs::File::open("/").map_err(e("open scratch root"))?;
    nix::unistd::chdir(NEW).map_err(e("chdir newroot"))?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(e("pivot_root into new root"))?;
    nix::unistd::fchdir(&scratch_root).map_err(e("fchdir scratch root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(e("detach scratch root"))?;
    drop(scratch_root);
    nix::unistd::chdir("/").map_err(e("chdir /"))?;
    setattr(
        Path::new("/"),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        false,
    )?;
    nix::unistd::chdir(cwd).map_err(e(format!("chdir {}", cwd.display())))?;
    Ok(())
}
