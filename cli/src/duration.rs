//! Durations as the user types them (`500ms`, `30s`, `5m`, `1h`, `2d`, bare seconds) and back.

use std::time::Duration;

use edgecache_core::rules::parse_duration;

/// What every duration error repeats, so the user sees the accepted forms at the point of failure.
const FORMS: &str = "use a whole number with a unit ms, s, m, h or d (500ms, 30s, 5m, 1h, 2d), \
                     or a bare number of seconds";

/// Parses `500ms`, `30s`, `5m`, `1h`, `2d`, or a bare integer (seconds): the worker's own
/// grammar (`edgecache_core::rules::parse_duration`), with the accepted forms repeated.
pub fn parse(input: &str) -> Result<Duration, String> {
    parse_duration(input.trim()).map_err(|e| format!("invalid duration '{input}': {e}; {FORMS}"))
}

/// Parses a rule TTL: the server stores whole seconds, and a zero TTL would mean "do not cache",
/// which `--no-store` says explicitly.
pub fn parse_ttl(input: &str) -> Result<u64, String> {
    let duration = parse(input)?;
    if duration.subsec_millis() != 0 {
        return Err(format!(
            "invalid TTL '{input}': a TTL is a whole number of seconds (e.g. 30s, 5m, 1h)"
        ));
    }
    if duration.is_zero() {
        return Err(format!(
            "invalid TTL '{input}': must be at least 1s; use --no-store to disable caching"
        ));
    }
    Ok(duration.as_secs())
}

/// Parses a maximum staleness in milliseconds; `0` is valid and means "check on every hit".
pub fn parse_millis(input: &str) -> Result<u64, String> {
    let duration = parse(input)?;
    u64::try_from(duration.as_millis())
        .map_err(|_| format!("invalid duration '{input}': the number is too large"))
}

/// Formats milliseconds in the largest unit that divides them exactly, so `format_millis(3_600_000)`
/// reads `1h` and round-trips through [`parse`].
pub fn format_millis(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    if ms == 0 {
        return "0s".to_string();
    }
    for (size, unit) in UNITS {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Formats whole seconds the same way as [`format_millis`].
pub fn format_secs(secs: u64) -> String {
    secs.checked_mul(1_000)
        .map(format_millis)
        .unwrap_or_else(|| format!("{secs}s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse(" 0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in [
            "",
            "ms",
            "1x",
            "1.5h",
            "-1s",
            "1h30m",
            "1 h",
            "1H",
            "h1",
            "99999999999999999999",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.starts_with("invalid duration"), "{bad}: {err}");
        }
        assert!(parse("1x").unwrap_err().contains("500ms, 30s, 5m, 1h, 2d"));
        assert!(parse("18446744073709551615d")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn ttl_must_be_whole_positive_seconds() {
        assert_eq!(parse_ttl("1h"), Ok(3_600));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("2000ms"), Ok(2));
        assert!(parse_ttl("1500ms").unwrap_err().contains("whole number"));
        assert!(parse_ttl("0").unwrap_err().contains("--no-store"));
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn staleness_in_millis() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("2"), Ok(2_000));
        assert_eq!(parse_millis("0"), Ok(0));
    }

    #[test]
    fn formats_round_trip() {
        for ms in [
            0, 1, 500, 1_000, 1_500, 60_000, 90_000, 3_600_000, 86_400_000, 90_000_000,
        ] {
            let text = format_millis(ms);
            assert_eq!(parse_millis(&text), Ok(ms), "{text}");
        }
        assert_eq!(format_secs(3_600), "1h");
        assert_eq!(format_secs(90), "90s");
        assert_eq!(format_millis(1_500), "1500ms");
    }
}
