//! `network: allowlisted` in the real sandbox, as root and as uid 65534:
//! real clients (curl, python) inside, loopback HTTP/TLS servers started
//! here on the host, names mapped to them through the proxy's test-only
//! resolver override. Nothing leaves the machine.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Fixture, Run, Who, command, py, sandbox_test, sh};

/// Loopback HTTP origin recording how many connections it accepted.
struct Origin {
    port: u16,
    accepted: Arc<Mutex<usize>>,
}

fn origin() -> Origin {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(0));
    let acc = accepted.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            *acc.lock().unwrap() += 1;
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut got = Vec::new();
                let mut b = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
                let body = "hello from origin\n";
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Origin { port, accepted }
}

/// A python3 `ssl` server with a self-signed certificate for `svc.test`
/// (made with openssl); killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TLS_SERVER: &str = r#"
import ssl, socket, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    try:
        c.settimeout(10)
        t = ctx.wrap_socket(c, server_side=True)
        t.recv(4096)
        body = b"hello over tls\n"
        t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        t.close()
    except Exception:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Certificate for `svc.test` in `dir` (world-readable); returns its path.
fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=svc.test",
            "-addext",
            "subjectAltName=DNS:svc.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).unwrap();
    (cert, key)
}

fn tls_server(cert: &Path, key: &Path) -> TlsServer {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(TLS_SERVER)
        .arg(cert)
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    TlsServer {
        port: line.trim().parse().unwrap(),
        child,
    }
}

fn egress(allow: &[String], cidr: &[&str]) -> Value {
    json!({"egress": {
        "allow": allow,
        "allow_cidr": cidr,
        "test_resolve": ["svc.test=127.0.0.1", "other.test=127.0.0.1"],
    }})
}

/// Run `argv` with `network: allowlisted` through `__sandbox-run`;
/// returns the run and the proxy's log entries.
fn run_allowlisted(who: Who, fx: &Fixture, argv: Vec<String>, config: Value) -> (Run, Vec<Value>) {
    let log = fx.out.join(format!("egress-{}.jsonl", rand()));
    let file = fx.run_file(fx.spec(vec![argv], "allowlisted"), config);
    let out = command(who)
        .args(["__sandbox-run", "--spec"])
        .arg(&file)
        .arg("--egress-log")
        .arg(&log)
        .args(["--timeout-ms", "60000"])
        .stdin(Stdio::null())
        .output()
        .expect("run csc");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let entries = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (run, entries)
}

fn rand() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn line<'a>(r: &'a Run, key: &str) -> &'a str {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line\n{r:?}"))
}

fn reasons(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["host"].as_str().unwrap(),
                e["reason"].as_str().unwrap()
            )
        })
        .collect()
}

sandbox_test!(curl_http_https_and_socks5_allowed_and_denied);
fn curl_http_https_and_socks5_allowed_and_denied(who: Who) {
    let o = origin();
    let fx = Fixture::new();
    let (cert, key) = make_cert(&fx.data);
    let tls = tls_server(&cert, &key);
    let (o, t) = (o.port, tls.port);
    let curl = "curl -sS --max-time 20";
    let script = format!(
        r#"
{curl} http://svc.test:{o}/; echo http=$?
{curl} --cacert {cert} https://svc.test:{t}/; echo https=$?
echo other=$({curl} -o /dev/null -w '%{{http_code}}' http://other.test:{o}/)
echo port=$({curl} -o /dev/null -w '%{{http_code}}' http://svc.test:{p}/)
echo literal=$({curl} -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{o}/)
{curl} -i http://other.test:{o}/ | grep -i '^x-csc-egress-denied' | tr -d '\r'
{curl} --socks5-hostname 127.0.0.1:3128 http://svc.test:{o}/; echo socks=$?
{curl} --socks5-hostname 127.0.0.1:3128 http://other.test:{o}/; echo socks_denied=$?
env -u http_proxy -u HTTP_PROXY {curl} http://svc.test:{o}/; echo all_proxy=$?
"#,
        cert = cert.display(),
        p = o + 1,
    );
    let (r, log) = run_allowlisted(
        who,
        &fx,
        sh(&script),
        egress(
            &[format!("svc.test:{o}"), format!("svc.test:{t}")],
            &["127.0.0.0/8"],
        ),
    );
    let ctx = format!("{who:?}: {r:?}");
    assert_eq!(r.code, 0, "{ctx}");
    assert_eq!(line(&r, "http"), "0", "{ctx}");
    assert_eq!(line(&r, "https"), "0", "{ctx}");
    assert!(r.stdout.contains("hello from origin"), "{ctx}");
    assert!(r.stdout.contains("hello over tls"), "{ctx}");
    assert_eq!(line(&r, "other"), "403", "{ctx}");
    assert_eq!(line(&r, "port"), "403", "{ctx}");
    assert_eq!(line(&r, "literal"), "403", "{ctx}");
    assert!(
        r.stdout
            .to_ascii_lowercase()
            .contains("x-csc-egress-denied: other.test"),
        "{ctx}"
    );
    assert_eq!(line(&r, "socks"), "0", "{ctx}");
    assert_ne!(line(&r, "socks_denied"), "0", "{ctx}");
    assert_eq!(line(&r, "all_proxy"), "0", "{ctx}");
    let got = reasons(&log);
    let want = [
        "svc.test:allowed".to_string(),
        "svc.test:allowed".into(),
        "other.test:not_allowlisted".into(),
        "svc.test:not_allowlisted".into(),
        "127.0.0.1:not_allowlisted".into(),
        "other.test:not_allowlisted".into(),
        "svc.test:allowed".into(),
        "other.test:not_allowlisted".into(),
        "svc.test:allowed".into(),
    ];
    assert_eq!(got, want, "{who:?}: {log:#?}");
    assert_eq!(log[1]["sni"], "svc.test");
    assert_eq!(log[1]["proto"], "http_connect");
    assert_eq!(log[6]["proto"], "socks5");
    assert_eq!(log[0]["resolved"], format!("127.0.0.1:{o}"));
    assert!(log[1]["bytes_down"].as_u64().unwrap() > 0);
}

const FRONTING: &str = r#"
import ssl
def tunnel(sni, target):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = s.recv(1)
        if not b: raise OSError("proxy closed")
        head += b
    if not head.startswith(b"HTTP/1.1 200"): raise OSError(head.decode())
    ctx = ssl.create_default_context(cafile=CERT)
    ctx.check_hostname = False
    t = ctx.wrap_socket(s, server_hostname=sni)
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return t.recv(4096)
allowed("matching SNI", lambda: tunnel("svc.test", TARGET))
denied("fronted SNI", lambda: tunnel("other.test", TARGET))
"#;

sandbox_test!(domain_fronting_through_connect_is_cut);
fn domain_fronting_through_connect_is_cut(who: Who) {
    let fx = Fixture::new();
    let (cert, key) = make_cert(&fx.data);
    let tls = tls_server(&cert, &key);
    let target = format!("svc.test:{}", tls.port);
    let script = format!(
        "CERT = {:?}\nTARGET = {target:?}\n{FRONTING}",
        cert.display().to_string()
    );
    // other.test is allowlisted too: fronting between two allowed
    // names is still refused (the tunnel was opened for svc.test).
    let (r, log) = run_allowlisted(
        who,
        &fx,
        py(&script),
        egress(
            &[target.clone(), format!("other.test:{}", tls.port)],
            &["127.0.0.0/8"],
        ),
    );
    r.assert_contained(&format!("{who:?} fronting"));
    assert_eq!(
        reasons(&log),
        ["svc.test:allowed", "svc.test:sni_mismatch"],
        "{who:?}: {log:#?}"
    );
    assert_eq!(log[1]["sni"], "other.test");
    assert_eq!(log[1]["verdict"], "denied");
}

sandbox_test!(address_guard_without_and_with_cidr);
fn address_guard_without_and_with_cidr(who: Who) {
    let o = origin();
    let fx = Fixture::new();
    let script = format!(
        "echo code=$(curl -sS --max-time 20 -o /dev/null -w '%{{http_code}}' http://svc.test:{}/)",
        o.port
    );
    let before = *o.accepted.lock().unwrap();
    let allow = [format!("svc.test:{}", o.port)];
    for (cidr, want, reason) in [
        (&[][..], "403", "address_guard"),
        (&["10.0.0.0/8"][..], "403", "address_guard"),
        (&["127.0.0.1/32"][..], "200", "allowed"),
    ] {
        let (r, log) = run_allowlisted(who, &fx, sh(&script), egress(&allow, cidr));
        assert_eq!(line(&r, "code"), want, "{who:?} {cidr:?}: {r:?}");
        assert_eq!(log.len(), 1, "{log:#?}");
        assert_eq!(log[0]["reason"], reason, "{who:?} {cidr:?}: {log:#?}");
    }
    // Only the run with the CIDR reached the origin.
    assert_eq!(*o.accepted.lock().unwrap(), before + 1);
}

sandbox_test!(direct_connections_udp_and_dns_fail);
fn direct_connections_udp_and_dns_fail(who: Who) {
    let o = origin();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let fx = Fixture::new();
    let script = format!(
        r#"
HOST_TCP = {o}
HOST_UDP = {u}
def tcp(host, port, fam=socket.AF_INET):
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(5); s.connect((host, port))
def bind_tcp():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
# Landlock: connect only to the proxy port; nothing listens elsewhere,
# and the kernel says EACCES (Landlock) before ECONNREFUSED.
denied("direct tcp to the host origin", lambda: tcp("127.0.0.1", HOST_TCP), [errno.EACCES])
denied("direct tcp to another port", lambda: tcp("127.0.0.1", 9), [errno.EACCES])
denied("direct tcp over ipv6", lambda: tcp("::1", HOST_TCP, socket.AF_INET6))
denied("tcp listener", bind_tcp, [errno.EACCES])
denied("dns", lambda: socket.getaddrinfo("svc.test", 80))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"hi", ("127.0.0.1", HOST_UDP))
except OSError:
    pass
allowed("proxy port", lambda: tcp("127.0.0.1", 3128))
"#,
        o = o.port,
        u = udp.local_addr().unwrap().port()
    );
    let before = *o.accepted.lock().unwrap();
    let (r, log) = run_allowlisted(
        who,
        &fx,
        py(&script),
        egress(&[format!("svc.test:{}", o.port)], &["127.0.0.0/8"]),
    );
    r.assert_contained(&format!("{who:?} direct"));
    assert_eq!(
        *o.accepted.lock().unwrap(),
        before,
        "a direct connection reached the host"
    );
    let mut b = [0u8; 16];
    assert!(udp.recv_from(&mut b).is_err(), "UDP reached the host");
    // The positive control connected to the bridge and sent nothing.
    assert!(log.is_empty(), "{log:#?}");
}

/// Socket inodes held by `pid` and its descendants.
fn socket_inodes(pid: u32, out: &mut Vec<String>) {
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let t = t.display().to_string();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    out.push(i.to_string());
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace() {
                if let Ok(k) = k.parse() {
                    socket_inodes(k, out);
                }
            }
        }
    }
}

/// Inodes of TCP sockets listening in the test's (the host's) network
/// namespace.
fn host_listening_inodes() -> Vec<String> {
    let mut v = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for l in std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "0A" {
                v.push(cols[9].to_string());
            }
        }
    }
    v
}

sandbox_test!(no_host_tcp_listener_while_serving);
fn no_host_tcp_listener_while_serving(who: Who) {
    let o = origin();
    let fx = Fixture::new();
    let ready = fx.out.join("ready");
    let go = fx.out.join("go");
    let script = format!(
        "curl -sS --max-time 20 http://svc.test:{}/ && touch {r}; i=0; while [ ! -e {g} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo done",
        o.port,
        r = ready.display(),
        g = go.display()
    );
    let file = fx.run_file(
        fx.spec(vec![sh(&script)], "allowlisted"),
        egress(&[format!("svc.test:{}", o.port)], &["127.0.0.0/8"]),
    );
    let child = command(who)
        .args(["__sandbox-run", "--spec"])
        .arg(&file)
        .args(["--timeout-ms", "60000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = 0;
    while !ready.exists() && waited < 600 {
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    assert!(
        ready.exists(),
        "{who:?}: the sandboxed curl never succeeded"
    );
    let mut mine = Vec::new();
    socket_inodes(child.id(), &mut mine);
    let listening = host_listening_inodes();
    let leaked: Vec<_> = mine.iter().filter(|i| listening.contains(i)).collect();
    std::fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{who:?}: {out:?}");
    assert!(
        !mine.is_empty(),
        "{who:?}: no sockets found (test is blind)"
    );
    assert!(
        leaked.is_empty(),
        "{who:?}: csc listens on the host: {leaked:?}"
    );
}

/// A python3 `http.server` over `dir`; killed on drop.
struct StaticServer {
    child: Child,
    port: u16,
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn static_server(dir: &Path) -> StaticServer {
    let script = r#"
import http.server, functools, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
h.log_message = lambda *a: None
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    StaticServer {
        port: line.trim().parse().unwrap(),
        child,
    }
}

fn git(args: &[&str], dir: &Path) {
    let st = Command::new("/usr/bin/git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

/// A git repository served over dumb HTTP and a PEP 503 simple index
/// with one wheel, both below `root`.
fn make_repo_and_index(root: &Path) {
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&["init", "-q", "-b", "main"], &src);
    std::fs::write(src.join("README"), "cloned through the egress proxy\n").unwrap();
    git(&["add", "README"], &src);
    git(&["commit", "-q", "-m", "init"], &src);
    git(&["clone", "-q", "--bare", "src", "repo.git"], root);
    git(&["update-server-info"], &root.join("repo.git"));
    let wheel = r#"
import zipfile, sys
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("demo/__init__.py", "")
    z.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
    z.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("demo-1.0.dist-info/RECORD", "demo/__init__.py,,\ndemo-1.0.dist-info/METADATA,,\ndemo-1.0.dist-info/WHEEL,,\ndemo-1.0.dist-info/RECORD,,\n")
"#;
    std::fs::create_dir_all(root.join("files")).unwrap();
    std::fs::create_dir_all(root.join("simple/demo")).unwrap();
    let st = Command::new("python3")
        .args(["-c", wheel])
        .arg(root.join("files/demo-1.0-py3-none-any.whl"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        root.join("simple/demo/index.html"),
        "<html><body><a href=\"../../files/demo-1.0-py3-none-any.whl\">demo-1.0-py3-none-any.whl</a></body></html>\n",
    )
    .unwrap();
}

sandbox_test!(git_clone_and_pip_download_through_the_proxy);
fn git_clone_and_pip_download_through_the_proxy(who: Who) {
    let root = tempfile::tempdir().unwrap();
    make_repo_and_index(root.path());
    let srv = static_server(root.path());
    let fx = Fixture::new();
    let p = srv.port;
    let script = format!(
        r#"
export HOME=/tmp
/usr/bin/git clone -q http://repo.test:{p}/repo.git /tmp/clone && cat /tmp/clone/README; echo git=$?
/usr/bin/python3 -m pip download -q --no-cache-dir --disable-pip-version-check --no-deps \
    --trusted-host repo.test --index-url http://repo.test:{p}/simple/ -d /tmp/dl demo && ls /tmp/dl; echo pip=$?
/usr/bin/git clone -q http://other.test:{p}/repo.git /tmp/clone2; echo git_denied=$?
"#
    );
    let mut spec = fx.spec(vec![sh(&script)], "allowlisted");
    spec["env"] = json!([["PATH", "/usr/bin:/bin"], ["LANG", "C.UTF-8"]]);
    let mut cfg = egress(&[format!("repo.test:{p}")], &["127.0.0.0/8"]);
    cfg["egress"]["test_resolve"] = json!(["repo.test=127.0.0.1", "other.test=127.0.0.1"]);
    let log = fx.out.join("git-pip.jsonl");
    let file = fx.run_file(spec, cfg);
    let out = command(who)
        .args(["__sandbox-run", "--spec"])
        .arg(&file)
        .arg("--egress-log")
        .arg(&log)
        .args(["--timeout-ms", "120000"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(line(&r, "git"), "0", "{who:?}: {r:?}");
    assert!(
        r.stdout.contains("cloned through the egress proxy"),
        "{r:?}"
    );
    assert_eq!(line(&r, "pip"), "0", "{who:?}: {r:?}");
    assert!(r.stdout.contains("demo-1.0-py3-none-any.whl"), "{r:?}");
    assert_ne!(line(&r, "git_denied"), "0", "{r:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("\"other.test\"") && text.contains("not_allowlisted"),
        "{text}"
    );
}
