//! Readers and access speed per site over a period (R4; docs/reports.md),
//! from the nodes' traffic records and readers sketches
//! (`sen_raft::schema::system::traffic`).

use std::collections::BTreeMap;

use sen_client::Client;
use sen_raft::schema::system::traffic::HourTraffic;
use sen_raft::schema::system::{Readers, ReadersRecord, SystemRecord, TrafficRecord};
use serde::Serialize;

use crate::OpsError;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// One UTC day of a site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteDay {
    pub day: String,
    pub requests: u64,
    /// Estimated distinct readers that day (over every node).
    pub readers: u64,
}

/// A site over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteReaders {
    pub site: String,
    pub requests: u64,
    pub bytes: u64,
    pub s2xx: u64,
    pub s3xx: u64,
    pub s4xx: u64,
    pub s5xx: u64,
    /// Latency below which 50/95/99% of the answers fell (ms, a bucket's
    /// upper bound; `null` without answers or past the last bucket).
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    /// Mean and largest daily readers over the days with answers.
    pub readers_per_day_mean: f64,
    pub readers_per_day_max: u64,
    pub days: Vec<SiteDay>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadersReport {
    pub from_ms: u64,
    pub to_ms: u64,
    pub sites: Vec<SiteReaders>,
}

/// A latency quantile for people: `≤ 50 ms`, or `—` without one.
pub fn bound_ms(v: Option<u64>) -> String {
    v.map_or("—".to_owned(), |v| format!("≤ {v} ms"))
}

fn bounded(q: Option<u64>) -> Option<u64> {
    q.filter(|v| *v != u64::MAX)
}

/// Sum the nodes' hours within `[from_ms, to_ms)` and estimate readers per
/// UTC day (days that overlap the period count whole: the sketch is kept
/// per day). Records that do not decode are named in the list returned.
pub fn compute(
    traffic: &[TrafficRecord],
    readers: &[ReadersRecord],
    from_ms: u64,
    to_ms: u64,
) -> (ReadersReport, Vec<String>) {
    let mut skipped = Vec::new();
    let mut totals: BTreeMap<&str, HourTraffic> = BTreeMap::new();
    let mut per_day: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for t in traffic {
        let Some(day_start) = sen_core::time::day_start_ms(&t.day) else {
            skipped.push(format!("traffic of {} on {:?}: not a day", t.site, t.day));
            continue;
        };
        for (h, x) in &t.hours {
            let at = day_start + u64::from(*h) * HOUR_MS;
            if at < from_ms || at >= to_ms {
                continue;
            }
            totals.entry(&t.site).or_default().add(x);
            *per_day.entry((&t.site, &t.day)).or_default() += x.requests;
        }
    }
    let mut sketches: BTreeMap<(&str, &str), Readers> = BTreeMap::new();
    for r in readers {
        let Some(day_start) = sen_core::time::day_start_ms(&r.day) else {
            skipped.push(format!("readers of {} on {:?}: not a day", r.site, r.day));
            continue;
        };
        if day_start >= to_ms || day_start + DAY_MS <= from_ms {
            continue;
        }
        match r.readers() {
            Ok(s) => sketches.entry((&r.site, &r.day)).or_default().merge(&s),
            Err(e) => skipped.push(format!("readers of {} on {}: {e}", r.site, r.day)),
        }
    }
    let mut sites = Vec::new();
    for (site, t) in totals {
        let mut days: BTreeMap<&str, SiteDay> = BTreeMap::new();
        for ((s, day), n) in per_day.range((site, "")..) {
            if *s != site {
                break;
            }
            days.insert(
                day,
                SiteDay {
                    day: (*day).to_owned(),
                    requests: *n,
                    readers: 0,
                },
            );
        }
        for ((s, day), sketch) in sketches.range((site, "")..) {
            if *s != site {
                break;
            }
            if let Some(d) = days.get_mut(day) {
                d.readers = sketch.estimate().round() as u64;
            }
        }
        let days: Vec<SiteDay> = days.into_values().collect();
        let counted: Vec<u64> = days.iter().map(|d| d.readers).collect();
        sites.push(SiteReaders {
            site: site.to_owned(),
            requests: t.requests,
            bytes: t.bytes,
            s2xx: t.s2xx,
            s3xx: t.s3xx,
            s4xx: t.s4xx,
            s5xx: t.s5xx,
            p50_ms: bounded(t.quantile_ms(0.50)),
            p95_ms: bounded(t.quantile_ms(0.95)),
            p99_ms: bounded(t.quantile_ms(0.99)),
            readers_per_day_mean: if counted.is_empty() {
                0.0
            } else {
                counted.iter().sum::<u64>() as f64 / counted.len() as f64
            },
            readers_per_day_max: counted.iter().copied().max().unwrap_or(0),
            days,
        });
    }
    (ReadersReport { from_ms, to_ms, sites }, skipped)
}

/// Read the records of `[from_ms, to_ms)` from the cluster.
pub async fn fetch(client: &Client, from_ms: u64, to_ms: u64) -> Result<(ReadersReport, Vec<String>), OpsError> {
    let from_day = sen_core::time::utc_day(from_ms);
    let to_day = sen_core::time::utc_day(to_ms.saturating_sub(1));
    let mut skipped = Vec::new();
    let mut traffic = Vec::new();
    for j in client.list_day_records("traffic", &from_day, &to_day).await? {
        match TrafficRecord::from_json(j.as_bytes()) {
            Ok(t) => traffic.push(t),
            Err(e) => skipped.push(format!("a traffic record: {e}")),
        }
    }
    let mut readers = Vec::new();
    for j in client.list_day_records("readers", &from_day, &to_day).await? {
        match ReadersRecord::from_json(j.as_bytes()) {
            Ok(r) => readers.push(r),
            Err(e) => skipped.push(format!("a readers record: {e}")),
        }
    }
    let (r, more) = compute(&traffic, &readers, from_ms, to_ms);
    skipped.extend(more);
    Ok((r, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 1_796_256_000_000; // 2026-12-03T00:00Z

    fn hash(i: u64) -> u64 {
        let h = blake3::hash(&i.to_le_bytes());
        u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap())
    }

    #[test]
    fn nodes_add_up_and_readers_are_the_union() {
        // Two nodes serve "portal" on 03/12: node 1 at 09:00 (30 answers,
        // readers 0..30), node 2 at 10:00 (20 answers, readers 20..50).
        // Node 1 also served "gazette" the day before (outside).
        let mut t1 = TrafficRecord::new("2026-12-03", "portal", 1);
        let mut t2 = TrafficRecord::new("2026-12-03", "portal", 2);
        let (mut r1, mut r2) = (Readers::default(), Readers::default());
        for i in 0..30 {
            t1.hours.entry(9).or_default().observe(200, 100, 3);
            r1.insert(hash(i));
        }
        for i in 20..40 {
            t2.hours
                .entry(10)
                .or_default()
                .observe(if i < 38 { 200 } else { 404 }, 50, 40);
            r2.insert(hash(i + 10));
        }
        let mut old = TrafficRecord::new("2026-12-02", "gazette", 1);
        old.hours.entry(23).or_default().observe(200, 1, 1);
        let readers = vec![
            ReadersRecord::new("2026-12-03", "portal", &r1),
            ReadersRecord::new("2026-12-03", "portal", &r2),
        ];
        let (r, skipped) = compute(&[t1, t2, old], &readers, DAY, DAY + 86_400_000);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(r.sites.len(), 1, "gazette's day is outside the period");
        let p = &r.sites[0];
        assert_eq!((p.requests, p.bytes, p.s2xx, p.s4xx), (50, 4000, 48, 2));
        assert_eq!((p.p50_ms, p.p95_ms), (Some(5), Some(50)));
        assert_eq!(p.days.len(), 1);
        assert_eq!(p.days[0].requests, 50);
        assert!((48..=52).contains(&p.days[0].readers), "{}", p.days[0].readers);
        assert_eq!(p.readers_per_day_max, p.days[0].readers);

        // An hour outside a shorter period is left out.
        let (r, _) = compute(
            &[TrafficRecord { ..r_t() }],
            &[],
            DAY + 10 * 3_600_000,
            DAY + 11 * 3_600_000,
        );
        assert_eq!(r.sites[0].requests, 1);
    }

    fn r_t() -> TrafficRecord {
        let mut t = TrafficRecord::new("2026-12-03", "portal", 1);
        t.hours.entry(9).or_default().observe(200, 1, 1);
        t.hours.entry(10).or_default().observe(200, 1, 1);
        t
    }
}
