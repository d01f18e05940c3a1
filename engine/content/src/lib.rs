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

pub use chunk::{ChunkId, ChunkRef, StoredChunk};
pub use manifest::{FileEntry, Manifest, PackedManifest};
