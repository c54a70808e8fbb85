//! The state store contract (RFC 0014), one suite run against both
//! implementations: the embedded SQLite store and PostgreSQL (a real
//! throwaway cluster, see `common::pg`). Plus the PostgreSQL-only parts:
//! explicit migrations, least-privilege roles, redacted credentials.

use crate::common::pg;
use csc::ledger::Checkpoint;
use csc::state::{Location, StateStore};
use std::sync::Arc;

/// Opens a new handle on one store (each handle is a separate connection).
type Opener = Arc<dyn Fn() -> Box<dyn StateStore> + Send + Sync>;

fn consume_is_once_and_all_or_nothing(open: Opener) {
    let mut s = open();
    assert_eq!(s.consumed_at("a").unwrap(), None);
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        s.consume_all(&ids(&["a"]), "h", "e1", "t1").unwrap(),
        Ok(())
    );
    drop(s);
    let mut s = open();
    assert_eq!(s.consumed_at("a").unwrap().as_deref(), Some("t1"));
    assert_eq!(
        s.consume_all(&ids(&["a"]), "h", "e2", "t2").unwrap(),
        Err(("a".to_owned(), "t1".to_owned()))
    );
    assert_eq!(
        s.consume_all(&ids(&["b", "a", "c"]), "h", "e3", "t3")
            .unwrap(),
        Err(("a".to_owned(), "t1".to_owned()))
    );
    assert_eq!(s.consumed_at("b").unwrap(), None, "rolled back");
    assert_eq!(
        s.consume_all(&ids(&["b", "c"]), "h", "e4", "t4").unwrap(),
        Ok(())
    );
    assert_eq!(s.consumed_at("c").unwrap().as_deref(), Some("t4"));
}

fn consumption_is_idempotent_per_execution(open: Opener) {
    let mut s = open();
    let ids = ["a".to_owned(), "b".to_owned()];
    assert_eq!(s.consume_all(&ids, "h", "e1", "t1").unwrap(), Ok(()));
    // The same execution again (a retry after a lost acknowledgement):
    // its own consumption, not a conflict, and nothing doubled.
    assert_eq!(s.consume_all(&ids, "h", "e1", "t9").unwrap(), Ok(()));
    assert_eq!(s.consumed_at("a").unwrap().as_deref(), Some("t1"));
    // Any other execution is refused, all or nothing.
    assert_eq!(
        s.consume_all(&["c".to_owned(), "b".to_owned()], "h", "e2", "t2")
            .unwrap(),
        Err(("b".to_owned(), "t1".to_owned()))
    );
    assert_eq!(s.consumed_at("c").unwrap(), None);
}

fn racing_handles_consume_exactly_once(open: Opener) {
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let open = open.clone();
            std::thread::spawn(move || {
                let mut s = open();
                s.consume_all(&["shared".to_owned()], "h", &format!("e{i}"), "t")
                    .unwrap()
                    .is_ok()
            })
        })
        .collect();
    let won = threads
        .into_iter()
        .filter(|_| true)
        .map(|t| t.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(won, 1);
}

fn concurrent_appends_form_one_gap_free_log(open: Opener) {
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let open = open.clone();
            std::thread::spawn(move || {
                let mut s = open();
                (0..20)
                    .map(|i| {
                        let r = format!(r#"{{"execution_id":"exec_{t}_{i}"}}"#);
                        s.append(r.as_bytes(), "now").unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut indices: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..120).collect::<Vec<u64>>());
    let mut s = open();
    let report = csc::state::verify_ledger(&mut *s, &[]).unwrap();
    assert!(report.valid(), "{:?}", report.problems);
    assert_eq!(report.entries, 120);
    assert_eq!(s.leaves().unwrap().len(), 120);
}

fn checkpoints_and_entries_round_trip(open: Opener) {
    let mut s = open();
    let id = s.store_id().unwrap();
    assert!(!id.is_empty());
    for i in 0..5 {
        let r = format!(r#"{{"execution_id":"exec_{i}"}}"#);
        assert_eq!(s.append(r.as_bytes(), "now").unwrap(), i);
    }
    let report = csc::state::verify_ledger(&mut *s, &[]).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let cp = Checkpoint {
        checkpoint_version: csc::ledger::CHECKPOINT_VERSION.to_owned(),
        store_id: id.clone(),
        tree_size: 5,
        root_hash: report.root_hash.clone(),
        timestamp: "2026-11-30T00:00:00Z".to_owned(),
    };
    s.add_checkpoint(5, &cp.sign(&key, "k")).unwrap();
    drop(s);
    let mut s = open();
    assert_eq!(s.store_id().unwrap(), id, "the identity is stable");
    let envs = s.checkpoints().unwrap();
    assert_eq!(envs.len(), 1);
    let back = Checkpoint::from_envelope(&envs[0]).unwrap();
    assert_eq!(back, cp);
    let report = csc::state::verify_ledger(&mut *s, &[(back, "k".to_owned())]).unwrap();
    assert!(report.valid(), "{:?}", report.problems);
    assert_eq!(report.checkpoints, 1);
    let mut seen = Vec::new();
    s.for_each_entry(&mut |e| {
        seen.push(e.index);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    s.integrity_check().unwrap();
}

fn sqlite_opener() -> (tempfile::TempDir, Opener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let open: Opener = Arc::new(move || Location::Dir(path.clone()).open().unwrap());
    (dir, open)
}

fn pg_opener() -> Option<Opener> {
    let url = pg::cluster()?.migrated_db();
    Some(Arc::new(move || Location::Url(url.clone()).open().unwrap()))
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $case() { let (_dir, open) = super::sqlite_opener(); super::$case(open) } )*
        }
        mod postgres {
            $( #[test] fn $case() { if let Some(open) = super::pg_opener() { super::$case(open) } } )*
        }
    };
}

both_backends!(
    consume_is_once_and_all_or_nothing,
    consumption_is_idempotent_per_execution,
    racing_handles_consume_exactly_once,
    concurrent_appends_form_one_gap_free_log,
    checkpoints_and_entries_round_trip,
);

fn open_err(url: &str) -> String {
    match Location::Url(url.to_owned()).open() {
        Ok(_) => panic!("opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn postgres_schema_is_migrated_explicitly_and_checked() {
    let Some(c) = pg::cluster() else { return };
    let url = c.new_db();
    let e = open_err(&url);
    assert!(e.contains("run csc state migrate"), "{e}");
    assert_eq!(csc::state::postgres::migrate(&url).unwrap(), (0, 3));
    assert_eq!(
        csc::state::postgres::migrate(&url).unwrap(),
        (3, 3),
        "idempotent"
    );
    Location::Url(url.clone()).open().unwrap();
    // A newer schema (a newer csc migrated it) is refused, not guessed at.
    let db = url.split("///").nth(1).unwrap().split('?').next().unwrap();
    c.admin(db)
        .batch_execute("INSERT INTO csc_schema (version) VALUES (99)")
        .unwrap();
    let e = open_err(&url);
    assert!(e.contains("newer"), "{e}");
    assert!(csc::state::postgres::migrate(&url).is_err());
}

#[test]
fn postgres_runner_role_cannot_update_or_delete() {
    let Some(c) = pg::cluster() else { return };
    let url = c.migrated_db();
    let db = url
        .split("///")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let mut admin = c.admin(&db);
    let roles = include_str!("../../docs/sql/fleet-roles.sql");
    // Roles are cluster-wide: name them per database.
    let runner = format!("runner_{db}");
    let sql = roles
        .replace("csc_runner", &runner)
        .replace("csc_auditor", &format!("auditor_{db}"))
        .replace(&format!("{runner} NOLOGIN"), &format!("{runner} LOGIN"));
    admin.batch_execute(&sql).unwrap();
    let runner_url = c.url_for(&db, &runner);
    // The runner does its job: consume, append, checkpoint, read.
    let mut s = Location::Url(runner_url.clone()).open().unwrap();
    s.consume_all(&["a".to_owned()], "h", "e", "t")
        .unwrap()
        .unwrap();
    s.append(br#"{"execution_id":"x"}"#, "t").unwrap();
    let report = csc::state::verify_ledger(&mut *s, &[]).unwrap();
    assert!(report.valid());
    // ... and nothing more.
    let mut raw = ::postgres::Config::new()
        .host_path(&c.sock)
        .user(&runner)
        .dbname(&db)
        .connect(::postgres::NoTls)
        .unwrap();
    for stmt in [
        "UPDATE csc_ledger_entries SET appended_at = 'x'",
        "DELETE FROM csc_ledger_entries",
        "DELETE FROM csc_consumed_approvals",
        "UPDATE csc_consumed_approvals SET approval_id = 'b'",
        "TRUNCATE csc_ledger_entries",
        "DELETE FROM csc_ledger_checkpoints",
        "UPDATE csc_store_meta SET value = 'other'",
        "INSERT INTO csc_schema (version) VALUES (3)",
        // Nor replace the functions every runner calls.
        "CREATE OR REPLACE FUNCTION csc_check_schema(expected integer) RETURNS void LANGUAGE sql AS 'SELECT'",
        "DROP FUNCTION csc_append(integer, bytea, bytea, text)",
        // Nor leave a temporary table in a (pooled) server session to stand
        // in for csc's, nor shadow a function from a schema of its own.
        "CREATE TEMP TABLE csc_consumed_approvals (approval_id text)",
        "CREATE TABLE public.csc_consume (x integer)",
    ] {
        let e = raw.batch_execute(stmt).unwrap_err();
        assert_eq!(
            e.code(),
            Some(&::postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{stmt}: {e}"
        );
    }
}

#[test]
fn postgres_a_temporary_table_cannot_stand_in_for_the_store() {
    let Some(c) = pg::cluster() else { return };
    let url = c.migrated_db();
    // A server session (as a transaction-pooling pooler shares them) in
    // which someone left temporary tables named like csc's.
    let mut pooled = c.admin(&db_of(&url));
    pooled
        .batch_execute(
            "CREATE TEMP TABLE csc_schema (version integer);
             INSERT INTO csc_schema VALUES (3);
             CREATE TEMP TABLE csc_consumed_approvals (approval_id text PRIMARY KEY,
                 contract_sha256 text, execution_id text, consumed_at text);
             CREATE TEMP TABLE csc_ledger_entries (idx bigint PRIMARY KEY, leaf_hash bytea,
                 prev_leaf_hash bytea, receipt bytea, appended_at text);",
        )
        .unwrap();
    let conflict = pooled
        .query(
            "SELECT * FROM csc_consume(3, ARRAY['shadowed'], 'h', 'e1', 't1')",
            &[],
        )
        .unwrap();
    assert!(conflict.is_empty());
    let idx: i64 = pooled
        .query_one(
            "SELECT csc_append(3, '\\x7b7d'::bytea, decode(repeat('11', 32), 'hex'), 't')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(idx, 0);
    // The consumption and the entry are csc's, visible to every runner.
    let shadow: i64 = pooled
        .query_one(
            "SELECT (SELECT count(*) FROM pg_temp.csc_consumed_approvals) + (SELECT count(*) FROM pg_temp.csc_ledger_entries)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(shadow, 0, "nothing went into the temporary tables");
    let mut s = Location::Url(url).open().unwrap();
    assert_eq!(s.consumed_at("shadowed").unwrap().as_deref(), Some("t1"));
    assert_eq!(s.leaves().unwrap().len(), 1);
}

#[test]
fn postgres_store_functions_commit_synchronously_whatever_the_session_says() {
    let Some(c) = pg::cluster() else { return };
    let url = c.migrated_db();
    let mut session = c.admin(&db_of(&url));
    let mut tx = session.transaction().unwrap();
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .unwrap();
    tx.query(
        "SELECT * FROM csc_consume(3, ARRAY['a'], 'h', 'e1', 't1')",
        &[],
    )
    .unwrap();
    let setting: String = tx.query_one("SHOW synchronous_commit", &[]).unwrap().get(0);
    assert_eq!(
        setting, "on",
        "the consumption's transaction commits durably"
    );
    tx.rollback().unwrap();
    let mut tx = session.transaction().unwrap();
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .unwrap();
    tx.query_one(
        "SELECT csc_append(3, '\\x7b7d'::bytea, decode(repeat('11', 32), 'hex'), 't')",
        &[],
    )
    .unwrap();
    let setting: String = tx.query_one("SHOW synchronous_commit", &[]).unwrap().get(0);
    assert_eq!(setting, "on", "the append's transaction commits durably");
}

#[test]
fn postgres_credentials_are_never_printed() {
    let Some(c) = pg::cluster() else { return };
    // Wrong database, a password in the URL: the error names neither secret.
    let url = format!(
        "postgresql://postgres:hunter2secret@/nosuchdb?host={}",
        c.sock.display()
    );
    let e = open_err(&url);
    assert!(!e.contains("hunter2secret"), "{e}");
    assert!(e.contains("***"), "{e}");
    // An unreachable TCP host over TLS: bounded, and redacted.
    let e =
        open_err("postgresql://u:hunter2secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2");
    assert!(!e.contains("hunter2secret"), "{e}");
    // A downgradable sslmode is refused for a remote host.
    let e = open_err("postgresql://u:hunter2secret@db.example/db?sslmode=prefer");
    assert!(
        e.contains("sslmode=prefer") && !e.contains("hunter2secret"),
        "{e}"
    );
    let e = open_err("postgresql://u@db.example/db?sslmode=disable");
    assert!(e.contains("only honoured"), "{e}");
}

fn db_of(url: &str) -> String {
    url.split("///")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn postgres_store_functions_refuse_a_changed_schema() {
    let Some(c) = pg::cluster() else { return };
    let url = c.migrated_db();
    let mut s = Location::Url(url.clone()).open().unwrap();
    // A newer csc migrates while this connection is open (a long-lived
    // `csc mcp` connection): every call re-checks the version.
    c.admin(&db_of(&url))
        .batch_execute("INSERT INTO csc_schema (version) VALUES (99)")
        .unwrap();
    let e = s
        .consume_all(&["a".to_owned()], "h", "e", "t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("schema") && e.contains("99"), "{e}");
    let e = s.append(b"{}", "t").unwrap_err().to_string();
    assert!(e.contains("schema") && e.contains("99"), "{e}");
    assert_eq!(s.leaves().unwrap().len(), 0, "nothing appended");
}

#[test]
fn postgres_shared_connection_reconnects_and_blocks_when_the_database_is_gone() {
    let Some(c) = pg::private_cluster() else {
        return;
    };
    let url = c.migrated_db();
    let db = db_of(&url);
    let shared = csc::state::postgres::Shared::open(&url).unwrap();
    let mut run1 = shared.handle().unwrap();
    assert_eq!(
        run1.consume_all(&["a".to_owned()], "h", "e1", "t1")
            .unwrap(),
        Ok(())
    );
    run1.append(br#"{"execution_id":"e1"}"#, "t1").unwrap();
    c.restart();
    // The next run gets the connection back; the consumption survived.
    let mut run2 = shared.handle().unwrap();
    assert_eq!(
        run2.consume_all(&["a".to_owned()], "h", "e2", "t2")
            .unwrap(),
        Err(("a".to_owned(), "t1".to_owned()))
    );
    run2.append(br#"{"execution_id":"e2"}"#, "t2").unwrap();
    // A connection lost mid-session is re-established inside a call too.
    c.restart();
    assert_eq!(
        run2.consume_all(&["b".to_owned()], "h", "e2", "t2")
            .unwrap(),
        Ok(())
    );
    assert_eq!(run2.leaves().unwrap().len(), 2);
    // The database stops accepting this store: the next run is refused a
    // handle (blocked before anything executes), not handed a dead one.
    let mut admin = c.admin("postgres");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
        .unwrap();
    let e = match shared.handle() {
        Ok(_) => panic!("a handle on a database that refuses connections"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("not currently accepting connections"), "{e}");
}

#[test]
fn postgres_a_version_1_database_is_refused_until_migrated() {
    let Some(c) = pg::cluster() else { return };
    let url = c.new_db();
    // A database an older csc migrated (schema version 1), with a row.
    let mut admin = c.admin(&db_of(&url));
    admin
        .batch_execute(&format!(
            "CREATE TABLE csc_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
             {}
             INSERT INTO csc_schema (version) VALUES (1);
             INSERT INTO csc_consumed_approvals VALUES ('old', 'h', 'e0', 't0');",
            csc::state::postgres::MIGRATIONS[0].1
        ))
        .unwrap();
    let e = open_err(&url);
    assert!(
        e.contains("older") && e.contains("run csc state migrate"),
        "{e}"
    );
    assert_eq!(csc::state::postgres::migrate(&url).unwrap(), (1, 3));
    let mut s = Location::Url(url).open().unwrap();
    assert_eq!(
        s.consume_all(&["old".to_owned()], "h", "e1", "t1").unwrap(),
        Err(("old".to_owned(), "t0".to_owned()))
    );
    assert_eq!(s.append(b"{}", "t").unwrap(), 0);
}
