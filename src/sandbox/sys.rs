//! Thin wrappers around the raw system calls the sandbox needs and that
//! neither `nix` nor the dedicated crates expose safely.
//!
//! This is the only module of the sandbox that contains `unsafe`; every
//! block names the invariant it relies on.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`:
/// the Landlock ABI version the running kernel offers (0 when Landlock is
/// not available).
pub fn landlock_abi_version() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer and size 0 the kernel reads no
    // user memory; the call only returns an integer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 { 0 } else { ret as i32 }
}

/// `struct mount_attr` from `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_NOSUID`.
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
/// `MOUNT_ATTR_NODEV`.
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
/// `MOUNT_ATTR_NOEXEC`.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;

/// `mount_setattr(2)`: add `set` flags to the mount at `path` (and, when
/// `recursive`, to every mount below it). Flags are only ever added, so
/// locked flags inherited from the host are preserved.
pub fn mount_setattr(path: &Path, set: u64, recursive: bool) -> io::Result<()> {
    let c = cpath(path)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags =
        libc::AT_SYMLINK_NOFOLLOW as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated string and `attr` a properly
    // sized, initialized `struct mount_attr`; both outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(ret).map(drop)
}

/// `struct open_how` from `<linux/openat2.h>`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `RESOLVE_NO_MAGICLINKS`.
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `RESOLVE_NO_SYMLINKS`.
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// `RESOLVE_BENEATH`.
const RESOLVE_BENEATH: u64 = 0x08;

/// `openat2(dirfd, rel, O_PATH | O_CLOEXEC [| O_DIRECTORY])` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: opens
/// `rel` below `dirfd` only if no component of it (the last one included:
/// `ELOOP`) is a symbolic link and nothing escapes `dirfd`. The result is
/// an `O_PATH` descriptor of exactly the object that was checked.
pub fn open_beneath_nofollow(dirfd: RawFd, rel: &Path, directory: bool) -> io::Result<OwnedFd> {
    let c = cpath(if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    })?;
    let mut flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    if directory {
        flags |= libc::O_DIRECTORY as u64;
    }
    let how = OpenHow {
        flags,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `c` is a valid NUL-terminated string and `how` a properly
    // sized, initialized `struct open_how`; both outlive the call. The
    // returned descriptor is new and owned by nobody else.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = cvt(ret)? as RawFd;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(dirfd, name, mode)` of a single path component.
pub fn mkdirat(dirfd: RawFd, name: &std::ffi::OsStr, mode: libc::mode_t) -> io::Result<()> {
    let c = cpath(Path::new(name))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let ret = unsafe { libc::mkdirat(dirfd, c.as_ptr(), mode) };
    cvt(ret as libc::c_long).map(drop)
}

/// Create an empty regular file `name` in `dirfd` (never following a
/// symlink; an existing entry is left alone).
pub fn create_file_at(dirfd: RawFd, name: &std::ffi::OsStr) -> io::Result<()> {
    let c = cpath(Path::new(name))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // the returned descriptor is closed right away.
    let ret = unsafe {
        libc::openat(
            dirfd,
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o444 as libc::c_uint,
        )
    };
    let fd = cvt(ret as libc::c_long)? as RawFd;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// `open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH
/// [| AT_RECURSIVE])`: a detached copy of the mount tree at the object
/// `fd` refers to (a bind mount of exactly that object, not of a path).
pub fn open_tree_clone(fd: &OwnedFd, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: the path is a static empty C string; `fd` is a valid open
    // descriptor for the duration of the call. The returned descriptor is
    // new and owned by nobody else.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    let tree = cvt(ret)? as RawFd;
    // SAFETY: `tree` was just returned by the kernel and is owned by no one.
    Ok(unsafe { OwnedFd::from_raw_fd(tree) })
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], set)` on a
/// (possibly detached) mount tree; flags are only ever added.
pub fn mount_setattr_fd(fd: &OwnedFd, set: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: the path is a static empty C string, `attr` a properly sized,
    // initialized `struct mount_attr`; `fd` is open for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(ret).map(drop)
}

/// `move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH |
/// MOVE_MOUNT_T_EMPTY_PATH)`: attach the detached tree on exactly the
/// object `target` refers to.
pub fn move_mount_fd(tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: both paths are static empty C strings; both descriptors are
    // open for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    cvt(ret).map(drop)
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let a = cpath(new_root)?;
    let b = cpath(put_old)?;
    // SAFETY: both arguments are valid NUL-terminated strings that outlive
    // the call.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) };
    cvt(ret).map(drop)
}

/// Close every file descriptor `>= 3` except those listed in `keep`.
pub fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&f| f >= 3)
        .map(|&f| f as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first: u32 = 3;
    for k in keep {
        if k > first {
            close_range(first, k - 1)?;
        }
        first = k + 1;
    }
    close_range(first, u32::MAX)
}

fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors of this process; callers
    // use it where no Rust object owns the affected descriptors any more
    // (right after startup of the helper, or right before exec).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    cvt(ret).map(drop)
}

/// Result of [`fork`].
pub enum Forked {
    /// We are the child.
    Child,
    /// We are the parent; the child's pid.
    Parent(libc::pid_t),
}

/// `fork(2)`. Only called by a single-threaded process (the helper and
/// init, checked by `ensure_single_threaded`; csc itself when
/// `spawn::launch_mode` found it single-threaded), so the child may run
/// ordinary (allocating) code.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: every caller is single-threaded (checked before the fork by
    // `ensure_single_threaded` or `launch_mode`, on the only thread), so
    // no lock can be held by another thread at the time of the fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        p => Ok(Forked::Parent(p)),
    }
}

/// Take ownership of an inherited descriptor number after checking it is
/// open. The caller must not use `fd` in any other way afterwards.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to take a stdio descriptor",
        ));
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this
    // process by its parent for exclusive use; nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on a descriptor we now own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// `pidfd_open(2)` for a child we have not reaped yet (so the pid cannot
/// be recycled underneath us).
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    let fd = cvt(ret)? as RawFd;
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: valid pidfd, NULL siginfo, flags 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    cvt(ret).map(drop)
}

/// `prctl(PR_SET_SECUREBITS, bits)`.
pub fn set_securebits(bits: libc::c_ulong) -> io::Result<()> {
    // SAFETY: integer-only prctl.
    let ret = unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) };
    cvt(ret as libc::c_long).map(drop)
}

/// `prctl(PR_CAPBSET_DROP, cap)`; `Ok(false)` when the kernel does not know
/// the capability (EINVAL).
pub fn capbset_drop(cap: u32) -> io::Result<bool> {
    // SAFETY: integer-only prctl.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if ret == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
pub fn ambient_clear_all() -> io::Result<()> {
    // SAFETY: integer-only prctl.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    cvt(ret as libc::c_long).map(drop)
}

/// `capset(2)` with all three sets empty.
pub fn capset_empty() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and a two-element data array as required by version 3;
    // both live across the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    cvt(ret).map(drop)
}

/// Bring a network interface up (`SIOCGIFFLAGS` / `SIOCSIFFLAGS`).
pub fn interface_up(name: &str) -> io::Result<()> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| {
        // Inside a fresh network namespace binding works once lo is up; use
        // a raw AF_INET datagram socket instead.
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; we own it.
        Ok(std::net::UdpSocket::from(unsafe {
            OwnedFd::from_raw_fd(fd)
        }))
    })?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket fd and a properly initialized ifreq that lives
    // across both calls; SIOCGIFFLAGS/SIOCSIFFLAGS read/write ifr_flags.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `dup2(2)` onto a fixed descriptor number (0, 1 or 2 in practice).
pub fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 manipulates only the descriptor table; the caller targets
    // a stdio slot that no Rust object owns.
    let ret = unsafe { libc::dup2(old, new) };
    cvt(ret as libc::c_long).map(drop)
}

/// Reset every signal disposition to `SIG_DFL`. Ignored dispositions
/// survive `execve` (the Rust runtime ignores `SIGPIPE`), so this runs in
/// each segment right before exec.
pub fn reset_signal_dispositions() -> io::Result<()> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL (no handler code, no pointers kept);
        // a zeroed sigaction with sa_sigaction = SIG_DFL is valid.
        let ret = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        // glibc reserves a few real-time signals (EINVAL): skip those.
        if ret != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Ignore `SIGPIPE` (what Rust's runtime does at process start): writes
/// to a closed pipe fail with `EPIPE` instead of killing the process.
pub fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: installs SIG_IGN (no handler code, no pointers kept); a
    // zeroed sigaction with sa_sigaction = SIG_IGN is valid.
    let ret = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_IGN;
        libc::sigaction(libc::SIGPIPE, &sa, std::ptr::null_mut())
    };
    cvt(ret as libc::c_long).map(drop)
}

/// Lower the calling process to the lowest priority (nice 19). Init and
/// the helper call it once their part of a run is over (nothing of the
/// sandbox left to kill), so that their exit (the namespaces' teardown:
/// mm, ~45 mounts, the pid and network namespaces) yields the CPU to csc
/// writing the run's evidence instead of delaying it. On a saturated host
/// the teardown takes longer (and may hold the kernel's mount lock a
/// little longer while preempted); the run's result is already reported.
/// Best effort: a failure changes nothing else.
pub fn lowest_priority() {
    // SAFETY: setpriority only changes the calling process's nice value;
    // no pointers are passed.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
}

/// Terminate immediately without running atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Arrange for the spawned helper to die with its parent thread and to
/// inherit the descriptors in `inherit` (their close-on-exec flag is
/// cleared in the child only).
///
/// The hook runs between fork and exec, so it uses only async-signal-safe
/// calls (`prctl`, `getppid`, `fcntl`, `_exit`).
pub fn configure_helper_command<const N: usize>(
    cmd: &mut std::process::Command,
    parent_pid: libc::pid_t,
    inherit: [RawFd; N],
) {
    // SAFETY: the closure performs only async-signal-safe system calls and
    // touches no heap memory or locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before PDEATHSIG was armed.
            if libc::getppid() != parent_pid {
                libc::_exit(crate::exit::SETUP_FAILED);
            }
            for fd in inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Duplicate `fd` to a close-on-exec descriptor numbered at least `min`.
pub fn dup_cloexec_above(fd: &OwnedFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Send one descriptor over a unix socket (`SCM_RIGHTS`) with a one-byte
/// payload (egress bridge → proxy).
pub fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let iov = [io::IoSlice::new(&[0u8])];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    loop {
        match sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receive one descriptor sent with [`send_fd`] (close-on-exec).
/// `Ok(None)` at end of stream; a message without a descriptor is an
/// error, extra descriptors are closed.
pub fn recv_fd(sock: RawFd) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let (n, raw) = loop {
        let mut iov = [io::IoSliceMut::new(&mut byte)];
        match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut raw: Vec<RawFd> = Vec::new();
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        raw.extend(fds);
                    }
                }
                break (msg.bytes, raw);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let fds: Vec<OwnedFd> = raw
        .into_iter()
        // SAFETY: each SCM_RIGHTS descriptor is a new descriptor the kernel
        // just installed in this process; nothing else owns it.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let mut it = fds.into_iter();
    match it.next() {
        Some(fd) => Ok(Some(fd)),
        None => Err(io::Error::other("message without a descriptor")),
    }
}

/// Number of threads of this process (`/proc/self/task` entries).
pub(crate) fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// What a segment child of [`spawn_exec`] runs: everything is prepared by
/// the parent, so the child only makes system calls.
pub struct ExecImage<'a> {
    /// Program path.
    pub path: &'a std::ffi::CStr,
    /// `argv`, NULL-terminated.
    pub argv: &'a [*const libc::c_char],
    /// `envp`, NULL-terminated.
    pub envp: &'a [*const libc::c_char],
    /// Descriptor placed on 0.
    pub stdin: RawFd,
    /// Descriptor placed on 1 (left alone when it is 1 already).
    pub stdout: RawFd,
    /// The seccomp program installed right before `execve`.
    pub filter: &'a [seccompiler::sock_filter],
}

/// The step of [`spawn_exec`]'s child that failed, and its `errno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStep {
    /// `dup2` of stdin or stdout.
    Stdio,
    /// Resetting signal dispositions or the mask.
    Signals,
    /// `close_range` of every inherited descriptor above 2.
    CloseFds,
    /// `PR_SET_NO_NEW_PRIVS` or `seccomp(SECCOMP_SET_MODE_FILTER)`.
    Seccomp,
    /// `execve` itself.
    Exec,
}

/// Shared between the parent and the `CLONE_VM` child of [`spawn_exec`].
struct ExecShared<'a> {
    image: &'a ExecImage<'a>,
    failed: Option<(ExecStep, i32)>,
    setup_exit: i32,
    exec_exit: i32,
}

/// Signals of the kernel (`_NSIG`): 1..=64.
const KERNEL_NSIG: libc::c_int = 64;

/// Bytes of the child's stack: it runs one small frame of system calls
/// with every signal blocked or at its default (no handler runs on it).
const EXEC_STACK_BYTES: usize = 64 * 1024;

/// Start `image` in a child that shares this process's memory until it
/// execs (`clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does), so
/// neither process pays for copying the address space or for
/// copy-on-write faults. The child runs on its own stack and makes only
/// async-signal-safe system calls (no allocation, no locks): `dup2`,
/// `sigaction`, `sigprocmask`, `close_range`, `prctl`, `seccomp`,
/// `execve`. All signals are blocked across the clone (no handler of the
/// parent can run in the child); the child resets every disposition to
/// `SIG_DFL` before unblocking. A failed step is reported through the
/// shared memory: the parent resumes only after the child exec'd or
/// exited, and gets `(pid, Some((step, errno)))` (the child exited with
/// `setup_exit`, or `exec_exit` when `execve` failed).
pub fn spawn_exec(
    image: &ExecImage<'_>,
    setup_exit: i32,
    exec_exit: i32,
) -> io::Result<(libc::pid_t, Option<(ExecStep, i32)>)> {
    if image.argv.last() != Some(&std::ptr::null()) || image.envp.last() != Some(&std::ptr::null())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "argv and envp must be NULL-terminated",
        ));
    }
    if image.filter.is_empty() || image.filter.len() > usize::from(u16::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "seccomp program empty or too long",
        ));
    }
    let mut shared = ExecShared {
        image,
        failed: None,
        setup_exit,
        exec_exit,
    };
    // u128 elements: the stack top stays 16-byte aligned.
    let mut stack = vec![0u128; EXEC_STACK_BYTES / 16];
    // Every signal blocked across the clone, glibc's reserved ones (32, 33)
    // included: its `pthread_sigmask` silently leaves those unblocked, so
    // the raw system call with the kernel's 8-byte set, as glibc's own
    // posix_spawn does.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask reads `all` and writes `old`, both 8 bytes
    // (the size passed), both alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            8usize,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    let top = stack.as_mut_ptr_range().end.cast::<libc::c_void>();
    // SAFETY: `exec_child` runs on `stack` (ours, alive until clone returns,
    // which with CLONE_VFORK is after the child exec'd or exited) and only
    // reads `shared` and writes its `failed` field while this thread is
    // suspended; it makes only async-signal-safe system calls. No
    // CLONE_SIGHAND: the child's signal dispositions are its own copy, and
    // every signal is blocked until it has reset them.
    let pid = unsafe {
        libc::clone(
            exec_child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut shared as *mut ExecShared<'_>).cast::<libc::c_void>(),
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above (8 bytes read, none written).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    drop(stack);
    if pid < 0 {
        return Err(err);
    }
    Ok((pid, shared.failed))
}

/// The child of [`spawn_exec`]; see there. Never returns into the caller.
extern "C" fn exec_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ExecShared` of the suspended parent (CLONE_VM +
    // CLONE_VFORK), alive and not touched by anyone else until we exec or
    // exit.
    let shared = unsafe { &mut *arg.cast::<ExecShared<'_>>() };
    let image = shared.image;
    let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut fail = |step: ExecStep, code: i32| -> libc::c_int {
        shared.failed = Some((step, errno()));
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(code) }
    };
    // SAFETY (whole block): plain system calls on descriptors, signal
    // state and the pointers prepared by the parent (NUL-terminated
    // strings, NULL-terminated arrays, a live filter slice); nothing
    // allocates or takes a lock.
    unsafe {
        if libc::dup2(image.stdin, 0) < 0 {
            return fail(ExecStep::Stdio, shared.setup_exit);
        }
        if image.stdout != 1 && libc::dup2(image.stdout, 1) < 0 {
            return fail(ExecStep::Stdio, shared.setup_exit);
        }
        // Ignored dispositions survive execve: back to the defaults, for
        // every signal the kernel has (the raw call also reaches the
        // real-time signals glibc reserves and its `sigaction` refuses).
        // All zero is the kernel's `struct sigaction` for SIG_DFL.
        let dfl = [0u64; 4];
        for sig in 1..=KERNEL_NSIG {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            ) != 0
            {
                return fail(ExecStep::Signals, shared.setup_exit);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
            return fail(ExecStep::Signals, shared.setup_exit);
        }
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            return fail(ExecStep::CloseFds, shared.setup_exit);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return fail(ExecStep::Seccomp, shared.setup_exit);
        }
        let prog = libc::sock_fprog {
            len: image.filter.len() as libc::c_ushort,
            // Same #[repr(C)] layout (linux/filter.h) in both crates.
            filter: image.filter.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        if libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0u32,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return fail(ExecStep::Seccomp, shared.setup_exit);
        }
        libc::execve(
            image.path.as_ptr(),
            image.argv.as_ptr(),
            image.envp.as_ptr(),
        );
    }
    fail(ExecStep::Exec, shared.exec_exit)
}
