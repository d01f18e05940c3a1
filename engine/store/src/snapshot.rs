//! Raft snapshots as RocksDB checkpoints of the state DB.
//!
//! Building a snapshot flushes the state DB and takes a checkpoint (hard
//! links to the immutable SST files plus copies of the small metadata
//! files), so it costs O(files), not O(bytes), and never holds state in
//! memory. A snapshot is a directory:
//!
//! ```text
//! snapshots/snap-<term>-<index>-<unix-ms>/
//!   SNAPSHOT     manifest: snapshot meta + list of files with sizes (versioned)
//!   *.sst, MANIFEST-*, CURRENT, OPTIONS-*, ...   the checkpoint
//! ```
//!
//! Transfer: the sender streams the files in bounded chunks with a blake3
//! per file; the receiver writes them into `incoming/<id>/` through
//! [`IncomingSnapshot`], which checks names, order, sizes and hashes and
//! fsyncs before producing a [`SnapshotHandle`]. Installing hard-links (or
//! copies) the files into a new state generation, checks that the opened DB
//! is at the snapshot's log id, and switches over atomically.

use sen_core::now_ms;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::checkpoint::Checkpoint;
use sen_raft::SnapshotMeta;

use crate::StoreError;
use crate::format::{CF_META, K_APPLIED, K_SNAPSHOT_INSTALLED, dec_log_id, enc};
use crate::rocks::{self, Kind, cf};
use crate::state::{STATE_CFS, StateDb, fsync_dir, io_err, open_generation, read_applied, write_atomic};

pub use sen_raft::schema::snapshot::{MANIFEST, SnapshotFile, SnapshotManifest};

#[derive(Debug)]
struct SnapshotDir {
    path: PathBuf,
    manifest: SnapshotManifest,
    remove_on_drop: AtomicBool,
}

impl Drop for SnapshotDir {
    fn drop(&mut self) {
        if self.remove_on_drop.load(Ordering::SeqCst) {
            // Deleting a large snapshot takes a while: not on the dropping
            // (possibly async) thread.
            crate::state::remove_in_background(self.path.clone(), "old snapshot");
        }
    }
}

/// A snapshot on disk; openraft's `SnapshotData`. Clones share the
/// directory, which is deleted when the last clone of a retired or
/// temporary snapshot is dropped.
#[derive(Debug, Clone)]
pub struct SnapshotHandle {
    inner: Arc<SnapshotDir>,
}

impl SnapshotHandle {
    fn new(path: PathBuf, manifest: SnapshotManifest, remove_on_drop: bool) -> Self {
        Self {
            inner: Arc::new(SnapshotDir {
                path,
                manifest,
                remove_on_drop: AtomicBool::new(remove_on_drop),
            }),
        }
    }

    /// The snapshot directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn manifest(&self) -> &SnapshotManifest {
        &self.inner.manifest
    }

    /// Delete the directory once no clone is left.
    pub(crate) fn retire(&self) {
        self.inner.remove_on_drop.store(true, Ordering::SeqCst);
    }

    /// Open one of the snapshot's files for reading.
    pub fn open_file(&self, index: usize) -> Result<fs::File, StoreError> {
        let f = self
            .inner
            .manifest
            .files
            .get(index)
            .ok_or_else(|| StoreError::Invalid(format!("snapshot has no file #{index}")))?;
        let p = self.inner.path.join(&f.name);
        fs::File::open(&p).map_err(io_err(format!("open snapshot file {}", p.display())))
    }
}

fn snapshot_dir_name(meta: &SnapshotMeta) -> String {
    let (term, index) = meta.last_log_id.map_or((0, 0), |l| (l.leader_id.term, l.index));
    format!("snap-{term}-{index}-{}", now_ms())
}

fn check_file_name(name: &str) -> Result<(), StoreError> {
    sen_raft::schema::snapshot::check_file_name(name).map_err(StoreError::Invalid)
}

/// List a checkpoint directory's files (sorted, without the manifest).
fn list_files(dir: &Path) -> Result<Vec<SnapshotFile>, StoreError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))? {
        let entry = entry.map_err(io_err(format!("list {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == MANIFEST {
            continue;
        }
        let md = entry
            .metadata()
            .map_err(io_err(format!("stat {}", entry.path().display())))?;
        if !md.is_file() {
            return Err(StoreError::Invalid(format!(
                "unexpected directory {} in a snapshot",
                entry.path().display()
            )));
        }
        check_file_name(&name)?;
        files.push(SnapshotFile { name, size: md.len() });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn fsync_file(p: &Path) -> Result<(), StoreError> {
    fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("fsync {}", p.display())))
}

/// Populate `to` from `from`: immutable table files are hard-linked (falling
/// back to a copy across filesystems), everything else is copied, because
/// RocksDB appends to its MANIFEST and WAL in place.
fn link_or_copy_dir(from: &Path, to: &Path, files: &[SnapshotFile]) -> Result<(), StoreError> {
    fs::create_dir_all(to).map_err(io_err(format!("create {}", to.display())))?;
    for f in files {
        check_file_name(&f.name)?;
        let src = from.join(&f.name);
        let dst = to.join(&f.name);
        let immutable = f.name.ends_with(".sst") || f.name.ends_with(".blob");
        if !(immutable && fs::hard_link(&src, &dst).is_ok()) {
            fs::copy(&src, &dst).map_err(io_err(format!("copy {} to {}", src.display(), dst.display())))?;
        }
        fsync_file(&dst)?;
    }
    fsync_dir(to)
}

fn write_manifest(dir: &Path, manifest: &SnapshotManifest) -> Result<(), StoreError> {
    write_atomic(&dir.join(MANIFEST), &manifest.encode()?)
}

fn read_manifest(dir: &Path) -> Result<SnapshotManifest, StoreError> {
    let p = dir.join(MANIFEST);
    let b = fs::read(&p).map_err(io_err(format!("read {}", p.display())))?;
    Ok(SnapshotManifest::decode(&b)?)
}

impl StateDb {
    fn snapshots_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    pub(crate) fn set_current_snapshot(&self, handle: SnapshotHandle) {
        let mut cur = self.current_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = cur.as_ref() {
            if old.path() == handle.path() {
                return;
            }
            // A build that started before an install can finish after it:
            // never let an older snapshot replace a newer one.
            if handle.manifest().meta.last_log_id < old.manifest().meta.last_log_id {
                handle.retire();
                return;
            }
            old.retire();
        }
        *cur = Some(handle);
    }

    /// Write the manifest into a complete temporary snapshot directory and
    /// move it to its final name, durably.
    fn publish_snapshot_dir(&self, tmp: &Path, path: &Path, manifest: &SnapshotManifest) -> Result<(), StoreError> {
        write_manifest(tmp, manifest)?;
        fs::rename(tmp, path).map_err(io_err(format!("rename {} to {}", tmp.display(), path.display())))?;
        fsync_dir(&self.snapshots_dir())
    }

    /// The latest snapshot, if any.
    pub fn current_snapshot(&self) -> Option<SnapshotHandle> {
        self.current_snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// At open: adopt the newest complete snapshot, delete the rest.
    pub(crate) fn load_latest_snapshot(&self) -> Result<(), StoreError> {
        let dir = self.snapshots_dir();
        let mut found: Vec<(PathBuf, SnapshotManifest)> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(format!("list {}", dir.display())))? {
            let entry = entry.map_err(io_err(format!("list {}", dir.display())))?;
            let p = entry.path();
            match read_manifest(&p) {
                Ok(m) if entry.file_name().to_string_lossy().starts_with("snap-") => found.push((p, m)),
                _ => {
                    tracing::info!(path = %p.display(), "removing incomplete snapshot");
                    let _ = fs::remove_dir_all(&p);
                }
            }
        }
        found.sort_by_key(|(_, m)| (m.meta.last_log_id, m.created_at_ms));
        if let Some((path, manifest)) = found.pop() {
            for (p, _) in found {
                let _ = fs::remove_dir_all(p);
            }
            self.set_current_snapshot(SnapshotHandle::new(path, manifest, false));
        }
        Ok(())
    }

    /// Build a snapshot of the current state (blocking; run it off the
    /// async runtime).
    pub fn build_snapshot(&self) -> Result<SnapshotHandle, StoreError> {
        // Flush most of the memtables before taking the gate, so the flush
        // inside the checkpoint is short.
        self.flush()?;
        let tmp = self.snapshots_dir().join(format!("tmp-{}", uuid_like()));
        let meta = {
            let _gate = self.gate();
            // The generation may have been replaced by an install meanwhile.
            let generation = self.live();
            let applied = self.applied();
            Checkpoint::new(generation.db())
                .and_then(|c| c.create_checkpoint(&tmp))
                .map_err(|e| StoreError::rocks(format!("create a checkpoint at {}", tmp.display()), e))?;
            SnapshotMeta {
                last_log_id: applied.log_id,
                last_membership: applied.membership,
            }
        };
        let built = (|| {
            let files = list_files(&tmp)?;
            for f in &files {
                fsync_file(&tmp.join(&f.name))?;
            }
            let manifest = SnapshotManifest {
                meta,
                files,
                created_at_ms: now_ms(),
            };
            let path = self.snapshots_dir().join(snapshot_dir_name(&manifest.meta));
            self.publish_snapshot_dir(&tmp, &path, &manifest)?;
            Ok(SnapshotHandle::new(path, manifest, false))
        })();
        match built {
            Ok(handle) => {
                tracing::info!(
                    last_log_id = ?handle.manifest().meta.last_log_id,
                    files = handle.manifest().files.len(),
                    bytes = handle.manifest().total_bytes(),
                    "built snapshot"
                );
                self.set_current_snapshot(handle.clone());
                Ok(handle)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Replace the whole state with `snapshot` (blocking). The snapshot may
    /// live anywhere on the same machine; its files are linked or copied.
    pub fn install_snapshot(&self, meta: &SnapshotMeta, snapshot: &SnapshotHandle) -> Result<(), StoreError> {
        let manifest = snapshot.manifest();
        if manifest.meta.last_log_id != meta.last_log_id {
            return Err(StoreError::Invalid(format!(
                "snapshot files are at log id {:?} but openraft installs {:?}",
                manifest.meta.last_log_id, meta.last_log_id
            )));
        }
        // Check every file is there with its size before touching anything.
        for f in &manifest.files {
            check_file_name(&f.name)?;
            let p = snapshot.path().join(&f.name);
            let md = fs::metadata(&p).map_err(io_err(format!("stat snapshot file {}", p.display())))?;
            if md.len() != f.size {
                return Err(StoreError::Invalid(format!(
                    "snapshot file {} is {} bytes, manifest says {}",
                    p.display(),
                    md.len(),
                    f.size
                )));
            }
        }

        let _gate = self.gate();

        // 1. Our own copy of the snapshot, so we can serve it to others.
        let ours = if snapshot.path().parent() == Some(self.snapshots_dir().as_path()) {
            snapshot.clone()
        } else {
            let path = self.snapshots_dir().join(snapshot_dir_name(meta));
            let tmp = path.with_extension("tmp");
            let _ = fs::remove_dir_all(&tmp);
            link_or_copy_dir(snapshot.path(), &tmp, &manifest.files)?;
            self.publish_snapshot_dir(&tmp, &path, manifest)?;
            SnapshotHandle::new(path, manifest.clone(), false)
        };

        // 2. A new state generation populated from it.
        let (name, gen_path) = self.next_gen_path();
        let tmp = gen_path.with_extension("tmp");
        let _ = fs::remove_dir_all(&tmp);
        link_or_copy_dir(ours.path(), &tmp, &manifest.files)?;
        fs::rename(&tmp, &gen_path).map_err(io_err(format!("rename {} to {}", tmp.display(), gen_path.display())))?;
        fsync_dir(&self.data_dir.join("state"))?;
        let generation = match open_generation(gen_path.clone(), &self.opts) {
            Ok(g) => g,
            Err(e) => {
                let _ = fs::remove_dir_all(&gen_path);
                return Err(e);
            }
        };
        let applied = read_applied(generation.db())?;
        if applied.log_id != meta.last_log_id {
            generation.retire();
            return Err(StoreError::Invalid(format!(
                "snapshot state is at log id {:?}, but its manifest says {:?}; refusing to install it",
                applied.log_id, meta.last_log_id
            )));
        }

        // Remember that this state came from a snapshot, not from the local
        // log: the start-up check that the log still covers the applied
        // state must not count the snapshot's entries as lost.
        {
            let db = generation.db();
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            let index = meta.last_log_id.map_or(0, |l| l.index);
            db.put_cf_opt(
                cf(db, CF_META)?,
                K_SNAPSHOT_INSTALLED,
                enc("snapshot index", &index)?,
                &wo,
            )
            .map_err(|e| StoreError::rocks("record the installed snapshot", e))?;
        }

        // 3. Switch: CURRENT first (the commit point on disk), then memory.
        self.set_current_gen(&name)?;
        self.swap_live(generation, applied);
        self.set_current_snapshot(ours);
        tracing::info!(last_log_id = ?meta.last_log_id, generation = %name, "installed snapshot");
        Ok(())
    }
}

/// A short unique suffix for temporary directories.
fn uuid_like() -> String {
    let n = now_ms();
    let r: u64 = std::process::id() as u64 ^ (n << 16) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{n}-{r:x}")
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Receives a snapshot's files, one after another, into `incoming/`.
pub struct IncomingSnapshot {
    dir: PathBuf,
    manifest: SnapshotManifest,
    next: usize,
    current: Option<(fs::File, blake3::Hasher, u64)>,
    done: bool,
}

impl IncomingSnapshot {
    /// Start receiving the snapshot described by `manifest`.
    pub fn begin(state: &StateDb, manifest: SnapshotManifest) -> Result<Self, StoreError> {
        manifest.check().map_err(StoreError::Invalid)?;
        let dir = state.data_dir.join("incoming").join(uuid_like());
        fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        Ok(Self {
            dir,
            manifest,
            next: 0,
            current: None,
            done: false,
        })
    }

    /// Bytes the snapshot holds in all.
    pub fn total_bytes(&self) -> u64 {
        self.manifest.total_bytes()
    }

    /// Append `data` at `offset` of file `file`. Files arrive in manifest
    /// order, each from offset 0 without gaps.
    pub fn write(&mut self, file: usize, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if self.current.is_none() {
            if file != self.next {
                return Err(StoreError::Invalid(format!(
                    "snapshot stream sent file #{file}, expected #{}",
                    self.next
                )));
            }
            let spec = self.manifest.files.get(file).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "snapshot stream sent file #{file}, which the header does not list"
                ))
            })?;
            let p = self.dir.join(&spec.name);
            let f = fs::File::create(&p).map_err(io_err(format!("create {}", p.display())))?;
            self.current = Some((f, blake3::Hasher::new(), 0));
        } else if file != self.next {
            return Err(StoreError::Invalid(format!(
                "snapshot stream switched to file #{file} before finishing #{}",
                self.next
            )));
        }
        let size = self.manifest.files[file].size;
        let (f, h, written) = self
            .current
            .as_mut()
            .ok_or_else(|| StoreError::Invalid("no open snapshot file".into()))?;
        if offset != *written {
            return Err(StoreError::Invalid(format!(
                "snapshot chunk at offset {offset}, expected {written}"
            )));
        }
        if *written + data.len() as u64 > size {
            return Err(StoreError::Invalid(format!(
                "snapshot file {} is larger than the {size} bytes announced",
                self.manifest.files[file].name
            )));
        }
        f.write_all(data).map_err(io_err("write a snapshot file"))?;
        h.update(data);
        *written += data.len() as u64;
        Ok(())
    }

    /// Finish file `file`: check its size and blake3 hash, fsync it.
    pub fn finish_file(&mut self, file: usize, hash: &[u8; 32]) -> Result<(), StoreError> {
        if file != self.next {
            return Err(StoreError::Invalid(format!(
                "snapshot stream ended file #{file}, expected #{}",
                self.next
            )));
        }
        let spec = self.manifest.files[file].clone();
        let (f, h, written) = match self.current.take() {
            Some(c) => c,
            // An empty file gets no chunks.
            None => {
                let p = self.dir.join(&spec.name);
                let f = fs::File::create(&p).map_err(io_err(format!("create {}", p.display())))?;
                (f, blake3::Hasher::new(), 0)
            }
        };
        if written != spec.size {
            return Err(StoreError::Invalid(format!(
                "snapshot file {} ended after {written} of {} bytes",
                spec.name, spec.size
            )));
        }
        if h.finalize().as_bytes() != hash {
            return Err(StoreError::Invalid(format!(
                "snapshot file {} does not match its blake3 hash; it was corrupted in transit",
                spec.name
            )));
        }
        f.sync_all().map_err(io_err(format!("fsync {}", spec.name)))?;
        self.next += 1;
        Ok(())
    }

    /// All files received: write the manifest and hand over the snapshot.
    /// The directory is deleted when the handle is dropped (installing
    /// links the files elsewhere first).
    pub fn finish(mut self) -> Result<SnapshotHandle, StoreError> {
        if self.next != self.manifest.files.len() || self.current.is_some() {
            return Err(StoreError::Invalid(format!(
                "snapshot stream ended after {} of {} files",
                self.next,
                self.manifest.files.len()
            )));
        }
        write_manifest(&self.dir, &self.manifest)?;
        self.done = true;
        Ok(SnapshotHandle::new(self.dir.clone(), self.manifest.clone(), true))
    }
}

impl Drop for IncomingSnapshot {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Read the applied log id recorded inside a snapshot directory (used by
/// tests and offline tools to check a snapshot is what it claims).
pub fn inspect_applied(dir: &Path) -> Result<Option<sen_raft::LogId>, StoreError> {
    let db = rocks::open_read_only(
        dir,
        Kind::State {
            write_buffer_bytes: 1 << 20,
        },
        STATE_CFS,
        "snapshot",
        &crate::rocks::Memory::new(8 << 20),
    )?;
    let meta = cf(&db, CF_META)?;
    match db
        .get_cf(meta, K_APPLIED)
        .map_err(|e| StoreError::rocks("read the applied log id", e))?
    {
        Some(b) => Ok(Some(dec_log_id(&b)?)),
        None => Ok(None),
    }
}
