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

// The contract and policy validators are generated from copies of the
// shipped schemas in which the absolute-path `pattern` is replaced by the
// `x-csc-absolute-path` keyword ([`absolute_path_keyword`]): the same
// predicate and message without compiling a regex in every process (two
// `fancy-regex` compilations were a third of `csc check`'s instructions).
// `compiled_schemas_are_the_shipped_ones` pins the copies to the originals.
#[jsonschema::validator(
    path = "src/protocol/compiled_schemas/contract.json",
    validate_formats = true,
    keywords = { "x-csc-absolute-path" => crate::protocol::schema::absolute_path_keyword }
)]
struct ContractSchema;
#[jsonschema::validator(
    path = "src/protocol/compiled_schemas/policy.json",
    validate_formats = true,
    keywords = { "x-csc-absolute-path" => crate::protocol::schema::absolute_path_keyword }
)]
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

/// The shipped schemas' absolute-path `pattern` (ECMA-262 syntax).
pub const ABSOLUTE_PATH_PATTERN: &str = r"^(/|[A-Za-z]:[\\/]|\\\\[^\\/]+[\\/][^\\/])";

/// Whether `s` matches [`ABSOLUTE_PATH_PATTERN`]: `/…`, a drive letter with
/// `:` and a separator, or `\\server` + separator + a non-separator.
/// Separators are ASCII, so a byte scan is exact on UTF-8.
pub fn is_absolute_path_text(s: &str) -> bool {
    let b = s.as_bytes();
    let sep = |c: u8| c == b'\\' || c == b'/';
    match b {
        [b'/', ..] => true,
        [d, b':', c, ..] if d.is_ascii_alphabetic() && sep(*c) => true,
        [b'\\', b'\\', rest @ ..] => match rest.iter().position(|&c| sep(c)) {
            Some(i) => i > 0 && rest.get(i + 1).is_some_and(|&c| !sep(c)),
            None => false,
        },
        _ => false,
    }
}

/// The `x-csc-absolute-path` keyword: `pattern` = [`ABSOLUTE_PATH_PATTERN`]
/// with the same result and message, without a regex.
struct AbsolutePath;

impl<'i> jsonschema::Keyword<'i> for AbsolutePath {
    fn validate(&self, instance: &'i Value) -> Result<(), jsonschema::ValidationError<'i>> {
        if self.is_valid(instance) {
            Ok(())
        } else {
            // Same text as jsonschema's `pattern` error.
            Err(jsonschema::ValidationError::custom(format!(
                r#"{instance} does not match "{ABSOLUTE_PATH_PATTERN}""#
            )))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        instance.as_str().is_none_or(is_absolute_path_text)
    }
}

fn absolute_path_keyword<'a>(
    _parent: &'a serde_json::Map<String, Value>,
    value: &'a Value,
    _path: jsonschema::paths::Location,
) -> Result<Box<dyn for<'i> jsonschema::Keyword<'i>>, jsonschema::ValidationError<'a>> {
    if value.as_bool() == Some(true) {
        Ok(Box::new(AbsolutePath))
    } else {
        Err(jsonschema::ValidationError::schema(
            "x-csc-absolute-path must be true",
        ))
    }
}

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
            serde_json::json!({"allowed_cwd_prefixes": ["", "C:/", "c:x", "\\\\s\\x", "\\\\s\\", 7],
                "allowed_read_prefixes": ["\\\\\\x", "//", "\"q\"\n/", "é/", "\\\\é/é"]}),
            serde_json::json!({"version": "csc.v0.1", "expected_outputs": ["", "C:/", "c:x", "\\\\s\\x", 7],
                "commands": [{"cwd": "\\\\s/\\", "read_paths": ["a/b", "/"], "write_paths": [null]}]}),
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

    #[test]
    fn compiled_schemas_are_the_shipped_ones() {
        for (kind, text) in [
            (
                Kind::Contract,
                include_str!("compiled_schemas/contract.json"),
            ),
            (Kind::Policy, include_str!("compiled_schemas/policy.json")),
        ] {
            let mut shipped: Value = serde_json::from_str(kind.schema_text()).unwrap();
            let def = shipped["$defs"]["absolute_path"].as_object_mut().unwrap();
            assert_eq!(
                def.remove("pattern"),
                Some(Value::from(ABSOLUTE_PATH_PATTERN))
            );
            def.insert("x-csc-absolute-path".into(), Value::Bool(true));
            let compiled: Value = serde_json::from_str(text).unwrap();
            assert_eq!(compiled, shipped, "{kind:?}");
        }
    }

    fn pattern_validator() -> jsonschema::Validator {
        jsonschema::draft202012::new(&serde_json::json!({ "pattern": ABSOLUTE_PATH_PATTERN }))
            .unwrap()
    }

    #[test]
    fn absolute_path_text_agrees_with_the_pattern_on_edge_cases() {
        let rt = pattern_validator();
        for s in [
            "",
            "/",
            "//",
            "a",
            "a/",
            "C:",
            "C:/",
            "C:\\",
            "z:x",
            "1:/",
            "é:/",
            "\\",
            "\\\\",
            "\\\\s",
            "\\\\s\\",
            "\\\\s/",
            "\\\\s\\x",
            "\\\\s/x",
            "\\\\\\x",
            "\\\\/x",
            "\\\\s\\\\",
            "\\\\s\\/",
            "\\\\é\\é",
            "\\\\s\\\n",
            " /",
            "\n/",
            "\\/x",
        ] {
            assert_eq!(
                is_absolute_path_text(s),
                rt.is_valid(&Value::from(s)),
                "{s:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn absolute_path_text_agrees_with_the_pattern(s in "[/\\\\:aZ0é \n]{0,6}") {
            let rt = pattern_validator();
            proptest::prop_assert_eq!(is_absolute_path_text(&s), rt.is_valid(&Value::from(s.as_str())));
        }
    }
}
