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

// The validators are generated from copies of the shipped schemas
// (`src/protocol/compiled_schemas/`) in which every `pattern` key is
// renamed `x-csc-pattern`, a keyword ([`pattern_keyword`]) that checks the
// same pattern with a byte scan and reports jsonschema's `pattern` message:
// no regex is compiled per process (the two absolute-path compilations
// were a third of `csc check`'s instructions). The copies are pinned to the
// shipped schemas by `compiled_schemas_are_the_shipped_ones`; a pattern
// without a matcher here fails that test and every validation.
#[jsonschema::validator(
    path = "src/protocol/compiled_schemas/contract.json",
    validate_formats = true,
    keywords = { "x-csc-pattern" => crate::protocol::schema::pattern_keyword }
)]
struct ContractSchema;
#[jsonschema::validator(
    path = "src/protocol/compiled_schemas/policy.json",
    validate_formats = true,
    keywords = { "x-csc-pattern" => crate::protocol::schema::pattern_keyword }
)]
struct PolicySchema;
#[jsonschema::validator(
    path = "src/protocol/compiled_schemas/decision.json",
    validate_formats = true,
    keywords = { "x-csc-pattern" => crate::protocol::schema::pattern_keyword }
)]
struct DecisionSchema;
#[jsonschema::validator(
    path = "src/protocol/compiled_schemas/receipt.json",
    validate_formats = true,
    keywords = { "x-csc-pattern" => crate::protocol::schema::pattern_keyword }
)]
struct ReceiptSchema;
#[jsonschema::validator(
    path = "src/protocol/compiled_schemas/approval.json",
    validate_formats = true,
    keywords = { "x-csc-pattern" => crate::protocol::schema::pattern_keyword }
)]
struct ApprovalSchema;

/// The shipped schemas' absolute-path `pattern` (ECMA-262 syntax).
pub const ABSOLUTE_PATH_PATTERN: &str = r"^(/|[A-Za-z]:[\\/]|\\\\[^\\/]+[\\/][^\\/])";
/// The shipped schemas' SHA-256 hex digest `pattern`.
pub const HEX64_PATTERN: &str = "^[0-9a-f]{64}$";
/// The shipped schemas' stream hash `pattern`.
pub const STREAM_HASH_PATTERN: &str = "^sha256:[0-9a-f]{64}$";

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

/// Whether `s` matches [`HEX64_PATTERN`]. (`$` in ECMA-262 without the
/// multiline flag is the end of input: no trailing newline is allowed.)
pub fn is_hex64_text(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// A shipped `pattern` and its byte-scan matcher.
fn matcher(pattern: &str) -> Option<fn(&str) -> bool> {
    match pattern {
        ABSOLUTE_PATH_PATTERN => Some(is_absolute_path_text),
        HEX64_PATTERN => Some(is_hex64_text),
        STREAM_HASH_PATTERN => Some(|s| s.strip_prefix("sha256:").is_some_and(is_hex64_text)),
        _ => None,
    }
}

/// The `x-csc-pattern` keyword: `pattern` with the same result and message,
/// without a regex.
struct Pattern {
    pattern: &'static str,
    matches: fn(&str) -> bool,
}

impl<'i> jsonschema::Keyword<'i> for Pattern {
    fn validate(&self, instance: &'i Value) -> Result<(), jsonschema::ValidationError<'i>> {
        if self.is_valid(instance) {
            Ok(())
        } else {
            // Same text as jsonschema's `pattern` error.
            Err(jsonschema::ValidationError::custom(format!(
                r#"{instance} does not match "{}""#,
                self.pattern
            )))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        instance.as_str().is_none_or(self.matches)
    }
}

fn pattern_keyword<'a>(
    _parent: &'a serde_json::Map<String, Value>,
    value: &'a Value,
    _path: jsonschema::paths::Location,
) -> Result<Box<dyn for<'i> jsonschema::Keyword<'i>>, jsonschema::ValidationError<'a>> {
    let known = [ABSOLUTE_PATH_PATTERN, HEX64_PATTERN, STREAM_HASH_PATTERN];
    match known.into_iter().find(|p| Some(*p) == value.as_str()) {
        Some(pattern) => Ok(Box::new(Pattern {
            pattern,
            matches: matcher(pattern).unwrap_or(|_| false),
        })),
        None => Err(jsonschema::ValidationError::schema(format!(
            "x-csc-pattern {value} has no matcher in csc"
        ))),
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

    fn rename_patterns(v: &mut Value) {
        match v {
            Value::Object(m) => {
                let renamed: serde_json::Map<String, Value> = std::mem::take(m)
                    .into_iter()
                    .map(|(k, mut v)| {
                        rename_patterns(&mut v);
                        let k = if k == "pattern" {
                            "x-csc-pattern".into()
                        } else {
                            k
                        };
                        (k, v)
                    })
                    .collect();
                *m = renamed;
            }
            Value::Array(a) => a.iter_mut().for_each(rename_patterns),
            _ => {}
        }
    }

    #[test]
    fn compiled_schemas_are_the_shipped_ones() {
        for (kind, text) in [
            (
                Kind::Contract,
                include_str!("compiled_schemas/contract.json"),
            ),
            (Kind::Policy, include_str!("compiled_schemas/policy.json")),
            (
                Kind::Decision,
                include_str!("compiled_schemas/decision.json"),
            ),
            (Kind::Receipt, include_str!("compiled_schemas/receipt.json")),
            (
                Kind::Approval,
                include_str!("compiled_schemas/approval.json"),
            ),
        ] {
            let mut shipped: Value = serde_json::from_str(kind.schema_text()).unwrap();
            rename_patterns(&mut shipped);
            let compiled: Value = serde_json::from_str(text).unwrap();
            assert_eq!(compiled, shipped, "{kind:?}");
            // Every pattern has a matcher.
            for p in text.split("\"x-csc-pattern\": ").skip(1) {
                let p: String = serde_json::Deserializer::from_str(p)
                    .into_iter::<String>()
                    .next()
                    .unwrap()
                    .unwrap();
                assert!(matcher(&p).is_some(), "{kind:?}: {p}");
            }
        }
    }

    fn pattern_validator() -> jsonschema::Validator {
        runtime_pattern(ABSOLUTE_PATH_PATTERN)
    }

    fn runtime_pattern(p: &str) -> jsonschema::Validator {
        jsonschema::draft202012::new(&serde_json::json!({ "pattern": p })).unwrap()
    }

    #[test]
    fn hash_patterns_agree_with_the_regex() {
        let h = "0123456789abcdef".repeat(4);
        let cases = [
            h.clone(),
            format!("{h}\n"),
            format!("\n{h}"),
            h[1..].to_owned(),
            format!("{h}0"),
            h.to_uppercase(),
            h.replace('a', "g"),
            format!("sha256:{h}"),
            format!("sha256:{h}\n"),
            format!("SHA256:{h}"),
            format!("sha256:{}", &h[1..]),
            format!("xsha256:{h}"),
            String::new(),
            "é".repeat(32),
        ];
        for p in [HEX64_PATTERN, STREAM_HASH_PATTERN] {
            let rt = runtime_pattern(p);
            let ours = matcher(p).unwrap();
            for s in &cases {
                assert_eq!(ours(s), rt.is_valid(&Value::from(s.as_str())), "{p} {s:?}");
            }
        }
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
