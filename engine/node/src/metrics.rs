//! Prometheus metrics (`GET /metrics` on the HTTP port).
//!
//! Raft gauges are refreshed from openraft's metrics watch channel by
//! [`watch_raft`]; request and proposal metrics are recorded by the
//! handlers. Names and meanings are listed in docs/operations.md.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sen_core::NodeId;
use tokio_util::sync::CancellationToken;

use crate::types::Raft;
use sen_raft::RaftMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FollowerLabel {
    pub follower: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabel {
    pub part: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    pub role: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

/// 10 µs .. ~0.3 s: the steps of one write.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 16))
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Every metric a node exports.
pub struct Metrics {
    registry: Registry,
    pub term: Gauge,
    pub leader_id: Gauge,
    pub is_leader: Gauge,
    pub last_log_index: Gauge,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub snapshot_index: Gauge,
    pub purged_index: Gauge,
    pub replication_lag: Family<FollowerLabel, Gauge>,
    pub store_memory: Family<PartLabel, Gauge>,
    pub proposals: Family<ResultLabel, Counter>,
    pub proposal_seconds: Histogram,
    pub elections_started: Counter,
    pub leader_changes: Counter,
    pub hook_runs: Family<HookLabel, Counter>,
    pub requests: Family<RequestLabel, Counter>,
    pub request_seconds: Family<MethodLabel, Histogram, fn() -> Histogram>,
    /// The steps of the write path (docs/operations.md, "Where a write's
    /// time goes").
    pub stage_seconds: Family<StageLabel, Histogram, fn() -> Histogram>,
    pub http_requests: Family<SiteCodeLabel, Counter>,
    pub http_seconds: Family<SiteLabel, Histogram, fn() -> Histogram>,
    /// Audit records dropped because the queue was full.
    pub audit_dropped: Gauge,
    /// Requests refused by the authorization layer, by reason.
    pub auth_refused: Family<ResultLabel, Counter>,
    pub http_connections_refused: Counter,
    pub disk_free_bytes: Gauge,
    pub disk_low: Gauge,
    /// Stored bytes of uploaded chunks no deployment uses.
    pub undeployed_bytes: Gauge,
    /// Certificate reloads, by result.
    pub tls_reloads: Family<ResultLabel, Counter>,
    /// When this node's certificate expires (Unix seconds; 0 = no TLS).
    pub cert_not_after: Gauge,
    /// Built-in probes run, by target and result.
    pub probes: Family<ProbeLabel, Counter>,
    /// From the control plane (`status_gauges`): the last scheduled backup
    /// that succeeded (Unix seconds; 0 = none), whether the last finished
    /// run failed, the schedule's slot (seconds; 0 = none).
    pub backup_last_success: Gauge,
    pub backup_last_failed: Gauge,
    pub backup_every: Gauge,
    /// Open incidents by severity, and the age of the oldest serious one.
    pub incidents_open: Family<SeverityLabel, Gauge>,
    pub oldest_open_serious: Gauge,
    /// The continuous archive on the shipping node: segments stored, and
    /// how far behind the applied log it is (seconds).
    pub archive_segments: Counter,
    pub archive_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The served-file cache (`crate::file_cache`).
    pub content_cache: crate::file_cache::CacheMetrics,
    /// Handles of `http_requests` / `http_seconds` by site, so counting a
    /// request allocates no label strings.
    http_handles: std::sync::RwLock<std::collections::HashMap<String, SiteHandles>>,
    /// The followers that have a `raft_replication_lag_entries` series.
    lag_series: std::sync::Mutex<BTreeSet<NodeId>>,
}

/// One site's series of the HTTP metrics (clones share the counts).
struct SiteHandles {
    seconds: Histogram,
    codes: Vec<(u16, Counter)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    /// `serious` or `ordinary`.
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    /// `write`, `read` or `site:<name>`.
    pub target: String,
    /// `ok` or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabel {
    pub site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteCodeLabel {
    pub site: String,
    pub code: String,
}

impl Metrics {
    /// Record how long a step of the write path took.
    pub fn observe_stage(&self, stage: &'static str, took: std::time::Duration) {
        self.stage_seconds
            .get_or_create(&StageLabel { stage })
            .observe(took.as_secs_f64());
    }

    pub fn new(node_id: NodeId) -> Self {
        let mut registry =
            Registry::with_prefix_and_labels("sen", [("node".into(), node_id.to_string().into())].into_iter());
        let m = Self {
            registry: Registry::default(),
            term: Gauge::default(),
            leader_id: Gauge::default(),
            is_leader: Gauge::default(),
            last_log_index: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            snapshot_index: Gauge::default(),
            purged_index: Gauge::default(),
            replication_lag: Family::default(),
            store_memory: Family::default(),
            proposals: Family::default(),
            proposal_seconds: latency_histogram(),
            elections_started: Counter::default(),
            leader_changes: Counter::default(),
            hook_runs: Family::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            stage_seconds: Family::new_with_constructor(stage_histogram),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram),
            audit_dropped: Gauge::default(),
            auth_refused: Family::default(),
            http_connections_refused: Counter::default(),
            disk_free_bytes: Gauge::default(),
            disk_low: Gauge::default(),
            undeployed_bytes: Gauge::default(),
            tls_reloads: Family::default(),
            cert_not_after: Gauge::default(),
            probes: Family::default(),
            backup_last_success: Gauge::default(),
            backup_last_failed: Gauge::default(),
            backup_every: Gauge::default(),
            incidents_open: Family::default(),
            oldest_open_serious: Gauge::default(),
            archive_segments: Counter::default(),
            archive_lag_seconds: Gauge::default(),
            content_cache: Default::default(),
            http_handles: Default::default(),
            lag_series: Default::default(),
        };
        registry.register("raft_term", "Current Raft term", m.term.clone());
        registry.register(
            "raft_leader_id",
            "Id of the leader this node knows (0 = none)",
            m.leader_id.clone(),
        );
        registry.register("raft_is_leader", "1 if this node is the leader", m.is_leader.clone());
        registry.register(
            "raft_last_log_index",
            "Index of the last entry in this node's log",
            m.last_log_index.clone(),
        );
        registry.register(
            "raft_commit_index",
            "Highest log index known committed",
            m.commit_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Highest log index applied to the state",
            m.applied_index.clone(),
        );
        registry.register(
            "raft_snapshot_index",
            "Log index of the latest snapshot",
            m.snapshot_index.clone(),
        );
        registry.register(
            "raft_purged_index",
            "Highest log index purged from the log",
            m.purged_index.clone(),
        );
        registry.register(
            "store_memory_bytes",
            "RocksDB's memory on this node (both DBs): part=limit is raft.store-memory-bytes, charged what is charged to it (cached blocks and memtables), memtables the memtables alone, pinned the blocks in use or pinned",
            m.store_memory.clone(),
        );
        registry.register(
            "raft_replication_lag_entries",
            "Leader only: entries the leader has that a follower has not acknowledged",
            m.replication_lag.clone(),
        );
        registry.register(
            "raft_proposals",
            "Client writes proposed on this node, by result",
            m.proposals.clone(),
        );
        registry.register(
            "raft_proposal_duration_seconds",
            "Time from proposing a write to it being applied on this node",
            m.proposal_seconds.clone(),
        );
        registry.register(
            "raft_elections_started",
            "Elections this node started (terms in which it voted for itself)",
            m.elections_started.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Times the known leader changed",
            m.leader_changes.clone(),
        );
        registry.register(
            "archive_segments",
            "Archive segments this node stored in the repository",
            m.archive_segments.clone(),
        );
        registry.register(
            "archive_lag_seconds",
            "How long the oldest applied entry not yet archived has waited (0 when the archive is current; only on the shipping node)",
            m.archive_lag_seconds.clone(),
        );
        registry.register(
            "probes",
            "Built-in probes this node ran (a write and a linearizable read through the cluster, each site's front page through this node's HTTP listener), by target and result",
            m.probes.clone(),
        );
        registry.register(
            "hook_runs",
            "Role hooks run, by role (leader, step-down, follower) and result",
            m.hook_runs.clone(),
        );
        registry.register(
            "grpc_requests",
            "Public API requests served, by method and status code",
            m.requests.clone(),
        );
        registry.register(
            "raft_stage_duration_seconds",
            "Steps of the write path on this node: log-append (an append until its fsync), log-fsync (one fsync of the log), apply (one batch applied), replicate (leader: one AppendEntries with entries to a follower, round trip), follower-append (follower: handling one AppendEntries with entries)",
            m.stage_seconds.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Public API request latency, by method",
            m.request_seconds.clone(),
        );
        registry.register(
            "http_requests",
            "Site requests served over HTTP, by site and status code (R4: readers per site)",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to start answering a site request, by site (R4: access speed)",
            m.http_seconds.clone(),
        );
        registry.register(
            "audit_dropped",
            "Audit records dropped since start because the queue was full (no leader for a long time)",
            m.audit_dropped.clone(),
        );
        registry.register(
            "auth_refused",
            "Requests refused by the authorization layer, by result (unauthenticated, denied, throttled)",
            m.auth_refused.clone(),
        );
        registry.register(
            "disk_free_bytes",
            "Bytes an unprivileged process may still write on the data directory's file system",
            m.disk_free_bytes.clone(),
        );
        registry.register(
            "disk_low",
            "1 while free space is below server.disk-reserve-bytes: client writes that add data are refused",
            m.disk_low.clone(),
        );
        registry.register(
            "undeployed_bytes",
            "Stored bytes of uploaded chunks no deployment uses (pushes in progress, garbage not yet collected); uploads beyond limits.max-undeployed-bytes are refused",
            m.undeployed_bytes.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections closed on arrival because server.http-max-connections were open",
            m.http_connections_refused.clone(),
        );
        registry.register(
            "tls_reloads",
            "Certificate reloads (SIGHUP or changed files), by result",
            m.tls_reloads.clone(),
        );
        registry.register(
            "tls_certificate_not_after_seconds",
            "When this node's certificate expires (Unix seconds; 0 without TLS)",
            m.cert_not_after.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "End of the last scheduled backup that succeeded (Unix seconds; 0 = none yet), as recorded in the control plane",
            m.backup_last_success.clone(),
        );
        registry.register(
            "backup_last_run_failed",
            "1 when the last finished scheduled backup failed (see `sen backup list --runs`)",
            m.backup_last_failed.clone(),
        );
        registry.register(
            "backup_schedule_interval_seconds",
            "The backup schedule's slot (seconds; 0 = no schedule)",
            m.backup_every.clone(),
        );
        registry.register(
            "incidents_open",
            "Incidents not yet resolved, by severity (`sen incident list`)",
            m.incidents_open.clone(),
        );
        registry.register(
            "incident_oldest_open_serious_seconds",
            "Age of the oldest serious incident still open (0 = none); R2 asks for a fix within 24 h",
            m.oldest_open_serious.clone(),
        );
        registry.register(
            "content_cache_hits",
            "Site files answered from the served-file cache",
            m.content_cache.hits.clone(),
        );
        registry.register(
            "content_cache_misses",
            "Site files looked up in the served-file cache and read from the store",
            m.content_cache.misses.clone(),
        );
        registry.register(
            "content_cache_bytes",
            "Memory held by the served-file cache (bounded by content.cache-bytes)",
            m.content_cache.bytes.clone(),
        );
        Self { registry, ..m }
    }

    pub fn observe_http(&self, site: &str, code: u16, took: Duration) {
        // Unknown names would let anyone create label series: bucket them.
        let site = if sen_content::path::check_site_name(site).is_ok() {
            site
        } else {
            "-"
        };
        {
            let handles = self.http_handles.read().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = handles.get(site)
                && let Some((_, c)) = h.codes.iter().find(|(k, _)| *k == code)
            {
                c.inc();
                h.seconds.observe(took.as_secs_f64());
                return;
            }
        }
        let counter = self
            .http_requests
            .get_or_create(&SiteCodeLabel {
                site: site.into(),
                code: code.to_string(),
            })
            .clone();
        let seconds = self
            .http_seconds
            .get_or_create(&SiteLabel { site: site.into() })
            .clone();
        counter.inc();
        seconds.observe(took.as_secs_f64());
        let mut handles = self.http_handles.write().unwrap_or_else(|p| p.into_inner());
        let h = handles.entry(site.to_owned()).or_insert_with(|| SiteHandles {
            seconds,
            codes: Vec::new(),
        });
        if !h.codes.iter().any(|(k, _)| *k == code) {
            h.codes.push((code, counter));
        }
    }

    pub fn observe_hook(&self, role: &str, ok: bool) {
        self.hook_runs
            .get_or_create(&HookLabel {
                role: role.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    pub fn observe_proposal(&self, took: Duration, ok: bool) {
        self.proposal_seconds.observe(took.as_secs_f64());
        self.proposals
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    pub fn observe_request(&self, method: &str, code: tonic::Code, took: Duration) {
        self.requests
            .get_or_create(&RequestLabel {
                method: method.into(),
                code: format!("{code:?}"),
            })
            .inc();
        self.request_seconds
            .get_or_create(&MethodLabel { method: method.into() })
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text format (what a Prometheus server asks for).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            out = format!("# error encoding metrics: {e}\n");
        }
        out
    }

    /// The Prometheus text format 0.0.4, for clients that do not ask for
    /// OpenMetrics (curl, `promtool check metrics`, older scrapers).
    pub fn render_text(&self) -> String {
        openmetrics_to_text(&self.render())
    }
}

/// Rewrite OpenMetrics text as Prometheus text format 0.0.4: a counter's
/// `HELP`/`TYPE` name carries the `_total` of its samples, `# UNIT` and
/// `# EOF` go, `unknown` is `untyped` and `info` a gauge. Samples are
/// unchanged (histograms and gauges are written alike in both).
pub fn openmetrics_to_text(om: &str) -> String {
    let mut counters = BTreeSet::new();
    for l in om.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(om.len());
    for l in om.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        match meta {
            Some((what, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) && !name.ends_with("_total") {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                };
                let tail = match (what, tail) {
                    ("TYPE", "unknown") => "untyped",
                    ("TYPE", "info") | ("TYPE", "stateset") => "gauge",
                    ("TYPE", "gaugehistogram") => "histogram",
                    _ => tail,
                };
                out.push_str(&format!("# {what} {name} {tail}\n"));
            }
            None => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn idx(l: Option<&sen_raft::LogId>) -> i64 {
    l.map_or(0, |l| l.index as i64)
}

impl Metrics {
    /// Set the gauges that follow the Raft log (term, indexes, each
    /// follower's lag) from `m`, this node (`me`)'s openraft metrics.
    /// Called when `/metrics` is scraped (exact at every scrape, and no
    /// timer wakes an idle node) and by [`watch_raft`].
    /// The store's memory, read when `/metrics` is scraped.
    pub fn set_store_memory(&self, u: sen_store::MemoryUsage) {
        for (part, v) in [
            ("limit", u.limit),
            ("charged", u.charged),
            ("memtables", u.memtables),
            ("pinned", u.pinned),
        ] {
            self.store_memory
                .get_or_create(&PartLabel { part: part.into() })
                .set(v as i64);
        }
    }

    pub fn set_raft_log(&self, me: NodeId, m: &RaftMetrics) {
        // Terms only grow; the server metrics may have shown a newer one.
        let term = m.current_term.max(m.vote.leader_id.term) as i64;
        self.term.set(self.term.get().max(term));
        self.last_log_index.set(m.last_log_index.unwrap_or(0) as i64);
        self.commit_index.set(idx(m.local_committed.as_ref()));
        self.applied_index.set(idx(m.last_applied.as_ref()));
        self.snapshot_index.set(idx(m.snapshot.as_ref()));
        self.purged_index.set(idx(m.purged.as_ref()));
        let mut now = BTreeSet::new();
        if let Some(repl) = &m.replication {
            let last = m.last_log_index.unwrap_or(0);
            for (id, matched) in repl {
                if *id == me {
                    continue;
                }
                let lag = last.saturating_sub(matched.as_ref().map_or(0, |l| l.index));
                self.replication_lag
                    .get_or_create(&FollowerLabel {
                        follower: id.to_string(),
                    })
                    .set(lag as i64);
                now.insert(*id);
            }
        }
        let mut series = self.lag_series.lock().unwrap_or_else(|p| p.into_inner());
        for gone in series.difference(&now) {
            self.replication_lag.remove(&FollowerLabel {
                follower: gone.to_string(),
            });
        }
        *series = now;
    }
}

/// Keep the Raft gauges in step with openraft's metrics until `stop`: at
/// once when the role, the leader, the vote or the membership changes (the
/// leader-change and election counters see each such change). The gauges
/// of the log's indexes are also set at every scrape
/// ([`Metrics::set_raft_log`]), so no timer follows them.
pub async fn watch_raft(raft: Raft, me: NodeId, metrics: std::sync::Arc<Metrics>, stop: CancellationToken) {
    let rx = raft.metrics();
    let mut server = raft.server_metrics();
    let mut last_leader: Option<NodeId> = None;
    let mut last_self_vote_term = 0u64;
    loop {
        {
            // Role, leader and vote from the server metrics (sent before the
            // whole metrics, which may not show the change yet).
            let s = server.borrow_watched().clone();
            metrics.set_raft_log(me, &rx.borrow_watched());
            metrics.term.set(metrics.term.get().max(s.vote.leader_id.term as i64));
            metrics.leader_id.set(s.current_leader.unwrap_or(0) as i64);
            metrics.is_leader.set(i64::from(s.state == ServerState::Leader));
            if s.current_leader != last_leader {
                if last_leader.is_some() || s.current_leader.is_some() {
                    metrics.leader_changes.inc();
                }
                last_leader = s.current_leader;
            }
            // A vote for ourselves in a new term means we started an election.
            if s.vote.leader_id.voted_for == me && s.vote.leader_id.term > last_self_vote_term {
                if last_self_vote_term != 0 || s.state == ServerState::Candidate {
                    metrics.elections_started.inc();
                }
                last_self_vote_term = s.vote.leader_id.term;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = server.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_counters_like_their_samples() {
        let m = Metrics::new(7);
        m.probes
            .get_or_create(&ProbeLabel {
                target: "write".into(),
                result: "ok".into(),
            })
            .inc();
        let text = m.render_text();
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(text.contains("# TYPE sen_probes_total counter\n"), "{text}");
        assert!(text.contains("# HELP sen_probes_total "), "{text}");
        assert!(
            text.contains("sen_probes_total{node=\"7\",target=\"write\",result=\"ok\"} 1\n"),
            "{text}"
        );
        // Every sample belongs to a family that has HELP and TYPE.
        let typed: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(f)))
                .unwrap_or(name);
            assert!(typed.contains(family), "no TYPE for {name}: {text}");
        }
    }

    #[test]
    fn other_openmetrics_types_map_to_text_types() {
        let om = "# HELP a_info build\n# TYPE a_info info\na_info{v=\"1\"} 1\n# TYPE b unknown\nb 2\n# UNIT c seconds\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_info build\n# TYPE a_info gauge\na_info{v=\"1\"} 1\n# TYPE b untyped\nb 2\n"
        );
    }
}
