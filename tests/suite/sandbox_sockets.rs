//! Socket families (issue 8 item 5): `socket(2)` creates only what the run
//! needs. A host daemon's pathname socket inside a read scope, `AF_VSOCK`
//! (the host's port space on a VM), uevent/diag netlink, `AF_ALG`, ... are
//! out of reach; loopback inside the private network namespace,
//! `socketpair`, and name resolution keep working.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::{Fixture, Who, csc, py, run, sandbox_test};

/// A "host daemon": stream and datagram sockets in the read scope, open to
/// every uid (only the sandbox stands between them and the command).
struct HostDaemon {
    stream: UnixListener,
    dgram: UnixDatagram,
    stream_path: String,
    dgram_path: String,
}

impl HostDaemon {
    fn new(dir: &Path) -> Self {
        let stream_path = dir.join("daemon.sock");
        let dgram_path = dir.join("daemon.dgram");
        let stream = UnixListener::bind(&stream_path).unwrap();
        stream.set_nonblocking(true).unwrap();
        let dgram = UnixDatagram::bind(&dgram_path).unwrap();
        dgram.set_nonblocking(true).unwrap();
        for p in [&stream_path, &dgram_path] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        HostDaemon {
            stream,
            dgram,
            stream_path: stream_path.display().to_string(),
            dgram_path: dgram_path.display().to_string(),
        }
    }

    fn vars(&self) -> String {
        format!(
            "STREAM = {:?}\nDGRAM = {:?}\n",
            self.stream_path, self.dgram_path
        )
    }

    fn reached(&self) -> bool {
        let mut b = [0u8; 16];
        self.stream.accept().is_ok() || self.dgram.recv(&mut b).is_ok()
    }
}

const HOSTILE: &str = r#"
EAFNO = {errno.EAFNOSUPPORT}
def unix_connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(STREAM)
def unix_dgram_send():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b"x", DGRAM)
def pair_dgram_sendto():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM); a.sendto(b"x", DGRAM)
denied("AF_UNIX connect to a host daemon in a read scope", unix_connect, {errno.EPERM})
denied("AF_UNIX datagram to a host daemon in a read scope", unix_dgram_send, {errno.EPERM})
denied("socketpair(SOCK_DGRAM) sendto a host daemon", pair_dgram_sendto, {errno.EPERM})
for fam, ty, what in [
    (40, socket.SOCK_STREAM, "AF_VSOCK"),
    (17, socket.SOCK_RAW, "AF_PACKET"),
    (38, socket.SOCK_SEQPACKET, "AF_ALG"),
    (31, socket.SOCK_STREAM, "AF_BLUETOOTH"),
    (30, socket.SOCK_RDM, "AF_TIPC"),
    (15, socket.SOCK_RAW, "AF_KEY"),
    (29, socket.SOCK_RAW, "AF_CAN"),
    (44, socket.SOCK_RAW, "AF_XDP"),
    (21, socket.SOCK_SEQPACKET, "AF_RDS"),
    (42, socket.SOCK_DGRAM, "AF_QIPCRTR"),
    (5, socket.SOCK_DGRAM, "AF_APPLETALK"),
]:
    denied(what, lambda fam=fam, ty=ty: socket.socket(fam, ty), EAFNO)
    denied(what + " via socketpair", lambda fam=fam, ty=ty: socket.socketpair(fam, ty), EAFNO)
for proto, what in [(15, "NETLINK_KOBJECT_UEVENT"), (4, "NETLINK_SOCK_DIAG"), (9, "NETLINK_AUDIT"),
                    (16, "NETLINK_GENERIC"), (12, "NETLINK_NETFILTER"), (6, "NETLINK_XFRM")]:
    denied(what, lambda proto=proto: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto),
           {errno.EPROTONOSUPPORT})
# Positive controls: what ordinary tools need.
def udp_loopback():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    s.sendto(b"ping", s.getsockname()); assert s.recv(4) == b"ping"
allowed("AF_INET UDP over the sandbox's loopback", udp_loopback)
allowed("AF_INET6 socket", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close())
def pair(ty):
    a, b = socket.socketpair(socket.AF_UNIX, ty); a.send(b"x"); assert b.recv(1) == b"x"
allowed("socketpair(SOCK_STREAM)", lambda: pair(socket.SOCK_STREAM))
allowed("socketpair(SOCK_SEQPACKET)", lambda: pair(socket.SOCK_SEQPACKET))
allowed("NETLINK_ROUTE socket", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close())
allowed("getaddrinfo localhost", lambda: socket.getaddrinfo("localhost", 80))
allowed("getaddrinfo localhost AI_ADDRCONFIG",
        lambda: socket.getaddrinfo("localhost", 80, flags=socket.AI_ADDRCONFIG))
allowed("if_nameindex (netlink route)", lambda: socket.if_nameindex())
"#;

sandbox_test!(network_deny_creates_only_the_sockets_the_run_needs);
fn network_deny_creates_only_the_sockets_the_run_needs(who: Who) {
    for network in ["deny", "full"] {
        let fx = Fixture::new();
        let daemon = HostDaemon::new(&fx.data);
        let script = format!("{}{HOSTILE}", daemon.vars());
        let r = run(
            who,
            &fx,
            fx.spec(vec![py(&script)], network),
            json!({}),
            None,
        );
        r.assert_contained(&format!("{who:?} network {network}"));
        assert!(!daemon.reached(), "{who:?} {network}: host daemon reached");
    }
}

sandbox_test!(unix_sockets_are_an_operator_opt_in);
fn unix_sockets_are_an_operator_opt_in(who: Who) {
    let fx = Fixture::new();
    let daemon = HostDaemon::new(&fx.data);
    let outside = HostDaemon::new(&fx.secret);
    let script = format!(
        r#"{vars}OUTSIDE = {outside:?}
def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
allowed("AF_UNIX connect to a socket in a read scope (opt-in)", lambda: connect(STREAM))
denied("AF_UNIX connect to a socket outside every scope", lambda: connect(OUTSIDE))
def pair_dgram():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM); a.send(b"x"); assert b.recv(1) == b"x"
allowed("socketpair(SOCK_DGRAM) (opt-in)", pair_dgram)
denied("AF_VSOCK still refused", lambda: socket.socket(40, socket.SOCK_STREAM), {{errno.EAFNOSUPPORT}})
"#,
        vars = daemon.vars(),
        outside = outside.stream_path,
    );
    let r = run(
        who,
        &fx,
        fx.spec(vec![py(&script)], "deny"),
        json!({"allow_unix_sockets": true}),
        None,
    );
    r.assert_contained(&format!("{who:?}"));
    assert!(
        daemon.stream.accept().is_ok(),
        "{who:?}: opt-in had no effect"
    );
    assert!(
        !outside.reached(),
        "{who:?}: socket outside the scopes reached"
    );
}

fn profile(extra: &[&str]) -> Value {
    let out = Command::new(csc())
        .args(["sandbox-profile", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_socket_policy_is_part_of_the_profile_id() {
    let default = profile(&[]);
    let opt_in = profile(&["--allow-unix-sockets"]);
    assert_ne!(default["sandbox_profile_id"], opt_in["sandbox_profile_id"]);
    let sockets = |p: &Value| p["profile"]["seccomp"]["sockets"].clone();
    assert_eq!(sockets(&default)["allow_unix_sockets"], false);
    assert_eq!(sockets(&opt_in)["allow_unix_sockets"], true);
    assert_eq!(
        sockets(&default)["socket_other_families"],
        "errno EAFNOSUPPORT"
    );
    assert_ne!(
        default["profile"]["seccomp"]["program_sha256"],
        opt_in["profile"]["seccomp"]["program_sha256"]
    );
}
