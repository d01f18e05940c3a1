#![allow(clippy::unwrap_used)]

use sen_content::manifest::split;
use sen_content::{ChunkId, ChunkRef, FileEntry, Manifest, StoredChunk};

use crate::apply::Applier;
use crate::command::{Deploy, Op, Outcome, Request};
use crate::mem::MemState;

struct Site {
    state: MemState,
    index: u64,
    clock: u64,
}

impl Site {
    fn new() -> Self {
        Self {
            state: MemState::default(),
            index: 1,
            clock: 1_000,
        }
    }

    fn apply(&mut self, op: Op) -> Outcome {
        let mut a = Applier::new(&self.state);
        let r = a
            .apply(
                self.index,
                &Request {
                    id: None,
                    proposed_at_ms: self.clock,
                    op,
                },
            )
            .unwrap();
        let m = a.finish();
        self.state.write(m);
        self.index += 1;
        r.outcome
    }

    /// Store the chunks of `files` and of their manifest, then deploy.
    fn push(&mut self, site: &str, files: &[(&str, Vec<u8>)], base: Option<u64>) -> Outcome {
        let (d, chunks) = build(site, files, base);
        self.apply(Op::PutChunks { chunks });
        self.apply(Op::Deploy(d))
    }

    fn refs(&self, data: &[u8]) -> Option<u64> {
        self.state.chunk_meta.get(&ChunkId::of(data)).map(|m| m.refs)
    }
}

fn build(site: &str, files: &[(&str, Vec<u8>)], base: Option<u64>) -> (Deploy, Vec<StoredChunk>) {
    let mut chunks = Vec::new();
    let mut entries: Vec<FileEntry> = files
        .iter()
        .map(|(path, data)| {
            let refs: Vec<ChunkRef> = sen_content::chunker::cut(data)
                .into_iter()
                .map(|(o, l)| {
                    let piece = &data[o..o + l];
                    chunks.push(StoredChunk::encode(piece, 3).unwrap());
                    ChunkRef {
                        id: ChunkId::of(piece),
                        len: l as u32,
                    }
                })
                .collect();
            FileEntry {
                path: (*path).into(),
                size: data.len() as u64,
                blake3: *blake3::hash(data).as_bytes(),
                mtime_ms: 7,
                chunks: refs,
            }
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let enc = Manifest { files: entries }.encode().unwrap();
    let (mrefs, pieces) = split(&enc);
    for p in &pieces {
        chunks.push(StoredChunk::encode(p, 3).unwrap());
    }
    (
        Deploy {
            site: site.into(),
            manifest: mrefs,
            manifest_hash: *blake3::hash(&enc).as_bytes(),
            base,
            author: "tester".into(),
            message: String::new(),
        },
        chunks,
    )
}

fn blob(seed: u8, n: usize) -> Vec<u8> {
    let mut x = u64::from(seed) * 0x9E37_79B9 + 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn deploy_switches_the_whole_tree_and_counts_references() {
    let mut s = Site::new();
    assert_eq!(
        s.apply(Op::CreateSite { site: "congbao".into() }),
        Outcome::SiteCreated { created: true }
    );
    assert_eq!(
        s.apply(Op::CreateSite { site: "congbao".into() }),
        Outcome::SiteCreated { created: false }
    );
    let shared = blob(1, 5000);
    let old_only = blob(2, 5000);
    let out = s.push(
        "congbao",
        &[("index.html", shared.clone()), ("old.pdf", old_only.clone())],
        Some(0),
    );
    assert_eq!(
        out,
        Outcome::Deployed {
            files: 2,
            bytes: 10_000
        }
    );
    let first = s.state.sites["congbao"].current.clone().unwrap().id;
    assert_eq!(s.refs(&shared), Some(1));
    assert_eq!(s.state.files.len(), 2);

    // New tree: shared stays, old.pdf goes, new.pdf comes.
    let new_only = blob(3, 5000);
    s.clock += 10;
    let out = s.push(
        "congbao",
        &[("index.html", shared.clone()), ("new.pdf", new_only.clone())],
        Some(first),
    );
    assert!(matches!(out, Outcome::Deployed { files: 2, .. }), "{out:?}");
    assert_eq!(s.refs(&shared), Some(1));
    assert_eq!(s.refs(&new_only), Some(1));
    assert_eq!(s.refs(&old_only), Some(0), "no longer used, kept until collected");
    assert!(s.state.zero.iter().any(|(_, id)| *id == ChunkId::of(&old_only)));
    let paths: Vec<&str> = s.state.files.keys().map(|(_, p)| p.as_str()).collect();
    assert_eq!(paths, vec!["index.html", "new.pdf"]);
    assert_eq!(s.state.deployments.len(), 2);

    // A stale base is refused and changes nothing.
    let before = s.state.clone();
    let out = s.push("congbao", &[("x", blob(4, 10))], Some(first));
    assert!(matches!(out, Outcome::DeployRejected { ref reason } if reason.contains("changed while you were pushing")));
    assert_eq!(s.state.sites, before.sites);
    assert_eq!(s.state.files, before.files);
}

#[test]
fn a_deploy_with_missing_chunks_or_site_is_refused() {
    let mut s = Site::new();
    let (d, _) = build("nosuch", &[("a", blob(1, 100))], None);
    assert!(
        matches!(s.apply(Op::Deploy(d)), Outcome::DeployRejected { ref reason } if reason.contains("does not exist"))
    );
    s.apply(Op::CreateSite { site: "s".into() });
    let (d, mut chunks) = build("s", &[("a", blob(1, 100_000))], None);
    // Drop one file chunk: the manifest refers to it.
    chunks.remove(0);
    s.apply(Op::PutChunks { chunks });
    let out = s.apply(Op::Deploy(d));
    assert!(
        matches!(out, Outcome::DeployRejected { ref reason } if reason.contains("not stored")),
        "{out:?}"
    );
    assert!(s.state.sites["s"].current.is_none());
    assert!(s.state.files.is_empty());
}

#[test]
fn garbage_collection_respects_grace_and_sharing() {
    let mut s = Site::new();
    s.apply(Op::CreateSite { site: "a".into() });
    s.apply(Op::CreateSite { site: "b".into() });
    let shared = blob(1, 3000);
    let only_a = blob(2, 3000);
    s.push("a", &[("x", shared.clone()), ("y", only_a.clone())], None);
    s.push("b", &[("x", shared.clone())], None);
    assert_eq!(s.refs(&shared), Some(2));
    // Chunks uploaded by a push that never committed.
    let orphan = StoredChunk::encode(&blob(9, 999), 3).unwrap();
    s.apply(Op::PutChunks {
        chunks: vec![orphan.clone()],
    });

    s.clock += 100;
    assert_eq!(
        s.apply(Op::DeleteSite { site: "a".into() }),
        Outcome::SiteDeleted { deleted: true }
    );
    assert_eq!(s.refs(&shared), Some(1));
    assert_eq!(s.refs(&only_a), Some(0));
    assert!(!s.state.files.keys().any(|(site, _)| site == "a"));

    // Within the grace period nothing goes.
    s.clock += 50;
    let out = s.apply(Op::CollectGarbage {
        grace_ms: 1_000,
        limit: 100,
    });
    assert_eq!(
        out,
        Outcome::GarbageCollected {
            chunks: 0,
            bytes: 0,
            more: false
        }
    );

    // An orphan uploaded again is fresh again.
    s.clock += 900;
    s.apply(Op::PutChunks {
        chunks: vec![orphan.clone()],
    });
    s.clock += 200;
    let out = s.apply(Op::CollectGarbage {
        grace_ms: 1_000,
        limit: 100,
    });
    let Outcome::GarbageCollected { chunks, .. } = out else {
        panic!("{out:?}")
    };
    assert!(chunks >= 2, "site a's unique chunks and manifest go: {out:?}");
    assert!(s.refs(&only_a).is_none());
    assert_eq!(s.refs(&shared), Some(1), "still used by site b");
    assert!(
        s.state.chunks.contains_key(&orphan.id),
        "re-uploaded within the grace period"
    );
    s.clock += 2_000;
    s.apply(Op::CollectGarbage {
        grace_ms: 1_000,
        limit: 100,
    });
    assert!(!s.state.chunks.contains_key(&orphan.id));
    // Site b is intact: every chunk of its tree is stored.
    let b = s.state.sites["b"].current.clone().unwrap();
    for r in &b.manifest {
        assert!(s.state.chunks.contains_key(&r.id));
    }
    assert!(s.state.chunks.contains_key(&ChunkId::of(&shared)));
    assert_eq!(
        s.state.zero.len(),
        s.state.chunk_meta.values().filter(|m| m.refs == 0).count()
    );
}

#[test]
fn garbage_collection_is_bounded_per_entry() {
    let mut s = Site::new();
    let chunks: Vec<StoredChunk> = (0..10u8)
        .map(|i| StoredChunk::encode(&blob(i, 100), 3).unwrap())
        .collect();
    s.apply(Op::PutChunks { chunks });
    s.clock += 10_000;
    let out = s.apply(Op::CollectGarbage { grace_ms: 1, limit: 4 });
    assert_eq!(
        out,
        Outcome::GarbageCollected {
            chunks: 4,
            bytes: out_bytes(&out),
            more: true
        }
    );
    s.apply(Op::CollectGarbage { grace_ms: 1, limit: 4 });
    let out = s.apply(Op::CollectGarbage { grace_ms: 1, limit: 4 });
    assert!(
        matches!(
            out,
            Outcome::GarbageCollected {
                chunks: 2,
                more: false,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(s.state.chunks.is_empty() && s.state.chunk_meta.is_empty() && s.state.zero.is_empty());
}

fn out_bytes(o: &Outcome) -> u64 {
    match o {
        Outcome::GarbageCollected { bytes, .. } => *bytes,
        _ => 0,
    }
}

#[test]
fn a_deploy_with_wrong_chunk_lengths_or_a_huge_manifest_is_refused() {
    let mut s = Site::new();
    s.apply(Op::CreateSite { site: "a".into() });
    let data = blob(3, 5000);
    // The manifest claims the file's one chunk is 4999 bytes long.
    let (d, chunks) = build("a", &[("x", data.clone())], None);
    s.apply(Op::PutChunks { chunks });
    let mut m = Manifest {
        files: vec![FileEntry {
            path: "x".into(),
            size: 4999,
            blake3: *blake3::hash(&data).as_bytes(),
            mtime_ms: 1,
            chunks: vec![ChunkRef {
                id: ChunkId::of(&data),
                len: 4999,
            }],
        }],
    };
    let enc = m.encode().unwrap();
    let (mrefs, pieces) = split(&enc);
    s.apply(Op::PutChunks {
        chunks: pieces.iter().map(|p| StoredChunk::encode(p, 3).unwrap()).collect(),
    });
    let lying = Deploy {
        manifest: mrefs,
        manifest_hash: *blake3::hash(&enc).as_bytes(),
        ..d.clone()
    };
    let out = s.apply(Op::Deploy(lying));
    assert!(
        matches!(&out, Outcome::DeployRejected { reason } if reason.contains("stored with")),
        "{out:?}"
    );
    // One small chunk named a million times as the manifest: refused from
    // the lengths, before anything is assembled.
    let zeros = StoredChunk::encode(&vec![0u8; 1 << 20], 3).unwrap();
    let zid = zeros.id;
    s.apply(Op::PutChunks { chunks: vec![zeros] });
    let bomb = Deploy {
        manifest: vec![ChunkRef { id: zid, len: 1 << 20 }; 1_000],
        ..d.clone()
    };
    let out = s.apply(Op::Deploy(bomb));
    assert!(
        matches!(&out, Outcome::DeployRejected { reason } if reason.contains("limit")),
        "{out:?}"
    );
    // The honest deploy still works.
    m.files[0].size = 5000;
    assert!(matches!(s.apply(Op::Deploy(d)), Outcome::Deployed { .. }));
}

// Model-based property: whatever the batching, content commands give the
// same responses and the same state as applying one entry at a time —
// including garbage collection, which scans an index the batch changes.
mod batching {
    use proptest::prelude::*;

    use super::*;
    use crate::command::Response;

    fn apply_batches(batches: &[&[Request]]) -> (Vec<Response>, MemState) {
        let mut state = MemState::default();
        let mut out = Vec::new();
        let mut index = 1;
        // The stores' unreferenced-bytes counter, kept from the deltas.
        let mut unreferenced = 0i64;
        for batch in batches {
            let mut a = Applier::new(&state);
            for r in *batch {
                out.push(a.apply(index, r).unwrap());
                index += 1;
            }
            let m = a.finish();
            for m in &m {
                if let crate::apply::Mutation::AddUnreferencedBytes { delta } = m {
                    unreferenced += delta;
                }
            }
            state.write(m);
            assert_eq!(unreferenced, state.unreferenced_bytes() as i64, "counter drifted");
        }
        (out, state)
    }

    fn pool() -> Vec<Op> {
        let trees = [
            vec![("p", blob(1, 3000)), ("q", blob(2, 2000))],
            vec![("p", blob(1, 3000)), ("r", blob(3, 4000))],
            vec![("s", blob(4, 1000))],
        ];
        let mut ops = vec![
            Op::CreateSite { site: "a".into() },
            Op::CreateSite { site: "b".into() },
            Op::DeleteSite { site: "a".into() },
        ];
        for (i, t) in trees.iter().enumerate() {
            let files: Vec<(&str, Vec<u8>)> = t.iter().map(|(p, d)| (*p, d.clone())).collect();
            let (d, chunks) = build(if i == 2 { "b" } else { "a" }, &files, None);
            // Sometimes only part of the upload arrives before the deploy.
            ops.push(Op::PutChunks {
                chunks: chunks[..1].to_vec(),
            });
            ops.push(Op::PutChunks { chunks });
            ops.push(Op::Deploy(d));
        }
        for grace_ms in [0, 15] {
            for limit in [1, 3] {
                ops.push(Op::CollectGarbage { grace_ms, limit });
            }
        }
        ops
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn batching_does_not_change_content_results(
            picks in prop::collection::vec(0usize..64, 1..40),
            cuts in prop::collection::vec(any::<bool>(), 40),
        ) {
            let pool = pool();
            let reqs: Vec<Request> = picks
                .iter()
                .enumerate()
                .map(|(i, p)| Request { id: None, proposed_at_ms: 1_000 + i as u64 * 7, op: pool[p % pool.len()].clone() })
                .collect();
            let singles: Vec<&[Request]> = reqs.chunks(1).collect();
            let (r1, s1) = apply_batches(&singles);
            let mut batches: Vec<&[Request]> = Vec::new();
            let mut start = 0;
            for i in 1..reqs.len() {
                if cuts[i] { batches.push(&reqs[start..i]); start = i; }
            }
            batches.push(&reqs[start..]);
            let (r2, s2) = apply_batches(&batches);
            prop_assert_eq!(r1, r2);
            prop_assert_eq!(s1, s2);
        }
    }
}

#[test]
fn a_site_quota_refuses_a_larger_tree_but_not_a_smaller_one() {
    use crate::schema::system::{QuotaKind, QuotaRecord, SYSTEM_DB, SystemRecord, quota_key};
    let mut s = Site::new();
    s.apply(Op::CreateSite { site: "portal".into() });
    let rec = QuotaRecord {
        version: 1,
        kind: QuotaKind::Site,
        name: "portal".into(),
        max_bytes: 8_000,
        set_by: "admin".into(),
        set_at_ms: 1,
    };
    s.apply(Op::Put {
        db: SYSTEM_DB.into(),
        key: quota_key(QuotaKind::Site, "portal"),
        value: rec.to_json().unwrap(),
    });
    let out = s.push("portal", &[("a", blob(1, 5000)), ("b", blob(2, 5000))], None);
    assert_eq!(
        out,
        Outcome::QuotaExceeded {
            kind: QuotaKind::Site,
            name: "portal".into(),
            bytes: 10_000,
            quota: 8_000
        }
    );
    assert!(s.state.sites["portal"].current.is_none(), "nothing deployed");
    let out = s.push("portal", &[("a", blob(1, 5000))], None);
    assert_eq!(out, Outcome::Deployed { files: 1, bytes: 5000 });
    // The uploads of the refused push wait, unreferenced, for collection.
    assert_eq!(s.refs(&blob(2, 5000)), Some(0));
    assert!(s.state.unreferenced_bytes() > 0);
}
