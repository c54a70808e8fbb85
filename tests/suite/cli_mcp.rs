//! `csc mcp`: driven over stdio with raw JSON-RPC 2.0, as an MCP client
//! would (initialize, tools/list, tools/call).

use crate::common;
use crate::support::{self, Who, sandbox_test};

use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// A running `csc mcp` and every stdout line it wrote.
struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line seen so far (all must be JSON-RPC).
    seen: Vec<String>,
    next_id: u64,
}

impl Mcp {
    fn start(ws: &Ws, extra: &[&str]) -> Mcp {
        Mcp::start_as(Who::Root, ws, extra)
    }

    /// `csc mcp` running as `who`; for uid 65534 the workspace is handed
    /// over to that uid first.
    fn start_as(who: Who, ws: &Ws, extra: &[&str]) -> Mcp {
        if who == Who::Nobody {
            chown_nobody(&ws.root);
        }
        let mut child = support::command(who)
            .arg("mcp")
            .args(["--policy", ws.s("policy.yaml").as_str()])
            .args(["--receipt-dir", ws.s("receipts").as_str()])
            .args(["--state-dir", ws.s("state").as_str()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        if who == Who::Nobody {
            // The pipes belong to the server's uid, as when a host running
            // as that uid starts it.
            let id = Some(nix::unistd::Uid::from_raw(support::NOBODY));
            let gid = Some(nix::unistd::Gid::from_raw(support::NOBODY));
            nix::unistd::fchown(&stdout, id, gid).unwrap();
            nix::unistd::fchown(child.stdin.as_ref().unwrap(), id, gid).unwrap();
        }
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut m = Mcp {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            next_id: 1,
        };
        let init = m.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "csc-test", "version": "0"}}),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "csc", "{init}");
        assert!(
            init["result"]["capabilities"]["tools"].is_object(),
            "{init}"
        );
        m.send_raw(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        m
    }

    fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next stdout line that is a response with `id`.
    fn response(&mut self, id: &Value) -> Value {
        loop {
            // Generous: only guards against a hung server, never a timing assertion.
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .expect("csc mcp stopped answering");
            self.seen.push(line.clone());
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON-RPC ({e}): {line:?}"));
            assert_eq!(v["jsonrpc"], "2.0", "{line}");
            if &v["id"] == id {
                return v;
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        self.response(&id)
    }

    /// Send a request without waiting for its response; returns its id.
    fn send_request(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.next_id);
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(&msg.to_string());
        id
    }

    /// `tools/call`; returns the result (panics on a JSON-RPC error).
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let r = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        r.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("JSON-RPC error: {r}"))
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn contract_value(ws: &Ws, commands: Vec<Value>) -> Value {
    let path = ws.contract("c.json", commands);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn keygen(ws: &Ws) -> Vec<String> {
    let out = Command::new(CSC)
        .args(["keygen", "--out", ws.s("key.pem").as_str()])
        .args(["--public-out", ws.s("key.pub.pem").as_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    [
        "--sign",
        "--signing-key",
        ws.s("key.pem").as_str(),
        "--key-id",
        "mcp-test",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn tools_list_has_the_three_tools_with_schemas() {
    let ws = ws();
    let mut m = Mcp::start(&ws, &[]);
    let r = m.request("tools/list", json!({}));
    let tools = r["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["check_contract", "explain_contract", "run_contract"]
    );
    for t in tools {
        let input = &t["inputSchema"];
        assert_eq!(input["type"], "object", "{t}");
        assert_eq!(input["additionalProperties"], false, "{t}");
        assert_eq!(input["required"], json!(["contract"]), "{t}");
        assert_eq!(
            input["properties"]["contract"]["required"][0], "version",
            "{t}"
        );
        assert!(input["$defs"]["command"].is_object(), "{t}");
        assert_eq!(t["outputSchema"]["type"], "object", "{t}");
    }
    let run = &tools[2];
    assert!(run["inputSchema"]["properties"]["approval"].is_object());
    assert_eq!(
        run["inputSchema"]["properties"]["approvals"]["type"], "array",
        "{run}"
    );
    assert_eq!(
        run["inputSchema"]["not"],
        json!({"required": ["approval", "approvals"]})
    );
    assert!(
        run["description"].as_str().unwrap().contains("UNTRUSTED"),
        "{run}"
    );
}

#[test]
fn check_contract_returns_the_decision() {
    let ws = ws();
    let mut m = Mcp::start(&ws, &[]);
    let allowed = contract_value(&ws, vec![ws.cmd("hello", &["echo", "hi"])]);
    let r = m.call("check_contract", json!({"contract": allowed}));
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["decision"], "allow", "{r}");
    assert_eq!(
        r["structuredContent"]["contract_id"], allowed["contract_id"],
        "{r}"
    );
    assert!(r["structuredContent"]["contract_sha256"].is_string(), "{r}");
    let denied = contract_value(&ws, vec![ws.cmd("rm", &["rm", "-rf", "/"])]);
    let r = m.call("check_contract", json!({"contract": denied}));
    assert_eq!(r["structuredContent"]["decision"], "deny", "{r}");
    assert!(
        !r["structuredContent"]["reason_codes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let r = m.call("explain_contract", json!({"contract": denied}));
    assert_eq!(
        r["structuredContent"]["decision"]["decision"], "deny",
        "{r}"
    );
    let findings = r["structuredContent"]["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["result"] == "FAIL"), "{r}");
}

#[test]
fn run_contract_runs_and_returns_a_verifiable_receipt() {
    let ws = ws();
    let sign = keygen(&ws);
    let sign: Vec<&str> = sign.iter().map(String::as_str).collect();
    let mut m = Mcp::start(&ws, &sign);
    let c = contract_value(
        &ws,
        vec![ws.cmd(
            "hello",
            &["sh", "-c", "echo from-the-command; echo to-stderr >&2"],
        )],
    );
    let r = m.call("run_contract", json!({"contract": c}));
    assert_eq!(r["isError"], false, "{r}");
    let s = &r["structuredContent"];
    assert_eq!(s["status"], "success", "{r}");
    assert_eq!(s["receipt"]["status"], "success");
    assert_eq!(s["commands"][0]["id"], "hello");
    assert_eq!(s["commands"][0]["exit_code"], 0);
    assert_eq!(s["commands"][0]["stdout"], "from-the-command\n");
    assert_eq!(s["commands"][0]["stderr"], "to-stderr\n");
    assert_eq!(s["commands"][0]["stdout_truncated"], false);
    let path = s["receipt_path"].as_str().unwrap();
    assert!(path.starts_with(ws.s("receipts").as_str()), "{path}");
    let on_disk: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(on_disk, s["receipt"]);
    let v = Command::new(CSC)
        .args(["verify-receipt", path])
        .args(["--public-key", ws.s("key.pub.pem").as_str()])
        .args(["--key-id", "mcp-test"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{v:?}");
    // A second run gets its own receipt file.
    let again = m.call("run_contract", json!({"contract": c}));
    assert_ne!(
        again["structuredContent"]["receipt_path"], s["receipt_path"],
        "{again}"
    );
    // Command output reached the client only inside JSON-RPC messages.
    assert!(
        m.seen
            .iter()
            .all(|l| !l.starts_with("from-the-command") && !l.starts_with("to-stderr"))
    );
}

#[test]
fn returned_output_is_bounded() {
    let ws = ws();
    let mut m = Mcp::start(&ws, &[]);
    let c = contract_value(
        &ws,
        vec![ws.cmd("big", &["head", "-c", "200000", "/dev/zero"])],
    );
    let r = m.call("run_contract", json!({"contract": c}));
    let cmd = &r["structuredContent"]["commands"][0];
    assert_eq!(cmd["stdout_truncated"], true, "{cmd}");
    assert_eq!(cmd["stdout"].as_str().unwrap().len(), 64 * 1024);
}

#[test]
fn denied_run_executes_nothing_and_is_an_error() {
    let ws = ws();
    let mut m = Mcp::start(&ws, &[]);
    let marker = ws.path("marker");
    let c = contract_value(&ws, vec![ws.cmd("t", &["touch", marker.to_str().unwrap()])]);
    let mut c = c;
    c["risk_class"] = json!("critical");
    let r = m.call("run_contract", json!({"contract": c}));
    assert_eq!(r["isError"], true, "{r}");
    assert_eq!(r["structuredContent"]["status"], "blocked", "{r}");
    assert_eq!(r["structuredContent"]["receipt"]["status"], "blocked");
    assert_eq!(r["structuredContent"]["commands"], json!([]));
    assert!(!marker.exists(), "a denied contract ran");
}

#[test]
fn needs_approval_names_the_contract_hash() {
    let ws = ws();
    let mut m = Mcp::start(&ws, &[]);
    let marker = ws.path("marker");
    let mut c = contract_value(&ws, vec![ws.cmd("t", &["touch", marker.to_str().unwrap()])]);
    c["approval_mode"] = json!("human_required");
    let check = m.call("check_contract", json!({"contract": c}));
    assert_eq!(
        check["structuredContent"]["decision"], "needs_approval",
        "{check}"
    );
    let r = m.call("run_contract", json!({"contract": c}));
    assert_eq!(r["isError"], true, "{r}");
    let sha = check["structuredContent"]["contract_sha256"].clone();
    assert_eq!(
        r["structuredContent"]["needs_approval"]["contract_sha256"],
        sha
    );
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("NEEDS APPROVAL") && text.contains(sha.as_str().unwrap()),
        "{text}"
    );
    assert!(!marker.exists());
}

#[test]
fn malformed_input_is_refused_and_the_server_keeps_serving() {
    let ws = ws();
    let mut m = Mcp::start(&ws, &[]);
    // Not JSON at all.
    m.send_raw("{this is not json");
    // Unknown tool: a JSON-RPC error.
    let r = m.request("tools/call", json!({"name": "sh", "arguments": {}}));
    assert!(r.get("error").is_some(), "{r}");
    // Missing contract, wrong type, unknown argument, invalid contract.
    let cases = [
        json!({}),
        json!({"contract": "run ls"}),
        json!({"contract": {}, "policy": "allow-all.yaml"}),
        json!({"contract": {"version": "csc.v0.1"}}),
        json!({"contract": contract_value(&ws, vec![ws.cmd("x", &["true"])]), "mode": "local"}),
    ];
    for args in cases {
        for tool in ["check_contract", "run_contract"] {
            let r = m.call(tool, args.clone());
            assert_eq!(r["isError"], true, "{tool} {args}: {r}");
            assert!(!r["content"][0]["text"].as_str().unwrap().is_empty(), "{r}");
        }
    }
    let r = m.call(
        "run_contract",
        json!({"contract": contract_value(&ws, vec![ws.cmd("x", &["true"])]), "mode": "local"}),
    );
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("unknown argument \"mode\""),
        "{r}"
    );
    // Oversize contract.
    let mut big = contract_value(&ws, vec![ws.cmd("x", &["true"])]);
    big["intent"] = json!("x".repeat(2 * 1024 * 1024));
    let r = m.call("check_contract", json!({"contract": big}));
    assert_eq!(r["isError"], true, "{r}");
    // Still serving.
    let ok = contract_value(&ws, vec![ws.cmd("x", &["echo", "still-here"])]);
    let r = m.call("run_contract", json!({"contract": ok}));
    assert_eq!(r["structuredContent"]["status"], "success", "{r}");
    assert_eq!(
        r["structuredContent"]["commands"][0]["stdout"],
        "still-here\n"
    );
    // Nothing ran for the refused calls: one receipt for the one run.
    let receipts = std::fs::read_dir(ws.path("receipts"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count();
    assert_eq!(receipts, 1);
}

/// Hardened `run_contract`: earlier runs' receipts and streams under
/// `--receipt-dir` are csc's own evidence and stay hidden even when a read
/// scope (here the cwd) covers them.
#[test]
fn hardened_runs_cannot_read_the_receipt_dir() {
    let doctor = Command::new(CSC).args(["doctor"]).output().unwrap();
    if !doctor.status.success() {
        common::require::skip_or_fail("hardened mode unavailable for the csc mcp receipt-dir test");
        return;
    }
    let ws = ws();
    let sign = keygen(&ws);
    let mut args: Vec<&str> = sign.iter().map(String::as_str).collect();
    args.extend(["--mode", "hardened"]);
    let mut m = Mcp::start(&ws, &args);
    let c = contract_value(
        &ws,
        vec![ws.cmd(
            "look",
            &["sh", "-c", "echo ENTRIES:$(ls -A receipts | wc -l)"],
        )],
    );
    let first = m.call("run_contract", json!({"contract": c}));
    assert_eq!(first["structuredContent"]["status"], "success", "{first}");
    assert!(
        std::fs::read_dir(ws.path("receipts")).unwrap().count() > 0,
        "the first run left a receipt"
    );
    let second = m.call("run_contract", json!({"contract": c}));
    let s = &second["structuredContent"];
    assert_eq!(s["status"], "success", "{second}");
    assert_eq!(s["commands"][0]["stdout"], "ENTRIES:0\n", "{second}");
}

/// `check_contract` and `explain_contract` make `run_contract`'s
/// pre-launch checks under the server's flags, with run's message.
#[test]
fn check_contract_agrees_with_run_contract_on_operator_checks() {
    let ws = ws();
    let mut m = Mcp::start(&ws, &[]);
    let mut cmd = ws.cmd("t", &["true"]);
    cmd["env_allow"] = json!(["GITHUB_TOKEN"]);
    let c = contract_value(&ws, vec![cmd]);
    let check = m.call("check_contract", json!({"contract": c}));
    assert_eq!(check["structuredContent"]["decision"], "deny", "{check}");
    let reason = check["structuredContent"]["reasons"][0].as_str().unwrap();
    assert!(reason.ends_with(" [CSC_ENV_NAME_REFUSED]"), "{reason}");
    let explain = m.call("explain_contract", json!({"contract": c}));
    assert_eq!(explain["structuredContent"]["decision"]["decision"], "deny");
    let r = m.call("run_contract", json!({"contract": c}));
    assert_eq!(r["structuredContent"]["status"], "blocked", "{r}");
    let error = r["structuredContent"]["receipt"]["error"].as_str().unwrap();
    assert_eq!(reason.trim_end_matches(" [CSC_ENV_NAME_REFUSED]"), error);
}

/// Hand the workspace (recursively) to uid/gid 65534.
fn chown_nobody(dir: &std::path::Path) {
    let id = Some(support::NOBODY);
    std::os::unix::fs::lchown(dir, id, id).unwrap();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            chown_nobody(&e.path());
        }
    }
}

/// Poll `done` until it holds; panics after a generous limit (a hung
/// server, never a timing assertion).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let limit = std::time::Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(std::time::Instant::now() < limit, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The receipts written so far (not the approval records).
fn receipts(ws: &Ws) -> Vec<std::path::PathBuf> {
    let Ok(dir) = std::fs::read_dir(ws.path("receipts")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.ends_with(".json") && !n.ends_with(".approvals.json") && !n.starts_with('.')
        })
        .collect()
}

/// A unique marker that shows up in the command line of the command and
/// of its child: `sh -c "trap '' TERM; sleep 1000.<digits>"` (both ignore
/// SIGTERM, so only a SIGKILL of the whole group ends them).
fn stubborn_sleeper(ws: &Ws) -> (Value, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let marker = format!("1000.{}{nanos:09}", std::process::id());
    let script = format!("trap '' TERM; sleep {marker}; echo not-killed");
    let mut cmd = ws.cmd("sleeper", &["sh", "-c", &script]);
    cmd["timeout_sec"] = json!(60);
    (contract_value(ws, vec![cmd]), marker)
}

/// Sign with `key.pem`; hardened mode when asked (skipping where the
/// sandbox is unavailable for `who`).
fn server_flags(ws: &Ws, who: Who, hardened: bool) -> Option<Vec<String>> {
    if hardened && support::skip(who, "csc mcp hardened cancellation") {
        return None;
    }
    let mut flags = keygen(ws);
    if hardened {
        flags.extend(["--mode".to_owned(), "hardened".to_owned()]);
    }
    Some(flags)
}

fn verify_receipt(ws: &Ws, path: &std::path::Path) -> Value {
    let v = Command::new(CSC)
        .arg("verify-receipt")
        .arg(path)
        .args(["--public-key", ws.s("key.pub.pem").as_str()])
        .args(["--key-id", "mcp-test"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{v:?}");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `notifications/cancelled` for a running `run_contract`: the command's
/// whole process group (hardened: the sandbox) is killed, even though it
/// ignores SIGTERM; the run still gets a signed receipt saying the client
/// cancelled; the server keeps serving.
fn cancellation_kills_the_group_and_writes_a_receipt(who: Who, hardened: bool) {
    let ws = ws();
    let Some(flags) = server_flags(&ws, who, hardened) else {
        return;
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (c, marker) = stubborn_sleeper(&ws);
    let mut m = Mcp::start_as(who, &ws, &flags);
    let id = m.send_request(
        "tools/call",
        json!({"name": "run_contract", "arguments": {"contract": c}}),
    );
    eventually("the command to start", || {
        !support::host_processes_with(&marker).is_empty()
    });
    m.send_raw(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "test cancels"}})
        .to_string(),
    );
    eventually("the receipt of the cancelled run", || {
        receipts(&ws).len() == 1
    });
    eventually("the cancelled command's processes to be gone", || {
        support::host_processes_with(&marker).is_empty()
    });
    let receipt = verify_receipt(&ws, &receipts(&ws)[0]);
    assert_eq!(receipt["status"], "failed", "{who:?} {receipt}");
    assert_eq!(receipt["exit_code"], 143, "{who:?} {receipt}");
    let error = receipt["error"].as_str().unwrap();
    assert!(
        error.contains("the MCP client cancelled the request"),
        "{who:?}: {error}"
    );
    // Still serving.
    let ok = contract_value(&ws, vec![ws.cmd("x", &["echo", "after-cancel"])]);
    let r = m.call("run_contract", json!({"contract": ok}));
    assert_eq!(r["structuredContent"]["status"], "success", "{who:?} {r}");
}

fn cancel_kills_a_local_run(who: Who) {
    if who == Who::Nobody && support::skip_reason(who).is_some_and(|r| r.contains("cannot switch"))
    {
        return;
    }
    cancellation_kills_the_group_and_writes_a_receipt(who, false);
}
sandbox_test!(cancel_kills_a_local_run, any_host);

fn cancel_kills_a_hardened_run(who: Who) {
    cancellation_kills_the_group_and_writes_a_receipt(who, true);
}
sandbox_test!(cancel_kills_a_hardened_run, any_host);

/// The client goes away (stdin closed) mid-run: the run is killed, its
/// receipt written, and only then does the server exit.
fn disconnect_kills_the_run_and_the_server_exits_after_its_receipt(who: Who, hardened: bool) {
    let ws = ws();
    let Some(flags) = server_flags(&ws, who, hardened) else {
        return;
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (c, marker) = stubborn_sleeper(&ws);
    let mut m = Mcp::start_as(who, &ws, &flags);
    m.send_request(
        "tools/call",
        json!({"name": "run_contract", "arguments": {"contract": c}}),
    );
    eventually("the command to start", || {
        !support::host_processes_with(&marker).is_empty()
    });
    drop(m.stdin.take());
    let mut exited = None;
    eventually("csc mcp to exit", || {
        exited = m.child.try_wait().unwrap();
        exited.is_some()
    });
    // By the time the server is gone, the receipt is there.
    let written = receipts(&ws);
    assert_eq!(
        written.len(),
        1,
        "{who:?}: no receipt when the server exited"
    );
    assert!(
        support::host_processes_with(&marker).is_empty(),
        "{who:?}: the command outlived csc mcp"
    );
    let receipt = verify_receipt(&ws, &written[0]);
    assert_eq!(receipt["status"], "failed", "{who:?} {receipt}");
    assert!(
        receipt["error"]
            .as_str()
            .unwrap()
            .contains("the MCP client disconnected"),
        "{who:?} {receipt}"
    );
}

fn disconnect_kills_a_local_run(who: Who) {
    if who == Who::Nobody && support::skip_reason(who).is_some_and(|r| r.contains("cannot switch"))
    {
        return;
    }
    disconnect_kills_the_run_and_the_server_exits_after_its_receipt(who, false);
}
sandbox_test!(disconnect_kills_a_local_run, any_host);

fn disconnect_kills_a_hardened_run(who: Who) {
    disconnect_kills_the_run_and_the_server_exits_after_its_receipt(who, true);
}
sandbox_test!(disconnect_kills_a_hardened_run, any_host);

/// An approver's key: a raw seed file, and its keyring entry.
fn approver_key(ws: &Ws, id: &str, seed: u8) -> (std::path::PathBuf, Value) {
    use base64::Engine as _;
    let path = ws.path(&format!("{id}.seed"));
    std::fs::write(&path, [seed; 32]).unwrap();
    let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
    let entry = json!({"key_id": id,
        "public_key": base64::engine::general_purpose::STANDARD.encode(public.as_bytes())});
    (path, entry)
}

/// `csc approve` of `contract` by `who` with key `id`; the envelope as JSON.
fn approve(
    ws: &Ws,
    contract: &std::path::Path,
    key: &std::path::Path,
    id: &str,
    who: &str,
) -> Value {
    let out = ws.path(&format!("{who}.dsse.json"));
    let o = Command::new(CSC)
        .arg("approve")
        .arg(contract)
        .arg("--signing-key")
        .arg(key)
        .args([
            "--key-id",
            id,
            "--approver",
            who,
            "--reason",
            "test",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

fn payload(envelope: &Value) -> Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Quorum over MCP: `csc mcp --approver-keyring --approvals-required 2`;
/// `run_contract` brings `approvals`. One approval is not a quorum; two
/// distinct signed approvals run it once; the same pair again is a replay
/// of single-use approvals; tampered and unsigned approvals are refused by
/// name; `approval` and `approvals` together are refused.
#[test]
fn approval_quorum_over_mcp() {
    let ws = ws();
    let trusted = tempfile::tempdir().unwrap();
    let (alice, a_entry) = approver_key(&ws, "alice-k", 1);
    let (bob, b_entry) = approver_key(&ws, "bob-k", 2);
    let ring = trusted.path().join("approvers.json");
    std::fs::write(
        &ring,
        json!({"keyring_version": "csc.keyring.v1", "keys": [a_entry, b_entry]}).to_string(),
    )
    .unwrap();
    let marker = ws.path("marker");
    let contract_path = ws.contract_with(
        "c.json",
        vec![ws.cmd("t", &["touch", marker.to_str().unwrap()])],
        |c| c["approval_mode"] = json!("human_required"),
    );
    let c: Value = serde_json::from_slice(&std::fs::read(&contract_path).unwrap()).unwrap();
    let a = approve(&ws, &contract_path, &alice, "alice-k", "alice");
    let b = approve(&ws, &contract_path, &bob, "bob-k", "bob");
    let ring = ring.display().to_string();
    let mut m = Mcp::start(
        &ws,
        &["--approver-keyring", &ring, "--approvals-required", "2"],
    );
    let run = |m: &mut Mcp, args: Value| -> (Value, String) {
        let r = m.call("run_contract", args);
        let s = r["structuredContent"].clone();
        let error = s["receipt"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (s, error)
    };

    let (s, error) = run(&mut m, json!({"contract": c, "approvals": [a]}));
    assert_eq!(s["status"], "blocked", "{s}");
    assert!(error.contains("quorum not met"), "{error}");
    assert!(!marker.exists());

    let (s, error) = run(&mut m, json!({"contract": c, "approval": a}));
    assert!(error.contains("quorum not met"), "{error}");
    assert_eq!(s["status"], "blocked", "{s}");

    // Tampered: the identity edited inside the signed payload.
    let mut tampered = b.clone();
    let mut p = payload(&b);
    p["approver"]["identity"] = json!("mallory");
    {
        use base64::Engine as _;
        tampered["payload"] = json!(
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&p).unwrap())
        );
    }
    let (s, error) = run(&mut m, json!({"contract": c, "approvals": [a, tampered]}));
    assert_eq!(s["status"], "blocked", "{s}");
    assert!(error.contains("tampered"), "{error}");
    // Unsigned: the plain v0.1 artifact.
    let (s, error) = run(
        &mut m,
        json!({"contract": c, "approvals": [a, payload(&b)]}),
    );
    assert_eq!(s["status"], "blocked", "{s}");
    assert!(error.contains("unsigned approval"), "{error}");
    assert!(!marker.exists(), "a refused approval let the command run");

    // Both forms at once: refused before anything.
    let r = m.call(
        "run_contract",
        json!({"contract": c, "approval": a, "approvals": [b]}),
    );
    assert_eq!(r["isError"], true, "{r}");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("not both"),
        "{r}"
    );

    // Quorum met: runs, and the receipt binds the approval record.
    let (s, error) = run(&mut m, json!({"contract": c, "approvals": [a, b]}));
    assert_eq!(s["status"], "success", "{s} {error}");
    assert!(marker.exists());
    let record = s["receipt"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["path"].as_str().unwrap().ends_with(".approvals.json"))
        .unwrap_or_else(|| panic!("no approval record bound: {s}"));
    let record: Value =
        serde_json::from_slice(&std::fs::read(record["path"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(record["approvals_required"], 2, "{record}");
    assert_eq!(record["signatures_verified"], true, "{record}");

    // Replay: single-use approvals are consumed.
    std::fs::remove_file(&marker).unwrap();
    let (s, error) = run(&mut m, json!({"contract": c, "approvals": [a, b]}));
    assert_eq!(s["status"], "blocked", "{s}");
    assert!(error.contains("already been consumed"), "{error}");
    assert!(
        !marker.exists(),
        "a replayed approval ran the command again"
    );
}

/// Without `--approver-keyring`, several approvals prove nothing: refused.
#[test]
fn several_unsigned_approvals_need_a_keyring() {
    let ws = ws();
    let marker = ws.path("marker");
    let contract_path = ws.contract_with(
        "c.json",
        vec![ws.cmd("t", &["touch", marker.to_str().unwrap()])],
        |c| c["approval_mode"] = json!("human_required"),
    );
    let c: Value = serde_json::from_slice(&std::fs::read(&contract_path).unwrap()).unwrap();
    let (key, _) = approver_key(&ws, "k", 5);
    let a = payload(&approve(&ws, &contract_path, &key, "k", "alice"));
    let mut b = a.clone();
    b["approval_id"] = json!("another");
    let mut m = Mcp::start(&ws, &[]);
    let r = m.call("run_contract", json!({"contract": c, "approvals": [a, b]}));
    let s = &r["structuredContent"];
    assert_eq!(s["status"], "blocked", "{r}");
    assert!(
        s["receipt"]["error"]
            .as_str()
            .unwrap()
            .contains("need --approver-keyring"),
        "{r}"
    );
    assert!(!marker.exists());
}

/// The whole server unprivileged (uid 65534): tools, a run with a
/// verifiable receipt, a denied run that executes nothing.
#[test]
fn the_server_runs_as_nobody() {
    if support::skip_reason(Who::Nobody).is_some_and(|r| r.contains("cannot switch")) {
        common::require::skip_or_fail("not root: cannot run csc mcp as uid 65534");
        return;
    }
    let ws = ws();
    let sign = keygen(&ws);
    let sign: Vec<&str> = sign.iter().map(String::as_str).collect();
    let mut m = Mcp::start_as(Who::Nobody, &ws, &sign);
    let c = contract_value(&ws, vec![ws.cmd("who", &["sh", "-c", "id -u"])]);
    let r = m.call("check_contract", json!({"contract": c}));
    assert_eq!(r["structuredContent"]["decision"], "allow", "{r}");
    let r = m.call("run_contract", json!({"contract": c}));
    let s = &r["structuredContent"];
    assert_eq!(s["status"], "success", "{r}");
    assert_eq!(s["commands"][0]["stdout"], "65534\n", "{r}");
    verify_receipt(
        &ws,
        std::path::Path::new(s["receipt_path"].as_str().unwrap()),
    );
    let marker = ws.path("marker");
    let mut denied = contract_value(&ws, vec![ws.cmd("t", &["touch", marker.to_str().unwrap()])]);
    denied["risk_class"] = json!("critical");
    let r = m.call("run_contract", json!({"contract": denied}));
    assert_eq!(r["structuredContent"]["status"], "blocked", "{r}");
    assert!(!marker.exists());
}

/// SIGTERM to csc mcp mid-run: the run is killed, its receipt written,
/// and the server exits.
#[test]
fn a_signal_ends_the_server_after_the_receipt() {
    let ws = ws();
    let flags = keygen(&ws);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (c, marker) = stubborn_sleeper(&ws);
    let mut m = Mcp::start(&ws, &flags);
    m.send_request(
        "tools/call",
        json!({"name": "run_contract", "arguments": {"contract": c}}),
    );
    eventually("the command to start", || {
        !support::host_processes_with(&marker).is_empty()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(m.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut exited = None;
    eventually("csc mcp to exit", || {
        exited = m.child.try_wait().unwrap();
        exited.is_some()
    });
    let written = receipts(&ws);
    assert_eq!(written.len(), 1, "no receipt when the server exited");
    assert!(support::host_processes_with(&marker).is_empty());
    let receipt = verify_receipt(&ws, &written[0]);
    assert_eq!(receipt["status"], "failed", "{receipt}");
    assert!(
        receipt["error"]
            .as_str()
            .unwrap()
            .contains("interrupted by signal 15"),
        "{receipt}"
    );
}

/// Cancelling one of two concurrent runs stops that one only: the other
/// finishes and succeeds.
#[test]
fn cancel_stops_only_the_cancelled_run() {
    let ws = ws();
    let flags = keygen(&ws);
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.extend(["--max-parallel", "2"]);
    let (a, marker_a) = stubborn_sleeper(&ws);
    let marker_b = format!("{marker_a}1");
    let b = contract_value(
        &ws,
        vec![ws.cmd(
            "other",
            &[
                "sh",
                "-c",
                &format!("sleep 3.{}; echo B-done", &marker_b[5..]),
            ],
        )],
    );
    let mut m = Mcp::start(&ws, &flags);
    let id_a = m.send_request(
        "tools/call",
        json!({"name": "run_contract", "arguments": {"contract": a}}),
    );
    let id_b = m.send_request(
        "tools/call",
        json!({"name": "run_contract", "arguments": {"contract": b}}),
    );
    eventually("both commands to start", || {
        !support::host_processes_with(&marker_a).is_empty()
            && !support::host_processes_with(&marker_b[5..]).is_empty()
    });
    m.send_raw(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": id_a}})
        .to_string(),
    );
    let r = m.response(&id_b);
    let s = &r["result"]["structuredContent"];
    assert_eq!(s["status"], "success", "{r}");
    assert_eq!(s["commands"][0]["stdout"], "B-done\n", "{r}");
    eventually("the cancelled command's processes to be gone", || {
        support::host_processes_with(&marker_a).is_empty()
    });
    eventually("both receipts", || receipts(&ws).len() == 2);
    let cancelled: Vec<Value> = receipts(&ws)
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .filter(|r: &Value| r["status"] == "failed")
        .collect();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert!(
        cancelled[0]["error"]
            .as_str()
            .unwrap()
            .contains("cancelled the request")
    );
}

/// A local-mode command running as the server's own uid (here 65534)
/// tries to forge a JSON-RPC response by writing to the server's stdout
/// through /proc/$PPID/fd/1: the server is not dumpable, so the kernel
/// refuses, and the client sees only the server's own messages.
#[test]
fn a_command_cannot_write_to_the_servers_stdout_through_proc() {
    if support::skip_reason(Who::Nobody).is_some_and(|r| r.contains("cannot switch")) {
        common::require::skip_or_fail("not root: cannot run csc mcp as uid 65534");
        return;
    }
    let ws = ws();
    let forged = r#"{"jsonrpc":"2.0","id":4242,"result":{"forged":true}}"#;
    let script =
        format!("printf '%s\\n' '{forged}' > /proc/$PPID/fd/1 && echo FORGED || echo refused");
    let c = contract_value(&ws, vec![ws.cmd("forge", &["sh", "-c", &script])]);
    let mut m = Mcp::start_as(Who::Nobody, &ws, &[]);
    let r = m.call("run_contract", json!({"contract": c}));
    let out = r["structuredContent"]["commands"][0]["stdout"].clone();
    // Anything the command managed to write came before the response.
    assert!(
        m.seen.iter().all(|l| !l.contains("4242")),
        "a command forged a JSON-RPC message: {:?}",
        m.seen
    );
    assert_eq!(out, "refused\n", "{r}");
}

/// The client closes its end of the server's stdout (keeping stdin open)
/// mid-run: the server notices, kills the run, writes its receipt and
/// exits.
#[test]
fn a_closed_stdout_is_a_disconnect() {
    let ws = ws();
    let flags = keygen(&ws);
    let (c, marker) = stubborn_sleeper(&ws);
    let mut child = Command::new(CSC)
        .arg("mcp")
        .args(["--policy", ws.s("policy.yaml").as_str()])
        .args(["--receipt-dir", ws.s("receipts").as_str()])
        .args(["--state-dir", ws.s("state").as_str()])
        .args(&flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: Value| {
        stdin.write_all(format!("{v}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}}));
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"id\":1"), "{line}");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "run_contract", "arguments": {"contract": c}}}));
    eventually("the command to start", || {
        !support::host_processes_with(&marker).is_empty()
    });
    drop(stdout);
    eventually("csc mcp to exit", || child.try_wait().unwrap().is_some());
    let written = receipts(&ws);
    assert_eq!(written.len(), 1, "no receipt when the server exited");
    assert!(support::host_processes_with(&marker).is_empty());
    let receipt = verify_receipt(&ws, &written[0]);
    assert!(
        receipt["error"]
            .as_str()
            .unwrap()
            .contains("the MCP client disconnected"),
        "{receipt}"
    );
    drop(stdin);
}
