//! Persisted formats of the stores: column families, key layouts and the
//! versioned value envelopes. Documented in docs/formats.md; every value is
//! a versioned enum (see `sen_core::codec`).

use sen_core::codec;
use sen_core::{ClusterId, NodeId};
use sen_raft::schema::{DbStats, DedupRecord, KvRecord, Record, tables};
use sen_raft::{Entry, LogId, StoredMembership, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Version of the on-disk layout of both DBs, stored under `meta/format`.
/// A DB written with a larger number is refused.
pub const LAYOUT_VERSION: u32 = 1;

// Log DB column families.
pub const CF_LOG: &str = "log";
/// `meta` exists in both DBs: node-local metadata in the log DB, the
/// applied log id, membership, clock and cluster id in the state DB.
pub const CF_META: &str = tables::META;

// State DB column families: the tables of the replicated state, named in
// `sen_raft::schema::tables` (shared with the backup format).
pub use sen_raft::schema::tables::{
    CHUNK_META as CF_CHUNK_META, CHUNK_ZERO as CF_CHUNK_ZERO, CHUNKS as CF_CHUNKS, DBS as CF_DBS, DEDUP as CF_DEDUP,
    DEDUP_TIME as CF_DEDUP_TIME, DEPLOYS as CF_DEPLOYS, FILES as CF_FILES, KV as CF_KV, SITES as CF_SITES,
};

// Keys in `meta`.
pub const K_FORMAT: &[u8] = b"format";
pub const K_VOTE: &[u8] = b"vote";
pub const K_COMMITTED: &[u8] = b"committed";
pub const K_PURGED: &[u8] = b"last_purged";
pub const K_IDENTITY: &[u8] = b"identity";
pub const K_APPLIED: &[u8] = b"applied";
pub const K_MEMBERSHIP: &[u8] = b"membership";
pub const K_CLOCK: &[u8] = b"clock";
/// State DB: stored bytes of unreferenced chunks (a counter kept from
/// `Mutation::AddUnreferencedBytes`; recomputed from `chunk_meta` if absent).
pub const K_UNREFERENCED: &[u8] = b"unreferenced_bytes";
pub const K_CLUSTER_ID: &[u8] = tables::META_CLUSTER_ID;
/// State DB: log index of the snapshot this generation was installed from.
pub const K_SNAPSHOT_INSTALLED: &[u8] = b"snapshot_installed";

/// Log keys are big-endian indexes so RocksDB's order is log order.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn log_index(key: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Invalid(format!("corrupt raft log: key of {} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(arr))
}

pub use sen_raft::schema::tables::{dedup_time_key, kv_key, zero_key};

/// Split a `kv` key into database and user key.
pub fn split_kv_key(k: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    tables::split_scoped_key(k).ok_or_else(|| {
        StoreError::Invalid("corrupt kv key without a database separator or with a non-UTF-8 name".into())
    })
}

/// `files` keys: site, 0, path (`deploys`: [`tables::deploy_key`]).
pub fn site_key(site: &str, rest: &[u8]) -> Vec<u8> {
    tables::scoped_key(site, rest)
}

/// The key range holding every key of `site`.
pub fn site_range(site: &str) -> (Vec<u8>, Vec<u8>) {
    tables::scoped_range(site)
}

/// The node-local identity, kept in the log DB: which node this data
/// directory belongs to, and (once it joined one) which cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub node_id: NodeId,
    pub cluster_id: Option<ClusterId>,
    /// The cluster id came from another node (`add-node`), not from
    /// `cluster init` on this node; such a node may never start a cluster.
    pub joined: bool,
}

/// Versioned envelope helpers: every value stored by this crate is `V1(T)`.
pub fn enc<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    Ok(codec::encode_v1(what, v)?)
}

pub fn dec<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    Ok(codec::decode_v1(what, bytes)?)
}

// Named wrappers, so every stored type has one place that says what it is.
pub fn enc_entry(e: &Entry) -> Result<Vec<u8>, StoreError> {
    enc("raft log entry", e)
}
pub fn dec_entry(b: &[u8]) -> Result<Entry, StoreError> {
    dec("raft log entry", b)
}
pub fn enc_vote(v: &Vote) -> Result<Vec<u8>, StoreError> {
    enc("vote", v)
}
pub fn dec_vote(b: &[u8]) -> Result<Vote, StoreError> {
    dec("vote", b)
}
pub fn enc_log_id(v: &LogId) -> Result<Vec<u8>, StoreError> {
    enc("log id", v)
}
pub fn dec_log_id(b: &[u8]) -> Result<LogId, StoreError> {
    dec("log id", b)
}
pub fn enc_membership(v: &StoredMembership) -> Result<Vec<u8>, StoreError> {
    enc("membership", v)
}
pub fn dec_membership(b: &[u8]) -> Result<StoredMembership, StoreError> {
    dec("membership", b)
}
pub fn enc_kv(v: &KvRecord) -> Result<Vec<u8>, StoreError> {
    Ok(v.encode()?)
}
pub fn dec_kv(b: &[u8]) -> Result<KvRecord, StoreError> {
    Ok(KvRecord::decode(b)?)
}
pub fn enc_dedup(v: &DedupRecord) -> Result<Vec<u8>, StoreError> {
    Ok(v.encode()?)
}
pub fn dec_dedup(b: &[u8]) -> Result<DedupRecord, StoreError> {
    Ok(DedupRecord::decode(b)?)
}
pub fn enc_stats(v: &DbStats) -> Result<Vec<u8>, StoreError> {
    Ok(v.encode()?)
}
pub fn dec_stats(b: &[u8]) -> Result<DbStats, StoreError> {
    Ok(DbStats::decode(b)?)
}

#[cfg(test)]
mod golden {
    //! Golden bytes of everything the stores persist: Raft log entries (of
    //! every command), the vote, log ids, membership, the node identity,
    //! the layout version and the snapshot manifest. A failure means an
    //! on-disk format changed: a new version (docs/formats.md), not a test
    //! update. The state DB's records are pinned in `sen_raft::schema`.

    use std::collections::{BTreeMap, BTreeSet};

    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderId;
    use sen_content::{ChunkId, ChunkRef, StoredChunk};
    use sen_core::{ClusterId, RequestId};
    use sen_raft::{
        Compare, CompareOp, CompareTarget, Deploy, Membership, NodeInfo, Op, Request, SnapshotMeta, Txn, TxnOp,
    };

    use super::*;
    use crate::snapshot::{SnapshotFile, SnapshotManifest};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(
            openraft::impls::leader_id_std::LeaderId { term, voted_for: 1 }.to_committed(),
            index,
        )
    }

    fn membership() -> Membership {
        Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (
                    1,
                    NodeInfo {
                        addr: "127.0.0.1:7101".into(),
                    },
                ),
                (
                    2,
                    NodeInfo {
                        addr: "127.0.0.2:7102".into(),
                    },
                ),
                (
                    3,
                    NodeInfo {
                        addr: "127.0.0.3:7103".into(),
                    },
                ),
            ]),
        )
        .unwrap()
    }

    fn cid() -> ClusterId {
        "06060606-0606-4606-8606-060606060606".parse().unwrap()
    }

    fn request(op: Op) -> Request {
        Request {
            id: Some(RequestId([0xab; 16])),
            proposed_at_ms: 1_764_000_000_000,
            op,
        }
    }

    /// Every command kind, as the log stores it.
    fn ops() -> Vec<Op> {
        let chunk = StoredChunk {
            id: ChunkId([5; 32]),
            encoding: sen_content::chunk::Encoding::Raw,
            len: 3,
            data: b"abc".to_vec(),
        };
        vec![
            Op::Put {
                db: "lichtuan".into(),
                key: b"2026-w48".to_vec(),
                value: "Thứ hai".into(),
            },
            Op::Delete {
                db: "lichtuan".into(),
                key: b"k".to_vec(),
            },
            Op::Txn(Txn {
                db: "congbao".into(),
                compares: vec![Compare {
                    key: b"n".to_vec(),
                    op: CompareOp::Equal,
                    target: CompareTarget::ModRevision(4),
                }],
                success: vec![
                    TxnOp::Put {
                        key: b"n".to_vec(),
                        value: b"5".to_vec(),
                    },
                    TxnOp::Delete { key: b"old".to_vec() },
                    TxnOp::Append {
                        key: b"log".to_vec(),
                        value: b"+".to_vec(),
                    },
                ],
                failure: vec![],
            }),
            Op::InitCluster { cluster_id: cid() },
            Op::CreateSite { site: "portal".into() },
            Op::DeleteSite { site: "old".into() },
            Op::PutChunks { chunks: vec![chunk] },
            Op::Deploy(Deploy {
                site: "portal".into(),
                manifest: vec![ChunkRef {
                    id: ChunkId([8; 32]),
                    len: 100,
                }],
                manifest_hash: [9; 32],
                base: Some(0),
                author: "vpubnd".into(),
                message: "Công báo".into(),
            }),
            Op::CollectGarbage {
                grace_ms: 3_600_000,
                limit: 10_000,
            },
        ]
    }

    #[test]
    fn raft_log_entries_of_every_command() {
        let got: Vec<String> = ops()
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                let e = Entry::new_normal(log_id(2, 10 + i as u64), request(op));
                let b = enc_entry(&e).unwrap();
                assert_eq!(dec_entry(&b).unwrap(), e);
                hex(&b)
            })
            .collect();
        assert_eq!(
            got, GOLDEN_ENTRIES,
            "a log entry's encoding changed (new bytes on the left)"
        );
        // Blank and membership entries.
        let blank = Entry::new_blank(log_id(3, 30));
        assert_eq!(hex(&enc_entry(&blank).unwrap()), GOLDEN_BLANK);
        let m = Entry::new_membership(log_id(3, 31), membership());
        assert_eq!(hex(&enc_entry(&m).unwrap()), GOLDEN_MEMBERSHIP_ENTRY);
    }

    #[test]
    fn log_db_metadata() {
        let vote = Vote::new_committed(4, 2);
        assert_eq!(hex(&enc_vote(&vote).unwrap()), GOLDEN_VOTE);
        assert_eq!(dec_vote(&enc_vote(&vote).unwrap()).unwrap(), vote);
        assert_eq!(hex(&enc_log_id(&log_id(4, 99)).unwrap()), GOLDEN_LOG_ID);
        let sm = StoredMembership::new(Some(log_id(1, 1)), membership());
        assert_eq!(hex(&enc_membership(&sm).unwrap()), GOLDEN_STORED_MEMBERSHIP);
        let id = NodeIdentity {
            node_id: 2,
            cluster_id: Some(cid()),
            joined: true,
        };
        assert_eq!(hex(&enc("node identity", &id).unwrap()), GOLDEN_IDENTITY);
        assert_eq!(hex(&enc("layout version", &LAYOUT_VERSION).unwrap()), "0001");
        assert_eq!(hex(&enc("cluster id", &cid()).unwrap()), GOLDEN_CLUSTER_ID);
    }

    #[test]
    fn snapshot_manifest() {
        let m = SnapshotManifest {
            meta: SnapshotMeta {
                last_log_id: Some(log_id(4, 500)),
                last_membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
            },
            files: vec![SnapshotFile {
                name: "000012.sst".into(),
                size: 4096,
            }],
            created_at_ms: 1_764_000_000_000,
        };
        let b = m.encode().unwrap();
        assert_eq!(hex(&b), GOLDEN_SNAPSHOT_MANIFEST);
        assert_eq!(SnapshotManifest::decode(&b).unwrap(), m);
    }

    const GOLDEN_ENTRIES: [&str; 9] = [
        "00020a0101ababababababababababababababababfd00e897b69a01000000086c6963687475616e08323032362d773438095468e1bba920686169",
        "00020b0101ababababababababababababababababfd00e897b69a01000001086c6963687475616e016b",
        "00020c0101ababababababababababababababababfd00e897b69a0100000207636f6e6762616f01016e0001040300016e013501036f6c6402036c6f67012b00",
        "00020d0101ababababababababababababababababfd00e897b69a010000031006060606060646068606060606060606",
        "00020e0101ababababababababababababababababfd00e897b69a0100000406706f7274616c",
        "00020f0101ababababababababababababababababfd00e897b69a01000005036f6c64",
        "0002100101ababababababababababababababababfd00e897b69a01000006010505050505050505050505050505050505050505050505050505050505050505000303616263",
        "0002110101ababababababababababababababababfd00e897b69a0100000706706f7274616c010808080808080808080808080808080808080808080808080808080808080808640909090909090909090909090909090909090909090909090909090909090909010006767075626e640a43c3b46e672062c3a16f",
        "0002120101ababababababababababababababababfd00e897b69a01000008fc80ee3600fb1027",
    ];
    const GOLDEN_BLANK: &str = "00031e00";
    const GOLDEN_MEMBERSHIP_ENTRY: &str = "00031f02010301020303010e3132372e302e302e313a37313031020e3132372e302e302e323a37313032030e3132372e302e302e333a37313033";
    const GOLDEN_VOTE: &str = "0004010201";
    const GOLDEN_LOG_ID: &str = "000463";
    const GOLDEN_STORED_MEMBERSHIP: &str = "00010101010301020303010e3132372e302e302e313a37313031020e3132372e302e302e323a37313032030e3132372e302e302e333a37313033";
    const GOLDEN_IDENTITY: &str = "000201100606060606064606860606060606060601";
    const GOLDEN_CLUSTER_ID: &str = "001006060606060646068606060606060606";
    const GOLDEN_SNAPSHOT_MANIFEST: &str = "000104fbf401010101010301020303010e3132372e302e302e313a37313031020e3132372e302e302e323a37313032030e3132372e302e302e333a3731303300010a3030303031322e737374fb0010fd00e897b69a010000";
}
