//! Taking a backup of a consistent view of a node's state.
//!
//! The view ([`StateSource`]) is one RocksDB snapshot at one applied Raft
//! index. Each replicated table is written as a *record stream* (length-
//! prefixed key and value, in key order) cut by FastCDC into chunks, so a
//! scattered update of a few records re-uploads only the chunks around
//! them. Site content is already stored in the cluster as blake3-addressed
//! chunks: a backup uploads the chunks the repository lacks (a set
//! difference against the index), reusing the cluster's zstd frames as
//! they are.
//!
//! Order of writes (the crash-safety argument, docs/backup-format.md):
//! packs, then one index object naming them, then the snapshot manifest.
//! The manifest is the commit point: an interrupted backup leaves packs
//! (and perhaps an index) that no snapshot references; the next backup
//! adopts them, so their upload is not lost.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use sen_content::StoredChunk;
use sen_content::chunk::Encoding;

use crate::RepoError;
use crate::format::*;
use crate::repo::{Index, PackWriter, Repo};
use sen_core::now_ms;
use sen_raft::schema::{FileRecord, Record, tables};

/// Chunk sizes of table record streams: much finer than file content
/// (16/64/256 KiB), because a database changes a record here and there.
/// With 4 KiB chunks and ~1 KB records, updating 1% of the records
/// scattered through a table re-uploads about 4% of it.
pub const TABLE_CHUNK_MIN: usize = 1024;
pub const TABLE_CHUNK_AVG: usize = 4096;
pub const TABLE_CHUNK_MAX: usize = 16 * 1024;

/// Content chunks the cluster stored compressed are copied into packs as
/// they are (its own zstd frame, `BlobEncoding::Zstd`) from this plaintext
/// size up; smaller ones are decompressed and compressed again in 1 MiB
/// groups with their neighbours. Measured on a 2 GB tree (99,407 chunks of
/// the toolchain's documentation, the cargo registry's sources and
/// /usr/lib; docs/benchmarks.md): grouping every chunk gives a 413.9 MB
/// repository, copying every chunk 552.7 MB (+34%); with this threshold
/// 455.5 MB (+10%) while only 23% of the bytes pass through zstd again —
/// the small chunks (small files and files' tails) are where compressing
/// one by one loses most.
pub const COPY_MIN_CHUNK: u32 = 32 * 1024;

fn cut_table(buf: &[u8]) -> Vec<(usize, usize)> {
    sen_content::chunker::cut_with(buf, TABLE_CHUNK_MIN, TABLE_CHUNK_AVG, TABLE_CHUNK_MAX)
}

/// Where the view was taken.
#[derive(Debug, Clone)]
pub struct SourcePosition {
    pub cluster_id: String,
    pub raft_index: u64,
    pub raft_term: u64,
    pub node_id: u64,
    pub state_digest: String,
}

/// Called for each `(key, value)` row of a table, in key order.
pub type RowVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), RepoError> + 'a;

/// A consistent, read-only view of a node's replicated state.
pub trait StateSource {
    fn position(&self) -> SourcePosition;
    /// Table names, in backup order.
    fn tables(&self) -> Vec<String>;
    /// Every record of `table`, in key order.
    fn scan(&self, table: &str, f: &mut RowVisitor<'_>) -> Result<(), RepoError>;
    /// A stored content chunk.
    fn chunk(&self, id: &[u8; 32]) -> Result<Option<StoredChunk>, RepoError>;
    fn sites(&self) -> Result<Vec<SiteSummary>, RepoError>;
    fn databases(&self) -> Result<Vec<DbSummary>, RepoError>;
}

/// What to record in the snapshot besides the state.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub tags: Vec<String>,
    pub hostname: String,
}

/// The result of [`create`].
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub snapshot_id: [u8; 32],
    pub snapshot: Snapshot,
    /// What the repository holds afterwards: every indexed pack plus the
    /// objects this backup wrote (older index and snapshot objects, a few
    /// KB each, are not counted). Growth of this figure over time is what
    /// the repository's storage must provide (R8).
    pub repo_bytes: u64,
    /// Free and total bytes of the storage under the repository, when its
    /// store can tell ([`crate::store::ObjectStore::space`]).
    pub repo_space: Option<(u64, u64)>,
}

/// Progress callback: (bytes processed so far, phase name).
pub type Progress<'a> = &'a (dyn Fn(u64, &str) + Sync);

/// Back up `source` into `repo`.
pub fn create(
    repo: &Repo,
    source: &dyn StateSource,
    opts: &BackupOptions,
    progress: Progress<'_>,
) -> Result<BackupOutcome, RepoError> {
    let started = Instant::now();
    let pos = source.position();
    let mut index = repo.load_index()?;
    adopt_orphan_packs(repo, &mut index)?;
    let packs_before: u64 = index.packs.iter().map(|(_, size)| size).sum();

    let mut cx = Ctx {
        repo,
        index: &index,
        w: PackWriter::new(repo),
        seen: HashMap::new(),
        stats: SnapshotStats::default(),
        deduped_packs: HashSet::new(),
        processed: 0,
    };
    let mut tables = Vec::new();

    for name in source.tables() {
        let mut stream = TableStream {
            name: name.clone(),
            records: 0,
            bytes: 0,
            chunks: Vec::new(),
        };
        let mut buf: Vec<u8> = Vec::new();
        let is_chunk_meta = name == tables::CHUNK_META;
        let is_files = name == tables::FILES;
        source.scan(&name, &mut |k, v| {
            buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
            buf.extend_from_slice(k);
            buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            buf.extend_from_slice(v);
            stream.records += 1;
            stream.bytes += (k.len() + v.len()) as u64;
            if is_chunk_meta {
                let id: [u8; 32] = k
                    .try_into()
                    .map_err(|_| RepoError::Source(format!("chunk_meta key of {} bytes", k.len())))?;
                cx.content_chunk(source, &id, true)?;
            }
            if is_files {
                let rec = FileRecord::decode(v).map_err(|e| RepoError::Source(format!("files table: {e}")))?;
                for c in &rec.chunks {
                    cx.content_chunk(source, &c.id.0, false)?;
                }
            }
            if buf.len() >= 256 * TABLE_CHUNK_MAX {
                let cuts = cut_table(&buf);
                let keep_from = cuts.last().map_or(0, |(off, _)| *off);
                for (off, len) in &cuts[..cuts.len().saturating_sub(1)] {
                    cx.table_chunk(&buf[*off..*off + *len], &mut stream)?;
                }
                cx.processed += keep_from as u64;
                progress(cx.processed, &name);
                buf.drain(..keep_from);
            }
            Ok(())
        })?;
        for (off, len) in cut_table(&buf) {
            cx.table_chunk(&buf[off..off + len], &mut stream)?;
        }
        cx.processed += buf.len() as u64;
        progress(cx.processed, &name);
        tables.push(stream);
    }
    let Ctx {
        mut w,
        mut stats,
        deduped_packs,
        ..
    } = cx;
    w.finish()?;
    stats.bytes_new = w.bytes_uploaded;

    // Every pack a deduplicated blob lives in must still exist: a prune
    // running concurrently may have deleted it (docs/backup-format.md).
    if !deduped_packs.is_empty() {
        let present: HashSet<[u8; 32]> = repo.list_packs()?.into_iter().map(|(id, _)| id).collect();
        for p in &deduped_packs {
            let id = index.packs[*p as usize].0;
            if !present.contains(&id) {
                return Err(RepoError::Usage(format!(
                    "pack {} disappeared during the backup (a concurrent prune removed it); nothing was committed: run the backup again",
                    hex_id(&id)
                )));
            }
        }
    }
    if !w.written.is_empty() {
        let (_, len) = repo.put_object(
            ObjectKind::Index,
            &IndexFile {
                packs: std::mem::take(&mut w.written),
                supersedes: Vec::new(),
            },
        )?;
        stats.bytes_new += len;
    }
    stats.duration_ms = started.elapsed().as_millis() as u64;
    let snapshot = Snapshot {
        time_ms: now_ms(),
        cluster_id: pos.cluster_id,
        raft_index: pos.raft_index,
        raft_term: pos.raft_term,
        source_node: pos.node_id,
        hostname: opts.hostname.clone(),
        tags: opts.tags.clone(),
        state_digest: pos.state_digest,
        tables,
        sites: source.sites()?,
        databases: source.databases()?,
        stats,
    };
    let (snapshot_id, len) = repo.put_object(ObjectKind::Snapshot, &snapshot)?;
    let mut snapshot = snapshot;
    snapshot.stats.bytes_new += len;
    let repo_bytes = packs_before + snapshot.stats.bytes_new;
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        repo_bytes,
        repo_space: repo.store.space(),
    })
}

struct Ctx<'a> {
    repo: &'a Repo,
    index: &'a Index,
    w: PackWriter<'a>,
    /// Blobs added by this backup, with their plaintext length.
    seen: HashMap<[u8; 32], u32>,
    stats: SnapshotStats,
    deduped_packs: HashSet<u32>,
    processed: u64,
}

impl Ctx<'_> {
    /// One chunk of a table's record stream.
    fn table_chunk(&mut self, data: &[u8], stream: &mut TableStream) -> Result<(), RepoError> {
        let id = *blake3::hash(data).as_bytes();
        stream.chunks.push(StreamChunk {
            id,
            len: data.len() as u32,
        });
        self.stats.blobs_total += 1;
        self.stats.bytes_total += data.len() as u64;
        let blob = self.repo.keys.blob_id(&id);
        if let Some(loc) = self.index.get(&blob) {
            self.deduped_packs.insert(loc.pack);
        } else if let std::collections::hash_map::Entry::Vacant(v) = self.seen.entry(blob) {
            v.insert(data.len() as u32);
            self.stats.blobs_new += 1;
            self.w.add_plain(&id, BlobKind::Table, data)?;
        }
        Ok(())
    }

    /// One stored content chunk: uploaded only if the repository lacks it.
    /// `count`: add it to the snapshot's totals (each chunk is counted once,
    /// from the `chunk_meta` table; the `files` table only fixes the order
    /// in which chunks are packed: file by file, so restores read packs
    /// sequentially).
    fn content_chunk(&mut self, source: &dyn StateSource, id: &[u8; 32], count: bool) -> Result<(), RepoError> {
        let blob = self.repo.keys.blob_id(id);
        let raw_len = if let Some(loc) = self.index.get(&blob) {
            self.deduped_packs.insert(loc.pack);
            loc.raw_len
        } else if let Some(len) = self.seen.get(&blob) {
            *len
        } else {
            let chunk = source
                .chunk(id)?
                .ok_or_else(|| RepoError::Source(format!("chunk {} is listed but not stored", hex_id(id))))?;
            if &chunk.id.0 != id {
                return Err(RepoError::Source(format!(
                    "chunk {} is stored under another id",
                    hex_id(id)
                )));
            }
            self.stats.content_chunks_new += 1;
            self.stats.blobs_new += 1;
            self.processed += u64::from(chunk.len);
            self.seen.insert(blob, chunk.len);
            let len = chunk.len;
            match chunk.encoding {
                // Incompressible: stored as it is, on its own.
                Encoding::Raw => self
                    .w
                    .add(id, BlobKind::Content, BlobEncoding::Raw, chunk.len, chunk.data)?,
                // Compressible and large: the cluster's zstd frame as it
                // is (no decompression, no compression).
                Encoding::Zstd if chunk.len >= COPY_MIN_CHUNK => {
                    self.w
                        .add(id, BlobKind::Content, BlobEncoding::Zstd, chunk.len, chunk.data)?
                }
                // Compressible and small: recompressed with its neighbours
                // (a group), where zstd's window pays.
                Encoding::Zstd => {
                    let plain = chunk.decode().map_err(|e| RepoError::Source(e.to_string()))?;
                    self.w.add_plain(id, BlobKind::Content, &plain)?;
                }
            }
            len
        };
        if count {
            self.stats.content_chunks += 1;
            self.stats.blobs_total += 1;
            self.stats.bytes_total += u64::from(raw_len);
        }
        Ok(())
    }
}

/// Index packs that no index names (left by an interrupted backup, or by a
/// crash inside prune), reading their headers: their blobs are reused.
pub fn adopt_orphan_packs(repo: &Repo, index: &mut Index) -> Result<usize, RepoError> {
    adopt_orphan_packs_unless(repo, index, false)
}

/// [`adopt_orphan_packs`]; with `dry_run`, only in memory.
pub fn adopt_orphan_packs_unless(repo: &Repo, index: &mut Index, dry_run: bool) -> Result<usize, RepoError> {
    // Packs prune put in the trash are not orphans: prune decides on them.
    let mut trashed = HashSet::new();
    for tid in repo.list_ids(ObjectKind::Trash)? {
        let t: TrashFile = repo.get_object(ObjectKind::Trash, &tid)?;
        trashed.extend(t.packs.iter().map(|p| p.id));
    }
    let orphans: Vec<([u8; 32], u64)> = repo
        .list_packs()?
        .into_iter()
        .filter(|(id, _)| !index.has_pack(id) && !trashed.contains(id))
        .collect();
    if orphans.is_empty() {
        return Ok(0);
    }
    let mut packs = Vec::new();
    for r in repo.parallel(orphans.into_iter().enumerate(), |_, (id, size)| {
        repo.read_pack_header(&id, size)
            .map(|entries| IndexPack { id, size, entries })
    }) {
        match r {
            Ok(p) => packs.push(p),
            // A pack being written right now by another backup is complete
            // (objects appear whole); anything unreadable is left for check.
            Err(e) => tracing::warn!("not adopting an unreadable pack: {e}"),
        }
    }
    let n = packs.len();
    if n > 0 && dry_run {
        for p in &packs {
            index.add_pack(p);
        }
    } else if n > 0 {
        for p in &packs {
            index.add_pack(p);
        }
        repo.put_object(
            ObjectKind::Index,
            &IndexFile {
                packs,
                supersedes: Vec::new(),
            },
        )?;
        tracing::info!(packs = n, "indexed packs left by an interrupted backup");
    }
    Ok(n)
}
