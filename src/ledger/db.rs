//! The ledger in a local state store (`approval::store`, schema 4): its
//! entries in the log file (`crate::evidence::ledger_log`), its signed
//! checkpoints in the database table `ledger_checkpoints(seq, tree_size,
//! envelope)`.

use rusqlite::params;

use super::Entry;
use super::merkle::{Hash, leaf_hash};
use crate::approval::store::{Store, StoreError};
use crate::evidence::dsse::Envelope;

fn db_err(store: &Store, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    let path = store.path().display().to_string();
    move |e| StoreError::Db {
        path: path.clone(),
        what,
        message: e.to_string(),
    }
}

/// Append one receipt (its canonical bytes) to the store's ledger log,
/// flushed before returning; returns its index.
pub fn append(store: &mut Store, receipt: &[u8], now: &str) -> Result<u64, StoreError> {
    store.append_log(&leaf_hash(receipt), receipt, now)
}

/// Call `each` with every entry in stored order (by index).
pub fn for_each_entry(
    store: &Store,
    each: &mut dyn FnMut(Entry) -> Result<(), String>,
) -> Result<(), String> {
    store.for_each_log_entry(each)
}

/// Every stored leaf hash, in order (for proofs).
pub fn leaves(store: &Store) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::new();
    store
        .for_each_log_entry(&mut |e| {
            out.push(e.leaf_hash);
            Ok(())
        })
        .map_err(|message| StoreError::Db {
            path: store.path().display().to_string(),
            what: "ledger read",
            message,
        })?;
    Ok(out)
}

/// The stored signed checkpoints, oldest first.
pub fn checkpoints(store: &Store) -> Result<Vec<Envelope>, String> {
    let conn = store.conn().map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare("SELECT envelope FROM ledger_checkpoints ORDER BY seq")
        .map_err(|e| db_err(store, "ledger read")(e).to_string())?;
    let texts = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| db_err(store, "ledger read")(e).to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| db_err(store, "ledger read")(e).to_string())?;
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Envelope::parse(t.as_bytes()).map_err(|e| format!("stored checkpoint {i}: {e}"))
        })
        .collect()
}

/// Store a signed checkpoint.
pub fn add_checkpoint(store: &mut Store, tree_size: u64, env: &Envelope) -> Result<(), StoreError> {
    let text = String::from_utf8(env.to_line()).unwrap_or_default();
    store
        .write(|tx| {
            tx.execute(
                "INSERT INTO ledger_checkpoints (tree_size, envelope) VALUES (?1, ?2)",
                params![tree_size as i64, text.trim_end()],
            )?;
            Ok(((), true))
        })
        .map_err(|(_, message)| StoreError::Db {
            path: store.path().display().to_string(),
            what: "ledger checkpoint",
            message,
        })
}
