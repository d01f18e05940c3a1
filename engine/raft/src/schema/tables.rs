//! Tables of the replicated state and their key codecs.
//!
//! The state DB holds one RocksDB column family per table. A table name is
//! part of the on-disk layout *and* of the backup format (a snapshot in a
//! repository names its table streams), so both sides take it from here.

/// `db\0key` → [`KvRecord`](super::KvRecord): every key-value database.
pub const KV: &str = "kv";
/// Request id (16 bytes) → [`DedupRecord`](super::DedupRecord).
pub const DEDUP: &str = "dedup";
/// [`dedup_time_key`] → empty: request ids by the time they were applied.
pub const DEDUP_TIME: &str = "dedup_time";
/// Database name → [`DbStats`](super::DbStats).
pub const DBS: &str = "dbs";
/// Chunk id (32 bytes) → the stored chunk (flag byte, then its bytes).
pub const CHUNKS: &str = "chunks";
/// Chunk id → [`ChunkMeta`](super::ChunkMeta) (reference count, lengths).
pub const CHUNK_META: &str = "chunk_meta";
/// [`zero_key`] → empty: unreferenced chunks by the time they became so.
pub const CHUNK_ZERO: &str = "chunk_zero";
/// Site name → [`SiteRecord`](super::SiteRecord).
pub const SITES: &str = "sites";
/// `site\0path` → [`FileRecord`](super::FileRecord): the current files.
pub const FILES: &str = "files";
/// `site\0id (BE)` → [`DeploymentInfo`](super::DeploymentInfo): history.
pub const DEPLOYS: &str = "deploys";
/// Node-local and replicated metadata (applied log id, membership, clock,
/// cluster id). A backup keeps only [`META_CLUSTER_ID`] of it.
pub const META: &str = "meta";

/// The key in [`META`] of the replicated cluster id.
pub const META_CLUSTER_ID: &[u8] = b"cluster_id";

/// Every table of the state DB (besides [`META`]).
pub const STATE_TABLES: &[&str] = &[
    KV, DEDUP, DEDUP_TIME, DBS, CHUNKS, CHUNK_META, CHUNK_ZERO, SITES, FILES, DEPLOYS,
];

/// The tables a backup holds, in backup order. Left out: request ids (the
/// 15-minute idempotency window; a restored cluster starts a new one) and
/// the chunk bytes (`chunks`), which a backup stores as content blobs keyed
/// by chunk id, listed by [`CHUNK_META`].
pub const BACKUP_TABLES: &[&str] = &[META, DBS, KV, SITES, FILES, DEPLOYS, CHUNK_ZERO, CHUNK_META];

/// `name\0rest`: the key layout of [`KV`] (database, user key), [`FILES`]
/// (site, path) and [`DEPLOYS`] (site, id). Names never contain a 0 byte.
pub fn scoped_key(name: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + rest.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// Split a [`scoped_key`] into its name and the rest; `None` when the key
/// has no separator or the name is not UTF-8 (a damaged key).
pub fn split_scoped_key(k: &[u8]) -> Option<(&str, &[u8])> {
    let pos = k.iter().position(|b| *b == 0)?;
    Some((std::str::from_utf8(&k[..pos]).ok()?, &k[pos + 1..]))
}

/// A [`KV`] key: database name, 0, user key.
pub fn kv_key(db: &str, key: &[u8]) -> Vec<u8> {
    scoped_key(db, key)
}

/// A [`DEPLOYS`] key: site, 0, deployment id (big-endian, so history is in
/// order).
pub fn deploy_key(site: &str, id: u64) -> Vec<u8> {
    scoped_key(site, &id.to_be_bytes())
}

/// The key range `[name\0, name\x01)` holding every scoped key of `name`.
pub fn scoped_range(name: &str) -> (Vec<u8>, Vec<u8>) {
    let mut lo = name.as_bytes().to_vec();
    lo.push(0);
    let mut hi = name.as_bytes().to_vec();
    hi.push(1);
    (lo, hi)
}

/// A [`DEDUP_TIME`] key: replicated clock (big-endian) then request id.
pub fn dedup_time_key(at_ms: u64, id: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

/// A [`CHUNK_ZERO`] key: time the chunk became unreferenced (big-endian)
/// then chunk id.
pub fn zero_key(at_ms: u64, id: &[u8; 32]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layouts_are_pinned() {
        // These bytes are on disk and in backups: changing them is a format
        // change (docs/formats.md).
        assert_eq!(kv_key("congbao", b"so-201"), b"congbao\0so-201");
        assert_eq!(deploy_key("portal", 0x0102), b"portal\0\0\0\0\0\0\0\x01\x02");
        assert_eq!(scoped_range("a"), (b"a\0".to_vec(), b"a\x01".to_vec()));
        assert_eq!(dedup_time_key(1, &[7; 16])[..9], [0, 0, 0, 0, 0, 0, 0, 1, 7]);
        assert_eq!(zero_key(0x0203, &[9; 32])[6..9], [2, 3, 9]);
        assert_eq!(
            BACKUP_TABLES,
            [
                "meta",
                "dbs",
                "kv",
                "sites",
                "files",
                "deploys",
                "chunk_zero",
                "chunk_meta"
            ]
        );
    }

    #[test]
    fn scoped_keys_split_back() {
        let k = kv_key("lichtuan", b"a\0b");
        assert_eq!(split_scoped_key(&k), Some(("lichtuan", &b"a\0b"[..])));
        assert_eq!(split_scoped_key(b"no-separator"), None);
        assert_eq!(split_scoped_key(b"\xff\0x"), None);
        // Every key of a name sorts inside its range, and no other name's.
        let (lo, hi) = scoped_range("site");
        for k in [scoped_key("site", b""), scoped_key("site", b"\xff\xff")] {
            assert!(lo <= k && k < hi);
        }
        assert!(scoped_key("site2", b"") >= hi);
    }
}
