//! Replicated commands and their responses.
//!
//! Compatibility rule: these types travel inside Raft log entries, which are
//! persisted and replicated between nodes that may run different releases
//! during a rolling upgrade. They are encoded positionally (bincode), so
//! **[`Op`] and [`Outcome`] are append-only**: never reorder, remove or change
//! a variant; add a new variant at the end instead. A node that meets a
//! variant it does not know stops with a clear decode error rather than
//! applying something else.

use std::fmt;

use sen_core::{ClusterId, RequestId};
use serde::{Deserialize, Serialize};

/// A replicated command: the operation plus what the proposing node adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Client-chosen id of the logical operation. Retries carry the same id;
    /// the state machine applies an id at most once within
    /// [`crate::DEDUP_WINDOW_MS`]. `None` for requests that need no
    /// deduplication.
    pub id: Option<RequestId>,
    /// Wall-clock time (ms since the Unix epoch) at the proposing node. The
    /// state machine only uses it through a monotonic clock kept in the
    /// replicated state, so skewed clocks cannot make it go backwards.
    pub proposed_at_ms: u64,
    /// What to do.
    pub op: Op,
}

/// One operation on the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set `key` in database `db` to `value`.
    Put { db: String, key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` from database `db` (no error if absent).
    Delete { db: String, key: Vec<u8> },
    /// Compare-then-act transaction on one database.
    Txn(Txn),
    /// Record the cluster id (the first command of every cluster).
    InitCluster { cluster_id: ClusterId },
}

/// An etcd-style transaction: if every comparison holds, run `success`,
/// otherwise run `failure`. All on database `db`, atomically at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub db: String,
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

/// One comparison of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// How to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

/// What to compare the key's current state against.
///
/// A missing key has revision 0, create revision 0 and version 0. Its value
/// is *absent*: absent is not equal to any value (so `Equal` is false and
/// `NotEqual` true) and is neither less nor greater than any value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value, compared bytewise.
    Value(Vec<u8>),
    /// The revision (raft log index) of the key's last write.
    ModRevision(u64),
    /// The revision at which the key was created.
    CreateRevision(u64),
    /// How many times the key was written since it was created.
    Version(u64),
    /// Whether the key exists (only `Equal` and `NotEqual` make sense).
    Exists(bool),
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Append `value` to the key's current value (creating the key if it
    /// does not exist).
    Append {
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The log index of the entry that produced this result (the cluster
    /// revision at which it took effect). For a duplicate, the index of the
    /// original application.
    pub revision: u64,
    /// True when the request id had already been applied: nothing changed
    /// and `outcome` is the original result.
    pub duplicate: bool,
    pub outcome: Outcome,
}

/// Operation-specific result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Entries without a client operation (blank and membership entries).
    None,
    /// A put took effect. `created` is true if the key did not exist.
    Put { created: bool },
    /// A delete took effect; `deleted` is false if the key did not exist.
    Delete { deleted: bool },
    /// A transaction ran; `succeeded` tells which branch.
    Txn { succeeded: bool },
    /// The cluster id is recorded (`cluster_id` is the recorded one, which
    /// differs from the request's if the cluster was already initialised).
    InitCluster { cluster_id: ClusterId, already: bool },
    /// The transaction was refused as a whole (nothing changed), e.g.
    /// because an append would grow a value beyond
    /// [`crate::apply::MAX_APPENDED_VALUE_BYTES`].
    TxnRejected { reason: String },
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            Op::Put { db, key, value } => write!(f, "put {db}/{} ({} bytes)", show_key(key), value.len())?,
            Op::Delete { db, key } => write!(f, "del {db}/{}", show_key(key))?,
            Op::Txn(t) => write!(
                f,
                "txn {} ({} compares, {}+{} ops)",
                t.db,
                t.compares.len(),
                t.success.len(),
                t.failure.len()
            )?,
            Op::InitCluster { cluster_id } => write!(f, "init-cluster {cluster_id}")?,
        }
        if let Some(id) = &self.id {
            write!(f, " [req {id}]")?;
        }
        Ok(())
    }
}

/// A printable, bounded rendering of a key for logs.
pub fn show_key(key: &[u8]) -> String {
    let s = String::from_utf8_lossy(&key[..key.len().min(64)]).into_owned();
    if key.len() > 64 { format!("{s}…") } else { s }
}
