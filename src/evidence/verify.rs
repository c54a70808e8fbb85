//! Auditor-side receipt verification: schema, signature, trusted key status,
//! and optional bindings to a contract, a policy, saved outputs and
//! artifacts.
//!
//! Every check that fails becomes a [`Problem`] with a stable `code` and a
//! human message; a receipt is valid only when it has no problems (fail
//! closed). Nothing here panics on input.
//!
//! Saved-output layout (`--outputs DIR`): the executor saves each executed
//! command's captured streams as `DIR/<command_id>.stdout` and
//! `DIR/<command_id>.stderr` (exactly the captured bytes — the prefix when
//! the capture cap was hit). A v0.1 receipt carries the hashes of the LAST
//! executed command only; see [`check_outputs`] for how that command is
//! found. Documented in `docs/verify-receipt.md`.

use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::keyring::{KeyRejection, Keyring};
use super::signing::{self, VerifyError};
use crate::protocol::load;

/// `sha256:` digest of zero bytes.
pub const EMPTY_STREAM_HASH: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Members a `signature` object may have.
const SIGNATURE_MEMBERS: [&str; 4] = ["algorithm", "key_id", "signed_at", "signature"];

/// One reason a receipt is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable machine-readable code (e.g. `bad_signature`).
    pub code: &'static str,
    /// Human explanation.
    pub message: String,
}

impl Problem {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// The verdict on one receipt file.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptReport {
    /// The receipt path as given.
    pub receipt: String,
    /// True only when `problems` is empty.
    pub valid: bool,
    /// `contract_id`, when the receipt could be read.
    pub contract_id: Option<String>,
    /// `status`, when the receipt could be read.
    pub status: Option<String>,
    /// `signature.key_id`, when present.
    pub key_id: Option<String>,
    /// The checks that were performed (`schema`, `signature`, `contract`, ...).
    pub checked: Vec<&'static str>,
    /// Everything that failed.
    pub problems: Vec<Problem>,
}

impl ReceiptReport {
    /// A report on `receipt` (a path or label) with nothing checked yet:
    /// not valid, no fields read, no problems.
    pub fn new(receipt: impl Into<String>) -> ReceiptReport {
        ReceiptReport {
            receipt: receipt.into(),
            valid: false,
            contract_id: None,
            status: None,
            key_id: None,
            checked: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// What to check besides schema and signature.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    /// Expected `contract_sha256`.
    pub contract_sha256: Option<String>,
    /// Expected `policy_sha256`.
    pub policy_sha256: Option<String>,
    /// Directory of saved outputs; also turns on artifact checks.
    pub outputs_dir: Option<PathBuf>,
}

/// Verifies receipts against a keyring and optional bindings. Build once,
/// verify many: keys are parsed once.
#[derive(Debug, Clone)]
pub struct Verifier {
    keyring: Keyring,
    bindings: Bindings,
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

fn signature_problem(e: VerifyError) -> Problem {
    let code = match &e {
        VerifyError::NotAnObject => "malformed_receipt",
        VerifyError::Missing => "missing_signature",
        VerifyError::Malformed => "malformed_signature",
        VerifyError::Algorithm(_) => "unsupported_algorithm",
        VerifyError::MissingKeyId => "missing_key_id",
        VerifyError::MissingValue => "missing_signature_value",
        VerifyError::BadBase64(_) => "bad_signature_encoding",
        VerifyError::UnknownKey(_) => "unknown_key_id",
        VerifyError::BadSignature => "bad_signature",
    };
    Problem::new(code, e.to_string())
}

fn key_problem(e: KeyRejection) -> Problem {
    let code = match &e {
        KeyRejection::Unknown(_) => "unknown_key_id",
        KeyRejection::Revoked(_) => "key_revoked",
        KeyRejection::NotYetValid { .. } => "key_not_yet_valid",
        KeyRejection::Expired { .. } => "key_expired",
        KeyRejection::BadSignedAt { .. } => "bad_signed_at",
    };
    Problem::new(code, e.to_string())
}

/// Largest attestation file (`.intoto.jsonl`) read.
pub const MAX_ATTESTATION_BYTES: u64 = 16 * 1024 * 1024;

/// The file's bytes when it is an attestation: its first non-empty line is
/// a JSON object with a `payloadType` member (a DSSE envelope).
fn attestation_bytes(path: &Path) -> Option<Vec<u8>> {
    let bytes = crate::fsutil::read_regular_file_capped(path, MAX_ATTESTATION_BYTES).ok()?;
    let first = bytes
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))?;
    let v: Value = serde_json::from_slice(first).ok()?;
    v.get("payloadType")?;
    Some(bytes)
}

/// SHA-256 of a regular file as `sha256:<hex>` (devices, FIFOs and
/// directories are refused without blocking).
pub fn stream_hash_of_file(path: &Path) -> std::io::Result<String> {
    Ok(format!(
        "sha256:{}",
        crate::fsutil::hash::sha256_regular_file(path)?
    ))
}

/// A command id usable as a file name in the outputs directory: the same
/// rule `csc run --output-dir` applies before the run.
fn safe_file_stem(id: &str) -> bool {
    crate::fsutil::is_output_stem(id)
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// The `.stdout`/`.stderr` pair of the last command in `order` that has
/// both saved in `dir`; half pairs and unusable ids are problems.
fn last_saved_pair(
    order: &[&str],
    dir: &Path,
    problems: &mut Vec<Problem>,
) -> Option<(PathBuf, PathBuf)> {
    let mut last = None;
    for id in order {
        if !safe_file_stem(id) {
            problems.push(Problem::new(
                "output_unusable_command_id",
                format!("command id {id:?} cannot name a file in {}", dir.display()),
            ));
            continue;
        }
        let out = dir.join(format!("{id}.stdout"));
        let err = dir.join(format!("{id}.stderr"));
        match (exists(&out), exists(&err)) {
            (true, true) => last = Some((out, err)),
            (false, false) => {}
            (true, false) => problems.push(Problem::new(
                "output_missing",
                format!("{} is missing (its .stdout exists)", err.display()),
            )),
            (false, true) => problems.push(Problem::new(
                "output_missing",
                format!("{} is missing (its .stderr exists)", out.display()),
            )),
        }
    }
    last
}

/// Check saved outputs in `dir` against the receipt's stream hashes.
///
/// Execution order is `completed_command_ids` followed by
/// `failed_command_id` (when non-null). Outputs of a command are saved as a
/// pair; one file without the other is a problem. The receipt's
/// `stdout_hash`/`stderr_hash` must match the pair of the last command in
/// execution order that has saved outputs. When no command has saved
/// outputs, the receipt is accepted only if nothing completed and both
/// hashes are of empty input (the run stopped before the first command
/// started); otherwise the outputs are reported missing.
pub fn check_outputs(receipt: &Value, dir: &Path, problems: &mut Vec<Problem>) {
    let stdout_hash = str_field(receipt, "stdout_hash");
    let stderr_hash = str_field(receipt, "stderr_hash");
    if stdout_hash.is_none() && stderr_hash.is_none() {
        return; // e.g. a blocked receipt: no command output to bind
    }
    let completed: Vec<&str> = receipt
        .get("completed_command_ids")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut order = completed.clone();
    if let Some(failed) = str_field(receipt, "failed_command_id") {
        order.push(failed);
    }
    let problems_before = problems.len();
    let Some((out, err)) = last_saved_pair(&order, dir, problems) else {
        let nothing_ran = completed.is_empty()
            && stdout_hash == Some(EMPTY_STREAM_HASH)
            && stderr_hash == Some(EMPTY_STREAM_HASH);
        if !nothing_ran && problems.len() == problems_before {
            problems.push(Problem::new(
                "output_missing",
                format!(
                    "no saved outputs in {} for any executed command (expected <command_id>.stdout/.stderr)",
                    dir.display()
                ),
            ));
        }
        return;
    };
    for (file, field, expected) in [
        (out, "stdout_hash", stdout_hash),
        (err, "stderr_hash", stderr_hash),
    ] {
        let Some(expected) = expected else {
            problems.push(Problem::new(
                "output_mismatch",
                format!("receipt has no {field} but {} exists", file.display()),
            ));
            continue;
        };
        match stream_hash_of_file(&file) {
            Ok(actual) if actual == expected => {}
            Ok(actual) => problems.push(Problem::new(
                "output_mismatch",
                format!(
                    "{} hashes to {actual}, receipt {field} is {expected}",
                    file.display()
                ),
            )),
            Err(e) => problems.push(Problem::new(
                "output_unreadable",
                format!("{}: {e}", file.display()),
            )),
        }
    }
}

/// Check every `artifacts[]` entry: the file at `path` must exist, be a
/// regular file, and hash to `sha256`.
pub fn check_artifacts(receipt: &Value, problems: &mut Vec<Problem>) {
    let Some(artifacts) = receipt.get("artifacts").and_then(Value::as_array) else {
        return;
    };
    for a in artifacts {
        let (Some(path), Some(expected)) = (str_field(a, "path"), str_field(a, "sha256")) else {
            problems.push(Problem::new(
                "artifact_malformed",
                "artifact entry without path/sha256",
            ));
            continue;
        };
        let p = Path::new(path);
        if !p.is_absolute() {
            problems.push(Problem::new(
                "artifact_path_not_absolute",
                format!("artifact path {path:?} is not absolute"),
            ));
            continue;
        }
        if !exists(p) {
            problems.push(Problem::new(
                "artifact_missing",
                format!("artifact {path} does not exist"),
            ));
            continue;
        }
        match stream_hash_of_file(p) {
            Ok(actual) if actual.strip_prefix("sha256:") == Some(expected) => {}
            Ok(actual) => problems.push(Problem::new(
                "artifact_mismatch",
                format!("artifact {path} hashes to {actual}, receipt says sha256:{expected}"),
            )),
            Err(e) => problems.push(Problem::new(
                "artifact_unreadable",
                format!("artifact {path}: {e}"),
            )),
        }
    }
}

impl Verifier {
    /// A verifier trusting `keyring`, checking `bindings`.
    pub fn new(keyring: Keyring, bindings: Bindings) -> Self {
        Verifier { keyring, bindings }
    }

    /// Name both sides of an unknown key: the signer and what is trusted.
    fn unknown_key(&self, key_id: &str) -> String {
        let trusted: Vec<String> = self
            .keyring
            .key_ids()
            .iter()
            .map(|id| format!("{id:?}"))
            .collect();
        format!(
            "receipt signed with key_id {key_id:?}, but the trusted key_id(s) are {} (--key-id / --keyring)",
            trusted.join(", ")
        )
    }

    /// Verify the signature block of a parsed receipt.
    pub fn check_signature(&self, receipt: &Value, problems: &mut Vec<Problem>) {
        let verdict =
            signing::verify_receipt(receipt, |id| self.keyring.get(id).map(|entry| entry.key));
        if let Err(e) = verdict {
            let p = match &e {
                VerifyError::UnknownKey(id) => Problem::new("unknown_key_id", self.unknown_key(id)),
                _ => signature_problem(e),
            };
            problems.push(p);
            return;
        }
        // The signature is cryptographically good; now the metadata.
        let Some(sig) = receipt.get("signature").and_then(Value::as_object) else {
            problems.push(signature_problem(VerifyError::Malformed));
            return;
        };
        if let Some(extra) = sig
            .keys()
            .find(|k| !SIGNATURE_MEMBERS.contains(&k.as_str()))
        {
            problems.push(Problem::new(
                "malformed_signature",
                format!("unexpected member {extra:?} in signature object"),
            ));
        }
        let signed_at = sig.get("signed_at").and_then(Value::as_str);
        if signed_at.and_then(crate::time::parse).is_none() {
            problems.push(Problem::new(
                "bad_signed_at",
                format!(
                    "signature.signed_at {} is not an RFC 3339 date-time",
                    sig.get("signed_at")
                        .map(Value::to_string)
                        .unwrap_or_else(|| "(missing)".into())
                ),
            ));
        }
        let key_id = sig.get("key_id").and_then(Value::as_str).unwrap_or("");
        if let Err(e) = self.keyring.usable_key(key_id, signed_at) {
            let mut p = key_problem(e);
            if p.code == "unknown_key_id" {
                p.message = self.unknown_key(key_id);
            }
            problems.push(p);
        }
        if let Some(declared) = str_field(receipt, "signing_key_id")
            && declared != key_id
        {
            problems.push(Problem::new(
                "signing_key_id_mismatch",
                format!(
                    "receipt signing_key_id {declared:?} differs from signature.key_id {key_id:?}"
                ),
            ));
        }
    }

    /// Verify an already parsed, schema-valid receipt.
    pub fn verify_value(&self, receipt: &Value, report: &mut ReceiptReport) {
        let problems = &mut report.problems;
        report.checked.push("signature");
        self.check_signature(receipt, problems);
        if let Some(expected) = &self.bindings.contract_sha256 {
            report.checked.push("contract");
            let found = str_field(receipt, "contract_sha256").unwrap_or("");
            if found != expected {
                problems.push(Problem::new(
                    "contract_mismatch",
                    format!("contract_sha256 {found} differs from the given contract's {expected}"),
                ));
            }
        }
        if let Some(expected) = &self.bindings.policy_sha256 {
            report.checked.push("policy");
            match str_field(receipt, "policy_sha256") {
                None => problems.push(Problem::new(
                    "policy_sha256_missing",
                    "receipt has no policy_sha256 to compare with the given policy",
                )),
                Some(found) if found != expected => problems.push(Problem::new(
                    "policy_mismatch",
                    format!("policy_sha256 {found} differs from the given policy's {expected}"),
                )),
                Some(_) => {}
            }
        }
        if let Some(dir) = &self.bindings.outputs_dir {
            report.checked.push("outputs");
            check_outputs(receipt, dir, problems);
            report.checked.push("artifacts");
            check_artifacts(receipt, problems);
        }
    }

    /// Load (size cap, strict JSON, schema without `signature`) and verify
    /// one receipt file.
    pub fn verify_file(&self, path: &Path) -> ReceiptReport {
        let mut report = ReceiptReport::new(path.display().to_string());
        report.checked.push("schema");
        // Refuse FIFOs/devices before opening: opening a FIFO would block.
        if let Ok(meta) = std::fs::metadata(path)
            && !meta.is_file()
        {
            report.problems.push(Problem::new(
                "unreadable",
                format!("receipt {} is not a regular file", path.display()),
            ));
            return report;
        }
        match load::load_receipt(path) {
            Err(_) if let Some(bytes) = attestation_bytes(path) => {
                self.verify_attestation(&bytes, &mut report);
            }
            Err(e) => {
                let code = match e {
                    load::LoadError::Read { .. } => "unreadable",
                    load::LoadError::TooLarge { .. } => "too_large",
                    load::LoadError::Schema { .. } => "schema",
                    load::LoadError::UnsupportedVersion { .. } => "unsupported_version",
                    _ => "malformed_receipt",
                };
                let text = e.to_string();
                let one_line: Vec<&str> = text.lines().map(str::trim).collect();
                report.problems.push(Problem::new(code, one_line.join(" ")));
            }
            Ok(receipt) => {
                report.contract_id = str_field(&receipt, "contract_id").map(str::to_owned);
                report.status = str_field(&receipt, "status").map(str::to_owned);
                report.key_id = signing::signature_key_id(&receipt).map(str::to_owned);
                self.verify_value(&receipt, &mut report);
            }
        }
        report.valid = report.problems.is_empty();
        report
    }

    /// Verify an in-toto attestation file (RFC 0012): every line a DSSE
    /// envelope signed by a keyring key, whose Statement matches its
    /// predicate receipt, which is then verified like a receipt file.
    fn verify_attestation(&self, bytes: &[u8], report: &mut ReceiptReport) {
        report.checked.push("attestation");
        let lines: Vec<&[u8]> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        let many = lines.len() > 1;
        for (i, line) in lines.into_iter().enumerate() {
            let at = if many {
                format!("line {}: ", i + 1)
            } else {
                String::new()
            };
            let bad = |code: &'static str, m: String| Problem::new(code, format!("{at}{m}"));
            let env = match super::dsse::Envelope::parse(line) {
                Ok(e) => e,
                Err(e) => {
                    report
                        .problems
                        .push(bad("attestation_malformed", e.to_string()));
                    continue;
                }
            };
            let receipt = match super::attest::open(&env) {
                Ok(r) => r,
                Err(e) => {
                    report.problems.push(bad("attestation_malformed", e));
                    continue;
                }
            };
            let raw = serde_json::to_vec(&receipt).unwrap_or_default();
            if let Err(e) = load::receipt_from_bytes(&raw, "attested receipt") {
                let text = e.to_string();
                let one: Vec<&str> = text.lines().map(str::trim).collect();
                report.problems.push(bad("schema", one.join(" ")));
                continue;
            }
            if let Err(e) = super::attest::verify_envelope(&env, &receipt, &self.keyring) {
                report.problems.push(bad("attestation_signature", e));
            }
            report.contract_id = str_field(&receipt, "contract_id").map(str::to_owned);
            report.status = str_field(&receipt, "status").map(str::to_owned);
            report.key_id = signing::signature_key_id(&receipt).map(str::to_owned);
            let before = report.problems.len();
            self.verify_value(&receipt, report);
            for p in &mut report.problems[before..] {
                p.message = format!("{at}{}", p.message);
            }
        }
    }

    /// Verify many files, in parallel over up to `threads` threads; results
    /// come back in input order.
    pub fn verify_files(&self, paths: &[PathBuf], threads: usize) -> Vec<ReceiptReport> {
        let threads = threads.clamp(1, 64);
        if threads == 1 || paths.len() < 64 {
            return paths.iter().map(|p| self.verify_file(p)).collect();
        }
        let chunk = paths.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = paths
                .chunks(chunk)
                .map(|part| {
                    scope
                        .spawn(move || part.iter().map(|p| self.verify_file(p)).collect::<Vec<_>>())
                })
                .collect();
            let mut all = Vec::with_capacity(paths.len());
            for (handle, part) in handles.into_iter().zip(paths.chunks(chunk)) {
                match handle.join() {
                    Ok(reports) => all.extend(reports),
                    // A panicking worker must not turn into "valid": re-verify
                    // its share on this thread (a second panic propagates).
                    Err(_) => all.extend(part.iter().map(|p| self.verify_file(p))),
                }
            }
            all
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    fn signed(key: &SigningKey, key_id: &str) -> Value {
        let mut r = json!({
            "receipt_version": "csc.receipt.v0.1", "contract_id": "c-12345678",
            "execution_id": "e1", "contract_sha256": "a".repeat(64), "status": "success",
            "started_at": "2026-11-21T12:00:00+00:00", "ended_at": "2026-11-21T12:00:01+00:00",
            "policy_profile": "p", "exit_code": 0,
            "stdout_hash": EMPTY_STREAM_HASH, "stderr_hash": EMPTY_STREAM_HASH,
            "completed_command_ids": ["one"], "failed_command_id": null
        });
        signing::sign_receipt(&mut r, key, key_id, "2026-11-21T12:00:02+00:00").unwrap();
        r
    }

    fn problems(v: &Verifier, r: &Value) -> Vec<&'static str> {
        let mut report = ReceiptReport::new("t");
        v.verify_value(r, &mut report);
        report.problems.iter().map(|p| p.code).collect()
    }

    #[test]
    fn signature_metadata_is_checked_after_the_signature() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let v = Verifier::new(
            Keyring::single("k", key.verifying_key()),
            Bindings::default(),
        );
        let good = signed(&key, "k");
        assert!(problems(&v, &good).is_empty());

        let mut extra = good.clone();
        extra["signature"]["note"] = json!("x");
        assert_eq!(problems(&v, &extra), ["bad_signature"]);

        // Correctly signed, but with an extra member and a bad signed_at.
        let mut r = good.clone();
        r["signature"] = json!({"algorithm": "ed25519", "key_id": "k",
                                "signed_at": "not a date", "note": "x"});
        let sig = key.sign(&signing::signing_payload(&r));
        r["signature"]["signature"] = json!(STANDARD.encode(sig.to_bytes()));
        assert_eq!(problems(&v, &r), ["malformed_signature", "bad_signed_at"]);

        let mut mismatch = good.clone();
        mismatch.as_object_mut().unwrap().remove("signature");
        mismatch["signing_key_id"] = json!("other");
        signing::sign_receipt(&mut mismatch, &key, "k", "2026-11-21T12:00:02+00:00").unwrap();
        assert_eq!(problems(&v, &mismatch), ["signing_key_id_mismatch"]);
    }

    #[test]
    fn unknown_key_names_the_signer_and_the_trusted_ids() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let v = Verifier::new(
            Keyring::single("ci-2027", key.verifying_key()),
            Bindings::default(),
        );
        let mut report = ReceiptReport::new("t");
        v.verify_value(&signed(&key, "ci-2026"), &mut report);
        let p = report
            .problems
            .iter()
            .find(|p| p.code == "unknown_key_id")
            .unwrap();
        assert!(
            p.message.contains("\"ci-2026\"") && p.message.contains("\"ci-2027\""),
            "{}",
            p.message
        );
    }

    #[test]
    fn outputs_follow_the_documented_layout() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let v = Verifier::new(
            Keyring::single("k", key.verifying_key()),
            Bindings {
                outputs_dir: Some(dir.path().to_owned()),
                ..Bindings::default()
            },
        );
        let r = signed(&key, "k");
        assert_eq!(problems(&v, &r), ["output_missing"]);
        std::fs::write(dir.path().join("one.stdout"), b"").unwrap();
        assert_eq!(problems(&v, &r), ["output_missing"]);
        std::fs::write(dir.path().join("one.stderr"), b"").unwrap();
        assert!(problems(&v, &r).is_empty());
        std::fs::write(dir.path().join("one.stderr"), b"x").unwrap();
        assert_eq!(problems(&v, &r), ["output_mismatch"]);
    }

    #[test]
    fn fifo_and_directories_are_not_hashed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(stream_hash_of_file(dir.path()).is_err());
        assert!(stream_hash_of_file(Path::new("/dev/null")).is_err());
    }
}
