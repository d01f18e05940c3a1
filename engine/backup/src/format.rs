//! Repository format v1: the stored types and their byte layouts.
//! The normative description is docs/backup-format.md; keep both in step.
//!
//! ```text
//! config                 JSON, plaintext: format version, parameters, wrapped key
//! data/HH/<pack-id>      packs: sealed blobs, then the sealed pack header,
//!                        its length (u32 LE) and the magic "SENPACK1"
//! index/<id>             which blob is in which pack, at which offset
//! snapshots/<id>         snapshot manifests: the commit point of a backup
//! trash/<id>             packs marked for deletion by prune (phase 1)
//! archive/<first index>  segments of the continuous log archive (`archive`)
//! ```
//! Every id is the blake3 of the object's bytes (lower-case hex), so every
//! object can be verified without the key, and writes are idempotent.

use serde::{Deserialize, Serialize};

use crate::RepoError;
use crate::crypto::{KeyInfo, Keys};

/// The repository format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
pub const FORMAT_NAME: &str = "sen-backup-repository";

pub const CONFIG_KEY: &str = "config";
pub const DATA_DIR: &str = "data";
pub const INDEX_DIR: &str = "index";
pub const SNAPSHOT_DIR: &str = "snapshots";
pub const TRASH_DIR: &str = "trash";

pub const PACK_MAGIC: &[u8; 8] = b"SENPACK1";
pub const OBJECT_MAGIC: &[u8; 4] = b"SENO";

/// Content-defined chunking of table record streams (bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub algorithm: String,
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    /// Random id of this repository (hex).
    pub id: String,
    pub created_at_ms: u64,
    /// How table record streams are cut (content chunks come from the
    /// cluster as they are).
    pub table_chunker: ChunkerParams,
    /// zstd level for blobs that are not already compressed.
    pub zstd_level: i32,
    /// Packs are closed once they reach this size.
    pub pack_target_bytes: u64,
    /// Absent: no encryption.
    pub encryption: Option<KeyInfo>,
}

impl RepoConfig {
    /// Parse and check the version before anything else.
    pub fn parse(bytes: &[u8], store: &str) -> Result<Self, RepoError> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| RepoError::Corrupt(format!("{store}/config is not valid JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(RepoError::Format(format!(
                "{store} is not a Sen backup repository (its config has no format {FORMAT_NAME:?})"
            )));
        }
        match v.get("version").and_then(|f| f.as_u64()) {
            Some(n) if n == u64::from(FORMAT_VERSION) => {}
            Some(n) if n > u64::from(FORMAT_VERSION) => {
                return Err(RepoError::Format(format!(
                    "{store} uses repository format version {n}, but this build of Sen reads up to version {FORMAT_VERSION}: upgrade Sen to use it"
                )));
            }
            other => {
                return Err(RepoError::Format(format!(
                    "{store}/config has an unsupported version {other:?}"
                )));
            }
        }
        let config: Self = serde_json::from_value(v).map_err(|e| RepoError::Corrupt(format!("{store}/config: {e}")))?;
        if !(MIN_PACK_BYTES..=MAX_PACK_BYTES).contains(&config.pack_target_bytes) {
            return Err(RepoError::Corrupt(format!(
                "{store}/config: pack_target_bytes = {} is outside {MIN_PACK_BYTES}..={MAX_PACK_BYTES} \
                 (offsets inside a pack are 32-bit): the config is damaged or was not written by Sen",
                config.pack_target_bytes
            )));
        }
        if let Some(enc) = &config.encryption {
            enc.kdf.check_limits()?;
        }
        Ok(config)
    }
}

/// Smallest pack size a repository may ask for.
pub const MIN_PACK_BYTES: u64 = 64 << 10;
/// Largest: a pack closes once it reaches the target, so it may exceed it
/// by one blob group; offsets inside a pack are `u32`, so the target stays
/// far below 4 GiB.
pub const MAX_PACK_BYTES: u64 = 1 << 30;

/// How a blob's plaintext is stored inside its (possibly sealed) bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobEncoding {
    /// The plaintext, sealed on its own.
    Raw,
    /// One zstd frame of the blob, sealed on its own (content chunks as the
    /// cluster stores them).
    Zstd,
    /// Part of a *group*: one zstd frame of several consecutive blobs'
    /// plaintexts (up to [`GROUP_TARGET`]), sealed once. The entry's
    /// offset and length are the group's; `group_offset` is where the blob
    /// starts in the group's plaintext. Compressing ~1 MiB at a time instead
    /// of 4–64 KiB chunks makes the repository 10–25% smaller.
    Group,
}

/// Plaintext size at which a group is closed.
pub const GROUP_TARGET: usize = 1024 * 1024;
/// Largest group plaintext a reader accepts.
pub const GROUP_MAX: usize = 2 * GROUP_TARGET + sen_content::chunk::MAX_CHUNK_BYTES;
/// Associated data of a sealed group (its members are verified by hash).
pub const GROUP_AAD: &[u8] = b"sen-blob-group-v1";

/// What a blob holds (for statistics and checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlobKind {
    /// A chunk of site content (the cluster's own chunk).
    Content,
    /// A chunk of a table's record stream.
    Table,
}

/// One blob in a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Blob id: the chunk id, keyed when the repository is encrypted.
    pub id: [u8; 32],
    pub kind: BlobKind,
    pub encoding: BlobEncoding,
    pub offset: u32,
    /// Stored bytes (sealed).
    pub len: u32,
    /// Plaintext bytes.
    pub raw_len: u32,
    /// `Group` blobs: offset in the group's plaintext (0 otherwise).
    pub group_offset: u32,
}

/// A pack's entries, as written at its end and copied into the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: [u8; 32],
    pub size: u64,
    pub entries: Vec<PackEntry>,
}

/// An `index/` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    pub packs: Vec<IndexPack>,
    /// Index objects this one replaces (written by prune); readers ignore
    /// them, and they are deleted after this one is stored.
    pub supersedes: Vec<[u8; 32]>,
}

/// A chunk reference in a stream: plaintext chunk id and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChunk {
    pub id: [u8; 32],
    pub len: u32,
}

/// One table of the cluster state, as a record stream cut into chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStream {
    pub name: String,
    pub records: u64,
    pub bytes: u64,
    pub chunks: Vec<StreamChunk>,
}

/// A site in a snapshot (summary; the files are in the `files` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSummary {
    pub name: String,
    pub deployment: Option<u64>,
    pub files: u64,
    pub bytes: u64,
}

/// A database in a snapshot (summary; the records are in the `kv` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbSummary {
    pub name: String,
    pub keys: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Plaintext bytes the snapshot describes (tables + content chunks).
    pub bytes_total: u64,
    /// Bytes this backup uploaded (packs, index and manifest).
    pub bytes_new: u64,
    pub blobs_total: u64,
    pub blobs_new: u64,
    pub content_chunks: u64,
    pub content_chunks_new: u64,
    pub duration_ms: u64,
}

/// A `snapshots/` object: the commit point of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time_ms: u64,
    pub cluster_id: String,
    pub raft_index: u64,
    pub raft_term: u64,
    /// The node whose state was read.
    pub source_node: u64,
    pub hostname: String,
    pub tags: Vec<String>,
    /// Digest of the cluster state at `raft_index` (as `sen` reports it).
    pub state_digest: String,
    pub tables: Vec<TableStream>,
    pub sites: Vec<SiteSummary>,
    pub databases: Vec<DbSummary>,
    pub stats: SnapshotStats,
}

/// A `trash/` object: packs prune found unused, deleted by a later prune
/// once `marked_at_ms` is older than the grace period (if still unused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrashFile {
    pub marked_at_ms: u64,
    pub packs: Vec<IndexPack>,
}

/// Object kinds (the fifth header byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Index = 1,
    Snapshot = 2,
    Trash = 3,
    PackHeader = 4,
    /// A segment of the continuous archive (`archive/<first index>`).
    Segment = 5,
    /// The content chunks an archive segment's entries hold by reference
    /// (`archive-chunks/<first>-<last>`).
    SegmentChunks = 6,
}

impl ObjectKind {
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Index => INDEX_DIR,
            ObjectKind::Snapshot => SNAPSHOT_DIR,
            ObjectKind::Trash => TRASH_DIR,
            ObjectKind::PackHeader => DATA_DIR,
            ObjectKind::Segment => crate::archive::ARCHIVE_DIR,
            ObjectKind::SegmentChunks => crate::archive::CHUNKS_DIR,
        }
    }
    /// The object format version written for this kind, and the newest one
    /// this build reads. Version 2 of a segment: the data of the content
    /// chunks its entries store is in the repository's packs (named by an
    /// `archive-chunks/` list), not in the entries; a build that reads only
    /// version 1 refuses such a segment instead of replaying empty chunks.
    pub fn version(self) -> u32 {
        match self {
            ObjectKind::Segment | ObjectKind::SegmentChunks => 2,
            _ => FORMAT_VERSION,
        }
    }
    fn what(self) -> &'static str {
        match self {
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Trash => "trash list",
            ObjectKind::PackHeader => "pack header",
            ObjectKind::Segment => "archive segment",
            ObjectKind::SegmentChunks => "archive chunk list",
        }
    }
}

/// Encode a metadata object: `SENO`, version, kind, flags, 0, then the
/// sealed zstd of the versioned encoding.
pub fn encode_object<T: Serialize>(keys: &Keys, kind: ObjectKind, value: &T) -> Result<Vec<u8>, RepoError> {
    let plain = sen_core::codec::encode_v1(kind.what(), value).map_err(|e| RepoError::Format(e.to_string()))?;
    let compressed = zstd::bulk::compress(&plain, 3).map_err(|e| RepoError::Format(format!("zstd: {e}")))?;
    let header = object_header(keys, kind);
    let sealed = keys.seal(compressed, &header)?;
    Ok([header.as_slice(), &sealed].concat())
}

/// The 8-byte header of a repository object: magic, format version, kind,
/// encryption flag.
pub fn object_header(keys: &Keys, kind: ObjectKind) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(OBJECT_MAGIC);
    h[4] = kind.version() as u8;
    h[5] = kind as u8;
    h[6] = u8::from(keys.is_encrypted());
    h
}

/// Decode what [`encode_object`] wrote. `name` is used in errors.
pub fn decode_object<T: serde::de::DeserializeOwned>(
    keys: &Keys,
    kind: ObjectKind,
    bytes: &[u8],
    name: &str,
) -> Result<T, RepoError> {
    if bytes.len() < 8 || &bytes[..4] != OBJECT_MAGIC {
        return Err(RepoError::Corrupt(format!(
            "{name}: not a Sen repository object (bad magic)"
        )));
    }
    if u32::from(bytes[4]) > kind.version() {
        return Err(RepoError::Format(format!(
            "{name} was written in format version {}, newer than this build reads ({}): upgrade Sen",
            bytes[4],
            kind.version()
        )));
    }
    if bytes[5] != kind as u8 {
        return Err(RepoError::Corrupt(format!(
            "{name}: holds a different kind of object ({})",
            bytes[5]
        )));
    }
    let expect = object_header(keys, kind);
    if bytes[6] != expect[6] {
        return Err(RepoError::Corrupt(format!(
            "{name}: encryption flag does not match the repository's config"
        )));
    }
    let compressed = keys.open(&bytes[8..], &bytes[..8], name)?;
    let plain = decompress_bounded(&compressed, MAX_METADATA_BYTES, name)?;
    sen_core::codec::decode_v1(kind.what(), &plain).map_err(|e| RepoError::Corrupt(format!("{name}: {e}")))
}

/// Largest decompressed metadata object (config, key, index, snapshot,
/// lock) a reader accepts: a snapshot of a cluster with millions of files
/// stays far below it, and a hostile object cannot make a reader allocate
/// more.
pub const MAX_METADATA_BYTES: u64 = 1 << 30;

/// Decompress a zstd stream, refusing output beyond `limit` bytes (a
/// decompression bomb or a damaged object) instead of allocating it.
pub fn decompress_bounded(compressed: &[u8], limit: u64, name: &str) -> Result<Vec<u8>, RepoError> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| RepoError::Corrupt(format!("{name}: cannot decompress: {e}")))?;
    let mut out = Vec::new();
    let read = decoder
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| RepoError::Corrupt(format!("{name}: cannot decompress: {e}")))?;
    if read as u64 > limit {
        return Err(RepoError::Corrupt(format!(
            "{name}: decompresses to more than {limit} bytes, the most a repository object may hold"
        )));
    }
    Ok(out)
}

/// Lower-case hex of an id.
pub fn hex_id(id: &[u8; 32]) -> String {
    hex::encode(id)
}

/// Parse a 64-character hex id.
pub fn parse_id(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

pub fn pack_key(id: &[u8; 32]) -> String {
    let h = hex_id(id);
    format!("{DATA_DIR}/{}/{h}", &h[..2])
}

pub fn object_key(kind: ObjectKind, id: &[u8; 32]) -> String {
    format!("{}/{}", kind.dir(), hex_id(id))
}

/// Split a pack's trailer: returns (header offset, header length).
pub fn pack_trailer(pack_size: u64, trailer: &[u8], name: &str) -> Result<(u64, u32), RepoError> {
    if trailer.len() != 12 || &trailer[4..] != PACK_MAGIC {
        if trailer.len() == 12 && trailer[4..11] == PACK_MAGIC[..7] {
            return Err(RepoError::Format(format!(
                "{name} is a pack of format version {}, newer than this build reads: upgrade Sen",
                trailer[11] as char
            )));
        }
        return Err(RepoError::Corrupt(format!("{name}: not a pack (bad trailer magic)")));
    }
    let len = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if u64::from(len) + 12 > pack_size {
        return Err(RepoError::Corrupt(format!(
            "{name}: header length {len} exceeds the pack size {pack_size}"
        )));
    }
    Ok((pack_size - 12 - u64::from(len), len))
}

#[cfg(test)]
mod golden {
    //! Golden bytes of every repository object, pinned. A failure means a
    //! stored type changed: that is a new format version
    //! (docs/backup-format.md), not a test update. Sealing and zstd are
    //! not pinned (zstd's output may change between releases; readers
    //! accept any valid frame): the versioned plaintext and the object
    //! header are.

    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[track_caller]
    fn golden<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        kind: ObjectKind,
        value: &T,
        expect: &str,
    ) {
        let plain = sen_core::codec::encode_v1(kind.what(), value).unwrap();
        assert_eq!(
            hex(&plain),
            expect,
            "{}: the encoding changed (new bytes on the left)",
            kind.what()
        );
        // And the object round-trips through the header, zstd and sealing.
        let obj = encode_object(&Keys::None, kind, value).unwrap();
        assert_eq!(
            &obj[..8],
            &[b'S', b'E', b'N', b'O', kind.version() as u8, kind as u8, 0, 0]
        );
        let back: T = decode_object(&Keys::None, kind, &obj, "test").unwrap();
        assert_eq!(&back, value);
    }

    fn pack() -> IndexPack {
        IndexPack {
            id: [7; 32],
            size: 1_048_700,
            entries: vec![
                PackEntry {
                    id: [1; 32],
                    kind: BlobKind::Content,
                    encoding: BlobEncoding::Zstd,
                    offset: 0,
                    len: 20_000,
                    raw_len: 65_536,
                    group_offset: 0,
                },
                PackEntry {
                    id: [2; 32],
                    kind: BlobKind::Table,
                    encoding: BlobEncoding::Group,
                    offset: 20_000,
                    len: 9_000,
                    raw_len: 4_096,
                    group_offset: 512,
                },
            ],
        }
    }

    #[test]
    fn index_object() {
        let v = IndexFile {
            packs: vec![pack()],
            supersedes: vec![[9; 32]],
        };
        golden(ObjectKind::Index, &v, GOLDEN_INDEX);
    }

    #[test]
    fn pack_header_object() {
        golden(ObjectKind::PackHeader, &pack().entries, GOLDEN_PACK_HEADER);
    }

    #[test]
    fn trash_object() {
        let v = TrashFile {
            marked_at_ms: 1_764_000_000_000,
            packs: vec![pack()],
        };
        golden(ObjectKind::Trash, &v, GOLDEN_TRASH);
    }

    #[test]
    fn snapshot_object() {
        let v = Snapshot {
            time_ms: 1_764_000_000_000,
            cluster_id: "c-1".into(),
            raft_index: 120,
            raft_term: 3,
            source_node: 2,
            hostname: "sen2".into(),
            tags: vec!["slot=5".into()],
            state_digest: "ab".into(),
            tables: vec![TableStream {
                name: "kv".into(),
                records: 2,
                bytes: 100,
                chunks: vec![StreamChunk { id: [3; 32], len: 100 }],
            }],
            sites: vec![SiteSummary {
                name: "congbao".into(),
                deployment: Some(9),
                files: 3,
                bytes: 999,
            }],
            databases: vec![DbSummary {
                name: "lichtuan".into(),
                keys: 50,
                bytes: 5000,
            }],
            stats: SnapshotStats {
                bytes_total: 6000,
                bytes_new: 6000,
                blobs_total: 4,
                blobs_new: 4,
                content_chunks: 2,
                content_chunks_new: 2,
                duration_ms: 15,
            },
        };
        golden(ObjectKind::Snapshot, &v, GOLDEN_SNAPSHOT);
    }

    #[test]
    fn config_and_pack_trailer() {
        let c = RepoConfig {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: "0123abcd".into(),
            created_at_ms: 1_764_000_000_000,
            table_chunker: ChunkerParams {
                algorithm: "fastcdc-2020".into(),
                min: 1024,
                avg: 4096,
                max: 16384,
            },
            zstd_level: 3,
            pack_target_bytes: 16 << 20,
            encryption: None,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"format":"sen-backup-repository","version":1,"id":"0123abcd","created_at_ms":1764000000000,"table_chunker":{"algorithm":"fastcdc-2020","min":1024,"avg":4096,"max":16384},"zstd_level":3,"pack_target_bytes":16777216,"encryption":null}"#
        );
        assert_eq!(RepoConfig::parse(json.as_bytes(), "r").unwrap(), c);
        // Trailer: header length (u32 LE) then the magic.
        let mut trailer = 300u32.to_le_bytes().to_vec();
        trailer.extend_from_slice(PACK_MAGIC);
        assert_eq!(pack_trailer(1000, &trailer, "p").unwrap(), (688, 300));
    }

    const GOLDEN_INDEX: &str = "00010707070707070707070707070707070707070707070707070707070707070707fc7c001000020101010101010101010101010101010101010101010101010101010101010101000100fb204efc000001000002020202020202020202020202020202020202020202020202020202020202020102fb204efb2823fb0010fb0002010909090909090909090909090909090909090909090909090909090909090909";
    const GOLDEN_PACK_HEADER: &str = "00020101010101010101010101010101010101010101010101010101010101010101000100fb204efc000001000002020202020202020202020202020202020202020202020202020202020202020102fb204efb2823fb0010fb0002";
    const GOLDEN_TRASH: &str = "00fd00e897b69a010000010707070707070707070707070707070707070707070707070707070707070707fc7c001000020101010101010101010101010101010101010101010101010101010101010101000100fb204efc000001000002020202020202020202020202020202020202020202020202020202020202020102fb204efb2823fb0010fb0002";
    const GOLDEN_SNAPSHOT: &str = "00fd00e897b69a01000003632d317803020473656e320106736c6f743d3502616201026b760264010303030303030303030303030303030303030303030303030303030303030303640107636f6e6762616f010903fbe70301086c6963687475616e32fb8813fb7017fb7017040402020f";
}

#[cfg(test)]
mod hostile {
    //! Repository objects are parsed as hostile: any bytes give `Ok` or a
    //! typed error, never a panic, an abort or an allocation beyond the
    //! object's own bounds.

    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    /// A valid object header of `kind` for an unencrypted repository,
    /// followed by `body` (so the fuzzing reaches the decompressor and
    /// the decoder, not only the magic check).
    fn with_header(kind: ObjectKind, body: &[u8]) -> Vec<u8> {
        let mut b = object_header(&Keys::None, kind).to_vec();
        b.extend_from_slice(body);
        b
    }

    fn zstd_of(plain: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(plain, 1).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_bytes_are_an_object_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_object::<IndexFile>(&Keys::None, ObjectKind::Index, &bytes, "x");
            let _ = decode_object::<Snapshot>(&Keys::None, ObjectKind::Snapshot, &with_header(ObjectKind::Snapshot, &bytes), "x");
            let _ = decode_object::<IndexFile>(&Keys::None, ObjectKind::Index, &with_header(ObjectKind::Index, &zstd_of(&bytes)), "x");
            let _ = decode_object::<Snapshot>(&Keys::None, ObjectKind::Snapshot, &with_header(ObjectKind::Snapshot, &zstd_of(&bytes)), "x");
            let _ = decode_object::<TrashFile>(&Keys::None, ObjectKind::Trash, &with_header(ObjectKind::Trash, &zstd_of(&bytes)), "x");
            let _ = RepoConfig::parse(&bytes, "r");
            let _ = pack_trailer(bytes.len() as u64 * 1000, &bytes, "p");
        }

        #[test]
        fn any_config_json_is_a_config_or_an_error(
            pack in any::<u64>(), m in any::<u32>(), t in any::<u32>(), p in any::<u32>()
        ) {
            let json = format!(
                r#"{{"format":"sen-backup-repository","version":1,"id":"ab","created_at_ms":1,"table_chunker":{{"algorithm":"fastcdc-2020","min":1024,"avg":4096,"max":16384}},"zstd_level":3,"pack_target_bytes":{pack},"encryption":{{"cipher":"xchacha20-poly1305","kdf":{{"algorithm":"argon2id","m_cost_kib":{m},"t_cost":{t},"p_cost":{p},"salt":"00"}},"wrapped_key":"00"}}}}"#
            );
            match RepoConfig::parse(json.as_bytes(), "r") {
                Ok(c) => {
                    prop_assert!((MIN_PACK_BYTES..=MAX_PACK_BYTES).contains(&c.pack_target_bytes));
                    let kdf = &c.encryption.unwrap().kdf;
                    prop_assert!(kdf.m_cost_kib <= crate::crypto::MAX_KDF_MEMORY_KIB);
                    prop_assert!(kdf.t_cost <= crate::crypto::MAX_KDF_PASSES);
                }
                Err(e) => prop_assert!(matches!(e, RepoError::Corrupt(_) | RepoError::Format(_))),
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_within_its_limit() {
        // 64 MiB of zeros compress to a few KB.
        let bomb = zstd_of(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        let e = decompress_bounded(&bomb, 1 << 20, "index x").unwrap_err().to_string();
        assert!(e.contains("decompresses to more than 1048576 bytes"), "{e}");
        assert_eq!(decompress_bounded(&bomb, 64 << 20, "x").unwrap().len(), 64 << 20);
    }

    #[test]
    fn a_config_with_a_huge_pack_target_is_refused() {
        let json = r#"{"format":"sen-backup-repository","version":1,"id":"ab","created_at_ms":1,"table_chunker":{"algorithm":"fastcdc-2020","min":1024,"avg":4096,"max":16384},"zstd_level":3,"pack_target_bytes":8589934592,"encryption":null}"#;
        let e = RepoConfig::parse(json.as_bytes(), "r").unwrap_err().to_string();
        assert!(e.contains("pack_target_bytes = 8589934592 is outside"), "{e}");
    }
}
