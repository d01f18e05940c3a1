//! Readers and speed per site (R4; docs/reports.md): what each node served
//! of each site, per UTC day and hour, and the day's distinct readers.
//!
//! - `traffic/<day>/<site>/<node>`: [`TrafficRecord`], the node's running
//!   totals for the day (requests, bytes, status classes, a latency
//!   histogram) per hour. Totals only grow within a node's day, so records
//!   are merged field by field with `max`: a record handed in twice, late,
//!   or after a restart (the node starts again from what is stored) never
//!   counts a request twice.
//! - `readers/<day>/<site>`: [`ReadersRecord`], a HyperLogLog sketch of the
//!   day's readers over every node (registers merged with `max`). A reader
//!   is a keyed hash of the client address under a key that changes every
//!   day; no address is stored, and a sketch cannot be turned back into
//!   addresses.
//!
//! The sketch is written here rather than taken from a crate because its
//! bytes are a stored, replicated format: they must not change with a
//! dependency's version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SystemRecord;

/// `traffic/<YYYY-MM-DD>/<site>/<node>`.
pub const TRAFFIC_PREFIX: &str = "traffic/";
/// `readers/<YYYY-MM-DD>/<site>`.
pub const READERS_PREFIX: &str = "readers/";

/// Upper bounds (ms, inclusive) of the latency buckets; one more bucket
/// holds the slower answers.
pub const LATENCY_BOUNDS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Index bits of the sketch: 2^10 registers, a standard error of about 3%.
pub const SKETCH_BITS: u32 = 10;
pub const SKETCH_REGISTERS: usize = 1 << SKETCH_BITS;

/// The register alphabet: register value `v` (0..=55) is character `v`.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn traffic_day_prefix(day: &str) -> Vec<u8> {
    format!("{TRAFFIC_PREFIX}{day}/").into_bytes()
}

pub fn traffic_key(day: &str, site: &str, node: u64) -> Vec<u8> {
    format!("{TRAFFIC_PREFIX}{day}/{site}/{node}").into_bytes()
}

pub fn readers_day_prefix(day: &str) -> Vec<u8> {
    format!("{READERS_PREFIX}{day}/").into_bytes()
}

pub fn readers_key(day: &str, site: &str) -> Vec<u8> {
    format!("{READERS_PREFIX}{day}/{site}").into_bytes()
}

/// What one node served of one site in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourTraffic {
    pub requests: u64,
    /// Body bytes sent.
    pub bytes: u64,
    /// Answers by class: 2xx, 3xx, 4xx, 5xx.
    pub s2xx: u64,
    pub s3xx: u64,
    pub s4xx: u64,
    pub s5xx: u64,
    /// Answers per latency bucket ([`LATENCY_BOUNDS_MS`], then slower).
    pub latency: Vec<u64>,
}

impl HourTraffic {
    /// Count one answer.
    pub fn observe(&mut self, status: u16, bytes: u64, latency_ms: u64) {
        self.requests += 1;
        self.bytes += bytes;
        match status {
            200..=299 => self.s2xx += 1,
            300..=399 => self.s3xx += 1,
            400..=499 => self.s4xx += 1,
            500..=599 => self.s5xx += 1,
            _ => {}
        }
        self.latency.resize(LATENCY_BUCKETS, 0);
        let b = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| latency_ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[b] += 1;
    }

    /// Field-wise `max` (both are running totals of the same node).
    pub fn join(&mut self, o: &HourTraffic) {
        self.requests = self.requests.max(o.requests);
        self.bytes = self.bytes.max(o.bytes);
        self.s2xx = self.s2xx.max(o.s2xx);
        self.s3xx = self.s3xx.max(o.s3xx);
        self.s4xx = self.s4xx.max(o.s4xx);
        self.s5xx = self.s5xx.max(o.s5xx);
        let n = self.latency.len().max(o.latency.len());
        self.latency.resize(n, 0);
        for (a, b) in self.latency.iter_mut().zip(&o.latency) {
            *a = (*a).max(*b);
        }
    }

    /// Sum of two nodes' (or hours') figures.
    pub fn add(&mut self, o: &HourTraffic) {
        self.requests += o.requests;
        self.bytes += o.bytes;
        self.s2xx += o.s2xx;
        self.s3xx += o.s3xx;
        self.s4xx += o.s4xx;
        self.s5xx += o.s5xx;
        let n = self.latency.len().max(o.latency.len());
        self.latency.resize(n, 0);
        for (a, b) in self.latency.iter_mut().zip(&o.latency) {
            *a += *b;
        }
    }

    /// The latency (ms, a bucket's upper bound) below which a fraction `q`
    /// of the answers fell; `None` without answers, `u64::MAX` past the
    /// last bound.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

/// One node's day of one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficRecord {
    pub version: u32,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub site: String,
    pub node: u64,
    /// Hour of the UTC day (0–23) → what was served in it.
    pub hours: BTreeMap<u8, HourTraffic>,
    pub updated_at_ms: u64,
}

impl SystemRecord for TrafficRecord {
    const WHAT: &'static str = "a traffic record";
    const VERSION: u32 = 1;
}

impl TrafficRecord {
    pub fn new(day: &str, site: &str, node: u64) -> Self {
        Self {
            version: Self::VERSION,
            day: day.to_owned(),
            site: site.to_owned(),
            node,
            hours: BTreeMap::new(),
            updated_at_ms: 0,
        }
    }

    pub fn key(&self) -> Vec<u8> {
        traffic_key(&self.day, &self.site, self.node)
    }

    /// Join `other` (the same day, site and node) into this record.
    pub fn merge(&mut self, other: &TrafficRecord) -> Result<(), String> {
        if (&self.day, &self.site, self.node) != (&other.day, &other.site, other.node) {
            return Err(format!(
                "cannot merge the traffic of {} {} node {} into that of {} {} node {}",
                other.day, other.site, other.node, self.day, self.site, self.node
            ));
        }
        for (h, t) in &other.hours {
            self.hours.entry(*h).or_default().join(t);
        }
        self.updated_at_ms = self.updated_at_ms.max(other.updated_at_ms);
        Ok(())
    }

    /// The day's totals.
    pub fn total(&self) -> HourTraffic {
        let mut t = HourTraffic::default();
        for h in self.hours.values() {
            t.add(h);
        }
        t
    }

    pub fn check(&self) -> Result<(), String> {
        if sen_core::time::day_start_ms(&self.day).is_none() {
            return Err(format!("{:?} is not a day (YYYY-MM-DD)", self.day));
        }
        check_site(&self.site)?;
        if self.node == 0 {
            return Err("node 0 does not exist".into());
        }
        if let Some(h) = self.hours.keys().find(|h| **h > 23) {
            return Err(format!("hour {h} is not in a day"));
        }
        if self.hours.values().any(|h| h.latency.len() > LATENCY_BUCKETS) {
            return Err(format!("more than {LATENCY_BUCKETS} latency buckets"));
        }
        Ok(())
    }
}

fn check_site(site: &str) -> Result<(), String> {
    if site.is_empty() || site.len() > 255 || site.contains('/') || site.chars().any(char::is_control) {
        return Err(format!("{site:?} is not a site name"));
    }
    Ok(())
}

/// A HyperLogLog sketch of distinct readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readers {
    registers: Vec<u8>,
}

impl Default for Readers {
    fn default() -> Self {
        Self {
            registers: vec![0; SKETCH_REGISTERS],
        }
    }
}

impl Readers {
    /// Count a reader by a uniformly distributed 64-bit hash of it.
    pub fn insert(&mut self, hash: u64) {
        let idx = (hash >> (64 - SKETCH_BITS)) as usize;
        let rest = hash << SKETCH_BITS;
        // Position of the first 1 bit in the remaining 54 bits (1-based).
        let rho = (rest.leading_zeros() + 1).min(64 - SKETCH_BITS + 1) as u8;
        if rho > self.registers[idx] {
            self.registers[idx] = rho;
        }
    }

    /// Readers of `other` join these.
    pub fn merge(&mut self, other: &Readers) {
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    /// The estimated number of distinct readers (linear counting while
    /// few registers are set, as HyperLogLog prescribes).
    pub fn estimate(&self) -> f64 {
        let m = SKETCH_REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.registers.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|r| **r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }

    /// One character per register.
    pub fn encode(&self) -> String {
        self.registers.iter().map(|r| ALPHABET[*r as usize] as char).collect()
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        if text.len() != SKETCH_REGISTERS {
            return Err(format!(
                "a readers sketch has {SKETCH_REGISTERS} registers, not {}",
                text.len()
            ));
        }
        let registers = text
            .bytes()
            .map(|c| {
                ALPHABET
                    .iter()
                    .position(|a| *a == c)
                    .filter(|v| *v <= (64 - SKETCH_BITS as usize + 1))
                    .map(|v| v as u8)
                    .ok_or_else(|| format!("{:?} is not a sketch register", c as char))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { registers })
    }
}

/// The day's readers of one site, over every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadersRecord {
    pub version: u32,
    pub day: String,
    pub site: String,
    /// [`Readers::encode`].
    pub registers: String,
    pub updated_at_ms: u64,
}

impl SystemRecord for ReadersRecord {
    const WHAT: &'static str = "a readers record";
    const VERSION: u32 = 1;
}

impl ReadersRecord {
    pub fn new(day: &str, site: &str, readers: &Readers) -> Self {
        Self {
            version: Self::VERSION,
            day: day.to_owned(),
            site: site.to_owned(),
            registers: readers.encode(),
            updated_at_ms: 0,
        }
    }

    pub fn key(&self) -> Vec<u8> {
        readers_key(&self.day, &self.site)
    }

    pub fn readers(&self) -> Result<Readers, String> {
        Readers::decode(&self.registers)
    }

    /// Join `other` (the same day and site) into this record.
    pub fn merge(&mut self, other: &ReadersRecord) -> Result<(), String> {
        if (&self.day, &self.site) != (&other.day, &other.site) {
            return Err(format!(
                "cannot merge the readers of {} {} into those of {} {}",
                other.day, other.site, self.day, self.site
            ));
        }
        let mut r = self.readers()?;
        r.merge(&other.readers()?);
        self.registers = r.encode();
        self.updated_at_ms = self.updated_at_ms.max(other.updated_at_ms);
        Ok(())
    }

    pub fn check(&self) -> Result<(), String> {
        if sen_core::time::day_start_ms(&self.day).is_none() {
            return Err(format!("{:?} is not a day (YYYY-MM-DD)", self.day));
        }
        check_site(&self.site)?;
        self.readers().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hash(i: u64) -> u64 {
        let h = blake3::hash(&i.to_le_bytes());
        u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap())
    }

    #[test]
    fn the_stored_forms_are_pinned() {
        let mut t = TrafficRecord::new("2026-12-03", "portal", 2);
        let h = t.hours.entry(9).or_default();
        h.observe(200, 1500, 3);
        h.observe(404, 20, 7000);
        t.updated_at_ms = 1_796_288_400_000;
        assert_eq!(
            String::from_utf8(t.to_json().unwrap()).unwrap(),
            r#"{"version":1,"day":"2026-12-03","site":"portal","node":2,"hours":{"9":{"requests":2,"bytes":1520,"s2xx":1,"s3xx":0,"s4xx":1,"s5xx":0,"latency":[0,0,1,0,0,0,0,0,0,0,0,0,1]}},"updated_at_ms":1796288400000}"#
        );
        assert_eq!(TrafficRecord::from_json(&t.to_json().unwrap()).unwrap(), t);

        let mut r = Readers::default();
        r.insert(0);
        r.insert(u64::MAX);
        let rec = ReadersRecord::new("2026-12-03", "portal", &r);
        let json = String::from_utf8(rec.to_json().unwrap()).unwrap();
        // Register 0 holds 55 (no 1 bit in the 54 bits: 54 + 1), the last 1.
        let want = format!("3{}B", "A".repeat(SKETCH_REGISTERS - 2));
        assert_eq!(
            json,
            format!(r#"{{"version":1,"day":"2026-12-03","site":"portal","registers":"{want}","updated_at_ms":0}}"#)
        );
        assert_eq!(ReadersRecord::from_json(json.as_bytes()).unwrap().readers().unwrap(), r);
    }

    #[test]
    fn small_and_large_counts_are_estimated_closely() {
        for n in [1u64, 50, 1000, 20_000] {
            let mut r = Readers::default();
            for i in 0..n {
                r.insert(hash(i));
                r.insert(hash(i)); // a reader coming back counts once
            }
            let e = r.estimate();
            let err = (e - n as f64).abs() / n as f64;
            assert!(err < 0.1, "{n} readers estimated as {e}");
        }
        assert_eq!(Readers::default().estimate(), 0.0);
    }

    #[test]
    fn sketches_of_different_nodes_merge_into_the_union() {
        let (mut a, mut b, mut both) = (Readers::default(), Readers::default(), Readers::default());
        for i in 0..300 {
            a.insert(hash(i));
            both.insert(hash(i));
        }
        for i in 200..500 {
            b.insert(hash(i));
            both.insert(hash(i));
        }
        a.merge(&b);
        assert_eq!(a, both);
        assert!((a.estimate() - 500.0).abs() < 50.0, "{}", a.estimate());
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = HourTraffic::default();
        for ms in [1, 1, 3, 3, 3, 8, 20, 90, 400, 9000] {
            h.observe(200, 0, ms);
        }
        assert_eq!(h.quantile_ms(0.5), Some(5));
        assert_eq!(h.quantile_ms(0.9), Some(500));
        assert_eq!(h.quantile_ms(0.99), Some(u64::MAX));
        assert_eq!(HourTraffic::default().quantile_ms(0.5), None);
    }

    #[test]
    fn bad_records_are_refused() {
        assert!(Readers::decode("AAA").is_err());
        assert!(Readers::decode(&"~".repeat(SKETCH_REGISTERS)).is_err());
        assert!(
            Readers::decode(&"/".repeat(SKETCH_REGISTERS)).is_err(),
            "63 is past the largest register"
        );
        let mut t = TrafficRecord::new("2026-12-03", "a/b", 1);
        assert!(t.check().is_err());
        t.site = "portal".into();
        t.hours.insert(24, HourTraffic::default());
        assert!(t.check().is_err());
        let mut a = TrafficRecord::new("2026-12-03", "portal", 1);
        assert!(a.merge(&TrafficRecord::new("2026-12-03", "portal", 2)).is_err());
    }

    proptest! {
        #[test]
        fn merging_in_any_order_or_twice_gives_the_same_totals(
            reqs in proptest::collection::vec((0u8..24, 100u16..600, 0u64..10_000, 0u64..10_000), 0..60),
            split in 0usize..60,
        ) {
            // A node's running totals at two moments: the later one
            // contains the earlier; merging them in either order, or
            // twice, gives the later one.
            let mut early = TrafficRecord::new("2026-12-03", "portal", 1);
            let mut late = early.clone();
            for (i, (h, s, b, l)) in reqs.iter().enumerate() {
                late.hours.entry(*h).or_default().observe(*s, *b, *l);
                if i < split {
                    early.hours.entry(*h).or_default().observe(*s, *b, *l);
                }
            }
            let mut x = early.clone();
            x.merge(&late).unwrap();
            x.merge(&early).unwrap();
            let mut y = late.clone();
            y.merge(&early).unwrap();
            prop_assert_eq!(x.total(), late.total());
            prop_assert_eq!(y.total(), late.total());
        }
    }
}
