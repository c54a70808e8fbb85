//! `csc approve CONTRACT --signing-key KEY --key-id ID --approver IDENTITY
//! [--expires-in DURATION] [--scope single_execution|time_window]
//! [--ticket ID] [--reason TEXT] --out FILE`: write a DSSE-signed v0.1
//! approval (RFC 0010).

use crate::exit;
use jiff::{SignedDuration, Timestamp};
use std::path::PathBuf;

use super::{CliResult, Error};
use crate::approval::signed;
use crate::protocol::approval::{
    APPROVAL_VERSION, Approval, ApprovalMethod, ApprovalScope, Approver,
};
use crate::protocol::load;

/// Longest approval lifetime `--expires-in` accepts.
const MAX_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 366);

/// Arguments of `csc approve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The contract JSON file being approved (the approval binds its hash).
    pub contract: PathBuf,
    /// Approver's Ed25519 private key (raw seed, seed+public, or PKCS#8 PEM).
    #[arg(long, value_name = "KEY")]
    pub signing_key: PathBuf,
    /// Key id recorded as the DSSE signature's keyid (a key_id in the run's --approver-keyring).
    #[arg(long, value_name = "ID")]
    pub key_id: String,
    /// Approver identity recorded in the approval.
    #[arg(long, value_name = "IDENTITY")]
    pub approver: String,
    /// Lifetime from now (e.g. 30m, 1h, 2d, PT1H).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub expires_in: String,
    /// single_execution (consumed by one run) or time_window (reusable until expiry).
    #[arg(long, value_name = "SCOPE", default_value = "single_execution")]
    pub scope: String,
    /// Ticket reference recorded as ticket_id.
    #[arg(long, value_name = "ID")]
    pub ticket: Option<String>,
    /// Free-text reason (at most 4000 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Where to write the signed approval (DSSE envelope JSON).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

fn random_id() -> Result<String, Error> {
    use std::io::Read;
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| Error::Failed(format!("cannot read /dev/urandom: {e}")))?;
    Ok(format!("appr_{}", crate::canonical::hex(&raw)))
}

/// Run `csc approve`.
pub fn run(args: Args) -> CliResult {
    if args.key_id.is_empty() || args.approver.is_empty() {
        return Err(Error::Failed(
            "--key-id and --approver must not be empty".to_owned(),
        ));
    }
    let scope = match args.scope.as_str() {
        "single_execution" => ApprovalScope::SingleExecution,
        "time_window" => ApprovalScope::TimeWindow,
        other => {
            return Err(Error::Failed(format!(
                "--scope must be single_execution or time_window, got {other:?}"
            )));
        }
    };
    let lifetime: SignedDuration = args.expires_in.parse().map_err(|e| {
        Error::Failed(format!(
            "--expires-in {:?} is not a duration (e.g. 30m, 1h, 2d): {e}",
            args.expires_in
        ))
    })?;
    if lifetime <= SignedDuration::ZERO || lifetime > MAX_LIFETIME {
        return Err(Error::Failed(format!(
            "--expires-in must be positive and at most {} hours",
            MAX_LIFETIME.as_hours()
        )));
    }
    let key = crate::evidence::keys::load_signing_key(&args.signing_key)
        .map_err(|e| Error::Failed(format!("invalid signing key: {e}")))?;
    let contract = load::load_contract(&args.contract)?;
    let now = Timestamp::now();
    let expires = now
        .checked_add(lifetime)
        .map_err(|e| Error::Failed(format!("--expires-in: {e}")))?;
    let approval = Approval {
        approval_version: APPROVAL_VERSION.to_owned(),
        approval_id: random_id()?,
        contract_sha256: contract.contract.sha256(),
        approver: Approver {
            identity: args.approver.clone(),
            method: ApprovalMethod::Cli,
        },
        approved_at: crate::time::rfc3339(now),
        expires_at: crate::time::rfc3339(expires),
        scope,
        ticket_id: args.ticket.clone(),
        reason: args.reason.clone(),
    };
    // The payload must be a valid v0.1 artifact (schema, limits).
    let payload = serde_json::to_vec(&approval).map_err(|e| Error::Failed(e.to_string()))?;
    load::approval_from_bytes(&payload, "the new approval")?;
    let envelope = signed::sign(&approval, &key, &args.key_id);
    crate::evidence::receipt::write_atomic(&args.out, &envelope.to_line())?;
    eprintln!(
        "approval {} for contract {} (sha256 {}) by {:?}, key {:?}, expires {} — written to {}",
        approval.approval_id,
        contract.contract.contract_id,
        approval.contract_sha256,
        approval.approver.identity,
        args.key_id,
        approval.expires_at,
        args.out.display()
    );
    Ok(exit::SUCCESS)
}
