//! Retention (`sen backup prune`): which snapshots to keep, and removing
//! the data only forgotten snapshots used, in two crash-safe phases.
//!
//! Phase 1 (mark): delete the forgotten snapshot objects; find packs none
//! of whose blobs a remaining snapshot uses; write a `trash/` object
//! listing them; write a new index without them that supersedes the old
//! index objects; delete the old index objects.
//! Phase 2 (sweep, in a later prune once a trash object is older than the
//! grace period): for each trashed pack, if a snapshot written meanwhile
//! uses one of its blobs (a backup that started before phase 1), put it
//! back in the index; otherwise delete it. Then delete the trash object.
//!
//! A crash at any point leaves every remaining snapshot restorable: data
//! is removed from the index before it is deleted, and deleted only after
//! a grace period longer than any backup. A pack with at least 20% unused
//! bytes is repacked: its used blobs are copied, still sealed, into new
//! packs (written and indexed before the old pack is trashed).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::RepoError;
use crate::format::*;
use crate::read::{self, SnapshotEntry};
use crate::repo::{Index, Repo};
use sen_core::now_ms;

pub use sen_raft::schema::system::KeepPolicy;

/// Decide which snapshots to keep (and why). Input oldest first.
pub fn apply_policy(snapshots: &[SnapshotEntry], policy: &KeepPolicy) -> Vec<(SnapshotEntry, Vec<&'static str>)> {
    let mut reasons: Vec<Vec<&'static str>> = vec![Vec::new(); snapshots.len()];
    let newest_first: Vec<usize> = (0..snapshots.len()).rev().collect();
    for (i, _) in newest_first.iter().enumerate().take(policy.last as usize) {
        reasons[newest_first[i]].push("last");
    }
    // (how many, rule name, the period a time falls in)
    type Rule = (u32, &'static str, fn(u64) -> i64);
    let rules: [Rule; 5] = [
        (policy.hourly, "hourly", |t| (t / 3_600_000) as i64),
        (policy.daily, "daily", |t| (t / 86_400_000) as i64),
        // 1970-01-01 was a Thursday: weeks start on Monday.
        (policy.weekly, "weekly", |t| ((t / 86_400_000) as i64 + 3).div_euclid(7)),
        (policy.monthly, "monthly", |t| {
            let (y, m, _) = civil((t / 86_400_000) as i64);
            y * 12 + m as i64
        }),
        (policy.yearly, "yearly", |t| civil((t / 86_400_000) as i64).0),
    ];
    for (n, name, bucket) in rules {
        let mut seen = HashSet::new();
        for &i in &newest_first {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(bucket(snapshots[i].snapshot.time_ms)) {
                reasons[i].push(name);
            }
        }
    }
    snapshots.iter().cloned().zip(reasons).collect()
}

/// Days since 1970-01-01 → (year, month 1–12, day), proleptic Gregorian.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What prune did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub kept: Vec<String>,
    pub forgotten: Vec<String>,
    /// Packs marked for deletion now (phase 1).
    pub packs_marked: u64,
    pub bytes_marked: u64,
    /// Packs deleted now (phase 2: marked earlier, grace period over).
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Trashed packs a newer snapshot needed: put back in the index.
    pub packs_restored: u64,
    /// Packs whose used blobs were copied into new packs (then trashed).
    pub packs_repacked: u64,
    pub bytes_repacked: u64,
    /// Packs kept although partly unused (below the repack threshold).
    pub packs_partly_used: u64,
    /// Archive segments that end at or before the oldest kept snapshot
    /// (no restore replays them any more): deleted.
    pub segments_deleted: u64,
    pub segment_bytes_deleted: u64,
}

/// Delete the archive segments every entry of which is at or before the
/// oldest kept snapshot: a point-in-time restore starts from a snapshot
/// and replays only what follows it. A segment's end is read off the next
/// segment's start, so only segments followed by another are candidates
/// (the newest is always kept). With no snapshot kept, nothing is deleted.
/// Returns the first index of the archive that remains (0 with no
/// archive).
fn prune_archive(
    repo: &Repo,
    kept: &[SnapshotEntry],
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<u64, RepoError> {
    let listed = crate::archive::list_segments(repo)?;
    let Some(oldest) = kept.iter().map(|s| s.snapshot.raft_index).min() else {
        return Ok(listed.first().map_or(0, |s| s.first));
    };
    let mut remains = listed.first().map_or(0, |s| s.first);
    for w in listed.windows(2) {
        let (seg, next) = (&w[0], &w[1]);
        // Contiguous segments: this one ends at `next.first - 1`.
        if next.first > oldest + 1 {
            break;
        }
        report.segments_deleted += 1;
        report.segment_bytes_deleted += seg.size;
        remains = next.first;
        if !dry_run {
            repo.block_on(repo.store.delete(&crate::archive::segment_key(seg.first)))?;
        }
    }
    Ok(remains)
}

/// A pack with at least this share of unused bytes is repacked.
pub const REPACK_UNUSED_SHARE: f64 = 0.2;

/// Apply `policy`, then mark and sweep unused packs.
pub fn prune(repo: &Repo, policy: &KeepPolicy, grace: Duration, dry_run: bool) -> Result<PruneReport, RepoError> {
    if policy.is_empty() {
        return Err(RepoError::Usage(
            "prune needs at least one --keep-* rule (it would otherwise forget every snapshot)".into(),
        ));
    }
    let mut report = PruneReport {
        dry_run,
        ..Default::default()
    };
    let snapshots = read::list_snapshots(repo)?;
    let decided = apply_policy(&snapshots, policy);
    let mut kept = Vec::new();
    for (s, why) in decided {
        if why.is_empty() {
            report.forgotten.push(s.short_id());
            if !dry_run {
                repo.block_on(repo.store.delete(&object_key(ObjectKind::Snapshot, &s.id)))?;
            }
        } else {
            report.kept.push(format!("{} ({})", s.short_id(), why.join(",")));
            kept.push(s);
        }
    }

    let archive_from = prune_archive(repo, &kept, dry_run, &mut report)?;

    let mut index = repo.load_index()?;
    crate::backup::adopt_orphan_packs_unless(repo, &mut index, dry_run)?;
    let mut used = used_blobs(repo, &index, &kept)?;
    // The content chunks the remaining archive holds by reference are
    // used; the lists of deleted segments go with them.
    let referenced = crate::archive::referenced_chunks(repo, archive_from)?;
    used.extend(referenced.chunks.iter().map(|id| repo.keys.blob_id(id)));
    if !dry_run {
        for (first, last) in referenced.stale {
            repo.block_on(repo.store.delete(&crate::archive::chunks_key(first, last)))?;
        }
    }

    // Phase 2 (decide): trashed packs whose grace period is over are
    // deleted, unless a snapshot written meanwhile uses them.
    let now = now_ms();
    let mut swept_trash = Vec::new();
    let mut delete_packs: Vec<IndexPack> = Vec::new();
    let mut restore_packs: Vec<IndexPack> = Vec::new();
    for tid in repo.list_ids(ObjectKind::Trash)? {
        let trash: TrashFile = repo.get_object(ObjectKind::Trash, &tid)?;
        if now.saturating_sub(trash.marked_at_ms) < grace.as_millis() as u64 {
            continue;
        }
        swept_trash.push(tid);
        for p in trash.packs {
            // Needed: a used blob that no indexed pack holds (repacked
            // blobs live on in their new pack).
            let needed = p.entries.iter().any(|e| {
                used.contains(&e.id)
                    && index
                        .get(&e.id)
                        .is_none_or(|loc| index.packs[loc.pack as usize].0 == p.id)
            });
            if needed {
                restore_packs.push(p);
            } else {
                delete_packs.push(p);
            }
        }
    }
    report.packs_restored = restore_packs.len() as u64;
    report.packs_deleted = delete_packs.len() as u64;
    report.bytes_deleted = delete_packs.iter().map(|p| p.size).sum();
    let deleting: HashSet<[u8; 32]> = delete_packs.iter().map(|p| p.id).collect();

    // Phase 1 (decide): indexed packs none of whose blobs is used go to
    // the trash; packs with at least REPACK_UNUSED_SHARE of unused bytes
    // have their used blobs copied (still sealed) into new packs first.
    // Sealed units (a blob, or a group of blobs sealed together) are kept
    // or dropped whole: a unit is used if any of its blobs is.
    let mut units: BTreeMap<(u32, u32), (u64, bool)> = BTreeMap::new();
    for (blob, loc) in &index.blobs {
        let u = units
            .entry((loc.pack, loc.offset))
            .or_insert((u64::from(loc.len), false));
        u.1 |= used.contains(blob);
    }
    let mut by_pack: BTreeMap<u32, (u64, u64)> = BTreeMap::new(); // (used bytes, unused bytes)
    for ((pack, _), (len, is_used)) in units {
        let e = by_pack.entry(pack).or_default();
        if is_used {
            e.0 += len;
        } else {
            e.1 += len;
        }
    }
    let unused: HashSet<u32> = by_pack.iter().filter(|(_, (u, _))| *u == 0).map(|(p, _)| *p).collect();
    let repack: HashSet<u32> = by_pack
        .iter()
        .filter(|(_, (u, n))| *u > 0 && *n > 0 && (*n as f64) >= REPACK_UNUSED_SHARE * (*u + *n) as f64)
        .map(|(p, _)| *p)
        .collect();
    report.packs_partly_used = by_pack.values().filter(|(u, n)| *u > 0 && *n > 0).count() as u64 - repack.len() as u64;
    report.packs_repacked = repack.len() as u64;
    let (mut trashed, mut keep): (Vec<IndexPack>, Vec<IndexPack>) = index_packs(&index)
        .into_iter()
        .filter(|p| !deleting.contains(&p.id))
        .partition(|p| {
            index
                .pack_pos(&p.id)
                .is_some_and(|pos| unused.contains(&pos) || repack.contains(&pos))
        });
    report.packs_marked = trashed.len() as u64;
    report.bytes_marked = trashed.iter().map(|p| p.size).sum();
    if !dry_run && !repack.is_empty() {
        // Copy the used blobs of the repacked packs; the new packs join the
        // index written below, the old ones go to the trash with the rest.
        let mut w = crate::repo::PackWriter::new(repo);
        for p in trashed
            .iter()
            .filter(|p| index.pack_pos(&p.id).is_some_and(|pos| repack.contains(&pos)))
        {
            let bytes = repo.block_on(repo.store.get(&pack_key(&p.id)))?;
            if blake3::hash(&bytes).as_bytes() != &p.id {
                return Err(RepoError::Corrupt(format!(
                    "{}: content does not match its name; run `sen backup check --read-data` before pruning",
                    pack_key(&p.id)
                )));
            }
            // A sealed unit (a blob, or a group with all its members) is
            // copied once if any of its blobs is used.
            let mut units: BTreeMap<u32, Vec<PackEntry>> = BTreeMap::new();
            for e in &p.entries {
                units.entry(e.offset).or_default().push(e.clone());
            }
            for (_, members) in units {
                if !members.iter().any(|e| used.contains(&e.id)) {
                    continue;
                }
                let (off, len) = (members[0].offset as usize, members[0].len as usize);
                let sealed = bytes
                    .get(off..off + len)
                    .ok_or_else(|| RepoError::Corrupt(format!("{}: blob past the end of the pack", pack_key(&p.id))))?;
                w.add_sealed(members, sealed)?;
            }
        }
        w.finish()?;
        report.bytes_repacked = w.bytes_uploaded;
        keep.extend(std::mem::take(&mut w.written));
    }
    let _ = &mut trashed;
    let index_changes =
        !trashed.is_empty() || !restore_packs.is_empty() || deleting.iter().any(|id| index.has_pack(id));
    if dry_run {
        return Ok(report);
    }

    // Act, in the order that keeps every kept snapshot restorable at every
    // step: trash list, new index, old index objects, packs, trash lists.
    if !trashed.is_empty() {
        repo.put_object(
            ObjectKind::Trash,
            &TrashFile {
                marked_at_ms: now_ms(),
                packs: trashed,
            },
        )?;
    }
    if index_changes {
        for p in restore_packs {
            if !index.has_pack(&p.id) {
                keep.push(p);
            }
        }
        let old = index.files.clone();
        repo.put_object(
            ObjectKind::Index,
            &IndexFile {
                packs: keep,
                supersedes: old.clone(),
            },
        )?;
        for id in old {
            repo.block_on(repo.store.delete(&object_key(ObjectKind::Index, &id)))?;
        }
    }
    for p in &delete_packs {
        repo.block_on(repo.store.delete(&pack_key(&p.id)))?;
    }
    for tid in swept_trash {
        repo.block_on(repo.store.delete(&object_key(ObjectKind::Trash, &tid)))?;
    }
    Ok(report)
}

/// The index, regrouped by pack.
fn index_packs(index: &Index) -> Vec<IndexPack> {
    let mut packs: Vec<IndexPack> = index
        .packs
        .iter()
        .map(|(id, size)| IndexPack {
            id: *id,
            size: *size,
            entries: Vec::new(),
        })
        .collect();
    for (blob, loc) in &index.blobs {
        packs[loc.pack as usize].entries.push(PackEntry {
            id: *blob,
            kind: loc.kind,
            encoding: loc.encoding,
            offset: loc.offset,
            len: loc.len,
            raw_len: loc.raw_len,
            group_offset: loc.group_offset,
        });
    }
    for p in &mut packs {
        p.entries.sort_by_key(|e| e.offset);
    }
    packs
}

/// Blob ids the given snapshots need.
pub fn used_blobs(repo: &Repo, index: &Index, snapshots: &[SnapshotEntry]) -> Result<HashSet<[u8; 32]>, RepoError> {
    let mut used = HashSet::new();
    for s in snapshots {
        for t in &s.snapshot.tables {
            for c in &t.chunks {
                used.insert(repo.keys.blob_id(&c.id));
            }
        }
        for r in read::table(repo, index, &s.snapshot, sen_raft::schema::tables::CHUNK_META)? {
            let (k, _) = r?;
            let id: [u8; 32] = k
                .as_slice()
                .try_into()
                .map_err(|_| RepoError::Corrupt("chunk_meta key of the wrong length".into()))?;
            used.insert(repo.keys.blob_id(&id));
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(20_784), (2026, 11, 27));
        assert_eq!(civil(-1), (1969, 12, 31));
    }
}
