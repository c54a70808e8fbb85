//! `csc run` in local mode: execution semantics, capture, environment,
//! receipts.

use crate::common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn success_records_hashes_ids_and_versions() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("hello", &["echo", "hello"])]);
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = r.receipt();
    assert_eq!(rec["status"], "success");
    assert_eq!(rec["exit_code"], 0);
    assert_eq!(rec["stdout_hash"], sha(b"hello\n"));
    assert_eq!(rec["stderr_hash"], sha(b""));
    assert_eq!(rec["completed_command_ids"], json!(["hello"]));
    assert_eq!(rec["failed_command_id"], serde_json::Value::Null);
    assert_eq!(rec["execution_mode"], "local");
    assert_eq!(rec["runner_version"], csc::RUNNER_VERSION);
    assert_eq!(rec["policy_schema_version"], "csc.policy.v0.1");
    let id = rec["execution_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("exec_") && id.len() == 37, "{id}");
    let again = ws.run(&c, &[]);
    assert_ne!(again.receipt()["execution_id"].as_str().unwrap(), id);
}

#[test]
fn live_output_is_streamed_unless_quiet() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("hello", &["echo", "streamed"])]);
    let out = std::process::Command::new(CSC)
        .args(["run", c.to_str().unwrap(), ws.s("policy.yaml").as_str()])
        .args(["--receipt-out", ws.s("r.json").as_str()])
        .args(["--state-dir", ws.s("state").as_str()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "streamed\n");
    let quiet = ws.run(&c, &[]);
    assert_eq!(quiet.stdout, "");
}

#[test]
fn first_failure_stops_the_run() {
    let ws = ws();
    let c = ws.contract(
        "c.json",
        vec![
            ws.cmd("one", &["true"]),
            ws.cmd("two", &["sh", "-c", "echo oops >&2; exit 3"]),
            ws.cmd("three", &["touch", "marker"]),
        ],
    );
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    let rec = r.receipt();
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["exit_code"], 3);
    assert_eq!(rec["completed_command_ids"], json!(["one"]));
    assert_eq!(rec["failed_command_id"], "two");
    assert_eq!(rec["stderr_hash"], sha(b"oops\n"));
    assert!(rec["error"].as_str().unwrap().contains("oops"));
    assert!(!ws.path("marker").exists());
}

#[test]
fn pipelines_use_real_pipes_and_fail_if_any_segment_fails() {
    let ws = ws();
    let c = ws.contract(
        "c.json",
        vec![ws.pipe(
            "up",
            &[
                &["sh", "-c", "echo one >&2; echo hello"],
                &["tr", "a-z", "A-Z"],
                &["sh", "-c", "cat; echo two >&2"],
            ],
        )],
    );
    let out = ws.s("out");
    let r = ws.run(&c, &["--output-dir", &out]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["stdout_hash"], sha(b"HELLO\n"));
    let err = std::fs::read_to_string(ws.path("out/up.stderr")).unwrap();
    assert!(err.contains("one") && err.contains("two"), "{err}");
    assert_eq!(std::fs::read(ws.path("out/up.stdout")).unwrap(), b"HELLO\n");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("out/up.json")).unwrap()).unwrap();
    assert_eq!(meta["stdout_hash"], sha(b"HELLO\n"));

    let bad = ws.contract("bad.json", vec![ws.pipe("p", &[&["false"], &["cat"]])]);
    let r = ws.run(&bad, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.receipt()["status"], "failed");
    assert_eq!(r.receipt()["exit_code"], 1);
    assert!(r.receipt()["error"].as_str().unwrap().contains("segment 0"));
}

#[test]
fn environment_is_only_path_and_allowed_names() {
    let ws = ws();
    let mut cmd = ws.cmd("env", &["env"]);
    cmd["env_allow"] = json!(["CSC_T_FOO", "PATH", "CSC_T_ABSENT"]);
    let c = ws.contract("c.json", vec![cmd]);
    let out = ws.s("out");
    let r = ws.run_env(
        &c,
        &[
            "--output-dir",
            &out,
            "--allow-env",
            "CSC_T_FOO",
            "--allow-env",
            "CSC_T_ABSENT",
        ],
        &[
            ("CSC_T_FOO", "bar"),
            ("CSC_T_SECRET", "x"),
            ("PATH", "/tmp/evil:/usr/bin"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let env = std::fs::read_to_string(ws.path("out/env.stdout")).unwrap();
    let mut lines: Vec<&str> = env.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "CSC_T_FOO=bar",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );
}

#[test]
fn dangerous_env_names_block_before_anything_runs() {
    let ws = ws();
    let mut cmd = ws.cmd("env", &["touch", "marker"]);
    cmd["env_allow"] = json!(["LD_PRELOAD"]);
    let c = ws.contract("c.json", vec![ws.cmd("first", &["touch", "first"]), cmd]);
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "blocked");
    assert!(
        r.receipt()["error"]
            .as_str()
            .unwrap()
            .contains("LD_PRELOAD")
    );
    assert!(!ws.path("first").exists() && !ws.path("marker").exists());
}

/// A contract naming `names` in one command's env_allow, after a first
/// command that would leave a marker if anything ran.
fn env_contract(ws: &Ws, names: &[&str]) -> std::path::PathBuf {
    let mut cmd = ws.cmd("env", &["env"]);
    cmd["env_allow"] = json!(names);
    ws.contract("c.json", vec![ws.cmd("first", &["touch", "first"]), cmd])
}

fn assert_blocked_naming(ws: &Ws, r: &Run, name: &str) {
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.status(), "blocked", "{}", r.stderr);
    let err = r.receipt()["error"].as_str().unwrap();
    assert!(err.contains(name), "{err}");
    assert!(!ws.path("first").exists(), "a command ran");
}

#[test]
fn env_names_need_the_operators_allow_env() {
    let ws = ws();
    let c = env_contract(&ws, &["HOME", "LANG"]);
    let r = ws.run_env(&c, &[], &[("HOME", "/root")]);
    assert_blocked_naming(&ws, &r, "HOME");
    assert!(
        r.receipt()["error"]
            .as_str()
            .unwrap()
            .contains("--allow-env")
    );
    let out = ws.s("out");
    let r = ws.run_env(
        &c,
        &["--allow-env", "HO*", "--output-dir", &out],
        &[("HOME", "/root"), ("LANG", "C.UTF-8")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let env = std::fs::read_to_string(ws.path("out/env.stdout")).unwrap();
    assert!(env.lines().any(|l| l == "HOME=/root"), "{env}");
    assert!(env.lines().any(|l| l == "LANG=C.UTF-8"), "{env}");
}

#[test]
fn credentials_in_csc_environment_do_not_reach_commands_through_globs() {
    for (name, globs) in [
        ("GITHUB_TOKEN", &["*"][..]),
        ("CSC_SIGNING_KEY_PEM", &["*", "CSC_*"][..]),
        ("AWS_SECRET_ACCESS_KEY", &["AWS_*"][..]),
        ("GOOGLE_APPLICATION_CREDENTIALS", &["*"][..]),
        ("AZURE_CLIENT_SECRET", &["AZURE_*"][..]),
        ("CI_JOB_TOKEN", &["CI_*"][..]),
        ("OPENAI_API_KEY", &["*"][..]),
    ] {
        let ws = ws();
        let c = env_contract(&ws, &[name]);
        let mut args = Vec::new();
        for g in globs {
            args.extend(["--allow-env", g]);
        }
        let r = ws.run_env(&c, &args, &[(name, "host-credential")]);
        assert_blocked_naming(&ws, &r, name);
        assert!(!r.stdout.contains("host-credential") && !r.stderr.contains("host-credential"));
        // The operator may pass one by naming it exactly.
        let out = ws.s("out");
        let r = ws.run_env(
            &c,
            &["--allow-env", name, "--output-dir", &out],
            &[(name, "host-credential")],
        );
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let env = std::fs::read_to_string(ws.path("out/env.stdout")).unwrap();
        assert!(env.contains(&format!("{name}=host-credential")), "{env}");
    }
}

#[test]
fn loader_hooks_cannot_be_allowed_even_by_name() {
    let ws = ws();
    let c = env_contract(&ws, &["LD_PRELOAD"]);
    let r = ws.run(&c, &["--allow-env", "LD_PRELOAD"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.receipt.is_none(),
        "refused as an operator error, before any receipt"
    );
    assert!(r.stderr.contains("LD_PRELOAD"), "{}", r.stderr);
    assert!(!ws.path("first").exists());
    let r = ws.run(&c, &["--allow-env", "*", "--allow-env", "LD_*"]);
    assert_blocked_naming(&ws, &r, "LD_PRELOAD");
}

#[test]
fn argv0_uses_the_trusted_search_path_not_the_callers_path() {
    let ws = ws();
    let bin = ws.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("echo");
    std::fs::write(&fake, "#!/bin/sh\necho FAKE\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = ws.contract("c.json", vec![ws.cmd("e", &["echo", "real"])]);
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let r = ws.run_env(&c, &[], &[("PATH", &path)]);
    assert_eq!(r.receipt()["stdout_hash"], sha(b"real\n"));
    let r = ws.run(&c, &["--search-path", &format!("{}:/bin", bin.display())]);
    assert_eq!(r.receipt()["stdout_hash"], sha(b"FAKE\n"));

    let abs = ws.contract("abs.json", vec![ws.cmd("e", &["/bin/echo", "x"])]);
    let r = ws.run(&abs, &["--search-path", "/nonexistent"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn missing_executable_fails_with_127() {
    let ws = ws();
    let c = ws.contract(
        "c.json",
        vec![
            ws.cmd("ok", &["true"]),
            ws.cmd("nf", &["nonexistent-cmd-xyz"]),
        ],
    );
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    let rec = r.receipt();
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["exit_code"], 127);
    assert_eq!(rec["failed_command_id"], "nf");
    assert_eq!(rec["completed_command_ids"], json!(["ok"]));
    assert!(rec["error"].as_str().unwrap().contains("not found"));
}

#[test]
fn timeout_kills_the_group_and_fails_with_124() {
    let ws = ws();
    let mut cmd = ws.cmd("slow", &["sh", "-c", "sleep 30 & sleep 30"]);
    cmd["timeout_sec"] = json!(1);
    let c = ws.contract("c.json", vec![cmd]);
    let t = Instant::now();
    let r = ws.run(&c, &[]);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(r.code, 1);
    let rec = r.receipt();
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["exit_code"], 124);
    assert!(rec["error"].as_str().unwrap().contains("timed out"));
}

#[test]
fn background_process_holding_the_pipe_does_not_hang_the_run() {
    let ws = ws();
    let c = ws.contract(
        "c.json",
        vec![ws.cmd("bg", &["sh", "-c", "sleep 60 & echo started"])],
    );
    let t = Instant::now();
    let r = ws.run(&c, &[]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["stdout_hash"], sha(b"started\n"));
}

#[test]
fn capture_is_bounded_and_truncation_recorded() {
    let ws = ws();
    let c = ws.contract(
        "c.json",
        vec![ws.cmd("big", &["head", "-c", "1000000", "/dev/zero"])],
    );
    let out = ws.s("out");
    let r = ws.run(&c, &["--stdout-cap", "100", "--output-dir", &out]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = r.receipt();
    assert_eq!(rec["stdout_truncated"], true);
    assert_eq!(rec["stdout_hash"], sha(&[0u8; 100]));
    assert!(rec.get("stderr_truncated").is_none());
    assert_eq!(std::fs::read(ws.path("out/big.stdout")).unwrap().len(), 100);
}

#[test]
fn output_dir_rejects_ids_that_escape() {
    let ws = ws();
    for bad in [".hidden", "a..b", "x/y", "a\\b"] {
        let c = ws.contract("c.json", vec![ws.cmd(bad, &["touch", "marker"])]);
        let out = ws.s("out");
        let r = ws.run(&c, &["--output-dir", &out]);
        assert_eq!(r.code, 1);
        assert_eq!(r.status(), "blocked");
        assert!(!ws.path("marker").exists());
    }
}

#[test]
fn artifacts_and_files_written_are_measured() {
    let ws = ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    std::fs::write(ws.path("out/untouched"), b"x").unwrap();
    let mut cmd = ws.cmd(
        "w",
        &["sh", "-c", "echo data > out/a.txt; echo b > out/b.txt"],
    );
    cmd["write_paths"] = json!([format!("{}/out/**", ws.root.display())]);
    cmd["proposed_effect_type"] = json!("transform_local");
    let a = ws.s("out/a.txt");
    let missing = ws.s("out/missing.txt");
    let c = ws.contract_with("c.json", vec![cmd], |c| {
        c["expected_outputs"] = json!([a, missing]);
    });
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = r.receipt();
    assert_eq!(rec["effect_summary"]["files_written"], 2);
    assert_eq!(
        rec["artifacts"],
        json!([{"path": a, "sha256": csc::canonical::sha256_hex(b"data\n")}])
    );
    assert!(rec["error"].as_str().unwrap().contains("missing.txt"));
}

#[test]
fn deny_and_needs_approval_write_blocked_receipts() {
    let ws = ws();
    let c = ws.contract("deny.json", vec![ws.cmd("x", &["rm", "-rf", "/"])]);
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.status(), "blocked");
    assert!(
        r.receipt()["error"]
            .as_str()
            .unwrap()
            .contains("policy denied")
    );

    let c = ws.contract_with("ask.json", vec![ws.cmd("x", &["touch", "marker"])], |c| {
        c["approval_mode"] = json!("human_required");
    });
    let r = ws.run(&c, &[]);
    assert_eq!(r.code, 2);
    assert_eq!(r.status(), "blocked");
    assert!(!ws.path("marker").exists());
}

#[test]
fn receipt_parent_directories_are_created() {
    let ws = ws();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["true"])]);
    let out = std::process::Command::new(CSC)
        .args([
            "run",
            c.to_str().unwrap(),
            ws.s("policy.yaml").as_str(),
            "--quiet",
        ])
        .current_dir(&ws.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(ws.path("out/receipt.json").is_file());
}

#[test]
fn interrupting_csc_terminates_the_command_and_still_writes_a_receipt() {
    let ws = ws();
    let c = ws.contract(
        "c.json",
        vec![
            ws.cmd("start", &["touch", "started"]),
            ws.cmd("slow", &["sleep", "30"]),
            ws.cmd("next", &["touch", "marker"]),
        ],
    );
    let mut child = std::process::Command::new(CSC)
        .args([
            "run",
            c.to_str().unwrap(),
            ws.s("policy.yaml").as_str(),
            "--quiet",
        ])
        .args(["--receipt-out", ws.s("receipt.json").as_str()])
        .current_dir(&ws.root)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Signal handlers are installed before the first command runs.
    let waited = Instant::now();
    while !ws.path("started").exists() {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "csc never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let code = child.wait().unwrap().code();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(code, Some(1));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("receipt.json")).unwrap()).unwrap();
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["exit_code"], 128 + 15);
    assert_eq!(rec["failed_command_id"], "slow");
    assert_eq!(rec["completed_command_ids"], json!(["start"]));
    assert!(rec["error"].as_str().unwrap().contains("interrupted"));
    assert!(!ws.path("marker").exists());
}

#[test]
fn output_dir_never_follows_planted_links() {
    let ws = ws();
    std::fs::create_dir(ws.path("out")).unwrap();
    std::fs::write(ws.path("victim"), b"orig").unwrap();
    std::os::unix::fs::symlink(ws.path("victim"), ws.path("out/t.stdout")).unwrap();
    let c = ws.contract("c.json", vec![ws.cmd("t", &["echo", "hi"])]);
    let out = ws.s("out");
    let r = ws.run(&c, &["--output-dir", &out]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(ws.path("victim")).unwrap(), b"orig");
    let meta = std::fs::symlink_metadata(ws.path("out/t.stdout")).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(std::fs::read(ws.path("out/t.stdout")).unwrap(), b"hi\n");
}
