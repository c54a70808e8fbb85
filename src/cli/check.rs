//! `csc check CONTRACT POLICY [--json] [run flags]`, and what it shares
//! with `csc explain`: one argument struct, and the pre-launch checks of
//! `csc run` that depend only on the contract, the policy and the
//! operator's flags (see [`crate::exec::prelaunch`]).

use std::path::PathBuf;

use super::CliResult;
use super::run::{self, OperatorArgs};
use crate::engine::{self, Semantics, ext};
use crate::exec::prelaunch::{self, Refusal};
use crate::protocol::contract::Contract;
use crate::protocol::decision::{Decision, Verdict};
use crate::protocol::load;
use crate::protocol::policy::Policy;

/// Arguments of `csc check` and `csc explain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Contract JSON file.
    pub contract: PathBuf,
    /// Policy file (YAML, or JSON when it ends in .json).
    pub policy: PathBuf,
    /// Apply exactly the CSC v0.1 reference's checks, without csc's
    /// extension checks (RFC 0005) and without `csc run`'s pre-launch
    /// checks; for comparing with the reference.
    #[arg(long)]
    pub reference_semantics: bool,
    /// Print JSON on stdout (errors too, as {"error": {...}}).
    #[arg(long)]
    pub json: bool,
    /// As for `csc run`: the directory where streams would be saved (only
    /// checked, never created).
    #[arg(long, value_name = "DIR", help_heading = "As `csc run` would be run")]
    pub output_dir: Option<PathBuf>,
    /// The operator flags of `csc run`: its pre-launch checks are made
    /// with them (`--allow-env`, `--mode hardened` with `--egress-allow`,
    /// the caps, ...), with the same messages.
    #[command(flatten, next_help_heading = "As `csc run` would be run")]
    pub op: OperatorArgs,
}

/// What `csc run` would refuse before launching anything, given the same
/// operator flags: the egress check (made before the decision) and the
/// static command checks (made after it).
#[derive(Debug, Default)]
pub(crate) struct Prelaunch {
    /// Hardened mode's `network: allowlisted` check.
    pub egress: Option<Refusal>,
    /// Every failing static check, in `run`'s order.
    pub commands: Vec<Refusal>,
}

impl Prelaunch {
    /// Evaluate the pre-launch checks (none under reference semantics).
    pub fn evaluate(
        c: &Contract,
        p: &Policy,
        settings: &run::Settings,
        output_dir: bool,
        semantics: Semantics,
    ) -> Self {
        if semantics == Semantics::Reference {
            return Prelaunch::default();
        }
        let op = prelaunch::Operator {
            env_allow: &settings.env_allow,
            output_dir,
            egress: settings.sandbox.as_ref().map(|s| &s.egress),
        };
        Prelaunch {
            egress: prelaunch::egress(c, &op),
            commands: prelaunch::commands(c, p, &op),
        }
    }

    /// Every refusal (egress first).
    pub fn all(&self) -> impl Iterator<Item = &Refusal> {
        self.egress.iter().chain(&self.commands)
    }

    /// The refusals `csc explain` lists beside `findings`: a scope the
    /// decision already fails (same command, same path) is not repeated.
    pub fn beside<'a>(
        &'a self,
        findings: &'a [engine::Finding],
    ) -> impl Iterator<Item = &'a Refusal> + 'a {
        self.all().filter(move |r| {
            r.ext_code != ext::SCOPE_REFUSED
                || !findings.iter().any(|f| {
                    f.failure.is_some() && f.command_id == r.command_id && f.value == r.value
                })
        })
    }

    /// Turn `decision` into what `csc run` would do: the egress refusal
    /// wins over everything (run makes it first); the first static refusal
    /// turns an `allow` or `needs_approval` into a `deny` (an approval
    /// cannot lift it). The reason is run's message, tagged with its
    /// extension code; the code is the v0.1 code it is reported under.
    pub fn apply(&self, decision: &mut Decision) {
        let first = match (&self.egress, decision.decision) {
            (Some(r), _) => r,
            (None, Verdict::Deny) => return,
            (None, _) => match self.commands.first() {
                Some(r) => r,
                None => return,
            },
        };
        decision.decision = Verdict::Deny;
        decision.reasons = vec![ext::tagged(&first.message, first.ext_code)];
        decision.reason_codes = vec![first.code];
    }
}

/// Load what `check` and `explain` need, in `csc run`'s order: operator
/// flags first (same errors as `run`), then contract and policy.
pub(crate) fn load(
    args: &Args,
) -> Result<
    (
        load::LoadedContract,
        crate::protocol::policy::LoadedPolicy,
        Prelaunch,
    ),
    super::Error,
> {
    let settings = run::settings(&args.op, 0)?;
    let contract = load::load_contract(&args.contract)?;
    let policy = load::load_policy(&args.policy)?;
    let pre = Prelaunch::evaluate(
        &contract.contract,
        &policy.policy,
        &settings,
        args.output_dir.is_some(),
        super::semantics(args.reference_semantics),
    );
    Ok((contract, policy, pre))
}

/// Run `csc check`.
pub fn run(args: Args) -> CliResult {
    let json = args.json;
    json_errors(json, decide(args))
}

/// With `--json`, an error is printed as a JSON object on stdout (and
/// still exits non-zero), so callers that parse JSON always get JSON.
pub(crate) fn json_errors(json: bool, result: CliResult) -> CliResult {
    match result {
        Err(e) if json => {
            eprintln!(
                "csc: error: {}",
                crate::text::escape_control_lines(&e.to_string())
            );
            outln!("{}", serde_json::to_string_pretty(&e.to_json())?);
            Ok(e.exit_code())
        }
        other => other,
    }
}

fn decide(args: Args) -> CliResult {
    let (contract, policy, pre) = load(&args)?;
    let mut decision = engine::decide(
        &contract.contract,
        &policy.policy,
        super::semantics(args.reference_semantics),
    );
    pre.apply(&mut decision);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&decision)?);
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
        outln!("{}", crate::text::escape_control(&line));
    }
    Ok(super::verdict_exit(decision.decision))
}
