//! Errors: [`NodeError`] for start-up and shutdown, [`ApiError`] for
//! requests. `ApiError` is mapped to a gRPC status in exactly one place
//! (`From<ApiError> for Status`), which also attaches the leader hint.

use sen_core::NodeId;
use sen_core::limits::LimitError;
use tonic::{Code, Status};

use crate::config::ConfigError;

/// The node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Store(#[from] sen_store::StoreError),
    #[error("cannot listen on {addr} ({what}): {source}; is another process using the port?")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error("{0}")]
    Other(String),
}

/// Where the leader is, as far as this node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    pub id: NodeId,
    /// Empty if the address is not known.
    pub addr: String,
}

/// A request failed. Each variant maps to one gRPC code; messages say what
/// happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Retryable: send the request to the leader (if known) or retry later.
    #[error("{message}")]
    NotLeader {
        message: String,
        leader: Option<LeaderHint>,
    },
    /// Retryable: the node is stopping, overloaded or cannot reach a peer.
    #[error("{0}")]
    Unavailable(String),
    /// The deadline passed. For writes the outcome is unknown: retry with
    /// the same request id.
    #[error("{0}")]
    Timeout(String),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("{0}")]
    InvalidArgument(String),
    /// The request cannot succeed in the cluster's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    NotFound(String),
    /// This node has not joined a cluster (clients try another endpoint).
    #[error("{0}")]
    NoCluster(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_leader(me: NodeId, leader: Option<LeaderHint>) -> Self {
        let message = match &leader {
            Some(l) if !l.addr.is_empty() => format!(
                "node {me} is not the leader; the leader is node {} at {} (retry there)",
                l.id, l.addr
            ),
            Some(l) => format!("node {me} is not the leader; the leader is node {} (retry there)", l.id),
            None => format!("node {me} does not know a leader (an election may be in progress); retry in a moment"),
        };
        Self::NotLeader { message, leader }
    }
}

impl From<sen_store::StoreError> for ApiError {
    fn from(e: sen_store::StoreError) -> Self {
        ApiError::Internal(format!("storage: {e}"))
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let code = match &e {
            ApiError::NotLeader { .. } | ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Timeout(_) => Code::DeadlineExceeded,
            ApiError::Limit(_) | ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::FailedPrecondition(_) | ApiError::NoCluster(_) => Code::FailedPrecondition,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::Internal(_) => Code::Internal,
        };
        let mut status = Status::new(code, e.to_string());
        if let ApiError::NoCluster(_) = &e {
            status.metadata_mut().insert(
                sen_proto::meta::NO_CLUSTER,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        if let ApiError::NotLeader { leader: Some(l), .. } = &e {
            let md = status.metadata_mut();
            if let Ok(v) = l.id.to_string().parse() {
                md.insert(sen_proto::meta::LEADER_ID, v);
            }
            if !l.addr.is_empty()
                && let Ok(v) = l.addr.parse()
            {
                md.insert(sen_proto::meta::LEADER_ADDR, v);
            }
        }
        status
    }
}

/// A status received from another node, passed back to our caller
/// unchanged (code, message and leader hint) — except a broken connection,
/// which becomes a retryable "unavailable" saying that a write's outcome is
/// unknown.
pub fn relay(peer: &str, s: Status) -> Status {
    let m = s.message();
    let transport = [
        "transport",
        "connection",
        "h2 protocol",
        "broken pipe",
        "operation was canceled",
    ]
    .iter()
    .any(|t| m.contains(t));
    match s.code() {
        Code::Unknown | Code::Cancelled | Code::Aborted => Status::unavailable(format!(
            "lost the connection to the leader at {peer} ({m}); for a write the outcome is unknown: retry with the same request id"
        )),
        Code::Internal if transport => Status::unavailable(format!(
            "lost the connection to the leader at {peer} ({m}); for a write the outcome is unknown: retry with the same request id"
        )),
        _ => s,
    }
}

/// The leader hint carried by openraft's `ForwardToLeader`.
pub fn hint(f: openraft::error::ForwardToLeader<sen_raft::TypeConfig>) -> Option<LeaderHint> {
    f.leader_id.map(|id| LeaderHint {
        id,
        addr: f.leader_node.map(|n| n.addr).unwrap_or_default(),
    })
}
