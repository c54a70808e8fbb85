//! The one error type of the command-line edge and its exit code.
//!
//! Library layers return their own typed errors ([`LoadError`], I/O and
//! JSON errors) or a message; verbs turn them into [`Error`] with `?` or
//! [`Error::Failed`], and [`super::main`] prints it and exits with
//! [`Error::exit_code`].

use serde_json::{Value, json};

use crate::protocol::load::LoadError;

/// Why a verb stopped without a result of its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A contract, policy, approval or receipt file could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Operator flags that are missing, contradict each other or are out
    /// of range.
    #[error("{0}")]
    Usage(String),
    /// An I/O failure of csc itself (not of a command it ran).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A receipt could not be rendered, signed or written.
    #[error(transparent)]
    Receipt(#[from] crate::evidence::receipt::ReceiptError),
    /// A key file could not be read, parsed or written.
    #[error(transparent)]
    Key(#[from] crate::evidence::keys::KeyError),
    /// A key file could not be written (`csc keygen`).
    #[error(transparent)]
    WriteKey(#[from] crate::evidence::keygen::WriteKeyError),
    /// A keyring could not be loaded.
    #[error(transparent)]
    Keyring(#[from] crate::evidence::keyring::KeyringError),
    /// The state directory (approval store, ledger) failed.
    #[error(transparent)]
    Store(#[from] crate::approval::store::StoreError),
    /// The hardened sandbox could not be started or waited for.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// A JSON document csc produces could not be encoded.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Anything else that stopped the verb, with its message.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Short stable name of the error class (`kind` of the JSON error).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Load(e) => e.kind(),
            Error::Usage(_) => "usage",
            Error::Receipt(_) => "receipt",
            Error::Key(_) | Error::WriteKey(_) => "key",
            Error::Keyring(_) => "keyring",
            Error::Store(_) => "state",
            Error::Sandbox(_) => "sandbox",
            Error::Io(_) => "io",
            Error::Json(_) => "json_encode",
            Error::Failed(_) => "failed",
        }
    }

    /// The error as `--json` verbs print it on stdout:
    /// `{"error": {"kind", "message", "file", "line", "column", "field",
    /// "hint", "problems": [{"field", "message", "hint"}]}}` (absent
    /// facts are `null`; `problems` lists every schema violation).
    pub fn to_json(&self) -> Value {
        match self {
            Error::Load(e) => json!({ "error": load_error_body(e) }),
            other => json!({"error": {
                "kind": other.kind(), "message": other.to_string(), "file": null,
                "line": null, "column": null, "field": null, "hint": null, "problems": [],
            }}),
        }
    }

    /// The process exit code for this error: every error exits
    /// [`crate::exit::FAILURE`] (2 would read as "needs approval").
    pub fn exit_code(&self) -> u8 {
        crate::exit::FAILURE
    }
}

/// The body of a JSON error for a document that could not be loaded.
pub fn load_error_body(e: &LoadError) -> Value {
    let (line, column) = e.location();
    let problems: Vec<Value> = e
        .violations()
        .iter()
        .map(|v| json!({"field": v.pointer, "message": v.message, "hint": v.hint}))
        .collect();
    let first = e.violations().first();
    let field = first.map(|v| {
        if v.pointer.is_empty() {
            "/"
        } else {
            v.pointer.as_str()
        }
    });
    json!({
        "kind": e.kind(),
        "message": e.to_string(),
        "file": e.origin(),
        "line": line,
        "column": column,
        "field": field.or(e.field()),
        "hint": e.violations().iter().find_map(|v| v.hint.as_deref()),
        "problems": problems,
    })
}
