//! Wall-clock time as Sen records it: milliseconds since the Unix epoch.
//!
//! The one helper every crate uses for timestamps in records, reports and
//! logs. Durations that must not jump with the wall clock use
//! `std::time::Instant` instead; replicated time is the state machine's
//! replicated clock, never this.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds in a day.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The UTC calendar day of `ms` (ms since the epoch), as `YYYY-MM-DD`.
pub fn utc_day(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
}

/// The start (00:00 UTC, ms since the epoch) of the day `YYYY-MM-DD`;
/// `None` if `day` is not exactly such a date (or is before 1970).
pub fn day_start_ms(day: &str) -> Option<u64> {
    let b = day.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let t = humantime::parse_rfc3339(&format!("{day}T00:00:00Z")).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// `ms` as RFC 3339 in UTC, to the second (`2026-12-03T07:15:00Z`).
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Minutes east of UTC of `+HH:MM`, `-HH:MM`, `+H` or `Z`, within ±14 h.
pub fn parse_utc_offset(s: &str) -> Option<i32> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    if h.is_empty() || h.len() > 2 || m.len() > 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60 && h * 60 + m <= 14 * 60).then_some(sign * (h * 60 + m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_bad_dates_are_refused() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(day_start_ms("2026-12-03"), Some(1_796_256_000_000));
        assert_eq!(utc_day(1_796_256_000_000 + DAY_MS - 1), "2026-12-03");
        assert_eq!(utc_day(1_796_256_000_000 + DAY_MS), "2026-12-04");
        assert_eq!(day_start_ms("2024-02-29").map(utc_day).as_deref(), Some("2024-02-29"));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "20261203",
            "2026-12-03T00",
            "x",
            "",
        ] {
            assert_eq!(day_start_ms(bad), None, "{bad}");
        }
        assert_eq!(rfc3339(1_796_256_000_000 + 1500), "2026-12-03T00:00:01Z");
    }

    #[test]
    fn now_is_after_2025_and_does_not_go_back_between_calls() {
        let a = super::now_ms();
        let b = super::now_ms();
        assert!(a > 1_735_689_600_000, "{a} is before 2025-01-01");
        assert!(b >= a);
    }

    #[test]
    fn utc_offsets_parse_within_fourteen_hours() {
        assert_eq!(parse_utc_offset("+07:00"), Some(420));
        assert_eq!(parse_utc_offset("-05:30"), Some(-330));
        assert_eq!(parse_utc_offset("+7"), Some(420));
        assert_eq!(parse_utc_offset("Z"), Some(0));
        for bad in ["07:00", "+15:00", "+14:30", "+7:60", "+", "+07:0x", "", "+123"] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
    }
}
