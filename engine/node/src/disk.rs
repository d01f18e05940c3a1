//! The disk guard: a node whose data directory is almost full refuses new
//! client writes instead of running out of space.
//!
//! RocksDB and openraft treat a failed write as fatal: a node that fills
//! its disk stops (docs/operations.md), and since every node holds the same
//! data, a growing portal fills every disk at about the same time. So,
//! below a free-space reserve (`server.disk-reserve-bytes`, at most
//! `server.disk-reserve-percent` of the file system), the leader refuses
//! writes that add data with `RESOURCE_EXHAUSTED` ("disk almost full on
//! node N"); Raft itself (votes, heartbeats, the entries already accepted),
//! reads, deletes, garbage collection, compaction and the control plane
//! (incidents, the audit log) keep working in the space the reserve keeps.
//! The cluster degrades to read-only and comes back on its own once space
//! is freed (checked every second).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::config::ServerConfig;
use crate::error::ApiError;

/// What the last look at the data directory's file system found.
#[derive(Debug, Default)]
pub struct DiskGuard {
    low: AtomicBool,
    free: AtomicU64,
    reserve: AtomicU64,
}

impl DiskGuard {
    /// Refuse a write that adds data while the disk is below its reserve.
    pub fn check(&self, node: u64) -> Result<(), ApiError> {
        if !self.low.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(ApiError::Exhausted(format!(
            "disk almost full on node {node}: {} MB free, below the reserve of {} MB (server.disk-reserve-bytes); \
             reads and deletes still work: delete data, prune backups or add space (docs/operations.md, \"Disk almost full\")",
            self.free.load(Ordering::Relaxed) / 1_000_000,
            self.reserve.load(Ordering::Relaxed) / 1_000_000
        )))
    }

    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Look at the file system holding `dir`; returns whether the state
    /// changed (low ↔ not low).
    pub fn refresh(&self, dir: &Path, cfg: &ServerConfig) -> std::io::Result<bool> {
        let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
        let frsize = st.fragment_size() as u64;
        let total = st.blocks() as u64 * frsize;
        // What an unprivileged process may still write.
        let free = st.blocks_available() as u64 * frsize;
        let reserve = reserve_bytes(total, cfg);
        self.free.store(free, Ordering::Relaxed);
        self.reserve.store(reserve, Ordering::Relaxed);
        let low = free < reserve;
        Ok(self.low.swap(low, Ordering::Relaxed) != low)
    }
}

/// The reserve for a file system of `total` bytes: the configured bytes,
/// but at most the configured share of the file system (a small test or
/// edge disk is not all reserve).
pub fn reserve_bytes(total: u64, cfg: &ServerConfig) -> u64 {
    let share = (total as u128 * cfg.disk_reserve_percent as u128 / 100) as u64;
    cfg.disk_reserve_bytes.min(share)
}

impl DiskGuard {
    /// What the last look found: (free bytes, reserve bytes).
    pub fn free_and_reserve(&self) -> (u64, u64) {
        (self.free.load(Ordering::Relaxed), self.reserve.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_the_smaller_of_the_bytes_and_the_share() {
        let cfg = ServerConfig::default();
        assert_eq!(reserve_bytes(1 << 40, &cfg), 2 << 30, "1 TiB: 2 GiB");
        assert_eq!(reserve_bytes(10_000_000_000, &cfg), 500_000_000, "10 GB: 5%");
    }

    #[test]
    fn a_disk_below_its_reserve_refuses_writes_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::default();
        // A reserve larger than any disk: low.
        let cfg = ServerConfig {
            disk_reserve_bytes: u64::MAX,
            disk_reserve_percent: 100,
            ..Default::default()
        };
        assert!(g.refresh(dir.path(), &cfg).unwrap(), "changed to low");
        let e = g.check(7).unwrap_err().to_string();
        assert!(e.contains("disk almost full on node 7"), "{e}");
        // No reserve: fine again.
        let cfg = ServerConfig {
            disk_reserve_bytes: 0,
            ..Default::default()
        };
        assert!(g.refresh(dir.path(), &cfg).unwrap(), "changed back");
        g.check(7).unwrap();
        assert!(!g.refresh(dir.path(), &cfg).unwrap(), "unchanged");
    }
}
