//! What backups need from the store: a consistent read view of the
//! replicated state at one applied index, and building a brand-new data
//! directory from backed-up records (`sen restore cluster`).
//!
//! The backed-up *tables* are the replicated column families, plus a
//! `meta` table holding only the replicated cluster id. Left out: request
//! ids (the 15-minute idempotency window; a restored cluster starts a new
//! one) and the chunk bytes themselves (`chunks`), which the backup stores
//! as content blobs keyed by chunk id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::vote::RaftLeaderId;
use rocksdb::{DB, IteratorMode, ReadOptions, SnapshotWithThreadMode, WriteBatch};
use sen_content::{ChunkId, StoredChunk};
use sen_core::{ClusterId, NodeId};
use sen_raft::apply::{DbStats, SiteRecord};
use sen_raft::{LogId, Membership, NodeInfo, StoredMembership, Vote};

use crate::format::*;
use crate::rocks::cf;
use crate::state::{Applied, StateDb, snapshot_applied_index};
use crate::{LogStore, StoreError, StoreOptions};

/// Tables a backup holds, in backup order.
pub const BACKUP_TABLES: &[&str] = &[
    "meta",
    CF_DBS,
    CF_KV,
    CF_SITES,
    CF_FILES,
    CF_DEPLOYS,
    CF_CHUNK_ZERO,
    CF_CHUNK_META,
];

/// Summary of a site in a view.
#[derive(Debug, Clone)]
pub struct SiteInfo {
    pub name: String,
    pub deployment: Option<u64>,
    pub files: u64,
    pub bytes: u64,
}

/// A consistent, read-only view of the state (one RocksDB snapshot).
pub struct ReadView<'a> {
    db: &'a DB,
    snap: SnapshotWithThreadMode<'a, DB>,
}

impl StateDb {
    /// Run `f` on a consistent view of the live state. The view pins its
    /// generation: an installed snapshot does not pull it away.
    pub fn with_read_view<R>(&self, f: impl FnOnce(&ReadView<'_>) -> R) -> R {
        let generation = self.live();
        let db = generation.db();
        let view = ReadView {
            db,
            snap: db.snapshot(),
        };
        f(&view)
    }
}

impl ReadView<'_> {
    fn ro(&self) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snap);
        ro
    }

    /// The applied log id of the view.
    pub fn applied(&self) -> Result<Option<LogId>, StoreError> {
        match self
            .snap
            .get_cf(cf(self.db, CF_META)?, K_APPLIED)
            .map_err(|e| StoreError::rocks("read the applied index", e))?
        {
            Some(b) => Ok(Some(dec_log_id(&b)?)),
            None => Ok(None),
        }
    }

    pub fn applied_index(&self) -> Result<u64, StoreError> {
        snapshot_applied_index(self.db, &self.snap)
    }

    pub fn cluster_id(&self) -> Result<Option<ClusterId>, StoreError> {
        match self
            .snap
            .get_cf(cf(self.db, CF_META)?, K_CLUSTER_ID)
            .map_err(|e| StoreError::rocks("read the cluster id", e))?
        {
            Some(b) => Ok(Some(dec("cluster id", &b)?)),
            None => Ok(None),
        }
    }

    /// The state digest (as [`StateDb::digest`]) of this view.
    pub fn digest(&self) -> Result<String, StoreError> {
        crate::state::digest_of(self.db, &self.snap)
    }

    /// Every record of a backup table, in key order.
    pub fn scan<E: From<StoreError>>(
        &self,
        table: &str,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if table == "meta" {
            if let Some(b) = self
                .snap
                .get_cf(cf(self.db, CF_META)?, K_CLUSTER_ID)
                .map_err(|e| StoreError::rocks("read the cluster id", e))?
            {
                f(K_CLUSTER_ID, &b)?;
            }
            return Ok(());
        }
        if !BACKUP_TABLES.contains(&table) {
            return Err(StoreError::Invalid(format!("{table} is not a backup table")).into());
        }
        for r in self
            .db
            .iterator_cf_opt(cf(self.db, table)?, self.ro(), IteratorMode::Start)
        {
            let (k, v) = r.map_err(|e| StoreError::rocks(format!("read table {table}"), e))?;
            f(&k, &v)?;
        }
        Ok(())
    }

    /// A stored chunk.
    pub fn chunk(&self, id: &[u8; 32]) -> Result<Option<StoredChunk>, StoreError> {
        match self
            .snap
            .get_cf(cf(self.db, CF_CHUNKS)?, id)
            .map_err(|e| StoreError::rocks("read a chunk", e))?
        {
            Some(b) => Ok(Some(dec("chunk", &b)?)),
            None => Ok(None),
        }
    }

    pub fn sites(&self) -> Result<Vec<SiteInfo>, StoreError> {
        let mut out = Vec::new();
        for r in self
            .db
            .iterator_cf_opt(cf(self.db, CF_SITES)?, self.ro(), IteratorMode::Start)
        {
            let (k, v) = r.map_err(|e| StoreError::rocks("list sites", e))?;
            let rec: SiteRecord = dec("site", &v)?;
            out.push(SiteInfo {
                name: String::from_utf8_lossy(&k).into_owned(),
                deployment: rec.current.as_ref().map(|c| c.id),
                files: rec.current.as_ref().map_or(0, |c| c.files),
                bytes: rec.current.as_ref().map_or(0, |c| c.bytes),
            });
        }
        Ok(out)
    }

    /// Databases with their key count and bytes.
    pub fn databases(&self) -> Result<Vec<(String, DbStats)>, StoreError> {
        let mut out = Vec::new();
        for r in self
            .db
            .iterator_cf_opt(cf(self.db, CF_DBS)?, self.ro(), IteratorMode::Start)
        {
            let (k, v) = r.map_err(|e| StoreError::rocks("list databases", e))?;
            out.push((String::from_utf8_lossy(&k).into_owned(), dec_stats(&v)?));
        }
        Ok(out)
    }
}

/// Builds a new node's data directory from backed-up records, so that
/// `sen server` starts it as a one-node cluster holding exactly that state.
pub struct DataDirBuilder {
    state: StateDb,
    log: LogStore,
    batch: WriteBatch,
    batch_bytes: usize,
    node_id: NodeId,
    cluster_id: Option<ClusterId>,
}

const BATCH_BYTES: usize = 16 << 20;

impl DataDirBuilder {
    /// Start in `dir`, which must not exist or be empty.
    pub fn create(dir: &Path, node_id: NodeId) -> Result<Self, StoreError> {
        if let Ok(mut entries) = std::fs::read_dir(dir)
            && entries.next().is_some()
        {
            return Err(StoreError::Invalid(format!(
                "{} is not empty: restore into a new, empty data directory",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("create {}", dir.display()), e))?;
        let opts = StoreOptions::default();
        let log = LogStore::open(&dir.join("raft"), &opts)?;
        log.claim_node_id(node_id, dir)?;
        let state = StateDb::open(dir, &opts)?;
        Ok(Self {
            state,
            log,
            batch: WriteBatch::default(),
            batch_bytes: 0,
            node_id,
            cluster_id: None,
        })
    }

    /// One record of a backup table.
    pub fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let generation = self.state.live();
        let db = generation.db();
        if table == "meta" {
            if key != K_CLUSTER_ID {
                return Err(StoreError::Invalid(format!(
                    "unexpected meta record {:?}",
                    String::from_utf8_lossy(key)
                )));
            }
            self.cluster_id = Some(dec("cluster id", value)?);
            self.batch.put_cf(cf(db, CF_META)?, key, value);
        } else if BACKUP_TABLES.contains(&table) {
            self.batch.put_cf(cf(db, table)?, key, value);
        } else {
            return Err(StoreError::Invalid(format!(
                "the backup holds an unknown table {table:?}: restore it with a newer Sen"
            )));
        }
        self.batch_bytes += key.len() + value.len();
        if self.batch_bytes >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    /// One content chunk (verified by the caller against its id).
    pub fn put_chunk(&mut self, chunk: &StoredChunk) -> Result<(), StoreError> {
        let generation = self.state.live();
        let db = generation.db();
        let bytes = enc("chunk", chunk)?;
        self.batch_bytes += bytes.len();
        self.batch.put_cf(cf(db, CF_CHUNKS)?, chunk.id.0, bytes);
        if self.batch_bytes >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), StoreError> {
        let generation = self.state.live();
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        generation
            .db()
            .write(batch)
            .map_err(|e| StoreError::rocks("write restored records", e))
    }

    /// Make the state applied at (`term`, `index`) with this node as the
    /// only voter at `addr`, seed the Raft log to start after it, flush
    /// everything and build a first snapshot (for nodes that join later).
    /// Returns the cluster id and the state digest of the built state.
    pub fn finish(mut self, term: u64, index: u64, addr: &str) -> Result<(ClusterId, String), StoreError> {
        let cluster_id = self
            .cluster_id
            .ok_or_else(|| StoreError::Invalid("the backup holds no cluster id (meta table)".into()))?;
        let log_id = LogId::new(
            openraft::impls::leader_id_std::LeaderId {
                term,
                voted_for: self.node_id,
            }
            .to_committed(),
            index,
        );
        let membership = Membership::new(
            vec![BTreeSet::from([self.node_id])],
            BTreeMap::from([(self.node_id, NodeInfo { addr: addr.to_owned() })]),
        )
        .map_err(|e| StoreError::Invalid(format!("membership of the restored node: {e}")))?;
        let stored = StoredMembership::new(Some(log_id), membership);
        {
            let generation = self.state.live();
            let db = generation.db();
            let meta = cf(db, CF_META)?;
            self.batch.put_cf(meta, K_APPLIED, enc_log_id(&log_id)?);
            self.batch.put_cf(meta, K_MEMBERSHIP, enc_membership(&stored)?);
            self.batch
                .put_cf(meta, K_SNAPSHOT_INSTALLED, enc("snapshot index", &index)?);
        }
        self.write_batch()?;
        self.state.flush()?;
        *self.state.applied.write().unwrap_or_else(|p| p.into_inner()) = Applied {
            log_id: Some(log_id),
            membership: stored,
        };
        self.log.seed_after_restore(log_id, Vote::new(term, self.node_id))?;
        self.log.set_cluster_id(self.node_id, cluster_id, false)?;
        self.state.build_snapshot()?;
        let (_, digest) = self.state.digest()?;
        Ok((cluster_id, digest))
    }
}

/// `ChunkId` from raw bytes (for callers holding `[u8; 32]`).
pub fn chunk_id(b: [u8; 32]) -> ChunkId {
    ChunkId(b)
}
