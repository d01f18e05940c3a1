//! What this node's archive shipper is doing (`crate::archive`), kept in
//! the node for `sen archive status` and the metrics. A leaf module: the
//! node holds it without depending on the shipper.

use std::sync::Mutex;

/// What this node's shipper is doing, for `sen archive status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// `off` (no archive), `standby` (not the leader), `shipping`,
    /// `failing`.
    pub state: String,
    /// The last index this node knows archived, its commit time, and when
    /// this node stored it (0 if another node did).
    pub archived_index: u64,
    pub archived_term: u64,
    pub archived_at_ms: u64,
    pub archived_hash: String,
    pub shipped_at_ms: u64,
    pub segments: u64,
    pub bytes: u64,
    /// Applied entries not yet archived, and at most how old the oldest is
    /// (now less the last archived entry's commit time); see
    /// `crate::archive::live_status`.
    pub lag_entries: u64,
    pub lag_ms: u64,
    /// The last error, if the shipper is failing.
    pub error: String,
}

/// The shared status slot of a node.
pub fn new_status() -> Mutex<Status> {
    Mutex::new(Status {
        state: "off".into(),
        ..Default::default()
    })
}
