//! `--egress-allow` patterns: parsing, host normalization and matching.
//!
//! Grammar: `HOST`, `HOST:PORT`, `*.DOMAIN`, `*.DOMAIN:PORT`, IPv4
//! literals with an optional port, IPv6 literals as `[ADDR]` or
//! `[ADDR]:PORT` (a bare IPv6 address without brackets is also accepted,
//! without a port). No port means ports 80 and 443. `*.example.org`
//! matches proper subdomains only (not `example.org` itself). Host names
//! are compared after IDNA (UTS #46) mapping to ASCII, lower-casing and
//! removal of one trailing dot.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ports a pattern without an explicit port allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// Longest host name accepted (RFC 1035 limit on the presentation form).
pub const MAX_HOST_LEN: usize = 253;

/// A destination host as requested by a client, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name: ASCII (A-labels), lower case, no trailing dot.
    Name(String),
    /// An IP address literal.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// What the host part of a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// Proper subdomains of this name (`*.DOMAIN`).
    Subdomains(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// One parsed `--egress-allow` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Host part.
    pub host: HostPattern,
    /// Allowed port; `None` means [`DEFAULT_PORTS`].
    pub port: Option<u16>,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(n) => f.write_str(n)?,
            HostPattern::Subdomains(n) => write!(f, "*.{n}")?,
            HostPattern::Ip(IpAddr::V4(a)) => write!(f, "{a}")?,
            HostPattern::Ip(IpAddr::V6(a)) => write!(f, "[{a}]")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Parse a decimal port in 1..=65535 (no sign, no leading `+`).
pub fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {s:?} (expected 1-65535)"));
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port {s:?} (expected 1-65535)")),
        Ok(p) => Ok(p),
    }
}

/// True when the last label of `name` looks numeric (all digits, or a
/// `0x` hex number): resolvers read such names as IPv4 addresses in
/// legacy forms (`127.1`, `0x7f.1`, `2130706433`), so they are accepted
/// only as strict dotted quads.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or("");
    if last.is_empty() {
        return false;
    }
    last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() >= 2
            && (last.starts_with("0x") || last.starts_with("0X"))
            && last[2..].bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Normalize a host as written by a client or an operator: an IP literal
/// (IPv6 with or without brackets) or a DNS name mapped through IDNA to
/// lower-case ASCII without a trailing dot. Names that end in a number
/// but are not a strict dotted-quad IPv4 address are refused, as are
/// empty labels, wildcards and characters that are not valid in a host.
pub fn normalize_host(raw: &str) -> Result<Host, String> {
    if raw.is_empty() {
        return Err("empty host".into());
    }
    if raw.len() > 4 * MAX_HOST_LEN {
        return Err("host name too long".into());
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unterminated IPv6 literal {raw:?}"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|a| Host::Ip(IpAddr::V6(a)))
            .map_err(|_| format!("invalid IPv6 literal {raw:?}"));
    }
    if let Ok(a) = raw.parse::<Ipv6Addr>() {
        return Ok(Host::Ip(IpAddr::V6(a)));
    }
    if raw.contains('%') {
        return Err(format!("invalid host {raw:?} (zone ids are not accepted)"));
    }
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if let Ok(a) = trimmed.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(a)));
    }
    let ascii = idna::domain_to_ascii(trimmed)
        .map_err(|_| format!("invalid host name {raw:?} (IDNA mapping failed)"))?;
    let ascii = ascii
        .strip_suffix('.')
        .unwrap_or(&ascii)
        .to_ascii_lowercase();
    if ascii.is_empty() || ascii.len() > MAX_HOST_LEN {
        return Err(format!("invalid host name {raw:?}"));
    }
    for label in ascii.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid host name {raw:?} (empty or long label)"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("invalid host name {raw:?}"));
        }
    }
    if let Ok(a) = ascii.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(a)));
    }
    if ends_in_number(&ascii) {
        return Err(format!(
            "ambiguous numeric host {raw:?} (write IPv4 addresses as a dotted quad)"
        ));
    }
    Ok(Host::Name(ascii))
}

/// Split `HOST[:PORT]` / `[V6][:PORT]` into host text and optional port.
pub fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| format!("unterminated IPv6 literal in {s:?}"))?;
        let (host, rest) = s.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            r => match r.strip_prefix(':') {
                Some(p) => Ok((host, Some(parse_port(p)?))),
                None => Err(format!("unexpected text after IPv6 literal in {s:?}")),
            },
        };
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Ok((s, None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => {
            if h.contains(':') {
                return Err(format!("invalid host {s:?} (write IPv6 as [ADDR]:PORT)"));
            }
            Ok((h, Some(parse_port(p)?)))
        }
        None => Ok((s, None)),
    }
}

impl Pattern {
    /// Parse one `--egress-allow` value.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let err = |m: String| format!("--egress-allow {s:?}: {m}");
        let (host, port) = split_host_port(s).map_err(err)?;
        let host = if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                return Err(err("only one leading '*.' wildcard is allowed".into()));
            }
            match normalize_host(domain).map_err(err)? {
                Host::Name(n) if n.contains('.') => HostPattern::Subdomains(n),
                Host::Name(_) => {
                    return Err(err(
                        "a wildcard needs a domain with at least two labels (e.g. *.example.org)"
                            .into(),
                    ));
                }
                Host::Ip(_) => return Err(err("a wildcard cannot cover an IP address".into())),
            }
        } else {
            if host.contains('*') {
                return Err(err("'*' is only allowed as a leading '*.'".into()));
            }
            match normalize_host(host).map_err(err)? {
                Host::Name(n) => HostPattern::Exact(n),
                Host::Ip(a) => HostPattern::Ip(a),
            }
        };
        Ok(Pattern { host, port })
    }

    /// Does this pattern allow `host` on `port`?
    pub fn matches(&self, host: &Host, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        port_ok
            && match (&self.host, host) {
                (HostPattern::Exact(p), Host::Name(n)) => p == n,
                (HostPattern::Subdomains(d), Host::Name(n)) => {
                    n.len() > d.len() + 1
                        && n.ends_with(d.as_str())
                        && n.as_bytes()[n.len() - d.len() - 1] == b'.'
                }
                (HostPattern::Ip(a), Host::Ip(b)) => a == b,
                _ => false,
            }
    }
}

/// Is `host:port` allowed by any of `patterns`?
pub fn allowed(patterns: &[Pattern], host: &Host, port: u16) -> bool {
    patterns.iter().any(|p| p.matches(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Host {
        normalize_host(s).unwrap()
    }

    #[test]
    fn parses_every_form() {
        let p = Pattern::parse("Example.ORG.").unwrap();
        assert_eq!(p.host, HostPattern::Exact("example.org".into()));
        assert_eq!(p.port, None);
        let p = Pattern::parse("example.org:8443").unwrap();
        assert_eq!(p.port, Some(8443));
        let p = Pattern::parse("*.example.org:443").unwrap();
        assert_eq!(p.host, HostPattern::Subdomains("example.org".into()));
        let p = Pattern::parse("10.1.2.3:443").unwrap();
        assert_eq!(p.host, HostPattern::Ip("10.1.2.3".parse().unwrap()));
        let p = Pattern::parse("[2001:db8::1]:443").unwrap();
        assert_eq!(p.host, HostPattern::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(p.port, Some(443));
        let p = Pattern::parse("2001:db8::1").unwrap();
        assert_eq!(p.port, None);
        assert_eq!(p.to_string(), "[2001:db8::1]");
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            "",
            "*",
            "*.org",
            "a.*.org",
            "ex*mple.org",
            "example.org:0",
            "example.org:65536",
            "example.org:+1",
            "example.org:",
            "[::1",
            "[::1]x",
            "*.10.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "2130706433",
            "a..b",
            "a b.org",
            "a/b.org",
            "fe80::1%eth0",
            "1:2:3",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn default_ports_are_80_and_443() {
        let p = Pattern::parse("example.org").unwrap();
        assert!(p.matches(&h("example.org"), 80));
        assert!(p.matches(&h("example.org"), 443));
        assert!(!p.matches(&h("example.org"), 8080));
        assert!(!p.matches(&h("example.org"), 22));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = Pattern::parse("*.example.org").unwrap();
        assert!(p.matches(&h("a.example.org"), 443));
        assert!(p.matches(&h("a.b.example.org"), 443));
        assert!(!p.matches(&h("example.org"), 443));
        assert!(!p.matches(&h("badexample.org"), 443));
        assert!(!p.matches(&h("example.org.evil.com"), 443));
    }

    #[test]
    fn names_are_normalized() {
        let p = Pattern::parse("bücher.example").unwrap();
        assert_eq!(p.host, HostPattern::Exact("xn--bcher-kva.example".into()));
        assert!(p.matches(&h("BÜCHER.example."), 443));
        assert!(p.matches(&h("xn--bcher-kva.EXAMPLE"), 443));
        assert_eq!(h("[::FFFF:1.2.3.4]"), h("::ffff:1.2.3.4"));
    }

    #[test]
    fn ip_patterns_do_not_match_names_and_vice_versa() {
        let p = Pattern::parse("127.0.0.1:8080").unwrap();
        assert!(p.matches(&h("127.0.0.1"), 8080));
        assert!(!p.matches(&h("localhost"), 8080));
        let q = Pattern::parse("localhost:8080").unwrap();
        assert!(!q.matches(&h("127.0.0.1"), 8080));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = Pattern::parse(&s);
            let _ = normalize_host(&s);
        }

        #[test]
        fn wildcard_never_matches_outside_its_domain(
            sub in "[a-z0-9]{1,10}", dom in "[a-z]{1,10}\\.[a-z]{2,5}", other in "[a-z]{1,12}\\.[a-z]{2,5}"
        ) {
            let p = Pattern::parse(&format!("*.{dom}")).unwrap();
            let inside = format!("{sub}.{dom}");
            prop_assert!(p.matches(&h(&inside), 443));
            prop_assert!(!p.matches(&h(&dom), 443));
            if other != dom {
                prop_assert!(!p.matches(&h(&other), 443));
                let glued = format!("{sub}{dom}");
                prop_assert!(!p.matches(&h(&glued), 443));
            }
        }

        #[test]
        fn display_round_trips(s in "[a-z]{1,8}(\\.[a-z]{1,8}){0,3}(:[1-9][0-9]{0,3})?") {
            let p = Pattern::parse(&s).unwrap();
            prop_assert_eq!(Pattern::parse(&p.to_string()).unwrap(), p);
        }
    }
}
