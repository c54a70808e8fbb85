//! Allowlisted egress for hardened mode (`network: allowlisted`).
//!
//! A command runs in its own network namespace with only loopback; inside,
//! a bridge process accepts TCP connections on `127.0.0.1:`[`PROXY_PORT`]
//! and hands each accepted socket to csc's proxy (outside the namespace)
//! as a file descriptor over an inherited unix socketpair. The proxy
//! ([`proxy`]) speaks HTTP CONNECT, absolute-form HTTP and SOCKS5, checks
//! the requested host and port against the operator's allowlist
//! ([`pattern`]), resolves names on the host only after that check, checks
//! every resolved address with the address guard ([`guard`]), connects to
//! the address it checked, and compares a tunnel's TLS SNI with the
//! requested host ([`sni`]). Every attempt is logged ([`log`]).
//! See `rfcs/0009-egress-proxy.md` and `docs/sandbox.md`.

pub mod guard;
pub mod http;
pub mod log;
pub mod pattern;
pub mod proxy;
pub mod sni;
pub mod socks;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use pattern::{Host, Pattern};

/// Port the bridge listens on inside the sandbox's network namespace.
pub const PROXY_PORT: u16 = 3128;

/// Most addresses taken from one name resolution.
pub const MAX_ADDRS: usize = 16;

/// Refusal for `network: allowlisted` without an allowlist.
pub const MISSING_ALLOWLIST: &str = "network: allowlisted needs at least one --egress-allow PATTERN (HOST, HOST:PORT, *.DOMAIN[:PORT], IP[:PORT]) in hardened mode; nothing was run";

/// Proxy variables set inside an allowlisted sandbox (both cases: curl
/// reads only lowercase `http_proxy`); `NO_PROXY` is emptied so nothing
/// bypasses the proxy by configuration.
pub fn proxy_vars() -> Vec<(String, String)> {
    let http = format!("http://127.0.0.1:{PROXY_PORT}");
    let socks = format!("socks5h://127.0.0.1:{PROXY_PORT}");
    let mut v = Vec::new();
    for (name, value) in [
        ("HTTP_PROXY", &http),
        ("HTTPS_PROXY", &http),
        ("ALL_PROXY", &socks),
        ("NO_PROXY", &String::new()),
    ] {
        v.push((name.to_string(), value.clone()));
        v.push((name.to_ascii_lowercase(), value.clone()));
    }
    v
}

/// `env` with every proxy variable replaced by [`proxy_vars`].
pub fn proxy_env(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let vars = proxy_vars();
    let mut out: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| !vars.iter().any(|(n, _)| n == k))
        .collect();
    out.extend(vars);
    out
}

/// Operator configuration of allowlisted egress (part of the sandbox
/// configuration and so of the sandbox profile). Stored as the flags'
/// text, validated by [`EgressConfig::compile`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// `--egress-allow` patterns.
    pub allow: Vec<String>,
    /// `--egress-allow-cidr` ranges.
    pub allow_cidr: Vec<String>,
    /// Test-only name overrides (`NAME=IP`, hidden flag
    /// `--egress-test-resolve`): the proxy resolves these names to these
    /// addresses instead of asking the host resolver. Part of the profile.
    pub test_resolve: Vec<String>,
}

impl EgressConfig {
    /// Is any egress configured?
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.allow_cidr.is_empty() && self.test_resolve.is_empty()
    }

    /// Parse and validate every entry.
    pub fn compile(&self) -> Result<Policy, String> {
        let patterns = self
            .allow
            .iter()
            .map(|s| Pattern::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let cidrs = self
            .allow_cidr
            .iter()
            .map(|s| guard::parse_cidr(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut overrides = Vec::new();
        for s in &self.test_resolve {
            let (name, ip) = s
                .split_once('=')
                .ok_or_else(|| format!("--egress-test-resolve {s:?}: expected NAME=IP"))?;
            let host = pattern::normalize_host(name)
                .map_err(|e| format!("--egress-test-resolve {s:?}: {e}"))?;
            let Host::Name(name) = host else {
                return Err(format!("--egress-test-resolve {s:?}: NAME must be a name"));
            };
            let ip: IpAddr = ip
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("--egress-test-resolve {s:?}: bad IP"))?;
            overrides.push((name, ip));
        }
        Ok(Policy {
            patterns,
            cidrs,
            overrides,
        })
    }
}

/// The profile's `egress` section: the normalized allowlist (sorted,
/// deduplicated, so equivalent spellings give the same profile id), the
/// guard's exempt ranges and the fixed mechanism. Invalid entries appear
/// verbatim under `invalid` (such a configuration never runs).
pub fn profile_json(cfg: &EgressConfig) -> serde_json::Value {
    let mut allow: Vec<String> = Vec::new();
    let mut cidrs: Vec<String> = Vec::new();
    let mut invalid: Vec<String> = Vec::new();
    for s in &cfg.allow {
        match Pattern::parse(s) {
            Ok(p) => allow.push(p.to_string()),
            Err(_) => invalid.push(s.clone()),
        }
    }
    for s in &cfg.allow_cidr {
        match guard::parse_cidr(s) {
            Ok(n) => cidrs.push(n.to_string()),
            Err(_) => invalid.push(s.clone()),
        }
    }
    for v in [&mut allow, &mut cidrs, &mut invalid] {
        v.sort();
        v.dedup();
    }
    let mut test_resolve = cfg.test_resolve.clone();
    test_resolve.sort();
    test_resolve.dedup();
    serde_json::json!({
        "allow": allow,
        "allow_cidr": cidrs,
        "invalid": invalid,
        "test_resolve": test_resolve,
        "default_ports": pattern::DEFAULT_PORTS,
        "proxy": format!("127.0.0.1:{PROXY_PORT} in the sandbox; HTTP CONNECT, absolute-form HTTP, SOCKS5 (CONNECT); env HTTP(S)_PROXY/ALL_PROXY both cases, NO_PROXY empty"),
        "resolution": "on the host, after the allowlist check; every address checked by the guard; connect to a checked address",
        "guard_refuses": "loopback, RFC 1918, link-local (169.254.0.0/16), CGNAT 100.64.0.0/10, 0.0.0.0/8, 192.0.0.0/24, 198.18.0.0/15, multicast, 240.0.0.0/4, broadcast, ::, ::1, fc00::/7, fe80::/10, fec0::/10, ff00::/8, Teredo, 64:ff9b:1::/48, 100::/64; IPv4-mapped/compatible, NAT64 64:ff9b::/96 and 6to4 judged by their IPv4 address",
        "tls": "first client bytes of a tunnel: a ClientHello's SNI must equal the requested name (IP tunnels: absent or allowlisted); ECH refused; port 443 tunnels must start with a ClientHello",
        "landlock": format!("TCP bind denied; TCP connect only to port {PROXY_PORT}"),
    })
}

/// A compiled egress policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Allowed destinations.
    pub patterns: Vec<Pattern>,
    /// Ranges exempt from the address guard.
    pub cidrs: Vec<IpNet>,
    /// Test-only resolver overrides.
    pub overrides: Vec<(String, IpAddr)>,
}

/// Why a destination was refused (logged and shown to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Stable machine-readable reason code.
    pub code: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

impl Denied {
    pub(crate) fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Denied {
            code,
            detail: detail.into(),
        }
    }
}

impl Policy {
    /// Allowlist check on the requested host text and port (before any
    /// resolution).
    pub fn check_request(&self, host: &str, port: u16) -> Result<Host, Denied> {
        let h = pattern::normalize_host(host).map_err(|e| Denied::new("bad_host", e))?;
        if !pattern::allowed(&self.patterns, &h, port) {
            return Err(Denied::new(
                "not_allowlisted",
                format!("{h}:{port} is not in the egress allowlist"),
            ));
        }
        Ok(h)
    }

    /// Resolve an allowed host on the host's resolver (or the test
    /// overrides) and check every address with the guard. All addresses
    /// must pass; the returned ones are the only ones to connect to.
    pub fn resolve_checked(&self, host: &Host, port: u16) -> Result<Vec<SocketAddr>, Denied> {
        let addrs: Vec<SocketAddr> = match host {
            Host::Ip(a) => vec![SocketAddr::new(*a, port)],
            Host::Name(n) => {
                if let Some((_, ip)) = self.overrides.iter().find(|(name, _)| name == n) {
                    vec![SocketAddr::new(*ip, port)]
                } else {
                    (n.as_str(), port)
                        .to_socket_addrs()
                        .map_err(|e| Denied::new("resolve_failed", format!("resolve {n}: {e}")))?
                        .take(MAX_ADDRS)
                        .collect()
                }
            }
        };
        if addrs.is_empty() {
            return Err(Denied::new(
                "resolve_failed",
                format!("{host} has no address"),
            ));
        }
        for a in &addrs {
            if let Some(r) = guard::refusal(a.ip(), &self.cidrs) {
                return Err(Denied::new(
                    "address_guard",
                    format!(
                        "{host} resolves to a refused address: {r} (allow the range with --egress-allow-cidr)"
                    ),
                ));
            }
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], cidr: &[&str], over: &[&str]) -> Policy {
        EgressConfig {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            allow_cidr: cidr.iter().map(|s| s.to_string()).collect(),
            test_resolve: over.iter().map(|s| s.to_string()).collect(),
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn allowlist_then_guard() {
        let p = policy(
            &["svc.test:8080", "127.0.0.1:9"],
            &[],
            &["svc.test=127.0.0.1"],
        );
        let h = p.check_request("SVC.test.", 8080).unwrap();
        let e = p.resolve_checked(&h, 8080).unwrap_err();
        assert_eq!(e.code, "address_guard");
        assert_eq!(
            p.check_request("svc.test", 8081).unwrap_err().code,
            "not_allowlisted"
        );
        assert_eq!(
            p.check_request("other.test", 8080).unwrap_err().code,
            "not_allowlisted"
        );
        // An allowed IP literal is still guarded.
        let h = p.check_request("127.0.0.1", 9).unwrap();
        assert_eq!(p.resolve_checked(&h, 9).unwrap_err().code, "address_guard");
        let p = policy(
            &["svc.test:8080"],
            &["127.0.0.0/8"],
            &["svc.test=127.0.0.1"],
        );
        let h = p.check_request("svc.test", 8080).unwrap();
        assert_eq!(
            p.resolve_checked(&h, 8080).unwrap(),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
    }

    #[test]
    fn compile_reports_the_flag() {
        let e = EgressConfig {
            allow: vec!["a.*.org".into()],
            ..Default::default()
        }
        .compile()
        .unwrap_err();
        assert!(e.contains("--egress-allow"), "{e}");
        let e = EgressConfig {
            allow_cidr: vec!["10.0.0.1/8".into()],
            ..Default::default()
        }
        .compile()
        .unwrap_err();
        assert!(e.contains("--egress-allow-cidr"), "{e}");
        let e = EgressConfig {
            test_resolve: vec!["1.2.3.4=1.2.3.4".into()],
            ..Default::default()
        }
        .compile()
        .unwrap_err();
        assert!(e.contains("--egress-test-resolve"), "{e}");
    }
}
