//! The egress proxy. It serves connections handed to it as descriptors
//! (accepted inside the sandbox by the bridge), one thread per
//! connection, and never listens on the host.
//!
//! Per connection: read the request (HTTP `CONNECT`, absolute-form HTTP,
//! or SOCKS5), check host and port against the allowlist, resolve on the
//! host, check every address with the guard, connect to a checked
//! address, then relay. Tunnels are inspected: when the client's first
//! bytes are a TLS ClientHello its SNI must name the requested host (and
//! ECH is refused); a tunnel to port 443 must start with a ClientHello.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::log::{EgressLog, Entry, Verdict};
use super::pattern::{self, Host};
use super::sni::{self, Hello};
use super::{Denied, Policy, http, socks};

/// How the proxy receives the next connection from its channel: `Ok(None)`
/// once every sender is gone. The sandbox passes its bridge's
/// `SCM_RIGHTS` receiver (`sandbox::bridge::recv_fd`); taking it as a
/// parameter keeps `egress` below `sandbox` in the layering.
pub type RecvFd = fn(&OwnedFd) -> io::Result<Option<OwnedFd>>;

/// Most connections served at once; more are closed immediately.
pub const MAX_CONNECTIONS: usize = 64;
/// Relay buffer per direction.
const RELAY_BUF: usize = 32 * 1024;
/// Time allowed for a client to send its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed per upstream connect attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Stack of connection threads.
const THREAD_STACK: usize = 256 * 1024;

struct Shared {
    policy: Policy,
    command_id: String,
    log: EgressLog,
    active: AtomicUsize,
    next: AtomicU64,
    /// Clones of every live socket, shut down by [`ProxyServer::finish`].
    sockets: Mutex<Vec<(u64, TcpStream)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running proxy for one command.
pub struct ProxyServer {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    channel: Arc<OwnedFd>,
}

/// What the proxy recorded for a command.
#[derive(Debug, Clone)]
pub struct ProxyReport {
    /// Every attempt (bounded).
    pub entries: Vec<Entry>,
    /// Attempts not kept because the log was full.
    pub dropped: u64,
}

impl ProxyServer {
    /// Start serving descriptors received on `channel` (the proxy's end
    /// of the bridge socketpair), each taken with `recv`.
    pub fn start(
        policy: Policy,
        command_id: &str,
        channel: OwnedFd,
        recv: RecvFd,
    ) -> io::Result<ProxyServer> {
        let shared = Arc::new(Shared {
            policy,
            command_id: command_id.to_string(),
            log: EgressLog::default(),
            active: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            sockets: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let channel = Arc::new(channel);
        let (s, c) = (shared.clone(), channel.clone());
        let acceptor = std::thread::Builder::new()
            .name("csc-egress".into())
            .stack_size(THREAD_STACK)
            .spawn(move || accept_loop(s, c, recv))?;
        Ok(ProxyServer {
            shared,
            acceptor: Some(acceptor),
            channel,
        })
    }

    /// Entries recorded so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.shared.log.entries()
    }

    /// Stop: no further connections are taken, live ones are cut, every
    /// thread is joined. Call once the sandbox has exited.
    pub fn finish(mut self) -> ProxyReport {
        self.stop();
        ProxyReport {
            entries: self.shared.log.entries(),
            dropped: self.shared.log.dropped(),
        }
    }

    fn stop(&mut self) {
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&*self.channel),
            nix::sys::socket::Shutdown::Both,
        );
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for (_, s) in lock(&self.shared.sockets).iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = lock(&self.shared.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyServer")
            .field("active", &self.shared.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(shared: Arc<Shared>, channel: Arc<OwnedFd>, recv: RecvFd) {
    loop {
        let fd = match recv(&channel) {
            Ok(Some(fd)) => fd,
            Ok(None) => return,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => return,
        };
        let stream = TcpStream::from(fd);
        if stream.peer_addr().is_err() {
            continue; // not a connected TCP socket
        }
        if shared.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = (&stream).write_all(&http::refusal(503, "too many connections"));
            continue;
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        let id = shared.next.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("csc-egress-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                serve(&s, stream, id);
                s.active.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(h) => {
                let mut t = lock(&shared.threads);
                t.retain(|h| !h.is_finished());
                t.push(h);
            }
            Err(_) => {
                shared.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Serve one accepted client connection; `id` orders the log.
fn serve(shared: &Shared, client: TcpStream, id: u64) {
    if let Ok(c) = client.try_clone() {
        lock(&shared.sockets).push((id, c));
    }
    let mut cx = Conn {
        shared,
        ids: vec![id],
        entry: Entry {
            seq: id,
            time: crate::time::now_rfc3339(),
            command_id: shared.command_id.clone(),
            proto: "http_connect",
            host: String::new(),
            port: 0,
            resolved: None,
            verdict: Verdict::Denied,
            reason: "bad_request",
            detail: String::new(),
            sni: None,
            bytes_up: 0,
            bytes_down: 0,
        },
    };
    let _ = client.set_read_timeout(Some(HEAD_TIMEOUT));
    let logged = cx.handle(&client);
    let _ = client.shutdown(Shutdown::Both);
    if logged {
        shared.log.push(cx.entry.clone());
    }
    lock(&shared.sockets).retain(|(i, _)| !cx.ids.contains(i));
}

struct Conn<'a> {
    shared: &'a Shared,
    ids: Vec<u64>,
    entry: Entry,
}

enum Proto {
    Http,
    Socks,
}

impl Conn<'_> {
    fn deny(&mut self, d: Denied) {
        self.entry.verdict = Verdict::Denied;
        self.entry.reason = d.code;
        self.entry.detail = d.detail;
    }

    /// Returns whether the attempt is worth a log entry (a client that
    /// sent nothing is not).
    fn handle(&mut self, client: &TcpStream) -> bool {
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        if read_more(client, &mut buf, http::MAX_HEAD).unwrap_or(0) == 0 {
            return false;
        }
        let proto = if buf[0] == socks::VERSION {
            Proto::Socks
        } else {
            Proto::Http
        };
        match proto {
            Proto::Http => self.http(client, buf),
            Proto::Socks => self.socks(client, buf),
        }
        true
    }

    fn http(&mut self, client: &TcpStream, mut buf: Vec<u8>) {
        let (req, len) = loop {
            match http::parse(&buf) {
                http::Parsed::NeedMore => match read_more(client, &mut buf, http::MAX_HEAD) {
                    Ok(n) if n > 0 => {}
                    _ => {
                        self.deny(Denied::new("bad_request", "incomplete request head"));
                        return;
                    }
                },
                http::Parsed::Invalid(status, why) => {
                    let _ = (&*client).write_all(&http::refusal(status, &why));
                    self.deny(Denied::new("bad_request", why));
                    return;
                }
                http::Parsed::Request(r, len) => break (r, len),
            }
        };
        let rest = buf.split_off(len);
        match req {
            http::ProxyRequest::Connect { host, port } => {
                self.entry.proto = "http_connect";
                let Some((upstream, host)) = self.open(&host, port, http_refusal, client) else {
                    return;
                };
                if (&*client)
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                self.tunnel(client, upstream, &host, port, rest);
            }
            http::ProxyRequest::Forward { host, port, head } => {
                self.entry.proto = "http_forward";
                let Some((upstream, _)) = self.open(&host, port, http_refusal, client) else {
                    return;
                };
                self.forward(client, upstream, head, rest);
            }
        }
    }

    fn socks(&mut self, client: &TcpStream, mut buf: Vec<u8>) {
        self.entry.proto = "socks5";
        let used = loop {
            match socks::greeting(&buf) {
                socks::Step::NeedMore => {
                    if read_more(client, &mut buf, 1024).unwrap_or(0) == 0 {
                        self.deny(Denied::new("bad_request", "incomplete SOCKS5 greeting"));
                        return;
                    }
                }
                socks::Step::Refuse(_, why) => {
                    self.deny(Denied::new("bad_request", why));
                    return;
                }
                socks::Step::Done(false, _) => {
                    let _ = (&*client).write_all(&[socks::VERSION, 0xff]);
                    self.deny(Denied::new(
                        "bad_request",
                        "SOCKS5 client offers no 'no authentication' method",
                    ));
                    return;
                }
                socks::Step::Done(true, n) => break n,
            }
        };
        buf.drain(..used);
        if (&*client).write_all(&[socks::VERSION, 0]).is_err() {
            return;
        }
        let (target, used) = loop {
            match socks::request(&buf) {
                socks::Step::NeedMore => {
                    if read_more(client, &mut buf, 1024).unwrap_or(0) == 0 {
                        self.deny(Denied::new("bad_request", "incomplete SOCKS5 request"));
                        return;
                    }
                }
                socks::Step::Refuse(code, why) => {
                    let _ = (&*client).write_all(&socks::reply_bytes(code));
                    self.deny(Denied::new("bad_request", why));
                    return;
                }
                socks::Step::Done(t, n) => break (t, n),
            }
        };
        let rest = buf.split_off(used);
        let Some((upstream, host)) = self.open(
            &target.host,
            target.port,
            |d| {
                let code = match d.code {
                    "connect_failed" => socks::reply::REFUSED,
                    "resolve_failed" => socks::reply::HOST_UNREACHABLE,
                    _ => socks::reply::NOT_ALLOWED,
                };
                socks::reply_bytes(code).to_vec()
            },
            client,
        ) else {
            return;
        };
        if (&*client)
            .write_all(&socks::reply_bytes(socks::reply::OK))
            .is_err()
        {
            return;
        }
        self.tunnel(client, upstream, &host, target.port, rest);
    }

    /// Allowlist, resolve, guard, connect. On refusal the client gets
    /// `refuse(reason)` and `None` is returned.
    fn open(
        &mut self,
        host: &str,
        port: u16,
        refuse: impl Fn(&Denied) -> Vec<u8>,
        client: &TcpStream,
    ) -> Option<(TcpStream, Host)> {
        self.entry.host = host.chars().filter(|c| !c.is_control()).take(300).collect();
        self.entry.port = port;
        let r = self.open_checked(host, port);
        match r {
            Ok((s, h)) => Some((s, h)),
            Err(d) => {
                let _ = (&*client).write_all(&refuse(&d));
                if d.code == "connect_failed" {
                    self.entry.verdict = Verdict::Failed;
                    self.entry.reason = d.code;
                    self.entry.detail = d.detail;
                } else {
                    self.deny(d);
                }
                None
            }
        }
    }

    fn open_checked(&mut self, host: &str, port: u16) -> Result<(TcpStream, Host), Denied> {
        let policy = &self.shared.policy;
        let h = policy.check_request(host, port)?;
        self.entry.host = h.to_string();
        let addrs = policy.resolve_checked(&h, port)?;
        let mut last = None;
        for a in &addrs {
            self.entry.resolved = Some(fmt_addr(a));
            match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let id = self.shared.next.fetch_add(1, Ordering::SeqCst);
                    if let Ok(c) = s.try_clone() {
                        lock(&self.shared.sockets).push((id, c));
                        self.ids.push(id);
                    }
                    return Ok((s, h));
                }
                Err(e) => last = Some(format!("connect {}: {e}", fmt_addr(a))),
            }
        }
        Err(Denied::new(
            "connect_failed",
            last.unwrap_or_else(|| "no address".into()),
        ))
    }

    fn allowed(&mut self) {
        self.entry.verdict = Verdict::Allowed;
        self.entry.reason = "allowed";
    }

    /// Relay a tunnel after checking the client's first bytes.
    fn tunnel(
        &mut self,
        client: &TcpStream,
        upstream: TcpStream,
        host: &Host,
        port: u16,
        mut first: Vec<u8>,
    ) {
        self.allowed();
        let down = Arc::new(AtomicU64::new(0));
        let Some(reader) = spawn_pump(&upstream, client, down.clone()) else {
            return;
        };
        let _ = client.set_read_timeout(None);
        let inspected = self.inspect_first(client, host, port, &mut first);
        let mut up = first.len() as u64;
        match inspected {
            Ok(Some((head, len))) => {
                let rest = first.split_off(len.min(first.len()));
                up = match body_length(&head) {
                    Ok(n) => self.send_request(client, &upstream, &head, rest, n),
                    Err(why) => {
                        let _ = (&*client).write_all(&http::refusal(411, why));
                        self.deny(Denied::new("bad_request", why));
                        let _ = upstream.shutdown(Shutdown::Both);
                        0
                    }
                };
            }
            Ok(None) => {
                if !first.is_empty() && (&upstream).write_all(&first).is_err() {
                    let _ = upstream.shutdown(Shutdown::Both);
                } else {
                    up += pump(client, &upstream).unwrap_or(0);
                }
            }
            Err(d) => {
                up = 0;
                self.deny(d);
                let _ = upstream.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
            }
        }
        let _ = reader.join();
        self.entry.bytes_up = up;
        self.entry.bytes_down = down.load(Ordering::Relaxed);
    }

    /// Inspect the tunnel's first bytes (waiting for them: server-first
    /// protocols already flow downstream meanwhile): a TLS ClientHello
    /// whose SNI matches, or plain HTTP to the tunnel's authority (returned
    /// as `(head, head length)` to be sent as a checked request), or other
    /// bytes where TLS is not required.
    fn inspect_first(
        &mut self,
        client: &TcpStream,
        host: &Host,
        port: u16,
        first: &mut Vec<u8>,
    ) -> Result<Option<(Vec<u8>, usize)>, Denied> {
        let authority = format!("{host}:{port}");
        loop {
            match sni::inspect(first) {
                Hello::NeedMore => {
                    if first.len() > sni::MAX_PREFIX {
                        break Err(Denied::new("tls_malformed", "ClientHello too large"));
                    }
                    match read_more(client, first, sni::MAX_PREFIX + 1) {
                        Ok(n) if n > 0 => {}
                        _ => {
                            if first.is_empty() {
                                break Ok(None);
                            }
                            break Err(Denied::new(
                                "tls_malformed",
                                "tunnel closed mid-ClientHello",
                            ));
                        }
                    }
                }
                Hello::NotTls if port == 443 => {
                    break Err(Denied::new(
                        "tls_required",
                        "a tunnel to port 443 must start with a TLS ClientHello",
                    ));
                }
                Hello::NotTls => match http::parse_in_tunnel(first, &authority) {
                    http::InTunnel::NotHttp => break Ok(None),
                    http::InTunnel::Request { head, len } => break Ok(Some((head, len))),
                    http::InTunnel::Invalid(why) => {
                        let _ = (&*client).write_all(&http::refusal(400, &why));
                        break Err(Denied::new("bad_request", why));
                    }
                    http::InTunnel::NeedMore => match read_more(client, first, http::MAX_HEAD) {
                        Ok(n) if n > 0 => {}
                        _ => break Err(Denied::new("bad_request", "tunnel closed mid-request")),
                    },
                },
                Hello::Malformed(why) => break Err(Denied::new("tls_malformed", why)),
                Hello::ClientHello { sni, ech } => {
                    self.entry.sni = sni
                        .as_ref()
                        .map(|s| s.chars().take(300).collect::<String>());
                    break self
                        .check_sni(host, port, sni.as_deref(), ech)
                        .map(|()| None);
                }
            }
        }
    }

    fn check_sni(
        &self,
        host: &Host,
        port: u16,
        sni: Option<&str>,
        ech: bool,
    ) -> Result<(), Denied> {
        if ech {
            return Err(Denied::new(
                "ech_refused",
                "encrypted ClientHello hides the real server name",
            ));
        }
        match (host, sni) {
            (Host::Name(n), None) => Err(Denied::new(
                "sni_missing",
                format!("ClientHello without SNI in a tunnel to {n}"),
            )),
            (Host::Name(n), Some(s)) => match pattern::normalize_host(s) {
                Ok(Host::Name(m)) if &m == n => Ok(()),
                _ => Err(Denied::new(
                    "sni_mismatch",
                    format!(
                        "ClientHello names a different server than the tunnel to {n} (domain fronting)"
                    ),
                )),
            },
            (Host::Ip(_), None) => Ok(()),
            (Host::Ip(a), Some(s)) => match pattern::normalize_host(s) {
                Ok(h) if pattern::allowed(&self.shared.policy.patterns, &h, port) => Ok(()),
                _ => Err(Denied::new(
                    "sni_mismatch",
                    format!("ClientHello in a tunnel to {a} names a server outside the allowlist"),
                )),
            },
        }
    }

    /// Forward an absolute-form request: the rebuilt head, then exactly
    /// the body its `Content-Length` announces (chunked request bodies are
    /// refused), then the response back.
    fn forward(&mut self, client: &TcpStream, upstream: TcpStream, head: Vec<u8>, rest: Vec<u8>) {
        let body_len = match body_length(&head) {
            Ok(n) => n,
            Err(why) => {
                let _ = (&*client).write_all(&http::refusal(411, why));
                self.deny(Denied::new("bad_request", why));
                return;
            }
        };
        self.allowed();
        let down = Arc::new(AtomicU64::new(0));
        let Some(reader) = spawn_pump(&upstream, client, down.clone()) else {
            return;
        };
        let _ = client.set_read_timeout(None);
        let up = self.send_request(client, &upstream, &head, rest, body_len);
        let _ = reader.join();
        self.entry.bytes_up = up;
        self.entry.bytes_down = down.load(Ordering::Relaxed);
    }

    /// Send a rebuilt head, then exactly `body_len` body bytes (from
    /// `rest`, then from the client); nothing after them is read.
    /// Returns the bytes sent.
    fn send_request(
        &self,
        client: &TcpStream,
        upstream: &TcpStream,
        head: &[u8],
        mut rest: Vec<u8>,
        body_len: u64,
    ) -> u64 {
        let mut up = 0u64;
        if (&*upstream).write_all(head).is_err() {
            return up;
        }
        up += head.len() as u64;
        rest.truncate(body_len.min(rest.len() as u64) as usize);
        let mut left = body_len - rest.len() as u64;
        if (&*upstream).write_all(&rest).is_err() {
            return up;
        }
        up += rest.len() as u64;
        let mut b = vec![0u8; RELAY_BUF];
        while left > 0 {
            let want = left.min(RELAY_BUF as u64) as usize;
            match (&*client).read(&mut b[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if (&*upstream).write_all(&b[..n]).is_err() {
                        break;
                    }
                    left -= n as u64;
                    up += n as u64;
                }
            }
        }
        up
    }
}

fn body_length(head: &[u8]) -> Result<u64, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS + 2];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Err("unparsable request head");
    }
    let mut len: Option<u64> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked request bodies are not forwarded; send Content-Length");
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or("bad Content-Length")?;
            if len.is_some_and(|l| l != v) {
                return Err("conflicting Content-Length headers");
            }
            len = Some(v);
        }
    }
    Ok(len.unwrap_or(0))
}

fn fmt_addr(a: &SocketAddr) -> String {
    a.to_string()
}

/// Read once more into `buf` (at most up to `cap` bytes in total).
fn read_more(s: &TcpStream, buf: &mut Vec<u8>, cap: usize) -> io::Result<usize> {
    if buf.len() >= cap {
        return Ok(0);
    }
    let mut chunk = [0u8; 4096];
    let want = (cap - buf.len()).min(chunk.len());
    loop {
        match (&*s).read(&mut chunk[..want]) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Copy `from` → `to` until EOF or error; half-close `to`. Returns bytes.
fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; RELAY_BUF];
    let mut total = 0u64;
    loop {
        let n = match (&*from).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if (&*to).write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Read);
            break;
        }
        total += n as u64;
    }
    let _ = to.shutdown(Shutdown::Write);
    Ok(total)
}

fn spawn_pump(from: &TcpStream, to: &TcpStream, counter: Arc<AtomicU64>) -> Option<JoinHandle<()>> {
    let (f, t) = (from.try_clone().ok()?, to.try_clone().ok()?);
    std::thread::Builder::new()
        .name("csc-egress-down".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let n = pump(&f, &t).unwrap_or(0);
            counter.store(n, Ordering::Relaxed);
        })
        .ok()
}

/// The HTTP answer to a refused or failed destination: 502 when the
/// connection failed, 403 when csc refused it.
fn http_refusal(d: &Denied) -> Vec<u8> {
    http::refusal(
        if d.code == "connect_failed" { 502 } else { 403 },
        &d.detail,
    )
}
