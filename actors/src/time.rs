//! Timestamps as the protocol writes them: UTC, RFC 3339, milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// The current time, formatted for the wire.
pub fn now_rfc3339() -> String {
    format_ts(Utc::now())
}

/// Formats a time the one way every message and record uses.
pub fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time from a client, in any offset.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        let t = parse_ts("2026-11-21T10:00:00.123456+01:00").unwrap();
        assert_eq!(format_ts(t), "2026-11-21T09:00:00.123Z");
        assert!(parse_ts("yesterday").is_none());
    }
}
