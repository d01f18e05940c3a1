//! The control plane on a node: the typed records of `sen-system`
//! (`sen_raft::schema::system`), read from this node's replica and written
//! through Raft on the leader.
//!
//! Everything that keeps control-plane state (incidents, drains, planned
//! transfers, backup schedules) goes through [`ControlPlane`], so it can be
//! unit-tested against an in-memory state machine ([`testing`]) instead of
//! a running node.

use std::future::Future;
use std::time::Duration;

use sen_raft::schema::system::{self, SYSTEM_DB, SystemRecord};
use sen_raft::{Compare, CompareOp, CompareTarget, Op, Outcome, Response, Txn, TxnOp};

use crate::error::ApiError;
use crate::node::Node;

/// A key and its value.
pub type Row = (Vec<u8>, Vec<u8>);

/// Read and write access to the control plane.
pub trait ControlPlane: Send + Sync {
    /// A value in this node's replica, with its revision.
    fn get_raw(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>, ApiError>;
    /// Every key with `prefix` in this node's replica, in key order.
    fn scan_raw(&self, prefix: &[u8]) -> Result<Vec<Row>, ApiError>;
    /// Up to `limit` keys with `prefix` after `after`, in key order (no
    /// values: for long prefixes such as the audit log).
    fn scan_keys(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Vec<u8>>, ApiError>;
    /// Up to `limit` keys with `prefix` after `after`, with their values.
    fn scan_rows(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Row>, ApiError>;
    /// Commit `op` (this node must lead) and wait until it is applied here.
    fn propose(&self, op: Op, budget: Duration) -> impl Future<Output = Result<Response, ApiError>> + Send;
    /// A number that changes whenever an access-control record (`auth/…`)
    /// changes in this replica; `None`: do not cache them.
    fn auth_epoch(&self) -> Option<u64> {
        None
    }
}

impl ControlPlane for Node {
    fn get_raw(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>, ApiError> {
        let (rec, _) = self.state.get(SYSTEM_DB, key)?;
        Ok(rec.map(|r| (r.value, r.mod_revision)))
    }

    fn scan_raw(&self, prefix: &[u8]) -> Result<Vec<Row>, ApiError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .state
                .scan(SYSTEM_DB, prefix, after.as_deref(), 1000, 8 << 20, false)?;
            after = page.items.last().map(|(k, _)| k.clone());
            out.extend(page.items.into_iter().map(|(k, r)| (k, r.value)));
            if !page.more {
                return Ok(out);
            }
        }
    }

    fn scan_keys(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Vec<u8>>, ApiError> {
        let page = self.state.scan(SYSTEM_DB, prefix, after, limit, 8 << 20, true)?;
        Ok(page.items.into_iter().map(|(k, _)| k).collect())
    }

    fn scan_rows(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Row>, ApiError> {
        let page = self.state.scan(SYSTEM_DB, prefix, after, limit, 8 << 20, false)?;
        Ok(page.items.into_iter().map(|(k, r)| (k, r.value)).collect())
    }

    fn propose(&self, op: Op, budget: Duration) -> impl Future<Output = Result<Response, ApiError>> + Send {
        Node::propose(self, None, op, budget)
    }

    fn auth_epoch(&self) -> Option<u64> {
        Some(self.state.auth_epoch())
    }
}

/// A typed record and its revision.
pub fn read<T: SystemRecord>(cp: &impl ControlPlane, key: &[u8]) -> Result<Option<(T, u64)>, ApiError> {
    match cp.get_raw(key)? {
        None => Ok(None),
        Some((v, rev)) => T::from_json(&v)
            .map(|t| Some((t, rev)))
            .map_err(|e| ApiError::Internal(format!("{} ({}): {e}", T::WHAT, String::from_utf8_lossy(key)))),
    }
}

/// The write that stores `record` at `key`.
pub fn put_op<T: SystemRecord>(key: Vec<u8>, record: &T) -> Result<Op, ApiError> {
    Ok(Op::Put {
        db: SYSTEM_DB.into(),
        key,
        value: record.to_json().map_err(|e| ApiError::Internal(e.to_string()))?,
    })
}

/// A compare of `key` (equal to `target`) for [`txn`].
pub fn cmp(key: &[u8], target: CompareTarget) -> Compare {
    Compare {
        key: key.to_vec(),
        op: CompareOp::Equal,
        target,
    }
}

/// Run `success` on the control plane if every compare holds; `Ok(false)`
/// if one did not (a concurrent change: read again and retry).
pub async fn txn(
    plane: &impl ControlPlane,
    compares: Vec<Compare>,
    success: Vec<TxnOp>,
    budget: Duration,
) -> Result<bool, ApiError> {
    let t = Txn {
        db: SYSTEM_DB.into(),
        compares,
        success,
        failure: vec![],
    };
    let r = plane.propose(Op::Txn(t), budget).await?;
    Ok(matches!(r.outcome, Outcome::Txn { succeeded: true }))
}

/// Whether node `id` is drained, in this replica.
pub fn is_drained(cp: &impl ControlPlane, id: u64) -> bool {
    matches!(cp.get_raw(&system::drained_key(id)), Ok(Some(_)))
}

/// Rows read per page by [`each_value`].
const PAGE: usize = 1000;

/// Call `f` with the value of every row under `prefix` after `after`, a
/// page at a time, until `max` rows; returns whether rows were left
/// unread.
pub fn each_value(
    cp: &impl ControlPlane,
    prefix: &[u8],
    after: Option<Vec<u8>>,
    max: usize,
    mut f: impl FnMut(&[u8]),
) -> Result<bool, ApiError> {
    let mut after = after;
    let mut seen = 0;
    loop {
        let page = cp.scan_rows(prefix, after.as_deref(), PAGE)?;
        for (_, v) in &page {
            f(v);
        }
        seen += page.len();
        if page.len() < PAGE {
            return Ok(false);
        }
        if seen >= max {
            return Ok(true);
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}

/// Records deleted per Raft entry, and entries per pruning pass.
const PRUNE_BATCH: usize = 1000;
const PRUNE_BATCHES: usize = 100;

/// On the leader: delete the records under `prefix` whose keys sort before
/// `cut`, a thousand per entry, up to a hundred thousand per call (the next
/// pass continues). Reads keys only, a page at a time.
pub async fn delete_before(plane: &impl ControlPlane, prefix: &[u8], cut: &[u8]) -> Result<usize, ApiError> {
    let mut deleted = 0;
    for _ in 0..PRUNE_BATCHES {
        let old: Vec<Vec<u8>> = plane
            .scan_keys(prefix, None, PRUNE_BATCH)?
            .into_iter()
            .take_while(|k| k.as_slice() < cut)
            .collect();
        if old.is_empty() {
            break;
        }
        let n = old.len();
        let t = sen_raft::Txn {
            db: SYSTEM_DB.into(),
            compares: vec![],
            success: old.into_iter().map(|key| sen_raft::TxnOp::Delete { key }).collect(),
            failure: vec![],
        };
        plane.propose(Op::Txn(t), Duration::from_secs(10)).await?;
        deleted += n;
        if n < PRUNE_BATCH {
            break;
        }
    }
    Ok(deleted)
}

/// An in-memory control plane: the real apply logic (`sen_raft::Applier`)
/// over `sen_raft::mem::MemState`, one log index per proposal.
#[cfg(test)]
pub mod testing {
    use std::sync::Mutex;

    use sen_raft::mem::MemState;
    use sen_raft::{Applier, Request};

    use super::*;

    #[derive(Default)]
    pub struct MemControlPlane {
        state: Mutex<(MemState, u64)>,
    }

    impl ControlPlane for MemControlPlane {
        fn get_raw(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>, ApiError> {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            Ok(s.0
                .kv
                .get(&(SYSTEM_DB.to_owned(), key.to_vec()))
                .map(|r| (r.value.clone(), r.mod_revision)))
        }

        fn scan_raw(&self, prefix: &[u8]) -> Result<Vec<Row>, ApiError> {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            Ok(s.0
                .kv
                .iter()
                .filter(|((db, k), _)| db == SYSTEM_DB && k.starts_with(prefix))
                .map(|((_, k), r)| (k.clone(), r.value.clone()))
                .collect())
        }

        fn scan_keys(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Vec<u8>>, ApiError> {
            Ok(self
                .scan_rows(prefix, after, limit)?
                .into_iter()
                .map(|(k, _)| k)
                .collect())
        }

        fn scan_rows(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Row>, ApiError> {
            Ok(self
                .scan_raw(prefix)?
                .into_iter()
                .filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a))
                .take(limit)
                .collect())
        }

        /// Every proposal changes the epoch: caches never serve a value
        /// older than the last write (stricter than the node's).
        fn auth_epoch(&self) -> Option<u64> {
            Some(self.state.lock().unwrap_or_else(|p| p.into_inner()).1)
        }

        fn propose(&self, op: Op, _budget: Duration) -> impl Future<Output = Result<Response, ApiError>> + Send {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let (state, index) = &mut *s;
            *index += 1;
            let req = Request {
                id: None,
                proposed_at_ms: sen_core::now_ms(),
                op,
            };
            let mut applier = Applier::new(&*state);
            let r = applier.apply(*index, &req);
            let mutations = applier.finish();
            if r.is_ok() {
                state.write(mutations);
            }
            std::future::ready(r.map_err(|e| ApiError::Internal(e.to_string())))
        }
    }
}
