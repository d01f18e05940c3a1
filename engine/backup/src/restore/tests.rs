//! Restores against a local repository and in-memory states: the source is
//! `sen_raft::mem::MemState` driven by the real apply logic and exported in
//! the stored layout; the live cluster is another `MemState` taking real
//! commands. No node, no network.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sen_content::chunker;
use sen_content::manifest::FileEntry;
use sen_content::{ChunkId, ChunkRef, Manifest, StoredChunk};
use sen_core::ClusterId;
use sen_raft::mem::MemState;
use sen_raft::schema::tables;
use sen_raft::{Applier, Deploy, Op, Outcome, Request};

use super::*;
use crate::backup::{self, BackupOptions, SourcePosition, StateSource};
use crate::format::{DbSummary, SiteSummary};
use crate::repo::InitOptions;
use crate::{LocalStore, ObjectStore};

/// A state machine in memory: commands applied at consecutive indexes.
#[derive(Default, Clone)]
struct Machine {
    state: MemState,
    index: u64,
}

impl Machine {
    fn apply(&mut self, op: Op) -> Outcome {
        self.index += 1;
        let req = Request {
            id: None,
            proposed_at_ms: 1_764_000_000_000 + self.index,
            op,
        };
        let mut a = Applier::new(&self.state);
        let r = a.apply(self.index, &req).expect("apply");
        let m = a.finish();
        self.state.write(m);
        r.outcome
    }

    fn put(&mut self, db: &str, key: &str, value: &str) {
        self.apply(Op::Put {
            db: db.into(),
            key: key.into(),
            value: value.into(),
        });
    }

    /// Deploy `files` (path, content) as the site's whole tree.
    fn deploy(&mut self, site: &str, files: &[(&str, Vec<u8>)]) -> u64 {
        let mut entries = Vec::new();
        let mut chunks = Vec::new();
        for (path, data) in files {
            let mut refs = Vec::new();
            for (off, len) in chunker::cut(data) {
                let c = StoredChunk::encode(&data[off..off + len], 3).expect("chunk");
                refs.push(ChunkRef {
                    id: c.id,
                    len: len as u32,
                });
                chunks.push(c);
            }
            entries.push(FileEntry {
                path: (*path).into(),
                size: data.len() as u64,
                blake3: *blake3::hash(data).as_bytes(),
                mtime_ms: 7,
                chunks: refs,
            });
        }
        self.deploy_entries(site, entries, chunks, None)
    }

    fn deploy_entries(
        &mut self,
        site: &str,
        files: Vec<FileEntry>,
        mut chunks: Vec<StoredChunk>,
        base: Option<u64>,
    ) -> u64 {
        let packed = Manifest::pack(files, 3).expect("manifest");
        chunks.extend(packed.chunks);
        self.apply(Op::PutChunks { chunks });
        match self.apply(Op::Deploy(Deploy {
            site: site.into(),
            manifest: packed.refs,
            manifest_hash: packed.hash,
            base,
            author: "test".into(),
            message: "deploy".into(),
        })) {
            Outcome::Deployed { .. } => self.index,
            other => panic!("deploy refused: {other:?}"),
        }
    }

    fn site_tree(&self, site: &str) -> BTreeMap<String, [u8; 32]> {
        self.state
            .files
            .iter()
            .filter(|((s, _), _)| s == site)
            .map(|((_, p), r)| (p.clone(), r.blake3))
            .collect()
    }
}

/// The digest a test sink and source agree on: every row of every backup
/// table, in order.
fn digest_of(rows: &BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>) -> String {
    let mut h = blake3::Hasher::new();
    for (t, rows) in rows {
        for (k, v) in rows {
            for part in [t.as_bytes(), k, v] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
    }
    h.finalize().to_hex().to_string()
}

impl StateSource for Machine {
    fn position(&self) -> SourcePosition {
        SourcePosition {
            cluster_id: self.state.cluster_id.map(|c| c.to_string()).unwrap_or_default(),
            raft_index: self.index,
            raft_term: 2,
            node_id: 1,
            state_digest: digest_of(&self.state.backup_rows().expect("rows")),
        }
    }
    fn tables(&self) -> Vec<String> {
        tables::BACKUP_TABLES.iter().map(|t| (*t).to_owned()).collect()
    }
    fn scan(&self, table: &str, f: &mut backup::RowVisitor<'_>) -> Result<(), RepoError> {
        let rows = self.state.backup_rows().map_err(|e| RepoError::Source(e.to_string()))?;
        for (k, v) in rows.get(table).into_iter().flatten() {
            f(k, v)?;
        }
        Ok(())
    }
    fn chunk(&self, id: &[u8; 32]) -> Result<Option<StoredChunk>, RepoError> {
        Ok(self.state.chunks.get(&ChunkId(*id)).cloned())
    }
    fn sites(&self) -> Result<Vec<SiteSummary>, RepoError> {
        Ok(self
            .state
            .sites
            .iter()
            .map(|(name, s)| SiteSummary {
                name: name.clone(),
                deployment: s.current.as_ref().map(|c| c.id),
                files: s.current.as_ref().map_or(0, |c| c.files),
                bytes: s.current.as_ref().map_or(0, |c| c.bytes),
            })
            .collect())
    }
    fn databases(&self) -> Result<Vec<DbSummary>, RepoError> {
        Ok(self
            .state
            .stats
            .iter()
            .map(|(name, s)| DbSummary {
                name: name.clone(),
                keys: s.keys,
                bytes: s.bytes,
            })
            .collect())
    }
}

/// A fresh data directory, in memory.
#[derive(Default)]
struct MemSink {
    rows: BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>,
    chunks: BTreeMap<ChunkId, StoredChunk>,
    finished: bool,
}

impl StateSink for MemSink {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), RepoError> {
        let t = tables::BACKUP_TABLES
            .iter()
            .find(|t| **t == table)
            .ok_or_else(|| RepoError::Corrupt(format!("unknown table {table}")))?;
        self.rows.entry(t).or_default().insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn put_chunk(&mut self, chunk: &StoredChunk) -> Result<(), RepoError> {
        chunk.decode().map_err(|e| RepoError::Corrupt(e.to_string()))?;
        self.chunks.insert(chunk.id, chunk.clone());
        Ok(())
    }
    fn finish(&mut self, _snapshot: &Snapshot) -> Result<(String, String), RepoError> {
        self.finished = true;
        for t in tables::BACKUP_TABLES {
            self.rows.entry(t).or_default();
        }
        Ok(("restored".into(), digest_of(&self.rows)))
    }
}

/// The live cluster: real commands on an in-memory state machine.
struct MemCluster(Machine);

impl LiveCluster for MemCluster {
    fn site_files(&mut self, site: &str) -> Result<(Vec<FileEntry>, u64), RepoError> {
        let s = &self.0.state;
        let base = s.sites.get(site).and_then(|r| r.current.as_ref()).map_or(0, |c| c.id);
        let files = s
            .files
            .iter()
            .filter(|((x, _), _)| x == site)
            .map(|((_, p), r)| FileEntry {
                path: p.clone(),
                size: r.size,
                blake3: r.blake3,
                mtime_ms: r.mtime_ms,
                chunks: r.chunks.clone(),
            })
            .collect();
        Ok((files, base))
    }
    fn missing_chunks(&mut self, ids: &[ChunkId]) -> Result<HashSet<ChunkId>, RepoError> {
        Ok(ids
            .iter()
            .filter(|i| !self.0.state.chunks.contains_key(i))
            .copied()
            .collect())
    }
    fn put_chunks(&mut self, chunks: Vec<StoredChunk>) -> Result<(), RepoError> {
        self.0.apply(Op::PutChunks { chunks });
        Ok(())
    }
    fn deploy(&mut self, site: &str, files: Vec<FileEntry>, base: u64, _message: &str) -> Result<u64, RepoError> {
        Ok(self.0.deploy_entries(site, files, Vec::new(), Some(base)))
    }
    fn db_records(&mut self, db: &str, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, RepoError> {
        Ok(self
            .0
            .state
            .kv
            .iter()
            .filter(|((d, k), _)| d == db && k.starts_with(prefix))
            .map(|((_, k), r)| (k.clone(), r.value.clone()))
            .collect())
    }
    fn put(&mut self, db: &str, key: &[u8], value: &[u8]) -> Result<(), RepoError> {
        self.0.apply(Op::Put {
            db: db.into(),
            key: key.to_vec(),
            value: value.to_vec(),
        });
        Ok(())
    }
    fn delete(&mut self, db: &str, key: &[u8]) -> Result<(), RepoError> {
        self.0.apply(Op::Delete {
            db: db.into(),
            key: key.to_vec(),
        });
        Ok(())
    }
}

fn page(n: u32) -> Vec<u8> {
    (0..90_000u32).map(|i| ((i * 31 + n * 7) % 251) as u8).collect()
}

/// A portal with two sites and two databases.
fn portal() -> Machine {
    let mut m = Machine::default();
    m.apply(Op::InitCluster {
        cluster_id: ClusterId::generate(),
    });
    m.apply(Op::CreateSite { site: "congbao".into() });
    m.apply(Op::CreateSite { site: "portal".into() });
    m.deploy(
        "congbao",
        &[
            ("index.html", b"<h1>C\xc3\xb4ng b\xc3\xa1o</h1>".to_vec()),
            ("so/201.html", page(1)),
            ("so/202.html", page(2)),
        ],
    );
    m.deploy("portal", &[("index.html", b"portal".to_vec())]);
    for i in 0..50 {
        m.put(
            "lichtuan",
            &format!("2026-w{i:02}"),
            &format!("Thứ hai: họp giao ban {i}"),
        );
    }
    m.put("vanban", "cd-1", "chỉ đạo 1");
    m
}

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    repo: Repo,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().join("repo")).expect("store"));
    let repo = Repo::init(store, rt.handle().clone(), Some(b"mat-khau"), &InitOptions::default()).expect("init");
    Fixture { _dir: dir, rt, repo }
}

fn take(f: &Fixture, m: &Machine) -> SnapshotEntry {
    let o = backup::create(&f.repo, m, &BackupOptions::default(), &|_, _| {}).expect("backup");
    SnapshotEntry {
        id: o.snapshot_id,
        snapshot: o.snapshot,
    }
}

#[test]
fn a_whole_cluster_comes_back_row_for_row_and_chunk_for_chunk() {
    let f = fixture();
    let m = portal();
    let e = take(&f, &m);
    let index = f.repo.load_index().unwrap();
    let mut sink = MemSink::default();
    let total = std::sync::atomic::AtomicU64::new(0);
    let r = cluster(&f.repo, &index, &e.snapshot, &mut sink, &|n| {
        total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert!(sink.finished);
    assert_eq!(r.digest, e.snapshot.state_digest);
    assert_eq!(r.bytes, total.into_inner());
    assert_eq!(sink.rows, m.state.backup_rows().unwrap());
    assert_eq!(sink.chunks, m.state.chunks);
    drop(f.rt);
}

#[test]
fn a_restore_whose_digest_differs_is_refused() {
    struct Lossy(MemSink);
    impl StateSink for Lossy {
        fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), RepoError> {
            // Drops one database's rows, as a broken writer would.
            if table == tables::KV && key.starts_with(b"vanban\0") {
                return Ok(());
            }
            self.0.put(table, key, value)
        }
        fn put_chunk(&mut self, chunk: &StoredChunk) -> Result<(), RepoError> {
            self.0.put_chunk(chunk)
        }
        fn finish(&mut self, s: &Snapshot) -> Result<(String, String), RepoError> {
            self.0.finish(s)
        }
    }
    let f = fixture();
    let e = take(&f, &portal());
    let index = f.repo.load_index().unwrap();
    let err = cluster(&f.repo, &index, &e.snapshot, &mut Lossy(MemSink::default()), &|_| {}).unwrap_err();
    assert!(matches!(err, RepoError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("differs from the snapshot's"), "{err}");
}

#[test]
fn a_site_is_put_back_as_one_deployment_and_only_under_the_path() {
    let f = fixture();
    let before = portal();
    let e = take(&f, &before);
    let index = f.repo.load_index().unwrap();
    // After the backup: a page deleted, one rewritten, one added, and the
    // other site changed too.
    let mut after = before.clone();
    after.deploy(
        "congbao",
        &[
            ("index.html", b"defaced".to_vec()),
            ("so/202.html", page(2)),
            ("so/203.html", page(3)),
        ],
    );
    after.deploy("portal", &[("index.html", b"portal v2".to_vec())]);
    // Drop every chunk of the lost page from the live cluster, as GC would
    // after the grace period: the restore must upload them again.
    let lost: Vec<ChunkId> = before.state.files[&("congbao".to_owned(), "so/201.html".to_owned())]
        .chunks
        .iter()
        .map(|c| c.id)
        .collect();
    for id in &lost {
        assert_eq!(
            after.state.chunk_meta[id].refs, 0,
            "no deployment uses the lost page now"
        );
        after.state.chunks.remove(id);
        after.state.chunk_meta.remove(id);
        after.state.zero.retain(|(_, z)| z != id);
    }
    let mut live = MemCluster(after);

    // Dry run: the plan, nothing changed.
    let dry = site_into_cluster(&f.repo, &index, &e, "congbao", "so", &mut live, true).unwrap();
    assert_eq!(
        dry.changes,
        [
            (SiteChange::Remove, "so/203.html".to_owned()),
            (SiteChange::Add, "so/201.html".to_owned())
        ]
    );
    assert_eq!(dry.deployment, None);
    assert!(live.0.site_tree("congbao").contains_key("so/203.html"));

    // Only under so/: index.html keeps its current (defaced) content.
    let r = site_into_cluster(&f.repo, &index, &e, "congbao", "so", &mut live, false).unwrap();
    assert!(r.deployment.is_some());
    let tree = live.0.site_tree("congbao");
    let want = before.site_tree("congbao");
    assert_eq!(tree["so/201.html"], want["so/201.html"]);
    assert!(!tree.contains_key("so/203.html"));
    assert_eq!(tree["index.html"], *blake3::hash(b"defaced").as_bytes());
    for id in &lost {
        assert!(
            live.0.state.chunks.contains_key(id),
            "chunk uploaded from the repository"
        );
    }

    // The whole site: now exactly as it was; the other site untouched.
    let r = site_into_cluster(&f.repo, &index, &e, "congbao", "", &mut live, false).unwrap();
    assert_eq!(r.changes, [(SiteChange::Replace, "index.html".to_owned())]);
    assert_eq!(live.0.site_tree("congbao"), want);
    assert_eq!(
        live.0.site_tree("portal")["index.html"],
        *blake3::hash(b"portal v2").as_bytes()
    );
    // Nothing left to do.
    let again = site_into_cluster(&f.repo, &index, &e, "congbao", "", &mut live, false).unwrap();
    assert!(again.changes.is_empty() && again.deployment.is_none());
    // A site the snapshot does not have.
    let err = site_into_cluster(&f.repo, &index, &e, "nope", "", &mut live, false).unwrap_err();
    assert!(err.to_string().contains("no site \"nope\""), "{err}");
}

#[test]
fn a_database_prefix_is_reset_to_the_snapshot() {
    let f = fixture();
    let before = portal();
    let e = take(&f, &before);
    let index = f.repo.load_index().unwrap();
    let mut after = before.clone();
    after.put("lichtuan", "2026-w01", "đã sửa");
    after.put("lichtuan", "2026-w99", "mới");
    after.apply(Op::Delete {
        db: "lichtuan".into(),
        key: b"2026-w02".to_vec(),
    });
    after.put("lichtuan", "2027-w01", "năm sau");
    after.put("vanban", "cd-1", "đã sửa");
    let mut live = MemCluster(after);

    let dry = db_into_cluster(&f.repo, &index, &e.snapshot, "lichtuan", b"2026-", &mut live, true).unwrap();
    assert_eq!(
        dry,
        [
            (DbChange::Delete, b"2026-w99".to_vec()),
            (DbChange::Reset, b"2026-w01".to_vec()),
            (DbChange::Add, b"2026-w02".to_vec()),
        ]
    );
    db_into_cluster(&f.repo, &index, &e.snapshot, "lichtuan", b"2026-", &mut live, false).unwrap();
    let now = live.db_records("lichtuan", b"2026-").unwrap();
    let want: BTreeMap<Vec<u8>, Vec<u8>> = before
        .state
        .kv
        .iter()
        .filter(|((d, _), _)| d == "lichtuan")
        .map(|((_, k), r)| (k.clone(), r.value.clone()))
        .collect();
    assert_eq!(now, want);
    // Outside the prefix and in other databases: untouched.
    assert_eq!(live.db_records("lichtuan", b"2027-").unwrap().len(), 1);
    assert_eq!(
        live.db_records("vanban", b"").unwrap()[&b"cd-1".to_vec()],
        "đã sửa".as_bytes()
    );
}

#[test]
fn diff_names_every_changed_file_and_key() {
    let f = fixture();
    let mut m = portal();
    let a = take(&f, &m);
    m.deploy(
        "congbao",
        &[
            ("index.html", b"<h1>C\xc3\xb4ng b\xc3\xa1o</h1>".to_vec()),
            ("so/201.html", page(9)),
            ("so/203.html", page(3)),
        ],
    );
    m.put("lichtuan", "2026-w01", "đổi");
    m.apply(Op::Delete {
        db: "vanban".into(),
        key: b"cd-1".to_vec(),
    });
    let b = take(&f, &m);
    let index = f.repo.load_index().unwrap();
    let d = diff(&f.repo, &index, &a.snapshot, &b.snapshot).unwrap();
    let got: Vec<(&str, &str, &str, DiffKind)> = d
        .iter()
        .map(|x| (x.kind, x.container.as_str(), x.name.as_str(), x.change))
        .collect();
    assert_eq!(
        got,
        [
            ("site", "congbao", "so/201.html", DiffKind::Changed),
            ("site", "congbao", "so/202.html", DiffKind::Removed),
            ("site", "congbao", "so/203.html", DiffKind::Added),
            ("db", "lichtuan", "2026-w01", DiffKind::Changed),
            ("db", "vanban", "cd-1", DiffKind::Removed),
        ]
    );
    assert!(diff(&f.repo, &index, &a.snapshot, &a.snapshot).unwrap().is_empty());
}

#[test]
fn plans_are_pure_and_ordered() {
    let entry = |p: &str, h: u8| FileEntry {
        path: p.into(),
        size: 1,
        blake3: [h; 32],
        mtime_ms: 0,
        chunks: vec![],
    };
    let snap = |p: &str, h: u8| SnapFile {
        path: p.into(),
        record: sen_raft::schema::FileRecord {
            deployment: 1,
            size: 1,
            blake3: [h; 32],
            mtime_ms: 0,
            chunks: vec![],
        },
    };
    let plan = plan_site(
        vec![entry("a", 1), entry("d/x", 1), entry("d/y", 2), entry("dz", 3)],
        vec![snap("d/x", 9), snap("d/w", 4)],
        "d",
    );
    assert_eq!(
        plan.changes,
        [
            (SiteChange::Remove, "d/y".to_owned()),
            (SiteChange::Add, "d/w".to_owned()),
            (SiteChange::Replace, "d/x".to_owned()),
        ]
    );
    let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a", "d/w", "d/x", "dz"], "dz is not under d/");

    let live = BTreeMap::from([(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
    let wanted = BTreeMap::from([(b"b".to_vec(), b"3".to_vec()), (b"c".to_vec(), b"4".to_vec())]);
    assert_eq!(
        plan_db(&live, &wanted),
        [
            (DbChange::Delete, b"a".to_vec()),
            (DbChange::Reset, b"b".to_vec()),
            (DbChange::Add, b"c".to_vec())
        ]
    );
}
