//! openraft's network over gRPC (`sen.raft.v1.Raft`).
//!
//! Every call has a deadline: AppendEntries uses `raft.rpc-timeout` (it may
//! carry megabytes), Vote/PreVote/TransferLeader use openraft's own TTL, and
//! snapshot transfers get `raft.snapshot-timeout` plus time proportional to
//! their size. Errors are classified for openraft's backoff: a refused
//! connection or an error status is `Unreachable`, a deadline is `Timeout`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::RPCTypes;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use sen_core::NodeId;
use sen_core::codec;
use sen_proto::raft::v1::RaftPayload;
use sen_raft::{NodeInfo, TypeConfig, Vote};
use sen_store::{RaftSnapshot, SnapshotHandle};
use tonic::Status;

use crate::config::RaftConfig;
use crate::faults::Faults;
use crate::peers::{PeerRaftClient, Peers};
use crate::snapshot_transfer;

/// Creates a [`PeerNetwork`] per target.
pub struct NetworkFactory {
    pub me: NodeId,
    pub peers: Arc<Peers>,
    pub cfg: RaftConfig,
    pub faults: Arc<Faults>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerNetwork {
        PeerNetwork {
            me: self.me,
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            cfg: self.cfg.clone(),
            faults: self.faults.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerNetwork {
    me: NodeId,
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
    cfg: RaftConfig,
    faults: Arc<Faults>,
    metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerNetwork {
    fn client(&self, bulk: bool) -> Result<PeerRaftClient, RPCError<TypeConfig>> {
        self.peers
            .raft(Some(self.target), &self.addr, bulk)
            .map_err(|s| RPCError::Unreachable(Unreachable::new(&Msg(s.message().to_owned()))))
    }

    fn status_err(&self, action: RPCTypes, timeout: Duration, s: Status) -> RPCError<TypeConfig> {
        match s.code() {
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.target,
                timeout,
            }),
            _ => RPCError::Unreachable(Unreachable::new(&Msg(format!(
                "node {} at {}: {:?}: {}",
                self.target,
                self.addr,
                s.code(),
                s.message()
            )))),
        }
    }

    /// One unary call: encode, send with a deadline, decode; failures are
    /// reported to [`Peers`] (which logs when the peer starts and stops
    /// failing, not every retry).
    async fn call<Req, Resp, F, Fut>(
        &self,
        action: RPCTypes,
        timeout: Duration,
        req: &Req,
        send: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(PeerRaftClient, tonic::Request<RaftPayload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, Status>>,
    {
        let r = self.call_once(action, timeout, req, send).await;
        match &r {
            Ok(_) => self.peers.call_succeeded(self.target),
            // A drill isolating this node is not the peer's failure.
            Err(RPCError::Unreachable(_)) if self.faults.isolated_by().is_some() => {}
            Err(e) => self.peers.call_failed(self.target, e),
        }
        r
    }

    async fn call_once<Req, Resp, F, Fut>(
        &self,
        action: RPCTypes,
        timeout: Duration,
        req: &Req,
        send: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(PeerRaftClient, tonic::Request<RaftPayload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, Status>>,
    {
        self.faults
            .before_outgoing(timeout)
            .await
            .map_err(|m| RPCError::Unreachable(Unreachable::new(&Msg(m))))?;
        let data = codec::encode_v1("raft request", req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(timeout);
        let client = self.client(false)?;
        let resp = match tokio::time::timeout(timeout, send(client, request)).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.me,
                    target: self.target,
                    timeout,
                }));
            }
            Ok(Err(s)) => return Err(self.status_err(action, timeout, s)),
            Ok(Ok(r)) => r.into_inner(),
        };
        codec::decode_v1("raft response", &resp.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotHandle;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // Heartbeats (no entries) must fail fast; batches may be large.
        let timeout = if rpc.entries.is_empty() {
            option
                .hard_ttl()
                .max(Duration::from_millis(200))
                .min(self.cfg.rpc_timeout)
        } else {
            self.cfg.rpc_timeout
        };
        let replicating = (!rpc.entries.is_empty()).then(std::time::Instant::now);
        let r = self
            .call(RPCTypes::AppendEntries, timeout, &rpc, |mut c, r| async move {
                c.append_entries(r).await
            })
            .await;
        if let (Some(started), Ok(_)) = (replicating, &r) {
            self.metrics.observe_stage("replicate", started.elapsed());
        }
        r
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.hard_ttl().min(self.cfg.rpc_timeout);
        self.call(RPCTypes::Vote, timeout, &rpc, |mut c, r| async move { c.vote(r).await })
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.hard_ttl().min(self.cfg.rpc_timeout);
        self.call(
            RPCTypes::Vote,
            timeout,
            &rpc,
            |mut c, r| async move { c.pre_vote(r).await },
        )
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option
            .hard_ttl()
            .max(Duration::from_millis(200))
            .min(self.cfg.rpc_timeout);
        self.call(RPCTypes::TransferLeader, timeout, &req, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: RaftSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let bytes = snapshot.snapshot.manifest().total_bytes();
        let timeout = self.cfg.snapshot_timeout + Duration::from_secs(bytes / self.cfg.snapshot_min_rate_bytes.max(1));
        self.faults
            .before_outgoing(self.cfg.rpc_timeout)
            .await
            .map_err(|m| StreamingError::from(RPCError::<TypeConfig>::Unreachable(Unreachable::new(&Msg(m)))))?;
        let client = self.client(true).map_err(StreamingError::from)?;
        let send = snapshot_transfer::send(client, vote, snapshot.snapshot, self.cfg.snapshot_chunk_bytes, timeout);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(timeout, send) => match r {
                Err(_) => Err(StreamingError::Timeout(Timeout {
                    action: RPCTypes::InstallSnapshot,
                    id: self.me,
                    target: self.target,
                    timeout,
                })),
                Ok(Err(s)) => Err(StreamingError::from(self.status_err(RPCTypes::InstallSnapshot, timeout, s))),
                Ok(Ok(resp)) => Ok(resp),
            },
        }
    }
}
