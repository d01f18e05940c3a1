//! Backups on a node: taking one of this node's replica (`Backup/Create`),
//! and the leader's scheduler that runs the backup schedule kept in the
//! control plane (`sen_raft::schema::system::Schedule`), recording every
//! run.

use std::sync::Arc;
use std::time::Duration;

use sen_backup::backup::{BackupOptions, BackupOutcome};
use sen_backup::{Repo, RepoError};
use sen_backup_s3::open_store;
use sen_raft::schema::system::{
    BACKUP_SCHEDULE_KEY, RunRecord, SYSTEM_DB, Schedule, SystemRecord, backup_run_key, run_state,
};
use sen_store::backup::ViewSource;

use crate::error::ApiError;
use crate::node::Node;
use crate::system;

/// One backup at a time on this node.
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

pub fn repo_err(e: RepoError) -> ApiError {
    match e {
        RepoError::Usage(m) | RepoError::Format(m) => ApiError::FailedPrecondition(m),
        RepoError::WrongPassword => ApiError::FailedPrecondition(e.to_string()),
        RepoError::Store(e) => ApiError::Unavailable(format!("backup repository: {e}")),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Open the repository at `url` if this node may write there
/// (`[backup] allowed-repos`): checked before anything is created.
pub async fn open_allowed(node: &Node, url: &str) -> Result<Arc<dyn sen_backup::ObjectStore>, ApiError> {
    sen_backup_s3::check_allowed(url, &node.config.backup.allowed_repos, node.id).map_err(repo_err)?;
    open_store(url).await.map_err(repo_err)
}

/// Back up this node's replica into the repository at `url`.
pub async fn backup_here(
    node: &Arc<Node>,
    url: &str,
    password: Option<Vec<u8>>,
    tags: Vec<String>,
) -> Result<BackupOutcome, ApiError> {
    node.check_serving()?;
    let _permit = RUNNING.try_acquire().map_err(|_| {
        ApiError::FailedPrecondition(format!(
            "node {} is already taking a backup; wait for it to finish or ask another node",
            node.id
        ))
    })?;
    let store = open_allowed(node, url).await?;
    let rt = tokio::runtime::Handle::current();
    let state = node.state.clone();
    let node_id = node.id;
    let opts = BackupOptions {
        tags,
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let repo = Repo::open(store, rt, password.as_deref())?;
        state.with_read_view(|view| {
            let source = ViewSource::new(view, node_id)?;
            sen_backup::backup::create(&repo, &source, &opts, &|_, _| {})
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("backup task failed: {e}")))?
    .map_err(repo_err)?;
    let s = &outcome.snapshot;
    tracing::info!(
        snapshot = %sen_backup::format::hex_id(&outcome.snapshot_id),
        raft_index = s.raft_index,
        bytes_total = s.stats.bytes_total,
        bytes_new = s.stats.bytes_new,
        duration_ms = s.stats.duration_ms,
        "backup created"
    );
    Ok(outcome)
}

/// The API's answer for a backup this node took.
pub fn backup_response(o: &BackupOutcome) -> sen_proto::v1::CreateBackupResponse {
    let s = &o.snapshot;
    sen_proto::v1::CreateBackupResponse {
        snapshot_id: sen_backup::format::hex_id(&o.snapshot_id),
        raft_index: s.raft_index,
        raft_term: s.raft_term,
        node_id: s.source_node,
        state_digest: s.state_digest.clone(),
        bytes_total: s.stats.bytes_total,
        bytes_new: s.stats.bytes_new,
        blobs_total: s.stats.blobs_total,
        blobs_new: s.stats.blobs_new,
        content_chunks: s.stats.content_chunks,
        content_chunks_new: s.stats.content_chunks_new,
        duration_ms: s.stats.duration_ms,
        repo_bytes: o.repo_bytes,
        repo_free_bytes: o.repo_space.map_or(0, |s| s.0),
        repo_total_bytes: o.repo_space.map_or(0, |s| s.1),
    }
}

/// The leader's scheduler loop: every `backup.check-interval`, if a
/// schedule exists and the current slot has no run, claim the slot with a
/// transaction (create-if-absent, through Raft: exactly one leader wins a
/// slot, even across failovers), take the backup on a follower, apply the
/// retention policy, and record the outcome. A slot claimed by a leader of
/// an older term that never recorded an outcome (it lost leadership or
/// died mid-run) is claimed again by the next leader, once.
pub async fn run_scheduler(node: Arc<Node>, stop: tokio_util::sync::CancellationToken) {
    let every = node.config.backup.check_interval;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if !node.is_leader() || node.is_stopping() {
            continue;
        }
        if let Err(e) = scheduler_tick(&node).await {
            tracing::warn!("backup scheduler: {e}");
        }
    }
}

async fn scheduler_tick(node: &Arc<Node>) -> Result<(), ApiError> {
    use sen_raft::{Compare, CompareOp, CompareTarget, Op, Outcome, Txn, TxnOp};
    let Some((schedule, _)) = system::read::<Schedule>(node.as_ref(), BACKUP_SCHEDULE_KEY)? else {
        return Ok(());
    };
    if schedule.every_ms == 0 {
        return Ok(());
    }
    let now = sen_core::now_ms();
    let slot = now / schedule.every_ms;
    let key = backup_run_key(slot);
    let term = node.raft_metrics().current_term;
    let compare = match system::read::<RunRecord>(node.as_ref(), &key)? {
        None => CompareTarget::Exists(false),
        Some((r, rev)) if r.state == run_state::RUNNING && r.term < term && r.attempt < 2 => {
            CompareTarget::ModRevision(rev)
        }
        Some(_) => return Ok(()),
    };
    let attempt = match compare {
        CompareTarget::Exists(false) => 1,
        _ => 2,
    };
    let mut record = RunRecord {
        slot,
        slot_start_ms: slot * schedule.every_ms,
        state: run_state::RUNNING.into(),
        attempt,
        leader: node.id,
        term,
        started_ms: now,
        ..Default::default()
    };
    let claim = Txn {
        db: SYSTEM_DB.into(),
        compares: vec![Compare {
            key: key.clone(),
            op: CompareOp::Equal,
            target: compare,
        }],
        success: vec![TxnOp::Put {
            key: key.clone(),
            value: record.to_json().map_err(|e| ApiError::Internal(e.to_string()))?,
        }],
        failure: vec![],
    };
    let budget = node.config.server.request_timeout;
    let resp = node.propose(None, Op::Txn(claim), budget).await?;
    if !matches!(resp.outcome, Outcome::Txn { succeeded: true }) {
        return Ok(()); // another leader claimed it
    }
    tracing::info!(slot, attempt, repo = %schedule.repo, "scheduled backup starting");

    let result = scheduled_backup(node, &schedule, slot).await;
    record.ended_ms = sen_core::now_ms();
    match result {
        Ok((backup_node, r, prune)) => {
            record.state = run_state::SUCCEEDED.into();
            record.node = backup_node;
            record.snapshot_id = r.snapshot_id;
            record.raft_index = r.raft_index;
            record.bytes_total = r.bytes_total;
            record.bytes_new = r.bytes_new;
            record.chunks_new = r.content_chunks_new;
            record.repo_bytes = r.repo_bytes;
            record.repo_free_bytes = r.repo_free_bytes;
            record.repo_total_bytes = r.repo_total_bytes;
            record.prune = prune;
        }
        Err(e) => {
            tracing::warn!(slot, "scheduled backup failed: {e}");
            record.state = run_state::FAILED.into();
            record.error = e.to_string();
        }
    }
    node.propose(None, system::put_op(key, &record)?, budget).await?;
    Ok(())
}

/// The password in file `path` on this node (`what` names it in errors).
pub async fn read_password_file(node: &Node, path: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    let text = tokio::fs::read(path)
        .await
        .map_err(|e| ApiError::FailedPrecondition(format!("{what} {path} on node {}: {e}", node.id)))?;
    Ok(sen_backup::crypto::password_line(&text).to_vec())
}

/// Take the backup on a caught-up follower (else here), then prune.
async fn scheduled_backup(
    node: &Arc<Node>,
    schedule: &Schedule,
    slot: u64,
) -> Result<(u64, sen_proto::v1::CreateBackupResponse, String), ApiError> {
    let password = match &schedule.password_file {
        None => None,
        Some(p) => Some(read_password_file(node, p, "password file").await?),
    };
    let m = node.raft_metrics();
    let mut followers: Vec<(u64, String)> = Vec::new();
    if let Some(repl) = &m.replication {
        let leader_last = m.last_log_index.unwrap_or(0);
        for (id, matched) in repl {
            let lag = leader_last.saturating_sub(matched.map_or(0, |l| l.index));
            let voter = m.membership_config.membership().voter_ids().any(|v| v == *id);
            if *id != node.id
                && voter
                && lag < 1000
                && let Some(addr) = node.member_addr(*id)
            {
                followers.push((*id, addr));
            }
        }
    }
    let mut tags = schedule.tags.clone();
    tags.push(format!("slot={slot}"));
    let req = sen_proto::v1::CreateBackupRequest {
        repo: schedule.repo.clone(),
        password: password.clone().unwrap_or_default(),
        tags: tags.clone(),
    };
    let mut errors = Vec::new();
    let mut done = None;
    for (id, addr) in followers {
        let mut client = node
            .peers
            .backup(id, &addr)
            .map_err(|s| ApiError::from_peer(&addr, &s))?;
        let mut r = tonic::Request::new(req.clone());
        r.set_timeout(Duration::from_secs(6 * 3600));
        match client.create(r).await {
            Ok(resp) => {
                done = Some((id, resp.into_inner()));
                break;
            }
            Err(s) => errors.push(format!("node {id}: {}", s.message())),
        }
    }
    let (backup_node, resp) = match done {
        Some(d) => d,
        None => {
            if !errors.is_empty() {
                tracing::warn!(
                    "no follower could take the backup ({}); taking it on the leader",
                    errors.join("; ")
                );
            }
            let o = backup_here(node, &schedule.repo, password.clone(), tags).await?;
            (node.id, backup_response(&o))
        }
    };
    let mut prune_note = String::new();
    if !schedule.keep.is_empty() {
        let store = open_allowed(node, &schedule.repo).await?;
        let rt = tokio::runtime::Handle::current();
        let keep = schedule.keep.clone();
        let grace = Duration::from_millis(schedule.prune_grace_ms);
        let report = tokio::task::spawn_blocking(move || {
            let repo = Repo::open(store, rt, password.as_deref())?;
            sen_backup::prune::prune(&repo, &keep, grace, false)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("prune task failed: {e}")))?;
        prune_note = match report {
            Ok(r) => format!(
                "kept {}, forgot {}, marked {} pack(s), deleted {} pack(s)",
                r.kept.len(),
                r.forgotten.len(),
                r.packs_marked,
                r.packs_deleted
            ),
            Err(e) => format!("prune failed: {e}"),
        };
    }
    Ok((backup_node, resp, prune_note))
}
