//! Hostile programs inside the hardened sandbox: file system, mounts,
//! namespaces, /proc, devices, privileges, limits, leaks. Each test runs
//! as root and as uid 65534.

use crate::support;

use serde_json::json;
use support::{Fixture, Who, py, run, sandbox_test, sh};

/// Run the hostile Python `script` in a network-denied sandbox and assert
/// that every probe it makes was contained.
fn run_contained(who: Who, fx: &Fixture, script: &str) -> support::Run {
    let r = run(who, fx, fx.spec(vec![py(script)], "deny"), json!({}), None);
    r.assert_contained(&format!("{who:?}"));
    r
}

sandbox_test!(reading_outside_read_scopes_is_denied);
fn reading_outside_read_scopes_is_denied(who: Who) {
    let fx = Fixture::new();
    let script = format!(
        r#"
SECRET = {secret:?}
denied("read secret file", lambda: open(SECRET + "/key.txt").read())
denied("list secret dir", lambda: os.listdir(SECRET))
# The fixture root exists only as a synthetic mountpoint directory on
# the private /tmp: it may list the bound scopes, never the host's entries.
print("BREACH host dir listed") if "secret" in os.listdir({root:?}) else print("denied fixture root is synthetic")
denied("read source tree", lambda: open({manifest:?}).read())
denied("list /root", lambda: os.listdir("/root"))
denied("list /home", lambda: os.listdir("/home"))
denied("list /", lambda: os.listdir("/"))
denied("init environ", lambda: open("/proc/1/environ").read())
denied("init root", lambda: os.listdir("/proc/1/root/"))
for p in ["/etc/shadow", "/etc/gshadow"]:
    try:
        s = open(p).read()
        print("BREACH", p, "readable") if s else print("denied", p, "masked (empty)")
    except OSError as e:
        print("denied", p, name(e.errno))
if os.path.exists("/etc/ssh"):
    print("BREACH /etc/ssh not masked") if os.listdir("/etc/ssh") else print("denied /etc/ssh masked")
allowed("read data scope", lambda: open({data:?} + "/file.txt").read())
allowed("read /etc/passwd", lambda: open("/etc/passwd").read())
allowed("list cwd", lambda: os.listdir("."))
"#,
        secret = fx.secret.to_str().unwrap(),
        root = fx.dir.path().to_str().unwrap(),
        manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        data = fx.data.to_str().unwrap(),
    );
    let r = run_contained(who, &fx, &script);
    assert_eq!(r.code, 0, "{r:?}");
}

sandbox_test!(writing_outside_write_scopes_is_denied);
fn writing_outside_write_scopes_is_denied(who: Who) {
    let fx = Fixture::new();
    let marker = format!("csc-private-tmp-{}", std::process::id());
    let script = format!(
        r#"
DATA = {data:?}; OUT = {out:?}
for p in [DATA + "/new.txt", DATA + "/file.txt", "./cwd.txt", "/usr/bin/evil", "/etc/evil", "/evil", "/dev/evil", "/proc/evil", "/etc/passwd"]:
    denied("write " + p, lambda p=p: open(p, "a").write("x"))
denied("truncate data", lambda: os.truncate(DATA + "/file.txt", 0))
denied("unlink data", lambda: os.unlink(DATA + "/file.txt"))
denied("rename data", lambda: os.rename(DATA + "/file.txt", OUT + "/stolen"))
denied("chmod data", lambda: os.chmod(DATA + "/file.txt", 0o777))
denied("mkdir in cwd", lambda: os.mkdir("./d"))
denied("symlink in cwd", lambda: os.symlink("/etc", "./l"))
denied("hardlink into out", lambda: os.link(DATA + "/file.txt", OUT + "/hl"))
denied("write /bin", lambda: open("/bin/evil", "w"))
allowed("write out", lambda: open(OUT + "/ok.txt", "w").write("ok"))
allowed("mkdir out", lambda: os.mkdir(OUT + "/sub"))
allowed("mkfifo out", lambda: os.mkfifo(OUT + "/fifo"))
allowed("write private tmp", lambda: open("/tmp/{marker}", "w").write("x"))
"#,
        data = fx.data.to_str().unwrap(),
        out = fx.out.to_str().unwrap(),
    );
    run_contained(who, &fx, &script);
    assert_eq!(
        std::fs::read_to_string(fx.out.join("ok.txt")).unwrap(),
        "ok"
    );
    assert_eq!(
        std::fs::read_to_string(fx.data.join("file.txt")).unwrap(),
        "public data\n"
    );
    assert!(!fx.data.join("new.txt").exists());
    assert!(!std::path::Path::new("/etc/evil").exists());
    assert!(
        !std::path::Path::new("/tmp").join(&marker).exists(),
        "private /tmp leaked to host"
    );
}

sandbox_test!(mounts_cannot_be_undone_or_added);
fn mounts_cannot_be_undone_or_added(who: Who) {
    let fx = Fixture::new();
    let script = format!(
        r#"
MS_RDONLY=1; MS_REMOUNT=32; MS_BIND=4096; MS_REC=16384; MNT_DETACH=2
def mnt(src, tgt, fs, flags):
    if libc.mount(src, tgt, fs, ctypes.c_ulong(flags), None) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
def um(tgt, flags=0):
    if libc.umount2(tgt, flags) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
denied("remount /usr rw", lambda: mnt(None, b"/usr", None, MS_REMOUNT | MS_BIND))
denied("remount data rw", lambda: mnt(None, {data:?}.encode(), None, MS_REMOUNT | MS_BIND))
denied("remount / rw", lambda: mnt(None, b"/", None, MS_REMOUNT | MS_BIND))
denied("umount /usr", lambda: um(b"/usr", MNT_DETACH))
denied("umount shadow mask", lambda: um(b"/etc/shadow"))
denied("umount /proc", lambda: um(b"/proc", MNT_DETACH))
denied("umount data", lambda: um({data:?}.encode(), MNT_DETACH))
denied("mount tmpfs", lambda: mnt(b"tmpfs", b"/tmp", b"tmpfs", 0))
denied("bind / into out", lambda: mnt(b"/", {out:?}.encode(), None, MS_BIND | MS_REC))
denied("mount proc", lambda: mnt(b"proc", b"/tmp", b"proc", 0))
denied("fsopen", lambda: raise_sc(430, b"tmpfs", 0))
denied("open_tree", lambda: raise_sc(428, -100, b"/", 1))
denied("mount_setattr", lambda: raise_sc(442, -100, b"/usr", 0, None, 0))
denied("write /usr afterwards", lambda: open("/usr/evil", "w"))
"#,
        data = fx.data.to_str().unwrap(),
        out = fx.out.to_str().unwrap(),
    );
    run_contained(who, &fx, &script);
}

sandbox_test!(new_namespaces_chroot_and_pivot_root_are_denied);
fn new_namespaces_chroot_and_pivot_root_are_denied(who: Who) {
    let fx = Fixture::new();
    let script = r#"
import subprocess
FLAGS = {"NEWUSER": 0x10000000, "NEWNS": 0x20000, "NEWPID": 0x20000000, "NEWNET": 0x40000000,
         "NEWIPC": 0x8000000, "NEWUTS": 0x4000000, "NEWCGROUP": 0x2000000, "NEWTIME": 0x80}
for n, f in FLAGS.items():
    denied("unshare " + n, lambda f=f: raise_sc(272, f), {errno.EPERM})
    if n != "NEWTIME":
        denied("clone " + n, lambda f=f: raise_sc(56, f | 17, 0, 0, 0, 0), {errno.EPERM})
denied("clone3", lambda: raise_sc(435, None, 88), {errno.ENOSYS})
fd = os.open("/proc/self/ns/net", os.O_RDONLY)
denied("setns", lambda: raise_sc(308, fd, 0), {errno.EPERM})
denied("chroot", lambda: os.chroot("/tmp"), {errno.EPERM})
denied("pivot_root", lambda: raise_sc(155, b"/tmp", b"/tmp"), {errno.EPERM})
if os.path.exists("/usr/bin/unshare"):
    rc = subprocess.run(["/usr/bin/unshare", "-Ur", "true"], stderr=subprocess.DEVNULL).returncode
    print("BREACH unshare binary" if rc == 0 else "denied unshare binary")
# Positive controls: plain fork and posix_spawn (clone3 -> clone fallback).
pid = os.fork()
if pid == 0: os._exit(7)
allowed("fork", lambda: os.waitpid(pid, 0)[1] == 7 << 8 or 1/0)
allowed("subprocess", lambda: subprocess.run(["/bin/true"], check=True))
"#;
    let r = run(who, &fx, fx.spec(vec![py(script)], "deny"), json!({}), None);
    r.assert_contained(&format!("{who:?}"));
}

sandbox_test!(proc_sys_sysrq_and_device_nodes_are_denied);
fn proc_sys_sysrq_and_device_nodes_are_denied(who: Who) {
    let fx = Fixture::new();
    let script = format!(
        r#"
for p in ["/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/self/attr/current"]:
    denied("write " + p, lambda p=p: open(p, "w").write("x"))
denied("open sysrq-trigger", lambda: os.open("/proc/sysrq-trigger", os.O_WRONLY))
print("BREACH /sys present") if os.path.exists("/sys/kernel") else print("denied /sys absent")
print("BREACH host /dev") if os.path.exists("/dev/sda") or os.path.exists("/dev/vda") or os.path.exists("/dev/mem") else print("denied host devices absent")
for where in ["/tmp/nulldev", {out:?} + "/nulldev"]:
    denied("mknod chr " + where, lambda w=where: os.mknod(w, 0o666 | stat.S_IFCHR, os.makedev(1, 3)))
    denied("mknod blk " + where, lambda w=where: os.mknod(w + "b", 0o666 | stat.S_IFBLK, os.makedev(253, 0)))
allowed("write /dev/null", lambda: open("/dev/null", "w").write("x"))
allowed("read /dev/urandom", lambda: len(open("/dev/urandom", "rb").read(16)) == 16 or 1/0)
allowed("read /proc/self/status", lambda: open("/proc/self/status").read())
"#,
        out = fx.out.to_str().unwrap(),
    );
    run_contained(who, &fx, &script);
}

sandbox_test!(host_processes_are_invisible);
fn host_processes_are_invisible(who: Who) {
    let fx = Fixture::new();
    let me = std::process::id();
    let script = format!(
        r#"
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("pids", pids)
print("BREACH many pids") if len(pids) > 5 else print("denied host pids hidden")
print("BREACH host pid visible") if {me} in pids and {me} > 10 else print("denied test pid not visible")
denied("signal test process", lambda: os.kill({me}, 0), {{errno.ESRCH, errno.EPERM}})
print("BREACH hostname") if socket.gethostname() != "csc-sandbox" else print("denied own uts")
"#
    );
    run_contained(who, &fx, &script);
}

sandbox_test!(environment_and_descriptors_do_not_leak);
fn environment_and_descriptors_do_not_leak(who: Who) {
    use std::os::fd::AsFd;
    // A descriptor without close-on-exec in the test process: inherited by
    // csc, it must not reach the target.
    let file = std::fs::File::open("/etc/hostname").unwrap();
    // F_DUPFD (not F_DUPFD_CLOEXEC): the duplicate is inherited on exec.
    let raw = nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_DUPFD(77)).unwrap();
    assert!(raw >= 77);
    let fx = Fixture::new();
    let script = format!(
        r#"
keys = sorted(os.environ.keys())
print("env", keys)
print("BREACH env" if set(keys) - {{"PATH", "LANG", "LC_CTYPE"}} else "denied env exact")
print("BREACH secret in env" if any("host-secret" in v for v in os.environ.values()) else "denied no host secret")
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
print("fds", fds)
print("BREACH leaked fd" if {raw} in fds or any(f > 3 for f in fds) else "denied no extra fds")
"#
    );
    run_contained(who, &fx, &script);
    nix::unistd::close(raw).unwrap();
}

sandbox_test!(every_segment_starts_with_default_signal_state);
/// Init blocks SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGCHLD and csc's runtime
/// ignores SIGPIPE; the segment start (`sys::spawn_exec`, a child sharing
/// init's memory until `execve`) must hand every target an empty signal
/// mask, no ignored signal, the seccomp filter, and no descriptor above 2.
fn every_segment_starts_with_default_signal_state(who: Who) {
    let fx = Fixture::new();
    let grep = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["/usr/bin/grep", "-h", "-E", "^(SigBlk|SigIgn|Seccomp):"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push("/proc/self/status".into());
        v
    };
    let ls = sh("cat; ls /proc/self/fd/ | tr '\\n' ' '; echo");
    // Three segments: the middle one reads the first one's lines from its
    // stdin (`-`), then its own status; the last lists its descriptors.
    let spec = fx.spec(vec![grep(&[]), grep(&["-"]), ls], "deny");
    let r = run(who, &fx, spec, json!({}), None);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{r:?}");
    for l in &lines[..6] {
        let (k, v) = l.split_once(':').unwrap();
        let want = if k == "Seccomp" {
            "2"
        } else {
            "0000000000000000"
        };
        assert_eq!(v.trim(), want, "{who:?}: {k} of a segment: {r:?}");
    }
    // ls's own directory descriptor (3) is the only one above stdio.
    assert_eq!(lines[6].trim(), "0 1 2 3", "{who:?}: {r:?}");
}

sandbox_test!(privileges_are_dropped);
fn privileges_are_dropped(who: Who) {
    let fx = Fixture::new();
    let script = r#"
st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]:
    v = int(st[k].strip(), 16)
    print("BREACH", k, hex(v)) if v else print("denied", k, "empty")
print("BREACH nnp") if st["NoNewPrivs"].strip() != "1" else print("denied no_new_privs set")
print("BREACH seccomp") if st["Seccomp"].strip() != "2" else print("denied seccomp filter mode")
print("BREACH session") if os.getsid(0) != os.getsid(1) else print("denied own session")
other = 1000 if os.getuid() == 0 else 0
denied("setuid", lambda: os.setuid(other), {errno.EPERM, errno.EINVAL})
denied("setgid", lambda: os.setgid(other), {errno.EPERM, errno.EINVAL})
denied("setgroups", lambda: os.setgroups([0]), {errno.EPERM})
"#;
    let r = run(who, &fx, fx.spec(vec![py(script)], "deny"), json!({}), None);
    r.assert_contained(&format!("{who:?}"));
}

sandbox_test!(rlimits_are_applied_and_cannot_be_raised);
fn rlimits_are_applied_and_cannot_be_raised(who: Who) {
    let fx = Fixture::new();
    let script = r#"
want = {"RLIMIT_NOFILE": 200, "RLIMIT_CPU": 30, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": 1 << 20, "RLIMIT_NPROC": 377, "RLIMIT_AS": 2 << 30}
for k, v in want.items():
    got = resource.getrlimit(getattr(resource, k))
    print("BREACH", k, got) if got != (v, v) else print("denied", k, "=", v)
    denied("raise " + k, lambda k=k, v=v: resource.setrlimit(getattr(resource, k), (v + 1, v + 1)))
denied("big file", lambda: open("/tmp/big", "wb").write(b"x" * (2 << 20)))
"#;
    let config = json!({"rlimits": {"open_files": 200, "cpu_seconds": 30, "file_size_bytes": 1048576, "processes": 377, "address_space_bytes": 2147483648u64}});
    let r = run(who, &fx, fx.spec(vec![py(script)], "deny"), config, None);
    r.assert_contained(&format!("{who:?}"));
}

sandbox_test!(terminal_injection_ioctls_are_denied);
fn terminal_injection_ioctls_are_denied(who: Who) {
    let fx = Fixture::new();
    // Without the filter these would fail with ENOTTY (fd 0 is
    // /dev/null); EPERM proves seccomp caught them.
    let script = r#"
import fcntl, termios
denied("TIOCSTI", lambda: fcntl.ioctl(0, termios.TIOCSTI, b"x"), {errno.EPERM})
denied("TIOCLINUX", lambda: fcntl.ioctl(0, 0x541C, b"\x00" * 8), {errno.EPERM})
denied("TIOCSTI high bits", lambda: raise_sc(16, 0, (1 << 32) | 0x5412, b"x"), {errno.EPERM})
try:
    fcntl.ioctl(0, termios.TCGETS, b"\x00" * 64)
    print("FAIL TCGETS on /dev/null succeeded")
except OSError as e:
    print("allowed TCGETS reaches the kernel", name(e.errno)) if e.errno == errno.ENOTTY else print("FAIL TCGETS", name(e.errno))
"#;
    let r = run(who, &fx, fx.spec(vec![py(script)], "deny"), json!({}), None);
    r.assert_contained(&format!("{who:?}"));
}

sandbox_test!(every_seccomp_denied_family_returns_eperm);
fn every_seccomp_denied_family_returns_eperm(who: Who) {
    if !cfg!(target_arch = "x86_64") {
        support::require::skip_or_fail("syscall numbers in this test are x86_64");
        return;
    }
    let fx = Fixture::new();
    let script = r#"
NR = {"mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "move_mount": 429, "open_tree": 428,
      "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "open_tree_attr": 467,
      "unshare": 272, "setns": 308, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
      "pidfd_getfd": 438, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "bpf": 321,
      "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249, "userfaultfd": 323,
      "open_by_handle_at": 304, "name_to_handle_at": 303, "kexec_load": 246, "kexec_file_load": 320,
      "init_module": 175, "finit_module": 313, "delete_module": 176, "acct": 163, "swapon": 167, "swapoff": 168,
      "reboot": 169, "syslog": 103, "quotactl": 179, "quotactl_fd": 443, "uselib": 134, "lookup_dcookie": 212}
# Arguments chosen so that, unfiltered, most calls would NOT fail with
# EPERM (no-op unshare(0), bad fds, NULL pointers, user-mode userfaultfd).
ARGS = {"unshare": (0,), "setns": (-1, 0), "process_vm_readv": (os.getpid(), 0, 0, 0, 0, 0),
        "process_vm_writev": (os.getpid(), 0, 0, 0, 0, 0), "userfaultfd": (1,), "keyctl": (0, -3, 0),
        "io_uring_setup": (1, 0), "name_to_handle_at": (-100, b"/", 0, 0, 0), "syslog": (0, 0, 0),
        "ptrace": (2, os.getpid(), 0, 0), "bpf": (999, 0, 0), "chroot": (b"/",)}
for n, nr in NR.items():
    args = ARGS.get(n, (0, 0, 0, 0, 0, 0))
    r, e = sc(nr, *args)
    print(("denied" if (r, e) == (-1, errno.EPERM) else "BREACH"), n, r, name(e))
r, e = sc(435, None, 88)
print(("denied" if e == errno.ENOSYS else "BREACH"), "clone3", name(e))
r, e = sc(56, 0x10000000 | 17, 0, 0, 0, 0)
print(("denied" if e == errno.EPERM else "BREACH"), "clone NEWUSER", name(e))
r, e = sc(135, 0x0040000)
print(("denied" if e == errno.EPERM else "BREACH"), "personality ADDR_NO_RANDOMIZE", name(e))
allowed("personality query", lambda: sc(135, 0xffffffff)[0] != -1 or 1/0)
for nr in [39, 0, 1, 59]:
    r, e = sc(0x40000000 | nr)
    print(("denied" if e == errno.EPERM else "BREACH"), "x32", nr, name(e))
allowed("getpid", lambda: sc(39)[0] == os.getpid() or 1/0)
"#;
    let r = run(who, &fx, fx.spec(vec![py(script)], "deny"), json!({}), None);
    r.assert_contained(&format!("{who:?}"));
}

sandbox_test!(pipelines_cwd_under_tmp_and_exit_status);
fn pipelines_cwd_under_tmp_and_exit_status(who: Who) {
    let fx = Fixture::new();
    // cwd is under the host's /tmp (the fixture lives there).
    let mut spec = fx.spec(
        vec![
            sh("echo hello; cat /dev/stdin"),
            vec!["/usr/bin/tr".into(), "a-z".into(), "A-Z".into()],
            sh("cat; pwd; ls"),
        ],
        "deny",
    );
    spec["cwd"] = json!(fx.data);
    let r = run(who, &fx, spec, json!({}), None);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        format!("HELLO\n{}\nfile.txt\n", fx.data.display()),
        "{r:?}"
    );

    let spec = fx.spec(
        vec![
            sh("exit 3"),
            sh("cat >/dev/null; exit 4"),
            sh("cat >/dev/null"),
        ],
        "deny",
    );
    assert_eq!(run(who, &fx, spec, json!({}), None).code, 3);
    let spec = fx.spec(vec![sh("true"), sh("kill -TERM $$")], "deny");
    assert_eq!(run(who, &fx, spec, json!({}), None).code, 128 + 15);
    // SIGPIPE is back to default for targets (the Rust runtime ignores
    // it in the helper): `yes` dies of it, status 128+13.
    let spec = fx.spec(
        vec![
            vec!["/usr/bin/yes".into()],
            vec!["/usr/bin/head".into(), "-n2".into()],
        ],
        "deny",
    );
    let r = run(who, &fx, spec, json!({}), None);
    assert_eq!((r.code, r.stdout.as_str()), (141, "y\ny\n"), "{r:?}");
    let spec = fx.spec(vec![vec!["/nonexistent/binary".into()]], "deny");
    let r = run(who, &fx, spec, json!({}), None);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("execve"), "{r:?}");
}

sandbox_test!(setup_failures_are_reported_never_run_unconfined);
fn setup_failures_are_reported_never_run_unconfined(who: Who) {
    let fx = Fixture::new();
    let marker = fx.out.join("ran");
    let argv = sh(&format!("touch {}", marker.display()));
    // Require a Landlock ABI no kernel has: must refuse, not downgrade.
    let r = run(
        who,
        &fx,
        fx.spec(vec![argv.clone()], "deny"),
        json!({"min_landlock_abi": 999}),
        None,
    );
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("landlock"), "{r:?}");
    assert!(!marker.exists(), "command ran despite setup failure");
    // allowlisted network is refused with a clear error.
    let r = run(
        who,
        &fx,
        fx.spec(vec![argv], "allowlisted"),
        json!({}),
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("allowlisted"), "{r:?}");
    assert!(!marker.exists());
}
