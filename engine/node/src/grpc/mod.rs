//! gRPC services: the public `sen.v1` API ([`kv`], [`cluster`],
//! [`content`], [`admin`], [`backup`], [`node_ops`], [`incidents`]) and the
//! node-to-node `sen.raft.v1.Raft` service ([`raft`]), plus what every
//! handler shares: [`measured`] (metrics and the error → status mapping)
//! and request ids. Forwarding to the leader is in `crate::forward`.

pub mod access;
pub mod admin;
pub mod auth_layer;
pub mod backup;
pub mod cluster;
pub mod content;
pub mod incidents;
pub mod kv;
pub mod node_ops;
pub mod raft;

use std::future::Future;
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
