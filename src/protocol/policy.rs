//! Policy profile v0.1: the operator's trusted rules.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::contract::{EffectType, NetworkMode, RiskClass};
use crate::canonical::{Nulls, sha256_hex_of};

/// Version tag every v0.1 policy carries in `policy_schema_version`.
pub const POLICY_VERSION: &str = "csc.policy.v0.1";

fn default_max_timeout() -> u64 {
    60
}

fn default_network() -> NetworkMode {
    NetworkMode::Deny
}

/// A typed policy profile. Fields the schema marks optional default exactly
/// as the reference's `policy.get(...)` fallbacks do (all fail closed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 policy (schemas/csc.policy.v0.1.schema.json documents every field)"
)]
pub struct Policy {
    #[serde(default)]
    pub policy_schema_version: Option<String>,
    pub name: String,
    #[serde(default)]
    pub allow_commands: Vec<String>,
    #[serde(default)]
    pub deny_argv_prefixes: Vec<Vec<String>>,
    #[serde(default)]
    pub allowed_effect_types: Vec<EffectType>,
    #[serde(default)]
    pub manual_approval_for_classified_effect_types: Vec<String>,
    #[serde(default)]
    pub allowed_risk_classes: Vec<RiskClass>,
    #[serde(
        default = "default_max_timeout",
        deserialize_with = "super::integer::u64_lenient"
    )]
    pub max_timeout_sec: u64,
    #[serde(default = "default_network")]
    pub network: NetworkMode,
    #[serde(default)]
    pub allow_secret_refs: bool,
    #[serde(default)]
    pub allowed_cwd_prefixes: Vec<String>,
    #[serde(default)]
    pub allowed_read_prefixes: Vec<String>,
    #[serde(default)]
    pub require_write_paths_empty: bool,
    #[serde(default)]
    pub allowed_write_prefixes: Vec<String>,
    #[serde(default)]
    pub allowed_egress_hosts: Vec<String>,
}

/// A policy together with the exact mapping it was parsed from, which is
/// what `policy_sha256` covers.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The typed view the engine evaluates.
    pub policy: Policy,
    /// The document as parsed, without defaults filled in.
    pub raw: Value,
}

impl LoadedPolicy {
    /// Build from a parsed mapping (already schema-checked by the loader).
    pub fn from_value(raw: Value) -> Result<Self, serde_json::Error> {
        let policy = Policy::deserialize(&raw)?;
        Ok(LoadedPolicy { policy, raw })
    }

    /// `policy_sha256`: canonical JSON of the mapping exactly as parsed.
    pub fn sha256(&self) -> String {
        sha256_hex_of(&self.raw, Nulls::Keep)
    }
}
