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

use sen_content::{ChunkRef, StoredChunk};
use sen_core::{ClusterId, RequestId};
use serde::{Deserialize, Serialize};

use crate::schema::system::QuotaKind;

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
    Put {
        db: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove `key` from database `db` (no error if absent).
    Delete {
        db: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Compare-then-act transaction on one database.
    Txn(Txn),
    /// Record the cluster id (the first command of every cluster).
    InitCluster { cluster_id: ClusterId },
    /// Create an empty site.
    CreateSite { site: String },
    /// Delete a site, its deployments and its history (its chunks become
    /// garbage once no other site uses them).
    DeleteSite { site: String },
    /// Store chunks (content-addressed; already-stored ones are no-ops).
    PutChunks { chunks: Vec<StoredChunk> },
    /// Make a manifest the site's current tree, atomically.
    Deploy(Deploy),
    /// Delete chunks no deployment has used for `grace_ms` (at most
    /// `limit` of them).
    CollectGarbage { grace_ms: u64, limit: u32 },
}

/// A deployment: the site's whole tree becomes the manifest's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    pub site: String,
    /// The encoded manifest's chunks, in order (already stored).
    pub manifest: Vec<ChunkRef>,
    /// blake3 of the encoded manifest.
    pub manifest_hash: [u8; 32],
    /// The deployment the client built on (`Some(0)`: none yet); the deploy
    /// is refused if the site changed since. `None`: deploy regardless.
    pub base: Option<u64>,
    pub author: String,
    pub message: String,
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
    #[serde(with = "serde_bytes")]
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
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
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
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Append `value` to the key's current value (creating the key if it
    /// does not exist).
    Append {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
}

impl Op {
    /// Whether applying this may make the state larger: what a node whose
    /// disk is almost full refuses (deletes, garbage collection and the
    /// control plane, database `system_db`, still run).
    pub fn adds_data(&self, system_db: &str) -> bool {
        let grows = |ops: &[TxnOp]| ops.iter().any(|o| !matches!(o, TxnOp::Delete { .. }));
        match self {
            Op::Put { db, .. } => db != system_db,
            Op::Txn(t) => t.db != system_db && (grows(&t.success) || grows(&t.failure)),
            Op::CreateSite { .. } | Op::PutChunks { .. } | Op::Deploy(_) => true,
            Op::Delete { .. } | Op::DeleteSite { .. } | Op::CollectGarbage { .. } | Op::InitCluster { .. } => false,
        }
    }

    /// blake3 of the operation's encoding: what a request id is bound to.
    /// A retry with the same id must carry the same operation (byte for
    /// byte); the proposer's clock and the id itself are not part of it.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        // Encoding into a hasher cannot fail for these plain types; if it
        // ever did, the digest of what was written so far is still the
        // same on every node, which is all determinism needs.
        let _ = sen_core::codec::encode_into("operation", self, &mut h);
        *h.finalize().as_bytes()
    }
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
    /// `created` is false if the site already existed.
    SiteCreated { created: bool },
    /// `deleted` is false if there was no such site.
    SiteDeleted { deleted: bool },
    /// Chunks newly stored / already present.
    ChunksStored { new: u32, existing: u32 },
    /// The site's current deployment is now this one (its id is the
    /// revision of the entry).
    Deployed { files: u64, bytes: u64 },
    /// The deployment was refused; nothing changed.
    DeployRejected { reason: String },
    /// Garbage chunks deleted; `more` if the limit was reached.
    GarbageCollected { chunks: u64, bytes: u64, more: bool },
    /// The request id was already applied, within the dedup window, to a
    /// different operation: nothing changed. `revision` is the index of
    /// the earlier application.
    RequestIdReused { revision: u64 },
    /// The write would take a database or site above its quota (and make
    /// it larger): nothing changed. `bytes` is what it would have held.
    QuotaExceeded {
        kind: QuotaKind,
        name: String,
        bytes: u64,
        quota: u64,
    },
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
            Op::CreateSite { site } => write!(f, "create-site {site}")?,
            Op::DeleteSite { site } => write!(f, "delete-site {site}")?,
            Op::PutChunks { chunks } => write!(
                f,
                "put-chunks {} ({} bytes)",
                chunks.len(),
                chunks.iter().map(|c| c.data.len()).sum::<usize>()
            )?,
            Op::Deploy(d) => write!(f, "deploy {} ({} manifest chunks)", d.site, d.manifest.len())?,
            Op::CollectGarbage { grace_ms, limit } => write!(f, "gc (grace {grace_ms} ms, limit {limit})")?,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the wire/disk encoding of a log entry's most common command, so
    /// that a change of field attributes (e.g. `serde_bytes`) or of the
    /// codec cannot silently change what old logs decode to.
    #[test]
    fn put_encoding_is_stable() {
        let op = Op::Put {
            db: "db".into(),
            key: b"k".to_vec(),
            value: vec![0, 1, 255],
        };
        let bytes = sen_core::codec::encode("op", &op).unwrap();
        // variant 0, "db" (len 2), key (len 1), value (len 3): bincode varints.
        assert_eq!(bytes, vec![0, 2, b'd', b'b', 1, b'k', 3, 0, 1, 255]);
        let back: Op = sen_core::codec::decode("op", &bytes).unwrap();
        assert_eq!(back, op);
    }
}

#[cfg(test)]
mod golden {
    //! Responses are persisted too (request-id records return them to
    //! retries): every outcome's encoding, pinned. Commands are pinned with
    //! the log entries that carry them (`sen_store::format`).

    use super::*;

    #[test]
    fn every_outcome_is_pinned() {
        let outcomes = vec![
            Outcome::None,
            Outcome::Put { created: true },
            Outcome::Delete { deleted: false },
            Outcome::Txn { succeeded: true },
            Outcome::InitCluster {
                cluster_id: "06060606-0606-4606-8606-060606060606".parse().unwrap(),
                already: false,
            },
            Outcome::TxnRejected {
                reason: "too big".into(),
            },
            Outcome::SiteCreated { created: true },
            Outcome::SiteDeleted { deleted: true },
            Outcome::ChunksStored { new: 2, existing: 1 },
            Outcome::Deployed {
                files: 3,
                bytes: 70_000,
            },
            Outcome::DeployRejected { reason: "moved".into() },
            Outcome::GarbageCollected {
                chunks: 4,
                bytes: 200_000,
                more: false,
            },
            Outcome::RequestIdReused { revision: 7 },
            Outcome::QuotaExceeded {
                kind: QuotaKind::Site,
                name: "portal".into(),
                bytes: 10,
                quota: 5,
            },
        ];
        let got: Vec<String> = outcomes
            .into_iter()
            .map(|outcome| {
                let r = Response {
                    revision: 42,
                    duplicate: false,
                    outcome,
                };
                let b = sen_core::codec::encode("response", &r).unwrap();
                b.iter().map(|x| format!("{x:02x}")).collect()
            })
            .collect();
        assert_eq!(
            got, GOLDEN_OUTCOMES,
            "an outcome's encoding changed (new bytes on the left)"
        );
    }

    const GOLDEN_OUTCOMES: [&str; 14] = [
        "2a0000",
        "2a000101",
        "2a000200",
        "2a000301",
        "2a0004100606060606064606860606060606060600",
        "2a000507746f6f20626967",
        "2a000601",
        "2a000701",
        "2a00080201",
        "2a000903fc70110100",
        "2a000a056d6f766564",
        "2a000b04fc400d030000",
        "2a000c07",
        "2a000d0106706f7274616c0a05",
    ];
}
