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
use crate::fsutil::DirFd;
use crate::protocol::contract::{Command, Contract};
use crate::protocol::limits::truncate_error;
use crate::protocol::policy::Policy;
use crate::text::escape_control;

/// Exit code recorded when a command times out.
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code recorded for a command terminated because its run was
/// cancelled ([`super::cancel`]): 128 + SIGTERM, as a shell reports it.
pub const EXIT_CANCELLED: i32 = 128 + 15;
/// Exit code recorded when a path check refuses a command.
pub const EXIT_NOT_RUNNABLE: i32 = 126;

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

/// Is `id` safe as a file-name stem inside `--output-dir`? The same rule
/// as `verify-receipt --outputs` ([`crate::fsutil::is_output_stem`]).
pub fn check_output_id(id: &str) -> Result<(), String> {
    if !crate::fsutil::is_output_stem(id) {
        return Err(format!(
            "command id {id:?} cannot name a file in --output-dir (no '/', '\\', '..', NUL, leading '.', max 240 bytes)"
        ));
    }
    Ok(())
}

/// Checks that need no filesystem or process: duplicate ids, output-dir
/// ids, env names, declared scopes, expected outputs inside write scopes. A failure blocks the whole run before
/// anything is launched.
pub fn precheck(
    contract: &Contract,
    policy: &Policy,
    output_dir: bool,
    env_allow: &env::EnvAllowlist,
) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for cmd in &contract.commands {
        if !seen.insert(cmd.id.as_str()) {
            return Err(format!("duplicate command id {:?}", cmd.id));
        }
        if output_dir {
            check_output_id(&cmd.id)?;
        }
        if cmd.argv_vectors().iter().any(|a| a.is_empty()) || cmd.argv_vectors().is_empty() {
            return Err(format!("command {:?} has an empty argv", cmd.id));
        }
        env_allow
            .check_names(&cmd.env_allow)
            .map_err(|e| format!("command {:?}: {e}", cmd.id))?;
        for p in &cmd.read_paths {
            paths::check_scope(p, &policy.allowed_read_prefixes, "read_paths")
                .map_err(|e| format!("command {:?}: {e}", cmd.id))?;
        }
        for p in &cmd.write_paths {
            paths::check_scope(p, &policy.allowed_write_prefixes, "write_paths")
                .map_err(|e| format!("command {:?}: {e}", cmd.id))?;
        }
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
        stop(status, Some(EXIT_NOT_RUNNABLE), e.to_string())
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
    .map_err(|e| stop(RunStatus::Blocked, Some(EXIT_NOT_RUNNABLE), e))?;
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
            .map_err(|e| stop(RunStatus::Blocked, Some(EXIT_NOT_RUNNABLE), e))?;
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
    let mut run = ContractRun {
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
    };
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
                Some(128 + sig),
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
                Some(EXIT_CANCELLED),
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
        let (code, timed_out, failure) = match result {
            Err(e) => (
                1,
                false,
                Some(format!(
                    "internal runner error while running {:?}: {e}",
                    cmd.id
                )),
            ),
            Ok(CommandRun::NotLaunched(e)) => {
                (stdout, stderr) = super::empty_captures();
                (e.code, false, Some(e.message))
            }
            Ok(CommandRun::Ran(p)) => {
                if p.strays_killed {
                    cfg.live.note(&format!(
                        "csc: command {:?} exited but left processes holding its output open; its process group was killed and csc stopped waiting for the pipes\n",
                        cmd.id
                    ));
                }
                stdout = p.stdout;
                stderr = p.stderr;
                if let (true, Some(sig)) = (p.interrupted, super::sys::interrupted()) {
                    (
                        128 + sig,
                        false,
                        Some(format!(
                            "csc was interrupted by signal {sig}; command {:?} was terminated",
                            cmd.id
                        )),
                    )
                } else if let (true, Some(reason)) = (
                    p.interrupted,
                    cfg.cancel.and_then(super::cancel::Cancel::reason),
                ) {
                    (
                        EXIT_CANCELLED,
                        false,
                        Some(format!(
                            "run cancelled: {reason}; command {:?} was terminated (its whole process group)",
                            cmd.id
                        )),
                    )
                } else if p.timed_out {
                    (
                        EXIT_TIMEOUT,
                        true,
                        Some(format!(
                            "command {:?} timed out after {} seconds",
                            cmd.id, cmd.timeout_sec
                        )),
                    )
                } else if p.status.code != 0 {
                    let detail = p.status.detail.unwrap_or_default();
                    let err_text =
                        String::from_utf8_lossy(stderr.data.as_deref().unwrap_or(&[])).into_owned();
                    // The command wrote this text: never let it reach a
                    // terminal (or a receipt reader) raw.
                    let err_text = escape_control(err_text.trim_end());
                    let msg = if err_text.trim().is_empty() {
                        format!("command {:?} failed: {detail}", cmd.id)
                    } else {
                        format!("command {:?} failed: {detail}; stderr: {err_text}", cmd.id)
                    };
                    (p.status.code, false, Some(msg))
                } else {
                    (0, false, None)
                }
            }
        };
        run.exit_code = Some(code);
        if let Some(max) = cfg.keep_outputs {
            run.outputs
                .push(CommandOutput::new(&cmd.id, code, &stdout, &stderr, max));
        }
        let mut failure = failure;
        if let Some(dir) = cfg.output_dir
            && let Err(e) = save_output(dir, cmd, code, timed_out, &stdout, &stderr)
        {
            failure.get_or_insert(format!(
                "cannot save output of {:?} in {}: {e}",
                cmd.id,
                dir.shown().display()
            ));
            if code == 0 {
                run.exit_code = Some(1);
            }
        }
        match failure {
            None => run.completed.push(cmd.id.clone()),
            Some(msg) => {
                run.failed = Some(cmd.id.clone());
                outcome = Some(stop(RunStatus::Failed, run.exit_code, msg));
                break;
            }
        }
    }
    if let Some(s) = outcome {
        run.status = s.status;
        run.exit_code = match s.status {
            RunStatus::Blocked => s.code,
            _ => s.code.or(run.exit_code),
        };
        run.error = truncate_error(&s.error);
    } else {
        run.exit_code = Some(0);
    }
    if let Some(before) = before {
        let counted = before.count_changed();
        run.files_written = counted.count;
        run.files_written_lower_bound = counted.lower_bound;
    }
    run.stdout = stdout;
    run.stderr = stderr;
    run
}
