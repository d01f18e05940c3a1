//! Every committed corpus file goes through its target on stable Rust (no
//! nightly, no libFuzzer): a crash fixed once stays fixed. The corpora
//! live in `engine/fuzz/corpus/<target>/`; `scripts/fuzz.sh` grows and
//! minimises them.
//!
//! `cargo test -p sen-fuzz -- --ignored write_seeds` writes the seed
//! inputs (valid objects of every format) the corpora started from.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use sen_fuzz::TARGETS;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(name)
}

#[test]
fn every_corpus_file_replays_through_its_target() {
    let mut total = 0;
    for t in TARGETS {
        let dir = corpus(t.name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {} is missing ({e}): run the seed writer", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {} is empty", dir.display());
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let outcome = std::panic::catch_unwind(|| (t.run)(&data));
            assert!(outcome.is_ok(), "{} crashes on {}", t.name, f.display());
        }
        total += files.len();
    }
    eprintln!("replayed {total} corpus files through {} targets", TARGETS.len());
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    for t in TARGETS {
        let src = fuzz.join("fuzz_targets").join(format!("{}.rs", t.name));
        let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        assert!(
            text.contains(&format!("sen_fuzz::{}(", t.name)),
            "{} does not call sen_fuzz::{}",
            src.display(),
            t.name
        );
        assert!(
            manifest.contains(&format!("name = \"{}\"", t.name)),
            "fuzz/Cargo.toml has no [[bin]] {}",
            t.name
        );
    }
}

/// Hostile inputs found by hand, before any fuzzer: each must be refused
/// without a panic.
#[test]
fn known_hostile_inputs_are_refused() {
    // A zstd bomb behind a valid index header (64 MiB of zeros).
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
    sen_fuzz::index(&[[1u8].as_slice(), &bomb].concat());
    // A pack whose trailer points its header before the start.
    let mut pack = vec![0u8; 20];
    pack.extend_from_slice(&u32::MAX.to_le_bytes());
    pack.extend_from_slice(b"SENPACK1");
    sen_fuzz::pack(&pack);
    // A record stream announcing a 4 GiB key.
    sen_fuzz::table_records(&[[0u8].as_slice(), &u32::MAX.to_le_bytes()].concat());
    // Ranges at the edges of u64.
    let mut r = u64::MAX.to_le_bytes().to_vec();
    r.push(0);
    r.extend_from_slice(b"bytes=18446744073709551615-\n\n");
    sen_fuzz::http_range(&r);
    sen_fuzz::site_path("a/../../etc/passwd".as_bytes());
    sen_fuzz::node_config(b"SEN_LIMITS__MAX_KEY_BYTES=99999999999999999999\nid = 1\n");
}

/// Write the seed corpus: one valid input of every format (and a few
/// near misses), from which fuzzing started.
#[test]
#[ignore = "writes files under engine/fuzz/corpus; run by hand"]
fn write_seeds() {
    use sen_backup::crypto::Keys;
    use sen_backup::format::{self, BlobEncoding, BlobKind, ObjectKind, PackEntry};
    use sen_core::codec;
    use sen_raft::schema::Record;
    use sen_raft::schema::snapshot::{Frame, SnapshotFile, SnapshotManifest};
    use sen_raft::{Op, Request, Txn, TxnOp};

    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let write = |target: &str, n: usize, data: &[u8]| {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{n}")), data).unwrap();
    };

    write("repo_config", 0, br#"{"format":"sen-backup-repository","version":1,"id":"ab","created_at_ms":1,"table_chunker":{"algorithm":"fastcdc-2020","min":1024,"avg":4096,"max":16384},"zstd_level":3,"pack_target_bytes":16777216,"encryption":null}"#);
    write("repo_config", 1, br#"{"format":"sen-backup-repository","version":1,"id":"ab","created_at_ms":1,"table_chunker":{"algorithm":"fastcdc-2020","min":1024,"avg":4096,"max":16384},"zstd_level":3,"pack_target_bytes":16777216,"encryption":{"cipher":"xchacha20poly1305","kdf":{"algorithm":"argon2id","m_cost_kib":65536,"t_cost":3,"p_cost":1,"salt":"00"},"wrapped_key":"00"}}"#);

    // A pack: two blobs, the header, the trailer.
    let blobs = b"first blob.second blob".to_vec();
    let entries = vec![
        PackEntry {
            id: [1; 32],
            kind: BlobKind::Content,
            encoding: BlobEncoding::Raw,
            offset: 0,
            len: 11,
            raw_len: 11,
            group_offset: 0,
        },
        PackEntry {
            id: [2; 32],
            kind: BlobKind::Table,
            encoding: BlobEncoding::Raw,
            offset: 11,
            len: 11,
            raw_len: 11,
            group_offset: 0,
        },
    ];
    let header = format::encode_object(&Keys::None, ObjectKind::PackHeader, &entries).unwrap();
    let mut pack = blobs.clone();
    pack.extend_from_slice(&header);
    pack.extend_from_slice(&(header.len() as u32).to_le_bytes());
    pack.extend_from_slice(format::PACK_MAGIC);
    write("pack", 0, &pack);

    // Metadata objects: mode byte 2 = header + zstd of the plaintext.
    let golden_index = "00010707070707070707070707070707070707070707070707070707070707070707fc7c001000020101010101010101010101010101010101010101010101010101010101010101000100fb204efc000001000002020202020202020202020202020202020202020202020202020202020202020102fb204efb2823fb0010fb0002010909090909090909090909090909090909090909090909090909090909090909";
    let golden_snapshot = "00fd00e897b69a01000003632d317803020473656e320106736c6f743d3502616201026b760264010303030303030303030303030303030303030303030303030303030303030303640107636f6e6762616f010903fbe70301086c6963687475616e32fb8813fb7017fb7017040402020f";
    write("index", 0, &[[2u8].as_slice(), &hex(golden_index)].concat());
    write(
        "index",
        1,
        &[[1u8].as_slice(), &zstd::bulk::compress(&hex(golden_index), 3).unwrap()].concat(),
    );
    write(
        "backup_snapshot",
        0,
        &[[2u8].as_slice(), &hex(golden_snapshot)].concat(),
    );

    // A table stream of kv records.
    let mut stream = vec![0x23u8];
    for (k, v) in [("congbao\0so-1", "van ban"), ("congbao\0so-2", "quyet dinh")] {
        let rec = sen_raft::schema::KvRecord {
            value: v.as_bytes().to_vec(),
            mod_revision: 3,
            create_revision: 2,
            version: 1,
        };
        let val = rec.encode().unwrap();
        stream.extend_from_slice(&(k.len() as u32).to_le_bytes());
        stream.extend_from_slice(k.as_bytes());
        stream.extend_from_slice(&(val.len() as u32).to_le_bytes());
        stream.extend_from_slice(&val);
    }
    write("table_records", 0, &stream);

    // Replicated commands.
    let reqs = [
        Op::Put {
            db: "congbao".into(),
            key: b"so-1".to_vec(),
            value: b"v".to_vec(),
        },
        Op::Delete {
            db: "congbao".into(),
            key: b"so-1".to_vec(),
        },
        Op::Txn(Txn {
            db: "lich".into(),
            compares: vec![],
            success: vec![TxnOp::Append {
                key: b"k".to_vec(),
                value: b"x".to_vec(),
            }],
            failure: vec![TxnOp::Delete { key: b"k".to_vec() }],
        }),
        Op::CollectGarbage {
            grace_ms: 1000,
            limit: 10,
        },
        Op::CreateSite { site: "portal".into() },
    ];
    for (i, op) in reqs.into_iter().enumerate() {
        let r = Request {
            id: Some(sen_core::RequestId([i as u8; 16])),
            proposed_at_ms: 1,
            op,
        };
        write("raft_command", i, &codec::encode_v1("request", &r).unwrap());
    }

    // Snapshot frames and a manifest.
    let manifest = SnapshotManifest {
        meta: Default::default(),
        files: vec![SnapshotFile {
            name: "000012.sst".into(),
            size: 3,
        }],
        created_at_ms: 1,
    };
    write("snapshot_frames", 0, &manifest.encode().unwrap());
    let frames = [
        Frame::Header {
            vote: sen_raft::Vote::new_committed(4, 1),
            manifest,
        },
        Frame::Chunk {
            file: 0,
            offset: 0,
            data: b"abc".to_vec(),
        },
        Frame::FileEnd {
            file: 0,
            blake3: [7; 32],
        },
        Frame::Done,
    ];
    for (i, f) in frames.iter().enumerate() {
        write("snapshot_frames", i + 1, &f.encode().unwrap());
    }

    for (i, p) in [
        "index.html",
        "/tin-tuc/Quyết định 01.pdf",
        "a/./b//c",
        "a/../b",
        "",
        "trang-chu/",
    ]
    .iter()
    .enumerate()
    {
        write("site_path", i, p.as_bytes());
    }

    for (i, (size, text)) in [
        (100u64, "bytes=0-9\n\"e\"\n\"e\""),
        (5 << 20, "bytes=-500"),
        (10, "bytes=3-\n\"old\"\n\"new\""),
    ]
    .iter()
    .enumerate()
    {
        let mut d = size.to_le_bytes().to_vec();
        d.push(0);
        d.extend_from_slice(text.as_bytes());
        write("http_range", i, &d);
    }

    write("txn", 0, b"# a lock\nif value(lock) = free\nif !exists(owner)\nthen put lock n1\nthen append log \"x\\n\"\nelse del tmp\n");
    write("txn", 1, b"version(k) > 3");

    write("node_config", 0, b"SEN_LOG__LEVEL=debug\nid = 1\ndata-dir = \"/var/lib/sen\"\n[server]\nlisten = \"127.0.0.1:7101\"\n[limits]\nmax-key-bytes = 1024\n[raft]\nheartbeat-interval = \"100ms\"\n");
    write("node_config", 1, b"id = 2\n[backup]\nallowed-repos = [\"file:///srv/backup\", \"s3://b/p\"]\n[content]\nvhosts = { \"lichtuan.example\" = \"lich-tuan\" }\n");
}
