//! Parent side: build the plan, start the helper, hand it the plan, and
//! collect its exit and any setup error.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::plan::{self, RealFs, SandboxPlan};
use super::sys;
use super::{SETUP_FAILED_EXIT, SandboxConfig, SandboxError, SandboxExit, SandboxSpec, StatusMsg};

/// A running sandbox (the helper process and everything below it).
#[derive(Debug)]
pub struct SandboxChild {
    helper: Helper,
    status_rx: Option<std::fs::File>,
    /// Status bytes read before the helper exited (see [`StatusMsg::Exited`]).
    status_buf: Vec<u8>,
    /// The status pipe reached end of file.
    status_eof: bool,
    /// The run ended on init's `exited` line; the helper may still be
    /// tearing the namespaces down (reaped later, see [`reap_pending`]).
    reported: bool,
    exit: Option<SandboxExit>,
    /// The egress proxy serving this sandbox (`network: allowlisted`).
    egress: Option<crate::egress::proxy::ProxyServer>,
}

/// Spawn the sandbox for `spec`, with the targets' stdout/stderr connected
/// to the given descriptors (the executor's capture pipes). stdin of the
/// first segment is `/dev/null`.
///
/// The helper is tied to the *calling thread* through `PR_SET_PDEATHSIG`:
/// call this from a thread that outlives the sandbox (e.g. the main
/// thread), or the sandbox is killed when that thread exits.
pub fn spawn(
    cfg: &SandboxConfig,
    spec: &SandboxSpec,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> Result<SandboxChild, SandboxError> {
    spawn_with(cfg, spec, &RealFs, stdout, stderr)
}

/// [`spawn`] with the host file-system facts taken from `fs`.
pub fn spawn_with(
    cfg: &SandboxConfig,
    spec: &SandboxSpec,
    fs: &dyn plan::HostFs,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> Result<SandboxChild, SandboxError> {
    let plan = plan::build(cfg, spec, fs)?;
    spawn_plan(cfg, &plan, stdout, stderr)
}

/// How the setup helper is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Launch {
    /// `fork(2)` of the calling process: csc is single-threaded here, so
    /// the child may run ordinary code (allocate, take locks) and goes
    /// straight to the helper's work, without a second exec of csc.
    Fork,
    /// Re-execute this binary as `__sandbox-init` (the caller has other
    /// threads, or the configuration names a helper binary); the child
    /// runs only async-signal-safe code until `execve`.
    Exec(PathBuf),
}

/// Fork when (and only when) this process is single-threaded right now.
/// Invariant: the check and the `fork` run on the only thread, so no
/// other thread can appear in between; a multi-threaded caller (`csc mcp`
/// under tokio, a run whose egress proxy threads still exist, the test
/// harness) always takes the re-exec path.
pub(crate) fn launch_mode(cfg: &SandboxConfig) -> Launch {
    match &cfg.helper_exe {
        Some(exe) => Launch::Exec(exe.clone()),
        None if matches!(sys::thread_count(), Ok(1)) => Launch::Fork,
        None => Launch::Exec(PathBuf::from("/proc/self/exe")),
    }
}

/// The helper process as the parent sees it.
#[derive(Debug)]
enum Helper {
    /// Re-executed `csc __sandbox-init`.
    Exec(Child),
    /// Forked helper: our unreaped child, and its status once reaped.
    Forked {
        pid: libc::pid_t,
        status: Option<ExitStatus>,
    },
}

impl Helper {
    fn id(&self) -> u32 {
        match self {
            Helper::Exec(c) => c.id(),
            Helper::Forked { pid, .. } => *pid as u32,
        }
    }

    fn reap(&mut self, block: bool) -> std::io::Result<Option<ExitStatus>> {
        let (pid, status) = match self {
            Helper::Exec(c) => {
                return if block {
                    c.wait().map(Some)
                } else {
                    c.try_wait()
                };
            }
            Helper::Forked { pid, status } => (*pid, status),
        };
        if let Some(st) = status {
            return Ok(Some(*st));
        }
        let flags = (!block).then_some(WaitPidFlag::WNOHANG);
        loop {
            let raw = match waitpid(Pid::from_raw(pid), flags) {
                Ok(WaitStatus::Exited(_, code)) => (code & 0xff) << 8,
                Ok(WaitStatus::Signaled(_, sig, _)) => sig as i32,
                Ok(WaitStatus::StillAlive) => return Ok(None),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let st = ExitStatus::from_raw(raw);
            *status = Some(st);
            return Ok(Some(st));
        }
    }

    /// Whether the helper has been reaped.
    fn reaped(&mut self) -> bool {
        match self {
            Helper::Exec(c) => matches!(c.try_wait(), Ok(Some(_))),
            Helper::Forked { status, .. } => status.is_some(),
        }
    }

    fn sigkill(&mut self) {
        match self {
            Helper::Exec(c) => {
                let _ = c.kill();
            }
            Helper::Forked { pid, status: None } => {
                // Our unreaped child: the pid cannot have been recycled.
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            Helper::Forked { .. } => {}
        }
    }
}

/// Start the helper for an already built plan.
pub(crate) fn spawn_plan(
    cfg: &SandboxConfig,
    plan: &SandboxPlan,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> Result<SandboxChild, SandboxError> {
    reap_pending();
    // network: allowlisted — the helper gets one end of the bridge
    // socketpair, csc's proxy serves the other.
    let mut plan = std::borrow::Cow::Borrowed(plan);
    let mut bridge_fds = None;
    if plan.egress.is_some() {
        let policy = cfg.egress.compile().map_err(SandboxError::InvalidSpec)?;
        let (ours, theirs) =
            super::bridge::channel().map_err(|e| SandboxError::io("egress socketpair", e))?;
        let theirs =
            sys::dup_cloexec_above(&theirs, 10).map_err(|e| SandboxError::io("dup channel", e))?;
        if let Some(e) = plan.to_mut().egress.as_mut() {
            e.channel_fd = theirs.as_raw_fd();
        }
        bridge_fds = Some((policy, ours, theirs));
    }
    let (status_r, status_w) = pipe()?;
    let (helper, plan_out) = match launch_mode(cfg) {
        Launch::Fork => (fork_helper(&plan, stdout, stderr, status_w)?, None),
        Launch::Exec(exe) => {
            let channel_fd = bridge_fds
                .as_ref()
                .map(|(_, _, t)| t.as_raw_fd())
                .unwrap_or(status_w.as_raw_fd());
            exec_helper(&exe, &plan, stdout, stderr, status_w, channel_fd)?
        }
    };
    let egress = match bridge_fds {
        Some((policy, ours, theirs)) => {
            drop(theirs);
            Some(
                crate::egress::proxy::ProxyServer::start(policy, "", ours, super::bridge::recv_fd)
                    .map_err(|e| SandboxError::io("start egress proxy", e))?,
            )
        }
        None => None,
    };
    let mut sc = SandboxChild {
        helper,
        status_rx: Some(std::fs::File::from(status_r)),
        status_buf: Vec::new(),
        status_eof: false,
        reported: false,
        exit: None,
        egress,
    };
    if let Some((plan_w, json)) = plan_out {
        let mut w = std::fs::File::from(plan_w);
        if let Err(e) = w.write_all(&json) {
            // The helper died before reading the plan; its status says why.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                sc.kill();
                return Err(SandboxError::io("send plan to helper", e));
            }
        }
    }
    Ok(sc)
}

/// Fork the helper (see [`Launch::Fork`]). Every signal is blocked across
/// the fork, as `posix_spawn` does, so none of csc's handlers can run in
/// the child; the child resets the dispositions and restores the mask.
fn fork_helper(
    plan: &SandboxPlan,
    stdout: OwnedFd,
    stderr: OwnedFd,
    status_w: OwnedFd,
) -> Result<Helper, SandboxError> {
    let stdin: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(|e| SandboxError::io("open /dev/null", e))?
        .into();
    let parent = nix::unistd::getpid().as_raw();
    let mut mask = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut mask),
    )
    .map_err(|e| SandboxError::io("sigprocmask", e.into()))?;
    let forked = match sys::fork() {
        Ok(sys::Forked::Child) => {
            let stdio = [stdin, stdout, stderr];
            super::init::forked_helper_main(plan, stdio, status_w, parent, &mask)
        }
        Ok(sys::Forked::Parent(pid)) => Ok(pid),
        Err(e) => Err(e),
    };
    let restored = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
    let pid = forked.map_err(|e| SandboxError::io("fork sandbox helper", e))?;
    let mut helper = Helper::Forked { pid, status: None };
    if let Err(e) = restored {
        helper.sigkill();
        let _ = helper.reap(true);
        return Err(SandboxError::io("sigprocmask", e.into()));
    }
    Ok(helper)
}

/// The plan pipe's write end and the JSON plan still to be written to it.
type PlanToSend = (OwnedFd, Vec<u8>);

/// Re-execute csc as the helper (see [`Launch::Exec`]); returns the child
/// and the plan (JSON) still to be written to its plan pipe.
fn exec_helper(
    exe: &std::path::Path,
    plan: &SandboxPlan,
    stdout: OwnedFd,
    stderr: OwnedFd,
    status_w: OwnedFd,
    channel_fd: libc::c_int,
) -> Result<(Helper, Option<PlanToSend>), SandboxError> {
    let json = serde_json::to_vec(plan)
        .map_err(|e| SandboxError::InvalidSpec(format!("serialize plan: {e}")))?;
    let (plan_r, plan_w) = pipe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("__sandbox-init")
        .arg("--plan-fd")
        .arg(plan_r.as_raw_fd().to_string())
        .arg("--status-fd")
        .arg(status_w.as_raw_fd().to_string())
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    sys::configure_helper_command(
        &mut cmd,
        std::process::id() as libc::pid_t,
        [plan_r.as_raw_fd(), status_w.as_raw_fd(), channel_fd],
    );
    let child = cmd
        .spawn()
        .map_err(|e| SandboxError::io(format!("spawn sandbox helper {}", exe.display()), e))?;
    Ok((Helper::Exec(child), Some((plan_w, json))))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::io("pipe2", std::io::Error::from(e)))?;
    // Keep clear of stdio numbers even if the parent closed its stdio.
    let r = sys::dup_cloexec_above(&r, 10).map_err(|e| SandboxError::io("dup pipe", e))?;
    let w = sys::dup_cloexec_above(&w, 10).map_err(|e| SandboxError::io("dup pipe", e))?;
    Ok((r, w))
}

fn code_of(st: ExitStatus) -> i32 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => crate::exit::signaled(s),
        (None, None) => SETUP_FAILED_EXIT,
    }
}

impl SandboxChild {
    /// Host pid of the helper process.
    pub fn pid(&self) -> u32 {
        self.helper.id()
    }

    /// Non-blocking: `Some` once the sandbox has exited.
    pub fn try_wait(&mut self) -> Result<Option<SandboxExit>, SandboxError> {
        if let Some(e) = &self.exit {
            return Ok(Some(e.clone()));
        }
        match self.helper.reap(false) {
            Ok(Some(st)) => Ok(Some(self.finish(st))),
            Ok(None) => Ok(self.read_reported().map(|code| self.finish_reported(code))),
            Err(e) => Err(SandboxError::io("wait for sandbox", e)),
        }
    }

    /// Block until the sandbox has exited (or init reported the end of
    /// the run, see [`StatusMsg::Exited`]).
    pub fn wait(&mut self) -> Result<SandboxExit, SandboxError> {
        loop {
            if let Some(e) = self.wait_timeout(Duration::from_secs(3600))? {
                return Ok(e);
            }
        }
    }

    /// Block for at most `timeout`; `None` if the sandbox is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<SandboxExit>, SandboxError> {
        if let Some(e) = self.try_wait()? {
            return Ok(Some(e));
        }
        // The helper is our unreaped child, so its pid is stable.
        let pidfd = sys::pidfd_open(self.helper.id() as libc::pid_t)
            .map_err(|e| SandboxError::io("pidfd_open", e))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            if let (Some(f), false) = (&self.status_rx, self.status_eof) {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(SandboxError::io("poll", e.into())),
            }
            drop(fds);
            if let Some(e) = self.try_wait()? {
                return Ok(Some(e));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Stop the egress proxy (if any) and return what it recorded. Call
    /// after the sandbox has exited; later calls return `None`.
    pub fn egress_finish(&mut self) -> Option<crate::egress::proxy::ProxyReport> {
        self.egress.take().map(|p| p.finish())
    }

    /// Wait and return the raw exit code without consuming status lines.
    pub(crate) fn wait_raw(&mut self) -> Option<i32> {
        self.helper.reap(true).ok().flatten().map(code_of)
    }

    /// Ask every process in the sandbox to stop (SIGTERM, passed on by the
    /// helper and init); returns at once. Follow up with [`Self::kill`]
    /// after a grace period.
    pub fn terminate(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if let Ok(Some(_)) = self.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.helper.id() as libc::pid_t);
        // The helper is our unreaped child: its pid cannot be recycled.
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    }

    /// Kill the sandbox and everything in it; idempotent. Asks the helper
    /// to kill init (which tears down the pid namespace) and waits for it;
    /// falls back to SIGKILL (init then dies through PDEATHSIG).
    pub fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if let Ok(Some(_)) = self.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.helper.id() as libc::pid_t);
        // The helper is our unreaped child: its pid cannot be recycled.
        let _ = nix::sys::signal::kill(pid, super::init::KILL_NOW);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.helper.sigkill();
        let _ = self.wait();
    }

    /// Read the status lines available now (never blocks); the code of
    /// init's `exited` line once it has arrived.
    fn read_reported(&mut self) -> Option<i32> {
        if !self.status_eof
            && let Some(f) = self.status_rx.as_mut()
        {
            loop {
                let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::ZERO) {
                    Ok(n) if n > 0 => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    _ => break,
                }
                let mut chunk = [0u8; 4096];
                match f.read(&mut chunk) {
                    Ok(0) => {
                        self.status_eof = true;
                        break;
                    }
                    Ok(n) => {
                        self.status_buf.extend_from_slice(&chunk[..n]);
                        if self.status_buf.len() > 1 << 20 {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let complete = self
            .status_buf
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&[][..], |i| &self.status_buf[..=i]);
        parse_status(complete).into_iter().find_map(|m| match m {
            StatusMsg::Exited { code } => Some(code),
            _ => None,
        })
    }

    /// End the run on init's report: every process of the sandbox is
    /// gone; the helper still waits for init's exit (the namespaces'
    /// teardown), which the run need not wait for.
    fn finish_reported(&mut self, code: i32) -> SandboxExit {
        let errors = errors_of(&parse_status(&std::mem::take(&mut self.status_buf)));
        self.status_rx = None;
        self.reported = true;
        self.exit_with(code, errors)
    }

    fn finish(&mut self, st: ExitStatus) -> SandboxExit {
        let errors = self.drain_status();
        self.exit_with(code_of(st), errors)
    }

    fn exit_with(&mut self, code: i32, errors: Vec<String>) -> SandboxExit {
        let mut exit_code = code;
        let setup_error = if errors.is_empty() {
            None
        } else {
            Some(errors.join("; "))
        };
        if setup_error.is_some() && exit_code == 0 {
            exit_code = SETUP_FAILED_EXIT;
        }
        let e = SandboxExit {
            exit_code,
            setup_error,
        };
        self.exit = Some(e.clone());
        e
    }

    /// Read the status pipe until EOF (bounded wait: every writer is gone
    /// or about to be once the helper exited).
    fn drain_status(&mut self) -> Vec<String> {
        let mut buf = std::mem::take(&mut self.status_buf);
        let Some(mut f) = self.status_rx.take() else {
            return errors_of(&parse_status(&buf));
        };
        if self.status_eof {
            return errors_of(&parse_status(&buf));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let mut chunk = [0u8; 4096];
            match f.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 1 << 20 {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        errors_of(&parse_status(&buf))
    }

    /// Read every status line until EOF (probe mode).
    pub(crate) fn read_all_status(&mut self) -> Vec<StatusMsg> {
        let mut buf = std::mem::take(&mut self.status_buf);
        if let Some(mut f) = self.status_rx.take() {
            let _ = (&mut f).take(1 << 20).read_to_end(&mut buf);
        }
        parse_status(&buf)
    }
}

/// The setup errors among status lines, as `stage: message`.
fn errors_of(msgs: &[StatusMsg]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            StatusMsg::Error { stage, message } => Some(format!("{stage}: {message}")),
            StatusMsg::StageOk { .. } | StatusMsg::Exited { .. } => None,
        })
        .collect()
}

/// Helpers of runs that ended on init's report, not yet reaped, with the
/// time after which a helper still alive is SIGKILLed.
static PENDING: std::sync::Mutex<Vec<(libc::pid_t, Instant)>> = std::sync::Mutex::new(Vec::new());

/// How long a helper asked to finish ([`super::init::KILL_NOW`]) may take
/// to reap init before it is SIGKILLed.
const HELPER_GRACE: Duration = Duration::from_secs(2);

/// Reap (without blocking) the helpers of earlier runs that ended on
/// init's report; each is our child, so its pid cannot be recycled
/// before this. One still alive past its grace is SIGKILLed (and reaped
/// at a later call).
pub fn reap_pending() {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    pending.retain(|&(pid, deadline)| {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if now > deadline {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                true
            }
            Err(nix::errno::Errno::EINTR) => true,
            _ => false,
        }
    });
}

/// Parse JSON status lines; malformed lines become errors themselves.
pub(crate) fn parse_status(buf: &[u8]) -> Vec<StatusMsg> {
    buf.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|_| StatusMsg::Error {
                stage: "status".into(),
                message: format!("malformed status line: {}", String::from_utf8_lossy(l)),
            })
        })
        .collect()
}

impl Drop for SandboxChild {
    fn drop(&mut self) {
        if self.reported && !self.helper.reaped() {
            // Everything in the sandbox is gone; the helper waits for
            // init's teardown and reaps it. Ask it to finish now
            // (KILL_NOW: it SIGKILLs init through its pidfd, so a run that
            // somehow sent init's line early is killed all the same) and
            // reap it later. Not a SIGKILL of the helper: that would
            // orphan init, and the nearest subreaper (csc itself when it
            // is a container's pid 1) would never reap it. A helper that
            // does not finish within HELPER_GRACE is SIGKILLed then.
            let pid = self.helper.id() as libc::pid_t;
            // The helper is our unreaped child: its pid cannot be recycled.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), super::init::KILL_NOW);
            PENDING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((pid, Instant::now() + HELPER_GRACE));
            reap_pending();
            return;
        }
        // Nothing may survive a run, even if the caller forgets to wait.
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Never fork a multi-threaded process: with a second thread alive the
    /// default configuration takes the re-exec path.
    #[test]
    fn multi_threaded_caller_reexecs_instead_of_forking() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(sys::thread_count().unwrap() >= 2);
        assert_eq!(
            launch_mode(&SandboxConfig::default()),
            Launch::Exec(PathBuf::from("/proc/self/exe"))
        );
        drop(tx);
        let _ = t.join();
    }

    #[test]
    fn a_configured_helper_binary_is_always_reexecuted() {
        let cfg = SandboxConfig {
            helper_exe: Some(PathBuf::from("/usr/bin/csc")),
            ..SandboxConfig::default()
        };
        assert_eq!(
            launch_mode(&cfg),
            Launch::Exec(PathBuf::from("/usr/bin/csc"))
        );
    }
}
