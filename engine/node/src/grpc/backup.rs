//! The backup service (`sen.v1.Backup`): this node backs up its own
//! replica, read through one consistent view at its applied index.

use std::sync::Arc;

use sen_proto::v1::backup_server::Backup;
use sen_proto::v1::*;
use tonic::{Request, Response, Status};

use super::measured;
use crate::backup::backup_here;
use crate::node::Node;

pub struct BackupApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Backup for BackupApi {
    async fn create(&self, req: Request<CreateBackupRequest>) -> Result<Response<CreateBackupResponse>, Status> {
        let node = self.node.clone();
        measured(&self.node.clone(), "BackupCreate", async move {
            let req = req.into_inner();
            let password = (!req.password.is_empty()).then_some(req.password);
            let outcome = backup_here(&node, &req.repo, password, req.tags).await?;
            let s = &outcome.snapshot;
            Ok(CreateBackupResponse {
                snapshot_id: sen_backup::format::hex_id(&outcome.snapshot_id),
                raft_index: s.raft_index,
                raft_term: s.raft_term,
                node_id: s.source_node,
                state_digest: s.state_digest.clone(),
                bytes_total: s.stats.bytes_total,
                bytes_new: s.stats.bytes_new,
                blobs_total: s.stats.blobs_total,
                blobs_new: s.stats.blobs_new,
                content_chunks: s.stats.content_chunks,
                content_chunks_new: s.stats.content_chunks_new,
                duration_ms: s.stats.duration_ms,
            })
        })
        .await
    }
}
