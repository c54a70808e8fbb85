//! The ledger tables in the state store (`approval::store`, schema 3):
//! `ledger_entries(idx, leaf_hash, prev_leaf_hash, receipt, appended_at)`
//! and `ledger_checkpoints(seq, tree_size, envelope)`.

use rusqlite::{OptionalExtension, params};

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

fn hash_of(bytes: Vec<u8>) -> Result<Hash, rusqlite::Error> {
    bytes.try_into().map_err(|b: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(
            b.len(),
            rusqlite::types::Type::Blob,
            "a stored hash is not 32 bytes".into(),
        )
    })
}

/// Append one receipt (its canonical bytes) in one `BEGIN IMMEDIATE`
/// transaction, committed durably before returning; returns its index.
pub fn append(store: &mut Store, receipt: &[u8], now: &str) -> Result<u64, StoreError> {
    let leaf = leaf_hash(receipt);
    let index = store
        .write(|tx| {
            let last: Option<(i64, Vec<u8>)> = tx
                .prepare_cached("SELECT idx, leaf_hash FROM ledger_entries ORDER BY idx DESC LIMIT 1")?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (index, prev) = match last {
                None => (0i64, [0u8; 32]),
                Some((i, h)) => (i + 1, hash_of(h)?),
            };
            tx.prepare_cached(
                "INSERT INTO ledger_entries (idx, leaf_hash, prev_leaf_hash, receipt, appended_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![index, &leaf[..], &prev[..], receipt, now])?;
            Ok((index, true))
        })
        .map_err(|(what, message)| StoreError::Db {
            path: store.path().display().to_string(),
            what: match what {
                "lock" => "ledger lock",
                "begin" => "ledger begin",
                "commit" => "ledger commit",
                _ => "ledger append",
            },
            message,
        })?;
    Ok(index as u64)
}

/// Call `each` with every entry in stored order (by index).
pub fn for_each_entry(
    store: &Store,
    mut each: impl FnMut(Entry) -> Result<(), String>,
) -> Result<(), String> {
    let conn = store.conn_ref();
    let mut stmt = conn
        .prepare("SELECT idx, leaf_hash, prev_leaf_hash, receipt, appended_at FROM ledger_entries ORDER BY idx")
        .map_err(|e| db_err(store, "ledger read")(e).to_string())?;
    let mut rows = stmt
        .query([])
        .map_err(|e| db_err(store, "ledger read")(e).to_string())?;
    while let Some(row) = rows
        .next()
        .map_err(|e| db_err(store, "ledger read")(e).to_string())?
    {
        let entry = (|| -> Result<Entry, rusqlite::Error> {
            Ok(Entry {
                index: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(u64::MAX),
                leaf_hash: hash_of(row.get(1)?)?,
                prev_leaf_hash: hash_of(row.get(2)?)?,
                receipt: row.get(3)?,
                appended_at: row.get(4)?,
            })
        })()
        .map_err(|e| db_err(store, "ledger read")(e).to_string())?;
        each(entry)?;
    }
    Ok(())
}

/// Every stored leaf hash, in order (for proofs).
pub fn leaves(store: &Store) -> Result<Vec<Hash>, StoreError> {
    let conn = store.conn_ref();
    let mut stmt = conn
        .prepare("SELECT leaf_hash FROM ledger_entries ORDER BY idx")
        .map_err(db_err(store, "ledger read"))?;
    let rows = stmt
        .query_map([], |r| hash_of(r.get(0)?))
        .map_err(db_err(store, "ledger read"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(db_err(store, "ledger read"))
}

/// The stored signed checkpoints, oldest first.
pub fn checkpoints(store: &Store) -> Result<Vec<Envelope>, String> {
    let conn = store.conn_ref();
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
