//! The values stored in the state's tables ([`super::tables`]).
//!
//! Every value is bincode in a versioned envelope (`V1(value)`, see
//! `sen_core::codec`): the first byte is the format version, and a value
//! written by a newer release is refused with a clear error instead of
//! being misread. bincode is positional, so a reordered or retyped field
//! silently changes the bytes: the golden-bytes tests at the bottom pin
//! every record's encoding.

use sen_content::ChunkRef;
use sen_core::codec::{self, CodecError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::command::Response;

/// A value stored in a table of the state: its name (for errors) and its
/// versioned encoding.
pub trait Record: Serialize + DeserializeOwned {
    /// What the value is, in error messages ("kv record").
    const NAME: &'static str;

    /// The stored bytes (`V1` envelope).
    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_v1(Self::NAME, self)
    }

    /// Read stored bytes; a newer format version is refused.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode_v1(Self::NAME, bytes)
    }
}

/// A key's stored state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRecord {
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Log index of the last write.
    pub mod_revision: u64,
    /// Log index of the write that created the key.
    pub create_revision: u64,
    /// Number of writes since creation (1 after the first put).
    pub version: u64,
}

/// What is remembered about an applied request id.
///
/// Stored as version 2 (`at_ms`, `response`, `request`); version 1
/// records (written before requests were bound to their ids) have no
/// `request` and are read with `request: None`: a retry of such an id is
/// answered as a duplicate without comparing, as before. (The serde
/// derives only satisfy [`Record`]'s bounds: the stored bytes are the
/// versioned envelope written by its `encode`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupRecord {
    /// Replicated clock when it was applied.
    pub at_ms: u64,
    /// The original result, returned again to retries.
    pub response: Response,
    /// blake3 of the request's operation ([`crate::command::Op::digest`]):
    /// a retry must carry the same operation, or it is refused.
    pub request: Option<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct DedupV1 {
    at_ms: u64,
    response: Response,
}

#[derive(Serialize, Deserialize)]
struct DedupV2 {
    at_ms: u64,
    response: Response,
    request: [u8; 32],
}

#[derive(Serialize, Deserialize)]
enum DedupEnvelope {
    V1(DedupV1),
    V2(DedupV2),
}

/// Size of one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbStats {
    pub keys: u64,
    /// Sum of key and value lengths.
    pub bytes: u64,
}

/// What is known about a stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// Deployments using it.
    pub refs: u64,
    /// When `refs` last became 0 (or the chunk was uploaded), on the
    /// replicated clock; meaningful only while `refs == 0`.
    pub zero_since_ms: u64,
    /// Plaintext length.
    pub len: u32,
    /// Stored (compressed) length.
    pub stored_len: u32,
}

/// A site and its current deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRecord {
    pub created_at_ms: u64,
    pub current: Option<CurrentDeployment>,
}

/// The deployment a site serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentDeployment {
    /// Revision (log index) of the deploy entry.
    pub id: u64,
    pub manifest: Vec<ChunkRef>,
    pub manifest_hash: [u8; 32],
    pub files: u64,
    pub bytes: u64,
}

/// One entry of a site's deployment history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentInfo {
    pub id: u64,
    pub at_ms: u64,
    pub author: String,
    pub message: String,
    pub files: u64,
    pub bytes: u64,
    /// Chunks this deployment referenced that the previous one did not.
    pub new_chunks: u64,
}

/// A file of a site's current deployment, as the file index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub deployment: u64,
    pub size: u64,
    pub blake3: [u8; 32],
    pub mtime_ms: u64,
    pub chunks: Vec<ChunkRef>,
}

impl Record for KvRecord {
    const NAME: &'static str = "kv record";
}
impl Record for DedupRecord {
    const NAME: &'static str = "request-id record";

    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let (at_ms, response) = (self.at_ms, self.response.clone());
        let env = match self.request {
            Some(request) => DedupEnvelope::V2(DedupV2 {
                at_ms,
                response,
                request,
            }),
            None => DedupEnvelope::V1(DedupV1 { at_ms, response }),
        };
        codec::encode(Self::NAME, &env)
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(match codec::decode_versioned(Self::NAME, bytes, 2)? {
            DedupEnvelope::V1(v) => DedupRecord {
                at_ms: v.at_ms,
                response: v.response,
                request: None,
            },
            DedupEnvelope::V2(v) => DedupRecord {
                at_ms: v.at_ms,
                response: v.response,
                request: Some(v.request),
            },
        })
    }
}
impl Record for DbStats {
    const NAME: &'static str = "database stats";
}
impl Record for ChunkMeta {
    const NAME: &'static str = "chunk metadata";
}
impl Record for SiteRecord {
    const NAME: &'static str = "site record";
}
impl Record for DeploymentInfo {
    const NAME: &'static str = "deployment record";
}
impl Record for FileRecord {
    const NAME: &'static str = "file record";
}

#[cfg(test)]
mod tests;
