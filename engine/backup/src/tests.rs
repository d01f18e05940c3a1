//! Repository tests on the local-directory backend with an in-memory state
//! (the cluster-level round trips run real `sen` processes: cli/tests).

use std::collections::BTreeMap;
use std::sync::Arc;

use sen_content::StoredChunk;

use crate::backup::{self, BackupOptions, SourcePosition, StateSource};
use crate::format::*;
use crate::prune::{self, KeepPolicy};
use crate::read;
use crate::repo::{InitOptions, Repo};
use crate::{LocalStore, ObjectStore, RepoError, check};

/// A state held in memory: tables of records, and content chunks.
#[derive(Default, Clone)]
struct MemState {
    tables: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    chunks: BTreeMap<[u8; 32], StoredChunk>,
    index: u64,
}

impl MemState {
    fn put_chunk(&mut self, data: &[u8]) -> [u8; 32] {
        let c = StoredChunk::encode(data, 3).expect("encode");
        let id = c.id.0;
        self.tables
            .entry("chunk_meta".into())
            .or_default()
            .insert(id.to_vec(), b"meta".to_vec());
        self.chunks.insert(id, c);
        id
    }
}

impl StateSource for MemState {
    fn position(&self) -> SourcePosition {
        SourcePosition {
            cluster_id: "test-cluster".into(),
            raft_index: self.index,
            raft_term: 1,
            node_id: 1,
            state_digest: "digest".into(),
        }
    }
    fn tables(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }
    fn scan(&self, table: &str, f: &mut backup::RowVisitor<'_>) -> Result<(), RepoError> {
        for (k, v) in self.tables.get(table).into_iter().flatten() {
            f(k, v)?;
        }
        Ok(())
    }
    fn chunk(&self, id: &[u8; 32]) -> Result<Option<StoredChunk>, RepoError> {
        Ok(self.chunks.get(id).cloned())
    }
    fn sites(&self) -> Result<Vec<SiteSummary>, RepoError> {
        Ok(Vec::new())
    }
    fn databases(&self) -> Result<Vec<DbSummary>, RepoError> {
        Ok(Vec::new())
    }
}

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A state with a 20k-record table (~2.4 MB) and 40 content chunks.
fn sample_state(seed: u64) -> MemState {
    let mut s = MemState {
        index: 100,
        ..Default::default()
    };
    let mut r = seed;
    let kv = s.tables.entry("kv".into()).or_default();
    for i in 0..20_000u32 {
        let v: Vec<u8> = (0..120).map(|_| (xorshift(&mut r) % 26) as u8 + b'a').collect();
        kv.insert(format!("db\0key-{i:06}").into_bytes(), v);
    }
    for i in 0..40u32 {
        let data: Vec<u8> = (0..50_000).map(|j| ((j * (i + 1)) % 251) as u8).collect();
        s.put_chunk(&data);
    }
    s
}

fn read_table(repo: &Repo, snap: &Snapshot, name: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let index = repo.load_index().expect("index");
    read::table(repo, &index, snap, name)
        .expect("table")
        .map(|r| r.expect("record"))
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Self { _dir: dir, root, rt }
    }
    fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(LocalStore::new(&self.root).expect("store"))
    }
    fn init(&self, password: Option<&[u8]>) -> Repo {
        let opts = InitOptions {
            pack_target_bytes: 256 * 1024,
            ..Default::default()
        };
        Repo::init(self.store(), self.rt.handle().clone(), password, &opts).expect("init")
    }
    fn open(&self, password: Option<&[u8]>) -> Result<Repo, RepoError> {
        Repo::open(self.store(), self.rt.handle().clone(), password)
    }
    fn files(&self, dir: &str) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }
}

fn take(repo: &Repo, state: &MemState) -> backup::BackupOutcome {
    backup::create(repo, state, &BackupOptions::default(), &|_, _| {}).expect("backup")
}

#[test]
fn round_trip_and_incremental() {
    for password in [None, Some(&b"secret"[..])] {
        let fx = Fixture::new();
        let repo = fx.init(password);
        let mut state = sample_state(7);
        let first = take(&repo, &state);
        assert!(first.snapshot.stats.bytes_new > 0);
        assert_eq!(first.snapshot.stats.content_chunks, 40);
        // A local repository reports its file system's space (the growth
        // report's forecast of when it fills).
        let (free, total) = first.repo_space.expect("a local store knows its space");
        assert!(free > 0 && free <= total, "{free} of {total}");
        assert_eq!(first.snapshot.stats.content_chunks_new, 40);
        assert_eq!(read_table(&repo, &first.snapshot, "kv"), state.tables["kv"]);

        // Unchanged: no new blob, nothing but the manifest uploaded.
        let again = take(&repo, &state);
        assert_eq!(again.snapshot.stats.blobs_new, 0, "unchanged state uploads no blob");

        // 1% of the records changed, scattered, and one new chunk: only
        // the chunks around them travel.
        let mut r = 99u64;
        let keys: Vec<Vec<u8>> = state.tables["kv"].keys().cloned().collect();
        for _ in 0..200 {
            let k = &keys[(xorshift(&mut r) % keys.len() as u64) as usize];
            state
                .tables
                .get_mut("kv")
                .expect("kv")
                .insert(k.clone(), b"changed".to_vec());
        }
        state.put_chunk(b"a brand new chunk of content");
        let inc = take(&repo, &state);
        let total_table_blobs = inc.snapshot.tables.iter().map(|t| t.chunks.len()).sum::<usize>() as u64;
        assert!(
            inc.snapshot.stats.blobs_new * 2 < total_table_blobs,
            "scattered updates re-upload only some chunks ({} of {total_table_blobs})",
            inc.snapshot.stats.blobs_new
        );
        assert_eq!(inc.snapshot.stats.content_chunks_new, 1);
        assert_eq!(read_table(&repo, &inc.snapshot, "kv"), state.tables["kv"]);

        // Content chunks read back verified.
        let index = repo.load_index().expect("index");
        let ids: Vec<[u8; 32]> = state.chunks.keys().copied().collect();
        for (id, data) in ids.iter().zip(repo.fetch_chunks(&index, ids.clone())) {
            let data = data.expect("chunk");
            assert_eq!(&data, &state.chunks[id].decode().expect("decode"));
        }

        let report = check::check(&repo, 100).expect("check");
        assert!(report.ok, "{:?}", report.errors);
        assert_eq!(read::list_snapshots(&repo).expect("list").len(), 3);
    }
}

/// Content chunks take three routes into packs (large compressed ones as
/// the cluster's own frame, small compressed ones regrouped on other
/// threads, incompressible ones raw); whatever finishes first, every blob
/// lands in the order the backup met it and reads back verified.
#[test]
fn each_kind_of_content_chunk_keeps_its_place_and_reads_back() {
    for password in [None, Some(&b"secret"[..])] {
        let fx = Fixture::new();
        let repo = fx.init(password);
        let mut state = MemState {
            index: 1,
            ..Default::default()
        };
        let mut r = 5u64;
        for i in 0..300u32 {
            let len = match i % 3 {
                0 => 1_000 + (xorshift(&mut r) % 30_000) as usize,
                1 => backup::COPY_MIN_CHUNK as usize + (xorshift(&mut r) % 200_000) as usize,
                _ => 20_000 + (xorshift(&mut r) % 100_000) as usize,
            };
            let data: Vec<u8> = if i % 3 == 2 {
                (0..len).map(|_| xorshift(&mut r) as u8).collect()
            } else {
                let words = [
                    &b"sen "[..],
                    b"portal ",
                    b"\xc4\x91\xe1\xbb\x93ng ",
                    b"th\xc3\xa1p ",
                    b"<p>",
                    b"</p>\n",
                ];
                let mut d = Vec::with_capacity(len);
                while d.len() < len {
                    d.extend_from_slice(words[(xorshift(&mut r) % 6) as usize]);
                }
                d.truncate(len);
                d
            };
            state.put_chunk(&data);
        }
        let out = take(&repo, &state);
        assert_eq!(out.snapshot.stats.content_chunks_new, 300);

        let index = repo.load_index().expect("index");
        let order: Vec<[u8; 32]> = state.chunks.keys().copied().collect();
        let mut seen = std::collections::HashMap::new();
        let mut last = (0u32, 0u32);
        let mut units = std::collections::HashSet::new();
        for id in &order {
            let loc = index.get(&repo.keys.blob_id(id)).expect("indexed");
            *seen.entry(format!("{:?}", loc.encoding)).or_insert(0) += 1;
            // Units (a blob, or a group of them) are written in the order
            // their first blob was met: packs in order, by offset inside.
            let pos = (loc.pack, loc.offset);
            if units.insert(pos) {
                assert!(units.len() == 1 || pos > last, "unit {pos:?} written after {last:?}");
                last = pos;
            }
            let want = match state.chunks[id].encoding {
                sen_content::chunk::Encoding::Raw => BlobEncoding::Raw,
                sen_content::chunk::Encoding::Zstd if state.chunks[id].len >= backup::COPY_MIN_CHUNK => {
                    BlobEncoding::Zstd
                }
                sen_content::chunk::Encoding::Zstd => BlobEncoding::Group,
            };
            assert_eq!(loc.encoding, want);
        }
        assert_eq!(seen.len(), 3, "all three routes taken: {seen:?}");
        for (id, data) in order.iter().zip(repo.fetch_chunks(&index, order.clone())) {
            assert_eq!(data.expect("chunk"), state.chunks[id].decode().expect("decode"));
        }
        // Chunks asked for again (identical files) come back in order,
        // whether kept from their first read or read again.
        let mut again: Vec<[u8; 32]> = Vec::new();
        for i in 0..900usize {
            again.push(order[(i * 7 + i / 50) % order.len()]);
            if i % 5 == 0 {
                again.push(order[i % 13]);
            }
        }
        let got: Vec<Vec<u8>> = repo
            .fetch_chunks(&index, again.clone())
            .map(|r| r.expect("chunk"))
            .collect();
        assert_eq!(got.len(), again.len());
        for (id, data) in again.iter().zip(got) {
            assert_eq!(data, state.chunks[id].decode().expect("decode"));
        }
        let report = check::check(&repo, 100).expect("check");
        assert!(report.ok, "{:?}", report.errors);
    }
}

#[test]
fn passwords_and_versions() {
    let fx = Fixture::new();
    let repo = fx.init(Some(b"right"));
    take(&repo, &sample_state(1));
    let before = fx.files("");
    assert!(matches!(fx.open(Some(b"wrong")), Err(RepoError::WrongPassword)));
    assert!(matches!(fx.open(None), Err(RepoError::Usage(m)) if m.contains("encrypted")));
    assert_eq!(fx.files(""), before, "a wrong password writes nothing");
    // init twice is refused
    let again = Repo::init(fx.store(), fx.rt.handle().clone(), None, &InitOptions::default());
    assert!(matches!(again, Err(RepoError::Usage(m)) if m.contains("already holds")));
    // a newer format version is refused with a clear message
    let cfg = fx.root.join("config");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, text.replace("\"version\": 1", "\"version\": 2")).expect("write");
    let err = fx.open(Some(b"right")).expect_err("newer");
    assert!(err.to_string().contains("upgrade Sen"), "{err}");
    // encrypted objects do not contain the plaintext
    for f in fx.files("data") {
        let b = std::fs::read(&f).expect("read");
        assert!(
            !b.windows(10).any(|w| w == b"key-000001"),
            "plaintext leaked into {}",
            f.display()
        );
    }
}

#[test]
fn damage_is_reported_precisely() {
    let fx = Fixture::new();
    let repo = fx.init(None);
    let state = sample_state(3);
    let out = take(&repo, &state);
    let packs = fx.files("data");
    assert!(packs.len() >= 3, "{packs:?}");
    let name = |p: &std::path::PathBuf| p.file_name().expect("name").to_string_lossy().into_owned();

    // A bit flip: check with --read-data names the pack; restore fails on
    // the damaged blob instead of returning wrong data.
    let flipped = &packs[0];
    let mut b = std::fs::read(flipped).expect("read");
    b[100] ^= 0x40;
    std::fs::write(flipped, &b).expect("write");
    let r = check::check(&repo, 100).expect("check");
    assert!(!r.ok);
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&name(flipped)) && e.contains("does not match")),
        "{:?}",
        r.errors
    );
    let structural = check::check(&repo, 0).expect("check");
    assert!(
        structural.ok,
        "a flipped data byte is only visible when reading data: {:?}",
        structural.errors
    );

    // Truncated and missing packs are found without reading data.
    let truncated = &packs[1];
    let len = std::fs::metadata(truncated).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(truncated)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    let missing = &packs[2];
    std::fs::remove_file(missing).expect("remove");
    let r = check::check(&repo, 0).expect("check");
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&name(truncated)) && e.contains("truncated")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&name(missing)) && e.contains("missing")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors.iter().any(|e| e.contains("snapshot")),
        "snapshots using them are named: {:?}",
        r.errors
    );

    // Reading everything back fails loudly somewhere, never silently.
    let index = repo.load_index().expect("index");
    let mut failures = 0;
    for t in &out.snapshot.tables {
        if read::TableReader::new(&repo, &index, t).any(|r| r.is_err()) {
            failures += 1;
        }
    }
    let ids: Vec<[u8; 32]> = state.chunks.keys().copied().collect();
    if repo.fetch_chunks(&index, ids).any(|r| r.is_err()) {
        failures += 1;
    }
    assert!(failures > 0);
}

#[test]
fn prune_keeps_what_the_policy_says_and_stays_restorable() {
    let fx = Fixture::new();
    let repo = fx.init(Some(b"pw"));
    let mut states = Vec::new();
    let mut state = sample_state(11);
    for round in 0..4u32 {
        // Each round replaces the content chunks: old ones become unused.
        state.chunks.clear();
        state.tables.remove("chunk_meta");
        for i in 0..10u32 {
            let data: Vec<u8> = (0..40_000).map(|j| ((j * (i + 7) + round * 13) % 253) as u8).collect();
            state.put_chunk(&data);
        }
        state.index += 10;
        take(&repo, &state);
        states.push(state.clone());
    }
    let policy = KeepPolicy {
        last: 2,
        ..Default::default()
    };
    let dry = prune::prune(&repo, &policy, std::time::Duration::ZERO, true).expect("dry run");
    assert_eq!(dry.forgotten.len(), 2);
    assert_eq!(
        read::list_snapshots(&repo).expect("list").len(),
        4,
        "dry run changes nothing"
    );

    let first = prune::prune(&repo, &policy, std::time::Duration::from_secs(3600), false).expect("prune");
    assert_eq!(first.forgotten.len(), 2);
    assert!(first.packs_marked > 0, "{first:?}");
    assert_eq!(first.packs_deleted, 0, "within the grace period nothing is deleted");
    let r = check::check(&repo, 100).expect("check");
    assert!(r.ok, "{:?}", r.errors);
    let packs_before = fx.files("data").len();
    let second = prune::prune(&repo, &policy, std::time::Duration::ZERO, false).expect("sweep");
    assert_eq!(second.packs_deleted, first.packs_marked);
    assert!(fx.files("data").len() < packs_before);
    let r = check::check(&repo, 100).expect("check");
    assert!(r.ok, "{:?}", r.errors);
    // The kept snapshots restore exactly.
    let snaps = read::list_snapshots(&repo).expect("list");
    assert_eq!(snaps.len(), 2);
    let index = repo.load_index().expect("index");
    for (s, want) in snaps.iter().zip(&states[2..]) {
        assert_eq!(read_table(&repo, &s.snapshot, "kv"), want.tables["kv"]);
        let ids: Vec<[u8; 32]> = want.chunks.keys().copied().collect();
        assert!(repo.fetch_chunks(&index, ids).all(|r| r.is_ok()));
    }
}

#[test]
fn interrupted_backup_packs_are_adopted() {
    let fx = Fixture::new();
    let repo = fx.init(None);
    let state = sample_state(5);
    take(&repo, &state);
    // Simulate a backup killed after uploading packs: drop its index and
    // snapshot objects.
    let mut state2 = state.clone();
    for i in 0..20u32 {
        let data: Vec<u8> = (0..60_000).map(|j| ((j ^ (i * 31)) % 241) as u8).collect();
        state2.put_chunk(&data);
    }
    let killed = take(&repo, &state2);
    std::fs::remove_file(fx.root.join(object_key(ObjectKind::Snapshot, &killed.snapshot_id))).expect("rm snap");
    let indexes = fx.files("index");
    std::fs::remove_file(
        indexes
            .iter()
            .max_by_key(|p| std::fs::metadata(p).expect("m").modified().expect("t"))
            .expect("idx"),
    )
    .ok();
    let r = check::check(&repo, 0).expect("check");
    assert!(r.ok, "{:?}", r.errors);
    let rerun = take(&repo, &state2);
    assert_eq!(
        rerun.snapshot.stats.content_chunks_new, 0,
        "the interrupted run's chunks are reused"
    );
}

/// A local store that fails every mutation after the first `budget` ones,
/// as if the process had been killed at that point (objects are written
/// whole or not at all, as on the real backends).
struct CrashingStore {
    inner: LocalStore,
    budget: std::sync::atomic::AtomicI64,
}

impl CrashingStore {
    fn spend(&self, key: &str) -> Result<(), crate::ObjectError> {
        if self.budget.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) <= 0 {
            return Err(crate::ObjectError::Failed {
                op: "write",
                store: "crashing".into(),
                key: key.into(),
                detail: "simulated crash".into(),
                retry: crate::RetryClass::Permanent,
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectStore for CrashingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), crate::ObjectError> {
        self.spend(key)?;
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Vec<u8>) -> Result<bool, crate::ObjectError> {
        self.spend(key)?;
        self.inner.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, crate::ObjectError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, crate::ObjectError> {
        self.inner.get_range(key, offset, len).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<crate::ObjectInfo>, crate::ObjectError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), crate::ObjectError> {
        self.spend(key)?;
        self.inner.delete(key).await
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).expect("copy");
        }
    }
}

/// Kill prune and backup after every possible number of writes: each time
/// `check` accepts the repository, every snapshot still listed restores,
/// and running the command again completes.
#[test]
fn a_crash_at_any_point_of_prune_or_backup_leaves_a_good_repository() {
    let fx = Fixture::new();
    // Unencrypted: the key derivation would dominate the run time; the
    // write order under test is the same.
    let repo = fx.init(None);
    let mut state = sample_state(21);
    let mut states = Vec::new();
    for round in 0..3u32 {
        state.chunks.clear();
        state.tables.remove("chunk_meta");
        for i in 0..6u32 {
            let mut r = u64::from(round * 100 + i + 1);
            let data: Vec<u8> = (0..100_000).map(|_| xorshift(&mut r) as u8).collect();
            state.put_chunk(&data);
        }
        state.index += 1;
        take(&repo, &state);
        states.push(state.clone());
    }
    // Mark once (so the crashed runs also exercise the sweep phase).
    let policy = KeepPolicy {
        last: 2,
        ..Default::default()
    };
    let mut next = state.clone();
    next.put_chunk(b"the next backup's new chunk");
    next.index += 1;
    let base = fx._dir.path().join("base");
    copy_dir(&fx.root, &base);

    let verify = |root: &std::path::Path, what: &str| {
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(root).expect("store"));
        let repo = Repo::open(store, fx.rt.handle().clone(), None).expect("open");
        let r = check::check(&repo, 100).expect("check");
        assert!(r.ok, "{what}: {:?}", r.errors);
        let index = repo.load_index().expect("index");
        for s in read::list_snapshots(&repo).expect("list") {
            let want = states
                .iter()
                .chain(std::iter::once(&next))
                .find(|st| st.index == s.snapshot.raft_index)
                .expect("known state");
            for t in &s.snapshot.tables {
                let got: BTreeMap<Vec<u8>, Vec<u8>> = read::TableReader::new(&repo, &index, t)
                    .map(|r| r.expect(what))
                    .collect();
                assert_eq!(got, want.tables[&t.name], "{what}: table {}", t.name);
            }
            let ids: Vec<[u8; 32]> = want.chunks.keys().copied().collect();
            assert!(repo.fetch_chunks(&index, ids).all(|r| r.is_ok()), "{what}: chunks");
        }
        repo
    };

    for op in ["prune", "backup"] {
        let mut n = 0;
        loop {
            let root = fx._dir.path().join(format!("{op}-{n}"));
            copy_dir(&base, &root);
            let store = Arc::new(CrashingStore {
                inner: LocalStore::new(&root).expect("store"),
                budget: std::sync::atomic::AtomicI64::new(n),
            });
            let crashed_repo = Repo::open(store, fx.rt.handle().clone(), None).expect("open");
            let result = match op {
                "prune" => prune::prune(&crashed_repo, &policy, std::time::Duration::ZERO, false).map(|_| ()),
                _ => backup::create(&crashed_repo, &next, &BackupOptions::default(), &|_, _| {}).map(|_| ()),
            };
            let what = format!("{op} killed after {n} writes");
            let repo = verify(&root, &what);
            // Running it again completes, and the result is good.
            match op {
                "prune" => {
                    prune::prune(&repo, &policy, std::time::Duration::ZERO, false).expect("prune again");
                }
                _ => {
                    backup::create(&repo, &next, &BackupOptions::default(), &|_, _| {}).expect("backup again");
                }
            }
            verify(&root, &format!("{what}, then run again"));
            std::fs::remove_dir_all(&root).ok();
            if result.is_ok() {
                break;
            }
            n += 1;
            assert!(n < 200, "{op} never completed");
        }
        assert!(n >= 3, "{op} completed after {n} writes: the sweep covered too little");
    }
}
