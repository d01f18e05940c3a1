//! gRPC services: the public `sen.v1` API ([`kv`], [`cluster`]) and the
//! node-to-node `sen.raft.v1.Raft` service ([`raft`]).

/// Send `msg` to the leader with `client.method`, under `budget` (capped by
/// `server.forward-timeout`), mapping the answer back to an `ApiError`.
macro_rules! forward_to_leader {
    ($node:expr, $client:expr, $addr:expr, $method:ident, $msg:expr, $budget:expr) => {{
        let node: &std::sync::Arc<crate::node::Node> = $node;
        let b: std::time::Duration = $budget.min(node.config.server.forward_timeout);
        let mut client = $client.map_err(crate::node::status_to_api)?;
        match tokio::time::timeout(b, client.$method(crate::grpc::forwarded(node, $msg, b))).await {
            Err(_) => Err(crate::error::ApiError::Timeout(format!(
                "the leader at {} did not answer within {b:?}; for a write the outcome is unknown: retry with the same request id",
                $addr
            ))),
            Ok(Err(s)) => Err(crate::node::status_to_api(crate::error::relay(&$addr, s))),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }};
}

pub mod admin;
pub mod backup;
pub mod cluster;
pub mod content;
pub mod kv;
pub mod node_ops;
pub mod raft;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use sen_core::RequestId;
use sen_proto::v1::RequestHeader;
use tonic::{Response, Status};

use crate::error::ApiError;
use crate::node::Node;

/// Run a handler, record its outcome in the metrics, and map its error to a
/// status.
pub async fn measured<T>(
    node: &Node,
    method: &'static str,
    f: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = f.await.map_err(Status::from);
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    node.metrics.observe_request(method, code, started.elapsed());
    result.map(Response::new)
}

/// Whether another node forwarded this request to us (we are believed to
/// be the leader, and must not forward it again). A forwarded request must
/// come from a node of our own cluster.
pub fn is_forwarded<T>(node: &Node, req: &tonic::Request<T>) -> Result<bool, ApiError> {
    let md = req.metadata();
    let Some(from) = md.get(sen_proto::meta::FORWARDED_BY) else {
        return Ok(false);
    };
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

/// Mark a request as forwarded by `node`, with a deadline.
pub fn forwarded<T>(node: &Arc<Node>, inner: T, budget: std::time::Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(inner);
    req.set_timeout(budget);
    if let Ok(v) = node.id.to_string().parse() {
        req.metadata_mut().insert(sen_proto::meta::FORWARDED_BY, v);
    }
    req
}

/// Where a write must be executed.
pub enum Route {
    Local,
    Forward { id: u64, addr: String },
}

/// Writes run on the leader: here if this node leads (or the request was
/// forwarded to it), else forwarded once to the leader it knows.
pub fn route<T>(node: &Node, req: &tonic::Request<T>) -> Result<Route, ApiError> {
    if is_forwarded(node, req)? || node.is_leader() {
        return Ok(Route::Local);
    }
    match node.leader() {
        Some(l) if l.id != node.id && !l.addr.is_empty() => Ok(Route::Forward { id: l.id, addr: l.addr }),
        Some(l) if l.id == node.id => Ok(Route::Local),
        other => Err(ApiError::not_leader(node.id, other)),
    }
}

/// The request id of a write (one is made up if the client sent none).
pub fn request_id(h: &Option<RequestHeader>) -> Result<Option<RequestId>, ApiError> {
    match h.as_ref().map(|h| h.request_id.as_slice()) {
        None | Some([]) => Ok(Some(RequestId::generate())),
        Some(b) => RequestId::from_slice(b)
            .map(Some)
            .ok_or_else(|| ApiError::InvalidArgument(format!("request_id must be 16 bytes, got {}", b.len()))),
    }
}

/// Keep the id chosen here when forwarding, so the leader deduplicates
/// retries of this forward too.
pub fn with_id(id: Option<RequestId>) -> Option<RequestHeader> {
    Some(RequestHeader {
        request_id: id.map(|i| i.0.to_vec()).unwrap_or_default(),
    })
}
