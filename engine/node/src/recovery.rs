//! Forced recovery after losing a majority of voters (`sen cluster
//! recover --force`, `NodeOps/Recover`): the checks, the incident it
//! leaves, and the hand-off to the server, which stops in order, rewrites
//! the log to a one-voter membership (`LogStore::force_single_voter`) and
//! restarts the process (`server::run`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sen_raft::schema::system::{Incident, SERIOUS, SystemRecord, kind};

use crate::error::ApiError;
use crate::node::Node;

/// Where a forced recovery leaves the incident to record once this node
/// leads again (the cluster cannot take writes while it recovers).
pub const RECOVERY_FILE: &str = "recovery-incident.json";

/// What this node's log says, for the operator's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPosition {
    pub last_log_index: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub voters: Vec<u64>,
}

pub fn position(node: &Node) -> LogPosition {
    let m = node.raft_metrics();
    LogPosition {
        last_log_index: m.last_log_index.unwrap_or(0),
        term: m.current_term,
        commit_index: m.local_committed.map_or(0, |l| l.index),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        voters: m.membership_config.membership().voter_ids().collect(),
    }
}

/// The confirmation an operator must type for node `id`.
pub fn confirmation(id: u64) -> String {
    format!("recover node {id}")
}

/// The incident a forced recovery of node `me` from `pos` records.
pub fn incident(me: u64, pos: &LogPosition, now_ms: u64) -> Incident {
    let others: Vec<u64> = pos.voters.iter().copied().filter(|v| *v != me).collect();
    let last = pos.last_log_index;
    Incident {
        end_ms: None,
        term: pos.term,
        ..Incident::new(
            kind::RECOVERY,
            SERIOUS,
            now_ms,
            format!(
                "the cluster lost its majority of voters {:?}; node {me} was forced to become the only voter from its own log (last entry {last}); any entry committed after {last} only on the lost nodes is gone; nodes {others:?} must be wiped and re-added under new ids",
                pos.voters
            ),
            pos.voters.clone(),
            me,
        )
        .with_vi(format!(
            "cụm mất đa số các nút bỏ phiếu {:?}; nút {me} bị buộc trở thành nút bỏ phiếu duy nhất từ nhật ký của chính nó (bản ghi cuối {last}); mọi bản ghi được cam kết sau {last} chỉ trên các nút đã mất đều không còn; các nút {others:?} phải được xoá sạch và thêm lại với mã mới",
            pos.voters
        ))
    }
}

/// The other voters that answer this node's status call (same cluster),
/// each within a second.
pub async fn answering_voters(node: &Node, voters: &[u64]) -> Vec<u64> {
    let cluster = node.cluster_id().map(|c| c.to_string()).unwrap_or_default();
    let membership = node.raft_metrics().membership_config.clone();
    let calls = voters.iter().filter(|v| **v != node.id).map(|&id| {
        let addr = membership
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let cluster = cluster.clone();
        async move {
            let mut client = node.peers.raft(Some(id), &addr, false).ok()?;
            let mut req = tonic::Request::new(sen_proto::raft::v1::NodeStatusRequest {});
            req.set_timeout(Duration::from_secs(1));
            let r = tokio::time::timeout(Duration::from_secs(1), client.node_status(req))
                .await
                .ok()?
                .ok()?
                .into_inner();
            (r.cluster_id == cluster).then_some(id)
        }
    });
    futures::future::join_all(calls).await.into_iter().flatten().collect()
}

/// Check a forced recovery of `node` and start it: the incident is left in
/// the data directory, and the server restarts as the only voter shortly
/// after the caller has its answer. Refused while a majority of the voters
/// (this node included) still answers: forcing then would fork the
/// cluster.
pub async fn force(node: &Arc<Node>, confirm: &str) -> Result<LogPosition, ApiError> {
    let expected = confirmation(node.id);
    if confirm != expected {
        return Err(ApiError::FailedPrecondition(format!(
            "forced recovery needs the confirmation {expected:?}"
        )));
    }
    if node.is_leader() && node.roles.is_active_leader() {
        return Err(ApiError::FailedPrecondition(format!(
            "node {} leads with a quorum: the cluster has not lost its majority; use `sen cluster remove-node` for dead nodes instead",
            node.id
        )));
    }
    let pos = position(node);
    let answering = answering_voters(node, &pos.voters).await;
    let alive = answering.len() + usize::from(pos.voters.contains(&node.id));
    if alive > pos.voters.len() / 2 {
        return Err(ApiError::FailedPrecondition(format!(
            "voters {answering:?} still answer node {}: with it, {alive} of the {} voters {:?} are alive, a majority; a forced recovery would fork the cluster. Wait for the election, or remove dead nodes with `sen cluster remove-node`",
            node.id,
            pos.voters.len(),
            pos.voters
        )));
    }
    tracing::error!(voters = ?pos.voters, last = pos.last_log_index, "forced recovery requested: restarting as the only voter");
    let inc = incident(node.id, &pos, sen_core::now_ms());
    let file = node.config.data_dir.join(RECOVERY_FILE);
    std::fs::write(&file, inc.to_json().map_err(|e| ApiError::Internal(e.to_string()))?)
        .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", file.display())))?;
    // Answer first; the server then stops in order, rewrites the
    // membership and restarts this process.
    let n = node.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n.recovery.cancel();
    });
    Ok(pos)
}

/// The incident a forced recovery left behind, if any (see [`take_pending`]).
pub fn pending(data_dir: &Path) -> Option<Incident> {
    let b = std::fs::read(data_dir.join(RECOVERY_FILE)).ok()?;
    Incident::from_json(&b).ok()
}

/// Forget the pending incident once it is recorded.
pub fn clear_pending(data_dir: &Path) {
    let _ = std::fs::remove_file(data_dir.join(RECOVERY_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incident_names_what_is_lost_and_what_to_do() {
        let pos = LogPosition {
            last_log_index: 120,
            term: 7,
            commit_index: 118,
            applied_index: 118,
            voters: vec![1, 2, 3],
        };
        let i = incident(2, &pos, 99);
        assert_eq!(
            (i.kind.as_str(), i.severity.as_str(), i.start_ms, i.term),
            ("recovery", SERIOUS, 99, 7)
        );
        assert!(i.auto_cause.contains("last entry 120"), "{}", i.auto_cause);
        assert!(i.auto_cause.contains("nodes [1, 3] must be wiped"), "{}", i.auto_cause);
        assert_eq!(confirmation(2), "recover node 2");
    }

    #[test]
    fn a_pending_incident_survives_a_restart_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(pending(dir.path()).is_none());
        let pos = LogPosition {
            last_log_index: 1,
            term: 1,
            commit_index: 1,
            applied_index: 1,
            voters: vec![1],
        };
        std::fs::write(dir.path().join(RECOVERY_FILE), incident(1, &pos, 5).to_json().unwrap()).unwrap();
        assert_eq!(pending(dir.path()).map(|i| i.start_ms), Some(5));
        clear_pending(dir.path());
        assert!(pending(dir.path()).is_none());
    }
}
