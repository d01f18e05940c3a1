//! Limits on user input, checked where a request enters a node (before it is
//! proposed to Raft), each with an error that says what to change.
//!
//! The state machine does not re-check these limits when it applies a
//! command: limits are node configuration and may differ between nodes, while
//! applying must give the same result everywhere.

use serde::{Deserialize, Serialize};

/// Longest database name, in bytes.
pub const MAX_DB_NAME_LEN: usize = 63;

/// Configurable limits (see `docs/configuration.md`, section `[limits]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Largest key, in bytes. Keys are never empty.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Largest number of operations (puts and deletes, both branches
    /// together) plus comparisons in one transaction.
    pub max_txn_ops: usize,
    /// Largest gRPC message a node accepts, in bytes. Must exceed
    /// `max_value_bytes` plus `max_key_bytes` with room for framing.
    pub max_request_bytes: usize,
    /// Largest number of keys one scan page returns; larger `--limit`s are
    /// served in several pages.
    pub max_scan_page: usize,
    /// A scan page stops once its keys and values reach this many bytes
    /// (it always holds at least one key).
    pub max_scan_page_bytes: usize,
    /// Most databases the cluster holds; a write that would create one
    /// more is refused (writes to existing databases go on).
    pub max_databases: usize,
    /// Most sites the cluster holds.
    pub max_sites: usize,
    /// Most stored bytes of uploaded chunks that no deployment uses yet
    /// (pushes in progress, and what garbage collection has not removed):
    /// an upload that would go beyond it is refused until a deploy or a
    /// collection makes room.
    pub max_undeployed_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4 * 1024,
            max_value_bytes: 1024 * 1024,
            max_txn_ops: 128,
            max_request_bytes: 4 * 1024 * 1024,
            max_scan_page: 1000,
            max_scan_page_bytes: 16 * 1024 * 1024,
            max_databases: 10_000,
            max_sites: 10_000,
            max_undeployed_bytes: 8 << 30,
        }
    }
}

/// A request broke a limit or a naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "invalid database name {name:?}: {why}; names are 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    DbName { name: String, why: &'static str },
    #[error("empty key: keys must be 1 to {max} bytes")]
    EmptyKey { max: usize },
    #[error("key is {len} bytes, larger than the limit of {max} bytes (limits.max-key-bytes); use a shorter key")]
    KeyTooLarge { len: usize, max: usize },
    #[error(
        "value is {len} bytes, larger than the limit of {max} bytes (limits.max-value-bytes); store large files as site content, or raise the limit on every node"
    )]
    ValueTooLarge { len: usize, max: usize },
    #[error(
        "transaction has {len} comparisons and operations, more than the limit of {max} (limits.max-txn-ops); split it"
    )]
    TxnTooLarge { len: usize, max: usize },
}

impl Limits {
    /// Check a database name: `[a-z0-9][a-z0-9_-]{0,62}`.
    pub fn check_db(&self, name: &str) -> Result<(), LimitError> {
        check_db_name(name)
    }

    /// Check a key.
    pub fn check_key(&self, key: &[u8]) -> Result<(), LimitError> {
        if key.is_empty() {
            return Err(LimitError::EmptyKey {
                max: self.max_key_bytes,
            });
        }
        if key.len() > self.max_key_bytes {
            return Err(LimitError::KeyTooLarge {
                len: key.len(),
                max: self.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Check a value.
    pub fn check_value(&self, value: &[u8]) -> Result<(), LimitError> {
        if value.len() > self.max_value_bytes {
            return Err(LimitError::ValueTooLarge {
                len: value.len(),
                max: self.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Check the size of a transaction.
    pub fn check_txn_len(&self, len: usize) -> Result<(), LimitError> {
        if len > self.max_txn_ops {
            return Err(LimitError::TxnTooLarge {
                len,
                max: self.max_txn_ops,
            });
        }
        Ok(())
    }

    /// The page size to use for a scan asking for `requested` keys (0 = as
    /// many as allowed).
    pub fn scan_page(&self, requested: usize) -> usize {
        if requested == 0 {
            self.max_scan_page
        } else {
            requested.min(self.max_scan_page)
        }
    }
}

/// Check a database name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn check_db_name(name: &str) -> Result<(), LimitError> {
    let err = |why| {
        Err(LimitError::DbName {
            name: name.chars().take(80).collect(),
            why,
        })
    };
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return err("it is empty");
    };
    if bytes.len() > MAX_DB_NAME_LEN {
        return err("it is longer than 63 characters");
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return err("it must start with a-z or 0-9");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
    {
        return err("it contains a character other than a-z, 0-9, '_' or '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names() {
        for ok in ["a", "0", "lich-tuan", "cong_bao", "vb2009", &"a".repeat(63)] {
            assert!(check_db_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "lịch", "a b", "a/b", "..", &"a".repeat(64), "a\0"] {
            let e = check_db_name(bad).unwrap_err();
            assert!(e.to_string().contains("invalid database name"), "{e}");
        }
    }

    #[test]
    fn key_and_value_limits() {
        let l = Limits::default();
        assert!(l.check_key(b"k").is_ok());
        assert!(matches!(l.check_key(b""), Err(LimitError::EmptyKey { .. })));
        assert!(l.check_key(&vec![0; 4096]).is_ok());
        assert!(matches!(
            l.check_key(&vec![0; 4097]),
            Err(LimitError::KeyTooLarge { len: 4097, .. })
        ));
        assert!(l.check_value(&vec![0; 1 << 20]).is_ok());
        let e = l.check_value(&vec![0; (1 << 20) + 1]).unwrap_err();
        assert!(e.to_string().contains("max-value-bytes"), "{e}");
        assert_eq!(l.scan_page(0), 1000);
        assert_eq!(l.scan_page(10), 10);
        assert_eq!(l.scan_page(5000), 1000);
    }
}
