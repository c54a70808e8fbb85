//! Shared harness for the sandbox integration tests: drives the real `csc`
//! binary (`__sandbox-run`) as root and as an unprivileged user, with
//! hostile programs written in python3 / sh.

pub use crate::common::require;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

/// uid/gid used for the unprivileged runs.
pub const NOBODY: u32 = 65534;

/// Who runs csc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The test process's own identity (root in CI).
    Root,
    /// uid/gid 65534.
    Nobody,
}

/// Path of the csc binary under test. When the build directory is not
/// reachable by uid 65534 (e.g. a clone under a 0700 home directory), the
/// binary is copied once per test process into a world-readable directory
/// under /tmp, so the unprivileged runs test the same binary.
pub fn csc() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_csc"));
        let reachable = built
            .ancestors()
            .skip(1)
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
        if reachable {
            return built;
        }
        let dir = std::env::temp_dir().join(format!("csc-test-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o755);
        let copy = dir.join("csc");
        std::fs::copy(&built, &copy).unwrap();
        chmod(&copy, 0o755);
        eprintln!(
            "note: {} is not reachable by uid {NOBODY}; testing a copy at {}",
            built.display(),
            copy.display()
        );
        copy
    })
}

/// A private `XDG_STATE_HOME` per identity for this test binary: every
/// run appends its receipt to the ledger of a state store, which must be
/// owned by the identity running csc (not the caller's `$HOME`).
pub fn state_home(who: Who) -> &'static Path {
    static HOMES: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    HOMES[who as usize].get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("csc-test-state-")
            .tempdir()
            .unwrap()
            .keep();
        if who == Who::Nobody {
            std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        dir
    })
}

/// A `Command` for csc running as `who` (state in [`state_home`] unless
/// the caller sets `XDG_STATE_HOME` or `--state-dir`).
pub fn command(who: Who) -> Command {
    let mut c = Command::new(csc());
    if who == Who::Nobody {
        c.uid(NOBODY).gid(NOBODY);
    }
    c.env("XDG_STATE_HOME", state_home(who));
    c.env("CSC_HOST_SECRET", "host-secret-must-not-leak");
    c
}

fn doctor(who: Who) -> Option<String> {
    if who == Who::Nobody && !nix::unistd::Uid::effective().is_root() {
        return Some("not running as root: cannot switch to uid 65534".into());
    }
    let out = command(who).args(["doctor", "--json"]).output().ok()?;
    if out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let failing: Vec<String> = v["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["ok"] == false)
                .map(|c| format!("{}: {}", c["name"], c["detail"]))
                .collect()
        })
        .unwrap_or_default();
    Some(format!(
        "hardened sandbox unavailable as {who:?}: {}",
        failing.join("; ")
    ))
}

/// `Some(reason)` when the sandbox cannot run as `who` on this host.
pub fn skip_reason(who: Who) -> Option<String> {
    static ROOT: OnceLock<Option<String>> = OnceLock::new();
    static NOB: OnceLock<Option<String>> = OnceLock::new();
    match who {
        Who::Root => ROOT.get_or_init(|| doctor(Who::Root)).clone(),
        Who::Nobody => NOB.get_or_init(|| doctor(Who::Nobody)).clone(),
    }
}

/// A root / uid-65534 pair of tests for `fn $name(who: Who)`: module
/// `$name` with tests `root` and `nobody`, so each identity shows up (and
/// can be run: `cargo test --test all NAME::nobody`) on its own. Each first
/// calls [`skip`] for its identity (the sandbox must be able to run as it);
/// with `, any_host` the case runs everywhere and chooses its modes itself.
macro_rules! sandbox_test {
    ($name:ident) => {
        $crate::support::sandbox_test!(@pair $name, true);
    };
    ($name:ident, any_host) => {
        $crate::support::sandbox_test!(@pair $name, false);
    };
    (@pair $name:ident, $skip:literal) => {
        mod $name {
            #[test]
            fn root() {
                $crate::support::run_case(
                    stringify!($name),
                    $crate::support::Who::Root,
                    $skip,
                    super::$name,
                );
            }
            #[test]
            fn nobody() {
                $crate::support::run_case(
                    stringify!($name),
                    $crate::support::Who::Nobody,
                    $skip,
                    super::$name,
                );
            }
        }
    };
}
pub(crate) use sandbox_test;

/// One half of a [`sandbox_test!`] pair: run `case` as `who`, unless
/// `check_sandbox` and the sandbox cannot run as `who` here ([`skip`]).
pub fn run_case(name: &str, who: Who, check_sandbox: bool, case: fn(Who)) {
    if check_sandbox && skip(who, name) {
        return;
    }
    case(who);
}

/// Print a loud SKIP line and return true when `who` cannot be tested;
/// with `CSC_REQUIRE_SANDBOX=1` fail instead.
pub fn skip(who: Who, test: &str) -> bool {
    match skip_reason(who) {
        Some(r) => {
            require::skip_or_fail(&format!("{test} as {who:?}: {r}"));
            true
        }
        None => false,
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Host directories for one test: `data/` (read scope, contains
/// `file.txt`), `out/` (write scope, world-writable), `secret/` (outside
/// every scope but world-readable on the host, so only the sandbox can
/// deny it).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub out: PathBuf,
    pub secret: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("csc-sbx-")
            .tempdir_in("/tmp")
            .unwrap();
        chmod(dir.path(), 0o755);
        let data = dir.path().join("data");
        let out = dir.path().join("out");
        let secret = dir.path().join("secret");
        for d in [&data, &out, &secret] {
            std::fs::create_dir(d).unwrap();
        }
        chmod(&data, 0o755);
        chmod(&out, 0o777);
        chmod(&secret, 0o755);
        std::fs::write(data.join("file.txt"), "public data\n").unwrap();
        chmod(&data.join("file.txt"), 0o666);
        std::fs::write(secret.join("key.txt"), "TOPSECRET\n").unwrap();
        chmod(&secret.join("key.txt"), 0o644);
        Fixture {
            dir,
            data,
            out,
            secret,
        }
    }

    /// A spec with `data` readable, `out` writable, cwd = `data`.
    pub fn spec(&self, segments: Vec<Vec<String>>, network: &str) -> Value {
        json!({
            "segments": segments,
            "cwd": self.data,
            "env": [["PATH", "/usr/bin:/bin"], ["LANG", "C.UTF-8"]],
            "read_paths": [self.data],
            "write_paths": [self.out],
            "network": network,
        })
    }

    /// Write a run file (spec + optional config) readable by everyone.
    pub fn run_file(&self, spec: Value, config: Value) -> PathBuf {
        let p = self.dir.path().join(format!("run-{}.json", rand_suffix()));
        let body = json!({"spec": spec, "config": config});
        std::fs::write(&p, serde_json::to_vec(&body).unwrap()).unwrap();
        chmod(&p, 0o644);
        p
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Outcome of one sandboxed run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// No line starts with BREACH or FAIL, and the script reached DONE.
    pub fn assert_contained(&self, what: &str) {
        let bad: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.starts_with("BREACH") || l.starts_with("FAIL"))
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: {bad:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stdout.lines().any(|l| l == "DONE"),
            "{what}: script did not finish (code {})\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
    }
}

/// Run `spec` (with `config` overrides) through `csc __sandbox-run`.
pub fn run(who: Who, fx: &Fixture, spec: Value, config: Value, timeout_ms: Option<u64>) -> Run {
    let file = fx.run_file(spec, config);
    let mut c = command(who);
    c.args(["__sandbox-run", "--spec"]).arg(&file);
    if let Some(ms) = timeout_ms {
        c.args(["--timeout-ms", &ms.to_string()]);
    }
    let out = c.stdin(Stdio::null()).output().expect("run csc");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// argv for `python3 -c PRELUDE + script`.
pub fn py(script: &str) -> Vec<String> {
    vec![
        "/usr/bin/python3".into(),
        "-c".into(),
        format!("{PRELUDE}\n{script}\nprint('DONE')\n"),
    ]
}

/// argv for `sh -c script`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Python helpers available to every hostile script.
pub const PRELUDE: &str = r#"
import os, sys, errno, ctypes, socket, stat, resource
sys.stdout.reconfigure(line_buffering=True)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def _arg(a):
    if isinstance(a, bytes): return ctypes.c_char_p(a)
    if a is None: return ctypes.c_void_p(0)
    return ctypes.c_long(a)
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[_arg(a) for a in args])
    return r, (ctypes.get_errno() if r == -1 else 0)
def raise_sc(nr, *args):
    r, e = sc(nr, *args)
    if r == -1: raise OSError(e, os.strerror(e))
    return r
def name(e): return errno.errorcode.get(e, str(e))
def denied(what, fn, errnos=None):
    try:
        fn()
    except OSError as e:
        if errnos is None or e.errno in errnos:
            print("denied", what, name(e.errno)); return
        print("BREACH", what, "unexpected errno", name(e.errno)); return
    except Exception as e:
        print("denied", what, type(e).__name__, e); return
    print("BREACH", what, "succeeded")
def allowed(what, fn):
    try:
        fn(); print("allowed", what)
    except Exception as e:
        print("FAIL positive control", what, e)
"#;

/// Processes on the host whose command line contains `needle`.
pub fn host_processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let s = String::from_utf8_lossy(&c).replace('\0', " ");
            if s.contains(needle) {
                found.push(format!("{}: {s}", name.to_string_lossy()));
            }
        }
    }
    found
}

/// Run the ignored test `name` (a full `suite::…` path) alone in a new
/// process of this test binary, with `env_flag` set so that only that run
/// does its work, and assert that it passed. For tests that change
/// process-wide state (a child subreaper, a per-process cap) which other
/// tests of this binary, running in parallel threads, must not see.
pub fn run_in_own_process(name: &str, env_flag: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env_flag, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{name} did not run: {text}");
}
