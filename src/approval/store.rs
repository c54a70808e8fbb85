//! Durable single-use approvals: consumed approval ids live in an embedded
//! SQLite database under the state directory, so replay protection holds
//! across processes and restarts.
//!
//! Consumption is one `INSERT` into a table whose primary key is the
//! approval id, inside `BEGIN IMMEDIATE`: of two concurrent runs exactly
//! one insert succeeds; the other sees a constraint violation, i.e.
//! "already consumed". A database that cannot be opened, fails SQLite's
//! quick check, or has an unexpected shape is an error — never "empty".

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "approvals.sqlite3";
/// How long a writer waits for another csc holding the lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const SCHEMA_VERSION: i64 = 1;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("approval store {path} is unusable ({what}): {message}")]
    Db {
        path: String,
        what: &'static str,
        message: String,
    },
}

/// Outcome of [`Store::consume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// This run consumed the approval.
    Now,
    /// Someone consumed it before, at this time.
    Already { at: String },
}

/// The consumed-approvals database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Default state directory: `$XDG_STATE_HOME/csc`, else
/// `$HOME/.local/state/csc` (absolute values only).
pub fn default_state_dir() -> Option<PathBuf> {
    let abs = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").and_then(abs) {
        return Some(x.join("csc"));
    }
    std::env::var_os("HOME")
        .and_then(abs)
        .map(|h| h.join(".local/state/csc"))
}

impl Store {
    /// Open (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        let path = dir.join(DB_FILE);
        let shown = path.display().to_string();
        let db = |what: &'static str| {
            let shown = shown.clone();
            move |e: rusqlite::Error| StoreError::Db {
                path: shown.clone(),
                what,
                message: e.to_string(),
            }
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db("busy timeout"))?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(db("integrity check"))?;
        if check != "ok" {
            return Err(StoreError::Db {
                path: shown,
                what: "integrity check",
                message: check,
            });
        }
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS consumed_approvals (
                 approval_id     TEXT PRIMARY KEY NOT NULL,
                 contract_sha256 TEXT NOT NULL,
                 execution_id    TEXT NOT NULL,
                 consumed_at     TEXT NOT NULL
             );
             COMMIT;",
        )
        .map_err(db("create schema"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db("read version"))?;
        match version {
            0 => conn
                .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                .map_err(db("set version"))?,
            SCHEMA_VERSION => {}
            other => {
                return Err(StoreError::Db {
                    path: shown,
                    what: "schema version",
                    message: format!(
                        "version {other} is not supported (expected {SCHEMA_VERSION})"
                    ),
                });
            }
        }
        // Probe the table shape so a foreign database is an error now.
        conn.prepare("SELECT approval_id, contract_sha256, execution_id, consumed_at FROM consumed_approvals LIMIT 0")
            .map_err(db("table shape"))?;
        Ok(Store { conn, path })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| StoreError::Db {
            path: self.path.display().to_string(),
            what,
            message: e.to_string(),
        }
    }

    /// When `approval_id` was consumed, if it was.
    pub fn consumed_at(&self, approval_id: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT consumed_at FROM consumed_approvals WHERE approval_id = ?1")
            .map_err(self.err("query"))?;
        let mut rows = stmt
            .query(params![approval_id])
            .map_err(self.err("query"))?;
        match rows.next().map_err(self.err("query"))? {
            Some(row) => Ok(Some(row.get(0).map_err(self.err("query"))?)),
            None => Ok(None),
        }
    }

    /// Atomically consume `approval_id` for this run.
    pub fn consume(
        &mut self,
        approval_id: &str,
        contract_sha256: &str,
        execution_id: &str,
        now: &str,
    ) -> Result<Consumed, StoreError> {
        let path = self.path.display().to_string();
        let db = |what: &'static str| {
            let path = path.clone();
            move |e: rusqlite::Error| StoreError::Db {
                path: path.clone(),
                what,
                message: e.to_string(),
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin"))?;
        let inserted = tx.execute(
            "INSERT INTO consumed_approvals (approval_id, contract_sha256, execution_id, consumed_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![approval_id, contract_sha256, execution_id, now],
        );
        match inserted {
            Ok(_) => {
                tx.commit().map_err(db("commit"))?;
                Ok(Consumed::Now)
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                let at: String = tx
                    .query_row(
                        "SELECT consumed_at FROM consumed_approvals WHERE approval_id = ?1",
                        params![approval_id],
                        |r| r.get(0),
                    )
                    .map_err(db("query"))?;
                Ok(Consumed::Already { at })
            }
            Err(e) => Err(db("insert")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_once_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.consumed_at("a").unwrap(), None);
        assert_eq!(s.consume("a", "h", "e1", "t1").unwrap(), Consumed::Now);
        drop(s);
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.consumed_at("a").unwrap().as_deref(), Some("t1"));
        assert_eq!(
            s.consume("a", "h", "e2", "t2").unwrap(),
            Consumed::Already { at: "t1".into() }
        );
        assert_eq!(s.consume("b", "h", "e2", "t2").unwrap(), Consumed::Now);
    }

    #[test]
    fn two_handles_race_for_one_id_and_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut s = Store::open(&path).unwrap();
                    s.consume("shared", "h", &format!("e{i}"), "t").unwrap()
                })
            })
            .collect();
        let results: Vec<Consumed> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| **r == Consumed::Now).count(), 1);
    }

    #[test]
    fn corrupt_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
        assert!(Store::open(dir.path()).is_err());
    }
}
