//! The re-executed setup helper (`csc __sandbox-init`) and the sandbox's
//! init process.
//!
//! Process tree:
//! ```text
//! csc (parent, any number of threads)
//!  └─ helper  (single-threaded; unshares the namespaces, supervises)
//!      └─ init (pid 1 of the new pid namespace; mounts, Landlock, caps,
//!          │    rlimits, then forks the segments and reaps)
//!          ├─ segment 0  (stdin /dev/null)  ──pipe──┐
//!          └─ segment 1  ...  ◄─────────────────────┘
//! ```
//! The helper dies with csc (PDEATHSIG set before exec), init dies with
//! the helper (PDEATHSIG), and when init dies the kernel kills every
//! process left in the pid namespace.
//!
//! Stopping: SIGTERM (or SIGINT/SIGHUP/SIGQUIT) to the helper is a
//! graceful stop: the helper forwards SIGTERM to init, which sends SIGTERM
//! to every other process of the namespace (`kill(-1)`), so the targets
//! can clean up, exactly like local mode's group SIGTERM. [`KILL_NOW`] to
//! the helper (csc's escalation after the grace period) SIGKILLs init and
//! with it the whole namespace; the helper exits only once init is reaped,
//! i.e. once nothing is left in the namespace.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::error::{Cause, SetupError, Stage, StepResult, failed};
use super::plan::SandboxPlan;
use super::sys::{self, Forked};
use super::{
    EXEC_FAILED_EXIT, SETUP_FAILED_EXIT, StatusMsg, bridge, caps, landlock, mounts, namespaces,
    rlimits, seccomp,
};

/// Largest plan accepted over the pipe.
const MAX_PLAN_BYTES: u64 = 64 << 20;

/// Writer for status lines (shared by helper, init and segments; each
/// line is written with a single `write` so lines never interleave).
struct Status(Option<std::fs::File>);

impl Status {
    fn send(&self, msg: &StatusMsg) {
        if let Some(f) = &self.0
            && let Ok(mut line) = serde_json::to_vec(msg)
        {
            line.push(b'\n');
            let _ = (&*f).write_all(&line);
        }
    }
    /// The status-pipe edge: a typed setup error becomes a status line.
    fn error(&self, e: &SetupError) {
        self.send(&StatusMsg::Error {
            stage: e.stage.as_str().to_string(),
            message: e.source.to_string(),
        });
    }
    fn raw(&self) -> RawFd {
        self.0.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1)
    }
}

/// Entry point of `csc __sandbox-init`: returns the process exit code.
/// Never panics on input; every failure is reported on the status fd.
pub fn helper_main(plan_fd: RawFd, status_fd: RawFd) -> i32 {
    let status = Status(
        sys::take_inherited_fd(status_fd)
            .ok()
            .map(std::fs::File::from),
    );
    if status.0.is_none() {
        return SETUP_FAILED_EXIT;
    }
    let plan = match read_plan(plan_fd) {
        Ok(p) => p,
        Err(c) => {
            status.error(&SetupError::new(Stage::Plan, c));
            return SETUP_FAILED_EXIT;
        }
    };
    match run_helper(&plan, &status) {
        Ok(code) => code,
        Err(e) => {
            status.error(&e);
            SETUP_FAILED_EXIT
        }
    }
}

/// Entry point of the forked helper (csc was single-threaded when it
/// forked, see `spawn::launch_mode`): the same work as
/// [`helper_main`] on the plan already in memory, after what the re-exec
/// path gets from `execve` and its `pre_exec` hook — parent-death signal,
/// default signal dispositions (`SIGPIPE` ignored, as Rust's runtime does
/// at start), the caller's signal mask, `/` as cwd, the given stdio. Never
/// returns, never unwinds into csc's code: a panic ends the helper with
/// [`SETUP_FAILED_EXIT`].
pub(crate) fn forked_helper_main(
    plan: &SandboxPlan,
    stdio: [OwnedFd; 3],
    status: OwnedFd,
    parent: libc::pid_t,
    mask: &SigSet,
) -> ! {
    let status = Status(Some(std::fs::File::from(status)));
    let run = std::panic::AssertUnwindSafe(|| match forked_helper(stdio, parent, mask) {
        Ok(()) => run_helper(plan, &status),
        Err(c) => Err(SetupError::new(Stage::Helper, c)),
    });
    let code = match std::panic::catch_unwind(run) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            status.error(&e);
            SETUP_FAILED_EXIT
        }
        Err(_) => SETUP_FAILED_EXIT,
    };
    sys::exit_now(code)
}

fn forked_helper(stdio: [OwnedFd; 3], parent: libc::pid_t, mask: &SigSet) -> StepResult<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(failed("PR_SET_PDEATHSIG"))?;
    // csc may have died before PDEATHSIG was armed.
    if nix::unistd::getppid().as_raw() != parent {
        return Err(Cause::refused("csc exited during sandbox start"));
    }
    sys::reset_signal_dispositions().map_err(failed("reset signals"))?;
    sys::ignore_sigpipe().map_err(failed("ignore SIGPIPE"))?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None).map_err(failed("sigprocmask"))?;
    nix::unistd::chdir("/").map_err(failed("chdir /"))?;
    // Move the sources out of the way first: one of them may already sit
    // on a stdio number another one is about to be placed on.
    let high = stdio
        .iter()
        .map(|fd| sys::dup_cloexec_above(fd, 10))
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed("dup stdio"))?;
    for (fd, target) in stdio.into_iter().zip(0..) {
        if fd.as_raw_fd() == target {
            // Already in place: closing it would close the stdio slot.
            let _ = fd.into_raw_fd();
        }
    }
    for (fd, target) in high.iter().zip(0..) {
        sys::dup2(fd.as_raw_fd(), target).map_err(failed("dup2 stdio"))?;
    }
    Ok(())
}

fn read_plan(fd: RawFd) -> StepResult<SandboxPlan> {
    let f = std::fs::File::from(sys::take_inherited_fd(fd).map_err(failed("plan fd"))?);
    let mut buf = Vec::new();
    f.take(MAX_PLAN_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(failed("read plan"))?;
    if buf.len() as u64 > MAX_PLAN_BYTES {
        return Err(Cause::refused("plan too large"));
    }
    serde_json::from_slice(&buf).map_err(failed("parse plan"))
}

type StageResult<T> = Result<T, SetupError>;

/// Attach the stage to a step's failure.
fn stage<T>(name: Stage, r: StepResult<T>) -> StageResult<T> {
    r.map_err(|c| SetupError::new(name, c))
}

fn ensure_single_threaded() -> StepResult<()> {
    let n = sys::thread_count().map_err(failed("read /proc/self/task"))?;
    if n != 1 {
        return Err(Cause::refused(format!(
            "helper has {n} threads; refusing to fork"
        )));
    }
    Ok(())
}

/// Signals the helper turns into a graceful stop (SIGTERM to init, which
/// passes it on to every process of the sandbox).
const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Signal csc sends the helper to kill the sandbox at once.
pub const KILL_NOW: Signal = Signal::SIGUSR1;

fn helper_set() -> SigSet {
    let mut s = SigSet::empty();
    for sig in FORWARDED {
        s.add(sig);
    }
    s.add(KILL_NOW);
    s
}

/// Init takes termination requests and child exits through a signalfd.
/// (Blocked signals are queued even for a namespace's pid 1, which
/// otherwise ignores signals it has no handler for.)
fn init_set() -> SigSet {
    let mut s = SigSet::empty();
    for sig in FORWARDED {
        s.add(sig);
    }
    s.add(Signal::SIGCHLD);
    s
}

fn run_helper(plan: &SandboxPlan, status: &Status) -> StageResult<i32> {
    stage(Stage::Helper, ensure_single_threaded())?;
    let channel_fd = plan.egress.as_ref().map(|e| e.channel_fd).unwrap_or(-1);
    stage(
        Stage::Helper,
        sys::close_fds_except(&[status.raw(), channel_fd]).map_err(failed("close inherited fds")),
    )?;
    let mut channel = match &plan.egress {
        Some(e) => Some(stage(
            Stage::Egress,
            sys::take_inherited_fd(e.channel_fd).map_err(failed("bridge channel fd")),
        )?),
        None => None,
    };
    // Check Landlock before doing anything: fail early and clearly.
    stage(
        Stage::Landlock,
        landlock::check_requirements(&plan.landlock, plan.network).map(drop),
    )?;
    stage(Stage::Namespaces, namespaces::enter(plan.network))?;
    stage(
        Stage::Namespaces,
        namespaces::configure(plan.network, &plan.hostname),
    )?;
    if plan.probe {
        status.send(&StatusMsg::StageOk {
            stage: "namespaces".into(),
        });
    }
    let seccomp_prog = stage(
        Stage::Seccomp,
        seccomp::program(seccomp::SocketPolicy {
            allow_unix_sockets: plan.allow_unix_sockets,
        }),
    )?;

    // Termination requests are taken synchronously through a signalfd; init
    // replaces the mask with its own before anything else runs.
    let mask = helper_set();
    stage(
        Stage::Helper,
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(failed("sigprocmask")),
    )?;
    let (life_r, life_w) = stage(
        Stage::Helper,
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(failed("pipe2")),
    )?;
    let null = stage(
        Stage::Helper,
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(failed("open /dev/null")),
    )?;
    match stage(Stage::Helper, sys::fork().map_err(failed("fork init")))? {
        Forked::Child => {
            drop(life_w);
            drop(null);
            let code = match init_main(plan, status, life_r, seccomp_prog, channel.take()) {
                Ok(code) => code,
                Err(e) => {
                    status.error(&e);
                    SETUP_FAILED_EXIT
                }
            };
            sys::exit_now(code)
        }
        Forked::Parent(pid) => {
            drop(life_r);
            drop(channel);
            // Only init and the segments write to the capture pipes: their
            // end of file need not wait for the helper's exit (if this
            // fails, it merely does).
            let _ = sys::dup2(null.as_raw_fd(), 1);
            let _ = sys::dup2(null.as_raw_fd(), 2);
            drop(null);
            let r = supervise(pid, &mask);
            drop(life_w);
            // Init is reaped: only the namespaces' teardown is left.
            sys::lowest_priority();
            stage(Stage::Helper, r)
        }
    }
}

/// Wait for init. A termination signal is forwarded to init as SIGTERM;
/// [`KILL_NOW`] kills init (and with it the whole pid namespace). Both go
/// through a pidfd, which cannot hit a recycled pid.
fn supervise(init: libc::pid_t, mask: &SigSet) -> StepResult<i32> {
    let pidfd = sys::pidfd_open(init).map_err(failed("pidfd_open"))?;
    let sfd = SignalFd::new(mask).map_err(failed("signalfd"))?;
    loop {
        let mut fds = [
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
                return Err(Cause::refused(format!("poll: {e}")));
            }
        }
        let sig_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        let init_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        if sig_ready && let Ok(Some(info)) = sfd.read_signal() {
            let sig = if info.ssi_signo == KILL_NOW as u32 {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            };
            let _ = sys::pidfd_send_signal(&pidfd, sig);
        }
        if init_ready {
            break;
        }
    }
    loop {
        match waitpid(Pid::from_raw(init), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(crate::exit::signaled(sig as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Cause::refused(format!("waitpid init: {e}"))),
        }
    }
}

fn init_main(
    plan: &SandboxPlan,
    status: &Status,
    life: OwnedFd,
    prog: &[seccompiler::sock_filter],
    channel: Option<OwnedFd>,
) -> StageResult<i32> {
    stage(Stage::Init, init_start(life))?;
    stage(Stage::Rlimits, limit_pids(plan.rlimits.processes))?;
    let bound = stage(Stage::Mounts, mounts::setup(&plan.mounts, &plan.cwd))?;
    if plan.probe {
        status.send(&StatusMsg::StageOk {
            stage: "mounts".into(),
        });
    }
    stage(
        Stage::Init,
        nix::unistd::setsid().map(drop).map_err(failed("setsid")),
    )?;
    // The egress listener is bound before Landlock denies TCP bind.
    let listener = match &plan.egress {
        Some(e) if !plan.probe => Some(stage(Stage::Egress, bridge::listen(e.port))?),
        _ => None,
    };
    stage(
        Stage::Privileges,
        nix::sys::prctl::set_no_new_privs().map_err(failed("PR_SET_NO_NEW_PRIVS")),
    )?;
    stage(
        Stage::Landlock,
        landlock::restrict(
            &plan.landlock,
            plan.network,
            &bound,
            plan.allow_unix_sockets,
        )
        .map(drop),
    )?;
    drop(bound);
    if plan.probe {
        status.send(&StatusMsg::StageOk {
            stage: "landlock".into(),
        });
    }
    stage(Stage::Privileges, caps::drop_all())?;
    stage(Stage::Rlimits, rlimits::apply(&plan.rlimits))?;
    if plan.probe {
        // Verify the filter installs (in init itself: nothing runs after).
        stage(Stage::Seccomp, seccomp::install(prog))?;
        status.send(&StatusMsg::StageOk {
            stage: "seccomp".into(),
        });
        return Ok(0);
    }
    if let (Some(listener), Some(channel)) = (listener, channel) {
        stage(Stage::Egress, start_bridge(listener, channel, status, prog))?;
    }
    stage(Stage::Init, run_pipeline(plan, status, prog))
}

/// Init's first steps: die with the helper, make sure the helper is
/// still there, take signals through the signalfd mask, become
/// non-dumpable (init's memory is a copy of csc's, see T32).
fn init_start(life: OwnedFd) -> StepResult<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(failed("PR_SET_PDEATHSIG"))?;
    // If the helper died before PDEATHSIG was armed, the life pipe is
    // already closed.
    let mut pfd = [PollFd::new(life.as_fd(), PollFlags::POLLIN)];
    if poll(&mut pfd, PollTimeout::ZERO).map_err(failed("poll"))? > 0 {
        return Err(Cause::refused("helper exited during setup"));
    }
    drop(life);
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&init_set()), None).map_err(failed("sigprocmask"))?;
    nix::sys::prctl::set_dumpable(false).map_err(failed("PR_SET_DUMPABLE"))
}

/// Fork the egress bridge (confined like a segment: Landlock, no
/// capabilities, rlimits, non-dumpable, seccomp), which accepts on the
/// listener and passes every connection to csc's proxy. Init keeps no
/// copy of either descriptor.
fn start_bridge(
    listener: std::net::TcpListener,
    channel: OwnedFd,
    status: &Status,
    prog: &[seccompiler::sock_filter],
) -> StepResult<()> {
    match sys::fork().map_err(failed("fork egress bridge"))? {
        Forked::Child => {
            let keep = [listener.as_raw_fd(), channel.as_raw_fd(), status.raw()];
            if let Err(e) = sys::close_fds_except(&keep) {
                let c = Cause::call("bridge: close fds", e);
                status.error(&SetupError::new(Stage::Egress, c));
                sys::exit_now(SETUP_FAILED_EXIT);
            }
            if let Err(c) = seccomp::install(prog) {
                let c = Cause::call("bridge", c);
                status.error(&SetupError::new(Stage::Egress, c));
                sys::exit_now(SETUP_FAILED_EXIT);
            }
            sys::exit_now(bridge::serve(listener, channel))
        }
        Forked::Parent(_) => Ok(()),
    }
}

/// Smallest `pid_max` the kernel accepts.
pub const PID_MAX_MIN: u64 = 301;
/// Pids below this one are handed out only until a pid namespace's
/// allocation cursor first passes it (the kernel's `RESERVED_PIDS`, which
/// `alloc_pid` applies in every pid namespace).
const RESERVED_PIDS: u64 = 300;

/// Cap the tasks of the sandbox's pid namespace at `processes`, init
/// included (Linux ≥ 6.14 namespaces `kernel.pid_max`). Unlike
/// `RLIMIT_NPROC`, this also binds a sandbox started by root (the kernel
/// exempts global root from NPROC); so it is mandatory for uid 0 and best
/// effort otherwise.
///
/// Exact at any churn: once the namespace's cursor has passed
/// [`RESERVED_PIDS`], new pids come from `[RESERVED_PIDS, pid_max)` only,
/// so `pid_max = processes + 1` alone would shrink the cap to
/// `processes + 1 - 300` after the first 300 forks. The cursor is moved
/// past it now (`ns_last_pid`), and `pid_max` set so that the range holds
/// exactly `processes - 1` tasks besides init. `pid_max` cannot go below
/// [`PID_MAX_MIN`], so root's cap must leave room for one task besides
/// init: a cap of 1 is refused, never silently raised.
fn limit_pids(processes: u64) -> StepResult<()> {
    let root = nix::unistd::Uid::effective().is_root();
    let max = (RESERVED_PIDS - 1).saturating_add(processes);
    if root && max < PID_MAX_MIN {
        return Err(Cause::refused(format!(
            "a process cap of {processes} cannot be enforced for a sandbox started by root: root is exempt from RLIMIT_NPROC, and the pid namespace's kernel.pid_max that caps it instead leaves room for init and at least one more task; set --rlimit-nproc to 2 or more"
        )));
    }
    let set =
        std::fs::write("/proc/sys/kernel/ns_last_pid", RESERVED_PIDS.to_string()).and_then(|()| {
            std::fs::write("/proc/sys/kernel/pid_max", max.max(PID_MAX_MIN).to_string())
        });
    match set {
        Ok(()) => Ok(()),
        // Non-root: RLIMIT_NPROC binds, the pid_max cap is extra.
        Err(_) if !root => Ok(()),
        Err(e) => Err(Cause::refused(format!(
            "cannot cap tasks via the pid namespace's kernel.ns_last_pid and kernel.pid_max ({e}); RLIMIT_NPROC does not bind uid 0, so the process limit would be unenforced (needs Linux >= 6.14)"
        ))),
    }
}

struct Prepared {
    path: CString,
    argv: Vec<CString>,
}

fn cstr(s: &str) -> StepResult<CString> {
    CString::new(s).map_err(|_| Cause::refused("string contains a NUL byte"))
}

/// NULL-terminated pointer array over `strings` (which must outlive it).
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Start every segment with [`sys::spawn_exec`] (no copy of init's
/// address space: the child shares it until `execve`) and reap them.
fn run_pipeline(
    plan: &SandboxPlan,
    status: &Status,
    prog: &[seccompiler::sock_filter],
) -> StepResult<i32> {
    let env: Vec<CString> = plan
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let envp = pointers(&env);
    let prepared: Vec<Prepared> = plan
        .segments
        .iter()
        .map(|argv| {
            Ok(Prepared {
                path: cstr(argv.first().ok_or(Cause::refused("empty argv"))?)?,
                argv: argv.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
            })
        })
        .collect::<StepResult<_>>()?;
    // stdin of the first segment: /dev/null inside the new root.
    let mut next_stdin: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(failed("open /dev/null"))?
        .into();
    let mut pids: Vec<libc::pid_t> = Vec::with_capacity(prepared.len());
    let n = prepared.len();
    for (i, seg) in prepared.iter().enumerate() {
        let started = start_segment(i, n, seg, &envp, next_stdin.as_raw_fd(), prog);
        let (pid, failure, read_end) = match started {
            Ok(s) => s,
            // Nothing started yet: a setup failure, nothing was run.
            Err(c) if pids.is_empty() => return Err(c),
            Err(c) => {
                let message = format!(
                    "segment {i} of {n} could not be started after {} had started (they were killed): {c}",
                    pids.len()
                );
                return Ok(end_after_start(
                    status,
                    Stage::Exec,
                    message,
                    crate::exit::COMMAND_FAILED,
                ));
            }
        };
        pids.push(pid);
        if let Some((step, errno)) = failure {
            status.error(&exec_failure(&seg.path, step, errno));
        }
        if let Some(r) = read_end {
            next_stdin = r;
        }
    }
    drop(next_stdin);
    let code = match reap_segments(&pids) {
        Ok(codes) => pipeline_status(&codes),
        Err(c) => {
            let message = format!("cannot collect the segments' exit statuses: {c}");
            return Ok(end_after_start(
                status,
                Stage::Init,
                message,
                crate::exit::COMMAND_FAILED,
            ));
        }
    };
    // Nothing of the sandbox may outlive the run: kill and reap whatever
    // the segments left (daemons, the egress bridge) now, not in init's
    // exit, then let go of the capture pipes and report. csc ends the run
    // on this line instead of waiting for the namespaces' teardown.
    if let Err(c) = end_namespace() {
        // Init's exit kills what is left; the commands did run.
        let message = format!("after the commands exited (status {code}): {c}");
        let code = if code == 0 {
            crate::exit::COMMAND_FAILED
        } else {
            code
        };
        return Ok(end_after_start(status, Stage::Init, message, code));
    }
    // Init's exit releases the pipes if this fails; the report stands.
    let _ = release_stdio();
    status.send(&StatusMsg::Exited { code });
    // Reported, and nothing of the sandbox is left to kill: what remains
    // is init's own exit and the teardown. (When `end_namespace` failed,
    // init exits at full priority: its exit kills what is left.)
    sys::lowest_priority();
    Ok(code)
}

/// A started segment: its pid, how its child failed before `execve` (if it
/// did), and the read end of its output pipe (but for the last segment).
type Started = (libc::pid_t, Option<(sys::ExecStep, i32)>, Option<OwnedFd>);

/// Start segment `i` of `n`: its output pipe (but for the last), then the
/// target with [`sys::spawn_exec`]. Returns its pid, how its child failed
/// before `execve` (if it did) and the read end of its output pipe.
fn start_segment(
    i: usize,
    n: usize,
    seg: &Prepared,
    envp: &[*const libc::c_char],
    stdin: RawFd,
    prog: &[seccompiler::sock_filter],
) -> StepResult<Started> {
    let (read_end, write_end) = if i + 1 < n {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(failed("pipe2"))?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let argv = pointers(&seg.argv);
    let image = sys::ExecImage {
        path: &seg.path,
        argv: &argv,
        envp,
        stdin,
        stdout: write_end.as_ref().map(|w| w.as_raw_fd()).unwrap_or(1),
        filter: prog,
    };
    let (pid, failure) = sys::spawn_exec(&image, SETUP_FAILED_EXIT, EXEC_FAILED_EXIT)
        .map_err(failed(format!("start segment {i}")))?;
    Ok((pid, failure, read_end))
}

/// End a run that went wrong after a segment had started: not "setup
/// failed, nothing was run" (something did run). Kill and reap every
/// process of the namespace, report why, then the `exited` line with
/// `code` (never 0 here, which would read as setup failure).
fn end_after_start(status: &Status, stage_of: Stage, message: String, code: i32) -> i32 {
    let _ = end_namespace();
    let _ = release_stdio();
    status.send(&StatusMsg::Error {
        stage: stage_of.as_str().to_string(),
        message,
    });
    status.send(&StatusMsg::Exited { code });
    code
}

/// From the pid namespace's init: SIGKILL every other process of the
/// namespace and reap until none is left.
fn end_namespace() -> StepResult<()> {
    let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::__WALL)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::ECHILD) => return Ok(()),
            Err(e) => return Err(Cause::call("waitpid", e)),
        }
    }
}

/// Put `/dev/null` on 0, 1 and 2, releasing the capture pipes.
fn release_stdio() -> StepResult<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(failed("open /dev/null"))?;
    for fd in 0..3 {
        sys::dup2(null.as_raw_fd(), fd).map_err(failed("dup2 /dev/null"))?;
    }
    Ok(())
}

/// The status line for a segment child that failed before or at
/// `execve` (it has exited with the matching code).
fn exec_failure(path: &CString, step: sys::ExecStep, errno: i32) -> SetupError {
    let e = nix::errno::Errno::from_raw(errno);
    let (stage, what) = match step {
        sys::ExecStep::Stdio => (Stage::Exec, "dup2 stdio".to_owned()),
        sys::ExecStep::Signals => (Stage::Exec, "reset signals".to_owned()),
        sys::ExecStep::CloseFds => (Stage::Exec, "close fds".to_owned()),
        sys::ExecStep::Seccomp => (Stage::Seccomp, "install filter".to_owned()),
        sys::ExecStep::Exec => (
            Stage::Exec,
            format!(
                "execve {}",
                Path::new(path.to_str().unwrap_or("?")).display()
            ),
        ),
    };
    SetupError::new(stage, Cause::call(what, e))
}

/// Reap everything (orphans are reparented to init) until every segment
/// has been collected, and return their statuses in segment order;
/// whatever is left dies with init. A termination request is passed on to
/// every process of the namespace.
fn reap_segments(pids: &[libc::pid_t]) -> StepResult<Vec<i32>> {
    let signals =
        SignalFd::with_flags(&init_set(), SfdFlags::SFD_CLOEXEC).map_err(failed("signalfd"))?;
    let mut codes: Vec<Option<i32>> = vec![None; pids.len()];
    loop {
        let mut no_children = false;
        loop {
            match waitpid(
                None::<Pid>,
                Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
            ) {
                Ok(WaitStatus::StillAlive) => break,
                Err(nix::errno::Errno::ECHILD) => {
                    no_children = true;
                    break;
                }
                Ok(WaitStatus::Exited(pid, c)) => record(pids, &mut codes, pid, c),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    record(pids, &mut codes, pid, crate::exit::signaled(sig as i32))
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Cause::call("waitpid", e)),
            }
        }
        if codes.iter().all(Option::is_some) {
            return Ok(codes.into_iter().map(|c| c.unwrap_or(0)).collect());
        }
        if no_children {
            return Err(Cause::refused(
                "waitpid: a segment vanished without an exit status",
            ));
        }
        match signals.read_signal() {
            Ok(Some(info)) if info.ssi_signo != Signal::SIGCHLD as u32 => {
                // pid -1 from the namespace's init: every process in the
                // namespace except init itself.
                let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGTERM);
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Cause::call("read signalfd", e)),
        }
    }
}

fn record(pids: &[libc::pid_t], codes: &mut [Option<i32>], pid: Pid, code: i32) {
    if let Some(i) = pids.iter().position(|&p| p == pid.as_raw()) {
        codes[i] = Some(code);
    }
}

/// First non-zero status in segment order, else 0.
pub fn pipeline_status(codes: &[i32]) -> i32 {
    codes.iter().copied().find(|&c| c != 0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::pipeline_status;

    #[test]
    fn pipeline_status_is_first_nonzero() {
        assert_eq!(pipeline_status(&[0, 0]), 0);
        assert_eq!(pipeline_status(&[0, 3, 1]), 3);
        assert_eq!(pipeline_status(&[141, 0]), 141);
    }
}
