//! Lifetime and resource containment: nothing outlives a timeout or a
//! killed csc, `kill(-1)` stays inside, fork and memory bombs hit their
//! caps, and 1 GiB of output streams through.

use crate::support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Fixture, NOBODY, Who, command, host_processes_with, py, run, sandbox_test, sh};

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Wait until `p` exists and is non-empty (bounded).
fn wait_for_beat(p: &Path) {
    let t = Instant::now();
    while size(p) == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(size(p) > 0, "daemon never started");
}

fn assert_heartbeat_stopped(beat: &Path, marker: &str) {
    std::thread::sleep(Duration::from_millis(300));
    let a = size(beat);
    std::thread::sleep(Duration::from_millis(700));
    let b = size(beat);
    assert_eq!(a, b, "a sandboxed process is still writing");
    let left = host_processes_with(marker);
    assert!(left.is_empty(), "processes survived: {left:?}");
}

fn daemon_script(beat: &Path) -> String {
    // A double-forked, setsid'ed grandchild that keeps writing.
    format!(
        "( setsid sh -c 'while :; do echo beat >> {b}; sleep 0.05; done' </dev/null >/dev/null 2>&1 & ); sleep 600",
        b = beat.display()
    )
}

sandbox_test!(daemonized_grandchild_dies_at_timeout);
fn daemonized_grandchild_dies_at_timeout(who: Who) {
    let fx = Fixture::new();
    let beat = fx.out.join("beat");
    let t = Instant::now();
    let r = run(
        who,
        &fx,
        fx.spec(vec![sh(&daemon_script(&beat))], "deny"),
        json!({}),
        Some(1500),
    );
    assert_eq!(r.code, 124, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(size(&beat) > 0, "daemon never ran: {r:?}");
    assert_heartbeat_stopped(&beat, beat.to_str().unwrap());
}

sandbox_test!(everything_dies_when_csc_is_sigkilled);
fn everything_dies_when_csc_is_sigkilled(who: Who) {
    let fx = Fixture::new();
    let beat = fx.out.join("beat");
    let file = fx.run_file(fx.spec(vec![sh(&daemon_script(&beat))], "deny"), json!({}));
    let mut csc = command(who)
        .args(["__sandbox-run", "--spec"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_beat(&beat);
    csc.kill().unwrap(); // SIGKILL: no cleanup code in csc runs.
    csc.wait().unwrap();
    assert_heartbeat_stopped(&beat, beat.to_str().unwrap());
}

sandbox_test!(kill_minus_one_stays_inside);
fn kill_minus_one_stays_inside(who: Who) {
    let fx = Fixture::new();
    // A host process of the same user that must survive.
    let mut canary = Command::new("/bin/sleep");
    canary.arg("30");
    if who == Who::Nobody {
        use std::os::unix::process::CommandExt;
        canary.uid(NOBODY).gid(NOBODY);
    }
    let mut canary = canary.spawn().unwrap();
    let script = r#"
import signal, time
pid = os.fork()
if pid == 0:
    time.sleep(30); os._exit(0)
denied("signal init", lambda: os.kill(1, 9) or time.sleep(0.1) or os.kill(1, 0) or 1/0)
os.kill(-1, signal.SIGKILL)
time.sleep(0.2)
r = os.waitpid(pid, 0)
print("denied sibling killed inside" if os.WIFSIGNALED(r[1]) else "FAIL sibling not killed")
"#;
    let r = run(
        who,
        &fx,
        fx.spec(vec![py(script)], "deny"),
        json!({}),
        Some(20_000),
    );
    r.assert_contained(&format!("{who:?}"));
    assert!(
        canary.try_wait().unwrap().is_none(),
        "host canary was killed"
    );
    canary.kill().unwrap();
    canary.wait().unwrap();
}

/// Tasks a cap counts before the command's own: init for root (the pid
/// namespace's `pid_max`), the setup helper and init for uid 65534
/// (`RLIMIT_NPROC` counts the user's tasks in the sandbox's user
/// namespace, which the helper entered).
fn tasks_besides_csc(who: Who) -> u64 {
    match who {
        Who::Root => 1,
        Who::Nobody => 2,
    }
}

/// Forks sleepers until one is refused; prints how many started. Run
/// after `churn` short-lived forks (each reaped before the next).
fn fork_until_refused(churn: u32) -> String {
    format!(
        r#"
import time
for _ in range({churn}):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
n = 0
try:
    while n < 5000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60); os._exit(0)
        n += 1
    print("BREACH forked", n)
except OSError as e:
    print("denied fork stopped after", n, name(e.errno))
"#
    )
}

/// Runs [`fork_until_refused`]`(churn)` under a cap of `cap` tasks and
/// checks that exactly what csc's own tasks and the script leave was
/// forked, not one more, not one less.
fn assert_cap_holds(who: Who, cap: u64, churn: u32) {
    let fx = Fixture::new();
    let r = run(
        who,
        &fx,
        fx.spec(vec![py(&fork_until_refused(churn))], "deny"),
        json!({"rlimits": {"processes": cap}}),
        Some(60_000),
    );
    r.assert_contained(&format!("{who:?}"));
    let room = cap - tasks_besides_csc(who) - 1;
    assert!(
        r.stdout.contains(&format!("stopped after {room} ")),
        "{who:?}: {r:?}"
    );
}

sandbox_test!(fork_bomb_hits_the_process_cap);
/// The cap holds exactly, and the bomb is gone with the run.
fn fork_bomb_hits_the_process_cap(who: Who) {
    let t = Instant::now();
    assert_cap_holds(who, 64, 0);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "bomb not cleaned up promptly"
    );
}

sandbox_test!(the_process_cap_holds_after_many_processes_came_and_went);
/// Once a pid namespace has handed out pids past 300, the kernel allocates
/// only from 300 up to `pid_max`: a cap set as `pid_max` alone shrank from
/// 10 to 1 task besides init after 400 short-lived forks. It stays exact.
fn the_process_cap_holds_after_many_processes_came_and_went(who: Who) {
    assert_cap_holds(who, 10, 400);
}

sandbox_test!(a_process_cap_that_cannot_be_enforced_is_refused);
/// A process cap the sandbox cannot enforce is refused before anything
/// runs, never silently raised: root is exempt from `RLIMIT_NPROC`, and
/// `pid_max` cannot go below 301, which leaves room for init and one more
/// task, so root's cap of 1 is refused and 2 runs. Unprivileged,
/// `RLIMIT_NPROC` binds at any value (1: the command cannot start; 3: the
/// helper, init and the command).
fn a_process_cap_that_cannot_be_enforced_is_refused(who: Who) {
    let fx = Fixture::new();
    let with_cap = |processes: u64| {
        run(
            who,
            &fx,
            fx.spec(vec![vec!["/usr/bin/true".to_owned()]], "deny"),
            json!({"rlimits": {"processes": processes}}),
            Some(20_000),
        )
    };
    let room_for_one = with_cap(tasks_besides_csc(who) + 1);
    assert_eq!(room_for_one.code, 0, "{who:?}: {room_for_one:?}");
    let one = with_cap(1);
    assert_ne!(one.code, 0, "{who:?}: {one:?}");
    let refused = one.stderr.contains("a process cap of 1 cannot be enforced")
        && one.stderr.contains("--rlimit-nproc to 2 or more");
    assert_eq!(refused, who == Who::Root, "{who:?}: {one:?}");
}

sandbox_test!(a_segment_that_cannot_start_after_another_did_is_no_setup_failure);
/// A pipeline whose second segment cannot start after the first did (a
/// process cap that csc's own tasks and the first segment fill) ends
/// as a failed run whose started segments were killed at once — never as
/// "setup failed, nothing was run" (code 125), which would be false
/// evidence (security review finding 7).
fn a_segment_that_cannot_start_after_another_did_is_no_setup_failure(who: Who) {
    segment_fails_after_another_started(who)
}

fn segment_fails_after_another_started(who: Who) {
    let fx = Fixture::new();
    let segments = vec![
        vec!["/bin/sleep".to_owned(), "30".to_owned()],
        vec!["/usr/bin/true".to_owned()],
        vec!["/usr/bin/true".to_owned()],
    ];
    let t = Instant::now();
    let r = run(
        who,
        &fx,
        fx.spec(segments, "deny"),
        json!({"rlimits": {"processes": tasks_besides_csc(who) + 1}}),
        Some(60_000),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("segment 1 of 3 could not be started after 1 had started (they were killed)"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("nothing was run"), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the started segment was not killed"
    );
}

sandbox_test!(memory_bomb_hits_the_address_space_cap);
fn memory_bomb_hits_the_address_space_cap(who: Who) {
    let fx = Fixture::new();
    let script = r#"
chunks = []
try:
    for i in range(64):
        chunks.append(bytearray(64 << 20))
    print("BREACH allocated", len(chunks) * 64, "MiB")
except MemoryError:
    print("denied allocation stopped at", len(chunks) * 64, "MiB")
    if len(chunks) * 64 > 1024: print("BREACH over cap")
"#;
    let config = json!({"rlimits": {"address_space_bytes": 1u64 << 30}});
    let r = run(
        who,
        &fx,
        fx.spec(vec![py(script)], "deny"),
        config,
        Some(60_000),
    );
    r.assert_contained(&format!("{who:?}"));
}

sandbox_test!(one_gib_of_output_is_streamed);
fn one_gib_of_output_is_streamed(who: Who) {
    let fx = Fixture::new();
    let file = fx.run_file(
        fx.spec(
            vec![sh("head -c 1073741824 /dev/zero"), vec!["/bin/cat".into()]],
            "deny",
        ),
        json!({}),
    );
    let mut csc = command(who)
        .args(["__sandbox-run", "--spec"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = csc.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total: u64 = 0;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                assert!(buf[..n].iter().all(|&b| b == 0));
                total += n as u64;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    let st = csc.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert_eq!(total, 1 << 30);
}
