//! Growth and capacity over a period (R8; docs/reports.md), from the nodes'
//! daily samples (`sen_raft::schema::system::growth`): how much each node
//! holds and how fast it grows, a straight-line forecast of when its disk
//! fills, and the size of every site and database at the start and end.

use std::collections::BTreeMap;

use sen_client::Client;
use sen_raft::schema::system::growth::GrowthRecord;
use sen_raft::schema::system::{RunRecord, SystemRecord, run_state};
use serde::Serialize;

use crate::OpsError;

const DAY_MS: f64 = 86_400_000.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeGrowth {
    pub node: u64,
    /// Samples used (one per day at most).
    pub samples: u64,
    pub data_dir_start_bytes: u64,
    pub data_dir_end_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    /// Growth of the used disk, bytes per day (least squares over the
    /// samples); `None` with fewer than two samples.
    pub used_bytes_per_day: Option<f64>,
    /// Days until the disk is full at that pace, from the last sample;
    /// `None` when it does not grow.
    pub days_until_full: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedGrowth {
    pub name: String,
    pub start_bytes: u64,
    pub end_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct GrowthReport {
    pub nodes: Vec<NodeGrowth>,
    /// Stored (compressed, deduplicated) site content at the start and end.
    pub chunk_start_bytes: u64,
    pub chunk_end_bytes: u64,
    pub sites: Vec<NamedGrowth>,
    pub dbs: Vec<NamedGrowth>,
    /// The backup repository, from the scheduled runs; `None` when no run
    /// reported its size.
    pub repository: Option<RepoGrowth>,
}

/// The backup repository's size over the period, from what each scheduled
/// run found it held afterwards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoGrowth {
    /// Runs of the period that reported the size.
    pub runs: u64,
    pub start_bytes: u64,
    pub end_bytes: u64,
    /// Least squares over those runs; `None` with fewer than two.
    pub bytes_per_day: Option<f64>,
    /// The last successful backup up to the period's end (of any period),
    /// and how old it was at `age_at_ms` (the period's end, or now if
    /// earlier).
    pub last_backup_ms: Option<u64>,
    pub last_backup_age_ms: Option<u64>,
    /// Free and total bytes of the storage under the repository at the
    /// last measured run; `None` when its store cannot tell (S3).
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// Days until that storage is full at `bytes_per_day`; `None` when it
    /// is not growing or its free space is unknown.
    pub days_until_full: Option<f64>,
}

/// The repository's growth in `[from_ms, to_ms)` from the scheduled runs
/// (runs before the size was measured report 0 and are left out).
pub fn repository(runs: &[RunRecord], from_ms: u64, to_ms: u64, now_ms: u64) -> Option<RepoGrowth> {
    let mut ok: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.state == run_state::SUCCEEDED && r.ended_ms < to_ms)
        .collect();
    ok.sort_by_key(|r| r.ended_ms);
    let last_backup_ms = ok.last().map(|r| r.ended_ms);
    let measured: Vec<&&RunRecord> = ok
        .iter()
        .filter(|r| r.ended_ms >= from_ms && r.repo_bytes > 0)
        .collect();
    let (first, last) = (measured.first()?, measured.last()?);
    let points: Vec<(f64, f64)> = measured
        .iter()
        .map(|r| (r.ended_ms as f64 / DAY_MS, r.repo_bytes as f64))
        .collect();
    let age_at = to_ms.min(now_ms);
    let bytes_per_day = slope(&points);
    let space = measured
        .iter()
        .rev()
        .find(|r| r.repo_total_bytes > 0)
        .map(|r| (r.repo_free_bytes, r.repo_total_bytes));
    Some(RepoGrowth {
        runs: measured.len() as u64,
        start_bytes: first.repo_bytes,
        end_bytes: last.repo_bytes,
        bytes_per_day,
        last_backup_ms,
        last_backup_age_ms: last_backup_ms.map(|l| age_at.saturating_sub(l)),
        free_bytes: space.map(|s| s.0),
        total_bytes: space.map(|s| s.1),
        days_until_full: space
            .zip(bytes_per_day.filter(|s| *s > 0.0))
            .map(|((free, _), per_day)| free as f64 / per_day),
    })
}

/// Growth per day for people (`1.0 GiB`, `−200.0 MiB`, `—`).
pub fn per_day_text(v: Option<f64>, lang: crate::drill::Lang) -> String {
    let bytes = |b: f64| crate::report::bytes_in(b as u64, lang);
    v.map_or("—".to_owned(), |v| {
        if v >= 0.0 {
            bytes(v)
        } else {
            format!("−{}", bytes(-v))
        }
    })
}

/// Days until full for people (`51 days`, `51 ngày`, `not filling`).
pub fn full_in_text(days: Option<f64>, lang: crate::drill::Lang) -> String {
    use crate::drill::Lang;
    match (days, lang) {
        (Some(d), Lang::En) => format!("{d:.0} days"),
        (Some(d), Lang::Vi) => format!("{d:.0} ngày"),
        (None, Lang::En) => "not filling".into(),
        (None, Lang::Vi) => "không đầy".into(),
    }
}

/// Least-squares slope of `y` over `x`; `None` without two distinct `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// Sizes at the first and the last day: per day the largest any node saw
/// (sites and databases are replicated; a node that lags sees less).
fn named(
    days: &BTreeMap<&str, Vec<&GrowthRecord>>,
    pick: impl Fn(&GrowthRecord) -> &BTreeMap<String, u64>,
) -> Vec<NamedGrowth> {
    let at = |recs: &[&GrowthRecord]| -> BTreeMap<String, u64> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for r in recs {
            for (k, v) in pick(r) {
                let e = m.entry(k.clone()).or_default();
                *e = (*e).max(*v);
            }
        }
        m
    };
    let (Some(first), Some(last)) = (days.values().next(), days.values().next_back()) else {
        return vec![];
    };
    let (start, end) = (at(first), at(last));
    let mut names: Vec<&String> = start.keys().chain(end.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| NamedGrowth {
            name: n.clone(),
            start_bytes: start.get(n).copied().unwrap_or(0),
            end_bytes: end.get(n).copied().unwrap_or(0),
        })
        .collect()
}

/// The report of the samples of `[from_ms, to_ms)`.
pub fn compute(records: &[GrowthRecord], from_ms: u64, to_ms: u64) -> GrowthReport {
    let records: Vec<&GrowthRecord> = records
        .iter()
        .filter(|r| r.at_ms >= from_ms && r.at_ms < to_ms)
        .collect();
    let mut by_node: BTreeMap<u64, Vec<&GrowthRecord>> = BTreeMap::new();
    let mut by_day: BTreeMap<&str, Vec<&GrowthRecord>> = BTreeMap::new();
    for r in &records {
        by_node.entry(r.node).or_default().push(r);
        by_day.entry(r.day.as_str()).or_default().push(r);
    }
    let nodes = by_node
        .into_iter()
        .map(|(node, mut recs)| {
            recs.sort_by_key(|r| r.at_ms);
            let (first, last) = (recs[0], recs[recs.len() - 1]);
            let points: Vec<(f64, f64)> = recs
                .iter()
                .map(|r| {
                    (
                        r.at_ms as f64 / DAY_MS,
                        r.disk_total_bytes.saturating_sub(r.disk_free_bytes) as f64,
                    )
                })
                .collect();
            let per_day = slope(&points);
            NodeGrowth {
                node,
                samples: recs.len() as u64,
                data_dir_start_bytes: first.data_dir_bytes,
                data_dir_end_bytes: last.data_dir_bytes,
                disk_total_bytes: last.disk_total_bytes,
                disk_free_bytes: last.disk_free_bytes,
                used_bytes_per_day: per_day,
                days_until_full: per_day.filter(|s| *s > 0.0).map(|s| last.disk_free_bytes as f64 / s),
            }
        })
        .collect();
    let chunk =
        |recs: Option<&Vec<&GrowthRecord>>| recs.map_or(0, |v| v.iter().map(|r| r.chunk_bytes).max().unwrap_or(0));
    GrowthReport {
        nodes,
        chunk_start_bytes: chunk(by_day.values().next()),
        chunk_end_bytes: chunk(by_day.values().next_back()),
        sites: named(&by_day, |r| &r.sites),
        dbs: named(&by_day, |r| &r.dbs),
        repository: None,
    }
}

/// Read the samples of `[from_ms, to_ms)` from the cluster.
pub async fn fetch(client: &Client, from_ms: u64, to_ms: u64) -> Result<(GrowthReport, Vec<String>), OpsError> {
    let from_day = sen_core::time::utc_day(from_ms);
    let to_day = sen_core::time::utc_day(to_ms.saturating_sub(1));
    let mut skipped = Vec::new();
    let mut records = Vec::new();
    for j in client.list_day_records("growth", &from_day, &to_day).await? {
        match GrowthRecord::from_json(j.as_bytes()) {
            Ok(r) => records.push(r),
            Err(e) => skipped.push(format!("a growth record: {e}")),
        }
    }
    Ok((compute(&records, from_ms, to_ms), skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 1_796_256_000_000; // 2026-12-03T00:00Z
    const GB: u64 = 1 << 30;

    fn sample(node: u64, d: u64, used: u64, site: u64) -> GrowthRecord {
        GrowthRecord {
            version: 1,
            day: sen_core::time::utc_day(DAY + d * 86_400_000),
            node,
            at_ms: DAY + d * 86_400_000 + 3_600_000,
            data_dir_bytes: used / 2,
            disk_total_bytes: 100 * GB,
            disk_free_bytes: 100 * GB - used,
            chunk_bytes: site / 2,
            sites: [("portal".to_string(), site)].into(),
            dbs: [("cong-bao".to_string(), 1000 + d)].into(),
        }
    }

    #[test]
    fn a_steady_growth_is_forecast_and_sizes_are_read_at_both_ends() {
        // Node 1 uses 40 GiB and grows 1 GiB a day for 10 days; node 2
        // does not grow; node 2 lags a little on the site's size.
        let mut recs = Vec::new();
        for d in 0..10 {
            recs.push(sample(1, d, 40 * GB + d * GB, 1000 * (d + 1)));
            recs.push(sample(2, d, 10 * GB, 1000 * d));
        }
        let r = compute(&recs, DAY, DAY + 10 * 86_400_000);
        let n1 = &r.nodes[0];
        assert_eq!((n1.node, n1.samples), (1, 10));
        assert!((n1.used_bytes_per_day.unwrap() - GB as f64).abs() < 1.0);
        // 51 GiB free after the last sample, at 1 GiB a day.
        assert!(
            (n1.days_until_full.unwrap() - 51.0).abs() < 1e-6,
            "{:?}",
            n1.days_until_full
        );
        assert_eq!(
            r.nodes[1].days_until_full, None,
            "a disk that does not grow never fills"
        );
        assert_eq!(
            r.sites,
            vec![NamedGrowth {
                name: "portal".into(),
                start_bytes: 1000,
                end_bytes: 10_000
            }]
        );
        assert_eq!((r.dbs[0].start_bytes, r.dbs[0].end_bytes), (1000, 1009));
        assert_eq!((r.chunk_start_bytes, r.chunk_end_bytes), (500, 5000));
        // One sample: no trend.
        let r = compute(&recs[..1], DAY, DAY + 86_400_000);
        assert_eq!(r.nodes[0].used_bytes_per_day, None);
        assert_eq!(compute(&[], DAY, DAY + 1), GrowthReport::default());
    }

    #[test]
    fn the_repository_grows_with_the_runs_and_the_last_backup_has_an_age() {
        let run = |d: u64, state: &str, repo_bytes: u64| RunRecord {
            state: state.into(),
            ended_ms: DAY + d * 86_400_000,
            repo_bytes,
            // A local repository on a 100 GB disk: what the repository
            // takes, the disk no longer has.
            repo_free_bytes: (100 * GB).saturating_sub(repo_bytes),
            repo_total_bytes: if repo_bytes > 0 { 100 * GB } else { 0 },
            ..Default::default()
        };
        let runs = vec![
            run(0, run_state::SUCCEEDED, 0), // before the size was measured
            run(1, run_state::SUCCEEDED, 10 * GB),
            run(2, run_state::FAILED, 0),
            run(3, run_state::SUCCEEDED, 12 * GB),
            run(5, run_state::SUCCEEDED, 16 * GB),
            run(40, run_state::SUCCEEDED, 99 * GB), // after the period
        ];
        let to = DAY + 30 * 86_400_000;
        let r = repository(&runs, DAY, to, to + 1).unwrap();
        assert_eq!((r.runs, r.start_bytes, r.end_bytes), (3, 10 * GB, 16 * GB));
        assert!((r.bytes_per_day.unwrap() - 1.5 * GB as f64).abs() < 1.0, "{r:?}");
        assert_eq!(r.last_backup_ms, Some(DAY + 5 * 86_400_000));
        assert_eq!(r.last_backup_age_ms, Some(25 * 86_400_000));
        // 84 GB free at 1.5 GB a day: full in 56 days.
        assert_eq!((r.free_bytes, r.total_bytes), (Some(84 * GB), Some(100 * GB)));
        assert!((r.days_until_full.unwrap() - 56.0).abs() < 1e-6, "{r:?}");
        // An S3 bucket reports no space: the trend, but no forecast.
        let s3: Vec<RunRecord> = runs
            .iter()
            .map(|r| RunRecord {
                repo_free_bytes: 0,
                repo_total_bytes: 0,
                ..r.clone()
            })
            .collect();
        let r = repository(&s3, DAY, to, to + 1).unwrap();
        assert!(r.bytes_per_day.is_some());
        assert_eq!((r.free_bytes, r.days_until_full), (None, None));
        // Nothing measured in the period: no repository line.
        assert_eq!(repository(&runs[..1], DAY, to, to), None);
    }
}
