//! The receipt ledger and `csc ledger ...` (RFC 0011): every receipt
//! `csc run` writes is appended (no flag needed), checkpoints are signed, proofs verify offline, and deletion,
//! edit, reorder and insertion are detected and named. Every accepted
//! proof or checkpoint is paired with a tampered twin.

use crate::common;

use base64::Engine as _;
use common::*;
use csc::evidence::ledger_log::{self, Entry};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct L {
    ws: Ws,
    _trusted: tempfile::TempDir,
    ring: PathBuf,
    key: PathBuf,
}

fn setup() -> L {
    let ws = ws();
    let trusted = tempfile::tempdir().unwrap();
    let pk = |seed: u8| {
        base64::engine::general_purpose::STANDARD.encode(
            SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .as_bytes(),
        )
    };
    let ring = trusted.path().join("ring.json");
    std::fs::write(
        &ring,
        json!({"keyring_version": "csc.keyring.v1", "keys": [
            {"key_id": "ledger-1", "public_key": pk(5)},
            {"key_id": "old", "public_key": pk(6), "revoked": true}
        ]})
        .to_string(),
    )
    .unwrap();
    let key = trusted.path().join("ledger.seed");
    std::fs::write(&key, [5u8; 32]).unwrap();
    std::fs::write(trusted.path().join("old.seed"), [6u8; 32]).unwrap();
    L {
        ws,
        _trusted: trusted,
        ring,
        key,
    }
}

impl L {
    fn state(&self) -> String {
        self.ws.s("state")
    }

    /// One ledgered run; returns the receipt path (kept under a unique name).
    fn run(&self, n: usize, argv: &[&str]) -> PathBuf {
        let c = self
            .ws
            .contract(&format!("c{n}.json"), vec![self.ws.cmd("t", argv)]);
        let r = self.ws.run(&c, &[]);
        assert!(r.receipt.is_some(), "{}", r.stderr);
        let kept = self.ws.path(&format!("r{n}.json"));
        std::fs::rename(self.ws.path("receipt.json"), &kept).unwrap();
        kept
    }

    fn csc(&self, args: &[&str]) -> Output {
        Command::new(CSC).args(args).output().unwrap()
    }

    fn checkpoint(&self) -> Output {
        let o = self.csc(&[
            "ledger",
            "checkpoint",
            "--signing-key",
            self.key.to_str().unwrap(),
            "--key-id",
            "ledger-1",
            "--state-dir",
            &self.state(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        o
    }

    fn verify(&self) -> Output {
        self.csc(&[
            "ledger",
            "verify",
            "--state-dir",
            &self.state(),
            "--keyring",
            self.ring.to_str().unwrap(),
        ])
    }

    /// The ledger log's entries, read offline.
    fn entries(&self) -> Vec<Entry> {
        ledger_log::decode_file(&std::fs::read(self.ws.path("state/ledger.log")).unwrap()).unwrap()
    }

    /// Rewrite the ledger log as `f` leaves its entries, every record
    /// well-formed (what someone with write access to the state directory
    /// can do).
    fn rewrite(&self, f: impl FnOnce(&mut Vec<Entry>)) {
        let path = self.ws.path("state/ledger.log");
        let bytes = std::fs::read(&path).unwrap();
        let mut entries = ledger_log::decode_file(&bytes).unwrap();
        f(&mut entries);
        std::fs::write(&path, ledger_log::encode_file(&bytes, &entries).unwrap()).unwrap();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ledger_with(n: usize) -> L {
    let l = setup();
    for i in 0..n {
        l.run(i, &["echo", &format!("run {i}")]);
    }
    l
}

#[test]
fn every_receipt_is_appended_and_the_log_verifies() {
    let l = setup();
    l.run(0, &["true"]);
    l.run(1, &["false"]);
    // A denied run's blocked receipt is appended too.
    let denied =
        l.ws.contract("d.json", vec![l.ws.cmd("t", &["rm", "-rf", "/"])]);
    // `--ledger` is an accepted no-op now.
    let r = l.ws.run(&denied, &["--ledger"]);
    assert_eq!(r.status(), "blocked");
    assert_eq!(l.entries().len(), 3);
    // No checkpoint yet: nothing anchors the log.
    let o = l.verify();
    assert!(!o.status.success());
    assert!(text(&o).contains("no signed checkpoint"), "{}", text(&o));
    l.checkpoint();
    let o = l.verify();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("3 entries, 1 checkpoint(s) verified"),
        "{}",
        text(&o)
    );
    // Tampered twin: a checkpoint signed by a revoked key does not count.
    let o = l.csc(&[
        "ledger",
        "checkpoint",
        "--signing-key",
        l._trusted.path().join("old.seed").to_str().unwrap(),
        "--key-id",
        "old",
        "--state-dir",
        &l.state(),
    ]);
    assert!(o.status.success());
    let o = l.verify();
    assert!(!o.status.success());
    assert!(text(&o).contains("revoked"), "{}", text(&o));
}

type Tamper = fn(&mut Vec<Entry>);

#[test]
fn log_tampering_is_detected_and_named() {
    let cases: [(&str, Tamper, &str); 5] = [
        ("delete", |e| e.retain(|x| x.index != 1), "deletion"),
        ("delete tail", |e| e.retain(|x| x.index != 3), "deletion"),
        (
            "edit",
            |e| {
                let r = String::from_utf8(e[2].receipt.clone()).unwrap();
                e[2].receipt = r.replace("success", "failed").into_bytes();
            },
            "edit: entry 2",
        ),
        (
            "reorder",
            |e| {
                e.swap(1, 2);
                e[1].index = 1;
                e[2].index = 2;
            },
            "reorder",
        ),
        (
            "insert",
            |e| {
                let mut dup = e[0].clone();
                dup.index = 2;
                for x in e.iter_mut().skip(2) {
                    x.index += 1;
                }
                e.insert(2, dup);
            },
            "insertion",
        ),
    ];
    for (what, tamper, needle) in cases {
        let l = ledger_with(4);
        l.checkpoint();
        assert!(l.verify().status.success());
        l.rewrite(tamper);
        let o = l.verify();
        assert!(!o.status.success(), "{what}: {}", text(&o));
        assert!(text(&o).contains(needle), "{what}: {}", text(&o));
        // Never sign over a tampered log.
        let o = l.csc(&[
            "ledger",
            "checkpoint",
            "--signing-key",
            l.key.to_str().unwrap(),
            "--key-id",
            "ledger-1",
            "--state-dir",
            &l.state(),
        ]);
        assert!(
            !o.status.success(),
            "{what}: checkpoint signed a tampered log"
        );
    }
}

#[test]
fn a_damaged_log_fails_verification_and_blocks_no_evidence() {
    // One flipped byte inside an entry: named with its offset; the next
    // run's append refuses to cut anything and the run reports it.
    let l = ledger_with(3);
    let path = l.ws.path("state/ledger.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = ledger_log::HEADER_LEN + 120;
    bytes[at] ^= 0x20;
    let n = bytes.len();
    bytes[n - 1] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let o = l.verify();
    assert!(!o.status.success());
    assert!(text(&o).contains("damaged at byte"), "{}", text(&o));
    run_not_appended(&l);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "evidence was cut");
}

fn export(l: &L) -> Vec<String> {
    let o = l.csc(&["ledger", "export", "--state-dir", &l.state()]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn verify_export(l: &L, lines: &[String]) -> Output {
    let f = l.ws.path("export.jsonl");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    l.csc(&[
        "ledger",
        "verify",
        "--export",
        f.to_str().unwrap(),
        "--keyring",
        l.ring.to_str().unwrap(),
    ])
}

#[test]
fn export_verifies_offline_and_tampered_exports_are_named() {
    let l = ledger_with(4);
    l.checkpoint();
    let lines = export(&l);
    assert_eq!(lines.len(), 1 + 1 + 4);
    let o = verify_export(&l, &lines);
    assert!(o.status.success(), "{}", text(&o));
    // Entry lines are lines 2..6 (header, checkpoint first).
    let mut del = lines.clone();
    del.remove(3);
    assert!(text(&verify_export(&l, &del)).contains("deletion"));
    let mut swap = lines.clone();
    swap.swap(3, 4);
    assert!(text(&verify_export(&l, &swap)).contains("reorder"));
    let mut ins = lines.clone();
    ins.insert(4, lines[3].clone());
    assert!(text(&verify_export(&l, &ins)).contains("insertion"));
    let mut edit = lines.clone();
    edit[4] = edit[4].replace("\"success\"", "\"failed\"");
    assert_ne!(edit[4], lines[4]);
    assert!(text(&verify_export(&l, &edit)).contains("edit"));
    let mut sig = lines.clone();
    let mut cp: Value = serde_json::from_str(&sig[1]).unwrap();
    let s = cp["envelope"]["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if s.starts_with('A') {
        s.replacen('A', "B", 1)
    } else {
        format!("A{}", &s[1..])
    };
    cp["envelope"]["signatures"][0]["sig"] = json!(flipped);
    sig[1] = cp.to_string();
    let o = verify_export(&l, &sig);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("tampered") || text(&o).contains("signature"),
        "{}",
        text(&o)
    );
    for junk in [
        vec!["{}".to_owned()],
        vec![lines[0].clone(), "not json".to_owned()],
        vec![],
    ] {
        assert!(!verify_export(&l, &junk).status.success());
    }
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn inclusion_and_consistency_proofs_verify_offline() {
    let l = setup();
    let r0 = l.run(0, &["echo", "a"]);
    let r1 = l.run(1, &["echo", "b"]);
    // Not yet covered by a checkpoint.
    let o = l.csc(&[
        "ledger",
        "prove",
        r1.to_str().unwrap(),
        "--state-dir",
        &l.state(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("checkpoint"), "{}", text(&o));
    l.checkpoint();
    let r2 = l.run(2, &["echo", "c"]);
    l.run(3, &["echo", "d"]);
    l.run(4, &["echo", "e"]);
    l.checkpoint();

    let ring = l.ring.to_str().unwrap();
    let verify_proof = |proof: &Path, receipt: Option<&Path>| {
        let mut args = vec!["ledger", "verify-proof", proof.to_str().unwrap()];
        if let Some(r) = receipt {
            args.push(r.to_str().unwrap());
        }
        args.extend(["--keyring", ring]);
        l.csc(&args)
    };
    for r in [&r0, &r2] {
        let o = l.csc(&[
            "ledger",
            "prove",
            r.to_str().unwrap(),
            "--state-dir",
            &l.state(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let proof: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(proof["audit_path"].as_array().unwrap().len() <= 3);
        let pf = l.ws.path("proof.json");
        write_json(&pf, &proof);
        let ok = verify_proof(&pf, Some(r));
        assert!(ok.status.success(), "{}", text(&ok));
        // Tampered twins: another receipt, an edited receipt, a bad path, a
        // bad checkpoint signature, no receipt.
        assert!(!verify_proof(&pf, Some(&r1)).status.success());
        let mut receipt: Value = serde_json::from_slice(&std::fs::read(r).unwrap()).unwrap();
        receipt["ended_at"] = json!("2030-01-01T00:00:00+00:00");
        let edited = l.ws.path("edited.json");
        write_json(&edited, &receipt);
        let o = verify_proof(&pf, Some(&edited));
        assert!(text(&o).contains("not the one"), "{}", text(&o));
        let mut bad = proof.clone();
        let h = bad["audit_path"][0].as_str().unwrap().to_owned();
        bad["audit_path"][0] = json!(format!(
            "{}{}",
            if h.starts_with('0') { "1" } else { "0" },
            &h[1..]
        ));
        write_json(&pf, &bad);
        assert!(text(&verify_proof(&pf, Some(r))).contains("INVALID"));
        let mut bad = proof.clone();
        bad["leaf_index"] = json!(proof["leaf_index"].as_u64().unwrap() + 1);
        write_json(&pf, &bad);
        assert!(!verify_proof(&pf, Some(r)).status.success());
        let mut bad = proof.clone();
        bad["checkpoint"]["payload"] = json!(
            base64::engine::general_purpose::STANDARD.encode(
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(proof["checkpoint"]["payload"].as_str().unwrap())
                        .unwrap()
                )
                .unwrap()
                .replace("\"tree_size\":5", "\"tree_size\":6")
            )
        );
        write_json(&pf, &bad);
        assert!(!verify_proof(&pf, Some(r)).status.success());
        write_json(&pf, &proof);
        assert!(!verify_proof(&pf, None).status.success());
    }

    let o = l.csc(&[
        "ledger",
        "prove",
        "--consistency",
        "2",
        "5",
        "--state-dir",
        &l.state(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let proof: Value = serde_json::from_slice(&o.stdout).unwrap();
    let pf = l.ws.path("cons.json");
    write_json(&pf, &proof);
    let ok = verify_proof(&pf, None);
    assert!(ok.status.success(), "{}", text(&ok));
    let mut bad = proof.clone();
    let h = bad["proof"][0].as_str().unwrap().to_owned();
    bad["proof"][0] = json!(format!(
        "{}{}",
        if h.starts_with('0') { "1" } else { "0" },
        &h[1..]
    ));
    write_json(&pf, &bad);
    assert!(!verify_proof(&pf, None).status.success());
    let o = l.csc(&[
        "ledger",
        "prove",
        "--consistency",
        "3",
        "5",
        "--state-dir",
        &l.state(),
    ]);
    assert!(
        text(&o).contains("no signed checkpoint of size 3"),
        "{}",
        text(&o)
    );
}

#[test]
fn ledger_state_dir_inside_a_write_scope_is_refused() {
    let l = setup();
    let mut cmd = l.ws.cmd("t", &["touch", "x"]);
    cmd["write_paths"] = json!([l.ws.s("")]);
    let c = l.ws.contract("w.json", vec![cmd]);
    let out = Command::new(CSC)
        .args([
            "run",
            c.to_str().unwrap(),
            &l.ws.s("policy.yaml"),
            "--quiet",
        ])
        .args(["--receipt-out", "/tmp/csc-ledger-test-never-written.json"])
        .args(["--state-dir", &l.state()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file("/tmp/csc-ledger-test-never-written.json");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("--state-dir"), "{}", text(&out));
    assert!(!l.ws.path("x").exists());
}

/// A run of `true` whose append fails: exit 1, and it says so.
fn run_not_appended(l: &L) -> Run {
    let c = l.ws.contract("c.json", vec![l.ws.cmd("t", &["true"])]);
    let r = l.ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("NOT appended to the ledger"),
        "{}",
        r.stderr
    );
    r
}

#[test]
fn a_failed_append_is_an_error_not_silence() {
    let l = ledger_with(1);
    // Junk after the last entry that no crash can leave (no entry start):
    // csc cuts nothing and the append fails, so the run must say so.
    let path = l.ws.path("state/ledger.log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"junk, not an entry");
    std::fs::write(&path, &bytes).unwrap();
    let r = run_not_appended(&l);
    assert!(r.stderr.contains("is damaged at byte"), "{}", r.stderr);
    assert!(
        std::fs::read(&path)
            .unwrap()
            .ends_with(b"junk, not an entry")
    );
}

#[test]
fn an_unusable_store_blocks_every_run_with_a_receipt() {
    // No approval involved: the ledger alone makes the store mandatory.
    let l = setup();
    std::fs::create_dir(l.ws.path("state")).unwrap();
    std::fs::write(l.ws.path("state/approvals.sqlite3"), vec![0x42u8; 8192]).unwrap();
    let c =
        l.ws.contract("c.json", vec![l.ws.cmd("t", &["touch", "ran"])]);
    let r = l.ws.run(&c, &[]);
    assert_ne!(r.code, 0);
    assert_eq!(r.status(), "blocked");
    assert!(!l.ws.path("ran").exists(), "ran without a ledger");
    assert!(
        r.stderr.contains("NOT appended to the ledger"),
        "{}",
        r.stderr
    );
}

#[test]
fn every_status_is_appended_in_order() {
    // Success, failure and denial: three receipts, three entries, in order.
    let l = setup();
    l.run(0, &["true"]);
    l.run(1, &["false"]);
    let denied =
        l.ws.contract("d.json", vec![l.ws.cmd("t", &["rm", "-rf", "/"])]);
    l.ws.run(&denied, &[]);
    let ids: Vec<String> = l
        .entries()
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_slice(&e.receipt).unwrap();
            v["status"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids, ["success", "failed", "blocked"]);
}
