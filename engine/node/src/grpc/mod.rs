//! gRPC services: the public `sen.v1` API ([`kv`], [`cluster`]) and the
//! node-to-node `sen.raft.v1.Raft` service ([`raft`]).

pub mod admin;
pub mod cluster;
pub mod kv;
pub mod raft;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

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
