//! An in-memory [`StateView`] that applies [`Mutation`]s: the reference
//! model for tests of the apply logic, and for anything that needs the
//! state machine without a storage engine.

use std::collections::{BTreeMap, BTreeSet};

use sen_content::{ChunkId, StoredChunk};
use sen_core::{ClusterId, RequestId};

use crate::apply::{DbStats, DedupRecord, KvRecord, Mutation, StateError, StateView};
use crate::content::ContentView;
use crate::schema::{ChunkMeta, DeploymentInfo, FileRecord, SiteRecord};
use crate::schema::{Record, tables};

/// Rows of tables by table name, as stored.
pub type TableRows = BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The whole state in ordered maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemState {
    pub kv: BTreeMap<(String, Vec<u8>), KvRecord>,
    pub dedup: BTreeMap<RequestId, DedupRecord>,
    pub dedup_by_time: BTreeSet<(u64, RequestId)>,
    pub stats: BTreeMap<String, DbStats>,
    pub clock_ms: u64,
    pub cluster_id: Option<ClusterId>,
    pub chunks: BTreeMap<ChunkId, StoredChunk>,
    pub chunk_meta: BTreeMap<ChunkId, ChunkMeta>,
    pub zero: BTreeSet<(u64, ChunkId)>,
    pub sites: BTreeMap<String, SiteRecord>,
    pub files: BTreeMap<(String, String), FileRecord>,
    pub deployments: BTreeMap<(String, u64), DeploymentInfo>,
}

impl MemState {
    /// Write mutations in order.
    pub fn write(&mut self, mutations: impl IntoIterator<Item = Mutation>) {
        for m in mutations {
            match m {
                Mutation::PutKv { db, key, record } => {
                    self.kv.insert((db, key), record);
                }
                Mutation::DeleteKv { db, key } => {
                    self.kv.remove(&(db, key));
                }
                Mutation::PutDedup { id, record } => {
                    self.dedup_by_time.insert((record.at_ms, id));
                    self.dedup.insert(id, record);
                }
                Mutation::DeleteDedup { id, at_ms } => {
                    self.dedup_by_time.remove(&(at_ms, id));
                    self.dedup.remove(&id);
                }
                Mutation::DeleteDedupIndex { id, at_ms } => {
                    self.dedup_by_time.remove(&(at_ms, id));
                }
                Mutation::PutDbStats { db, stats } => {
                    if stats.keys == 0 {
                        self.stats.remove(&db);
                    } else {
                        self.stats.insert(db, stats);
                    }
                }
                Mutation::PutClock { ms } => self.clock_ms = ms,
                Mutation::PutClusterId(id) => self.cluster_id = Some(id),
                Mutation::PutChunk { chunk } => {
                    self.chunks.insert(chunk.id, chunk);
                }
                Mutation::PutChunkMeta { id, meta } => {
                    self.chunk_meta.insert(id, meta);
                }
                Mutation::DeleteChunk { id } => {
                    self.chunks.remove(&id);
                    self.chunk_meta.remove(&id);
                }
                Mutation::PutZeroChunk { at_ms, id } => {
                    self.zero.insert((at_ms, id));
                }
                Mutation::DeleteZeroChunk { at_ms, id } => {
                    self.zero.remove(&(at_ms, id));
                }
                Mutation::PutSite { site, rec } => {
                    self.sites.insert(site, rec);
                }
                Mutation::DeleteSite { site } => {
                    self.sites.remove(&site);
                }
                Mutation::ReplaceFiles { site, files } => {
                    self.files.retain(|(s, _), _| *s != site);
                    for (path, rec) in files {
                        self.files.insert((site.clone(), path), rec);
                    }
                }
                Mutation::DeleteFiles { site } => self.files.retain(|(s, _), _| *s != site),
                Mutation::PutDeployment { site, info } => {
                    self.deployments.insert((site, info.id), info);
                }
                Mutation::DeleteDeployments { site } => self.deployments.retain(|(s, _), _| *s != site),
                // Derived from `chunk_meta`: see [`MemState::unreferenced_bytes`].
                Mutation::AddUnreferencedBytes { .. } => {}
            }
        }
    }
}

impl MemState {
    /// Stored bytes of the chunks no deployment references: what the
    /// stores' counter (`Mutation::AddUnreferencedBytes`) must always equal.
    pub fn unreferenced_bytes(&self) -> u64 {
        self.chunk_meta
            .values()
            .filter(|m| m.refs == 0)
            .map(|m| u64::from(m.stored_len))
            .sum()
    }

    /// The state in its stored layout: for every table a backup holds
    /// (`schema::tables::BACKUP_TABLES`), its rows as the RocksDB store
    /// writes them (same keys, same encodings).
    pub fn backup_rows(&self) -> Result<TableRows, StateError> {
        let enc = |e: sen_core::codec::CodecError| StateError::Corrupt(e.to_string());
        let mut out: TableRows = tables::BACKUP_TABLES.iter().map(|t| (*t, BTreeMap::new())).collect();
        let mut put = |t: &'static str, k: Vec<u8>, v: Vec<u8>| {
            out.entry(t).or_default().insert(k, v);
        };
        if let Some(id) = self.cluster_id {
            put(
                tables::META,
                tables::META_CLUSTER_ID.to_vec(),
                sen_core::codec::encode_v1("cluster id", &id).map_err(enc)?,
            );
        }
        for ((db, key), rec) in &self.kv {
            put(tables::KV, tables::kv_key(db, key), rec.encode().map_err(enc)?);
        }
        for (db, stats) in &self.stats {
            put(tables::DBS, db.as_bytes().to_vec(), stats.encode().map_err(enc)?);
        }
        for (site, rec) in &self.sites {
            put(tables::SITES, site.as_bytes().to_vec(), rec.encode().map_err(enc)?);
        }
        for ((site, path), rec) in &self.files {
            put(
                tables::FILES,
                tables::scoped_key(site, path.as_bytes()),
                rec.encode().map_err(enc)?,
            );
        }
        for ((site, id), info) in &self.deployments {
            put(
                tables::DEPLOYS,
                tables::deploy_key(site, *id),
                info.encode().map_err(enc)?,
            );
        }
        for (at, id) in &self.zero {
            put(tables::CHUNK_ZERO, tables::zero_key(*at, &id.0).to_vec(), Vec::new());
        }
        for (id, meta) in &self.chunk_meta {
            put(tables::CHUNK_META, id.0.to_vec(), meta.encode().map_err(enc)?);
        }
        Ok(out)
    }
}

impl StateView for MemState {
    fn kv(&self, db: &str, key: &[u8]) -> Result<Option<KvRecord>, StateError> {
        Ok(self.kv.get(&(db.to_owned(), key.to_vec())).cloned())
    }

    fn dedup(&self, id: &RequestId) -> Result<Option<DedupRecord>, StateError> {
        Ok(self.dedup.get(id).cloned())
    }

    fn dedup_expired(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, RequestId)>, StateError> {
        Ok(self
            .dedup_by_time
            .iter()
            .take_while(|(t, _)| *t < before_ms)
            .take(limit)
            .copied()
            .collect())
    }

    fn db_stats(&self, db: &str) -> Result<DbStats, StateError> {
        Ok(self.stats.get(db).copied().unwrap_or_default())
    }

    fn clock_ms(&self) -> Result<u64, StateError> {
        Ok(self.clock_ms)
    }

    fn cluster_id(&self) -> Result<Option<ClusterId>, StateError> {
        Ok(self.cluster_id)
    }
}

impl ContentView for MemState {
    fn chunk_meta(&self, id: &ChunkId) -> Result<Option<ChunkMeta>, StateError> {
        Ok(self.chunk_meta.get(id).copied())
    }

    fn chunk(&self, id: &ChunkId) -> Result<Option<StoredChunk>, StateError> {
        Ok(self.chunks.get(id).cloned())
    }

    fn site(&self, name: &str) -> Result<Option<SiteRecord>, StateError> {
        Ok(self.sites.get(name).cloned())
    }

    fn zero_chunks(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, ChunkId)>, StateError> {
        Ok(self
            .zero
            .iter()
            .take_while(|(t, _)| *t < before_ms)
            .take(limit)
            .copied()
            .collect())
    }
}
