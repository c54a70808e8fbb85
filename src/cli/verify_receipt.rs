//! `csc verify-receipt RECEIPT... (--public-key PATH --key-id ID | --keyring FILE)
//! [--contract FILE] [--policy FILE] [--outputs DIR] [--json]`.

use crate::exit;
use std::io::Write;
use std::path::PathBuf;

use super::{CliResult, Error};
use crate::evidence::keyring::Keyring;
use crate::evidence::keys;
use crate::evidence::verify::{Bindings, Verifier};
use crate::protocol::load;

/// Arguments of `csc verify-receipt`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("trust").required(true).args(["public_key", "keyring"])))]
#[command(
    override_usage = "csc verify-receipt [OPTIONS] --keyring <FILE> <RECEIPT>...\n       csc verify-receipt [OPTIONS] --public-key <PATH> --key-id <ID> <RECEIPT>..."
)]
pub struct Args {
    /// Signed receipt files.
    #[arg(required = true, value_name = "RECEIPT")]
    pub receipts: Vec<PathBuf>,
    /// Trusted public key (raw 32 bytes or SPKI PEM); needs --key-id.
    #[arg(
        long,
        value_name = "PATH",
        requires = "key_id",
        conflicts_with = "keyring"
    )]
    pub public_key: Option<PathBuf>,
    /// Key id the --public-key is trusted under.
    #[arg(long, value_name = "ID", requires = "public_key")]
    pub key_id: Option<String>,
    /// Trusted keys with rotation/revocation (csc.keyring.v1 JSON, see docs/keyring.md);
    /// no --key-id needed (each receipt names its key).
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Require `contract_sha256` to be this contract's canonical hash.
    #[arg(long, value_name = "FILE")]
    pub contract: Option<PathBuf>,
    /// Require `policy_sha256` to be this policy's canonical hash.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Check saved outputs (DIR/<command_id>.stdout|.stderr) and artifacts.
    #[arg(long, value_name = "DIR")]
    pub outputs: Option<PathBuf>,
    /// One JSON result object per receipt (JSON Lines) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Print only invalid receipts (text mode).
    #[arg(long, short)]
    pub quiet: bool,
    /// Worker threads (default: available cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

fn keyring(args: &Args) -> Result<Keyring, Error> {
    if let Some(path) = &args.keyring {
        return Ok(Keyring::load(path)?);
    }
    match (&args.public_key, &args.key_id) {
        (Some(path), Some(id)) => {
            if id.is_empty() {
                return Err(Error::Failed("--key-id must not be empty".into()));
            }
            Ok(Keyring::single(id, keys::load_verifying_key(path)?))
        }
        _ => Err(Error::Failed(
            "give --public-key PATH --key-id ID, or --keyring FILE".into(),
        )),
    }
}

fn bindings(args: &Args) -> Result<Bindings, Error> {
    let contract_sha256 = match &args.contract {
        Some(p) => Some(load::load_contract(p)?.contract.sha256()),
        None => None,
    };
    let policy_sha256 = match &args.policy {
        Some(p) => Some(load::load_policy(p)?.sha256()),
        None => None,
    };
    if let Some(dir) = &args.outputs {
        let meta = std::fs::metadata(dir).map_err(|e| {
            Error::Failed(format!(
                "cannot read outputs directory {}: {e}",
                dir.display()
            ))
        })?;
        if !meta.is_dir() {
            return Err(Error::Failed(format!(
                "outputs path {} is not a directory",
                dir.display()
            )));
        }
    }
    Ok(Bindings {
        contract_sha256,
        policy_sha256,
        outputs_dir: args.outputs.clone(),
    })
}

/// Run `csc verify-receipt`: exit 0 only if every receipt is valid.
pub fn run(args: Args) -> CliResult {
    let verifier = Verifier::new(keyring(&args)?, bindings(&args)?);
    let threads = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let reports = verifier.verify_files(&args.receipts, threads);

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut invalid = 0usize;
    for r in &reports {
        if !r.valid {
            invalid += 1;
        }
        if args.json {
            let line = serde_json::to_string(r)
                .map_err(|e| Error::Failed(format!("cannot encode result: {e}")))?;
            writeln!(out, "{line}")?;
        } else if r.valid {
            if !args.quiet {
                let line = format!(
                    "{}: VALID (status {}, key {}, checked {})",
                    r.receipt,
                    r.status.as_deref().unwrap_or("?"),
                    r.key_id.as_deref().unwrap_or("?"),
                    r.checked.join(", ")
                );
                writeln!(out, "{}", crate::text::escape_control(&line))?;
            }
        } else {
            let reasons: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
            let line = format!("{}: INVALID: {}", r.receipt, reasons.join("; "));
            writeln!(out, "{}", crate::text::escape_control(&line))?;
        }
    }
    out.flush()?;
    drop(out);
    if !args.json {
        eprintln!(
            "verify-receipt: {} receipt(s), {} valid, {} invalid",
            reports.len(),
            reports.len() - invalid,
            invalid
        );
    }
    Ok(if invalid == 0 {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}
