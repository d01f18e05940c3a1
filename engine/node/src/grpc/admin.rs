//! The node-local inspection service (`sen.v1.Admin`): state digest,
//! applied request ids, local Raft status. Read-only; answers whatever the
//! cluster's state, so operators and the chaos harness can see every node.

use std::sync::Arc;

use sen_proto::v1::admin_server::Admin;
use sen_proto::v1::*;
use tonic::{Request, Response, Status};

use super::measured;
use super::raft::role_name;
use crate::error::ApiError;
use crate::node::Node;

/// Most request ids in one `AppliedRequests` page.
const MAX_IDS_PER_PAGE: usize = 10_000;

pub struct AdminApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn digest(&self, req: Request<DigestRequest>) -> Result<Response<DigestResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Digest", async {
            let state = node.state.clone();
            // The audit log grows with every request; the measurement
            // records (availability, probe beats, traffic, readers) with
            // time itself.
            use sen_raft::schema::system::{self, traffic};
            let skip: Vec<Vec<u8>> = if req.get_ref().without_audit_log {
                [
                    system::AUDIT_PREFIX,
                    system::AVAILABILITY_PREFIX,
                    "probe/",
                    traffic::TRAFFIC_PREFIX,
                    traffic::READERS_PREFIX,
                    system::growth::GROWTH_PREFIX,
                ]
                .iter()
                .map(|p| sen_raft::schema::tables::kv_key(system::SYSTEM_DB, p.as_bytes()))
                .collect()
            } else {
                vec![]
            };
            let (applied_index, digest) = tokio::task::spawn_blocking(move || state.digest_skipping(&skip))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??;
            Ok(DigestResponse {
                node_id: node.id,
                applied_index,
                digest,
            })
        })
        .await
    }

    async fn applied_requests(
        &self,
        req: Request<AppliedRequestsRequest>,
    ) -> Result<Response<AppliedRequestsResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "AppliedRequests", async {
            let state = node.state.clone();
            let r = req.into_inner();
            let limit = match r.limit as usize {
                0 => MAX_IDS_PER_PAGE,
                n => n.min(MAX_IDS_PER_PAGE),
            };
            let ((ids, more), applied_index) = tokio::task::spawn_blocking(move || {
                let applied = state.applied_index();
                state
                    .applied_request_ids_page(&r.start_after, limit)
                    .map(|page| (page, applied))
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            Ok(AppliedRequestsResponse {
                node_id: node.id,
                applied_index,
                next: if more {
                    ids.last().map(|(id, _)| id.0.to_vec()).unwrap_or_default()
                } else {
                    Vec::new()
                },
                requests: ids
                    .into_iter()
                    .map(|(id, revision)| AppliedRequest {
                        request_id: id.0.to_vec(),
                        revision,
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn local_status(&self, _req: Request<LocalStatusRequest>) -> Result<Response<LocalStatusResponse>, Status> {
        let node = &self.node;
        let m = node.raft_metrics();
        Ok(Response::new(LocalStatusResponse {
            node_id: node.id,
            cluster_id: node.cluster_id().map(|c| c.to_string()).unwrap_or_default(),
            state: role_name(m.state).into(),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: m.local_committed.map_or(0, |l| l.index),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            started_at_ms: node.started_at_ms,
            http_addr: node.config.advertise_http(),
            fault: node.faults.active_name().unwrap_or_default().into(),
            drained: node.roles.is_drained(),
            insecure: !node.config.tls.enabled(),
            http_tls: node.config.tls.enabled() && node.config.tls.http,
            cert_not_after_ms: node.metrics.cert_not_after.get().max(0) as u64 * 1000,
        }))
    }
}
