//! The audit log in the cluster: a node's queued records (`auth::audit`)
//! go to the leader every 200 ms and are committed in one Raft entry per
//! batch (`sen-system/audit/<time>-<node>-<seq>`); the leader deletes
//! records older than `auth.audit-retention` every hour.
//!
//! What can be lost: records still queued on a node that crashes (at most
//! the last 200 ms of them) and records beyond the queue's bound while no
//! leader can take them (counted in `sen_audit_dropped_total`). A refusal
//! itself never depends on the audit log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sen_raft::schema::system::{self, AUDIT_PREFIX, SYSTEM_DB, SystemRecord};
use sen_raft::{Op, Txn, TxnOp};
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::auth::audit::Keyed;
use crate::error::ApiError;
use crate::node::Node;
use crate::system::ControlPlane;

/// Records queued within this time after the first go to the leader
/// together (and a batch the leader did not take is retried after it).
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How often the refusal counters are trimmed and the retention checked
/// when nothing is queued (an idle node is not woken five times a second).
const HOUSEKEEPING: Duration = Duration::from_secs(5);
const BATCH: usize = 500;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// On the leader: commit `records` (each under the key it was queued
/// with) in one entry. Committing a batch again rewrites the same keys.
pub async fn commit(plane: &impl ControlPlane, records: Vec<Keyed>) -> Result<(), ApiError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut success = Vec::with_capacity(records.len());
    for (key, r) in records {
        let value = r.to_json().map_err(|e| ApiError::Internal(e.to_string()))?;
        success.push(TxnOp::Put { key, value });
    }
    let t = Txn {
        db: SYSTEM_DB.into(),
        compares: vec![],
        success,
        failure: vec![],
    };
    plane.propose(Op::Txn(t), Duration::from_secs(10)).await?;
    Ok(())
}

/// On the leader: delete the records older than `before_ms`
/// (`system::delete_before`: a thousand per entry, up to a hundred thousand
/// per pass; the next pass, an hour later, continues).
pub async fn prune(plane: &impl ControlPlane, before_ms: u64) -> Result<usize, ApiError> {
    crate::system::delete_before(plane, AUDIT_PREFIX.as_bytes(), &system::audit_from(before_ms)).await
}

/// Hand the queued records to the leader until `stop` (then once more).
pub async fn run(node: Arc<Node>, auth: Arc<Auth>, stop: CancellationToken) {
    let mut last_prune = Instant::now();
    loop {
        // Records waiting (put back after a failed commit): try again soon.
        // Otherwise sleep until one is queued, then let more gather.
        let retry = !auth.audit.is_empty();
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(FLUSH_EVERY), if retry => false,
            _ = async {
                auth.audit.wait_queued().await;
                tokio::time::sleep(FLUSH_EVERY).await;
            }, if !retry => false,
            _ = tokio::time::sleep(HOUSEKEEPING) => false,
        };
        while !auth.audit.is_empty() {
            let batch = auth.audit.take(BATCH);
            let result = if node.is_leader() {
                commit(node.as_ref(), batch.clone()).await
            } else {
                send_to_leader(&node, &batch).await
            };
            match result {
                Ok(()) => {}
                // The leader will not take them (this node is no longer a
                // member): keeping them would resend them forever.
                Err(e @ (ApiError::PermissionDenied(_) | ApiError::Unauthenticated(_))) => {
                    tracing::warn!(
                        records = batch.len(),
                        "audit records dropped: the leader refuses them: {e}"
                    );
                    auth.audit.count_dropped(batch.len());
                    break;
                }
                Err(e) => {
                    tracing::debug!("audit records not committed yet: {e}");
                    auth.audit.put_back(batch);
                    break;
                }
            }
        }
        node.metrics.audit_dropped.set(auth.audit.dropped() as i64);
        if node.is_leader() && last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let before = sen_core::now_ms().saturating_sub(node.config.auth.audit_retention.as_millis() as u64);
            match prune(node.as_ref(), before).await {
                Ok(n) if n > 0 => tracing::info!(records = n, "pruned audit records past the retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!("pruning the audit log: {e}"),
            }
        }
        auth.forget_old_failures();
        if stopping {
            return;
        }
    }
}

async fn send_to_leader(node: &Arc<Node>, records: &[Keyed]) -> Result<(), ApiError> {
    let leader = node.leader().ok_or_else(|| ApiError::not_leader(node.id, None))?;
    let json = records
        .iter()
        .map(|(_, r)| r.to_json().map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let keys = records
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    let none: crate::forward::Behalf = None;
    forward_to_leader!(
        node,
        none,
        node.peers.audit(leader.id, &leader.addr),
        leader.addr,
        append,
        sen_proto::v1::AppendAuditRequest { json, keys },
        Duration::from_secs(5)
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use sen_raft::schema::system::AuditRecord;

    use super::*;
    use crate::system::testing::MemControlPlane;

    fn rec(at_ms: u64) -> AuditRecord {
        AuditRecord {
            version: 1,
            at_ms,
            who: "u".into(),
            token: String::new(),
            method: "/sen.v1.Kv/Put".into(),
            resource: "db:x".into(),
            result: "ok".into(),
            code: "Ok".into(),
            message: String::new(),
            from: "127.0.0.1:1".into(),
            node: 1,
        }
    }

    #[tokio::test]
    async fn batches_commit_in_time_order_and_old_ones_are_pruned() {
        let p = MemControlPlane::default();
        let q = crate::auth::audit::AuditQueue::new(100);
        for t in [30, 10, 20, 10] {
            q.push(rec(t));
        }
        let batch = q.take(100);
        commit(&p, batch.clone()).await.unwrap();
        // A batch sent again (its answer was lost) adds nothing.
        commit(&p, batch).await.unwrap();
        let times: Vec<u64> = p
            .scan_raw(AUDIT_PREFIX.as_bytes())
            .unwrap()
            .iter()
            .map(|(_, v)| AuditRecord::from_json(v).unwrap().at_ms)
            .collect();
        assert_eq!(times, [10, 10, 20, 30], "same-millisecond records both kept");
        assert_eq!(prune(&p, 20).await.unwrap(), 2);
        assert_eq!(p.scan_raw(AUDIT_PREFIX.as_bytes()).unwrap().len(), 2);
        assert_eq!(prune(&p, 20).await.unwrap(), 0);
    }
}
