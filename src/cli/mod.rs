//! The command-line front end: clap definitions, dispatch, and the one place
//! where errors become exit codes.

mod check;
mod conformance;
mod hash;
mod run;
mod validate;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for success / allow.
pub const EXIT_OK: u8 = 0;
/// Exit code for deny and for every error.
pub const EXIT_DENY: u8 = 1;
/// Exit code for needs-approval.
pub const EXIT_NEEDS_APPROVAL: u8 = 2;

/// A failure reported on stderr; always exit 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// Result of one verb: the exit code to use.
pub type CliResult = Result<u8, CliError>;

const AFTER_HELP: &str = "\
Examples:
  csc check examples/contracts/list-repo.json policies/readonly-dev.yaml
  csc check contract.json policy.yaml --json
  csc validate contract examples/contracts/*.json
  csc hash contract contract.json
  csc conformance conformance/

Exit codes: 0 allow/success, 2 needs approval, 1 deny or any error.";

/// csc — bounded, policy-gated command execution with signed receipts.
#[derive(Debug, Parser)]
#[command(name = "csc", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
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
    /// Decide, execute (local mode) and write a receipt for every outcome.
    #[command(
        after_help = "Examples:\n  csc run contract.json policy.yaml\n  csc run contract.json policy.yaml --receipt-out out/r.json --sign --signing-key key.pem --key-id ops-1\n  csc run contract.json policy.yaml --approval approval.json --state-dir /var/lib/csc\n  csc run contract.json policy.yaml --quiet --output-dir out/streams\n\nExit codes: 0 success, 2 blocked for a missing approval, 1 otherwise."
    )]
    Run(Box<run::Args>),
}

/// Parse arguments, run the verb, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Verb::Check(a) => check::run(a),
        Verb::Validate(a) => validate::run(a),
        Verb::Hash(a) => hash::run(a),
        Verb::Conformance(a) => conformance::run(a),
        Verb::Run(a) => run::run(*a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError(message)) => {
            eprintln!("csc: error: {message}");
            ExitCode::from(EXIT_DENY)
        }
    }
}
