//! Generated gRPC code for Sen's APIs (see `proto/`).
//!
//! - [`v1`]: the public API (`sen.v1`: `Kv`, `Cluster`).
//! - [`raft::v1`]: the node-to-node service (`sen.raft.v1.Raft`).
//! - [`status`]: the wire-error contract (status ↔ [`status::WireError`]).

pub mod status;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sen.v1");
}

#[allow(clippy::all, missing_docs)]
pub mod raft {
    pub mod v1 {
        tonic::include_proto!("sen.raft.v1");
    }
}

/// Encoded file descriptors, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sen_descriptor");

/// Metadata keys used on every call.
pub mod meta {
    /// Id of the leader, on retryable "not leader" errors.
    pub const LEADER_ID: &str = "sen-leader-id";
    /// gRPC address of the leader, on retryable "not leader" errors.
    pub const LEADER_ADDR: &str = "sen-leader-addr";
    /// Set by a node that forwards a client request to the leader, so the
    /// leader never forwards it again.
    pub const FORWARDED_BY: &str = "sen-forwarded-by";
    /// Peer calls: the caller's cluster id.
    pub const CLUSTER_ID: &str = "sen-cluster-id";
    /// Peer calls: the caller's node id.
    pub const FROM_NODE: &str = "sen-from-node";
    /// On errors from a node that has not joined a cluster: clients should
    /// try another endpoint.
    pub const NO_CLUSTER: &str = "sen-no-cluster";
    /// Peer calls: the node the caller meant to reach.
    pub const TO_NODE: &str = "sen-to-node";
    /// A request a node forwards to the leader: who the original caller
    /// is (JSON of `sen_core::auth::Principal`). Trusted only from a peer
    /// that proved, with its node certificate, to be a node of this cluster.
    pub const ON_BEHALF_OF: &str = "sen-on-behalf-of";
    /// A request a node forwards: the original caller's address.
    pub const CALLER_ADDR: &str = "sen-caller-addr";
}
