//! Running a whole contract: static pre-checks, then each command in
//! contract order (runtime cwd check, argv resolution, environment,
//! launch, capture); the first failure stops the run.

use std::ffi::OsString;
use std::time::Duration;

use super::capture::{Captured, Live};
use super::effects::Snapshot;
use super::resolve::{self, SearchPath};
use super::scan::ScanLimits;
use super::{CaptureLimits, CommandRun, LaunchSpec, Launcher, Segment, env, paths, scopes};
use crate::exit;
use crate::fsutil::DirFd;
use crate::protocol::contract::{Command, Contract};
use crate::protocol::limits::truncate_error;
use crate::protocol::policy::Policy;
use crate::text::escape_control;

/// How a contract run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every command exited 0.
    Success,
    /// A command failed, timed out, or could not be started.
    Failed,
    /// A runtime check refused to run a command.
    Blocked,
}

/// Everything the receipt needs from a run.
#[derive(Debug)]
pub struct ContractRun {
    /// How the run ended.
    pub status: RunStatus,
    /// Exit code of the last executed command (or the refusal code).
    pub exit_code: Option<i32>,
    /// stdout capture of the last executed command.
    pub stdout: Captured,
    /// stderr capture of the last executed command.
    pub stderr: Captured,
    /// Ids of the commands that completed successfully, in order.
    pub completed: Vec<String>,
    /// Id of the command that failed or was refused.
    pub failed: Option<String>,
    /// Empty on success.
    pub error: String,
    /// Indices of the commands that were launched.
    pub executed: Vec<usize>,
    /// Regular files under the declared write scopes that changed.
    pub files_written: u64,
    /// Why `files_written` is only a lower bound (`None`: exact).
    pub files_written_lower_bound: Option<String>,
    /// Whether anything was launched at all.
    pub started: bool,
    /// Each launched command's kept output (only with
    /// [`RunConfig::keep_outputs`]).
    pub outputs: Vec<CommandOutput>,
}

/// The kept head of one launched command's output.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The command's id.
    pub id: String,
    /// Its exit code (or the refusal/timeout code).
    pub exit_code: i32,
    /// The first bytes of its stdout.
    pub stdout: Vec<u8>,
    /// The first bytes of its stderr.
    pub stderr: Vec<u8>,
    /// stdout produced more than was kept.
    pub stdout_truncated: bool,
    /// stderr produced more than was kept.
    pub stderr_truncated: bool,
}

impl CommandOutput {
    fn new(id: &str, exit_code: i32, stdout: &Captured, stderr: &Captured, max: usize) -> Self {
        let head = |c: &Captured| {
            let data = c.data.as_deref().unwrap_or(&[]);
            let kept = &data[..data.len().min(max)];
            (
                kept.to_vec(),
                c.truncated || c.total_bytes > kept.len() as u64,
            )
        };
        let (out, out_t) = head(stdout);
        let (err, err_t) = head(stderr);
        CommandOutput {
            id: id.to_owned(),
            exit_code,
            stdout: out,
            stderr: err,
            stdout_truncated: out_t,
            stderr_truncated: err_t,
        }
    }
}

/// Executor settings chosen by the operator.
pub struct RunConfig<'a> {
    /// How commands are started (local process group, or a sandbox).
    pub launcher: &'a dyn Launcher,
    /// Trusted search path for `argv[0]` and the commands' `PATH`.
    pub search_path: &'a SearchPath,
    /// Max stdout bytes captured per command.
    pub stdout_cap: u64,
    /// Max stderr bytes captured per command.
    pub stderr_cap: u64,
    /// Where each command's captured streams are saved, if anywhere
    /// (opened before the run).
    pub output_dir: Option<&'a DirFd>,
    /// Live echo of the captured output.
    pub live: &'a mut Live,
    /// Reads the caller's environment (for `env_allow`).
    pub env_lookup: &'a dyn Fn(&str) -> Option<OsString>,
    /// Which `env_allow` names the operator lets through.
    pub env_allow: &'a env::EnvAllowlist,
    /// Budgets of the `files_written` scans.
    pub scan_limits: ScanLimits,
    /// Keep the first N bytes of each command's stdout and stderr in
    /// [`ContractRun::outputs`] (`None`: keep nothing).
    pub keep_outputs: Option<usize>,
    /// Raised from outside to stop the run (see [`super::cancel`]).
    pub cancel: Option<&'a super::cancel::Cancel>,
}

/// Checks that need no filesystem or process (see [`super::prelaunch`]):
/// duplicate ids, output-dir ids, env names, declared scopes, expected
/// outputs inside write scopes. The first failure blocks the whole run
/// before anything is launched; `csc check` and `csc explain` evaluate the
/// same checks with the same messages.
pub fn precheck(
    contract: &Contract,
    policy: &Policy,
    output_dir: bool,
    env_allow: &env::EnvAllowlist,
) -> Result<(), String> {
    let op = super::prelaunch::Operator {
        env_allow,
        output_dir,
        egress: None,
    };
    if let Some(r) = super::prelaunch::commands(contract, policy, &op).first() {
        return Err(r.message.clone());
    }
    if let Some(f) = crate::engine::expected_outputs::check(contract).first() {
        return Err(f.to_string());
    }
    Ok(())
}

struct Stop {
    status: RunStatus,
    code: Option<i32>,
    error: String,
}

fn stop(status: RunStatus, code: Option<i32>, error: String) -> Stop {
    Stop {
        status,
        code,
        error,
    }
}

/// Build the launch spec for one command (runtime checks happen here).
fn prepare(
    cmd: &Command,
    expected_outputs: &[String],
    policy: &Policy,
    cfg: &RunConfig<'_>,
) -> Result<LaunchSpec, Stop> {
    let cwd = paths::resolve_cwd(
        &cmd.cwd,
        &policy.allowed_cwd_prefixes,
        &policy.allowed_read_prefixes,
    )
    .map_err(|e| {
        let status = if e.is_block() {
            RunStatus::Blocked
        } else {
            RunStatus::Failed
        };
        stop(status, Some(exit::NOT_RUNNABLE), e.to_string())
    })?;
    // Missing write scopes are created here (or the run is blocked).
    let scopes = scopes::command_scopes(
        &cmd.read_paths,
        &cmd.write_paths,
        &policy.allowed_read_prefixes,
        &policy.allowed_write_prefixes,
    )
    .and_then(|s| {
        scopes::ensure_scopes(&s, &policy.allowed_write_prefixes, expected_outputs).map(|()| s)
    })
    .map_err(|e| stop(RunStatus::Blocked, Some(exit::NOT_RUNNABLE), e))?;
    let read_paths = scopes.read.into_iter().map(|(_, r)| r.path).collect();
    let write_paths = scopes.write.into_iter().map(|(_, r)| r.path).collect();
    let env = env::build(
        &cmd.env_allow,
        cfg.env_allow,
        cfg.search_path.as_env_value(),
        cfg.env_lookup,
    )
    .map_err(|e| stop(RunStatus::Blocked, None, e.to_string()))?;
    let mut segments = Vec::new();
    for argv in cmd.argv_vectors() {
        let name = argv.first().map(String::as_str).unwrap_or("");
        let program = resolve::resolve(name, cfg.search_path)
            .map_err(|e| stop(RunStatus::Failed, Some(e.exit_code()), e.to_string()))?;
        resolve::check_program_target(name, &program, cfg.search_path, &policy.allow_commands)
            .map_err(|e| stop(RunStatus::Blocked, Some(exit::NOT_RUNNABLE), e))?;
        segments.push(Segment {
            program,
            argv: argv.to_vec(),
        });
    }
    Ok(LaunchSpec {
        segments,
        cwd,
        env,
        read_paths,
        write_paths,
        network: cmd.network,
    })
}

fn save_output(
    dir: &DirFd,
    cmd: &Command,
    code: i32,
    timed_out: bool,
    out: &Captured,
    err: &Captured,
) -> std::io::Result<()> {
    let name = |ext: &str| OsString::from(format!("{}{ext}", cmd.id));
    // Through the directory opened before the run; whatever sits at the
    // name (a planted symlink included) is unlinked, never followed.
    dir.replace_file(&name(".stdout"), out.data.as_deref().unwrap_or_default())?;
    dir.replace_file(&name(".stderr"), err.data.as_deref().unwrap_or_default())?;
    let meta = serde_json::json!({
        "command_id": cmd.id,
        "exit_code": code,
        "timed_out": timed_out,
        "stdout_hash": out.hash,
        "stdout_truncated": out.truncated,
        "stdout_total_bytes": out.total_bytes,
        "stderr_hash": err.hash,
        "stderr_truncated": err.truncated,
        "stderr_total_bytes": err.total_bytes,
    });
    let mut text = serde_json::to_string_pretty(&meta).map_err(std::io::Error::other)?;
    text.push('\n');
    dir.replace_file(&name(".json"), text.as_bytes())
}

/// Run `contract`'s commands in order. `before_first_spawn` runs exactly
/// once, right before the first launch (approval consumption); its error
/// blocks the run with nothing started.
pub fn run_contract(
    contract: &Contract,
    policy: &Policy,
    cfg: &mut RunConfig<'_>,
    before_first_spawn: &mut dyn FnMut() -> Result<(), String>,
) -> ContractRun {
    let (mut stdout, mut stderr) = super::empty_captures();
    let mut run = ContractRun::empty();
    let write_scopes: Vec<String> = contract
        .commands
        .iter()
        .flat_map(|c| c.write_paths.iter().cloned())
        .collect();
    let before =
        (!write_scopes.is_empty()).then(|| Snapshot::take_with(&write_scopes, cfg.scan_limits));
    let limits = CaptureLimits {
        stdout_cap: cfg.stdout_cap,
        stderr_cap: cfg.stderr_cap,
        keep_stdout: cfg.output_dir.is_some() || cfg.keep_outputs.is_some(),
    };

    let mut outcome: Option<Stop> = None;
    for (index, cmd) in contract.commands.iter().enumerate() {
        if let Some(sig) = super::sys::interrupted() {
            run.failed = Some(cmd.id.clone());
            outcome = Some(stop(
                RunStatus::Failed,
                Some(exit::signaled(sig)),
                format!(
                    "csc was interrupted by signal {sig} before command {:?} started",
                    cmd.id
                ),
            ));
            break;
        }
        if let Some(reason) = cfg.cancel.and_then(super::cancel::Cancel::reason) {
            run.failed = Some(cmd.id.clone());
            outcome = Some(stop(
                RunStatus::Failed,
                Some(exit::CANCELLED),
                format!(
                    "run cancelled before command {:?} started: {reason}",
                    cmd.id
                ),
            ));
            break;
        }
        let spec = match prepare(cmd, &contract.expected_outputs, policy, cfg) {
            Ok(s) => s,
            Err(s) => {
                run.failed = Some(cmd.id.clone());
                outcome = Some(s);
                break;
            }
        };
        if !run.started {
            if let Err(e) = before_first_spawn() {
                // Nothing ran and no command is at fault.
                outcome = Some(stop(RunStatus::Blocked, None, e));
                break;
            }
            run.started = true;
        }
        run.executed.push(index);
        let result = super::run_command(
            cfg.launcher,
            &spec,
            Duration::from_secs(cmd.timeout_sec),
            limits,
            cfg.live,
            cfg.cancel,
        );
        let ended = judge(cmd, result, &mut stdout, &mut stderr, cfg.live, cfg.cancel);
        run.exit_code = Some(ended.code);
        let failure = keep_output(&mut run, cfg, cmd, &ended, &stdout, &stderr);
        match failure {
            None => run.completed.push(cmd.id.clone()),
            Some(msg) => {
                run.failed = Some(cmd.id.clone());
                outcome = Some(stop(RunStatus::Failed, run.exit_code, msg));
                break;
            }
        }
    }
    run.finish(outcome, before);
    run.stdout = stdout;
    run.stderr = stderr;
    run
}

/// How one launched command ended: its recorded code, whether it timed
/// out, and the failure message (`None`: it succeeded).
struct Ended {
    code: i32,
    timed_out: bool,
    failure: Option<String>,
}

/// Judge one command's run; its captures replace `stdout`/`stderr`
/// (emptied when it never started).
fn judge(
    cmd: &Command,
    result: std::io::Result<CommandRun>,
    stdout: &mut Captured,
    stderr: &mut Captured,
    live: &mut Live,
    cancel: Option<&super::cancel::Cancel>,
) -> Ended {
    let ended = |code, failure| Ended {
        code,
        timed_out: false,
        failure,
    };
    let p = match result {
        Err(e) => {
            let msg = format!("internal runner error while running {:?}: {e}", cmd.id);
            return ended(1, Some(msg));
        }
        Ok(CommandRun::NotLaunched(e)) => {
            (*stdout, *stderr) = super::empty_captures();
            return ended(e.code, Some(e.message));
        }
        Ok(CommandRun::Ran(p)) => p,
    };
    if p.strays_killed {
        live.note(&format!(
            "csc: command {:?} exited but left processes holding its output open; its process group was killed and csc stopped waiting for the pipes\n",
            cmd.id
        ));
    }
    *stdout = p.stdout;
    *stderr = p.stderr;
    if let (true, Some(sig)) = (p.interrupted, super::sys::interrupted()) {
        let msg = format!(
            "csc was interrupted by signal {sig}; command {:?} was terminated",
            cmd.id
        );
        ended(exit::signaled(sig), Some(msg))
    } else if let (true, Some(reason)) = (
        p.interrupted,
        cancel.and_then(super::cancel::Cancel::reason),
    ) {
        let msg = format!(
            "run cancelled: {reason}; command {:?} was terminated (its whole process group)",
            cmd.id
        );
        ended(exit::CANCELLED, Some(msg))
    } else if p.timed_out {
        Ended {
            code: exit::TIMEOUT,
            timed_out: true,
            failure: Some(format!(
                "command {:?} timed out after {} seconds",
                cmd.id, cmd.timeout_sec
            )),
        }
    } else if p.status.code != 0 {
        let detail = p.status.detail.unwrap_or_default();
        let err_text = String::from_utf8_lossy(stderr.data.as_deref().unwrap_or(&[])).into_owned();
        // The command wrote this text: never let it reach a terminal (or a
        // receipt reader) raw.
        let err_text = escape_control(err_text.trim_end());
        let msg = if err_text.trim().is_empty() {
            format!("command {:?} failed: {detail}", cmd.id)
        } else {
            format!("command {:?} failed: {detail}; stderr: {err_text}", cmd.id)
        };
        ended(p.status.code, Some(msg))
    } else {
        ended(0, None)
    }
}

/// Keep the command's output (in [`ContractRun::outputs`] and the output
/// directory); a failure to save it fails the command. Returns the
/// command's failure message, if any.
fn keep_output(
    run: &mut ContractRun,
    cfg: &RunConfig<'_>,
    cmd: &Command,
    ended: &Ended,
    stdout: &Captured,
    stderr: &Captured,
) -> Option<String> {
    if let Some(max) = cfg.keep_outputs {
        run.outputs
            .push(CommandOutput::new(&cmd.id, ended.code, stdout, stderr, max));
    }
    let mut failure = ended.failure.clone();
    if let Some(dir) = cfg.output_dir
        && let Err(e) = save_output(dir, cmd, ended.code, ended.timed_out, stdout, stderr)
    {
        failure.get_or_insert(format!(
            "cannot save output of {:?} in {}: {e}",
            cmd.id,
            dir.shown().display()
        ));
        if ended.code == 0 {
            run.exit_code = Some(exit::COMMAND_FAILED);
        }
    }
    failure
}

impl ContractRun {
    /// A run where nothing has happened yet.
    fn empty() -> ContractRun {
        ContractRun {
            status: RunStatus::Success,
            exit_code: None,
            stdout: Captured::empty(),
            stderr: Captured::empty(),
            completed: Vec::new(),
            failed: None,
            error: String::new(),
            executed: Vec::new(),
            files_written: 0,
            files_written_lower_bound: None,
            started: false,
            outputs: Vec::new(),
        }
    }

    /// Status, exit code and error from how the loop ended; `files_written`
    /// from the walk after the run.
    fn finish(&mut self, outcome: Option<Stop>, before: Option<Snapshot>) {
        if let Some(s) = outcome {
            self.status = s.status;
            self.exit_code = match s.status {
                RunStatus::Blocked => s.code,
                _ => s.code.or(self.exit_code),
            };
            self.error = truncate_error(&s.error);
        } else {
            self.exit_code = Some(exit::COMMAND_OK);
        }
        if let Some(before) = before {
            let counted = before.count_changed();
            self.files_written = counted.count;
            self.files_written_lower_bound = counted.lower_bound;
        }
    }
}
