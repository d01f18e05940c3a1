//! Growth (R8; docs/reports.md): what each node holds, sampled through
//! the day. `growth/<YYYY-MM-DD>/<node>` keeps the day's last sample of
//! the node: its data directory and disk, the chunk store, and every site
//! and database. A day's records over months give the trend and the
//! forecast of when a disk fills.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SystemRecord;

/// `growth/<YYYY-MM-DD>/<node>`.
pub const GROWTH_PREFIX: &str = "growth/";

/// Sites and databases one sample names at most (the largest; the rest
/// are summed under `"…"`).
pub const MAX_NAMES: usize = 500;

pub fn growth_day_prefix(day: &str) -> Vec<u8> {
    format!("{GROWTH_PREFIX}{day}/").into_bytes()
}

pub fn growth_key(day: &str, node: u64) -> Vec<u8> {
    format!("{GROWTH_PREFIX}{day}/{node}").into_bytes()
}

/// One node's last sample of a UTC day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrowthRecord {
    pub version: u32,
    pub day: String,
    pub node: u64,
    /// When the sample was taken (ms since the epoch).
    pub at_ms: u64,
    /// Bytes under the node's data directory (Raft log, state, snapshots).
    pub data_dir_bytes: u64,
    /// The file system holding it.
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    /// Stored (compressed, deduplicated) bytes of site content.
    pub chunk_bytes: u64,
    /// Site → bytes of its current deployment (before compression).
    pub sites: BTreeMap<String, u64>,
    /// Database → bytes of its keys and values.
    pub dbs: BTreeMap<String, u64>,
}

impl SystemRecord for GrowthRecord {
    const WHAT: &'static str = "a growth record";
    const VERSION: u32 = 1;
}

impl GrowthRecord {
    pub fn key(&self) -> Vec<u8> {
        growth_key(&self.day, self.node)
    }

    /// The later of two samples of the same day and node.
    pub fn merge(&mut self, other: &GrowthRecord) -> Result<(), String> {
        if (&self.day, self.node) != (&other.day, other.node) {
            return Err(format!(
                "cannot merge the growth sample of {} node {} into that of {} node {}",
                other.day, other.node, self.day, self.node
            ));
        }
        if other.at_ms > self.at_ms {
            *self = other.clone();
        }
        Ok(())
    }

    pub fn check(&self) -> Result<(), String> {
        if sen_core::time::day_start_ms(&self.day).is_none() {
            return Err(format!("{:?} is not a day (YYYY-MM-DD)", self.day));
        }
        if self.node == 0 {
            return Err("node 0 does not exist".into());
        }
        if self.sites.len() > MAX_NAMES + 1 || self.dbs.len() > MAX_NAMES + 1 {
            return Err(format!("more than {MAX_NAMES} sites or databases in one sample"));
        }
        if self.disk_free_bytes > self.disk_total_bytes {
            return Err("more free disk than disk".into());
        }
        Ok(())
    }
}

/// Keep the `MAX_NAMES` largest entries; sum the rest under `"…"`.
pub fn cap_names(mut m: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    if m.len() <= MAX_NAMES {
        return m;
    }
    let mut by_size: Vec<(String, u64)> = std::mem::take(&mut m).into_iter().collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let rest: u64 = by_size[MAX_NAMES..].iter().map(|(_, v)| v).sum();
    by_size.truncate(MAX_NAMES);
    let mut out: BTreeMap<String, u64> = by_size.into_iter().collect();
    out.insert("…".into(), rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_is_pinned_and_the_later_sample_wins() {
        let mut a = GrowthRecord {
            version: 1,
            day: "2026-12-03".into(),
            node: 2,
            at_ms: 1_796_288_400_000,
            data_dir_bytes: 5_000_000,
            disk_total_bytes: 100_000_000,
            disk_free_bytes: 60_000_000,
            chunk_bytes: 1_200_000,
            sites: [("portal".to_string(), 3_000_000)].into(),
            dbs: [("cong-bao".to_string(), 42_000)].into(),
        };
        assert_eq!(
            String::from_utf8(a.to_json().unwrap()).unwrap(),
            r#"{"version":1,"day":"2026-12-03","node":2,"at_ms":1796288400000,"data_dir_bytes":5000000,"disk_total_bytes":100000000,"disk_free_bytes":60000000,"chunk_bytes":1200000,"sites":{"portal":3000000},"dbs":{"cong-bao":42000}}"#
        );
        let mut later = a.clone();
        later.at_ms += 1;
        later.data_dir_bytes = 6_000_000;
        let earlier = a.clone();
        a.merge(&later).unwrap();
        a.merge(&earlier).unwrap();
        assert_eq!(a, later);
        let mut other = later.clone();
        other.node = 3;
        assert!(a.merge(&other).is_err());
    }

    #[test]
    fn many_names_are_capped_by_size() {
        let m: BTreeMap<String, u64> = (0..MAX_NAMES as u64 + 10).map(|i| (format!("s{i:04}"), i)).collect();
        let capped = cap_names(m);
        assert_eq!(capped.len(), MAX_NAMES + 1);
        assert_eq!(capped["…"], (0..10).sum::<u64>());
        assert!(!capped.contains_key("s0000") && capped.contains_key("s0509"));
    }
}
