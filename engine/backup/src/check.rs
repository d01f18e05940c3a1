//! `sen backup check`: verify a repository's structure and, optionally,
//! its data. Every problem is reported with the object it concerns.

use std::collections::{HashMap, HashSet};

use crate::RepoError;
use crate::format::*;
use crate::read::{self, SnapshotEntry};
use crate::repo::Repo;

/// What `check` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub index_files: u64,
    pub packs: u64,
    pub blobs: u64,
    /// Packs whose data was read and verified.
    pub packs_read: u64,
    pub bytes_read: u64,
    /// Packs no index names (an interrupted backup; adopted by the next
    /// backup or removed by prune). Not an error.
    pub unindexed_packs: u64,
    /// The continuous archive: segments, the indexes they span, and
    /// restarts of the chain a later snapshot bridges (not errors).
    pub archive_segments: u64,
    pub archive_first: u64,
    pub archive_last: u64,
    pub archive_notes: Vec<String>,
    /// Content chunks the archive holds by reference, found stored.
    #[serde(default)]
    pub archive_chunks: u64,
    /// Every problem, one line each, naming the object.
    pub errors: Vec<String>,
    pub ok: bool,
}

/// Check the repository. `read_data_percent`: 0 reads no data, 100 all of
/// it, anything between a deterministic-random subset of packs.
pub fn check(repo: &Repo, read_data_percent: u32) -> Result<CheckReport, RepoError> {
    let mut report = CheckReport::default();
    // 1. Index objects (each verified by name and decryption).
    let index = match repo.load_index() {
        Ok(i) => i,
        Err(RepoError::Corrupt(e)) | Err(RepoError::Format(e)) => {
            report.errors.push(format!("index: {e}"));
            return finish(report);
        }
        Err(e) => return Err(e),
    };
    report.index_files = index.files.len() as u64;
    report.blobs = index.blobs.len() as u64;
    report.packs = index.packs.len() as u64;

    // 2. Every indexed pack is present with its size; its own header
    //    agrees with the index.
    let present: HashMap<[u8; 32], u64> = repo.list_packs()?.into_iter().collect();
    let mut missing_packs: HashSet<[u8; 32]> = HashSet::new();
    let mut to_read = Vec::new();
    for (pos, (id, size)) in index.packs.iter().enumerate() {
        let key = pack_key(id);
        match present.get(id) {
            None => {
                report.errors.push(format!("{key}: missing (the index lists it)"));
                missing_packs.insert(*id);
            }
            Some(s) if s != size => {
                report.errors.push(format!(
                    "{key}: {s} bytes, the index says {size} (truncated or overwritten)"
                ));
                missing_packs.insert(*id);
            }
            Some(_) => to_read.push((pos, *id, *size)),
        }
    }
    report.unindexed_packs = present.keys().filter(|id| !index.has_pack(id)).count() as u64;
    let headers = repo.parallel(to_read.iter().copied().enumerate(), |_, (_, id, size)| {
        (id, repo.read_pack_header(&id, size))
    });
    let mut bad_header: HashSet<[u8; 32]> = HashSet::new();
    for (id, r) in headers {
        match r {
            Ok(entries) => {
                for e in &entries {
                    if let Some(loc) = index.get(&e.id)
                        && index.pack_id(&loc) == id
                        && (loc.offset != e.offset || loc.len != e.len)
                    {
                        report.errors.push(format!(
                            "{}: blob {} is at {}+{} in the pack but {}+{} in the index",
                            pack_key(&id),
                            &hex_id(&e.id)[..16],
                            e.offset,
                            e.len,
                            loc.offset,
                            loc.len
                        ));
                    }
                }
            }
            Err(e) => {
                report.errors.push(format!("{}: header unreadable: {e}", pack_key(&id)));
                bad_header.insert(id);
            }
        }
    }

    // 3. Snapshots: each readable, each blob it needs indexed and in a
    //    present pack.
    let snapshots = match read::list_snapshots(repo) {
        Ok(s) => s,
        Err(RepoError::Corrupt(e)) | Err(RepoError::Format(e)) => {
            report.errors.push(format!("snapshots: {e}"));
            return finish(report);
        }
        Err(e) => return Err(e),
    };
    report.snapshots = snapshots.len() as u64;
    for s in &snapshots {
        for e in snapshot_problems(repo, &index, s, &missing_packs, &bad_header)? {
            report.errors.push(e);
        }
    }

    // 4. The archive: every segment decrypts and matches its name's index
    //    and the hash the next one names; from every snapshot it covers,
    //    the chain reaches the newest segment, or a later snapshot bridges
    //    the break.
    check_archive(repo, &snapshots, &mut report)?;
    // The content chunks the archive holds by reference are stored.
    if report.archive_segments > 0 {
        for id in crate::archive::referenced_chunks(repo, report.archive_first)?.chunks {
            let blob = repo.keys.blob_id(&id);
            match index.get(&blob) {
                None => report.errors.push(format!(
                    "archive: content chunk {} that a segment refers to is not in the index: point-in-time restores through it fail",
                    hex::encode(id)
                )),
                Some(loc) if missing_packs.contains(&index.pack_id(&loc)) => report.errors.push(format!(
                    "archive: content chunk {} that a segment refers to is in a missing pack",
                    hex::encode(id)
                )),
                Some(_) => report.archive_chunks += 1,
            }
        }
    }

    // 5. Data: whole packs read, hashed against their names, every blob
    //    opened (authenticated, decompressed, hashed).
    if read_data_percent > 0 {
        let selected: Vec<(usize, [u8; 32], u64)> = to_read
            .iter()
            .copied()
            .filter(|(_, id, _)| read_data_percent >= 100 || u32::from(id[0]) * 100 < read_data_percent.min(100) * 256)
            .collect();
        let results = repo.parallel(selected.into_iter().enumerate(), |_, (_, id, size)| {
            (id, size, verify_pack_data(repo, &id))
        });
        for (id, size, r) in results {
            report.packs_read += 1;
            report.bytes_read += size;
            report.errors.extend(r);
            let _ = id;
        }
    }
    finish(report)
}

fn check_archive(repo: &Repo, snapshots: &[SnapshotEntry], report: &mut CheckReport) -> Result<(), RepoError> {
    use crate::archive::{list_segments, read_segment, segment_key};
    let listed = list_segments(repo)?;
    report.archive_segments = listed.len() as u64;
    // (first, last, prev, hash) of every readable segment, in order.
    let mut read = Vec::new();
    for s in &listed {
        match read_segment(repo, s.first) {
            Ok((seg, hash)) => read.push((seg.first, seg.last, seg.prev, hash)),
            Err(RepoError::Corrupt(e)) | Err(RepoError::Format(e)) => report.errors.push(e),
            Err(e) => return Err(e),
        }
    }
    let (Some(first), Some(last)) = (read.first(), read.last()) else {
        return Ok(());
    };
    report.archive_first = first.0;
    report.archive_last = last.1;
    // Where the chain does not continue: (index it restarts at, why).
    let mut breaks: Vec<(u64, String)> = Vec::new();
    for w in read.windows(2) {
        let ((_, p_last, _, p_hash), (n_first, _, n_prev, _)) = (&w[0], &w[1]);
        if *n_first != p_last + 1 {
            let what = if *n_first <= *p_last {
                "overlaps"
            } else {
                "leaves a gap after"
            };
            breaks.push((*n_first, format!("{} {what} index {p_last}", segment_key(*n_first))));
        } else if *n_prev != Some(*p_hash) {
            breaks.push((
                *n_first,
                format!(
                    "{} does not name the hash of the segment before it (a restart or damage)",
                    segment_key(*n_first)
                ),
            ));
        }
    }
    for (at, why) in breaks {
        // Restores to times after the break start from a snapshot at or
        // after it (even one newer than the archive's end, taken a moment
        // ago); earlier snapshots reach up to it.
        let bridged = snapshots.iter().any(|s| s.snapshot.raft_index + 1 >= at);
        let msg = format!("archive: {why}: point-in-time restores cannot replay across index {at}");
        if bridged {
            report
                .archive_notes
                .push(format!("{msg} (a later snapshot starts after it)"));
        } else {
            report.errors.push(format!(
                "{msg}; take a backup (sen backup create) to start from after it"
            ));
        }
    }
    Ok(())
}

fn finish(mut report: CheckReport) -> Result<CheckReport, RepoError> {
    report.ok = report.errors.is_empty();
    Ok(report)
}

/// Problems of one snapshot: blobs it needs that are not available.
fn snapshot_problems(
    repo: &Repo,
    index: &crate::repo::Index,
    s: &SnapshotEntry,
    missing_packs: &HashSet<[u8; 32]>,
    bad_header: &HashSet<[u8; 32]>,
) -> Result<Vec<String>, RepoError> {
    let mut errors = Vec::new();
    let sid = s.short_id();
    let need = |chunk: &[u8; 32], what: &str, errors: &mut Vec<String>| {
        let blob = repo.keys.blob_id(chunk);
        match index.get(&blob) {
            None => errors.push(format!(
                "snapshot {sid}: {what} blob {} is not in the index",
                &hex_id(&blob)[..16]
            )),
            Some(loc) => {
                let pack = index.pack_id(&loc);
                if missing_packs.contains(&pack) || bad_header.contains(&pack) {
                    errors.push(format!(
                        "snapshot {sid}: {what} blob {} is in damaged pack {}",
                        &hex_id(&blob)[..16],
                        pack_key(&pack)
                    ));
                }
            }
        }
    };
    let mut readable = true;
    for t in &s.snapshot.tables {
        for c in &t.chunks {
            let before = errors.len();
            need(&c.id, &format!("table {}", t.name), &mut errors);
            readable &= errors.len() == before;
        }
    }
    if !readable {
        return Ok(errors);
    }
    // Content chunks are the keys of the chunk_meta table.
    match read::table(repo, index, &s.snapshot, sen_raft::schema::tables::CHUNK_META) {
        Ok(reader) => {
            for r in reader {
                match r {
                    Ok((k, _)) => match <[u8; 32]>::try_from(k.as_slice()) {
                        Ok(id) => need(&id, "content", &mut errors),
                        Err(_) => errors.push(format!("snapshot {sid}: chunk_meta key of {} bytes", k.len())),
                    },
                    Err(e) => {
                        errors.push(format!("snapshot {sid}: chunk_meta table unreadable: {e}"));
                        break;
                    }
                }
            }
        }
        Err(e) => errors.push(format!("snapshot {sid}: {e}")),
    }
    Ok(errors)
}

/// Read a whole pack and verify it; returns the problems found.
fn verify_pack_data(repo: &Repo, id: &[u8; 32]) -> Vec<String> {
    let key = pack_key(id);
    let bytes = match repo.block_on(repo.store.get(&key)) {
        Ok(b) => b,
        Err(e) => return vec![format!("{key}: cannot read: {e}")],
    };
    let mut errors = Vec::new();
    if blake3::hash(&bytes).as_bytes() != id {
        errors.push(format!("{key}: content does not match its name (damaged)"));
    }
    let size = bytes.len() as u64;
    let entries = match size
        .checked_sub(12)
        .ok_or_else(|| RepoError::Corrupt(format!("{key}: too short")))
        .and_then(|_| pack_trailer(size, &bytes[bytes.len() - 12..], &key))
        .and_then(|(off, len)| {
            crate::repo::decode_pack_header(&repo.keys, &bytes[off as usize..off as usize + len as usize], &key, off)
        }) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{key}: {e}"));
            return errors;
        }
    };
    let mut groups: std::collections::HashMap<u32, Result<Vec<u8>, String>> = std::collections::HashMap::new();
    for e in entries {
        let sealed = &bytes[e.offset as usize..(e.offset + e.len) as usize];
        let what = format!("{key}: blob {}", &hex_id(&e.id)[..16]);
        let plain = match e.encoding {
            BlobEncoding::Raw => repo.keys.open(sealed, &e.id, &what).map_err(|err| err.to_string()),
            BlobEncoding::Zstd => repo
                .keys
                .open(sealed, &e.id, &what)
                .map_err(|err| err.to_string())
                .and_then(|z| {
                    sen_content::zstd_ctx::decompress(&z, e.raw_len as usize)
                        .map_err(|err| format!("{what}: cannot decompress: {err}"))
                }),
            BlobEncoding::Group => {
                let group = groups.entry(e.offset).or_insert_with(|| {
                    crate::repo::open_group(&repo.keys, sealed, &format!("{key}: group at {}", e.offset))
                        .map_err(|err| err.to_string())
                });
                match group {
                    Ok(g) => g
                        .get(e.group_offset as usize..(e.group_offset + e.raw_len) as usize)
                        .map(<[u8]>::to_vec)
                        .ok_or_else(|| format!("{what}: lies outside its group")),
                    Err(err) => Err(err.clone()),
                }
            }
        };
        match plain {
            Ok(p) if p.len() == e.raw_len as usize && repo.keys.blob_id(blake3::hash(&p).as_bytes()) == e.id => {}
            Ok(_) => errors.push(format!("{what}: content does not match its id")),
            Err(err) => {
                if !errors.contains(&err) {
                    errors.push(err);
                }
            }
        }
    }
    errors
}
