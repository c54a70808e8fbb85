//! Running a contract's commands: argv resolution, environment, launch,
//! pipelines, bounded capture and timeouts.
//!
//! The launch step sits behind one seam, [`Launcher`]: given a
//! [`LaunchSpec`] and the write ends of the stdout/stderr capture pipes it
//! starts the work and returns something [`Supervised`] (waitable and
//! signalable as a whole). Local mode uses [`pipeline::LocalLauncher`] (a
//! process group per command, real pipes between pipeline segments);
//! hardened mode plugs in a sandbox launcher whose single child's exit code
//! is the pipeline status. Everything after launch — capture, deadline,
//! escalation — is shared ([`run_command`]).

pub mod cancel;
pub mod capture;
pub mod contract;
pub mod effects;
pub mod env;
pub mod hints;
pub mod own_paths;
pub mod paths;
pub mod pipeline;
pub mod prelaunch;
pub mod resolve;
pub mod sandboxed;
pub mod scan;
pub mod scopes;
pub mod spawn;
pub(crate) mod sys;
pub mod timeout;

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::protocol::contract::NetworkMode;
use capture::{Capture, Captured, Live, Pumped};
pub use sys::Signal;
use timeout::{Escalation, Timing};

/// One argv vector, with its executable already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The file that is executed (absolute).
    pub program: PathBuf,
    /// The argv as the contract wrote it (`argv[0]` is passed unchanged).
    pub argv: Vec<String>,
}

/// Everything a launcher needs to start one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// One segment for `exec`, two or more for a pipeline.
    pub segments: Vec<Segment>,
    /// Resolved working directory (symlinks followed, policy-checked).
    pub cwd: PathBuf,
    /// The complete environment (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// Read scopes as resolved on the host (literal prefixes, symlinks
    /// resolved and re-checked against the policy; for confinement, local
    /// mode does not enforce).
    pub read_paths: Vec<PathBuf>,
    /// Write scopes as resolved on the host (as `read_paths`).
    pub write_paths: Vec<PathBuf>,
    /// Declared network mode (for confinement; local mode does not enforce).
    pub network: NetworkMode,
}

/// Final status of launched work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// 0 on success; the exit code, or 128 + signal number, of the first
    /// failing segment otherwise.
    pub code: i32,
    /// Human explanation when `code != 0`.
    pub detail: Option<String>,
}

impl Status {
    /// Success.
    pub fn ok() -> Self {
        Status {
            code: crate::exit::COMMAND_OK,
            detail: None,
        }
    }
}

/// Launched work that can be polled, signalled and waited for as a whole.
pub trait Supervised {
    /// Non-blocking: `Some(status)` once every process the launcher started
    /// directly has ended. Must not release the process group (local mode
    /// does not reap yet), so [`Supervised::signal`] still reaches strays.
    fn poll_exit(&mut self) -> io::Result<Option<Status>>;
    /// Send `sig` to everything the work consists of. Idempotent; a group
    /// that is already gone is not an error.
    fn signal(&mut self, sig: Signal) -> io::Result<()>;
    /// Block until the work has ended, kill whatever it left behind, reap,
    /// and return the final status.
    fn wait(&mut self) -> io::Result<Status>;
}

/// Why launching failed before anything ran.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LaunchError {
    /// Exit code to record: 127 not found, 126 not executable, 1 otherwise.
    pub code: i32,
    /// Clear explanation naming the segment.
    pub message: String,
}

/// The seam between "what to run" and "how it is confined".
pub trait Launcher {
    /// Start `spec` with `stdout` / `stderr` (write ends of the capture
    /// pipes) as the output of the work: the last segment's stdout, every
    /// segment's stderr. The launcher must close its copies of both before
    /// returning, so EOF on the read ends means the work closed them.
    fn launch(
        &self,
        spec: &LaunchSpec,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Box<dyn Supervised>, LaunchError>;
}

/// Capture limits for one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Max stdout bytes captured (default 10 MiB).
    pub stdout_cap: u64,
    /// Max stderr bytes captured (default 1 MiB).
    pub stderr_cap: u64,
    /// Keep a copy of the captured stdout (for `--output-dir`).
    pub keep_stdout: bool,
}

/// Result of [`run_command`].
#[derive(Debug)]
pub enum CommandRun {
    /// The launcher refused or failed; nothing ran.
    NotLaunched(LaunchError),
    /// The work ran (possibly timed out).
    Ran(Pumped),
}

/// Launch `spec` through `launcher`, capture its output within `limits`,
/// enforce `timeout` (and `cancel`), and return when everything has been
/// reaped.
pub fn run_command(
    launcher: &dyn Launcher,
    spec: &LaunchSpec,
    timeout: Duration,
    limits: CaptureLimits,
    live: &mut Live,
    cancel: Option<&cancel::Cancel>,
) -> io::Result<CommandRun> {
    let (out_r, out_w) = sys::pipe()?;
    let (err_r, err_w) = sys::pipe()?;
    {
        use std::os::fd::AsFd;
        sys::grow_pipe(out_w.as_fd(), 1 << 20);
    }
    let start = Instant::now();
    let mut child = match launcher.launch(spec, out_w, err_w) {
        Ok(c) => c,
        Err(e) => return Ok(CommandRun::NotLaunched(e)),
    };
    let escalation = Escalation::new(start, timeout, Timing::default()).with_cancel(cancel);
    let pumped = capture::pump(
        child.as_mut(),
        out_r,
        err_r,
        escalation,
        Capture::new(limits.stdout_cap, limits.keep_stdout),
        Capture::new(limits.stderr_cap, true),
        live,
    )?;
    Ok(CommandRun::Ran(pumped))
}

/// Captures of a command that never produced output.
pub fn empty_captures() -> (Captured, Captured) {
    (Captured::empty(), Captured::empty())
}

#[cfg(test)]
mod tests {
    //! The seam with a launcher shaped like the sandbox's: ONE child whose
    //! stdout/stderr are the capture pipes and whose exit code is the
    //! pipeline status, with `try_wait` / `wait` / `kill`.
    use super::*;
    use std::process::{Child, Command, Stdio};

    struct OneChild(Child);

    impl Supervised for OneChild {
        fn poll_exit(&mut self) -> io::Result<Option<Status>> {
            Ok(self.0.try_wait()?.map(|s| Status {
                code: s.code().unwrap_or(137),
                detail: None,
            }))
        }
        fn signal(&mut self, _sig: Signal) -> io::Result<()> {
            let _ = self.0.kill();
            Ok(())
        }
        fn wait(&mut self) -> io::Result<Status> {
            let s = self.0.wait()?;
            Ok(Status {
                code: s.code().unwrap_or(137),
                detail: None,
            })
        }
    }

    /// Runs the whole pipeline as one `sh -c` child (test-only stand-in).
    struct OneChildLauncher;

    impl Launcher for OneChildLauncher {
        fn launch(
            &self,
            spec: &LaunchSpec,
            stdout: OwnedFd,
            stderr: OwnedFd,
        ) -> Result<Box<dyn Supervised>, LaunchError> {
            let script: Vec<String> = spec.segments.iter().map(|s| s.argv.join(" ")).collect();
            let child = Command::new("/bin/sh")
                .arg("-c")
                .arg(script.join(" | "))
                .current_dir(&spec.cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::from(stderr))
                .spawn()
                .map_err(|e| LaunchError {
                    code: crate::exit::COMMAND_FAILED,
                    message: e.to_string(),
                })?;
            Ok(Box::new(OneChild(child)))
        }
    }

    fn spec(segments: &[&[&str]]) -> LaunchSpec {
        LaunchSpec {
            segments: segments
                .iter()
                .map(|a| Segment {
                    program: PathBuf::from(a[0]),
                    argv: a.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            cwd: PathBuf::from("/"),
            env: Vec::new(),
            read_paths: Vec::new(),
            write_paths: Vec::new(),
            network: NetworkMode::Deny,
        }
    }

    const LIMITS: CaptureLimits = CaptureLimits {
        stdout_cap: 1024,
        stderr_cap: 1024,
        keep_stdout: true,
    };

    #[test]
    fn a_single_child_launcher_plugs_into_capture_and_deadline() {
        let run = run_command(
            &OneChildLauncher,
            &spec(&[&["echo", "hi"], &["tr", "a-z", "A-Z"]]),
            Duration::from_secs(10),
            LIMITS,
            &mut Live::quiet(),
            None,
        )
        .unwrap();
        let CommandRun::Ran(p) = run else {
            panic!("not launched")
        };
        assert_eq!(p.status.code, 0);
        assert_eq!(p.stdout.data.as_deref(), Some(&b"HI\n"[..]));

        let started = Instant::now();
        let run = run_command(
            &OneChildLauncher,
            &spec(&[&["sleep", "30"]]),
            Duration::from_millis(200),
            LIMITS,
            &mut Live::quiet(),
            None,
        )
        .unwrap();
        let CommandRun::Ran(p) = run else {
            panic!("not launched")
        };
        assert!(p.timed_out);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_cancelled_run_terminates_the_command() {
        let cancel = cancel::Cancel::new();
        cancel.cancel("test");
        let run = run_command(
            &OneChildLauncher,
            &spec(&[&["sleep", "1000"]]),
            Duration::from_secs(1000),
            LIMITS,
            &mut Live::quiet(),
            Some(&cancel),
        )
        .unwrap();
        let CommandRun::Ran(p) = run else {
            panic!("not launched")
        };
        assert!(p.interrupted && !p.timed_out);
        assert_ne!(p.status.code, 0);
    }

    #[test]
    fn local_launcher_reports_the_first_failing_segment() {
        let seg = |argv: &[&str]| Segment {
            program: resolve::resolve(argv[0], &resolve::SearchPath::default()).unwrap(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        };
        let mut s = spec(&[&["x"]]);
        s.segments = vec![seg(&["sh", "-c", "exit 3"]), seg(&["cat"]), seg(&["true"])];
        let CommandRun::Ran(p) = run_command(
            &pipeline::LocalLauncher,
            &s,
            Duration::from_secs(10),
            LIMITS,
            &mut Live::quiet(),
            None,
        )
        .unwrap() else {
            panic!("not launched")
        };
        assert_eq!(p.status.code, 3);
        assert!(p.status.detail.unwrap().contains("segment 0"));
    }
}
