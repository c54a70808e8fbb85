//! `csc keygen` driven as a real binary; its output read back by csc,
//! OpenSSL and Python `cryptography` (each skipped loudly when absent).

// SKIP lines bypass libtest output capture so skips are always visible.
use std::io::Write as _;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn csc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csc"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in {out}"))
        .trim()
}

#[test]
fn keygen_writes_private_0600_and_usable_public_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pem, raw) = (
        dir.path().join("k.pem"),
        dir.path().join("k.pub.pem"),
        dir.path().join("k.pub"),
    );
    let o = csc(&[
        "keygen",
        "--out",
        s(&key),
        "--public-out",
        s(&pem),
        "--raw-public-out",
        s(&raw),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(mode(&key), 0o600);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI")
    );
    assert_eq!(std::fs::read(&raw).unwrap().len(), 32);

    let sk = csc::evidence::keys::load_signing_key(&key).unwrap();
    let vk = sk.verifying_key();
    assert_eq!(csc::evidence::keys::load_verifying_key(&pem).unwrap(), vk);
    assert_eq!(
        field(&out, "fingerprint:"),
        format!("sha256:{}", csc::canonical::sha256_hex(vk.as_bytes()))
    );
    let key_id = field(&out, "suggested key id:").to_owned();
    assert!(key_id.starts_with("ed25519-") && key_id.len() == 24);

    // The printed keyring entry is usable as-is.
    let entry = field(&out, "keyring entry:");
    let ring = dir.path().join("ring.json");
    std::fs::write(
        &ring,
        format!(r#"{{"keyring_version":"csc.keyring.v1","keys":[{entry}]}}"#),
    )
    .unwrap();

    // Sign with the generated key; verify with each public form.
    let mut r = serde_json::json!({
        "receipt_version": "csc.receipt.v0.1", "contract_id": "c-12345678", "execution_id": "e",
        "contract_sha256": "0".repeat(64), "status": "blocked",
        "started_at": "2026-11-21T12:00:00+00:00", "ended_at": "2026-11-21T12:00:00+00:00",
        "policy_profile": "p", "failed_command_id": null
    });
    csc::evidence::signing::sign_receipt(&mut r, &sk, &key_id, "2026-11-21T12:00:01+00:00")
        .unwrap();
    let receipt = dir.path().join("r.json");
    std::fs::write(&receipt, serde_json::to_vec(&r).unwrap()).unwrap();
    for args in [
        vec!["--public-key", s(&raw), "--key-id", &key_id],
        vec!["--public-key", s(&pem), "--key-id", &key_id],
        vec!["--keyring", s(&ring)],
    ] {
        let mut all = vec!["verify-receipt", s(&receipt)];
        all.extend(args);
        let o = csc(&all);
        assert_eq!(o.status.code(), Some(0), "{all:?}: {o:?}");
    }
}

#[test]
fn keygen_refuses_to_overwrite_without_force_and_force_keeps_0600() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let pubf = dir.path().join("k.pub");
    std::fs::write(&pubf, b"keep me").unwrap();
    // Refused before anything is written: the private key is not created.
    let o = csc(&["keygen", "--out", s(&key), "--raw-public-out", s(&pubf)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists (use --force"));
    assert!(!key.exists());
    assert_eq!(std::fs::read(&pubf).unwrap(), b"keep me");

    assert_eq!(csc(&["keygen", "--out", s(&key)]).status.code(), Some(0));
    let first = std::fs::read(&key).unwrap();
    assert_eq!(csc(&["keygen", "--out", s(&key)]).status.code(), Some(1));
    assert_eq!(std::fs::read(&key).unwrap(), first);

    // --force on a file someone made world-readable: replaced, and 0600.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        csc(&["keygen", "--out", s(&key), "--force"]).status.code(),
        Some(0)
    );
    assert_ne!(std::fs::read(&key).unwrap(), first);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    // Same path for two outputs, and an unwritable location.
    let o = csc(&[
        "keygen",
        "--out",
        s(&key),
        "--public-out",
        s(&key),
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = csc(&["keygen", "--out", "/nonexistent-dir/k.pem"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent-dir/k.pem"));
}

fn generated(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let key = dir.join("k.pem");
    let pem = dir.join("k.pub.pem");
    let o = csc(&["keygen", "--out", s(&key), "--public-out", s(&pem)]);
    assert!(o.status.success());
    let vk = csc::evidence::keys::load_verifying_key(&pem).unwrap();
    (key, pem, csc::canonical::hex(vk.as_bytes()))
}

#[test]
fn openssl_reads_keygen_output() {
    if Command::new("openssl").arg("version").output().is_err() {
        if std::env::var_os("CSC_REQUIRE_REFERENCE").is_some_and(|v| v == "1") {
            panic!("CSC_REQUIRE_REFERENCE=1 but openssl is not installed");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: openssl not installed; keygen/OpenSSL check not run"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, pem, pub_hex) = generated(dir.path());
    let o = Command::new("openssl")
        .args(["pkey", "-in", s(&key), "-noout", "-text"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).replace([':', ' ', '\n'], "");
    assert!(o.status.success(), "{o:?}");
    assert!(
        text.contains("ED25519Private-Key") && text.contains(&pub_hex),
        "{text}"
    );
    let o = Command::new("openssl")
        .args(["pkey", "-pubin", "-in", s(&pem), "-noout", "-text"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout).replace([':', ' ', '\n'], "");
    assert!(text.contains(&pub_hex), "{text}");
}

#[test]
fn python_cryptography_reads_keygen_output() {
    let python = ["/tmp/refenv/bin/python", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import cryptography"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        if std::env::var_os("CSC_REQUIRE_REFERENCE").is_some_and(|v| v == "1") {
            panic!("CSC_REQUIRE_REFERENCE=1 but no Python with `cryptography` (/tmp/refenv)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: no Python with `cryptography`; keygen/cryptography check not run"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, pem, pub_hex) = generated(dir.path());
    let script = r#"
import sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key, Encoding, PublicFormat
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
k = load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
assert isinstance(k, Ed25519PrivateKey)
p = load_pem_public_key(open(sys.argv[2], "rb").read())
a = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
b = p.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
assert a == b
print(a)
"#;
    let o = Command::new(python)
        .args(["-c", script, s(&key), s(&pem)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), pub_hex);
}
