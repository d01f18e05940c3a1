//! Pushing a directory to a site as one atomic deployment.
//!
//! Push:
//! 1. list the site's current tree (with chunk lists) and remember its
//!    deployment id;
//! 2. read every local file once, computing its blake3 and its FastCDC
//!    chunks (files equal to the remote ones keep their chunk lists);
//! 3. ask the cluster which chunks of new and changed files it lacks;
//! 4. upload only those: read each again from its file, compress, verify,
//!    send in batches of about 1 MiB, a few in parallel (memory stays at a
//!    few batches whatever the tree's size);
//! 5. upload the manifest the same way and deploy it, conditional on the
//!    deployment listed in step 1.
//!
//! An interrupted push leaves the site as it was; its uploaded chunks are
//! reused by the next push (or collected after the grace period).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, UNIX_EPOCH};

use sen_content::{ChunkId, ChunkRef, FileEntry, Manifest, StoredChunk, chunker, manifest, path};
use sen_proto::v1::*;
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::Code;

use crate::{Client, ClientError};

use super::{err, to_entry, wire_chunk};

/// Most stored bytes in one upload request.
const UPLOAD_BATCH_BYTES: usize = 1024 * 1024;
/// Chunks per upload request (the server takes up to 4096).
const UPLOAD_BATCH_CHUNKS: usize = 1024;
/// Plaintext per upload request (the server takes up to 256 MiB).
const UPLOAD_BATCH_PLAIN: u64 = 64 * 1024 * 1024;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Remove remote files that are not in the directory.
    pub delete: bool,
    /// Compute and report, send nothing.
    pub dry_run: bool,
    pub message: String,
    pub author: String,
    /// Upload requests in flight (and hashing threads).
    pub parallel: usize,
    /// zstd level for chunks (1–19).
    pub zstd_level: i32,
    /// Read and hash every file, even those whose size and modification
    /// time equal the site's copy (by default those are taken as unchanged,
    /// like rsync's quick check).
    pub checksum: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            delete: false,
            dry_run: false,
            message: String::new(),
            author: whoami(),
            parallel: 4,
            zstd_level: 3,
            checksum: false,
        }
    }
}

fn whoami() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

/// Progress of a push, for progress bars.
#[derive(Debug, Clone)]
pub enum PushEvent {
    /// About to read `files` local files of `bytes` in all.
    Scanning {
        files: u64,
        bytes: u64,
    },
    /// `bytes` more were read.
    Scanned {
        bytes: u64,
    },
    /// About to upload chunks of `bytes` (plaintext) in all.
    Uploading {
        chunks: u64,
        bytes: u64,
    },
    /// `bytes` more (plaintext) were uploaded.
    Uploaded {
        bytes: u64,
    },
    Deploying,
}

pub type Progress = Arc<dyn Fn(PushEvent) + Send + Sync>;

/// What a push did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushSummary {
    pub site: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub files_deleted: u64,
    /// Files in the new tree.
    pub files_total: u64,
    /// Size of the local tree compared with the site.
    pub bytes_scanned: u64,
    /// Bytes actually read and hashed (files whose size and modification
    /// time matched the site's copy are skipped unless `checksum`).
    pub bytes_hashed: u64,
    /// Chunk bytes actually sent (as stored: compressed or raw).
    pub bytes_sent: u64,
    /// Plaintext bytes of the chunks sent.
    pub bytes_sent_plain: u64,
    pub chunks_sent: u64,
    /// Distinct chunks of new and changed files.
    pub chunks_considered: u64,
    /// bytes_scanned / bytes_sent_plain: how much of the tree did not
    /// travel because the cluster already had it (0 when nothing was sent).
    pub dedup_ratio: f64,
    /// bytes_sent_plain / bytes_sent: what zstd saved on what did travel
    /// (0 when nothing was sent).
    pub compression_ratio: f64,
    /// The new deployment (absent for a dry run or when nothing changed).
    pub deployment: Option<u64>,
    pub dry_run: bool,
    pub duration_ms: u64,
    /// Local entries skipped (symlinks, devices…), with the reason.
    pub skipped: Vec<String>,
}

/// A local file found by the scan.
struct Local {
    path: String,
    abs: PathBuf,
    size: u64,
    mtime_ms: u64,
}

/// Where to read a chunk again for upload.
#[derive(Clone, Copy)]
struct Loc {
    file: usize,
    offset: u64,
    len: u32,
}

fn mtime_ms(md: &std::fs::Metadata) -> u64 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Walk `dir`: regular files with normalised relative paths, sorted.
fn scan(dir: &Path) -> Result<(Vec<Local>, Vec<String>), ClientError> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    if !dir.is_dir() {
        return Err(err(
            Code::InvalidArgument,
            format!("{} is not a directory", dir.display()),
        ));
    }
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| err(Code::InvalidArgument, format!("cannot read {}: {e}", dir.display())))?;
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .map_err(|_| err(Code::Internal, "path outside the directory"))?;
        let rel_s = rel.to_str().ok_or_else(|| {
            err(
                Code::InvalidArgument,
                format!("file name {} is not UTF-8", rel.display()),
            )
        })?;
        if !ft.is_file() {
            skipped.push(format!(
                "{rel_s}: not a regular file (symlinks and devices are not pushed)"
            ));
            continue;
        }
        let p = path::normalize(rel_s).map_err(|e| err(Code::InvalidArgument, e.to_string()))?;
        let md = entry
            .metadata()
            .map_err(|e| err(Code::InvalidArgument, format!("cannot stat {rel_s}: {e}")))?;
        files.push(Local {
            path: p,
            abs: entry.path().to_owned(),
            size: md.len(),
            mtime_ms: mtime_ms(&md),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for w in files.windows(2) {
        if w[0].path == w[1].path {
            return Err(err(
                Code::InvalidArgument,
                format!("two files normalise to the same name {:?} (NFC)", w[0].path),
            ));
        }
    }
    Ok((files, skipped))
}

/// Hash and chunk `files` on `threads` threads.
/// Hash and chunk `files[i]` for every `i` in `which`, on `threads`
/// threads; results in the order of `which`.
fn chunk_all(
    files: &[Local],
    which: &[usize],
    threads: usize,
    progress: Option<&Progress>,
) -> Result<Vec<FileEntry>, ClientError> {
    let next = AtomicU64::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<FileEntry, ClientError>>>> =
        which.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(f) = which.get(i).map(|&w| &files[w]) else {
                        return;
                    };
                    let r = chunk_one(f, progress);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(err(Code::Internal, "file not processed")))
        })
        .collect()
}

fn chunk_one(f: &Local, progress: Option<&Progress>) -> Result<FileEntry, ClientError> {
    let file = std::fs::File::open(&f.abs)
        .map_err(|e| err(Code::InvalidArgument, format!("cannot open {}: {e}", f.abs.display())))?;
    let mut hasher = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    for c in chunker::chunks(std::io::BufReader::with_capacity(1 << 20, file)) {
        let c = c.map_err(|e| err(Code::InvalidArgument, format!("cannot read {}: {e}", f.abs.display())))?;
        hasher.update(&c.data);
        size += c.data.len() as u64;
        chunks.push(ChunkRef {
            id: c.id,
            len: c.data.len() as u32,
        });
        if let Some(p) = progress {
            p(PushEvent::Scanned {
                bytes: c.data.len() as u64,
            });
        }
    }
    Ok(FileEntry {
        path: f.path.clone(),
        size,
        blake3: *hasher.finalize().as_bytes(),
        mtime_ms: f.mtime_ms,
        chunks,
    })
}

impl Client {
    /// Push `dir` to `site` as one deployment (see the module docs).
    pub async fn push(
        &self,
        site: &str,
        dir: &Path,
        opts: &PushOptions,
        progress: Option<Progress>,
    ) -> Result<PushSummary, ClientError> {
        let started = Instant::now();
        let mut summary = PushSummary {
            site: site.into(),
            dry_run: opts.dry_run,
            ..Default::default()
        };
        // 1. The current tree.
        let (remote_list, base) = self.list_files(site, "", true).await?;
        let remote: HashMap<String, FileEntry> = remote_list
            .iter()
            .map(|f| Ok((f.path.clone(), to_entry(f)?)))
            .collect::<Result<_, ClientError>>()?;

        // 2. Scan, hash and chunk the local tree.
        let dir_owned = dir.to_owned();
        let (locals, skipped) = tokio::task::spawn_blocking(move || scan(&dir_owned))
            .await
            .map_err(|e| err(Code::Internal, e.to_string()))??;
        summary.skipped = skipped;
        if let Some(p) = &progress {
            p(PushEvent::Scanning {
                files: locals.len() as u64,
                bytes: locals.iter().map(|l| l.size).sum(),
            });
        }
        // Quick check: same size and modification time as the site's copy
        // means unchanged, without reading the file.
        let quick = |l: &Local| {
            !opts.checksum
                && l.mtime_ms != 0
                && remote
                    .get(&l.path)
                    .is_some_and(|r| r.size == l.size && r.mtime_ms == l.mtime_ms)
        };
        let to_hash: Vec<usize> = (0..locals.len()).filter(|&i| !quick(&locals[i])).collect();
        if let Some(p) = &progress {
            let skipped: u64 = locals.iter().filter(|l| quick(l)).map(|l| l.size).sum();
            if skipped > 0 {
                p(PushEvent::Scanned { bytes: skipped });
            }
        }
        let locals = Arc::new(locals);
        let (l2, w2, p2, threads) = (
            locals.clone(),
            to_hash.clone(),
            progress.clone(),
            opts.parallel.clamp(1, 8),
        );
        let hashed = tokio::task::spawn_blocking(move || chunk_all(&l2, &w2, threads, p2.as_ref()))
            .await
            .map_err(|e| err(Code::Internal, e.to_string()))??;
        summary.bytes_scanned = locals.iter().map(|l| l.size).sum();
        summary.bytes_hashed = hashed.iter().map(|e| e.size).sum();
        // (index into `locals`, entry) for every local file.
        let mut entries: Vec<(usize, FileEntry)> = to_hash.iter().copied().zip(hashed).collect();
        for (i, l) in locals.iter().enumerate() {
            if quick(l)
                && let Some(r) = remote.get(&l.path)
            {
                entries.push((i, r.clone()));
            }
        }

        // The new tree, and where each chunk to upload can be read again.
        let mut files: Vec<FileEntry> = Vec::new();
        let mut locs: HashMap<ChunkId, Loc> = HashMap::new();
        let local_paths: HashSet<&str> = entries.iter().map(|(_, e)| e.path.as_str()).collect();
        for (i, e) in entries.iter() {
            let i = *i;
            match remote.get(&e.path) {
                Some(r) if r.blake3 == e.blake3 && r.size == e.size => {
                    summary.files_unchanged += 1;
                    // Keep the stored chunk list (identical content).
                    files.push(FileEntry {
                        mtime_ms: e.mtime_ms,
                        ..r.clone()
                    });
                    continue;
                }
                Some(_) => summary.files_changed += 1,
                None => summary.files_new += 1,
            }
            let mut off = 0u64;
            for c in &e.chunks {
                locs.entry(c.id).or_insert(Loc {
                    file: i,
                    offset: off,
                    len: c.len,
                });
                off += u64::from(c.len);
            }
            files.push(e.clone());
        }
        for (p, r) in &remote {
            if !local_paths.contains(p.as_str()) {
                if opts.delete {
                    summary.files_deleted += 1;
                } else {
                    files.push(r.clone());
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        summary.files_total = files.len() as u64;
        let new_tree = Manifest { files };
        new_tree
            .validate()
            .map_err(|e| err(Code::InvalidArgument, e.to_string()))?;

        // 3. What the cluster lacks.
        let candidates: Vec<ChunkId> = locs.keys().copied().collect();
        summary.chunks_considered = candidates.len() as u64;
        let missing = self.missing_chunks(&candidates).await?;
        let encoded = new_tree.encode().map_err(|e| err(Code::Internal, e.to_string()))?;
        let (manifest_refs, manifest_pieces) = manifest::split(&encoded);
        let manifest_ids: Vec<ChunkId> = manifest_refs.iter().map(|r| r.id).collect();
        let manifest_missing = self.missing_chunks(&manifest_ids).await?;

        let nothing_changed =
            summary.files_new == 0 && summary.files_changed == 0 && summary.files_deleted == 0 && base != 0;
        if opts.dry_run || nothing_changed {
            summary.bytes_sent_plain = missing
                .iter()
                .filter_map(|id| locs.get(id))
                .map(|l| u64::from(l.len))
                .sum();
            summary.chunks_sent = if opts.dry_run { missing.len() as u64 } else { 0 };
            if !opts.dry_run {
                summary.bytes_sent_plain = 0;
            }
            summary.duration_ms = started.elapsed().as_millis() as u64;
            summary.dedup_ratio = 0.0;
            return Ok(summary);
        }

        // 4. Upload what is missing: file chunks, then manifest chunks.
        let mut to_send: Vec<(ChunkId, Loc)> = missing
            .iter()
            .filter_map(|id| locs.get(id).map(|l| (*id, *l)))
            .collect();
        to_send.sort_by_key(|(_, l)| (l.file, l.offset));
        if let Some(p) = &progress {
            p(PushEvent::Uploading {
                chunks: to_send.len() as u64,
                bytes: to_send.iter().map(|(_, l)| u64::from(l.len)).sum(),
            });
        }
        let (sent, sent_plain, chunks_sent) = self
            .upload(
                locals.clone(),
                to_send,
                opts.zstd_level,
                opts.parallel.max(1),
                progress.clone(),
            )
            .await?;
        let mut manifest_batch = Vec::new();
        let mut m_sent = 0u64;
        for piece in &manifest_pieces {
            let c = StoredChunk::encode(piece, opts.zstd_level).map_err(|e| err(Code::Internal, e.to_string()))?;
            if manifest_missing.contains(&c.id) {
                m_sent += c.data.len() as u64;
                manifest_batch.push(wire_chunk(c));
            }
        }
        for batch in manifest_batch.chunks(8) {
            self.put_chunks(batch.to_vec()).await?;
        }
        summary.bytes_sent = sent + m_sent;
        summary.bytes_sent_plain = sent_plain;
        summary.chunks_sent = chunks_sent + manifest_batch.len() as u64;

        // 5. Deploy, conditional on the tree we started from.
        if let Some(p) = &progress {
            p(PushEvent::Deploying);
        }
        let r = self
            .deploy(DeployRequest {
                header: None,
                site: site.into(),
                manifest: manifest_refs
                    .iter()
                    .map(|r| sen_proto::v1::ChunkRef {
                        id: r.id.0.to_vec(),
                        len: r.len,
                    })
                    .collect(),
                manifest_hash: blake3::hash(&encoded).as_bytes().to_vec(),
                base: Some(base),
                author: opts.author.clone(),
                message: opts.message.clone(),
            })
            .await?;
        summary.deployment = Some(r.deployment);
        summary.duration_ms = started.elapsed().as_millis() as u64;
        if summary.bytes_sent > 0 && summary.bytes_sent_plain > 0 {
            summary.dedup_ratio = summary.bytes_scanned as f64 / summary.bytes_sent_plain as f64;
            summary.compression_ratio = summary.bytes_sent_plain as f64 / summary.bytes_sent as f64;
        }
        Ok(summary)
    }

    /// Read, compress and send `chunks` (sorted by file and offset) with
    /// `parallel` requests in flight. Returns (stored bytes, plaintext
    /// bytes, chunks) sent.
    async fn upload(
        &self,
        locals: Arc<Vec<Local>>,
        chunks: Vec<(ChunkId, Loc)>,
        level: i32,
        parallel: usize,
        progress: Option<Progress>,
    ) -> Result<(u64, u64, u64), ClientError> {
        let (tx, mut rx) = mpsc::channel::<Result<(Vec<Chunk>, u64), ClientError>>(parallel);
        // Producer: one blocking thread reads and compresses, in file order.
        let producer = tokio::task::spawn_blocking(move || {
            let mut open: Option<(usize, std::fs::File)> = None;
            let mut batch = Vec::new();
            let (mut size, mut plain) = (0usize, 0u64);
            for (id, loc) in chunks {
                let piece = (|| -> Result<Vec<u8>, ClientError> {
                    let f = &locals[loc.file];
                    if open.as_ref().is_none_or(|(i, _)| *i != loc.file) {
                        let file = std::fs::File::open(&f.abs)
                            .map_err(|e| err(Code::InvalidArgument, format!("cannot open {}: {e}", f.abs.display())))?;
                        open = Some((loc.file, file));
                    }
                    let (_, file) = open.as_mut().ok_or_else(|| err(Code::Internal, "no file"))?;
                    let mut buf = vec![0u8; loc.len as usize];
                    file.seek(SeekFrom::Start(loc.offset))
                        .and_then(|_| file.read_exact(&mut buf))
                        .map_err(|e| err(Code::InvalidArgument, format!("cannot read {}: {e}", f.abs.display())))?;
                    if ChunkId::of(&buf) != id {
                        return Err(err(
                            Code::Aborted,
                            format!("{} changed while it was being pushed; run the push again", f.path),
                        ));
                    }
                    Ok(buf)
                })();
                let piece = match piece {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                let c = match StoredChunk::encode(&piece, level) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(err(Code::Internal, e.to_string())));
                        return;
                    }
                };
                let full = size + c.data.len() > UPLOAD_BATCH_BYTES
                    || batch.len() >= UPLOAD_BATCH_CHUNKS
                    || plain + u64::from(c.len) > UPLOAD_BATCH_PLAIN;
                if full && !batch.is_empty() {
                    if tx.blocking_send(Ok((std::mem::take(&mut batch), plain))).is_err() {
                        return;
                    }
                    size = 0;
                    plain = 0;
                }
                size += c.data.len();
                plain += u64::from(c.len);
                batch.push(wire_chunk(c));
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(Ok((batch, plain)));
            }
        });
        // Uploaders: up to `parallel` requests in flight.
        let mut inflight = futures::stream::FuturesUnordered::new();
        let (mut sent, mut sent_plain, mut count) = (0u64, 0u64, 0u64);
        let mut done = false;
        use futures::StreamExt;
        loop {
            while !done && inflight.len() < parallel {
                match rx.recv().await {
                    Some(Ok((batch, plain))) => {
                        let bytes: u64 = batch.iter().map(|c| c.data.len() as u64).sum();
                        let n = batch.len() as u64;
                        inflight.push(async move { self.put_chunks(batch).await.map(|_| (bytes, plain, n)) });
                    }
                    Some(Err(e)) => return Err(e),
                    None => done = true,
                }
            }
            match inflight.next().await {
                Some(r) => {
                    let (bytes, plain, n) = r?;
                    sent += bytes;
                    sent_plain += plain;
                    count += n;
                    if let Some(p) = &progress {
                        p(PushEvent::Uploaded { bytes: plain });
                    }
                }
                None if done => break,
                None => {}
            }
        }
        producer.await.map_err(|e| err(Code::Internal, e.to_string()))?;
        Ok((sent, sent_plain, count))
    }
}
