//! What backups need from the store: a consistent read view of the
//! replicated state at one applied index ([`ViewSource`], the store as a
//! `sen_backup::backup::StateSource`), and building a brand-new data
//! directory from backed-up records ([`DataDirSink`], the store as a
//! `sen_backup::restore::StateSink`, for `sen restore cluster`).
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
use sen_raft::schema::{DbStats, Record, SiteRecord, tables};
use sen_raft::{Entry, LogId, Membership, NodeInfo, StoredMembership, Vote};

use crate::format::*;
use crate::rocks::cf;
use crate::state::{Applied, StateDb, snapshot_applied_index};
use crate::{LogStore, StoreError, StoreOptions};

pub use sen_raft::schema::tables::BACKUP_TABLES;

/// Called for each `(key, value)` row of a scanned table.
pub type ScanVisitor<'a, E> = dyn FnMut(&[u8], &[u8]) -> Result<(), E> + 'a;

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
    /// Reads of a backup pass over everything once: they do not fill the
    /// block cache, which keeps what the node serves.
    fn ro(&self) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snap);
        ro.fill_cache(false);
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
    pub fn scan<E: From<StoreError>>(&self, table: &str, f: &mut ScanVisitor<'_, E>) -> Result<(), E> {
        if table == tables::META {
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
            .db
            .get_cf_opt(cf(self.db, CF_CHUNKS)?, id, &self.ro())
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
            let rec: SiteRecord = SiteRecord::decode(&v)?;
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
        if table == tables::META {
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

    /// The digest of what is written so far (the restored snapshot, before
    /// any replay).
    pub fn digest(&mut self) -> Result<String, StoreError> {
        self.write_batch()?;
        Ok(self.state.digest()?.1)
    }

    /// Apply archived log entries on top of the restored records (a
    /// point-in-time restore): exactly what the state machine did.
    pub fn replay(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        self.write_batch()?;
        for batch in entries.chunks(256) {
            self.state.apply_entries(batch)?;
        }
        Ok(())
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
        self.state.set_applied(Applied {
            log_id: Some(log_id),
            membership: stored,
        });
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

// ---------------------------------------------------------------------------
// The store as the backup crate's source and sink.

use sen_backup::RepoError;
use sen_backup::backup::{SourcePosition, StateSource};
use sen_backup::format::{DbSummary, SiteSummary};

fn source_err(e: StoreError) -> RepoError {
    RepoError::Source(e.to_string())
}

/// A node's replica seen through one consistent view, as a backup source.
pub struct ViewSource<'a, 'v> {
    view: &'a ReadView<'v>,
    position: SourcePosition,
}

impl<'a, 'v> ViewSource<'a, 'v> {
    /// The view's position is computed once here (the state digest is one
    /// pass over the state).
    pub fn new(view: &'a ReadView<'v>, node_id: NodeId) -> Result<Self, RepoError> {
        let applied = view.applied().map_err(source_err)?;
        let cluster_id = view
            .cluster_id()
            .map_err(source_err)?
            .ok_or_else(|| RepoError::Usage("this node holds no cluster state yet: nothing to back up".into()))?;
        let position = SourcePosition {
            cluster_id: cluster_id.to_string(),
            raft_index: applied.map_or(0, |l| l.index),
            raft_term: applied.map_or(0, |l| l.leader_id.term),
            node_id,
            state_digest: view.digest().map_err(source_err)?,
        };
        Ok(Self { view, position })
    }
}

/// Carries a repository error through the store's scan.
struct ScanError(RepoError);

impl From<StoreError> for ScanError {
    fn from(e: StoreError) -> Self {
        ScanError(source_err(e))
    }
}

impl StateSource for ViewSource<'_, '_> {
    fn position(&self) -> SourcePosition {
        self.position.clone()
    }

    fn tables(&self) -> Vec<String> {
        BACKUP_TABLES.iter().map(|s| (*s).to_owned()).collect()
    }

    fn scan(&self, table: &str, f: &mut sen_backup::backup::RowVisitor<'_>) -> Result<(), RepoError> {
        self.view
            .scan(table, &mut |k, v| f(k, v).map_err(ScanError))
            .map_err(|e: ScanError| e.0)
    }

    fn chunk(&self, id: &[u8; 32]) -> Result<Option<StoredChunk>, RepoError> {
        self.view.chunk(id).map_err(source_err)
    }

    fn sites(&self) -> Result<Vec<SiteSummary>, RepoError> {
        Ok(self
            .view
            .sites()
            .map_err(source_err)?
            .into_iter()
            .map(|s| SiteSummary {
                name: s.name,
                deployment: s.deployment,
                files: s.files,
                bytes: s.bytes,
            })
            .collect())
    }

    fn databases(&self) -> Result<Vec<DbSummary>, RepoError> {
        Ok(self
            .view
            .databases()
            .map_err(source_err)?
            .into_iter()
            .map(|(name, s)| DbSummary {
                name,
                keys: s.keys,
                bytes: s.bytes,
            })
            .collect())
    }
}

/// A new data directory as the target of `sen_backup::restore::cluster`:
/// node `id`, the only voter, reachable at `addr`.
pub struct DataDirSink {
    builder: Option<DataDirBuilder>,
    addr: String,
    /// Archived entries (their log encoding) to apply after the snapshot.
    replay: Vec<Vec<u8>>,
    replayed: Option<Replayed>,
}

/// Where a replay of archived entries left the restored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub index: u64,
    pub term: u64,
    pub entries: u64,
    pub digest: String,
}

impl DataDirSink {
    /// Start in `dir`, which must not exist or be empty.
    pub fn create(dir: &Path, id: NodeId, addr: &str) -> Result<Self, StoreError> {
        Ok(Self {
            builder: Some(DataDirBuilder::create(dir, id)?),
            addr: addr.to_owned(),
            replay: Vec::new(),
            replayed: None,
        })
    }

    /// After the snapshot, apply these archived entries (each in the
    /// log's encoding, in index order).
    pub fn with_replay(mut self, entries: Vec<Vec<u8>>) -> Self {
        self.replay = entries;
        self
    }

    /// What the replay did (after `finish`).
    pub fn replayed(&self) -> Option<&Replayed> {
        self.replayed.as_ref()
    }

    fn builder(&mut self) -> Result<&mut DataDirBuilder, RepoError> {
        self.builder
            .as_mut()
            .ok_or_else(|| RepoError::Target("the restored data directory is already finished".into()))
    }
}

fn target_err(e: StoreError) -> RepoError {
    RepoError::Target(format!("writing the restored data directory: {e}"))
}

impl sen_backup::restore::StateSink for DataDirSink {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), RepoError> {
        self.builder()?.put(table, key, value).map_err(target_err)
    }

    fn put_chunk(&mut self, chunk: &StoredChunk) -> Result<(), RepoError> {
        self.builder()?.put_chunk(chunk).map_err(target_err)
    }

    fn finish(&mut self, snapshot: &sen_backup::Snapshot) -> Result<(String, String), RepoError> {
        let b = self
            .builder
            .take()
            .ok_or_else(|| RepoError::Target("the restored data directory is already finished".into()))?;
        let mut b = b;
        if self.replay.is_empty() {
            let (cluster_id, digest) = b
                .finish(snapshot.raft_term, snapshot.raft_index, &self.addr)
                .map_err(target_err)?;
            return Ok((cluster_id.to_string(), digest));
        }
        // The snapshot is verified before anything is replayed on it.
        let at_snapshot = b.digest().map_err(target_err)?;
        let entries = std::mem::take(&mut self.replay)
            .iter()
            .map(|bytes| crate::format::dec_entry(bytes))
            .collect::<Result<Vec<Entry>, _>>()
            .map_err(|e| RepoError::Corrupt(format!("an archived log entry: {e}")))?;
        if entries
            .first()
            .is_some_and(|e| e.log_id.index != snapshot.raft_index + 1)
            || entries.windows(2).any(|w| w[1].log_id.index != w[0].log_id.index + 1)
        {
            return Err(RepoError::Corrupt(
                "the archived entries do not follow the snapshot one by one".into(),
            ));
        }
        b.replay(&entries).map_err(target_err)?;
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Err(RepoError::Corrupt("no archived entry to replay".into()));
        };
        let (cluster_id, digest) = b
            .finish(last.leader_id.term, last.index, &self.addr)
            .map_err(target_err)?;
        self.replayed = Some(Replayed {
            index: last.index,
            term: last.leader_id.term,
            entries: entries.len() as u64,
            digest,
        });
        Ok((cluster_id.to_string(), at_snapshot))
    }
}
