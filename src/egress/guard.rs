//! The address guard: refuses connections to addresses that reach the
//! host, its local networks or cloud metadata services, whatever name
//! resolved to them, unless the operator allowed a range with
//! `--egress-allow-cidr`.
//!
//! IPv6 forms that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
//! IPv4-compatible `::a.b.c.d`, the NAT64 well-known prefix
//! `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the embedded IPv4
//! address; forms whose IPv4 address cannot be known (Teredo, local-use
//! NAT64 `64:ff9b:1::/48`) are refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Parse one `--egress-allow-cidr` value (`10.0.0.0/8`, `fd00::/8`, or a
/// single address, taken as /32 or /128). Host bits must be zero.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let err = |m: &str| format!("--egress-allow-cidr {s:?}: {m}");
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => return Err(err("expected ADDRESS/PREFIX (e.g. 10.20.0.0/16)")),
        },
    };
    if net.trunc() != net {
        return Err(err(&format!(
            "host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net)
}

fn v4_class(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    Some(match o {
        [0, ..] => "unspecified (0.0.0.0/8)",
        [127, ..] => "loopback",
        [10, ..] => "private (RFC 1918)",
        [172, b, ..] if (16..32).contains(&b) => "private (RFC 1918)",
        [192, 168, ..] => "private (RFC 1918)",
        [169, 254, ..] => "link-local (incl. cloud metadata 169.254.169.254)",
        [100, b, ..] if (64..128).contains(&b) => "shared address space (CGNAT 100.64.0.0/10)",
        [192, 0, 0, _] => "IETF protocol assignments (192.0.0.0/24)",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking (198.18.0.0/15)",
        [255, 255, 255, 255] => "broadcast",
        [a, ..] if (224..240).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for, when it embeds one in a
/// way that routes to that IPv4 address.
pub fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let o = a.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return Some(tail); // IPv4-mapped
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail); // IPv4-compatible (deprecated); :: and ::1 excluded
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail); // NAT64 well-known prefix
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])); // 6to4
    }
    None
}

fn v6_class(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    Some(if a.is_unspecified() {
        "unspecified (::)"
    } else if a.is_loopback() {
        "loopback (::1)"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique-local (fc00::/7)"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link-local (fe80::/10)"
    } else if s[0] & 0xffc0 == 0xfec0 {
        "site-local (fec0::/10)"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        "local-use NAT64 (64:ff9b:1::/48)"
    } else if s[0] == 0x2001 && s[1] == 0 {
        "Teredo (2001::/32)"
    } else if s[..4] == [0x100, 0, 0, 0] {
        "discard-only (100::/64)"
    } else {
        return None;
    })
}

/// Why `addr` is refused, or `None` when a connection to it may be made.
/// An address inside one of `allowed` is always accepted; an IPv6 address
/// embedding an IPv4 address is accepted when that IPv4 address is.
pub fn refusal(addr: IpAddr, allowed: &[IpNet]) -> Option<String> {
    if allowed.iter().any(|n| n.contains(&addr)) {
        return None;
    }
    match addr {
        IpAddr::V4(a) => v4_class(a).map(|c| format!("address {a} is {c}")),
        IpAddr::V6(a) => {
            if let Some(v4) = embedded_v4(a) {
                return refusal(IpAddr::V4(v4), allowed)
                    .map(|r| format!("address {a} embeds IPv4 {v4}: {r}"));
            }
            v6_class(a).map(|c| format!("address {a} is {c}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refused(s: &str) -> bool {
        refusal(s.parse().unwrap(), &[]).is_some()
    }

    #[test]
    fn refuses_every_local_class() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.170",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            assert!(refused(a), "{a} not refused");
        }
    }

    #[test]
    fn accepts_public_addresses() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!refused(a), "{a} refused");
        }
    }

    #[test]
    fn allowed_cidrs_open_exactly_their_range() {
        let nets = [
            parse_cidr("10.20.0.0/16").unwrap(),
            parse_cidr("fd00::/8").unwrap(),
        ];
        assert!(refusal("10.20.1.2".parse().unwrap(), &nets).is_none());
        assert!(refusal("::ffff:10.20.1.2".parse().unwrap(), &nets).is_none());
        assert!(refusal("10.21.0.1".parse().unwrap(), &nets).is_some());
        assert!(refusal("fd00::5".parse().unwrap(), &nets).is_none());
        assert!(refusal("fc00::5".parse().unwrap(), &nets).is_some());
        assert!(refusal("169.254.169.254".parse().unwrap(), &nets).is_some());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert!(parse_cidr("10.0.0.1/8").is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope").is_err());
        assert!(parse_cidr("::1/128").is_ok());
    }

    proptest! {
        #[test]
        fn mapped_forms_agree_with_ipv4(a in any::<u32>()) {
            let v4 = Ipv4Addr::from(a);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            let nat64 = IpAddr::V6(Ipv6Addr::from((0x0064_ff9b_u128 << 96) | a as u128));
            let base = refusal(IpAddr::V4(v4), &[]).is_some();
            prop_assert_eq!(refusal(mapped, &[]).is_some(), base);
            prop_assert_eq!(refusal(nat64, &[]).is_some(), base);
        }
    }
}
