//! The continuous archive (docs/backup.md, "Continuous archive and
//! point-in-time restore"): the leader ships every applied (so committed)
//! log entry to the repository named by `archive/config`, in segments
//! (`sen_backup::archive`): the oldest entry not yet archived is stored
//! within `interval_ms` ([`Pacer`]).
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
/// How often the shipping node looks for newly applied entries.
const WATCH: Duration = Duration::from_millis(50);
/// The longest wait between attempts while the repository fails.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where the shipper continues.
struct Cursor {
    repo_key: String,
    repo: Arc<Repo>,
    next: u64,
    prev: Option<[u8; 32]>,
    prev_at_ms: u64,
    prev_term: u64,
    /// The repository's index (which blobs it holds) and when it was read.
    index: Option<(sen_backup::repo::Index, Instant)>,
}

/// When the shipping node stores the next segment.
///
/// The promise is about the oldest acknowledged entry not yet archived: it
/// must be in the repository within `interval`. So the clock starts when
/// the shipper first sees such an entry (within [`WATCH`] of its commit),
/// and the segment is started early enough for the write itself to finish
/// in time: `interval` less a head start of twice the slowest recent
/// write (a peak that decays by an eighth per write) and two [`WATCH`]
/// periods (one for seeing the entry, one for the tick that starts the
/// write), at most half the interval. Writes vary (a loaded disk,
/// a far repository), so the head start follows their peaks, not their
/// mean. Idle, the shipper writes nothing; under steady writes it stores
/// a little more than one segment per interval.
#[derive(Default)]
struct Pacer {
    /// When entries past the archive were first seen.
    pending_since: Option<Instant>,
    /// Recent peak duration of a segment write.
    write: Duration,
    /// Failed attempts in a row, and when the next one may start.
    failures: u32,
    retry_at: Option<Instant>,
}

impl Pacer {
    /// Whether to ship now, given whether anything is pending.
    fn due(&mut self, pending: bool, interval: Duration, now: Instant) -> bool {
        if self.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        if !pending {
            self.pending_since = None;
            return false;
        }
        let since = *self.pending_since.get_or_insert(now);
        let head_start = (self.write * 2 + WATCH * 2).min(interval / 2);
        now.duration_since(since) >= interval.saturating_sub(head_start)
    }

    /// A ship attempt that started at `started` ended; `left` is whether
    /// entries applied meanwhile are still pending (their clock started at
    /// the latest when the attempt did).
    fn shipped(&mut self, started: Instant, wrote: bool, left: bool) {
        if wrote {
            self.write = started.elapsed().max(self.write - self.write / 8);
        }
        self.failures = 0;
        self.retry_at = None;
        self.pending_since = left.then_some(started);
    }

    /// A ship attempt failed: wait `interval`, doubling up to
    /// [`MAX_BACKOFF`], before the next. Returns whether this is the first
    /// failure in a row (worth a warning).
    fn failed(&mut self, interval: Duration, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        let wait = interval
            .saturating_mul(1 << self.failures.min(8).saturating_sub(1))
            .min(MAX_BACKOFF.max(interval));
        self.retry_at = Some(now + wait);
        self.failures == 1
    }
}

/// The loop every node runs: keep the log for the archive; ship on the
/// leader.
pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let mut cursor: Option<Cursor> = None;
    let mut pacer = Pacer::default();
    let mut progress_written = Instant::now() - PROGRESS_EVERY;
    let mut unsaved = false;
    let mut behind = Behind::default();
    let mut saving: Option<tokio::task::JoinHandle<()>> = None;
    let mut declared_said = false;
    loop {
        let record = cp::read::<ArchiveConfig>(node.as_ref(), ARCHIVE_CONFIG_KEY)
            .ok()
            .flatten()
            .map(|(c, _)| c);
        declare(&node, record.as_ref(), &mut declared_said).await;
        // A record with no repository: turned off (`sen archive disable`).
        let config = record.filter(|c| !c.repo.is_empty());
        let interval = config.as_ref().map_or(Duration::from_secs(2), |c| {
            Duration::from_millis(c.interval_ms.clamp(100, 60_000))
        });
        let tick = if config.is_some() && node.is_leader() {
            WATCH.min(interval / 4)
        } else {
            interval
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let Some(config) = config else {
            node.log.keep_after(u64::MAX);
            cursor = None;
            pacer = Pacer::default();
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
        let over = keep_log(&node, &config, &progress);
        behind.observe(&node, &config, &progress, over).await;
        if !node.is_leader() || node.is_stopping() {
            cursor = None;
            pacer = Pacer::default();
            set_status(&node, |s| {
                s.state = "standby".into();
                s.archived_index = progress.index;
                s.archived_at_ms = progress.entry_at_ms;
                s.error.clear();
            });
            continue;
        }
        let applied = node.state.applied_index();
        let pending = cursor.as_ref().is_none_or(|c| c.next <= applied);
        let now = Instant::now();
        if pacer.due(pending, interval, now) {
            match ship(&node, &config, &mut cursor).await {
                Ok(shipped) => {
                    unsaved |= shipped;
                    let left = cursor.as_ref().is_some_and(|c| c.next <= node.state.applied_index());
                    pacer.shipped(now, shipped, left);
                }
                Err(e) => {
                    if pacer.failed(interval, Instant::now()) {
                        tracing::warn!("archive: {e}; retrying, with growing pauses up to {MAX_BACKOFF:?}");
                    } else {
                        tracing::debug!("archive: {e}");
                    }
                    cursor = None;
                    set_status(&node, |s| {
                        s.state = "failing".into();
                        s.error = e.to_string();
                    });
                }
            }
        } else {
            live_status(&node);
        }
        // The progress record is a Raft write of its own: in the
        // background, so that a slow commit never delays a segment.
        if unsaved && progress_written.elapsed() >= PROGRESS_EVERY && saving.as_ref().is_none_or(|h| h.is_finished()) {
            unsaved = false;
            progress_written = Instant::now();
            let node = node.clone();
            saving = Some(tokio::spawn(async move {
                if let Err(e) = save_progress(&node).await {
                    tracing::debug!("archive progress not saved: {e}");
                }
            }));
        }
    }
}

/// `[archive]` in this node's file: on the leader, turn the archive on
/// with it when the cluster has never had an archive setting (created only
/// if absent, so an operator's `enable`/`disable` at the same moment
/// wins); otherwise say once if the cluster's setting differs.
async fn declare(node: &Node, record: Option<&ArchiveConfig>, said: &mut bool) {
    use sen_raft::{CompareTarget, TxnOp};
    let d = &node.config.archive;
    if d.repo.is_empty() || *said {
        return;
    }
    let password_file = (!d.password_file.as_os_str().is_empty()).then(|| d.password_file.display().to_string());
    match record {
        Some(c) => {
            if c.repo != d.repo || c.password_file != password_file {
                tracing::warn!(
                    declared = %d.repo,
                    cluster = %if c.repo.is_empty() { "off" } else { c.repo.as_str() },
                    by = %c.enabled_by,
                    "[archive] in this node's file differs from the cluster's archive setting, which wins (set it with `sen archive enable|disable`)"
                );
            }
            *said = true;
        }
        None if node.is_leader() && !node.is_stopping() => {
            if let Err(e) = sen_backup_s3::check_allowed(&d.repo, &node.config.backup.allowed_repos, node.id) {
                tracing::error!("[archive] in this node's file is not used: {e}");
                *said = true;
                return;
            }
            let c = ArchiveConfig {
                version: ArchiveConfig::VERSION,
                repo: d.repo.clone(),
                password_file,
                interval_ms: d.interval.as_millis() as u64,
                max_lag_entries: d.max_lag,
                enabled_at_ms: sen_core::now_ms(),
                enabled_by: format!("[archive] in node {}'s configuration", node.id),
            };
            let value = match c.to_json() {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!("[archive] in this node's file: {e}");
                    *said = true;
                    return;
                }
            };
            let created = cp::txn(
                node,
                vec![cp::cmp(ARCHIVE_CONFIG_KEY, CompareTarget::Exists(false))],
                vec![TxnOp::Put {
                    key: ARCHIVE_CONFIG_KEY.to_vec(),
                    value,
                }],
                node.config.server.request_timeout,
            )
            .await;
            match created {
                Ok(true) => {
                    tracing::info!(repo = %d.repo, "archive turned on from [archive] in this node's configuration")
                }
                // An operator's setting got there first: it wins.
                Ok(false) => {}
                Err(e) => tracing::debug!("[archive] from the configuration not recorded yet: {e}"),
            }
        }
        None => {}
    }
}

fn set_status(node: &Node, f: impl FnOnce(&mut Status)) {
    f(&mut node.archive.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Keep the log after the archived index, within `max_lag_entries`.
/// Returns whether the archive is further behind than that (the log is
/// then purged past it).
fn keep_log(node: &Node, config: &ArchiveConfig, progress: &ArchiveProgress) -> bool {
    let applied = node.state.applied_index();
    let floor = progress
        .index
        .max(applied.saturating_sub(config.max_lag_entries.max(1)));
    node.log.keep_after(floor);
    floor > progress.index && applied > config.max_lag_entries
}

/// One episode of the archive falling more than `max-lag` entries behind:
/// said once when it starts (an error in every node's log) and, on the
/// leader, a serious incident opened then and closed when the archive has
/// caught up again. A new leader adopts an incident its predecessor left
/// open instead of opening a second one.
#[derive(Default)]
struct Behind {
    /// This node has said that the archive is behind.
    said: bool,
    /// The open incident, once this node (as leader) has looked for it.
    incident: Option<Option<u64>>,
}

impl Behind {
    async fn observe(&mut self, node: &Node, config: &ArchiveConfig, progress: &ArchiveProgress, over: bool) {
        use sen_raft::schema::system::{Incident, SERIOUS, kind};
        if over && !self.said {
            tracing::error!(
                archived = progress.index,
                applied = node.state.applied_index(),
                max_lag = config.max_lag_entries,
                "the archive is more than archive max-lag entries behind: the Raft log is purged past it, and the archive will restart with a gap; make the repository reachable, then take a backup"
            );
        }
        self.said = over;
        if !node.is_leader() {
            self.incident = None;
            return;
        }
        let budget = node.config.server.request_timeout;
        let open = match self.incident {
            Some(open) => open,
            None => {
                let Ok(all) = crate::incidents::list(node) else {
                    return;
                };
                let open = all
                    .iter()
                    .rev()
                    .find(|i| i.kind == kind::ARCHIVE_BEHIND && i.end_ms.is_none())
                    .map(|i| i.id);
                self.incident = Some(open);
                open
            }
        };
        match (over, open) {
            (true, None) => {
                let inc = Incident {
                    term: node.raft_metrics().current_term,
                    ..Incident::new(
                        kind::ARCHIVE_BEHIND,
                        SERIOUS,
                        sen_core::now_ms(),
                        format!(
                            "the continuous archive ({}) is more than {} entries behind (archived up to index {}, applied {}): \
                             nodes purge their logs past it, so the archive restarts with a gap and point-in-time \
                             restores cannot cross it",
                            config.repo,
                            config.max_lag_entries,
                            progress.index,
                            node.state.applied_index()
                        ),
                        vec![],
                        node.id,
                    )
                    .with_vi(format!(
                        "bản lưu trữ liên tục ({}) chậm hơn {} bản ghi (đã lưu trữ đến chỉ số {}, đã áp dụng {}): \
                         các nút cắt bớt nhật ký qua điểm đó, nên bản lưu trữ bắt đầu lại với một khoảng hở và \
                         khôi phục về thời điểm không thể đi qua khoảng hở này",
                        config.repo,
                        config.max_lag_entries,
                        progress.index,
                        node.state.applied_index()
                    ))
                };
                match crate::incidents::record(node, inc, budget).await {
                    Ok(id) => self.incident = Some(Some(id)),
                    Err(e) => tracing::warn!("cannot record that the archive fell behind: {e}"),
                }
            }
            (false, Some(id)) => {
                if let Ok(mut inc) = crate::incidents::get(node, id) {
                    inc.end_ms = Some(sen_core::now_ms());
                    inc.add_to_cause(
                        &format!(
                            "; the archive caught up (index {}): take a backup so that restores start after the gap",
                            progress.index
                        ),
                        &format!(
                            "; bản lưu trữ đã theo kịp (chỉ số {}): hãy tạo một bản sao lưu để các lần khôi phục bắt đầu sau khoảng hở",
                            progress.index
                        ),
                    );
                    if crate::incidents::update(node, &inc, budget).await.is_ok() {
                        self.incident = Some(None);
                    }
                } else {
                    self.incident = Some(None);
                }
            }
            _ => {}
        }
    }
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
        let mut chunks = Vec::new();
        let mut archived: Vec<ArchivedEntry> = Vec::with_capacity(entries.len());
        for (e, bytes) in entries {
            if let openraft::EntryPayload::Normal(req) = &e.payload {
                at = at.max(req.proposed_at_ms);
            }
            // Content chunks go by reference (repository blobs).
            let entry = match sen_store::archive::strip_chunks(&e)
                .map_err(|err| ApiError::Internal(format!("archiving entry {}: {err}", e.log_id.index)))?
            {
                Some((stripped, data)) => {
                    chunks.extend(data);
                    stripped
                }
                None => bytes,
            };
            archived.push(ArchivedEntry {
                index: e.log_id.index,
                term: e.log_id.leader_id.term,
                at_ms: at,
                entry,
            });
        }
        let Some(last) = archived.last().map(|e| (e.index, e.at_ms, e.term)) else {
            break;
        };
        if !chunks.is_empty() {
            store_chunks(node, c, last.0, chunks).await?;
        }
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
        // Caught up with what was applied when the entries were read: what
        // applied since waits for its own deadline (one segment per
        // interval, not one per write). Only a backlog larger than one
        // segment is shipped segment after segment.
        if c.next > applied {
            break;
        }
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

/// How long the shipper trusts its copy of the repository's index (what
/// blobs exist) before reading it again.
const INDEX_FRESH_FOR: Duration = Duration::from_secs(60);

/// Store the content chunks of the entries `c.next..=last` as blobs (unless
/// the repository holds them) and their list, before the segment.
async fn store_chunks(
    node: &Node,
    c: &mut Cursor,
    last: u64,
    chunks: Vec<sen_content::StoredChunk>,
) -> Result<(), ApiError> {
    let repo = c.repo.clone();
    let cached = c.index.take().filter(|(_, at)| at.elapsed() < INDEX_FRESH_FOR);
    let first = c.next;
    let (index, done) = tokio::task::spawn_blocking(move || {
        let (mut index, loaded) = match cached {
            Some(x) => x,
            None => (repo.load_index()?, Instant::now()),
        };
        let done = archive::store_chunks(&repo, &mut index, first, last, chunks)?;
        Ok::<_, sen_backup::RepoError>(((index, loaded), done))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("storing content chunks for the archive: {e}")))?
    .map_err(crate::backup::repo_err)?;
    c.index = Some(index);
    tracing::debug!(
        first,
        last,
        new = done.new,
        referenced = done.referenced,
        bytes = done.bytes,
        "archive: content chunks stored by reference"
    );
    set_status(node, |s| s.bytes += done.bytes);
    Ok(())
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
        index: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_pacer_ships_early_enough_for_the_write_to_finish_within_the_interval() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        // Nothing pending: nothing to do, however long.
        assert!(!p.due(false, S, t0 + 10 * S));
        // Entries appear at t0: not yet, then due two WATCH periods early
        // (no write measured yet).
        assert!(!p.due(true, S, t0));
        assert!(!p.due(true, S, t0 + Duration::from_millis(890)));
        assert!(p.due(true, S, t0 + Duration::from_millis(900)));
        // A write that took 200 ms brings the next one earlier by twice
        // that (plus two WATCH periods, capped at half the interval);
        // entries applied meanwhile count from the attempt's start.
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        p.shipped(started, true, true);
        assert!(p.write >= Duration::from_millis(200), "{:?}", p.write);
        assert_eq!(p.pending_since, Some(started));
        let early = S - (p.write * 2 + WATCH * 2).min(S / 2);
        assert!(!p.due(true, S, started + early - Duration::from_millis(10)));
        assert!(p.due(true, S, started + early));
        // The peak decays by an eighth per quick write.
        let peak = p.write;
        p.shipped(Instant::now(), true, false);
        assert!(
            p.write < peak && p.write >= peak * 7 / 8 - Duration::from_millis(1),
            "{:?}",
            p.write
        );
        // All shipped: the clock stops.
        assert_eq!(p.pending_since, None);
    }

    #[test]
    fn the_head_start_never_exceeds_half_the_interval() {
        let t0 = Instant::now();
        let mut p = Pacer {
            write: Duration::from_secs(5),
            ..Default::default()
        };
        assert!(!p.due(true, S, t0));
        assert!(!p.due(true, S, t0 + Duration::from_millis(490)));
        assert!(p.due(true, S, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn failures_back_off_up_to_a_bound_and_a_success_resets() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        assert!(p.failed(S, t0), "the first failure is said");
        assert!(!p.due(true, S, t0 + Duration::from_millis(999)));
        assert!(!p.failed(S, t0), "later ones are not");
        assert_eq!(p.retry_at, Some(t0 + 2 * S));
        for _ in 0..20 {
            p.failed(S, t0);
        }
        assert_eq!(p.retry_at, Some(t0 + MAX_BACKOFF));
        // A long interval is never cut short by the bound.
        let mut q = Pacer::default();
        q.failed(Duration::from_secs(60), t0);
        assert_eq!(q.retry_at, Some(t0 + Duration::from_secs(60)));
        p.shipped(t0, true, false);
        assert_eq!((p.failures, p.retry_at), (0, None));
    }
}
