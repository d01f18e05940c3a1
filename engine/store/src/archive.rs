//! Archived log entries whose content chunks travel by reference
//! (`sen_backup::archive`, object version 2): the shipper takes the chunk
//! data out of a `PutChunks` entry before the entry goes into a segment
//! (the data becomes a repository blob), and a restore puts it back before
//! the entry is replayed.
//!
//! A chunk left out keeps its id, encoding and plaintext length and has
//! no data. A stored chunk of non-zero length always has data, so the two
//! cannot be confused, and segments written before chunks went by
//! reference (data inline) replay unchanged.

use sen_backup::RepoError;
use sen_backup::restore::ChunkSource;
use sen_content::StoredChunk;
use sen_raft::{Entry, Op};

use crate::StoreError;
use crate::format::{dec_entry, enc_entry};

/// An entry without its chunks' data (in the log's encoding), and the
/// chunks.
pub type Stripped = (Vec<u8>, Vec<StoredChunk>);

/// The chunks `entry` stores, and the entry without their data (in the
/// log's encoding); `None` for an entry that stores no chunk.
pub fn strip_chunks(entry: &Entry) -> Result<Option<Stripped>, StoreError> {
    let openraft::EntryPayload::Normal(req) = &entry.payload else {
        return Ok(None);
    };
    let Op::PutChunks { chunks } = &req.op else {
        return Ok(None);
    };
    let mut stripped = entry.clone();
    if let openraft::EntryPayload::Normal(r) = &mut stripped.payload
        && let Op::PutChunks { chunks } = &mut r.op
    {
        for c in chunks {
            c.data = Vec::new();
        }
    }
    Ok(Some((enc_entry(&stripped)?, chunks.clone())))
}

/// Put back the data of every chunk `entries` (in the log's encoding) hold
/// by reference, fetched from `fetch`; entries with nothing left out are
/// returned as they are.
pub fn fill_chunks(entries: Vec<Vec<u8>>, fetch: &mut ChunkSource<'_>) -> Result<Vec<Vec<u8>>, RepoError> {
    let corrupt = |e: StoreError| RepoError::Corrupt(format!("an archived log entry: {e}"));
    entries
        .into_iter()
        .map(|bytes| {
            let mut entry = dec_entry(&bytes).map_err(corrupt)?;
            let openraft::EntryPayload::Normal(req) = &mut entry.payload else {
                return Ok(bytes);
            };
            let Op::PutChunks { chunks } = &mut req.op else {
                return Ok(bytes);
            };
            let wanted: Vec<[u8; 32]> = chunks
                .iter()
                .filter(|c| c.data.is_empty() && c.len > 0)
                .map(|c| c.id.0)
                .collect();
            if wanted.is_empty() {
                return Ok(bytes);
            }
            let fetched = fetch(wanted)?;
            let mut by_id: std::collections::HashMap<[u8; 32], StoredChunk> =
                fetched.into_iter().map(|c| (c.id.0, c)).collect();
            for c in chunks.iter_mut().filter(|c| c.data.is_empty() && c.len > 0) {
                let got = by_id.remove(&c.id.0).ok_or_else(|| {
                    RepoError::Corrupt(format!(
                        "entry {}: content chunk {} was not returned by the repository",
                        entry.log_id.index, c.id
                    ))
                })?;
                if got.len != c.len {
                    return Err(RepoError::Corrupt(format!(
                        "entry {}: content chunk {} is {} bytes in the repository, the entry says {}",
                        entry.log_id.index, c.id, got.len, c.len
                    )));
                }
                *c = got;
            }
            enc_entry(&entry).map_err(corrupt)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderId;
    use sen_content::ChunkId;
    use sen_raft::{LogId, Request};

    use super::*;

    fn entry(index: u64, op: Op) -> Entry {
        Entry {
            log_id: LogId::new(
                openraft::impls::leader_id_std::LeaderId { term: 1, voted_for: 1 }.to_committed(),
                index,
            ),
            payload: openraft::EntryPayload::Normal(Request {
                id: None,
                proposed_at_ms: 5,
                op,
            }),
        }
    }

    #[test]
    fn chunks_go_out_and_come_back_exactly() {
        let a = StoredChunk::encode(&[7u8; 5000], 3).unwrap();
        let b = StoredChunk::encode(b"ngan", 3).unwrap();
        let e = entry(
            9,
            Op::PutChunks {
                chunks: vec![a.clone(), b.clone()],
            },
        );
        let (stripped, chunks) = strip_chunks(&e).unwrap().unwrap();
        assert_eq!(chunks, vec![a.clone(), b.clone()]);
        assert!(stripped.len() < enc_entry(&e).unwrap().len() - 4);
        // Entries that store no chunk are not touched.
        let put = entry(
            10,
            Op::Put {
                db: "d".into(),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
        );
        assert!(strip_chunks(&put).unwrap().is_none());
        let plain = enc_entry(&put).unwrap();
        let mut asked = Vec::new();
        let mut fetch = |ids: Vec<[u8; 32]>| -> Result<Vec<StoredChunk>, RepoError> {
            asked.extend(ids.iter().copied());
            Ok([a.clone(), b.clone()]
                .into_iter()
                .filter(|c| ids.contains(&c.id.0))
                .collect())
        };
        let back = fill_chunks(vec![stripped.clone(), plain.clone()], &mut fetch).unwrap();
        assert_eq!(back, vec![enc_entry(&e).unwrap(), plain]);
        assert_eq!(asked, vec![a.id.0, b.id.0]);
        // A repository that lacks a chunk, or returns another length, is
        // named, not replayed.
        let mut none = |_: Vec<[u8; 32]>| -> Result<Vec<StoredChunk>, RepoError> { Ok(vec![]) };
        let err = fill_chunks(vec![stripped.clone()], &mut none).unwrap_err().to_string();
        assert!(err.contains("was not returned"), "{err}");
        let mut wrong = |_: Vec<[u8; 32]>| -> Result<Vec<StoredChunk>, RepoError> {
            Ok(vec![
                StoredChunk {
                    id: ChunkId(a.id.0),
                    ..b.clone()
                },
                b.clone(),
            ])
        };
        let err = fill_chunks(vec![stripped], &mut wrong).unwrap_err().to_string();
        assert!(err.contains("bytes in the repository"), "{err}");
    }
}
