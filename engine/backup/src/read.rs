//! Reading back: snapshots, table record streams, site files, databases.

use std::io::Write;
use std::path::{Path, PathBuf};

use sen_raft::schema::{FileRecord, KvRecord, Record, tables};

use crate::RepoError;
use crate::format::*;
use crate::repo::{Index, Repo};

/// A snapshot with its id.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    pub id: [u8; 32],
    pub snapshot: Snapshot,
}

impl SnapshotEntry {
    pub fn short_id(&self) -> String {
        short_id(&self.id)
    }
}

/// The first 8 hex digits (what listings show; any unique prefix works).
pub fn short_id(id: &[u8; 32]) -> String {
    hex_id(id)[..8].to_owned()
}

/// Every snapshot, oldest first.
pub fn list_snapshots(repo: &Repo) -> Result<Vec<SnapshotEntry>, RepoError> {
    let ids = repo.list_ids(ObjectKind::Snapshot)?;
    let mut out = Vec::new();
    for r in repo.parallel(ids.into_iter().enumerate(), |_, id| {
        repo.get_object::<Snapshot>(ObjectKind::Snapshot, &id)
            .map(|snapshot| SnapshotEntry { id, snapshot })
    }) {
        out.push(r?);
    }
    out.sort_by_key(|a| (a.snapshot.time_ms, a.id));
    Ok(out)
}

/// `latest`, or a unique prefix of a snapshot id.
pub fn resolve(snapshots: &[SnapshotEntry], which: &str) -> Result<SnapshotEntry, RepoError> {
    if which == "latest" {
        return snapshots
            .last()
            .cloned()
            .ok_or_else(|| RepoError::Usage("the repository holds no snapshot yet: run `sen backup create`".into()));
    }
    let which = which.to_ascii_lowercase();
    if which.len() < 4 || !which.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RepoError::Usage(format!(
            "{which:?} is not a snapshot id: give `latest` or at least 4 hex digits of an id from `sen backup list`"
        )));
    }
    let found: Vec<_> = snapshots.iter().filter(|s| hex_id(&s.id).starts_with(&which)).collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(RepoError::Usage(format!(
            "no snapshot has an id starting with {which}: see `sen backup list`"
        ))),
        _ => Err(RepoError::Usage(format!(
            "{} snapshots have ids starting with {which}: give more digits",
            found.len()
        ))),
    }
}

/// The records of one table stream, in key order.
pub struct TableReader<'a> {
    chunks: Box<dyn Iterator<Item = Result<Vec<u8>, RepoError>> + 'a>,
    buf: Vec<u8>,
    pos: usize,
    failed: bool,
    name: String,
}

/// Longest key or value in a table record stream: a KV value (at most a
/// few MiB by configuration), a stored chunk (≤ 4 MiB plus framing) or a
/// file record listing the chunks of a very large file all stay far below.
pub const MAX_TABLE_FIELD_BYTES: usize = 64 << 20;

impl<'a> TableReader<'a> {
    pub fn new(repo: &'a Repo, index: &'a Index, stream: &TableStream) -> Self {
        let ids = stream.chunks.iter().map(|c| c.id).collect();
        Self {
            chunks: Box::new(repo.fetch_chunks(index, ids)),
            buf: Vec::new(),
            pos: 0,
            failed: false,
            name: stream.name.clone(),
        }
    }

    /// Records of a stream whose chunks come from `chunks` (for tests and
    /// fuzzing: the bytes are split at arbitrary points).
    pub fn from_chunks(name: &str, chunks: impl Iterator<Item = Result<Vec<u8>, RepoError>> + 'a) -> Self {
        Self {
            chunks: Box::new(chunks),
            buf: Vec::new(),
            pos: 0,
            failed: false,
            name: name.to_owned(),
        }
    }

    fn try_record(&mut self) -> Option<Result<Row, RepoError>> {
        let avail = &self.buf[self.pos..];
        // A field's length is checked before waiting for its bytes: a
        // damaged length must not make the reader buffer gigabytes.
        let len_at = |b: &[u8], at: usize| -> Option<usize> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        let too_long = |len: usize| len > MAX_TABLE_FIELD_BYTES;
        let field = |b: &[u8], at: usize| -> Option<(usize, usize)> {
            let len = len_at(b, at)?;
            (b.len() >= at + 4 + len).then_some((at + 4, len))
        };
        let kl0 = len_at(avail, 0)?;
        let vl0 = len_at(avail, 4 + kl0.min(MAX_TABLE_FIELD_BYTES + 1));
        if too_long(kl0) || vl0.is_some_and(too_long) {
            self.failed = true;
            return Some(Err(RepoError::Corrupt(format!(
                "table {}: a record field of {} bytes, more than any record Sen writes ({MAX_TABLE_FIELD_BYTES}): the repository is damaged",
                self.name,
                if too_long(kl0) { kl0 } else { vl0.unwrap_or_default() }
            ))));
        }
        let (ks, kl) = field(avail, 0)?;
        let (vs, vl) = field(avail, ks + kl)?;
        let rec = (avail[ks..ks + kl].to_vec(), avail[vs..vs + vl].to_vec());
        self.pos += vs + vl;
        Some(Ok(rec))
    }
}

impl Iterator for TableReader<'_> {
    type Item = Result<Row, RepoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(r) = self.try_record() {
                return Some(r);
            }
            match self.chunks.next() {
                Some(Ok(data)) => {
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                    self.buf.extend_from_slice(&data);
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                None => {
                    if self.pos < self.buf.len() {
                        self.failed = true;
                        return Some(Err(RepoError::Corrupt(format!(
                            "table {} ends inside a record ({} stray bytes)",
                            self.name,
                            self.buf.len() - self.pos
                        ))));
                    }
                    return None;
                }
            }
        }
    }
}

/// A `(key, value)` record of a table stream.
pub type Row = (Vec<u8>, Vec<u8>);

/// Called for each record of a database: its user key and record.
pub type KvVisitor<'a> = dyn FnMut(&[u8], KvRecord) -> Result<(), RepoError> + 'a;

/// The named table of a snapshot.
pub fn table<'a>(repo: &'a Repo, index: &'a Index, snap: &Snapshot, name: &str) -> Result<TableReader<'a>, RepoError> {
    let stream = snap
        .tables
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| RepoError::Corrupt(format!("the snapshot has no {name} table")))?;
    Ok(TableReader::new(repo, index, stream))
}

/// Does `path` fall under the `--path` selection (`""`: everything; a
/// file; or a directory and everything below it)?
pub fn path_selected(path: &str, sel: &str) -> bool {
    let sel = sel.trim_matches('/');
    sel.is_empty() || path == sel || (path.starts_with(sel) && path.as_bytes().get(sel.len()) == Some(&b'/'))
}

/// One file of a site in a snapshot.
#[derive(Debug, Clone)]
pub struct SnapFile {
    pub path: String,
    pub record: FileRecord,
}

/// The files of `site` selected by `sel`, in path order.
pub fn site_files(
    repo: &Repo,
    index: &Index,
    snap: &Snapshot,
    site: &str,
    sel: &str,
) -> Result<Vec<SnapFile>, RepoError> {
    if !snap.sites.iter().any(|s| s.name == site) {
        let names: Vec<_> = snap.sites.iter().map(|s| s.name.as_str()).collect();
        return Err(RepoError::Usage(format!(
            "the snapshot has no site {site:?} (it has: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )));
    }
    site_files_in(table(repo, index, snap, tables::FILES)?, site, sel)
}

/// The files of `site` selected by `sel` among raw records of the files
/// table (from a snapshot, or from a state rebuilt to a point in time).
pub fn site_files_in(
    records: impl IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), RepoError>>,
    site: &str,
    sel: &str,
) -> Result<Vec<SnapFile>, RepoError> {
    let mut out = Vec::new();
    for r in records {
        let (k, v) = r?;
        let Some((s, p)) = tables::split_scoped_key(&k) else {
            return Err(RepoError::Corrupt("files table: key without a site separator".into()));
        };
        if s != site {
            continue;
        }
        let path = std::str::from_utf8(p).map_err(|_| RepoError::Corrupt("files table: path is not UTF-8".into()))?;
        if !path_selected(path, sel) {
            continue;
        }
        let record = FileRecord::decode(&v).map_err(|e| RepoError::Corrupt(format!("files table: {e}")))?;
        out.push(SnapFile {
            path: path.to_owned(),
            record,
        });
    }
    Ok(out)
}

/// Totals of a restore.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreStats {
    pub files: u64,
    pub records: u64,
    pub bytes: u64,
}

/// Write `files` under `dir` (creating it), every chunk and every file
/// verified against its hash. Files are written to a temporary name and
/// renamed, with their recorded modification time. `progress` gets bytes.
pub fn restore_files(
    repo: &Repo,
    index: &Index,
    files: &[SnapFile],
    dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<RestoreStats, RepoError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let mut stats = RestoreStats::default();
    // One pipeline of parallel, read-ahead downloads for all the files; the
    // chunks arrive in order on this thread, which hands whole small files
    // to writer threads (hash check, write, rename) and writes large ones
    // itself, streaming.
    let ids: Vec<[u8; 32]> = files
        .iter()
        .flat_map(|f| f.record.chunks.iter().map(|c| c.id.0))
        .collect();
    //
    // Each directory belongs to one writer (by a hash of its path): two
    // threads creating files in one directory contend for its lock, and
    // the kernel spins on it (18% of a restore's samples on ext4 when
    // writers shared a queue; docs/benchmarks.md).
    let mut chunks = repo.fetch_chunks(index, ids);
    type Job<'f> = (&'f SnapFile, PathBuf, Vec<Vec<u8>>);
    // Files handed over but not yet written hold at most QUEUED_BYTES.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..WRITERS)
        .map(|_| std::sync::mpsc::sync_channel::<Job<'_>>(64))
        .unzip();
    let queued = ByteBudget::new(QUEUED_BYTES);
    let first_error: std::sync::Mutex<Option<RepoError>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| -> Result<(), RepoError> {
        for rx in rxs {
            let first_error = &first_error;
            let queued = &queued;
            scope.spawn(move || {
                for (f, target, data) in rx {
                    let size = data.iter().map(Vec::len).sum::<usize>();
                    if let Err(e) = write_file_owned(f, &target, data.into_iter()) {
                        first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    }
                    queued.release(size);
                }
            });
        }
        let mut made_dirs: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
        let result = (|| {
            for f in files {
                if first_error.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                    break;
                }
                let rel = sen_content::path::normalize(&f.path)
                    .map_err(|e| RepoError::Corrupt(format!("files table holds an unsafe path: {e}")))?;
                let target: PathBuf = dir.join(&rel);
                if let Some(parent) = target.parent()
                    && !made_dirs.contains(parent)
                {
                    std::fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
                    made_dirs.insert(parent.to_owned());
                }
                if f.record.size <= SMALL_FILE {
                    let mut data = Vec::with_capacity(f.record.chunks.len());
                    for _ in &f.record.chunks {
                        let d = chunks
                            .next()
                            .ok_or_else(|| RepoError::Corrupt(format!("{}: ran out of chunks", f.path)))??;
                        progress(d.len() as u64);
                        data.push(d);
                    }
                    let dir_of = {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        target.parent().hash(&mut h);
                        h.finish() as usize % WRITERS
                    };
                    queued.acquire(data.iter().map(Vec::len).sum());
                    if txs[dir_of].send((f, target, data)).is_err() {
                        break;
                    }
                } else {
                    let mut err = None;
                    let iter = f.record.chunks.iter().map_while(|_| match chunks.next() {
                        Some(Ok(d)) => {
                            progress(d.len() as u64);
                            Some(d)
                        }
                        Some(Err(e)) => {
                            err = Some(e);
                            None
                        }
                        None => {
                            err = Some(RepoError::Corrupt(format!("{}: ran out of chunks", f.path)));
                            None
                        }
                    });
                    let written = write_file_owned(f, &target, iter);
                    if let Some(e) = err {
                        return Err(e);
                    }
                    written?;
                }
                stats.files += 1;
                stats.bytes += f.record.size;
            }
            Ok(())
        })();
        drop(txs);
        result
    })?;
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(stats)
}

/// Files up to this size are written by the writer threads.
const SMALL_FILE: u64 = 4 << 20;
const WRITERS: usize = 2;
/// Bytes of files waiting for a writer thread.
const QUEUED_BYTES: usize = 32 << 20;

/// A count of bytes in flight, bounded: `acquire` waits while taking
/// `n` more would pass the limit (a single larger amount passes alone).
struct ByteBudget {
    limit: usize,
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl ByteBudget {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    fn acquire(&self, n: usize) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && *used + n > self.limit {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += n;
    }

    fn release(&self, n: usize) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> RepoError {
    move |e| RepoError::Usage(format!("{what}: {e}"))
}

/// Write one file, check its size and blake3 (a file that does not match
/// is removed), and set its modification time. Written in place, without
/// fsync (like restic and borg): an interrupted restore is simply run again.
fn write_file_owned(f: &SnapFile, target: &Path, data: impl Iterator<Item = Vec<u8>>) -> Result<(), RepoError> {
    let mut out = std::fs::File::create(target).map_err(io_err(format!("create {}", target.display())))?;
    let mut h = blake3::Hasher::new();
    let mut size = 0u64;
    for d in data {
        h.update(&d);
        size += d.len() as u64;
        out.write_all(&d)
            .map_err(io_err(format!("write {}", target.display())))?;
    }
    if size != f.record.size || h.finalize().as_bytes() != &f.record.blake3 {
        drop(out);
        let _ = std::fs::remove_file(target);
        return Err(RepoError::Corrupt(format!(
            "{}: restored content does not match the file's hash",
            f.path
        )));
    }
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_millis(f.record.mtime_ms);
    let _ = out.set_modified(mtime);
    Ok(())
}

/// One record of a database, as `restore db` writes it (JSON lines).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DbRecord {
    pub db: String,
    /// The key as UTF-8 when it is valid UTF-8, else absent (see `key_hex`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub key_hex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub value_hex: String,
    pub mod_revision: u64,
    pub create_revision: u64,
    pub version: u64,
}

/// Call `f` for every record of `db` whose key starts with `prefix`.
pub fn db_records(
    repo: &Repo,
    index: &Index,
    snap: &Snapshot,
    db: &str,
    prefix: &[u8],
    f: &mut KvVisitor<'_>,
) -> Result<u64, RepoError> {
    if !snap.databases.iter().any(|d| d.name == db) {
        let names: Vec<_> = snap.databases.iter().map(|s| s.name.as_str()).collect();
        return Err(RepoError::Usage(format!(
            "the snapshot has no database {db:?} (it has: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )));
    }
    db_records_in(table(repo, index, snap, tables::KV)?, db, prefix, f)
}

/// Call `f` for every record of `db` whose key starts with `prefix` among
/// raw records of the kv table.
pub fn db_records_in(
    records: impl IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), RepoError>>,
    db: &str,
    prefix: &[u8],
    f: &mut KvVisitor<'_>,
) -> Result<u64, RepoError> {
    let mut n = 0;
    for r in records {
        let (k, v) = r?;
        let Some((d, key)) = tables::split_scoped_key(&k) else {
            return Err(RepoError::Corrupt("kv table: key without a database separator".into()));
        };
        if d != db || !key.starts_with(prefix) {
            continue;
        }
        let rec = KvRecord::decode(&v).map_err(|e| RepoError::Corrupt(format!("kv table: {e}")))?;
        f(key, rec)?;
        n += 1;
    }
    Ok(n)
}

impl DbRecord {
    pub fn new(db: &str, key: &[u8], rec: &KvRecord) -> Self {
        Self {
            db: db.to_owned(),
            key: std::str::from_utf8(key).ok().map(str::to_owned),
            key_hex: hex::encode(key),
            value: std::str::from_utf8(&rec.value).ok().map(str::to_owned),
            value_hex: hex::encode(&rec.value),
            mod_revision: rec.mod_revision,
            create_revision: rec.create_revision,
            version: rec.version,
        }
    }
}
