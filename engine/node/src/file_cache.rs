//! A bounded in-memory cache of site files this node has served, so a hot
//! page costs no blocking-pool hop, no RocksDB read, no decompression and
//! no hashing (`crate::http::content` fills and reads it).
//!
//! What it holds: for a `(site, path)`, the verified bytes of the file
//! (decoded and checked against the chunk hashes once, at fill), its
//! `Content-Encoding: zstd` form when it has one (the stored chunks'
//! frames), and the response headers that depend only on the file, built
//! once.
//!
//! Invariants:
//! - **Never stale.** Every entry carries the state's content epoch
//!   (`StateDb::content_epoch`), read *before* the state was read to fill
//!   it. Applying a change to any site's files, installing a snapshot or
//!   a restore bumps the epoch *after* the write, so an entry is only used
//!   while the epoch it was read under is still current. A reader that saw
//!   the new epoch reads the new files. (The epoch is global: deployments
//!   are rare, and after one every site's files are read again once.)
//! - **Bounded by configuration.** The bodies, keys and headers of all
//!   entries stay under `content.cache-bytes`; files larger than
//!   `content.cache-max-file` (or than one shard's share) are never cached
//!   and stream from the store as before. Least recently used entries go
//!   first.
//! - **No access decisions inside.** Entries hold public facts about a
//!   file; whether a reader may see a private site is decided before the
//!   cache is asked.

use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::HeaderValue;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Independent parts of the cache (less lock contention between the
/// runtime's worker threads). The largest cacheable file is one part's
/// share of `cache-bytes`.
const SHARDS: usize = 8;
/// What an entry costs besides its body and key (headers, the `Arc`, the
/// LRU links), counted in the bound.
const ENTRY_OVERHEAD: usize = 512;
/// Concurrent fills of large files (above `SMALL`) are serialised per key
/// slot, so a burst of readers after a deployment reads a big file once,
/// not once per reader, and memory for fills stays bounded.
const FILL_SLOTS: usize = 16;
/// Files up to this size are filled without waiting for a slot.
pub const SMALL: u64 = 256 * 1024;

/// A file as served: its verified bytes and the headers that depend on it.
pub struct CachedFile {
    /// The content epoch the file was read under.
    pub epoch: u64,
    pub head: FileHead,
    pub body: Bytes,
    /// Its `Content-Encoding: zstd` form, when it has one (see
    /// `crate::http::content`).
    pub zstd: Option<Bytes>,
}

/// The headers of a file's response that depend only on the file.
#[derive(Clone)]
pub struct FileHead {
    pub size: u64,
    /// `"<blake3 hex>"` (with the quotes).
    pub etag: HeaderValue,
    /// `"<blake3 hex>.zst"`: the ETag of the zstd form.
    pub zstd_etag: HeaderValue,
    pub content_type: HeaderValue,
    pub last_modified: HeaderValue,
    /// The deployment the file belongs to (`X-Sen-Revision`).
    pub revision: HeaderValue,
    /// `text/html`: gets the site's CSP.
    pub html: bool,
}

struct Shard {
    epoch: u64,
    bytes: usize,
    lru: lru::LruCache<String, std::sync::Arc<CachedFile>>,
}

/// See the module docs.
pub struct FileCache {
    shards: Vec<Mutex<Shard>>,
    shard_bytes: usize,
    max_file: u64,
    fills: Vec<tokio::sync::Mutex<()>>,
    hits: Counter,
    misses: Counter,
    bytes: Gauge,
}

/// The cache's counters, shared with `/metrics`.
#[derive(Clone, Default)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub bytes: Gauge,
}

fn key(site: &str, path: &str) -> String {
    let mut k = String::with_capacity(site.len() + 1 + path.len());
    k.push_str(site);
    k.push('/');
    k.push_str(path);
    k
}

fn slot(key: &str, n: usize) -> usize {
    // FNV-1a: cheap, and only spreads keys over slots.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

fn cost(key: &str, file: &CachedFile) -> usize {
    key.len() + file.body.len() + file.zstd.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD
}

impl FileCache {
    /// A cache of at most `bytes` holding files of at most `max_file`
    /// bytes (0 turns it off).
    pub fn new(bytes: u64, max_file: u64, m: CacheMetrics) -> Self {
        let shard_bytes = (bytes / SHARDS as u64) as usize;
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        epoch: 0,
                        bytes: 0,
                        lru: lru::LruCache::unbounded(),
                    })
                })
                .collect(),
            shard_bytes,
            max_file: max_file.min(shard_bytes.saturating_sub(ENTRY_OVERHEAD) as u64),
            fills: (0..FILL_SLOTS).map(|_| tokio::sync::Mutex::new(())).collect(),
            hits: m.hits,
            misses: m.misses,
            bytes: m.bytes,
        }
    }

    /// Whether a file of `size` bytes may be cached.
    pub fn admits(&self, size: u64) -> bool {
        size <= self.max_file && self.shard_bytes > 0
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[slot(key, SHARDS)].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached file at `path` of `site` if it was read under `epoch`
    /// (the current content epoch).
    pub fn get(&self, site: &str, path: &str, epoch: u64) -> Option<std::sync::Arc<CachedFile>> {
        if self.shard_bytes == 0 {
            // Turned off: nothing to count.
            return None;
        }
        let found = self.find(site, path, epoch);
        match found {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        };
        found
    }

    /// Like [`get`](Self::get), but a miss is not counted: for a caller
    /// that asks `get` next when this misses (the HTTP front, see
    /// `crate::http::front`), so each request counts once.
    pub fn get_hit(&self, site: &str, path: &str, epoch: u64) -> Option<std::sync::Arc<CachedFile>> {
        let found = self.find(site, path, epoch)?;
        self.hits.inc();
        Some(found)
    }

    fn find(&self, site: &str, path: &str, epoch: u64) -> Option<std::sync::Arc<CachedFile>> {
        if self.shard_bytes == 0 {
            return None;
        }
        let k = key(site, path);
        let mut s = self.shard(&k);
        if s.epoch == epoch { s.lru.get(&k).cloned() } else { None }
    }

    /// Keep `file`, read under `file.epoch`, unless a newer epoch is
    /// already current (`current`) or it is too large.
    pub fn insert(&self, site: &str, path: &str, file: std::sync::Arc<CachedFile>, current: u64) {
        if !self.admits(file.body.len() as u64) || file.epoch != current {
            return;
        }
        let k = key(site, path);
        let c = cost(&k, &file);
        if c > self.shard_bytes {
            // With its zstd form it would not fit its shard.
            return;
        }
        let mut s = self.shard(&k);
        if s.epoch != file.epoch {
            if s.epoch > file.epoch {
                return;
            }
            // Everything in this shard was read under an older epoch.
            let freed = s.bytes;
            s.lru.clear();
            s.bytes = 0;
            s.epoch = file.epoch;
            self.bytes.dec_by(freed as i64);
        }
        if let Some(old) = s.lru.pop(&k) {
            let freed = cost(&k, &old);
            s.bytes -= freed;
            self.bytes.dec_by(freed as i64);
        }
        while s.bytes + c > self.shard_bytes {
            let Some((ok, old)) = s.lru.pop_lru() else { break };
            let freed = cost(&ok, &old);
            s.bytes -= freed;
            self.bytes.dec_by(freed as i64);
        }
        s.bytes += c;
        self.bytes.inc_by(c as i64);
        s.lru.put(k, file);
    }

    /// Wait for the fill slot of a large file (see `FILL_SLOTS`).
    pub async fn fill_slot(&self, site: &str, path: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.fills[slot(&key(site, path), FILL_SLOTS)].lock().await
    }

    /// Hits, misses, bytes held (for `/metrics`).
    pub fn stats(&self) -> (u64, u64, u64) {
        (self.hits.get(), self.misses.get(), self.bytes.get().max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn file(epoch: u64, len: usize) -> Arc<CachedFile> {
        let v = HeaderValue::from_static("x");
        Arc::new(CachedFile {
            epoch,
            head: FileHead {
                size: len as u64,
                etag: v.clone(),
                zstd_etag: v.clone(),
                content_type: v.clone(),
                last_modified: v.clone(),
                revision: v,
                html: false,
            },
            body: Bytes::from(vec![7u8; len]),
            zstd: None,
        })
    }

    #[test]
    fn entries_are_used_only_under_their_epoch() {
        let c = FileCache::new(8 << 20, 1 << 20, CacheMetrics::default());
        c.insert("www", "a.html", file(3, 10), 3);
        assert!(c.get("www", "a.html", 3).is_some());
        assert!(c.get("www", "a.html", 4).is_none(), "a newer epoch must miss");
        // A fill read under an epoch that is no longer current is dropped.
        c.insert("www", "b.html", file(3, 10), 4);
        assert!(c.get("www", "b.html", 3).is_none());
        // The first fill of a new epoch clears what its shard held.
        c.insert("www", "a.html", file(4, 10), 4);
        assert!(c.get("www", "a.html", 4).is_some());
        let (hits, misses, _) = c.stats();
        assert_eq!((hits, misses), (2, 2));
        // `get_hit` counts hits only: its caller asks `get` after a miss.
        assert!(c.get_hit("www", "a.html", 4).is_some());
        assert!(c.get_hit("www", "a.html", 5).is_none());
        assert_eq!(c.stats().0, 3);
        assert_eq!(c.stats().1, 2);
    }

    #[test]
    fn memory_stays_under_the_bound() {
        let total = 8u64 << 20;
        let c = FileCache::new(total, 1 << 20, CacheMetrics::default());
        for i in 0..2_000 {
            c.insert("www", &format!("f{i}"), file(1, 100_000), 1);
            assert!(c.stats().2 <= total, "held {} > {total}", c.stats().2);
        }
        // The most recent one is there; the first ones were evicted.
        assert!(c.get("www", "f1999", 1).is_some());
        assert!(c.get("www", "f0", 1).is_none());
        // Too large for the configured limit: never kept.
        c.insert("www", "big", file(1, (1 << 20) + 1), 1);
        assert!(c.get("www", "big", 1).is_none());
        assert!(!c.admits((1 << 20) + 1));
    }

    #[test]
    fn zero_bytes_turns_it_off() {
        let c = FileCache::new(0, 1 << 20, CacheMetrics::default());
        assert!(!c.admits(1));
        c.insert("www", "a", file(1, 1), 1);
        assert!(c.get("www", "a", 1).is_none());
        assert_eq!(c.stats(), (0, 0, 0));
    }
}
