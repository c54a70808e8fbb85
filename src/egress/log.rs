//! The egress log: one JSON object per connection attempt, kept in memory
//! (bounded) while the command runs and saved as
//! `<command_id>.egress.jsonl`. Format: `rfcs/0009-egress-proxy.md`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Most entries kept per command; later attempts are counted in
/// [`EgressLog::dropped`] and summarized by a final entry.
pub const MAX_ENTRIES: usize = 4096;

/// Verdict of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Allowed and connected; bytes were relayed.
    Allowed,
    /// Refused by the allowlist, the address guard, the SNI check or a
    /// protocol rule.
    Denied,
    /// Allowed, but the connection could not be made.
    Failed,
}

/// One connection attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Order of the attempt within the command (connection accept order).
    pub seq: u64,
    /// When the attempt started (RFC 3339, UTC).
    pub time: String,
    /// The command (contract command id) whose sandbox made it.
    pub command_id: String,
    /// `http_connect`, `http_forward` or `socks5`.
    pub proto: &'static str,
    /// Requested host as sent by the client (normalized when valid).
    pub host: String,
    /// Requested port.
    pub port: u16,
    /// Address csc connected to (or would have); `null` before resolution.
    pub resolved: Option<String>,
    /// Verdict.
    pub verdict: Verdict,
    /// Stable reason code (`allowed`, `not_allowlisted`, `address_guard`,
    /// `sni_mismatch`, ...).
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// TLS server name seen in the tunnel, if any.
    pub sni: Option<String>,
    /// Bytes from the sandbox to the destination.
    pub bytes_up: u64,
    /// Bytes from the destination to the sandbox.
    pub bytes_down: u64,
}

/// Bounded, thread-safe log of one command's attempts.
#[derive(Debug, Default)]
pub struct EgressLog {
    entries: Mutex<Vec<Entry>>,
    dropped: AtomicU64,
}

impl EgressLog {
    /// Record an entry (counted but not kept past [`MAX_ENTRIES`]).
    pub fn push(&self, e: Entry) {
        let mut v = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < MAX_ENTRIES {
            v.push(e);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Attempts not kept because the log was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A copy of the entries so far, in accept order.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort_by_key(|e| e.seq);
        v
    }
}

/// Serialize entries as JSON lines (plus a `log_truncated` line when
/// entries were dropped).
pub fn to_jsonl(entries: &[Entry], dropped: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if let Ok(line) = serde_json::to_vec(e) {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    if dropped > 0 {
        out.extend_from_slice(
            format!("{{\"log_truncated\":true,\"dropped_entries\":{dropped}}}\n").as_bytes(),
        );
    }
    out
}

/// Did any attempt connect to a destination?
pub fn network_used(entries: &[Entry]) -> bool {
    entries
        .iter()
        .any(|e| e.verdict == Verdict::Allowed && e.resolved.is_some())
}

/// One-line summary of refused destinations (`None` when nothing was
/// refused), e.g. `egress refused: evil.test:443 (not_allowlisted) x2`.
pub fn refused_summary(entries: &[Entry]) -> Option<String> {
    let mut seen: Vec<(String, &'static str, usize)> = Vec::new();
    for e in entries.iter().filter(|e| e.verdict == Verdict::Denied) {
        let dest = if e.host.contains(':') && !e.host.starts_with('[') {
            format!("[{}]:{}", e.host, e.port)
        } else {
            format!("{}:{}", e.host, e.port)
        };
        match seen
            .iter_mut()
            .find(|(d, r, _)| *d == dest && *r == e.reason)
        {
            Some(s) => s.2 += 1,
            None => seen.push((dest, e.reason, 1)),
        }
    }
    if seen.is_empty() {
        return None;
    }
    let shown: Vec<String> = seen
        .iter()
        .take(10)
        .map(|(d, r, n)| {
            let d: String = d
                .chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .take(100)
                .collect();
            if *n > 1 {
                format!("{d} ({r}) x{n}")
            } else {
                format!("{d} ({r})")
            }
        })
        .collect();
    let more = if seen.len() > 10 {
        format!(", and {} more", seen.len() - 10)
    } else {
        String::new()
    };
    Some(format!("egress refused: {}{more}", shown.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, port: u16, verdict: Verdict, reason: &'static str) -> Entry {
        Entry {
            seq: 0,
            time: String::new(),
            command_id: "c".into(),
            proto: "socks5",
            host: host.into(),
            port,
            resolved: None,
            verdict,
            reason,
            detail: String::new(),
            sni: None,
            bytes_up: 0,
            bytes_down: 0,
        }
    }

    #[test]
    fn summary_groups_and_sanitizes() {
        let e = vec![
            entry("a.test", 443, Verdict::Denied, "not_allowlisted"),
            entry("a.test", 443, Verdict::Denied, "not_allowlisted"),
            entry("b.test", 80, Verdict::Allowed, "allowed"),
            entry("x\u{202e}\u{1b}[31m", 80, Verdict::Denied, "bad_host"),
        ];
        assert_eq!(
            refused_summary(&e).unwrap(),
            "egress refused: a.test:443 (not_allowlisted) x2, x??[31m:80 (bad_host)"
        );
        assert!(refused_summary(&e[2..3]).is_none());
        assert!(!network_used(&e));
    }

    #[test]
    fn jsonl_marks_truncation() {
        let text = String::from_utf8(to_jsonl(&[entry("a", 1, Verdict::Denied, "x")], 3)).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("\"dropped_entries\":3"));
    }
}
