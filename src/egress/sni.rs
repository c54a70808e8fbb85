//! Bounded TLS ClientHello parser: finds the server name (SNI) a client
//! asks for at the start of a tunnel, so that the proxy can refuse domain
//! fronting (a ClientHello for one name sent through a tunnel opened for
//! another).
//!
//! Hand-written rather than `tls-parser` (see RFC 0009): only the
//! ClientHello's outer structure is read, with every length checked
//! against its enclosing length; the handshake message may span several
//! TLS records and is reassembled up to [`MAX_HELLO`] bytes. Encrypted
//! ClientHello (ECH) is reported, because its outer SNI is not the name
//! the client really talks to.

/// Largest ClientHello handshake message accepted (bytes).
pub const MAX_HELLO: usize = 16 * 1024;
/// Largest amount of tunnel prefix the parser ever needs.
pub const MAX_PREFIX: usize = MAX_HELLO + 5 * 8 + 64;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ECH: u16 = 0xfe0d;

/// Result of inspecting the first bytes a client sent into a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not enough bytes yet to decide.
    NeedMore,
    /// The bytes are not a TLS handshake record.
    NotTls,
    /// A complete ClientHello.
    ClientHello {
        /// The `host_name` from the server_name extension, if present
        /// (raw bytes as text; not yet normalized).
        sni: Option<String>,
        /// An encrypted_client_hello extension is present.
        ech: bool,
    },
    /// A TLS handshake record that is not a well-formed ClientHello.
    Malformed(&'static str),
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.b.len() < n {
            return Err("truncated ClientHello");
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<usize, &'static str> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Result<usize, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Inspect the bytes a client sent first. Never reads past `buf`, never
/// allocates more than the handshake message.
pub fn inspect(buf: &[u8]) -> Hello {
    if buf.is_empty() {
        return Hello::NeedMore;
    }
    if buf[0] != 22 {
        return Hello::NotTls;
    }
    if buf.len() < 2 {
        return Hello::NeedMore;
    }
    if buf[1] != 3 {
        return Hello::NotTls;
    }
    // Reassemble the handshake message from consecutive handshake records.
    let mut msg: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Hello::NeedMore;
        }
        if rest[0] != 22 {
            return Hello::Malformed("non-handshake record inside the ClientHello");
        }
        if rest[1] != 3 {
            return Hello::Malformed("bad record version");
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len == 0 || len > (1 << 14) {
            return Hello::Malformed("bad record length");
        }
        if rest.len() < 5 + len {
            return Hello::NeedMore;
        }
        msg.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if msg.len() >= 4 {
            if msg[0] != 1 {
                return Hello::Malformed("first handshake message is not a ClientHello");
            }
            let body = ((msg[1] as usize) << 16) | ((msg[2] as usize) << 8) | msg[3] as usize;
            if body > MAX_HELLO {
                return Hello::Malformed("ClientHello too large");
            }
            if msg.len() >= 4 + body {
                return parse_hello(&msg[4..4 + body]);
            }
        }
        if msg.len() > MAX_HELLO + 4 {
            return Hello::Malformed("ClientHello too large");
        }
    }
}

fn parse_hello(body: &[u8]) -> Hello {
    match parse_hello_inner(body) {
        Ok(h) => h,
        Err(m) => Hello::Malformed(m),
    }
}

fn parse_hello_inner(body: &[u8]) -> Result<Hello, &'static str> {
    let mut r = Reader { b: body };
    let version = r.take(2)?;
    if version[0] != 3 {
        return Err("bad ClientHello version");
    }
    r.take(32)?; // random
    if r.vec8()?.len() > 32 {
        return Err("session id too long");
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("bad cipher suite list");
    }
    if r.vec8()?.is_empty() {
        return Err("empty compression method list");
    }
    if r.b.is_empty() {
        return Ok(Hello::ClientHello {
            sni: None,
            ech: false,
        });
    }
    let mut exts = Reader { b: r.vec16()? };
    if !r.b.is_empty() {
        return Err("trailing bytes after extensions");
    }
    let mut seen: Vec<u16> = Vec::new();
    let mut sni = None;
    let mut ech = false;
    while !exts.b.is_empty() {
        let ty = exts.u16()? as u16;
        let data = exts.vec16()?;
        if seen.contains(&ty) {
            return Err("duplicate extension");
        }
        seen.push(ty);
        match ty {
            EXT_SERVER_NAME => sni = parse_server_name(data)?,
            EXT_ECH => ech = true,
            _ => {}
        }
    }
    Ok(Hello::ClientHello { sni, ech })
}

fn parse_server_name(data: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader { b: data };
    let mut list = Reader { b: r.vec16()? };
    if !r.b.is_empty() {
        return Err("trailing bytes in server_name");
    }
    let mut name = None;
    while !list.b.is_empty() {
        let ty = list.u8()?;
        let n = list.vec16()?;
        if ty != 0 {
            continue;
        }
        if name.is_some() {
            return Err("more than one host_name in server_name");
        }
        if n.is_empty() || !n.iter().all(|b| b.is_ascii_graphic()) {
            return Err("server_name host_name is not printable ASCII");
        }
        name = Some(String::from_utf8_lossy(n).into_owned());
    }
    Ok(name)
}

/// Build a minimal ClientHello (tests and benchmarks): `sni` as the
/// server_name, optionally an ECH extension, split into records of at
/// most `record` bytes of payload.
pub fn build_client_hello(sni: Option<&str>, ech: bool, record: usize) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0u8];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name.as_bytes());
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend_from_slice(&data);
    }
    if ech {
        exts.extend_from_slice(&EXT_ECH.to_be_bytes());
        exts.extend_from_slice(&1u16.to_be_bytes());
        exts.push(0);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    let mut out = Vec::new();
    for chunk in msg.chunks(record.max(1)) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_sni() {
        let h = build_client_hello(Some("example.org"), false, 1 << 14);
        assert_eq!(
            inspect(&h),
            Hello::ClientHello {
                sni: Some("example.org".into()),
                ech: false
            }
        );
    }

    #[test]
    fn reassembles_fragmented_records() {
        let h = build_client_hello(Some("a.example.org"), false, 7);
        assert!(
            matches!(inspect(&h), Hello::ClientHello { sni: Some(ref s), .. } if s == "a.example.org")
        );
        for cut in 0..h.len() {
            assert_eq!(inspect(&h[..cut]), Hello::NeedMore, "cut {cut}");
        }
    }

    #[test]
    fn no_sni_and_ech_are_reported() {
        assert_eq!(
            inspect(&build_client_hello(None, false, 1 << 14)),
            Hello::ClientHello {
                sni: None,
                ech: false
            }
        );
        assert_eq!(
            inspect(&build_client_hello(Some("public.example"), true, 1 << 14)),
            Hello::ClientHello {
                sni: Some("public.example".into()),
                ech: true
            }
        );
    }

    #[test]
    fn non_tls_is_recognized_early() {
        assert_eq!(inspect(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(inspect(b"SSH-2.0-x"), Hello::NotTls);
        assert_eq!(inspect(&[22, 1]), Hello::NotTls);
        assert_eq!(inspect(&[22]), Hello::NeedMore);
    }

    #[test]
    fn malformed_hellos_are_refused() {
        // A ServerHello-type message.
        let mut h = build_client_hello(Some("x.org"), false, 1 << 14);
        h[5] = 2;
        assert!(matches!(inspect(&h), Hello::Malformed(_)));
        // Oversized declared length.
        let big = [22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff];
        assert!(matches!(inspect(&big), Hello::Malformed(_)));
        // Zero-length record.
        assert!(matches!(inspect(&[22, 3, 1, 0, 0]), Hello::Malformed(_)));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = inspect(&data);
            let mut tls = vec![22, 3, 1];
            tls.extend_from_slice(&data);
            let _ = inspect(&tls);
        }

        #[test]
        fn mutated_hellos_never_panic(idx in 0usize..80, byte in any::<u8>(), rec in 1usize..64) {
            let mut h = build_client_hello(Some("mut.example.org"), false, rec);
            let i = idx % h.len();
            h[i] = byte;
            let _ = inspect(&h);
        }
    }
}
