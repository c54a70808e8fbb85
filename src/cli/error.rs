//! The one error type of the command-line edge and its exit code.
//!
//! Library layers return their own typed errors ([`LoadError`], I/O and
//! JSON errors) or a message; verbs turn them into [`Error`] with `?` or
//! [`Error::Failed`], and [`super::main`] prints it and exits with
//! [`Error::exit_code`].

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
    /// The process exit code for this error: every error exits
    /// [`crate::exit::FAILURE`] (2 would read as "needs approval").
    pub fn exit_code(&self) -> u8 {
        crate::exit::FAILURE
    }
}
