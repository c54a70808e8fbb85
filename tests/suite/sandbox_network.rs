//! Network containment: host loopback TCP/UDP and host abstract Unix
//! sockets are unreachable with `network: deny`; `full` shares the host
//! network but still scopes abstract sockets; `allowlisted` without an
//! egress allowlist is refused (with one: tests/suite/egress_sandbox.rs).

use crate::support;

use std::net::{TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

use serde_json::json;
use support::{Fixture, Who, py, run, sandbox_test};

struct HostListeners {
    tcp: TcpListener,
    udp: UdpSocket,
    unix: UnixListener,
    abstract_name: String,
}

impl HostListeners {
    fn new() -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let abstract_name = format!(
            "csc-test-{}-{}",
            std::process::id(),
            tcp.local_addr().unwrap().port()
        );
        let unix = UnixListener::bind_addr(
            &SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap(),
        )
        .unwrap();
        unix.set_nonblocking(true).unwrap();
        HostListeners {
            tcp,
            udp,
            unix,
            abstract_name,
        }
    }

    fn script_vars(&self) -> String {
        format!(
            "TCP = {}\nUDP = {}\nABSTRACT = {:?}\n",
            self.tcp.local_addr().unwrap().port(),
            self.udp.local_addr().unwrap().port(),
            format!("\0{}", self.abstract_name),
        )
    }

    fn tcp_accepted(&self) -> bool {
        self.tcp.accept().is_ok()
    }
    fn udp_received(&self) -> bool {
        let mut b = [0u8; 64];
        self.udp.recv_from(&mut b).is_ok()
    }
    fn unix_accepted(&self) -> bool {
        self.unix.accept().is_ok()
    }
}

const CLIENT: &str = r#"
def tcp_connect(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.settimeout(2); s.connect((host, port)); s.send(b"hi")
def unix_connect(addr):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(addr)
def udp_send(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"hi", (host, port))
"#;

sandbox_test!(denied_network_cannot_reach_host_loopback_or_abstract_sockets);
fn denied_network_cannot_reach_host_loopback_or_abstract_sockets(who: Who) {
    let fx = Fixture::new();
    let host = HostListeners::new();
    let script = format!(
        r#"{vars}{CLIENT}
ifs = [n for _, n in socket.if_nameindex()]
print("BREACH interfaces", ifs) if ifs != ["lo"] else print("denied only lo")
denied("tcp connect host loopback", lambda: tcp_connect("127.0.0.1", TCP))
denied("tcp connect external", lambda: tcp_connect("10.0.0.1", 80))
denied("abstract unix connect", lambda: unix_connect(ABSTRACT))
denied("tcp bind", lambda: socket.socket().bind(("127.0.0.1", 0)), {{errno.EACCES}})
try:
    udp_send("127.0.0.1", UDP); print("denied udp sent into private loopback only")
except OSError as e:
    print("denied udp send", name(e.errno))
denied("udp external", lambda: udp_send("10.0.0.1", 53))
"#,
        vars = host.script_vars()
    );
    // With the Unix-socket opt-in, seccomp lets AF_UNIX through and
    // Landlock's abstract-socket scoping is what holds.
    for config in [json!({}), json!({"allow_unix_sockets": true})] {
        let r = run(who, &fx, fx.spec(vec![py(&script)], "deny"), config, None);
        r.assert_contained(&format!("{who:?}"));
        assert!(!host.tcp_accepted(), "host TCP listener was reached");
        assert!(!host.udp_received(), "host UDP socket received a datagram");
        assert!(!host.unix_accepted(), "host abstract socket was reached");
    }
}

sandbox_test!(full_network_shares_host_network_but_scopes_abstract_sockets);
fn full_network_shares_host_network_but_scopes_abstract_sockets(who: Who) {
    let fx = Fixture::new();
    let host = HostListeners::new();
    let script = format!(
        r#"{vars}{CLIENT}
allowed("tcp connect host loopback (network: full)", lambda: tcp_connect("127.0.0.1", TCP))
denied("abstract unix connect", lambda: unix_connect(ABSTRACT), {{errno.EPERM}})
"#,
        vars = host.script_vars()
    );
    for config in [json!({}), json!({"allow_unix_sockets": true})] {
        let r = run(who, &fx, fx.spec(vec![py(&script)], "full"), config, None);
        r.assert_contained(&format!("{who:?}"));
        assert!(
            host.tcp_accepted(),
            "network: full should reach the host listener"
        );
        assert!(
            !host.unix_accepted(),
            "abstract socket reached despite Landlock scoping"
        );
    }
}

sandbox_test!(allowlisted_network_without_an_allowlist_is_refused);
fn allowlisted_network_without_an_allowlist_is_refused(who: Who) {
    let fx = Fixture::new();
    let r = run(
        who,
        &fx,
        fx.spec(vec![py("")], "allowlisted"),
        json!({}),
        None,
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("allowlisted") && r.stderr.contains("--egress-allow"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("DONE"));
}
