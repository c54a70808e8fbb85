//! The executor's only home of raw libc calls: pipes, non-blocking mode,
//! poll(2), process-group signals, non-reaping waits and raw directory
//! reads.
//!
//! Every function here is a thin, safe wrapper; each `unsafe` block names
//! the invariant it relies on.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A signal the executor sends to a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: ask politely.
    Term,
    /// SIGKILL: no appeal.
    Kill,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A close-on-exec pipe: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two ints, as pipe2 requires.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by
    // nobody else; each is wrapped exactly once.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(pair)
}

/// Put a descriptor (one we own, e.g. our read end of a pipe) into
/// non-blocking mode.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor for the duration of the borrow;
    // F_GETFL/F_SETFL take no pointers.
    unsafe {
        let flags = cvt(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        cvt(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            flags | libc::O_NONBLOCK,
        ))?;
    }
    Ok(())
}

/// Best effort: grow a pipe's kernel buffer (fewer wake-ups when a command
/// writes a lot). Failure is harmless and ignored.
pub fn grow_pipe(fd: BorrowedFd<'_>, bytes: libc::c_int) {
    // SAFETY: `fd` is live for the borrow; F_SETPIPE_SZ takes an int.
    let _ = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
}

/// Read raw `linux_dirent64` records of the open directory `dir` into
/// `buf` (getdents64(2)), continuing from the descriptor's position.
/// Returns the number of bytes filled; 0 at the end of the directory.
pub fn getdents(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `dir` is live for the borrow and `buf` is valid, writable
    // memory of exactly `buf.len()` bytes for the duration of the call; the
    // kernel writes at most that many bytes and returns how many.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// The coarse wall clock (`CLOCK_REALTIME_COARSE`): the clock the kernel
/// stamps file times from, so a file changed after this reading has a
/// ctime not older than it. `(seconds, nanoseconds)`.
pub fn realtime_coarse() -> io::Result<(i64, i64)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    cvt(unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) })?;
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// Readiness of one polled descriptor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    /// Data (or EOF) can be read without blocking.
    pub readable: bool,
    /// The descriptor is in an error / hang-up state (read to see EOF).
    pub hangup: bool,
}

/// poll(2) up to two descriptors for input (`None` slots are skipped),
/// waiting at most `timeout`. Allocation-free; EINTR counts as "nothing
/// ready".
pub fn poll_readable(
    fds: [Option<BorrowedFd<'_>>; 2],
    timeout: Duration,
) -> io::Result<[Ready; 2]> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 2];
    for (slot, fd) in pfds.iter_mut().zip(fds) {
        if let Some(fd) = fd {
            slot.fd = fd.as_raw_fd();
            slot.events = libc::POLLIN;
        }
    }
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` is a valid array of two pollfd structs that outlives
    // the call; its descriptors are borrowed (open) or -1 (ignored by poll).
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    let mut ready = [Ready::default(); 2];
    if ret == -1 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(ready);
        }
        return Err(err);
    }
    for (r, p) in ready.iter_mut().zip(pfds) {
        r.readable = p.revents & libc::POLLIN != 0;
        r.hangup = p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
    }
    Ok(ready)
}

/// Send `sig` to every process in process group `pgid`. A group that no
/// longer exists (ESRCH) is not an error.
pub fn kill_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad process group id"))?;
    // SAFETY: killpg takes plain integers; `pgid > 1` so it can never mean
    // "our own group" (0) or "every process" (-1 / 1).
    let ret = unsafe { libc::killpg(pgid, sig.raw()) };
    if ret == -1 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Normal exit with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Has child `pid` ended? Never reaps it (WNOWAIT), so its pid — and, for a
/// group leader, its process group id — stays reserved until the caller
/// reaps it. With `block` false this never waits.
pub fn peek_exit(pid: u32, block: bool) -> io::Result<Option<Ended>> {
    let pid = libc::id_t::from(pid);
    let mut flags = libc::WEXITED | libc::WNOWAIT;
    if !block {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value (plain C struct).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t that outlives the call.
        let ret = unsafe { libc::waitid(libc::P_PID, pid, &mut info, flags) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid filled `info` (or left it zeroed under WNOHANG);
        // si_pid/si_status read the SIGCHLD union member that waitid uses.
        let (si_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if si_pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => Ended::Exited(status),
            _ => Ended::Signaled(status),
        }));
    }
}

static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn record_signal(sig: libc::c_int) {
    INTERRUPTED.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// Catch SIGINT, SIGTERM and SIGHUP: instead of dying (and leaving the
/// command's process group running with no receipt), csc records the
/// signal; the capture loop then terminates the group and a receipt is
/// written. Handlers are reset to default in children by exec.
pub fn catch_interrupts() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is a valid value; we then set a
        // handler that only performs an atomic store (async-signal-safe),
        // an empty mask, and no SA_RESTART so poll(2) returns EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = record_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            cvt(libc::sigaction(sig, &action, std::ptr::null_mut()))?;
        }
    }
    Ok(())
}

/// The signal csc received, if any (see [`catch_interrupts`]).
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}
