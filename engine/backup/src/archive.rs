//! The continuous archive of the replicated log (docs/backup-format.md,
//! "Archive segments"): committed Raft entries shipped to the repository
//! as they commit, so a restore can replay them after the newest snapshot
//! up to any index or second.
//!
//! ```text
//! archive/<first index, 20 digits>   one segment: entries first..=last
//! ```
//!
//! A segment is a repository object (`SENO` header, kind 5, sealed zstd
//! like every metadata object) holding the entries in the log's own
//! serialized form, each with the commit time the state machine saw.
//! Segments are keyed by their first index and created only if absent, so
//! two shippers can never both write the segment that follows the same
//! entry: the loser reads the winner's and continues after it (no gap, no
//! overlap). Only committed entries are shipped, and a committed entry is
//! the same on every node, so a deposed shipper can at worst write what its
//! successor would have. Each segment names the hash of the one before it:
//! [`chain`] proves the archive continuous from a snapshot to its end.
//!
//! Content chunks are not copied into segments. A segment (object version
//! 2) keeps the entries that store chunks with the chunks' data left out;
//! the data is a blob in the repository's packs, like a backup's, written
//! by [`store_chunks`] before the segment unless the repository already
//! holds it, and the next backup finds it there instead of storing it
//! again. `archive-chunks/<first>-<last>` lists the chunks a segment holds
//! by reference, so `prune` keeps them and `check` finds them without
//! reading every segment.
//!
//! ```text
//! archive-chunks/<first>-<last>      chunk ids segment <first> refers to
//! ```

use serde::{Deserialize, Serialize};

use crate::RepoError;
use crate::format::{BlobEncoding, BlobKind, IndexFile, ObjectKind, decode_object, encode_object};
use crate::repo::{Index, PackWriter, Repo};

pub const ARCHIVE_DIR: &str = "archive";
pub const CHUNKS_DIR: &str = "archive-chunks";

/// Entries (bytes of their serialized form) one segment holds at most;
/// a shipper with more to send writes several.
pub const SEGMENT_TARGET_BYTES: usize = 16 << 20;

/// One archived log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedEntry {
    pub index: u64,
    pub term: u64,
    /// Commit time (ms since the epoch) as the state machine's replicated
    /// clock read it: never earlier than the entry before.
    pub at_ms: u64,
    /// The entry in the Raft log's own encoding (`sen_store::format`).
    #[serde(with = "serde_bytes")]
    pub entry: Vec<u8>,
}

/// One archive segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The cluster the entries belong to (hex).
    pub cluster_id: String,
    pub first: u64,
    pub last: u64,
    /// Hash of the segment ending at `first - 1`; `None` where a chain
    /// starts (the archive was enabled, or restarted after a gap).
    pub prev: Option<[u8; 32]>,
    /// The node that shipped it, and its term then.
    pub shipper: u64,
    pub term: u64,
    pub shipped_at_ms: u64,
    pub entries: Vec<ArchivedEntry>,
}

impl Segment {
    /// Entries contiguous from `first` to `last`, terms and times never
    /// going back.
    pub fn check(&self, name: &str) -> Result<(), RepoError> {
        let bad = |why: String| Err(RepoError::Corrupt(format!("{name}: {why}")));
        if self.entries.is_empty() || self.first > self.last {
            return bad("an empty segment".into());
        }
        if self.entries.len() as u64 != self.last - self.first + 1 {
            return bad(format!(
                "{} entries for indexes {}..={}",
                self.entries.len(),
                self.first,
                self.last
            ));
        }
        for (i, pair) in self.entries.windows(2).enumerate() {
            if pair[1].index != pair[0].index + 1 || pair[1].term < pair[0].term || pair[1].at_ms < pair[0].at_ms {
                return bad(format!(
                    "entry {} does not follow the one before it",
                    self.first + i as u64 + 1
                ));
            }
        }
        if self.entries[0].index != self.first {
            return bad(format!("starts at {} instead of {}", self.entries[0].index, self.first));
        }
        Ok(())
    }

    /// Commit time of the last entry.
    pub fn last_at_ms(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.at_ms)
    }
}

/// `archive/<first, 20 digits>`.
pub fn segment_key(first: u64) -> String {
    format!("{ARCHIVE_DIR}/{first:020}")
}

/// One listed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub first: u64,
    pub size: u64,
}

/// Every segment in the repository, in index order.
pub fn list_segments(repo: &Repo) -> Result<Vec<SegmentInfo>, RepoError> {
    let mut out = Vec::new();
    for o in repo.block_on(repo.store.list(&format!("{ARCHIVE_DIR}/")))? {
        let name = o.key.rsplit('/').next().unwrap_or_default();
        match name.parse::<u64>() {
            Ok(first) if name.len() == 20 => out.push(SegmentInfo { first, size: o.size }),
            _ => tracing::warn!(key = %o.key, "ignoring an object with a foreign name in the archive"),
        }
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

/// Read and check the segment starting at `first`; with the hash of its
/// stored bytes (what the next segment names as `prev`).
pub fn read_segment(repo: &Repo, first: u64) -> Result<(Segment, [u8; 32]), RepoError> {
    let key = segment_key(first);
    let bytes = repo.block_on(repo.store.get(&key))?;
    let hash = *blake3::hash(&bytes).as_bytes();
    let seg: Segment = decode_object(&repo.keys, ObjectKind::Segment, &bytes, &key)?;
    seg.check(&key)?;
    if seg.first != first {
        return Err(RepoError::Corrupt(format!(
            "{key}: holds the segment of index {}",
            seg.first
        )));
    }
    Ok((seg, hash))
}

/// What [`write_segment`] did.
#[derive(Debug)]
pub enum Written {
    /// Ours is stored: its hash and size.
    Stored { hash: [u8; 32], bytes: u64 },
    /// Another shipper stored the segment of the same first index first:
    /// continue after it.
    Taken { segment: Segment, hash: [u8; 32] },
}

/// Store `seg` unless a segment with the same first index exists.
pub fn write_segment(repo: &Repo, seg: &Segment) -> Result<Written, RepoError> {
    let key = segment_key(seg.first);
    seg.check(&key)?;
    let bytes = encode_object(&repo.keys, ObjectKind::Segment, seg)?;
    let hash = *blake3::hash(&bytes).as_bytes();
    let len = bytes.len() as u64;
    if repo.block_on(repo.store.put_if_absent(&key, bytes))? {
        return Ok(Written::Stored { hash, bytes: len });
    }
    let (segment, hash) = read_segment(repo, seg.first)?;
    Ok(Written::Taken { segment, hash })
}

/// The last segment, if any, with its hash.
pub fn last_segment(repo: &Repo) -> Result<Option<(Segment, [u8; 32])>, RepoError> {
    match list_segments(repo)?.last() {
        Some(s) => read_segment(repo, s.first).map(Some),
        None => Ok(None),
    }
}

/// The segments that carry the archive from `after + 1` up to `upto`
/// (inclusive; `u64::MAX`: to the end), read and proven continuous: each
/// starts where the one before ended and names its hash. Fails when the
/// archive does not reach back to `after + 1`, or has a gap or a break
/// in between.
pub fn chain(repo: &Repo, after: u64, upto: u64) -> Result<Vec<Segment>, RepoError> {
    let listed = list_segments(repo)?;
    // The segment holding `after + 1`: the last one starting at or before it.
    let start = listed.iter().rposition(|s| s.first <= after + 1).ok_or_else(|| {
        RepoError::Usage(format!(
            "the archive starts after index {}: no segment holds it; restore a snapshot taken after the archive began",
            after + 1
        ))
    })?;
    let mut out: Vec<Segment> = Vec::new();
    let mut prev_hash: Option<[u8; 32]> = None;
    for info in &listed[start..] {
        if info.first > upto {
            break;
        }
        let (seg, hash) = read_segment(repo, info.first)?;
        if let Some(p) = out.last() {
            if seg.first != p.last + 1 {
                return Err(RepoError::Corrupt(format!(
                    "the archive has a gap: {} ends at index {}, the next segment starts at {}",
                    segment_key(p.first),
                    p.last,
                    seg.first
                )));
            }
            if seg.prev != prev_hash {
                return Err(RepoError::Corrupt(format!(
                    "{} does not follow {} (its hash of the segment before differs): the archive was restarted or damaged here",
                    segment_key(seg.first),
                    segment_key(p.first)
                )));
            }
        } else if seg.last < after + 1 {
            return Err(RepoError::Usage(format!(
                "the archive ends at index {} (before {}): nothing to replay after the snapshot",
                seg.last,
                after + 1
            )));
        }
        prev_hash = Some(hash);
        out.push(seg);
    }
    Ok(out)
}

/// The content chunks the entries of segment `first..=last` hold by
/// reference (plaintext chunk ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentChunks {
    pub first: u64,
    pub last: u64,
    pub chunks: Vec<[u8; 32]>,
}

/// `archive-chunks/<first, 20 digits>-<last, 20 digits>`.
pub fn chunks_key(first: u64, last: u64) -> String {
    format!("{CHUNKS_DIR}/{first:020}-{last:020}")
}

/// What [`store_chunks`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunksStored {
    /// Chunks written as new blobs, and the pack bytes uploaded.
    pub new: u64,
    pub bytes: u64,
    /// Chunks the repository already held (referenced only).
    pub referenced: u64,
}

/// Before the segment `first..=last` is written: make sure every chunk
/// its entries store is a blob in the repository (new ones are packed in
/// their stored form, so a restore gets the exact bytes back; `index` is
/// the shipper's view, updated here), then record the list of them. Both
/// are written before the segment, so a stored segment never refers to a
/// missing chunk; a list whose segment another shipper won is harmless
/// (it only keeps blobs alive until prune passes it).
pub fn store_chunks(
    repo: &Repo,
    index: &mut Index,
    first: u64,
    last: u64,
    chunks: Vec<sen_content::StoredChunk>,
) -> Result<ChunksStored, RepoError> {
    use sen_content::chunk::Encoding;
    let mut done = ChunksStored::default();
    if chunks.is_empty() {
        return Ok(done);
    }
    let mut ids = Vec::with_capacity(chunks.len());
    let mut seen = std::collections::HashSet::new();
    let mut w = PackWriter::new(repo);
    for c in chunks {
        let id = c.id.0;
        if !seen.insert(id) {
            continue;
        }
        ids.push(id);
        if index.get(&repo.keys.blob_id(&id)).is_some() {
            done.referenced += 1;
            continue;
        }
        let encoding = match c.encoding {
            Encoding::Raw => BlobEncoding::Raw,
            Encoding::Zstd => BlobEncoding::Zstd,
        };
        w.add(&id, BlobKind::Content, encoding, c.len, c.data)?;
        done.new += 1;
    }
    w.finish()?;
    done.bytes = w.bytes_uploaded;
    if !w.written.is_empty() {
        let packs = std::mem::take(&mut w.written);
        repo.put_object(
            ObjectKind::Index,
            &IndexFile {
                packs: packs.clone(),
                supersedes: vec![],
            },
        )?;
        for p in &packs {
            index.add_pack(p);
        }
    }
    let list = SegmentChunks {
        first,
        last,
        chunks: ids,
    };
    let bytes = encode_object(&repo.keys, ObjectKind::SegmentChunks, &list)?;
    repo.block_on(repo.store.put_if_absent(&chunks_key(first, last), bytes))?;
    Ok(done)
}

/// Every chunk list, as `(first, last)`, in index order.
pub fn list_chunk_lists(repo: &Repo) -> Result<Vec<(u64, u64)>, RepoError> {
    let mut out = Vec::new();
    for o in repo.block_on(repo.store.list(&format!("{CHUNKS_DIR}/")))? {
        let name = o.key.rsplit('/').next().unwrap_or_default();
        let parsed = name
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        match parsed {
            Some(range) if name.len() == 41 => out.push(range),
            _ => tracing::warn!(key = %o.key, "ignoring an object with a foreign name in the archive's chunk lists"),
        }
    }
    out.sort();
    Ok(out)
}

/// Read one chunk list.
pub fn read_chunk_list(repo: &Repo, first: u64, last: u64) -> Result<SegmentChunks, RepoError> {
    let key = chunks_key(first, last);
    let bytes = repo.block_on(repo.store.get(&key))?;
    let list: SegmentChunks = decode_object(&repo.keys, ObjectKind::SegmentChunks, &bytes, &key)?;
    if (list.first, list.last) != (first, last) {
        return Err(RepoError::Corrupt(format!(
            "{key}: holds the list of segment {}-{}",
            list.first, list.last
        )));
    }
    Ok(list)
}

/// What the chunk lists say about the archive from index `from` on.
#[derive(Debug, Default)]
pub struct Referenced {
    /// Chunk ids its segments hold by reference (what prune must keep and
    /// check must find).
    pub chunks: Vec<[u8; 32]>,
    /// Lists that end before it: their segments are gone.
    pub stale: Vec<(u64, u64)>,
}

/// Read the chunk lists of the archive from index `from` on (one listing).
pub fn referenced_chunks(repo: &Repo, from: u64) -> Result<Referenced, RepoError> {
    let mut out = Referenced::default();
    for (first, last) in list_chunk_lists(repo)? {
        if last >= from {
            out.chunks.extend(read_chunk_list(repo, first, last)?.chunks);
        } else {
            out.stale.push((first, last));
        }
    }
    Ok(out)
}

/// Where a point-in-time restore stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Everything archived.
    Latest,
    /// The last entry committed at or before this time (ms since the epoch).
    Time(u64),
    /// This index.
    Index(u64),
}

/// What a point-in-time restore does: restore `snapshot`, then replay
/// `entries` (every archived entry after it up to the target).
#[derive(Debug)]
pub struct Plan {
    pub snapshot: crate::read::SnapshotEntry,
    pub entries: Vec<ArchivedEntry>,
}

impl Plan {
    /// The index, term and commit time the restore stops at.
    pub fn stops_at(&self) -> (u64, u64, u64) {
        match self.entries.last() {
            Some(e) => (e.index, e.term, e.at_ms),
            None => (
                self.snapshot.snapshot.raft_index,
                self.snapshot.snapshot.raft_term,
                self.snapshot.snapshot.time_ms,
            ),
        }
    }
}

/// Choose the newest snapshot at or before `target` that the archive
/// continues from, and the archived entries up to the target.
pub fn plan(repo: &Repo, target: Target) -> Result<Plan, RepoError> {
    let snaps = crate::read::list_snapshots(repo)?;
    if snaps.is_empty() {
        return Err(RepoError::Usage(
            "the repository holds no snapshot: a point-in-time restore replays the archive after a snapshot; take one with `sen backup create`".into(),
        ));
    }
    let listed = list_segments(repo)?;
    let Some(first_archived) = listed.first().map(|s| s.first) else {
        return Err(RepoError::Usage(
            "the repository holds no archive: turn it on with `sen archive enable` (restore a snapshot with --snapshot meanwhile)".into(),
        ));
    };
    let mut candidates: Vec<&crate::read::SnapshotEntry> = snaps
        .iter()
        .filter(|s| match target {
            Target::Latest => true,
            Target::Time(t) => s.snapshot.time_ms <= t,
            Target::Index(i) => s.snapshot.raft_index <= i,
        })
        .filter(|s| s.snapshot.raft_index + 1 >= first_archived)
        .collect();
    candidates.sort_by_key(|s| s.snapshot.raft_index);
    let Some(snap) = candidates.last() else {
        return Err(RepoError::Usage(format!(
            "no snapshot is both before the target and covered by the archive (which starts at index {first_archived}): restore the newest snapshot before it with --snapshot, or choose a later target"
        )));
    };
    let after = snap.snapshot.raft_index;
    let upto = match target {
        Target::Index(i) => i,
        _ => u64::MAX,
    };
    let mut entries = Vec::new();
    let archive_end = match listed.last() {
        Some(l) => read_segment(repo, l.first)?.0.last,
        None => 0,
    };
    if archive_end > after {
        for seg in chain(repo, after, upto)? {
            for e in seg.entries {
                if e.index <= after {
                    continue;
                }
                let keep = match target {
                    Target::Latest => true,
                    Target::Time(t) => e.at_ms <= t,
                    Target::Index(i) => e.index <= i,
                };
                if !keep {
                    break;
                }
                entries.push(e);
            }
        }
    }
    if let Target::Index(i) = target {
        let reached = entries.last().map_or(after, |e| e.index);
        if reached < i {
            return Err(RepoError::Usage(format!(
                "the archive ends at index {reached}, before {i}: choose an index it holds (`sen archive status`)"
            )));
        }
    }
    Ok(Plan {
        snapshot: (*snap).clone(),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{InitOptions, LocalStore};

    /// A new encrypted repository in a scratch directory, with the runtime
    /// it runs on (the repository is declared last, so it is dropped
    /// first).
    fn scratch() -> (tokio::runtime::Runtime, tempfile::TempDir, Repo) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::new(dir.path()).unwrap());
        let r = Repo::init(store, rt.handle().clone(), Some(b"mat-khau"), &InitOptions::default()).unwrap();
        (rt, dir, r)
    }

    fn seg(first: u64, last: u64, prev: Option<[u8; 32]>) -> Segment {
        Segment {
            cluster_id: "c0ffee".into(),
            first,
            last,
            prev,
            shipper: 1,
            term: 2,
            shipped_at_ms: 1_796_288_400_000,
            entries: (first..=last)
                .map(|i| ArchivedEntry {
                    index: i,
                    term: 2,
                    at_ms: 1_796_288_400_000 + i,
                    entry: format!("entry {i}").into_bytes(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_plaintext_of_a_segment_is_pinned() {
        let bytes = sen_core::codec::encode_v1("archive segment", &seg(7, 7, Some([1; 32]))).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            "000663306666656507070101010101010101010101010101010101010101010101010101010101010101010102fd80ca213ba2010000010702fd87ca213ba201000007656e7472792037"
        );
    }

    #[test]
    fn segments_chain_and_a_second_shipper_continues_after_the_first() {
        let (rt, dir, r) = scratch();
        let Written::Stored { hash: h1, .. } = write_segment(&r, &seg(10, 19, None)).unwrap() else {
            panic!("the first segment is stored")
        };
        // A second shipper with its own cut of the same entries loses and
        // learns where to continue.
        match write_segment(&r, &seg(10, 14, None)).unwrap() {
            Written::Taken { segment, hash } => assert_eq!((segment.last, hash), (19, h1)),
            w => panic!("{w:?}"),
        }
        write_segment(&r, &seg(20, 25, Some(h1))).unwrap();
        let c = chain(&r, 12, u64::MAX).unwrap();
        assert_eq!(
            c.iter().map(|s| (s.first, s.last)).collect::<Vec<_>>(),
            [(10, 19), (20, 25)]
        );
        assert_eq!(chain(&r, 9, 19).unwrap().len(), 1);
        // Before the archive began, and past a break in the chain.
        assert!(matches!(chain(&r, 5, u64::MAX), Err(RepoError::Usage(_))));
        write_segment(&r, &seg(26, 30, Some([9; 32]))).unwrap();
        let e = chain(&r, 12, u64::MAX).unwrap_err().to_string();
        assert!(e.contains("does not follow"), "{e}");
        // A gap.
        write_segment(&r, &seg(40, 41, None)).unwrap();
        assert_eq!(chain(&r, 12, 25).unwrap().len(), 2, "up to 25 the chain holds");
        // `backup check` names both breaks (no snapshot bridges them).
        let report = crate::check::check(&r, 0).unwrap();
        assert_eq!(
            (report.archive_segments, report.archive_first, report.archive_last),
            (4, 10, 41)
        );
        let text = report.errors.join("\n");
        assert!(
            text.contains("does not name the hash") && text.contains("leaves a gap after index 30"),
            "{text}"
        );
        assert!(!report.ok);
        // The wrong password reads nothing.
        let store = Arc::new(LocalStore::new(dir.path()).unwrap());
        assert!(Repo::open(store, rt.handle().clone(), Some(b"sai")).is_err());
    }

    #[test]
    fn the_plaintext_of_a_chunk_list_is_pinned_and_segments_are_version_2() {
        let list = SegmentChunks {
            first: 7,
            last: 9,
            chunks: vec![[3; 32]],
        };
        let bytes = sen_core::codec::encode_v1("archive chunk list", &list).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            "000709010303030303030303030303030303030303030303030303030303030303030303"
        );
        let obj = encode_object(&crate::crypto::Keys::None, ObjectKind::Segment, &seg(1, 1, None)).unwrap();
        assert_eq!(&obj[..8], b"SENO\x02\x05\x00\x00");
        // A version this build does not know is refused, not misread.
        let mut newer = obj.clone();
        newer[4] = 3;
        let e = decode_object::<Segment>(&crate::crypto::Keys::None, ObjectKind::Segment, &newer, "archive/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upgrade Sen"), "{e}");
    }

    #[test]
    fn chunks_by_reference_are_stored_once_kept_by_prune_and_checked() {
        use sen_content::StoredChunk;
        let (_rt, _dir, r) = scratch();
        let a = StoredChunk::encode(&[1u8; 9000], 3).unwrap();
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let b = StoredChunk::encode(&noise, 3).unwrap();
        let c = StoredChunk::encode(b"chi thi", 3).unwrap();
        let mut index = r.load_index().unwrap();
        let done = store_chunks(&r, &mut index, 10, 19, vec![a.clone(), b.clone(), a.clone()]).unwrap();
        assert_eq!((done.new, done.referenced), (2, 0));
        assert!(done.bytes > 0);
        let Written::Stored { hash, .. } = write_segment(&r, &seg(10, 19, None)).unwrap() else {
            panic!("stored")
        };
        // Later segments refer to what the repository holds, even with a
        // freshly read index.
        let mut fresh = r.load_index().unwrap();
        let done = store_chunks(&r, &mut fresh, 20, 25, vec![b.clone()]).unwrap();
        assert_eq!((done.new, done.referenced, done.bytes), (0, 1, 0));
        write_segment(&r, &seg(20, 25, Some(hash))).unwrap();
        // A list whose segment was never stored (a shipper that lost the
        // race, or died) keeps nothing alive once it is gone.
        store_chunks(&r, &mut fresh, 30, 31, vec![c.clone()]).unwrap();
        assert_eq!(list_chunk_lists(&r).unwrap(), [(10, 19), (20, 25), (30, 31)]);
        r.block_on(r.store.delete(&chunks_key(30, 31))).unwrap();
        // The exact stored form comes back (same bytes the cluster held).
        let index = r.load_index().unwrap();
        let back: Vec<StoredChunk> = r
            .fetch_blobs(&index, vec![a.id.0, b.id.0])
            .map(|x| crate::restore::cluster_chunk(x.unwrap()).unwrap())
            .collect();
        assert_eq!(back, vec![a.clone(), b.clone()]);
        // check finds every referenced chunk.
        let report = crate::check::check(&r, 100).unwrap();
        assert!(report.ok, "{:?}", report.errors);
        assert_eq!(report.archive_chunks, 3);
        // prune keeps the referenced chunks' pack and marks the other.
        let policy = sen_raft::schema::system::KeepPolicy {
            last: 1,
            ..Default::default()
        };
        let p = crate::prune::prune(&r, &policy, std::time::Duration::ZERO, false).unwrap();
        assert_eq!(p.packs_marked, 1, "{p:?}");
        let index = r.load_index().unwrap();
        assert!(index.get(&r.keys.blob_id(&a.id.0)).is_some());
        assert!(index.get(&r.keys.blob_id(&c.id.0)).is_none());
        assert!(crate::check::check(&r, 100).unwrap().ok);
        // A lost pack is named by check.
        let loc = index.get(&r.keys.blob_id(&a.id.0)).unwrap();
        r.block_on(r.store.delete(&crate::format::pack_key(&index.pack_id(&loc))))
            .unwrap();
        let report = crate::check::check(&r, 0).unwrap();
        let text = report.errors.join("\n");
        assert!(text.contains(&hex::encode(a.id.0)), "{text}");
    }

    #[test]
    fn damaged_segments_are_named() {
        let mut s = seg(5, 9, None);
        s.entries.remove(2);
        assert!(s.check("archive/x").unwrap_err().to_string().contains("archive/x"));
        let mut s = seg(5, 6, None);
        s.entries[1].at_ms = 0;
        assert!(s.check("archive/x").is_err());
        let (_rt, dir, r) = scratch();
        write_segment(&r, &seg(1, 3, None)).unwrap();
        let path = dir.path().join("archive").join(format!("{:020}", 1));
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(read_segment(&r, 1), Err(RepoError::Corrupt(_))));
    }
}
