//! Errors: [`NodeError`] for start-up and shutdown, [`ApiError`] for
//! requests. `ApiError` crosses the wire through the one contract in
//! `sen_proto::status` ([`ApiError::to_wire`], and [`ApiError::from_peer`]
//! for answers of other nodes), so the leader hint, the retry class and an
//! unknown write outcome survive forwarding without reading messages.

use sen_core::NodeId;
use sen_core::limits::LimitError;
pub use sen_proto::status::LeaderHint;
use sen_proto::status::{ErrorKind, WireError};
use tonic::Status;

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

/// A request failed. Each variant maps to one gRPC code; messages say what
/// happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Retryable: send the request to the leader (if known) or retry later.
    #[error("{message}")]
    NotLeader {
        message: String,
        leader: Option<LeaderHint>,
        /// A write reached a leader that lost leadership before it
        /// committed: it may or may not be applied.
        outcome_unknown: bool,
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
    /// No, or bad, credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right.
    #[error("{0}")]
    PermissionDenied(String),
    /// A limit was reached (too many failed authentications).
    #[error("{0}")]
    Exhausted(String),
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
        Self::NotLeader {
            message,
            leader,
            outcome_unknown: false,
        }
    }
}

impl From<sen_store::StoreError> for ApiError {
    fn from(e: sen_store::StoreError) -> Self {
        ApiError::Internal(format!("storage: {e}"))
    }
}

impl ApiError {
    /// This error in the wire contract (`sen_proto::status`).
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            ApiError::NotLeader { .. } => ErrorKind::NotLeader,
            ApiError::Unavailable(_) => ErrorKind::Unavailable,
            ApiError::Timeout(_) => ErrorKind::Timeout,
            ApiError::Limit(_) | ApiError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            ApiError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            ApiError::NoCluster(_) => ErrorKind::NoCluster,
            ApiError::NotFound(_) => ErrorKind::NotFound,
            ApiError::Internal(_) => ErrorKind::Internal,
            ApiError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            ApiError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            ApiError::Exhausted(_) => ErrorKind::Exhausted,
        };
        let (leader, unknown) = match self {
            ApiError::NotLeader {
                leader,
                outcome_unknown,
                ..
            } => (leader.clone(), *outcome_unknown),
            ApiError::Timeout(_) => (None, true),
            _ => (None, false),
        };
        let mut w = WireError::new(kind, self.to_string()).with_leader(leader);
        w.outcome_unknown = unknown;
        w
    }

    /// An error received from another node (a forwarded request, a read
    /// index), as this node reports it to its caller.
    pub fn from_wire(w: WireError) -> Self {
        match w.kind {
            ErrorKind::NotLeader => ApiError::NotLeader {
                message: w.message,
                leader: w.leader,
                outcome_unknown: w.outcome_unknown,
            },
            ErrorKind::Unavailable => ApiError::Unavailable(w.message),
            ErrorKind::Timeout => ApiError::Timeout(w.message),
            ErrorKind::NoCluster => ApiError::NoCluster(w.message),
            ErrorKind::InvalidArgument => ApiError::InvalidArgument(w.message),
            ErrorKind::FailedPrecondition => ApiError::FailedPrecondition(w.message),
            ErrorKind::NotFound => ApiError::NotFound(w.message),
            ErrorKind::Internal => ApiError::Internal(w.message),
            ErrorKind::Unauthenticated => ApiError::Unauthenticated(w.message),
            ErrorKind::PermissionDenied => ApiError::PermissionDenied(w.message),
            ErrorKind::Exhausted => ApiError::Exhausted(w.message),
        }
    }

    /// A status from a peer, as an error of this node: a broken connection
    /// to `peer` becomes "unavailable, outcome unknown" (retry with the
    /// same request id); everything else keeps its kind, message and hint.
    pub fn from_peer(peer: &str, s: &Status) -> Self {
        if let Some(tls) = tls_failure(s) {
            return ApiError::FailedPrecondition(format!(
                "{peer} failed the TLS check: {tls}; its certificate must be signed by this cluster's CA and name the node id it is called as (`sen certs node --id N`)"
            ));
        }
        let w = WireError::from_status(s);
        if w.kind == ErrorKind::Unavailable && w.outcome_unknown && w.leader.is_none() {
            return ApiError::Unavailable(format!(
                "the call to {peer} failed ({}); if it was a write, its outcome is unknown: retry with the same request id",
                w.message
            ));
        }
        Self::from_wire(w)
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        e.to_wire().to_status()
    }
}

/// The TLS error under a failed call, if that is why it failed (a peer
/// certificate of another CA or of another node id: retrying cannot help).
pub fn tls_failure(s: &Status) -> Option<String> {
    let mut e: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(err) = e {
        if let Some(t) = err.downcast_ref::<tokio_rustls::rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(t) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
        {
            return Some(t.to_string());
        }
        e = err.source();
    }
    None
}

/// The leader hint carried by openraft's `ForwardToLeader`.
pub fn hint(f: openraft::error::ForwardToLeader<sen_raft::TypeConfig>) -> Option<LeaderHint> {
    f.leader_id.map(|id| LeaderHint {
        id,
        addr: f.leader_node.map(|n| n.addr).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_error_maps_to_one_kind_and_back() {
        let leader = Some(LeaderHint {
            id: 3,
            addr: "127.0.0.3:7103".into(),
        });
        let cases = [
            ApiError::not_leader(1, leader.clone()),
            ApiError::Unavailable("stopping".into()),
            ApiError::Timeout("late".into()),
            ApiError::InvalidArgument("bad".into()),
            ApiError::FailedPrecondition("no".into()),
            ApiError::NotFound("gone".into()),
            ApiError::NoCluster("alone".into()),
            ApiError::Internal("bug".into()),
        ];
        for e in cases {
            let before = format!("{e:?}");
            let back = ApiError::from_peer("127.0.0.3:7103", &Status::from(e));
            // `Internal` gains its prefix once in Display; the kind, the
            // hint and the code survive.
            let after = format!("{back:?}");
            assert_eq!(before.split('(').next(), after.split('(').next(), "{before} -> {after}");
        }
    }

    #[test]
    fn a_lost_connection_to_the_leader_is_retryable_with_an_unknown_outcome() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let e = ApiError::from_peer("127.0.0.3:7103", &Status::from_error(Box::new(io)));
        let w = e.to_wire();
        assert_eq!(w.kind, ErrorKind::Unavailable);
        assert!(w.message.contains("retry with the same request id"), "{}", w.message);
    }

    #[test]
    fn timeouts_say_the_outcome_is_unknown() {
        assert!(ApiError::Timeout("x".into()).to_wire().outcome_unknown);
        assert!(!ApiError::NotFound("x".into()).to_wire().outcome_unknown);
    }
}
