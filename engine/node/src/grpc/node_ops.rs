//! `sen.v1.NodeOps`: operations on the node that receives the call (drill
//! faults, quorum-loss recovery). Never forwarded: they must work on a node
//! that has no leader.

use std::sync::Arc;
use std::time::Duration;

use sen_proto::v1::node_ops_server::NodeOps;
use sen_proto::v1::*;
use tonic::{Request, Response, Status};

use super::measured;
use crate::error::ApiError;
use crate::faults::{self, FaultKind};

use crate::incidents::{Incident, SERIOUS};
use crate::node::{Node, now_ms};

pub struct NodeOpsApi {
    pub node: Arc<Node>,
}

/// Where a forced recovery leaves the incident to record once this node
/// leads again (the cluster cannot take writes while it recovers).
pub const RECOVERY_FILE: &str = "recovery-incident.json";

#[tonic::async_trait]
impl NodeOps for NodeOpsApi {
    async fn inject_fault(&self, req: Request<InjectFaultRequest>) -> Result<Response<InjectFaultResponse>, Status> {
        measured(&self.node, "NodeOps/InjectFault", async {
            let r = req.into_inner();
            let node = &self.node;
            let kind = FaultKind::parse(&r.fault)?;
            let duration = Duration::from_millis(r.duration_ms);
            let drill = if r.drill_id.is_empty() {
                "(manual)".to_owned()
            } else {
                r.drill_id
            };
            node.faults.begin(kind, duration, &drill)?;
            let started = now_ms();
            match kind {
                FaultKind::Isolate => {}
                FaultKind::Pause => {
                    // A stopped process has no timers either.
                    node.raft.runtime_config().tick(false);
                    node.raft.runtime_config().heartbeat(false);
                    let n = node.clone();
                    tokio::spawn(async move {
                        n.faults.ended().await;
                        n.raft.runtime_config().tick(true);
                        n.raft.runtime_config().heartbeat(true);
                        tracing::warn!("drill pause over: raft timers running again");
                    });
                }
                FaultKind::Crash => {
                    // Answer first, then go down the way a crash does.
                    let dir = node.config.data_dir.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let e = faults::crash_and_restart(&dir, duration, &drill);
                        tracing::error!(
                            "crash drill could not restart this process: {e}; exiting so a supervisor restarts it"
                        );
                        std::process::exit(75);
                    });
                }
            }
            Ok(InjectFaultResponse {
                node_id: node.id,
                started_at_ms: started,
                ends_at_ms: started + r.duration_ms,
            })
        })
        .await
    }

    async fn clear_fault(&self, _req: Request<ClearFaultRequest>) -> Result<Response<ClearFaultResponse>, Status> {
        measured(&self.node, "NodeOps/ClearFault", async {
            Ok(ClearFaultResponse {
                cleared: self.node.faults.clear().unwrap_or_default().to_owned(),
            })
        })
        .await
    }

    async fn recover(&self, req: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        measured(&self.node, "NodeOps/Recover", async {
            let r = req.into_inner();
            let node = &self.node;
            let m = node.raft_metrics();
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            let last = m.last_log_index.unwrap_or(0);
            let mut resp = RecoverResponse {
                node_id: node.id,
                last_log_index: last,
                term: m.current_term,
                commit_index: m.local_committed.map_or(0, |l| l.index),
                applied_index: m.last_applied.map_or(0, |l| l.index),
                voters: voters.clone(),
                restarting: false,
            };
            if !r.force {
                return Ok(resp);
            }
            let expected = format!("recover node {}", node.id);
            if r.confirm != expected {
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
            tracing::error!(voters = ?voters, last, "forced recovery requested: restarting as the only voter");
            let me = node.id;
            let others: Vec<u64> = voters.iter().copied().filter(|v| *v != me).collect();
            let inc = Incident {
                end_ms: None,
                term: m.current_term,
                ..Incident::new(
                    "recovery",
                    SERIOUS,
                    now_ms(),
                    format!(
                        "the cluster lost its majority of voters {voters:?}; node {me} was forced to become the only voter from its own log (last entry {last}); any entry committed after {last} only on the lost nodes is gone; nodes {others:?} must be wiped and re-added under new ids"
                    ),
                    voters.clone(),
                    me,
                )
            };
            std::fs::write(
                node.config.data_dir.join(RECOVERY_FILE),
                serde_json::to_vec(&inc).map_err(|e| ApiError::Internal(e.to_string()))?,
            )
            .map_err(|e| ApiError::Internal(format!("cannot write {RECOVERY_FILE}: {e}")))?;
            resp.restarting = true;
            // Answer first; the server then stops in order, rewrites the
            // membership and restarts this process (server::run).
            let n = node.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                n.recovery.cancel();
            });
            Ok(resp)
        })
        .await
    }
}
