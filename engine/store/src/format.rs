//! Persisted formats of the stores: column families, key layouts and the
//! versioned value envelopes. Documented in docs/formats.md; every value is
//! a versioned enum (see `sen_core::codec`).

use sen_core::codec;
use sen_core::{ClusterId, NodeId};
use sen_raft::apply::{DbStats, DedupRecord, KvRecord};
use sen_raft::{Entry, LogId, StoredMembership, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Version of the on-disk layout of both DBs, stored under `meta/format`.
/// A DB written with a larger number is refused.
pub const LAYOUT_VERSION: u32 = 1;

// Log DB column families.
pub const CF_LOG: &str = "log";
pub const CF_META: &str = "meta";

// State DB column families (plus `meta`).
pub const CF_KV: &str = "kv";
pub const CF_DEDUP: &str = "dedup";
pub const CF_DEDUP_TIME: &str = "dedup_time";
pub const CF_DBS: &str = "dbs";
// Site content (state DB).
pub const CF_CHUNKS: &str = "chunks";
pub const CF_CHUNK_META: &str = "chunk_meta";
pub const CF_CHUNK_ZERO: &str = "chunk_zero";
pub const CF_SITES: &str = "sites";
pub const CF_FILES: &str = "files";
pub const CF_DEPLOYS: &str = "deploys";

// Keys in `meta`.
pub const K_FORMAT: &[u8] = b"format";
pub const K_VOTE: &[u8] = b"vote";
pub const K_COMMITTED: &[u8] = b"committed";
pub const K_PURGED: &[u8] = b"last_purged";
pub const K_IDENTITY: &[u8] = b"identity";
pub const K_APPLIED: &[u8] = b"applied";
pub const K_MEMBERSHIP: &[u8] = b"membership";
pub const K_CLOCK: &[u8] = b"clock";
pub const K_CLUSTER_ID: &[u8] = b"cluster_id";
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

/// `kv` keys: database name, a 0 byte (names never contain one), user key.
pub fn kv_key(db: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(db.len() + 1 + key.len());
    k.extend_from_slice(db.as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// Split a `kv` key into database and user key.
pub fn split_kv_key(k: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let pos = k
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| StoreError::Invalid("corrupt kv key without a database separator".into()))?;
    let db = std::str::from_utf8(&k[..pos])
        .map_err(|_| StoreError::Invalid("corrupt kv key: database name is not UTF-8".into()))?;
    Ok((db, &k[pos + 1..]))
}

/// `dedup_time` keys: replicated clock (big-endian) then request id.
pub fn dedup_time_key(at_ms: u64, id: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

/// `chunk_zero` keys: time it became unreferenced (BE) then chunk id.
pub fn zero_key(at_ms: u64, id: &[u8; 32]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

/// `files` keys: site, 0, path. `deploys` keys: site, 0, id (BE).
pub fn site_key(site: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(site.len() + 1 + rest.len());
    k.extend_from_slice(site.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// The key range `[site\0, site\x01)` holding every key of `site`.
pub fn site_range(site: &str) -> (Vec<u8>, Vec<u8>) {
    let mut lo = site.as_bytes().to_vec();
    lo.push(0);
    let mut hi = site.as_bytes().to_vec();
    hi.push(1);
    (lo, hi)
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
    enc("kv record", v)
}
pub fn dec_kv(b: &[u8]) -> Result<KvRecord, StoreError> {
    dec("kv record", b)
}
pub fn enc_dedup(v: &DedupRecord) -> Result<Vec<u8>, StoreError> {
    enc("request-id record", v)
}
pub fn dec_dedup(b: &[u8]) -> Result<DedupRecord, StoreError> {
    dec("request-id record", b)
}
pub fn enc_stats(v: &DbStats) -> Result<Vec<u8>, StoreError> {
    enc("database stats", v)
}
pub fn dec_stats(b: &[u8]) -> Result<DbStats, StoreError> {
    dec("database stats", b)
}
