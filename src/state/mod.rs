//! The state store behind every run (RFC 0014): single-use approval
//! consumption and the receipt ledger, behind one trait with two
//! implementations — the embedded SQLite store in a state directory
//! (default, `crate::approval::store`) and PostgreSQL for a fleet of
//! runners (`--state-url postgres://…`, [`postgres`]).

pub mod postgres;
pub mod sqlite;

use std::path::{Path, PathBuf};

pub use crate::approval::store::StoreError;
use crate::evidence::dsse::Envelope;
use crate::ledger::Entry;
use crate::ledger::merkle::Hash;

/// Environment variable naming the state URL (`--state-url`).
pub const STATE_URL_ENV: &str = "CSC_STATE_URL";

/// Approval consumption and the receipt ledger, wherever they live.
pub trait StateStore: Send {
    /// Where the store lives, for messages (credentials redacted).
    fn location(&self) -> String;

    /// The store's identity (checkpoints name it).
    fn store_id(&mut self) -> Result<String, StoreError>;

    /// When `approval_id` was consumed, if it was.
    fn consumed_at(&mut self, approval_id: &str) -> Result<Option<String>, StoreError>;

    /// Atomically consume every id for this run, in one transaction: all
    /// now (`Ok(Ok(()))`), or none and the first one already consumed by
    /// another execution, with its time (`Ok(Err((id, at)))`). An id this
    /// same `execution_id` consumed before counts as consumed now (a retry
    /// after a lost acknowledgement is neither refused nor doubled; every
    /// run has a fresh random execution id).
    fn consume_all(
        &mut self,
        approval_ids: &[String],
        contract_sha256: &str,
        execution_id: &str,
        now: &str,
    ) -> Result<Result<(), (String, String)>, StoreError>;

    /// Append a receipt's canonical bytes to the ledger, durably committed
    /// before returning; returns its index. Appends are serialized: the
    /// log is one gap-free sequence under concurrent writers.
    fn append(&mut self, receipt: &[u8], now: &str) -> Result<u64, StoreError>;

    /// Call `each` with every ledger entry in index order.
    fn for_each_entry(
        &mut self,
        each: &mut dyn FnMut(Entry) -> Result<(), String>,
    ) -> Result<(), String>;

    /// Every ledger leaf hash, in order (for proofs).
    fn leaves(&mut self) -> Result<Vec<Hash>, StoreError>;

    /// The stored signed checkpoints, oldest first.
    fn checkpoints(&mut self) -> Result<Vec<Envelope>, String>;

    /// Store a signed checkpoint.
    fn add_checkpoint(&mut self, tree_size: u64, env: &Envelope) -> Result<(), StoreError>;

    /// The backend's own consistency check (SQLite's integrity check).
    fn integrity_check(&mut self) -> Result<(), StoreError>;
}

/// Append a receipt as rendered (pretty JSON): its canonical bytes.
pub fn append_rendered(
    store: &mut dyn StateStore,
    rendered: &[u8],
    now: &str,
) -> Result<u64, String> {
    let value: serde_json::Value =
        serde_json::from_slice(rendered).map_err(|e| format!("receipt is not JSON: {e}"))?;
    store
        .append(&crate::ledger::canonical_receipt(&value), now)
        .map_err(|e| e.to_string())
}

/// Which store a verb uses: `--state-url` (or [`STATE_URL_ENV`]) wins over
/// `--state-dir`, which defaults to [`crate::approval::store::default_state_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded SQLite store in this directory.
    Dir(PathBuf),
    /// A PostgreSQL database (the URL as given; never print it, use
    /// [`redact`]).
    Url(String),
}

impl Location {
    /// Resolve the flags (and the environment) to a location.
    pub fn resolve(url: Option<&str>, dir: Option<&Path>) -> Result<Location, String> {
        let env = std::env::var(STATE_URL_ENV).ok().filter(|v| !v.is_empty());
        if let Some(u) = url.map(str::to_owned).or(env) {
            if dir.is_some() {
                return Err(
                    "--state-url (or CSC_STATE_URL) and --state-dir both given: choose one store"
                        .to_owned(),
                );
            }
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(format!(
                    "--state-url {} is not supported: only postgres:// and postgresql:// URLs (or --state-dir for the embedded store)",
                    redact(&u)
                ));
            }
            return Ok(Location::Url(u));
        }
        dir.map(Path::to_path_buf)
            .or_else(crate::approval::store::default_state_dir)
            .map(Location::Dir)
            .ok_or_else(|| {
                "no state store: set --state-dir (or XDG_STATE_HOME / HOME) or --state-url"
                    .to_owned()
            })
    }

    /// The state directory, for a local store.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Location::Dir(d) => Some(d),
            Location::Url(_) => None,
        }
    }

    /// How messages name it (credentials redacted).
    pub fn shown(&self) -> String {
        match self {
            Location::Dir(d) => d.display().to_string(),
            Location::Url(u) => redact(u),
        }
    }

    /// Open the store (a local one is created when new).
    pub fn open(&self) -> Result<Box<dyn StateStore>, StoreError> {
        match self {
            Location::Dir(d) => Ok(Box::new(crate::approval::store::Store::open(d)?)),
            Location::Url(u) => open_url(u),
        }
    }
}

fn open_url(url: &str) -> Result<Box<dyn StateStore>, StoreError> {
    Ok(Box::new(postgres::PgStore::open(url)?))
}

/// A URL with any password (and query parameters that may carry one)
/// replaced by `***`: safe to print.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "***".to_owned(),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    if let Some(a) = auth {
        match a.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{a}@")),
        }
    }
    out.push_str(host);
    if let Some(q) = query {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    crate::text::escape_control(&out).into_owned()
}

/// Recompute the whole stored log against `checkpoints` (already
/// signature-checked by the caller).
pub fn verify_ledger(
    store: &mut dyn StateStore,
    checkpoints: &[(crate::ledger::Checkpoint, String)],
) -> Result<crate::ledger::LogReport, String> {
    let mut v = crate::ledger::LogVerifier::default();
    store.for_each_entry(&mut |e| {
        v.push(&e);
        Ok(())
    })?;
    let id = store.store_id().map_err(|e| e.to_string())?;
    Ok(v.finish(checkpoints, Some(&id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("postgres://csc:s3cret@db.example:5432/csc?sslmode=verify-full"),
            "postgres://csc:***@db.example:5432/csc?sslmode=verify-full"
        );
        assert_eq!(
            redact("postgresql://db/csc?user=x&password=s3cret"),
            "postgresql://db/csc?user=x&password=***"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert!(!redact("postgres://a:b:c@h").contains("b:c"));
        assert_eq!(redact("garbage s3cret"), "***");
    }
}
