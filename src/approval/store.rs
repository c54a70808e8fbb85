//! Durable single-use approvals: consumed approval ids live in an embedded
//! SQLite database under the state directory, so replay protection holds
//! across processes and restarts. The same directory holds the receipt
//! ledger: its entries in the log file [`LOG_FILE`]
//! (`crate::evidence::ledger_log`, schema 4), its signed checkpoints in
//! the database.
//!
//! Consumption is one `INSERT` into a table whose primary key is the
//! approval id, inside `BEGIN IMMEDIATE`: of two concurrent runs exactly
//! one insert succeeds; the other sees a constraint violation, i.e.
//! "already consumed". A database that cannot be opened or has an
//! unexpected shape is an error — never "empty"; corruption met while
//! reading is an error too, and `csc ledger verify` runs SQLite's quick
//! check (not every run: its cost grows with the database).
//!
//! The database runs in write-ahead-log mode with `synchronous = FULL`: a
//! commit is one append to the log and one flush. The log is never
//! checkpointed-and-deleted on close, so it always exists once the store
//! does; a database in WAL mode whose log is missing is refused as lost
//! (the log may have held committed approvals). The database is opened
//! only when a process first needs it ([`Store::conn`]): a run that
//! consumes no approval reads the marker, appends to the ledger log and
//! never pays SQLite's open.
//!
//! A store that once existed cannot silently become empty: the state
//! directory holds an identity marker ([`MARKER_FILE`]) next to the
//! database, and the database and the ledger log record the same store
//! id. A missing, zero-length or replaced database or log while the marker
//! exists, or a missing marker while the database has consumed approvals
//! or the log has entries, is an error. A new
//! store is started only in an empty (or new) directory. Like ssh with its
//! keys, csc refuses a state directory, database, log or marker not owned by its
//! effective uid or writable by group/others, and an ancestor directory
//! writable by group or others (unless sticky) or owned by another user than root.

use crate::evidence::ledger_log::{Entry, LOG_FILE, LedgerLog, OpenError};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, params};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "approvals.sqlite3";
/// File name of the store's identity marker inside the state directory.
pub const MARKER_FILE: &str = "approvals.store-id";
/// The database's write-ahead log (kept between runs).
pub const WAL_FILE: &str = "approvals.sqlite3-wal";
/// Log size above which a commit trims it (`Store::trim_log`).
pub const WAL_TRIM_BYTES: u64 = 256 * 1024;
/// The write-ahead log's shared-memory index.
pub const SHM_FILE: &str = "approvals.sqlite3-shm";
/// Marker of a store whose ledger lives in the database (schema 3 and
/// before); csc rewrites it as [`MARKER_PREFIX`] once the ledger is moved
/// to [`LOG_FILE`].
const MARKER_PREFIX_V1: &str = "csc-approval-store v1 ";
/// Marker of a store whose ledger is [`LOG_FILE`] (schema 4): an open
/// reads the marker and the log, and no database, unless it consumes
/// approvals or reads checkpoints. A csc older than the log refuses it.
const MARKER_PREFIX: &str = "csc-approval-store v2 ";
/// How long a writer waits for another csc holding the lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Version 1 had no `store_meta` table (adopted on open); 2 had no ledger
/// tables (added on open, RFC 0011); 3 kept the ledger's entries in the
/// database; 4 (current) keeps them in [`LOG_FILE`] (moved on open).
const SCHEMA_VERSION: i64 = 4;
/// The last version whose ledger entries live in the database.
const LEDGER_IN_DB_VERSION: i64 = 3;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
#[allow(
    missing_docs,
    reason = "each variant says what failed in its `#[error]` text; variant fields are the values that text names"
)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("state store {path} is unusable ({what}): {message}")]
    Db {
        path: String,
        what: &'static str,
        message: String,
    },
    #[error(
        "refusing approval state {path}: {problem}; it must be owned by uid {euid} (csc's effective uid) and not writable by group or others, and its parent directories must not be writable by other users"
    )]
    Insecure {
        path: String,
        problem: String,
        euid: u32,
    },
    #[error(
        "approval store in {path} was lost or replaced ({problem}); single_execution approvals could be replayed, so csc refuses to continue. See docs/run.md, \"Recovering the approval store\""
    )]
    Lost { path: String, problem: String },
}

/// Outcome of [`Store::consume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// This run consumed the approval.
    Now,
    /// Someone consumed it before, at this time.
    Already {
        /// When it was consumed (RFC 3339).
        at: String,
    },
}

/// The consumed-approvals database.
#[derive(Debug)]
pub struct Store {
    /// The database, opened when first needed (approvals, checkpoints):
    /// a run that only appends to the ledger never opens it.
    conn: std::cell::OnceCell<Connection>,
    /// The store's id (the marker's, checked against the log's header,
    /// and against the database's once it is opened).
    store_id: String,
    /// The ledger's entries.
    log: LedgerLog,
    path: PathBuf,
    /// The state directory, opened once: write locks and directory syncs
    /// go through it, never through the path again.
    dir: std::fs::File,
    /// Log size above which a commit trims it ([`WAL_TRIM_BYTES`]).
    trim_bytes: u64,
    /// Whether this open created a file of the store and synced the
    /// directory for it ([`Store::synced_dir_on_open`]).
    synced_dir: std::cell::Cell<bool>,
    /// Frames in the log after this connection's last commit (SQLite's
    /// WAL hook).
    log_frames: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

/// The files of a store in its directory; SQLite (built with
/// `SQLITE_DISABLE_DIRSYNC`, `.cargo/config.toml`) never syncs the
/// directory itself, so csc does whenever one of them is created
/// (RFC 0011, "Durability").
const STORE_FILES: [&str; 5] = [DB_FILE, WAL_FILE, SHM_FILE, MARKER_FILE, LOG_FILE];

/// Which of [`STORE_FILES`] exist in `dir` (symlinks and other types
/// count as existing: they are refused elsewhere).
fn existing_files(dir: &std::fs::File) -> Result<[bool; 5], std::io::Error> {
    let mut out = [false; 5];
    for (seen, name) in out.iter_mut().zip(STORE_FILES) {
        *seen = match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => true,
            Err(nix::errno::Errno::ENOENT) => false,
            Err(e) => return Err(e.into()),
        };
    }
    Ok(out)
}

/// Whether an open must sync the directory: a file of the store exists
/// now that did not before (its directory entry is not durable yet).
fn created_any(before: [bool; 5], after: [bool; 5]) -> bool {
    before.iter().zip(after).any(|(b, a)| !b && a)
}

/// Threads of this process waiting for a store's write lock ([`write_lock`]).
static LOCK_WAITERS: AtomicUsize = AtomicUsize::new(0);

/// How many waits for a store's write lock are pending in this process
/// (for tests of the cap).
#[doc(hidden)]
pub fn pending_lock_waits() -> usize {
    LOCK_WAITERS.load(Ordering::SeqCst)
}

/// At most this many waits for a write lock at once per process (more than
/// any run concurrency csc has; a bound on what a lock that is never
/// released can cost).
pub const MAX_LOCK_WAITERS: usize = 64;

/// Take the store's write lock: an exclusive `flock` on the state
/// directory through a new open file description of `dir` (the lock
/// `Store::open` holds, so opening and writing are serialized too).
/// Waiting happens in the kernel, which wakes a waiter as soon as the
/// holder releases: unlike SQLite's busy handler, which polls with
/// sleeps growing to 100 ms and so lets a just-finished writer win again
/// and again, no waiter starves. Bounded by [`BUSY_TIMEOUT`] (a holder
/// that never lets go, e.g. a stopped process, is an error, not a hang).
fn write_lock(dir: &std::fs::File) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg, OFlag, openat};
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("cannot reopen the state directory: {e}"))?;
    let file = match Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock) {
        Ok(lock) => return Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => file,
        Err((_, e)) => return Err(format!("cannot lock the state directory: {e}")),
    };
    // Contended: wait in a helper thread so the wait can be bounded; one
    // that gives up drops the receiver and the late lock is released.
    // A waiter outlives a timed-out wait until the holder lets go, so the
    // waiters of one process are capped: a holder that never lets go (a
    // stopped process) costs at most MAX_LOCK_WAITERS threads, not one
    // per attempt of a long-running `csc mcp`.
    if LOCK_WAITERS.fetch_add(1, Ordering::SeqCst) >= MAX_LOCK_WAITERS {
        LOCK_WAITERS.fetch_sub(1, Ordering::SeqCst);
        return Err(format!(
            "{MAX_LOCK_WAITERS} waits for the state store's write lock are already pending in this process (another process holds it and does not let go)"
        ));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("csc-state-lock".to_owned())
        .spawn(move || {
            let mut file = file;
            let got = loop {
                match Flock::lock(file, FlockArg::LockExclusive) {
                    Err((f, Errno::EINTR)) => file = f,
                    other => break other.map_err(|(_, e)| e),
                }
            };
            let _ = tx.send(got);
            LOCK_WAITERS.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        LOCK_WAITERS.fetch_sub(1, Ordering::SeqCst);
        return Err(format!("cannot wait for the state directory lock: {e}"));
    }
    match rx.recv_timeout(BUSY_TIMEOUT) {
        Ok(Ok(lock)) => Ok(lock),
        Ok(Err(e)) => Err(format!("cannot lock the state directory: {e}")),
        Err(_) => Err(format!(
            "another process held the state store's write lock for {} s",
            BUSY_TIMEOUT.as_secs()
        )),
    }
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

fn insecure(path: &Path, problem: impl Into<String>) -> StoreError {
    StoreError::Insecure {
        path: path.display().to_string(),
        problem: problem.into(),
        euid: nix::unistd::geteuid().as_raw(),
    }
}

/// ssh-style ownership and mode checks on the state directory and its
/// ancestors (`dir` is canonical).
fn check_dir_chain(dir: &Path) -> Result<(), StoreError> {
    let euid = nix::unistd::geteuid().as_raw();
    let meta = std::fs::symlink_metadata(dir).map_err(|e| insecure(dir, e.to_string()))?;
    if !meta.is_dir() {
        return Err(insecure(dir, "not a directory"));
    }
    if meta.uid() != euid {
        return Err(insecure(dir, format!("owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(insecure(
            dir,
            format!(
                "mode {:o} is writable by group or others",
                meta.mode() & 0o7777
            ),
        ));
    }
    for ancestor in dir.ancestors().skip(1) {
        let meta =
            std::fs::symlink_metadata(ancestor).map_err(|e| insecure(ancestor, e.to_string()))?;
        if meta.uid() != 0 && meta.uid() != euid {
            return Err(insecure(
                ancestor,
                format!("parent directory owned by uid {}", meta.uid()),
            ));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(insecure(
                ancestor,
                format!(
                    "parent directory mode {:o} is writable by group or others (and not sticky)",
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// `Some(size)` when `path` is a regular file that passes the checks,
/// `None` when it does not exist.
fn check_file(path: &Path) -> Result<Option<u64>, StoreError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(insecure(path, e.to_string())),
    };
    if !meta.file_type().is_file() {
        return Err(insecure(
            path,
            "not a regular file (symlink or special file)",
        ));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(insecure(path, format!("owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(insecure(
            path,
            format!(
                "mode {:o} is writable by group or others",
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(Some(meta.len()))
}

/// Whether the database header (bytes 18 and 19) says write-ahead-log mode.
fn header_says_wal(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut header = [0u8; 20];
    let mut f = std::fs::File::open(path)?;
    match f.read_exact(&mut header) {
        Ok(()) => Ok(header[18] == 2 && header[19] == 2),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether anything was ever consumed or appended.
fn has_rows(conn: &Connection) -> Result<bool, rusqlite::Error> {
    let consumed: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM consumed_approvals)",
        [],
        |r| r.get(0),
    )?;
    // Schema 4 has no ledger table (the log holds the entries).
    let ledger_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_entries')",
        [],
        |r| r.get(0),
    )?;
    Ok(consumed
        || (ledger_table
            && conn.query_row("SELECT EXISTS (SELECT 1 FROM ledger_entries)", [], |r| {
                r.get(0)
            })?))
}

/// The canonical store directory, held under an exclusive `flock` while a
/// process opens (and perhaps first initializes) the store. The same lock
/// serializes every write transaction ([`write_lock`]).
struct LockedDir {
    dir: PathBuf,
    lock: nix::fcntl::Flock<std::fs::File>,
}

fn dir_error(dir: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Dir {
        path: dir.display().to_string(),
        source,
    }
}

fn db_error<'a>(path: &'a Path, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |e| StoreError::Db {
        path: path.display().to_string(),
        what,
        message: e.to_string(),
    }
}

/// Create `dir` (0700) if needed, check its ancestry and lock it.
fn lock_dir(dir: &Path) -> Result<LockedDir, StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir_err = dir_error(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(&dir_err)?;
    let canonical = std::fs::canonicalize(dir).map_err(&dir_err)?;
    check_dir_chain(&canonical)?;
    // Serialize opening (and a first initialization) between processes,
    // with the same bounded wait as a write: a holder that never lets go
    // (a stopped process) is an error after BUSY_TIMEOUT, not a hang.
    let dir_file = std::fs::File::open(&canonical).map_err(&dir_err)?;
    let lock = write_lock(&dir_file).map_err(|message| StoreError::Db {
        path: canonical.display().to_string(),
        what: "lock",
        message,
    })?;
    Ok(LockedDir {
        dir: canonical,
        lock,
    })
}

/// What the marker file says.
struct Marker {
    id: String,
    /// Whether it is a [`MARKER_PREFIX`] marker (the ledger is the log).
    log: bool,
}

/// The marker file's store id, if there is one.
fn read_marker(
    marker_path: &Path,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<Option<Marker>, StoreError> {
    if check_file(marker_path)?.is_none() {
        return Ok(None);
    }
    let bytes = crate::fsutil::read_regular_file_capped(marker_path, 256)
        .map_err(|_| lost(format!("cannot read the marker {MARKER_FILE}")))?;
    let text = String::from_utf8(bytes).unwrap_or_default();
    let text = text.trim_end();
    let (id, log) = match text.strip_prefix(MARKER_PREFIX) {
        Some(id) => (id, true),
        None => (text.strip_prefix(MARKER_PREFIX_V1).unwrap_or(""), false),
    };
    if id.is_empty() {
        return Err(lost(format!("the marker {MARKER_FILE} is malformed")));
    }
    Ok(Some(Marker {
        id: id.to_owned(),
        log,
    }))
}

/// Whether a new store may be started: only in an empty directory; a
/// marker without its database, or an empty database, is a lost store.
fn is_fresh(
    dir: &Path,
    marker: Option<&str>,
    db_size: Option<u64>,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<bool, StoreError> {
    match (marker, db_size) {
        (Some(id), None) => Err(lost(format!(
            "the marker {MARKER_FILE} names store {id} but the database {DB_FILE} is missing"
        ))),
        (_, Some(0)) => Err(lost(format!("the database {DB_FILE} is empty (0 bytes)"))),
        (Some(_), Some(_)) | (None, Some(_)) => Ok(false),
        (None, None) => {
            let entries: Vec<String> = std::fs::read_dir(dir)
                .map_err(dir_error(dir))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !entries.is_empty() {
                return Err(lost(format!(
                    "the directory holds {entries:?} but neither {DB_FILE} nor {MARKER_FILE}; a new store is only started in an empty directory"
                )));
            }
            Ok(true)
        }
    }
}

/// Open the database in write-ahead-log mode with full sync, refusing a
/// WAL-mode database whose log is missing.
fn connect(
    dir: &Path,
    dir_fd: &std::fs::File,
    path: &Path,
    db_size: Option<u64>,
    fresh: bool,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<Connection, StoreError> {
    let wal = check_file(&dir.join(WAL_FILE))?;
    check_file(&dir.join(SHM_FILE))?;
    let mut legacy = false;
    if db_size.is_some() && wal.is_none() {
        if header_says_wal(path).map_err(dir_error(dir))? {
            return Err(lost(format!(
                "the database {DB_FILE} is in write-ahead-log mode but its log {WAL_FILE} is missing: committed approvals and ledger entries may have been lost (was the database copied without it, or opened by another SQLite tool?)"
            )));
        }
        // A rollback-journal store (before round 3): switching it to WAL
        // writes its first page through a rollback journal, whose name
        // must be durable before that page is (SQLite no longer syncs the
        // directory itself). Create it empty (not hot) and sync now.
        legacy = true;
        precreate_journal(dir_fd).map_err(dir_error(dir))?;
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if fresh {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(db_error(path, "open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db_error(path, "busy timeout"))?;
    // The write-ahead log stays on disk between runs (no checkpoint and
    // no deletion on close), so a missing one is detected above.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(db_error(path, "configure"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_error(path, "journal mode"))?;
    if legacy {
        // Deleted by SQLite after the switch; an unused one is removed.
        match nix::unistd::unlinkat(
            dir_fd,
            JOURNAL_FILE,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(dir_error(dir)(e.into())),
        }
    }
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Db {
            path: path.display().to_string(),
            what: "journal mode",
            message: format!("cannot switch to write-ahead logging (journal_mode is {mode})"),
        });
    }
    // Checkpoints are csc's (`Store::trim_log`), not SQLite's automatic
    // ones, which never restart the log across processes (a new process
    // rebuilds the log index and counts every frame as not yet copied).
    // A log left longer than twice the trim size (a trim skipped while
    // readers were on it) is cut back when it restarts.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {}",
        2 * WAL_TRIM_BYTES
    ))
    .map_err(db_error(path, "synchronous"))?;
    Ok(conn)
}

/// The rollback journal of a store from before write-ahead logging.
const JOURNAL_FILE: &str = "approvals.sqlite3-journal";

/// Create an empty rollback journal unless one exists (a hot journal is
/// SQLite's to roll back) and make its name durable.
fn precreate_journal(dir: &std::fs::File) -> std::io::Result<()> {
    use nix::fcntl::{OFlag, openat};
    match openat(
        dir,
        JOURNAL_FILE,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) {
        Ok(_) => dir.sync_all(),
        Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Check the schema version and create or upgrade the tables (only when
/// the version changes); a foreign or newer database is refused.
fn migrate(
    conn: &Connection,
    path: &Path,
    fresh: bool,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_error(path, "read version"))?;
    let has_table = |name: &str| -> Result<bool, StoreError> {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            params![name],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(db_error(path, "read schema"))
    };
    match version {
        LEDGER_IN_DB_VERSION..=SCHEMA_VERSION => {}
        0 if fresh => {}
        0..LEDGER_IN_DB_VERSION if has_table("consumed_approvals")? => {}
        0..LEDGER_IN_DB_VERSION => {
            return Err(lost(format!(
                "the database {DB_FILE} is not a csc approval store (no consumed_approvals table)"
            )));
        }
        other => {
            return Err(StoreError::Db {
                path: path.display().to_string(),
                what: "schema version",
                message: format!(
                    "version {other} is newer than this csc supports ({SCHEMA_VERSION}); use a newer csc"
                ),
            });
        }
    }
    if version < LEDGER_IN_DB_VERSION {
        // Up to version 3; `ensure_log` takes it to 4.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS consumed_approvals (
                 approval_id     TEXT PRIMARY KEY NOT NULL,
                 contract_sha256 TEXT NOT NULL,
                 execution_id    TEXT NOT NULL,
                 consumed_at     TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS store_meta (
                 key   TEXT PRIMARY KEY NOT NULL,
                 value TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS ledger_entries (
                 idx            INTEGER PRIMARY KEY NOT NULL,
                 leaf_hash      BLOB NOT NULL,
                 prev_leaf_hash BLOB NOT NULL,
                 receipt        BLOB NOT NULL,
                 appended_at    TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS ledger_entries_leaf ON ledger_entries (leaf_hash);
             CREATE TABLE IF NOT EXISTS ledger_checkpoints (
                 seq       INTEGER PRIMARY KEY NOT NULL,
                 tree_size INTEGER NOT NULL,
                 envelope  TEXT NOT NULL
             );
             PRAGMA user_version = {LEDGER_IN_DB_VERSION};
             COMMIT;"
        ))
        .map_err(db_error(path, "create schema"))?;
    }
    // Probe the table shape so a foreign database is an error now.
    conn.prepare("SELECT approval_id, contract_sha256, execution_id, consumed_at FROM consumed_approvals LIMIT 0")
        .map_err(db_error(path, "table shape"))?;
    Ok(())
}

/// The marker file and the database must name the same store; a new
/// store (or a version-1 store without an id) gets an id (its marker is
/// written by [`Store::open`] once the log exists). Returns the id.
fn reconcile_identity(
    conn: &Connection,
    dir_fd: &std::fs::File,
    dir: &Path,
    path: &Path,
    marker: Option<&str>,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<String, StoreError> {
    let db_id: Option<String> = conn
        .query_row(
            "SELECT value FROM store_meta WHERE key = 'store_id'",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(db_error(path, "read store id")(e)),
        })?;
    match (marker, db_id) {
        (Some(m), Some(d)) if m == d => Ok(d),
        (Some(m), Some(d)) => Err(lost(format!(
            "the database belongs to store {d} but the marker {MARKER_FILE} names store {m}"
        ))),
        (Some(m), None) => Err(lost(format!(
            "the database has no store id but the marker {MARKER_FILE} names store {m}"
        ))),
        (None, Some(d)) => {
            let log_entries = match find_log(dir_fd, dir, &d, lost)? {
                Some(log) => log.has_entries().map_err(lost)?,
                None => false,
            };
            if log_entries || has_rows(conn).map_err(db_error(path, "query"))? {
                return Err(lost(format!(
                    "the marker {MARKER_FILE} of store {d} is missing"
                )));
            }
            // An interrupted first open (nothing consumed or appended yet).
            Ok(d)
        }
        // A new store, or a version-1 store without an id.
        (None, None) => {
            let id = new_store_id().map_err(dir_error(dir))?;
            conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('store_id', ?1)",
                params![id],
            )
            .map_err(db_error(path, "write store id"))?;
            Ok(id)
        }
    }
}

/// Make [`LOG_FILE`] the ledger (schema 4). A database of schema 3 holds
/// the entries; in one `BEGIN IMMEDIATE` transaction they are read, written
/// to a new log (flushed, renamed, the directory synced), and the table is
/// dropped with the version set to 4 in its commit. Interrupted before the
/// commit, the next open does it again from the database; after it, the
/// log is the ledger, and a csc still running from before the move fails
/// loudly on the missing table instead of appending where nobody reads. A
/// log already there (an interrupted move) is replaced only if its entries
/// are a prefix of the database's: anything else (a database restored from
/// an older backup next to a newer log) is refused, never overwritten.
fn ensure_log(
    conn: &Connection,
    dir_fd: &std::fs::File,
    dir: &Path,
    path: &Path,
    id: &str,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_error(path, "read version"))?;
    if version > LEDGER_IN_DB_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(db_error(path, "move the ledger"))?;
    let moved = move_entries(conn, dir_fd, dir, path, id, lost);
    let end = if moved.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn
        .execute_batch(end)
        .map_err(db_error(path, "move the ledger"));
    moved.and(ended)
}

/// The body of [`ensure_log`]'s transaction.
fn move_entries(
    conn: &Connection,
    dir_fd: &std::fs::File,
    dir: &Path,
    path: &Path,
    id: &str,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<(), StoreError> {
    let entries = entries_in_db(conn).map_err(db_error(path, "read the ledger"))?;
    if let Some(old) = find_log(dir_fd, dir, id, lost)? {
        let mut n = 0usize;
        old.for_each(&mut |e| {
            if entries.get(n) != Some(&e) {
                return Err(format!("entry {n} is not the database's"));
            }
            n += 1;
            Ok(())
        })
        .map_err(|why| {
            lost(format!(
                "{LOG_FILE} holds entries the database does not ({why}): was the database restored from an older backup? Keep both files for the investigation"
            ))
        })?;
    }
    let log_err = |message: String| StoreError::Db {
        path: dir.join(LOG_FILE).display().to_string(),
        what: "create the ledger log",
        message,
    };
    LedgerLog::create(dir_fd, id, &entries).map_err(log_err)?;
    dir_fd.sync_all().map_err(dir_error(dir))?;
    conn.execute_batch(&format!(
        "DROP TABLE ledger_entries; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(db_error(path, "move the ledger"))
}

/// The ledger entries a schema-3 database holds, by index.
fn entries_in_db(conn: &Connection) -> Result<Vec<Entry>, rusqlite::Error> {
    let hash = |b: Vec<u8>| -> Result<[u8; 32], rusqlite::Error> {
        b.try_into().map_err(|b: Vec<u8>| {
            rusqlite::Error::FromSqlConversionFailure(
                b.len(),
                rusqlite::types::Type::Blob,
                "a stored hash is not 32 bytes".into(),
            )
        })
    };
    let mut stmt = conn.prepare(
        "SELECT idx, leaf_hash, prev_leaf_hash, receipt, appended_at FROM ledger_entries ORDER BY idx",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Entry {
            index: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(u64::MAX),
            leaf_hash: hash(r.get(1)?)?,
            prev_leaf_hash: hash(r.get(2)?)?,
            receipt: r.get(3)?,
            appended_at: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The log of store `id` if it exists: one that is not private to csc is
/// refused as insecure (like the store's other files), one that is not
/// this store's as lost.
fn find_log(
    dir_fd: &std::fs::File,
    dir: &Path,
    id: &str,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<Option<LedgerLog>, StoreError> {
    LedgerLog::open(dir_fd, id).map_err(|e| match e {
        OpenError::Insecure(problem) => insecure(&dir.join(LOG_FILE), problem),
        OpenError::Bad(message) => lost(message),
    })
}

/// Open the log of store `id`; a missing one is a lost store.
fn open_log(
    dir_fd: &std::fs::File,
    dir: &Path,
    id: &str,
    lost: &dyn Fn(String) -> StoreError,
) -> Result<LedgerLog, StoreError> {
    find_log(dir_fd, dir, id, lost)?.ok_or_else(|| {
        lost(format!(
            "the ledger log {LOG_FILE} of store {id} is missing"
        ))
    })
}

fn new_store_id() -> Result<String, std::io::Error> {
    use std::io::Read;
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(crate::canonical::hex(&raw))
}

/// Count the log's frames after each commit (SQLite's WAL hook), for
/// [`Store::trim_log`].
fn with_wal_hook(
    mut conn: Connection,
    path: &Path,
    frames: &std::sync::Arc<std::sync::atomic::AtomicU32>,
) -> Result<Connection, StoreError> {
    let frames = frames.clone();
    conn.wal_hook(Some(
        move |_: &mut rusqlite::hooks::Wal, n: std::ffi::c_int| {
            frames.store(
                u32::try_from(n).unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
            Ok(())
        },
    ))
    .map_err(db_error(path, "configure"))?;
    Ok(conn)
}

impl Store {
    /// Open the store in `dir`, creating the directory and a new store only
    /// when the directory is new or empty. See the module docs for what is
    /// refused. A store already on schema 4 is opened without its database
    /// (see [`Store::conn`]).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let opened = lock_dir(dir)?;
        let dir = &opened.dir;
        let path = dir.join(DB_FILE);
        let lost = |problem: String| StoreError::Lost {
            path: dir.display().to_string(),
            problem,
        };
        let before = existing_files(&opened.lock).map_err(dir_error(dir))?;
        let db_size = check_file(&path)?;
        let marker = read_marker(&dir.join(MARKER_FILE), &lost)?;
        let fresh = is_fresh(dir, marker.as_ref().map(|m| m.id.as_str()), db_size, &lost)?;
        let conn = std::cell::OnceCell::new();
        let log_frames = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (store_id, log) = match marker {
            Some(Marker { id, log: true }) => {
                let log = open_log(&opened.lock, dir, &id, &lost)?;
                (id, log)
            }
            marker => {
                let c = connect(dir, &opened.lock, &path, db_size, fresh, &lost)?;
                migrate(&c, &path, fresh, &lost)?;
                let marker_id = marker.map(|m| m.id);
                let id =
                    reconcile_identity(&c, &opened.lock, dir, &path, marker_id.as_deref(), &lost)?;
                ensure_log(&c, &opened.lock, dir, &path, &id, &lost)?;
                let log = open_log(&opened.lock, dir, &id, &lost)?;
                // Last: from now on an open reads the log, not the database.
                let marker_dir = crate::fsutil::DirFd::open(dir, false).map_err(dir_error(dir))?;
                marker_dir
                    .write_atomic(
                        std::ffi::OsStr::new(MARKER_FILE),
                        format!("{MARKER_PREFIX}{id}\n").as_bytes(),
                    )
                    .map_err(dir_error(dir))?;
                let _ = conn.set(with_wal_hook(c, &path, &log_frames)?);
                (id, log)
            }
        };
        // Still under the lock: a file created now is durable before any
        // other process can see it and rely on it.
        // (Usually every file existed: nothing to look at again.)
        let synced_dir = !before.iter().all(|e| *e)
            && created_any(
                before,
                existing_files(&opened.lock).map_err(dir_error(dir))?,
            );
        if synced_dir {
            opened.lock.sync_all().map_err(dir_error(dir))?;
        }
        let dir_file = opened
            .lock
            .unlock()
            .map_err(|(_, e)| dir_error(dir)(std::io::Error::from(e)))?;
        Ok(Store {
            conn,
            store_id,
            log,
            path,
            dir: dir_file,
            trim_bytes: WAL_TRIM_BYTES,
            synced_dir: std::cell::Cell::new(synced_dir),
            log_frames,
        })
    }

    /// The database, opened now if this process has not yet (under the
    /// store's lock, with the checks an open of a schema-3 store makes:
    /// WAL log present, schema 4, the marker's store id).
    pub(crate) fn conn(&self) -> Result<&Connection, StoreError> {
        if let Some(c) = self.conn.get() {
            return Ok(c);
        }
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let lock = write_lock(&self.dir).map_err(|message| StoreError::Db {
            path: dir.display().to_string(),
            what: "lock",
            message,
        })?;
        let lost = |problem: String| StoreError::Lost {
            path: dir.display().to_string(),
            problem,
        };
        let before = existing_files(&self.dir).map_err(dir_error(dir))?;
        let db_size = check_file(&self.path)?;
        match db_size {
            None => {
                return Err(lost(format!(
                    "the marker {MARKER_FILE} names store {} but the database {DB_FILE} is missing",
                    self.store_id
                )));
            }
            Some(0) => return Err(lost(format!("the database {DB_FILE} is empty (0 bytes)"))),
            Some(_) => {}
        }
        // A schema-4 database is in WAL mode; anything else was replaced,
        // and is refused before SQLite changes it.
        if !header_says_wal(&self.path).map_err(dir_error(dir))? {
            return Err(lost(format!(
                "the database {DB_FILE} is not in write-ahead-log mode, which a store with a ledger log always is (replaced?)"
            )));
        }
        let c = connect(dir, &self.dir, &self.path, db_size, false, &lost)?;
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_error(&self.path, "read version"))?;
        if version != SCHEMA_VERSION {
            return Err(lost(format!(
                "the marker {MARKER_FILE} says the ledger is {LOG_FILE} but the database is at schema version {version}"
            )));
        }
        migrate(&c, &self.path, false, &lost)?;
        let id = reconcile_identity(&c, &self.dir, dir, &self.path, Some(&self.store_id), &lost)?;
        debug_assert_eq!(id, self.store_id);
        if created_any(before, existing_files(&self.dir).map_err(dir_error(dir))?) {
            self.dir.sync_all().map_err(dir_error(dir))?;
            self.synced_dir.set(true);
        }
        drop(lock);
        let c = with_wal_hook(c, &self.path, &self.log_frames)?;
        Ok(self.conn.get_or_init(|| c))
    }

    /// Append an entry (leaf hash `leaf` of `receipt`) to the ledger log
    /// under the store's write lock, flushed before returning; its index.
    pub fn append_log(
        &mut self,
        leaf: &[u8; 32],
        receipt: &[u8],
        now: &str,
    ) -> Result<u64, StoreError> {
        let path = self.path.with_file_name(LOG_FILE).display().to_string();
        let err = |what, message| StoreError::Db {
            path: path.clone(),
            what,
            message,
        };
        let _lock = write_lock(&self.dir).map_err(|m| err("ledger lock", m))?;
        self.log
            .append(&self.dir, leaf, receipt, now)
            .map_err(|m| err("ledger append", m))
    }

    /// Call `each` with every ledger entry in log order.
    /// The entries are those the log held when the store's lock was
    /// free (an append in progress elsewhere is not read half-written).
    pub fn for_each_log_entry(
        &self,
        each: &mut dyn FnMut(Entry) -> Result<(), String>,
    ) -> Result<(), String> {
        let size = {
            let _lock = write_lock(&self.dir)?;
            self.log.size()?
        };
        self.log.for_each_within(size, each)
    }

    /// Whether this open (or the database's first use, [`Store::conn`])
    /// created a file of the store (database, WAL log, its index, the
    /// marker or the ledger log) and therefore synced the directory. A test
    /// hook (RFC 0011, "Durability").
    #[doc(hidden)]
    pub fn synced_dir_on_open(&self) -> bool {
        self.synced_dir.get()
    }

    /// Trim the log once it exceeds `bytes` instead of [`WAL_TRIM_BYTES`]
    /// (0: after every commit). A test hook: the worst case for writers
    /// waiting behind a trim.
    #[doc(hidden)]
    pub fn set_trim_threshold(&mut self, bytes: u64) {
        self.trim_bytes = bytes;
    }

    /// Run `f` in a `BEGIN IMMEDIATE` transaction under the store's write
    /// lock ([`write_lock`]), committed when it returns `Ok((_, true))`
    /// and rolled back otherwise; after a commit, still under the lock,
    /// the log is trimmed when due ([`Store::trim_log`]). Errors name the
    /// step: "lock", "begin", "write" or "commit".
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<(T, bool), rusqlite::Error>,
    ) -> Result<T, (&'static str, String)> {
        let conn = self.conn().map_err(|e| ("open", e.to_string()))?;
        let _lock = write_lock(&self.dir).map_err(|e| ("lock", e))?;
        // Every csc writer holds the lock, so SQLite's own lock is free;
        // a foreign SQLite client may still hold it (its busy handler
        // waits, then this retries within the same budget).
        let start = std::time::Instant::now();
        loop {
            match conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                        && start.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(("begin", e.to_string())),
            }
        }
        let value = match f(conn) {
            Ok((value, true)) => match conn.execute_batch("COMMIT") {
                Ok(()) => value,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(("commit", e.to_string()));
                }
            },
            Ok((value, false)) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Ok(value);
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(("write", e.to_string()));
            }
        };
        self.trim_log();
        Ok(value)
    }

    /// Keep the write-ahead log short: every process rebuilds the log's
    /// index by reading every valid frame when it opens the store, so once
    /// it holds more than [`WAL_TRIM_BYTES`] its content is copied into the
    /// database (`wal_checkpoint(RESTART)`: database flushed, no reader
    /// left on the log) and the log restarted in place by one small commit
    /// (the schema cookie rewritten with its own value): the log's header
    /// gets new salts, so older frames no longer count, and later commits
    /// overwrite them. The file keeps its size: a commit changes no file
    /// size, and its `fdatasync` is one data flush (a log truncated and
    /// regrown needs its inode written on every commit). Called after a
    /// commit, under the write lock; that commit is already durable, so a
    /// failed trim is only retried later.
    fn trim_log(&self) {
        // Each frame is a page plus a 24-byte header (4 KiB pages).
        let frames = u64::from(self.log_frames.load(std::sync::atomic::Ordering::Relaxed));
        if frames * (4096 + 24) <= self.trim_bytes {
            return;
        }
        let Some(conn) = self.conn.get() else {
            return;
        };
        // Without waiting for readers (`csc ledger verify` in another
        // process): busy now, trimmed after a later commit.
        if conn.busy_timeout(Duration::ZERO).is_err() {
            return;
        }
        let done = conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .is_ok_and(|(busy, log, copied)| busy == 0 && log == copied);
        if done {
            // This process restarts the log now: the next process rebuilds
            // its index from the log alone and would not know it was copied.
            let _ = conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"));
        }
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
    }

    /// SQLite's quick check (`PRAGMA quick_check`: every page and record
    /// well-formed; O(database), so not on every run): `Ok(())` or every
    /// problem it reports.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let mut stmt = self
            .conn()?
            .prepare("PRAGMA quick_check")
            .map_err(self.err("integrity check"))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err("integrity check"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err("integrity check"))?;
        if lines.len() == 1 && lines[0] == "ok" {
            return Ok(());
        }
        Err(StoreError::Db {
            path: self.path.display().to_string(),
            what: "integrity check",
            message: lines.join("; "),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's identity (the id its marker names).
    pub fn store_id(&self) -> Result<String, StoreError> {
        Ok(self.store_id.clone())
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
            .conn()?
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

    /// Atomically consume `approval_id` for this run ([`Store::consume_all`]
    /// with one id).
    pub fn consume(
        &mut self,
        approval_id: &str,
        contract_sha256: &str,
        execution_id: &str,
        now: &str,
    ) -> Result<Consumed, StoreError> {
        let ids = [approval_id.to_owned()];
        Ok(
            match self.consume_all(&ids, contract_sha256, execution_id, now)? {
                Ok(()) => Consumed::Now,
                Err((_, at)) => Consumed::Already { at },
            },
        )
    }

    /// Atomically consume every id in `approval_ids` for this run, in one
    /// transaction: either all are consumed now (or already were, by this
    /// same `execution_id`), or none is and the first one consumed by
    /// another execution is reported (with its time).
    pub fn consume_all(
        &mut self,
        approval_ids: &[String],
        contract_sha256: &str,
        execution_id: &str,
        now: &str,
    ) -> Result<Result<(), (String, String)>, StoreError> {
        let path = self.path.display().to_string();
        let outcome = self.write(|tx| {
            for id in approval_ids {
                let inserted = tx.execute(
                    "INSERT INTO consumed_approvals (approval_id, contract_sha256, execution_id, consumed_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, contract_sha256, execution_id, now],
                );
                match inserted {
                    Ok(_) => {}
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == ErrorCode::ConstraintViolation =>
                    {
                        let (by, at): (String, String) = tx.query_row(
                            "SELECT execution_id, consumed_at FROM consumed_approvals WHERE approval_id = ?1",
                            params![id],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )?;
                        if by == execution_id {
                            // This run's own consumption (a retry): not a
                            // conflict, and nothing is doubled.
                            continue;
                        }
                        // Rolled back: none of this run's ids is consumed.
                        return Ok((Err((id.clone(), at)), false));
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok((Ok(()), true))
        })
        .map_err(|(what, message)| StoreError::Db {
            path: path.clone(),
            what,
            message,
        })?;
        Ok(outcome)
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
    fn consume_all_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.consume("b", "h", "e0", "t0").unwrap(), Consumed::Now);
        let ids = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(
            s.consume_all(&ids, "h", "e1", "t1").unwrap(),
            Err(("b".to_owned(), "t0".to_owned()))
        );
        assert_eq!(s.consumed_at("a").unwrap(), None, "rolled back");
        let ids = vec!["a".to_owned(), "c".to_owned()];
        assert_eq!(s.consume_all(&ids, "h", "e2", "t2").unwrap(), Ok(()));
        assert_eq!(s.consumed_at("c").unwrap().as_deref(), Some("t2"));
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
    fn marker_guards_against_a_lost_database() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.consume("a", "h", "e1", "t1").unwrap(), Consumed::Now);
        drop(s);
        let db = dir.path().join(DB_FILE);
        let marker = dir.path().join(MARKER_FILE);
        let saved = std::fs::read(&db).unwrap();
        std::fs::remove_file(&db).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Lost { .. })
        ));
        assert!(!db.exists(), "a deleted database must not be recreated");
        std::fs::write(&db, b"").unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Lost { .. })
        ));
        std::fs::write(&db, &saved).unwrap();
        std::fs::remove_file(&marker).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Lost { .. })
        ));
        // A directory with unrelated content never gets a fresh store.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("approvals.sqlite3-journal"), b"x").unwrap();
        assert!(matches!(
            Store::open(other.path()),
            Err(StoreError::Lost { .. })
        ));
    }

    #[test]
    fn a_lost_write_ahead_log_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.consume("a", "h", "e1", "t1").unwrap(), Consumed::Now);
        drop(s);
        // The committed consumption may live only in the log: it must
        // survive closing, and its loss must be named, never "empty".
        let wal = dir.path().join(WAL_FILE);
        assert!(wal.exists(), "the write-ahead log is kept on close");
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.consumed_at("a").unwrap().as_deref(), Some("t1"));
        drop(s);
        std::fs::remove_file(&wal).unwrap();
        // Found when the database is first needed (an open that only
        // appends to the ledger log does not read it).
        let s = Store::open(dir.path()).unwrap();
        let err = s.consumed_at("a").unwrap_err();
        assert!(
            matches!(&err, StoreError::Lost { problem, .. } if problem.contains(WAL_FILE)),
            "{err}"
        );
    }

    #[test]
    fn the_write_ahead_log_stays_short_across_processes() {
        // Each run is its own process: reopen per append, as csc does.
        let dir = tempfile::tempdir().unwrap();
        // (Ledger appends go to the ledger log; consumptions commit to the
        // database's write-ahead log.)
        let pad = "x".repeat(1200);
        for i in 0..400 {
            let mut s = Store::open(dir.path()).unwrap();
            assert_eq!(
                s.consume(&format!("{i}-{pad}"), "h", "e", "t").unwrap(),
                Consumed::Now
            );
        }
        let wal = std::fs::metadata(dir.path().join(WAL_FILE)).unwrap().len();
        assert!(
            wal > WAL_TRIM_BYTES / 2,
            "the commits went to the log ({wal} bytes)"
        );
        assert!(wal <= 2 * WAL_TRIM_BYTES, "the log grew to {wal} bytes");
        let s = Store::open(dir.path()).unwrap();
        let n: i64 = s
            .conn()
            .unwrap()
            .query_row("SELECT count(*) FROM consumed_approvals", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 400);
    }

    #[test]
    fn the_directory_is_synced_exactly_when_a_file_was_created() {
        let none = [false; 5];
        let all = [true; 5];
        assert!(created_any(none, all), "a new store");
        assert!(!created_any(all, all), "a reopened store");
        assert!(
            created_any([true, true, false, true, true], all),
            "a new -shm"
        );
        assert!(
            !created_any(all, [true, true, false, true, true]),
            "a removal is no creation"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::open(dir.path()).unwrap();
        assert_eq!(existing_files(&f).unwrap(), none);
        std::fs::write(dir.path().join(WAL_FILE), b"").unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join(MARKER_FILE)).unwrap();
        assert_eq!(
            existing_files(&f).unwrap(),
            [false, true, false, true, false]
        );
    }

    #[test]
    fn a_rollback_journal_store_is_converted_with_its_journal_synced() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "PRAGMA journal_mode = DELETE;
                 CREATE TABLE consumed_approvals (approval_id TEXT PRIMARY KEY NOT NULL,
                     contract_sha256 TEXT NOT NULL, execution_id TEXT NOT NULL,
                     consumed_at TEXT NOT NULL);
                 INSERT INTO consumed_approvals VALUES ('old', 'h', 'e', 't0');",
            )
            .unwrap();
        }
        assert!(!header_says_wal(&dir.path().join(DB_FILE)).unwrap());
        let mut s = Store::open(dir.path()).unwrap();
        assert!(s.synced_dir_on_open());
        assert_eq!(s.consumed_at("old").unwrap().as_deref(), Some("t0"));
        assert_eq!(
            s.consume("old", "h", "another-run", "t1").unwrap(),
            Consumed::Already { at: "t0".into() }
        );
        drop(s);
        assert!(header_says_wal(&dir.path().join(DB_FILE)).unwrap());
        assert!(
            !dir.path().join(JOURNAL_FILE).exists(),
            "no journal left behind"
        );
        assert!(dir.path().join(WAL_FILE).exists());
        assert!(!Store::open(dir.path()).unwrap().synced_dir_on_open());
    }

    /// A store as csc wrote it before the ledger log (schema 3, marker v1):
    /// `n` ledger entries in the database.
    fn schema3_store(dir: &Path, n: u64) -> String {
        let s = Store::open(dir).unwrap();
        let id = s.store_id().unwrap();
        let conn = s.conn().unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS ledger_entries (idx INTEGER PRIMARY KEY NOT NULL,
                 leaf_hash BLOB NOT NULL, prev_leaf_hash BLOB NOT NULL, receipt BLOB NOT NULL,
                 appended_at TEXT NOT NULL);
             PRAGMA user_version = {LEDGER_IN_DB_VERSION};"
        ))
        .unwrap();
        for i in 0..n {
            conn.execute(
                "INSERT INTO ledger_entries VALUES (?1, ?2, ?3, ?4, 't')",
                params![
                    i as i64,
                    vec![i as u8 + 1; 32],
                    vec![i as u8; 32],
                    format!("{{\"n\":{i}}}").into_bytes()
                ],
            )
            .unwrap();
        }
        drop(s);
        std::fs::remove_file(dir.join(LOG_FILE)).unwrap();
        std::fs::write(dir.join(MARKER_FILE), format!("{MARKER_PREFIX_V1}{id}\n")).unwrap();
        id
    }

    fn log_entries(s: &Store) -> Vec<Entry> {
        let mut out = Vec::new();
        s.for_each_log_entry(&mut |e| {
            out.push(e);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_schema_3_store_moves_its_ledger_to_the_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = schema3_store(dir.path(), 3);
        let mut s = Store::open(dir.path()).unwrap();
        let moved = log_entries(&s);
        assert_eq!(moved.len(), 3);
        assert_eq!(moved[2].receipt, b"{\"n\":2}");
        assert_eq!(moved[2].leaf_hash, [3; 32]);
        assert_eq!(s.append_log(&[9; 32], b"{}", "t2").unwrap(), 3);
        assert_eq!(s.store_id().unwrap(), id);
        let conn = s.conn().unwrap();
        let (version, tables): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master WHERE name = 'ledger_entries')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        // The table is gone: a csc still running from before the move
        // fails on it instead of appending where nobody reads.
        assert_eq!((version, tables), (SCHEMA_VERSION, 0));
        drop(s);
        let marker = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
        assert_eq!(marker, format!("{MARKER_PREFIX}{id}\n"));
        // Reopened from the log alone: the database stays closed.
        let s = Store::open(dir.path()).unwrap();
        assert!(s.conn.get().is_none());
        assert_eq!(log_entries(&s).len(), 4);
    }

    #[test]
    fn a_move_interrupted_before_its_commit_is_redone_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let id = schema3_store(dir.path(), 2);
        // A log left by a move that crashed before the database's commit
        // (here: an empty one): the database's entries are the ledger.
        let d = std::fs::File::open(dir.path()).unwrap();
        LedgerLog::create(&d, &id, &[]).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(log_entries(&s).len(), 2);
    }

    #[test]
    fn a_move_never_overwrites_a_log_with_entries_the_database_lacks() {
        // A database (and marker) restored from a backup taken before the
        // move, next to the newer log: refused, the log left as it is.
        let dir = tempfile::tempdir().unwrap();
        let id = schema3_store(dir.path(), 2);
        let d = std::fs::File::open(dir.path()).unwrap();
        let newer: Vec<Entry> = (0..3)
            .map(|i| Entry {
                index: i,
                leaf_hash: [i as u8 + 1; 32],
                prev_leaf_hash: [i as u8; 32],
                receipt: format!("{{\"n\":{i}}}").into_bytes(),
                appended_at: "t".to_owned(),
            })
            .collect();
        LedgerLog::create(&d, &id, &newer).unwrap();
        let before = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Lost { problem, .. } if problem.contains("older backup")),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), before);
    }

    #[test]
    fn a_lost_or_foreign_ledger_log_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.append_log(&[1; 32], b"{}", "t").unwrap();
        drop(s);
        let log = dir.path().join(LOG_FILE);
        let saved = std::fs::read(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Lost { problem, .. } if problem.contains("is missing")),
            "{err}"
        );
        // Another store's log in its place.
        let other = tempfile::tempdir().unwrap();
        drop(Store::open(other.path()).unwrap());
        std::fs::copy(other.path().join(LOG_FILE), &log).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Lost { problem, .. } if problem.contains("belongs to store")),
            "{err}"
        );
        std::fs::write(&log, &saved).unwrap();
        // A missing marker next to a log with entries: never a new store.
        std::fs::remove_file(dir.path().join(MARKER_FILE)).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Lost { problem, .. } if problem.contains("is missing")),
            "{err}"
        );
    }

    #[test]
    fn a_ledger_log_not_private_to_csc_is_refused_as_insecure() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let log = dir.path().join(LOG_FILE);
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Insecure { problem, .. } if problem.contains("writable by group or others")),
            "{err}"
        );
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            std::os::unix::fs::chown(&log, Some(65534), Some(65534)).unwrap();
            let err = Store::open(dir.path()).unwrap_err();
            assert!(
                matches!(&err, StoreError::Insecure { problem, .. } if problem.contains("owned by uid 65534")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_database_is_opened_only_when_needed_and_still_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.consume("a", "h", "e1", "t1").unwrap();
        drop(s);
        let mut s = Store::open(dir.path()).unwrap();
        assert!(s.conn.get().is_none(), "an open reads no database");
        s.append_log(&[1; 32], b"{}", "t").unwrap();
        assert!(s.conn.get().is_none(), "an append reads no database");
        assert_eq!(s.consumed_at("a").unwrap().as_deref(), Some("t1"));
        drop(s);
        // Another store's database behind a valid marker and log: refused
        // as soon as it is needed.
        let other = tempfile::tempdir().unwrap();
        drop(Store::open(other.path()).unwrap());
        for f in [DB_FILE, WAL_FILE] {
            std::fs::copy(other.path().join(f), dir.path().join(f)).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let err = s.consumed_at("a").unwrap_err();
        assert!(
            matches!(&err, StoreError::Lost { problem, .. } if problem.contains("belongs to store")),
            "{err}"
        );
    }

    #[test]
    fn corrupt_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
        assert!(Store::open(dir.path()).is_err());
    }
}
