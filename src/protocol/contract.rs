//! CommandContract v0.1: the agent's request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{Nulls, sha256_hex_of};

/// Version tag every v0.1 contract carries in `version`.
pub const CONTRACT_VERSION: &str = "csc.v0.1";

/// Network modes, ordered by rank (deny < allowlisted < full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// No network at all.
    Deny,
    /// Only the policy's egress hosts.
    Allowlisted,
    /// Unrestricted network.
    Full,
}

impl NetworkMode {
    /// Rank used for the `NETWORK_EXCEEDS_POLICY` comparison.
    pub fn rank(self) -> u8 {
        self as u8
    }
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Deny => "deny",
            NetworkMode::Allowlisted => "allowlisted",
            NetworkMode::Full => "full",
        }
    }
}

/// Core effect types an agent may propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 contract (schemas/csc.contract.v0.1.schema.json documents every field)"
)]
pub enum EffectType {
    Observe,
    TransformLocal,
    FetchExternal,
    MutateRepo,
    Deploy,
    TouchSecrets,
}

impl EffectType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectType::Observe => "observe",
            EffectType::TransformLocal => "transform_local",
            EffectType::FetchExternal => "fetch_external",
            EffectType::MutateRepo => "mutate_repo",
            EffectType::Deploy => "deploy",
            EffectType::TouchSecrets => "touch_secrets",
        }
    }
}

/// Contract risk classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 contract (schemas/csc.contract.v0.1.schema.json documents every field)"
)]
pub enum RiskClass {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskClass {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::Low => "low",
            RiskClass::Medium => "medium",
            RiskClass::High => "high",
            RiskClass::Critical => "critical",
        }
    }
}

/// Who must approve before execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 contract (schemas/csc.contract.v0.1.schema.json documents every field)"
)]
pub enum ApprovalMode {
    PolicyOnly,
    HumanRequired,
    DualControlRequired,
}

impl ApprovalMode {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::PolicyOnly => "policy_only",
            ApprovalMode::HumanRequired => "human_required",
            ApprovalMode::DualControlRequired => "dual_control_required",
        }
    }
}

/// The agent and delegation chain behind a contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 contract (schemas/csc.contract.v0.1.schema.json documents every field)"
)]
pub struct Actor {
    pub agent_id: String,
    pub session_id: String,
    pub initiating_user: String,
    pub delegation_scope: String,
}

/// A single argv vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 contract (schemas/csc.contract.v0.1.schema.json documents every field)"
)]
pub struct Argv {
    pub argv: Vec<String>,
}

/// A pipeline of at least two argv segments connected by pipes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 contract (schemas/csc.contract.v0.1.schema.json documents every field)"
)]
pub struct Pipeline {
    pub segments: Vec<Argv>,
}

/// One command of a contract: exactly one of `exec` / `pipeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 contract (schemas/csc.contract.v0.1.schema.json documents every field)"
)]
pub struct Command {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Pipeline>,
    pub cwd: String,
    pub read_paths: Vec<String>,
    pub write_paths: Vec<String>,
    pub network: NetworkMode,
    pub env_allow: Vec<String>,
    pub secret_refs: Vec<String>,
    #[serde(deserialize_with = "super::integer::u64_lenient")]
    pub timeout_sec: u64,
    pub proposed_effect_type: EffectType,
}

impl Command {
    /// Every argv vector of the command: the exec argv, or each segment's.
    pub fn argv_vectors(&self) -> Vec<&[String]> {
        match (&self.exec, &self.pipeline) {
            (Some(e), _) => vec![e.argv.as_slice()],
            (None, Some(p)) => p.segments.iter().map(|s| s.argv.as_slice()).collect(),
            (None, None) => Vec::new(),
        }
    }
}

/// A CommandContract v0.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 contract (schemas/csc.contract.v0.1.schema.json documents every field)"
)]
pub struct Contract {
    pub version: String,
    pub contract_id: String,
    pub intent: String,
    pub actor: Actor,
    pub commands: Vec<Command>,
    pub risk_class: RiskClass,
    pub approval_mode: ApprovalMode,
    #[serde(default)]
    pub expected_outputs: Vec<String>,
    pub justification: String,
}

impl Contract {
    /// `contract_sha256`: hash of the canonical JSON of the contract as the
    /// reference's model dumps it (absent `expected_outputs` becomes `[]`,
    /// absent `exec`/`pipeline` are dropped, nulls dropped).
    pub fn sha256(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        sha256_hex_of(&value, Nulls::Drop)
    }
}

impl Contract {
    /// Model-level invariants the reference's typed model enforces even
    /// without schema validation (used for decision fixtures, whose
    /// contracts the reference evaluates straight from its model).
    pub fn model_errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.version != CONTRACT_VERSION {
            out.push(format!(
                "unsupported contract version {:?} (expected {CONTRACT_VERSION:?})",
                self.version
            ));
        }
        if self.commands.is_empty() || self.commands.len() > 20 {
            out.push(format!(
                "commands must hold 1-20 items, found {}",
                self.commands.len()
            ));
        }
        for cmd in &self.commands {
            match (&cmd.exec, &cmd.pipeline) {
                (Some(e), None) if e.argv.is_empty() => {
                    out.push(format!("command {:?}: exec.argv is empty", cmd.id))
                }
                (None, Some(p)) => {
                    if p.segments.len() < 2 {
                        out.push(format!(
                            "command {:?}: pipeline needs >= 2 segments",
                            cmd.id
                        ));
                    }
                    if p.segments.iter().any(|s| s.argv.is_empty()) {
                        out.push(format!(
                            "command {:?}: a pipeline segment argv is empty",
                            cmd.id
                        ));
                    }
                }
                (Some(_), None) => {}
                _ => out.push(format!(
                    "command {:?}: exactly one of exec or pipeline must be set",
                    cmd.id
                )),
            }
            if !(1..=86400).contains(&cmd.timeout_sec) {
                out.push(format!(
                    "command {:?}: timeout_sec {} outside 1-86400",
                    cmd.id, cmd.timeout_sec
                ));
            }
        }
        out
    }
}
