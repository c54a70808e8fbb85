//! Shared helpers for the `csc run` integration tests.

pub mod pg;
pub mod require;
pub mod shipped_hashes;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const CSC: &str = env!("CARGO_BIN_EXE_csc");

/// A scratch workspace: policy, contracts, receipts, state dir.
pub struct Ws {
    /// Owns the temporary directory (removed when the workspace drops).
    _dir: tempfile::TempDir,
    /// Canonical root (what the policy allows).
    pub root: PathBuf,
}

pub fn ws() -> Ws {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let ws = Ws { _dir: dir, root };
    ws.write_policy("");
    ws
}

impl Ws {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// Write policy.yaml; `extra` is appended verbatim (YAML lines).
    pub fn write_policy(&self, extra: &str) {
        let root = self.root.display();
        let text = format!(
            "policy_schema_version: csc.policy.v0.1
name: test-policy
allow_commands: [\"true\", \"false\", echo, sh, env, sleep, cat, tr, head, touch, printf, nonexistent-cmd-xyz, /bin/echo]
allowed_effect_types: [observe, transform_local]
allowed_risk_classes: [low, medium]
max_timeout_sec: 60
network: deny
allow_secret_refs: false
allowed_cwd_prefixes: [\"{root}\"]
allowed_read_prefixes: [\"{root}\"]
allowed_write_prefixes: [\"{root}\"]
{extra}"
        );
        std::fs::write(self.path("policy.yaml"), text).unwrap();
    }

    /// A command running `argv` in the workspace root.
    pub fn cmd(&self, id: &str, argv: &[&str]) -> Value {
        json!({
            "id": id, "exec": {"argv": argv}, "cwd": self.s(""),
            "read_paths": [], "write_paths": [], "network": "deny",
            "env_allow": [], "secret_refs": [], "timeout_sec": 20,
            "proposed_effect_type": "observe"
        })
    }

    /// A pipeline command.
    pub fn pipe(&self, id: &str, segments: &[&[&str]]) -> Value {
        let mut c = self.cmd(id, &["true"]);
        let obj = c.as_object_mut().unwrap();
        obj.remove("exec");
        let segs: Vec<Value> = segments.iter().map(|a| json!({"argv": a})).collect();
        obj.insert("pipeline".into(), json!({"segments": segs}));
        c
    }

    /// Write a contract with `commands` to `name`; returns its path.
    pub fn contract(&self, name: &str, commands: Vec<Value>) -> PathBuf {
        self.contract_with(name, commands, |_| {})
    }

    pub fn contract_with(
        &self,
        name: &str,
        commands: Vec<Value>,
        edit: impl FnOnce(&mut Value),
    ) -> PathBuf {
        let mut c = json!({
            "version": "csc.v0.1", "contract_id": format!("contract-{name}"),
            "intent": "test", "actor": {"agent_id": "a", "session_id": "s",
            "initiating_user": "u", "delegation_scope": "d"},
            "commands": commands, "risk_class": "low",
            "approval_mode": "policy_only", "justification": "test"
        });
        edit(&mut c);
        let path = self.path(name);
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        path
    }

    /// `csc run CONTRACT policy.yaml --receipt-out receipt.json --quiet --state-dir state EXTRA...`
    pub fn run(&self, contract: &Path, extra: &[&str]) -> Run {
        self.run_env(contract, extra, &[])
    }

    pub fn run_env(&self, contract: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let receipt = self.path("receipt.json");
        let _ = std::fs::remove_file(&receipt);
        let mut cmd = Command::new(CSC);
        cmd.arg("run")
            .arg(contract)
            .arg(self.path("policy.yaml"))
            .arg("--receipt-out")
            .arg(&receipt)
            .arg("--quiet")
            .arg("--state-dir")
            .arg(self.path("state"))
            .args(extra)
            .current_dir(&self.root);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        Run::new(out, &receipt)
    }
}

/// The outcome of one `csc run`.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub receipt: Option<Value>,
}

impl Run {
    pub fn new(out: Output, receipt: &Path) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            receipt: std::fs::read(receipt)
                .ok()
                .map(|b| serde_json::from_slice(&b).unwrap()),
        }
    }

    /// The receipt, asserting it exists and is schema-valid.
    pub fn receipt(&self) -> &Value {
        let r = self
            .receipt
            .as_ref()
            .unwrap_or_else(|| panic!("no receipt; stderr: {}", self.stderr));
        let bytes = serde_json::to_vec(r).unwrap();
        csc::protocol::load::receipt_from_bytes(&bytes, "receipt").unwrap();
        r
    }

    pub fn status(&self) -> &str {
        self.receipt()["status"].as_str().unwrap()
    }
}

pub fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", csc::canonical::sha256_hex(bytes))
}
