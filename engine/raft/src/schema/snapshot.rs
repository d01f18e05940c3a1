//! Raft snapshots on disk and on the wire: the manifest a snapshot
//! directory holds (`SNAPSHOT`) and the frames of a transfer
//! (`Raft/InstallSnapshot`). Both are read from peers and disks, so both
//! are parsed as hostile: [`SnapshotManifest::check`] refuses what the
//! receiver must never act on, and the frame and manifest decoders are
//! fuzzed (`engine/fuzz`). Golden bytes: `sen-store` (manifest) and
//! `sen-node` (frames).

use sen_core::codec::{self, CodecError};
use serde::{Deserialize, Serialize};

use crate::types::{SnapshotMeta, Vote};

/// Name of the manifest file inside a snapshot directory.
pub const MANIFEST: &str = "SNAPSHOT";

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub name: String,
    pub size: u64,
}

/// What a snapshot directory contains (persisted as `SNAPSHOT`, and sent as
/// the header of a transfer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub meta: SnapshotMeta,
    pub files: Vec<SnapshotFile>,
    pub created_at_ms: u64,
}

impl SnapshotManifest {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_v1("snapshot manifest", self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode_v1("snapshot manifest", bytes)
    }

    /// Bytes the snapshot holds in all (saturating: a hostile manifest
    /// cannot overflow it).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().fold(0u64, |a, f| a.saturating_add(f.size))
    }

    /// What a receiver checks before writing anything: every file name is
    /// a plain name, and no name appears twice.
    pub fn check(&self) -> Result<(), String> {
        for f in &self.files {
            check_file_name(&f.name)?;
        }
        let mut names: Vec<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != self.files.len() {
            return Err("snapshot lists a file twice".into());
        }
        Ok(())
    }
}

/// A file name that may appear in a snapshot: a plain name, no directories.
pub fn check_file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != MANIFEST
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(format!("snapshot contains an invalid file name {name:?}"))
    }
}

/// One frame of a snapshot transfer (codec-encoded, versioned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    Header { vote: Vote, manifest: SnapshotManifest },
    Chunk { file: u32, offset: u64, data: Vec<u8> },
    FileEnd { file: u32, blake3: [u8; 32] },
    Done,
}

impl Frame {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_v1("snapshot frame", self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode_v1("snapshot frame", bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain() {
        for bad in ["", ".", "..", "a/b", "..\\x", "a\0", MANIFEST, &"x".repeat(256)] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        for good in ["000012.sst", "MANIFEST-000005", "CURRENT", "OPTIONS-000007"] {
            check_file_name(good).unwrap();
        }
    }
}
