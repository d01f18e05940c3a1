//! Golden bytes: every stored record's encoding, pinned. A failure here
//! means a field was added, removed, reordered or retyped — a format
//! change that needs a new version (docs/formats.md), not a test update.

use sen_content::{ChunkId, ChunkRef};

use super::*;
use crate::command::{Outcome, Response};

/// Compare `bytes` with the pinned hex; on mismatch, show the new bytes.
#[track_caller]
pub(crate) fn assert_golden(what: &str, bytes: &[u8], hex: &str) {
    let got: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, hex, "{what}: the encoding changed (new bytes on the left)");
}

fn chunk_ref(n: u8) -> ChunkRef {
    ChunkRef {
        id: ChunkId([n; 32]),
        len: 65_536 + n as u32,
    }
}

#[test]
fn kv_record() {
    let r = KvRecord {
        value: b"Th\xe1\xbb\xa9 hai".to_vec(),
        mod_revision: 300,
        create_revision: 7,
        version: 2,
    };
    let b = r.encode().unwrap();
    assert_golden("kv record", &b, GOLDEN_KV);
    assert_eq!(KvRecord::decode(&b).unwrap(), r);
}

#[test]
fn dedup_record() {
    let r = DedupRecord {
        at_ms: 1_764_000_000_000,
        response: Response {
            revision: 42,
            duplicate: false,
            outcome: Outcome::Put { created: true },
        },
        request: None,
    };
    // Version 1 (no request digest): still read, and written back as is.
    let b = r.encode().unwrap();
    assert_golden("request-id record", &b, GOLDEN_DEDUP);
    assert_eq!(DedupRecord::decode(&b).unwrap(), r);

    let r2 = DedupRecord {
        request: Some([0xab; 32]),
        ..r
    };
    let b = r2.encode().unwrap();
    assert_golden("request-id record v2", &b, GOLDEN_DEDUP_V2);
    assert_eq!(DedupRecord::decode(&b).unwrap(), r2);
}

#[test]
fn db_stats() {
    let r = DbStats {
        keys: 3,
        bytes: 1 << 20,
    };
    let b = r.encode().unwrap();
    assert_golden("database stats", &b, GOLDEN_DB_STATS);
    assert_eq!(DbStats::decode(&b).unwrap(), r);
}

#[test]
fn chunk_meta() {
    let r = ChunkMeta {
        refs: 2,
        zero_since_ms: 0,
        len: 65_536,
        stored_len: 20_000,
    };
    let b = r.encode().unwrap();
    assert_golden("chunk metadata", &b, GOLDEN_CHUNK_META);
    assert_eq!(ChunkMeta::decode(&b).unwrap(), r);
}

#[test]
fn site_record() {
    let r = SiteRecord {
        created_at_ms: 1_764_000_000_000,
        current: Some(CurrentDeployment {
            id: 9,
            manifest: vec![chunk_ref(1)],
            manifest_hash: [2; 32],
            files: 10,
            bytes: 12_345,
        }),
    };
    let b = r.encode().unwrap();
    assert_golden("site record", &b, GOLDEN_SITE);
    assert_eq!(SiteRecord::decode(&b).unwrap(), r);
}

#[test]
fn deployment_info() {
    let r = DeploymentInfo {
        id: 9,
        at_ms: 1_764_000_000_000,
        author: "vpubnd".into(),
        message: "Công báo số 201".into(),
        files: 10,
        bytes: 12_345,
        new_chunks: 3,
    };
    let b = r.encode().unwrap();
    assert_golden("deployment record", &b, GOLDEN_DEPLOYMENT);
    assert_eq!(DeploymentInfo::decode(&b).unwrap(), r);
}

#[test]
fn file_record() {
    let r = FileRecord {
        deployment: 9,
        size: 70_000,
        blake3: [3; 32],
        mtime_ms: 1_764_000_000_000,
        chunks: vec![chunk_ref(4), chunk_ref(5)],
    };
    let b = r.encode().unwrap();
    assert_golden("file record", &b, GOLDEN_FILE);
    assert_eq!(FileRecord::decode(&b).unwrap(), r);
}

#[test]
fn a_newer_version_is_refused_not_misread() {
    let mut b = DbStats { keys: 1, bytes: 2 }.encode().unwrap();
    b[0] = 1; // V2
    let e = DbStats::decode(&b).unwrap_err().to_string();
    assert!(e.contains("database stats uses format version 2"), "{e}");
}

const GOLDEN_KV: &str = "00095468e1bba920686169fb2c010702";
const GOLDEN_DEDUP: &str = "00fd00e897b69a0100002a000101";
const GOLDEN_DEDUP_V2: &str =
    "01fd00e897b69a0100002a000101abababababababababababababababababababababababababababababababab";
const GOLDEN_DB_STATS: &str = "0003fc00001000";
const GOLDEN_CHUNK_META: &str = "000200fc00000100fb204e";
const GOLDEN_SITE: &str = "00fd00e897b69a0100000109010101010101010101010101010101010101010101010101010101010101010101fc0100010002020202020202020202020202020202020202020202020202020202020202020afb3930";
const GOLDEN_DEPLOYMENT: &str =
    "0009fd00e897b69a01000006767075626e641343c3b46e672062c3a16f2073e1bb91203230310afb393003";
const GOLDEN_FILE: &str = "0009fc701101000303030303030303030303030303030303030303030303030303030303030303fd00e897b69a010000020404040404040404040404040404040404040404040404040404040404040404fc040001000505050505050505050505050505050505050505050505050505050505050505fc05000100";
