//! `csc explain CONTRACT POLICY [--json]`: every check for every command,
//! not just the first failure. Same engine walk as `check`.

use serde_json::json;
use std::path::PathBuf;

use super::CliResult;
use crate::engine::{self, Check, Finding, ext};
use crate::protocol::decision::Verdict;
use crate::protocol::load;

/// Arguments of `csc explain`.
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
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What to change to make a failed check pass (contract side / policy side).
fn remedy(f: &Finding) -> String {
    let v = &f.value;
    match f.check {
        Check::RiskClass => {
            format!("lower the contract's risk_class, or add `{v}` to allowed_risk_classes")
        }
        Check::Command => format!("use an allowed executable, or add `{v}` to allow_commands"),
        Check::ArgvPrefix => {
            "change the argv, or remove the matching deny_argv_prefixes entry".into()
        }
        Check::EffectType => {
            format!("propose an allowed effect type, or add `{v}` to allowed_effect_types")
        }
        Check::ClassifiedEffectApproval => format!(
            "attach an approval artifact (csc run --approval), or remove `{v}` from manual_approval_for_classified_effect_types"
        ),
        Check::Timeout => {
            format!("lower timeout_sec ({v}) to at most the policy's max_timeout_sec")
        }
        Check::Network => {
            format!("declare a lower network mode, or raise the policy's network to `{v}`")
        }
        Check::SecretRefs => "drop secret_refs, or set allow_secret_refs: true".into(),
        Check::Cwd => format!(
            "run from a directory under allowed_cwd_prefixes, or add a prefix covering `{v}`"
        ),
        Check::ReadPath => {
            format!("narrow the read path, or add a prefix covering `{v}` to allowed_read_prefixes")
        }
        Check::WritePathsEmpty => "remove write_paths (this profile is read-only)".into(),
        Check::WritePath => {
            format!("write under allowed_write_prefixes, or add a prefix covering `{v}`")
        }
        Check::ApprovalMode => {
            "attach an approval artifact (csc run --approval), or use approval_mode policy_only"
                .into()
        }
        Check::ExpectedOutput => {
            format!("declare a write scope covering `{v}`, or drop it from expected_outputs")
        }
        Check::CwdReadable => format!(
            "run from a directory under allowed_read_prefixes (the command can read its cwd), or add a prefix covering `{v}`"
        ),
    }
}

fn result_label(f: &Finding) -> &'static str {
    match &f.failure {
        None => "pass",
        Some(fail) if fail.verdict == Verdict::NeedsApproval => "needs_approval",
        Some(_) => "FAIL",
    }
}

/// Run `csc explain`; the exit code is the decision's, as for `check`.
pub fn run(args: Args) -> CliResult {
    let contract = load::load_contract(&args.contract)?;
    let policy = load::load_policy(&args.policy)?;
    let semantics = super::semantics(args.reference_semantics);
    let decision = engine::decide(&contract.contract, &policy.policy, semantics);
    let (findings, _) = engine::explain(&contract.contract, &policy.policy, semantics);
    let notes = runtime_notes(&contract.contract, &policy.policy);

    if args.json {
        let out = json_report(&decision, &findings, &notes);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let codes: Vec<&str> = decision.reason_codes.iter().map(|c| c.as_str()).collect();
        println!(
            "decision: {} [{}] (v0.1 reports only the first failure; all checks below)",
            decision.decision.as_str(),
            codes.join(", ")
        );
        let widths = (
            findings
                .iter()
                .map(|f| {
                    crate::text::escape_control(f.command_id.as_deref().unwrap_or("-"))
                        .chars()
                        .count()
                })
                .max()
                .unwrap_or(1)
                .max(7),
            44usize,
        );
        println!(
            "{:<w0$}  {:<w1$}  {:<14}  {:<28}  WHAT TO CHANGE",
            "COMMAND",
            "CHECK",
            "RESULT",
            "VALUE",
            w0 = widths.0,
            w1 = widths.1
        );
        let esc = |s: &str| crate::text::escape_control(s).into_owned();
        for f in &findings {
            let mut value = esc(&f.value);
            if value.chars().count() > 28 {
                value = value.chars().take(27).collect::<String>() + "…";
            }
            let fix = match &f.failure {
                Some(fail) => esc(&match ext::ext_code_of(&fail.reason) {
                    Some(ext) => format!("{} ({ext}) — {}", fail.code.as_str(), remedy(f)),
                    None => format!("{} — {}", fail.code.as_str(), remedy(f)),
                }),
                None => String::new(),
            };
            println!(
                "{:<w0$}  {:<w1$}  {:<14}  {:<28}  {}",
                esc(f.command_id.as_deref().unwrap_or("-")),
                f.check.as_str(),
                result_label(f),
                value,
                fix,
                w0 = widths.0,
                w1 = widths.1
            );
        }
        let failed = findings.iter().filter(|f| f.failure.is_some()).count();
        println!("{} checks, {} failing", findings.len(), failed);
        for (id, note) in &notes {
            println!("on this host, csc run: command {id:?}: {note}");
        }
    }
    Ok(super::verdict_exit(decision.decision))
}

/// Every check as `csc explain --json` prints it (also `csc mcp`'s
/// `explain_contract`).
pub(crate) fn explain_json(
    contract: &crate::protocol::contract::Contract,
    policy: &crate::protocol::policy::Policy,
    semantics: engine::Semantics,
) -> serde_json::Value {
    let decision = engine::decide(contract, policy, semantics);
    let (findings, _) = engine::explain(contract, policy, semantics);
    let notes = runtime_notes(contract, policy);
    json_report(&decision, &findings, &notes)
}

fn json_report(
    decision: &crate::protocol::decision::Decision,
    findings: &[Finding],
    notes: &[(String, String)],
) -> serde_json::Value {
    let rows: Vec<_> = findings
        .iter()
        .map(|f| {
            json!({
                "command_id": f.command_id,
                "check": f.check.as_str(),
                "result": result_label(f),
                "value": f.value,
                "reason_code": f.failure.as_ref().map(|x| x.code.as_str()),
                "extension_code": f.failure.as_ref().and_then(|x| ext::ext_code_of(&x.reason)),
                "reason": f.failure.as_ref().map(|x| x.reason.clone()),
                "remedy": f.failure.as_ref().map(|_| remedy(f)),
            })
        })
        .collect();
    let notes: Vec<_> = notes
        .iter()
        .map(|(id, note)| json!({"command_id": id, "note": note}))
        .collect();
    json!({"decision": decision, "findings": rows, "runtime_notes": notes})
}

/// What `csc run` would do on this host about declared scopes that do not
/// exist now or resolve out of policy (the same decision and message as
/// `run`, which makes it again right before each launch).
fn runtime_notes(
    c: &crate::protocol::contract::Contract,
    p: &crate::protocol::policy::Policy,
) -> Vec<(String, String)> {
    use crate::exec::scopes;
    let mut notes = Vec::new();
    for cmd in &c.commands {
        match scopes::command_scopes(
            &cmd.read_paths,
            &cmd.write_paths,
            &p.allowed_read_prefixes,
            &p.allowed_write_prefixes,
        ) {
            Ok(s) => notes.extend(
                s.missing
                    .iter()
                    .map(|(d, field, m)| (cmd.id.clone(), m.describe(d, field))),
            ),
            Err(e) => notes.push((cmd.id.clone(), e)),
        }
    }
    notes
}
