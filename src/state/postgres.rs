//! [`StateStore`] on PostgreSQL for a fleet of runners (RFC 0014).
//!
//! Consumption is `INSERT … ON CONFLICT DO NOTHING` in one transaction per
//! run (the primary key decides fleet-wide, no read-then-write). Ledger
//! appends take a transaction-level advisory lock, read the last entry and
//! insert the next index: one gap-free sequence under concurrent writers,
//! with nothing but INSERT and SELECT privileges. Both are server-side
//! functions (schema version 2) called as one unnamed statement: one round
//! trip each, idempotent, so they are repeated across a reconnect. The
//! schema is versioned and migrated only by `csc state migrate`; csc
//! refuses an unmigrated, older or newer schema, when it connects and in
//! every function call. [`Shared`] is one connection for all the runs of a
//! `csc mcp` server.

use postgres::types::Type;
use postgres::{Client, Config, NoTls, error::SqlState};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{StateStore, StoreError, redact};
use crate::evidence::dsse::Envelope;
use crate::ledger::Entry;
use crate::ledger::merkle::{Hash, leaf_hash};

/// Schema version this csc reads and writes.
pub const SCHEMA_VERSION: i32 = 3;
/// Versioned migrations, applied in order by `csc state migrate`.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE csc_store_meta (
         key   text PRIMARY KEY,
         value text NOT NULL
     );
     CREATE TABLE csc_consumed_approvals (
         approval_id     text PRIMARY KEY,
         contract_sha256 text NOT NULL,
         execution_id    text NOT NULL,
         consumed_at     text NOT NULL
     );
     CREATE TABLE csc_ledger_entries (
         idx            bigint PRIMARY KEY CHECK (idx >= 0),
         leaf_hash      bytea NOT NULL CHECK (length(leaf_hash) = 32),
         prev_leaf_hash bytea NOT NULL CHECK (length(prev_leaf_hash) = 32),
         receipt        bytea NOT NULL,
         appended_at    text NOT NULL
     );
     CREATE INDEX csc_ledger_entries_leaf ON csc_ledger_entries (leaf_hash);
     CREATE TABLE csc_ledger_checkpoints (
         seq       bigserial PRIMARY KEY,
         tree_size bigint NOT NULL,
         envelope  text NOT NULL
     );
     INSERT INTO csc_store_meta (key, value)
         VALUES ('store_id', md5(random()::text || clock_timestamp()::text));",
    ),
    (2, MIGRATION_2),
    (3, MIGRATION_3),
];

/// Version 2: one server-side function per hot operation, so a run's
/// consumption and its append are one round trip each (one unnamed
/// statement, no separate prepare), and each call checks the schema
/// version the caller was built for. Functions run with the caller's
/// privileges (INSERT and SELECT suffice).
const MIGRATION_2: &str = r"
CREATE FUNCTION csc_check_schema(expected integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE found_version integer;
BEGIN
    SELECT max(version) INTO found_version FROM csc_schema;
    IF found_version IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'the database schema is version %, this csc needs %', found_version, expected
            USING ERRCODE = 'CSC02';
    END IF;
END $$;

-- Consume every id for one run, all or nothing. Returns no row when all
-- are consumed (now, or already by this same execution: a retry after a
-- lost acknowledgement), else the first id consumed by another execution
-- and when (and nothing is consumed).
CREATE FUNCTION csc_consume(expected integer, ids text[], contract text, execution text, at text)
RETURNS TABLE (conflict_id text, conflict_at text)
LANGUAGE plpgsql AS $$
DECLARE
    id text;
    other_execution text;
    other_at text;
BEGIN
    -- csc_check_schema, inlined: one function less to compile in a new
    -- backend.
    IF (SELECT max(version) FROM csc_schema) IS DISTINCT FROM expected THEN
        PERFORM csc_check_schema(expected);
    END IF;
    BEGIN
        FOREACH id IN ARRAY ids LOOP
            INSERT INTO csc_consumed_approvals AS c (approval_id, contract_sha256, execution_id, consumed_at)
                VALUES (id, contract, execution, at)
                ON CONFLICT ON CONSTRAINT csc_consumed_approvals_pkey DO NOTHING;
            IF NOT FOUND THEN
                SELECT c.execution_id, c.consumed_at INTO other_execution, other_at
                    FROM csc_consumed_approvals c WHERE c.approval_id = id;
                IF other_execution IS DISTINCT FROM execution THEN
                    RAISE EXCEPTION USING ERRCODE = 'CSC01';
                END IF;
            END IF;
        END LOOP;
    EXCEPTION WHEN SQLSTATE 'CSC01' THEN
        -- The block's inserts are rolled back.
        conflict_id := id;
        conflict_at := other_at;
        RETURN NEXT;
    END;
END $$;

-- Append one receipt under the append lock: its index (an existing one
-- when this receipt is already the log's: a retry).
CREATE FUNCTION csc_append(expected integer, entry bytea, leaf bytea, at text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    next_idx bigint;
    prev bytea;
BEGIN
    -- csc_check_schema, inlined: one function less to compile in a new
    -- backend.
    IF (SELECT max(version) FROM csc_schema) IS DISTINCT FROM expected THEN
        PERFORM csc_check_schema(expected);
    END IF;
    PERFORM pg_advisory_xact_lock(7166180478819853415);
    SELECT e.idx INTO next_idx FROM csc_ledger_entries e
        WHERE e.leaf_hash = leaf AND e.receipt = entry LIMIT 1;
    IF FOUND THEN
        RETURN next_idx;
    END IF;
    SELECT e.idx + 1, e.leaf_hash INTO next_idx, prev FROM csc_ledger_entries e
        ORDER BY e.idx DESC LIMIT 1;
    IF NOT FOUND THEN
        next_idx := 0;
        prev := decode(repeat('00', 32), 'hex');
    END IF;
    INSERT INTO csc_ledger_entries (idx, leaf_hash, prev_leaf_hash, receipt, appended_at)
        VALUES (next_idx, leaf, prev, entry, at);
    RETURN next_idx;
END $$;
";

/// Version 3 (security review of round 4): the same functions, pinned to
/// csc's own schema (`search_path = pg_catalog, <schema>, pg_temp`: a
/// temporary table left in a pooled server session, or a same-named
/// object elsewhere, cannot stand in for csc's tables) and committing
/// with `synchronous_commit = on` whatever the session's setting (a
/// pooler may drop the startup options that set it).
const MIGRATION_3: &str = r"
CREATE OR REPLACE FUNCTION csc_check_schema(expected integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE found_version integer;
BEGIN
    SELECT max(version) INTO found_version FROM csc_schema;
    IF found_version IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'the database schema is version %, this csc needs %', found_version, expected
            USING ERRCODE = 'CSC02';
    END IF;
END $$;

-- Consume every id for one run, all or nothing. Returns no row when all
-- are consumed (now, or already by this same execution: a retry after a
-- lost acknowledgement), else the first id consumed by another execution
-- and when (and nothing is consumed).
CREATE OR REPLACE FUNCTION csc_consume(expected integer, ids text[], contract text, execution text, at text)
RETURNS TABLE (conflict_id text, conflict_at text)
LANGUAGE plpgsql AS $$
DECLARE
    id text;
    other_execution text;
    other_at text;
BEGIN
    -- Durable before acknowledged, whatever the session, role or database
    -- default (a pooler may drop csc's startup options): local to this
    -- call's transaction, so it holds at its commit.
    PERFORM set_config('synchronous_commit', 'on', true);
    -- csc_check_schema, inlined: one function less to compile in a new
    -- backend.
    IF (SELECT max(version) FROM csc_schema) IS DISTINCT FROM expected THEN
        PERFORM csc_check_schema(expected);
    END IF;
    BEGIN
        FOREACH id IN ARRAY ids LOOP
            INSERT INTO csc_consumed_approvals AS c (approval_id, contract_sha256, execution_id, consumed_at)
                VALUES (id, contract, execution, at)
                ON CONFLICT ON CONSTRAINT csc_consumed_approvals_pkey DO NOTHING;
            IF NOT FOUND THEN
                SELECT c.execution_id, c.consumed_at INTO other_execution, other_at
                    FROM csc_consumed_approvals c WHERE c.approval_id = id;
                IF other_execution IS DISTINCT FROM execution THEN
                    RAISE EXCEPTION USING ERRCODE = 'CSC01';
                END IF;
            END IF;
        END LOOP;
    EXCEPTION WHEN SQLSTATE 'CSC01' THEN
        -- The block's inserts are rolled back.
        conflict_id := id;
        conflict_at := other_at;
        RETURN NEXT;
    END;
END $$;

-- Append one receipt under the append lock: its index (an existing one
-- when this receipt is already the log's: a retry).
CREATE OR REPLACE FUNCTION csc_append(expected integer, entry bytea, leaf bytea, at text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    next_idx bigint;
    prev bytea;
BEGIN
    -- Durable before acknowledged, whatever the session, role or database
    -- default (a pooler may drop csc's startup options): local to this
    -- call's transaction, so it holds at its commit.
    PERFORM set_config('synchronous_commit', 'on', true);
    -- csc_check_schema, inlined: one function less to compile in a new
    -- backend.
    IF (SELECT max(version) FROM csc_schema) IS DISTINCT FROM expected THEN
        PERFORM csc_check_schema(expected);
    END IF;
    PERFORM pg_advisory_xact_lock(7166180478819853415);
    SELECT e.idx INTO next_idx FROM csc_ledger_entries e
        WHERE e.leaf_hash = leaf AND e.receipt = entry LIMIT 1;
    IF FOUND THEN
        RETURN next_idx;
    END IF;
    SELECT e.idx + 1, e.leaf_hash INTO next_idx, prev FROM csc_ledger_entries e
        ORDER BY e.idx DESC LIMIT 1;
    IF NOT FOUND THEN
        next_idx := 0;
        prev := decode(repeat('00', 32), 'hex');
    END IF;
    INSERT INTO csc_ledger_entries (idx, leaf_hash, prev_leaf_hash, receipt, appended_at)
        VALUES (next_idx, leaf, prev, entry, at);
    RETURN next_idx;
END $$;

-- Names inside the functions resolve in pg_catalog and the schema csc's
-- tables live in, temporary objects last: a temporary table a pooled
-- session left behind (or an object in another schema) never stands in
-- for csc's tables.
DO $pin$
DECLARE
    home text := (SELECT n.nspname FROM pg_catalog.pg_class c
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = 'csc_consumed_approvals'::regclass AND c.relpersistence = 'p');
BEGIN
    IF home IS NULL THEN
        RAISE EXCEPTION 'csc_consumed_approvals resolves to a temporary table in this session';
    END IF;
    EXECUTE format('ALTER FUNCTION %I.csc_check_schema(integer) SET search_path = pg_catalog, %I, pg_temp', home, home);
    EXECUTE format('ALTER FUNCTION %I.csc_consume(integer, text[], text, text, text) SET search_path = pg_catalog, %I, pg_temp', home, home);
    EXECUTE format('ALTER FUNCTION %I.csc_append(integer, bytea, bytea, text) SET search_path = pg_catalog, %I, pg_temp', home, home);
END $pin$;
";
/// Advisory lock key serializing ledger appends ("csc-ledg"; written out
/// in `csc_append`).
pub const APPEND_LOCK: i64 = 0x6373_632d_6c65_6467;
/// Advisory lock key serializing migrations ("csc-migr").
const MIGRATE_LOCK: i64 = 0x6373_632d_6d69_6772;
/// Connect timeout unless the URL sets `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Statement and lock timeout of every session.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an append retries across a lost connection (a restart).
pub const RECONNECT_BUDGET: Duration = Duration::from_secs(20);

/// The PostgreSQL store.
pub struct PgStore {
    client: Client,
    config: Config,
    tls: Tls,
    shown: String,
}

#[derive(Clone)]
enum Tls {
    None,
    Rustls(Arc<rustls::ClientConfig>),
}

fn err<'a>(shown: &'a str, what: &'static str) -> impl Fn(postgres::Error) -> StoreError + 'a {
    move |e| StoreError::Db {
        path: shown.to_owned(),
        what,
        message: describe(&e),
    }
}

/// Like [`err`], for a call of a csc function: a schema the function
/// refuses (or one without it) gets the migration advice.
fn call_err<'a>(shown: &'a str, what: &'static str) -> impl Fn(postgres::Error) -> StoreError + 'a {
    move |e| {
        let code = e.code().map(SqlState::code);
        if code == Some(SCHEMA_MISMATCH) || code == Some(SqlState::UNDEFINED_FUNCTION.code()) {
            return StoreError::Db {
                path: shown.to_owned(),
                what: "schema version",
                message: format!(
                    "{}: run csc state migrate --state-url URL (or use a newer csc if the database is newer)",
                    describe(&e)
                ),
            };
        }
        err(shown, what)(e)
    }
}

/// SQLSTATE raised by `csc_check_schema` when the version differs.
const SCHEMA_MISMATCH: &str = "CSC02";

/// An error's text with the server's message (never the URL).
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

fn config_err(shown: &str, message: String) -> StoreError {
    StoreError::Db {
        path: shown.to_owned(),
        what: "configuration",
        message,
    }
}

/// Parse the URL: csc's own TLS parameters (`sslmode`, `sslrootcert`) are
/// taken out, the rest is the client's; the password comes from the URL,
/// PGPASSWORD or a password file (PGPASSFILE, default ~/.pgpass).
fn parse(url: &str) -> Result<(Config, Tls), StoreError> {
    let shown = redact(url);
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut sslmode = None;
    let mut rootcert = None;
    let mut rest = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("sslmode", v)) => sslmode = Some(v.to_owned()),
            Some(("sslrootcert", v)) => rootcert = Some(percent_decode(v)),
            _ => rest.push(kv),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let mut config = Config::from_str(&url)
        .map_err(|e| config_err(&shown, format!("the URL is not valid: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    config.tcp_user_timeout(STATEMENT_TIMEOUT);
    // Session settings travel in the startup packet (no extra round trip).
    let ms = STATEMENT_TIMEOUT.as_millis();
    let options = format!(
        "{} -c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={ms} -c synchronous_commit=on",
        config.get_options().unwrap_or_default()
    );
    config.options(options.trim_start());
    if config.get_application_name().is_none() {
        config.application_name("csc");
    }
    let hosts = config.get_hosts().to_vec();
    if hosts.is_empty() {
        return Err(config_err(&shown, "the URL names no host".to_owned()));
    }
    let tcp: Vec<String> = hosts
        .iter()
        .filter_map(|h| match h {
            postgres::config::Host::Tcp(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    let loopback = tcp
        .iter()
        .all(|h| matches!(h.as_str(), "localhost" | "127.0.0.1" | "::1"));
    let tls = match (sslmode.as_deref(), tcp.is_empty()) {
        // Unix sockets: local, no TLS.
        (None | Some("disable"), true) => Tls::None,
        (Some("disable"), false) if loopback => Tls::None,
        (Some("disable"), false) => {
            return Err(config_err(
                &shown,
                "sslmode=disable is only honoured for unix sockets and loopback hosts; use sslmode=verify-full".to_owned(),
            ));
        }
        (None | Some("verify-full" | "verify-ca" | "require"), _) => {
            Tls::Rustls(Arc::new(rustls_config(rootcert.as_deref(), &shown)?))
        }
        (Some(other), _) => {
            return Err(config_err(
                &shown,
                format!(
                    "sslmode={other} is not supported (a downgradable connection); use verify-full, or disable for a unix socket / loopback host"
                ),
            ));
        }
    };
    if matches!(tls, Tls::None) {
        config.ssl_mode(postgres::config::SslMode::Disable);
    } else {
        config.ssl_mode(postgres::config::SslMode::Require);
    }
    if config.get_password().is_none() {
        if let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
            config.password(p.as_encoded_bytes());
        } else if let Some(p) = passfile_password(&config, &shown)? {
            config.password(p);
        }
    }
    Ok((config, tls))
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// TLS that verifies the server's chain and host name (libpq's
/// verify-full), against `sslrootcert` or the system's roots.
fn rustls_config(rootcert: Option<&str>, shown: &str) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| config_err(shown, format!("sslrootcert {path}: {e}")))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| config_err(shown, format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(config_err(
            shown,
            "no trusted root certificate for TLS (set sslrootcert=FILE in the URL)".to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(shown, format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The password for this connection from a pgpass-format file
/// (`host:port:database:user:password`, `*` wildcards, `\` escapes); the
/// file must not be readable by group or others.
fn passfile_password(config: &Config, shown: &str) -> Result<Option<Vec<u8>>, StoreError> {
    use std::os::unix::fs::MetadataExt;
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(h) => Path::new(&h).join(".pgpass"),
            None => return Ok(None),
        },
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    if meta.mode() & 0o077 != 0 {
        return Err(config_err(
            shown,
            format!(
                "password file {} is readable by group or others (chmod 600)",
                path.display()
            ),
        ));
    }
    let text = crate::fsutil::read_regular_file_capped(&path, 64 * 1024)
        .map_err(|e| config_err(shown, format!("password file {}: {e:?}", path.display())))?;
    let text = String::from_utf8_lossy(&text);
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_owned();
    let db = config.get_dbname().unwrap_or(&user).to_owned();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields = split_pgpass(line);
        if fields.len() != 5 {
            continue;
        }
        let ok = |f: &str, v: &str| f == "*" || f == v;
        if ok(&fields[0], &host)
            && ok(&fields[1], &port)
            && ok(&fields[2], &db)
            && ok(&fields[3], &user)
        {
            return Ok(Some(fields[4].clone().into_bytes()));
        }
    }
    Ok(None)
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

fn connect_with(config: &Config, tls: &Tls, shown: &str) -> Result<Client, StoreError> {
    let client = match tls {
        Tls::None => config.connect(NoTls),
        Tls::Rustls(c) => {
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new((**c).clone()))
        }
    }
    .map_err(err(shown, "connect"))?;
    Ok(client)
}

/// The schema version recorded in the database (`None`: never migrated).
fn schema_version(client: &mut Client, shown: &str) -> Result<Option<i32>, StoreError> {
    match client.query_typed_one("SELECT max(version) FROM csc_schema", &[]) {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(err(shown, "read schema")(e)),
    }
}

/// `csc state migrate`: apply every pending migration in one transaction
/// (serialized by an advisory lock); returns (before, after).
pub fn migrate(url: &str) -> Result<(i32, i32), StoreError> {
    let shown = redact(url);
    let (config, tls) = parse(url)?;
    let mut client = connect_with(&config, &tls, &shown)?;
    let mut tx = client.transaction().map_err(err(&shown, "migrate"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .map_err(err(&shown, "migrate"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS csc_schema (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .map_err(err(&shown, "migrate"))?;
    let before: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM csc_schema", &[])
        .map_err(err(&shown, "migrate"))?
        .get(0);
    if before > SCHEMA_VERSION {
        return Err(StoreError::Db {
            path: shown,
            what: "schema version",
            message: format!(
                "version {before} is newer than this csc knows ({SCHEMA_VERSION}); use a newer csc"
            ),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > before) {
        tx.batch_execute(sql).map_err(err(&shown, "migrate"))?;
        tx.execute("INSERT INTO csc_schema (version) VALUES ($1)", &[version])
            .map_err(err(&shown, "migrate"))?;
    }
    tx.commit().map_err(err(&shown, "migrate"))?;
    Ok((before, SCHEMA_VERSION))
}

impl PgStore {
    /// Connect and check the schema (never migrates).
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let (config, tls) = parse(url)?;
        let mut client = connect_with(&config, &tls, &shown)?;
        match schema_version(&mut client, &shown)? {
            Some(SCHEMA_VERSION) => {}
            None => {
                return Err(StoreError::Db {
                    path: shown,
                    what: "schema version",
                    message: "the database is not migrated: run csc state migrate --state-url URL"
                        .to_owned(),
                });
            }
            Some(v) if v < SCHEMA_VERSION => {
                return Err(StoreError::Db {
                    path: shown,
                    what: "schema version",
                    message: format!(
                        "version {v} is older than this csc needs ({SCHEMA_VERSION}): run csc state migrate --state-url URL"
                    ),
                });
            }
            Some(v) => {
                return Err(StoreError::Db {
                    path: shown,
                    what: "schema version",
                    message: format!(
                        "version {v} is newer than this csc knows ({SCHEMA_VERSION}); use a newer csc"
                    ),
                });
            }
        }
        Ok(PgStore {
            client,
            config,
            tls,
            shown,
        })
    }

    /// Check that the database answers with this csc's schema
    /// (reconnecting if the connection was lost).
    pub fn check(&mut self) -> Result<(), StoreError> {
        self.retrying(|c, shown| {
            c.query_typed(
                "SELECT csc_check_schema($1)",
                &[(&SCHEMA_VERSION, Type::INT4)],
            )
            .map(drop)
            .map_err(call_err(shown, "check"))
        })
    }

    /// Run `f`, reconnecting (within [`RECONNECT_BUDGET`]) when the
    /// connection was lost; `f` must be safe to repeat.
    fn retrying<T>(
        &mut self,
        mut f: impl FnMut(&mut Client, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        loop {
            let failed = match f(&mut self.client, &self.shown) {
                Ok(v) => return Ok(v),
                Err(e) if self.client.is_closed() => e,
                Err(e) => return Err(e),
            };
            // Lost: reconnect, then repeat the call.
            let mut last = failed;
            loop {
                if start.elapsed() >= RECONNECT_BUDGET {
                    return Err(last);
                }
                std::thread::sleep(Duration::from_millis(200));
                match connect_with(&self.config, &self.tls, &self.shown) {
                    Ok(c) => {
                        self.client = c;
                        break;
                    }
                    Err(e) => last = e,
                }
            }
        }
    }
}

/// One connection shared by every run of a `csc mcp` server (instead of one
/// per run): calls are serialized on it, each one transaction, and a lost
/// connection is re-established (see [`PgStore`]'s retries).
#[derive(Clone)]
pub struct Shared(Arc<Mutex<PgStore>>);

impl Shared {
    /// Connect and check the schema, as [`PgStore::open`].
    pub fn open(url: &str) -> Result<Shared, StoreError> {
        Ok(Shared(Arc::new(Mutex::new(PgStore::open(url)?))))
    }

    /// A handle for one run, once the database has answered with this
    /// csc's schema (reconnecting if the connection was lost): a run never
    /// starts on a store that cannot record it.
    pub fn handle(&self) -> Result<Box<dyn StateStore>, StoreError> {
        self.lock().check()?;
        Ok(Box::new(self.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PgStore> {
        // A panic mid-call dropped its transaction (rolled back).
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateStore for Shared {
    fn location(&self) -> String {
        self.lock().location()
    }
    fn store_id(&mut self) -> Result<String, StoreError> {
        self.lock().store_id()
    }
    fn consumed_at(&mut self, approval_id: &str) -> Result<Option<String>, StoreError> {
        self.lock().consumed_at(approval_id)
    }
    fn consume_all(
        &mut self,
        approval_ids: &[String],
        contract_sha256: &str,
        execution_id: &str,
        now: &str,
    ) -> Result<Result<(), (String, String)>, StoreError> {
        self.lock()
            .consume_all(approval_ids, contract_sha256, execution_id, now)
    }
    fn append(&mut self, receipt: &[u8], now: &str) -> Result<u64, StoreError> {
        self.lock().append(receipt, now)
    }
    fn for_each_entry(
        &mut self,
        each: &mut dyn FnMut(Entry) -> Result<(), String>,
    ) -> Result<(), String> {
        self.lock().for_each_entry(each)
    }
    fn leaves(&mut self) -> Result<Vec<Hash>, StoreError> {
        self.lock().leaves()
    }
    fn checkpoints(&mut self) -> Result<Vec<Envelope>, String> {
        self.lock().checkpoints()
    }
    fn add_checkpoint(&mut self, tree_size: u64, env: &Envelope) -> Result<(), StoreError> {
        self.lock().add_checkpoint(tree_size, env)
    }
    fn integrity_check(&mut self) -> Result<(), StoreError> {
        self.lock().integrity_check()
    }
}

fn hash_of(bytes: Vec<u8>, shown: &str) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Db {
        path: shown.to_owned(),
        what: "ledger read",
        message: "a stored hash is not 32 bytes".to_owned(),
    })
}

impl StateStore for PgStore {
    fn location(&self) -> String {
        self.shown.clone()
    }

    fn store_id(&mut self) -> Result<String, StoreError> {
        self.retrying(|c, shown| {
            c.query_typed_one(
                "SELECT value FROM csc_store_meta WHERE key = 'store_id'",
                &[],
            )
            .map(|r| r.get(0))
            .map_err(err(shown, "read store id"))
        })
    }

    fn consumed_at(&mut self, approval_id: &str) -> Result<Option<String>, StoreError> {
        self.retrying(|c, shown| {
            c.query_typed_opt(
                "SELECT consumed_at FROM csc_consumed_approvals WHERE approval_id = $1",
                &[(&approval_id, Type::TEXT)],
            )
            .map(|r| r.map(|r| r.get(0)))
            .map_err(err(shown, "query"))
        })
    }

    fn consume_all(
        &mut self,
        approval_ids: &[String],
        contract_sha256: &str,
        execution_id: &str,
        now: &str,
    ) -> Result<Result<(), (String, String)>, StoreError> {
        // One round trip (`csc_consume`, one transaction). Retried across a
        // lost connection: a consumption whose acknowledgement was lost is
        // recognised by its execution id, never lost and never doubled.
        let ids = approval_ids.to_vec();
        self.retrying(|c, shown| {
            let rows = c
                .query_typed(
                    "SELECT conflict_id, conflict_at FROM csc_consume($1, $2, $3, $4, $5)",
                    &[
                        (&SCHEMA_VERSION, Type::INT4),
                        (&ids, Type::TEXT_ARRAY),
                        (&contract_sha256, Type::TEXT),
                        (&execution_id, Type::TEXT),
                        (&now, Type::TEXT),
                    ],
                )
                .map_err(call_err(shown, "consume"))?;
            Ok(match rows.first() {
                None => Ok(()),
                Some(r) => Err((r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default())),
            })
        })
    }

    fn append(&mut self, receipt: &[u8], now: &str) -> Result<u64, StoreError> {
        let leaf = leaf_hash(receipt);
        // One round trip (`csc_append`); idempotent, so a retry after a
        // lost acknowledgement finds its entry.
        self.retrying(|c, shown| {
            let row = c
                .query_typed_one(
                    "SELECT csc_append($1, $2, $3, $4)",
                    &[
                        (&SCHEMA_VERSION, Type::INT4),
                        (&receipt, Type::BYTEA),
                        (&&leaf[..], Type::BYTEA),
                        (&now, Type::TEXT),
                    ],
                )
                .map_err(call_err(shown, "ledger append"))?;
            u64::try_from(row.get::<_, i64>(0)).map_err(|_| StoreError::Db {
                path: shown.to_owned(),
                what: "ledger append",
                message: "a negative index".to_owned(),
            })
        })
    }

    fn for_each_entry(
        &mut self,
        each: &mut dyn FnMut(Entry) -> Result<(), String>,
    ) -> Result<(), String> {
        let shown = self.shown.clone();
        let mut tx = self
            .client
            .build_transaction()
            .read_only(true)
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()
            .map_err(|e| err(&shown, "ledger read")(e).to_string())?;
        let params: [&(dyn postgres::types::ToSql + Sync); 0] = [];
        let portal = tx
            .bind(
                "SELECT idx, leaf_hash, prev_leaf_hash, receipt, appended_at FROM csc_ledger_entries ORDER BY idx",
                &params,
            )
            .map_err(|e| err(&shown, "ledger read")(e).to_string())?;
        loop {
            let rows = tx
                .query_portal(&portal, 5000)
                .map_err(|e| err(&shown, "ledger read")(e).to_string())?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let entry = Entry {
                    index: u64::try_from(r.get::<_, i64>(0)).unwrap_or(u64::MAX),
                    leaf_hash: hash_of(r.get(1), &shown).map_err(|e| e.to_string())?,
                    prev_leaf_hash: hash_of(r.get(2), &shown).map_err(|e| e.to_string())?,
                    receipt: r.get(3),
                    appended_at: r.get(4),
                };
                each(entry)?;
            }
        }
        tx.commit()
            .map_err(|e| err(&shown, "ledger read")(e).to_string())
    }

    fn leaves(&mut self) -> Result<Vec<Hash>, StoreError> {
        self.retrying(|c, shown| {
            c.query("SELECT leaf_hash FROM csc_ledger_entries ORDER BY idx", &[])
                .map_err(err(shown, "ledger read"))?
                .into_iter()
                .map(|r| hash_of(r.get(0), shown))
                .collect()
        })
    }

    fn checkpoints(&mut self) -> Result<Vec<Envelope>, String> {
        let texts: Vec<String> = self
            .retrying(|c, shown| {
                c.query(
                    "SELECT envelope FROM csc_ledger_checkpoints ORDER BY seq",
                    &[],
                )
                .map(|rows| rows.into_iter().map(|r| r.get(0)).collect())
                .map_err(err(shown, "ledger read"))
            })
            .map_err(|e| e.to_string())?;
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Envelope::parse(t.as_bytes()).map_err(|e| format!("stored checkpoint {i}: {e}"))
            })
            .collect()
    }

    fn add_checkpoint(&mut self, tree_size: u64, env: &Envelope) -> Result<(), StoreError> {
        let text = String::from_utf8(env.to_line()).unwrap_or_default();
        let size = i64::try_from(tree_size).unwrap_or(i64::MAX);
        let shown = self.shown.clone();
        self.client
            .execute(
                "INSERT INTO csc_ledger_checkpoints (tree_size, envelope) VALUES ($1, $2)",
                &[&size, &text.trim_end()],
            )
            .map_err(err(&shown, "ledger checkpoint"))?;
        Ok(())
    }

    fn integrity_check(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_append_function_takes_the_append_lock() {
        for sql in [MIGRATION_2, MIGRATION_3] {
            assert!(sql.contains(&format!("pg_advisory_xact_lock({APPEND_LOCK})")));
        }
    }

    #[test]
    fn url_helpers_never_panic() {
        assert_eq!(percent_decode("%2Ftmp%2fx"), "/tmp/x");
        for odd in ["%", "%4", "%é", "%aé", "a%zz", "%%41"] {
            let _ = percent_decode(odd);
        }
        assert_eq!(
            split_pgpass(r"h:5432:db:u:pa\:ss:word"),
            ["h", "5432", "db", "u", "pa:ss:word"]
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(url in "postgres(ql)?://[ -~]{0,60}") {
            let _ = parse(&url);
            let _ = redact(&url);
        }
    }
}
