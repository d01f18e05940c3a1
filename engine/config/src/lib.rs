//! Node configuration: one TOML file, `SEN_*` environment overrides, and
//! flags for the common fields, applied in that order, then validated.
//!
//! Every field has a default that works for a single development node; the
//! reference is docs/configuration.md (keep it in sync with this file).
//! Unknown fields are an error, in the file and in the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sen_core::limits::Limits;
use serde::{Deserialize, Serialize};

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// This node's id: a positive integer, unique in the cluster, never
    /// reused. A data directory belongs to one id for life.
    pub id: u64,
    /// Where the node keeps its Raft log, state and snapshots.
    pub data_dir: PathBuf,
    /// gRPC listen address, for clients and for the other nodes.
    pub listen: String,
    /// The gRPC address other nodes and clients use to reach this node.
    /// Empty: the same as `listen` (which must then not be 0.0.0.0).
    pub advertise: String,
    /// HTTP listen address: /livez, /readyz, /metrics.
    pub http: String,
    pub raft: RaftConfig,
    pub server: ServerConfig,
    pub limits: Limits,
    pub log: LogConfig,
    pub network: NetworkConfig,
    pub content: ContentConfig,
    pub backup: BackupConfig,
    pub archive: ArchiveConfig,
    pub hooks: HooksConfig,
    pub incidents: IncidentsConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub drills: DrillsConfig,
    pub probe: ProbeConfig,
    pub reports: ReportsConfig,
    /// Run without TLS and without authentication on any address: every
    /// caller can do everything (for trusted test networks only). Without
    /// it, a node without `[tls]` listens on loopback addresses only.
    pub insecure: bool,
}

/// TLS for every listener (docs/security.md). Empty paths: no TLS, which
/// is allowed only on loopback addresses or with `insecure = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// The cluster CA certificate (PEM; several during a CA rotation).
    pub ca: PathBuf,
    /// This node's certificate (`sen certs init` / `sen certs node`).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Serve site content over TLS too (set false when a reverse proxy in
    /// front of the HTTP port terminates TLS).
    pub http: bool,
    /// How often to look for replaced certificate files (they are also
    /// reloaded on SIGHUP).
    #[serde(with = "humantime_serde")]
    pub reload_check: Duration,
    /// Longest TLS handshake before the connection is dropped.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            http: true,
            reload_check: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !(self.ca.as_os_str().is_empty() && self.cert.as_os_str().is_empty() && self.key.as_os_str().is_empty())
    }
}

/// Authentication limits and the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// Failed authentications allowed per client address per minute before
    /// its requests are refused for a while.
    pub failures_per_minute: u32,
    /// How long audit records are kept (default: 400 days, a year of
    /// monthly reports and then some).
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
    /// Audit records a node keeps in memory while the leader is away;
    /// beyond, new ones are counted as dropped (metric
    /// `sen_audit_dropped`) rather than growing without bound.
    pub audit_queue: usize,
    /// The only user whose client certificate may run the first `sen
    /// cluster init` (and so become the first cluster-admin).
    pub bootstrap_user: String,
    /// Writes (calls that change state) one caller may send to this node
    /// per second on average; beyond, `RESOURCE_EXHAUSTED`. 0: no limit.
    pub writes_per_second: u32,
    /// How many writes a caller may send at once above that rate.
    pub writes_burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            failures_per_minute: 20,
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            audit_queue: 10_000,
            bootstrap_user: "admin".into(),
            writes_per_second: 1000,
            writes_burst: 2000,
        }
    }
}

/// Role hooks: commands run when this node gains or loses leadership
/// (e.g. to move a virtual IP or start the portal's write-side service).
/// Each runs with `sh -c` and the environment `SEN_ROLE` (`leader`,
/// `step-down`, `follower`), `SEN_NODE_ID`, `SEN_TERM`, `SEN_LEADER_ID`,
/// `SEN_LEADER_ADDR`, `SEN_EVENT_AT_MS`. Hooks run one at a time, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HooksConfig {
    /// Run when this node becomes leader *and* holds a leader lease (a
    /// quorum acknowledged it within `lease`).
    pub on_leader: String,
    /// Run as soon as this node's leader lease lapses or it stops leading,
    /// before any other node can be elected.
    pub on_step_down: String,
    /// Run when this node follows a new leader.
    pub on_follower: String,
    /// A hook still running after this is killed (and recorded as failed).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Leader lease for fencing: the leader counts as active only while a
    /// quorum acknowledged it within this time. Must be shorter than
    /// `raft.election-timeout-max`, the time followers refuse to elect
    /// another leader after hearing from this one.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            on_leader: String::new(),
            on_step_down: String::new(),
            on_follower: String::new(),
            timeout: Duration::from_secs(10),
            lease: Duration::from_millis(150),
        }
    }
}

/// Automatic incident detection (the leader records incidents in the
/// cluster: `sen incident list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct IncidentsConfig {
    /// A voter or learner that has not acknowledged the leader for this
    /// long is recorded as unreachable.
    #[serde(with = "humantime_serde")]
    pub unreachable_after: Duration,
    /// A node unreachable for longer than this makes its incident serious
    /// (the cluster runs with less redundancy).
    #[serde(with = "humantime_serde")]
    pub node_down_serious_after: Duration,
    /// A leader change whose leaderless gap is longer than this is
    /// serious (the portal could not take writes).
    #[serde(with = "humantime_serde")]
    pub leaderless_serious_after: Duration,
    /// Serious incidents must be resolved within this time (R2: 24 h);
    /// open ones older than this are flagged as overdue.
    #[serde(with = "humantime_serde")]
    pub serious_limit: Duration,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            unreachable_after: Duration::from_secs(3),
            node_down_serious_after: Duration::from_secs(3600),
            leaderless_serious_after: Duration::from_secs(30),
            serious_limit: Duration::from_secs(24 * 3600),
        }
    }
}

/// The longest drill fault, whatever the configuration says.
pub const MAX_FAULT: Duration = Duration::from_secs(600);

/// Fault injection for failover drills (`sen drill`, docs/drills.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DrillsConfig {
    /// Accept `NodeOps/InjectFault` (crash, pause, isolate this node).
    /// Off by default: a production node refuses to be faulted unless its
    /// operators chose to run drills on it. `sen demo` turns it on.
    pub enabled: bool,
    /// Longest fault one call may inject (at most 10 minutes).
    #[serde(with = "humantime_serde")]
    pub max_fault_duration: Duration,
}

impl Default for DrillsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_fault_duration: Duration::from_secs(600),
        }
    }
}

/// The built-in black-box probe (docs/reports.md): every `interval` the node
/// makes a small write and a linearizable read through the cluster and
/// fetches each site's front page through its own HTTP listener; the
/// results, one state per minute, are kept in the cluster as availability
/// records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProbeConfig {
    /// Probe at all (a node that does not probe counts as "unknown").
    pub enabled: bool,
    /// Time between two rounds of probes (1s to 1m).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long one probe may take before it counts as failed (at most
    /// the interval).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Availability records older than this are deleted by the leader
    /// (default 25 months, so last year's same month stays comparable).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the node samples what it holds for the growth report
    /// (data directory, disk, sites, databases).
    #[serde(with = "humantime_serde")]
    pub growth_interval: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            retention: Duration::from_secs(760 * 24 * 3600),
            growth_interval: Duration::from_secs(600),
        }
    }
}

/// The dashboard (`/dashboard`) and the reports it offers for download
/// (docs/reports.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReportsConfig {
    /// The portal's time zone: times are shown, and months cut, there. An
    /// IANA name (`Asia/Ho_Chi_Minh`) or a fixed offset (`+07:00`);
    /// `utc-offset`, its earlier name, is still read.
    #[serde(alias = "utc-offset")]
    pub time_zone: String,
    /// The availability objective, in percent (e.g. 99.9).
    pub objective: f64,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            time_zone: "Asia/Ho_Chi_Minh".into(),
            objective: 99.9,
        }
    }
}

/// Scheduled backups (the schedule itself is kept in the cluster:
/// `sen backup schedule set`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackupConfig {
    /// How often the leader looks whether a scheduled backup is due.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Where this node may write backups: repository URLs, or directories
    /// (`file:///srv/backup/`) and buckets (`s3://bucket/prefix`) holding
    /// them. A backup anywhere else is refused before any object is
    /// written. Empty: the node takes no backups.
    pub allowed_repos: Vec<String>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(10),
            allowed_repos: Vec::new(),
        }
    }
}

/// The continuous archive declared in this file (docs/backup.md section
/// 10). The archive is one setting of the whole cluster, kept in the
/// cluster: `sen archive enable|disable` set it. A `repo` here turns it on
/// when the cluster has never had an archive setting (a new cluster whose
/// nodes all get the same file, as with configuration management); after
/// that the cluster's setting wins, and a difference is logged. Empty
/// `repo`: nothing is declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArchiveConfig {
    /// The repository to archive to (under `backup.allowed-repos`).
    pub repo: String,
    /// Its password file, on every node (empty: an unencrypted repository).
    pub password_file: PathBuf,
    /// The oldest acknowledged entry not yet archived is stored within
    /// this (100ms to 1m).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Entries the archive may fall behind before nodes purge their logs
    /// anyway (at least 1000).
    pub max_lag: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            repo: String::new(),
            password_file: PathBuf::new(),
            interval: Duration::from_secs(1),
            max_lag: 1_000_000,
        }
    }
}

/// Site content: serving, replication and garbage collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContentConfig {
    /// Virtual hosts: an HTTP `Host` (without port) served as a site's
    /// root, e.g. `vhosts = { "congbao.example.vn" = "congbao" }`. Every
    /// site is also served at `/sites/<site>/`.
    pub vhosts: std::collections::BTreeMap<String, String>,
    /// Most chunk bytes (stored size) replicated in one Raft entry; larger
    /// uploads are split into several entries.
    pub max_chunk_entry_bytes: usize,
    /// How often the leader collects unreferenced chunks.
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
    /// A chunk must have been unreferenced (or uploaded and never deployed)
    /// this long before it is deleted: longer than any push takes.
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
    /// `Content-Security-Policy` sent with every HTML page (site pages
    /// and the node's own), unless empty. The default forbids framing by
    /// other origins, plugins and `<base>` rewriting, and leaves scripts,
    /// styles and images to the site.
    pub csp: String,
    /// Reverse proxies (addresses or networks, `10.0.0.0/8`) whose
    /// `X-Forwarded-For` names the reader; from anyone else it is ignored.
    pub trusted_proxies: Vec<String>,
    /// Memory for files kept ready to serve (bytes; 0 turns the cache
    /// off). Bodies, keys and headers all count; the least recently served
    /// go first.
    pub cache_bytes: u64,
    /// Files larger than this are never cached: they stream from the
    /// store on every request. At most an eighth of `cache-bytes` counts.
    pub cache_max_file: u64,
}

/// The default `content.csp`.
pub const DEFAULT_CSP: &str = "frame-ancestors 'self'; object-src 'none'; base-uri 'self'";

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            vhosts: Default::default(),
            max_chunk_entry_bytes: 1024 * 1024,
            gc_interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(3600),
            csp: DEFAULT_CSP.to_owned(),
            trusted_proxies: Vec::new(),
            cache_bytes: 64 * 1024 * 1024,
            cache_max_file: 4 * 1024 * 1024,
        }
    }
}

/// How this node reaches its peers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkConfig {
    /// Dial these addresses instead of the peers' advertised ones, by node
    /// id: `peer-addresses = { "2" = "10.1.0.2:7001" }`. For networks where
    /// this node sees a peer under another address (NAT, a local proxy);
    /// the chaos harness uses it to put a fault-injecting proxy on every
    /// link.
    pub peer_addresses: std::collections::BTreeMap<String, String>,
}

impl NetworkConfig {
    /// The overrides keyed by node id (validated by `NodeConfig::validate`).
    pub fn peer_overrides(&self) -> std::collections::BTreeMap<u64, String> {
        self.peer_addresses
            .iter()
            .filter_map(|(k, v)| k.parse().ok().map(|id| (id, v.clone())))
            .collect()
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: 1,
            data_dir: PathBuf::from("sen-data"),
            listen: "127.0.0.1:7001".into(),
            advertise: String::new(),
            http: "127.0.0.1:8001".into(),
            raft: RaftConfig::default(),
            server: ServerConfig::default(),
            limits: Limits::default(),
            log: LogConfig::default(),
            network: NetworkConfig::default(),
            content: ContentConfig::default(),
            backup: BackupConfig::default(),
            archive: ArchiveConfig::default(),
            hooks: HooksConfig::default(),
            incidents: IncidentsConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            drills: DrillsConfig::default(),
            probe: ProbeConfig::default(),
            reports: ReportsConfig::default(),
            insecure: false,
        }
    }
}

/// Raft timing and log compaction. The timing defaults were chosen by
/// measurement (docs/benchmarks.md, "failover").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RaftConfig {
    /// How often the leader sends heartbeats.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A follower that hears nothing from the leader for the leader lease
    /// (= `election-timeout-max`) plus a random time between min and max
    /// starts an election.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Deadline of one AppendEntries, Vote or other peer call.
    #[serde(with = "humantime_serde")]
    pub rpc_timeout: Duration,
    /// Take a snapshot after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the latest snapshot, so a briefly
    /// lagging follower catches up from the log rather than a snapshot.
    pub keep_entries_after_snapshot: u64,
    /// Most entries in one AppendEntries.
    pub max_entries_per_append: u64,
    /// Most bytes of entries in one AppendEntries (one larger entry is
    /// still sent alone).
    pub max_append_bytes: usize,
    /// Snapshot files are streamed in chunks of this size.
    pub snapshot_chunk_bytes: usize,
    /// A snapshot transfer may take this long plus one second per
    /// `snapshot-min-rate-bytes` bytes before it is abandoned.
    #[serde(with = "humantime_serde")]
    pub snapshot_timeout: Duration,
    pub snapshot_min_rate_bytes: u64,
    /// Memtable size of the state DB.
    pub state_write_buffer_bytes: usize,
    /// RocksDB's memory on this node, both DBs together: memtables plus
    /// the block cache (index and filter blocks included).
    pub store_memory_bytes: usize,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(250),
            rpc_timeout: Duration::from_secs(2),
            snapshot_after_entries: 20_000,
            keep_entries_after_snapshot: 5_000,
            max_entries_per_append: 1_000,
            max_append_bytes: 4 * 1024 * 1024,
            snapshot_chunk_bytes: 1024 * 1024,
            snapshot_timeout: Duration::from_secs(60),
            snapshot_min_rate_bytes: 4 * 1024 * 1024,
            state_write_buffer_bytes: 64 * 1024 * 1024,
            store_memory_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Client-facing behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Deadline for a request whose client sent none.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest a follower waits for the leader when forwarding a request
    /// (never longer than the client's own deadline).
    #[serde(with = "humantime_serde")]
    pub forward_timeout: Duration,
    /// How long `cluster status` waits for each member.
    #[serde(with = "humantime_serde")]
    pub status_timeout: Duration,
    /// How long `cluster add-node` waits for a new node to catch up before
    /// making it a voter.
    #[serde(with = "humantime_serde")]
    pub catch_up_timeout: Duration,
    /// /readyz fails when this node's applied index is more than this many
    /// entries behind the leader's commit index.
    pub ready_max_lag: u64,
    /// On SIGTERM, a leader first hands leadership to a caught-up voter.
    pub transfer_leadership_on_shutdown: bool,
    /// Longest graceful-shutdown step (leadership transfer, draining
    /// requests) before moving on.
    #[serde(with = "humantime_serde")]
    pub shutdown_step_timeout: Duration,
    /// An HTTP client must send a request's headers within this long
    /// (HTTP/1: also the longest a kept-alive connection waits for the
    /// next request), or its connection is closed.
    #[serde(with = "humantime_serde")]
    pub http_header_timeout: Duration,
    /// An HTTP connection on which nothing is read or written for this
    /// long is closed.
    #[serde(with = "humantime_serde")]
    pub http_idle_timeout: Duration,
    /// Most HTTP connections open at once; more are closed on arrival.
    pub http_max_connections: usize,
    /// Threads that serve HTTP(S) connections, each with its own
    /// single-threaded runtime (a connection stays on one thread); by
    /// default one per CPU core; `0`: on the node's main runtime.
    pub http_threads: usize,
    /// Host names under which the node's own endpoints (`/livez`,
    /// `/readyz`, `/metrics`) answer, besides IP addresses and
    /// `localhost`. Under any other Host they are not found.
    pub admin_hosts: Vec<String>,
    /// Longest deadline a client may ask for (`grpc-timeout`); longer
    /// ones are cut to this.
    #[serde(with = "humantime_serde")]
    pub max_request_timeout: Duration,
    /// Free space kept on the data directory's file system: below it,
    /// client writes that add data are refused (the node stays up,
    /// read-only). At most `disk-reserve-percent` of the file system.
    pub disk_reserve_bytes: u64,
    /// The reserve's cap, as a percentage of the file system's size.
    pub disk_reserve_percent: u8,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            forward_timeout: Duration::from_secs(5),
            status_timeout: Duration::from_secs(1),
            catch_up_timeout: Duration::from_secs(300),
            ready_max_lag: 1_000,
            transfer_leadership_on_shutdown: true,
            shutdown_step_timeout: Duration::from_secs(3),
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            http_max_connections: 10_000,
            http_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            admin_hosts: Vec::new(),
            max_request_timeout: Duration::from_secs(600),
            disk_reserve_bytes: 2 << 30,
            disk_reserve_percent: 5,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `info,openraft=warn`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// A message repeated within this window is written once; the rest
    /// are counted and summarised in one line per window.
    #[serde(with = "humantime_serde")]
    pub repeat_window: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info,openraft=warn".into(),
            format: "text".into(),
            repeat_window: Duration::from_secs(60),
        }
    }
}

/// Values given as command-line flags (applied last).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub id: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub http: Option<String>,
    /// `--insecure`.
    pub insecure: bool,
}

/// The configuration could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Environment variables starting with `SEN_` that belong to the `sen`
/// client, not to the node configuration.
const CLIENT_ENV: &[&str] = &[
    "SEN_ENDPOINTS",
    "SEN_OUTPUT",
    "SEN_REPO",
    "SEN_REPO_PASSWORD_FILE",
    "SEN_TIMEOUT",
    "SEN_CONFIG",
    "SEN_LOG",
    "SEN_CA",
    "SEN_CERT",
    "SEN_KEY",
    "SEN_TOKEN",
    "SEN_TOKEN_FILE",
    "SEN_S3_PATH_STYLE",
];

impl NodeConfig {
    /// Load: defaults ← file (if any) ← `SEN_*` environment ← flags; then
    /// validate.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?),
            None => None,
        };
        let source = file.map(|p| p.display().to_string());
        Self::from_text(
            text.as_deref().map(|t| (source.as_deref().unwrap_or(""), t)),
            env,
            overrides,
        )
    }

    /// [`NodeConfig::load`] from the text of a configuration file (and the
    /// name it is reported under), without touching the file system.
    pub fn from_text(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some((path, text)) => {
                let t: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
                // Check the file alone first, so its errors name the file.
                t.clone().try_into::<NodeConfig>().map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
                t
            }
            None => toml::Table::new(),
        };
        let schema = toml::Table::try_from(NodeConfig::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("SEN_")).collect();
        env.sort();
        for (var, value) in env {
            if CLIENT_ENV.contains(&var.as_str()) {
                continue;
            }
            apply_env(&mut table, &schema, &var, &value)?;
        }
        let mut cfg: NodeConfig = table.try_into().map_err(|e: toml::de::Error| ConfigError::Parse {
            path: "(after SEN_* environment overrides)".into(),
            message: e.to_string(),
        })?;
        if let Some(v) = overrides.id {
            cfg.id = v;
        }
        if let Some(v) = &overrides.data_dir {
            cfg.data_dir = v.clone();
        }
        if let Some(v) = &overrides.listen {
            cfg.listen = v.clone();
        }
        if let Some(v) = &overrides.advertise {
            cfg.advertise = v.clone();
        }
        if let Some(v) = &overrides.http {
            cfg.http = v.clone();
        }
        if overrides.insecure {
            cfg.insecure = true;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The address other nodes use for this one.
    pub fn advertise_addr(&self) -> &str {
        if self.advertise.is_empty() {
            &self.listen
        } else {
            &self.advertise
        }
    }

    /// The HTTP address other machines use: `http`, with an unspecified
    /// host (0.0.0.0) replaced by the advertised gRPC host.
    pub fn advertise_http(&self) -> String {
        match self.http.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => {
                let host = self.advertise_addr().rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
                format!("{host}:{}", a.port())
            }
            _ => self.http.clone(),
        }
    }

    /// Largest node-to-node gRPC message, for sender and receiver alike:
    /// an AppendEntries of `raft.max-append-bytes` plus one entry as large
    /// as the largest request, with room for framing.
    pub fn raft_message_bytes(&self) -> usize {
        (self.raft.max_append_bytes + 2 * self.limits.max_request_bytes).max(64 * 1024 * 1024)
    }

    /// Reject settings that cannot work, with the fix in the message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.id == 0 {
            return bad("id must be a positive integer (set --id N or id = N)".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data-dir is empty (set --data-dir DIR)".into());
        }
        if http::HeaderValue::from_str(&self.content.csp).is_err() {
            return bad("content.csp must be one line of visible ASCII (an HTTP header value)".into());
        }
        if self.log.repeat_window < Duration::from_millis(100) {
            return bad("log.repeat-window must be at least 100ms".into());
        }
        let srv = &self.server;
        if srv.http_header_timeout.is_zero() || srv.http_idle_timeout.is_zero() || srv.http_max_connections == 0 {
            return bad(
                "server.http-header-timeout, server.http-idle-timeout and server.http-max-connections must be positive"
                    .into(),
            );
        }
        if srv.http_threads > 256 {
            return bad("server.http-threads must be at most 256 (0: serve HTTP on the main runtime)".into());
        }
        if srv.disk_reserve_percent > 50 {
            return bad("server.disk-reserve-percent must be at most 50".into());
        }
        if srv.max_request_timeout < srv.request_timeout.max(srv.catch_up_timeout) {
            return bad(format!(
                "server.max-request-timeout ({:?}) must be at least server.request-timeout ({:?}) and server.catch-up-timeout ({:?})",
                srv.max_request_timeout, srv.request_timeout, srv.catch_up_timeout
            ));
        }
        for repo in &self.backup.allowed_repos {
            if let Err(e) = sen_backup::location::Location::parse(repo) {
                return bad(format!("backup.allowed-repos: {e}"));
            }
        }
        let archive = &self.archive;
        if !archive.repo.is_empty() {
            if let Err(e) = sen_backup::location::Location::parse(&archive.repo) {
                return bad(format!("archive.repo: {e}"));
            }
            if archive.interval < Duration::from_millis(100) || archive.interval > Duration::from_secs(60) {
                return bad(format!(
                    "archive.interval must be between 100ms and 1m, not {:?}",
                    archive.interval
                ));
            }
            if archive.max_lag < 1000 {
                return bad("archive.max-lag must be at least 1000 entries".into());
            }
        }
        if self.drills.max_fault_duration.is_zero() || self.drills.max_fault_duration > MAX_FAULT {
            return bad(format!(
                "drills.max-fault-duration must be between 1ms and {:?}",
                MAX_FAULT
            ));
        }
        let probe = &self.probe;
        if probe.interval < Duration::from_secs(1) || probe.interval > Duration::from_secs(60) {
            return bad(format!(
                "probe.interval must be between 1s and 1m, not {:?}",
                probe.interval
            ));
        }
        if probe.timeout.is_zero() || probe.timeout > probe.interval {
            return bad(format!(
                "probe.timeout ({:?}) must be positive and at most probe.interval ({:?})",
                probe.timeout, probe.interval
            ));
        }
        if probe.retention < Duration::from_secs(24 * 3600) {
            return bad("probe.retention must be at least 1 day".into());
        }
        if probe.growth_interval < Duration::from_secs(1) || probe.growth_interval > Duration::from_secs(24 * 3600) {
            return bad(format!(
                "probe.growth-interval must be between 1s and 1d, not {:?}",
                probe.growth_interval
            ));
        }
        for p in &self.content.trusted_proxies {
            if p.parse::<ipnet::IpNet>().is_err() && p.parse::<std::net::IpAddr>().is_err() {
                return bad(format!(
                    "content.trusted-proxies: {p:?} is not an address or a network (e.g. 10.0.0.5 or 10.0.0.0/8)"
                ));
            }
        }
        if !(0.0..=100.0).contains(&self.reports.objective) {
            return bad(format!(
                "reports.objective must be a percentage between 0 and 100 (e.g. 99.9), not {}",
                self.reports.objective
            ));
        }
        if let Err(e) = sen_core::time::Zone::parse(&self.reports.time_zone) {
            return bad(format!("reports.time-zone: {e}"));
        }
        let listen: SocketAddr = match self.listen.parse() {
            Ok(a) => a,
            Err(_) => {
                return bad(format!("listen = {:?} is not HOST:PORT with a numeric IP", self.listen));
            }
        };
        if self.http.parse::<SocketAddr>().is_err() {
            return bad(format!("http = {:?} is not HOST:PORT with a numeric IP", self.http));
        }
        if self.tls.enabled() {
            for (what, p) in [("ca", &self.tls.ca), ("cert", &self.tls.cert), ("key", &self.tls.key)] {
                if p.as_os_str().is_empty() {
                    return bad(format!(
                        "[tls] {what} is empty: give ca, cert and key together (see `sen certs init`)"
                    ));
                }
            }
            if self.insecure {
                return bad("insecure = true contradicts [tls]: use one or the other".into());
            }
        } else if !self.insecure {
            for (what, addr) in [("listen", &self.listen), ("http", &self.http)] {
                let ip = addr.parse::<SocketAddr>().map(|a| a.ip());
                if ip.is_ok_and(|ip| !ip.is_loopback()) {
                    return bad(format!(
                        "{what} = {addr} is not a loopback address, and the node has no [tls]: configure [tls] ca/cert/key (`sen certs init`), or start with --insecure on a trusted network"
                    ));
                }
            }
        }
        if let Err(e) = sen_security::identity::valid_user_name(&self.auth.bootstrap_user) {
            return bad(format!("auth.bootstrap-user: {e}"));
        }
        if self.http == self.listen {
            return bad(format!(
                "http and listen are both {}; give them different ports",
                self.http
            ));
        }
        if self.advertise.is_empty() {
            if listen.ip().is_unspecified() || listen.port() == 0 {
                return bad(format!(
                    "listen = {} cannot be advertised to other nodes; set --advertise HOST:PORT",
                    self.listen
                ));
            }
        } else if !self.advertise.contains(':') {
            return bad(format!("advertise = {:?} must be HOST:PORT", self.advertise));
        }
        let r = &self.raft;
        if self.hooks.lease.is_zero() || self.hooks.lease >= r.election_timeout_max {
            return bad(format!(
                "hooks.lease ({:?}) must be positive and shorter than raft.election-timeout-max ({:?}), or two nodes could both run on_leader",
                self.hooks.lease, r.election_timeout_max
            ));
        }
        if self.hooks.timeout.is_zero() {
            return bad("hooks.timeout must be positive".into());
        }
        if r.heartbeat_interval.is_zero() {
            return bad("raft.heartbeat-interval must be positive".into());
        }
        if r.election_timeout_min <= r.heartbeat_interval * 2 {
            return bad(format!(
                "raft.election-timeout-min ({:?}) must be more than twice raft.heartbeat-interval ({:?}), or followers start elections while the leader is healthy",
                r.election_timeout_min, r.heartbeat_interval
            ));
        }
        if r.election_timeout_max <= r.election_timeout_min {
            return bad(format!(
                "raft.election-timeout-max ({:?}) must be greater than raft.election-timeout-min ({:?})",
                r.election_timeout_max, r.election_timeout_min
            ));
        }
        if r.snapshot_after_entries == 0 {
            return bad("raft.snapshot-after-entries must be positive".into());
        }
        if r.max_entries_per_append == 0 || r.max_append_bytes == 0 || r.snapshot_chunk_bytes == 0 {
            return bad(
                "raft.max-entries-per-append, raft.max-append-bytes and raft.snapshot-chunk-bytes must be positive"
                    .into(),
            );
        }
        if r.snapshot_chunk_bytes > 16 * 1024 * 1024 {
            return bad("raft.snapshot-chunk-bytes must be at most 16 MiB".into());
        }
        if r.store_memory_bytes < 16 * 1024 * 1024 {
            return bad(format!(
                "raft.store-memory-bytes ({}) must be at least 16777216 (16 MiB)",
                r.store_memory_bytes
            ));
        }
        if r.state_write_buffer_bytes == 0 || r.state_write_buffer_bytes > r.store_memory_bytes / 4 {
            return bad(format!(
                "raft.state-write-buffer-bytes ({}) must be positive and at most a quarter of raft.store-memory-bytes ({}): memtables share that memory; lower the first or raise the second",
                r.state_write_buffer_bytes, r.store_memory_bytes
            ));
        }
        let l = &self.limits;
        if l.max_request_bytes < l.max_value_bytes + l.max_key_bytes + 4096 {
            return bad(format!(
                "limits.max-request-bytes ({}) must exceed limits.max-value-bytes + limits.max-key-bytes + 4096 ({})",
                l.max_request_bytes,
                l.max_value_bytes + l.max_key_bytes + 4096
            ));
        }
        if l.max_scan_page_bytes == 0 || l.max_scan_page_bytes > 32 * 1024 * 1024 {
            return bad("limits.max-scan-page-bytes must be between 1 and 33554432 (32 MiB)".into());
        }
        if l.max_key_bytes == 0 || l.max_scan_page == 0 || l.max_txn_ops == 0 {
            return bad("limits.max-key-bytes, limits.max-scan-page and limits.max-txn-ops must be positive".into());
        }
        for (k, v) in &self.network.peer_addresses {
            if k.parse::<u64>().map_or(true, |id| id == 0) {
                return bad(format!(
                    "network.peer-addresses: key {k:?} must be a node id (a positive integer)"
                ));
            }
            if !v.contains(':') {
                return bad(format!("network.peer-addresses.{k} = {v:?} must be HOST:PORT"));
            }
        }
        for (host, site) in &self.content.vhosts {
            if host.chars().any(|c| c.is_ascii_uppercase()) {
                return bad(format!("content.vhosts: write the host name {host:?} in lower case"));
            }
            if sen_content::path::check_site_name(site).is_err() || host.is_empty() || host.contains(['/', ' ']) {
                return bad(format!(
                    "content.vhosts: {host:?} = {site:?} must map a host name to a site name"
                ));
            }
        }
        if self.content.max_chunk_entry_bytes < 1024 * 1024 || self.content.max_chunk_entry_bytes > 8 * 1024 * 1024 {
            return bad("content.max-chunk-entry-bytes must be between 1 MiB and 8 MiB".into());
        }
        if self.content.gc_interval.is_zero() {
            return bad("content.gc-interval must be positive".into());
        }
        if self.backup.check_interval < Duration::from_millis(100) {
            return bad("backup.check-interval must be at least 100ms".into());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad(format!("log.format = {:?}: use \"text\" or \"json\"", self.log.format));
        }
        Ok(())
    }

    /// The effective configuration as TOML (for `sen server --print-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Apply one `SEN_A__B_C=value` override: `__` separates sections, `_`
/// stands for `-`. The value's type follows the field's default.
fn apply_env(table: &mut toml::Table, schema: &toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        message,
    };
    let path: Vec<String> = var["SEN_".len()..]
        .split("__")
        .map(|p| p.to_ascii_lowercase().replace('_', "-"))
        .collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(err("malformed name; use SEN_FIELD or SEN_SECTION__FIELD".into()));
    }
    // Find the field's type in the schema.
    let mut s = schema;
    for (i, key) in path.iter().enumerate() {
        match s.get(key) {
            Some(toml::Value::Table(t)) if i + 1 < path.len() => s = t,
            Some(v) if i + 1 == path.len() => {
                let parsed = match v {
                    toml::Value::Integer(_) => value
                        .parse::<i64>()
                        .map(toml::Value::Integer)
                        .map_err(|_| err(format!("{value:?} is not an integer")))?,
                    toml::Value::Boolean(_) => value
                        .parse::<bool>()
                        .map(toml::Value::Boolean)
                        .map_err(|_| err(format!("{value:?} is not true or false")))?,
                    toml::Value::Float(_) => value
                        .parse::<f64>()
                        .map(toml::Value::Float)
                        .map_err(|_| err(format!("{value:?} is not a number")))?,
                    // Lists and maps are written as TOML inline values:
                    // SEN_BACKUP__ALLOWED_REPOS='["file:///srv/backup/"]'.
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        let kind = if v.is_array() {
                            "a TOML array like [\"a\", \"b\"]"
                        } else {
                            "a TOML inline table like { \"a\" = \"b\" }"
                        };
                        toml::from_str::<toml::Table>(&format!("v = {value}"))
                            .ok()
                            .and_then(|mut t| t.remove("v"))
                            .filter(|parsed| parsed.same_type(v))
                            .ok_or_else(|| err(format!("{value:?} is not {kind}")))?
                    }
                    _ => toml::Value::String(value.to_owned()),
                };
                let mut t = &mut *table;
                for k in &path[..path.len() - 1] {
                    let entry = t
                        .entry(k.clone())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    t = entry
                        .as_table_mut()
                        .ok_or_else(|| err(format!("{k} is not a section")))?;
                }
                t.insert(key.clone(), parsed);
                return Ok(());
            }
            _ => {
                return Err(err(format!(
                    "no configuration field {}; see docs/configuration.md",
                    path.join(".")
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let d = NodeConfig::default();
        d.validate().unwrap();
        let back: NodeConfig = toml::from_str(&d.to_toml()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sen.toml");
        std::fs::write(
            &f,
            r#"
id = 2
listen = "127.0.0.2:7000"
http = "127.0.0.2:8000"
[raft]
heartbeat-interval = "50ms"
snapshot-after-entries = 10
"#,
        )
        .unwrap();
        let cfg = NodeConfig::load(
            Some(&f),
            env(&[
                ("SEN_RAFT__SNAPSHOT_AFTER_ENTRIES", "77"),
                ("SEN_LISTEN", "127.0.0.2:7100"),
                ("SEN_ENDPOINTS", "ignored-client-var:1"),
                ("PATH", "/bin"),
            ]),
            &Overrides {
                listen: Some("127.0.0.2:7200".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.id, 2);
        assert_eq!(cfg.raft.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(cfg.raft.snapshot_after_entries, 77);
        assert_eq!(cfg.listen, "127.0.0.2:7200");
        assert_eq!(cfg.advertise_addr(), "127.0.0.2:7200");
    }

    /// Every leaf of the configuration, as (path, value) pairs.
    fn leaves(t: &toml::Table, prefix: &[String], out: &mut Vec<(Vec<String>, toml::Value)>) {
        for (k, v) in t {
            let mut path = prefix.to_vec();
            path.push(k.clone());
            match v {
                toml::Value::Table(inner) if !is_map_field(&path) => leaves(inner, &path, out),
                _ => out.push((path, v.clone())),
            }
        }
    }

    /// Fields whose value is a map (not a section).
    fn is_map_field(path: &[String]) -> bool {
        matches!(path.join(".").as_str(), "content.vhosts" | "network.peer-addresses")
    }

    fn schema_leaves() -> Vec<(Vec<String>, toml::Value)> {
        let schema = toml::Table::try_from(NodeConfig::default()).unwrap();
        let mut out = Vec::new();
        leaves(&schema, &[], &mut out);
        out
    }

    #[test]
    fn every_field_has_an_environment_override() {
        // Set every field through its SEN_* variable to a value other than
        // the default where the type allows, and read it back.
        for (path, default) in schema_leaves() {
            let var = format!(
                "SEN_{}",
                path.iter()
                    .map(|p| p.to_ascii_uppercase().replace('-', "_"))
                    .collect::<Vec<_>>()
                    .join("__")
            );
            let (text, expect) = match &default {
                toml::Value::Integer(i) => ((i + 1).to_string(), toml::Value::Integer(i + 1)),
                toml::Value::Boolean(b) => ((!b).to_string(), toml::Value::Boolean(!b)),
                toml::Value::String(s) => (s.clone(), default.clone()),
                toml::Value::Array(_) => ("[]".to_owned(), toml::Value::Array(vec![])),
                toml::Value::Table(_) => ("{}".to_owned(), toml::Value::Table(toml::Table::new())),
                other => (other.to_string(), other.clone()),
            };
            let mut table = toml::Table::new();
            let schema = toml::Table::try_from(NodeConfig::default()).unwrap();
            apply_env(&mut table, &schema, &var, &text).unwrap_or_else(|e| panic!("{var}: {e}"));
            let mut got = &toml::Value::Table(table.clone());
            for k in &path {
                got = &got[k.as_str()];
            }
            assert_eq!(got, &expect, "{var}");
            // The value must also deserialize into the configuration.
            table
                .try_into::<NodeConfig>()
                .unwrap_or_else(|e| panic!("{var}={text}: {e}"));
        }
    }

    #[test]
    fn list_and_map_overrides_are_toml_values() {
        let schema = toml::Table::try_from(NodeConfig::default()).unwrap();
        let mut t = toml::Table::new();
        let e = apply_env(&mut t, &schema, "SEN_CONTENT__VHOSTS", "congbao.example.vn")
            .unwrap_err()
            .to_string();
        assert!(e.contains("TOML inline table"), "{e}");
        apply_env(
            &mut t,
            &schema,
            "SEN_CONTENT__VHOSTS",
            r#"{ "congbao.example.vn" = "congbao" }"#,
        )
        .unwrap();
        let cfg: NodeConfig = t.try_into().unwrap();
        assert_eq!(cfg.content.vhosts["congbao.example.vn"], "congbao");
    }

    #[test]
    fn variables_of_other_parts_of_sen_are_left_alone() {
        let vars: Vec<(String, String)> = CLIENT_ENV.iter().map(|v| (v.to_string(), "x".to_string())).collect();
        NodeConfig::load(None, vars, &Overrides::default()).unwrap();
    }

    /// docs/configuration.md documents exactly the fields the node reads,
    /// and every TOML example in docs/ is a valid node configuration.
    #[test]
    fn the_documentation_matches_the_configuration() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let text = std::fs::read_to_string(docs.join("configuration.md")).unwrap();
        let mut documented = std::collections::BTreeSet::new();
        let mut section: Option<String> = None;
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                section = if h == "Top level" || h == "Insecure mode" {
                    Some(String::new())
                } else {
                    h.strip_prefix("`[")
                        .and_then(|r| r.strip_suffix("]`"))
                        .map(|name| format!("{name}."))
                };
                continue;
            }
            if let (Some(sec), Some(row)) = (&section, line.strip_prefix("| `"))
                && let Some((field, _)) = row.split_once('`')
            {
                documented.insert(format!("{sec}{field}"));
            }
        }
        let fields: std::collections::BTreeSet<String> =
            schema_leaves().into_iter().map(|(p, _)| p.join(".")).collect();
        let undocumented: Vec<_> = fields.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&fields).collect();
        assert!(
            undocumented.is_empty(),
            "fields missing from docs/configuration.md: {undocumented:?}"
        );
        assert!(
            unknown.is_empty(),
            "docs/configuration.md documents unknown fields: {unknown:?}"
        );

        let mut examples = 0;
        for entry in std::fs::read_dir(&docs).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for block in text.split("```toml\n").skip(1) {
                let toml_text = block.split("```").next().unwrap();
                let t: toml::Table = toml::from_str(toml_text)
                    .unwrap_or_else(|e| panic!("{}: example does not parse: {e}\n{toml_text}", path.display()));
                t.try_into::<NodeConfig>()
                    .unwrap_or_else(|e| panic!("{}: example is not a node configuration: {e}", path.display()));
                examples += 1;
            }
        }
        assert!(examples >= 3, "found only {examples} examples");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sen.toml");
        std::fs::write(&f, "id = 1\n[raft]\nheartbeat = \"1s\"\n").unwrap();
        let e = NodeConfig::load(Some(&f), vec![], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `heartbeat`") && e.contains("sen.toml"), "{e}");

        let e = NodeConfig::load(None, env(&[("SEN_RAFT__NOPE", "1")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SEN_RAFT__NOPE") && e.contains("no configuration field raft.nope"),
            "{e}"
        );

        let e = NodeConfig::load(None, env(&[("SEN_ID", "abc")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an integer"), "{e}");
    }

    #[test]
    fn invalid_settings_say_what_to_fix() {
        let mut c = NodeConfig::default();
        c.raft.election_timeout_min = Duration::from_millis(150);
        c.raft.heartbeat_interval = Duration::from_millis(100);
        assert!(c.validate().unwrap_err().to_string().contains("more than twice"));

        // The memtables must fit the store's memory.
        let mut c = NodeConfig::default();
        c.raft.store_memory_bytes = 128 * 1024 * 1024;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("raft.state-write-buffer-bytes") && e.contains("raft.store-memory-bytes"),
            "{e}"
        );
        c.raft.state_write_buffer_bytes = 32 * 1024 * 1024;
        c.validate().unwrap();
        c.raft.store_memory_bytes = 1024 * 1024;
        assert!(c.validate().unwrap_err().to_string().contains("at least 16777216"));

        // Plaintext only on loopback, unless insecure on purpose.
        let mut c = NodeConfig {
            listen: "0.0.0.0:7001".into(),
            advertise: "10.0.0.5:7001".into(),
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("not a loopback address") && e.contains("[tls]") && e.contains("--insecure"),
            "{e}"
        );
        c.insecure = true;
        c.advertise = String::new();
        assert!(c.validate().unwrap_err().to_string().contains("--advertise"));
        c.advertise = "10.0.0.5:7001".into();
        c.validate().unwrap();
        // TLS: all three files, and not together with insecure.
        c.tls.ca = "ca.pem".into();
        assert!(c.validate().unwrap_err().to_string().contains("[tls] cert is empty"));
        c.tls.cert = "node1.pem".into();
        c.tls.key = "node1.key".into();
        assert!(c.validate().unwrap_err().to_string().contains("contradicts"));
        c.insecure = false;
        c.validate().unwrap();

        let c = NodeConfig {
            id: 0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let mut c = NodeConfig::default();
        c.limits.max_value_bytes = 10 * 1024 * 1024;
        assert!(c.validate().unwrap_err().to_string().contains("max-request-bytes"));

        // [archive]: checked only when a repository is declared.
        let mut c = NodeConfig::default();
        c.archive.interval = Duration::ZERO;
        c.validate().unwrap();
        c.archive.repo = "file:///srv/sen-repo".into();
        assert!(c.validate().unwrap_err().to_string().contains("archive.interval"));
        c.archive.interval = Duration::from_millis(500);
        c.archive.max_lag = 10;
        assert!(c.validate().unwrap_err().to_string().contains("archive.max-lag"));
        c.archive.max_lag = 1000;
        c.validate().unwrap();
        c.archive.repo = "ftp://x".into();
        assert!(c.validate().unwrap_err().to_string().contains("archive.repo"));
    }
}
