//! The continuous archive of the log (docs/backup.md, "Continuous archive
//! and point-in-time restore"): where it goes, and how far it got.
//!
//! `archive/config` is written by `sen archive enable|disable`;
//! `archive/progress` by the node that ships, every few seconds: every
//! node keeps its Raft log after the archived index (so whichever node
//! ships next can continue with no gap) unless the archive falls more than
//! `max_lag_entries` behind.

use serde::{Deserialize, Serialize};

use super::SystemRecord;

pub const ARCHIVE_CONFIG_KEY: &[u8] = b"archive/config";
pub const ARCHIVE_PROGRESS_KEY: &[u8] = b"archive/progress";

/// Where and how often the log is archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveConfig {
    pub version: u32,
    /// The backup repository (`file://…`, `s3://…`), under every node's
    /// `[backup] allowed-repos`.
    pub repo: String,
    /// Password file, read on the node that ships (every node needs it at
    /// this path); `None` for an unencrypted repository.
    pub password_file: Option<String>,
    /// Ship what committed at least this often.
    pub interval_ms: u64,
    /// Entries the archive may fall behind before nodes purge their logs
    /// anyway (opening a serious incident): a bound on the disk an
    /// unreachable repository can cost.
    pub max_lag_entries: u64,
    pub enabled_at_ms: u64,
    pub enabled_by: String,
}

impl SystemRecord for ArchiveConfig {
    const WHAT: &'static str = "the archive configuration";
    const VERSION: u32 = 1;
}

/// How far the archive got (the last segment stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveProgress {
    pub version: u32,
    /// The last archived index and its term (0: nothing yet).
    pub index: u64,
    pub term: u64,
    /// Commit time of that entry (ms since the epoch).
    pub entry_at_ms: u64,
    /// Hash of the last segment (hex).
    pub segment_hash: String,
    /// The node that shipped it, its term, and when.
    pub shipper: u64,
    pub shipper_term: u64,
    pub shipped_at_ms: u64,
    /// Segments this shipper stored since it started.
    pub segments: u64,
}

impl SystemRecord for ArchiveProgress {
    const WHAT: &'static str = "the archive progress";
    const VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_forms_are_pinned() {
        let c = ArchiveConfig {
            version: 1,
            repo: "file:///var/backups/sen".into(),
            password_file: Some("/etc/sen/repo.pass".into()),
            interval_ms: 1000,
            max_lag_entries: 1_000_000,
            enabled_at_ms: 1_796_288_400_000,
            enabled_by: "admin".into(),
        };
        assert_eq!(
            String::from_utf8(c.to_json().unwrap()).unwrap(),
            r#"{"version":1,"repo":"file:///var/backups/sen","password_file":"/etc/sen/repo.pass","interval_ms":1000,"max_lag_entries":1000000,"enabled_at_ms":1796288400000,"enabled_by":"admin"}"#
        );
        let p = ArchiveProgress {
            version: 1,
            index: 42,
            term: 3,
            entry_at_ms: 1_796_288_400_000,
            segment_hash: "ab".into(),
            shipper: 2,
            shipper_term: 3,
            shipped_at_ms: 1_796_288_400_500,
            segments: 7,
        };
        assert_eq!(
            String::from_utf8(p.to_json().unwrap()).unwrap(),
            r#"{"version":1,"index":42,"term":3,"entry_at_ms":1796288400000,"segment_hash":"ab","shipper":2,"shipper_term":3,"shipped_at_ms":1796288400500,"segments":7}"#
        );
    }
}
