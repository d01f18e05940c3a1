#![allow(clippy::unwrap_used)]

//! Store tests: openraft's own storage suite on our RocksDB store, plus
//! durability across reopen, snapshots and their transfer format.

use std::io::Read;

use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderId;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, StorageError};
use sen_core::RequestId;
use sen_raft::{Entry, LogId, Op, Request, TypeConfig, Vote};
use tempfile::TempDir;

use super::*;
use crate::snapshot::SnapshotManifest;

/// Deletions happen on a background thread: poll (bounded) for them.
fn wait_gone(p: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.exists() {
        assert!(std::time::Instant::now() < deadline, "{} was not removed", p.display());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir =
            tempfile::tempdir().map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let store = Store::open(dir.path(), StoreOptions::default())
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e.into()))?;
        Ok((dir, store.log, store.state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("openraft storage suite");
}

fn log_id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(
        openraft::impls::leader_id_std::LeaderId { term, voted_for: 1 }.to_committed(),
        index,
    )
}

fn put_entry(term: u64, index: u64, key: &str, value: &str) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Request {
            id: Some(RequestId::generate()),
            proposed_at_ms: 1_000 + index,
            op: Op::Put {
                db: "portal".into(),
                key: key.into(),
                value: value.into(),
            },
        }),
    }
}

async fn append_and_wait(log: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_vote_and_state_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new(3, 1);
    {
        let mut store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.log.save_vote(&vote).await.unwrap();
        let entries: Vec<Entry> = (1..=20).map(|i| put_entry(3, i, &format!("k{i}"), "v")).collect();
        append_and_wait(&mut store.log, entries.clone()).await;
        store.state.apply_entries(&entries[..10]).unwrap();
        store.log.purge(log_id(3, 4)).await.unwrap();
        store.log.truncate_after(Some(log_id(3, 18))).await.unwrap();
    }
    let mut store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.log.read_vote().await.unwrap(), Some(vote));
    let st = store.log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(3, 4)));
    assert_eq!(st.last_log_id, Some(log_id(3, 18)));
    let got = store.log.try_get_log_entries(5..19).await.unwrap();
    assert_eq!(got.len(), 14);
    assert_eq!(got[0].log_id.index, 5);
    let (applied, _) = store.state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(3, 10)));
    let (rec, at) = store.state.get("portal", b"k7").unwrap();
    assert_eq!(rec.unwrap().mod_revision, 7);
    assert_eq!(at, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_reads_are_bounded_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_append_bytes: 10_000,
        ..Default::default()
    };
    let mut store = Store::open(dir.path(), opts).unwrap();
    let big = "x".repeat(3_000);
    let entries: Vec<Entry> = (1..=10).map(|i| put_entry(1, i, "k", &big)).collect();
    append_and_wait(&mut store.log, entries).await;
    let got = store.log.limited_get_log_entries(1, 11).await.unwrap();
    assert!(got.len() >= 3 && got.len() <= 4, "got {}", got.len());
    // A single entry larger than the cap is still returned alone.
    let opts = StoreOptions {
        max_append_bytes: 10,
        ..Default::default()
    };
    drop(store);
    let mut store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.log.limited_get_log_entries(1, 11).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_belongs_to_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    store.log.claim_node_id(2, dir.path()).unwrap();
    store.log.claim_node_id(2, dir.path()).unwrap();
    let err = store.log.claim_node_id(3, dir.path()).unwrap_err().to_string();
    assert!(err.contains("belongs to node 2, not node 3"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
    {
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path().join("raft"), ["meta", "log"]).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(meta, format::K_FORMAT, format::enc("layout version", &99u32).unwrap())
            .unwrap();
    }
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("layout version 99") && err.contains("newer Sen"), "{err}");
}

/// Copy a snapshot through the transfer format (as the network does) into
/// another store, install it there, and compare the states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_transfer_and_install() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = Store::open(a_dir.path(), StoreOptions::default()).unwrap();
    let b = Store::open(b_dir.path(), StoreOptions::default()).unwrap();
    let entries: Vec<Entry> = (1..=500)
        .map(|i| put_entry(2, i, &format!("key-{i:04}"), &"v".repeat(i as usize)))
        .collect();
    a.state.apply_entries(&entries).unwrap();
    b.state.apply_entries(&entries[..3]).unwrap();

    let mut builder = a.state_machine.clone();
    let snap = builder.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(2, 500)));
    assert_eq!(
        crate::snapshot::inspect_applied(snap.snapshot.path()).unwrap(),
        Some(log_id(2, 500))
    );

    // Stream it in small chunks.
    let manifest: SnapshotManifest = snap.snapshot.manifest().clone();
    let mut incoming = IncomingSnapshot::begin(&b.state, manifest.clone()).unwrap();
    for (i, _) in manifest.files.iter().enumerate() {
        let mut f = snap.snapshot.open_file(i).unwrap();
        let mut h = blake3::Hasher::new();
        let mut off = 0u64;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            incoming.write(i, off, &buf[..n]).unwrap();
            h.update(&buf[..n]);
            off += n as u64;
        }
        incoming.finish_file(i, h.finalize().as_bytes()).unwrap();
    }
    let handle = incoming.finish().unwrap();
    let incoming_path = handle.path().to_owned();

    let mut sm_b = b.state_machine.clone();
    sm_b.install_snapshot(&snap.meta, handle).await.unwrap();
    // The received copy is removed once installed.
    wait_gone(&incoming_path);
    assert_eq!(a.state.digest().unwrap(), b.state.digest().unwrap());
    let (applied, _) = sm_b.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2, 500)));
    assert!(sm_b.get_current_snapshot().await.unwrap().is_some());

    // The installed state keeps working and survives a reopen.
    let next = put_entry(2, 501, "after", "x");
    let mut b_log = b.log.clone();
    append_and_wait(&mut b_log, vec![next.clone()]).await;
    b.state.apply_entries(&[next]).unwrap();
    drop(b_log);
    drop(sm_b);
    drop(b);
    let b = Store::open(b_dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(b.state.applied_index(), 501);
    assert_eq!(b.state.get("portal", b"key-0042").unwrap().0.unwrap().value.len(), 42);
    assert!(
        b.state.current_snapshot().is_some(),
        "snapshot is found again after restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_snapshot_transfers_are_refused() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = Store::open(a_dir.path(), StoreOptions::default()).unwrap();
    a.state.apply_entries(&[put_entry(1, 1, "k", "v")]).unwrap();
    let snap = a.state.build_snapshot().unwrap();
    let manifest = snap.manifest().clone();
    let first = &manifest.files[0];

    // Wrong hash.
    let mut inc = IncomingSnapshot::begin(&a.state, manifest.clone()).unwrap();
    let mut data = Vec::new();
    snap.open_file(0).unwrap().read_to_end(&mut data).unwrap();
    if !data.is_empty() {
        inc.write(0, 0, &data).unwrap();
    }
    let err = inc.finish_file(0, &[0u8; 32]).unwrap_err().to_string();
    assert!(err.contains("blake3"), "{err}");

    drop(inc);
    // Out of order, too large, bad names.
    let mut inc = IncomingSnapshot::begin(&a.state, manifest.clone()).unwrap();
    assert!(inc.write(1, 0, b"x").is_err());
    drop(inc);
    let mut inc = IncomingSnapshot::begin(&a.state, manifest.clone()).unwrap();
    assert!(inc.write(0, 0, &vec![0; first.size as usize + 1]).is_err());
    drop(inc);
    let mut bad = manifest.clone();
    bad.files[0].name = "../escape".into();
    assert!(IncomingSnapshot::begin(&a.state, bad).is_err());
    // Ending early.
    let inc = IncomingSnapshot::begin(&a.state, manifest).unwrap();
    assert!(inc.finish().is_err());
    // Aborted receives leave nothing behind.
    assert_eq!(std::fs::read_dir(a_dir.path().join("incoming")).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_snapshots_are_removed_when_superseded() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path(), StoreOptions::default()).unwrap();
    a.state.apply_entries(&[put_entry(1, 1, "k", "v")]).unwrap();
    let s1 = a.state.build_snapshot().unwrap();
    let p1 = s1.path().to_owned();
    a.state.apply_entries(&[put_entry(1, 2, "k", "w")]).unwrap();
    let s2 = a.state.build_snapshot().unwrap();
    assert!(p1.exists(), "still referenced by a sender");
    drop(s1);
    wait_gone(&p1);
    assert!(s2.path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_paginate_within_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut entries: Vec<Entry> = (1..=25).map(|i| put_entry(1, i, &format!("doc/{i:02}"), "v")).collect();
    // A neighbouring database whose name is a prefix must not leak in.
    entries.push(Entry {
        log_id: log_id(1, 26),
        payload: EntryPayload::Normal(Request {
            id: None,
            proposed_at_ms: 1,
            op: Op::Put {
                db: "portal2".into(),
                key: b"doc/00".to_vec(),
                value: b"x".to_vec(),
            },
        }),
    });
    a.state.apply_entries(&entries).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = a
            .state
            .scan("portal", b"doc/", after.as_deref(), 10, usize::MAX, false)
            .unwrap();
        seen.extend(page.items.iter().map(|(k, _)| k.clone()));
        after = page.items.last().map(|(k, _)| k.clone());
        assert_eq!(page.applied_index, 26);
        if !page.more {
            break;
        }
    }
    assert_eq!(seen.len(), 25);
    // A byte budget cuts pages short (but never below one key).
    let page = a.state.scan("portal", b"doc/", None, 10, 1, false).unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.more);
    let page = a.state.scan("portal", b"doc/", None, 100, 8 * 3, true).unwrap();
    assert_eq!(page.items.len(), 4, "6-byte keys, no values: 4 keys reach 24 bytes");
    assert!(page.items.iter().all(|(_, r)| r.value.is_empty()));
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let (dbs, _) = a.state.databases().unwrap();
    assert_eq!(
        dbs.iter().map(|d| (d.name.as_str(), d.keys)).collect::<Vec<_>>(),
        vec![("portal", 25), ("portal2", 1)]
    );
}

/// A snapshot build that finishes after a newer snapshot was installed must
/// not replace it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_never_replaces_a_newer_one() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = Store::open(a_dir.path(), StoreOptions::default()).unwrap();
    let b = Store::open(b_dir.path(), StoreOptions::default()).unwrap();
    let entries: Vec<Entry> = (1..=50).map(|i| put_entry(1, i, &format!("k{i}"), "v")).collect();
    a.state.apply_entries(&entries).unwrap();
    b.state.apply_entries(&entries[..3]).unwrap();
    let old = b.state.build_snapshot().unwrap();
    let newer = a.state.build_snapshot().unwrap();
    b.state
        .install_snapshot(&newer.manifest().meta.clone(), &newer)
        .unwrap();
    // The slow build completes now.
    b.state.set_current_snapshot(old.clone());
    let cur = b.state.current_snapshot().unwrap();
    assert_eq!(cur.manifest().meta.last_log_id, Some(log_id(1, 50)));
    let old_path = old.path().to_owned();
    drop(old);
    wait_gone(&old_path);
    assert!(cur.path().exists());
}

/// A log that lost entries the state already applied (truncated WAL tail,
/// lying disk) must refuse to start rather than rejoin and vote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_lost_applied_entries_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let entries: Vec<Entry> = (1..=20).map(|i| put_entry(1, i, &format!("k{i}"), "v")).collect();
        append_and_wait(&mut store.log, entries.clone()).await;
        store.state.apply_entries(&entries).unwrap();
        // Simulate the loss: the log's tail is gone, the state is not.
        store.log.truncate_after(Some(log_id(1, 12))).await.unwrap();
    }
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ends at entry 12") && err.contains("already applied entry 20"),
        "{err}"
    );
    assert!(err.contains("remove-node"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unreferenced_bytes_counter_follows_uploads_and_collection() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let chunk = |seed: u8| {
        let data = vec![seed; 1000 + seed as usize];
        sen_content::StoredChunk::encode(&data, 3).unwrap()
    };
    let entry = |index: u64, op: Op| Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(Request {
            id: None,
            proposed_at_ms: 1_000 + index,
            op,
        }),
    };
    let (c1, c2) = (chunk(1), chunk(2));
    let stored = (c1.data.len() + c2.data.len()) as u64;
    assert_eq!(a.state.unreferenced_bytes().unwrap(), 0);
    a.state
        .apply_entries(&[entry(
            1,
            Op::PutChunks {
                chunks: vec![c1.clone(), c2],
            },
        )])
        .unwrap();
    assert_eq!(a.state.unreferenced_bytes().unwrap(), stored);
    // Uploading one again changes nothing.
    a.state
        .apply_entries(&[entry(2, Op::PutChunks { chunks: vec![c1] })])
        .unwrap();
    assert_eq!(a.state.unreferenced_bytes().unwrap(), stored);
    // A state without the counter (an older release, a restore) sums it.
    {
        let generation = a.state.live();
        let db = generation.db();
        let meta = crate::rocks::cf(db, crate::format::CF_META).unwrap();
        db.delete_cf(meta, crate::format::K_UNREFERENCED).unwrap();
    }
    assert_eq!(a.state.unreferenced_bytes().unwrap(), stored);
    a.state
        .apply_entries(&[entry(
            3,
            Op::CollectGarbage {
                grace_ms: 0,
                limit: 100,
            },
        )])
        .unwrap();
    assert_eq!(a.state.unreferenced_bytes().unwrap(), 0);
}

/// The archive's floor: a purge keeps what the archive has not shipped,
/// Raft still sees the purge it asked for, and the archive reads the kept
/// entries in their stored encoding; a purge past the floor once it moves
/// frees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_keep_what_the_archive_has_not_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let entries: Vec<Entry> = (1..=20).map(|i| put_entry(3, i, &format!("k{i}"), "v")).collect();
    append_and_wait(&mut store.log, entries.clone()).await;
    store.log.keep_after(6);
    store.log.purge(log_id(3, 15)).await.unwrap();
    let st = store.log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(3, 15)));
    let kept = store.log.archive_entries(7, 21, usize::MAX).unwrap();
    assert_eq!(kept.len(), 14);
    assert_eq!(kept[0].0, entries[6]);
    assert_eq!(kept[0].1, crate::format::enc_entry(&entries[6]).unwrap());
    let gone = store.log.archive_entries(6, 21, usize::MAX).unwrap_err();
    assert_eq!(gone.kind(), std::io::ErrorKind::NotFound, "{gone}");
    // The archive moves on: the next purge frees what it shipped.
    store.log.keep_after(12);
    store.log.purge(log_id(3, 16)).await.unwrap();
    assert!(store.log.archive_entries(12, 21, usize::MAX).is_err());
    assert_eq!(
        store.log.archive_entries(13, 21, 1).unwrap().len(),
        1,
        "at least one entry"
    );
}

/// Request ids expire after the window and are collected a few hundred per
/// applied batch; each collection starts where the last one stopped (not at
/// the front, among its tombstones), and still finds every expired id —
/// including one applied again later, whose newer record stays. (The
/// scan from the front after opening is how every batch starts here.)
#[tokio::test]
async fn expired_request_ids_are_all_collected_batch_after_batch() {
    use crate::format::{CF_DEDUP, CF_DEDUP_TIME};
    use sen_raft::DEDUP_WINDOW_MS;
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let count = |name: &str| {
        let g = a.state.live();
        let db = g.db();
        db.iterator_cf(crate::rocks::cf(db, name).unwrap(), rocksdb::IteratorMode::Start)
            .count()
    };
    let req = |index: u64, id: Option<RequestId>, at: u64| Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(Request {
            id,
            proposed_at_ms: at,
            op: Op::Put {
                db: "portal".into(),
                key: format!("k{index}").into_bytes(),
                value: "v".into(),
            },
        }),
    };
    // 2,000 ids over 2 seconds of replicated time, in batches of 100.
    let mut index = 0;
    let mut ids = Vec::new();
    for batch in 0..20u64 {
        let entries: Vec<Entry> = (0..100u64)
            .map(|i| {
                index += 1;
                let id = RequestId::generate();
                ids.push(id);
                req(index, Some(id), 10_000 + batch * 100 + i)
            })
            .collect();
        a.state.apply_entries(&entries).unwrap();
    }
    assert_eq!(count(CF_DEDUP), 2_000);
    assert_eq!(count(CF_DEDUP_TIME), 2_000);
    // One id comes back after its window (a new binding, a new record).
    let again = ids[5];
    index += 1;
    a.state
        .apply_entries(&[req(index, Some(again), 10_000 + DEDUP_WINDOW_MS + 10)])
        .unwrap();
    // Later batches, past everyone's window, collect 256 per batch.
    for _ in 0..12 {
        index += 1;
        a.state
            .apply_entries(&[req(index, None, 20_000 + DEDUP_WINDOW_MS)])
            .unwrap();
    }
    assert_eq!(count(CF_DEDUP), 1, "only the id applied again is remembered");
    assert_eq!(count(CF_DEDUP_TIME), 1);
    // Later still, the id applied again expires too.
    index += 1;
    a.state
        .apply_entries(&[req(index, None, 20_000 + 2 * DEDUP_WINDOW_MS)])
        .unwrap();
    let left = count(CF_DEDUP);
    assert_eq!(left, 0, "the last id expired too");
}

/// The in-memory tail of the log answers every read exactly as RocksDB
/// does, through appends, a truncation and a new term, purges, evictions
/// past its byte budget, and a reopen (empty tail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_tail_answers_every_read_as_rocksdb_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let same = |log: &LogStore, upto: u64| {
        for start in 0..=upto + 2 {
            for end in start..=upto + 2 {
                for max in [1, 200, usize::MAX] {
                    let tail = log.read_range(start, end, max).unwrap();
                    let stored = log.read_range_stored(start, end, max).unwrap();
                    assert_eq!(tail, stored, "[{start}, {end}) max {max} bytes");
                }
            }
        }
    };
    let entries: Vec<Entry> = (1..=30).map(|i| put_entry(1, i, &format!("k{i}"), "v")).collect();
    append_and_wait(&mut store.log, entries[..10].to_vec()).await;
    append_and_wait(&mut store.log, entries[10..].to_vec()).await;
    same(&store.log, 30);
    // A new leader overwrites 21.. in term 2.
    store.log.truncate_after(Some(log_id(1, 20))).await.unwrap();
    same(&store.log, 30);
    let newer: Vec<Entry> = (21..=25).map(|i| put_entry(2, i, &format!("n{i}"), "w")).collect();
    append_and_wait(&mut store.log, newer).await;
    same(&store.log, 30);
    assert_eq!(
        store.log.read_range(25, 26, usize::MAX).unwrap()[0].log_id,
        log_id(2, 25)
    );
    store.log.purge(log_id(1, 12)).await.unwrap();
    same(&store.log, 30);
    // Past the byte budget the oldest leave the tail; reads before it go
    // to RocksDB.
    let big = "x".repeat(300_000);
    let bigs: Vec<Entry> = (26..=60).map(|i| put_entry(2, i, &format!("b{i}"), &big)).collect();
    for b in bigs.chunks(5) {
        append_and_wait(&mut store.log, b.to_vec()).await;
    }
    let first_in_tail = store.log.tail().first_index().unwrap();
    assert!(first_in_tail > 26, "the tail kept {first_in_tail}..");
    assert!(store.log.tail().bytes <= crate::log_store::TAIL_BYTES);
    for (start, end) in [
        (13, 61),
        (first_in_tail - 1, 61),
        (first_in_tail, 61),
        (59, 61),
        (61, 70),
    ] {
        assert_eq!(
            store.log.read_range(start, end, usize::MAX).unwrap(),
            store.log.read_range_stored(start, end, usize::MAX).unwrap(),
            "[{start}, {end})"
        );
    }
    // Reopened: nothing in memory, everything from RocksDB.
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.log.tail().first_index().is_none());
    assert_eq!(store.log.read_range(13, 61, usize::MAX).unwrap().len(), 48);
}

/// RocksDB's memory stays within `StoreOptions::memory` however much is
/// written: 96 MiB through the log and the state of a store allowed
/// 32 MiB (memtables flush at half of it). The memtables of both DBs
/// are charged to it (a DB left out would show no usage) and never
/// exceed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_memory_is_bounded_by_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 32 << 20;
    let opts = StoreOptions {
        state_write_buffer_bytes: 4 << 20,
        memory: Memory::new(limit),
        ..Default::default()
    };
    let mut store = Store::open(dir.path(), opts).unwrap();
    let value = "v".repeat(64 * 1024);
    let mut most = 0;
    for batch in 0..24u64 {
        let entries: Vec<Entry> = (1..=64)
            .map(|i| {
                let index = batch * 64 + i;
                put_entry(1, index, &format!("k{index}"), &value)
            })
            .collect();
        append_and_wait(&mut store.log, entries.clone()).await;
        store.state.apply_entries(&entries).unwrap();
        let u = store.state.memory_usage();
        assert_eq!(u.limit, limit);
        most = most.max(u.memtables);
    }
    // Written: 24 × 64 × 64 KiB = 96 MiB into each DB (192 MiB in all).
    assert!(most <= limit, "memtables reached {most} bytes of a {limit}-byte memory");
    assert!(most > 4 << 20, "the manager sees both DBs' memtables: {most} bytes");
    let (rec, _) = store.state.get("portal", b"k1500").unwrap();
    assert_eq!(rec.unwrap().value.len(), value.len());
}

/// The stores report their steps to the node: an append (from the call to
/// its fsync), each fsync, and each applied batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_path_reports_how_long_its_steps_take() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<std::sync::Mutex<Vec<Stage>>> = Arc::default();
    let s = seen.clone();
    let opts = StoreOptions {
        stages: Stages::new(move |stage, took| {
            assert!(took < std::time::Duration::from_secs(60));
            s.lock().unwrap().push(stage);
        }),
        ..Default::default()
    };
    let mut store = Store::open(dir.path(), opts).unwrap();
    let entries: Vec<Entry> = (1..=3).map(|i| put_entry(1, i, &format!("k{i}"), "v")).collect();
    append_and_wait(&mut store.log, entries.clone()).await;
    let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    store.state_machine.apply(stream).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    for stage in [Stage::LogAppend, Stage::LogFsync, Stage::Apply] {
        assert_eq!(seen.iter().filter(|s| **s == stage).count(), 1, "{stage:?} in {seen:?}");
    }
    assert_eq!(Stage::LogAppend.name(), "log-append");
}
