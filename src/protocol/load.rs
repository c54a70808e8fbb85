//! Loading protocol documents from files or bytes: size caps, UTF-8,
//! strict JSON / YAML parsing, version tags, schema, runner limits.
//!
//! Every failure is a [`LoadError`] naming the file and the reason; nothing
//! here panics on input.

use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

use super::approval::{APPROVAL_VERSION, Approval};
use super::contract::{CONTRACT_VERSION, Contract};
use super::explain_schema::{self, Explained};
use super::limits;
use super::policy::{LoadedPolicy, POLICY_VERSION};
use super::schema::{self, Kind};
use super::strict_json;

/// Receipt version tag.
pub const RECEIPT_VERSION: &str = "csc.receipt.v0.1";

/// Why a document could not be loaded.
#[derive(Debug, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum LoadError {
    #[error("failed to read {kind} file {origin}: {source}")]
    Read {
        kind: &'static str,
        origin: String,
        source: std::io::Error,
    },
    #[error("{kind} file {origin} is {size} bytes (max {max})")]
    TooLarge {
        kind: &'static str,
        origin: String,
        size: usize,
        max: usize,
    },
    #[error("{kind} file {origin} is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 {
        kind: &'static str,
        origin: String,
        offset: usize,
    },
    #[error("invalid JSON in {kind} file {origin}: {message}")]
    Json {
        kind: &'static str,
        origin: String,
        message: String,
    },
    #[error("duplicate key in policy file {origin}{}: {message}", at(*.line, *.column))]
    YamlDuplicateKey {
        origin: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("invalid YAML in policy file {origin}{}: {message}", at(*.line, *.column))]
    Yaml {
        origin: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error(
        "policy file {origin}: {0}; the Python reference and csc would decide differently, so csc refuses the policy",
        .ambiguity
    )]
    YamlAmbiguous {
        origin: String,
        ambiguity: super::yaml11::Ambiguity,
    },
    #[error("policy file {origin} must contain a YAML mapping (found {found})")]
    NotMapping { origin: String, found: &'static str },
    #[error("{kind} file {origin} must contain a JSON object (found {found})")]
    NotObject {
        kind: &'static str,
        origin: String,
        found: &'static str,
    },
    #[error(
        "unsupported {kind} version {found} in `{field}` of {origin} (this runner supports {expected:?})"
    )]
    UnsupportedVersion {
        kind: &'static str,
        origin: String,
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("{kind} file {origin} fails schema validation:\n{}", list(.violations))]
    Schema {
        kind: &'static str,
        origin: String,
        violations: Vec<Explained>,
    },
    #[error("{kind} file {origin} exceeds runner limits:\n{}", list(.violations))]
    Limits {
        kind: &'static str,
        origin: String,
        violations: Vec<String>,
    },
    #[error("{kind} file {origin} is not a valid {kind}: {message}")]
    Model {
        kind: &'static str,
        origin: String,
        message: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l} column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl LoadError {
    /// The file (or other origin) the error is about.
    pub fn origin(&self) -> &str {
        match self {
            LoadError::Read { origin, .. }
            | LoadError::TooLarge { origin, .. }
            | LoadError::NotUtf8 { origin, .. }
            | LoadError::Json { origin, .. }
            | LoadError::YamlDuplicateKey { origin, .. }
            | LoadError::Yaml { origin, .. }
            | LoadError::YamlAmbiguous { origin, .. }
            | LoadError::NotMapping { origin, .. }
            | LoadError::NotObject { origin, .. }
            | LoadError::UnsupportedVersion { origin, .. }
            | LoadError::Schema { origin, .. }
            | LoadError::Limits { origin, .. }
            | LoadError::Model { origin, .. } => origin,
        }
    }

    /// Short stable name of the error class (`--json` errors' `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Read { .. } => "read",
            LoadError::TooLarge { .. } => "too_large",
            LoadError::NotUtf8 { .. } => "not_utf8",
            LoadError::Json { .. } => "json",
            LoadError::YamlDuplicateKey { .. } => "duplicate_key",
            LoadError::Yaml { .. } => "yaml",
            LoadError::YamlAmbiguous { .. } => "yaml_ambiguous",
            LoadError::NotMapping { .. } | LoadError::NotObject { .. } => "not_an_object",
            LoadError::UnsupportedVersion { .. } => "unsupported_version",
            LoadError::Schema { .. } => "schema",
            LoadError::Limits { .. } => "limits",
            LoadError::Model { .. } => "model",
        }
    }

    /// Line and column in the file, where the parser knows them.
    pub fn location(&self) -> (Option<usize>, Option<usize>) {
        match self {
            LoadError::Yaml { line, column, .. }
            | LoadError::YamlDuplicateKey { line, column, .. } => (*line, *column),
            _ => (None, None),
        }
    }

    /// The field a version error is about.
    pub fn field(&self) -> Option<&str> {
        match self {
            LoadError::UnsupportedVersion { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Every schema violation (empty for other errors).
    pub fn violations(&self) -> &[Explained] {
        match self {
            LoadError::Schema { violations, .. } => violations,
            _ => &[],
        }
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|v| format!("  - {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// Policy file syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFormat {
    /// YAML (1.2, with YAML 1.1 ambiguities refused).
    Yaml,
    /// JSON.
    Json,
}

impl PolicyFormat {
    /// `.json` files are JSON; everything else is YAML.
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => PolicyFormat::Json,
            _ => PolicyFormat::Yaml,
        }
    }
}

/// A contract with the JSON it was parsed from.
#[derive(Debug, Clone)]
pub struct LoadedContract {
    /// The typed contract.
    pub contract: Contract,
    /// The JSON document as read (hashed canonically for `contract_sha256`).
    pub raw: Value,
}

fn read_capped(path: &Path, kind: &'static str, max: usize) -> Result<Vec<u8>, LoadError> {
    use crate::fsutil::{CappedReadError, read_regular_file_capped};
    let origin = path.display().to_string();
    read_regular_file_capped(path, max as u64).map_err(|e| match e {
        CappedReadError::TooLarge { size } => LoadError::TooLarge {
            kind,
            origin,
            size: usize::try_from(size).unwrap_or(usize::MAX),
            max,
        },
        CappedReadError::NotAFile => LoadError::Read {
            kind,
            origin,
            source: std::io::Error::other("not a regular file"),
        },
        CappedReadError::Io(source) => LoadError::Read {
            kind,
            origin,
            source,
        },
    })
}

fn utf8<'a>(bytes: &'a [u8], kind: &'static str, origin: &str) -> Result<&'a str, LoadError> {
    std::str::from_utf8(bytes).map_err(|e| LoadError::NotUtf8 {
        kind,
        origin: origin.to_owned(),
        offset: e.valid_up_to(),
    })
}

fn parse_json_object(bytes: &[u8], kind: &'static str, origin: &str) -> Result<Value, LoadError> {
    utf8(bytes, kind, origin)?;
    let value = strict_json::parse(bytes).map_err(|e| LoadError::Json {
        kind,
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(LoadError::NotObject {
            kind,
            origin: origin.to_owned(),
            found: type_name(&value),
        });
    }
    Ok(value)
}

fn check_version(
    value: &Value,
    kind: &'static str,
    origin: &str,
    field: &'static str,
    expected: &'static str,
) -> Result<(), LoadError> {
    match value.get(field) {
        Some(Value::String(s)) if s == expected => Ok(()),
        None => Ok(()), // the schema reports the missing field
        Some(found) => Err(LoadError::UnsupportedVersion {
            kind,
            origin: origin.to_owned(),
            field,
            found: found.to_string(),
            expected,
        }),
    }
}

fn check_schema(kind: Kind, value: &Value, origin: &str) -> Result<(), LoadError> {
    let violations = schema::validate(kind, value);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Schema {
            kind: kind.as_str(),
            origin: origin.to_owned(),
            violations: explain_schema::explain(kind, value, &violations),
        })
    }
}

fn model<T: for<'de> Deserialize<'de>>(
    value: &Value,
    kind: &'static str,
    origin: &str,
) -> Result<T, LoadError> {
    T::deserialize(value).map_err(|e| LoadError::Model {
        kind,
        origin: origin.to_owned(),
        message: e.to_string(),
    })
}

/// Parse and fully validate contract bytes (`origin` names them in errors).
pub fn contract_from_bytes(bytes: &[u8], origin: &str) -> Result<LoadedContract, LoadError> {
    const KIND: &str = "contract";
    if bytes.len() > limits::MAX_CONTRACT_BYTES {
        return Err(LoadError::TooLarge {
            kind: KIND,
            origin: origin.to_owned(),
            size: bytes.len(),
            max: limits::MAX_CONTRACT_BYTES,
        });
    }
    let raw = parse_json_object(bytes, KIND, origin)?;
    contract_from_value(raw, origin)
}

/// Fully validate an already parsed contract document.
pub fn contract_from_value(raw: Value, origin: &str) -> Result<LoadedContract, LoadError> {
    const KIND: &str = "contract";
    check_version(&raw, KIND, origin, "version", CONTRACT_VERSION)?;
    check_schema(Kind::Contract, &raw, origin)?;
    let contract: Contract = model(&raw, KIND, origin)?;
    let violations = limits::contract_violations(&contract);
    if !violations.is_empty() {
        return Err(LoadError::Limits {
            kind: KIND,
            origin: origin.to_owned(),
            violations,
        });
    }
    Ok(LoadedContract { contract, raw })
}

/// Load and fully validate a contract file.
pub fn load_contract(path: &Path) -> Result<LoadedContract, LoadError> {
    let bytes = read_capped(path, "contract", limits::MAX_CONTRACT_BYTES)?;
    contract_from_bytes(&bytes, &path.display().to_string())
}

fn yaml_error(e: serde_saphyr::Error, origin: &str) -> LoadError {
    let location = e.location();
    let line = location.as_ref().map(|l| l.line() as usize);
    let column = location.as_ref().map(|l| l.column() as usize);
    let message = e.without_snippet().to_string();
    let mut message = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    // The location is printed once, before the message; the parser's
    // message repeats it (" at line 3, column 6", with the spots of
    // aliases after it in parentheses).
    if line.is_some()
        && let Some(i) = message.find(" at line ")
    {
        message.truncate(i);
    }
    if message.contains("duplicate mapping key") || message.contains("duplicate key") {
        LoadError::YamlDuplicateKey {
            origin: origin.to_owned(),
            line,
            column,
            message,
        }
    } else {
        LoadError::Yaml {
            origin: origin.to_owned(),
            line,
            column,
            message,
        }
    }
}

/// YAML parser options for policies: unknown tags (`!!python/object`,
/// `!custom`) are errors, as they are for the reference's safe loader —
/// silently dropping a tag would accept a policy the author meant otherwise.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.reject_unsupported_tags = true;
    options
}

/// How csc's YAML parser reads a standalone scalar document (for the
/// YAML 1.1 ambiguity check). Texts it cannot parse alone are strings:
/// every typed spelling parses on its own.
fn csc_scalar(doc: &str) -> super::yaml11::CscScalar {
    use super::yaml11::CscScalar;
    match serde_saphyr::from_str_with_options::<Value>(doc, yaml_options()) {
        Ok(Value::Null) => CscScalar::Null,
        Ok(Value::Bool(b)) => CscScalar::Bool(b),
        Ok(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => CscScalar::Int(i128::from(i)),
            (_, Some(u), _) => CscScalar::Int(i128::from(u)),
            (_, _, Some(f)) => CscScalar::Float(f),
            _ => CscScalar::Other,
        },
        Ok(Value::String(_)) | Err(_) => CscScalar::Str,
        Ok(_) => CscScalar::Other,
    }
}

/// Parse policy text into the mapping it holds (no schema check yet).
pub fn policy_value_from_bytes(
    bytes: &[u8],
    format: PolicyFormat,
    origin: &str,
) -> Result<Value, LoadError> {
    const KIND: &str = "policy";
    if bytes.len() > limits::MAX_POLICY_BYTES {
        return Err(LoadError::TooLarge {
            kind: KIND,
            origin: origin.to_owned(),
            size: bytes.len(),
            max: limits::MAX_POLICY_BYTES,
        });
    }
    let text = utf8(bytes, KIND, origin)?;
    let value: Value = match format {
        PolicyFormat::Json => strict_json::parse(bytes).map_err(|e| {
            if e.to_string().contains("duplicate key") {
                LoadError::YamlDuplicateKey {
                    origin: origin.to_owned(),
                    line: Some(e.line()),
                    column: Some(e.column()),
                    message: e.to_string(),
                }
            } else {
                LoadError::Json {
                    kind: KIND,
                    origin: origin.to_owned(),
                    message: e.to_string(),
                }
            }
        })?,
        PolicyFormat::Yaml => {
            let value = serde_saphyr::from_str_with_options(text, yaml_options())
                .map_err(|e| yaml_error(e, origin))?;
            super::yaml11::check(text, csc_scalar).map_err(|ambiguity| {
                LoadError::YamlAmbiguous {
                    origin: origin.to_owned(),
                    ambiguity,
                }
            })?;
            value
        }
    };
    if !value.is_object() {
        return Err(LoadError::NotMapping {
            origin: origin.to_owned(),
            found: type_name(&value),
        });
    }
    Ok(value)
}

/// Parse and fully validate policy bytes.
pub fn policy_from_bytes(
    bytes: &[u8],
    format: PolicyFormat,
    origin: &str,
) -> Result<LoadedPolicy, LoadError> {
    let raw = policy_value_from_bytes(bytes, format, origin)?;
    check_version(
        &raw,
        "policy",
        origin,
        "policy_schema_version",
        POLICY_VERSION,
    )?;
    check_schema(Kind::Policy, &raw, origin)?;
    LoadedPolicy::from_value(raw).map_err(|e| LoadError::Model {
        kind: "policy",
        origin: origin.to_owned(),
        message: e.to_string(),
    })
}

/// Load and fully validate a policy file (YAML, or JSON for `.json`).
pub fn load_policy(path: &Path) -> Result<LoadedPolicy, LoadError> {
    let bytes = read_capped(path, "policy", limits::MAX_POLICY_BYTES)?;
    policy_from_bytes(
        &bytes,
        PolicyFormat::for_path(path),
        &path.display().to_string(),
    )
}

/// Parse and fully validate approval bytes.
pub fn approval_from_bytes(bytes: &[u8], origin: &str) -> Result<Approval, LoadError> {
    const KIND: &str = "approval";
    let raw = parse_json_object(bytes, KIND, origin)?;
    check_version(&raw, KIND, origin, "approval_version", APPROVAL_VERSION)?;
    check_schema(Kind::Approval, &raw, origin)?;
    model(&raw, KIND, origin)
}

/// Load and fully validate an approval file.
pub fn load_approval(path: &Path) -> Result<Approval, LoadError> {
    let bytes = read_capped(path, "approval", limits::MAX_ARTIFACT_BYTES)?;
    approval_from_bytes(&bytes, &path.display().to_string())
}

/// The receipt without its `signature` member: what the schema covers.
pub fn receipt_without_signature(receipt: &Value) -> Value {
    let mut copy = receipt.clone();
    if let Some(obj) = copy.as_object_mut() {
        obj.remove("signature");
    }
    copy
}

/// Parse receipt bytes and validate them (without `signature`) against the
/// schema; returns the full document including any signature.
pub fn receipt_from_bytes(bytes: &[u8], origin: &str) -> Result<Value, LoadError> {
    const KIND: &str = "receipt";
    let raw = parse_json_object(bytes, KIND, origin)?;
    check_version(&raw, KIND, origin, "receipt_version", RECEIPT_VERSION)?;
    check_schema(Kind::Receipt, &receipt_without_signature(&raw), origin)?;
    Ok(raw)
}

/// Load and validate a receipt file.
pub fn load_receipt(path: &Path) -> Result<Value, LoadError> {
    let bytes = read_capped(path, "receipt", limits::MAX_ARTIFACT_BYTES)?;
    receipt_from_bytes(&bytes, &path.display().to_string())
}

/// Validate bytes of any kind, listing every problem (for `csc validate`).
pub fn validate_bytes(kind: Kind, bytes: &[u8], format: PolicyFormat, origin: &str) -> Vec<String> {
    match validate_document(kind, bytes, format, origin) {
        Ok(()) => Vec::new(),
        Err(LoadError::Schema { violations, .. }) => {
            violations.iter().map(|v| v.to_string()).collect()
        }
        Err(LoadError::Limits { violations, .. }) => violations,
        Err(e) => vec![e.to_string()],
    }
}

/// Validate bytes of any kind: the first error, with every schema
/// violation in it.
pub fn validate_document(
    kind: Kind,
    bytes: &[u8],
    format: PolicyFormat,
    origin: &str,
) -> Result<(), LoadError> {
    match kind {
        Kind::Contract => contract_from_bytes(bytes, origin).map(|_| ()),
        Kind::Policy => policy_from_bytes(bytes, format, origin).map(|_| ()),
        Kind::Approval => approval_from_bytes(bytes, origin).map(|_| ()),
        Kind::Receipt => receipt_from_bytes(bytes, origin).map(|_| ()),
        Kind::Decision => parse_json_object(bytes, "decision", origin)
            .and_then(|raw| check_schema(Kind::Decision, &raw, origin)),
    }
}

/// Read a file for [`validate_bytes`] with the cap that applies to `kind`.
pub fn read_for_validation(kind: Kind, path: &Path) -> Result<Vec<u8>, LoadError> {
    let max = match kind {
        Kind::Contract => limits::MAX_CONTRACT_BYTES,
        Kind::Policy => limits::MAX_POLICY_BYTES,
        _ => limits::MAX_ARTIFACT_BYTES,
    };
    read_capped(path, kind.as_str(), max)
}
