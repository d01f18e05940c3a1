//! The node-to-node service: openraft RPCs, snapshot transfer, joining a
//! cluster, per-node status and read indexes for follower reads.
//!
//! Every call is checked first ([`check_peer`]): it must be meant for this
//! node id and come from this node's cluster.

use std::sync::Arc;

use openraft::ReadPolicy;
use openraft::ServerState;
use openraft::error::RaftError;
use openraft::storage::Snapshot;
use sen_core::ClusterId;
use sen_core::codec;
use sen_proto::meta;
use sen_proto::raft::v1::raft_server::Raft as RaftService;
use sen_proto::raft::v1::*;
use sen_raft::TypeConfig;
use sen_store::IncomingSnapshot;
use tonic::{Request, Response, Status, Streaming};

use crate::node::Node;
use crate::snapshot_transfer::{self, Frame};

pub struct RaftApi {
    pub node: Arc<Node>,
}

fn md<'a, T>(req: &'a Request<T>, key: &str) -> Option<&'a str> {
    req.metadata().get(key).and_then(|v| v.to_str().ok())
}

/// Refuse calls meant for another node id or coming from another cluster.
fn check_peer<T>(node: &Node, req: &Request<T>) -> Result<(), Status> {
    if let Some(to) = md(req, meta::TO_NODE)
        && to != node.id.to_string()
    {
        return Err(Status::failed_precondition(format!(
            "this is node {}, not node {to}: the address {} was given to another node",
            node.id,
            node.config.advertise_addr()
        )));
    }
    let from = md(req, meta::FROM_NODE).unwrap_or("?");
    let theirs = md(req, meta::CLUSTER_ID).unwrap_or("");
    match node.cluster_id() {
        None => Err(Status::failed_precondition(format!(
            "node {} has not joined a cluster; refusing a call from node {from}. Add it with `sen cluster add-node`",
            node.id
        ))),
        Some(ours) if theirs != ours.to_string() => Err(Status::failed_precondition(format!(
            "node {} belongs to cluster {ours}; refusing a call from node {from} of cluster {}",
            node.id,
            if theirs.is_empty() { "(none)" } else { theirs }
        ))),
        Some(_) => Ok(()),
    }
}

/// A Raft message speaks for the node its vote names (the candidate, or
/// the leader): over TLS that must be the node whose certificate sent it
/// (`sen-from-node`, which the auth layer matched to the certificate). A
/// node certificate cannot carry another node's votes or entries.
fn check_sender<T>(node: &Node, req: &Request<T>, vote: &sen_raft::Vote) -> Result<(), Status> {
    use openraft::vote::RaftLeaderId;
    if !node.config.tls.enabled() {
        return Ok(());
    }
    let claimed = *vote.leader_id().node_id();
    sender_matches(md(req, meta::FROM_NODE), claimed)
}

fn sender_matches(from: Option<&str>, claimed: u64) -> Result<(), Status> {
    match from.and_then(|f| f.parse::<u64>().ok()) {
        Some(f) if f == claimed => Ok(()),
        f => Err(Status::unauthenticated(format!(
            "a Raft message for node {claimed}'s vote sent by {}: refused",
            f.map_or_else(|| "an unnamed sender".to_owned(), |f| format!("node {f}"))
        ))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, p: &RaftPayload) -> Result<T, Status> {
    codec::decode_v1(what, &p.data).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    codec::encode_v1("raft response", v)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(e.to_string()))
}

fn fatal<E: std::fmt::Display>(node: &Node, e: E) -> Status {
    Status::unavailable(format!("raft on node {} is not running: {e}", node.id))
}

fn raft_result<T: serde::Serialize>(
    node: &Node,
    r: Result<T, RaftError<TypeConfig>>,
) -> Result<Response<RaftPayload>, Status> {
    match r {
        Ok(v) => encode(&v),
        Err(e) => Err(fatal(node, e)),
    }
}

#[tonic::async_trait]
impl RaftService for RaftApi {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        check_peer(&self.node, &req)?;
        self.node.faults.before_incoming().await?;
        let started = std::time::Instant::now();
        let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> = decode("append entries", req.get_ref())?;
        check_sender(&self.node, &req, &rpc.vote)?;
        let carries_entries = !rpc.entries.is_empty();
        let r = self.node.raft.append_entries(rpc).await;
        if matches!(&r, Ok(resp) if resp.is_success()) {
            self.node.roles.heard_from_leader();
            if carries_entries {
                self.node.metrics.observe_stage("follower-append", started.elapsed());
            }
        }
        raft_result(&self.node, r)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        check_peer(&self.node, &req)?;
        self.node.faults.before_incoming().await?;
        let rpc: openraft::raft::VoteRequest<TypeConfig> = decode("vote", req.get_ref())?;
        check_sender(&self.node, &req, &rpc.vote)?;
        raft_result(&self.node, self.node.raft.vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        check_peer(&self.node, &req)?;
        self.node.faults.before_incoming().await?;
        let rpc: openraft::raft::VoteRequest<TypeConfig> = decode("pre-vote", req.get_ref())?;
        check_sender(&self.node, &req, &rpc.vote)?;
        raft_result(&self.node, self.node.raft.pre_vote(rpc).await)
    }

    async fn transfer_leader(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        check_peer(&self.node, &req)?;
        self.node.faults.before_incoming().await?;
        let rpc: openraft::raft::TransferLeaderRequest<TypeConfig> = decode("transfer leader", req.get_ref())?;
        check_sender(&self.node, &req, rpc.from_leader())?;
        match self.node.raft.handle_transfer_leader(rpc).await {
            Ok(v) => encode(&v),
            Err(e) => Err(fatal(&self.node, e)),
        }
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotFrame>>) -> Result<Response<RaftPayload>, Status> {
        check_peer(&self.node, &req)?;
        self.node.faults.before_incoming().await?;
        let node = self.node.clone();
        let from = md(&req, meta::FROM_NODE).map(str::to_owned);
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let Frame::Header { vote, manifest } = snapshot_transfer::decode(&first)? else {
            return Err(Status::invalid_argument("snapshot stream must start with a header"));
        };
        if node.config.tls.enabled() {
            use openraft::vote::RaftLeaderId;
            sender_matches(from.as_deref(), *vote.leader_id().node_id())?;
        }
        check_snapshot_is_installable(&node, &vote, &manifest.meta)?;
        let meta = manifest.meta.clone();
        tracing::info!(from_vote = %vote, last_log_id = ?meta.last_log_id, bytes = manifest.total_bytes(), "receiving snapshot");
        let state = node.state.clone();
        let mut incoming = Some(
            tokio::task::spawn_blocking(move || IncomingSnapshot::begin(&state, manifest))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::internal(e.to_string()))?,
        );
        let handle = loop {
            let frame = stream
                .message()
                .await?
                .ok_or_else(|| Status::invalid_argument("snapshot stream ended before its last frame"))?;
            let frame = snapshot_transfer::decode(&frame)?;
            let mut inc = incoming
                .take()
                .ok_or_else(|| Status::internal("snapshot receiver lost"))?;
            let rejected =
                |e: sen_store::StoreError| Status::invalid_argument(format!("snapshot transfer rejected: {e}"));
            let joined = |e: tokio::task::JoinError| Status::internal(format!("snapshot receiver task failed: {e}"));
            match frame {
                Frame::Done => {
                    break tokio::task::spawn_blocking(move || inc.finish())
                        .await
                        .map_err(joined)?
                        .map_err(rejected)?;
                }
                Frame::Header { .. } => {
                    return Err(Status::invalid_argument("snapshot stream sent a second header"));
                }
                Frame::Chunk { file, offset, data } => {
                    let inc = tokio::task::spawn_blocking(move || inc.write(file as usize, offset, &data).map(|_| inc))
                        .await
                        .map_err(joined)?
                        .map_err(rejected)?;
                    incoming = Some(inc);
                }
                Frame::FileEnd { file, blake3 } => {
                    let inc = tokio::task::spawn_blocking(move || inc.finish_file(file as usize, &blake3).map(|_| inc))
                        .await
                        .map_err(joined)?
                        .map_err(rejected)?;
                    incoming = Some(inc);
                }
            }
        };
        let resp = node
            .raft
            .install_full_snapshot(vote, Snapshot { meta, snapshot: handle })
            .await
            .map_err(|e| fatal(&node, e))?;
        encode(&resp)
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let node = &self.node;
        let r = req.into_inner();
        if r.node_id != node.id {
            return Err(Status::failed_precondition(format!(
                "the node at {} is node {}, not node {}; use --id {} or the right address",
                node.config.advertise_addr(),
                node.id,
                r.node_id,
                node.id
            )));
        }
        let theirs: ClusterId = r.cluster_id.parse().map_err(|e: String| Status::invalid_argument(e))?;
        match node.cluster_id() {
            Some(ours) if ours == theirs => Ok(Response::new(JoinResponse {})),
            Some(ours) => Err(Status::failed_precondition(format!(
                "node {} already belongs to cluster {ours}; it cannot join cluster {theirs}. Wipe its data directory first if it should move",
                node.id
            ))),
            None => {
                let pristine = node.log.is_pristine().map_err(|e| Status::internal(e.to_string()))?;
                if !pristine {
                    return Err(Status::failed_precondition(format!(
                        "node {} has Raft state but no cluster id; wipe its data directory before adding it",
                        node.id
                    )));
                }
                node.set_cluster_id(theirs, true).map_err(Status::from)?;
                tracing::info!(cluster_id = %theirs, leader = r.leader_id, "joined cluster");
                Ok(Response::new(JoinResponse {}))
            }
        }
    }

    async fn node_status(&self, req: Request<NodeStatusRequest>) -> Result<Response<NodeStatusResponse>, Status> {
        check_peer(&self.node, &req)?;
        self.node.faults.before_incoming().await?;
        Ok(Response::new(local_status(&self.node)))
    }

    async fn read_index(&self, req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        check_peer(&self.node, &req)?;
        self.node.faults.before_incoming().await?;
        let node = &self.node;
        let budget = crate::deadline::budget(req.metadata(), node.config.server.forward_timeout);
        match tokio::time::timeout(budget, node.raft.get_read_log_id(ReadPolicy::ReadIndex)).await {
            Err(_) => Err(Status::deadline_exceeded(format!(
                "leader {} could not confirm its leadership within {budget:?}",
                node.id
            ))),
            Ok(Ok((read_log_id, _))) => Ok(Response::new(ReadIndexResponse {
                read_index: read_log_id.index(),
                term: node.raft_metrics().current_term,
            })),
            Ok(Err(RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(f)))) => Err(
                Status::from(crate::error::ApiError::not_leader(node.id, crate::error::hint(f))),
            ),
            Ok(Err(e)) => Err(Status::unavailable(format!(
                "node {} cannot provide a read index: {e}; retry in a moment",
                node.id
            ))),
        }
    }
}

/// This node's own view, for `cluster status`.
pub fn local_status(node: &Node) -> NodeStatusResponse {
    let m = node.raft_metrics();
    NodeStatusResponse {
        node_id: node.id,
        cluster_id: node.cluster_id().map(|c| c.to_string()).unwrap_or_default(),
        state: role_name(m.state).into(),
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        leader_id: m.current_leader.unwrap_or(0),
        commit_index: m.local_committed.map_or(0, |l| l.index),
    }
}

pub fn role_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    }
}

/// openraft panics on a snapshot that contradicts the vote or the committed
/// log; refuse such a snapshot with an error instead.
fn check_snapshot_is_installable(
    node: &Node,
    vote: &sen_raft::Vote,
    meta: &sen_raft::SnapshotMeta,
) -> Result<(), Status> {
    let Some(last) = meta.last_log_id else {
        return Ok(());
    };
    if last.leader_id.term > vote.leader_id.term {
        return Err(Status::invalid_argument(format!(
            "snapshot at term {} is newer than the sender's vote (term {}); refusing it",
            last.leader_id.term, vote.leader_id.term
        )));
    }
    let m = node.raft_metrics();
    if let Some(committed) = m.local_committed
        && last > committed
        && last.index <= committed.index
    {
        return Err(Status::invalid_argument(format!(
            "snapshot at {last} contradicts this node's committed log at {committed}; refusing it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raft_message_speaks_only_for_its_sender() {
        assert!(sender_matches(Some("2"), 2).is_ok());
        let e = sender_matches(Some("9"), 2).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("node 2's vote sent by node 9"), "{}", e.message());
        let e = sender_matches(None, 2).unwrap_err();
        assert!(e.message().contains("unnamed sender"), "{}", e.message());
        assert!(sender_matches(Some("two"), 2).is_err());
    }
}
