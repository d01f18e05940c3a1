//! Content-defined chunking (FastCDC 2020, normalization level 1).
//!
//! Sizes: minimum 16 KiB, average 64 KiB, maximum 256 KiB. Why:
//! - portal content is many small files (pages, images) and documents that
//!   change a little between versions (the Gazette, directives); a 64 KiB
//!   average finds shared runs inside 100 KiB–10 MiB documents, where
//!   restic's 1 MiB average would mostly see whole-file changes;
//! - every chunk costs ~80 bytes of metadata (id, length, reference count),
//!   so 1 TB of content is ~16 M chunks (~1.3 GB of metadata): smaller
//!   chunks would make metadata dominate;
//! - the maximum keeps a chunk well inside one Raft entry (1 MiB), so
//!   replication batches stay small and heartbeats are never delayed.
//!
//! A file smaller than the minimum is one chunk; an empty file has none.

use std::io::Read;

use fastcdc::v2020::StreamCDC;

use crate::chunk::ChunkId;

pub const MIN_CHUNK: usize = 16 * 1024;
pub const AVG_CHUNK: usize = 64 * 1024;
pub const MAX_CHUNK: usize = 256 * 1024;

/// One chunk of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub id: ChunkId,
    pub data: Vec<u8>,
}

/// The chunks of `source`, in order, hashed. Memory: one maximum-size
/// buffer, whatever the stream's length.
pub fn chunks<R: Read>(source: R) -> impl Iterator<Item = std::io::Result<Chunk>> {
    StreamCDC::new(source, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|r| {
        r.map(|c| Chunk {
            offset: c.offset,
            id: ChunkId::of(&c.data),
            data: c.data,
        })
        .map_err(std::io::Error::from)
    })
}

/// Chunk an in-memory buffer: `(offset, len)` of each chunk.
pub fn cut(data: &[u8]) -> Vec<(usize, usize)> {
    cut_with(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
}

/// [`cut`] with other sizes (FastCDC 2020 needs min ≥ 64, avg ≥ 256,
/// max ≥ 1024). Backups cut table record streams finer than files, so a
/// scattered update of a few records re-uploads little.
pub fn cut_with(data: &[u8], min: usize, avg: usize, max: usize) -> Vec<(usize, usize)> {
    fastcdc::v2020::FastCDC::new(data, min, avg, max)
        .map(|c| (c.offset, c.length))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise;

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        let data = noise(3 * 1024 * 1024, 7);
        let cs: Vec<Chunk> = chunks(&data[..]).collect::<Result<_, _>>().unwrap();
        let mut off = 0u64;
        for (i, c) in cs.iter().enumerate() {
            assert_eq!(c.offset, off);
            assert!(c.data.len() <= MAX_CHUNK);
            if i + 1 < cs.len() {
                assert!(c.data.len() >= MIN_CHUNK);
            }
            assert_eq!(c.id, ChunkId::of(&c.data));
            off += c.data.len() as u64;
        }
        assert_eq!(off, data.len() as u64);
        let avg = data.len() / cs.len();
        assert!(avg > AVG_CHUNK / 2 && avg < AVG_CHUNK * 2, "average {avg}");
        assert_eq!(cut(&data).len(), cs.len(), "streaming and in-memory agree");
    }

    #[test]
    fn an_insertion_only_changes_nearby_chunks() {
        let data = noise(2 * 1024 * 1024, 11);
        let mut edited = data.clone();
        edited.splice(1_000_000..1_000_000, b"inserted paragraph".iter().copied());
        let ids = |d: &[u8]| -> std::collections::HashSet<ChunkId> { chunks(d).map(|c| c.unwrap().id).collect() };
        let a = ids(&data);
        let b = ids(&edited);
        let new = b.difference(&a).count();
        assert!(new <= 2, "an edit in the middle changed {new} chunks");
    }

    #[test]
    fn small_and_empty_inputs() {
        assert_eq!(chunks(&b""[..]).count(), 0);
        let cs: Vec<Chunk> = chunks(&b"tiny"[..]).collect::<Result<_, _>>().unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].data, b"tiny");
    }
}
