//! The policy engine: `evaluate(contract, policy) -> Decision`, pure.
//!
//! All checks live in one walk ([`walk`]) that reports each check's outcome
//! to a sink. [`evaluate`] stops at the first failure, exactly like the
//! reference; `csc explain` keeps walking to show every failure.

pub mod classify;
pub mod expected_outputs;
pub mod ext;
pub mod paths;

pub use ext::Semantics;

use std::ops::ControlFlow;

use crate::protocol::contract::{ApprovalMode, Command, Contract};
use crate::protocol::decision::{ClassifiedEffect, Decision, ReasonCode, Verdict};
use crate::protocol::policy::Policy;

/// Seconds a decision stays valid.
pub const DECISION_TTL_SECS: i64 = 300;

/// Which rule a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The contract's `risk_class` against the policy's allowed classes.
    RiskClass,
    /// The program (`argv[0]`) against `allowed_commands`.
    Command,
    /// The argv against the policy's allowed argv prefixes.
    ArgvPrefix,
    /// The declared `effect_type` against the policy.
    EffectType,
    /// The approval a classified effect requires.
    ClassifiedEffectApproval,
    /// The command's timeout against the policy's maximum.
    Timeout,
    /// The declared network mode against the policy.
    Network,
    /// The declared secret references against the policy.
    SecretRefs,
    /// The working directory against the policy's prefixes.
    Cwd,
    /// A declared read path against `allowed_read_prefixes`.
    ReadPath,
    /// A writing effect declared no write paths.
    WritePathsEmpty,
    /// A declared write path against the policy's write prefixes.
    WritePath,
    /// The contract's approval mode against what the policy requires.
    ApprovalMode,
    /// Extension: the cwd lies under `allowed_read_prefixes`.
    CwdReadable,
    /// Extension: an expected output lies inside a write scope.
    ExpectedOutput,
}

impl Check {
    /// Short stable name used in `explain` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::RiskClass => "risk_class",
            Check::Command => "allow_commands",
            Check::ArgvPrefix => "deny_argv_prefixes",
            Check::EffectType => "allowed_effect_types",
            Check::ClassifiedEffectApproval => "manual_approval_for_classified_effect_types",
            Check::Timeout => "max_timeout_sec",
            Check::Network => "network",
            Check::SecretRefs => "allow_secret_refs",
            Check::Cwd => "allowed_cwd_prefixes",
            Check::ReadPath => "allowed_read_prefixes",
            Check::WritePathsEmpty => "require_write_paths_empty",
            Check::WritePath => "allowed_write_prefixes",
            Check::ApprovalMode => "approval_mode",
            Check::CwdReadable => "cwd_within_read_prefixes",
            Check::ExpectedOutput => "expected_outputs_within_write_paths",
        }
    }
}

/// A failed check: the verdict it forces, its code and the reason text.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The verdict this failure forces (`deny` or `needs_approval`).
    pub verdict: Verdict,
    /// The v0.1 reason code.
    pub code: ReasonCode,
    /// Human-readable reason, as recorded in the decision.
    pub reason: String,
}

/// One evaluated check.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The command the check is about (`None` for contract-level checks).
    pub command_id: Option<String>,
    /// Which rule was checked.
    pub check: Check,
    /// The contract value that was checked, for display.
    pub value: String,
    /// `None` when the check passed.
    pub failure: Option<Failure>,
}

/// Whether the walk continues after a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Evaluate the remaining checks.
    Continue,
    /// Stop at this finding.
    Stop,
}

/// Everything one walk produced besides the findings.
#[derive(Debug, Clone, Default)]
pub struct WalkSummary {
    /// Effects the policy classified (for the decision's `classified_effects`).
    pub classified_effects: Vec<ClassifiedEffect>,
}

fn python_list_repr(items: &[String]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    format!("[{}]", inner.join(", "))
}

/// Walk every check in the reference's order, reporting each to `sink`.
pub fn walk(
    contract: &Contract,
    policy: &Policy,
    sink: &mut dyn FnMut(Finding) -> Flow,
) -> WalkSummary {
    let mut summary = WalkSummary::default();
    let mut walker = Walker { policy, sink };
    // Stopping early is the sink's choice; the summary so far is the result.
    let _ = walker.contract(contract, &mut summary);
    summary
}

/// The v0.1 checks in the reference's order, one step per group; each
/// step breaks as soon as the sink says [`Flow::Stop`].
struct Walker<'a> {
    policy: &'a Policy,
    sink: &'a mut dyn FnMut(Finding) -> Flow,
}

fn deny(code: ReasonCode, reason: String) -> Option<Failure> {
    Some(Failure {
        verdict: Verdict::Deny,
        code,
        reason,
    })
}

impl Walker<'_> {
    fn report(
        &mut self,
        command_id: Option<&String>,
        check: Check,
        value: String,
        failure: Option<Failure>,
    ) -> ControlFlow<()> {
        let finding = Finding {
            command_id: command_id.cloned(),
            check,
            value,
            failure,
        };
        match (self.sink)(finding) {
            Flow::Continue => ControlFlow::Continue(()),
            Flow::Stop => ControlFlow::Break(()),
        }
    }

    fn contract(&mut self, contract: &Contract, summary: &mut WalkSummary) -> ControlFlow<()> {
        let risk = contract.risk_class;
        let risk_fail = (!self.policy.allowed_risk_classes.contains(&risk))
            .then(|| format!("risk class not allowed: {}", risk.as_str()));
        self.report(
            None,
            Check::RiskClass,
            risk.as_str().to_owned(),
            risk_fail.and_then(|r| deny(ReasonCode::RiskClassNotAllowed, r)),
        )?;
        for command in &contract.commands {
            self.argv(command)?;
            let classified = classify::classify(command, self.policy);
            summary.classified_effects.push(ClassifiedEffect {
                command_id: command.id.clone(),
                effect_type: classified.clone(),
            });
            self.effects(command, &classified)?;
            self.scopes(command)?;
        }
        self.approval_mode(contract.approval_mode)
    }

    /// `Command` and `ArgvPrefix`, per argv vector.
    fn argv(&mut self, command: &Command) -> ControlFlow<()> {
        let id = Some(&command.id);
        let vectors = command.argv_vectors();
        // Loaders never let an argv-less command through; should one reach
        // the engine anyway, there is nothing the policy could have allowed.
        if vectors.is_empty() || vectors.iter().any(|argv| argv.is_empty()) {
            self.report(
                id,
                Check::Command,
                String::new(),
                deny(
                    ReasonCode::CommandNotAllowed,
                    "command has no argv to check".to_owned(),
                ),
            )?;
        }
        for argv in vectors {
            let exe = argv.first().cloned().unwrap_or_default();
            let fail = (!self.policy.allow_commands.contains(&exe))
                .then(|| format!("command not allowed: {exe}"));
            self.report(
                id,
                Check::Command,
                exe.clone(),
                fail.and_then(|r| deny(ReasonCode::CommandNotAllowed, r)),
            )?;
            let denied = self
                .policy
                .deny_argv_prefixes
                .iter()
                .any(|prefix| argv.len() >= prefix.len() && argv[..prefix.len()] == prefix[..]);
            let repr = python_list_repr(argv);
            let fail = denied.then(|| format!("argv prefix denied: {repr}"));
            self.report(
                id,
                Check::ArgvPrefix,
                repr,
                fail.and_then(|r| deny(ReasonCode::ArgvPrefixDenied, r)),
            )?;
        }
        ControlFlow::Continue(())
    }

    /// Effect type, classified-effect approval, timeout, network, secrets.
    fn effects(&mut self, command: &Command, classified: &str) -> ControlFlow<()> {
        let id = Some(&command.id);
        let policy = self.policy;
        let proposed = command.proposed_effect_type;
        let fail = (!policy.allowed_effect_types.contains(&proposed))
            .then(|| format!("proposed effect type not allowed: {}", proposed.as_str()));
        self.report(
            id,
            Check::EffectType,
            proposed.as_str().to_owned(),
            fail.and_then(|r| deny(ReasonCode::EffectTypeNotAllowed, r)),
        )?;

        let needs = policy
            .manual_approval_for_classified_effect_types
            .iter()
            .any(|t| t == classified);
        self.report(
            id,
            Check::ClassifiedEffectApproval,
            classified.to_owned(),
            needs.then(|| Failure {
                verdict: Verdict::NeedsApproval,
                code: ReasonCode::ApprovalRequired,
                reason: format!("classified effect type requires approval: {classified}"),
            }),
        )?;

        let fail = (command.timeout_sec > policy.max_timeout_sec)
            .then(|| format!("timeout too large: {}", command.timeout_sec));
        self.report(
            id,
            Check::Timeout,
            command.timeout_sec.to_string(),
            fail.and_then(|r| deny(ReasonCode::TimeoutExceedsPolicy, r)),
        )?;

        let fail = (command.network.rank() > policy.network.rank()).then(|| {
            format!(
                "network mode exceeds policy maximum: {}",
                command.network.as_str()
            )
        });
        self.report(
            id,
            Check::Network,
            command.network.as_str().to_owned(),
            fail.and_then(|r| deny(ReasonCode::NetworkExceedsPolicy, r)),
        )?;

        let fail = (!command.secret_refs.is_empty() && !policy.allow_secret_refs)
            .then(|| "secret refs not allowed".to_owned());
        self.report(
            id,
            Check::SecretRefs,
            command.secret_refs.join(","),
            fail.and_then(|r| deny(ReasonCode::SecretRefNotAllowed, r)),
        )
    }

    /// Cwd, read paths, the write-paths-empty rule, write paths.
    fn scopes(&mut self, command: &Command) -> ControlFlow<()> {
        let id = Some(&command.id);
        let policy = self.policy;
        self.report(
            id,
            Check::Cwd,
            command.cwd.clone(),
            path_failure(
                &command.cwd,
                &policy.allowed_cwd_prefixes,
                ReasonCode::CwdNotAllowed,
                "cwd not allowed",
            ),
        )?;
        for path in &command.read_paths {
            self.report(
                id,
                Check::ReadPath,
                path.clone(),
                path_failure(
                    path,
                    &policy.allowed_read_prefixes,
                    ReasonCode::ReadScopeDenied,
                    "read path not allowed",
                ),
            )?;
        }
        let fail = (policy.require_write_paths_empty && !command.write_paths.is_empty())
            .then(|| "writes not allowed in this profile".to_owned());
        self.report(
            id,
            Check::WritePathsEmpty,
            command.write_paths.len().to_string(),
            fail.and_then(|r| deny(ReasonCode::WritePathsNotEmpty, r)),
        )?;
        for path in &command.write_paths {
            self.report(
                id,
                Check::WritePath,
                path.clone(),
                path_failure(
                    path,
                    &policy.allowed_write_prefixes,
                    ReasonCode::WriteScopeDenied,
                    "write path not allowed",
                ),
            )?;
        }
        ControlFlow::Continue(())
    }

    fn approval_mode(&mut self, mode: ApprovalMode) -> ControlFlow<()> {
        let needs = matches!(
            mode,
            ApprovalMode::HumanRequired | ApprovalMode::DualControlRequired
        );
        self.report(
            None,
            Check::ApprovalMode,
            mode.as_str().to_owned(),
            needs.then(|| Failure {
                verdict: Verdict::NeedsApproval,
                code: ReasonCode::ApprovalRequired,
                reason: format!(
                    "contract approval mode requires approval: {}",
                    mode.as_str()
                ),
            }),
        )
    }
}

fn path_failure(path: &str, prefixes: &[String], code: ReasonCode, what: &str) -> Option<Failure> {
    match paths::within_prefixes(path, prefixes) {
        Ok(true) => None,
        Ok(false) => Some(Failure {
            verdict: Verdict::Deny,
            code,
            reason: format!("{what}: {path}"),
        }),
        Err(e) => Some(Failure {
            verdict: Verdict::Deny,
            code: ReasonCode::PathNotAbsolute,
            reason: e.to_string(),
        }),
    }
}

/// Evaluate a contract against a policy: the first failing check decides.
/// `contract_sha256` and `classified_effects` are always filled in.
pub fn evaluate(contract: &Contract, policy: &Policy) -> Decision {
    let mut first: Option<Failure> = None;
    let summary = walk(contract, policy, &mut |finding| match finding.failure {
        Some(f) => {
            first = Some(f);
            Flow::Stop
        }
        None => Flow::Continue,
    });
    let (verdict, code, reason) = match first {
        Some(f) => (f.verdict, f.code, f.reason),
        None => (
            Verdict::Allow,
            ReasonCode::Allow,
            "contract satisfies v0.1 policy checks".to_owned(),
        ),
    };
    Decision {
        contract_id: contract.contract_id.clone(),
        decision: verdict,
        policy_profile: policy.name.clone(),
        reasons: vec![reason],
        reason_codes: vec![code],
        expires_at: crate::time::rfc3339_in(DECISION_TTL_SECS),
        contract_sha256: Some(contract.sha256()),
        classified_effects: Some(summary.classified_effects),
    }
}

/// Decide under `semantics`: the v0.1 decision, and for
/// [`Semantics::Csc`] the first failing extension check where v0.1 did
/// not deny (extensions never loosen a decision nor change a v0.1 denial).
pub fn decide(contract: &Contract, policy: &Policy, semantics: Semantics) -> Decision {
    let mut decision = evaluate(contract, policy);
    if semantics == Semantics::Reference || decision.decision == Verdict::Deny {
        return decision;
    }
    let mut first: Option<Failure> = None;
    ext::walk(contract, policy, &mut |finding| match finding.failure {
        Some(f) => {
            first = Some(f);
            Flow::Stop
        }
        None => Flow::Continue,
    });
    if let Some(f) = first {
        decision.decision = f.verdict;
        decision.reasons = vec![f.reason];
        decision.reason_codes = vec![f.code];
    }
    decision
}

/// Evaluate every check without stopping: the input of `csc explain`.
/// Under [`Semantics::Csc`] the extension checks follow the v0.1 ones.
pub fn explain(
    contract: &Contract,
    policy: &Policy,
    semantics: Semantics,
) -> (Vec<Finding>, WalkSummary) {
    let mut findings = Vec::new();
    let summary = walk(contract, policy, &mut |finding| {
        findings.push(finding);
        Flow::Continue
    });
    if semantics == Semantics::Csc {
        ext::walk(contract, policy, &mut |finding| {
            findings.push(finding);
            Flow::Continue
        });
    }
    (findings, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (Contract, Policy) {
        let contract: Contract =
            serde_json::from_str(include_str!("../../examples/contracts/list-repo.json")).unwrap();
        let policy: Policy = serde_json::from_value(serde_json::json!({
            "name": "p", "allow_commands": ["ls", ""], "allowed_effect_types": ["observe"],
            "allowed_risk_classes": ["low"], "allowed_cwd_prefixes": ["/"],
            "allowed_read_prefixes": ["/"]
        }))
        .unwrap();
        (contract, policy)
    }

    #[test]
    fn baseline_is_allowed() {
        let (contract, policy) = fixture();
        assert_eq!(evaluate(&contract, &policy).decision, Verdict::Allow);
    }

    #[test]
    fn command_without_argv_is_denied() {
        let (mut contract, policy) = fixture();
        contract.commands[0].exec = None;
        let d = evaluate(&contract, &policy);
        assert_eq!(d.decision, Verdict::Deny);
        assert_eq!(d.reason_codes, vec![ReasonCode::CommandNotAllowed]);
    }

    #[test]
    fn empty_argv_is_denied_even_if_the_empty_command_is_listed() {
        let (mut contract, policy) = fixture();
        if let Some(exec) = contract.commands[0].exec.as_mut() {
            exec.argv.clear();
        }
        let d = evaluate(&contract, &policy);
        assert_eq!(d.decision, Verdict::Deny);
        assert_eq!(d.reason_codes, vec![ReasonCode::CommandNotAllowed]);
    }

    #[test]
    fn cwd_outside_read_prefixes_is_denied_only_by_csc_semantics() {
        let (contract, mut policy) = fixture();
        policy.allowed_read_prefixes = vec!["/nowhere".into()];
        policy.allowed_cwd_prefixes = vec![contract.commands[0].cwd.clone()];
        let mut c = contract.clone();
        c.commands[0].read_paths.clear();
        assert_eq!(
            decide(&c, &policy, Semantics::Reference).decision,
            Verdict::Allow
        );
        let d = decide(&c, &policy, Semantics::Csc);
        assert_eq!(d.decision, Verdict::Deny);
        assert_eq!(d.reason_codes, vec![ReasonCode::ReadScopeDenied]);
        assert_eq!(
            ext::ext_code_of(&d.reasons[0]),
            Some(ext::CWD_OUTSIDE_READ_PREFIXES)
        );
        // A v0.1 denial keeps its own code.
        policy.allowed_risk_classes.clear();
        let d = decide(&c, &policy, Semantics::Csc);
        assert_eq!(d.reason_codes, vec![ReasonCode::RiskClassNotAllowed]);
    }
}
