//! PolicyDecision v0.1 and the stable reason codes.

use serde::{Deserialize, Serialize};

/// The three possible outcomes of policy evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 decision (schemas/csc.decision.v0.1.schema.json documents every field)"
)]
pub enum Verdict {
    Allow,
    Deny,
    NeedsApproval,
}

impl Verdict {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::NeedsApproval => "needs_approval",
        }
    }
}

/// Stable reason codes: the API callers branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 decision (schemas/csc.decision.v0.1.schema.json documents every field)"
)]
pub enum ReasonCode {
    Allow,
    RiskClassNotAllowed,
    CommandNotAllowed,
    ArgvPrefixDenied,
    EffectTypeNotAllowed,
    ApprovalRequired,
    TimeoutExceedsPolicy,
    NetworkExceedsPolicy,
    SecretRefNotAllowed,
    CwdNotAllowed,
    PathNotAbsolute,
    ReadScopeDenied,
    WritePathsNotEmpty,
    WriteScopeDenied,
    EffectReclassified,
}

impl ReasonCode {
    /// Wire name, e.g. `COMMAND_NOT_ALLOWED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Allow => "ALLOW",
            ReasonCode::RiskClassNotAllowed => "RISK_CLASS_NOT_ALLOWED",
            ReasonCode::CommandNotAllowed => "COMMAND_NOT_ALLOWED",
            ReasonCode::ArgvPrefixDenied => "ARGV_PREFIX_DENIED",
            ReasonCode::EffectTypeNotAllowed => "EFFECT_TYPE_NOT_ALLOWED",
            ReasonCode::ApprovalRequired => "APPROVAL_REQUIRED",
            ReasonCode::TimeoutExceedsPolicy => "TIMEOUT_EXCEEDS_POLICY",
            ReasonCode::NetworkExceedsPolicy => "NETWORK_EXCEEDS_POLICY",
            ReasonCode::SecretRefNotAllowed => "SECRET_REF_NOT_ALLOWED",
            ReasonCode::CwdNotAllowed => "CWD_NOT_ALLOWED",
            ReasonCode::PathNotAbsolute => "PATH_NOT_ABSOLUTE",
            ReasonCode::ReadScopeDenied => "READ_SCOPE_DENIED",
            ReasonCode::WritePathsNotEmpty => "WRITE_PATHS_NOT_EMPTY",
            ReasonCode::WriteScopeDenied => "WRITE_SCOPE_DENIED",
            ReasonCode::EffectReclassified => "EFFECT_RECLASSIFIED",
        }
    }
}

/// `{command_id, effect_type}` as classified by the engine. `effect_type`
/// may be an extension type such as `financial_action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 decision (schemas/csc.decision.v0.1.schema.json documents every field)"
)]
pub struct ClassifiedEffect {
    pub command_id: String,
    pub effect_type: String,
}

/// A PolicyDecision v0.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 decision (schemas/csc.decision.v0.1.schema.json documents every field)"
)]
pub struct Decision {
    pub contract_id: String,
    pub decision: Verdict,
    pub policy_profile: String,
    pub reasons: Vec<String>,
    pub reason_codes: Vec<ReasonCode>,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classified_effects: Option<Vec<ClassifiedEffect>>,
}
