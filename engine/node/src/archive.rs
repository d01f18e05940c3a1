//! The continuous archive (docs/backup.md, "Continuous archive and
//! point-in-time restore"): the leader ships every applied (so committed)
//! log entry to the repository named by `archive/config`, in segments
//! (`sen_backup::archive`), at least every `interval_ms`.
//!
//! Invariants (docs/ARCHITECTURE.md):
//! - **No gap, no overlap.** A shipper continues from the last segment in
//!   the repository; segments are created only if absent, so when two
//!   shippers race (a deposed leader and its successor) one stores the
//!   segment and the other continues after it.
//! - **Committed only.** Only entries this node has applied are shipped,
//!   and an applied entry is the same on every node: whoever ships, the
//!   archive holds the one history.
//! - **Purge never passes the archive.** Every node keeps its Raft log
//!   after the archived index (`archive/progress`), unless the archive
//!   falls more than `max_lag_entries` behind: then logs are purged anyway
//!   (a bound on the disk an unreachable repository can cost) and the next
//!   segment starts a new chain, which the shipper reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sen_backup::Repo;
use sen_backup::archive::{self, ArchivedEntry, Segment, Written};
use sen_raft::schema::system::SystemRecord;
use sen_raft::schema::system::archive::{ARCHIVE_CONFIG_KEY, ARCHIVE_PROGRESS_KEY, ArchiveConfig, ArchiveProgress};
use tokio_util::sync::CancellationToken;

pub use crate::archive_status::Status;
use crate::error::ApiError;
use crate::node::Node;
use crate::system as cp;

/// How often the progress record is written (it is an entry of its own,
/// archived with the next segment).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Segments one tick stores at most before it looks at the clock again.
const SEGMENTS_PER_TICK: usize = 16;

/// Where the shipper continues.
struct Cursor {
    repo_key: String,
    repo: Arc<Repo>,
    next: u64,
    prev: Option<[u8; 32]>,
    prev_at_ms: u64,
    prev_term: u64,
}

/// The loop every node runs: keep the log for the archive; ship on the
/// leader.
pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let mut cursor: Option<Cursor> = None;
    let mut progress_written = Instant::now() - PROGRESS_EVERY;
    let mut unsaved = false;
    loop {
        let config = cp::read::<ArchiveConfig>(node.as_ref(), ARCHIVE_CONFIG_KEY)
            .ok()
            .flatten()
            .map(|(c, _)| c);
        let every = config.as_ref().map_or(Duration::from_secs(2), |c| {
            Duration::from_millis(c.interval_ms.clamp(100, 60_000))
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(config) = config else {
            node.log.keep_after(u64::MAX);
            cursor = None;
            set_status(&node, |s| {
                *s = Status {
                    state: "off".into(),
                    ..Default::default()
                }
            });
            continue;
        };
        let progress = cp::read::<ArchiveProgress>(node.as_ref(), ARCHIVE_PROGRESS_KEY)
            .ok()
            .flatten()
            .map(|(p, _)| p)
            .unwrap_or_default();
        keep_log(&node, &config, &progress);
        if !node.is_leader() || node.is_stopping() {
            cursor = None;
            set_status(&node, |s| {
                s.state = "standby".into();
                s.archived_index = progress.index;
                s.archived_at_ms = progress.entry_at_ms;
                s.error.clear();
            });
            continue;
        }
        match ship(&node, &config, &mut cursor).await {
            Ok(shipped) => unsaved |= shipped,
            Err(e) => {
                tracing::warn!("archive: {e}");
                cursor = None;
                set_status(&node, |s| {
                    s.state = "failing".into();
                    s.error = e.to_string();
                });
            }
        }
        if unsaved && progress_written.elapsed() >= PROGRESS_EVERY {
            match save_progress(&node).await {
                Ok(()) => {
                    unsaved = false;
                    progress_written = Instant::now();
                }
                Err(e) => tracing::debug!("archive progress not saved: {e}"),
            }
        }
    }
}

fn set_status(node: &Node, f: impl FnOnce(&mut Status)) {
    f(&mut node.archive.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Keep the log after the archived index, within `max_lag_entries`.
fn keep_log(node: &Node, config: &ArchiveConfig, progress: &ArchiveProgress) {
    let applied = node.state.applied_index();
    let floor = progress
        .index
        .max(applied.saturating_sub(config.max_lag_entries.max(1)));
    if floor > progress.index && applied > config.max_lag_entries {
        tracing::error!(
            archived = progress.index,
            applied,
            max_lag = config.max_lag_entries,
            "the archive is more than archive max-lag entries behind: the Raft log is purged past it, and the archive will restart with a gap"
        );
    }
    node.log.keep_after(floor);
}

/// One tick on the leader: store what was applied since the last segment.
/// Returns whether anything was stored.
async fn ship(node: &Arc<Node>, config: &ArchiveConfig, cursor: &mut Option<Cursor>) -> Result<bool, ApiError> {
    let repo_key = format!("{}|{:?}", config.repo, config.password_file);
    if cursor.as_ref().is_none_or(|c| c.repo_key != repo_key) {
        *cursor = Some(open_cursor(node, config, repo_key).await?);
    }
    let Some(c) = cursor.as_mut() else {
        return Ok(false);
    };
    let cluster_id = node.cluster_id().map(|id| id.to_string()).unwrap_or_default();
    let term = node.raft_metrics().current_term;
    let mut shipped = false;
    for _ in 0..SEGMENTS_PER_TICK {
        let applied = node.state.applied_index();
        if c.next > applied {
            break;
        }
        let log = node.log.clone();
        let (next, end) = (c.next, applied + 1);
        let entries =
            tokio::task::spawn_blocking(move || log.archive_entries(next, end, archive::SEGMENT_TARGET_BYTES))
                .await
                .map_err(|e| ApiError::Internal(format!("reading the log for the archive: {e}")))?;
        let entries = match entries {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Purged past the archive (max-lag) or never here (a
                // snapshot was installed): start a new chain at what this
                // log still holds.
                let first = node.log.first_index().unwrap_or(applied);
                tracing::error!(
                    missing_from = c.next,
                    restart_at = first,
                    "archive: {e}; the archive restarts at index {first} with a gap: take a backup now (sen backup create) so that point-in-time restores after it work"
                );
                c.next = first.max(c.next);
                c.prev = None;
                continue;
            }
            Err(e) => return Err(ApiError::Internal(format!("reading the log for the archive: {e}"))),
        };
        let mut at = c.prev_at_ms;
        let archived: Vec<ArchivedEntry> = entries
            .into_iter()
            .map(|(e, bytes)| {
                if let openraft::EntryPayload::Normal(req) = &e.payload {
                    at = at.max(req.proposed_at_ms);
                }
                ArchivedEntry {
                    index: e.log_id.index,
                    term: e.log_id.leader_id.term,
                    at_ms: at,
                    entry: bytes,
                }
            })
            .collect();
        let Some(last) = archived.last().map(|e| (e.index, e.at_ms, e.term)) else {
            break;
        };
        let seg = Segment {
            cluster_id: cluster_id.clone(),
            first: c.next,
            last: last.0,
            prev: c.prev,
            shipper: node.id,
            term,
            shipped_at_ms: sen_core::now_ms(),
            entries: archived,
        };
        let repo = c.repo.clone();
        let written = tokio::task::spawn_blocking(move || archive::write_segment(&repo, &seg))
            .await
            .map_err(|e| ApiError::Internal(format!("writing an archive segment: {e}")))?
            .map_err(crate::backup::repo_err)?;
        match written {
            Written::Stored { hash, bytes } => {
                c.next = last.0 + 1;
                c.prev = Some(hash);
                c.prev_at_ms = last.1;
                c.prev_term = last.2;
                node.metrics.archive_segments.inc();
                set_status(node, |s| {
                    s.segments += 1;
                    s.bytes += bytes;
                    s.shipped_at_ms = sen_core::now_ms();
                });
            }
            Written::Taken { segment, hash } => {
                tracing::info!(
                    first = segment.first,
                    last = segment.last,
                    by = segment.shipper,
                    "archive: another shipper stored this segment; continuing after it"
                );
                c.next = segment.last + 1;
                c.prev = Some(hash);
                c.prev_at_ms = segment.last_at_ms();
                c.prev_term = segment.entries.last().map_or(0, |e| e.term);
            }
        }
        shipped = true;
        set_status(node, |s| {
            s.state = "shipping".into();
            s.archived_index = c.next - 1;
            s.archived_at_ms = c.prev_at_ms;
            s.error.clear();
        });
    }
    set_status(node, |s| {
        s.state = "shipping".into();
        s.archived_index = c.next - 1;
        s.archived_at_ms = c.prev_at_ms;
        s.archived_term = c.prev_term;
        s.archived_hash = c.prev.map(hex::encode).unwrap_or_default();
    });
    live_status(node);
    Ok(shipped)
}

/// Open the repository and find where the archive ends.
async fn open_cursor(node: &Arc<Node>, config: &ArchiveConfig, repo_key: String) -> Result<Cursor, ApiError> {
    let password = match &config.password_file {
        None => None,
        Some(p) => Some(crate::backup::read_password_file(node, p, "archive password file").await?),
    };
    let store = crate::backup::open_allowed(node, &config.repo).await?;
    let rt = tokio::runtime::Handle::current();
    let (repo, last) = tokio::task::spawn_blocking(move || {
        let repo = Repo::open(store, rt, password.as_deref())?;
        let last = archive::last_segment(&repo)?;
        Ok::<_, sen_backup::RepoError>((repo, last))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("opening the archive: {e}")))?
    .map_err(crate::backup::repo_err)?;
    let (next, prev, prev_at_ms, prev_term) = match last {
        Some((seg, hash)) => (
            seg.last + 1,
            Some(hash),
            seg.last_at_ms(),
            seg.entries.last().map_or(0, |e| e.term),
        ),
        // A new archive starts at what this node's log holds.
        None => (node.log.first_index().unwrap_or(1).max(1), None, 0, 0),
    };
    tracing::info!(repo = %config.repo, next, "archive: shipping");
    Ok(Cursor {
        repo_key,
        repo: Arc::new(repo),
        next,
        prev,
        prev_at_ms,
        prev_term,
    })
}

/// Record what this node's shipper archived (an entry of its own).
async fn save_progress(node: &Arc<Node>) -> Result<(), ApiError> {
    let s = node.archive.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let p = ArchiveProgress {
        version: ArchiveProgress::VERSION,
        index: s.archived_index,
        term: s.archived_term,
        entry_at_ms: s.archived_at_ms,
        segment_hash: s.archived_hash.clone(),
        shipper: node.id,
        shipper_term: node.raft_metrics().current_term,
        shipped_at_ms: s.shipped_at_ms,
        segments: s.segments,
    };
    node.propose(
        None,
        cp::put_op(ARCHIVE_PROGRESS_KEY.to_vec(), &p)?,
        node.config.server.request_timeout,
    )
    .await?;
    Ok(())
}

/// This node's shipper as of now: the lag is computed from the applied
/// index and the last archived entry's commit time, so it grows while a
/// segment write hangs on an unreachable repository. Also sets
/// `sen_archive_lag_seconds` (only the shipping node reports a lag).
pub fn live_status(node: &Node) -> Status {
    let mut s = node.archive.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if s.state == "shipping" || s.state == "failing" {
        let applied = node.state.applied_index();
        s.lag_entries = applied.saturating_sub(s.archived_index);
        s.lag_ms = if s.lag_entries == 0 {
            0
        } else {
            sen_core::now_ms().saturating_sub(s.archived_at_ms.max(1))
        };
        node.metrics.archive_lag_seconds.set(s.lag_ms as f64 / 1000.0);
    } else {
        s.lag_entries = 0;
        s.lag_ms = 0;
        node.metrics.archive_lag_seconds.set(0.0);
    }
    s
}
