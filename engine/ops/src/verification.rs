//! Backup verifications kept in the cluster: after `sen backup check` and
//! `sen drill restore`, the result is stored (`Control/StoreVerification`)
//! so the monthly report and the dashboard can show that the backups were
//! proven restorable, and when (docs/reports.md).

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use sen_backup::Repo;
use sen_backup::check::CheckReport;
use sen_backup::read::SnapshotEntry;
use sen_client::Client;
use sen_raft::schema::system::{SystemRecord, Verification, verify_kind};

use crate::OpsError;
use crate::restore_drill::RestoreDrill;

/// A fresh id: the kind's first word and 8 random hex digits.
fn new_id(kind: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(sen_core::now_ms() as u128 ^ std::process::id() as u128);
    let short = kind.split('-').next().unwrap_or(kind);
    format!("{short}-{:08x}", h.finish() as u32)
}

/// The record of a `backup check` that took `duration`.
pub fn of_check(repo: &Repo, report: &CheckReport, read_data_percent: u32, duration: Duration) -> Verification {
    let mut v = Verification {
        version: Verification::VERSION,
        id: new_id(verify_kind::CHECK),
        kind: verify_kind::CHECK.into(),
        at_ms: sen_core::now_ms(),
        duration_ms: duration.as_millis() as u64,
        repo: repo.describe(),
        encrypted: repo.keys.is_encrypted(),
        snapshots: report.snapshots,
        read_data_percent,
        bytes: report.bytes_read,
        passed: report.ok && report.errors.is_empty(),
        errors: report.errors.clone(),
        ..Default::default()
    };
    v.cap_errors();
    v
}

/// The record of a restore drill of snapshot `e`.
pub fn of_restore_drill(repo: &Repo, e: &SnapshotEntry, d: &RestoreDrill) -> Verification {
    let mut errors: Vec<String> = d.error.iter().cloned().collect();
    if d.error.is_none() && !d.equal {
        errors.push(format!(
            "the restored state digest {} differs from the one recorded at backup time {}",
            d.restored_digest, d.expected_digest
        ));
    }
    for l in d.live_at_same_index() {
        if l.digest != d.restored_digest {
            errors.push(format!(
                "live node {} at the same index {} has a different state digest",
                l.node, d.raft_index
            ));
        }
    }
    let mut v = Verification {
        version: Verification::VERSION,
        id: new_id(verify_kind::RESTORE_DRILL),
        kind: verify_kind::RESTORE_DRILL.into(),
        at_ms: sen_core::now_ms(),
        duration_ms: d.duration_ms,
        repo: repo.describe(),
        encrypted: repo.keys.is_encrypted(),
        snapshot_id: sen_backup::format::hex_id(&e.id),
        raft_index: d.raft_index,
        bytes: d.bytes,
        digest_equal: d.equal,
        passed: d.passed && errors.is_empty(),
        errors,
        ..Default::default()
    };
    if !v.passed && v.errors.is_empty() {
        v.errors.push("the restore drill did not pass".into());
    }
    v.cap_errors();
    v
}

/// Store `v` in the cluster; the revision of the write.
pub async fn record(client: &Client, v: &Verification) -> Result<u64, OpsError> {
    let json = v.to_json().map_err(|e| OpsError::Usage(e.to_string()))?;
    Ok(client
        .store_verification(String::from_utf8_lossy(&json).into_owned())
        .await?)
}

/// Verifications that finished in `[from_ms, to_ms)`, oldest first; what
/// could not be read is named in the second list.
pub async fn fetch(client: &Client, from_ms: u64, to_ms: u64) -> Result<(Vec<Verification>, Vec<String>), OpsError> {
    let from_day = sen_core::time::utc_day(from_ms);
    let to_day = sen_core::time::utc_day(to_ms.saturating_sub(1).max(from_ms));
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for j in client.list_verifications(&from_day, &to_day).await? {
        match Verification::from_json(j.as_bytes()) {
            Ok(v) if v.at_ms >= from_ms && v.at_ms < to_ms => out.push(v),
            Ok(_) => {}
            Err(e) => skipped.push(format!("a backup verification: {e}")),
        }
    }
    out.sort_by_key(|v| v.at_ms);
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_differ() {
        let a = new_id(verify_kind::RESTORE_DRILL);
        let b = new_id(verify_kind::RESTORE_DRILL);
        assert!(a.starts_with("restore-") && a.len() == "restore-".len() + 8, "{a}");
        assert_ne!(a, b);
        let v = Verification {
            id: a,
            kind: verify_kind::RESTORE_DRILL.into(),
            at_ms: 1,
            passed: true,
            ..Default::default()
        };
        v.check().unwrap();
    }
}
