//! An open repository: its config and keys, the object store, and the
//! operations every command builds on (objects, packs, the blob index).
//!
//! The repository code is synchronous and runs on a blocking thread: it
//! hashes, compresses and encrypts, which must not stall an async runtime
//! that also carries Raft heartbeats. Object-store calls are async; they
//! run on the runtime whose [`Handle`] the repository holds, and uploads
//! and downloads are kept in flight in parallel (bounded).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::runtime::Handle;

use crate::RepoError;
use crate::crypto::Keys;
use crate::format::*;
use crate::store::{ObjectError, ObjectStore};

/// Objects in flight per direction.
pub const PARALLEL_TRANSFERS: usize = 4;

/// Parameters of a new repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub zstd_level: i32,
    pub pack_target_bytes: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            pack_target_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLoc {
    pub pack: u32,
    pub offset: u32,
    pub len: u32,
    pub raw_len: u32,
    pub encoding: BlobEncoding,
    pub kind: BlobKind,
    pub group_offset: u32,
}

/// The in-memory blob index: about 60 bytes per blob (32-byte id, 20-byte
/// location, hash-table overhead), so 100 M blobs need about 6 GB and a
/// typical portal (a few million chunks) a few hundred MB at most.
#[derive(Debug, Default)]
pub struct Index {
    pub packs: Vec<([u8; 32], u64)>,
    pack_pos: HashMap<[u8; 32], u32>,
    pub blobs: HashMap<[u8; 32], BlobLoc>,
    /// Index objects read (their ids).
    pub files: Vec<[u8; 32]>,
}

impl Index {
    pub fn add_pack(&mut self, pack: &IndexPack) {
        let pos = match self.pack_pos.get(&pack.id) {
            Some(p) => *p,
            None => {
                let p = self.packs.len() as u32;
                self.packs.push((pack.id, pack.size));
                self.pack_pos.insert(pack.id, p);
                p
            }
        };
        for e in &pack.entries {
            self.blobs.entry(e.id).or_insert(BlobLoc {
                pack: pos,
                offset: e.offset,
                len: e.len,
                raw_len: e.raw_len,
                encoding: e.encoding,
                kind: e.kind,
                group_offset: e.group_offset,
            });
        }
    }

    pub fn pack_pos(&self, id: &[u8; 32]) -> Option<u32> {
        self.pack_pos.get(id).copied()
    }

    pub fn has_pack(&self, id: &[u8; 32]) -> bool {
        self.pack_pos.contains_key(id)
    }

    pub fn get(&self, blob: &[u8; 32]) -> Option<BlobLoc> {
        self.blobs.get(blob).copied()
    }

    pub fn pack_id(&self, loc: &BlobLoc) -> [u8; 32] {
        self.packs[loc.pack as usize].0
    }
}

/// An open repository.
pub struct Repo {
    pub store: Arc<dyn ObjectStore>,
    pub rt: Handle,
    pub config: RepoConfig,
    pub keys: Keys,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repo({})", self.store.describe())
    }
}

impl Repo {
    /// Create a repository in an empty store. Fails without writing if the
    /// store already holds one.
    pub fn init(
        store: Arc<dyn ObjectStore>,
        rt: Handle,
        password: Option<&[u8]>,
        opts: &InitOptions,
    ) -> Result<Self, RepoError> {
        if !(crate::format::MIN_PACK_BYTES..=crate::format::MAX_PACK_BYTES).contains(&opts.pack_target_bytes) {
            return Err(RepoError::Usage(format!(
                "a pack target of {} bytes is outside {}..={}",
                opts.pack_target_bytes,
                crate::format::MIN_PACK_BYTES,
                crate::format::MAX_PACK_BYTES
            )));
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        let (keys, encryption) = match password {
            Some(p) => {
                let (k, info) = Keys::generate(p, &id)?;
                (k, Some(info))
            }
            None => (Keys::None, None),
        };
        let config = RepoConfig {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id,
            created_at_ms: sen_core::now_ms(),
            table_chunker: ChunkerParams {
                algorithm: "fastcdc-2020".into(),
                min: crate::backup::TABLE_CHUNK_MIN as u32,
                avg: crate::backup::TABLE_CHUNK_AVG as u32,
                max: crate::backup::TABLE_CHUNK_MAX as u32,
            },
            zstd_level: opts.zstd_level,
            pack_target_bytes: opts.pack_target_bytes,
            encryption,
        };
        let mut json = serde_json::to_vec_pretty(&config).map_err(|e| RepoError::Format(e.to_string()))?;
        json.push(b'\n');
        let repo = Self {
            store,
            rt,
            config,
            keys,
        };
        let created = repo.block_on(repo.store.put_if_absent(CONFIG_KEY, json))?;
        if !created {
            return Err(RepoError::Usage(format!(
                "{} already holds a repository (it has a config object); use it as it is, or pick another location",
                repo.store.describe()
            )));
        }
        Ok(repo)
    }

    /// Open an existing repository; `password` is required if it is
    /// encrypted (and refused if it is not, so a typo in the URL does not
    /// go unnoticed).
    pub fn open(store: Arc<dyn ObjectStore>, rt: Handle, password: Option<&[u8]>) -> Result<Self, RepoError> {
        let describe = store.describe();
        let bytes = match rt_block_on(&rt, store.get(CONFIG_KEY)) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(RepoError::Usage(format!(
                    "{describe} holds no Sen repository (no config object): create one with `sen backup init --repo ...`"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let config = RepoConfig::parse(&bytes, &describe)?;
        let keys = match (&config.encryption, password) {
            (Some(info), Some(p)) => Keys::unlock(info, p, &config.id)?,
            (Some(_), None) => {
                return Err(RepoError::Usage(format!(
                    "{describe} is encrypted: give its password with --password-file FILE (or SEN_REPO_PASSWORD_FILE)"
                )));
            }
            (None, Some(_)) => {
                return Err(RepoError::Usage(format!(
                    "{describe} is not encrypted, but a password was given: drop --password-file"
                )));
            }
            (None, None) => Keys::None,
        };
        Ok(Self {
            store,
            rt,
            config,
            keys,
        })
    }

    pub fn describe(&self) -> String {
        self.store.describe()
    }

    pub fn block_on<T>(&self, f: impl std::future::Future<Output = Result<T, ObjectError>>) -> Result<T, RepoError> {
        rt_block_on(&self.rt, f).map_err(RepoError::from)
    }

    /// Store a metadata object; returns its id.
    pub fn put_object<T: serde::Serialize>(&self, kind: ObjectKind, value: &T) -> Result<([u8; 32], u64), RepoError> {
        let bytes = encode_object(&self.keys, kind, value)?;
        let id = *blake3::hash(&bytes).as_bytes();
        let len = bytes.len() as u64;
        self.block_on(self.store.put(&object_key(kind, &id), bytes))?;
        Ok((id, len))
    }

    /// Read and verify a metadata object.
    pub fn get_object<T: serde::de::DeserializeOwned>(&self, kind: ObjectKind, id: &[u8; 32]) -> Result<T, RepoError> {
        let key = object_key(kind, id);
        let bytes = self.block_on(self.store.get(&key))?;
        if blake3::hash(&bytes).as_bytes() != id {
            return Err(RepoError::Corrupt(format!(
                "{key}: content does not match its name (damaged object)"
            )));
        }
        decode_object(&self.keys, kind, &bytes, &key)
    }

    /// Ids of the objects of `kind`.
    pub fn list_ids(&self, kind: ObjectKind) -> Result<Vec<[u8; 32]>, RepoError> {
        let prefix = format!("{}/", kind.dir());
        let mut out = Vec::new();
        for o in self.block_on(self.store.list(&prefix))? {
            let name = o.key.rsplit('/').next().unwrap_or_default();
            match parse_id(name) {
                Some(id) => out.push(id),
                None => tracing::warn!(key = %o.key, "ignoring an object with a foreign name"),
            }
        }
        Ok(out)
    }

    /// Every pack in the store, with its size.
    pub fn list_packs(&self) -> Result<Vec<([u8; 32], u64)>, RepoError> {
        let mut out = Vec::new();
        for o in self.block_on(self.store.list(&format!("{DATA_DIR}/")))? {
            let name = o.key.rsplit('/').next().unwrap_or_default();
            if let Some(id) = parse_id(name) {
                out.push((id, o.size));
            }
        }
        Ok(out)
    }

    /// Load every index object (in parallel), skipping superseded ones.
    pub fn load_index(&self) -> Result<Index, RepoError> {
        let ids = self.list_ids(ObjectKind::Index)?;
        let files: Vec<(usize, Result<IndexFile, RepoError>)> = self
            .parallel(ids.iter().copied().enumerate(), |i, id| {
                (i, self.get_object::<IndexFile>(ObjectKind::Index, &id))
            });
        let mut loaded = Vec::new();
        for (i, f) in files {
            loaded.push((ids[i], f?));
        }
        let superseded: HashSet<[u8; 32]> = loaded.iter().flat_map(|(_, f)| f.supersedes.iter().copied()).collect();
        let mut index = Index::default();
        for (id, f) in loaded {
            if superseded.contains(&id) {
                continue;
            }
            index.files.push(id);
            for p in &f.packs {
                index.add_pack(p);
            }
        }
        Ok(index)
    }

    /// Run `f` over `items` on up to [`PARALLEL_TRANSFERS`] threads (for
    /// blocking repository calls); results in any order.
    pub fn parallel<I, T, R>(&self, items: I, f: impl Fn(usize, T) -> R + Sync) -> Vec<R>
    where
        I: Iterator<Item = (usize, T)> + Send,
        T: Send,
        R: Send,
    {
        let items = std::sync::Mutex::new(items);
        let out = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..PARALLEL_TRANSFERS {
                s.spawn(|| {
                    loop {
                        let next = items.lock().unwrap_or_else(|p| p.into_inner()).next();
                        let Some((i, t)) = next else { break };
                        let r = f(i, t);
                        out.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                    }
                });
            }
        });
        out.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// Read a pack's header from the pack itself (for `check` and for
    /// rebuilding the index from packs alone).
    pub fn read_pack_header(&self, id: &[u8; 32], size: u64) -> Result<Vec<PackEntry>, RepoError> {
        let key = pack_key(id);
        if size < 12 {
            return Err(RepoError::Corrupt(format!(
                "{key}: {size} bytes, too short to be a pack"
            )));
        }
        let trailer = self.block_on(self.store.get_range(&key, size - 12, 12))?;
        let (off, len) = pack_trailer(size, &trailer, &key)?;
        let header = self.block_on(self.store.get_range(&key, off, u64::from(len)))?;
        decode_pack_header(&self.keys, &header, &key, off)
    }

    /// The blob's plaintext, verified against `chunk_id` (the blake3 of the
    /// plaintext). `sealed` is the blob's stored bytes.
    pub fn open_blob(
        &self,
        chunk_id: &[u8; 32],
        loc: &BlobLoc,
        sealed: &[u8],
        where_: &str,
    ) -> Result<Vec<u8>, RepoError> {
        self.open_blob_stored(chunk_id, loc, sealed, where_).map(|b| b.plain)
    }

    fn open_blob_stored(
        &self,
        chunk_id: &[u8; 32],
        loc: &BlobLoc,
        sealed: &[u8],
        where_: &str,
    ) -> Result<FetchedBlob, RepoError> {
        open_blob_with(&self.keys, chunk_id, loc, sealed, where_)
    }
}

/// Open a sealed blob and verify it against `chunk_id`.
fn open_blob_with(
    keys: &Keys,
    chunk_id: &[u8; 32],
    loc: &BlobLoc,
    sealed: &[u8],
    where_: &str,
) -> Result<FetchedBlob, RepoError> {
    open_blob_cached(keys, chunk_id, loc, sealed, where_, &mut None)
}

/// Open a group's sealed frame: its whole plaintext.
pub fn open_group(keys: &Keys, sealed: &[u8], what: &str) -> Result<Vec<u8>, RepoError> {
    let frame = keys.open(sealed, GROUP_AAD, what)?;
    sen_content::zstd_ctx::decompress(&frame, GROUP_MAX)
        .map_err(|e| RepoError::Corrupt(format!("{what}: cannot decompress: {e}")))
}

/// [`open_blob_with`], reusing `cache` (offset, plaintext) of the last
/// group opened, so consecutive members decompress their group once.
fn open_blob_cached(
    keys: &Keys,
    chunk_id: &[u8; 32],
    loc: &BlobLoc,
    sealed: &[u8],
    where_: &str,
    cache: &mut Option<(u32, Vec<u8>)>,
) -> Result<FetchedBlob, RepoError> {
    {
        let blob_id = keys.blob_id(chunk_id);
        let what = format!("blob {} in {where_}", &hex_id(&blob_id)[..16]);
        let (plain, stored) = match loc.encoding {
            BlobEncoding::Raw => (keys.open(sealed, &blob_id, &what)?, None),
            BlobEncoding::Zstd => {
                if loc.raw_len as usize > sen_content::chunk::MAX_CHUNK_BYTES {
                    return Err(RepoError::Corrupt(format!(
                        "{what}: the index says it holds {} bytes, more than any chunk ({})",
                        loc.raw_len,
                        sen_content::chunk::MAX_CHUNK_BYTES
                    )));
                }
                let stored = keys.open(sealed, &blob_id, &what)?;
                (
                    sen_content::zstd_ctx::decompress(&stored, loc.raw_len as usize)
                        .map_err(|e| RepoError::Corrupt(format!("{what}: cannot decompress: {e}")))?,
                    Some(stored),
                )
            }
            BlobEncoding::Group => {
                if cache.as_ref().is_none_or(|(off, _)| *off != loc.offset) {
                    *cache = Some((loc.offset, open_group(keys, sealed, &what)?));
                }
                let group = cache.as_ref().map(|(_, g)| g.as_slice()).unwrap_or_default();
                let a = loc.group_offset as usize;
                let part = group
                    .get(a..a + loc.raw_len as usize)
                    .ok_or_else(|| RepoError::Corrupt(format!("{what}: lies outside its group")))?;
                (part.to_vec(), None)
            }
        };
        if plain.len() != loc.raw_len as usize || blake3::hash(&plain).as_bytes() != chunk_id {
            return Err(RepoError::Corrupt(format!("{what}: content does not match its hash")));
        }
        Ok(FetchedBlob {
            id: *chunk_id,
            plain,
            encoding: loc.encoding,
            stored,
        })
    }
}

impl Repo {
    /// Fetch and verify the plaintext of `chunks` (plaintext chunk ids), in
    /// order, with up to [`PARALLEL_TRANSFERS`] range reads in flight.
    /// Memory stays bounded: at most a few chunks are buffered.
    pub fn fetch_chunks<'a>(
        &'a self,
        index: &'a Index,
        chunks: Vec<[u8; 32]>,
    ) -> impl Iterator<Item = Result<Vec<u8>, RepoError>> + 'a {
        self.fetch_blobs(index, chunks).map(|r| r.map(|b| b.plain))
    }

    /// [`Repo::fetch_chunks`], also returning each blob's stored form (the
    /// zstd frame or plaintext, as the cluster stores it).
    ///
    /// Blobs that lie close together in one pack are read with one ranged
    /// read (up to 4 MiB); reads, decryption, decompression and hashing run
    /// on the runtime's blocking threads, [`PARALLEL_TRANSFERS`] reads
    /// ahead, and results come back in order. Memory stays bounded by the
    /// read-ahead window.
    pub fn fetch_blobs<'a>(
        &'a self,
        index: &'a Index,
        chunks: Vec<[u8; 32]>,
    ) -> impl Iterator<Item = Result<FetchedBlob, RepoError>> + 'a {
        const MAX_RUN: u64 = 4 << 20;
        const MAX_GAP: u64 = 256 << 10;
        struct Run {
            pack: u32,
            start: u64,
            end: u64,
            items: Vec<([u8; 32], BlobLoc)>,
        }
        // A chunk asked for more than once (identical files, repeated
        // parts) is read once and kept until its last use, within
        // KEEP_BYTES: read again, a small chunk costs the decompression of
        // its whole 1 MiB group (15x the decompression work of a restore of
        // the toolchain's documentation, where many small files repeat).
        // (Tests keep less, so that chunks are also read again.)
        const KEEP_BYTES: u64 = if cfg!(test) { 4 << 20 } else { 32 << 20 };
        let mut last_use: HashMap<[u8; 32], usize> = HashMap::new();
        for (i, c) in chunks.iter().enumerate() {
            last_use.insert(*c, i);
        }
        // Per position: read from the runs, or take from what is kept.
        let mut plan: std::collections::VecDeque<Step> = std::collections::VecDeque::with_capacity(chunks.len());
        let mut kept_plan: HashMap<[u8; 32], u32> = HashMap::new();
        let mut kept_bytes = 0u64;
        let mut runs: std::collections::VecDeque<Result<Run, RepoError>> = std::collections::VecDeque::new();
        let mut cur: Option<Run> = None;
        for (i, c) in chunks.into_iter().enumerate() {
            let last = last_use.get(&c).is_some_and(|l| *l == i);
            if let Some(len) = kept_plan.get(&c).copied() {
                if last {
                    kept_plan.remove(&c);
                    kept_bytes -= u64::from(len);
                }
                plan.push_back(Step::Kept { id: c, last });
                continue;
            }
            let blob = self.keys.blob_id(&c);
            let keep = !last
                && index
                    .get(&blob)
                    .is_some_and(|loc| kept_bytes + u64::from(loc.raw_len) <= KEEP_BYTES);
            if keep && let Some(loc) = index.get(&blob) {
                kept_plan.insert(c, loc.raw_len);
                kept_bytes += u64::from(loc.raw_len);
            }
            plan.push_back(Step::Read { keep });
            let Some(loc) = index.get(&blob) else {
                if let Some(r) = cur.take() {
                    runs.push_back(Ok(r));
                }
                runs.push_back(Err(RepoError::Corrupt(format!(
                    "blob {} (chunk {}) is not in the index: the repository lost data; run `sen backup check`",
                    &hex_id(&blob)[..16],
                    &hex_id(&c)[..16]
                ))));
                break;
            };
            let (off, end) = (u64::from(loc.offset), u64::from(loc.offset) + u64::from(loc.len));
            match &mut cur {
                Some(r)
                    if r.pack == loc.pack && off >= r.start && end <= r.start + MAX_RUN && off <= r.end + MAX_GAP =>
                {
                    r.end = r.end.max(end);
                    r.items.push((c, loc));
                }
                _ => {
                    if let Some(r) = cur.take() {
                        runs.push_back(Ok(r));
                    }
                    cur = Some(Run {
                        pack: loc.pack,
                        start: off,
                        end,
                        items: vec![(c, loc)],
                    });
                }
            }
        }
        if let Some(r) = cur.take() {
            runs.push_back(Ok(r));
        }
        let window = PARALLEL_TRANSFERS;
        let mut pending: std::collections::VecDeque<tokio::task::JoinHandle<Result<Vec<FetchedBlob>, RepoError>>> =
            std::collections::VecDeque::new();
        let mut ready: std::collections::VecDeque<FetchedBlob> = std::collections::VecDeque::new();
        let mut kept: HashMap<[u8; 32], FetchedBlob> = HashMap::new();
        let mut failed: Option<RepoError> = None;
        let mut done = false;
        std::iter::from_fn(move || {
            loop {
                if done {
                    return None;
                }
                match plan.front() {
                    Some(Step::Kept { id, last }) => {
                        let (id, last) = (*id, *last);
                        plan.pop_front();
                        let b = if last { kept.remove(&id) } else { kept.get(&id).cloned() };
                        return Some(b.ok_or_else(|| {
                            RepoError::Format(format!("restore: chunk {} was not kept", &hex_id(&id)[..16]))
                        }));
                    }
                    Some(Step::Read { keep }) if !ready.is_empty() => {
                        let keep = *keep;
                        plan.pop_front();
                        let b = ready.pop_front().expect("not empty");
                        if keep {
                            kept.insert(b.id, b.clone());
                        }
                        return Some(Ok(b));
                    }
                    _ => {}
                }
                while pending.len() < window && failed.is_none() {
                    match runs.pop_front() {
                        None => break,
                        Some(Err(e)) => failed = Some(e),
                        Some(Ok(run)) => {
                            let store = self.store.clone();
                            let keys = self.keys.clone();
                            let rt = self.rt.clone();
                            let key = pack_key(&index.pack_id(&run.items[0].1));
                            pending.push_back(self.rt.spawn_blocking(move || {
                                let data = match rt.block_on(store.get_range(&key, run.start, run.end - run.start)) {
                                    Ok(d) => d,
                                    Err(e) if e.is_not_found() => {
                                        return Err(RepoError::Corrupt(format!(
                                            "{key} is missing: the repository lost data; run `sen backup check`"
                                        )));
                                    }
                                    Err(e) => return Err(e.into()),
                                };
                                let mut out = Vec::with_capacity(run.items.len());
                                let mut cache = None;
                                for (c, loc) in &run.items {
                                    let a = (u64::from(loc.offset) - run.start) as usize;
                                    let b = a + loc.len as usize;
                                    let sealed = data.get(a..b).ok_or_else(|| {
                                        RepoError::Corrupt(format!(
                                            "{key}: pack is truncated (blob at {} needs {} bytes)",
                                            loc.offset, loc.len
                                        ))
                                    })?;
                                    out.push(open_blob_cached(&keys, c, loc, sealed, &key, &mut cache)?);
                                }
                                Ok(out)
                            }));
                        }
                    }
                }
                match pending.pop_front() {
                    Some(h) => match self.rt.block_on(h) {
                        Ok(Ok(blobs)) => ready.extend(blobs),
                        Ok(Err(e)) => {
                            done = true;
                            return Some(Err(e));
                        }
                        Err(e) => {
                            done = true;
                            return Some(Err(RepoError::Format(format!("read task failed: {e}"))));
                        }
                    },
                    None => {
                        done = true;
                        if let Some(e) = failed.take() {
                            return Some(Err(e));
                        }
                    }
                }
            }
        })
    }
}

/// Where [`Repo::fetch_blobs`] takes the next blob from.
enum Step {
    /// The next blob read (and keep it when it is asked for again).
    Read { keep: bool },
    /// A blob read earlier and kept; `last`: its last use.
    Kept { id: [u8; 32], last: bool },
}

/// A verified blob.
#[derive(Debug, Clone)]
pub struct FetchedBlob {
    /// Plaintext chunk id.
    pub id: [u8; 32],
    pub plain: Vec<u8>,
    pub encoding: BlobEncoding,
    /// The zstd frame (for `Zstd` blobs; `Raw` blobs are `plain`).
    pub stored: Option<Vec<u8>>,
}

/// Decode a pack header read from `name` at `header_offset`.
pub fn decode_pack_header(
    keys: &Keys,
    header: &[u8],
    name: &str,
    header_offset: u64,
) -> Result<Vec<PackEntry>, RepoError> {
    let entries: Vec<PackEntry> = decode_object(keys, ObjectKind::PackHeader, header, &format!("{name} (header)"))?;
    for e in &entries {
        if u64::from(e.offset) + u64::from(e.len) > header_offset {
            return Err(RepoError::Corrupt(format!(
                "{name}: header lists a blob at {}+{} past the data area ({header_offset} bytes)",
                e.offset, e.len
            )));
        }
    }
    Ok(entries)
}

pub(crate) fn rt_block_on<T>(
    rt: &Handle,
    f: impl std::future::Future<Output = Result<T, ObjectError>>,
) -> Result<T, ObjectError> {
    rt.block_on(f)
}

/// Groups being compressed and sealed at once, besides the thread adding
/// blobs: with two cores, reading the cluster's chunks and compressing
/// groups overlap. Each holds up to [`GROUP_MAX`] of plaintext.
const GROUPS_IN_FLIGHT: usize = 4;

/// Bytes of other blobs that may queue behind the open group before it is
/// closed early: it bounds memory and keeps a group's members close to the
/// blobs that came between them (one ranged read at restore).
const GROUP_HOLD: usize = 4 << 20;

/// Sealed bytes that may wait behind groups still being compressed before
/// the writer waits for the oldest group (a bound on memory when the
/// compressing threads fall behind).
const QUEUED_MAX: usize = 16 << 20;

/// A sealed unit (one blob, or one group with all its members) on its way
/// into the pack. Units are placed in the order they were started: a group
/// takes its place when its first member arrives, so a restore reading in
/// file order finds the group before the blobs that followed its first
/// member, whichever finishes first.
enum Unit {
    Ready(Vec<PackEntry>, Vec<u8>),
    /// The open group's place (at most one).
    Open,
    Sealing(tokio::task::JoinHandle<Result<SealedUnit, RepoError>>),
}

/// A unit's entries and its sealed bytes.
type SealedUnit = (Vec<PackEntry>, Vec<u8>);

/// Collects blobs into packs and uploads full packs in the background.
///
/// Groups are compressed and sealed on the runtime's blocking threads
/// ([`GROUPS_IN_FLIGHT`] at a time, with at most [`QUEUED_MAX`] of other
/// blobs waiting behind them) while the caller goes on adding blobs;
/// full packs are uploaded in the background ([`PARALLEL_TRANSFERS`] at a
/// time). Memory stays bounded by both limits.
pub struct PackWriter<'a> {
    repo: &'a Repo,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
    /// The open group: plaintexts of blobs to be compressed together.
    group: Vec<u8>,
    group_members: Vec<PackEntry>,
    /// Units not yet placed in `buf`, in order.
    units: std::collections::VecDeque<Unit>,
    /// `Sealing` units in `units`.
    sealing: usize,
    /// Bytes of `Ready` units in `units`.
    queued: usize,
    /// Bytes queued behind the open group.
    held: usize,
    /// Packs written (for the index object).
    pub written: Vec<IndexPack>,
    pub bytes_uploaded: u64,
    uploads: tokio::task::JoinSet<Result<(), ObjectError>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl<'a> PackWriter<'a> {
    pub fn new(repo: &'a Repo) -> Self {
        Self {
            repo,
            buf: Vec::new(),
            entries: Vec::new(),
            group: Vec::new(),
            group_members: Vec::new(),
            units: std::collections::VecDeque::new(),
            sealing: 0,
            queued: 0,
            held: 0,
            written: Vec::new(),
            bytes_uploaded: 0,
            uploads: tokio::task::JoinSet::new(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(PARALLEL_TRANSFERS)),
        }
    }

    /// Add a blob whose plaintext hashes to `chunk_id`. `stored` is the
    /// plaintext (`Raw`) or its zstd frame (`Zstd`), sealed as it is.
    pub fn add(
        &mut self,
        chunk_id: &[u8; 32],
        kind: BlobKind,
        encoding: BlobEncoding,
        raw_len: u32,
        stored: Vec<u8>,
    ) -> Result<(), RepoError> {
        let blob_id = self.repo.keys.blob_id(chunk_id);
        let sealed = self.repo.keys.seal(stored, &blob_id)?;
        let entry = PackEntry {
            id: blob_id,
            kind,
            encoding,
            offset: 0,
            len: 0,
            raw_len,
            group_offset: 0,
        };
        self.push_ready(vec![entry], sealed)
    }

    /// Add sealed bytes already in the repository format (copied from
    /// another pack by prune): one blob, or one group with all its members.
    pub fn add_sealed(&mut self, entries: Vec<PackEntry>, sealed: &[u8]) -> Result<(), RepoError> {
        self.push_ready(entries, sealed.to_vec())
    }

    /// Add a blob whose plaintext is `plain`: it joins the open group
    /// (compressed with its neighbours when the group closes).
    pub fn add_plain(&mut self, chunk_id: &[u8; 32], kind: BlobKind, plain: &[u8]) -> Result<(), RepoError> {
        if self.group_members.is_empty() {
            self.units.push_back(Unit::Open);
            self.held = 0;
        }
        self.group_members.push(PackEntry {
            id: self.repo.keys.blob_id(chunk_id),
            kind,
            encoding: BlobEncoding::Group,
            offset: 0,
            len: 0,
            raw_len: plain.len() as u32,
            group_offset: self.group.len() as u32,
        });
        self.group.extend_from_slice(plain);
        if self.group.len() >= GROUP_TARGET {
            self.flush_group()?;
        }
        Ok(())
    }

    /// Hand the open group to a blocking thread to be compressed and sealed.
    fn flush_group(&mut self) -> Result<(), RepoError> {
        if self.group_members.is_empty() {
            return Ok(());
        }
        let plain = std::mem::take(&mut self.group);
        let members = std::mem::take(&mut self.group_members);
        let keys = self.repo.keys.clone();
        let level = self.repo.config.zstd_level;
        let task = self.repo.rt.spawn_blocking(move || {
            let frame =
                sen_content::zstd_ctx::compress(&plain, level).map_err(|e| RepoError::Format(format!("zstd: {e}")))?;
            Ok((members, keys.seal(frame, GROUP_AAD)?))
        });
        let slot = self
            .units
            .iter_mut()
            .find(|u| matches!(u, Unit::Open))
            .ok_or_else(|| RepoError::Format("pack writer: the open group has no place".into()))?;
        *slot = Unit::Sealing(task);
        self.sealing += 1;
        self.place_done(false)
    }

    /// Queue a sealed unit behind the ones not yet placed, and place what
    /// is done. A group open too long behind it is closed.
    fn push_ready(&mut self, entries: Vec<PackEntry>, sealed: Vec<u8>) -> Result<(), RepoError> {
        if self.units.is_empty() {
            return self.place(entries, &sealed);
        }
        if !self.group_members.is_empty() {
            self.held += sealed.len();
        }
        self.queued += sealed.len();
        self.units.push_back(Unit::Ready(entries, sealed));
        if self.held > GROUP_HOLD {
            self.flush_group()?;
        }
        self.place_done(false)
    }

    /// Place finished units into the pack, in order; with `all`, wait for
    /// every unit. Waits for the oldest group while too many are in flight.
    fn place_done(&mut self, all: bool) -> Result<(), RepoError> {
        while let Some(front) = self.units.front() {
            match front {
                Unit::Open => break,
                Unit::Sealing(h)
                    if !all && self.sealing <= GROUPS_IN_FLIGHT && self.queued <= QUEUED_MAX && !h.is_finished() =>
                {
                    break;
                }
                _ => {}
            }
            let (entries, sealed) = match self.units.pop_front().expect("front exists") {
                Unit::Ready(entries, sealed) => {
                    self.queued -= sealed.len();
                    (entries, sealed)
                }
                Unit::Open => unreachable!("checked above"),
                Unit::Sealing(h) => {
                    self.sealing -= 1;
                    self.repo
                        .rt
                        .block_on(h)
                        .map_err(|e| RepoError::Format(format!("compression task failed: {e}")))??
                }
            };
            self.place(entries, &sealed)?;
        }
        Ok(())
    }

    /// Append one sealed unit to the pack; close the pack at its target.
    fn place(&mut self, entries: Vec<PackEntry>, sealed: &[u8]) -> Result<(), RepoError> {
        let offset = self.buf.len() as u32;
        for mut e in entries {
            e.offset = offset;
            e.len = sealed.len() as u32;
            self.entries.push(e);
        }
        self.buf.extend_from_slice(sealed);
        if self.buf.len() as u64 >= self.repo.config.pack_target_bytes {
            self.close_pack()?;
        }
        Ok(())
    }

    /// Close the current pack (if any) and start its upload, after every
    /// blob added so far.
    pub fn flush(&mut self) -> Result<(), RepoError> {
        self.flush_group()?;
        self.place_done(true)?;
        self.close_pack()
    }

    /// Close the pack being filled and start its upload.
    fn close_pack(&mut self) -> Result<(), RepoError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.entries);
        let mut pack = std::mem::take(&mut self.buf);
        let header = encode_object(&self.repo.keys, ObjectKind::PackHeader, &entries)?;
        pack.extend_from_slice(&header);
        pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
        pack.extend_from_slice(PACK_MAGIC);
        let id = *blake3::hash(&pack).as_bytes();
        let size = pack.len() as u64;
        self.bytes_uploaded += size;
        self.written.push(IndexPack { id, size, entries });
        // Bounded: wait for a slot, reaping finished uploads' errors early.
        let permit = self
            .repo
            .rt
            .block_on(self.in_flight.clone().acquire_owned())
            .map_err(|_| RepoError::Format("upload limiter closed".into()))?;
        while let Some(done) = self.uploads.try_join_next() {
            flatten(done)?;
        }
        let store = self.repo.store.clone();
        let key = pack_key(&id);
        self.uploads.spawn_on(
            async move {
                let r = store.put(&key, pack).await;
                drop(permit);
                r
            },
            &self.repo.rt,
        );
        Ok(())
    }

    /// Close the last pack and wait for every upload.
    pub fn finish(&mut self) -> Result<(), RepoError> {
        self.flush()?;
        let mut first = Ok(());
        while let Some(done) = self.repo.rt.block_on(self.uploads.join_next()) {
            if let Err(e) = flatten(done)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

fn flatten(r: Result<Result<(), ObjectError>, tokio::task::JoinError>) -> Result<(), RepoError> {
    match r {
        Ok(r) => r.map_err(RepoError::from),
        Err(e) => Err(RepoError::Format(format!("upload task failed: {e}"))),
    }
}
