//! Availability as the nodes' built-in probes measured it (`sen report`,
//! docs/reports.md).
//!
//! Every node probes every few seconds: a small write through the leader,
//! a linearizable read, and each site's front page through its own HTTP
//! listener. It keeps one [`Minute`] per target per minute of the UTC day
//! and hands the day's record to the leader, which stores
//! `avail/<day>/<target>/<node>` here. Records are merged with
//! [`Minute::join`], which is commutative, associative and idempotent: a
//! record handed in twice, late, or after the node restarted (with the
//! earlier minutes unknown to it) never undoes what was stored.

use serde::{Deserialize, Serialize};

use super::SystemRecord;

/// Availability records: `avail/<YYYY-MM-DD>/<target>/<node>`.
pub const AVAILABILITY_PREFIX: &str = "avail/";

/// Minutes in a (UTC) day: the length of every record.
pub const MINUTES_PER_DAY: usize = 1440;

/// What the probes of one node saw of one target during one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Minute {
    /// No probe ran (the node was down, not yet started, or not probing).
    #[default]
    Unknown,
    /// Every probe succeeded.
    Up,
    /// Some probes failed, some succeeded.
    Degraded,
    /// Every probe failed.
    Down,
}

impl Minute {
    /// What two observations of the same minute add up to. `Unknown` adds
    /// nothing; success and failure together are `Degraded`.
    pub fn join(self, other: Minute) -> Minute {
        use Minute::*;
        match (self, other) {
            (Unknown, x) | (x, Unknown) => x,
            (a, b) if a == b => a,
            _ => Degraded,
        }
    }

    /// The state of one probe's outcome.
    pub fn of(ok: bool) -> Minute {
        if ok { Minute::Up } else { Minute::Down }
    }

    fn letter(self) -> char {
        match self {
            Minute::Unknown => '-',
            Minute::Up => 'u',
            Minute::Degraded => 'd',
            Minute::Down => 'x',
        }
    }

    fn from_letter(c: char) -> Option<Minute> {
        Some(match c {
            '-' => Minute::Unknown,
            'u' => Minute::Up,
            'd' => Minute::Degraded,
            'x' => Minute::Down,
            _ => return None,
        })
    }
}

/// A day of minutes, run-length encoded: `"480-959u1x"` is 480 unknown
/// minutes, 959 up, 1 down.
pub fn encode_minutes(minutes: &[Minute]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < minutes.len() {
        let m = minutes[i];
        let run = minutes[i..].iter().take_while(|x| **x == m).count();
        out.push_str(&run.to_string());
        out.push(m.letter());
        i += run;
    }
    out
}

/// The minutes of an encoded day; exactly [`MINUTES_PER_DAY`] of them.
pub fn decode_minutes(text: &str) -> Result<Vec<Minute>, String> {
    let mut out = Vec::with_capacity(MINUTES_PER_DAY);
    let mut run: usize = 0;
    let mut digits = 0;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            digits += 1;
            if digits > 4 {
                return Err(format!("a run longer than a day in minutes {text:?}"));
            }
            run = run * 10 + d as usize;
            continue;
        }
        let m = Minute::from_letter(c).ok_or_else(|| format!("{c:?} is not a minute state (- u d x)"))?;
        if digits == 0 || run == 0 {
            return Err(format!("a state without a count in minutes {text:?}"));
        }
        if out.len() + run > MINUTES_PER_DAY {
            return Err(format!("more than {MINUTES_PER_DAY} minutes in {text:?}"));
        }
        out.extend(std::iter::repeat_n(m, run));
        run = 0;
        digits = 0;
    }
    if digits != 0 || out.len() != MINUTES_PER_DAY {
        return Err(format!(
            "minutes {text:?} cover {} minutes, not a day ({MINUTES_PER_DAY})",
            out.len()
        ));
    }
    Ok(out)
}

/// The probe targets.
pub mod target {
    /// A small write through the leader.
    pub const WRITE: &str = "write";
    /// A linearizable read (ReadIndex through the leader).
    pub const READ: &str = "read";
    /// Site targets are `site:<name>`.
    pub const SITE_PREFIX: &str = "site:";

    pub fn site(name: &str) -> String {
        format!("{SITE_PREFIX}{name}")
    }

    /// Whether `t` names a target: `write`, `read` or `site:<name>` (a
    /// name without `/`, so it stays one key segment).
    pub fn is_valid(t: &str) -> bool {
        t == WRITE
            || t == READ
            || t.strip_prefix(SITE_PREFIX).is_some_and(|n| {
                !n.is_empty() && n.len() <= 255 && !n.contains('/') && !n.chars().any(char::is_control)
            })
    }
}

/// `avail/<day>/`: every record of one day sorts under it, and days sort in
/// time order.
pub fn availability_day_prefix(day: &str) -> Vec<u8> {
    format!("{AVAILABILITY_PREFIX}{day}/").into_bytes()
}

pub fn availability_key(day: &str, target: &str, node: u64) -> Vec<u8> {
    format!("{AVAILABILITY_PREFIX}{day}/{target}/{node}").into_bytes()
}

/// Written with every write probe: when node `node` last got a write
/// through the cluster.
pub fn probe_beat_key(node: u64) -> Vec<u8> {
    format!("probe/beat/{node}").into_bytes()
}

/// One node's view of one target during one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityRecord {
    pub version: u32,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// `write`, `read` or `site:<name>`.
    pub target: String,
    pub node: u64,
    /// [`encode_minutes`] of the day's 1440 minutes (00:00 UTC first).
    pub minutes: String,
    /// When the leader last merged a report into it (ms since the epoch).
    pub updated_at_ms: u64,
}

impl SystemRecord for AvailabilityRecord {
    const WHAT: &'static str = "an availability record";
    const VERSION: u32 = 1;
}

impl AvailabilityRecord {
    /// A day in which nothing is known yet.
    pub fn new(day: &str, target: &str, node: u64) -> Self {
        Self {
            version: Self::VERSION,
            day: day.to_owned(),
            target: target.to_owned(),
            node,
            minutes: encode_minutes(&[Minute::Unknown; MINUTES_PER_DAY]),
            updated_at_ms: 0,
        }
    }

    pub fn key(&self) -> Vec<u8> {
        availability_key(&self.day, &self.target, self.node)
    }

    /// The 1440 minutes.
    pub fn states(&self) -> Result<Vec<Minute>, String> {
        decode_minutes(&self.minutes)
    }

    /// Record that one minute (0 = 00:00 UTC) was seen as `m`, joined with
    /// what was seen of it before.
    pub fn observe(&mut self, minute: usize, m: Minute) -> Result<(), String> {
        let mut s = self.states()?;
        let slot = s
            .get_mut(minute)
            .ok_or_else(|| format!("minute {minute} is not in a day"))?;
        *slot = slot.join(m);
        self.minutes = encode_minutes(&s);
        Ok(())
    }

    /// Join `other` (the same day, target and node) into this record.
    pub fn merge(&mut self, other: &AvailabilityRecord) -> Result<(), String> {
        if (&self.day, &self.target, self.node) != (&other.day, &other.target, other.node) {
            return Err(format!(
                "cannot merge the record of {} {} node {} into that of {} {} node {}",
                other.day, other.target, other.node, self.day, self.target, self.node
            ));
        }
        let a = self.states()?;
        let b = other.states()?;
        let joined: Vec<Minute> = a.iter().zip(&b).map(|(x, y)| x.join(*y)).collect();
        self.minutes = encode_minutes(&joined);
        self.updated_at_ms = self.updated_at_ms.max(other.updated_at_ms);
        Ok(())
    }

    /// Whether the record is well formed: a real day, a known kind of
    /// target, a positive node id, a whole day of minutes.
    pub fn check(&self) -> Result<(), String> {
        if sen_core::time::day_start_ms(&self.day).is_none() {
            return Err(format!("{:?} is not a day (YYYY-MM-DD)", self.day));
        }
        if !target::is_valid(&self.target) {
            return Err(format!(
                "{:?} is not a probe target (write, read or site:NAME)",
                self.target
            ));
        }
        if self.node == 0 {
            return Err("node 0 does not exist".into());
        }
        self.states().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn any_minute() -> impl Strategy<Value = Minute> {
        prop_oneof![
            Just(Minute::Unknown),
            Just(Minute::Up),
            Just(Minute::Degraded),
            Just(Minute::Down)
        ]
    }

    #[test]
    fn the_stored_form_is_pinned() {
        let mut r = AvailabilityRecord::new("2026-12-03", target::WRITE, 2);
        r.observe(0, Minute::Up).unwrap();
        r.observe(1, Minute::Down).unwrap();
        r.observe(1, Minute::Up).unwrap();
        r.updated_at_ms = 7;
        assert_eq!(
            String::from_utf8(r.to_json().unwrap()).unwrap(),
            r#"{"version":1,"day":"2026-12-03","target":"write","node":2,"minutes":"1u1d1438-","updated_at_ms":7}"#
        );
        assert_eq!(r.key(), b"avail/2026-12-03/write/2");
        assert_eq!(AvailabilityRecord::from_json(&r.to_json().unwrap()).unwrap(), r);
        assert!(AvailabilityRecord::from_json(br#"{"version":2}"#).is_err());
    }

    #[test]
    fn bad_minutes_and_records_are_refused() {
        for bad in [
            "", "1440", "u", "0u1440u", "1441u", "1439u", "1440q", "720u721x", "01440u00", "99999u",
        ] {
            assert!(decode_minutes(bad).is_err(), "{bad:?}");
        }
        let good = AvailabilityRecord::new("2026-12-03", "site:portal", 1);
        good.check().unwrap();
        for (day, t, node) in [
            ("2026-02-30", "write", 1),
            ("2026-12-03", "site:", 1),
            ("2026-12-03", "site:a/b", 1),
            ("2026-12-03", "disk", 1),
            ("2026-12-03", "read", 0),
        ] {
            assert!(
                AvailabilityRecord::new(day, t, node).check().is_err(),
                "{day} {t} {node}"
            );
        }
    }

    proptest! {
        #[test]
        fn encoding_round_trips(m in proptest::collection::vec(any_minute(), MINUTES_PER_DAY)) {
            prop_assert_eq!(decode_minutes(&encode_minutes(&m)).unwrap(), m);
        }

        #[test]
        fn join_is_a_semilattice(a in any_minute(), b in any_minute(), c in any_minute()) {
            prop_assert_eq!(a.join(b), b.join(a));
            prop_assert_eq!(a.join(b).join(c), a.join(b.join(c)));
            prop_assert_eq!(a.join(a), a);
            prop_assert_eq!(a.join(Minute::Unknown), a);
        }

        /// However reports are repeated or reordered, the stored record is
        /// the join of them all.
        #[test]
        fn merging_in_any_order_gives_the_same_record(
            obs in proptest::collection::vec((0usize..MINUTES_PER_DAY, any::<bool>()), 0..40),
            split in 0usize..40,
        ) {
            let day = "2026-11-30";
            let mut early = AvailabilityRecord::new(day, "read", 1);
            let mut late = AvailabilityRecord::new(day, "read", 1);
            let mut all = AvailabilityRecord::new(day, "read", 1);
            for (i, (min, ok)) in obs.iter().enumerate() {
                let target = if i < split { &mut early } else { &mut late };
                target.observe(*min, Minute::of(*ok)).unwrap();
                all.observe(*min, Minute::of(*ok)).unwrap();
            }
            let mut ab = early.clone();
            ab.merge(&late).unwrap();
            ab.merge(&late).unwrap();
            let mut ba = late.clone();
            ba.merge(&early).unwrap();
            prop_assert_eq!(&ab.minutes, &all.minutes);
            prop_assert_eq!(&ba.minutes, &all.minutes);
        }
    }
}
