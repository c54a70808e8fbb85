//! The command-line front end: clap definitions, dispatch, and the one place
//! where errors become exit codes.

/// `println!` for the verbs: a closed stdout (the reader went away, as in
/// `csc check --json … | head -1`) stops the verb with [`Error::Io`]
/// instead of a panic. Use it in functions returning `Result<_, Error>`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::Error::Io)?
    }};
}

mod approve;
mod attest;
mod check;
mod completions;
mod conformance;
mod error;
mod explain;
mod hash;
mod keygen;
mod ledger;
mod mcp;
mod run;
mod sandbox;
mod state;
mod validate;
mod verify_receipt;

use crate::exit;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub use error::Error;

/// Result of one verb: csc's exit code (see [`crate::exit`]).
pub type CliResult = Result<u8, Error>;

const AFTER_HELP: &str = "\
Examples:
  csc check examples/contracts/list-repo.json policies/readonly-dev.yaml
  csc explain contract.json policy.yaml
  csc keygen --out key.pem --public-out key.pub.pem
  csc run contract.json policy.yaml --sign --signing-key key.pem --key-id ops-1
  csc run contract.json policy.yaml --mode hardened --sign --signing-key key.pem --key-id ops-1
  csc verify-receipt out/receipt.json --public-key key.pub.pem --key-id ops-1
  csc doctor
  csc conformance conformance/

Exit codes: 0 allow/success, 2 needs approval, 1 deny or any error.";

/// csc — bounded, policy-gated command execution with signed receipts.
#[derive(Debug, Parser)]
#[command(name = "csc", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    #[allow(missing_docs, reason = "a doc comment here would change clap's help")]
    #[command(subcommand)]
    pub command: Verb,
}

/// The csc verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Decide a contract against a policy without executing anything.
    #[command(
        after_help = "Examples:\n  csc check contract.json policy.yaml\n  csc check contract.json policy.yaml --json\n\nExit codes: 0 allow, 2 needs approval, 1 deny or error."
    )]
    Check(check::Args),
    /// Show every policy check for every command, with what to change.
    #[command(
        after_help = "Examples:\n  csc explain contract.json policy.yaml\n  csc explain contract.json policy.yaml --json\n\nExit codes as for `check`."
    )]
    Explain(explain::Args),
    /// Decide, execute (local, or hardened in a kernel sandbox) and write a receipt for every outcome.
    #[command(
        after_help = "Examples:\n  csc run contract.json policy.yaml\n  csc run contract.json policy.yaml --receipt-out out/r.json --sign --signing-key key.pem --key-id ops-1\n  csc run contract.json policy.yaml --approval approval.json --state-dir /var/lib/csc\n  csc run contract.json policy.yaml --quiet --output-dir out/streams\n  csc run contract.json policy.yaml --mode hardened --sign --signing-key key.pem --key-id ops-1\n\nExit codes: 0 success, 2 blocked for a missing approval, 1 otherwise."
    )]
    Run(Box<run::Args>),
    /// Serve check_contract, explain_contract and run_contract over MCP stdio (JSON-RPC).
    #[command(
        after_help = "Examples:\n  csc mcp --policy policy.yaml --sign --signing-key key.pem --key-id ops-1\n  csc mcp --policy policy.yaml --mode hardened --sign --signing-key key.pem --key-id ops-1 --receipt-dir /var/lib/csc/receipts --max-parallel 2\n\nStdout carries only JSON-RPC; logs go to stderr. Exit code 0 when the client closes the session."
    )]
    Mcp(Box<mcp::Args>),
    /// Write a DSSE-signed approval for a contract (for `run --approver-keyring`).
    #[command(
        after_help = "Examples:\n  csc approve contract.json --signing-key alice.pem --key-id alice-2026 --approver alice@example.org --out alice.approval.json\n  csc approve contract.json --signing-key bob.pem --key-id bob-2026 --approver bob@example.org --expires-in 30m --ticket CHG-42 --reason 'prod migration' --out bob.approval.json"
    )]
    Approve(approve::Args),
    /// Tamper-evident receipt ledger: checkpoint, verify, prove, verify-proof, export.
    #[command(
        after_help = "Examples:\n  csc run contract.json policy.yaml --state-dir /var/lib/csc   (every receipt is appended)\n  csc ledger checkpoint --signing-key ledger.pem --key-id ledger-1 --state-dir /var/lib/csc\n  csc ledger verify --state-dir /var/lib/csc --keyring keyring.json\n  csc ledger prove out/receipt.json --state-dir /var/lib/csc > proof.json\n  csc ledger verify-proof proof.json out/receipt.json --keyring keyring.json\n  csc ledger prove --consistency 100 250 --state-dir /var/lib/csc\n  csc ledger export --state-dir /var/lib/csc > ledger.jsonl && csc ledger verify --export ledger.jsonl --keyring keyring.json\n\nExit code 0 only if what was checked is valid."
    )]
    Ledger(ledger::Args),
    /// State store administration: versioned schema migrations.
    #[command(
        after_help = "Examples:\n  csc state migrate --state-url 'postgres://csc_admin@db.example/csc?sslmode=verify-full&sslrootcert=/etc/csc/db-ca.pem'\n  CSC_STATE_URL=postgres://csc_admin@db.example/csc csc state migrate"
    )]
    State(state::Args),
    /// Wrap a receipt as a signed in-toto Statement (DSSE, one envelope per line).
    #[command(
        after_help = "Examples:\n  csc attest out/receipt.json --signing-key key.pem --key-id ops-1 --out out/receipt.intoto.jsonl\n  csc verify-receipt out/receipt.intoto.jsonl --keyring keyring.json"
    )]
    Attest(attest::Args),
    /// Verify signed receipts: schema, Ed25519 signature, trusted key, bindings.
    #[command(
        after_help = "Examples:\n  csc verify-receipt out/receipt.json --public-key ci.pub --key-id ci-2026\n  csc verify-receipt receipts/*.json --keyring keyring.json --json\n  csc verify-receipt r.json --keyring keyring.json --contract contract.json --policy policy.yaml --outputs out/\n\nExit code 0 only if every receipt is valid; each invalid one is named with its reason."
    )]
    VerifyReceipt(verify_receipt::Args),
    /// Generate an Ed25519 signing key (PKCS#8 PEM, mode 0600) and its public key.
    #[command(
        after_help = "Examples:\n  csc keygen --out signing.pem --public-out signing.pub.pem\n  csc keygen --out signing.pem --raw-public-out signing.pub --force\n\nPrints the fingerprint (sha256 of the raw public key), a suggested key id and a keyring entry."
    )]
    Keygen(keygen::Args),
    /// Probe the host: what hardened mode will and will not enforce here.
    #[command(
        after_help = "Examples:\n  csc doctor\n  csc doctor --json\n\nExit code 0 if hardened mode can run here, 1 otherwise."
    )]
    Doctor(sandbox::DoctorArgs),
    /// Print the hardened sandbox profile and its sandbox_profile_id.
    #[command(
        name = "sandbox-profile",
        after_help = "Examples:\n  csc sandbox-profile\n  csc sandbox-profile --json"
    )]
    SandboxProfile(sandbox::ProfileArgs),
    /// Validate documents against the v0.1 schemas and runner limits.
    #[command(
        after_help = "Examples:\n  csc validate contract a.json b.json\n  csc validate policy policies/*.yaml\n  csc validate receipt out/receipt.json\n\nExit code 1 if any file is invalid."
    )]
    Validate(validate::Args),
    /// Print the canonical SHA-256 of a contract or policy.
    #[command(
        after_help = "Examples:\n  csc hash contract contract.json\n  csc hash policy policy.yaml"
    )]
    Hash(hash::Args),
    /// Run a conformance fixture suite (interoperable format).
    #[command(
        after_help = "Examples:\n  csc conformance conformance/\n  csc conformance path/to/suite --json\n\nExit code 1 if any fixture failed or none ran."
    )]
    Conformance(conformance::Args),
    /// Print a shell completion script (bash, zsh, fish).
    #[command(
        after_help = "Examples:\n  csc completions bash > /etc/bash_completion.d/csc\n  csc completions zsh > \"${fpath[1]}/_csc\"\n  csc completions fish > ~/.config/fish/completions/csc.fish"
    )]
    Completions(completions::Args),
    /// Print the csc(1) man page (roff) generated from this CLI.
    #[command(after_help = "Example:\n  csc man > csc.1 && man ./csc.1")]
    Man,
    /// Internal: sandbox setup helper (re-executed by csc itself).
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit(sandbox::InitArgs),
    /// Internal: run a sandbox spec file with the current stdout/stderr.
    #[command(name = "__sandbox-run", hide = true)]
    SandboxRun(sandbox::RunArgs),
}

/// Exit code for a policy verdict: 0 allow, 2 needs approval, 1 deny.
pub fn verdict_exit(verdict: crate::protocol::decision::Verdict) -> u8 {
    use crate::protocol::decision::Verdict;
    match verdict {
        Verdict::Allow => exit::SUCCESS,
        Verdict::NeedsApproval => exit::NEEDS_APPROVAL,
        Verdict::Deny => exit::FAILURE,
    }
}

/// Parse arguments, run the verb, and exit with its code; an error is
/// printed on stderr and exits with [`Error::exit_code`].
pub fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away: nothing left to tell it.
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(exit::FAILURE)
        }
        Err(e) => {
            eprintln!(
                "csc: error: {}",
                crate::text::escape_control_lines(&e.to_string())
            );
            ExitCode::from(e.exit_code())
        }
    }
}

/// `csc check` and `csc run` are the hot paths of an agent's loop: parse
/// them against their own subcommand alone (building clap's whole command
/// tree costs about a fifth of a `check`, and its allocations are page
/// faults of every run's start-up). `None` unless the verb is `check` or
/// `run` and the arguments parse cleanly: help, version and every usage
/// error come from the full parser, so output and messages are unchanged.
fn parse_fast<I, T>(args: I) -> Option<Cli>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{Args as _, FromArgMatches as _};
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let sub = match args.get(1)?.to_str()? {
        "check" => check::Args::augment_args(clap::Command::new("check")),
        "run" => run::Args::augment_args(clap::Command::new("run")),
        _ => return None,
    };
    let mut cmd = clap::Command::new("csc").subcommand(sub);
    let mut matches = cmd.try_get_matches_from_mut(args).ok();
    // A one-shot start-up path: the command tree is not needed again, and
    // dropping it costs about a third of what parsing with it does.
    std::mem::forget(cmd);
    // `_mut` moves the values out instead of cloning every match.
    Verb::from_arg_matches_mut(matches.as_mut()?)
        .ok()
        .map(|command| Cli { command })
}

/// Parse arguments and run the verb: its exit code, or why it stopped.
pub fn run() -> Result<u8, Error> {
    // Usage errors exit 1 (clap's default 2 would read as "needs approval").
    let parsed = match parse_fast(std::env::args_os()) {
        Some(cli) => Ok(cli),
        None => Cli::try_parse(),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() && wants_json() {
                let body = serde_json::json!({"error": {
                    "kind": "usage", "message": e.kind().to_string(), "file": null, "line": null,
                    "column": null, "field": null, "hint": "see `csc help`", "problems": [],
                }});
                outln!("{body}");
            }
            return Ok(if e.use_stderr() {
                exit::FAILURE
            } else {
                exit::SUCCESS
            });
        }
    };
    match cli.command {
        Verb::Check(a) => check::run(a),
        Verb::Validate(a) => validate::run(a),
        Verb::Hash(a) => hash::run(a),
        Verb::Conformance(a) => conformance::run(a),
        Verb::Explain(a) => explain::run(a),
        Verb::Completions(a) => completions::run(a),
        Verb::Man => completions::man(),
        Verb::VerifyReceipt(a) => verify_receipt::run(a),
        Verb::Keygen(a) => keygen::run(a),
        Verb::Doctor(a) => sandbox::doctor(a),
        Verb::SandboxProfile(a) => sandbox::profile(a),
        Verb::SandboxInit(a) => sandbox::init(a),
        Verb::SandboxRun(a) => sandbox::run(a),
        Verb::Run(a) => run::run(*a),
        Verb::Mcp(a) => mcp::run(*a),
        Verb::Approve(a) => approve::run(a),
        Verb::Attest(a) => attest::run(a),
        Verb::Ledger(a) => ledger::run(a),
        Verb::State(a) => state::run(a),
    }
}

/// `--json` on the command line of a verb that prints JSON errors
/// (`check`, `explain`, `validate`): then even a usage error is JSON.
fn wants_json() -> bool {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let verb = args.first().and_then(|a| a.to_str());
    matches!(verb, Some("check" | "explain" | "validate")) && args.iter().any(|a| a == "--json")
}

/// Semantics chosen by a verb's `--reference-semantics` flag.
pub fn semantics(reference: bool) -> crate::engine::Semantics {
    if reference {
        crate::engine::Semantics::Reference
    } else {
        crate::engine::Semantics::Csc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `check` and `run` fast path yields exactly what the full parser
    /// yields, and leaves everything else (help, errors, other verbs) to it.
    #[test]
    fn fast_parse_agrees_with_the_full_parser() {
        let same: &[&[&str]] = &[
            &["csc", "check", "c.json", "p.yaml"],
            &["csc", "check", "c.json", "p.yaml", "--json"],
            &["csc", "check", "--reference-semantics", "c.json", "p.yaml"],
            &[
                "csc",
                "check",
                "c.json",
                "p.yaml",
                "--mode",
                "hardened",
                "--allow-env",
                "HOME",
                "--allow-env=CARGO_HOME",
                "--sign",
                "--signing-key",
                "k.pem",
                "--key-id",
                "k",
                "--stdout-cap",
                "9",
                "--output-dir",
                "out",
                "--",
            ],
            &["csc", "check", "--", "-c.json", "p.yaml"],
            &["csc", "run", "c.json", "p.yaml"],
            &[
                "csc",
                "run",
                "c.json",
                "p.yaml",
                "--mode",
                "hardened",
                "--receipt-out",
                "out/r.json",
                "--quiet",
                "--sign",
                "--signing-key",
                "k.pem",
                "--key-id",
                "k",
                "--state-dir",
                "state",
                "--approval",
                "a.json",
                "--approval=b.json",
                "--allow-env",
                "HOME",
                "--output-dir",
                "out",
                "--ledger",
            ],
            &["csc", "run", "--", "-c.json", "p.yaml"],
        ];
        for args in same {
            let fast = parse_fast(args.iter()).unwrap_or_else(|| panic!("{args:?}"));
            let full = Cli::try_parse_from(args.iter()).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{args:?}");
        }
        let full_only: &[&[&str]] = &[
            &["csc", "check", "--help"],
            &["csc", "check", "-h"],
            &["csc", "check", "c.json"],
            &["csc", "check", "c.json", "p.yaml", "--no-such-flag"],
            &["csc", "check", "c.json", "p.yaml", "--stdout-cap", "x"],
            &["csc", "--version"],
            &["csc", "explain", "c.json", "p.yaml"],
            &["csc", "run", "--help"],
            &["csc", "run", "c.json"],
            &["csc", "run", "c.json", "p.yaml", "--no-such-flag"],
            &["csc", "mcp", "--policy", "p.yaml"],
            &["csc"],
        ];
        for args in full_only {
            assert!(parse_fast(args.iter()).is_none(), "{args:?}");
        }
    }
}
