//! `csc run CONTRACT POLICY`: decide, gate on approvals, execute, and write
//! a (optionally signed) receipt for every runtime outcome.

use crate::exit;
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};

use super::{CliResult, Error};
use crate::approval::{admit, signed};
use crate::engine;
use crate::evidence::receipt::{
    self, EffectSummary, Receipt, ReceiptBase, ReceiptOut, ReceiptStatus, Signer,
};
use crate::exec::Launcher;
use crate::exec::capture::Live;
use crate::exec::contract::{self as executor, ContractRun, RunConfig, RunStatus};
use crate::exec::effects;
use crate::exec::env::EnvAllowlist;
use crate::exec::own_paths::{self, OwnPath};
use crate::exec::pipeline::LocalLauncher;
use crate::exec::resolve::{DEFAULT_SEARCH_PATH, SearchPath};
use crate::exec::sandboxed::SandboxLauncher;
use crate::exec::scan::ScanLimits;
use crate::fsutil::DirFd;
use crate::protocol::contract::{Contract, NetworkMode};
use crate::protocol::decision::Verdict;
use crate::protocol::limits::{MAX_STDERR_CAPTURE_BYTES, MAX_STDOUT_CAPTURE_BYTES};
use crate::protocol::load;
use crate::sandbox::{self, SandboxConfig};
use crate::state::{Location, StateStore};
use crate::text::escape_control;
use crate::time::now_rfc3339;

/// Largest capture cap an operator may configure (memory stays bounded).
const MAX_CAP: u64 = 256 * 1024 * 1024;

/// Arguments of `csc run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Contract JSON file.
    pub contract: PathBuf,
    /// Policy file (YAML, or JSON when it ends in .json).
    pub policy: PathBuf,
    /// Where to write the receipt (parent directories are created).
    #[arg(long, value_name = "PATH", default_value = "./out/receipt.json")]
    pub receipt_out: PathBuf,
    /// Approval file: a v0.1 artifact or a DSSE-signed one from `csc approve`
    /// (repeatable, for a quorum).
    #[arg(long = "approval", value_name = "PATH")]
    pub approval: Vec<PathBuf>,
    /// Do not echo command output live.
    #[arg(long, short)]
    pub quiet: bool,
    /// Save each command's captured streams as DIR/<id>.stdout, .stderr, .json.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Operator settings shared with `csc mcp`.
    #[command(flatten)]
    pub op: OperatorArgs,
}

/// Operator flags of every verb that runs contracts (`csc run`, `csc mcp`):
/// mode, keys, state, caps, sandbox, environment and approval settings.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// Execution mode: local or hardened.
    #[arg(long, value_name = "MODE", default_value = "local")]
    pub mode: String,
    /// Sign the receipt (requires --signing-key and --key-id).
    #[arg(long)]
    pub sign: bool,
    /// Ed25519 private key: raw 32-byte seed, 64-byte seed+public, or PKCS#8 PEM.
    #[arg(long, value_name = "PATH")]
    pub signing_key: Option<PathBuf>,
    /// Key id recorded in the signature.
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
    /// Trusted search path for argv[0] (also the commands' PATH).
    #[arg(long, value_name = "DIRS", default_value = DEFAULT_SEARCH_PATH)]
    pub search_path: String,
    /// Directory of the state store (single-use approvals and the receipt ledger) [default: $XDG_STATE_HOME/csc or ~/.local/state/csc].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Max stdout bytes captured per command.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_STDOUT_CAPTURE_BYTES)]
    pub stdout_cap: u64,
    /// Max stderr bytes captured per command.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_STDERR_CAPTURE_BYTES)]
    pub stderr_cap: u64,
    /// Max bytes hashed over all expected outputs; a file that does not fit
    /// the remaining budget is not hashed (recorded in the receipt's error).
    #[arg(long, value_name = "BYTES", default_value_t = effects::DEFAULT_ARTIFACT_MAX_BYTES)]
    pub artifact_max_bytes: u64,
    /// Budget of directory entries for each `files_written` scan (before and
    /// after the run, over all write scopes); when it runs out the count is
    /// marked as a lower bound in the receipt.
    #[arg(long, value_name = "ENTRIES", default_value_t = crate::exec::scan::DEFAULT_MAX_ENTRIES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub scan_max_entries: u64,
    /// Time budget in seconds for each `files_written` scan; when it runs
    /// out the count is marked as a lower bound in the receipt.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::exec::scan::DEFAULT_MAX_TIME.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub scan_max_seconds: u64,
    /// Reference compatibility flag; not supported (use `csc sandbox-profile`).
    #[arg(long, hide = true)]
    pub sandbox_debug: bool,
    /// Environment variables the operator lets commands receive.
    #[command(flatten)]
    pub env: EnvArgs,
    /// Hardened-mode sandbox settings.
    #[command(flatten)]
    pub hardened: super::sandbox::HardenedArgs,
    /// Trusted approver keys (csc.keyring.v1): every approval must then be
    /// DSSE-signed by a usable key in it.
    #[arg(long, value_name = "FILE")]
    pub approver_keyring: Option<PathBuf>,
    /// Approvals needed when the policy requires approval: N, or per risk
    /// class (`critical=2,high=1`; unlisted classes need 1). Needs
    /// --approver-keyring.
    #[arg(long, value_name = "N|CLASS=N,...")]
    pub approvals_required: Option<String>,
    /// PostgreSQL state store for a fleet (`postgres://…`; also
    /// CSC_STATE_URL): approval consumption and the ledger live there
    /// instead of --state-dir (RFC 0014).
    #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
    pub state_url: Option<String>,
    /// Accepted for scripts written for the opt-in ledger; every receipt is
    /// appended to the ledger now.
    #[arg(long, hide = true)]
    pub ledger: bool,
}

/// Operator flags deciding which `env_allow` names reach commands. Shared
/// by every verb that runs commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EnvArgs {
    /// Let commands receive NAME when their env_allow lists it (repeatable;
    /// `*` globs). LANG, LANGUAGE, LC_*, TZ and TERM are allowed by default.
    /// Sensitive names (CSC_*, *_TOKEN, *SECRET*, *_KEY, AWS_*, ...) pass
    /// only when named exactly; loader hooks (LD_*, BASH_ENV, ...) never.
    #[arg(long = "allow-env", value_name = "NAME")]
    pub allow_env: Vec<String>,
}

impl EnvArgs {
    /// The allowlist these flags describe.
    pub fn allowlist(&self) -> Result<EnvAllowlist, Error> {
        EnvAllowlist::new(self.allow_env.iter().cloned()).map_err(Error::Failed)
    }
}

/// Validated operator settings (no I/O besides loading the key).
pub(crate) struct Settings {
    /// `Some` in hardened mode.
    pub(crate) sandbox: Option<SandboxConfig>,
    signer: Option<(SigningKey, String)>,
    search_path: SearchPath,
    pub(crate) env_allow: EnvAllowlist,
    /// `--approver-keyring` and `--approvals-required`.
    approval: admit::Operator,
}

/// Check the operator flags and load the signing key and keyring.
/// `approvals` is the number of approvals a run may bring.
pub(crate) fn settings(args: &OperatorArgs, approvals: usize) -> Result<Settings, Error> {
    let hardened = match args.mode.as_str() {
        "local" => false,
        "hardened" => true,
        other => {
            return Err(Error::Failed(format!(
                "mode must be 'local' or 'hardened', got {other:?}"
            )));
        }
    };
    let signer = if args.sign {
        let (Some(path), Some(id)) = (&args.signing_key, &args.key_id) else {
            return Err(Error::Failed(
                "--sign requires both --signing-key and --key-id".to_owned(),
            ));
        };
        if id.is_empty() {
            return Err(Error::Failed("--key-id must not be empty".to_owned()));
        }
        let key = crate::evidence::keys::load_signing_key(path)
            .map_err(|e| Error::Failed(format!("invalid signing key: {e}")))?;
        Some((key, id.clone()))
    } else {
        if args.signing_key.is_some() || args.key_id.is_some() {
            return Err(Error::Failed(
                "--signing-key and --key-id require the --sign flag".to_owned(),
            ));
        }
        None
    };
    if args.sandbox_debug {
        return Err(Error::Failed(
            "--sandbox-debug is not supported; `csc sandbox-profile --json` shows what hardened mode enforces"
                .to_owned(),
        ));
    }
    if hardened && signer.is_none() {
        return Err(Error::Failed(
            "hardened mode requires --sign --signing-key PATH --key-id ID".to_owned(),
        ));
    }
    for (name, cap) in [
        ("--stdout-cap", args.stdout_cap),
        ("--stderr-cap", args.stderr_cap),
    ] {
        if cap > MAX_CAP {
            return Err(Error::Failed(format!(
                "{name} {cap} exceeds the maximum {MAX_CAP}"
            )));
        }
    }
    let search_path = SearchPath::parse(&args.search_path)
        .map_err(|e| Error::Failed(format!("--search-path: {e}")))?;
    let env_allow = args.env.allowlist()?;
    let approval = approval_settings(args, approvals)?;
    Ok(Settings {
        sandbox: hardened.then(|| args.hardened.config()),
        signer,
        search_path,
        env_allow,
        approval,
    })
}

/// `--approver-keyring`, `--approvals-required` and the number of
/// `--approval` files, checked before anything runs.
fn approval_settings(args: &OperatorArgs, approvals: usize) -> Result<admit::Operator, Error> {
    if approvals > signed::MAX_APPROVALS {
        return Err(Error::Failed(format!(
            "at most {} --approval files",
            signed::MAX_APPROVALS
        )));
    }
    let keyring = match &args.approver_keyring {
        None => None,
        Some(p) => Some(
            crate::evidence::keyring::Keyring::load(p)
                .map_err(|e| Error::Failed(format!("--approver-keyring: {e}")))?,
        ),
    };
    let required = match &args.approvals_required {
        None => signed::Required::default(),
        Some(text) => text
            .parse()
            .map_err(|e| Error::Failed(format!("--approvals-required: {e}")))?,
    };
    if keyring.is_none() {
        if args.approvals_required.is_some() {
            return Err(Error::Failed(
                "--approvals-required needs --approver-keyring: unsigned approvals cannot prove distinct approvers".to_owned(),
            ));
        }
        if approvals > 1 {
            return Err(Error::Failed(
                "several --approval files need --approver-keyring (a quorum of unsigned approvals proves nothing)".to_owned(),
            ));
        }
    }
    Ok(admit::Operator { keyring, required })
}

/// Renders, signs and writes receipts; reports the outcome.
struct Emitter<'a> {
    base: ReceiptBase,
    out: ReceiptOut,
    signer: Option<Signer<'a>>,
    /// The state store: single-use approvals, and the ledger that gets
    /// every receipt (or why it cannot be used: the run is blocked).
    state: std::cell::RefCell<OpenedState>,
    /// Where it lives.
    location: Location,
}

impl Emitter<'_> {
    /// Run `f` on the state store, or say why the store is unusable.
    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut dyn StateStore) -> Result<T, String>,
    ) -> Result<T, String> {
        match &mut *self.state.borrow_mut() {
            Ok(store) => f(&mut **store),
            Err(e) => Err(e.clone()),
        }
    }

    fn receipt(&self, status: ReceiptStatus, error: &str) -> Receipt {
        Receipt::new(&self.base, status, now_rfc3339(), error)
    }

    /// Render, write (and append to the ledger) the receipt; returns the
    /// bytes written.
    fn emit(&self, receipt: &Receipt, code: u8) -> Result<Vec<u8>, Error> {
        let bytes = receipt::render(receipt, self.signer.as_ref(), &now_rfc3339())?;
        // The receipt file and its ledger entry are written at the same
        // time (their flushes overlap; without a thread, one after the
        // other); the outcome is reported only once both are durable, and
        // a run whose receipt is not in the ledger never reports success.
        let out = &self.out;
        let write = || out.write(&bytes);
        let (written, appended) = std::thread::scope(|scope| {
            let writer = std::thread::Builder::new()
                .name("csc-receipt".to_owned())
                .spawn_scoped(scope, write);
            let appended = match &mut *self.state.borrow_mut() {
                Ok(store) => crate::state::append_rendered(&mut **store, &bytes, &now_rfc3339()),
                Err(e) => Err(format!("the store is unusable: {e}")),
            };
            let written = match writer {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    Err(receipt::ReceiptError::Write {
                        path: self.out.path().display().to_string(),
                        reason: "the receipt writer panicked".to_owned(),
                    })
                }),
                Err(_) => write(),
            };
            (written, appended)
        });
        written.map_err(|e| {
            let ran = if receipt.completed_command_ids.is_empty() && receipt.exit_code.is_none() {
                String::new()
            } else {
                match &appended {
                    Ok(_) => " (commands ran; their receipt file is lost, the ledger holds the receipt)".to_owned(),
                    Err(a) => format!(
                        " (commands ran; their receipt is lost, and NOT appended to the ledger either: {a})"
                    ),
                }
            };
            Error::Failed(format!("{e}{ran}"))
        })?;
        appended.map_err(|e| {
                Error::Failed(format!(
                    "receipt written to {} but NOT appended to the ledger of the state store {}: {e}; run csc ledger verify before trusting this store",
                    self.out.path().display(),
                    self.location.shown()
                ))
            })?;
        let label = match receipt.status {
            ReceiptStatus::Success => "SUCCESS".to_owned(),
            ReceiptStatus::Failed => {
                format!(
                    "FAILED (exit code {})",
                    receipt.exit_code.unwrap_or(i32::from(exit::FAILURE))
                )
            }
            ReceiptStatus::Blocked if code == exit::NEEDS_APPROVAL => "NEEDS APPROVAL".to_owned(),
            ReceiptStatus::Blocked => "BLOCKED".to_owned(),
            ReceiptStatus::Expired => "EXPIRED".to_owned(),
        };
        let line = if receipt.error.is_empty() {
            format!("{label} — receipt written to {}", self.out.path().display())
        } else {
            format!(
                "{label} — {}; receipt written to {}",
                receipt.error,
                self.out.path().display()
            )
        };
        // One line, nothing the command wrote can move the cursor or
        // paint a second verdict.
        eprintln!("{}", escape_control(&line));
        Ok(bytes)
    }
}

/// One contract run as `csc run` and `csc mcp`'s `run_contract` request
/// it; the operator side comes from [`OperatorArgs`] and [`Settings`].
pub(crate) struct Request<'a> {
    /// The contract, loaded and validated.
    pub contract: &'a load::LoadedContract,
    /// The operator's policy, loaded and validated.
    pub policy: &'a crate::protocol::policy::LoadedPolicy,
    /// Approvals brought for this run.
    pub approvals: &'a [admit::Source],
    /// Where the receipt goes (already opened as `out`).
    pub receipt_out: &'a Path,
    /// Where each command's streams are saved.
    pub output_dir: Option<&'a Path>,
    /// Do not echo command output live.
    pub quiet: bool,
    /// Keep at most this many bytes of each command's stdout and stderr
    /// in [`Outcome::commands`] (`None`: keep none).
    pub keep_outputs: Option<usize>,
    /// A directory of csc's own evidence to hide from the command as a
    /// whole in hardened mode (`csc mcp --receipt-dir`: earlier runs'
    /// receipts and streams).
    pub private_dir: Option<&'a Path>,
    /// Raised to stop the run (`csc mcp`: the client cancelled or went
    /// away); the receipt is still written.
    pub cancel: Option<&'a crate::exec::cancel::Cancel>,
}

/// What one run produced: the receipt as written, its exit code, and the
/// kept part of each launched command's output.
pub(crate) struct Outcome {
    /// The receipt.
    pub receipt: Receipt,
    /// The rendered (possibly signed) receipt bytes, as written.
    pub rendered: Vec<u8>,
    /// The `csc run` exit code.
    pub code: u8,
    /// Per launched command (only with [`Request::keep_outputs`]).
    pub commands: Vec<executor::CommandOutput>,
}

/// Run `csc run`.
pub fn run(args: Args) -> CliResult {
    let settings = settings(&args.op, args.approval.len())?;
    // Before anything else: the receipt's directory is opened once and the
    // receipt must be writable there, or nothing runs.
    let out = ReceiptOut::open(&args.receipt_out)
        .map_err(|e| Error::Failed(format!("{e}; nothing was run")))?;
    let state = open_state(&args.op)?;
    let contract = load::load_contract(&args.contract)?;
    let policy = load::load_policy(&args.policy)?;
    let approvals: Vec<_> = args
        .approval
        .iter()
        .cloned()
        .map(admit::Source::File)
        .collect();
    let request = Request {
        contract: &contract,
        policy: &policy,
        approvals: &approvals,
        receipt_out: &args.receipt_out,
        output_dir: args.output_dir.as_deref(),
        quiet: args.quiet,
        keep_outputs: None,
        private_dir: None,
        cancel: None,
    };
    execute(&settings, &args.op, &request, out, state).map(|o| o.code)
}

/// The state store, or why it cannot be used.
pub(crate) type OpenedState = Result<Box<dyn StateStore>, String>;

/// The state store (approvals and ledger), opened before the contract is
/// read. Flags naming no usable location are an error; a store that
/// cannot be opened blocks the run with a receipt saying why.
pub(crate) fn open_state(op: &OperatorArgs) -> Result<(Location, OpenedState), Error> {
    let location = Location::resolve(op.state_url.as_deref(), op.state_dir.as_deref())
        .map_err(|e| Error::Failed(format!("{e}; nothing was run")))?;
    let store = location.open().map_err(|e| e.to_string());
    Ok((location, store))
}

/// Decide, gate, execute and write the receipt: the one run path of
/// `csc run` and `csc mcp`. `out` and `state` were opened by the caller
/// before the contract was read.
pub(crate) fn execute(
    settings: &Settings,
    op: &OperatorArgs,
    req: &Request<'_>,
    out: ReceiptOut,
    state: (Location, OpenedState),
) -> Result<Outcome, Error> {
    let contract = req.contract;
    let policy = req.policy;
    let c = &contract.contract;
    let p = &policy.policy;

    let base = ReceiptBase {
        contract_id: c.contract_id.clone(),
        execution_id: receipt::new_execution_id()
            .map_err(|e| Error::Failed(format!("cannot read /dev/urandom: {e}")))?,
        contract_sha256: c.sha256(),
        policy_profile: p.name.clone(),
        policy_schema_version: p.policy_schema_version.clone().filter(|v| !v.is_empty()),
        policy_sha256: policy.sha256(),
        execution_mode: if settings.sandbox.is_some() {
            "hardened"
        } else {
            "local"
        },
        sandbox_profile_id: settings
            .sandbox
            .as_ref()
            .map(|cfg| sandbox::profile(cfg).sandbox_profile_id),
        started_at: now_rfc3339(),
    };
    let emitter = Emitter {
        base,
        out,
        signer: settings.signer.as_ref().map(|(key, key_id)| Signer {
            key,
            key_id: key_id.as_str(),
        }),
        state: std::cell::RefCell::new(state.1),
        location: state.0,
    };
    let (receipt, code, commands) = gate_and_run(&emitter, settings, op, req)?;
    let rendered = emitter.emit(&receipt, code)?;
    Ok(Outcome {
        receipt,
        rendered,
        code,
        commands,
    })
}

/// A receipt, its exit code and the kept command outputs.
type Ran = (Receipt, u8, Vec<executor::CommandOutput>);

/// A run stopped before anything started: the receipt status, its error
/// and the exit code.
struct Stop {
    status: ReceiptStatus,
    error: String,
    code: u8,
}

impl Stop {
    fn blocked(error: impl Into<String>, code: u8) -> Stop {
        Stop {
            status: ReceiptStatus::Blocked,
            error: error.into(),
            code,
        }
    }
}

/// Everything between the receipt base and writing the receipt: egress
/// precheck, decision and approvals, pre-launch checks, execution,
/// evidence.
fn gate_and_run(
    emitter: &Emitter<'_>,
    settings: &Settings,
    op: &OperatorArgs,
    req: &Request<'_>,
) -> Result<Ran, Error> {
    let gated = admit_run(emitter, settings, req).and_then(|admitted| {
        Ok((
            prepare_run(emitter, settings, op, req, &admitted)?,
            admitted,
        ))
    });
    match gated {
        Ok((prepared, admitted)) => launch_run(emitter, settings, op, req, admitted, prepared),
        Err(stop) => Ok((
            emitter.receipt(stop.status, &stop.error),
            stop.code,
            Vec::new(),
        )),
    }
}

/// Egress precheck, the policy decision and the approval check
/// ([`approval::admit`]).
fn admit_run(
    emitter: &Emitter<'_>,
    settings: &Settings,
    req: &Request<'_>,
) -> Result<admit::Admitted, Stop> {
    let c = &req.contract.contract;
    // Nothing runs without a ledger to record it.
    if let Err(e) = &*emitter.state.borrow() {
        return Err(Stop::blocked(e.clone(), exit::FAILURE));
    }
    if let Some(cfg) = &settings.sandbox {
        egress_precheck(cfg, c, req.output_dir).map_err(|e| Stop::blocked(e, exit::FAILURE))?;
    }
    let decision = engine::decide(c, &req.policy.policy, engine::Semantics::Csc);
    if decision.decision == Verdict::Deny {
        let reasons = decision.reasons.join("; ");
        return Err(Stop::blocked(
            format!("policy denied: {reasons}"),
            exit::FAILURE,
        ));
    }
    admit::admit(
        &decision,
        c,
        &emitter.base.contract_sha256,
        req.approvals,
        &settings.approval,
        jiff::Timestamp::now(),
        &mut |w| eprintln!("csc: warning: {w}"),
    )
    .map_err(|r| match r {
        admit::Refusal::Missing(m) => Stop::blocked(m, exit::NEEDS_APPROVAL),
        admit::Refusal::Rejected(m) => Stop::blocked(m, exit::FAILURE),
        admit::Refusal::Expired(m) => Stop {
            status: ReceiptStatus::Expired,
            error: m,
            code: exit::FAILURE,
        },
    })
}

/// What the pre-launch checks opened: the `--output-dir` descriptor and
/// the approval store (for single-use approvals and the ledger).
struct Prepared {
    output_dir: Option<DirFd>,
}

/// The checks before launch: the executor's precheck, `--output-dir`,
/// csc's own paths out of every write scope, and no single-use approval
/// consumed yet.
fn prepare_run(
    emitter: &Emitter<'_>,
    settings: &Settings,
    op: &OperatorArgs,
    req: &Request<'_>,
    admitted: &admit::Admitted,
) -> Result<Prepared, Stop> {
    let c = &req.contract.contract;
    let blocked = |e: String| Stop::blocked(e, exit::FAILURE);
    executor::precheck(
        c,
        &req.policy.policy,
        req.output_dir.is_some(),
        &settings.env_allow,
    )
    .map_err(blocked)?;
    let output_dir =
        match req.output_dir {
            None => None,
            Some(dir) => Some(DirFd::open(dir, true).map_err(|e| {
                blocked(format!("cannot create --output-dir {}: {e}", dir.display()))
            })?),
        };
    if let Some(d) = &output_dir {
        receipt_outside_streams(&emitter.out, d, c).map_err(blocked)?;
    }
    own_paths_outside_scopes(
        &emitter.out,
        output_dir.as_ref(),
        emitter.location.dir(),
        op,
        c,
    )
    .map_err(blocked)?;
    emitter
        .with_store(|s| {
            admit::unconsumed(&admitted.single_use, &mut |id| {
                s.consumed_at(id).map_err(|e| e.to_string())
            })
        })
        .map_err(blocked)?;
    Ok(Prepared { output_dir })
}

/// Run the commands (consuming single-use approvals right before the
/// first starts) and turn the run into its receipt with every piece of
/// evidence: artifacts, the approval record, the egress logs.
fn launch_run(
    emitter: &Emitter<'_>,
    settings: &Settings,
    op: &OperatorArgs,
    req: &Request<'_>,
    admitted: admit::Admitted,
    prepared: Prepared,
) -> Result<Ran, Error> {
    let c = &req.contract.contract;
    let Prepared { output_dir } = prepared;
    let mut consume = || -> Result<(), String> {
        if admitted.single_use.is_empty() {
            return Ok(());
        }
        emitter.with_store(|s| {
            match s.consume_all(
                &admitted.single_use,
                &emitter.base.contract_sha256,
                &emitter.base.execution_id,
                &now_rfc3339(),
            ) {
                Ok(Ok(())) => Ok(()),
                Ok(Err((id, at))) => Err(format!(
                    "approval {id:?} has already been consumed (single_execution) at {at}"
                )),
                Err(e) => Err(e.to_string()),
            }
        })
    };
    crate::exec::sys::catch_interrupts()
        .map_err(|e| Error::Failed(format!("cannot install signal handlers: {e}")))?;
    let sandbox_launcher = settings.sandbox.clone().map(|config| SandboxLauncher {
        config,
        hidden_paths: private_paths(op, emitter.location.dir(), req),
        egress: Default::default(),
    });
    let started = std::time::Instant::now();
    let mut run = run_commands(
        settings,
        op,
        req,
        sandbox_launcher.as_ref(),
        output_dir.as_ref(),
        &mut consume,
    );
    let outputs = std::mem::take(&mut run.outputs);
    let executed = run.executed.clone();
    if settings.sandbox.is_some() {
        foreign_owner_hint(c, &run);
    }
    let started_run = run.started;
    let (mut receipt, mut code) = receipt_for(emitter, c, run, &artifact_limits(op, c, started));
    if started_run && !admitted.accepted.is_empty() {
        let record = signed::record(
            &admitted.accepted,
            &emitter.base.execution_id,
            &emitter.base.contract_sha256,
            admitted.required,
            settings.approval.keyring.is_some(),
        );
        if let Err(e) = bind_record(&mut receipt, &emitter.out, req.receipt_out, &record) {
            fail_receipt(&mut receipt, &mut code, e);
        }
    }
    if let Some(l) = &sandbox_launcher {
        let reports = std::mem::take(&mut *l.egress.lock().unwrap_or_else(|p| p.into_inner()));
        if let Err(e) = egress_evidence(&mut receipt, c, &executed, reports, output_dir.as_ref()) {
            // The connection log could not be kept: the run cannot count
            // as a success.
            fail_receipt(&mut receipt, &mut code, e);
        }
    }
    Ok((receipt, code, outputs))
}

/// The executor's settings for this run, and the run itself.
fn run_commands(
    settings: &Settings,
    op: &OperatorArgs,
    req: &Request<'_>,
    sandbox_launcher: Option<&SandboxLauncher>,
    output_dir: Option<&DirFd>,
    consume: &mut dyn FnMut() -> Result<(), String>,
) -> ContractRun {
    let mut live = if req.quiet {
        Live::quiet()
    } else {
        Live::stdio()
    };
    let lookup = |name: &str| std::env::var_os(name);
    let launcher: &dyn Launcher = match sandbox_launcher {
        Some(l) => l,
        None => &LocalLauncher,
    };
    let mut cfg = RunConfig {
        launcher,
        search_path: &settings.search_path,
        stdout_cap: op.stdout_cap,
        stderr_cap: op.stderr_cap,
        output_dir,
        live: &mut live,
        env_lookup: &lookup,
        env_allow: &settings.env_allow,
        scan_limits: ScanLimits {
            max_entries: op.scan_max_entries,
            max_time: std::time::Duration::from_secs(op.scan_max_seconds),
            ..ScanLimits::default()
        },
        keep_outputs: req.keep_outputs,
        cancel: req.cancel,
    };
    executor::run_contract(
        &req.contract.contract,
        &req.policy.policy,
        &mut cfg,
        consume,
    )
}

/// Artifacts are hashed within what is left of the contract's own time
/// budget (the sum of its commands' timeouts, counted from `started`),
/// and at least a moment.
fn artifact_limits(
    op: &OperatorArgs,
    c: &Contract,
    started: std::time::Instant,
) -> effects::ArtifactLimits {
    let budget = c
        .commands
        .iter()
        .fold(0u64, |sum, cmd| sum.saturating_add(cmd.timeout_sec));
    let deadline = started
        .checked_add(std::time::Duration::from_secs(budget))
        .unwrap_or_else(|| started + std::time::Duration::from_secs(86_400))
        .max(std::time::Instant::now() + effects::MIN_ARTIFACT_TIME);
    effects::ArtifactLimits {
        max_bytes: op.artifact_max_bytes,
        deadline,
    }
}

/// Hardened mode: when the failed command hit a file owned by another
/// uid, say so on stderr.
fn foreign_owner_hint(c: &Contract, run: &ContractRun) {
    if run.status != RunStatus::Failed {
        return;
    }
    if let Some(cmd) = c
        .commands
        .iter()
        .find(|x| Some(&x.id) == run.failed.as_ref())
        && let Some(hint) =
            crate::exec::hints::foreign_owner_hint(cmd, &run.error, nix::unistd::geteuid().as_raw())
    {
        eprintln!("csc: {}", crate::text::escape_control(&hint));
    }
}

/// Evidence csc could not keep: add `e` to the receipt's error; the run
/// cannot count as a success.
fn fail_receipt(receipt: &mut Receipt, code: &mut u8, e: String) {
    let err = if receipt.error.is_empty() {
        e
    } else {
        format!("{}; {e}", receipt.error)
    };
    receipt.error = crate::protocol::limits::truncate_error(&err);
    if receipt.status == ReceiptStatus::Success {
        receipt.status = ReceiptStatus::Failed;
        *code = exit::FAILURE;
    }
}

/// Write the approval record next to the receipt
/// (`<receipt file name>.approvals.json`, through the receipt directory's
/// descriptor) and bind it as an artifact (absolute path + SHA-256), so
/// the receipt signature covers which approvals the run went ahead on.
fn bind_record(
    receipt: &mut Receipt,
    out: &ReceiptOut,
    receipt_path: &Path,
    record: &[u8],
) -> Result<(), String> {
    let mut name = receipt_path
        .file_name()
        .ok_or("receipt path has no file name")?
        .to_os_string();
    name.push(".approvals.json");
    out.dir()
        .write_atomic(&name, record)
        .map_err(|e| format!("cannot write approval record {name:?}: {e}"))?;
    let path = out
        .dir()
        .real_path()
        .map_err(|e| format!("cannot resolve the receipt directory: {e}"))?
        .join(&name);
    let path = path
        .to_str()
        .ok_or_else(|| format!("approval record path {} is not UTF-8", path.display()))?
        .to_owned();
    receipt
        .artifacts
        .get_or_insert_with(Vec::new)
        .push(crate::exec::effects::Artifact {
            path,
            sha256: crate::canonical::sha256_hex(record),
        });
    Ok(())
}

/// Hardened mode and `network: allowlisted`: refuse before anything runs
/// when the allowlist is missing or invalid, or when there is no
/// `--output-dir` to keep the connection log in.
fn egress_precheck(
    cfg: &SandboxConfig,
    c: &Contract,
    output_dir: Option<&Path>,
) -> Result<(), String> {
    let env_allow = EnvAllowlist::default();
    let op = crate::exec::prelaunch::Operator {
        env_allow: &env_allow,
        output_dir: output_dir.is_some(),
        egress: Some(&cfg.egress),
    };
    match crate::exec::prelaunch::egress(c, &op) {
        Some(r) => Err(r.message),
        None => Ok(()),
    }
}

/// Bind each allowlisted command's egress log into the receipt: saved as
/// `<output-dir>/<command_id>.egress.jsonl` and listed in `artifacts`
/// (absolute path + SHA-256, checked by `verify-receipt --outputs`);
/// `effect_summary.network_used` reflects connections actually made; a
/// one-line summary of refused destinations goes to stderr.
fn egress_evidence(
    receipt: &mut Receipt,
    contract: &Contract,
    executed: &[usize],
    reports: Vec<Option<crate::egress::proxy::ProxyReport>>,
    output_dir: Option<&DirFd>,
) -> Result<(), String> {
    use crate::egress::log;
    let mut used = false;
    let mut problems = Vec::new();
    for (&index, report) in executed.iter().zip(reports) {
        let cmd = &contract.commands[index];
        if cmd.network != NetworkMode::Allowlisted {
            continue;
        }
        let Some(mut report) = report else { continue };
        for e in &mut report.entries {
            e.command_id = cmd.id.clone();
        }
        used |= log::network_used(&report.entries);
        if let Some(line) = log::refused_summary(&report.entries) {
            eprintln!("csc: command {:?}: {line}", cmd.id);
        }
        let Some(dir) = output_dir else { continue };
        let bytes = log::to_jsonl(&report.entries, report.dropped);
        match write_egress_log(dir, &cmd.id, &bytes) {
            Ok(path) => {
                let art = crate::exec::effects::Artifact {
                    path,
                    sha256: crate::canonical::sha256_hex(&bytes),
                };
                receipt.artifacts.get_or_insert_with(Vec::new).push(art);
            }
            Err(e) => problems.push(e),
        }
    }
    if let Some(es) = receipt.effect_summary.as_mut() {
        let full = executed
            .iter()
            .any(|&i| contract.commands[i].network == NetworkMode::Full);
        es.network_used = full || used;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Write `<id>.egress.jsonl` through the `--output-dir` descriptor opened
/// before the run (never following a planted symlink); returns its
/// absolute path.
fn write_egress_log(dir: &DirFd, id: &str, bytes: &[u8]) -> Result<String, String> {
    let name = format!("{id}.egress.jsonl");
    let shown = dir.shown().join(&name);
    dir.replace_file(std::ffi::OsStr::new(&name), bytes)
        .map_err(|e| format!("cannot write egress log {}: {e}", shown.display()))?;
    let path = dir
        .real_path()
        .map_err(|e| format!("cannot resolve --output-dir {}: {e}", dir.shown().display()))?
        .join(&name);
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("egress log path {} is not UTF-8", path.display()))
}

/// csc's own files named by this run's flags (signing key, state dir,
/// approval, receipt, output dir), as the kernel resolves them: hardened
/// mode masks them wherever a bind would expose them. Paths that do not
/// exist yet hold nothing to hide.
fn private_paths(op: &OperatorArgs, state_dir: Option<&Path>, req: &Request<'_>) -> Vec<PathBuf> {
    let state_dir = state_dir.map(Path::to_path_buf);
    let receipt_out = req.receipt_out.to_path_buf();
    let output_dir = req.output_dir.map(Path::to_path_buf);
    [
        op.signing_key.as_ref(),
        state_dir.as_ref(),
        op.approver_keyring.as_ref(),
        Some(&receipt_out),
        output_dir.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(PathBuf::as_path)
    .chain(req.private_dir)
    .chain(
        req.approvals
            .iter()
            .filter_map(admit::Source::path)
            .map(PathBuf::as_path),
    )
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .collect()
}

/// `--receipt-out` must not be one of the files csc saves in
/// `--output-dir` (`<id>.stdout`, `.stderr`, `.json`, `.egress.jsonl`):
/// one would silently overwrite the other.
fn receipt_outside_streams(out: &ReceiptOut, dir: &DirFd, c: &Contract) -> Result<(), String> {
    let (Ok(receipt), Ok(dir_real)) = (out.real_path(), dir.real_path()) else {
        return Ok(());
    };
    if receipt.parent() != Some(dir_real.as_path()) {
        return Ok(());
    }
    let name = receipt.file_name().unwrap_or_default().to_string_lossy();
    for cmd in &c.commands {
        for ext in [".stdout", ".stderr", ".json", ".egress.jsonl"] {
            if name == format!("{}{ext}", cmd.id) {
                return Err(format!(
                    "--receipt-out {} is the file where --output-dir saves {}{ext} of command {:?}; choose another receipt name or directory; nothing was run",
                    out.path().display(),
                    cmd.id,
                    cmd.id
                ));
            }
        }
    }
    Ok(())
}

/// csc's own paths (receipt file and directory, `--output-dir`, approval
/// state directory, signing key) must be out of every write scope.
fn own_paths_outside_scopes(
    out: &ReceiptOut,
    output_dir: Option<&DirFd>,
    state_dir: Option<&Path>,
    args: &OperatorArgs,
    contract: &Contract,
) -> Result<(), String> {
    let real = |what: &str, r: std::io::Result<PathBuf>| {
        r.map_err(|e| format!("cannot resolve {what}: {e}"))
    };
    let mut own = vec![
        OwnPath::file("--receipt-out", real("--receipt-out", out.real_path())?),
        OwnPath::file(
            "the --receipt-out directory",
            real("the --receipt-out directory", out.dir().real_path())?,
        ),
    ];
    if let Some(d) = output_dir {
        own.push(OwnPath::dir(
            "--output-dir",
            real("--output-dir", d.real_path())?,
        ));
    }
    if let Some(d) = state_dir {
        own.push(OwnPath::dir(
            "the --state-dir (approval store and ledger)",
            d,
        ));
    }
    if let Some(k) = &args.signing_key {
        own.push(OwnPath::file("--signing-key", k.clone()));
    }
    if let Some(k) = &args.approver_keyring {
        own.push(OwnPath::file("--approver-keyring", k.clone()));
    }
    own_paths::check(&own, contract)
}

/// Turn a contract run into its receipt and exit code.
fn receipt_for(
    emitter: &Emitter<'_>,
    contract: &Contract,
    run: ContractRun,
    limits: &effects::ArtifactLimits,
) -> (Receipt, u8) {
    let (status, code) = match run.status {
        RunStatus::Success => (ReceiptStatus::Success, exit::SUCCESS),
        RunStatus::Failed => (ReceiptStatus::Failed, exit::FAILURE),
        RunStatus::Blocked => (ReceiptStatus::Blocked, exit::FAILURE),
    };
    let mut error = run.error.clone();
    let mut r = emitter.receipt(status, "");
    r.exit_code = run.exit_code;
    r.completed_command_ids = run.completed.clone();
    r.failed_command_id = run.failed.clone();
    if run.started {
        let executed: Vec<_> = run
            .executed
            .iter()
            .map(|i| &contract.commands[*i])
            .collect();
        r.stdout_hash = Some(run.stdout.hash.clone());
        r.stderr_hash = Some(run.stderr.hash.clone());
        r.stdout_truncated = run.stdout.truncated.then_some(true);
        r.stderr_truncated = run.stderr.truncated.then_some(true);
        let (artifacts, problems) = effects::collect_artifacts(&contract.expected_outputs, limits);
        r.artifacts = Some(artifacts);
        if !problems.is_empty() {
            let joined = problems.join("; ");
            error = if error.is_empty() {
                joined
            } else {
                format!("{error}; {joined}")
            };
        }
        r.effect_summary = Some(EffectSummary {
            files_written: run.files_written,
            network_used: executed.iter().any(|c| c.network != NetworkMode::Deny),
            secrets_used: executed.iter().map(|c| c.secret_refs.len() as u64).sum(),
        });
    } else if status != ReceiptStatus::Blocked {
        // Failed before anything was launched (e.g. executable not found):
        // the schema still wants hashes; they are those of empty streams.
        r.stdout_hash = Some(run.stdout.hash.clone());
        r.stderr_hash = Some(run.stderr.hash.clone());
        r.artifacts = Some(Vec::new());
        r.effect_summary = Some(EffectSummary {
            files_written: 0,
            network_used: false,
            secrets_used: 0,
        });
    }
    if run.started
        && let Some(reason) = &run.files_written_lower_bound
    {
        error = receipt::mark_lower_bound(reason, &error);
    }
    r.error = receipt::receipt_error(&error);
    (r, code)
}
