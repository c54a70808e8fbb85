//! The five v0.1 JSON Schemas (draft 2020-12), embedded at build time and
//! compiled once per process with format checking on.

use serde_json::Value;
use std::sync::OnceLock;

/// Which protocol object a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Contract,
    Policy,
    Decision,
    Receipt,
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

    fn slot(self) -> &'static OnceLock<jsonschema::Validator> {
        static SLOTS: [OnceLock<jsonschema::Validator>; 5] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        &SLOTS[self as usize]
    }
}

/// One schema violation: where (JSON pointer) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the document (`""` is the root).
    pub pointer: String,
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

fn validator(kind: Kind) -> &'static jsonschema::Validator {
    kind.slot().get_or_init(|| {
        let schema: Value = serde_json::from_str(kind.schema_text())
            .expect("embedded schema is valid JSON (checked by tests)");
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("embedded schema compiles (checked by tests)")
    })
}

/// Validate `doc` against the schema of `kind`; every violation is listed.
pub fn validate(kind: Kind, doc: &Value) -> Vec<Violation> {
    validator(kind)
        .iter_errors(doc)
        .map(|e| Violation {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_compiles() {
        for kind in [
            Kind::Contract,
            Kind::Policy,
            Kind::Decision,
            Kind::Receipt,
            Kind::Approval,
        ] {
            let _ = validator(kind);
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
