//! Approval artifacts at run time: binding to the contract, validity
//! window, and (in [`store`]) durable single-use consumption.

pub mod admit;
pub mod signed;
pub mod store;

use jiff::{SignedDuration, Timestamp};

use crate::protocol::approval::Approval;

/// How far `approved_at` may lie in the future of csc's clock (clock skew
/// between the approver's host and this one): 5 minutes, the customary
/// Kerberos allowance. Beyond it the approval is not yet valid.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(300);

/// Why an approval cannot authorize this run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum ApprovalProblem {
    #[error(
        "approval rejected: contract_sha256 mismatch: approval covers {approved:?}, contract is {actual:?} (approval_id={id:?})"
    )]
    WrongContract {
        id: String,
        approved: String,
        actual: String,
    },
    #[error(
        "approval rejected: {field} is not a valid RFC 3339 date-time: {value:?} (approval_id={id:?})"
    )]
    BadTime {
        id: String,
        field: &'static str,
        value: String,
    },
    #[error(
        "approval rejected: expires_at ({expires_at}) must be strictly after approved_at ({approved_at}) (approval_id={id:?})"
    )]
    BadWindow {
        id: String,
        approved_at: String,
        expires_at: String,
    },
    #[error(
        "approval rejected: approved_at ({approved_at}) lies in the future beyond the allowed clock skew of {skew_secs} s (approval_id={id:?})"
    )]
    NotYetValid {
        id: String,
        approved_at: String,
        skew_secs: i64,
    },
    #[error("approval rejected: approval expired at {expires_at} (approval_id={id:?})")]
    Expired { id: String, expires_at: String },
}

impl ApprovalProblem {
    /// Expiry gets its own receipt status (`expired`); the rest are `blocked`.
    pub fn is_expiry(&self) -> bool {
        matches!(self, ApprovalProblem::Expired { .. })
    }
}

/// Check `approval` against the contract hash at time `now`.
pub fn check(
    approval: &Approval,
    contract_sha256: &str,
    now: Timestamp,
) -> Result<(), ApprovalProblem> {
    let id = approval.approval_id.clone();
    if approval.contract_sha256 != contract_sha256 {
        return Err(ApprovalProblem::WrongContract {
            id,
            approved: approval.contract_sha256.clone(),
            actual: contract_sha256.to_owned(),
        });
    }
    let parse = |field: &'static str, value: &str| {
        crate::time::parse(value).ok_or_else(|| ApprovalProblem::BadTime {
            id: id.clone(),
            field,
            value: value.to_owned(),
        })
    };
    let approved = parse("approved_at", &approval.approved_at)?;
    let expires = parse("expires_at", &approval.expires_at)?;
    if expires <= approved {
        return Err(ApprovalProblem::BadWindow {
            id,
            approved_at: approval.approved_at.clone(),
            expires_at: approval.expires_at.clone(),
        });
    }
    if approved.duration_since(now) > MAX_CLOCK_SKEW {
        return Err(ApprovalProblem::NotYetValid {
            id,
            approved_at: approval.approved_at.clone(),
            skew_secs: MAX_CLOCK_SKEW.as_secs(),
        });
    }
    if now >= expires {
        return Err(ApprovalProblem::Expired {
            id,
            expires_at: approval.expires_at.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::approval::{ApprovalMethod, ApprovalScope, Approver};

    fn approval(approved: &str, expires: &str) -> Approval {
        Approval {
            approval_version: "csc.approval.v0.1".into(),
            approval_id: "a1".into(),
            contract_sha256: "a".repeat(64),
            approver: Approver {
                identity: "alice".into(),
                method: ApprovalMethod::Cli,
            },
            approved_at: approved.into(),
            expires_at: expires.into(),
            scope: ApprovalScope::SingleExecution,
            ticket_id: None,
            reason: None,
        }
    }

    #[test]
    fn binding_window_and_expiry() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let ok = approval("2026-05-31T00:00:00Z", "2026-06-02T00:00:00Z");
        assert_eq!(check(&ok, &"a".repeat(64), now), Ok(()));
        assert!(matches!(
            check(&ok, &"b".repeat(64), now),
            Err(ApprovalProblem::WrongContract { .. })
        ));
        let inverted = approval("2026-06-02T00:00:00Z", "2026-05-31T00:00:00Z");
        assert!(matches!(
            check(&inverted, &"a".repeat(64), now),
            Err(ApprovalProblem::BadWindow { .. })
        ));
        let skewed = approval("2026-06-01T00:04:00Z", "2026-06-02T00:00:00Z");
        assert_eq!(check(&skewed, &"a".repeat(64), now), Ok(()));
        let future = approval("2026-06-01T00:05:01Z", "2026-06-02T00:00:00Z");
        assert!(matches!(
            check(&future, &"a".repeat(64), now),
            Err(ApprovalProblem::NotYetValid { .. })
        ));
        let old = approval("2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z");
        assert!(check(&old, &"a".repeat(64), now).unwrap_err().is_expiry());
    }
}
