//! The state DB: key-value data, request ids, database statistics and the
//! applied log id, in one RocksDB instance that can be replaced wholesale by
//! an installed snapshot.
//!
//! The live instance is a *generation* (`state/gen-N`), named by the
//! `state/CURRENT` file. Installing a snapshot builds generation N+1 next to
//! it, switches `CURRENT` atomically, and retires N (deleted once the last
//! reader drops it). Readers take an `Arc` of the live generation, so a swap
//! never pulls a DB out from under a running read.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch};
use sen_content::{ChunkId, StoredChunk};
use sen_core::{ClusterId, RequestId};
use sen_raft::apply::{
    ChunkMeta, ContentView, DbStats, DedupRecord, DeploymentInfo, FileRecord, KvRecord, Mutation, SiteRecord,
    StateError, StateView,
};
use sen_raft::schema::{Record, tables};
use sen_raft::{Applier, Entry, LogId, Outcome, Response, StoredMembership};

use crate::format::*;
use crate::rocks::{self, Kind, cf};
use crate::snapshot::SnapshotHandle;
use crate::{StoreError, StoreOptions};

pub(crate) const STATE_CFS: &[&str] = &[
    CF_KV,
    CF_DEDUP,
    CF_DEDUP_TIME,
    CF_DBS,
    CF_CHUNKS,
    CF_CHUNK_META,
    CF_CHUNK_ZERO,
    CF_SITES,
    CF_FILES,
    CF_DEPLOYS,
];

/// Most expired request-id records deleted per applied batch.
const DEDUP_GC_PER_BATCH: usize = 256;

/// One live or retired state DB instance.
pub(crate) struct Generation {
    db: Option<DB>,
    pub(crate) path: PathBuf,
    retired: AtomicBool,
}

impl Generation {
    pub(crate) fn db(&self) -> &DB {
        // Only `Drop` takes the DB out.
        self.db.as_ref().expect("state generation is open until dropped")
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        let db = self.db.take();
        if self.retired.load(Ordering::SeqCst) {
            // Closing RocksDB and deleting its files take a while: not on
            // the dropping (possibly async) thread.
            let path = self.path.clone();
            let _ = std::thread::Builder::new()
                .name("sen-retire-state".into())
                .spawn(move || {
                    drop(db);
                    remove_now(&path, "retired state generation");
                });
        }
    }
}

/// Delete a directory tree on a short-lived background thread.
pub(crate) fn remove_in_background(path: PathBuf, what: &'static str) {
    let spawned = std::thread::Builder::new().name("sen-remove".into()).spawn({
        let path = path.clone();
        move || remove_now(&path, what)
    });
    if spawned.is_err() {
        remove_now(&path, what);
    }
}

fn remove_now(path: &Path, what: &str) {
    if let Err(e) = fs::remove_dir_all(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), "cannot remove {what}: {e}");
    }
}

/// The applied position, cached in memory and stored in `meta`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Applied {
    pub log_id: Option<LogId>,
    pub membership: StoredMembership,
}

/// One database as listed by `sen kv dbs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInfo {
    pub name: String,
    pub keys: u64,
    pub bytes: u64,
}

/// One page of a listing by name (sites, databases).
#[derive(Debug, Clone)]
pub struct NamePage<T> {
    pub items: Vec<T>,
    /// The last name on this page if more may follow (the next page's
    /// `start_after`), else `None`.
    pub next: Option<String>,
}

/// Read up to `limit` entries of `table` after the key `start_after`
/// (empty: from the first), in key order. Returns them and, if more may
/// follow, the last key read (the next page's `start_after`).
fn key_page<T>(
    db: &DB,
    table: &str,
    ro: ReadOptions,
    start_after: &[u8],
    limit: usize,
    what: &str,
    mut decode: impl FnMut(&[u8], &[u8]) -> Result<T, StoreError>,
) -> Result<(Vec<T>, Option<Vec<u8>>), StoreError> {
    let mode = if start_after.is_empty() {
        IteratorMode::Start
    } else {
        IteratorMode::From(start_after, Direction::Forward)
    };
    let mut items = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    for r in db.iterator_cf_opt(cf(db, table)?, ro, mode) {
        let (k, v) = r.map_err(|e| StoreError::rocks(what, e))?;
        if &*k == start_after {
            continue;
        }
        if items.len() == limit {
            return Ok((items, last));
        }
        items.push(decode(&k, &v)?);
        last = Some(k.to_vec());
    }
    Ok((items, None))
}

/// [`key_page`] for a table keyed by name (sites, databases).
fn name_page<T>(
    db: &DB,
    table: &str,
    ro: ReadOptions,
    start_after: &str,
    limit: usize,
    what: &str,
    mut decode: impl FnMut(String, &[u8]) -> Result<T, StoreError>,
) -> Result<NamePage<T>, StoreError> {
    let (items, last) = key_page(db, table, ro, start_after.as_bytes(), limit, what, |k, v| {
        decode(String::from_utf8_lossy(k).into_owned(), v)
    })?;
    Ok(NamePage {
        items,
        next: last.map(|k| String::from_utf8_lossy(&k).into_owned()),
    })
}

/// One page of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    pub items: Vec<(Vec<u8>, KvRecord)>,
    /// More keys match after the last one returned.
    pub more: bool,
    /// Applied index of the state the page was read from.
    pub applied_index: u64,
}

/// The state DB of one node. See the module docs.
pub struct StateDb {
    pub(crate) data_dir: PathBuf,
    pub(crate) opts: StoreOptions,
    live: RwLock<Arc<Generation>>,
    /// Held while a batch is written, a snapshot checkpoint is taken, or a
    /// snapshot is installed, so those see whole batches only.
    gate: Mutex<()>,
    applied: RwLock<Applied>,
    pub(crate) current_snapshot: Mutex<Option<SnapshotHandle>>,
    /// Bumped after every applied batch that changes an access-control
    /// record (`sen-system` keys under `auth/` and `site/`) and after a snapshot is
    /// installed: caches of users, grants and tokens are valid while it
    /// stays the same.
    auth_epoch: std::sync::atomic::AtomicU64,
    /// Bumped after every applied batch that changes a site's files
    /// (`PutSite`, `DeleteSite`, `ReplaceFiles`, `DeleteFiles`) and after a
    /// snapshot is installed: a cache of served files is valid while it
    /// stays the same (`sen_node::http::cache`).
    content_epoch: std::sync::atomic::AtomicU64,
    /// The applied log index, readable without a lock.
    applied_index: std::sync::atomic::AtomicU64,
    /// Every request-id time-index key older than this (ms) was deleted by
    /// an applied batch: the next collection starts its scan here instead
    /// of at the front of `CF_DEDUP_TIME`, where the tombstones of earlier
    /// collections lie until a compaction (after a day of traffic, millions
    /// of them, skipped by every applied batch). 0 after opening or
    /// installing a state: one scan from the front.
    dedup_gc_from: std::sync::atomic::AtomicU64,
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let what = what.into();
    move |e| StoreError::io(what, e)
}

/// Write `contents` to `path` atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    f.write_all(contents)
        .map_err(io_err(format!("write {}", tmp.display())))?;
    f.sync_all().map_err(io_err(format!("fsync {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io_err(format!("rename {} to {}", tmp.display(), path.display())))?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

impl StateDb {
    /// What RocksDB holds of the store's shared memory now (both DBs).
    pub fn memory_usage(&self) -> crate::MemoryUsage {
        self.opts.memory.usage()
    }

    /// Open the live generation under `data_dir/state`, creating the first
    /// one on a new node, and load the latest snapshot.
    pub fn open(data_dir: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        let state_dir = data_dir.join("state");
        for d in [&state_dir, &data_dir.join("snapshots"), &data_dir.join("incoming")] {
            fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
        }
        // Partial receives from before a restart are useless.
        clear_dir(&data_dir.join("incoming"))?;

        let current_file = state_dir.join("CURRENT");
        let name = match fs::read_to_string(&current_file) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = gen_name(1);
                write_atomic(&current_file, name.as_bytes())?;
                name
            }
            Err(e) => {
                return Err(StoreError::io(format!("read {}", current_file.display()), e));
            }
        };
        if parse_gen(&name).is_none() {
            return Err(StoreError::Invalid(format!(
                "{} names {name:?}, which is not a state generation; the data directory is damaged",
                current_file.display()
            )));
        }
        // Remove generations left over from an interrupted install.
        for entry in fs::read_dir(&state_dir).map_err(io_err(format!("list {}", state_dir.display())))? {
            let entry = entry.map_err(io_err("list state generations"))?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            if fname.starts_with("gen-") && fname != name {
                tracing::info!("removing stale state generation {fname}");
                fs::remove_dir_all(entry.path()).map_err(io_err(format!("remove {}", entry.path().display())))?;
            }
        }
        let path = state_dir.join(&name);
        let db = rocks::open(
            &path,
            Kind::State {
                write_buffer_bytes: opts.state_write_buffer_bytes,
            },
            STATE_CFS,
            "state DB",
            &opts.memory,
        )?;
        let applied = read_applied(&db)?;
        let applied_index = applied.log_id.map_or(0, |l| l.index);
        let me = Self {
            data_dir: data_dir.to_owned(),
            opts: opts.clone(),
            live: RwLock::new(Arc::new(Generation {
                db: Some(db),
                path,
                retired: AtomicBool::new(false),
            })),
            gate: Mutex::new(()),
            applied: RwLock::new(applied),
            auth_epoch: std::sync::atomic::AtomicU64::new(0),
            content_epoch: std::sync::atomic::AtomicU64::new(0),
            applied_index: std::sync::atomic::AtomicU64::new(applied_index),
            dedup_gc_from: std::sync::atomic::AtomicU64::new(0),
            current_snapshot: Mutex::new(None),
        };
        me.load_latest_snapshot()?;
        Ok(me)
    }

    pub(crate) fn live(&self) -> Arc<Generation> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn applied(&self) -> Applied {
        self.applied.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The applied log index (0 before anything was applied).
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }

    /// Replace the live generation (under the gate).
    pub(crate) fn swap_live(&self, new: Generation, applied: Applied) {
        let old = std::mem::replace(
            &mut *self.live.write().unwrap_or_else(|p| p.into_inner()),
            Arc::new(new),
        );
        old.retire();
        let index = applied.log_id.map_or(0, |l| l.index);
        *self.applied.write().unwrap_or_else(|p| p.into_inner()) = applied;
        self.applied_index.store(index, Ordering::Release);
        self.dedup_gc_from.store(0, Ordering::Release);
        self.bump_auth_epoch();
        self.content_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// See the field `auth_epoch`.
    pub fn auth_epoch(&self) -> u64 {
        self.auth_epoch.load(Ordering::Acquire)
    }

    /// Replace what the state says it applied (a restore wrote the state
    /// directly): every cache of it is stale.
    pub(crate) fn set_applied(&self, applied: Applied) {
        let index = applied.log_id.map_or(0, |l| l.index);
        *self.applied.write().unwrap_or_else(|p| p.into_inner()) = applied;
        self.applied_index.store(index, Ordering::Release);
        self.dedup_gc_from.store(0, Ordering::Release);
        self.bump_auth_epoch();
        self.content_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// See the field `content_epoch`. Read it before reading files: an
    /// answer built from reads made after a change has a newer epoch.
    pub fn content_epoch(&self) -> u64 {
        self.content_epoch.load(Ordering::Acquire)
    }

    fn bump_auth_epoch(&self) {
        self.auth_epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn next_gen_path(&self) -> (String, PathBuf) {
        let live = self.live();
        let cur = live
            .path
            .file_name()
            .and_then(|n| parse_gen(&n.to_string_lossy()))
            .unwrap_or(0);
        let name = gen_name(cur + 1);
        let path = self.data_dir.join("state").join(&name);
        (name, path)
    }

    pub(crate) fn set_current_gen(&self, name: &str) -> Result<(), StoreError> {
        write_atomic(&self.data_dir.join("state").join("CURRENT"), name.as_bytes())
    }

    /// Apply a batch of committed entries and return one response per entry.
    /// The batch is written atomically with the new applied log id, without
    /// fsync (see the crate docs for why that is safe).
    pub fn apply_entries(&self, entries: &[Entry]) -> Result<Vec<Response>, StoreError> {
        let Some(last) = entries.last() else {
            return Ok(Vec::new());
        };
        let _gate = self.gate();
        let generation = self.live();
        let db = generation.db();
        let view = RocksView {
            dedup_from: self.dedup_gc_from.load(Ordering::Acquire),
            ..RocksView::new(db)
        };
        let mut applier = Applier::new(&view);
        // One MultiGet for the keys and request ids the batch reads first.
        applier
            .prefetch(entries.iter().filter_map(|e| match &e.payload {
                openraft::EntryPayload::Normal(req) => Some(req),
                _ => None,
            }))
            .map_err(state_err)?;
        let mut responses = Vec::with_capacity(entries.len());
        let mut membership = None;
        for entry in entries {
            let index = entry.log_id.index;
            let response = match &entry.payload {
                openraft::EntryPayload::Normal(req) => applier.apply(index, req).map_err(state_err)?,
                openraft::EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    none_response(index)
                }
                openraft::EntryPayload::Blank => none_response(index),
            };
            responses.push(response);
        }
        applier.gc_dedup(DEDUP_GC_PER_BATCH).map_err(state_err)?;
        let mutations = applier.finish();
        let auth_changed = mutations.iter().any(|m| match m {
            Mutation::PutKv { db, key, .. } | Mutation::DeleteKv { db, key } => {
                db == sen_raft::schema::system::SYSTEM_DB && sen_raft::schema::system::is_access_key(key)
            }
            _ => false,
        });
        let content_changed = mutations.iter().any(|m| {
            matches!(
                m,
                Mutation::PutSite { .. }
                    | Mutation::DeleteSite { .. }
                    | Mutation::ReplaceFiles { .. }
                    | Mutation::DeleteFiles { .. }
            )
        });

        let mut batch = WriteBatch::default();
        write_mutations(db, &mut batch, mutations)?;
        let meta = cf(db, CF_META)?;
        batch.put_cf(meta, K_APPLIED, enc_log_id(&last.log_id)?);
        if let Some(m) = &membership {
            batch.put_cf(meta, K_MEMBERSHIP, enc_membership(m)?);
        }
        db.write(batch)
            .map_err(|e| StoreError::rocks("write applied entries to the state DB", e))?;
        self.dedup_gc_from.fetch_max(view.dedup_until.get(), Ordering::AcqRel);
        if auth_changed {
            self.bump_auth_epoch();
        }
        if content_changed {
            self.content_epoch.fetch_add(1, Ordering::AcqRel);
        }

        let mut applied = self.applied.write().unwrap_or_else(|p| p.into_inner());
        applied.log_id = Some(last.log_id);
        self.applied_index.store(last.log_id.index, Ordering::Release);
        if let Some(m) = membership {
            applied.membership = m;
        }
        Ok(responses)
    }

    /// Flush the memtables to disk (used at shutdown, so a restart does not
    /// re-apply from the log).
    pub fn flush(&self) -> Result<(), StoreError> {
        let generation = self.live();
        let db = generation.db();
        for name in STATE_CFS.iter().chain([&CF_META]) {
            db.flush_cf(cf(db, name)?)
                .map_err(|e| StoreError::rocks("flush the state DB", e))?;
        }
        Ok(())
    }

    /// Read one key, with the applied index of the state it was read from.
    pub fn get(&self, db_name: &str, key: &[u8]) -> Result<(Option<KvRecord>, u64), StoreError> {
        let generation = self.live();
        let db = generation.db();
        let snap = db.snapshot();
        let applied = snapshot_applied_index(db, &snap)?;
        let rec = match snap
            .get_cf(cf(db, CF_KV)?, kv_key(db_name, key))
            .map_err(|e| StoreError::rocks("read a key", e))?
        {
            Some(b) => Some(dec_kv(&b)?),
            None => None,
        };
        Ok((rec, applied))
    }

    /// Read up to `limit` keys of `db_name` that start with `prefix` and sort
    /// after `start_after` (exclusive; `None` = from the first), stopping
    /// early once the page holds `max_bytes` of keys and values.
    pub fn scan(
        &self,
        db_name: &str,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
        keys_only: bool,
    ) -> Result<ScanPage, StoreError> {
        let generation = self.live();
        let db = generation.db();
        let snap = db.snapshot();
        let applied = snapshot_applied_index(db, &snap)?;
        let full_prefix = kv_key(db_name, prefix);
        let start = match start_after {
            // The smallest key strictly greater than `after` is `after\0`.
            Some(after) if after >= prefix => {
                let mut k = kv_key(db_name, after);
                k.push(0);
                k
            }
            _ => full_prefix.clone(),
        };
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let mut bytes = 0usize;
        let mut page = ScanPage {
            applied_index: applied,
            ..Default::default()
        };
        let iter = db.iterator_cf_opt(cf(db, CF_KV)?, ro, IteratorMode::From(&start, Direction::Forward));
        for r in iter {
            let (k, v) = r.map_err(|e| StoreError::rocks("scan keys", e))?;
            if !k.starts_with(&full_prefix) {
                break;
            }
            if page.items.len() == limit || (bytes >= max_bytes && !page.items.is_empty()) {
                page.more = true;
                break;
            }
            let (_, user_key) = split_kv_key(&k)?;
            let mut rec = dec_kv(&v)?;
            if keys_only {
                rec.value = Vec::new();
            }
            bytes += user_key.len() + rec.value.len();
            page.items.push((user_key.to_vec(), rec));
        }
        Ok(page)
    }

    /// Whether database `name` holds any key.
    pub fn database_exists(&self, name: &str) -> Result<bool, StoreError> {
        let generation = self.live();
        let db = generation.db();
        Ok(db
            .get_pinned_cf(cf(db, CF_DBS)?, name.as_bytes())
            .map_err(|e| StoreError::rocks("look up a database", e))?
            .is_some())
    }

    /// The bytes (keys and values) database `name` holds; 0 if none.
    pub fn database_bytes(&self, name: &str) -> Result<u64, StoreError> {
        let generation = self.live();
        let db = generation.db();
        Ok(db
            .get_pinned_cf(cf(db, CF_DBS)?, name.as_bytes())
            .map_err(|e| StoreError::rocks("look up a database", e))?
            .map(|v| dec_stats(&v))
            .transpose()?
            .map_or(0, |s| s.bytes))
    }

    /// How many databases exist, counting at most `limit` (enough to
    /// compare with a configured maximum).
    pub fn count_databases(&self, limit: usize) -> Result<usize, StoreError> {
        self.count(CF_DBS, limit, "count databases")
    }

    /// How many sites exist, counting at most `limit`.
    pub fn count_sites(&self, limit: usize) -> Result<usize, StoreError> {
        self.count(CF_SITES, limit, "count sites")
    }

    fn count(&self, table: &str, limit: usize, what: &str) -> Result<usize, StoreError> {
        let generation = self.live();
        let db = generation.db();
        let mut n = 0;
        for r in db.iterator_cf(cf(db, table)?, IteratorMode::Start).take(limit) {
            r.map_err(|e| StoreError::rocks(what, e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Every database with its size.
    pub fn databases(&self) -> Result<(Vec<DbInfo>, u64), StoreError> {
        let (page, applied) = self.databases_page("", usize::MAX)?;
        Ok((page.items, applied))
    }

    /// Up to `limit` databases after `start_after`, by name, with the
    /// applied index of the view they were read from.
    pub fn databases_page(&self, start_after: &str, limit: usize) -> Result<(NamePage<DbInfo>, u64), StoreError> {
        let generation = self.live();
        let db = generation.db();
        let snap = db.snapshot();
        let applied = snapshot_applied_index(db, &snap)?;
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let page = name_page(db, CF_DBS, ro, start_after, limit, "list databases", |name, v| {
            let stats = dec_stats(v)?;
            Ok(DbInfo {
                name,
                keys: stats.keys,
                bytes: stats.bytes,
            })
        })?;
        Ok((page, applied))
    }

    /// Log index of the snapshot the live state was installed from (0 if it
    /// was built from the local log alone).
    pub fn snapshot_installed_index(&self) -> Result<u64, StoreError> {
        let generation = self.live();
        let db = generation.db();
        match db
            .get_cf(cf(db, CF_META)?, K_SNAPSHOT_INSTALLED)
            .map_err(|e| StoreError::rocks("read the installed snapshot index", e))?
        {
            Some(b) => dec("snapshot index", &b),
            None => Ok(0),
        }
    }

    /// The cluster id recorded in the replicated state, if any.
    pub fn cluster_id(&self) -> Result<Option<ClusterId>, StoreError> {
        let generation = self.live();
        RocksView::new(generation.db())
            .cluster_id()
            .map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// A digest of the replicated state (cluster id, every key with its value
    /// and revisions, sites, file index, deployments and chunk metadata) and
    /// the applied index it was taken at.
    /// Equal on every node at the same applied index. Request-id records are
    /// left out: expired ones are deleted at different times on different
    /// nodes without changing any result.
    pub fn digest(&self) -> Result<(u64, String), StoreError> {
        self.digest_skipping(&[])
    }

    /// [`StateDb::digest`] without the key-value records whose stored key
    /// begins with one of `skip` (e.g. the audit log, which every request
    /// grows).
    pub fn digest_skipping(&self, skip: &[Vec<u8>]) -> Result<(u64, String), StoreError> {
        let generation = self.live();
        let db = generation.db();
        let snap = db.snapshot();
        let applied = snapshot_applied_index(db, &snap)?;
        Ok((applied, digest_filtered(db, &snap, skip)?))
    }

    /// Request ids applied within the deduplication window, with the
    /// revision each took effect at (for checkers that resolve the outcome
    /// of writes whose acknowledgement was lost).
    pub fn applied_request_ids(&self) -> Result<Vec<(RequestId, u64)>, StoreError> {
        Ok(self.applied_request_ids_page(&[], usize::MAX)?.0)
    }

    /// Up to `limit` applied request ids after `start_after`, by id, and
    /// whether more follow.
    pub fn applied_request_ids_page(
        &self,
        start_after: &[u8],
        limit: usize,
    ) -> Result<(Vec<(RequestId, u64)>, bool), StoreError> {
        let generation = self.live();
        let db = generation.db();
        let (ids, last) = key_page(
            db,
            CF_DEDUP,
            ReadOptions::default(),
            start_after,
            limit,
            "list request ids",
            |k, v| {
                let id =
                    RequestId::from_slice(k).ok_or_else(|| StoreError::Invalid("corrupt request id key".into()))?;
                Ok((id, dec_dedup(v)?.response.revision))
            },
        )?;
        Ok((ids, last.is_some()))
    }
}

/// The state digest of one RocksDB snapshot (see [`StateDb::digest`]).
pub(crate) fn digest_of(db: &DB, snap: &rocksdb::SnapshotWithThreadMode<'_, DB>) -> Result<String, StoreError> {
    digest_filtered(db, snap, &[])
}

fn digest_filtered(
    db: &DB,
    snap: &rocksdb::SnapshotWithThreadMode<'_, DB>,
    skip_kv: &[Vec<u8>],
) -> Result<String, StoreError> {
    let meta = cf(db, CF_META)?;
    let mut h = blake3::Hasher::new();
    h.update(b"sen-state-digest-v1");
    if let Some(b) = snap
        .get_cf(meta, K_CLUSTER_ID)
        .map_err(|e| StoreError::rocks("read the cluster id", e))?
    {
        h.update(&b);
    }
    // Whole records of the replicated tables. Chunk data is left out:
    // a chunk's content is its own hash, and `chunk_meta` has one record
    // per stored chunk. `chunk_zero` decides what future garbage
    // collections delete, so it is in.
    for name in [CF_KV, CF_CHUNK_META, CF_CHUNK_ZERO, CF_SITES, CF_FILES, CF_DEPLOYS] {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(snap);
        h.update(name.as_bytes());
        for r in db.iterator_cf_opt(cf(db, name)?, ro, IteratorMode::Start) {
            let (k, v) = r.map_err(|e| StoreError::rocks("read the state for the digest", e))?;
            if name == CF_KV && skip_kv.iter().any(|p| k.starts_with(p)) {
                continue;
            }
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(&k);
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(&v);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// The applied index as seen by a RocksDB snapshot (0 before anything).
pub(crate) fn snapshot_applied_index(
    db: &DB,
    snap: &rocksdb::SnapshotWithThreadMode<'_, DB>,
) -> Result<u64, StoreError> {
    match snap
        .get_cf(cf(db, CF_META)?, K_APPLIED)
        .map_err(|e| StoreError::rocks("read the applied index", e))?
    {
        Some(b) => Ok(dec_log_id(&b)?.index),
        None => Ok(0),
    }
}

fn none_response(index: u64) -> Response {
    Response {
        revision: index,
        duplicate: false,
        outcome: Outcome::None,
    }
}

fn state_err(e: StateError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

pub(crate) fn gen_name(n: u64) -> String {
    format!("gen-{n:06}")
}

fn parse_gen(name: &str) -> Option<u64> {
    name.strip_prefix("gen-")?.parse().ok()
}

pub(crate) fn clear_dir(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))? {
        let entry = entry.map_err(io_err(format!("list {}", dir.display())))?;
        let p = entry.path();
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.map_err(io_err(format!("remove {}", p.display())))?;
    }
    Ok(())
}

pub(crate) fn read_applied(db: &DB) -> Result<Applied, StoreError> {
    let meta = cf(db, CF_META)?;
    let log_id = match db
        .get_cf(meta, K_APPLIED)
        .map_err(|e| StoreError::rocks("read the applied log id", e))?
    {
        Some(b) => Some(dec_log_id(&b)?),
        None => None,
    };
    let membership = match db
        .get_cf(meta, K_MEMBERSHIP)
        .map_err(|e| StoreError::rocks("read the membership", e))?
    {
        Some(b) => dec_membership(&b)?,
        None => StoredMembership::default(),
    };
    Ok(Applied { log_id, membership })
}

pub(crate) fn open_generation(path: PathBuf, opts: &StoreOptions) -> Result<Generation, StoreError> {
    let db = rocks::open(
        &path,
        Kind::State {
            write_buffer_bytes: opts.state_write_buffer_bytes,
        },
        STATE_CFS,
        "state DB",
        &opts.memory,
    )?;
    Ok(Generation {
        db: Some(db),
        path,
        retired: AtomicBool::new(false),
    })
}

fn write_mutations(db: &DB, batch: &mut WriteBatch, mutations: Vec<Mutation>) -> Result<(), StoreError> {
    let kv = cf(db, CF_KV)?;
    let dedup = cf(db, CF_DEDUP)?;
    let dedup_time = cf(db, CF_DEDUP_TIME)?;
    let dbs = cf(db, CF_DBS)?;
    let meta = cf(db, CF_META)?;
    let chunks = cf(db, CF_CHUNKS)?;
    let chunk_meta = cf(db, CF_CHUNK_META)?;
    let chunk_zero = cf(db, CF_CHUNK_ZERO)?;
    let sites = cf(db, CF_SITES)?;
    let files = cf(db, CF_FILES)?;
    let deploys = cf(db, CF_DEPLOYS)?;
    for m in mutations {
        match m {
            Mutation::PutKv { db, key, record } => batch.put_cf(kv, kv_key(&db, &key), enc_kv(&record)?),
            Mutation::DeleteKv { db, key } => batch.delete_cf(kv, kv_key(&db, &key)),
            Mutation::PutDedup { id, record } => {
                batch.put_cf(dedup_time, dedup_time_key(record.at_ms, &id.0), []);
                batch.put_cf(dedup, id.0, enc_dedup(&record)?);
            }
            Mutation::DeleteDedup { id, at_ms } => {
                batch.delete_cf(dedup_time, dedup_time_key(at_ms, &id.0));
                batch.delete_cf(dedup, id.0);
            }
            Mutation::DeleteDedupIndex { id, at_ms } => {
                batch.delete_cf(dedup_time, dedup_time_key(at_ms, &id.0));
            }
            Mutation::PutDbStats { db, stats } => {
                if stats.keys == 0 {
                    batch.delete_cf(dbs, db.as_bytes());
                } else {
                    batch.put_cf(dbs, db.as_bytes(), enc_stats(&stats)?);
                }
            }
            Mutation::PutClock { ms } => batch.put_cf(meta, K_CLOCK, enc("clock", &ms)?),
            Mutation::PutClusterId(id) => batch.put_cf(meta, K_CLUSTER_ID, enc("cluster id", &id)?),
            Mutation::PutChunk { chunk } => batch.put_cf(chunks, chunk.id.0, enc("chunk", &chunk)?),
            Mutation::PutChunkMeta { id, meta } => batch.put_cf(chunk_meta, id.0, meta.encode()?),
            Mutation::DeleteChunk { id } => {
                batch.delete_cf(chunks, id.0);
                batch.delete_cf(chunk_meta, id.0);
            }
            Mutation::PutZeroChunk { at_ms, id } => batch.put_cf(chunk_zero, zero_key(at_ms, &id.0), []),
            Mutation::DeleteZeroChunk { at_ms, id } => batch.delete_cf(chunk_zero, zero_key(at_ms, &id.0)),
            Mutation::PutSite { site, rec } => batch.put_cf(sites, site.as_bytes(), rec.encode()?),
            Mutation::DeleteSite { site } => batch.delete_cf(sites, site.as_bytes()),
            Mutation::ReplaceFiles { site, files: list } => {
                let (lo, hi) = site_range(&site);
                batch.delete_range_cf(files, lo, hi);
                for (path, rec) in list {
                    batch.put_cf(files, site_key(&site, path.as_bytes()), rec.encode()?);
                }
            }
            Mutation::DeleteFiles { site } => {
                let (lo, hi) = site_range(&site);
                batch.delete_range_cf(files, lo, hi);
            }
            Mutation::PutDeployment { site, info } => {
                batch.put_cf(deploys, tables::deploy_key(&site, info.id), info.encode()?)
            }
            Mutation::DeleteDeployments { site } => {
                let (lo, hi) = site_range(&site);
                batch.delete_range_cf(deploys, lo, hi);
            }
            Mutation::AddUnreferencedBytes { delta } => {
                // The batch is not written yet: this reads the state the
                // delta is relative to.
                let now = unreferenced_bytes(db)?.saturating_add_signed(delta);
                batch.put_cf(meta, K_UNREFERENCED, enc("unreferenced bytes", &now)?);
            }
        }
    }
    Ok(())
}

/// Stored bytes of the chunks no deployment references (uploads not
/// deployed yet, and chunks waiting for garbage collection): the counter
/// in `meta`, or, when a state has none yet (an older release, a restore),
/// the sum over `chunk_meta`.
fn unreferenced_bytes(db: &DB) -> Result<u64, StoreError> {
    if let Some(b) = db
        .get_cf(cf(db, CF_META)?, K_UNREFERENCED)
        .map_err(|e| StoreError::rocks("read the unreferenced-bytes counter", e))?
    {
        return dec("unreferenced bytes", &b);
    }
    let mut sum = 0u64;
    for r in db.iterator_cf(cf(db, CF_CHUNK_META)?, IteratorMode::Start) {
        let (_, v) = r.map_err(|e| StoreError::rocks("sum unreferenced chunks", e))?;
        let m = ChunkMeta::decode(&v)?;
        if m.refs == 0 {
            sum += u64::from(m.stored_len);
        }
    }
    Ok(sum)
}

/// [`StateView`] over the live state DB.
struct RocksView<'a> {
    db: &'a DB,
    /// Where [`StateView::dedup_expired`] starts (see `StateDb::dedup_gc_from`).
    dedup_from: u64,
    /// The newest time it returned (to advance `dedup_gc_from` once the
    /// batch that deletes them is written).
    dedup_until: std::cell::Cell<u64>,
}

impl<'a> RocksView<'a> {
    fn new(db: &'a DB) -> Self {
        Self {
            db,
            dedup_from: 0,
            dedup_until: std::cell::Cell::new(0),
        }
    }
}

fn view_err(e: StoreError) -> StateError {
    match e {
        StoreError::Codec(c) => StateError::Corrupt(c.to_string()),
        other => StateError::Storage(other.to_string()),
    }
}

impl RocksView<'_> {
    fn get(&self, cf_name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let handle = cf(self.db, cf_name).map_err(view_err)?;
        self.db
            .get_cf(handle, key)
            .map_err(|e| StateError::Storage(format!("RocksDB read failed: {e}")))
    }

    /// Many point reads of one column family in one RocksDB MultiGet,
    /// each value decoded by `decode`.
    fn get_many<K: AsRef<[u8]>, T>(
        &self,
        cf_name: &str,
        keys: &[K],
        decode: impl Fn(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<Option<T>>, StateError> {
        let handle = cf(self.db, cf_name).map_err(view_err)?;
        self.db
            .batched_multi_get_cf(handle, keys, false)
            .into_iter()
            .map(|r| match r {
                Ok(Some(v)) => decode(&v).map(Some).map_err(view_err),
                Ok(None) => Ok(None),
                Err(e) => Err(StateError::Storage(format!("RocksDB read failed: {e}"))),
            })
            .collect()
    }
}

impl StateView for RocksView<'_> {
    fn kv(&self, db: &str, key: &[u8]) -> Result<Option<KvRecord>, StateError> {
        self.get(CF_KV, &kv_key(db, key))?
            .map(|b| dec_kv(&b).map_err(view_err))
            .transpose()
    }

    fn dedup(&self, id: &RequestId) -> Result<Option<DedupRecord>, StateError> {
        self.get(CF_DEDUP, &id.0)?
            .map(|b| dec_dedup(&b).map_err(view_err))
            .transpose()
    }

    fn kv_many(&self, keys: &[(&str, &[u8])]) -> Result<Vec<Option<KvRecord>>, StateError> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|(db, key)| kv_key(db, key)).collect();
        self.get_many(CF_KV, &keys, dec_kv)
    }

    fn dedup_many(&self, ids: &[RequestId]) -> Result<Vec<Option<DedupRecord>>, StateError> {
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.0.as_slice()).collect();
        self.get_many(CF_DEDUP, &keys, dec_dedup)
    }

    fn dedup_expired(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, RequestId)>, StateError> {
        let handle = cf(self.db, CF_DEDUP_TIME).map_err(view_err)?;
        let mut out = Vec::new();
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(self.dedup_from.to_be_bytes().to_vec());
        ro.set_iterate_upper_bound(before_ms.to_be_bytes().to_vec());
        for r in self.db.iterator_cf_opt(handle, ro, IteratorMode::Start) {
            if out.len() == limit {
                break;
            }
            let (k, _) = r.map_err(|e| StateError::Storage(format!("RocksDB read failed: {e}")))?;
            if k.len() != 24 {
                return Err(StateError::Corrupt("request-id time index key of wrong length".into()));
            }
            let mut at = [0u8; 8];
            at.copy_from_slice(&k[..8]);
            let at = u64::from_be_bytes(at);
            if at >= before_ms {
                break;
            }
            let id = RequestId::from_slice(&k[8..]).ok_or_else(|| StateError::Corrupt("bad request id".into()))?;
            out.push((at, id));
            self.dedup_until.set(self.dedup_until.get().max(at));
        }
        Ok(out)
    }

    fn db_stats(&self, db: &str) -> Result<DbStats, StateError> {
        Ok(self
            .get(CF_DBS, db.as_bytes())?
            .map(|b| dec_stats(&b).map_err(view_err))
            .transpose()?
            .unwrap_or_default())
    }

    fn clock_ms(&self) -> Result<u64, StateError> {
        Ok(self
            .get(CF_META, K_CLOCK)?
            .map(|b| dec::<u64>("clock", &b).map_err(view_err))
            .transpose()?
            .unwrap_or(0))
    }

    fn cluster_id(&self) -> Result<Option<ClusterId>, StateError> {
        self.get(CF_META, K_CLUSTER_ID)?
            .map(|b| dec::<ClusterId>("cluster id", &b).map_err(view_err))
            .transpose()
    }
}

impl ContentView for RocksView<'_> {
    fn chunk_meta(&self, id: &ChunkId) -> Result<Option<ChunkMeta>, StateError> {
        self.get(CF_CHUNK_META, &id.0)?
            .map(|b| dec::<ChunkMeta>("chunk meta", &b).map_err(view_err))
            .transpose()
    }

    fn chunk(&self, id: &ChunkId) -> Result<Option<StoredChunk>, StateError> {
        self.get(CF_CHUNKS, &id.0)?
            .map(|b| dec::<StoredChunk>("chunk", &b).map_err(view_err))
            .transpose()
    }

    fn site(&self, name: &str) -> Result<Option<SiteRecord>, StateError> {
        self.get(CF_SITES, name.as_bytes())?
            .map(|b| dec::<SiteRecord>("site", &b).map_err(view_err))
            .transpose()
    }

    fn zero_chunks(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, ChunkId)>, StateError> {
        let handle = cf(self.db, CF_CHUNK_ZERO).map_err(view_err)?;
        let mut out = Vec::new();
        for r in self.db.iterator_cf(handle, IteratorMode::Start) {
            if out.len() == limit {
                break;
            }
            let (k, _) = r.map_err(|e| StateError::Storage(format!("RocksDB read failed: {e}")))?;
            if k.len() != 40 {
                return Err(StateError::Corrupt(
                    "unreferenced-chunk index key of wrong length".into(),
                ));
            }
            let mut at = [0u8; 8];
            at.copy_from_slice(&k[..8]);
            let at = u64::from_be_bytes(at);
            if at >= before_ms {
                break;
            }
            let id = ChunkId::from_slice(&k[8..]).ok_or_else(|| StateError::Corrupt("bad chunk id".into()))?;
            out.push((at, id));
        }
        Ok(out)
    }
}

/// One file of a site listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileListing {
    pub path: String,
    pub record: FileRecord,
}

impl StateDb {
    /// A site's record (current deployment) and the applied index, from
    /// one consistent view.
    pub fn site(&self, name: &str) -> Result<(Option<SiteRecord>, u64), StoreError> {
        let generation = self.live();
        let db = generation.db();
        let snap = db.snapshot();
        let applied = snapshot_applied_index(db, &snap)?;
        let rec = match snap
            .get_cf(cf(db, CF_SITES)?, name.as_bytes())
            .map_err(|e| StoreError::rocks("read a site", e))?
        {
            Some(b) => Some(SiteRecord::decode(&b)?),
            None => None,
        };
        Ok((rec, applied))
    }

    /// Every site, by name.
    pub fn sites(&self) -> Result<Vec<(String, SiteRecord)>, StoreError> {
        Ok(self.sites_page("", usize::MAX)?.items)
    }

    /// Up to `limit` sites after `start_after`, by name.
    pub fn sites_page(&self, start_after: &str, limit: usize) -> Result<NamePage<(String, SiteRecord)>, StoreError> {
        let generation = self.live();
        let db = generation.db();
        name_page(
            db,
            CF_SITES,
            ReadOptions::default(),
            start_after,
            limit,
            "list sites",
            |name, v| Ok((name, SiteRecord::decode(v)?)),
        )
    }

    /// One file of a site's current tree, with the site's deployment id and
    /// the applied index (one consistent view).
    pub fn file(&self, site: &str, path: &str) -> Result<(Option<FileRecord>, u64), StoreError> {
        let generation = self.live();
        let db = generation.db();
        let snap = db.snapshot();
        let applied = snapshot_applied_index(db, &snap)?;
        let rec = match snap
            .get_cf(cf(db, CF_FILES)?, site_key(site, path.as_bytes()))
            .map_err(|e| StoreError::rocks("read a file record", e))?
        {
            Some(b) => Some(FileRecord::decode(&b)?),
            None => None,
        };
        Ok((rec, applied))
    }

    /// Up to `limit` files of `site` under `prefix`, after `start_after`.
    pub fn list_files(
        &self,
        site: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<FileListing>, bool, u64), StoreError> {
        let generation = self.live();
        let db = generation.db();
        let snap = db.snapshot();
        let applied = snapshot_applied_index(db, &snap)?;
        let full_prefix = site_key(site, prefix.as_bytes());
        let start = match start_after {
            Some(after) if after >= prefix => {
                let mut k = site_key(site, after.as_bytes());
                k.push(0);
                k
            }
            _ => full_prefix.clone(),
        };
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let mut out = Vec::new();
        let mut more = false;
        for r in db.iterator_cf_opt(cf(db, CF_FILES)?, ro, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = r.map_err(|e| StoreError::rocks("list files", e))?;
            if !k.starts_with(&full_prefix) {
                break;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            let path = String::from_utf8_lossy(&k[site.len() + 1..]).into_owned();
            out.push(FileListing {
                path,
                record: FileRecord::decode(&v)?,
            });
        }
        Ok((out, more, applied))
    }

    /// A stored chunk (not yet decoded).
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<StoredChunk>, StoreError> {
        let generation = self.live();
        RocksView::new(generation.db())
            .chunk(id)
            .map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// Which of `ids` are not stored.
    /// Which of `ids` a push must upload: those not stored, and those no
    /// deployment uses that became unused before `stale_before_ms` (garbage
    /// collection may delete them before the push deploys; uploading them
    /// again renews their grace period).
    pub fn missing_chunks(&self, ids: &[ChunkId], stale_before_ms: u64) -> Result<Vec<ChunkId>, StoreError> {
        let generation = self.live();
        let db = generation.db();
        let handle = cf(db, CF_CHUNK_META)?;
        let keys: Vec<_> = ids.iter().map(|id| (handle, id.0.to_vec())).collect();
        let mut out = Vec::new();
        for (id, r) in ids.iter().zip(db.multi_get_cf(keys)) {
            match r.map_err(|e| StoreError::rocks("look up chunks", e))? {
                None => out.push(*id),
                Some(b) => {
                    let meta: ChunkMeta = ChunkMeta::decode(&b)?;
                    if meta.refs == 0 && meta.zero_since_ms < stale_before_ms {
                        out.push(*id);
                    }
                }
            }
        }
        Ok(out)
    }

    /// A site's deployments, newest first.
    pub fn deployments(&self, site: &str, limit: usize) -> Result<Vec<DeploymentInfo>, StoreError> {
        let generation = self.live();
        let db = generation.db();
        let (_, hi) = site_range(site);
        let mut out = Vec::new();
        for r in db.iterator_cf(cf(db, CF_DEPLOYS)?, IteratorMode::From(&hi, Direction::Reverse)) {
            let (k, v) = r.map_err(|e| StoreError::rocks("list deployments", e))?;
            if !k.starts_with(&site_key(site, b"")) {
                if k.as_ref() >= hi.as_slice() {
                    continue;
                }
                break;
            }
            out.push(DeploymentInfo::decode(&v)?);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Stored bytes of uploaded chunks no deployment uses (yet): what
    /// `limits.max-undeployed-bytes` bounds.
    pub fn unreferenced_bytes(&self) -> Result<u64, StoreError> {
        let generation = self.live();
        unreferenced_bytes(generation.db())
    }

    /// Chunk count and stored bytes (for metrics and reports).
    pub fn chunk_totals(&self) -> Result<(u64, u64, u64), StoreError> {
        let generation = self.live();
        let db = generation.db();
        let (mut n, mut bytes, mut unreferenced) = (0u64, 0u64, 0u64);
        for r in db.iterator_cf(cf(db, CF_CHUNK_META)?, IteratorMode::Start) {
            let (_, v) = r.map_err(|e| StoreError::rocks("count chunks", e))?;
            let m: ChunkMeta = ChunkMeta::decode(&v)?;
            n += 1;
            bytes += u64::from(m.stored_len);
            unreferenced += u64::from(m.refs == 0);
        }
        Ok((n, bytes, unreferenced))
    }
}
