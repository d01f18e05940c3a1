//! A deployment's file list.
//!
//! A manifest lists every file of a site: normalised path, size, blake3 of
//! the whole file, modification time and the chunks that make it up. It is
//! encoded (versioned) and stored as chunks itself, like any file, so a site
//! of 100,000 files does not need one huge Raft entry: committing a
//! deployment replicates only the manifest's chunk list.

use std::collections::BTreeSet;

use sen_core::codec;
use serde::{Deserialize, Serialize};

use crate::chunk::{ChunkId, ChunkRef, MAX_CHUNK_BYTES, StoredChunk};
use crate::path;

/// Largest encoded manifest accepted anywhere (≈ 1.5 M files of typical
/// size). Checked from the chunk lengths *before* a manifest is assembled,
/// so a deploy naming one chunk a million times cannot exhaust memory.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;

/// One file of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// blake3 of the whole file (its HTTP ETag).
    pub blake3: [u8; 32],
    /// Modification time on the pushing machine (ms since the epoch).
    pub mtime_ms: u64,
    pub chunks: Vec<ChunkRef>,
}

impl FileEntry {
    pub fn blake3_hex(&self) -> String {
        blake3::Hash::from(self.blake3).to_hex().to_string()
    }
}

/// Every file of a deployment, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
}

/// A manifest is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest: {0}")]
pub struct ManifestError(pub String);

impl Manifest {
    pub fn encode(&self) -> Result<Vec<u8>, ManifestError> {
        codec::encode_v1("manifest", self).map_err(|e| ManifestError(e.to_string()))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        codec::decode_v1("manifest", bytes).map_err(|e| ManifestError(e.to_string()))
    }

    /// Check the structure: normalised, sorted, unique paths; no path that
    /// is both a file and a directory; chunk lengths adding up to sizes.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let mut prev: Option<&str> = None;
        let mut dirs: BTreeSet<&str> = BTreeSet::new();
        for f in &self.files {
            let norm = path::normalize(&f.path).map_err(|e| ManifestError(e.to_string()))?;
            if norm != f.path {
                return Err(ManifestError(format!("path {:?} is not normalised", f.path)));
            }
            if let Some(p) = prev
                && p >= f.path.as_str()
            {
                return Err(ManifestError(format!("paths out of order or repeated at {:?}", f.path)));
            }
            prev = Some(&f.path);
            let mut total = 0u64;
            for c in &f.chunks {
                if c.len == 0 || c.len as usize > MAX_CHUNK_BYTES {
                    return Err(ManifestError(format!("{:?} has a chunk of {} bytes", f.path, c.len)));
                }
                total += u64::from(c.len);
            }
            if total != f.size {
                return Err(ManifestError(format!(
                    "{:?}: chunks add up to {total} bytes, size says {}",
                    f.path, f.size
                )));
            }
            let mut rest = f.path.as_str();
            while let Some((dir, _)) = rest.rsplit_once('/') {
                dirs.insert(dir);
                rest = dir;
            }
        }
        for f in &self.files {
            if dirs.contains(f.path.as_str()) {
                return Err(ManifestError(format!("{:?} is both a file and a directory", f.path)));
            }
        }
        Ok(())
    }

    /// Every chunk reference, with repeats.
    pub fn chunk_ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.files.iter().flat_map(|f| f.chunks.iter().map(|c| c.id))
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn get(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
}

/// A manifest ready to deploy: its encoded bytes cut into stored chunks.
#[derive(Debug, Clone)]
pub struct PackedManifest {
    /// The chunks in order (what a `Deploy` names).
    pub refs: Vec<ChunkRef>,
    /// The same chunks, compressed, to upload where the cluster lacks them.
    pub chunks: Vec<StoredChunk>,
    /// blake3 of the encoded manifest.
    pub hash: [u8; 32],
}

impl Manifest {
    /// Sort `files` by path, encode them and cut the encoding into chunks
    /// compressed at zstd `level`: everything a deployment of them needs.
    pub fn pack(mut files: Vec<FileEntry>, level: i32) -> Result<PackedManifest, ManifestError> {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let encoded = Manifest { files }.encode()?;
        let (refs, pieces) = split(&encoded);
        let chunks = pieces
            .iter()
            .map(|p| StoredChunk::encode(p, level).map_err(|e| ManifestError(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(PackedManifest {
            refs,
            chunks,
            hash: *blake3::hash(&encoded).as_bytes(),
        })
    }
}

/// Cut an encoded manifest into chunks: `(refs, pieces)`.
pub fn split(encoded: &[u8]) -> (Vec<ChunkRef>, Vec<Vec<u8>>) {
    let mut refs = Vec::new();
    let mut pieces = Vec::new();
    for (off, len) in crate::chunker::cut(encoded) {
        let piece = encoded[off..off + len].to_vec();
        refs.push(ChunkRef {
            id: ChunkId::of(&piece),
            len: len as u32,
        });
        pieces.push(piece);
    }
    (refs, pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> FileEntry {
        FileEntry {
            path: path.into(),
            size: data.len() as u64,
            blake3: *blake3::hash(data).as_bytes(),
            mtime_ms: 1,
            chunks: if data.is_empty() {
                vec![]
            } else {
                vec![ChunkRef {
                    id: ChunkId::of(data),
                    len: data.len() as u32,
                }]
            },
        }
    }

    #[test]
    fn round_trip_and_split() {
        let m = Manifest {
            files: (0..5000)
                .map(|i| file(&format!("tin-tuc/bai-{i:05}.html"), format!("<p>{i}</p>").as_bytes()))
                .collect(),
        };
        m.validate().unwrap();
        let enc = m.encode().unwrap();
        let (refs, pieces) = split(&enc);
        assert!(refs.len() > 1, "a large manifest spans several chunks");
        let joined: Vec<u8> = pieces.concat();
        assert_eq!(Manifest::decode(&joined).unwrap(), m);
        assert_eq!(m.get("tin-tuc/bai-00042.html").unwrap().size, "<p>42</p>".len() as u64);
    }

    #[test]
    fn structure_is_checked() {
        let ok = Manifest {
            files: vec![file("a/b.html", b"x"), file("c.html", b"y"), file("empty", b"")],
        };
        ok.validate().unwrap();
        let unsorted = Manifest {
            files: vec![file("c", b"y"), file("a", b"x")],
        };
        assert!(unsorted.validate().is_err());
        let both = Manifest {
            files: vec![file("a", b"x"), file("a/b", b"y")],
        };
        assert!(
            both.validate()
                .unwrap_err()
                .to_string()
                .contains("both a file and a directory")
        );
        let mut bad = file("x", b"abc");
        bad.size = 4;
        assert!(Manifest { files: vec![bad] }.validate().is_err());
        let traversal = Manifest {
            files: vec![file("../etc/passwd", b"x")],
        };
        assert!(traversal.validate().is_err());
    }
}

#[cfg(test)]
mod golden {
    //! The encodings of a manifest and of a stored chunk, pinned (both are
    //! in the Raft log, the state DB and backups).

    use super::*;
    use crate::chunk::Encoding;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn manifest_encoding_is_pinned() {
        let m = Manifest {
            files: vec![FileEntry {
                path: "so/201.html".into(),
                size: 70_000,
                blake3: [3; 32],
                mtime_ms: 1_764_000_000_000,
                chunks: vec![ChunkRef {
                    id: ChunkId([4; 32]),
                    len: 70_000,
                }],
            }],
        };
        let b = m.encode().unwrap();
        assert_eq!(
            hex(&b),
            GOLDEN_MANIFEST,
            "the manifest encoding changed (new bytes on the left)"
        );
        assert_eq!(Manifest::decode(&b).unwrap(), m);
    }

    #[test]
    fn stored_chunk_encoding_is_pinned() {
        let c = StoredChunk {
            id: ChunkId([5; 32]),
            encoding: Encoding::Zstd,
            len: 3,
            data: b"abc".to_vec(),
        };
        let b = sen_core::codec::encode_v1("chunk", &c).unwrap();
        assert_eq!(
            hex(&b),
            GOLDEN_CHUNK,
            "the stored chunk encoding changed (new bytes on the left)"
        );
    }

    const GOLDEN_MANIFEST: &str = "00010b736f2f3230312e68746d6cfc701101000303030303030303030303030303030303030303030303030303030303030303fd00e897b69a010000010404040404040404040404040404040404040404040404040404040404040404fc70110100";
    const GOLDEN_CHUNK: &str = "000505050505050505050505050505050505050505050505050505050505050505010303616263";
}
