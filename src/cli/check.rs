//! `csc check CONTRACT POLICY [--json]`.

use std::path::PathBuf;

use super::CliResult;
use crate::engine;
use crate::protocol::decision::Verdict;
use crate::protocol::load;

/// Arguments of `csc check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Contract JSON file.
    pub contract: PathBuf,
    /// Policy file (YAML, or JSON when it ends in .json).
    pub policy: PathBuf,
    /// Apply exactly the CSC v0.1 reference's checks, without csc's
    /// extension checks (RFC 0005); for comparing with the reference.
    #[arg(long)]
    pub reference_semantics: bool,
    /// Print the full PolicyDecision as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Run `csc check`.
pub fn run(args: Args) -> CliResult {
    let contract = load::load_contract(&args.contract)?;
    let policy = load::load_policy(&args.policy)?;
    let decision = engine::decide(
        &contract.contract,
        &policy.policy,
        super::semantics(args.reference_semantics),
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        let label = match decision.decision {
            Verdict::Allow => "ALLOW",
            Verdict::Deny => "DENY",
            Verdict::NeedsApproval => "NEEDS APPROVAL",
        };
        let codes: Vec<&str> = decision.reason_codes.iter().map(|c| c.as_str()).collect();
        let line = format!(
            "{label} — {} [{}]",
            decision.reasons.join("; "),
            codes.join(", ")
        );
        println!("{}", crate::text::escape_control(&line));
    }
    Ok(super::verdict_exit(decision.decision))
}
