//! The one wire-error contract between nodes and clients.
//!
//! Every error a Sen node returns is a [`WireError`]: a kind, a message
//! that says what failed and what to do, the leader when known, and
//! whether the outcome of a write is unknown. On the wire it is a gRPC
//! status whose code follows from the kind and whose details
//! (`grpc-status-details-bin`, a `google.rpc.Status`) carry a
//! `google.rpc.ErrorInfo` with domain [`DOMAIN`], the kind as `reason` and
//! the leader hint in `metadata` — the richer error model that grpcurl and
//! other gRPC tools show. Nodes (relaying a leader's answer) and clients
//! (deciding whether and where to retry) read errors back with
//! [`WireError::from_status`] and never look at message text.
//!
//! A status *without* Sen's details was not produced by a Sen handler: it
//! is a connection failure seen locally (tonic attaches the transport error
//! as its source), a gRPC framework error, or an answer from a node of an
//! older release (which set only the `sen-leader-*` and `sen-no-cluster`
//! headers, still read here and still written for them). Such statuses are
//! classified by code; a broken connection is "unavailable, outcome
//! unknown" — retry the same request (same request id) elsewhere.
//!
//! | kind | gRPC code | [`Retry`] |
//! |---|---|---|
//! | `NOT_LEADER` | `UNAVAILABLE` | `Retry` (at the hinted leader) |
//! | `UNAVAILABLE` | `UNAVAILABLE` | `Retry` (backoff, any endpoint) |
//! | `TIMEOUT` | `DEADLINE_EXCEEDED` | `Retry` (same request id) |
//! | `NO_CLUSTER` | `FAILED_PRECONDITION` | `OtherEndpoint` |
//! | `INVALID_ARGUMENT` | `INVALID_ARGUMENT` | `Never` |
//! | `FAILED_PRECONDITION` | `FAILED_PRECONDITION` | `Never` |
//! | `NOT_FOUND` | `NOT_FOUND` | `Never` |
//! | `INTERNAL` | `INTERNAL` | `Never` |
//! | `UNAUTHENTICATED` | `UNAUTHENTICATED` | `Never` |
//! | `PERMISSION_DENIED` | `PERMISSION_DENIED` | `Never` |
//! | `EXHAUSTED` | `RESOURCE_EXHAUSTED` | `Never` |

use std::collections::HashMap;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every error a Sen node produces.
pub const DOMAIN: &str = "sen.v1";

const MD_LEADER_ID: &str = "leader_id";
const MD_LEADER_ADDR: &str = "leader_addr";
const MD_OUTCOME: &str = "outcome";
const OUTCOME_UNKNOWN: &str = "unknown";

/// What went wrong, as far as a caller must tell kinds apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// This node does not lead; retry at the leader (hint when known).
    NotLeader,
    /// The node is stopping, has no leader, or could not reach a peer.
    Unavailable,
    /// The deadline passed (for a write: outcome unknown).
    Timeout,
    /// This node has not joined a cluster: another endpoint may serve.
    NoCluster,
    /// The request itself is wrong.
    InvalidArgument,
    /// The request cannot succeed in the cluster's current state.
    FailedPrecondition,
    NotFound,
    /// A bug or damaged data on the node.
    Internal,
    /// No, or bad, credentials.
    Unauthenticated,
    /// Valid credentials without the right.
    PermissionDenied,
    /// A limit was reached (too many failed logins, a quota).
    Exhausted,
}

/// What a caller may do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying the same request cannot help.
    Never,
    /// Retry the same request (writes: with the same request id) — at the
    /// hinted leader if there is one, else any endpoint after a backoff.
    Retry,
    /// This endpoint cannot serve at all; try the next one at once.
    OtherEndpoint,
}

/// Where the leader is, as far as the answering node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    pub id: u64,
    /// Empty if the address is not known.
    pub addr: String,
}

/// An error as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub kind: ErrorKind,
    pub message: String,
    pub leader: Option<LeaderHint>,
    /// A write may or may not have been applied (a timeout, a lost
    /// connection, a leader change before commit): retry it with the same
    /// request id, and the cluster applies it at most once.
    pub outcome_unknown: bool,
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::NotLeader,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::NoCluster,
        ErrorKind::InvalidArgument,
        ErrorKind::FailedPrecondition,
        ErrorKind::NotFound,
        ErrorKind::Internal,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::Exhausted,
    ];

    /// The gRPC code of this kind.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::NotLeader | ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Timeout => Code::DeadlineExceeded,
            ErrorKind::NoCluster | ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::Internal => Code::Internal,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Exhausted => Code::ResourceExhausted,
        }
    }

    /// `ErrorInfo.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::NotLeader => "NOT_LEADER",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::NoCluster => "NO_CLUSTER",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::Internal => "INTERNAL",
            ErrorKind::Unauthenticated => "UNAUTHENTICATED",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::Exhausted => "EXHAUSTED",
        }
    }

    fn from_reason(r: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.reason() == r)
    }

    /// What a caller may do.
    pub fn retry(self) -> Retry {
        match self {
            ErrorKind::NotLeader | ErrorKind::Unavailable | ErrorKind::Timeout => Retry::Retry,
            ErrorKind::NoCluster => Retry::OtherEndpoint,
            ErrorKind::InvalidArgument
            | ErrorKind::FailedPrecondition
            | ErrorKind::NotFound
            | ErrorKind::Internal
            | ErrorKind::Unauthenticated
            | ErrorKind::PermissionDenied
            | ErrorKind::Exhausted => Retry::Never,
        }
    }
}

impl WireError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            leader: None,
            outcome_unknown: false,
        }
    }

    pub fn with_leader(mut self, leader: Option<LeaderHint>) -> Self {
        self.leader = leader;
        self
    }

    pub fn with_outcome_unknown(mut self) -> Self {
        self.outcome_unknown = true;
        self
    }

    pub fn code(&self) -> Code {
        self.kind.code()
    }

    pub fn retry(&self) -> Retry {
        self.kind.retry()
    }

    /// The status a node answers with.
    pub fn to_status(&self) -> Status {
        let mut md = HashMap::new();
        if let Some(l) = &self.leader {
            md.insert(MD_LEADER_ID.to_owned(), l.id.to_string());
            if !l.addr.is_empty() {
                md.insert(MD_LEADER_ADDR.to_owned(), l.addr.clone());
            }
        }
        if self.outcome_unknown {
            md.insert(MD_OUTCOME.to_owned(), OUTCOME_UNKNOWN.to_owned());
        }
        let details = ErrorDetails::with_error_info(self.kind.reason(), DOMAIN, md);
        let mut status = Status::with_error_details(self.code(), self.message.clone(), details);
        // The headers nodes of release 0.1 read (mixed-version clusters
        // during a rolling upgrade).
        let headers = status.metadata_mut();
        if self.kind == ErrorKind::NoCluster {
            headers.insert(crate::meta::NO_CLUSTER, MetadataValue::from_static("1"));
        }
        if let Some(l) = &self.leader {
            if let Ok(v) = l.id.to_string().parse() {
                headers.insert(crate::meta::LEADER_ID, v);
            }
            if !l.addr.is_empty()
                && let Ok(v) = l.addr.parse()
            {
                headers.insert(crate::meta::LEADER_ADDR, v);
            }
        }
        status
    }

    /// Read any status back: Sen's details when present, else a
    /// classification by code (see the module docs).
    pub fn from_status(s: &Status) -> Self {
        let message = s.message().to_owned();
        if let Ok(details) = s.check_error_details()
            && let Some(info) = details.error_info()
            && info.domain == DOMAIN
            && let Some(kind) = ErrorKind::from_reason(&info.reason)
        {
            let leader = info
                .metadata
                .get(MD_LEADER_ID)
                .and_then(|v| v.parse().ok())
                .map(|id| LeaderHint {
                    id,
                    addr: info.metadata.get(MD_LEADER_ADDR).cloned().unwrap_or_default(),
                });
            return Self {
                kind,
                message,
                leader,
                outcome_unknown: info.metadata.get(MD_OUTCOME).map(String::as_str) == Some(OUTCOME_UNKNOWN),
            };
        }
        let headers = s.metadata();
        let legacy_leader = headers
            .get(crate::meta::LEADER_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(|id| LeaderHint {
                id,
                addr: headers
                    .get(crate::meta::LEADER_ADDR)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
            });
        // A transport failure seen here: tonic keeps the error as source.
        let local_transport = std::error::Error::source(s).is_some();
        let kind = match s.code() {
            _ if local_transport => ErrorKind::Unavailable,
            Code::Unavailable if legacy_leader.is_some() => ErrorKind::NotLeader,
            Code::FailedPrecondition if headers.contains_key(crate::meta::NO_CLUSTER) => ErrorKind::NoCluster,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted | Code::ResourceExhausted => {
                ErrorKind::Unavailable
            }
            Code::DeadlineExceeded => ErrorKind::Timeout,
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::NotFound => ErrorKind::NotFound,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Unimplemented => ErrorKind::FailedPrecondition,
            _ => ErrorKind::Internal,
        };
        let outcome_unknown = matches!(kind, ErrorKind::Unavailable | ErrorKind::Timeout) && legacy_leader.is_none();
        Self {
            kind,
            message: if local_transport {
                format!("connection failed: {message}")
            } else {
                message
            },
            leader: legacy_leader,
            outcome_unknown,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests;
