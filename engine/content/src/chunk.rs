//! Chunks: content-addressed pieces of files.
//!
//! A chunk's id is the blake3 hash of its plaintext, so identical pieces of
//! any file of any site are stored once. Stored form: zstd at the
//! configured level, or the plaintext itself when compression saves less
//! than 1/16 of the size (pictures, PDFs, archives), flagged as raw. Every
//! decode checks the hash: a corrupted chunk is an error, never data.

use std::fmt;

use serde::{Deserialize, Serialize};

/// blake3 of a chunk's plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn of(data: &[u8]) -> Self {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(ChunkId)
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.0).to_hex().to_string()
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex()[..16])
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

/// A chunk as a file lists it: id and plaintext length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// How a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// The plaintext (it did not compress).
    Raw,
    /// zstd frame.
    Zstd,
}

/// A chunk as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChunk {
    pub id: ChunkId,
    pub encoding: Encoding,
    /// Plaintext length.
    pub len: u32,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A chunk could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk {id} is corrupt: {why}")]
    Corrupt { id: ChunkId, why: String },
    #[error("chunk is {len} bytes, larger than the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
}

/// Largest plaintext chunk accepted anywhere (the chunker's maximum is
/// 256 KiB; this leaves room for manifests chunked the same way).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

impl StoredChunk {
    /// Compress `data` at `level` (keeping it raw when that does not pay).
    pub fn encode(data: &[u8], level: i32) -> Result<Self, ChunkError> {
        if data.len() > MAX_CHUNK_BYTES {
            return Err(ChunkError::TooLarge {
                len: data.len(),
                max: MAX_CHUNK_BYTES,
            });
        }
        let id = ChunkId::of(data);
        let compressed = crate::zstd_ctx::compress(data, level).map_err(ChunkError::Zstd)?;
        let (encoding, stored) = if compressed.len() + data.len() / 16 < data.len() {
            (Encoding::Zstd, compressed)
        } else {
            (Encoding::Raw, data.to_vec())
        };
        Ok(Self {
            id,
            encoding,
            len: data.len() as u32,
            data: stored,
        })
    }

    /// The plaintext, checked against the id.
    pub fn decode(&self) -> Result<Vec<u8>, ChunkError> {
        let corrupt = |why: String| ChunkError::Corrupt { id: self.id, why };
        if self.len as usize > MAX_CHUNK_BYTES {
            return Err(corrupt(format!("claims {} bytes", self.len)));
        }
        let plain = match self.encoding {
            Encoding::Raw => self.data.clone(),
            Encoding::Zstd => crate::zstd_ctx::decompress(&self.data, self.len as usize)
                .map_err(|e| corrupt(format!("cannot decompress: {e}")))?,
        };
        if plain.len() != self.len as usize {
            return Err(corrupt(format!("{} bytes, expected {}", plain.len(), self.len)));
        }
        if ChunkId::of(&plain) != self.id {
            return Err(corrupt("content does not match its hash".into()));
        }
        Ok(plain)
    }

    /// Bytes it occupies stored (what travels and what is kept).
    pub fn stored_len(&self) -> usize {
        self.data.len()
    }

    /// The chunk as one zstd frame, for `Content-Encoding: zstd`: the
    /// stored frame itself, or a raw chunk wrapped in a frame of raw
    /// blocks (no compression work either way). Frames concatenate into
    /// one valid zstd stream, so a file's body is its chunks' frames in
    /// order. Only for a chunk [`decode`](Self::decode) accepted.
    pub fn zstd_frame(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.encoding {
            Encoding::Zstd => std::borrow::Cow::Borrowed(&self.data),
            Encoding::Raw => std::borrow::Cow::Owned(raw_zstd_frame(&self.data)),
        }
    }
}

/// `data` as one zstd frame of raw (stored, uncompressed) blocks (RFC 8878
/// section 3.1.1): single segment, 4-byte content size, no checksum (the
/// chunk's blake3 was checked when it was read), blocks of at most
/// 128 KiB.
pub fn raw_zstd_frame(data: &[u8]) -> Vec<u8> {
    const MAGIC: u32 = 0xFD2F_B528;
    const MAX_BLOCK: usize = 128 * 1024;
    let blocks = data.len().div_ceil(MAX_BLOCK).max(1);
    let mut out = Vec::with_capacity(4 + 1 + 4 + 3 * blocks + data.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    // Frame_Content_Size_flag = 2 (4 bytes), Single_Segment_flag = 1.
    out.push(0b1010_0000);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let mut parts = data.chunks(MAX_BLOCK).peekable();
    if parts.peek().is_none() {
        // An empty frame: one empty last block.
        out.extend_from_slice(&[1, 0, 0]);
    }
    while let Some(block) = parts.next() {
        let last = u32::from(parts.peek().is_none());
        // Last_Block, Block_Type 0 (raw), Block_Size.
        let header = last | ((block.len() as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise;

    #[test]
    fn compressible_chunks_are_compressed_and_round_trip() {
        let text = "Lịch công tác tuần của Ủy ban nhân dân tỉnh Đồng Tháp. ".repeat(500);
        let c = StoredChunk::encode(text.as_bytes(), 3).unwrap();
        assert_eq!(c.encoding, Encoding::Zstd);
        assert!(c.stored_len() < text.len() / 4);
        assert_eq!(c.decode().unwrap(), text.as_bytes());
    }

    #[test]
    fn incompressible_chunks_are_stored_raw() {
        let data = noise(65536, 0x2545F4914F6CDD1D);
        let c = StoredChunk::encode(&data, 3).unwrap();
        assert_eq!(c.encoding, Encoding::Raw);
        assert_eq!(c.decode().unwrap(), data);
    }

    #[test]
    fn corruption_is_detected() {
        let mut c = StoredChunk::encode(&b"abc".repeat(1000), 3).unwrap();
        let last = c.data.len() - 1;
        c.data[last] ^= 0x40;
        assert!(matches!(c.decode(), Err(ChunkError::Corrupt { .. })));
        let mut r = StoredChunk::encode(b"x", 3).unwrap();
        r.data = b"y".to_vec();
        assert!(r.decode().unwrap_err().to_string().contains("does not match its hash"));
    }

    /// Every chunk's frame decodes (with the zstd library, as a browser
    /// would) to its plaintext, alone and concatenated with others.
    #[test]
    fn zstd_frames_of_raw_and_compressed_chunks_decode_to_the_plaintext() {
        let text = "Chỉ thị số 12/CT-UBND về công tác chuyển đổi số. ".repeat(3000);
        let mut all_plain = Vec::new();
        let mut all_frames = Vec::new();
        for data in [
            Vec::new(),
            b"x".to_vec(),
            noise(1000, 1),
            noise(128 * 1024, 2),
            noise(128 * 1024 + 1, 3),
            noise(MAX_CHUNK_BYTES, 4),
            text.as_bytes().to_vec(),
        ] {
            let c = StoredChunk::encode(&data, 3).unwrap();
            let frame = c.zstd_frame();
            assert_eq!(zstd::decode_all(&frame[..]).unwrap(), data, "{} bytes", data.len());
            all_plain.extend_from_slice(&data);
            all_frames.extend_from_slice(&frame);
        }
        assert_eq!(zstd::decode_all(&all_frames[..]).unwrap(), all_plain);
        // Golden bytes of a small raw frame (RFC 8878 layout).
        assert_eq!(
            raw_zstd_frame(b"ab"),
            [0x28, 0xB5, 0x2F, 0xFD, 0xA0, 2, 0, 0, 0, 0x11, 0, 0, b'a', b'b']
        );
    }

    #[test]
    fn oversized_chunks_are_refused() {
        assert!(matches!(
            StoredChunk::encode(&vec![0; MAX_CHUNK_BYTES + 1], 3),
            Err(ChunkError::TooLarge { .. })
        ));
    }
}
