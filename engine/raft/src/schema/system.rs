//! The control plane kept in the cluster: database `sen-system`.
//!
//! Drain flags, planned-transfer and active-drill markers, the incident
//! log, drill reports, the backup schedule and the record of every
//! scheduled run. Each is a typed record stored as JSON (readable with
//! `sen kv get sen-system …` when debugging) that carries a `version`;
//! [`SystemRecord::from_json`] refuses a version newer than this build
//! knows instead of misreading it. Keys are built only by the functions
//! here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The database holding the control plane.
pub const SYSTEM_DB: &str = "sen-system";

/// Database names beginning with this belong to the cluster (the control
/// plane): the public key-value API refuses them.
pub const RESERVED_DB_PREFIX: &str = "sen-";

/// Whether `db` is one of the cluster's own databases.
pub fn is_reserved_db(db: &str) -> bool {
    db.starts_with(RESERVED_DB_PREFIX)
}

/// A control-plane record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SystemRecordError {
    #[error("{what} in {SYSTEM_DB} is not valid JSON of its kind: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(
        "{what} in {SYSTEM_DB} has version {found}, but this build of Sen understands versions up to {supported}; upgrade this node"
    )]
    UnknownVersion {
        what: &'static str,
        found: u32,
        supported: u32,
    },
}

/// A typed, versioned control-plane record.
pub trait SystemRecord: Serialize + DeserializeOwned {
    /// What it is, in error messages.
    const WHAT: &'static str;
    /// The newest version this build writes and reads.
    const VERSION: u32;

    /// The stored JSON.
    fn to_json(&self) -> Result<Vec<u8>, SystemRecordError> {
        serde_json::to_vec(self).map_err(|source| SystemRecordError::Json {
            what: Self::WHAT,
            source,
        })
    }

    /// Read stored JSON. A record without a `version` is version 1 (older
    /// releases wrote some records without one); a newer version is
    /// refused.
    fn from_json(bytes: &[u8]) -> Result<Self, SystemRecordError> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default = "v1")]
            version: u32,
        }
        let json = |source| SystemRecordError::Json {
            what: Self::WHAT,
            source,
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(json)?;
        if probe.version > Self::VERSION {
            return Err(SystemRecordError::UnknownVersion {
                what: Self::WHAT,
                found: probe.version,
                supported: Self::VERSION,
            });
        }
        serde_json::from_slice(bytes).map_err(json)
    }
}

fn v1() -> u32 {
    1
}

// ---------------------------------------------------------------------------
// Drain and planned leadership transfers.

/// Present ⇔ node `id` is drained (it does not campaign for leadership).
/// The value is the time it was drained (ms, decimal text).
pub fn drained_key(id: u64) -> Vec<u8> {
    format!("node/{id}/drained").into_bytes()
}

/// Written before a planned leadership transfer, so the new leader records
/// the change as planned.
pub const PLANNED_TRANSFER_KEY: &[u8] = b"ha/planned-transfer";

/// A leadership transfer about to happen on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTransfer {
    #[serde(default = "v1")]
    pub version: u32,
    pub from: u64,
    pub to: u64,
    pub at_ms: u64,
    /// `transfer-leader`, `drain` or `shutdown`.
    pub reason: String,
}

impl SystemRecord for PlannedTransfer {
    const WHAT: &'static str = "the planned-transfer marker";
    const VERSION: u32 = 1;
}

// ---------------------------------------------------------------------------
// Drills.

/// Written by `sen drill run` while a drill runs: incidents it causes are
/// tagged with the drill, and its expected consequences are ordinary.
pub const ACTIVE_DRILL_KEY: &[u8] = b"ha/active-drill";

/// The drill running now ([`ACTIVE_DRILL_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveDrill {
    #[serde(default = "v1")]
    pub version: u32,
    pub id: String,
    pub target: u64,
    /// The drill's probes end by then (plus a minute of slack).
    pub until_ms: u64,
}

impl SystemRecord for ActiveDrill {
    const WHAT: &'static str = "the active-drill marker";
    const VERSION: u32 = 1;
}

/// Stored drill reports: `drill/<id>`.
pub const DRILL_PREFIX: &str = "drill/";

pub fn drill_key(id: &str) -> Vec<u8> {
    format!("{DRILL_PREFIX}{id}").into_bytes()
}

/// A stored failover-drill report (`sen drill run`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub version: u32,
    pub id: String,
    pub scenario: String,
    pub target: u64,
    pub started_at_ms: u64,
    pub fault_ms: u64,
    pub probe_rate: f64,
    pub nodes: Vec<u64>,
    pub leader_before: u64,
    pub leader_after: u64,
    /// Milliseconds after `started_at_ms`.
    pub timeline: DrillTimeline,
    /// Longest interval in the drill with no acknowledged probe write.
    pub rto_ms: u64,
    /// Longest interval in the drill in which no node served the probe file.
    pub read_gap_ms: u64,
    pub read_gap_by_node_ms: BTreeMap<u64, u64>,
    pub writes_attempted: u64,
    pub writes_acknowledged: u64,
    pub writes_failed: u64,
    /// Failed or timed-out writes found applied afterwards.
    pub writes_unknown_applied: u64,
    pub reads_attempted: u64,
    pub reads_ok: u64,
    /// Acknowledged writes missing afterwards (RPO): must be 0.
    pub lost_writes: u64,
    /// Acknowledged writes missing on a node after it caught up.
    pub missing_by_node: BTreeMap<u64, u64>,
    pub objectives: DrillObjectives,
    pub passed: bool,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub incident_id: u64,
}

impl SystemRecord for DrillReport {
    const WHAT: &'static str = "a drill report";
    const VERSION: u32 = 1;
}

/// What happened when, in ms after the drill began.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillTimeline {
    pub fault_start_ms: u64,
    pub first_failed_request_ms: Option<u64>,
    pub new_leader_elected_ms: Option<u64>,
    pub first_write_after_failure_ms: Option<u64>,
    pub fault_end_ms: u64,
    pub target_caught_up_ms: Option<u64>,
    pub probes_stopped_ms: u64,
}

/// What a drill must achieve to pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillObjectives {
    pub rto_ms: u64,
    pub read_gap_ms: u64,
    pub lost_writes: u64,
}

// ---------------------------------------------------------------------------
// Incidents (R2, R11).

/// Incidents: `incident/<id, 8 digits>`.
pub const INCIDENT_PREFIX: &str = "incident/";
/// The next incident id (decimal text), claimed with compare-and-set so an
/// old and a new leader never hand out the same id.
pub const INCIDENT_COUNTER_KEY: &[u8] = b"incident/next";

pub fn incident_key(id: u64) -> Vec<u8> {
    format!("{INCIDENT_PREFIX}{id:08}").into_bytes()
}

pub const ORDINARY: &str = "ordinary";
pub const SERIOUS: &str = "serious";

/// Incident kinds.
pub mod kind {
    pub const LEADER_CHANGE: &str = "leader-change";
    pub const NODE_UNREACHABLE: &str = "node-unreachable";
    pub const QUORUM_LOST: &str = "quorum-lost";
    pub const HOOK_FAILED: &str = "hook-failed";
    pub const DRILL: &str = "drill";
    pub const RECOVERY: &str = "recovery";
    /// The continuous archive fell more than `archive.max-lag` entries
    /// behind, so logs are purged past it (a gap in the archive).
    pub const ARCHIVE_BEHIND: &str = "archive-behind";
}

/// One incident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub version: u32,
    /// Assigned by the leader when recorded (0 before).
    #[serde(default)]
    pub id: u64,
    /// One of [`kind`].
    pub kind: String,
    /// [`ORDINARY`] or [`SERIOUS`] (R2).
    pub severity: String,
    pub start_ms: u64,
    /// `None` while the incident is open.
    #[serde(default)]
    pub end_ms: Option<u64>,
    /// What the node that detected it saw.
    pub auto_cause: String,
    /// The same in Vietnamese (empty in records of earlier releases and in
    /// incidents recorded by hand: readers then get `auto_cause`).
    #[serde(default)]
    pub auto_cause_vi: String,
    #[serde(default)]
    pub nodes: Vec<u64>,
    pub detected_by: u64,
    #[serde(default)]
    pub term: u64,
    /// A related record, e.g. the drill id.
    #[serde(default)]
    pub reference: String,
    /// Operator notes.
    #[serde(default)]
    pub cause: String,
    #[serde(default)]
    pub remedy: String,
    #[serde(default)]
    pub annotated_by: String,
    #[serde(default)]
    pub annotated_at_ms: u64,
}

/// An incident's automatic cause for a reader of Vietnamese (`vi`) or
/// English: the Vietnamese text when the node wrote one, else the English.
pub fn auto_cause_in<'a>(en: &'a str, vi_text: &'a str, vi: bool) -> &'a str {
    if vi && !vi_text.is_empty() { vi_text } else { en }
}

impl SystemRecord for Incident {
    const WHAT: &'static str = "an incident";
    const VERSION: u32 = 1;
}

impl Incident {
    pub fn new(kind: &str, severity: &str, start_ms: u64, auto_cause: String, nodes: Vec<u64>, by: u64) -> Self {
        Self {
            version: Self::VERSION,
            kind: kind.into(),
            severity: severity.into(),
            start_ms,
            auto_cause,
            nodes,
            detected_by: by,
            ..Default::default()
        }
    }

    /// The same incident with its automatic cause in Vietnamese too.
    pub fn with_vi(mut self, auto_cause_vi: String) -> Self {
        self.auto_cause_vi = auto_cause_vi;
        self
    }

    /// Add what was seen later to the automatic cause, in both languages
    /// (`"; node 3 answered again"`).
    pub fn add_to_cause(&mut self, en: &str, vi: &str) {
        self.auto_cause.push_str(en);
        if !self.auto_cause_vi.is_empty() {
            self.auto_cause_vi.push_str(vi);
        }
    }

    /// The automatic cause in Vietnamese when known (`vi`), else as written.
    pub fn auto_cause_in(&self, vi: bool) -> &str {
        auto_cause_in(&self.auto_cause, &self.auto_cause_vi, vi)
    }

    pub fn duration_ms(&self, now: u64) -> u64 {
        self.end_ms.unwrap_or(now).saturating_sub(self.start_ms)
    }

    /// Serious, still open, and open longer than `limit` (R2: 24 h).
    pub fn overdue(&self, now: u64, limit: Duration) -> bool {
        self.severity == SERIOUS && self.end_ms.is_none() && self.duration_ms(now) > limit.as_millis() as u64
    }

    /// An incident recorded while `drill` ran is tagged with it, and what a
    /// drill provokes on purpose (leader changes, unreachable members, a
    /// lost quorum) is ordinary, not an outage.
    pub fn tag_with_drill(&mut self, drill: &ActiveDrill) {
        if self.kind == kind::DRILL || !self.reference.is_empty() || self.start_ms > drill.until_ms + 60_000 {
            return;
        }
        self.auto_cause = format!("during failover drill {}: {}", drill.id, self.auto_cause);
        self.reference = drill.id.clone();
        if matches!(
            self.kind.as_str(),
            kind::LEADER_CHANGE | kind::NODE_UNREACHABLE | kind::QUORUM_LOST
        ) {
            self.severity = ORDINARY.into();
        }
    }
}

// ---------------------------------------------------------------------------
// Backup schedule and runs.

pub const BACKUP_SCHEDULE_KEY: &[u8] = b"backup/schedule";
/// Scheduled runs: `backup/run/<slot, 20 digits>`.
pub const BACKUP_RUN_PREFIX: &str = "backup/run/";

pub fn backup_run_key(slot: u64) -> Vec<u8> {
    format!("{BACKUP_RUN_PREFIX}{slot:020}").into_bytes()
}

/// How many snapshots to keep per period (restic's semantics: the newest
/// snapshot of each of the last N hours/days/… that have one). Periods are
/// UTC. A snapshot kept by any rule is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl KeepPolicy {
    /// No rule set: keep everything (no prune).
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

/// The backup schedule, run by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub keep: KeepPolicy,
    /// Prune's grace period.
    #[serde(default)]
    pub prune_grace_ms: u64,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl SystemRecord for Schedule {
    const WHAT: &'static str = "the backup schedule";
    const VERSION: u32 = 1;
}

/// States of a scheduled run.
pub mod run_state {
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
}

/// The record of one scheduled run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    #[serde(default = "v1")]
    pub version: u32,
    pub slot: u64,
    pub slot_start_ms: u64,
    /// One of [`run_state`].
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
    /// The repository's size after the run (0 from runs before it was
    /// measured).
    #[serde(default)]
    pub repo_bytes: u64,
    /// Free and total bytes of the storage under the repository after the
    /// run (0: not known — an S3 bucket, or a run before it was measured).
    #[serde(default)]
    pub repo_free_bytes: u64,
    #[serde(default)]
    pub repo_total_bytes: u64,
}

impl Default for RunRecord {
    fn default() -> Self {
        Self {
            version: Self::VERSION,
            slot: 0,
            slot_start_ms: 0,
            state: String::new(),
            attempt: 0,
            leader: 0,
            term: 0,
            node: 0,
            started_ms: 0,
            ended_ms: 0,
            snapshot_id: String::new(),
            raft_index: 0,
            bytes_total: 0,
            bytes_new: 0,
            chunks_new: 0,
            error: String::new(),
            prune: String::new(),
            repo_bytes: 0,
            repo_free_bytes: 0,
            repo_total_bytes: 0,
        }
    }
}

impl SystemRecord for RunRecord {
    const WHAT: &'static str = "a scheduled backup run";
    const VERSION: u32 = 1;
}

// ---------------------------------------------------------------------------
// Access control (users, grants, tokens), private sites, the audit log.

/// Every access-control record is under this prefix (nodes cache them
/// until a write under it is applied).
pub const AUTH_PREFIX: &[u8] = b"auth/";

/// Site flags (`site/<name>/private`), cached like [`AUTH_PREFIX`].
pub const SITE_FLAGS_PREFIX: &[u8] = b"site/";

/// Whether a `sen-system` key is one the nodes' access caches depend on.
pub fn is_access_key(key: &[u8]) -> bool {
    key.starts_with(AUTH_PREFIX) || key.starts_with(SITE_FLAGS_PREFIX)
}

/// The key tokens are hashed with: 32 random bytes made when the cluster
/// is initialised (hex in [`AuthKey`]).
pub const AUTH_KEY_KEY: &[u8] = b"auth/token-key";

/// Users: `auth/user/<name>`.
pub const USER_PREFIX: &str = "auth/user/";

pub fn user_key(name: &str) -> Vec<u8> {
    format!("{USER_PREFIX}{name}").into_bytes()
}

/// Tokens: `auth/token/<id>`.
pub const TOKEN_PREFIX: &str = "auth/token/";

pub fn token_key(id: &str) -> Vec<u8> {
    format!("{TOKEN_PREFIX}{id}").into_bytes()
}

/// The token-hashing key of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthKey {
    pub version: u32,
    /// 32 bytes, hex.
    pub key: String,
}

impl SystemRecord for AuthKey {
    const WHAT: &'static str = "the token key";
    const VERSION: u32 = 1;
}

/// A user and the roles granted to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub version: u32,
    pub name: String,
    pub grants: Vec<sen_core::auth::Grant>,
    pub created_at_ms: u64,
    /// Who created it (a user name; `cluster init` for the first admin).
    pub created_by: String,
    pub updated_at_ms: u64,
}

impl SystemRecord for UserRecord {
    const WHAT: &'static str = "a user";
    const VERSION: u32 = 1;
}

/// A bearer token (only the keyed hash of its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub version: u32,
    /// The public half of the token, `sen_<id>_…`.
    pub id: String,
    pub user: String,
    /// A label the owner chose (`--name`).
    pub name: String,
    /// blake3 keyed hash of the secret, hex.
    pub hash: String,
    pub created_at_ms: u64,
    pub created_by: String,
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    #[serde(default)]
    pub revoked_at_ms: Option<u64>,
}

impl SystemRecord for TokenRecord {
    const WHAT: &'static str = "a token";
    const VERSION: u32 = 1;
}

/// Present ⇔ site `name` is private: its HTTP content needs a reader.
pub fn site_private_key(name: &str) -> Vec<u8> {
    let mut k = SITE_FLAGS_PREFIX.to_vec();
    k.extend_from_slice(format!("{name}/private").as_bytes());
    k
}

/// The audit log: `audit/<at_ms, 16 digits>-<node, 6>-<seq, 10>`, in time
/// order, unique per node.
pub const AUDIT_PREFIX: &str = "audit/";

pub fn audit_key(at_ms: u64, node: u64, seq: u64) -> Vec<u8> {
    format!("{AUDIT_PREFIX}{at_ms:016}-{node:06}-{seq:010}").into_bytes()
}

/// The first audit key at or after `at_ms`.
pub fn audit_from(at_ms: u64) -> Vec<u8> {
    format!("{AUDIT_PREFIX}{at_ms:016}").into_bytes()
}

/// One audited request: every change and every refusal. Never holds a
/// secret: a token appears by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub version: u32,
    pub at_ms: u64,
    /// The user, or `node N`, `anonymous`, `insecure`.
    pub who: String,
    /// The token id, when a token was used.
    #[serde(default)]
    pub token: String,
    /// `/sen.v1.Kv/Put`, `GET /sites/…`.
    pub method: String,
    /// What it was about (`db:cong-bao`, `site:portal`, `user:x`, `cluster`).
    #[serde(default)]
    pub resource: String,
    /// `ok`, `denied`, `unauthenticated` or `error`.
    pub result: String,
    /// The gRPC (or HTTP) status code.
    pub code: String,
    /// Why it was refused or failed.
    #[serde(default)]
    pub message: String,
    /// The client's address.
    pub from: String,
    /// The node that received it (and forwarded it, if it did).
    pub node: u64,
}

impl SystemRecord for AuditRecord {
    const WHAT: &'static str = "an audit record";
    const VERSION: u32 = 1;
}

// ---------------------------------------------------------------------------
// Quotas.

/// Quotas: `quota/database/<name>` and `quota/site/<name>`.
pub const QUOTA_PREFIX: &str = "quota/";

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaKind {
    /// A key-value database: the sum of its key and value lengths.
    Database,
    /// A site: the logical size of its current deployment (the sum of its
    /// files' lengths).
    Site,
}

impl QuotaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Database => "database",
            QuotaKind::Site => "site",
        }
    }
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn quota_key(kind: QuotaKind, name: &str) -> Vec<u8> {
    format!("{QUOTA_PREFIX}{kind}/{name}").into_bytes()
}

/// The most a database or site may hold. Checked when a write is applied
/// (so every node decides the same): a write that would take the database
/// or site above its quota *and* make it larger is refused as a whole;
/// deletes and writes that shrink it always pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRecord {
    pub version: u32,
    pub kind: QuotaKind,
    pub name: String,
    pub max_bytes: u64,
    pub set_by: String,
    pub set_at_ms: u64,
}

impl SystemRecord for QuotaRecord {
    const WHAT: &'static str = "a quota";
    const VERSION: u32 = 1;
}

/// Probe paths: `probe-path/<site>` (not under `probe/`, the beats' prefix), a [`ProbePathRecord`].
pub const PROBE_PATH_PREFIX: &str = "probe-path/";

pub fn probe_path_key(site: &str) -> Vec<u8> {
    format!("{PROBE_PATH_PREFIX}{site}").into_bytes()
}

/// The page of a site the nodes' probes fetch instead of its front page
/// (`sen site set NAME --probe-path /PATH`). With one set, the site is up
/// only when that page answers below 400 (401 and 403 of a private site
/// count as up: the probe carries no token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbePathRecord {
    pub version: u32,
    pub site: String,
    /// Absolute within the site: `/lich-cong-tac/index.html`.
    pub path: String,
    pub set_by: String,
    pub set_at_ms: u64,
}

impl SystemRecord for ProbePathRecord {
    const WHAT: &'static str = "a site's probe path";
    const VERSION: u32 = 1;
}

/// Check a probe path: absolute, at most 512 bytes, printable, no `..`
/// segment, no query or fragment. The error says what to write instead.
pub fn check_probe_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "probe path {path:?} {why}; write an absolute path within the site, such as /index.html"
        ))
    };
    if !path.starts_with('/') {
        return bad("does not start with /");
    }
    if path.len() > 512 {
        return bad("is longer than 512 bytes");
    }
    if path
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#' || c == '\\')
    {
        return bad("holds a space, a control character, \\, ? or #");
    }
    if path.split('/').any(|seg| seg == "..") {
        return bad("has a .. segment");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Availability measured by the probes.

pub mod availability;
pub use availability::{AVAILABILITY_PREFIX, AvailabilityRecord, Minute};
pub mod archive;
pub mod growth;
pub mod traffic;
pub mod verification;
pub use traffic::{READERS_PREFIX, Readers, ReadersRecord, TRAFFIC_PREFIX, TrafficRecord};
pub use verification::{VERIFY_PREFIX, Verification, verify_kind};

/// The last write probe of a node that got through (`probe/beat/<node>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeBeat {
    pub version: u32,
    pub node: u64,
    pub at_ms: u64,
}

impl SystemRecord for ProbeBeat {
    const WHAT: &'static str = "a probe beat";
    const VERSION: u32 = 1;
}

#[cfg(test)]
mod tests;
