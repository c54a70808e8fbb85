//! Fleet mode (RFC 0014) end to end: several "hosts" (separate homes,
//! receipt directories and processes) running `csc run --state-url` against
//! one PostgreSQL: a single_execution approval executes exactly once
//! fleet-wide, concurrent runs form one verifiable ledger, and a database
//! restart mid-run loses nothing and replays nothing.

use crate::common::{self, pg};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Host {
    home: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("receipts")).unwrap();
        Host { home }
    }

    fn spawn(
        &self,
        url: &str,
        contract: &Path,
        policy: &Path,
        n: usize,
        extra: &[&str],
    ) -> (Child, PathBuf) {
        let receipt = self.home.path().join(format!("receipts/r{n}.json"));
        let child = Command::new(common::CSC)
            .arg("run")
            .arg(contract)
            .arg(policy)
            .arg("--quiet")
            .arg("--receipt-out")
            .arg(&receipt)
            .args(["--state-url", url])
            .args(extra)
            .env("HOME", self.home.path())
            .env_remove("XDG_STATE_HOME")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (child, receipt)
    }
}

fn status(receipt: &Path) -> Option<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(receipt).ok()?).ok()?;
    Some(v["status"].as_str()?.to_owned())
}

fn ledger_verify(url: &str, ws: &common::Ws) -> (bool, Value) {
    // A checkpoint anchors the log, then the whole log is recomputed.
    let key = ws.path("ledger.seed");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let pk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    use base64::Engine as _;
    let ring = ws.path("ring.json");
    std::fs::write(
        &ring,
        json!({"keyring_version": "csc.keyring.v1", "keys": [{"key_id": "l", "public_key":
            base64::engine::general_purpose::STANDARD.encode(pk.as_bytes())}]})
        .to_string(),
    )
    .unwrap();
    let cp = Command::new(common::CSC)
        .args([
            "ledger",
            "checkpoint",
            "--key-id",
            "l",
            "--state-url",
            url,
            "--signing-key",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );
    let out = Command::new(common::CSC)
        .args([
            "ledger",
            "verify",
            "--json",
            "--state-url",
            url,
            "--keyring",
        ])
        .arg(&ring)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v)
}

fn approval(ws: &common::Ws, contract: &Path) -> PathBuf {
    let sha = csc::protocol::load::load_contract(contract)
        .unwrap()
        .contract
        .sha256();
    let a = json!({
        "approval_version": "csc.approval.v0.1", "approval_id": "appr-fleet-once",
        "contract_sha256": sha, "approver": {"identity": "alice", "method": "cli"},
        "approved_at": csc::time::rfc3339_in(-60), "expires_at": csc::time::rfc3339_in(3600),
        "scope": "single_execution"
    });
    let p = ws.path("once.approval.json");
    std::fs::write(&p, serde_json::to_vec(&a).unwrap()).unwrap();
    p
}

#[test]
fn three_hosts_racing_fifty_runs_each_execute_one_approval_once() {
    let Some(c) = pg::cluster() else { return };
    let url = c.migrated_db();
    let ws = common::ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    let contract = ws.contract_with(
        "c.json",
        vec![ws.cmd("t", &["sh", "-c", "echo ran >> out/runs"])],
        |c| {
            c["approval_mode"] = json!("human_required");
            c["commands"][0]["write_paths"] = json!([ws.s("out")]);
        },
    );
    let a = approval(&ws, &contract);
    let policy = ws.path("policy.yaml");
    let hosts: Vec<Host> = (0..3).map(|_| Host::new()).collect();
    let mut children = Vec::new();
    for i in 0..50 {
        for h in &hosts {
            children.push(h.spawn(
                &url,
                &contract,
                &policy,
                i,
                &["--approval", a.to_str().unwrap()],
            ));
        }
    }
    let mut statuses = Vec::new();
    for (mut child, receipt) in children {
        let _ = child.wait().unwrap();
        statuses.push(status(&receipt).unwrap_or_else(|| "missing".to_owned()));
    }
    let successes = statuses.iter().filter(|s| *s == "success").count();
    assert_eq!(successes, 1, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| *s == "blocked").count(),
        149,
        "{statuses:?}"
    );
    let runs = std::fs::read_to_string(ws.path("out/runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "the command ran more than once");
    let (ok, report) = ledger_verify(&url, &ws);
    assert!(ok, "{report}");
    assert_eq!(report["entries"], 150, "{report}");
}

#[test]
fn a_thousand_concurrent_runs_append_one_verifiable_log() {
    let Some(c) = pg::cluster() else { return };
    let url = c.migrated_db();
    let ws = common::ws();
    // The cheapest run: denied by policy, receipt and ledger entry only.
    let contract = ws.contract("c.json", vec![ws.cmd("t", &["rm", "-rf", "/"])]);
    let policy = ws.path("policy.yaml");
    let hosts: Vec<Host> = (0..3).map(|_| Host::new()).collect();
    let mut running = std::collections::VecDeque::new();
    let mut done = 0;
    for i in 0..1000 {
        if running.len() >= 24 {
            let (mut child, receipt): (Child, PathBuf) = running.pop_front().unwrap();
            assert!(!child.wait().unwrap().success());
            assert_eq!(status(&receipt).as_deref(), Some("blocked"));
            done += 1;
        }
        running.push_back(hosts[i % 3].spawn(&url, &contract, &policy, i, &[]));
    }
    for (mut child, receipt) in running {
        let out = child.wait().unwrap();
        assert_eq!(out.code(), Some(1));
        assert_eq!(status(&receipt).as_deref(), Some("blocked"));
        done += 1;
    }
    assert_eq!(done, 1000);
    let (ok, report) = ledger_verify(&url, &ws);
    assert!(ok, "{report}");
    assert_eq!(report["entries"], 1000, "{report}");
}

#[test]
fn a_database_restart_mid_run_loses_nothing_and_replays_nothing() {
    let Some(c) = pg::private_cluster() else {
        return;
    };
    let url = c.migrated_db();
    let ws = common::ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    let contract = ws.contract_with(
        "c.json",
        vec![ws.cmd("t", &["sh", "-c", "sleep 2; echo ran >> out/runs"])],
        |c| {
            c["approval_mode"] = json!("human_required");
            c["commands"][0]["write_paths"] = json!([ws.s("out")]);
        },
    );
    let a = approval(&ws, &contract);
    let policy = ws.path("policy.yaml");
    let host = Host::new();
    let (child, receipt) = host.spawn(
        &url,
        &contract,
        &policy,
        0,
        &["--approval", a.to_str().unwrap()],
    );
    // Once the command runs (the approval is consumed), restart the server.
    let start = std::time::Instant::now();
    while !consumed(&c, &url) {
        assert!(start.elapsed().as_secs() < 30, "never consumed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.restart();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&receipt).as_deref(), Some("success"));
    // Nothing replayed: the consumption survived the restart.
    let (child, receipt) = host.spawn(
        &url,
        &contract,
        &policy,
        1,
        &["--approval", a.to_str().unwrap()],
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(status(&receipt).as_deref(), Some("blocked"));
    assert_eq!(
        std::fs::read_to_string(ws.path("out/runs"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    // Nothing lost: both receipts are in the log.
    let (ok, report) = ledger_verify(&url, &ws);
    assert!(ok, "{report}");
    assert_eq!(report["entries"], 2, "{report}");
}

fn consumed(c: &pg::Cluster, url: &str) -> bool {
    let db = url.split("///").nth(1).unwrap().split('?').next().unwrap();
    c.admin(db)
        .query_one("SELECT count(*) FROM csc_consumed_approvals", &[])
        .map(|r| r.get::<_, i64>(0) > 0)
        .unwrap_or(false)
}

/// A `csc mcp` server on the fleet store, driven over raw JSON-RPC.
struct McpServer {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    next: u64,
}

impl McpServer {
    fn start(url: &str, policy: &Path, receipts: &Path) -> McpServer {
        let mut child = Command::new(common::CSC)
            .arg("mcp")
            .arg("--policy")
            .arg(policy)
            .arg("--receipt-dir")
            .arg(receipts)
            .args(["--state-url", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut m = McpServer {
            stdin: child.stdin.take().unwrap(),
            stdout: std::io::BufReader::new(child.stdout.take().unwrap()),
            child,
            next: 1,
        };
        m.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "csc-test", "version": "0"}}),
        );
        m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        m
    }

    fn send(&mut self, v: &Value) {
        use std::io::Write as _;
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        use std::io::BufRead as _;
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "csc mcp exited"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }

    /// `run_contract`; the run's status.
    fn run(&mut self, arguments: Value) -> String {
        let r = self.request(
            "tools/call",
            json!({"name": "run_contract", "arguments": arguments}),
        );
        r["result"]["structuredContent"]["status"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_owned()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sessions of `csc` on `db` (as the server sees them).
fn csc_sessions(c: &pg::Cluster, db: &str) -> i64 {
    c.admin("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'csc'",
            &[&db],
        )
        .unwrap()
        .get(0)
}

#[test]
fn an_mcp_server_keeps_one_connection_that_survives_a_restart() {
    let Some(c) = pg::private_cluster() else {
        return;
    };
    let url = c.migrated_db();
    let db = url.split("///").nth(1).unwrap().split('?').next().unwrap();
    let ws = common::ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    std::fs::create_dir(ws.path("receipts")).unwrap();
    let contract = ws.contract_with(
        "c.json",
        vec![ws.cmd("t", &["sh", "-c", "echo ran >> out/runs"])],
        |c| {
            c["approval_mode"] = json!("human_required");
            c["commands"][0]["write_paths"] = json!([ws.s("out")]);
        },
    );
    let a = approval(&ws, &contract);
    let contract: Value = serde_json::from_slice(&std::fs::read(&contract).unwrap()).unwrap();
    let approval: Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    let denied: Value = serde_json::from_slice(
        &std::fs::read(ws.contract("d.json", vec![ws.cmd("t", &["rm", "-rf", "/"])])).unwrap(),
    )
    .unwrap();
    let mut m = McpServer::start(&url, &ws.path("policy.yaml"), &ws.path("receipts"));
    let once = json!({"contract": contract, "approval": approval});
    assert_eq!(m.run(once.clone()), "success");
    assert_eq!(m.run(json!({"contract": denied})), "blocked");
    // Two runs (and the start-up check), one session on the database.
    assert_eq!(csc_sessions(&c, db), 1);
    c.restart();
    // After the restart the server reconnects: the consumption held (the
    // approval is not replayable) and every receipt reaches the ledger.
    assert_eq!(m.run(once), "blocked");
    assert_eq!(m.run(json!({"contract": denied})), "blocked");
    assert_eq!(csc_sessions(&c, db), 1);
    drop(m);
    assert_eq!(
        std::fs::read_to_string(ws.path("out/runs"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    let (ok, report) = ledger_verify(&url, &ws);
    assert!(ok, "{report}");
    assert_eq!(report["entries"], 4, "{report}");
}
