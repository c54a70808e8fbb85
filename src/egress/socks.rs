//! SOCKS5 (RFC 1928) server side, no authentication, CONNECT only:
//! greeting and request parsing, replies.

use std::net::{Ipv4Addr, Ipv6Addr};

/// SOCKS version byte.
pub const VERSION: u8 = 5;

/// Reply codes (RFC 1928 §6).
pub mod reply {
    /// Succeeded.
    pub const OK: u8 = 0;
    /// General failure.
    pub const GENERAL_FAILURE: u8 = 1;
    /// Connection not allowed by ruleset.
    pub const NOT_ALLOWED: u8 = 2;
    /// Network unreachable.
    pub const NETWORK_UNREACHABLE: u8 = 3;
    /// Host unreachable (e.g. the name does not resolve).
    pub const HOST_UNREACHABLE: u8 = 4;
    /// Connection refused.
    pub const REFUSED: u8 = 5;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    /// Address type not supported.
    pub const ATYP_NOT_SUPPORTED: u8 = 8;
}

/// Outcome of parsing a SOCKS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// Incomplete.
    NeedMore,
    /// Complete message of `.1` bytes.
    Done(T, usize),
    /// Refuse: send this reply code (0xff for the greeting) and close.
    Refuse(u8, String),
}

/// Parse the greeting; `Done(true)` when "no authentication" is offered.
pub fn greeting(buf: &[u8]) -> Step<bool> {
    if buf.len() < 2 {
        return Step::NeedMore;
    }
    if buf[0] != VERSION {
        return Step::Refuse(0xff, "not SOCKS5".into());
    }
    let n = buf[1] as usize;
    if buf.len() < 2 + n {
        return Step::NeedMore;
    }
    Step::Done(buf[2..2 + n].contains(&0), 2 + n)
}

/// A CONNECT request's destination: host text (a name or an IP
/// literal, IPv6 in brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host text as requested.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Parse a request.
pub fn request(buf: &[u8]) -> Step<Target> {
    if buf.len() < 5 {
        return Step::NeedMore;
    }
    if buf[0] != VERSION || buf[2] != 0 {
        return Step::Refuse(reply::GENERAL_FAILURE, "malformed SOCKS5 request".into());
    }
    if buf[1] != 1 {
        return Step::Refuse(
            reply::COMMAND_NOT_SUPPORTED,
            format!("SOCKS5 command {} not supported (CONNECT only)", buf[1]),
        );
    }
    let (host, at) = match buf[3] {
        1 => {
            if buf.len() < 10 {
                return Step::NeedMore;
            }
            let a = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
            (a.to_string(), 8)
        }
        3 => {
            let n = buf[4] as usize;
            if n == 0 {
                return Step::Refuse(reply::GENERAL_FAILURE, "empty host name".into());
            }
            if buf.len() < 5 + n + 2 {
                return Step::NeedMore;
            }
            let name = &buf[5..5 + n];
            if !name.iter().all(|b| b.is_ascii_graphic() || *b >= 0x80) {
                return Step::Refuse(reply::GENERAL_FAILURE, "bad host name".into());
            }
            match std::str::from_utf8(name) {
                Ok(s) => (s.to_string(), 5 + n),
                Err(_) => {
                    return Step::Refuse(reply::GENERAL_FAILURE, "host name is not UTF-8".into());
                }
            }
        }
        4 => {
            if buf.len() < 22 {
                return Step::NeedMore;
            }
            let mut o = [0u8; 16];
            o.copy_from_slice(&buf[4..20]);
            (format!("[{}]", Ipv6Addr::from(o)), 20)
        }
        t => {
            return Step::Refuse(
                reply::ATYP_NOT_SUPPORTED,
                format!("address type {t} not supported"),
            );
        }
    };
    let port = u16::from_be_bytes([buf[at], buf[at + 1]]);
    if port == 0 {
        return Step::Refuse(reply::GENERAL_FAILURE, "port 0".into());
    }
    Step::Done(Target { host, port }, at + 2)
}

/// A reply with the given code and an unspecified bound address.
pub fn reply_bytes(code: u8) -> [u8; 10] {
    [VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greeting_and_requests() {
        assert_eq!(greeting(&[5, 1, 0]), Step::Done(true, 3));
        assert_eq!(greeting(&[5, 1, 2]), Step::Done(false, 3));
        assert_eq!(greeting(&[5, 2, 0]), Step::NeedMore);
        assert!(matches!(greeting(&[4, 1, 0]), Step::Refuse(..)));
        let mut r = vec![5, 1, 0, 3, 11];
        r.extend_from_slice(b"example.org");
        r.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            request(&r),
            Step::Done(
                Target {
                    host: "example.org".into(),
                    port: 443
                },
                r.len()
            )
        );
        assert_eq!(request(&r[..r.len() - 1]), Step::NeedMore);
        assert_eq!(
            request(&[5, 1, 0, 1, 127, 0, 0, 1, 0, 80]),
            Step::Done(
                Target {
                    host: "127.0.0.1".into(),
                    port: 80
                },
                10
            )
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[1, 187]);
        assert!(
            matches!(request(&v6), Step::Done(Target { ref host, port: 443 }, 22) if host == "[::1]")
        );
        assert!(matches!(
            request(&[5, 3, 0, 1, 1, 2, 3, 4, 0, 53]),
            Step::Refuse(reply::COMMAND_NOT_SUPPORTED, _)
        ));
        assert!(matches!(
            request(&[5, 2, 0, 1, 1, 2, 3, 4, 0, 53]),
            Step::Refuse(reply::COMMAND_NOT_SUPPORTED, _)
        ));
        assert!(matches!(
            request(&[5, 1, 0, 9, 0]),
            Step::Refuse(reply::ATYP_NOT_SUPPORTED, _)
        ));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = greeting(&data);
            let _ = request(&data);
        }
    }
}
