//! `csc attest RECEIPT --signing-key KEY --key-id ID --out FILE.intoto.jsonl`:
//! wrap a receipt as an in-toto Statement v1 in a DSSE envelope (RFC 0012).

use crate::exit;
use std::path::PathBuf;

use super::{CliResult, Error};
use crate::evidence::attest;

/// Arguments of `csc attest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The receipt file (schema-checked; its own signature is kept inside).
    pub receipt: PathBuf,
    /// Ed25519 private key (raw seed, seed+public, or PKCS#8 PEM).
    #[arg(long, value_name = "KEY")]
    pub signing_key: PathBuf,
    /// Key id recorded as the DSSE signature's keyid.
    #[arg(long, value_name = "ID")]
    pub key_id: String,
    /// Where to write the attestation (one DSSE envelope per line).
    #[arg(long, value_name = "FILE.intoto.jsonl")]
    pub out: PathBuf,
}

/// Run `csc attest`.
pub fn run(args: Args) -> CliResult {
    if args.key_id.is_empty() {
        return Err(Error::Failed("--key-id must not be empty".to_owned()));
    }
    let key = crate::evidence::keys::load_signing_key(&args.signing_key)
        .map_err(|e| Error::Failed(format!("invalid signing key: {e}")))?;
    let receipt = crate::protocol::load::load_receipt(&args.receipt)?;
    let envelope = attest::attest(&receipt, &key, &args.key_id).map_err(Error::Failed)?;
    crate::evidence::receipt::write_atomic(&args.out, &envelope.to_line())?;
    eprintln!(
        "attestation of {} (predicateType {}) signed by {:?} — written to {}",
        args.receipt.display(),
        attest::PREDICATE_TYPE,
        args.key_id,
        args.out.display()
    );
    Ok(exit::SUCCESS)
}
