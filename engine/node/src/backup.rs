//! Backups on a node: opening a repository by URL, and the node's replica
//! as a backup source (a consistent view at one applied index).

use std::sync::Arc;

use sen_backup::backup::{SourcePosition, StateSource};
use sen_backup::format::{DbSummary, SiteSummary};
use sen_backup::{LocalStore, ObjectStore, RepoError};
use sen_content::StoredChunk;
use sen_store::backup::{BACKUP_TABLES, ReadView};

/// Open the object store a repository URL names:
/// `file:///absolute/path` or `s3://bucket[/prefix]`.
pub async fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>, RepoError> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(RepoError::Usage(format!(
                "repository URL {url:?}: a file repository needs an absolute path, as in file:///var/backups/sen"
            )));
        }
        return Ok(Arc::new(LocalStore::new(path)?));
    }
    if url.starts_with("s3://") {
        return open_s3(url).await;
    }
    Err(RepoError::Usage(format!(
        "repository URL {url:?} is not supported: use file:///absolute/path or s3://bucket/prefix"
    )))
}

/// An S3 repository: endpoint, region, credentials and path style come
/// from the standard AWS environment/profile chain (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_PROFILE`) and `SEN_S3_PATH_STYLE`.
async fn open_s3(url: &str) -> Result<Arc<dyn ObjectStore>, RepoError> {
    let store = sen_backup_s3::S3Store::open(url, sen_backup_s3::S3Options::default()).await?;
    Ok(Arc::new(store))
}

/// A node's replica, seen through one consistent view.
pub struct ViewSource<'a, 'v> {
    pub view: &'a ReadView<'v>,
    pub node_id: u64,
}

fn src(e: sen_store::StoreError) -> RepoError {
    RepoError::Source(e.to_string())
}

impl ViewSource<'_, '_> {
    /// Where the view stands (computes the state digest: one pass).
    pub fn position_checked(&self) -> Result<SourcePosition, RepoError> {
        let applied = self.view.applied().map_err(src)?;
        let cluster_id = self
            .view
            .cluster_id()
            .map_err(src)?
            .ok_or_else(|| RepoError::Usage("this node holds no cluster state yet: nothing to back up".into()))?;
        Ok(SourcePosition {
            cluster_id: cluster_id.to_string(),
            raft_index: applied.map_or(0, |l| l.index),
            raft_term: applied.map_or(0, |l| l.leader_id.term),
            node_id: self.node_id,
            state_digest: self.view.digest().map_err(src)?,
        })
    }
}

/// [`ViewSource`] with its position computed once.
pub struct NodeSource<'a, 'v> {
    pub inner: ViewSource<'a, 'v>,
    pub position: SourcePosition,
}

impl StateSource for NodeSource<'_, '_> {
    fn position(&self) -> SourcePosition {
        self.position.clone()
    }

    fn tables(&self) -> Vec<String> {
        BACKUP_TABLES.iter().map(|s| (*s).to_owned()).collect()
    }

    fn scan(&self, table: &str, f: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), RepoError>) -> Result<(), RepoError> {
        self.inner
            .view
            .scan(table, &mut |k, v| f(k, v).map_err(ScanError))
            .map_err(|e: ScanError| e.0)
    }

    fn chunk(&self, id: &[u8; 32]) -> Result<Option<StoredChunk>, RepoError> {
        self.inner.view.chunk(id).map_err(src)
    }

    fn sites(&self) -> Result<Vec<SiteSummary>, RepoError> {
        Ok(self
            .inner
            .view
            .sites()
            .map_err(src)?
            .into_iter()
            .map(|s| SiteSummary {
                name: s.name,
                deployment: s.deployment,
                files: s.files,
                bytes: s.bytes,
            })
            .collect())
    }

    fn databases(&self) -> Result<Vec<DbSummary>, RepoError> {
        Ok(self
            .inner
            .view
            .databases()
            .map_err(src)?
            .into_iter()
            .map(|(name, s)| DbSummary {
                name,
                keys: s.keys,
                bytes: s.bytes,
            })
            .collect())
    }
}

/// Carries a repository error through the store's scan.
struct ScanError(RepoError);

impl From<sen_store::StoreError> for ScanError {
    fn from(e: sen_store::StoreError) -> Self {
        ScanError(src(e))
    }
}

impl From<RepoError> for ScanError {
    fn from(e: RepoError) -> Self {
        ScanError(e)
    }
}

// ---------------------------------------------------------------------------
// Taking a backup on this node (the gRPC handler and the scheduler).

use sen_backup::Repo;
use sen_backup::backup::{BackupOptions, BackupOutcome};

use crate::error::ApiError;
use crate::node::Node;

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
    let store = open_store(url).await.map_err(repo_err)?;
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
            let inner = ViewSource { view, node_id };
            let position = inner.position_checked()?;
            let source = NodeSource { inner, position };
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
    }
}

// ---------------------------------------------------------------------------
// Schedules: kept in the cluster (database `sen-system`), run by the leader.

/// The database holding the schedule and the record of every run.
pub const SYSTEM_DB: &str = "sen-system";
pub const SCHEDULE_KEY: &[u8] = b"backup/schedule";
pub const RUN_PREFIX: &str = "backup/run/";

/// A backup schedule (JSON in `sen-system/backup/schedule`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub version: u32,
    pub repo: String,
    /// Slot length: one backup per `every_ms` (slots are aligned to the
    /// Unix epoch, so `1h` runs at the top of each hour, UTC).
    pub every_ms: u64,
    /// Password file, read on the node that runs the backup (every node
    /// needs it at this path).
    #[serde(default)]
    pub password_file: Option<String>,
    #[serde(default)]
    pub keep: sen_backup::prune::KeepPolicy,
    /// Prune's grace period.
    #[serde(default)]
    pub prune_grace_ms: u64,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The record of one scheduled run (JSON in `sen-system/backup/run/<slot>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub slot: u64,
    pub slot_start_ms: u64,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub attempt: u32,
    /// The leader that claimed the slot, and its term.
    pub leader: u64,
    pub term: u64,
    /// The node that read its replica.
    pub node: u64,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub snapshot_id: String,
    pub raft_index: u64,
    pub bytes_total: u64,
    pub bytes_new: u64,
    pub chunks_new: u64,
    pub error: String,
    /// What the retention step did (`kept N, forgot M, …`), if any.
    pub prune: String,
}

pub fn run_key(slot: u64) -> Vec<u8> {
    format!("{RUN_PREFIX}{slot:020}").into_bytes()
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

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(node: &Node, key: &[u8]) -> Result<Option<(T, u64)>, ApiError> {
    let (rec, _) = node.state.get(SYSTEM_DB, key)?;
    match rec {
        None => Ok(None),
        Some(r) => serde_json::from_slice(&r.value)
            .map(|v| Some((v, r.mod_revision)))
            .map_err(|e| ApiError::Internal(format!("{SYSTEM_DB}/{}: {e}", String::from_utf8_lossy(key)))),
    }
}

async fn scheduler_tick(node: &Arc<Node>) -> Result<(), ApiError> {
    use sen_raft::{Compare, CompareOp, CompareTarget, Op, Outcome, Txn, TxnOp};
    let Some((schedule, _)) = read_json::<Schedule>(node, SCHEDULE_KEY)? else {
        return Ok(());
    };
    if schedule.every_ms == 0 {
        return Ok(());
    }
    let now = crate::node::now_ms();
    let slot = now / schedule.every_ms;
    let key = run_key(slot);
    let term = node.raft_metrics().current_term;
    let compare = match read_json::<RunRecord>(node, &key)? {
        None => CompareTarget::Exists(false),
        Some((r, rev)) if r.state == "running" && r.term < term && r.attempt < 2 => CompareTarget::ModRevision(rev),
        Some(_) => return Ok(()),
    };
    let attempt = match compare {
        CompareTarget::Exists(false) => 1,
        _ => 2,
    };
    let mut record = RunRecord {
        slot,
        slot_start_ms: slot * schedule.every_ms,
        state: "running".into(),
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
            value: serde_json::to_vec(&record).map_err(|e| ApiError::Internal(e.to_string()))?,
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
    record.ended_ms = crate::node::now_ms();
    match result {
        Ok((backup_node, r, prune)) => {
            record.state = "succeeded".into();
            record.node = backup_node;
            record.snapshot_id = r.snapshot_id;
            record.raft_index = r.raft_index;
            record.bytes_total = r.bytes_total;
            record.bytes_new = r.bytes_new;
            record.chunks_new = r.content_chunks_new;
            record.prune = prune;
        }
        Err(e) => {
            tracing::warn!(slot, "scheduled backup failed: {e}");
            record.state = "failed".into();
            record.error = e.to_string();
        }
    }
    let value = serde_json::to_vec(&record).map_err(|e| ApiError::Internal(e.to_string()))?;
    node.propose(
        None,
        Op::Put {
            db: SYSTEM_DB.into(),
            key,
            value,
        },
        budget,
    )
    .await?;
    Ok(())
}

/// Take the backup on a caught-up follower (else here), then prune.
async fn scheduled_backup(
    node: &Arc<Node>,
    schedule: &Schedule,
    slot: u64,
) -> Result<(u64, sen_proto::v1::CreateBackupResponse, String), ApiError> {
    let password = match &schedule.password_file {
        None => None,
        Some(p) => {
            let text = tokio::fs::read(p)
                .await
                .map_err(|e| ApiError::FailedPrecondition(format!("password file {p} on node {}: {e}", node.id)))?;
            let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
            Some(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
        }
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
        let channel = node
            .peers
            .channel(node.peers.resolve(Some(id), &addr), true)
            .map_err(crate::node::status_to_api)?;
        let mut client = sen_proto::v1::backup_client::BackupClient::new(channel);
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
        let store = open_store(&schedule.repo).await.map_err(repo_err)?;
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

use std::time::Duration;
