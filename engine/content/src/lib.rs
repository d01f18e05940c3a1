//! The content model of Sen's sites, without any storage or network code.
//!
//! - [`chunk`]: chunk ids (blake3 of the plaintext) and the stored chunk
//!   format (zstd, or raw when it does not compress), verified on decode.
//! - [`chunker`]: content-defined chunking with FastCDC (16/64/256 KiB).
//! - [`path`]: site names and file paths: UTF-8 in NFC, validated.
//! - [`manifest`]: a deployment's file list, itself stored as chunks.
//! - [`zstd_ctx`]: zstd with one context per thread (no context per chunk).

pub mod chunk;
pub mod chunker;
pub mod manifest;
pub mod path;
pub mod range;
pub mod zstd_ctx;

/// Test data shared by this crate's tests: `n` incompressible bytes,
/// xorshift64 from the non-zero state `seed`.
#[cfg(test)]
pub(crate) fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub use chunk::{ChunkId, ChunkRef, StoredChunk};
pub use manifest::{FileEntry, Manifest, PackedManifest};
