//! The library API as the executor uses it: `spawn` from a multi-threaded
//! process, capture through pipes, `wait_timeout`, `kill`, `Drop`.

use crate::support;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use csc::protocol::contract::NetworkMode;
use csc::sandbox::{self, SandboxConfig, SandboxError, SandboxSpec};
use support::{Fixture, Who, skip};

fn cfg() -> SandboxConfig {
    SandboxConfig {
        helper_exe: Some(PathBuf::from(support::csc())),
        ..SandboxConfig::default()
    }
}

fn spec(fx: &Fixture, script: &str) -> SandboxSpec {
    SandboxSpec {
        segments: vec![vec!["/bin/sh".into(), "-c".into(), script.into()]],
        cwd: fx.data.clone(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        read_paths: vec![fx.data.clone()],
        write_paths: vec![fx.out.clone()],
        network: NetworkMode::Deny,
        hidden_paths: vec![],
    }
}

fn pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (std::fs::File::from(r), w)
}

#[test]
fn concurrent_spawns_from_threads_capture_output() {
    if skip(Who::Root, "api concurrent") {
        return;
    }
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let fx = Fixture::new();
                let (mut out_r, out_w) = pipe();
                let (mut err_r, err_w) = pipe();
                let mut child = sandbox::spawn(
                    &cfg(),
                    &spec(&fx, &format!("echo out{i}; echo err{i} >&2; exit {i}")),
                    out_w,
                    err_w,
                )
                .unwrap();
                let mut out = String::new();
                let mut err = String::new();
                out_r.read_to_string(&mut out).unwrap();
                err_r.read_to_string(&mut err).unwrap();
                let exit = child.wait().unwrap();
                assert_eq!((exit.exit_code, exit.setup_error), (i, None));
                assert_eq!(out, format!("out{i}\n"));
                assert_eq!(err, format!("err{i}\n"));
                assert!(child.pid() > 0);
                // wait() is repeatable and kill() after exit is a no-op.
                child.kill();
                assert_eq!(child.try_wait().unwrap().unwrap().exit_code, i);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn wait_timeout_then_kill_tears_everything_down() {
    if skip(Who::Root, "api kill") {
        return;
    }
    let fx = Fixture::new();
    let beat = fx.out.join("beat");
    let script = format!(
        "( setsid sh -c 'while :; do echo b >> {0}; sleep 0.05; done' & ); sleep 600",
        beat.display()
    );
    let (_out_r, out_w) = pipe();
    let (_err_r, err_w) = pipe();
    let mut child = sandbox::spawn(&cfg(), &spec(&fx, &script), out_w, err_w).unwrap();
    assert!(
        child
            .wait_timeout(Duration::from_millis(500))
            .unwrap()
            .is_none()
    );
    let t = Instant::now();
    child.kill();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "kill took {:?}",
        t.elapsed()
    );
    let exit = child.wait().unwrap();
    assert_eq!(exit.exit_code, 128 + 9, "{exit:?}");
    let n = std::fs::metadata(&beat).unwrap().len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::metadata(&beat).unwrap().len(),
        n,
        "survivor after kill()"
    );
}

#[test]
fn dropping_the_child_kills_the_sandbox() {
    if skip(Who::Root, "api drop") {
        return;
    }
    let fx = Fixture::new();
    let beat = fx.out.join("beat");
    let script = format!(
        "while :; do echo b >> {0}; sleep 0.05; done",
        beat.display()
    );
    let (_out_r, out_w) = pipe();
    let (_err_r, err_w) = pipe();
    let child = sandbox::spawn(&cfg(), &spec(&fx, &script), out_w, err_w).unwrap();
    let t = Instant::now();
    while !beat.exists() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(child);
    let n = std::fs::metadata(&beat).unwrap().len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::metadata(&beat).unwrap().len(), n);
}

/// Host pids of processes whose `comm` is `name` (zombies included).
fn processes_named(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

/// The run may end on init's report, before the namespaces are torn
/// down, but never while anything the command started still exists: a
/// daemon the command leaves behind is killed and reaped before `wait`
/// returns.
#[test]
fn wait_returns_only_once_a_left_behind_daemon_is_gone() {
    if skip(Who::Root, "api left-behind daemon") {
        return;
    }
    let fx = Fixture::new();
    let name = format!("cscdmn{}", std::process::id() % 100_000);
    let daemon = fx.data.join(&name);
    std::fs::copy("/usr/bin/sleep", &daemon).unwrap();
    let script = format!(
        "( setsid {} 1000 </dev/null >/dev/null 2>&1 & ); exit 0",
        daemon.display()
    );
    for _ in 0..5 {
        let (_out_r, out_w) = pipe();
        let (_err_r, err_w) = pipe();
        let mut child = sandbox::spawn(&cfg(), &spec(&fx, &script), out_w, err_w).unwrap();
        let exit = child.wait().unwrap();
        let left = processes_named(&name);
        assert_eq!(exit.exit_code, 0, "{exit:?}");
        assert!(left.is_empty(), "still there after wait(): {left:?}");
        drop(child);
    }
}

/// A finished run leaves nothing for a subreaper (csc as a container's pid
/// 1, or under one): the helper reaps init before it exits, and csc reaps
/// the helper. Run in its own process, which is made a child subreaper:
/// any pid it reaps that is not a helper's is an orphan of a run.
#[test]
fn a_subreaper_inherits_no_orphan_from_finished_runs() {
    if skip(Who::Root, "api subreaper") {
        return;
    }
    support::run_in_own_process(
        "suite::sandbox_api::subreaper_process_runs_sandboxes",
        "CSC_TEST_SUBREAPER_CHILD",
    );
}

#[test]
#[ignore = "run in its own process by a_subreaper_inherits_no_orphan_from_finished_runs"]
fn subreaper_process_runs_sandboxes() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    assert!(std::env::var_os("CSC_TEST_SUBREAPER_CHILD").is_some());
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let fx = Fixture::new();
    let mut helpers = Vec::new();
    for _ in 0..5 {
        let (_out_r, out_w) = pipe();
        let (_err_r, err_w) = pipe();
        let mut child = sandbox::spawn(&cfg(), &spec(&fx, "true"), out_w, err_w).unwrap();
        helpers.push(child.pid() as i32);
        assert_eq!(child.wait().unwrap().exit_code, 0);
        drop(child);
    }
    // Reap until no child is left (csc reaps its helpers too): every pid
    // reaped here must be a helper's.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut orphans = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                assert!(Instant::now() < deadline, "children still alive after 10 s");
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(status) => {
                if let Some(pid) = status.pid()
                    && !helpers.contains(&pid.as_raw())
                {
                    orphans.push(pid.as_raw());
                }
            }
            Err(nix::errno::Errno::ECHILD) => break,
            Err(e) => panic!("waitpid: {e}"),
        }
    }
    assert!(orphans.is_empty(), "orphans of finished runs: {orphans:?}");
}

#[test]
fn invalid_specs_fail_before_spawning() {
    let fx = Fixture::new();
    let (_r, w1) = pipe();
    let (_r2, w2) = pipe();
    let mut s = spec(&fx, "true");
    s.network = NetworkMode::Allowlisted;
    assert!(matches!(
        sandbox::spawn(&cfg(), &s, w1, w2),
        Err(SandboxError::Unsupported(_))
    ));
    let (_r, w1) = pipe();
    let (_r2, w2) = pipe();
    let mut s = spec(&fx, "true");
    s.segments = vec![vec!["sh".into()]];
    assert!(matches!(
        sandbox::spawn(&cfg(), &s, w1, w2),
        Err(SandboxError::InvalidSpec(_))
    ));
}

#[test]
fn preflight_and_profile_agree_with_the_cli() {
    if skip(Who::Root, "api preflight") {
        return;
    }
    let report = sandbox::preflight(&cfg()).unwrap();
    assert!(report.hardened_available);
    assert!(report.landlock_abi_used >= 4);
    let out = std::process::Command::new(support::csc())
        .args(["sandbox-profile", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The CLI uses the default config (helper_exe is not part of the profile).
    assert_eq!(
        v["sandbox_profile_id"],
        sandbox::profile(&SandboxConfig::default()).sandbox_profile_id
    );
    assert_eq!(
        v["sandbox_profile_id"],
        sandbox::profile(&cfg()).sandbox_profile_id
    );
    let bad = SandboxConfig {
        min_landlock_abi: 999,
        ..cfg()
    };
    let e = sandbox::preflight(&bad).unwrap_err();
    assert!(e.to_string().contains("landlock"), "{e}");
}
