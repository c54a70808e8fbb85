//! `csc run --mode hardened` with `network: allowlisted`: the egress log
//! is saved per command, bound into the signed receipt as an artifact and
//! checked by `verify-receipt --outputs`; `network_used` follows the log;
//! refusals are summarized on stderr; the allowlist is part of the
//! sandbox profile id.

use crate::common;
use crate::support;

use common::*;
use serde_json::{Value, json};
use sha2::Digest;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use support::{Who, skip};

const KEY_ID: &str = "egress-test";

fn egress_ws() -> Ws {
    let ws = ws();
    std::fs::write(ws.path("key.seed"), [7u8; 32]).unwrap();
    std::fs::create_dir(ws.path("work")).unwrap();
    let policy = std::fs::read_to_string(ws.path("policy.yaml"))
        .unwrap()
        .replace("network: deny", "network: allowlisted");
    std::fs::write(ws.path("policy.yaml"), policy).unwrap();
    ws
}

fn origin() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut b = [0u8; 4096];
            let _ = c.read(&mut b);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    });
    port
}

fn cmd(ws: &Ws, id: &str, script: &str) -> Value {
    let mut c = ws.cmd(id, &["sh", "-c", script]);
    c["network"] = json!("allowlisted");
    c["write_paths"] = json!([ws.s("work")]);
    c
}

fn run(ws: &Ws, contract: &std::path::Path, extra: &[&str]) -> Run {
    let key = ws.s("key.seed");
    let mut args = vec![
        "--mode",
        "hardened",
        "--sign",
        "--signing-key",
        key.as_str(),
        "--key-id",
        KEY_ID,
    ];
    args.extend_from_slice(extra);
    ws.run(contract, &args)
}

fn verify(ws: &Ws) -> std::process::Output {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    std::fs::write(ws.path("key.pub"), sk.verifying_key().as_bytes()).unwrap();
    Command::new(CSC)
        .arg("verify-receipt")
        .arg(ws.path("receipt.json"))
        .arg("--public-key")
        .arg(ws.path("key.pub"))
        .args(["--key-id", KEY_ID, "--outputs"])
        .arg(ws.path("out"))
        .output()
        .unwrap()
}

#[test]
fn egress_log_is_saved_signed_and_verified() {
    if skip(Who::Root, "egress evidence") {
        return;
    }
    let ws = egress_ws();
    let port = origin();
    let c = ws.contract(
        "c.json",
        vec![
            cmd(
                &ws,
                "fetch",
                &format!(
                    "curl -sS --max-time 20 http://svc.test:{port}/ && curl -sS --max-time 20 http://evil.test:{port}/ ; true"
                ),
            ),
            cmd(
                &ws,
                "refused-only",
                &format!("curl -sS --max-time 20 http://evil.test:{port}/ ; true"),
            ),
        ],
    );
    let allow = format!("svc.test:{port}");
    let out = ws.s("out");
    let r = run(
        &ws,
        &c,
        &[
            "--output-dir",
            &out,
            "--egress-allow",
            &allow,
            "--egress-allow-cidr",
            "127.0.0.0/8",
            "--egress-test-resolve",
            "svc.test=127.0.0.1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = r.receipt();
    assert_eq!(rec["status"], "success");
    assert_eq!(rec["effect_summary"]["network_used"], true);
    assert!(
        r.stderr.contains(&format!(
            "command \"fetch\": egress refused: evil.test:{port} (not_allowlisted)"
        )),
        "{}",
        r.stderr
    );
    let arts = rec["artifacts"].as_array().unwrap();
    for id in ["fetch", "refused-only"] {
        let path = ws.path(&format!("out/{id}.egress.jsonl"));
        let bytes = std::fs::read(&path).unwrap();
        let hash = hex(&sha2::Sha256::digest(&bytes));
        assert!(
            arts.iter()
                .any(|a| a["path"] == path.display().to_string() && a["sha256"] == hash),
            "{id}: {arts:?}"
        );
        let lines: Vec<Value> = String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.iter().all(|l| l["command_id"] == id), "{lines:?}");
        if id == "fetch" {
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert_eq!(lines[0]["verdict"], "allowed");
            assert_eq!(lines[0]["resolved"], format!("127.0.0.1:{port}"));
            assert_eq!(lines[1]["verdict"], "denied");
        } else {
            assert_eq!(lines.len(), 1, "{lines:?}");
        }
    }
    let v = verify(&ws);
    assert!(v.status.success(), "{v:?}");
    // Tampering with a log breaks verification.
    let p = ws.path("out/fetch.egress.jsonl");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"allowed\"", "\"denied\"");
    std::fs::write(&p, text).unwrap();
    let v = verify(&ws);
    assert!(!v.status.success());
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("artifact_mismatch"),
        "{v:?}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn network_used_is_false_when_every_attempt_was_refused() {
    if skip(Who::Root, "egress network_used") {
        return;
    }
    let ws = egress_ws();
    let c = ws.contract(
        "c.json",
        vec![cmd(
            &ws,
            "x",
            "curl -sS --max-time 20 http://evil.test/ ; true",
        )],
    );
    let out = ws.s("out");
    let r = run(
        &ws,
        &c,
        &["--output-dir", &out, "--egress-allow", "example.org"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["effect_summary"]["network_used"], false);
    assert!(
        r.stderr.contains("egress refused: evil.test:80"),
        "{}",
        r.stderr
    );
}

#[test]
fn refused_before_anything_runs_without_allowlist_or_output_dir() {
    let ws = egress_ws();
    let marker = ws.s("work/ran");
    let c = ws.contract("c.json", vec![cmd(&ws, "x", &format!("touch {marker}"))]);
    let out = ws.s("out");
    for (extra, needle) in [
        (vec!["--output-dir", out.as_str()], "--egress-allow"),
        (vec!["--egress-allow", "example.org"], "--output-dir"),
        (
            vec!["--output-dir", out.as_str(), "--egress-allow", "*.org"],
            "--egress-allow",
        ),
        (
            vec![
                "--output-dir",
                out.as_str(),
                "--egress-allow",
                "example.org",
                "--egress-allow-cidr",
                "10.0.0.1/8",
            ],
            "--egress-allow-cidr",
        ),
    ] {
        let r = run(&ws, &c, &extra);
        assert_eq!(r.code, 1, "{extra:?}: {}", r.stderr);
        let rec = r.receipt();
        assert_eq!(rec["status"], "blocked", "{extra:?}");
        let err = rec["error"].as_str().unwrap();
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(!std::path::Path::new(&marker).exists());
    }
}

#[test]
fn allowlist_is_part_of_the_profile_id() {
    let id = |extra: &[&str]| -> Value {
        let out = Command::new(CSC)
            .args(["sandbox-profile", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["sandbox_profile_id"].clone()
    };
    let none = id(&[]);
    let a = id(&["--egress-allow", "example.org"]);
    let b = id(&["--egress-allow", "example.net"]);
    let c = id(&[
        "--egress-allow",
        "example.org",
        "--egress-allow-cidr",
        "10.0.0.0/8",
    ]);
    assert_ne!(none, a);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(a, id(&["--egress-allow", "EXAMPLE.org."]));
    let bad = Command::new(CSC)
        .args(["sandbox-profile", "--egress-allow", "a.*.org"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
