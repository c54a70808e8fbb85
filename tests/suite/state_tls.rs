//! Fleet mode over TCP with TLS (RFC 0014) against a real TLS server: a
//! throwaway CA signed the test cluster's certificate for `localhost` only,
//! and its pg_hba accepts TCP only as `hostssl` with SCRAM passwords (see
//! `common::pg::tls_cluster`). `sslmode=verify-full` connects with the right
//! CA and host name, and fails closed with another CA or another name: the
//! negative cases connect if verification is turned off, so they fail then.
//! No message ever shows the password.

use crate::common::{self, pg};
use csc::state::Location;
use std::path::Path;

/// The URL of `db` on the TLS cluster as `postgres` with its password,
/// through `host`, trusting `ca`, with `sslmode`.
fn url(c: &pg::Cluster, host: &str, db: &str, ca: &Path, sslmode: &str) -> String {
    let t = c.tls.as_ref().unwrap();
    format!(
        "postgresql://postgres:{}@{host}:{}/{db}?sslmode={sslmode}&sslrootcert={}&connect_timeout=10",
        t.password,
        t.port,
        ca.display()
    )
}

fn open_err(url: &str) -> String {
    match Location::Url(url.to_owned()).open() {
        Ok(_) => panic!("connected: {}", csc::state::redact(url)),
        Err(e) => e.to_string(),
    }
}

fn assert_no_password(c: &pg::Cluster, text: &str) {
    let password = &c.tls.as_ref().unwrap().password;
    assert!(!text.contains(password.as_str()), "password shown: {text}");
}

#[test]
fn verify_full_with_the_right_ca_and_host_name_connects_and_runs() {
    let Some(c) = pg::tls_cluster() else { return };
    let db = c.new_db_name();
    let t = c.tls.as_ref().unwrap();
    let url = url(c, "localhost", &db, &t.ca, "verify-full");
    // The CLI migrates over TLS and names the store without the password.
    let out = std::process::Command::new(common::CSC)
        .args(["state", "migrate", "--state-url", &url])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_no_password(c, &text);
    let mut s = Location::Url(url).open().unwrap();
    assert_eq!(
        s.consume_all(&["a".to_owned()], "h", "e", "t").unwrap(),
        Ok(())
    );
    assert_eq!(s.append(br#"{"execution_id":"x"}"#, "t").unwrap(), 0);
    // The server sees this session encrypted (pg_hba allows nothing else
    // over TCP, but check what the server says).
    let encrypted: i64 = c
        .admin("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = $1 AND a.application_name = 'csc' AND s.ssl",
            &[&db],
        )
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 1);
    let report = csc::state::verify_ledger(&mut *s, &[]).unwrap();
    assert!(report.valid(), "{:?}", report.problems);
}

#[test]
fn verify_full_with_another_ca_fails_closed() {
    let Some(c) = pg::tls_cluster() else { return };
    let db = c.new_db_name();
    let t = c.tls.as_ref().unwrap();
    let e = open_err(&url(c, "localhost", &db, &t.other_ca, "verify-full"));
    assert!(e.contains("certificate"), "{e}");
    assert_no_password(c, &e);
    // The same through the CLI: refused, non-zero, no password.
    let out = std::process::Command::new(common::CSC)
        .args([
            "state",
            "migrate",
            "--state-url",
            &url(c, "localhost", &db, &t.other_ca, "verify-full"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    assert_no_password(c, &stderr);
}

#[test]
fn verify_full_with_a_host_name_the_certificate_does_not_name_fails_closed() {
    let Some(c) = pg::tls_cluster() else { return };
    let db = c.new_db_name();
    let t = c.tls.as_ref().unwrap();
    // The same server and the right CA, but reached as 127.0.0.1: the
    // certificate names only `localhost`.
    let e = open_err(&url(c, "127.0.0.1", &db, &t.ca, "verify-full"));
    assert!(e.contains("certificate"), "{e}");
    assert_no_password(c, &e);
}

#[test]
fn sslmode_require_is_verified_like_verify_full() {
    let Some(c) = pg::tls_cluster() else { return };
    let db = c.new_db_name();
    let t = c.tls.as_ref().unwrap();
    // libpq's `require` would accept any certificate; csc verifies anyway.
    let e = open_err(&url(c, "localhost", &db, &t.other_ca, "require"));
    assert!(e.contains("certificate"), "{e}");
    assert_no_password(c, &e);
}

#[test]
fn sslmode_disable_is_refused_by_a_hostssl_only_server() {
    let Some(c) = pg::tls_cluster() else { return };
    let db = c.new_db_name();
    let t = c.tls.as_ref().unwrap();
    // csc allows disable for loopback; the server's pg_hba does not.
    let e = open_err(&url(c, "127.0.0.1", &db, &t.ca, "disable"));
    assert!(e.contains("no encryption"), "{e}");
    assert_no_password(c, &e);
}
