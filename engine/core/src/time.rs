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

/// The zone reports and dashboards read times in: an IANA name
/// (`Asia/Ho_Chi_Minh`, from the system's tz database, else the copy built
/// into Sen) or a fixed offset (`+07:00`). Cheap to copy: each distinct
/// zone is loaded once per process and kept (there are a few hundred).
#[derive(Clone, Copy)]
pub struct Zone {
    name: &'static str,
    tz: &'static jiff::tz::TimeZone,
}

impl Zone {
    /// The portal's zone, and the default of every report.
    pub const DEFAULT_NAME: &'static str = "Asia/Ho_Chi_Minh";

    /// An IANA name, or `+HH:MM`, `-HH:MM`, `+H`, `Z`, `UTC`.
    pub fn parse(s: &str) -> Result<Zone, String> {
        let s = s.trim();
        let (name, tz) = match parse_utc_offset(s) {
            Some(minutes) => {
                let offset = jiff::tz::Offset::from_seconds(minutes * 60).map_err(|e| e.to_string())?;
                let sign = if minutes < 0 { '-' } else { '+' };
                let m = minutes.abs();
                (
                    format!("{sign}{:02}:{:02}", m / 60, m % 60),
                    jiff::tz::TimeZone::fixed(offset),
                )
            }
            None if s.starts_with(['+', '-']) || s.is_empty() => {
                return Err(format!(
                    "time zone {s:?}: expected a name such as Asia/Ho_Chi_Minh or an offset such as +07:00 (at most ±14:00)"
                ));
            }
            None => {
                let tz = jiff::tz::TimeZone::get(s).map_err(|_| {
                    format!("time zone {s:?} is not in the tz database: use a name such as Asia/Ho_Chi_Minh, or an offset such as +07:00")
                })?;
                (tz.iana_name().unwrap_or(s).to_owned(), tz)
            }
        };
        Ok(intern(name, tz))
    }

    /// `Asia/Ho_Chi_Minh` or `+07:00`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Minutes east of UTC at the instant `utc_ms`.
    pub fn offset_minutes_at(&self, utc_ms: u64) -> i32 {
        match jiff::Timestamp::from_millisecond(utc_ms.min(i64::MAX as u64) as i64) {
            Ok(t) => self.tz.to_offset(t).seconds() / 60,
            Err(_) => 0,
        }
    }

    /// The instant (ms since the epoch) at which this zone's clocks read
    /// midnight starting `year-month-day` (the earlier one if the clocks
    /// went back; the first instant after a gap if they jumped over it).
    pub fn midnight_utc_ms(&self, year: i16, month: i8, day: i8) -> Option<u64> {
        let dt = jiff::civil::DateTime::new(year, month, day, 0, 0, 0, 0).ok()?;
        let t = self.tz.to_ambiguous_timestamp(dt).compatible().ok()?;
        u64::try_from(t.as_millisecond()).ok()
    }
}

/// One `Zone` per distinct canonical name for the life of the process.
fn intern(name: String, tz: jiff::tz::TimeZone) -> Zone {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static ZONES: OnceLock<Mutex<HashMap<String, Zone>>> = OnceLock::new();
    let mut zones = ZONES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(z) = zones.get(&name) {
        return *z;
    }
    let z = Zone {
        name: Box::leak(name.clone().into_boxed_str()),
        tz: Box::leak(Box::new(tz)),
    };
    zones.insert(name, z);
    z
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_by_name_and_by_offset() {
        let hcm = Zone::parse("Asia/Ho_Chi_Minh").unwrap();
        assert_eq!(hcm.name(), "Asia/Ho_Chi_Minh");
        assert_eq!(hcm, Zone::parse(" Asia/Ho_Chi_Minh ").unwrap());
        // 2026-12-03T00:00Z is 07:00 in Vietnam; December starts at 17:00 UTC on 30 November.
        assert_eq!(hcm.offset_minutes_at(1_796_256_000_000), 420);
        assert_eq!(
            hcm.midnight_utc_ms(2026, 12, 1),
            Some(1_796_256_000_000 - 2 * DAY_MS - 7 * 3_600_000)
        );
        let fixed = Zone::parse("+07:00").unwrap();
        assert_eq!((fixed.name(), fixed.offset_minutes_at(0)), ("+07:00", 420));
        assert_eq!(Zone::parse("+7").unwrap(), fixed);
        assert_eq!(Zone::parse("Z").unwrap().name(), "+00:00");
        // Daylight saving: Berlin is +01:00 in January and +02:00 in July,
        // and a month there starts at its own midnight.
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(berlin.offset_minutes_at(1_767_225_600_000), 60); // 2026-01-01
        assert_eq!(berlin.offset_minutes_at(1_782_864_000_000), 120); // 2026-07-01
        assert_eq!(
            berlin.midnight_utc_ms(2026, 7, 1),
            Some(1_782_864_000_000 - 2 * 3_600_000)
        );
        for bad in ["Mars/Olympus", "+15:00", "", "-"] {
            let e = Zone::parse(bad).unwrap_err();
            assert!(e.contains("Asia/Ho_Chi_Minh"), "{bad}: {e}");
        }
    }

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
