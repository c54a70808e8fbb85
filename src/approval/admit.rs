//! The approval check of a run, shared by `csc run` and `csc mcp`
//! (`run_contract`): given the policy's verdict and the approvals a run
//! brought, decide whether it may go ahead and on which approvals.
//!
//! Order (every step fails closed): a `needs_approval` verdict without any
//! approval is refused; every approval is loaded (file or bytes, strict,
//! size-capped); with an approver keyring signatures are verified, then the
//! v0.1 checks (contract hash, window, expiry), then the quorum
//! ([`signed::gate`]). Single-use consumption happens later, right before
//! the first command starts ([`unconsumed`] checks it up front).

use jiff::Timestamp;
use std::path::PathBuf;

use super::signed::{self, Accepted, LoadedApproval, Required};
use crate::evidence::keyring::Keyring;
use crate::protocol::contract::Contract;
use crate::protocol::decision::{Decision, Verdict};

/// Where an approval comes from: a file (`csc run --approval`) or the
/// bytes of an approval object a client sent (`csc mcp`).
#[derive(Debug, Clone)]
pub enum Source {
    /// An approval file.
    File(PathBuf),
    /// An approval document; `shown` names it in messages.
    Bytes {
        /// The JSON bytes.
        bytes: Vec<u8>,
        /// How messages name it.
        shown: String,
    },
}

impl Source {
    /// Read and parse the approval (a v0.1 artifact or a DSSE envelope).
    pub fn load(&self) -> Result<LoadedApproval, String> {
        match self {
            Source::File(path) => signed::load_file(path),
            Source::Bytes { bytes, shown } => signed::from_bytes(bytes, shown),
        }
    }

    /// The file, when the approval is one.
    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            Source::File(path) => Some(path),
            Source::Bytes { .. } => None,
        }
    }
}

/// The operator's approval settings (`--approver-keyring`,
/// `--approvals-required`); fixed before anything runs.
#[derive(Debug, Default)]
pub struct Operator {
    /// Trusted approver keys: every approval must be DSSE-signed by one.
    pub keyring: Option<Keyring>,
    /// Approvals a needs-approval contract requires.
    pub required: Required,
}

/// What the run may go ahead on.
#[derive(Debug)]
pub struct Admitted {
    /// The approvals that passed every check (empty when none was needed
    /// and none was given).
    pub accepted: Vec<Accepted>,
    /// Approvals the run needed (0 unless the verdict was
    /// `needs_approval`).
    pub required: u32,
    /// The `single_execution` approval ids the run must consume.
    pub single_use: Vec<String>,
}

/// Why the approvals do not let the run go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The policy requires an approval and none was brought.
    Missing(String),
    /// An approval is invalid, unverifiable, or the quorum is not met.
    Rejected(String),
    /// An approval expired (the receipt status is `expired`).
    Expired(String),
}

impl Refusal {
    /// The message for the receipt's `error`.
    pub fn message(&self) -> &str {
        match self {
            Refusal::Missing(m) | Refusal::Rejected(m) | Refusal::Expired(m) => m,
        }
    }
}

/// The approval check of one run against the policy's `decision` (a
/// `deny` never gets here); `warn` receives notes for the operator
/// (unverified signatures).
pub fn admit(
    decision: &Decision,
    contract: &Contract,
    contract_sha256: &str,
    sources: &[Source],
    operator: &Operator,
    now: Timestamp,
    warn: &mut dyn FnMut(&str),
) -> Result<Admitted, Refusal> {
    let verdict = decision.decision;
    if verdict == Verdict::NeedsApproval && sources.is_empty() {
        return Err(Refusal::Missing(format!(
            "approval is required but none was provided: {}",
            decision.reasons.join("; ")
        )));
    }
    if operator.keyring.is_none() && sources.len() > 1 {
        return Err(Refusal::Rejected(format!(
            "{} approvals given, but several approvals need --approver-keyring (a quorum of unsigned approvals proves nothing)",
            sources.len()
        )));
    }
    if sources.len() > signed::MAX_APPROVALS {
        return Err(Refusal::Rejected(format!(
            "{} approvals given (max {})",
            sources.len(),
            signed::MAX_APPROVALS
        )));
    }
    let files = sources
        .iter()
        .map(Source::load)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Refusal::Rejected(format!("cannot load approval: {e}")))?;
    let required = match verdict {
        Verdict::NeedsApproval => {
            signed::required_for(&operator.required, contract, operator.keyring.is_some())
        }
        _ => 0,
    };
    if operator.keyring.is_none() && files.iter().any(|f| f.envelope.is_some()) {
        warn("approval signatures are not verified without --approver-keyring (v0.1 behaviour)");
    }
    let accepted = signed::gate(
        files,
        contract_sha256,
        now,
        operator.keyring.as_ref(),
        required,
    )
    .map_err(|e| {
        if e.expired {
            Refusal::Expired(e.message)
        } else {
            Refusal::Rejected(e.message)
        }
    })?;
    let single_use = signed::single_use_ids(&accepted);
    Ok(Admitted {
        accepted,
        required,
        single_use,
    })
}

/// None of `ids` has been consumed yet (`consumed_at` asks the state store) (checked before
/// anything runs; consumption itself is atomic, right before the first
/// command starts).
pub fn unconsumed(
    ids: &[String],
    consumed_at: &mut dyn FnMut(&str) -> Result<Option<String>, String>,
) -> Result<(), String> {
    for id in ids {
        if let Some(at) = consumed_at(id)? {
            return Err(format!(
                "approval {id:?} has already been consumed (single_execution) at {at}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::contract::ApprovalMode;
    use crate::protocol::policy::Policy;

    fn fixture(mode: ApprovalMode) -> (Contract, Decision) {
        let mut contract: Contract =
            serde_json::from_str(include_str!("../../examples/contracts/list-repo.json")).unwrap();
        contract.approval_mode = mode;
        let policy: Policy = serde_json::from_value(serde_json::json!({
            "name": "p", "allow_commands": ["ls"], "allowed_effect_types": ["observe"],
            "allowed_risk_classes": ["low"], "allowed_cwd_prefixes": ["/"],
            "allowed_read_prefixes": ["/"]
        }))
        .unwrap();
        let decision = crate::engine::decide(&contract, &policy, crate::engine::Semantics::Csc);
        (contract, decision)
    }

    fn plain(contract: &Contract, id: &str) -> Source {
        let approval = serde_json::json!({
            "approval_version": "csc.approval.v0.1", "approval_id": id,
            "contract_sha256": contract.sha256(),
            "approver": {"identity": "alice", "method": "cli"},
            "approved_at": crate::time::rfc3339_in(-60),
            "expires_at": crate::time::rfc3339_in(3600),
            "scope": "single_execution"
        });
        Source::Bytes {
            bytes: serde_json::to_vec(&approval).unwrap(),
            shown: id.to_owned(),
        }
    }

    fn run(c: &Contract, d: &Decision, sources: &[Source]) -> Result<Admitted, Refusal> {
        let op = Operator::default();
        admit(
            d,
            c,
            &c.sha256(),
            sources,
            &op,
            Timestamp::now(),
            &mut |_| {},
        )
    }

    #[test]
    fn allowed_contracts_need_nothing() {
        let (c, d) = fixture(ApprovalMode::PolicyOnly);
        assert_eq!(d.decision, Verdict::Allow);
        let a = run(&c, &d, &[]).unwrap();
        assert_eq!((a.required, a.accepted.len()), (0, 0));
    }

    #[test]
    fn needs_approval_without_one_is_missing() {
        let (c, d) = fixture(ApprovalMode::HumanRequired);
        assert_eq!(d.decision, Verdict::NeedsApproval);
        assert!(matches!(run(&c, &d, &[]), Err(Refusal::Missing(_))));
    }

    #[test]
    fn one_unsigned_approval_passes_without_a_keyring_several_do_not() {
        let (c, d) = fixture(ApprovalMode::HumanRequired);
        let a = run(&c, &d, &[plain(&c, "a1")]).unwrap();
        assert_eq!(a.single_use, vec!["a1".to_owned()]);
        assert_eq!(a.required, 1);
        let two = [plain(&c, "a1"), plain(&c, "a2")];
        let Err(Refusal::Rejected(m)) = run(&c, &d, &two) else {
            panic!("two unsigned approvals accepted")
        };
        assert!(m.contains("need --approver-keyring"), "{m}");
    }

    #[test]
    fn a_broken_approval_is_rejected_by_name() {
        let (c, d) = fixture(ApprovalMode::HumanRequired);
        let bad = Source::Bytes {
            bytes: b"{}".to_vec(),
            shown: "argument \"approval\"".to_owned(),
        };
        let Err(Refusal::Rejected(m)) = run(&c, &d, &[bad]) else {
            panic!("an empty approval accepted")
        };
        assert!(
            m.contains("cannot load approval") && m.contains("argument"),
            "{m}"
        );
    }
}
