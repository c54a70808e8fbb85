//! HTTP/1.x proxy request heads (`httparse`): `CONNECT host:port` and
//! absolute-form `GET http://host[:port]/path`. The head forwarded
//! upstream is rebuilt from parsed parts: origin-form target, a `Host`
//! header equal to the checked destination (no virtual-host fronting),
//! no proxy or hop-by-hop headers, `Connection: close`.

use super::pattern::split_host_port;

/// Largest request head accepted (bytes).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers accepted.
pub const MAX_HEADERS: usize = 64;

/// A parsed proxy request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRequest {
    /// `CONNECT host:port`.
    Connect {
        /// Host text as sent (not normalized).
        host: String,
        /// Port.
        port: u16,
    },
    /// An absolute-form request to forward.
    Forward {
        /// Host text as sent (not normalized).
        host: String,
        /// Port (default 80).
        port: u16,
        /// Head to send upstream (ends with an empty line).
        head: Vec<u8>,
    },
}

/// Outcome of parsing the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is incomplete.
    NeedMore,
    /// A complete head of `len` bytes.
    Request(ProxyRequest, usize),
    /// Refuse with this HTTP status and reason.
    Invalid(u16, String),
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "host",
];

/// Parse a proxy request head from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Parsed::Invalid(431, "request head too large".into())
            } else {
                Parsed::NeedMore
            };
        }
        Err(e) => return Parsed::Invalid(400, format!("malformed request: {e}")),
    };
    if len > MAX_HEAD {
        return Parsed::Invalid(431, "request head too large".into());
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parsed::Invalid(400, "malformed request line".into());
    };
    if method == "CONNECT" {
        return match split_host_port(target) {
            Ok((h, Some(p))) if !h.is_empty() => Parsed::Request(
                ProxyRequest::Connect {
                    host: h.to_string(),
                    port: p,
                },
                len,
            ),
            _ => Parsed::Invalid(400, format!("CONNECT target {target:?} is not host:port")),
        };
    }
    let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("HTTP://"))
    else {
        return Parsed::Invalid(
            400,
            "only CONNECT and absolute-form http:// requests are proxied".into(),
        );
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Parsed::Invalid(400, "credentials in the URL are not forwarded".into());
    }
    let (host, port) = match split_host_port(authority) {
        Ok((h, p)) if !h.is_empty() => (h.to_string(), p.unwrap_or(80)),
        _ => return Parsed::Invalid(400, format!("bad authority {authority:?}")),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let head = rebuild(method, &path, authority, req.headers);
    Parsed::Request(ProxyRequest::Forward { host, port, head }, len)
}

/// The head csc sends upstream: origin-form target, `Host` = the checked
/// authority, no proxy or hop-by-hop headers, `Connection: close`.
fn rebuild(method: &str, path: &str, authority: &str, headers: &[httparse::Header<'_>]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    head.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        head.extend_from_slice(h.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(h.value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    head
}

/// First bytes of a tunnel, read as a possible plain HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InTunnel {
    /// Incomplete.
    NeedMore,
    /// Not an HTTP/1.x request: relay as is.
    NotHttp,
    /// An HTTP request of `len` bytes; `head` is the rebuilt head to send
    /// instead (its `Host` is the tunnel's authority).
    Request {
        /// Rebuilt head.
        head: Vec<u8>,
        /// Length of the original head.
        len: usize,
    },
    /// An HTTP request csc will not forward.
    Invalid(String),
}

/// Plain HTTP inside a tunnel (SOCKS5 `http://`, `CONNECT` to port 80) is
/// handled like an absolute-form request: one request per connection,
/// `Host` rewritten to `authority` (the tunnel's checked destination), so
/// a request for another virtual host on the same server is impossible.
pub fn parse_in_tunnel(buf: &[u8], authority: &str) -> InTunnel {
    match buf.first() {
        None => return InTunnel::NeedMore,
        Some(b) if !b.is_ascii_uppercase() => return InTunnel::NotHttp,
        Some(_) => {}
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return InTunnel::Invalid("request head too large".into());
        }
        Ok(httparse::Status::Partial) => return InTunnel::NeedMore,
        Err(_) => return InTunnel::NotHttp,
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return InTunnel::NotHttp;
    };
    if !target.starts_with('/') {
        return InTunnel::Invalid(format!(
            "request target {target:?} in a tunnel must be origin-form (/path)"
        ));
    }
    InTunnel::Request {
        head: rebuild(method, target, authority, req.headers),
        len,
    }
}

/// A refusal response: status, `X-Csc-Egress-Denied` reason header, and
/// the reason as a one-line body.
pub fn refusal(status: u16, reason: &str) -> Vec<u8> {
    let text = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let clean: String = reason
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect();
    let body = format!("csc egress proxy: {clean}\n");
    format!(
        "HTTP/1.1 {status} {text}\r\nX-Csc-Egress-Denied: {clean}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_connect() {
        let r = parse(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\nxx");
        assert_eq!(
            r,
            Parsed::Request(
                ProxyRequest::Connect {
                    host: "example.org".into(),
                    port: 443
                },
                59
            )
        );
        assert!(matches!(
            parse(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n"),
            Parsed::Request(ProxyRequest::Connect { port: 8443, .. }, _)
        ));
        assert!(matches!(
            parse(b"CONNECT example.org HTTP/1.1\r\n\r\n"),
            Parsed::Invalid(400, _)
        ));
    }

    #[test]
    fn rebuilds_absolute_form() {
        let r = parse(
            b"GET http://Example.org:8080/a/b?c=d HTTP/1.1\r\nHost: evil.example\r\nProxy-Authorization: x\r\nUser-Agent: t\r\nConnection: keep-alive\r\n\r\n",
        );
        let Parsed::Request(ProxyRequest::Forward { host, port, head }, _) = r else {
            panic!("{r:?}")
        };
        assert_eq!((host.as_str(), port), ("Example.org", 8080));
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("GET /a/b?c=d HTTP/1.1\r\nHost: Example.org:8080\r\n"));
        assert!(!head.contains("evil"));
        assert!(!head.contains("Proxy-Authorization"));
        assert!(head.contains("User-Agent: t\r\n"));
        assert!(head.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            &b"GET /origin HTTP/1.1\r\n\r\n"[..],
            b"GET https://x.org/ HTTP/1.1\r\n\r\n",
            b"GET ftp://x.org/ HTTP/1.1\r\n\r\n",
            b"GET http://u:p@x.org/ HTTP/1.1\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x00",
        ] {
            assert!(matches!(parse(bad), Parsed::Invalid(..)), "{bad:?}");
        }
        assert_eq!(
            parse(b"GET http://x.org/ HTTP/1.1\r\nA: b\r\n"),
            Parsed::NeedMore
        );
        let huge = vec![b'a'; MAX_HEAD + 10];
        let mut req = b"GET http://x.org/ HTTP/1.1\r\nX: ".to_vec();
        req.extend_from_slice(&huge);
        assert!(matches!(parse(&req), Parsed::Invalid(431, _)));
    }

    #[test]
    fn http_in_tunnels_gets_the_tunnel_host() {
        let r = parse_in_tunnel(
            b"GET /x HTTP/1.1\r\nHost: evil.example\r\nAccept: */*\r\n\r\nrest",
            "svc.test:80",
        );
        let InTunnel::Request { head, len } = r else {
            panic!("{r:?}")
        };
        assert_eq!(len, 52);
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.starts_with("GET /x HTTP/1.1\r\nHost: svc.test:80\r\n"),
            "{head}"
        );
        assert!(!head.contains("evil"));
        assert_eq!(parse_in_tunnel(b"GET /x HT", "a:80"), InTunnel::NeedMore);
        assert_eq!(
            parse_in_tunnel(b"SSH-2.0-OpenSSH\r\n", "a:22"),
            InTunnel::NotHttp
        );
        assert_eq!(parse_in_tunnel(b"EHLO x\r\n", "a:25"), InTunnel::NotHttp);
        assert_eq!(parse_in_tunnel(b"\x16\x03\x01", "a:25"), InTunnel::NotHttp);
        assert!(matches!(
            parse_in_tunnel(b"GET http://evil/ HTTP/1.1\r\n\r\n", "a:80"),
            InTunnel::Invalid(_)
        ));
    }

    #[test]
    fn refusal_header_is_clean() {
        let r = String::from_utf8(refusal(403, "host \"x\r\nSet-Cookie: a\" not allowed")).unwrap();
        assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\nX-Csc-Egress-Denied: host \"x??Set-Cookie: a\" not allowed\r\n"));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&data);
        }
    }
}
