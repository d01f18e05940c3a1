//! Wall-clock time as Sen records it: milliseconds since the Unix epoch.
//!
//! The one helper every crate uses for timestamps in records, reports and
//! logs. Durations that must not jump with the wall clock use
//! `std::time::Instant` instead; replicated time is the state machine's
//! replicated clock, never this.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2025_and_does_not_go_back_between_calls() {
        let a = super::now_ms();
        let b = super::now_ms();
        assert!(a > 1_735_689_600_000, "{a} is before 2025-01-01");
        assert!(b >= a);
    }
}
