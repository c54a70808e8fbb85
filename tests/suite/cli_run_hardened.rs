//! `csc run --mode hardened`: the executor drives the native sandbox; the
//! receipt is signed and names the enforced sandbox profile.

use crate::common;
use crate::support;

use common::*;
use serde_json::{Value, json};
use std::process::Command;
use support::{Who, sandbox_test, skip};

const KEY_ID: &str = "hardened-test";

/// Workspace with a signing key, a read-only `data/` and a writable `out/`.
fn hardened_ws() -> Ws {
    let ws = ws();
    std::fs::write(ws.path("key.seed"), [42u8; 32]).unwrap();
    std::fs::create_dir(ws.path("data")).unwrap();
    std::fs::create_dir(ws.path("out")).unwrap();
    std::fs::write(ws.path("data/in.txt"), "payload\n").unwrap();
    ws
}

fn scoped(ws: &Ws, id: &str, argv: &[&str]) -> Value {
    let mut c = ws.cmd(id, argv);
    c["read_paths"] = json!([ws.s("data")]);
    c["write_paths"] = json!([ws.s("out")]);
    c
}

fn hardened(ws: &Ws, contract: &std::path::Path, extra: &[&str]) -> Run {
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

fn public_key(ws: &Ws) -> std::path::PathBuf {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let path = ws.path("key.pub");
    std::fs::write(&path, sk.verifying_key().as_bytes()).unwrap();
    path
}

fn verify(ws: &Ws) {
    let out = Command::new(CSC)
        .arg("verify-receipt")
        .arg(ws.path("receipt.json"))
        .arg("--public-key")
        .arg(public_key(ws))
        .args(["--key-id", KEY_ID])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "receipt does not verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn success_is_signed_and_names_the_enforced_profile() {
    if skip(
        Who::Root,
        "success_is_signed_and_names_the_enforced_profile",
    ) {
        return;
    }
    let ws = hardened_ws();
    let script = format!(
        "cat {d}/in.txt && echo written > {o}/result.txt",
        d = ws.s("data"),
        o = ws.s("out")
    );
    let c = ws.contract("c.json", vec![scoped(&ws, "work", &["sh", "-c", &script])]);
    let r = hardened(&ws, &c, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rec = r.receipt();
    assert_eq!(rec["status"], "success");
    assert_eq!(rec["execution_mode"], "hardened");
    assert_eq!(rec["stdout_hash"], sha(b"payload\n"));
    assert_eq!(rec["effect_summary"]["files_written"], 1);
    assert_eq!(
        std::fs::read_to_string(ws.path("out/result.txt")).unwrap(),
        "written\n"
    );
    let profile = Command::new(CSC)
        .args(["sandbox-profile", "--json"])
        .output()
        .unwrap();
    let profile: Value = serde_json::from_slice(&profile.stdout).unwrap();
    assert_eq!(rec["sandbox_profile_id"], profile["sandbox_profile_id"]);
    assert!(rec["signature"]["signature"].is_string());
    verify(&ws);
}

#[test]
fn writes_outside_the_write_scope_fail_and_leave_the_host_untouched() {
    if skip(Who::Root, "writes_outside_the_write_scope_fail") {
        return;
    }
    let ws = hardened_ws();
    for (id, target) in [
        ("cwd", ws.s("escape.txt")),
        ("read-scope", ws.s("data/escape.txt")),
    ] {
        let c = ws.contract("c.json", vec![scoped(&ws, id, &["touch", &target])]);
        let r = hardened(&ws, &c, &[]);
        assert_eq!(r.code, 1, "{id}: {}", r.stderr);
        assert_eq!(r.receipt()["status"], "failed", "{id}");
        assert_eq!(r.receipt()["failed_command_id"], id);
        assert!(
            !std::path::Path::new(&target).exists(),
            "{id}: {target} was created"
        );
        verify(&ws);
    }
}

#[test]
fn pipelines_run_in_one_sandbox() {
    if skip(Who::Root, "pipelines_run_in_one_sandbox") {
        return;
    }
    let ws = hardened_ws();
    let mut p = ws.pipe("shout", &[&["echo", "hello"], &["tr", "a-z", "A-Z"]]);
    p["read_paths"] = json!([ws.s("data")]);
    let c = ws.contract("c.json", vec![p]);
    let r = hardened(&ws, &c, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.receipt()["stdout_hash"], sha(b"HELLO\n"));
}

#[test]
fn a_timeout_kills_the_sandbox_and_fails_the_run() {
    if skip(Who::Root, "a_timeout_kills_the_sandbox") {
        return;
    }
    let ws = hardened_ws();
    let mut cmd = scoped(&ws, "slow", &["sleep", "30"]);
    cmd["timeout_sec"] = json!(1);
    let c = ws.contract("c.json", vec![cmd]);
    let started = std::time::Instant::now();
    let r = hardened(&ws, &c, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.receipt()["status"], "failed");
    assert_eq!(r.receipt()["exit_code"], 124);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    verify(&ws);
}

#[test]
fn allowlisted_network_is_refused_before_anything_runs() {
    let ws = hardened_ws();
    ws.write_policy("allowed_egress_hosts: [example.com]\n".trim_end());
    let policy = std::fs::read_to_string(ws.path("policy.yaml"))
        .unwrap()
        .replace("network: deny", "network: allowlisted");
    std::fs::write(ws.path("policy.yaml"), policy).unwrap();
    let marker = ws.s("out/ran");
    let mut cmd = scoped(&ws, "net", &["touch", &marker]);
    cmd["network"] = json!("allowlisted");
    let c = ws.contract("c.json", vec![cmd]);
    let r = hardened(&ws, &c, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rec = r.receipt();
    assert_eq!(rec["status"], "blocked");
    assert!(
        rec["error"].as_str().unwrap().contains("allowlisted")
            && rec["error"].as_str().unwrap().contains("--egress-allow"),
        "{rec}"
    );
    assert!(!std::path::Path::new(&marker).exists());
    verify(&ws);
}

#[test]
fn hardened_mode_requires_signing() {
    let ws = hardened_ws();
    let c = ws.contract("c.json", vec![scoped(&ws, "x", &["true"])]);
    let r = ws.run(&c, &["--mode", "hardened"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("requires --sign"), "{}", r.stderr);
    assert!(!ws.path("receipt.json").exists());
}

#[test]
fn an_impossible_landlock_minimum_fails_closed_with_a_signed_receipt() {
    if skip(Who::Root, "impossible_landlock_minimum") {
        return;
    }
    let ws = hardened_ws();
    let marker = ws.s("out/ran");
    let c = ws.contract("c.json", vec![scoped(&ws, "x", &["touch", &marker])]);
    let r = hardened(&ws, &c, &["--min-landlock-abi", "99"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let rec = r.receipt();
    assert_ne!(rec["status"], "success");
    assert!(
        rec["error"].as_str().unwrap().contains("nothing was run")
            || rec["error"].as_str().unwrap().contains("Landlock"),
        "{rec}"
    );
    assert!(!std::path::Path::new(&marker).exists());
    verify(&ws);
}

#[test]
fn operator_flags_change_the_profile_id_and_sandbox_profile_reproduces_it() {
    if skip(Who::Root, "operator_flags_change_the_profile_id") {
        return;
    }
    let ws = hardened_ws();
    let c = ws.contract("c.json", vec![scoped(&ws, "x", &["true"])]);
    let r = hardened(&ws, &c, &["--rlimit-cpu", "17"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.receipt()["sandbox_profile_id"].clone();
    let profile_id = |extra: &[&str]| -> Value {
        let out = Command::new(CSC)
            .args(["sandbox-profile", "--json"])
            .args(extra)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["sandbox_profile_id"].clone()
    };
    assert_eq!(id, profile_id(&["--rlimit-cpu", "17"]));
    assert_ne!(id, profile_id(&[]));
}

/// Make the workspace usable by uid 65534 (contract, policy, key, scopes,
/// receipt and state directory).
fn open_to_everyone(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if dir.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            open_to_everyone(&e.path());
        }
    }
}

/// `csc run --mode hardened` as `who` (root or uid 65534).
fn hardened_as(who: Who, ws: &Ws, contract: &std::path::Path, extra: &[&str]) -> Run {
    open_to_everyone(&ws.root);
    let receipt = ws.path("receipt.json");
    let _ = std::fs::remove_file(&receipt);
    let out = support::command(who)
        .arg("run")
        .arg(contract)
        .arg(ws.path("policy.yaml"))
        .arg("--receipt-out")
        .arg(&receipt)
        .arg("--quiet")
        .args(["--mode", "hardened", "--sign", "--signing-key"])
        .arg(ws.path("key.seed"))
        .args(["--key-id", KEY_ID])
        .args(extra)
        .current_dir(&ws.root)
        .output()
        .unwrap();
    Run::new(out, &receipt)
}

sandbox_test!(a_timeout_sends_sigterm_to_the_sandboxed_command_before_sigkill);
/// Regression: hardened timeouts used to SIGKILL at once. Now the targets
/// get SIGTERM first (as in local mode) and SIGKILL after the grace period.
fn a_timeout_sends_sigterm_to_the_sandboxed_command_before_sigkill(who: Who) {
    let ws = hardened_ws();
    let marker = ws.s("out/term-seen");
    let script = format!("trap 'echo term > {marker}; exit 7' TERM; sleep 30 & wait");
    let mut cmd = scoped(&ws, "slow", &["sh", "-c", &script]);
    cmd["timeout_sec"] = json!(1);
    let c = ws.contract("c.json", vec![cmd]);
    let r = hardened_as(who, &ws, &c, &[]);
    assert_eq!(r.code, 1, "{who:?}: {}", r.stderr);
    assert_eq!(r.receipt()["status"], "failed", "{who:?}");
    assert_eq!(r.receipt()["exit_code"], 124, "{who:?}");
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some("term\n"),
        "{who:?}: the command never saw SIGTERM"
    );
    verify(&ws);
}

sandbox_test!(a_timeout_kills_a_command_that_ignores_sigterm);
/// A command that ignores SIGTERM is still killed after the grace period,
/// with everything it started.
fn a_timeout_kills_a_command_that_ignores_sigterm(who: Who) {
    let ws = hardened_ws();
    // A unique sleep duration identifies the survivors on the host.
    let tag = format!("600.{}{}", std::process::id(), who as u8);
    let script = format!("trap '' TERM; sleep {tag} & wait; wait");
    let mut cmd = scoped(&ws, "stubborn", &["sh", "-c", &script]);
    cmd["timeout_sec"] = json!(1);
    let c = ws.contract("c.json", vec![cmd]);
    let r = hardened_as(who, &ws, &c, &[]);
    assert_eq!(r.code, 1, "{who:?}: {}", r.stderr);
    assert_eq!(r.receipt()["exit_code"], 124, "{who:?}");
    assert!(
        support::host_processes_with(&tag).is_empty(),
        "{who:?}: survivors {:?}",
        support::host_processes_with(&tag)
    );
}

sandbox_test!(csc_own_environment_is_not_the_agents);
/// Regression: `env_allow` could name any variable of csc's environment
/// (here the harness's `CSC_HOST_SECRET`); a glob does not admit it.
fn csc_own_environment_is_not_the_agents(who: Who) {
    let ws = hardened_ws();
    let marker = ws.s("out/ran");
    let mut first = scoped(&ws, "first", &["touch", &marker]);
    first["env_allow"] = json!([]);
    let mut cmd = scoped(&ws, "env", &["env"]);
    cmd["env_allow"] = json!(["CSC_HOST_SECRET"]);
    let c = ws.contract("c.json", vec![first, cmd]);
    let r = hardened_as(who, &ws, &c, &["--allow-env", "*"]);
    assert_eq!(r.code, 1, "{who:?}: {}", r.stderr);
    assert_eq!(r.receipt()["status"], "blocked", "{who:?}");
    let err = r.receipt()["error"].as_str().unwrap();
    assert!(err.contains("CSC_HOST_SECRET"), "{who:?}: {err}");
    assert!(
        !std::path::Path::new(&marker).exists(),
        "{who:?}: a command ran"
    );
    assert!(!r.stdout.contains("host-secret-must-not-leak"));
    // Named exactly by the operator, it passes.
    let r = hardened_as(
        who,
        &ws,
        &c,
        &[
            "--allow-env",
            "CSC_HOST_SECRET",
            "--output-dir",
            &ws.s("streams"),
        ],
    );
    assert_eq!(r.code, 0, "{who:?}: {}", r.stderr);
    let env = std::fs::read_to_string(ws.path("streams/env.stdout")).unwrap();
    assert!(
        env.contains("CSC_HOST_SECRET=host-secret-must-not-leak"),
        "{env}"
    );
}

/// The forked helper and init start as copies of csc, whose memory holds
/// the signing key. A hostile command scans the memory of every process
/// it can see (`/proc/PID/maps` + `/proc/PID/mem`, `process_vm_readv` on
/// init) for the key: init is non-dumpable and the command has no
/// capabilities, and `process_vm_readv` is denied by seccomp.
fn the_signing_key_in_csc_memory_is_unreadable_from_the_sandbox(who: Who) {
    const SEED: [u8; 32] = [
        0x9e, 0x37, 0x79, 0xb9, 0x7f, 0x4a, 0x7c, 0x15, 0xf3, 0x9c, 0xc0, 0x60, 0x5c, 0xed, 0xc8,
        0x34, 0x10, 0x82, 0x27, 0x6b, 0xf3, 0xa2, 0x72, 0x04, 0xe3, 0x67, 0xd4, 0x96, 0x21, 0x5b,
        0x88, 0x3f,
    ];
    let ws = hardened_ws();
    std::fs::write(ws.path("key.seed"), SEED).unwrap();
    let policy = std::fs::read_to_string(ws.path("policy.yaml")).unwrap();
    std::fs::write(
        ws.path("policy.yaml"),
        policy.replacen("allow_commands: [", "allow_commands: [python3, ", 1),
    )
    .unwrap();
    let hex: String = SEED.iter().map(|b| format!("{b:02x}")).collect();
    let report = ws.s("out/scan.txt");
    let script = format!(
        r#"
import ctypes, os
KEY = bytes.fromhex("{hex}")
out = []
def scan(pid):
    try:
        maps = open("/proc/%s/maps" % pid).read().splitlines()
        mem = open("/proc/%s/mem" % pid, "rb", buffering=0)
    except OSError as e:
        out.append("denied %s %d" % (pid, e.errno)); return
    out.append("opened %s" % pid)
    for line in maps:
        a, b = [int(x, 16) for x in line.split()[0].split("-")]
        try:
            mem.seek(a); data = mem.read(b - a)
        except (OSError, OverflowError, ValueError):
            continue
        if data and KEY in data:
            out.append("BREACH key in %s %s" % (pid, line))
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        scan(pid)
class IOV(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(4096)
local = IOV(ctypes.cast(buf, ctypes.c_void_p), 4096)
remote = IOV(0x400000, 4096)
r = libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
out.append("process_vm_readv %d errno %d" % (r, ctypes.get_errno()))
open("{report}", "w").write("\n".join(out) + "\n")
"#
    );
    let c = ws.contract(
        "c.json",
        vec![scoped(&ws, "scan", &["python3", "-c", &script])],
    );
    let r = hardened_as(who, &ws, &c, &[]);
    assert_eq!(r.code, 0, "{who:?}: {}", r.stderr);
    let scan = std::fs::read_to_string(&report).unwrap();
    assert!(!scan.contains("BREACH"), "{who:?}: {scan}");
    assert!(
        scan.contains("denied 1 "),
        "{who:?}: init's memory opened: {scan}"
    );
    assert!(
        scan.contains("process_vm_readv -1 errno 1\n"),
        "{who:?}: {scan}"
    );
}
sandbox_test!(the_signing_key_in_csc_memory_is_unreadable_from_the_sandbox);

/// argv[0] as the command sees it is the same in local and hardened mode:
/// the resolved path that is executed (the sandbox execs that path with
/// it as argv[0]; local mode used to pass the declared name instead).
fn argv0_is_the_resolved_path_in_local_and_hardened_mode(who: Who) {
    let script = "tr '\\000' '\\n' < /proc/$$/cmdline | head -n 1";
    let local = {
        let ws = hardened_ws();
        let c = ws.contract("c.json", vec![scoped(&ws, "arg0", &["sh", "-c", script])]);
        let streams = ws.s("streams");
        let r = ws.run(&c, &["--output-dir", &streams]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::read_to_string(ws.path("streams/arg0.stdout")).unwrap()
    };
    assert!(
        local.starts_with('/') && local.trim_end().ends_with("/sh"),
        "local argv[0] is not the resolved path: {local:?}"
    );
    let ws = hardened_ws();
    let c = ws.contract("c.json", vec![scoped(&ws, "arg0", &["sh", "-c", script])]);
    let streams = ws.s("streams");
    let r = hardened_as(who, &ws, &c, &["--output-dir", &streams]);
    assert_eq!(r.code, 0, "{who:?}: {}", r.stderr);
    let hardened = std::fs::read_to_string(ws.path("streams/arg0.stdout")).unwrap();
    assert_eq!(hardened, local, "{who:?}: argv[0] differs between modes");
}
sandbox_test!(argv0_is_the_resolved_path_in_local_and_hardened_mode);
