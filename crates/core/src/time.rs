//! Time as the admin API shows it. The clock itself is the runtime's; this only formats.

use chrono::{DateTime, SecondsFormat};

/// Milliseconds since the epoch as RFC 3339 UTC to the second (`2026-11-25T12:00:00Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    DateTime::from_timestamp(secs, 0)
        .unwrap_or(DateTime::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_608_000_000), "2026-11-25T12:00:00Z");
    }
}
