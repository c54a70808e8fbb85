//! ApprovalArtifact v0.1: a human's permission to run one contract.

use serde::{Deserialize, Serialize};

/// Version tag every v0.1 approval carries in `approval_version`.
pub const APPROVAL_VERSION: &str = "csc.approval.v0.1";

/// How the approver gave approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 approval (schemas/csc.approval.v0.1.schema.json documents every field)"
)]
pub enum ApprovalMethod {
    Manual,
    Cli,
    Api,
    Ticket,
}

/// Who approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 approval (schemas/csc.approval.v0.1.schema.json documents every field)"
)]
pub struct Approver {
    pub identity: String,
    pub method: ApprovalMethod,
}

/// Whether the approval may be used once or until it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 approval (schemas/csc.approval.v0.1.schema.json documents every field)"
)]
pub enum ApprovalScope {
    SingleExecution,
    TimeWindow,
}

/// An ApprovalArtifact v0.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 approval (schemas/csc.approval.v0.1.schema.json documents every field)"
)]
pub struct Approval {
    pub approval_version: String,
    pub approval_id: String,
    pub contract_sha256: String,
    pub approver: Approver,
    pub approved_at: String,
    pub expires_at: String,
    pub scope: ApprovalScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
