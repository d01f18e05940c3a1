//! The audit queue: records of changes and refusals collected on this node
//! until `audit_log` hands them to the leader, which commits them to the
//! replicated log (`sen-system/audit/…`). Bounded: past `capacity` new
//! records are counted as dropped instead of growing without limit, so a
//! flood of refused requests cannot exhaust a node's memory.
//!
//! Each record gets its key when it is queued (time, node, a per-process
//! random prefix and a counter): a batch sent again after a lost answer
//! rewrites the same keys instead of adding copies.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sen_raft::schema::system::{AuditRecord, audit_key};

/// A queued record and the key it will be stored under.
pub type Keyed = (Vec<u8>, AuditRecord);

pub struct AuditQueue {
    capacity: usize,
    records: Mutex<VecDeque<Keyed>>,
    /// Signalled when a record is queued (the sender sleeps otherwise).
    queued: tokio::sync::Notify,
    dropped: AtomicU64,
    /// Sequence numbers for unique audit keys: a random high half per
    /// process, so a restarted node (or two leaders) never reuse one.
    seq: AtomicU64,
}

impl AuditQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            records: Mutex::new(VecDeque::new()),
            queued: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
            seq: AtomicU64::new(u64::from(rand::random::<u32>()) << 32),
        }
    }

    /// Queue a record (dropped, and counted, when the queue is full).
    pub fn push(&self, r: AuditRecord) {
        let key = audit_key(r.at_ms, r.node, self.seq.fetch_add(1, Ordering::Relaxed));
        let mut q = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back((key, r));
        drop(q);
        self.queued.notify_one();
    }

    /// Resolves once a record was queued since the last call returned (at
    /// once if one was queued meanwhile).
    pub async fn wait_queued(&self) {
        self.queued.notified().await;
    }

    /// Up to `n` records, oldest first, with their keys.
    pub fn take(&self, n: usize) -> Vec<Keyed> {
        let mut q = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let k = n.min(q.len());
        q.drain(..k).collect()
    }

    /// Put records back at the front (their commit failed), as far as
    /// there is room.
    pub fn put_back(&self, records: Vec<Keyed>) {
        let mut q = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for r in records.into_iter().rev() {
            if q.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            q.push_front(r);
        }
    }

    /// Count records given up on (the leader refuses them).
    pub fn count_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped since start because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at_ms: u64) -> AuditRecord {
        AuditRecord {
            version: 1,
            at_ms,
            who: "x".into(),
            token: String::new(),
            method: "m".into(),
            resource: String::new(),
            result: "denied".into(),
            code: "PERMISSION_DENIED".into(),
            message: String::new(),
            from: String::new(),
            node: 1,
        }
    }

    #[test]
    fn bounded_in_order_and_counted() {
        let q = AuditQueue::new(3);
        for t in 0..5 {
            q.push(rec(t));
        }
        assert_eq!((q.len(), q.dropped()), (3, 2));
        let got = q.take(2);
        assert_eq!(got.iter().map(|(_, r)| r.at_ms).collect::<Vec<_>>(), [0, 1]);
        assert!(got[0].0 < got[1].0, "keys in queue order");
        let keys: Vec<Vec<u8>> = got.iter().map(|(k, _)| k.clone()).collect();
        q.put_back(got);
        let again = q.take(10);
        assert_eq!(again.iter().map(|(_, r)| r.at_ms).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            again[..2].iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            keys,
            "a retry keeps its keys"
        );
        assert!(q.is_empty());
    }
}
