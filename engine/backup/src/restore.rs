//! Restores: everything the worst day needs, in a library.
//!
//! - [`cluster`]: a snapshot's whole state into a [`StateSink`] (a fresh
//!   data directory: `sen_store::backup::DataDirBuilder`), every chunk
//!   verified, the state digest checked against the one recorded at backup
//!   time.
//! - [`site_into_cluster`] and [`db_into_cluster`]: put a site's files or a
//!   database's keys (under a path or a prefix) back into the live cluster
//!   as they were in the snapshot, through a [`LiveCluster`] (the client;
//!   an in-memory state machine in the tests). [`plan_site`] and
//!   [`plan_db`] compute the changes without touching anything (`--dry-run`).
//! - [`diff`]: what changed between two snapshots, per file and per key.
//! - [`cluster_chunk`]: a repository blob in the cluster's stored form.
//!
//! Files to a local directory and database records to JSON lines are in
//! [`crate::read`] (`restore_files`, `db_records`).

use std::collections::{BTreeMap, HashSet};

use sen_content::manifest::FileEntry;
use sen_content::{ChunkId, StoredChunk};
use sen_raft::schema::{FileRecord, Record, tables};

use crate::RepoError;
use crate::format::{BlobEncoding, Snapshot};
use crate::read::{self, SnapFile, SnapshotEntry};
use crate::repo::{FetchedBlob, Index, Repo};

/// Where [`cluster`] writes a restored state.
pub trait StateSink {
    /// One record of a backed-up table (tables in backup order, keys in
    /// order within a table).
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), RepoError>;
    /// A content chunk, verified against its id.
    fn put_chunk(&mut self, chunk: &StoredChunk) -> Result<(), RepoError>;
    /// Everything is written: make the state applied at the snapshot's
    /// Raft position and return its cluster id and state digest.
    fn finish(&mut self, snapshot: &Snapshot) -> Result<(String, String), RepoError>;
}

/// A restored cluster state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub cluster_id: String,
    /// The digest of the restored state: equal to the snapshot's.
    pub digest: String,
    /// Record and chunk bytes written.
    pub bytes: u64,
}

/// Restore every table and content chunk of `snap` into `sink`, then check
/// the state digest. `progress` gets bytes as they are written.
pub fn cluster(
    repo: &Repo,
    index: &Index,
    snap: &Snapshot,
    sink: &mut dyn StateSink,
    progress: &dyn Fn(u64),
) -> Result<Restored, RepoError> {
    let mut bytes = 0u64;
    for t in &snap.tables {
        let mut chunk_ids = Vec::new();
        for rec in read::TableReader::new(repo, index, t) {
            let (k, v) = rec?;
            let n = (k.len() + v.len()) as u64;
            bytes += n;
            progress(n);
            if t.name == tables::CHUNK_META {
                let id: [u8; 32] = k
                    .as_slice()
                    .try_into()
                    .map_err(|_| RepoError::Corrupt("chunk_meta key of the wrong length".into()))?;
                chunk_ids.push(id);
            }
            sink.put(&t.name, &k, &v)?;
        }
        for blob in repo.fetch_blobs(index, chunk_ids) {
            let blob = blob?;
            let n = blob.plain.len() as u64;
            bytes += n;
            progress(n);
            sink.put_chunk(&cluster_chunk(blob)?)?;
        }
    }
    let (cluster_id, digest) = sink.finish(snap)?;
    if digest != snap.state_digest {
        return Err(RepoError::Corrupt(format!(
            "the restored state's digest {digest} differs from the snapshot's {}: the repository or this build is inconsistent; nothing was kept",
            snap.state_digest
        )));
    }
    Ok(Restored {
        cluster_id,
        digest,
        bytes,
    })
}

/// A verified blob in the cluster's stored form: its own zstd frame when
/// the repository kept it, else compressed again (zstd 3, as a push does).
pub fn cluster_chunk(blob: FetchedBlob) -> Result<StoredChunk, RepoError> {
    use sen_content::chunk::Encoding;
    let len = u32::try_from(blob.plain.len())
        .map_err(|_| RepoError::Corrupt(format!("blob {} is larger than a chunk can be", hex::encode(blob.id))))?;
    Ok(match (blob.encoding, blob.stored) {
        (BlobEncoding::Zstd, Some(z)) => StoredChunk {
            id: ChunkId(blob.id),
            encoding: Encoding::Zstd,
            len,
            data: z,
        },
        (BlobEncoding::Raw, _) => StoredChunk {
            id: ChunkId(blob.id),
            encoding: Encoding::Raw,
            len,
            data: blob.plain,
        },
        _ => StoredChunk::encode(&blob.plain, 3).map_err(|e| RepoError::Corrupt(e.to_string()))?,
    })
}

// ---------------------------------------------------------------------------
// Into the live cluster.

/// The live cluster, as a restore into it needs it. Errors are
/// [`RepoError::Target`] with the cluster's message.
pub trait LiveCluster {
    /// The site's current files and the deployment they belong to.
    fn site_files(&mut self, site: &str) -> Result<(Vec<FileEntry>, u64), RepoError>;
    /// Which of `ids` the cluster does not store.
    fn missing_chunks(&mut self, ids: &[ChunkId]) -> Result<HashSet<ChunkId>, RepoError>;
    fn put_chunks(&mut self, chunks: Vec<StoredChunk>) -> Result<(), RepoError>;
    /// Deploy `files` as the site's tree, refused if it moved past `base`.
    fn deploy(&mut self, site: &str, files: Vec<FileEntry>, base: u64, message: &str) -> Result<u64, RepoError>;
    /// The database's keys under `prefix` and their values (a database
    /// that does not exist is empty).
    fn db_records(&mut self, db: &str, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, RepoError>;
    fn put(&mut self, db: &str, key: &[u8], value: &[u8]) -> Result<(), RepoError>;
    fn delete(&mut self, db: &str, key: &[u8]) -> Result<(), RepoError>;
}

/// What a site restore changes, per path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteChange {
    Add,
    Replace,
    Remove,
}

/// The site's new tree and how it differs from the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePlan {
    pub changes: Vec<(SiteChange, String)>,
    /// The whole tree to deploy (sorted by path).
    pub files: Vec<FileEntry>,
}

/// Under `path` the site becomes what the snapshot had (files added since
/// are removed, changed ones reset); everything else stays as it is now.
/// Changes: removals first, then additions and replacements, each in path
/// order.
pub fn plan_site(current: Vec<FileEntry>, snapshot: Vec<SnapFile>, path: &str) -> SitePlan {
    let mut now: BTreeMap<String, FileEntry> = current.into_iter().map(|f| (f.path.clone(), f)).collect();
    let wanted: BTreeMap<String, FileEntry> = snapshot
        .into_iter()
        .map(|f| {
            (
                f.path.clone(),
                FileEntry {
                    path: f.path,
                    size: f.record.size,
                    blake3: f.record.blake3,
                    mtime_ms: f.record.mtime_ms,
                    chunks: f.record.chunks,
                },
            )
        })
        .collect();
    let mut changes = Vec::new();
    let selected: Vec<String> = now.keys().filter(|p| read::path_selected(p, path)).cloned().collect();
    for p in selected {
        if !wanted.contains_key(&p) {
            now.remove(&p);
            changes.push((SiteChange::Remove, p));
        }
    }
    for (p, f) in wanted {
        match now.get(&p) {
            Some(cur) if cur.blake3 == f.blake3 => {}
            Some(_) => changes.push((SiteChange::Replace, p.clone())),
            None => changes.push((SiteChange::Add, p.clone())),
        }
        now.insert(p, f);
    }
    SitePlan {
        changes,
        files: now.into_values().collect(),
    }
}

/// The outcome of a site restore into the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRestore {
    pub changes: Vec<(SiteChange, String)>,
    /// The new deployment (`None`: dry run, or nothing to change).
    pub deployment: Option<u64>,
}

/// Put `site`'s files under `path` back as they were in `e`, as one
/// deployment on top of the current tree. Chunks the cluster lacks are
/// uploaded from the repository (verified).
pub fn site_into_cluster(
    repo: &Repo,
    index: &Index,
    e: &SnapshotEntry,
    site: &str,
    path: &str,
    live: &mut dyn LiveCluster,
    dry_run: bool,
) -> Result<SiteRestore, RepoError> {
    let files = read::site_files(repo, index, &e.snapshot, site, path)?;
    let message = format!("restore {path:?} from snapshot {}", e.short_id());
    let mut fetch = |ids: Vec<[u8; 32]>| -> Result<Vec<StoredChunk>, RepoError> {
        repo.fetch_blobs(index, ids).map(|b| cluster_chunk(b?)).collect()
    };
    site_into_cluster_from(files, &mut fetch, site, path, live, dry_run, &message)
}

/// Where a site's chunks come from: the stored chunks of these ids.
pub type ChunkSource<'a> = dyn FnMut(Vec<[u8; 32]>) -> Result<Vec<StoredChunk>, RepoError> + 'a;

/// [`site_into_cluster`] from any source of files and chunks (a snapshot,
/// or a state rebuilt to a point in time).
pub fn site_into_cluster_from(
    files: Vec<read::SnapFile>,
    chunks: &mut ChunkSource<'_>,
    site: &str,
    path: &str,
    live: &mut dyn LiveCluster,
    dry_run: bool,
    message: &str,
) -> Result<SiteRestore, RepoError> {
    let (current, base) = live.site_files(site)?;
    let plan = plan_site(current, files, path);
    if dry_run || plan.changes.is_empty() {
        return Ok(SiteRestore {
            changes: plan.changes,
            deployment: None,
        });
    }
    let needed: Vec<ChunkId> = {
        let mut seen = HashSet::new();
        plan.files
            .iter()
            .flat_map(|f| f.chunks.iter().map(|c| c.id))
            .filter(|id| seen.insert(*id))
            .collect()
    };
    let mut missing: Vec<[u8; 32]> = Vec::new();
    for part in needed.chunks(4096) {
        let m = live.missing_chunks(part)?;
        missing.extend(part.iter().filter(|id| m.contains(id)).map(|id| id.0));
    }
    for part in missing.chunks(256) {
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        for chunk in chunks(part.to_vec())? {
            batch_bytes += chunk.data.len();
            batch.push(chunk);
            if batch_bytes >= 16 << 20 {
                live.put_chunks(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            live.put_chunks(batch)?;
        }
    }
    let d = live.deploy(site, plan.files, base, message)?;
    Ok(SiteRestore {
        changes: plan.changes,
        deployment: Some(d),
    })
}

/// What a database restore changes, per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbChange {
    Add,
    Reset,
    Delete,
}

/// Under the prefix the database becomes what the snapshot had: keys
/// added since are deleted, changed ones reset. Keys in order, deletes
/// first.
pub fn plan_db(live: &BTreeMap<Vec<u8>, Vec<u8>>, wanted: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<(DbChange, Vec<u8>)> {
    let mut changes: Vec<(DbChange, Vec<u8>)> = live
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .map(|k| (DbChange::Delete, k.clone()))
        .collect();
    for (k, v) in wanted {
        match live.get(k) {
            Some(cur) if cur == v => {}
            Some(_) => changes.push((DbChange::Reset, k.clone())),
            None => changes.push((DbChange::Add, k.clone())),
        }
    }
    changes
}

/// Reset `db`'s keys under `prefix` to what snapshot `snap` had (one write
/// per changed key; not one transaction). Returns the changes.
pub fn db_into_cluster(
    repo: &Repo,
    index: &Index,
    snap: &Snapshot,
    db: &str,
    prefix: &[u8],
    live: &mut dyn LiveCluster,
    dry_run: bool,
) -> Result<Vec<(DbChange, Vec<u8>)>, RepoError> {
    let mut wanted = BTreeMap::new();
    read::db_records(repo, index, snap, db, prefix, &mut |k, rec| {
        wanted.insert(k.to_vec(), rec.value);
        Ok(())
    })?;
    db_into_cluster_from(wanted, db, prefix, live, dry_run)
}

/// [`db_into_cluster`] to any wanted content of the prefix.
pub fn db_into_cluster_from(
    wanted: BTreeMap<Vec<u8>, Vec<u8>>,
    db: &str,
    prefix: &[u8],
    live: &mut dyn LiveCluster,
    dry_run: bool,
) -> Result<Vec<(DbChange, Vec<u8>)>, RepoError> {
    let current = live.db_records(db, prefix)?;
    let changes = plan_db(&current, &wanted);
    if !dry_run {
        for (kind, k) in &changes {
            match kind {
                DbChange::Delete => live.delete(db, k)?,
                DbChange::Add | DbChange::Reset => live.put(db, k, &wanted[k])?,
            }
        }
    }
    Ok(changes)
}

// ---------------------------------------------------------------------------
// Differences between two snapshots.

/// How an item differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    Added,
    Removed,
    Changed,
}

/// One differing file (of a site) or key (of a database).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// `site` or `db`.
    pub kind: &'static str,
    /// The site or database.
    pub container: String,
    /// The path or key (lossy UTF-8).
    pub name: String,
    pub change: DiffKind,
}

/// Every file and key that differs between snapshots `a` and `b`, in table
/// and key order. Files compare by content (each deployment rewrites every
/// file record), keys by their whole record. The control plane's own
/// databases (`sen-…`) are left out.
pub fn diff(repo: &Repo, index: &Index, a: &Snapshot, b: &Snapshot) -> Result<Vec<Difference>, RepoError> {
    let mut out = Vec::new();
    for (table, kind) in [(tables::FILES, "site"), (tables::KV, "db")] {
        let ta = a.tables.iter().find(|t| t.name == table);
        let tb = b.tables.iter().find(|t| t.name == table);
        if let (Some(x), Some(y)) = (ta, tb)
            && x.chunks == y.chunks
        {
            continue;
        }
        let mut ia = read::table(repo, index, a, table)?;
        let mut ib = read::table(repo, index, b, table)?;
        let mut ra = ia.next().transpose()?;
        let mut rb = ib.next().transpose()?;
        loop {
            let (key, change) = match (&ra, &rb) {
                (None, None) => break,
                (Some((ka, _)), None) => {
                    let k = ka.clone();
                    ra = ia.next().transpose()?;
                    (k, DiffKind::Removed)
                }
                (None, Some((kb, _))) => {
                    let k = kb.clone();
                    rb = ib.next().transpose()?;
                    (k, DiffKind::Added)
                }
                (Some((ka, _)), Some((kb, _))) if ka < kb => {
                    let k = ka.clone();
                    ra = ia.next().transpose()?;
                    (k, DiffKind::Removed)
                }
                (Some((ka, _)), Some((kb, _))) if ka > kb => {
                    let k = kb.clone();
                    rb = ib.next().transpose()?;
                    (k, DiffKind::Added)
                }
                (Some((ka, va)), Some((_, vb))) => {
                    let same = same_value(table, va, vb);
                    let k = ka.clone();
                    ra = ia.next().transpose()?;
                    rb = ib.next().transpose()?;
                    if same {
                        continue;
                    }
                    (k, DiffKind::Changed)
                }
            };
            let (container, name) = tables::split_scoped_key(&key)
                .map(|(c, n)| (c.to_owned(), String::from_utf8_lossy(n).into_owned()))
                .ok_or_else(|| RepoError::Corrupt(format!("{table} table: key without a name separator")))?;
            // The control plane (users, audit log, incidents) is in every
            // backup and comes back with the cluster, but it is not a
            // site or a database of the portal.
            if kind == "db" && sen_raft::schema::system::is_reserved_db(&container) {
                continue;
            }
            out.push(Difference {
                kind,
                container,
                name,
                change,
            });
        }
    }
    Ok(out)
}

fn same_value(table: &str, a: &[u8], b: &[u8]) -> bool {
    if table == tables::FILES
        && let (Ok(x), Ok(y)) = (FileRecord::decode(a), FileRecord::decode(b))
    {
        return (x.size, x.blake3) == (y.size, y.blake3);
    }
    a == b
}

#[cfg(test)]
mod tests;
