//! Requests that must run on the leader, from any node: where a request is
//! executed ([`route`]), marking a forwarded request ([`forwarded`],
//! [`is_forwarded`]), the [`forward_to_leader!`] call with its deadline, and
//! recording an incident from any node ([`record_incident`]).
//!
//! A follower forwards at most once; a leader never forwards (a request
//! marked as forwarded is executed or refused where it lands).

use std::sync::Arc;
use std::time::Duration;

use sen_core::auth::Principal;
use sen_raft::schema::system::Incident;

use crate::error::ApiError;
use crate::node::Node;

/// Send `msg` to the leader with `client.method`, under `budget` (capped by
/// `server.forward-timeout`; the `uncapped` form keeps the whole budget, for
/// membership changes that wait for a node to catch up), mapping the answer
/// back to an `ApiError`. The capped form gives up at once when this node
/// starts following another leader (or none), with a retryable "not
/// leader" whose outcome is unknown: the client retries with the same
/// request id where the write can commit.
macro_rules! forward_to_leader {
    ($node:expr, $behalf:expr, $client:expr, $addr:expr, $method:ident, $msg:expr, $budget:expr) => {{
        let node: &std::sync::Arc<crate::node::Node> = $node;
        let b: std::time::Duration = $budget.min(node.config.server.forward_timeout);
        forward_to_leader!(@call true, node, $behalf, $client, $addr, $method, $msg, b)
    }};
    (uncapped $node:expr, $behalf:expr, $client:expr, $addr:expr, $method:ident, $msg:expr, $budget:expr) => {{
        let node: &std::sync::Arc<crate::node::Node> = $node;
        forward_to_leader!(@call false, node, $behalf, $client, $addr, $method, $msg, $budget)
    }};
    // `abandon`: give up as soon as this node follows another leader (see
    // `leader_moved`). Not for the uncapped calls: those are cluster
    // operations (transfer, drain) that move the leadership themselves.
    (@call $abandon:expr, $node:expr, $behalf:expr, $client:expr, $addr:expr, $method:ident, $msg:expr, $budget:expr) => {{
        let node: &std::sync::Arc<crate::node::Node> = $node;
        let b: std::time::Duration = $budget;
        let abandon: bool = $abandon;
        let addr: &str = &$addr;
        let mut client = $client.map_err(|s| crate::error::ApiError::from_peer(addr, &s))?;
        let call = async {
            tokio::select! {
                r = client.$method(crate::forward::forwarded(node, $behalf.as_ref(), $msg, b)) => Some(r),
                () = crate::forward::leader_moved(node, addr), if abandon => None,
            }
        };
        match tokio::time::timeout(b, call).await {
            Err(_) => Err(crate::error::ApiError::Timeout(format!(
                "the leader at {addr} did not answer within {b:?}; for a write the outcome is unknown: retry with the same request id"
            ))),
            Ok(None) => Err(crate::error::ApiError::NotLeader {
                message: format!(
                    "node {} stopped following the leader at {addr} before it answered; for a write the outcome is unknown: retry with the same request id",
                    node.id
                ),
                leader: node.leader().filter(|l| l.addr != addr && !l.addr.is_empty()),
                outcome_unknown: true,
            }),
            Ok(Some(Err(s))) => Err(crate::error::ApiError::from_peer(addr, &s)),
            Ok(Some(Ok(r))) => Ok(r.into_inner()),
        }
    }};
}

/// Resolves when this node no longer sees the node at `addr` as the leader
/// (another leader, or none during an election): a request forwarded there
/// is then abandoned, so its client retries where a write can commit
/// instead of waiting out the deadline on a leader that was cut off.
pub async fn leader_moved(node: &Node, addr: &str) {
    loop {
        let moved = node.roles.moved();
        tokio::pin!(moved);
        moved.as_mut().enable();
        if node.leader().is_none_or(|l| l.addr != addr) {
            return;
        }
        moved.await;
    }
}

/// Whether another node forwarded this request to us (we are believed to
/// be the leader, and must not forward it again). A forwarded request must
/// come from a node of our own cluster; the marker is honoured only from a
/// node (its certificate, checked by the auth layer), never from a client.
pub fn is_forwarded<T>(node: &Node, req: &tonic::Request<T>) -> Result<bool, ApiError> {
    let md = req.metadata();
    let Some(from) = md.get(sen_proto::meta::FORWARDED_BY) else {
        return Ok(false);
    };
    let from_a_node = crate::auth::caller(req)
        .is_ok_and(|c| c.forwarded_by.is_some() || matches!(c.principal, Principal::Node(_) | Principal::Insecure));
    if !from_a_node {
        return Ok(false);
    }
    let theirs = md
        .get(sen_proto::meta::CLUSTER_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match node.cluster_id() {
        Some(ours) if theirs == ours.to_string() => Ok(true),
        ours => Err(ApiError::FailedPrecondition(format!(
            "node {} refuses a request forwarded by node {} of cluster {}: this node belongs to cluster {}",
            node.id,
            from.to_str().unwrap_or("?"),
            if theirs.is_empty() { "(none)" } else { theirs },
            ours.map_or("(none)".to_owned(), |c| c.to_string())
        ))),
    }
}

/// Who a forwarded request is for: the original caller (JSON of its
/// principal) and its address, sent as `sen-on-behalf-of` and
/// `sen-caller-addr`; the receiving node trusts them only from a peer that
/// presented a node certificate of the cluster, and checks the
/// permission again.
pub type Behalf = Option<(String, String)>;

/// The caller a request this node forwards is for (`None`: the node
/// itself). Marks the request as forwarded: the leader audits it.
pub fn behalf<T>(req: &tonic::Request<T>) -> Behalf {
    let caller = crate::auth::caller(req).ok()?;
    caller.mark_sent_to_leader();
    caller.on_behalf()
}

/// Mark a request as forwarded by `node` for `behalf`, with a deadline.
pub fn forwarded<T>(
    node: &Arc<Node>,
    behalf: Option<&(String, String)>,
    inner: T,
    budget: Duration,
) -> tonic::Request<T> {
    let mut req = tonic::Request::new(inner);
    req.set_timeout(budget);
    let md = req.metadata_mut();
    if let Ok(v) = node.id.to_string().parse() {
        md.insert(sen_proto::meta::FORWARDED_BY, v);
    }
    if let Some((who, addr)) = behalf {
        if let Ok(v) = who.parse() {
            md.insert(sen_proto::meta::ON_BEHALF_OF, v);
        }
        if let Ok(v) = addr.parse() {
            md.insert(sen_proto::meta::CALLER_ADDR, v);
        }
    }
    req
}

/// Where a write must be executed.
pub enum Route {
    Local,
    Forward { id: u64, addr: String, behalf: Behalf },
}

/// Writes run on the leader: here if this node leads (or the request was
/// forwarded to it), else forwarded once to the leader it knows.
pub fn route<T>(node: &Node, req: &tonic::Request<T>) -> Result<Route, ApiError> {
    if is_forwarded(node, req)? || node.is_leader() {
        return Ok(Route::Local);
    }
    match node.leader() {
        Some(l) if l.id != node.id && !l.addr.is_empty() => Ok(Route::Forward {
            id: l.id,
            addr: l.addr,
            behalf: behalf(req),
        }),
        Some(l) if l.id == node.id => Ok(Route::Local),
        other => Err(ApiError::not_leader(node.id, other)),
    }
}

/// The leader's `Cluster/Status`, asked by this node for `behalf` within
/// `budget`: only the leader knows how far each member has replicated.
/// `None` on the leader itself, without a known leader, or without an
/// answer in time (logged at debug level).
pub async fn leader_status(
    node: &Arc<Node>,
    behalf: Option<&(String, String)>,
    budget: Duration,
) -> Option<sen_proto::v1::StatusResponse> {
    if node.is_leader() {
        return None;
    }
    let leader = node.leader().filter(|l| l.id != node.id && !l.addr.is_empty())?;
    let mut client = node.peers.cluster(leader.id, &leader.addr).ok()?;
    let ask = client.status(forwarded(node, behalf, sen_proto::v1::StatusRequest {}, budget));
    match tokio::time::timeout(budget, ask).await {
        Ok(Ok(r)) => Some(r.into_inner()),
        Ok(Err(e)) => {
            tracing::debug!("the leader's status: {}", e.message());
            None
        }
        Err(_) => {
            tracing::debug!("the leader's status did not come within {budget:?}");
            None
        }
    }
}

/// Record `inc` from any node: here if leading, else through the leader's
/// `Incidents/Record`. Returns the incident's id.
pub async fn record_incident(node: &Arc<Node>, inc: Incident) -> Result<u64, ApiError> {
    let budget = node.config.server.request_timeout;
    if node.is_leader() {
        return crate::incidents::record(node.as_ref(), inc, budget).await;
    }
    let leader = node.leader().ok_or_else(|| ApiError::not_leader(node.id, None))?;
    let json = serde_json::to_string(&inc).map_err(|e| ApiError::Internal(e.to_string()))?;
    let none: Behalf = None;
    // Incidents are recorded when the cluster is slow: the whole request
    // budget, not the forwarding cap.
    let r = forward_to_leader!(
        uncapped node,
        none,
        node.peers.incidents(leader.id, &leader.addr),
        leader.addr,
        record,
        sen_proto::v1::RecordIncidentRequest { json },
        budget
    )?;
    Ok(r.id)
}
