//! Execution receipts: build, schema-check (without `signature`), sign,
//! and write atomically.

use ed25519_dalek::SigningKey;
use serde::Serialize;
use serde_json::Value;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::fsutil::DirFd;
use crate::protocol::load::RECEIPT_VERSION;
use crate::protocol::schema::{self, Kind};

/// Receipt `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Every command exited 0.
    Success,
    /// A command failed, timed out or could not start.
    Failed,
    /// Refused before or between commands (policy, approval, runtime check).
    Blocked,
    /// The approval had expired.
    Expired,
}

/// One `artifacts` entry (an expected output and its hash; collected by
/// `exec::effects::collect_artifacts`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    /// The expected output path, as declared.
    pub path: String,
    /// Lowercase hex SHA-256 of its content.
    pub sha256: String,
}

/// `effect_summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectSummary {
    /// Regular files under the declared write scopes created or changed
    /// during the run (measured; see `exec::effects`).
    pub files_written: u64,
    /// Any executed command declared a network mode other than `deny`.
    pub network_used: bool,
    /// Secret references declared by the executed commands.
    pub secrets_used: u64,
}

/// An ExecutionReceipt v0.1 (unsigned form).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[allow(
    missing_docs,
    reason = "field for field the v0.1 receipt (schemas/csc.receipt.v0.1.schema.json documents every field)"
)]
pub struct Receipt {
    pub receipt_version: &'static str,
    pub contract_id: String,
    pub execution_id: String,
    pub contract_sha256: String,
    pub status: ReceiptStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_truncated: Option<bool>,
    pub started_at: String,
    pub ended_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<Artifact>>,
    pub policy_profile: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_schema_version: Option<String>,
    pub policy_sha256: String,
    pub runner_version: String,
    pub execution_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_profile_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect_summary: Option<EffectSummary>,
    pub completed_command_ids: Vec<String>,
    /// Serialized as `null` when no command failed.
    pub failed_command_id: Option<String>,
    pub error: String,
}

/// Identity fields shared by every receipt of one run.
#[derive(Debug, Clone)]
pub struct ReceiptBase {
    /// The contract's id.
    pub contract_id: String,
    /// Unique per run (`exec_` + 128 random bits).
    pub execution_id: String,
    /// Canonical hash of the contract.
    pub contract_sha256: String,
    /// The policy's `name`.
    pub policy_profile: String,
    /// The policy's version tag, when present.
    pub policy_schema_version: Option<String>,
    /// Canonical hash of the policy mapping as parsed.
    pub policy_sha256: String,
    /// `local` or `hardened`.
    pub execution_mode: &'static str,
    /// Id of the sandbox profile enforced (hardened mode only).
    pub sandbox_profile_id: Option<String>,
    /// When the run started (RFC 3339).
    pub started_at: String,
}

impl Receipt {
    /// A receipt with the given status and no execution details yet.
    pub fn new(base: &ReceiptBase, status: ReceiptStatus, ended_at: String, error: &str) -> Self {
        Receipt {
            receipt_version: RECEIPT_VERSION,
            contract_id: base.contract_id.clone(),
            execution_id: base.execution_id.clone(),
            contract_sha256: base.contract_sha256.clone(),
            status,
            exit_code: None,
            stdout_hash: None,
            stderr_hash: None,
            stdout_truncated: None,
            stderr_truncated: None,
            started_at: base.started_at.clone(),
            ended_at,
            artifacts: None,
            policy_profile: base.policy_profile.clone(),
            policy_schema_version: base.policy_schema_version.clone(),
            policy_sha256: base.policy_sha256.clone(),
            runner_version: crate::RUNNER_VERSION.to_owned(),
            execution_mode: base.execution_mode,
            sandbox_profile_id: base.sandbox_profile_id.clone(),
            signing_key_id: None,
            effect_summary: None,
            completed_command_ids: Vec::new(),
            failed_command_id: None,
            error: receipt_error(error),
        }
    }
}

/// The `error` text as recorded: control and display-reordering characters
/// escaped (see [`crate::text`]), then truncated to the v0.1 cap. The
/// receipt is read by people and by tools that print it raw (`jq -r`), so
/// it never carries terminal sequences; the command's exact stderr bytes
/// stay bound by `stderr_hash` (and saved by `--output-dir`).
pub fn receipt_error(error: &str) -> String {
    crate::protocol::limits::truncate_error(&crate::text::escape_control(error))
}

/// Token that starts `error` when `effect_summary.files_written` is only a
/// lower bound (RFC 0007). Only csc writes the start of `error`, so a
/// command cannot forge or hide it.
pub const LOWER_BOUND_MARKER: &str = "csc:lower-bound:files_written";

/// `error` with the lower-bound marker and its reason in front (so
/// truncation never removes it), followed by the other errors, if any.
pub fn mark_lower_bound(reason: &str, error: &str) -> String {
    if error.is_empty() {
        format!("{LOWER_BOUND_MARKER} ({reason})")
    } else {
        format!("{LOWER_BOUND_MARKER} ({reason}); {error}")
    }
}

/// Whether a receipt `error` says `files_written` is only a lower bound.
pub fn is_lower_bound(error: &str) -> bool {
    error.starts_with(LOWER_BOUND_MARKER)
}

/// Why a receipt could not be produced or written.
#[derive(Debug, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum ReceiptError {
    #[error("receipt does not satisfy the v0.1 receipt schema (runner bug):\n{0}")]
    Schema(String),
    #[error("cannot serialize receipt: {0}")]
    Serialize(String),
    #[error("cannot sign receipt: {0}")]
    Sign(String),
    #[error("cannot write receipt to {path}: {reason}")]
    Write { path: String, reason: String },
}

/// The operator's signing configuration.
pub struct Signer<'a> {
    /// The Ed25519 signing key (validated before anything ran).
    pub key: &'a SigningKey,
    /// The key id recorded in the signature and `signing_key_id`.
    pub key_id: &'a str,
}

fn sort_all(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_all);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_all),
        _ => {}
    }
}

/// Schema-check, optionally sign, and serialize (sorted keys, 2-space
/// indent, trailing newline — like the reference).
pub fn render(
    receipt: &Receipt,
    signer: Option<&Signer<'_>>,
    signed_at: &str,
) -> Result<Vec<u8>, ReceiptError> {
    let mut receipt = receipt.clone();
    if let Some(s) = signer {
        receipt.signing_key_id = Some(s.key_id.to_owned());
    }
    let mut value =
        serde_json::to_value(&receipt).map_err(|e| ReceiptError::Serialize(e.to_string()))?;
    let violations = schema::validate(Kind::Receipt, &value);
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(|v| format!("  - {v}")).collect();
        return Err(ReceiptError::Schema(list.join("\n")));
    }
    if let Some(s) = signer {
        crate::evidence::signing::sign_receipt(&mut value, s.key, s.key_id, signed_at)
            .map_err(ReceiptError::Sign)?;
    }
    sort_all(&mut value);
    let mut bytes =
        serde_json::to_vec_pretty(&value).map_err(|e| ReceiptError::Serialize(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// `exec_` + 128 random bits (hex) from the OS.
pub fn new_execution_id() -> std::io::Result<String> {
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(format!("exec_{}", crate::canonical::hex(&raw)))
}

/// Where the receipt goes: its directory, opened (and created) once before
/// anything runs, and the final file name in it. Every write goes through
/// the directory descriptor (see [`crate::fsutil::DirFd::write_atomic`]),
/// so a command that swaps the directory for a symlink during the run
/// cannot redirect the receipt.
#[derive(Debug)]
pub struct ReceiptOut {
    dir: DirFd,
    name: OsString,
    /// Temp name the write goes through (chosen at open).
    tmp: OsString,
    path: PathBuf,
}

impl ReceiptOut {
    /// Open the receipt's directory (creating parents) and check that the
    /// receipt can be written there: its temp file can be created and no
    /// directory, symlink or other non-regular file sits at `path`.
    /// Interrupted writes' stale temp files are removed.
    pub fn open(path: &Path) -> Result<ReceiptOut, ReceiptError> {
        let fail = |reason: String| ReceiptError::Write {
            path: path.display().to_string(),
            reason,
        };
        let name = match path.file_name() {
            Some(n) if crate::fsutil::is_plain_name(n) => n.to_os_string(),
            _ => return Err(fail("not a file path".to_owned())),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = DirFd::open(&parent, true)
            .map_err(|e| fail(format!("cannot open directory {}: {e}", parent.display())))?;
        dir.remove_stale_temps(&name);
        let tmp = dir.temp_name(&name);
        dir.probe(&name, &tmp).map_err(|e| fail(e.to_string()))?;
        Ok(ReceiptOut {
            dir,
            name,
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// The receipt path as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The opened directory (for the write-scope check).
    pub fn dir(&self) -> &DirFd {
        &self.dir
    }

    /// The receipt file as the kernel resolves it now.
    pub fn real_path(&self) -> std::io::Result<PathBuf> {
        Ok(self.dir.real_path()?.join(&self.name))
    }

    /// Write `bytes` atomically as the receipt. The directory was swept
    /// of stale temps and the temp name chosen when it was opened, so
    /// what is left runs straight to the flushes.
    pub fn write(&self, bytes: &[u8]) -> Result<(), ReceiptError> {
        self.dir
            .write_atomic_via(&self.name, &self.tmp, bytes)
            .map_err(|e| ReceiptError::Write {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            })
    }
}

/// Write `bytes` to `path` atomically: parent dirs created, temp file in
/// the same directory (`O_EXCL|O_NOFOLLOW`), write + fsync, rename, fsync
/// the directory. An existing non-regular file at `path` (device,
/// directory, socket, FIFO, symlink) is never replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReceiptError> {
    ReceiptOut::open(path)?.write(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ReceiptBase {
        ReceiptBase {
            contract_id: "c-12345678".into(),
            execution_id: new_execution_id().unwrap(),
            contract_sha256: "a".repeat(64),
            policy_profile: "p".into(),
            policy_schema_version: Some("csc.policy.v0.1".into()),
            policy_sha256: "b".repeat(64),
            execution_mode: "local",
            sandbox_profile_id: None,
            started_at: "2026-01-01T00:00:00.000000+00:00".into(),
        }
    }

    #[test]
    fn blocked_receipt_is_schema_valid_and_signed_one_verifies() {
        let r = Receipt::new(
            &base(),
            ReceiptStatus::Blocked,
            "2026-01-01T00:00:01.000000+00:00".into(),
            "no",
        );
        let bytes = render(&r, None, "").unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["failed_command_id"], Value::Null);
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let signer = Signer {
            key: &key,
            key_id: "k1",
        };
        let bytes = render(&r, Some(&signer), "2026-01-01T00:00:02+00:00").unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["signing_key_id"], "k1");
        let vk = key.verifying_key();
        crate::evidence::signing::verify_receipt(&v, |_| Some(vk)).unwrap();
    }

    #[test]
    fn failed_receipt_without_hashes_is_rejected() {
        let r = Receipt::new(&base(), ReceiptStatus::Failed, "x".into(), "");
        assert!(matches!(render(&r, None, ""), Err(ReceiptError::Schema(_))));
    }

    #[test]
    fn lower_bound_marker_survives_truncation_and_escaping() {
        let long = format!("command \"x\" failed: \x1b[32mSUCCESS{}", "é".repeat(5000));
        let marked = receipt_error(&mark_lower_bound("the scan stopped", &long));
        assert!(is_lower_bound(&marked), "{marked}");
        assert!(marked.starts_with("csc:lower-bound:files_written (the scan stopped); command"));
        assert!(!marked.contains('\x1b') && marked.contains("\\x1b[32m"));
        assert_eq!(
            marked.chars().count(),
            crate::protocol::limits::MAX_RECEIPT_ERROR_CHARS
        );
        assert!(!is_lower_bound(&receipt_error(&long)));
        let r = Receipt::new(
            &base(),
            ReceiptStatus::Blocked,
            "2026-01-01T00:00:01.000000+00:00".into(),
            &mark_lower_bound("x", ""),
        );
        assert!(render(&r, None, "").is_ok());
    }

    #[test]
    fn execution_ids_are_unique() {
        let a = new_execution_id().unwrap();
        assert_eq!(a.len(), 5 + 32);
        assert_ne!(a, new_execution_id().unwrap());
    }

    #[test]
    fn atomic_write_refuses_devices_and_creates_parents() {
        assert!(write_atomic(Path::new("/dev/null"), b"x").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/r.json");
        write_atomic(&p, b"{}\n").unwrap();
        write_atomic(&p, b"{ }\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{ }\n");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
