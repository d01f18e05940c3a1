//! gRPC services: the public `sen.v1` API ([`kv`], [`cluster`]) and the
//! node-to-node `sen.raft.v1.Raft` service ([`raft`]).

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
    node.metrics
        .observe_request(method, code, started.elapsed());
    result.map(Response::new)
}

/// A request another node forwarded to us (we are believed to be the
/// leader, and must not forward it again).
pub fn is_forwarded<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().contains_key(sen_proto::meta::FORWARDED_BY)
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
