//! openraft type configuration and aliases.
//!
//! Everything else in Sen names these aliases rather than openraft's generic
//! types, so an openraft upgrade touches this file first.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::command::{Request, Response};

pub use sen_core::NodeId;

/// What the cluster knows about a member: where its gRPC endpoint is.
/// Replicated inside openraft's membership entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeInfo {
    /// `host:port` of the node's gRPC endpoint (its `--advertise` address).
    pub addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// Sen's openraft type configuration: standard Raft leader ids (one
    /// leader per term), `u64` node ids and terms.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
);

/// A log id (term and index).
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A cluster membership.
pub type Membership = openraft::Membership<NodeId, NodeInfo>;
/// A membership with the log id that introduced it.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// Raft metrics.
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
