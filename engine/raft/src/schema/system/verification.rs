//! Backup verifications (R5, R11; docs/reports.md): the result of every
//! `sen backup check` and `sen drill restore` that was recorded in the
//! cluster, so the monthly report and the dashboard can say whether the
//! backups were proven restorable, not only taken.
//!
//! `verify/<YYYY-MM-DD>/<finished at, ms, 13 digits>-<id>`: keyed by the
//! UTC day it finished, so the day-record listing and the retention
//! pruning of the probe records apply unchanged.

use serde::{Deserialize, Serialize};

use super::SystemRecord;

/// `verify/<YYYY-MM-DD>/<at_ms:013>-<id>`.
pub const VERIFY_PREFIX: &str = "verify/";

/// Errors one record keeps at most (the first ones), each at most
/// [`MAX_ERROR_BYTES`].
pub const MAX_ERRORS: usize = 20;
pub const MAX_ERROR_BYTES: usize = 500;

/// What was verified.
pub mod verify_kind {
    /// `sen backup check` (structure, and `--read-data` of a share of the packs).
    pub const CHECK: &str = "check";
    /// `sen drill restore`: a snapshot restored into a scratch data
    /// directory and its state digest compared.
    pub const RESTORE_DRILL: &str = "restore-drill";
}

pub fn verify_day_prefix(day: &str) -> Vec<u8> {
    format!("{VERIFY_PREFIX}{day}/").into_bytes()
}

/// One verification of the backup repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub version: u32,
    /// Chosen by the tool that ran it (lowercase letters, digits, `-`).
    pub id: String,
    /// One of [`verify_kind`].
    pub kind: String,
    /// When it finished (ms since the epoch).
    pub at_ms: u64,
    pub duration_ms: u64,
    /// The repository as the tool described it (never credentials).
    pub repo: String,
    pub encrypted: bool,
    /// A restore drill: the snapshot restored, and its Raft index.
    pub snapshot_id: String,
    pub raft_index: u64,
    /// A check: snapshots found, and the share of pack data read (0–100).
    pub snapshots: u64,
    pub read_data_percent: u32,
    /// Bytes read (a check) or restored (a restore drill).
    pub bytes: u64,
    /// A restore drill: the restored state digest equals the one recorded
    /// when the snapshot was taken.
    pub digest_equal: bool,
    pub passed: bool,
    /// What was wrong, the first [`MAX_ERRORS`].
    pub errors: Vec<String>,
    /// Who ran it: set by the node from the caller's identity.
    pub by: String,
}

impl SystemRecord for Verification {
    const WHAT: &'static str = "a backup verification";
    const VERSION: u32 = 1;
}

impl Verification {
    pub fn key(&self) -> Vec<u8> {
        format!(
            "{VERIFY_PREFIX}{}/{:013}-{}",
            sen_core::time::utc_day(self.at_ms),
            self.at_ms,
            self.id
        )
        .into_bytes()
    }

    /// Keep the first errors, each cut to its limit on a character boundary.
    pub fn cap_errors(&mut self) {
        self.errors.truncate(MAX_ERRORS);
        for e in &mut self.errors {
            if e.len() > MAX_ERROR_BYTES {
                let mut end = MAX_ERROR_BYTES - '…'.len_utf8();
                while !e.is_char_boundary(end) {
                    end -= 1;
                }
                e.truncate(end);
                e.push('…');
            }
        }
    }

    /// What a node checks before it stores one.
    pub fn check(&self) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > 40
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "the id {:?} must be 1 to 40 lowercase letters, digits or '-'",
                self.id
            ));
        }
        if ![verify_kind::CHECK, verify_kind::RESTORE_DRILL].contains(&self.kind.as_str()) {
            return Err(format!(
                "kind {:?}: use {} or {}",
                self.kind,
                verify_kind::CHECK,
                verify_kind::RESTORE_DRILL
            ));
        }
        if self.at_ms == 0 {
            return Err("at_ms (when it finished) is missing".into());
        }
        if self.read_data_percent > 100 {
            return Err(format!("read_data_percent {} is over 100", self.read_data_percent));
        }
        if self.repo.len() > 1000 || self.snapshot_id.len() > 200 {
            return Err("the repository or the snapshot id is too long".into());
        }
        if self.errors.len() > MAX_ERRORS || self.errors.iter().any(|e| e.len() > MAX_ERROR_BYTES) {
            return Err(format!(
                "at most {MAX_ERRORS} errors of at most {MAX_ERROR_BYTES} bytes each"
            ));
        }
        if self.passed && !self.errors.is_empty() {
            return Err("a verification with errors did not pass".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill() -> Verification {
        Verification {
            version: 1,
            id: "r-5f3a9c".into(),
            kind: verify_kind::RESTORE_DRILL.into(),
            at_ms: 1_796_288_400_000,
            duration_ms: 12_500,
            repo: "file:///var/backups/sen".into(),
            encrypted: true,
            snapshot_id: "9f86d081884c7d65".into(),
            raft_index: 4_211,
            snapshots: 0,
            read_data_percent: 0,
            bytes: 48_000_000,
            digest_equal: true,
            passed: true,
            errors: vec![],
            by: "user:hanh".into(),
        }
    }

    #[test]
    fn the_stored_form_and_the_key_are_pinned() {
        let v = drill();
        assert_eq!(
            String::from_utf8(v.to_json().unwrap()).unwrap(),
            r#"{"version":1,"id":"r-5f3a9c","kind":"restore-drill","at_ms":1796288400000,"duration_ms":12500,"repo":"file:///var/backups/sen","encrypted":true,"snapshot_id":"9f86d081884c7d65","raft_index":4211,"snapshots":0,"read_data_percent":0,"bytes":48000000,"digest_equal":true,"passed":true,"errors":[],"by":"user:hanh"}"#
        );
        assert_eq!(v.key(), b"verify/2026-12-03/1796288400000-r-5f3a9c");
        assert!(v.key().starts_with(&verify_day_prefix("2026-12-03")));
        assert_eq!(Verification::from_json(&v.to_json().unwrap()).unwrap(), v);
    }

    #[test]
    fn what_a_node_refuses() {
        assert!(drill().check().is_ok());
        for (what, bad) in [
            (
                "id",
                Verification {
                    id: "../x".into(),
                    ..drill()
                },
            ),
            (
                "id",
                Verification {
                    id: String::new(),
                    ..drill()
                },
            ),
            (
                "kind",
                Verification {
                    kind: "guess".into(),
                    ..drill()
                },
            ),
            ("at_ms", Verification { at_ms: 0, ..drill() }),
            (
                "over 100",
                Verification {
                    read_data_percent: 101,
                    ..drill()
                },
            ),
            (
                "did not pass",
                Verification {
                    errors: vec!["x".into()],
                    ..drill()
                },
            ),
            (
                "at most",
                Verification {
                    passed: false,
                    errors: vec!["x".into(); MAX_ERRORS + 1],
                    ..drill()
                },
            ),
        ] {
            let e = bad.check().unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn long_error_lists_are_cut_on_character_boundaries() {
        let mut v = Verification {
            passed: false,
            errors: vec!["ắ".repeat(400); MAX_ERRORS + 5],
            ..drill()
        };
        v.cap_errors();
        assert_eq!(v.errors.len(), MAX_ERRORS);
        assert!(v.errors.iter().all(|e| e.len() <= MAX_ERROR_BYTES && e.ends_with('…')));
        assert!(v.check().is_ok());
    }
}
