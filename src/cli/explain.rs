//! `csc explain CONTRACT POLICY [--json]`: every check for every command,
//! not just the first failure. Same engine walk as `check`.

use serde_json::json;

use super::CliResult;
use super::check::Prelaunch;
use crate::engine::{self, Check, Finding, ext};
use crate::exec::prelaunch::Refusal;
use crate::protocol::decision::Verdict;

/// Arguments of `csc explain`: those of `csc check`.
pub type Args = super::check::Args;

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
    let json = args.json;
    super::check::json_errors(json, explain(args))
}

fn explain(args: Args) -> CliResult {
    let (contract, policy, pre) = super::check::load(&args)?;
    let semantics = super::semantics(args.reference_semantics);
    let mut decision = engine::decide(&contract.contract, &policy.policy, semantics);
    pre.apply(&mut decision);
    let (findings, _) = engine::explain(&contract.contract, &policy.policy, semantics);
    let notes = runtime_notes(&contract.contract, &policy.policy);
    if args.json {
        let out = json_report(&decision, &findings, &pre, &notes);
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&decision, &findings, &pre, &notes)?;
    }
    Ok(super::verdict_exit(decision.decision))
}

/// Column widths of the text table: command ids (at least 7), checks.
type Widths = (usize, usize);

/// One row of the text table (every cell escaped, the value cut to 28).
fn print_row(
    widths: Widths,
    command: Option<&str>,
    check: &str,
    result: &str,
    value: &str,
    fix: &str,
) -> Result<(), super::Error> {
    let esc = |s: &str| crate::text::escape_control(s).into_owned();
    let mut value = esc(value);
    if value.chars().count() > 28 {
        value = value.chars().take(27).collect::<String>() + "…";
    }
    outln!(
        "{:<w0$}  {:<w1$}  {:<14}  {:<28}  {}",
        esc(command.unwrap_or("-")),
        check,
        result,
        value,
        esc(fix),
        w0 = widths.0,
        w1 = widths.1
    );
    Ok(())
}

/// The human-readable report: the decision, every check with what to
/// change, run's pre-launch refusals, and host notes.
fn print_table(
    decision: &crate::protocol::decision::Decision,
    findings: &[engine::Finding],
    pre: &super::check::Prelaunch,
    notes: &[(String, String)],
) -> Result<(), super::Error> {
    let codes: Vec<&str> = decision.reason_codes.iter().map(|c| c.as_str()).collect();
    outln!(
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
    outln!(
        "{:<w0$}  {:<w1$}  {:<14}  {:<28}  WHAT TO CHANGE",
        "COMMAND",
        "CHECK",
        "RESULT",
        "VALUE",
        w0 = widths.0,
        w1 = widths.1
    );
    for f in findings {
        let fix = match &f.failure {
            Some(fail) => match ext::ext_code_of(&fail.reason) {
                Some(ext) => format!("{} ({ext}) — {}", fail.code.as_str(), remedy(f)),
                None => format!("{} — {}", fail.code.as_str(), remedy(f)),
            },
            None => String::new(),
        };
        let command = f.command_id.as_deref();
        print_row(
            widths,
            command,
            f.check.as_str(),
            result_label(f),
            &f.value,
            &fix,
        )?;
    }
    let pre_rows: Vec<_> = pre.beside(findings).collect();
    for r in &pre_rows {
        let fix = format!(
            "{} ({}) — {}: {}",
            r.code.as_str(),
            r.ext_code,
            r.message,
            prelaunch_remedy(r)
        );
        print_row(
            widths,
            r.command_id.as_deref(),
            r.check,
            "FAIL (run)",
            &r.value,
            &fix,
        )?;
    }
    let failed = findings.iter().filter(|f| f.failure.is_some()).count() + pre_rows.len();
    outln!(
        "{} checks, {} failing",
        findings.len() + pre_rows.len(),
        failed
    );
    for (id, note) in notes {
        outln!("on this host, csc run: command {id:?}: {note}");
    }
    Ok(())
}

/// Every check as `csc explain --json` prints it (also `csc mcp`'s
/// `explain_contract`).
pub(crate) fn explain_json(
    contract: &crate::protocol::contract::Contract,
    policy: &crate::protocol::policy::Policy,
    semantics: engine::Semantics,
    pre: &Prelaunch,
) -> serde_json::Value {
    let mut decision = engine::decide(contract, policy, semantics);
    pre.apply(&mut decision);
    let (findings, _) = engine::explain(contract, policy, semantics);
    let notes = runtime_notes(contract, policy);
    json_report(&decision, &findings, pre, &notes)
}

/// What to change so that `csc run`'s pre-launch check passes.
fn prelaunch_remedy(r: &Refusal) -> String {
    let v = &r.value;
    match r.ext_code {
        ext::ENV_NAME_REFUSED => format!(
            "drop `{v}` from env_allow, or let the operator pass it with `csc run --allow-env {v}` (sensitive names only when named exactly; loader hooks never)"
        ),
        ext::SCOPE_REFUSED => format!(
            "declare `{v}` with a literal absolute prefix before any glob, without `..`, under the policy's prefixes"
        ),
        ext::EGRESS_UNENFORCEABLE => "pass --egress-allow PATTERN (and --output-dir DIR for the connection log), or declare network: deny".into(),
        _ => "give every command a unique, non-empty id usable as a file name, and a non-empty argv".into(),
    }
}

fn json_report(
    decision: &crate::protocol::decision::Decision,
    findings: &[Finding],
    pre: &Prelaunch,
    notes: &[(String, String)],
) -> serde_json::Value {
    let pre_rows = pre.beside(findings).map(|r| {
        json!({
            "command_id": r.command_id,
            "check": r.check,
            "result": "FAIL",
            "value": r.value,
            "reason_code": r.code.as_str(),
            "extension_code": r.ext_code,
            "reason": ext::tagged(&r.message, r.ext_code),
            "remedy": prelaunch_remedy(r),
            "stage": "prelaunch",
        })
    });
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
                "stage": "decision",
            })
        })
        .chain(pre_rows)
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
