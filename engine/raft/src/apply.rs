//! Deterministic application of commands to the key-value state.
//!
//! [`Applier`] reads through a [`StateView`] (the state as of the start of a
//! batch) plus an overlay of its own pending writes, and emits
//! [`Mutation`]s that the storage layer writes atomically together with the
//! new applied log id. Nothing here knows about RocksDB.
//!
//! Determinism: the response and the mutations of an entry depend only on the
//! state before it and on the entry itself — never on the wall clock, on
//! configuration, or on how entries are grouped into batches. The one
//! exception is [`Applier::gc_dedup`], which deletes request-id records that
//! are already logically expired and so cannot change any later result.

use std::collections::HashMap;

use sen_core::{ClusterId, RequestId};

use sen_content::{ChunkId, StoredChunk};

use crate::command::{Compare, CompareOp, CompareTarget, Op, Outcome, Request, Response, Txn, TxnOp};
pub use crate::content::ContentView;
pub use crate::schema::records::{
    ChunkMeta, CurrentDeployment, DbStats, DedupRecord, DeploymentInfo, FileRecord, KvRecord, SiteRecord,
};
use crate::schema::system::{QuotaKind, QuotaRecord, SYSTEM_DB, SystemRecord, is_reserved_db, quota_key};

/// How long a request id is remembered: a retry of the same id within this
/// window (measured on the replicated monotonic clock) returns the original
/// result instead of applying again. Clients stop retrying long before.
pub const DEDUP_WINDOW_MS: u64 = 15 * 60 * 1000;

/// Largest value an append may produce. A constant (not configuration), so
/// every node decides the same way.
pub const MAX_APPENDED_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// One change to the stored state, in application order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    PutKv {
        db: String,
        key: Vec<u8>,
        record: KvRecord,
    },
    DeleteKv {
        db: String,
        key: Vec<u8>,
    },
    PutDedup {
        id: RequestId,
        record: DedupRecord,
    },
    /// Delete the record of `id` and its time-index key `(at_ms, id)`.
    DeleteDedup {
        id: RequestId,
        at_ms: u64,
    },
    /// Delete only the time-index key `(at_ms, id)`: the id was applied
    /// again after expiring, and its record now carries a newer time.
    DeleteDedupIndex {
        id: RequestId,
        at_ms: u64,
    },
    /// New statistics of a database; `keys == 0` means the database is gone.
    PutDbStats {
        db: String,
        stats: DbStats,
    },
    PutClock {
        ms: u64,
    },
    PutClusterId(ClusterId),
    /// Store a new chunk's data.
    PutChunk {
        chunk: StoredChunk,
    },
    PutChunkMeta {
        id: ChunkId,
        meta: ChunkMeta,
    },
    /// Delete a chunk's data and metadata.
    DeleteChunk {
        id: ChunkId,
    },
    /// Index of unreferenced chunks by the time they became so.
    PutZeroChunk {
        at_ms: u64,
        id: ChunkId,
    },
    DeleteZeroChunk {
        at_ms: u64,
        id: ChunkId,
    },
    PutSite {
        site: String,
        rec: SiteRecord,
    },
    DeleteSite {
        site: String,
    },
    /// Replace the site's whole file index with `files`.
    ReplaceFiles {
        site: String,
        files: Vec<(String, FileRecord)>,
    },
    DeleteFiles {
        site: String,
    },
    PutDeployment {
        site: String,
        info: DeploymentInfo,
    },
    DeleteDeployments {
        site: String,
    },
    /// The stored bytes of unreferenced chunks (uploaded and not deployed
    /// yet, or no longer deployed) changed by `delta`. A node-local
    /// counter for admission checks, not part of the state digest: the
    /// store may recompute it from `chunk_meta` at any time.
    AddUnreferencedBytes {
        delta: i64,
    },
}

/// Reading the state failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("state storage failed: {0}")]
    Storage(String),
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
}

/// Read access to the state as of the start of a batch.
pub trait StateView: ContentView {
    fn kv(&self, db: &str, key: &[u8]) -> Result<Option<KvRecord>, StateError>;
    fn dedup(&self, id: &RequestId) -> Result<Option<DedupRecord>, StateError>;
    /// Up to `limit` request ids recorded before `before_ms`, oldest first.
    fn dedup_expired(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, RequestId)>, StateError>;
    fn db_stats(&self, db: &str) -> Result<DbStats, StateError>;
    fn clock_ms(&self) -> Result<u64, StateError>;
    fn cluster_id(&self) -> Result<Option<ClusterId>, StateError>;

    /// [`StateView::kv`] of many keys at once (a store may batch them).
    fn kv_many(&self, keys: &[(&str, &[u8])]) -> Result<Vec<Option<KvRecord>>, StateError> {
        keys.iter().map(|(db, key)| self.kv(db, key)).collect()
    }

    /// [`StateView::dedup`] of many ids at once (a store may batch them).
    fn dedup_many(&self, ids: &[RequestId]) -> Result<Vec<Option<DedupRecord>>, StateError> {
        ids.iter().map(|id| self.dedup(id)).collect()
    }
}

/// Records read from the view during one batch, by database then key:
/// each is read once per batch however often the batch asks (a put reads
/// its key for the quota check and again to apply; a quota record is read
/// by every growing write to its database).
#[derive(Default)]
struct ReadCache {
    kv: HashMap<String, HashMap<Vec<u8>, Option<KvRecord>>>,
    dedup: HashMap<RequestId, Option<DedupRecord>>,
}

/// Applies a batch of entries on top of a [`StateView`].
pub struct Applier<'v, V: StateView> {
    pub(crate) view: &'v V,
    /// This batch's writes, by database then key (`None`: deleted).
    kv: HashMap<String, HashMap<Vec<u8>, Option<KvRecord>>>,
    dedup: HashMap<RequestId, DedupRecord>,
    /// What this batch read from the view (never written to).
    read: std::cell::RefCell<ReadCache>,
    stats: HashMap<String, DbStats>,
    /// Databases whose statistics changed (written once, at the end).
    stats_changed: Vec<String>,
    clock: Option<u64>,
    /// Whether the clock moved (written once, at the end).
    clock_moved: bool,
    cluster_id: Option<Option<ClusterId>>,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) chunk_meta: HashMap<ChunkId, Option<ChunkMeta>>,
    pub(crate) chunk_data: HashMap<ChunkId, StoredChunk>,
    pub(crate) sites: HashMap<String, Option<SiteRecord>>,
    /// Change of the unreferenced chunks' stored bytes in this batch.
    pub(crate) unreferenced_delta: i64,
}

impl<'v, V: StateView> Applier<'v, V> {
    pub fn new(view: &'v V) -> Self {
        Self {
            view,
            kv: HashMap::new(),
            dedup: HashMap::new(),
            read: Default::default(),
            stats: HashMap::new(),
            stats_changed: Vec::new(),
            clock: None,
            clock_moved: false,
            cluster_id: None,
            mutations: Vec::new(),
            chunk_meta: HashMap::new(),
            chunk_data: HashMap::new(),
            sites: HashMap::new(),
            unreferenced_delta: 0,
        }
    }

    /// Read at once what applying `requests` will read first (their keys
    /// and request ids), so a store answers them in one batched lookup
    /// instead of one point read each. Only a cache: applying without it
    /// gives the same result.
    pub fn prefetch<'r>(&mut self, requests: impl IntoIterator<Item = &'r Request>) -> Result<(), StateError> {
        let mut keys: Vec<(&str, &[u8])> = Vec::new();
        let mut ids: Vec<RequestId> = Vec::new();
        for req in requests {
            if let Some(id) = req.id {
                ids.push(id);
            }
            match &req.op {
                Op::Put { db, key, .. } | Op::Delete { db, key } => keys.push((db.as_str(), key.as_slice())),
                _ => {}
            }
        }
        let read = self.read.get_mut();
        keys.retain(|(db, key)| read.kv.get(*db).is_none_or(|m| !m.contains_key(*key)));
        ids.retain(|id| !read.dedup.contains_key(id));
        if !keys.is_empty() {
            for ((db, key), rec) in keys.iter().zip(self.view.kv_many(&keys)?) {
                read.kv.entry((*db).to_owned()).or_default().insert(key.to_vec(), rec);
            }
        }
        if !ids.is_empty() {
            for (id, rec) in ids.iter().zip(self.view.dedup_many(&ids)?) {
                read.dedup.insert(*id, rec);
            }
        }
        Ok(())
    }

    /// Apply the client request carried by the entry at `index`.
    pub fn apply(&mut self, index: u64, req: &Request) -> Result<Response, StateError> {
        let now = self.clock()?.max(req.proposed_at_ms);
        self.set_clock(now);

        // An id seen before is a duplicate while its record is live; once
        // expired, the id may be applied again (its old index key goes).
        // A live id bound to a different operation is refused: the retry
        // of one request must not hide a second one (records written
        // before ids were bound have no digest and are not compared).
        let mut expired_at = None;
        let digest = req.id.map(|_| req.op.digest());
        if let Some(id) = &req.id
            && let Some(rec) = self.dedup_record(id)?
        {
            if rec.at_ms + DEDUP_WINDOW_MS > now {
                if rec.request.is_some() && rec.request != digest {
                    return Ok(Response {
                        revision: index,
                        duplicate: false,
                        outcome: Outcome::RequestIdReused {
                            revision: rec.response.revision,
                        },
                    });
                }
                let mut response = rec.response;
                response.duplicate = true;
                return Ok(response);
            }
            expired_at = Some(rec.at_ms);
        }

        let outcome = match &req.op {
            Op::Put { db, key, value } => match self.kv_quota_check(db, &[(key.as_slice(), Some(value.len()))])? {
                Some(refused) => refused,
                None => Outcome::Put {
                    created: self.put(db, key, value, index)?,
                },
            },
            Op::Delete { db, key } => Outcome::Delete {
                deleted: self.delete(db, key)?,
            },
            Op::Txn(txn) => self.txn(txn, index)?,
            Op::InitCluster { cluster_id } => match self.get_cluster_id()? {
                Some(existing) => Outcome::InitCluster {
                    cluster_id: existing,
                    already: true,
                },
                None => {
                    self.cluster_id = Some(Some(*cluster_id));
                    self.mutations.push(Mutation::PutClusterId(*cluster_id));
                    Outcome::InitCluster {
                        cluster_id: *cluster_id,
                        already: false,
                    }
                }
            },
            Op::CreateSite { site } => self.create_site(site, now)?,
            Op::DeleteSite { site } => self.delete_site(site, now)?,
            Op::PutChunks { chunks } => self.put_chunks(chunks, now)?,
            Op::Deploy(d) => self.deploy(d, index, now)?,
            Op::CollectGarbage { grace_ms, limit } => self.collect_garbage(*grace_ms, *limit, now)?,
        };
        let response = Response {
            revision: index,
            duplicate: false,
            outcome,
        };
        if let Some(id) = req.id {
            if let Some(at_ms) = expired_at {
                self.mutations.push(Mutation::DeleteDedupIndex { id, at_ms });
            }
            let record = DedupRecord {
                at_ms: now,
                response: response.clone(),
                request: digest,
            };
            self.dedup.insert(id, record.clone());
            self.mutations.push(Mutation::PutDedup { id, record });
        }
        Ok(response)
    }

    /// Delete up to `limit` request-id records that expired before the
    /// current replicated clock. Returns how many were deleted. Expired
    /// records are never consulted again (the clock never goes back), so
    /// this may run at any point without affecting determinism.
    pub fn gc_dedup(&mut self, limit: usize) -> Result<usize, StateError> {
        let now = self.clock()?;
        // A record is expired once `at_ms + DEDUP_WINDOW_MS <= now`.
        let Some(before) = (now + 1).checked_sub(DEDUP_WINDOW_MS) else {
            return Ok(0);
        };
        let expired = self.view.dedup_expired(before, limit)?;
        let n = expired.len();
        for (at_ms, id) in expired {
            // The record may be newer than this index key (the id was
            // applied again after expiring): then only the key goes.
            let current = self.dedup_record(&id)?;
            if current.is_some_and(|r| r.at_ms == at_ms) {
                self.mutations.push(Mutation::DeleteDedup { id, at_ms });
            } else {
                self.mutations.push(Mutation::DeleteDedupIndex { id, at_ms });
            }
        }
        Ok(n)
    }

    /// The mutations of everything applied so far, in order; the clock and
    /// the statistics of each database once, with their last values.
    pub fn finish(mut self) -> Vec<Mutation> {
        if self.clock_moved
            && let Some(ms) = self.clock
        {
            self.mutations.push(Mutation::PutClock { ms });
        }
        for db in std::mem::take(&mut self.stats_changed) {
            let stats = self.stats[&db];
            self.mutations.push(Mutation::PutDbStats { db, stats });
        }
        if self.unreferenced_delta != 0 {
            self.mutations.push(Mutation::AddUnreferencedBytes {
                delta: self.unreferenced_delta,
            });
        }
        self.mutations
    }

    fn clock(&self) -> Result<u64, StateError> {
        match self.clock {
            Some(c) => Ok(c),
            None => self.view.clock_ms(),
        }
    }

    fn set_clock(&mut self, ms: u64) {
        if self.clock != Some(ms) {
            self.clock = Some(ms);
            self.clock_moved = true;
        }
    }

    fn get_cluster_id(&self) -> Result<Option<ClusterId>, StateError> {
        match self.cluster_id {
            Some(c) => Ok(c),
            None => self.view.cluster_id(),
        }
    }

    /// The record of `id`, live or expired (this batch's writes first).
    fn dedup_record(&self, id: &RequestId) -> Result<Option<DedupRecord>, StateError> {
        if let Some(r) = self.dedup.get(id) {
            return Ok(Some(r.clone()));
        }
        if let Some(r) = self.read.borrow().dedup.get(id) {
            return Ok(r.clone());
        }
        let r = self.view.dedup(id)?;
        self.read.borrow_mut().dedup.insert(*id, r.clone());
        Ok(r)
    }

    fn get(&self, db: &str, key: &[u8]) -> Result<Option<KvRecord>, StateError> {
        if let Some(r) = self.kv.get(db).and_then(|m| m.get(key)) {
            return Ok(r.clone());
        }
        if let Some(r) = self.read.borrow().kv.get(db).and_then(|m| m.get(key)) {
            return Ok(r.clone());
        }
        let r = self.view.kv(db, key)?;
        self.read
            .borrow_mut()
            .kv
            .entry(db.to_owned())
            .or_default()
            .insert(key.to_vec(), r.clone());
        Ok(r)
    }

    /// Record this batch's new value of `db`/`key` (`None`: deleted).
    fn set_kv(&mut self, db: &str, key: &[u8], rec: Option<KvRecord>) {
        match self.kv.get_mut(db) {
            Some(m) => {
                m.insert(key.to_vec(), rec);
            }
            None => {
                self.kv.insert(db.to_owned(), HashMap::from([(key.to_vec(), rec)]));
            }
        }
    }

    fn stats(&self, db: &str) -> Result<DbStats, StateError> {
        match self.stats.get(db) {
            Some(s) => Ok(*s),
            None => self.view.db_stats(db),
        }
    }

    fn set_stats(&mut self, db: &str, stats: DbStats) {
        // Only this inserts into `stats`: a first insert is a first change.
        if self.stats.insert(db.to_owned(), stats).is_none() {
            self.stats_changed.push(db.to_owned());
        }
    }

    /// Returns whether the key was created.
    fn put(&mut self, db: &str, key: &[u8], value: &[u8], index: u64) -> Result<bool, StateError> {
        let prev = self.get(db, key)?;
        let record = KvRecord {
            value: value.to_vec(),
            mod_revision: index,
            create_revision: prev.as_ref().map_or(index, |p| p.create_revision),
            version: prev.as_ref().map_or(1, |p| p.version + 1),
        };
        let mut stats = self.stats(db)?;
        match &prev {
            Some(p) => {
                stats.bytes = stats.bytes.saturating_sub(p.value.len() as u64) + value.len() as u64;
            }
            None => {
                stats.keys += 1;
                stats.bytes += (key.len() + value.len()) as u64;
            }
        }
        self.set_stats(db, stats);
        self.set_kv(db, key, Some(record.clone()));
        self.mutations.push(Mutation::PutKv {
            db: db.to_owned(),
            key: key.to_vec(),
            record,
        });
        Ok(prev.is_none())
    }

    /// Returns whether the key existed.
    fn delete(&mut self, db: &str, key: &[u8]) -> Result<bool, StateError> {
        let Some(prev) = self.get(db, key)? else {
            return Ok(false);
        };
        let mut stats = self.stats(db)?;
        stats.keys = stats.keys.saturating_sub(1);
        stats.bytes = stats.bytes.saturating_sub((key.len() + prev.value.len()) as u64);
        self.set_stats(db, stats);
        self.set_kv(db, key, None);
        self.mutations.push(Mutation::DeleteKv {
            db: db.to_owned(),
            key: key.to_vec(),
        });
        Ok(true)
    }

    fn txn(&mut self, txn: &Txn, index: u64) -> Result<Outcome, StateError> {
        let mut succeeded = true;
        for c in &txn.compares {
            if !self.compare(&txn.db, c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &txn.success } else { &txn.failure };
        // Check the whole branch before changing anything: the value each
        // key ends with (`None`: deleted).
        let mut sizes: HashMap<&[u8], Option<usize>> = HashMap::new();
        for op in ops {
            match op {
                TxnOp::Put { key, value } => {
                    sizes.insert(key, Some(value.len()));
                }
                TxnOp::Delete { key } => {
                    sizes.insert(key, None);
                }
                TxnOp::Append { key, value } => {
                    let cur = match sizes.get(key.as_slice()) {
                        Some(n) => n.unwrap_or(0),
                        None => self.get(&txn.db, key)?.map_or(0, |r| r.value.len()),
                    };
                    let new = cur + value.len();
                    if new > MAX_APPENDED_VALUE_BYTES {
                        return Ok(Outcome::TxnRejected {
                            reason: format!(
                                "appending would make key {} {new} bytes, over the {MAX_APPENDED_VALUE_BYTES}-byte limit for appended values",
                                crate::command::show_key(key)
                            ),
                        });
                    }
                    sizes.insert(key, Some(new));
                }
            }
        }
        let ends: Vec<(&[u8], Option<usize>)> = sizes.into_iter().collect();
        if let Some(refused) = self.kv_quota_check(&txn.db, &ends)? {
            return Ok(refused);
        }
        for op in ops {
            match op {
                TxnOp::Put { key, value } => {
                    self.put(&txn.db, key, value, index)?;
                }
                TxnOp::Delete { key } => {
                    self.delete(&txn.db, key)?;
                }
                TxnOp::Append { key, value } => {
                    let mut v = self.get(&txn.db, key)?.map(|r| r.value).unwrap_or_default();
                    v.extend_from_slice(value);
                    self.put(&txn.db, key, &v, index)?;
                }
            }
        }
        Ok(Outcome::Txn { succeeded })
    }

    /// The quota of `kind` on `name`, from the control plane in this
    /// state (so every node reads the same). A record this build cannot
    /// read counts as no quota: refusing every write over a damaged record
    /// would be worse, and `sen quota list` shows it.
    pub(crate) fn quota(&self, kind: QuotaKind, name: &str) -> Result<Option<u64>, StateError> {
        if kind == QuotaKind::Database && is_reserved_db(name) {
            return Ok(None);
        }
        Ok(self
            .get(SYSTEM_DB, &quota_key(kind, name))?
            .and_then(|r| QuotaRecord::from_json(&r.value).ok())
            .map(|q| q.max_bytes))
    }

    /// Refuse a change that would take `name` above its quota and grow it.
    pub(crate) fn quota_check(
        &self,
        kind: QuotaKind,
        name: &str,
        before: u64,
        after: u64,
    ) -> Result<Option<Outcome>, StateError> {
        if after <= before {
            return Ok(None);
        }
        Ok(match self.quota(kind, name)? {
            Some(quota) if after > quota => Some(Outcome::QuotaExceeded {
                kind,
                name: name.to_owned(),
                bytes: after,
                quota,
            }),
            _ => None,
        })
    }

    /// [`Self::quota_check`] for keys of database `db` ending with the
    /// given value lengths (`None`: deleted).
    fn kv_quota_check(&self, db: &str, ends: &[(&[u8], Option<usize>)]) -> Result<Option<Outcome>, StateError> {
        let size = |key: &[u8], value: Option<usize>| value.map_or(0, |v| (key.len() + v) as u64);
        let before = self.stats(db)?.bytes;
        let mut after = before;
        for (key, end) in ends {
            let now = size(key, self.get(db, key)?.map(|r| r.value.len()));
            after = after.saturating_sub(now).saturating_add(size(key, *end));
        }
        self.quota_check(QuotaKind::Database, db, before, after)
    }

    fn compare(&self, db: &str, c: &Compare) -> Result<bool, StateError> {
        let cur = self.get(db, &c.key)?;
        let ord = |a: u64, b: u64| match c.op {
            CompareOp::Equal => a == b,
            CompareOp::NotEqual => a != b,
            CompareOp::Less => a < b,
            CompareOp::Greater => a > b,
        };
        Ok(match &c.target {
            CompareTarget::Value(v) => match &cur {
                None => c.op == CompareOp::NotEqual,
                Some(r) => match c.op {
                    CompareOp::Equal => r.value == *v,
                    CompareOp::NotEqual => r.value != *v,
                    CompareOp::Less => r.value < *v,
                    CompareOp::Greater => r.value > *v,
                },
            },
            CompareTarget::ModRevision(n) => ord(cur.as_ref().map_or(0, |r| r.mod_revision), *n),
            CompareTarget::CreateRevision(n) => ord(cur.as_ref().map_or(0, |r| r.create_revision), *n),
            CompareTarget::Version(n) => ord(cur.as_ref().map_or(0, |r| r.version), *n),
            CompareTarget::Exists(want) => {
                let exists = cur.is_some();
                match c.op {
                    CompareOp::Equal => exists == *want,
                    CompareOp::NotEqual => exists != *want,
                    // Ordering on existence is meaningless; treat as false.
                    CompareOp::Less | CompareOp::Greater => false,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
