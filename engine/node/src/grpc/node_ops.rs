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
use crate::node::Node;
use crate::recovery;
use sen_core::now_ms;

pub struct NodeOpsApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl NodeOps for NodeOpsApi {
    async fn inject_fault(&self, req: Request<InjectFaultRequest>) -> Result<Response<InjectFaultResponse>, Status> {
        measured(&self.node, "NodeOps/InjectFault", async {
            crate::auth::note(
                &req,
                format!(
                    "node:{} fault:{} for:{}ms",
                    self.node.id,
                    req.get_ref().fault,
                    req.get_ref().duration_ms
                ),
            );
            let r = req.into_inner();
            let node = &self.node;
            let drills = &node.config.drills;
            if !drills.enabled {
                return Err(ApiError::FailedPrecondition(format!(
                    "drill faults are disabled on node {}: set [drills] enabled = true in its configuration \
                     (and restart it) to allow `sen drill` to crash, pause or isolate it",
                    node.id
                )));
            }
            let kind = FaultKind::parse(&r.fault)?;
            let duration = Duration::from_millis(r.duration_ms);
            if duration > drills.max_fault_duration {
                return Err(ApiError::InvalidArgument(format!(
                    "a fault of {duration:?} is longer than drills.max-fault-duration ({:?}) on node {}",
                    drills.max_fault_duration, node.id
                )));
            }
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

    async fn clear_fault(&self, req: Request<ClearFaultRequest>) -> Result<Response<ClearFaultResponse>, Status> {
        measured(&self.node, "NodeOps/ClearFault", async {
            crate::auth::note(&req, format!("node:{}", self.node.id));
            Ok(ClearFaultResponse {
                cleared: self.node.faults.clear().unwrap_or_default().to_owned(),
            })
        })
        .await
    }

    async fn recover(&self, req: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        measured(&self.node, "NodeOps/Recover", async {
            crate::auth::note(&req, format!("node:{} force:{}", self.node.id, req.get_ref().force));
            let r = req.into_inner();
            let node = &self.node;
            let (pos, restarting) = if r.force {
                (recovery::force(node, &r.confirm).await?, true)
            } else {
                (recovery::position(node), false)
            };
            Ok(RecoverResponse {
                node_id: node.id,
                last_log_index: pos.last_log_index,
                term: pos.term,
                commit_index: pos.commit_index,
                applied_index: pos.applied_index,
                voters: pos.voters,
                restarting,
            })
        })
        .await
    }
}
