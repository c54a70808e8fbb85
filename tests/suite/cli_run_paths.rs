//! Hostile path tests of `csc run`, in both modes, as root and as uid
//! 65534: an earlier command of the same contract plants symlinks that a
//! later command's declared scopes or argv[0] would follow out of policy;
//! csc's own files (keys, state) sit where the docs recommend or inside a
//! read scope, and the command tries to read them.

use crate::support;

use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::{NOBODY, Who, sandbox_test, skip};

const KEY_ID: &str = "paths-test";
/// A raw 32-byte seed, printable so a leak is easy to spot.
const SEED: &[u8; 32] = b"csc-test-signing-seed-0123456789";
/// A second key, kept inside a read scope.
const DATA_SEED: &[u8; 32] = b"csc-test-signing-seed-data-98765";

/// `base/ws` (policy root; `out/` writable by policy), `base/secret`
/// (outside every policy prefix, world-writable so only csc stops a
/// breach), key and receipts outside the write prefix.
struct Ws {
    _dir: tempfile::TempDir,
    ws: PathBuf,
    secret: PathBuf,
    who: Who,
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_tree(p: &Path) {
    std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path());
        }
    }
}

impl Ws {
    fn new(who: Who) -> Ws {
        let dir = tempfile::Builder::new()
            .prefix("csc-paths-")
            .tempdir_in("/tmp")
            .unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        chmod(&base, 0o755);
        let ws = base.join("ws");
        let secret = base.join("secret");
        for d in [&ws, &ws.join("out"), &ws.join("data"), &secret] {
            std::fs::create_dir(d).unwrap();
        }
        chmod(&secret, 0o777);
        std::fs::write(secret.join("key.txt"), "TOPSECRET\n").unwrap();
        chmod(&secret.join("key.txt"), 0o666);
        std::fs::write(secret.join("evil.sh"), "#!/bin/sh\necho EVIL-RAN\n").unwrap();
        chmod(&secret.join("evil.sh"), 0o755);
        std::fs::write(ws.join("key.seed"), SEED).unwrap();
        chmod(&ws.join("key.seed"), 0o600);
        let w = Ws {
            _dir: dir,
            ws,
            secret,
            who,
        };
        w.policy(&[]);
        w
    }

    fn p(&self, rel: &str) -> String {
        self.ws.join(rel).display().to_string()
    }

    fn policy(&self, extra_commands: &[&str]) {
        let ws = self.ws.display();
        let mut cmds = vec!["sh".to_owned(), "cat".to_owned()];
        cmds.extend(extra_commands.iter().map(|s| s.to_string()));
        let text = format!(
            "policy_schema_version: csc.policy.v0.1
name: paths
allow_commands: {}
allowed_effect_types: [observe, transform_local]
allowed_risk_classes: [low]
max_timeout_sec: 30
network: deny
allow_secret_refs: false
allowed_cwd_prefixes: [\"{ws}\"]
allowed_read_prefixes: [\"{ws}\"]
allowed_write_prefixes: [\"{ws}/out\"]
",
            serde_json::to_string(&cmds).unwrap()
        );
        std::fs::write(self.ws.join("policy.yaml"), text).unwrap();
    }

    fn cmd(&self, id: &str, argv: &[&str], read: &[String], write: &[String]) -> Value {
        json!({
            "id": id, "exec": {"argv": argv}, "cwd": self.p(""),
            "read_paths": read, "write_paths": write, "network": "deny",
            "env_allow": [], "secret_refs": [], "timeout_sec": 20,
            "proposed_effect_type": "transform_local"
        })
    }

    fn contract(&self, commands: Vec<Value>) -> PathBuf {
        let c = json!({
            "version": "csc.v0.1", "contract_id": "paths-test",
            "intent": "test", "actor": {"agent_id": "a", "session_id": "s",
            "initiating_user": "u", "delegation_scope": "d"},
            "commands": commands, "risk_class": "low",
            "approval_mode": "policy_only", "justification": "test"
        });
        let path = self.ws.join("contract.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        path
    }

    /// `csc run` as `self.who`; returns (exit code, stdout, stderr, receipt).
    fn run(
        &self,
        contract: &Path,
        mode: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String, String, Value) {
        if self.who == Who::Nobody {
            chown_tree(&self.ws);
        }
        let receipt = self.ws.join("receipts/receipt.json");
        let _ = std::fs::remove_file(&receipt);
        let mut c = support::command(self.who);
        c.arg("run")
            .arg(contract)
            .arg(self.ws.join("policy.yaml"))
            .arg("--receipt-out")
            .arg(&receipt)
            .args(["--mode", mode, "--sign", "--key-id", KEY_ID])
            .arg("--signing-key")
            .arg(self.ws.join("key.seed"))
            .arg("--state-dir")
            .arg(self.ws.join("state"))
            .args(extra)
            .current_dir(&self.ws);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let r: Value = std::fs::read(&receipt)
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or_else(|e| panic!("no receipt ({e}); stderr: {stderr}"));
        (out.status.code().unwrap_or(-1), stdout, stderr, r)
    }
}

/// Modes to test as `who`: local always, hardened where it runs.
fn modes(who: Who, test: &str) -> Vec<&'static str> {
    if skip(who, test) {
        vec!["local"]
    } else {
        vec!["local", "hardened"]
    }
}

fn assert_blocked_by_link(r: &Value, failed: &str, ctx: &str) {
    assert_eq!(r["status"], "blocked", "{ctx}: {r:#}");
    assert_eq!(r["failed_command_id"], failed, "{ctx}");
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("CSC_RESOLVES_OUTSIDE_POLICY"), "{ctx}: {err}");
}

sandbox_test!(a_planted_link_cannot_become_a_write_scope, any_host);
fn a_planted_link_cannot_become_a_write_scope(who: Who) {
    for mode in modes(who, "planted write link") {
        let w = Ws::new(who);
        let lnk = w.p("out/lnk");
        let plant = format!("ln -s {} {lnk}", w.secret.display());
        let write = format!("echo pwned > {lnk}/pwned.txt");
        let c = w.contract(vec![
            w.cmd("plant", &["sh", "-c", &plant], &[], &[w.p("out")]),
            w.cmd(
                "write",
                &["sh", "-c", &write],
                &[],
                std::slice::from_ref(&lnk),
            ),
        ]);
        let (code, _, stderr, r) = w.run(&c, mode, &["--quiet"], &[]);
        let ctx = format!("{who:?} {mode}: {stderr}");
        assert_eq!(code, 1, "{ctx}");
        assert_blocked_by_link(&r, "write", &ctx);
        assert_eq!(r["completed_command_ids"], json!(["plant"]), "{ctx}");
        assert!(!w.secret.join("pwned.txt").exists(), "{ctx}: host written");
    }
}

sandbox_test!(a_planted_link_cannot_become_a_read_scope, any_host);
fn a_planted_link_cannot_become_a_read_scope(who: Who) {
    for mode in modes(who, "planted read link") {
        let w = Ws::new(who);
        let lnk = w.p("out/rl");
        let plant = format!("ln -s {} {lnk}", w.secret.display());
        let key = format!("{lnk}/key.txt");
        let c = w.contract(vec![
            w.cmd("plant", &["sh", "-c", &plant], &[], &[w.p("out")]),
            w.cmd("read", &["cat", &key], std::slice::from_ref(&lnk), &[]),
        ]);
        let (code, stdout, stderr, r) = w.run(&c, mode, &[], &[]);
        let ctx = format!("{who:?} {mode}: {stderr}");
        assert_eq!(code, 1, "{ctx}");
        assert_blocked_by_link(&r, "read", &ctx);
        assert!(!stdout.contains("TOPSECRET"), "{ctx}: {stdout}");
    }
}

sandbox_test!(a_planted_link_cannot_become_the_program, any_host);
fn a_planted_link_cannot_become_the_program(who: Who) {
    for mode in modes(who, "planted program link") {
        let w = Ws::new(who);
        let tool = w.p("out/tool");
        w.policy(&[&tool]);
        let plant = format!("ln -s {} {tool}", w.secret.join("evil.sh").display());
        let c = w.contract(vec![
            w.cmd("plant", &["sh", "-c", &plant], &[], &[w.p("out")]),
            w.cmd("exec", &[&tool], &[], &[]),
        ]);
        let (code, stdout, stderr, r) = w.run(&c, mode, &[], &[]);
        let ctx = format!("{who:?} {mode}: {stderr}");
        assert_eq!(code, 1, "{ctx}");
        assert_blocked_by_link(&r, "exec", &ctx);
        assert!(!stdout.contains("EVIL-RAN"), "{ctx}: {stdout}");
    }
}

/// One run: flags, environment, and what must stay hidden.
type Case<'a> = (Vec<String>, Vec<(&'a str, String)>, Vec<&'a str>);

/// A script that prints what it can see of `paths` (file contents, dir
/// entries), then DONE.
fn probe(paths: &[String]) -> String {
    let mut s = String::new();
    for p in paths {
        s.push_str(&format!(
            "if [ -d {p} ]; then echo \"DIR {p}: $(ls -A {p} 2>&1 | tr '\\n' ' ')\"; else echo \"FILE {p}: $(cat {p} 2>&1)\"; fi\n"
        ));
    }
    s.push_str("echo DONE\n");
    s
}

sandbox_test!(cscs_own_files_are_invisible_where_the_docs_put_them);
fn cscs_own_files_are_invisible_where_the_docs_put_them(who: Who) {
    let w = Ws::new(who);
    // docs/key-management.md: keys under /etc/csc/ (mode 0600). A unique
    // name in the recommended directory; removed at the end.
    std::fs::create_dir_all("/etc/csc").unwrap();
    let etc_key = PathBuf::from(format!(
        "/etc/csc/test-{}-{who:?}-signing.pem",
        std::process::id()
    ));
    std::fs::write(&etc_key, SEED).unwrap();
    chmod(&etc_key, 0o600);
    if who == Who::Nobody {
        std::os::unix::fs::chown(&etc_key, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    // State dirs: --state-dir, $XDG_STATE_HOME/csc, ~/.local/state/csc,
    // each inside the read scope, each holding its own marker; a second
    // key inside the read scope.
    let data = w.ws.join("data");
    for (d, marker) in [
        ("state", "MARKER-FLAG"),
        ("xdg/csc", "MARKER-XDG"),
        ("home/.local/state/csc", "MARKER-HOME"),
    ] {
        std::fs::create_dir_all(data.join(d)).unwrap();
        // A real store (every run appends to its ledger), then the marker.
        csc::approval::store::Store::open(&data.join(d)).unwrap();
        std::fs::write(data.join(d).join(marker), "state").unwrap();
    }
    std::fs::write(data.join("key.seed"), DATA_SEED).unwrap();
    std::fs::write(data.join("visible.txt"), "VISIBLE").unwrap();
    let s = |rel: &str| data.join(rel).display().to_string();
    let script = probe(&[
        etc_key.display().to_string(),
        "/etc/csc".to_owned(),
        "/etc/shadow".to_owned(),
        s("key.seed"),
        s("state"),
        s("xdg/csc"),
        s("home/.local/state/csc"),
        s("visible.txt"),
        "/etc/passwd".to_owned(),
    ]);
    let mut cmd = w.cmd("look", &["sh", "-c", &script], &[w.p("data")], &[]);
    cmd["cwd"] = json!(w.p("data"));
    let c = w.contract(vec![cmd]);
    // (flags, environment, what must stay hidden)
    let etc = etc_key.display().to_string();
    let runs: [Case; 3] = [
        (
            vec![
                "--signing-key".into(),
                etc,
                "--state-dir".into(),
                s("state"),
            ],
            vec![],
            vec!["csc-test-signing-seed-0", "MARKER-FLAG"],
        ),
        (
            vec!["--signing-key".into(), s("key.seed")],
            vec![("XDG_STATE_HOME", s("xdg"))],
            vec!["csc-test-signing-seed-data", "MARKER-XDG"],
        ),
        (
            vec!["--signing-key".into(), s("key.seed")],
            vec![("HOME", s("home"))],
            vec!["csc-test-signing-seed-data", "MARKER-HOME"],
        ),
    ];
    for (i, (flags, env, hidden)) in runs.iter().enumerate() {
        if who == Who::Nobody {
            chown_tree(&w.ws);
        }
        let mut cmd = support::command(who);
        cmd.arg("run")
            .arg(&c)
            .arg(w.ws.join("policy.yaml"))
            .arg("--receipt-out")
            .arg(w.ws.join("receipts/receipt.json"))
            .args(["--mode", "hardened", "--sign", "--key-id", KEY_ID])
            .args(flags)
            .env_remove("XDG_STATE_HOME");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.current_dir(&w.ws).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ctx = format!(
            "{who:?} run {i}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{ctx}");
        assert!(stdout.contains("DONE"), "{ctx}");
        assert!(stdout.contains("VISIBLE"), "{ctx}: positive control");
        assert!(
            stdout.contains("root:x:0"),
            "{ctx}: /etc/passwd is allowlisted"
        );
        assert!(
            stdout.contains("FILE /etc/shadow: cat"),
            "{ctx}: /etc/shadow"
        );
        assert!(stdout.contains("FILE /etc/csc: cat"), "{ctx}: /etc/csc");
        for h in hidden {
            assert!(!stdout.contains(h), "{ctx}: {h} leaked");
        }
    }
    let _ = std::fs::remove_file(&etc_key);
}
