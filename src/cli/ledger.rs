//! `csc ledger checkpoint|verify|prove|verify-proof|export` (RFC 0011).

use crate::exit;
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::{CliResult, Error};
use crate::approval::store;
use crate::evidence::keyring::Keyring;
use crate::ledger::{self, Checkpoint, ExportLine, LogReport, LogVerifier, proof};
use crate::state::{Location, StateStore};

/// Arguments of `csc ledger`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub verb: Verb,
}

/// The ledger verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Sign the current tree head (size, root, time) after re-verifying the log.
    Checkpoint {
        /// Ed25519 private key (raw seed, seed+public, or PKCS#8 PEM).
        #[arg(long, value_name = "KEY")]
        signing_key: PathBuf,
        /// Key id recorded in the checkpoint signature.
        #[arg(long, value_name = "ID")]
        key_id: String,
        /// State directory [default: $XDG_STATE_HOME/csc or ~/.local/state/csc].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// PostgreSQL state store (`postgres://…`; also CSC_STATE_URL) instead of --state-dir.
        #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
        state_url: Option<String>,
    },
    /// Recompute the whole log and check every checkpoint against the keyring.
    Verify {
        /// State directory holding the ledger.
        #[arg(long, value_name = "DIR", conflicts_with = "export")]
        state_dir: Option<PathBuf>,
        /// PostgreSQL state store (`postgres://…`; also CSC_STATE_URL) instead of --state-dir.
        #[arg(long, value_name = "URL", conflicts_with_all = ["state_dir", "export"])]
        state_url: Option<String>,
        /// A `csc ledger export` file instead of the database.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// Trusted checkpoint keys (csc.keyring.v1).
        #[arg(long, value_name = "FILE")]
        keyring: PathBuf,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
    },
    /// Print (JSON) an inclusion proof of RECEIPT, or with --consistency OLD NEW a consistency proof.
    Prove {
        /// The receipt file.
        #[arg(required_unless_present = "consistency")]
        receipt: Option<PathBuf>,
        /// Two checkpointed tree sizes: OLD NEW.
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with = "receipt")]
        consistency: Option<Vec<u64>>,
        /// State directory holding the ledger.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// PostgreSQL state store (`postgres://…`; also CSC_STATE_URL) instead of --state-dir.
        #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
        state_url: Option<String>,
    },
    /// Check a proof offline (no database) against the keyring.
    VerifyProof {
        /// The proof file (`csc ledger prove` output).
        proof: PathBuf,
        /// The receipt (required for inclusion proofs).
        receipt: Option<PathBuf>,
        /// Trusted checkpoint keys (csc.keyring.v1).
        #[arg(long, value_name = "FILE")]
        keyring: PathBuf,
    },
    /// Write the log and its checkpoints as JSON lines to stdout.
    Export {
        /// State directory holding the ledger.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// PostgreSQL state store (`postgres://…`; also CSC_STATE_URL) instead of --state-dir.
        #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
        state_url: Option<String>,
    },
}

/// Open an existing store (a ledger verb never creates one).
fn open(dir: Option<PathBuf>, url: Option<String>) -> Result<Box<dyn StateStore>, Error> {
    let location = Location::resolve(url.as_deref(), dir.as_deref()).map_err(Error::Failed)?;
    if let Some(dir) = location.dir()
        && !dir.join(store::DB_FILE).exists()
    {
        return Err(Error::Failed(format!(
            "no ledger in {}: {} does not exist",
            dir.display(),
            store::DB_FILE
        )));
    }
    location.open().map_err(Error::from)
}

fn keyring(path: &Path) -> Result<Keyring, Error> {
    Keyring::load(path).map_err(|e| Error::Failed(format!("--keyring: {e}")))
}

/// Receipt file → canonical bytes (strict JSON, schema-checked, capped).
fn receipt_bytes(path: &Path) -> Result<Vec<u8>, Error> {
    let value = crate::protocol::load::load_receipt(path)?;
    Ok(ledger::canonical_receipt(&value))
}

/// Run `csc ledger`.
pub fn run(args: Args) -> CliResult {
    match args.verb {
        Verb::Checkpoint {
            signing_key,
            key_id,
            state_dir,
            state_url,
        } => checkpoint(&signing_key, &key_id, open(state_dir, state_url)?),
        Verb::Verify {
            state_dir,
            state_url,
            export,
            keyring: ring,
            json,
        } => {
            let ring = keyring(&ring)?;
            let report = match export {
                Some(file) => verify_export(&file, &ring)?,
                None => verify_store(&mut *open(state_dir, state_url)?, &ring)?,
            };
            print_report(&report, json)
        }
        Verb::Prove {
            receipt,
            consistency,
            state_dir,
            state_url,
        } => prove(
            receipt.as_deref(),
            consistency,
            &mut *open(state_dir, state_url)?,
        ),
        Verb::VerifyProof {
            proof: file,
            receipt,
            keyring: ring,
        } => {
            let ring = keyring(&ring)?;
            let bytes = crate::fsutil::read_regular_file_capped(&file, proof::MAX_PROOF_BYTES)
                .map_err(|e| {
                    Error::Failed(format!("cannot read proof {}: {e:?}", file.display()))
                })?;
            let value = crate::protocol::strict_json::parse(&bytes)
                .map_err(|e| Error::Failed(format!("proof {} is not JSON: {e}", file.display())))?;
            let receipt = receipt.as_deref().map(receipt_bytes).transpose()?;
            match proof::verify(&value, receipt.as_deref(), &ring) {
                Ok(summary) => {
                    outln!("VALID: {summary}");
                    Ok(exit::SUCCESS)
                }
                Err(e) => {
                    outln!("INVALID: {e}");
                    Ok(exit::FAILURE)
                }
            }
        }
        Verb::Export {
            state_dir,
            state_url,
        } => export(&mut *open(state_dir, state_url)?),
    }
}

fn checkpoint(key: &Path, key_id: &str, mut s: Box<dyn StateStore>) -> CliResult {
    if key_id.is_empty() {
        return Err(Error::Failed("--key-id must not be empty".to_owned()));
    }
    let key = crate::evidence::keys::load_signing_key(key)
        .map_err(|e| Error::Failed(format!("invalid signing key: {e}")))?;
    // Never sign a log that no longer matches its earlier checkpoints.
    let mut earlier = Vec::new();
    for env in s.checkpoints().map_err(Error::Failed)? {
        earlier.push((
            Checkpoint::from_envelope(&env).map_err(Error::Failed)?,
            "(earlier)".to_owned(),
        ));
    }
    let report = crate::state::verify_ledger(&mut *s, &earlier).map_err(Error::Failed)?;
    if !report.valid() {
        return Err(Error::Failed(format!(
            "refusing to sign a checkpoint: the log is inconsistent: {}",
            report.problems.join("; ")
        )));
    }
    let cp = Checkpoint {
        checkpoint_version: ledger::CHECKPOINT_VERSION.to_owned(),
        store_id: s.store_id()?,
        tree_size: report.entries,
        root_hash: report.root_hash.clone(),
        timestamp: crate::time::now_rfc3339(),
    };
    let env = cp.sign(&key, key_id);
    s.add_checkpoint(cp.tree_size, &env)?;
    outln!(
        "checkpoint: {} entries, root {}, signed by {key_id:?} at {}",
        cp.tree_size,
        cp.root_hash,
        cp.timestamp
    );
    Ok(exit::SUCCESS)
}

fn checked_checkpoints(
    envs: &[crate::evidence::dsse::Envelope],
    ring: &Keyring,
    problems: &mut Vec<String>,
) -> Vec<(Checkpoint, String)> {
    let mut out = Vec::new();
    for (i, env) in envs.iter().enumerate() {
        match Checkpoint::verified(env, ring) {
            Ok((cp, keys)) => out.push((cp, keys.join("+"))),
            Err(e) => problems.push(format!("checkpoint {i}: {e}")),
        }
    }
    out
}

fn finish(mut report: LogReport, mut problems: Vec<String>) -> LogReport {
    problems.append(&mut report.problems);
    if report.checkpoints == 0 {
        problems.push("no signed checkpoint verifies with the keyring: nothing anchors the log (run csc ledger checkpoint)".to_owned());
    }
    report.problems = problems;
    report
}

fn verify_store(s: &mut dyn StateStore, ring: &Keyring) -> Result<LogReport, Error> {
    let envs = s.checkpoints().map_err(Error::Failed)?;
    let mut problems = Vec::new();
    if let Err(e) = s.integrity_check() {
        problems.push(e.to_string());
    }
    let cps = checked_checkpoints(&envs, ring, &mut problems);
    let report = crate::state::verify_ledger(s, &cps).map_err(Error::Failed)?;
    Ok(finish(report, problems))
}

fn verify_export(file: &Path, ring: &Keyring) -> Result<LogReport, Error> {
    let f = crate::fsutil::open_regular_file(file)
        .map_err(|e| Error::Failed(format!("cannot open export {}: {e}", file.display())))?;
    let mut reader = std::io::BufReader::new(f);
    let mut verifier = LogVerifier::default();
    let mut envs = Vec::new();
    let mut store_id = None;
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = std::io::Read::take(&mut reader, ledger::MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Failed(format!("cannot read export {}: {e}", file.display())))?;
        if read == 0 {
            break;
        }
        n += 1;
        let bad = |e: String| Error::Failed(format!("export {} line {n}: {e}", file.display()));
        if line.len() > ledger::MAX_LINE_BYTES {
            return Err(bad("line too long".to_owned()));
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match (ledger::parse_line(text).map_err(bad)?, &store_id) {
            (ExportLine::Header { store_id: id }, None) if n == 1 => store_id = Some(id),
            (_, None) => return Err(bad("the first line must be the export header".to_owned())),
            (ExportLine::Header { .. }, Some(_)) => {
                return Err(bad("a second header".to_owned()));
            }
            (ExportLine::Entry(e), Some(_)) => verifier.push(&e),
            (ExportLine::Checkpoint(env), Some(_)) => envs.push(env),
        }
    }
    let Some(store_id) = store_id else {
        return Err(Error::Failed(format!("export {} is empty", file.display())));
    };
    let mut problems = Vec::new();
    let cps = checked_checkpoints(&envs, ring, &mut problems);
    Ok(finish(verifier.finish(&cps, Some(&store_id)), problems))
}

fn print_report(r: &LogReport, json: bool) -> CliResult {
    if json {
        let mut v = serde_json::to_value(r).map_err(|e| Error::Failed(e.to_string()))?;
        v["valid"] = Value::Bool(r.valid());
        outln!("{v}");
    } else {
        for p in &r.problems {
            outln!("PROBLEM: {p}");
        }
        outln!(
            "ledger: {} entries, {} checkpoint(s) verified, covered up to {}, root {}: {}",
            r.entries,
            r.checkpoints,
            r.covered,
            r.root_hash,
            if r.valid() { "VALID" } else { "INVALID" }
        );
        if r.valid() && r.covered < r.entries {
            outln!(
                "note: the last {} entries are not yet covered by a checkpoint",
                r.entries - r.covered
            );
        }
    }
    Ok(if r.valid() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

fn prove(
    receipt: Option<&Path>,
    consistency: Option<Vec<u64>>,
    s: &mut dyn StateStore,
) -> CliResult {
    let leaves = s.leaves()?;
    let envs = s.checkpoints().map_err(Error::Failed)?;
    let mut cps = Vec::new();
    for env in &envs {
        cps.push((Checkpoint::from_envelope(env).map_err(Error::Failed)?, env));
    }
    let value = match (receipt, consistency.as_deref()) {
        (Some(path), None) => {
            let leaf = crate::ledger::merkle::leaf_hash(&receipt_bytes(path)?);
            let index = leaves.iter().position(|l| *l == leaf).ok_or_else(|| {
                Error::Failed(format!("receipt {} is not in the ledger", path.display()))
            })? as u64;
            let (cp, env) = cps
                .iter()
                .rev()
                .find(|(c, _)| c.tree_size > index)
                .ok_or_else(|| {
                    Error::Failed(format!(
                        "receipt {} (entry {index}) is not yet covered by a signed checkpoint: run csc ledger checkpoint",
                        path.display()
                    ))
                })?;
            proof::inclusion(index, &leaves, env, cp.tree_size).ok_or_else(|| {
                Error::Failed("the checkpoint covers more entries than the log has".to_owned())
            })?
        }
        (None, Some(&[old, new])) => {
            let find = |size: u64| {
                cps.iter()
                    .find(|(c, _)| c.tree_size == size)
                    .map(|(_, e)| *e)
                    .ok_or_else(|| Error::Failed(format!("no signed checkpoint of size {size}")))
            };
            if old == 0 || old > new {
                return Err(Error::Failed(
                    "--consistency needs 0 < OLD <= NEW".to_owned(),
                ));
            }
            proof::consistency(&leaves, (old, find(old)?), (new, find(new)?)).ok_or_else(|| {
                Error::Failed("the checkpoint covers more entries than the log has".to_owned())
            })?
        }
        _ => {
            return Err(Error::Failed(
                "give RECEIPT or --consistency OLD NEW".to_owned(),
            ));
        }
    };
    outln!("{value}");
    Ok(exit::SUCCESS)
}

fn export(s: &mut dyn StateStore) -> CliResult {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| Error::Failed(format!("cannot write the export: {e}"));
    out.write_all(&ledger::header_line(&s.store_id()?))
        .map_err(io)?;
    for env in s.checkpoints().map_err(Error::Failed)? {
        out.write_all(&ledger::checkpoint_line(&env)).map_err(io)?;
    }
    s.for_each_entry(&mut |e| {
        let line = ledger::entry_line(&e)?;
        out.write_all(&line).map_err(|e| e.to_string())
    })
    .map_err(Error::Failed)?;
    out.flush().map_err(io)?;
    Ok(exit::SUCCESS)
}
