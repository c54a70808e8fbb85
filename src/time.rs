//! RFC 3339 timestamps in the reference's shape
//! (`2026-11-21T13:50:00.123456+00:00`, UTC, microseconds).

use jiff::{SignedDuration, Timestamp};

/// Format a timestamp as UTC RFC 3339 with microsecond precision.
pub fn rfc3339(ts: Timestamp) -> String {
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1000
    )
}

/// Now, formatted with [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(Timestamp::now())
}

/// Now plus `secs` seconds, formatted with [`rfc3339`].
pub fn rfc3339_in(secs: i64) -> String {
    let ts = Timestamp::now()
        .checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX);
    rfc3339(ts)
}

/// Parse an RFC 3339 date-time (with offset) into a timestamp.
pub fn parse(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_isoformat() {
        let ts: Timestamp = "2026-11-21T13:50:00.1234567Z".parse().unwrap();
        assert_eq!(rfc3339(ts), "2026-11-21T13:50:00.123456+00:00");
        let expected: Timestamp = "2026-11-21T13:50:00.123456Z".parse().unwrap();
        assert_eq!(parse("2026-11-21T13:50:00.123456+00:00"), Some(expected));
        assert!(parse("yesterday").is_none());
    }
}
