//! Fuzz targets: every parser that reads bytes Sen did not write itself
//! in this process — from a peer, a disk, a backup repository, an HTTP
//! client or an operator. Each target takes arbitrary bytes and must
//! return without panicking, aborting or allocating without bound; where a
//! parser promises more (a normalised path is normal, a range lies inside
//! the file, a decoded command re-encodes to the same bytes), the target
//! asserts it.
//!
//! The same functions run in two ways:
//! - `cargo test -p sen-fuzz` (stable Rust, part of CI) replays every file
//!   of `corpus/<target>/` and a few built-in seeds, so a fixed crash
//!   stays fixed;
//! - `scripts/fuzz.sh` runs cargo-fuzz (libFuzzer, nightly) on the project
//!   in `fuzz/`, whose targets call these functions, and grows the corpora.
//!
//! docs/reliability.md ("Fuzzing") lists the targets and what each run
//! measured.

use sen_backup::crypto::{Keys, MAX_KDF_LANES, MAX_KDF_MEMORY_KIB, MAX_KDF_PASSES};
use sen_backup::format::{
    self, IndexFile, MAX_PACK_BYTES, MIN_PACK_BYTES, ObjectKind, RepoConfig, Snapshot, TrashFile, decode_object,
};
use sen_backup::read::{MAX_TABLE_FIELD_BYTES, TableReader};
use sen_content::range::{self, Selection};
use sen_content::{ChunkId, ChunkRef, path};
use sen_core::codec;
use sen_raft::schema::Record;
use sen_raft::schema::snapshot::{Frame, SnapshotManifest};

/// A fuzz target: its name (the corpus directory and the cargo-fuzz
/// binary) and its entry point.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order docs/reliability.md lists them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "repo_config",
        run: repo_config,
    },
    Target {
        name: "pack",
        run: pack,
    },
    Target {
        name: "index",
        run: index,
    },
    Target {
        name: "backup_snapshot",
        run: backup_snapshot,
    },
    Target {
        name: "table_records",
        run: table_records,
    },
    Target {
        name: "raft_command",
        run: raft_command,
    },
    Target {
        name: "snapshot_frames",
        run: snapshot_frames,
    },
    Target {
        name: "site_path",
        run: site_path,
    },
    Target {
        name: "http_range",
        run: http_range,
    },
    Target { name: "txn", run: txn },
    Target {
        name: "node_config",
        run: node_config,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The repository `config` object (unauthenticated JSON: its limits must
/// hold before any key is derived).
pub fn repo_config(data: &[u8]) {
    if let Ok(c) = RepoConfig::parse(data, "fuzz") {
        assert!((MIN_PACK_BYTES..=MAX_PACK_BYTES).contains(&c.pack_target_bytes));
        if let Some(e) = &c.encryption {
            assert!(e.kdf.m_cost_kib <= MAX_KDF_MEMORY_KIB);
            assert!(e.kdf.t_cost <= MAX_KDF_PASSES);
            assert!((1..=MAX_KDF_LANES).contains(&e.kdf.p_cost));
        }
    }
}

/// A whole pack file: trailer, then the header it points to, whose blob
/// entries must lie inside the data area.
pub fn pack(data: &[u8]) {
    let size = data.len() as u64;
    if data.len() < 12 {
        return;
    }
    let Ok((off, len)) = format::pack_trailer(size, &data[data.len() - 12..], "fuzz") else {
        return;
    };
    let (off, len) = (off as usize, len as usize);
    let header = &data[off..off + len];
    if let Ok(entries) = sen_backup::repo::decode_pack_header(&Keys::None, header, "fuzz", off as u64) {
        for e in entries {
            assert!(u64::from(e.offset) + u64::from(e.len) <= off as u64);
        }
    }
}

/// Repository metadata objects are read three ways here: as given, behind
/// a valid unencrypted header, and behind a valid header with the rest
/// zstd-compressed (so the decoder, not only the magic check, is reached).
/// The first byte picks the way.
fn metadata_object<T: serde::de::DeserializeOwned>(kind: ObjectKind, data: &[u8]) -> Option<T> {
    let (&mode, rest) = data.split_first()?;
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => [&format::object_header(&Keys::None, kind)[..], rest].concat(),
        _ => {
            let z = zstd::bulk::compress(rest, 1).ok()?;
            [&format::object_header(&Keys::None, kind)[..], &z].concat()
        }
    };
    decode_object::<T>(&Keys::None, kind, &bytes, "fuzz").ok()
}

/// An index object (packs and the blobs in them).
pub fn index(data: &[u8]) {
    let _ = metadata_object::<IndexFile>(ObjectKind::Index, data);
}

/// A backup snapshot object, and a trash object (same reader).
pub fn backup_snapshot(data: &[u8]) {
    let _ = metadata_object::<Snapshot>(ObjectKind::Snapshot, data);
    let _ = metadata_object::<TrashFile>(ObjectKind::Trash, data);
}

/// A table record stream, cut into chunks at the points the first bytes
/// give; every record's value is then decoded as each stored record type.
pub fn table_records(data: &[u8]) {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    // Up to 3 cut points, spread by the cut byte.
    let mut parts = Vec::new();
    let mut at = 0usize;
    for i in 0..(cuts % 4) as usize {
        let step = (usize::from(cuts >> 2) * (i + 1) + 1) % (rest.len() + 1);
        let end = (at + step).min(rest.len());
        parts.push(rest[at..end].to_vec());
        at = end;
    }
    parts.push(rest[at..].to_vec());
    let reader = TableReader::from_chunks("fuzz", parts.into_iter().map(Ok));
    for row in reader.take(10_000) {
        let Ok((k, v)) = row else { break };
        assert!(k.len() <= MAX_TABLE_FIELD_BYTES && v.len() <= MAX_TABLE_FIELD_BYTES);
        let _ = sen_raft::schema::KvRecord::decode(&v);
        let _ = sen_raft::schema::FileRecord::decode(&v);
        let _ = sen_raft::schema::SiteRecord::decode(&v);
        let _ = sen_raft::schema::DeploymentInfo::decode(&v);
        let _ = sen_raft::schema::ChunkMeta::decode(&v);
        let _ = sen_raft::schema::DbStats::decode(&v);
        let _ = sen_raft::schema::tables::split_scoped_key(&k);
    }
}

/// What a Raft log entry and a replicated command decode from (the log on
/// disk, `AppendEntries` from a peer). A command that decodes re-encodes
/// to the same bytes, so what a node applies is what was proposed.
pub fn raft_command(data: &[u8]) {
    if let Ok(r) = codec::decode_v1::<sen_raft::Request>("fuzz", data) {
        let again = codec::encode_v1("fuzz", &r).expect("a decoded request encodes");
        let back: sen_raft::Request = codec::decode_v1("fuzz", &again).expect("its encoding decodes");
        assert_eq!(back, r);
        // What a node does with an op before applying it.
        let _ = r.op.digest();
        let _ = r.op.adds_data("sen-system");
        let _ = r.to_string();
    }
    let _ = codec::decode_v1::<sen_raft::Entry>("fuzz", data);
    let _ = codec::decode_v1::<sen_raft::Response>("fuzz", data);
    let _ = sen_raft::schema::DedupRecord::decode(data);
}

/// Snapshot transfer frames (from a peer) and a snapshot manifest (from
/// disk or a frame): a manifest that passes its check names only plain,
/// distinct files.
pub fn snapshot_frames(data: &[u8]) {
    let manifests = [
        Frame::decode(data).ok().and_then(|f| match f {
            Frame::Header { manifest, .. } => Some(manifest),
            _ => None,
        }),
        SnapshotManifest::decode(data).ok(),
    ];
    for m in manifests.into_iter().flatten() {
        let _ = m.total_bytes();
        if m.check().is_ok() {
            for f in &m.files {
                assert!(!f.name.contains('/') && f.name != ".." && !f.name.is_empty());
            }
        }
    }
}

/// Site paths and prefixes from HTTP URLs and push manifests: a
/// normalised path is normal (normalising again changes nothing) and
/// never climbs out of the site.
pub fn site_path(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = path::normalize(s) {
        assert_eq!(
            path::normalize(&p).as_deref(),
            Ok(p.as_str()),
            "normalising twice changed {s:?}"
        );
        assert!(!p.split('/').any(|c| c == ".." || c == "." || c.is_empty()), "{p:?}");
    }
    if let Ok(p) = path::normalize_prefix(s) {
        assert!(!p.split('/').any(|c| c == ".."), "{p:?}");
    }
    let _ = path::check_site_name(s);
}

/// `Range` and `If-Range` against a file of some size and chunks: a
/// partial answer lies inside the file, and its pieces cover exactly it.
pub fn http_range(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap_or_default()) >> (data[8] % 64);
    let text = String::from_utf8_lossy(&data[9..]);
    let mut fields = text.splitn(3, '\n');
    let (range_h, if_range, etag) = (fields.next(), fields.next(), fields.next().unwrap_or("\"e\""));
    match range::select(range_h, if_range, etag, size) {
        Selection::Part { start, end } => {
            assert!(start < end && end <= size, "{start}..{end} of {size}");
            // Chunks of the file: 1 MiB each, the last shorter.
            let n = size.div_ceil(1 << 20).min(4096);
            let chunks: Vec<ChunkRef> = (0..n)
                .map(|i| ChunkRef {
                    id: ChunkId([0; 32]),
                    len: (size - i * (1 << 20)).min(1 << 20) as u32,
                })
                .collect();
            if n * (1 << 20) >= size {
                let covered: u64 = range::pieces(&chunks, start, end)
                    .iter()
                    .map(|p| (p.to - p.from) as u64)
                    .sum();
                assert_eq!(covered, end - start);
            }
        }
        Selection::Whole | Selection::Unsatisfiable => {}
    }
}

/// The `sen kv txn` language: clauses and `--file` text.
pub fn txn(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((ifs, thens, elses)) = sen_client::txn::parse_file(s) {
        for c in &ifs {
            let _ = sen_client::txn::parse_compare(c);
        }
        for c in thens.iter().chain(&elses) {
            let _ = sen_client::txn::parse_op(c);
        }
    }
    let _ = sen_client::txn::parse_compare(s);
    let _ = sen_client::txn::parse_op(s);
}

/// A node's configuration file, with the same text also given as one
/// `SEN_*` override (the first line `NAME=value`).
pub fn node_config(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let env: Vec<(String, String)> = s
        .lines()
        .next()
        .and_then(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("SEN_"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into_iter()
        .collect();
    let overrides = sen_config::Overrides::default();
    if let Ok(c) = sen_config::NodeConfig::from_text(Some(("fuzz.toml", s)), env, &overrides) {
        // A configuration that loads renders and loads again.
        let again = sen_config::NodeConfig::from_text(Some(("again.toml", &c.to_toml())), Vec::new(), &overrides);
        assert!(again.is_ok(), "{again:?}");
    }
}
