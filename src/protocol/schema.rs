//! The five v0.1 JSON Schemas (draft 2020-12), embedded at build time.
//!
//! Validators are generated at compile time (`jsonschema` `macros`
//! feature, format checking on), so a process pays no schema compilation
//! and never builds the draft 2020-12 meta-schema validator (~2 ms per
//! process otherwise — most of a `csc run`'s budget).

use serde_json::Value;

/// Which protocol object a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A CommandScopeContract.
    Contract,
    /// An operator policy.
    Policy,
    /// A policy decision.
    Decision,
    /// An ExecutionReceipt.
    Receipt,
    /// An ApprovalArtifact.
    Approval,
}

impl Kind {
    /// Human name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Contract => "contract",
            Kind::Policy => "policy",
            Kind::Decision => "decision",
            Kind::Receipt => "receipt",
            Kind::Approval => "approval",
        }
    }

    /// The schema text as shipped in `schemas/`.
    pub fn schema_text(self) -> &'static str {
        match self {
            Kind::Contract => include_str!("../../schemas/csc.contract.v0.1.schema.json"),
            Kind::Policy => include_str!("../../schemas/csc.policy.v0.1.schema.json"),
            Kind::Decision => include_str!("../../schemas/csc.decision.v0.1.schema.json"),
            Kind::Receipt => include_str!("../../schemas/csc.receipt.v0.1.schema.json"),
            Kind::Approval => include_str!("../../schemas/csc.approval.v0.1.schema.json"),
        }
    }
}

/// One schema violation: where (JSON pointer) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the document (`""` is the root).
    pub pointer: String,
    /// The validator's description of the violation.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

#[jsonschema::validator(
    path = "schemas/csc.contract.v0.1.schema.json",
    validate_formats = true
)]
struct ContractSchema;
#[jsonschema::validator(path = "schemas/csc.policy.v0.1.schema.json", validate_formats = true)]
struct PolicySchema;
#[jsonschema::validator(
    path = "schemas/csc.decision.v0.1.schema.json",
    validate_formats = true
)]
struct DecisionSchema;
#[jsonschema::validator(path = "schemas/csc.receipt.v0.1.schema.json", validate_formats = true)]
struct ReceiptSchema;
#[jsonschema::validator(
    path = "schemas/csc.approval.v0.1.schema.json",
    validate_formats = true
)]
struct ApprovalSchema;

fn violation(e: jsonschema::ValidationError<'_>) -> Violation {
    Violation {
        pointer: e.instance_path().to_string(),
        message: e.to_string(),
    }
}

/// Validate `doc` against the schema of `kind`; every violation is listed.
pub fn validate(kind: Kind, doc: &Value) -> Vec<Violation> {
    match kind {
        Kind::Contract => ContractSchema::iter_errors(doc).map(violation).collect(),
        Kind::Policy => PolicySchema::iter_errors(doc).map(violation).collect(),
        Kind::Decision => DecisionSchema::iter_errors(doc).map(violation).collect(),
        Kind::Receipt => ReceiptSchema::iter_errors(doc).map(violation).collect(),
        Kind::Approval => ApprovalSchema::iter_errors(doc).map(violation).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [Kind; 5] = [
        Kind::Contract,
        Kind::Policy,
        Kind::Decision,
        Kind::Receipt,
        Kind::Approval,
    ];

    fn runtime(kind: Kind) -> jsonschema::Validator {
        let schema: Value = serde_json::from_str(kind.schema_text()).unwrap();
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap()
    }

    #[test]
    fn every_embedded_schema_compiles_at_runtime_too() {
        for kind in KINDS {
            let _ = runtime(kind);
        }
    }

    #[test]
    fn compile_time_validators_agree_with_runtime_ones() {
        let docs = [
            serde_json::json!({}),
            serde_json::json!([]),
            serde_json::json!({"version": "csc.v0.1", "extra": 1, "commands": [{"id": "", "cwd": "rel"}]}),
            serde_json::json!({"receipt_version": "csc.receipt.v0.1", "status": "failed",
                "started_at": "yesterday", "contract_sha256": "x", "stdout_hash": "sha256:00"}),
            serde_json::json!({"policy_schema_version": "csc.policy.v0.1", "name": "",
                "allow_commands": ["a", "a"], "allowed_cwd_prefixes": ["rel"]}),
        ];
        for kind in KINDS {
            let rt = runtime(kind);
            for doc in &docs {
                let mut a: Vec<String> =
                    validate(kind, doc).iter().map(|v| v.to_string()).collect();
                let mut b: Vec<String> = rt
                    .iter_errors(doc)
                    .map(|e| violation(e).to_string())
                    .collect();
                a.sort();
                b.sort();
                assert_eq!(a, b, "{kind:?} {doc}");
            }
        }
    }

    #[test]
    fn date_time_format_is_enforced() {
        let bad = serde_json::json!({
            "approval_version": "csc.approval.v0.1",
            "approval_id": "a1",
            "contract_sha256": "0".repeat(64),
            "approver": {"identity": "alice", "method": "cli"},
            "approved_at": "not a date",
            "expires_at": "2026-01-01T00:00:00Z",
            "scope": "single_execution"
        });
        let v = validate(Kind::Approval, &bad);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].pointer, "/approved_at");
    }
}
