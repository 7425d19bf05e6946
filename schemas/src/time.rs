//! Time helpers: Unix nanoseconds, RFC 3339 parsing, window arithmetic.

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The current wall-clock time in Unix nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Parses an RFC 3339 timestamp (`2023-03-20T14:27:05.315384Z`) into Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let dt = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let ns = dt.timestamp_nanos_opt()?;
    u64::try_from(ns).ok()
}

/// Formats Unix seconds as an RFC 3339 UTC timestamp.
pub fn format_rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The start, in Unix seconds, of the tumbling window of `size_s` seconds holding `t_ns`.
pub fn window_start(t_ns: u64, size_s: u64) -> u64 {
    let s = t_ns / NANOS_PER_SEC;
    s - s % size_s
}
