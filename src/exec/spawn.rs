//! Local-mode launch of one segment: `std::process::Command` with a clean
//! environment, the resolved program, the contract's `argv[0]`, and a
//! process group — no shell, no `pre_exec`.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use super::{LaunchError, LaunchSpec, Segment};
use crate::exit;

/// Where a segment's stdin comes from.
pub enum Input {
    /// `/dev/null` (the first segment).
    Null,
    /// The previous segment's pipe.
    Pipe(OwnedFd),
}

/// Spawn one segment into process group `pgid` (0 = start a new group led
/// by this process).
pub fn spawn_segment(
    spec: &LaunchSpec,
    seg: &Segment,
    stdin: Input,
    stdout: OwnedFd,
    stderr: OwnedFd,
    pgid: u32,
) -> io::Result<Child> {
    // argv[0] is the resolved path that is executed, as in hardened mode
    // (the sandbox execs the resolved path with it as argv[0]): a command
    // sees the same argv[0] in both modes.
    let mut cmd = Command::new(&seg.program);
    cmd.args(seg.argv.iter().skip(1))
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(match stdin {
            Input::Null => Stdio::null(),
            Input::Pipe(fd) => Stdio::from(fd),
        })
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(i32::try_from(pgid).unwrap_or(0));
    // `cmd` (holding the parent's copies of the pipe ends) is dropped on
    // return, so only the child keeps them open.
    cmd.spawn()
}

/// Map a spawn error to the recorded exit code and message.
pub fn launch_error(err: &io::Error, seg_index: usize, seg: &Segment) -> LaunchError {
    let code = match err.kind() {
        io::ErrorKind::NotFound => exit::NOT_FOUND,
        io::ErrorKind::PermissionDenied => exit::NOT_RUNNABLE,
        _ => match err.raw_os_error() {
            Some(libc::ENOEXEC) | Some(libc::EACCES) => exit::NOT_RUNNABLE,
            _ => exit::COMMAND_FAILED,
        },
    };
    let name = seg.argv.first().map(String::as_str).unwrap_or("");
    LaunchError {
        code,
        message: format!(
            "cannot start segment {seg_index} ({name:?} -> {}): {err}",
            seg.program.display()
        ),
    }
}
