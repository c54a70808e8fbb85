//! The egress proxy with real clients, outside any sandbox: connections
//! are accepted by a test listener and handed to the proxy as descriptors,
//! exactly as the in-sandbox bridge does. Destinations are loopback
//! servers started here; names map to them through the test-only
//! resolver override, and 127.0.0.0/8 is opened with a CIDR where the
//! test wants a connection to succeed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csc::egress::EgressConfig;
use csc::egress::log::{Entry, Verdict};
use csc::egress::proxy::ProxyServer;
use csc::egress::sni::build_client_hello;
use csc::sandbox::bridge;

/// A loopback origin: answers any HTTP request with a fixed body and
/// records every byte it received per connection.
struct Origin {
    port: u16,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn origin() -> Origin {
    origin_on(TcpListener::bind("127.0.0.1:0").unwrap())
}

fn origin_on(l: TcpListener) -> Origin {
    let port = l.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let rec = received.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let rec = rec.clone();
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut got = Vec::new();
                let mut b = [0u8; 4096];
                let idx = {
                    let mut r = rec.lock().unwrap();
                    r.push(Vec::new());
                    r.len() - 1
                };
                loop {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            got.extend_from_slice(&b[..n]);
                            rec.lock().unwrap()[idx] = got.clone();
                            if got.windows(4).any(|w| w == b"\r\n\r\n") && got.starts_with(b"GET") {
                                let body = "hello from origin\n";
                                let _ = write!(
                                    c,
                                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                    body.len()
                                );
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    Origin { port, received }
}

struct Proxy {
    server: Option<ProxyServer>,
    port: u16,
}

impl Proxy {
    fn finish(&mut self) -> Vec<Entry> {
        self.server.take().unwrap().finish().entries
    }
}

fn proxy(allow: &[String], cidr: &[&str]) -> Proxy {
    let cfg = EgressConfig {
        allow: allow.to_vec(),
        allow_cidr: cidr.iter().map(|s| s.to_string()).collect(),
        test_resolve: vec!["svc.test=127.0.0.1".into(), "other.test=127.0.0.1".into()],
    };
    let (ours, theirs) = bridge::channel().unwrap();
    let server =
        ProxyServer::start(cfg.compile().unwrap(), "cmd-1", ours, bridge::recv_fd).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            if bridge::send_fd(&theirs, &c).is_err() {
                return;
            }
        }
    });
    Proxy {
        server: Some(server),
        port,
    }
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn one(entries: &[Entry]) -> &Entry {
    assert_eq!(entries.len(), 1, "{entries:#?}");
    &entries[0]
}

#[test]
fn plain_http_allowed_and_logged() {
    let o = origin();
    let mut p = proxy(&[format!("svc.test:{}", o.port)], &["127.0.0.0/8"]);
    let px = format!("http://127.0.0.1:{}", p.port);
    let (code, out) = curl(&["-x", &px, &format!("http://SVC.test.:{}/a?b=c", o.port)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello from origin"), "{out}");
    let e = p.finish();
    let e = one(&e);
    assert_eq!(e.verdict, Verdict::Allowed);
    assert_eq!(e.proto, "http_forward");
    assert_eq!(e.host, "svc.test");
    assert_eq!(e.port, o.port);
    assert_eq!(
        e.resolved.as_deref(),
        Some(format!("127.0.0.1:{}", o.port).as_str())
    );
    assert_eq!(e.command_id, "cmd-1");
    assert!(e.bytes_down > 0 && e.bytes_up > 0);
    // The origin saw an origin-form request with the checked Host.
    let got = String::from_utf8_lossy(&o.received.lock().unwrap()[0]).into_owned();
    assert!(
        got.starts_with("GET /a?b=c HTTP/1.1\r\nHost: SVC.test.:"),
        "{got}"
    );
    assert!(
        !got.to_ascii_lowercase().contains("proxy-connection"),
        "{got}"
    );
}

#[test]
fn connect_tunnel_allowed() {
    let o = origin();
    let mut p = proxy(&[format!("svc.test:{}", o.port)], &["127.0.0.0/8"]);
    let px = format!("http://127.0.0.1:{}", p.port);
    let (code, out) = curl(&["-p", "-x", &px, &format!("http://svc.test:{}/", o.port)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello from origin"), "{out}");
    let e = p.finish();
    assert_eq!(one(&e).proto, "http_connect");
    assert_eq!(one(&e).verdict, Verdict::Allowed);
}

#[test]
fn denied_host_port_and_ip_literal() {
    let o = origin();
    let mut p = proxy(&[format!("svc.test:{}", o.port)], &["127.0.0.0/8"]);
    let px = format!("http://127.0.0.1:{}", p.port);
    for url in [
        format!("http://other.test:{}/", o.port),
        format!("http://svc.test:{}/", o.port + 1),
        format!("http://127.0.0.1:{}/", o.port),
        format!("http://[::ffff:127.0.0.1]:{}/", o.port),
    ] {
        let (_, out) = curl(&["-x", &px, &url]);
        assert!(out.starts_with("HTTP/1.1 403"), "{url}: {out}");
        assert!(out.contains("X-Csc-Egress-Denied:"), "{out}");
        assert!(!out.contains("hello from origin"), "{out}");
        let (code, out) = curl(&["-p", "-x", &px, &url]);
        assert_ne!(code, 0, "{url}: {out}");
        assert!(out.contains("403"), "{out}");
    }
    assert!(o.received.lock().unwrap().is_empty());
    let e = p.finish();
    assert_eq!(e.len(), 8);
    assert!(
        e.iter()
            .all(|e| e.verdict == Verdict::Denied && e.reason == "not_allowlisted")
    );
    assert!(e.iter().all(|e| e.resolved.is_none()));
}

#[test]
fn address_guard_without_and_with_cidr() {
    let o = origin();
    let allow = [format!("svc.test:{}", o.port)];
    let mut p = proxy(&allow, &[]);
    let px = format!("http://127.0.0.1:{}", p.port);
    let (_, out) = curl(&["-x", &px, &format!("http://svc.test:{}/", o.port)]);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("loopback"), "{out}");
    let e = p.finish();
    assert_eq!(one(&e).reason, "address_guard");
    assert!(o.received.lock().unwrap().is_empty());
    // A CIDR that does not cover the address changes nothing.
    let mut p = proxy(&allow, &["10.0.0.0/8"]);
    let px = format!("http://127.0.0.1:{}", p.port);
    let (_, out) = curl(&["-x", &px, &format!("http://svc.test:{}/", o.port)]);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert_eq!(one(&p.finish()).reason, "address_guard");
    let mut p = proxy(&allow, &["127.0.0.1/32"]);
    let px = format!("http://127.0.0.1:{}", p.port);
    let (code, out) = curl(&["-x", &px, &format!("http://svc.test:{}/", o.port)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(one(&p.finish()).verdict, Verdict::Allowed);
}

#[test]
fn socks5_allowed_and_denied() {
    let o = origin();
    let mut p = proxy(&[format!("svc.test:{}", o.port)], &["127.0.0.0/8"]);
    let sx = format!("127.0.0.1:{}", p.port);
    let (code, out) = curl(&[
        "--socks5-hostname",
        &sx,
        &format!("http://svc.test:{}/", o.port),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello from origin"));
    let (code, out) = curl(&[
        "--socks5-hostname",
        &sx,
        &format!("http://other.test:{}/", o.port),
    ]);
    assert_ne!(code, 0, "{out}");
    // IP literal through SOCKS5 (curl --socks5 resolves locally: 127.0.0.1).
    let (code, out) = curl(&["--socks5", &sx, &format!("http://127.0.0.1:{}/", o.port)]);
    assert_ne!(code, 0, "{out}");
    let e = p.finish();
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!(e[0].verdict, Verdict::Allowed);
    assert_eq!(e[0].proto, "socks5");
    assert_eq!(e[1].reason, "not_allowlisted");
    assert_eq!(e[2].reason, "not_allowlisted");
    assert_eq!(e[2].host, "127.0.0.1");
}

/// CONNECT, then send `hello`; returns what came back before close.
fn connect_and_send(proxy_port: u16, target: &str, hello: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", proxy_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "{}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let _ = s.write_all(hello);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    rest
}

#[test]
fn domain_fronting_is_cut() {
    let o = origin();
    let mut p = proxy(
        &[
            format!("svc.test:{}", o.port),
            format!("other.test:{}", o.port),
        ],
        &["127.0.0.0/8"],
    );
    let target = format!("svc.test:{}", o.port);
    // SNI for another (even allowlisted) name: closed, nothing forwarded.
    connect_and_send(
        p.port,
        &target,
        &build_client_hello(Some("other.test"), false, 1 << 14),
    );
    // Missing SNI on a name tunnel, and ECH.
    connect_and_send(p.port, &target, &build_client_hello(None, false, 1 << 14));
    connect_and_send(
        p.port,
        &target,
        &build_client_hello(Some("svc.test"), true, 100),
    );
    // Matching SNI (fragmented records, different case): forwarded as is.
    let good = build_client_hello(Some("SVC.TEST"), false, 9);
    connect_and_send(p.port, &target, &good);
    let e = p.finish();
    let reasons: Vec<_> = e.iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        ["sni_mismatch", "sni_missing", "ech_refused", "allowed"],
        "{e:#?}"
    );
    assert_eq!(e[0].sni.as_deref(), Some("other.test"));
    let got = o.received.lock().unwrap().clone();
    // Every connection reached the origin (connect happens first), but
    // only the matching ClientHello was forwarded.
    let non_empty: Vec<_> = got.iter().filter(|g| !g.is_empty()).collect();
    assert_eq!(
        non_empty,
        vec![&good],
        "origin received a refused ClientHello"
    );
}

#[test]
fn finish_cuts_idle_tunnels() {
    let o = origin();
    let mut p = proxy(&[format!("svc.test:{}", o.port)], &["127.0.0.0/8"]);
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    write!(s, "CONNECT svc.test:{} HTTP/1.1\r\n\r\n", o.port).unwrap();
    let mut b = [0u8; 39];
    s.read_exact(&mut b).unwrap();
    // The tunnel is idle; finish() must still return.
    let e = p.finish();
    assert_eq!(one(&e).verdict, Verdict::Allowed);
}

#[test]
fn port_443_tunnels_must_start_with_tls() {
    let l = match TcpListener::bind("127.0.0.1:443") {
        Ok(l) => l,
        Err(e) => {
            if std::env::var_os("CSC_REQUIRE_SANDBOX").is_some_and(|v| v == "1") {
                panic!("CSC_REQUIRE_SANDBOX=1 but 127.0.0.1:443 cannot be bound (needs root): {e}");
            }
            eprintln!("SKIP: port_443_tunnels_must_start_with_tls: cannot bind 127.0.0.1:443: {e}");
            return;
        }
    };
    let o = origin_on(l);
    let mut p = proxy(&["svc.test".to_string()], &["127.0.0.0/8"]);
    connect_and_send(
        p.port,
        "svc.test:443",
        b"GET / HTTP/1.1\r\nHost: svc.test\r\n\r\n",
    );
    let good = build_client_hello(Some("svc.test"), false, 1 << 14);
    connect_and_send(p.port, "svc.test:443", &good);
    let e = p.finish();
    let reasons: Vec<_> = e.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["tls_required", "allowed"], "{e:#?}");
    let got = o.received.lock().unwrap().clone();
    let non_empty: Vec<_> = got.iter().filter(|g| !g.is_empty()).collect();
    assert_eq!(non_empty, vec![&good]);
}

#[test]
fn plain_http_in_a_tunnel_cannot_pick_another_virtual_host() {
    let o = origin();
    let mut p = proxy(&[format!("svc.test:{}", o.port)], &["127.0.0.0/8"]);
    let target = format!("svc.test:{}", o.port);
    let back = connect_and_send(
        p.port,
        &target,
        b"GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\nGET /y HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&back).contains("hello from origin"));
    let e = p.finish();
    assert_eq!(one(&e).verdict, Verdict::Allowed);
    let got = String::from_utf8_lossy(&o.received.lock().unwrap()[0]).into_owned();
    assert!(
        got.starts_with(&format!("GET /x HTTP/1.1\r\nHost: svc.test:{}\r\n", o.port)),
        "{got}"
    );
    // Only the first request was forwarded, with the tunnel's Host.
    assert!(!got.contains("evil") && !got.contains("/y"), "{got}");
}
