//! The public cluster-lifecycle service (`sen.v1.Cluster`).
//!
//! Membership changes run on the leader; a follower forwards them. Adding a
//! node is: bind it to this cluster (`Raft.Join`, which checks its id and
//! that it is empty or already ours), add it as a learner, wait until it has
//! caught up, then make it a voter (unless `--learner`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use sen_core::ClusterId;
use sen_proto::raft::v1::{JoinRequest, NodeStatusRequest};
use sen_proto::v1::cluster_server::Cluster;
use sen_proto::v1::*;
use sen_raft::{NodeInfo, Op, Outcome, TypeConfig};
use tonic::{Request, Response, Status};

use super::measured;
use super::raft::local_status;
use crate::deadline;
use crate::error::ApiError;
use crate::forward::is_forwarded;
use crate::node::Node;

pub struct ClusterApi {
    pub node: Arc<Node>,
}

/// On a follower: send the call to the leader. On the leader (or a
/// forwarded call): run it here.
macro_rules! leader_only {
    ($self:ident, $req:ident, $method:ident, $budget:expr) => {{
        let node = &$self.node;
        if !is_forwarded(node, &$req)? && !node.is_leader() {
            match node.leader() {
                Some(l) if l.id != node.id && !l.addr.is_empty() => {
                    let behalf = crate::forward::behalf(&$req);
                    return forward_to_leader!(
                        uncapped node,
                        behalf,
                        node.peers.cluster(l.id, &l.addr),
                        l.addr,
                        $method,
                        $req.into_inner(),
                        $budget
                    );
                }
                other => return Err(ApiError::not_leader(node.id, other)),
            }
        }
        // A leader elected a moment ago may not have applied every entry
        // committed before its term, and these handlers check preconditions
        // against replicated state (who is drained, who is a member): wait
        // until its state machine has caught up (ReadIndex) first.
        node.read_barrier($budget).await?;
    }};
}

/// Run a membership change with a deadline, mapping "not leader" to a
/// retryable error with the leader hint.
async fn membership_change(
    node: &Node,
    budget: Duration,
    what: &str,
    change: impl std::future::Future<
        Output = Result<ClientWriteResponse<TypeConfig>, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>,
    >,
) -> Result<ClientWriteResponse<TypeConfig>, ApiError> {
    match tokio::time::timeout(budget, change).await {
        Err(_) => Err(ApiError::Timeout(format!(
            "{what}: the membership change did not commit within {budget:?}; check `sen cluster status` and retry"
        ))),
        Ok(Ok(r)) => Ok(r),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(ApiError::not_leader(node.id, crate::error::hint(f)))
        }
        Ok(Err(RaftError::APIError(e))) => Err(ApiError::FailedPrecondition(format!("{what}: {e}"))),
        Ok(Err(RaftError::Fatal(f))) => Err(ApiError::Unavailable(format!(
            "raft on node {} has stopped: {f}",
            node.id
        ))),
    }
}

fn parse_addr(addr: &str) -> Result<(), ApiError> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!("address {addr:?} must be HOST:PORT")))
    }
}

impl ClusterApi {
    fn membership(&self) -> (BTreeSet<u64>, Vec<(u64, NodeInfo)>) {
        let m = self.node.raft_metrics();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<u64> = mem.voter_ids().collect();
        let nodes = mem.nodes().map(|(id, n)| (*id, n.clone())).collect();
        (voters, nodes)
    }

    /// Wait until learner `id` has replicated up to the leader's current
    /// last log index.
    async fn wait_caught_up(&self, id: u64, timeout: Duration) -> Result<(), ApiError> {
        let node = &self.node;
        let target = node.raft_metrics().last_log_index.unwrap_or(0);
        let r = node
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .and_then(|l| l.as_ref())
                        .is_some_and(|l| l.index >= target)
                },
                format!("node {id} catches up to {target}"),
            )
            .await;
        r.map(|_| ()).map_err(|_| {
            ApiError::Timeout(format!(
                "node {id} did not catch up to log index {target} within {timeout:?} (server.catch-up-timeout); it stays a learner: check it is running and reachable, then run `sen cluster promote --id {id}`"
            ))
        })
    }

    /// Bind the node at `addr` to this cluster: it checks that it is node
    /// `id` and that it is empty or already ours.
    async fn join(&self, id: u64, addr: &str) -> Result<(), ApiError> {
        let node = &self.node;
        let cluster_id = node
            .cluster_id()
            .ok_or_else(|| ApiError::Internal("leader has no cluster id".into()))?;
        // Dialled through `network.peer-addresses` if one is set for this
        // id; over TLS the node must present node `id`'s certificate.
        let target = node.peers.resolve(Some(id), addr).to_owned();
        let mut peer = node
            .peers
            .raft_join(id, addr)
            .map_err(|s| ApiError::from_peer(&target, &s))?;
        let mut join = Request::new(JoinRequest {
            cluster_id: cluster_id.to_string(),
            node_id: id,
            leader_id: node.id,
        });
        let t = node.config.server.forward_timeout;
        join.set_timeout(t);
        match tokio::time::timeout(t, peer.join(join)).await {
            Err(_) => Err(ApiError::Unavailable(format!(
                "node at {addr} did not answer within {t:?}; is it running?"
            ))),
            Ok(Err(s)) if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument) => Err(
                ApiError::FailedPrecondition(format!("node at {addr} refused to join: {}", s.message())),
            ),
            Ok(Err(s)) if crate::error::tls_failure(&s).is_some() => Err(ApiError::FailedPrecondition(format!(
                "the node at {addr} did not prove it is node {id} of this cluster ({}): start it with `sen server --id {id}` and a certificate for node {id} from this cluster's CA (`sen certs node --id {id}`)",
                crate::error::tls_failure(&s).unwrap_or_default()
            ))),
            Ok(Err(s)) => Err(ApiError::Unavailable(format!(
                "cannot reach node {id} at {addr}: {}; start it with `sen server --id {id} ...` first",
                s.message()
            ))),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Make learner `id` a voter; returns the membership's log index.
    async fn promote(&self, id: u64, budget: Duration) -> Result<u64, ApiError> {
        let node = &self.node;
        let change = ChangeMembers::AddVoterIds([id].into_iter().collect());
        let what = format!("cannot promote node {id}");
        let resp = membership_change(node, budget, &what, node.raft.change_membership(change, true)).await?;
        tracing::info!(node = id, "promoted to voter");
        Ok(resp.log_id.index)
    }

    fn member_status(&self, id: u64, addr: &str, voters: &BTreeSet<u64>) -> MemberStatus {
        let m = self.node.raft_metrics();
        let last = m.last_log_index.unwrap_or(0);
        let matched = if id == self.node.id {
            Some(last)
        } else {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id))
                .map(|l| l.as_ref().map_or(0, |l| l.index))
        };
        MemberStatus {
            id,
            addr: addr.to_owned(),
            role: if voters.contains(&id) { "follower" } else { "learner" }.into(),
            reachable: false,
            last_log_index: 0,
            applied_index: 0,
            matched_index: matched.unwrap_or(0),
            replication_lag: matched.map_or(0, |x| last.saturating_sub(x)),
            term: 0,
            voter: voters.contains(&id),
            error: String::new(),
            drained: crate::system::is_drained(self.node.as_ref(), id),
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn init(&self, req: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Init", async {
            if node.is_stopping() {
                return Err(ApiError::Unavailable(format!("node {} is shutting down", node.id)));
            }
            let budget = deadline::budget(req.metadata(), node.config.server.request_timeout);
            let initialized = node
                .raft
                .is_initialized()
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            let caller = crate::auth::caller(&req)?;
            // The first cluster-admin: the user whose certificate called
            // Init ("admin" in insecure mode).
            let admin = caller.principal.user().unwrap_or("admin").to_owned();
            if initialized {
                let id = node
                    .cluster_id()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "(unknown)".into());
                // An init that crashed before creating the first admin
                // finishes now.
                if node.is_leader()
                    && let Some(token) =
                        crate::access::bootstrap(node.as_ref(), &admin, sen_core::now_ms(), budget).await?
                {
                    tracing::warn!(user = %admin, "created the first cluster-admin of an existing cluster");
                    return Ok(InitResponse {
                        cluster_id: id,
                        node_id: node.id,
                        admin_user: admin,
                        admin_token: token.reveal(),
                        created: false,
                    });
                }
                return Err(ApiError::FailedPrecondition(format!(
                    "node {} is already part of cluster {id}; nothing to do",
                    node.id
                )));
            }
            // Reuse an id recorded by an init that crashed half-way; never
            // one this node was given by another cluster's add-node.
            let identity = node.log.identity()?;
            let cluster_id = match identity.as_ref().and_then(|i| i.cluster_id.map(|c| (c, i.joined))) {
                Some((c, true)) => {
                    return Err(ApiError::FailedPrecondition(format!(
                        "node {} was added to cluster {c} by `cluster add-node`; it cannot start a new cluster. Finish adding it, or stop it and wipe its data directory",
                        node.id
                    )));
                }
                Some((c, false)) => c,
                None => {
                    let c = ClusterId::generate();
                    node.set_cluster_id(c, false)?;
                    c
                }
            };
            let me = NodeInfo {
                addr: node.config.advertise_addr().to_owned(),
            };
            node.raft
                .initialize(
                    [(node.id, me)]
                        .into_iter()
                        .collect::<std::collections::BTreeMap<_, _>>(),
                )
                .await
                .map_err(|e| ApiError::FailedPrecondition(format!("cannot initialize: {e}")))?;
            node.raft
                .wait(Some(budget))
                .current_leader(node.id, "init")
                .await
                .map_err(|_| ApiError::Timeout(format!("node {} did not become leader within {budget:?}", node.id)))?;
            let resp = node.propose(None, Op::InitCluster { cluster_id }, budget).await?;
            let Outcome::InitCluster { cluster_id, .. } = resp.outcome else {
                return Err(ApiError::Internal(format!("unexpected result {:?}", resp.outcome)));
            };
            tracing::info!(%cluster_id, "initialized a new cluster");
            let token = crate::access::bootstrap(node.as_ref(), &admin, sen_core::now_ms(), budget).await?;
            if token.is_some() {
                tracing::info!(user = %admin, "created the first cluster-admin and its token");
            }
            Ok(InitResponse {
                cluster_id: cluster_id.to_string(),
                node_id: node.id,
                admin_user: admin,
                admin_token: token.map(|t| t.reveal()).unwrap_or_default(),
                created: true,
            })
        })
        .await
    }

    async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "AddNode", async {
            crate::auth::note(&req, format!("node:{} addr:{}", req.get_ref().id, req.get_ref().addr));
            node.check_serving()?;
            let budget = deadline::budget(req.metadata(), node.config.server.catch_up_timeout);
            leader_only!(self, req, add_node, budget);
            let r = req.into_inner();
            if r.id == 0 {
                return Err(ApiError::InvalidArgument("node ids are positive integers".into()));
            }
            parse_addr(&r.addr)?;
            let (voters, nodes) = self.membership();
            // Idempotent: a retried add-node (say after a timeout during a
            // long catch-up) continues where the first attempt stopped.
            let existing = nodes.iter().find(|(id, _)| *id == r.id).map(|(_, n)| n.addr.clone());
            if let Some(addr) = &existing
                && *addr != r.addr
            {
                return Err(ApiError::FailedPrecondition(format!(
                    "node {} is already a member at {addr}; to move it, remove it first, or pick an unused id",
                    r.id
                )));
            }
            if existing.is_none()
                && let Some((other, _)) = nodes.iter().find(|(_, n)| n.addr == r.addr)
            {
                return Err(ApiError::FailedPrecondition(format!(
                    "address {} is already used by node {other}",
                    r.addr
                )));
            }
            let mut revision = 0;
            if existing.is_none() {
                self.join(r.id, &r.addr).await?;
                let info = NodeInfo { addr: r.addr.clone() };
                let what = format!("cannot add node {}", r.id);
                let resp = membership_change(&node, budget, &what, node.raft.add_learner(r.id, info, false)).await?;
                revision = resp.log_id.index;
                tracing::info!(node = r.id, addr = %r.addr, "added learner");
            }
            if !r.learner && !voters.contains(&r.id) {
                self.wait_caught_up(r.id, budget).await?;
                revision = self.promote(r.id, budget).await?;
            }
            let (voters, _) = self.membership();
            let mut member = self.member_status(r.id, &r.addr, &voters);
            member.reachable = true;
            Ok(AddNodeResponse {
                member: Some(member),
                revision,
            })
        })
        .await
    }

    async fn promote_node(&self, req: Request<PromoteNodeRequest>) -> Result<Response<PromoteNodeResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "PromoteNode", async {
            crate::auth::note(&req, format!("node:{}", req.get_ref().id));
            node.check_serving()?;
            let budget = deadline::budget(req.metadata(), node.config.server.catch_up_timeout);
            leader_only!(self, req, promote_node, budget);
            let id = req.into_inner().id;
            let (voters, nodes) = self.membership();
            if voters.contains(&id) {
                // Already done (perhaps by an earlier attempt).
                return Ok(PromoteNodeResponse { revision: 0 });
            }
            if !nodes.iter().any(|(n, _)| *n == id) {
                return Err(ApiError::NotFound(format!(
                    "node {id} is not a member; add it with `sen cluster add-node --id {id} --addr HOST:PORT`"
                )));
            }
            self.wait_caught_up(id, budget).await?;
            Ok(PromoteNodeResponse {
                revision: self.promote(id, budget).await?,
            })
        })
        .await
    }

    async fn remove_node(&self, req: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "RemoveNode", async {
            crate::auth::note(&req, format!("node:{}", req.get_ref().id));
            node.check_serving()?;
            let budget = deadline::budget(req.metadata(), node.config.server.request_timeout);
            leader_only!(self, req, remove_node, budget);
            let id = req.into_inner().id;
            let (voters, nodes) = self.membership();
            if !nodes.iter().any(|(n, _)| *n == id) {
                return Err(ApiError::NotFound(format!("node {id} is not a member of this cluster")));
            }
            let change = if voters.contains(&id) {
                if voters.len() == 1 {
                    return Err(ApiError::FailedPrecondition(format!(
                        "node {id} is the only voter; a cluster cannot remove its last voter"
                    )));
                }
                ChangeMembers::RemoveVoters([id].into_iter().collect())
            } else {
                ChangeMembers::RemoveNodes([id].into_iter().collect())
            };
            let what = format!("cannot remove node {id}");
            let resp = membership_change(&node, budget, &what, node.raft.change_membership(change, false)).await?;
            tracing::info!(node = id, "removed from the cluster");
            Ok(RemoveNodeResponse {
                revision: resp.log_id.index,
            })
        })
        .await
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Status", async {
            let budget = deadline::budget(req.metadata(), node.config.server.request_timeout);
            let Some(cluster_id) = node.cluster_id() else {
                return Ok(StatusResponse {
                    cluster_id: String::new(),
                    leader_id: 0,
                    term: 0,
                    members: Vec::new(),
                    node_id: node.id,
                    commit_index: 0,
                    insecure: !node.config.tls.enabled(),
                });
            };
            // The leader knows replication progress: ask it when we can.
            if !is_forwarded(&node, &req)?
                && let Some(r) = crate::forward::leader_status(
                    &node,
                    crate::forward::behalf(&req).as_ref(),
                    budget.min(node.config.server.status_timeout * 3),
                )
                .await
            {
                return Ok(r);
            }
            let m = node.raft_metrics();
            let (voters, nodes) = self.membership();
            let timeout = node.config.server.status_timeout;
            let calls = nodes.iter().map(|(id, info)| {
                let node = node.clone();
                let (id, addr) = (*id, info.addr.clone());
                async move {
                    if id == node.id {
                        return (id, Ok(local_status(&node)));
                    }
                    let mut client = match node.peers.raft(Some(id), &addr, false) {
                        Ok(c) => c,
                        Err(s) => return (id, Err(s.message().to_owned())),
                    };
                    let mut r = Request::new(NodeStatusRequest {});
                    r.set_timeout(timeout);
                    match tokio::time::timeout(timeout, client.node_status(r)).await {
                        Err(_) => (id, Err(format!("no answer within {timeout:?}"))),
                        Ok(Err(s)) => (id, Err(s.message().to_owned())),
                        Ok(Ok(r)) => (id, Ok(r.into_inner())),
                    }
                }
            });
            let answers = futures::future::join_all(calls).await;
            let mut members = Vec::new();
            for ((id, info), (_, answer)) in nodes.iter().zip(answers) {
                let mut s = self.member_status(*id, &info.addr, &voters);
                match answer {
                    Ok(st) => {
                        s.reachable = true;
                        s.last_log_index = st.last_log_index;
                        s.applied_index = st.applied_index;
                        s.term = st.term;
                        s.role = match st.state.as_str() {
                            "leader" => "leader".into(),
                            "candidate" => "candidate".into(),
                            _ if voters.contains(id) => "follower".into(),
                            _ => "learner".into(),
                        };
                    }
                    Err(e) => s.error = e,
                }
                members.push(s);
            }
            Ok(StatusResponse {
                cluster_id: cluster_id.to_string(),
                leader_id: m.current_leader.unwrap_or(0),
                term: m.current_term,
                members,
                node_id: node.id,
                commit_index: m.local_committed.map_or(0, |l| l.index),
                insecure: !node.config.tls.enabled(),
            })
        })
        .await
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "TransferLeader", async {
            crate::auth::note(&req, format!("node:{}", req.get_ref().to));
            node.check_serving()?;
            let budget = deadline::budget(req.metadata(), node.config.server.request_timeout);
            leader_only!(self, req, transfer_leader, budget);
            let to = req.into_inner().to;
            let started = std::time::Instant::now();
            let m = node.raft_metrics();
            let (voters, _) = self.membership();
            if to == node.id {
                return Ok(TransferLeaderResponse {
                    from: node.id,
                    to,
                    term: m.current_term,
                    elapsed_ms: 0,
                });
            }
            if to != 0 && !voters.contains(&to) {
                return Err(ApiError::FailedPrecondition(format!(
                    "node {to} is not a voter; leadership can only move to one of {voters:?}"
                )));
            }
            let target = crate::roles::successor(&node, &m, (to != 0).then_some(to)).ok_or_else(|| {
                ApiError::FailedPrecondition(if to == 0 {
                    "no other voter can take over (all are drained, or this is the only voter)".into()
                } else {
                    format!("node {to} is drained; run `sen node undrain {to}` first")
                })
            })?;
            // Mark the change as planned first, so the target has the
            // marker when it takes over; only a caught-up node can win the
            // election the transfer starts.
            if let Err(e) = crate::roles::plan_transfer(&node, target, "transfer-leader", budget / 2).await {
                tracing::warn!(
                    "transferring to node {target} without the planned-transfer marker (it will read as an election): {e}"
                );
            }
            let last = node.raft_metrics().last_log_index.unwrap_or(0);
            node.raft
                .wait(Some(budget.min(std::time::Duration::from_secs(5))))
                .metrics(
                    |m| {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&target))
                            .and_then(|l| l.as_ref())
                            .is_some_and(|l| l.index >= last)
                    },
                    "target caught up",
                )
                .await
                .map_err(|_| {
                    ApiError::Unavailable(format!(
                        "node {target} has not caught up with the leader's log (index {last}); check `sen cluster status` and retry"
                    ))
                })?;
            node.raft
                .trigger()
                .transfer_leader(target)
                .await
                .map_err(|e| ApiError::Unavailable(format!("raft on node {} has stopped: {e}", node.id)))?;
            let me = node.id;
            let m = node
                .raft
                .wait(Some(budget))
                .metrics(
                    |m| m.current_leader.is_some_and(|l| l != me),
                    "leadership moved",
                )
                .await
                .map_err(|_| {
                    ApiError::Timeout(format!(
                        "node {target} did not take over within {budget:?}; node {me} may still lead: check `sen cluster status`"
                    ))
                })?;
            let new = m.current_leader.unwrap_or(0);
            tracing::info!(from = me, to = new, ms = started.elapsed().as_millis() as u64, "leadership transferred");
            Ok(TransferLeaderResponse {
                from: me,
                to: new,
                term: m.current_term,
                elapsed_ms: started.elapsed().as_millis() as u64,
            })
        })
        .await
    }

    async fn drain(&self, req: Request<DrainRequest>) -> Result<Response<DrainResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Drain", async {
            crate::auth::note(&req, format!("node:{} drain:{}", req.get_ref().id, req.get_ref().drain));
            node.check_serving()?;
            let budget = deadline::budget(req.metadata(), node.config.server.request_timeout);
            leader_only!(self, req, drain, budget);
            let r = req.into_inner();
            let (voters, nodes) = self.membership();
            if !nodes.iter().any(|(n, _)| *n == r.id) {
                return Err(ApiError::NotFound(format!(
                    "node {} is not a member of this cluster",
                    r.id
                )));
            }
            let is_drained = |id: u64| crate::system::is_drained(node.as_ref(), id);
            if r.drain {
                let electable = voters.iter().filter(|v| **v != r.id && !is_drained(**v)).count();
                if voters.contains(&r.id) && electable == 0 {
                    return Err(ApiError::FailedPrecondition(format!(
                        "draining node {} would leave no voter that may lead; undrain another node first",
                        r.id
                    )));
                }
            }
            let key = sen_raft::schema::system::drained_key(r.id);
            let op = if r.drain {
                Op::Put {
                    db: sen_raft::schema::system::SYSTEM_DB.into(),
                    key,
                    value: sen_core::now_ms().to_string().into_bytes(),
                }
            } else {
                Op::Delete {
                    db: sen_raft::schema::system::SYSTEM_DB.into(),
                    key,
                }
            };
            let resp = node.propose(None, op, budget).await?;
            tracing::info!(node = r.id, drain = r.drain, "drain state set");
            // Draining the leader: wait until it has handed over.
            let mut leader = node.raft_metrics().current_leader.unwrap_or(0);
            if r.drain && leader == r.id {
                let target = r.id;
                if let Ok(m) = node
                    .raft
                    .wait(Some(budget))
                    .metrics(
                        |m| m.current_leader.is_some_and(|l| l != target),
                        "drained leader handed over",
                    )
                    .await
                {
                    leader = m.current_leader.unwrap_or(0);
                }
            }
            let drained = nodes.iter().map(|(id, _)| *id).filter(|id| is_drained(*id)).collect();
            Ok(DrainResponse {
                drained,
                leader_id: leader,
                revision: resp.revision,
            })
        })
        .await
    }
}
