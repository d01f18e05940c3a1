//! [`Node`]: what every request handler needs, and the operations shared by
//! the services (proposing a write, the linearizable read barrier, finding
//! the leader).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{ReadPolicy, ServerState};
use sen_core::{ClusterId, NodeId, RequestId};
use sen_proto::raft::v1::ReadIndexRequest;
use sen_proto::v1::ResponseHeader;
use sen_raft::{Op, RaftMetrics, Request, Response};
use sen_store::{LogStore, StateDb};

use crate::config::NodeConfig;
use crate::error::{ApiError, LeaderHint};
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::role_state::RoleState;
use crate::types::Raft;

/// Shared context of a running node.
pub struct Node {
    pub id: NodeId,
    pub config: NodeConfig,
    pub raft: Raft,
    pub state: Arc<StateDb>,
    pub log: LogStore,
    pub peers: Arc<Peers>,
    pub metrics: Arc<Metrics>,
    /// The cluster this node belongs to (`None` until init or join). Also
    /// persisted in the log DB; peer calls carry it.
    pub cluster_id: Arc<RwLock<Option<ClusterId>>>,
    /// Faults injected by a failover drill (none normally).
    pub faults: Arc<crate::faults::Faults>,
    /// What the role task (hooks, fencing, drain) knows, for the services.
    pub roles: RoleState,
    /// Cancelled by a forced quorum-loss recovery: the server stops in
    /// order, rewrites the log to a one-voter membership and restarts.
    pub recovery: tokio_util::sync::CancellationToken,
    /// When this process started (ms since the epoch).
    pub started_at_ms: u64,
    /// Free space of the data directory: writes stop above the reserve.
    pub disk: crate::disk::DiskGuard,
    /// Readers and speed per site, until the leader has them.
    pub traffic: crate::traffic::Tally,
    /// What this node's archive shipper is doing.
    pub archive: std::sync::Mutex<crate::archive_status::Status>,
    /// Site files kept ready to serve (`content.cache-bytes`).
    pub files: crate::file_cache::FileCache,
    stopping: AtomicBool,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: NodeConfig,
        raft: Raft,
        state: Arc<StateDb>,
        log: LogStore,
        peers: Arc<Peers>,
        metrics: Arc<Metrics>,
        cluster_id: Arc<RwLock<Option<ClusterId>>>,
        faults: Arc<crate::faults::Faults>,
    ) -> Self {
        let traffic = crate::traffic::Tally::new(&config.content.trusted_proxies);
        let files = crate::file_cache::FileCache::new(
            config.content.cache_bytes,
            config.content.cache_max_file,
            metrics.content_cache.clone(),
        );
        Self {
            files,
            id: config.id,
            config,
            raft,
            state,
            log,
            peers,
            metrics,
            cluster_id,
            faults,
            roles: RoleState::default(),
            recovery: tokio_util::sync::CancellationToken::new(),
            traffic,
            archive: crate::archive_status::new_status(),
            started_at_ms: sen_core::now_ms(),
            disk: crate::disk::DiskGuard::default(),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn cluster_id(&self) -> Option<ClusterId> {
        *self.cluster_id.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Bind this node to cluster `id`, durably, before it talks to that
    /// cluster. `joined`: the id came from another node (add-node).
    pub fn set_cluster_id(&self, id: ClusterId, joined: bool) -> Result<(), ApiError> {
        self.log.set_cluster_id(self.id, id, joined)?;
        *self.cluster_id.write().unwrap_or_else(|p| p.into_inner()) = Some(id);
        Ok(())
    }

    pub fn raft_metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Bring the gauges that follow the Raft log up to date (before
    /// `/metrics` renders them).
    pub fn refresh_scraped_gauges(&self) {
        self.metrics
            .set_raft_log(self.id, &self.raft.metrics().borrow_watched());
        self.metrics.set_store_memory(self.state.memory_usage());
    }

    /// Mark the node as stopping: new client requests are refused.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The address of member `id`, from the replicated membership.
    pub fn member_addr(&self, id: NodeId) -> Option<String> {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        m.membership_config.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// The leader as far as this node knows.
    pub fn leader(&self) -> Option<LeaderHint> {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some(LeaderHint { id, addr })
    }

    pub fn is_leader(&self) -> bool {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// `Some(silence)` when this node leads but no quorum has acknowledged
    /// it for longer than `hooks.lease` (it is cut off from the majority,
    /// or the others are down): it must not take writes that cannot commit.
    fn quorum_lost(&self) -> Option<Duration> {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        crate::role_state::quorum_silence(self.id, &m).filter(|s| *s > self.config.hooks.lease)
    }

    /// Resolves when this node stops leading or loses its quorum (see
    /// [`Node::quorum_lost`]); never while it keeps both.
    async fn leadership_lost(&self) {
        loop {
            let moved = self.roles.moved();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if !self.is_leader() || self.quorum_lost().is_some() {
                return;
            }
            moved.await;
        }
    }

    /// Refuse client requests while stopping or before joining a cluster.
    pub fn check_serving(&self) -> Result<(), ApiError> {
        if self.is_stopping() {
            return Err(ApiError::Unavailable(format!(
                "node {} is shutting down; retry on another node",
                self.id
            )));
        }
        if self.cluster_id().is_none() {
            return Err(ApiError::NoCluster(format!(
                "node {} is not part of a cluster yet: run `sen cluster init` against one node, then `sen cluster add-node` for the others",
                self.id
            )));
        }
        Ok(())
    }

    /// The header of every response.
    pub fn response_header(&self) -> ResponseHeader {
        // Borrowed, not cloned: this runs for every answer.
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        ResponseHeader {
            node_id: self.id,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
        }
    }

    /// Propose a command on this node (which must be the leader) and wait
    /// until it is applied here.
    pub async fn propose(&self, id: Option<RequestId>, op: Op, budget: Duration) -> Result<Response, ApiError> {
        if op.adds_data(sen_raft::schema::system::SYSTEM_DB) {
            self.disk.check(self.id)?;
            self.check_room_for(&op)?;
        }
        // Fencing: a leader cut off from the majority answers at once, so
        // clients move on to the side that can elect a new leader instead
        // of waiting out their deadline here.
        if let Some(silence) = self.quorum_lost() {
            return Err(ApiError::NotLeader {
                message: format!(
                    "node {} leads but no majority has answered it for {} ms (more than hooks.lease): it is cut off \
                     or the other voters are down; nothing was written: retry on another node",
                    self.id,
                    silence.as_millis()
                ),
                leader: None,
                outcome_unknown: false,
            });
        }
        let req = Request {
            id,
            proposed_at_ms: sen_core::now_ms(),
            op,
        };
        let started = Instant::now();
        let write = async {
            tokio::select! {
                r = self.raft.client_write(req) => Some(r),
                () = self.leadership_lost() => None,
            }
        };
        let res = tokio::time::timeout(budget, write).await;
        let out = match res {
            Err(_) => Err(ApiError::Timeout(format!(
                "the write was not committed within {budget:?}; its outcome is unknown: retry with the same request id (the CLI does this)"
            ))),
            Ok(None) => Err(ApiError::NotLeader {
                message: format!(
                    "node {} lost its majority (or its leadership) before the write was committed; its outcome is \
                     unknown: retry with the same request id on another node",
                    self.id
                ),
                leader: self.leader().filter(|l| l.id != self.id),
                outcome_unknown: true,
            }),
            Ok(Some(Ok(r))) => match r.data.outcome {
                sen_raft::Outcome::QuotaExceeded {
                    kind,
                    name,
                    bytes,
                    quota,
                } => Err(ApiError::Exhausted(format!(
                    "{kind} {name} would hold {bytes} bytes, over its quota of {quota} bytes; nothing changed: \
                     delete data, or ask an administrator to raise it with `sen quota set {kind} {name} --max-bytes …`"
                ))),
                sen_raft::Outcome::RequestIdReused { revision } => Err(ApiError::FailedPrecondition(format!(
                    "request id reused for a different request (the id was applied at revision {revision} to \
                     another operation; nothing changed): give every new request a new id"
                ))),
                _ => Ok(r.data),
            },
            Ok(Some(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))))) => {
                Err(ApiError::not_leader(self.id, crate::error::hint(f)))
            }
            Ok(Some(Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))))) => Err(ApiError::NotLeader {
                message: format!(
                    "leadership changed before the write on node {} was committed; its outcome is unknown: retry with the same request id",
                    self.id
                ),
                leader: crate::error::hint(f),
                outcome_unknown: true,
            }),
            Ok(Some(Err(RaftError::APIError(e)))) => Err(ApiError::FailedPrecondition(e.to_string())),
            Ok(Some(Err(RaftError::Fatal(f)))) => Err(ApiError::Unavailable(format!(
                "raft on node {} has stopped: {f}",
                self.id
            ))),
        };
        self.metrics.observe_proposal(started.elapsed(), out.is_ok());
        out
    }

    /// Refuse a write that would create a database or a site beyond
    /// `limits.max-databases` / `limits.max-sites`. Checked by the leader
    /// before proposing; writes landing at the same moment may pass the
    /// maximum by the few that were in flight.
    fn check_room_for(&self, op: &Op) -> Result<(), ApiError> {
        let limits = &self.config.limits;
        let new_db = match op {
            Op::Put { db, .. } => Some(db),
            Op::Txn(t) => Some(&t.db),
            _ => None,
        };
        if let Some(db) = new_db
            && !self.state.database_exists(db)?
        {
            let dbs = self.state.count_databases(limits.max_databases)?;
            if dbs >= limits.max_databases {
                return Err(ApiError::Exhausted(format!(
                    "the cluster already holds {dbs} databases, the most allowed (limits.max-databases); \
                     write to an existing database, delete one, or raise the limit on every node"
                )));
            }
        }
        if let Op::CreateSite { site } = op
            && self.state.site(site)?.0.is_none()
        {
            let sites = self.state.count_sites(limits.max_sites)?;
            if sites >= limits.max_sites {
                return Err(ApiError::Exhausted(format!(
                    "the cluster already holds {sites} sites, the most allowed (limits.max-sites); \
                     delete a site or raise the limit on every node"
                )));
            }
        }
        if let Op::PutChunks { chunks } = op {
            let incoming: u64 = chunks.iter().map(|c| c.data.len() as u64).sum();
            let held = self.state.unreferenced_bytes()?;
            if held.saturating_add(incoming) > limits.max_undeployed_bytes {
                return Err(ApiError::Exhausted(format!(
                    "the cluster already holds {held} bytes of uploaded content no deployment uses, and this upload \
                     of {incoming} bytes would pass limits.max-undeployed-bytes ({}); finish or abandon the pushes in \
                     progress and run `sen site gc` (chunks are collected after their grace period), or raise the \
                     limit on every node",
                    limits.max_undeployed_bytes
                )));
            }
        }
        Ok(())
    }

    /// Wait until a read on this node is linearizable: ReadIndex through the
    /// leader, then until this node has applied up to the read index.
    pub async fn read_barrier(&self, budget: Duration) -> Result<(), ApiError> {
        let deadline = Instant::now() + budget;
        if self.is_leader() {
            let res = tokio::time::timeout(budget, self.raft.ensure_linearizable(ReadPolicy::ReadIndex)).await;
            return match res {
                Err(_) => Err(ApiError::Timeout(format!(
                    "leader {} could not confirm its leadership within {budget:?}",
                    self.id
                ))),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                    Err(ApiError::not_leader(self.id, crate::error::hint(f)))
                }
                Ok(Err(RaftError::APIError(e))) => Err(ApiError::Unavailable(format!(
                    "node {} cannot serve a linearizable read: {e}; retry in a moment",
                    self.id
                ))),
                Ok(Err(RaftError::Fatal(f))) => Err(ApiError::Unavailable(format!(
                    "raft on node {} has stopped: {f}",
                    self.id
                ))),
            };
        }
        let leader = self.leader().ok_or_else(|| ApiError::not_leader(self.id, None))?;
        if leader.addr.is_empty() {
            return Err(ApiError::not_leader(self.id, Some(leader)));
        }
        let mut client = self
            .peers
            .raft(Some(leader.id), &leader.addr, false)
            .map_err(|s| ApiError::Unavailable(s.message().to_owned()))?;
        let mut req = tonic::Request::new(ReadIndexRequest {});
        req.set_timeout(budget);
        let read_index = match tokio::time::timeout(budget, client.read_index(req)).await {
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "leader {} at {} did not answer a read-index request within {budget:?}",
                    leader.id, leader.addr
                )));
            }
            Ok(Err(s)) => return Err(ApiError::from_peer(&leader.addr, &s)),
            Ok(Ok(r)) => r.into_inner().read_index,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(left))
            .applied_index_at_least(Some(read_index), "linearizable read")
            .await
            .map_err(|_| {
                ApiError::Timeout(format!(
                    "node {} did not apply up to the leader's read index {read_index} within {budget:?}; it may be far behind",
                    self.id
                ))
            })?;
        Ok(())
    }
}
