//! The built-in black-box probe: how available the cluster was, measured
//! from every node (docs/reports.md).
//!
//! Every `probe.interval` each node, at once and each within
//! `probe.timeout`:
//! - **write**: commits its beat (`probe/beat/<node>`) through the leader.
//!   The same call hands in this node's changed availability records, at
//!   most every [`SEND_EVERY_PROBES`] probes; the leader joins them into what it stores
//!   (`sen_raft::schema::system::availability`).
//! - **read**: a linearizable read barrier (ReadIndex through the leader).
//! - **site:NAME**: `GET /sites/NAME/` through this node's own HTTP
//!   listener (over TLS when the listener uses it), the whole body read;
//!   any answer below 500 is up (a private site's 401 is the server
//!   working as configured). These requests carry the `sen-probe/` user
//!   agent and are not counted as readers.
//!
//! Each outcome is joined into the current minute of that target's
//! record. A node that is down probes nothing: its minutes stay unknown.
//! What can be lost: the results of the last [`SEND_EVERY_PROBES`] probes before a node
//! crashes, and those of a node that cannot reach a leader for the rest
//! of the day after the one it kept (records of earlier days are kept
//! until sent).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sen_raft::schema::system::availability::{self, MINUTES_PER_DAY, target};
use sen_raft::schema::system::growth::GrowthRecord;
use sen_raft::schema::system::{
    AVAILABILITY_PREFIX, AvailabilityRecord, Minute, ProbeBeat, ReadersRecord, SYSTEM_DB, SystemRecord, TrafficRecord,
};
use sen_raft::{Compare, CompareOp, CompareTarget, Op, Txn, TxnOp};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::node::Node;
use crate::system::ControlPlane;

/// The user agent of the site probes (`sen-probe/<version>`).
pub const USER_AGENT_PREFIX: &str = "sen-probe/";

/// A node hands its changed records to the leader every this many probes
/// (30 s at the default 5 s interval).
pub const SEND_EVERY_PROBES: u32 = 6;

/// Records one report carries at most (the rest go with the next ones).
const MAX_RECORDS_PER_REPORT: usize = 200;

/// Sites probed at once.
const SITE_CONCURRENCY: usize = 8;

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What this node saw, per (day, target), and which records changed since
/// the leader last took them.
#[derive(Debug, Default)]
pub struct Seen {
    records: BTreeMap<(String, String), AvailabilityRecord>,
    dirty: BTreeSet<(String, String)>,
}

impl Seen {
    /// One probe of `target` at `at_ms` by node `node`.
    pub fn observe(&mut self, node: u64, at_ms: u64, target: &str, ok: bool) {
        let day = sen_core::time::utc_day(at_ms);
        let start = sen_core::time::day_start_ms(&day).unwrap_or(at_ms);
        let minute = (((at_ms - start) / 60_000) as usize).min(MINUTES_PER_DAY - 1);
        let key = (day.clone(), target.to_owned());
        let rec = self
            .records
            .entry(key.clone())
            .or_insert_with(|| AvailabilityRecord::new(&day, target, node));
        let before = rec.minutes.clone();
        // The minute index is in range: this cannot fail.
        let _ = rec.observe(minute, Minute::of(ok));
        if rec.minutes != before {
            self.dirty.insert(key);
        }
    }

    /// The records the leader has not taken yet (oldest day first).
    pub fn pending(&self, max: usize) -> Vec<AvailabilityRecord> {
        self.dirty
            .iter()
            .take(max)
            .filter_map(|k| self.records.get(k).cloned())
            .collect()
    }

    /// The leader took `sent`: those not changed since are clean, and clean
    /// records of days before `today` are forgotten.
    pub fn sent(&mut self, sent: &[AvailabilityRecord], today: &str) {
        for r in sent {
            let key = (r.day.clone(), r.target.clone());
            if self.records.get(&key).is_some_and(|now| now.minutes == r.minutes) {
                self.dirty.remove(&key);
            }
        }
        let dirty = &self.dirty;
        self.records.retain(|k, _| k.0.as_str() >= today || dirty.contains(k));
    }
}

/// [`commit_with_traffic`] of availability records only.
#[cfg(test)]
pub async fn commit(
    plane: &impl ControlPlane,
    node: u64,
    records: Vec<AvailabilityRecord>,
    now_ms: u64,
    budget: Duration,
) -> Result<(), ApiError> {
    commit_with_traffic(plane, node, records, (vec![], vec![]), None, now_ms, budget).await
}

/// On the leader: node `node`'s beat, its availability records, and its
/// traffic records and readers sketches (`crate::traffic`), each joined
/// into the stored one, in one entry.
///
/// A node's own records (availability, traffic, growth) are read and
/// rewritten without a compare: a node sends its reports one at a time and
/// each carries everything it saw that day since it started, so a report
/// overwritten by a concurrent one of the same node comes again with its
/// next report; the join keeps whatever was stored before a restart. The
/// readers sketch of a site is shared by every node, so it is written only
/// if it did not change since it was read (compare on its revision), and
/// the whole report is merged again when another node's report got there
/// first.
pub async fn commit_with_traffic(
    plane: &impl ControlPlane,
    node: u64,
    records: Vec<AvailabilityRecord>,
    (traffic, readers): crate::traffic::Pending,
    growth: Option<GrowthRecord>,
    now_ms: u64,
    budget: Duration,
) -> Result<(), ApiError> {
    const ATTEMPTS: usize = 8;
    for _ in 0..ATTEMPTS {
        let txn = report_txn(
            plane,
            node,
            records.clone(),
            (traffic.clone(), readers.clone()),
            growth.clone(),
            now_ms,
        )?;
        let r = plane.propose(Op::Txn(txn), budget).await?;
        if matches!(r.outcome, sen_raft::Outcome::Txn { succeeded: true }) {
            return Ok(());
        }
    }
    Err(ApiError::Unavailable(format!(
        "node {node}'s probe report met {ATTEMPTS} concurrent reports of other nodes in a row; it is sent again with the next"
    )))
}

/// The transaction that joins one report into what is stored.
fn report_txn(
    plane: &impl ControlPlane,
    node: u64,
    records: Vec<AvailabilityRecord>,
    (traffic, readers): crate::traffic::Pending,
    growth: Option<GrowthRecord>,
    now_ms: u64,
) -> Result<Txn, ApiError> {
    let limit = crate::traffic::MAX_PER_REPORT;
    if traffic.len() > limit || readers.len() > limit {
        return Err(ApiError::InvalidArgument(format!(
            "{} traffic records and {} readers records in one report; at most {limit} of each",
            traffic.len(),
            readers.len()
        )));
    }
    if records.len() > MAX_RECORDS_PER_REPORT {
        return Err(ApiError::InvalidArgument(format!(
            "{} availability records in one report; at most {MAX_RECORDS_PER_REPORT}",
            records.len()
        )));
    }
    let beat = ProbeBeat {
        version: ProbeBeat::VERSION,
        node,
        at_ms: now_ms,
    };
    let internal = |e: sen_raft::schema::system::SystemRecordError| ApiError::Internal(e.to_string());
    let mut success = vec![TxnOp::Put {
        key: availability::probe_beat_key(node),
        value: beat.to_json().map_err(internal)?,
    }];
    for mut r in records {
        r.check()
            .map_err(|e| ApiError::InvalidArgument(format!("availability record: {e}")))?;
        if r.node != node {
            return Err(ApiError::PermissionDenied(format!(
                "node {node} hands in the availability records of node {}: a node hands in its own",
                r.node
            )));
        }
        let key = r.key();
        if let Some((stored, _)) = plane.get_raw(&key)? {
            let stored = AvailabilityRecord::from_json(&stored).map_err(|e| {
                ApiError::FailedPrecondition(format!(
                    "{e} (key {}); this node cannot merge into it",
                    String::from_utf8_lossy(&key)
                ))
            })?;
            r.merge(&stored).map_err(ApiError::Internal)?;
        }
        r.version = AvailabilityRecord::VERSION;
        r.updated_at_ms = now_ms;
        success.push(TxnOp::Put {
            key,
            value: r.to_json().map_err(internal)?,
        });
    }
    let stored_err = |e: sen_raft::schema::system::SystemRecordError, key: &[u8]| {
        ApiError::FailedPrecondition(format!(
            "{e} (key {}); this node cannot merge into it",
            String::from_utf8_lossy(key)
        ))
    };
    for mut t in traffic {
        t.check()
            .map_err(|e| ApiError::InvalidArgument(format!("traffic record: {e}")))?;
        if t.node != node {
            return Err(ApiError::PermissionDenied(format!(
                "node {node} hands in the traffic of node {}: a node hands in its own",
                t.node
            )));
        }
        let key = t.key();
        if let Some((stored, _)) = plane.get_raw(&key)? {
            let stored = TrafficRecord::from_json(&stored).map_err(|e| stored_err(e, &key))?;
            t.merge(&stored).map_err(ApiError::Internal)?;
        }
        t.version = TrafficRecord::VERSION;
        t.updated_at_ms = now_ms;
        success.push(TxnOp::Put {
            key,
            value: t.to_json().map_err(internal)?,
        });
    }
    if let Some(mut g) = growth {
        g.check()
            .map_err(|e| ApiError::InvalidArgument(format!("growth record: {e}")))?;
        if g.node != node {
            return Err(ApiError::PermissionDenied(format!(
                "node {node} hands in the growth sample of node {}: a node hands in its own",
                g.node
            )));
        }
        let key = g.key();
        if let Some((stored, _)) = plane.get_raw(&key)? {
            let stored = GrowthRecord::from_json(&stored).map_err(|e| stored_err(e, &key))?;
            g.merge(&stored).map_err(ApiError::Internal)?;
        }
        g.version = GrowthRecord::VERSION;
        success.push(TxnOp::Put {
            key,
            value: g.to_json().map_err(internal)?,
        });
    }
    let mut compares = Vec::new();
    for mut r in readers {
        r.check()
            .map_err(|e| ApiError::InvalidArgument(format!("readers record: {e}")))?;
        let key = r.key();
        let target = match plane.get_raw(&key)? {
            Some((stored, revision)) => {
                let stored = ReadersRecord::from_json(&stored).map_err(|e| stored_err(e, &key))?;
                r.merge(&stored).map_err(ApiError::Internal)?;
                CompareTarget::ModRevision(revision)
            }
            None => CompareTarget::Exists(false),
        };
        compares.push(Compare {
            key: key.clone(),
            op: CompareOp::Equal,
            target,
        });
        r.version = ReadersRecord::VERSION;
        r.updated_at_ms = now_ms;
        success.push(TxnOp::Put {
            key,
            value: r.to_json().map_err(internal)?,
        });
    }
    Ok(Txn {
        db: SYSTEM_DB.into(),
        compares,
        success,
        failure: vec![],
    })
}

/// On the leader: delete the availability, traffic, readers, growth and
/// backup-verification records of days before `before_day` (`YYYY-MM-DD`).
pub async fn prune(plane: &impl ControlPlane, before_day: &str) -> Result<usize, ApiError> {
    use sen_raft::schema::system::traffic;
    let mut deleted = 0;
    for (prefix, day_prefix) in [
        (
            AVAILABILITY_PREFIX,
            availability::availability_day_prefix as fn(&str) -> Vec<u8>,
        ),
        (traffic::TRAFFIC_PREFIX, traffic::traffic_day_prefix),
        (traffic::READERS_PREFIX, traffic::readers_day_prefix),
        (
            sen_raft::schema::system::growth::GROWTH_PREFIX,
            sen_raft::schema::system::growth::growth_day_prefix,
        ),
        (
            sen_raft::schema::system::VERIFY_PREFIX,
            sen_raft::schema::system::verification::verify_day_prefix,
        ),
    ] {
        deleted += crate::system::delete_before(plane, prefix.as_bytes(), &day_prefix(before_day)).await?;
    }
    Ok(deleted)
}

fn to_json_text(b: Result<Vec<u8>, sen_raft::schema::system::SystemRecordError>) -> Result<String, ApiError> {
    b.map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The write probe: hand `records` to the leader (committing them here if
/// this node leads).
async fn report(
    node: &Arc<Node>,
    records: Vec<AvailabilityRecord>,
    traffic: crate::traffic::Pending,
    growth: Option<GrowthRecord>,
    budget: Duration,
) -> Result<(), ApiError> {
    if node.is_leader() {
        return commit_with_traffic(
            node.as_ref(),
            node.id,
            records,
            traffic,
            growth,
            sen_core::now_ms(),
            budget,
        )
        .await;
    }
    let growth_json = growth.as_ref().map(|g| to_json_text(g.to_json())).transpose()?;
    let traffic_json = traffic
        .0
        .iter()
        .map(|t| to_json_text(t.to_json()))
        .collect::<Result<Vec<_>, _>>()?;
    let readers_json = traffic
        .1
        .iter()
        .map(|r| to_json_text(r.to_json()))
        .collect::<Result<Vec<_>, _>>()?;
    let leader = node.leader().ok_or_else(|| ApiError::not_leader(node.id, None))?;
    let json = records
        .iter()
        .map(|r| to_json_text(r.to_json()))
        .collect::<Result<Vec<_>, _>>()?;
    let none: crate::forward::Behalf = None;
    forward_to_leader!(
        node,
        none,
        node.peers.control(leader.id, &leader.addr),
        leader.addr,
        report_probe,
        sen_proto::v1::ReportProbeRequest {
            node: node.id,
            json,
            traffic: traffic_json,
            readers: readers_json,
            growth: growth_json.into_iter().collect(),
        },
        budget
    )
    .map(|_| ())
}

/// Where and how this node's own HTTP listener is reached.
struct HttpTarget {
    addr: SocketAddr,
    tls: Option<Arc<sen_security::Reloader>>,
    server_name: String,
}

impl HttpTarget {
    fn of(node: &Node) -> Option<Self> {
        let mut addr: SocketAddr = node.config.http.parse().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let tls = node.peers.tls().filter(|_| node.config.tls.http);
        Some(Self {
            addr,
            tls,
            server_name: sen_security::identity::node_dns_name(node.id),
        })
    }

    /// `GET path` and read the whole answer: its status.
    async fn get(&self, path: &str) -> Result<u16, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => request(TokioIo::new(tcp), path).await,
            Some(reloader) => {
                // No ALPN: the listener answers HTTP/1.1.
                let config = sen_security::tls::client_config(&reloader.current().ca_pem, None)
                    .map_err(|e| format!("TLS client: {e}"))?;
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.server_name.clone())
                    .map_err(|e| format!("server name {}: {e}", self.server_name))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.addr))?;
                request(TokioIo::new(stream), path).await
            }
        }
    }
}

async fn request<I>(io: I, path: &str) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .header(
            http::header::USER_AGENT,
            format!("{USER_AGENT_PREFIX}{}", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| format!("request {path}: {e}"))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status().as_u16();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("GET {path}: body: {e}"))?;
        Ok(status)
    }
    .await;
    driver.abort();
    result
}

/// The page of `site` its probes fetch (`sen site set --probe-path`), or
/// `None` for the front page. A record this build cannot read is logged
/// and the front page probed.
pub fn probe_path(node: &Node, site: &str) -> Option<String> {
    use crate::system::ControlPlane as _;
    use sen_raft::schema::system::{ProbePathRecord, probe_path_key};
    let raw = match node.get_raw(&probe_path_key(site)) {
        Ok(raw) => raw?.0,
        Err(e) => {
            tracing::debug!("probe: cannot read the probe path of site {site}: {e}");
            return None;
        }
    };
    match ProbePathRecord::from_json(&raw) {
        Ok(r) => Some(r.path),
        Err(e) => {
            tracing::warn!("probe: {e} for site {site}; probing its front page (set the path again)");
            None
        }
    }
}

/// Bytes of a probe path sent as they are; everything else (Vietnamese
/// letters, `%`, quotes …) percent-encoded, as a browser would.
const PATH_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The request path that probes `site` at `chosen` (the file's path as
/// named, not encoded) or at its front page.
fn request_path(site: &str, chosen: Option<&str>) -> String {
    let path = chosen.unwrap_or("/");
    format!(
        "/sites/{site}{}",
        percent_encoding::utf8_percent_encode(path, PATH_KEEP)
    )
}

/// Whether a site answered as up. The front page may be missing (an empty
/// site, a site of documents only) without the site being down: any answer
/// below 500 counts. A page the operator chose must be there: below 400,
/// or 401/403 from a private site (the probe carries no token).
fn site_answer_is_up(status: u16, chosen: bool, private: impl FnOnce() -> bool) -> bool {
    if !chosen {
        status < 500
    } else {
        status < 400 || (matches!(status, 401 | 403) && private())
    }
}

/// Probe every site through the HTTP listener: `(target, ok)` each.
async fn probe_sites(node: &Arc<Node>, http: &HttpTarget, timeout: Duration) -> Vec<(String, bool)> {
    let names: Vec<String> = match node.state.sites() {
        Ok(sites) => sites.into_iter().map(|(name, _)| name).collect(),
        Err(e) => {
            tracing::debug!("probe: cannot list the sites: {e}");
            return vec![];
        }
    };
    futures::stream::iter(names)
        .map(|name| async move {
            let chosen = probe_path(node, &name);
            let path = request_path(&name, chosen.as_deref());
            let ok = match tokio::time::timeout(timeout, http.get(&path)).await {
                Ok(Ok(status)) => site_answer_is_up(status, chosen.is_some(), || {
                    crate::access::site_is_private(node.as_ref(), &name)
                }),
                Ok(Err(e)) => {
                    tracing::debug!("probe of site {name}: {e}");
                    false
                }
                Err(_) => false,
            };
            (target::site(&name), ok)
        })
        .buffer_unordered(SITE_CONCURRENCY)
        .collect()
        .await
}

/// Probe until `stop`.
pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let cfg = node.config.probe.clone();
    if !cfg.enabled {
        tracing::info!("probe.enabled = false: this node's availability counts as unknown");
        return;
    }
    let Some(http) = HttpTarget::of(&node) else {
        tracing::warn!(
            "probe: http = {:?} is not an address; sites are not probed",
            node.config.http
        );
        return;
    };
    let mut seen = Seen::default();
    let mut last_sent: Option<Instant> = None;
    let mut last_prune = Instant::now();
    let send_every = cfg.interval * SEND_EVERY_PROBES;
    // The latest growth sample, until the leader has it.
    let mut growth: Option<GrowthRecord> = None;
    let mut last_sample: Option<Instant> = None;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Nothing to measure before the node belongs to a cluster, and a
        // stopping node's failures are its own shutdown.
        if node.cluster_id().is_none() || node.is_stopping() {
            continue;
        }
        let at = sen_core::now_ms();
        let today = sen_core::time::utc_day(at);
        let send = last_sent.is_none_or(|t| t.elapsed() >= send_every);
        if last_sample.is_none_or(|t| t.elapsed() >= cfg.growth_interval) {
            last_sample = Some(Instant::now());
            let n = node.clone();
            match tokio::task::spawn_blocking(move || crate::growth::sample(&n)).await {
                Ok(Ok(g)) => growth = Some(g),
                Ok(Err(e)) => tracing::debug!("growth sample: {e}"),
                Err(e) => tracing::debug!("growth sample: {e}"),
            }
        }
        let (records, traffic) = if send {
            (seen.pending(MAX_RECORDS_PER_REPORT), node.traffic.pending())
        } else {
            (vec![], (vec![], vec![]))
        };
        let (write, read, sites) = tokio::join!(
            tokio::time::timeout(
                cfg.timeout,
                report(
                    &node,
                    records.clone(),
                    traffic.clone(),
                    if send { growth.clone() } else { None },
                    cfg.timeout
                )
            ),
            tokio::time::timeout(cfg.timeout, node.read_barrier(cfg.timeout)),
            probe_sites(&node, &http, cfg.timeout),
        );
        let write_ok = matches!(write, Ok(Ok(())));
        if let Ok(Err(e)) = &write {
            tracing::debug!("write probe: {e}");
        }
        if write_ok && send {
            seen.sent(&records, &today);
            node.traffic.sent(&traffic.0);
            growth = None;
            last_sent = Some(Instant::now());
        }
        let mut outcomes = vec![
            (target::WRITE.to_owned(), write_ok),
            (target::READ.to_owned(), matches!(read, Ok(Ok(())))),
        ];
        outcomes.extend(sites);
        for (t, ok) in outcomes {
            seen.observe(node.id, at, &t, ok);
            node.metrics
                .probes
                .get_or_create(&crate::metrics::ProbeLabel {
                    target: t,
                    result: if ok { "ok" } else { "failed" }.into(),
                })
                .inc();
        }
        if node.is_leader() && last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let keep_from = sen_core::time::utc_day(at.saturating_sub(cfg.retention.as_millis() as u64));
            match prune(node.as_ref(), &keep_from).await {
                Ok(n) if n > 0 => tracing::info!(records = n, "pruned availability records past probe.retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!("pruning availability records: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::testing::MemControlPlane;

    const DAY: u64 = 1_796_256_000_000; // 2026-12-03T00:00:00Z

    #[test]
    fn probe_paths_are_sent_encoded() {
        assert_eq!(request_path("lich", None), "/sites/lich/");
        assert_eq!(
            request_path("lich", Some("/tuần-này/index.html")),
            "/sites/lich/tu%E1%BA%A7n-n%C3%A0y/index.html"
        );
        assert_eq!(
            request_path("lich", Some("/100%_đúng.html")),
            "/sites/lich/100%25_%C4%91%C3%BAng.html"
        );
    }

    #[test]
    fn a_chosen_page_must_be_there_the_front_page_may_be_missing() {
        let public = || false;
        let private = || true;
        // The front page: anything but a server error is up.
        for (status, up) in [
            (200, true),
            (301, true),
            (401, true),
            (404, true),
            (500, false),
            (503, false),
        ] {
            assert_eq!(site_answer_is_up(status, false, public), up, "front page {status}");
        }
        // A chosen page: missing is down; 401/403 only from a private site.
        for (status, up_public, up_private) in [
            (200, true, true),
            (304, true, true),
            (401, false, true),
            (403, false, true),
            (404, false, false),
            (500, false, false),
        ] {
            assert_eq!(site_answer_is_up(status, true, public), up_public, "public {status}");
            assert_eq!(site_answer_is_up(status, true, private), up_private, "private {status}");
        }
    }

    fn stored(p: &MemControlPlane, day: &str, t: &str, node: u64) -> Vec<Minute> {
        let (v, _) = p
            .get_raw(&availability::availability_key(day, t, node))
            .unwrap()
            .unwrap();
        AvailabilityRecord::from_json(&v).unwrap().states().unwrap()
    }

    #[test]
    fn outcomes_fill_minutes_and_only_changes_are_pending() {
        let mut s = Seen::default();
        s.observe(1, DAY + 5_000, "write", true);
        s.observe(1, DAY + 10_000, "write", false);
        s.observe(1, DAY + 61_000, "write", true);
        let p = s.pending(10);
        assert_eq!(p.len(), 1);
        let m = p[0].states().unwrap();
        assert_eq!((m[0], m[1], m[2]), (Minute::Degraded, Minute::Up, Minute::Unknown));
        s.sent(&p, "2026-12-03");
        assert!(s.pending(10).is_empty());
        // The same state again changes nothing; a new minute does.
        s.observe(1, DAY + 62_000, "write", true);
        assert!(s.pending(10).is_empty());
        s.observe(1, DAY + 125_000, "write", true);
        assert_eq!(s.pending(10).len(), 1);
        // A report that the node changed since it was sent stays pending.
        let p = s.pending(10);
        s.observe(1, DAY + 185_000, "write", false);
        s.sent(&p, "2026-12-03");
        assert_eq!(s.pending(10).len(), 1);
    }

    #[test]
    fn clean_records_of_past_days_are_forgotten_dirty_ones_kept() {
        let mut s = Seen::default();
        s.observe(1, DAY - 1_000, "read", true); // 2026-12-02 23:59:59
        s.observe(1, DAY + 1_000, "read", true);
        let p = s.pending(10);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].day, "2026-12-02", "oldest day first");
        s.sent(&p[1..], "2026-12-03");
        assert_eq!(s.records.len(), 2, "the unsent day is kept");
        s.sent(&p[..1], "2026-12-03");
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.records.keys().next().unwrap().0, "2026-12-03");
    }

    #[tokio::test]
    async fn the_leader_joins_reports_and_a_restart_loses_nothing_stored() {
        let p = MemControlPlane::default();
        let b = Duration::from_secs(1);
        let mut before = Seen::default();
        before.observe(2, DAY + 30_000, "write", true);
        before.observe(2, DAY + 90_000, "write", false);
        commit(&p, 2, before.pending(10), DAY + 100_000, b).await.unwrap();
        // The node restarted: it knows only the minutes since.
        let mut after = Seen::default();
        after.observe(2, DAY + 95_000, "write", true);
        after.observe(2, DAY + 300_000, "write", true);
        commit(&p, 2, after.pending(10), DAY + 301_000, b).await.unwrap();
        // A late copy of the first report changes nothing.
        commit(&p, 2, before.pending(10), DAY + 302_000, b).await.unwrap();
        let m = stored(&p, "2026-12-03", "write", 2);
        assert_eq!(
            (m[0], m[1], m[2], m[5], m[6]),
            (
                Minute::Up,
                Minute::Degraded,
                Minute::Unknown,
                Minute::Up,
                Minute::Unknown
            )
        );
        let (beat, _) = p.get_raw(&availability::probe_beat_key(2)).unwrap().unwrap();
        assert_eq!(ProbeBeat::from_json(&beat).unwrap().at_ms, DAY + 302_000);
    }

    #[tokio::test]
    async fn a_node_hands_in_its_own_wellformed_records_only() {
        let p = MemControlPlane::default();
        let b = Duration::from_secs(1);
        let theirs = AvailabilityRecord::new("2026-12-03", "write", 3);
        let e = commit(&p, 2, vec![theirs], DAY, b).await.unwrap_err();
        assert!(matches!(e, ApiError::PermissionDenied(_)), "{e}");
        let mut bad = AvailabilityRecord::new("2026-12-03", "write", 2);
        bad.minutes = "1440u1x".into();
        let e = commit(&p, 2, vec![bad], DAY, b).await.unwrap_err();
        assert!(matches!(e, ApiError::InvalidArgument(_)), "{e}");
        let many = vec![AvailabilityRecord::new("2026-12-03", "write", 2); MAX_RECORDS_PER_REPORT + 1];
        assert!(commit(&p, 2, many, DAY, b).await.is_err());
        assert!(
            p.scan_raw(AVAILABILITY_PREFIX.as_bytes()).unwrap().is_empty(),
            "nothing stored"
        );
    }

    /// Two nodes' reports read the shared readers sketch of a site at the
    /// same time: the second write must not undo the first.
    #[tokio::test]
    async fn concurrent_reports_of_two_nodes_both_count_their_readers() {
        use sen_raft::schema::system::Readers;
        let p = MemControlPlane::default();
        let b = Duration::from_secs(1);
        let sketch = |from: u64| {
            let mut r = Readers::default();
            for i in from..from + 20 {
                r.insert(
                    blake3::hash(&i.to_le_bytes()).as_bytes()[..8]
                        .iter()
                        .fold(0u64, |h, b| h << 8 | u64::from(*b)),
                );
            }
            ReadersRecord::new("2026-12-03", "portal", &r)
        };
        // Node 2's report is built from what is stored now; node 1's lands
        // first; node 2's transaction then fails its compare.
        let stale = report_txn(&p, 2, vec![], (vec![], vec![sketch(100)]), None, DAY).unwrap();
        commit_with_traffic(&p, 1, vec![], (vec![], vec![sketch(0)]), None, DAY, b)
            .await
            .unwrap();
        let r = p.propose(Op::Txn(stale), b).await.unwrap();
        assert!(
            matches!(r.outcome, sen_raft::Outcome::Txn { succeeded: false }),
            "{r:?}"
        );
        // Sent through commit_with_traffic, it is merged again and kept.
        commit_with_traffic(&p, 2, vec![], (vec![], vec![sketch(100)]), None, DAY, b)
            .await
            .unwrap();
        let (stored, _) = p.get_raw(&sketch(0).key()).unwrap().unwrap();
        let n = ReadersRecord::from_json(&stored).unwrap().readers().unwrap().estimate();
        assert!((38.0..=42.0).contains(&n), "40 readers estimated as {n}");
    }

    #[tokio::test]
    async fn records_past_the_retention_are_pruned() {
        let p = MemControlPlane::default();
        let b = Duration::from_secs(1);
        for (day, at) in [("2026-12-01", DAY - 2 * 86_400_000), ("2026-12-03", DAY)] {
            let mut r = AvailabilityRecord::new(day, "read", 1);
            r.observe(0, Minute::Up).unwrap();
            commit(&p, 1, vec![r], at, b).await.unwrap();
        }
        for day in ["2026-12-01", "2026-12-03"] {
            let mut t = TrafficRecord::new(day, "portal", 1);
            t.hours.entry(3).or_default().observe(200, 10, 1);
            let r = ReadersRecord::new(day, "portal", &sen_raft::schema::system::Readers::default());
            commit_with_traffic(&p, 1, vec![], (vec![t], vec![r]), None, DAY, b)
                .await
                .unwrap();
        }
        assert_eq!(prune(&p, "2026-12-02").await.unwrap(), 3, "one record of each kind");
        for prefix in ["avail/", "traffic/", "readers/"] {
            let left = p.scan_raw(prefix.as_bytes()).unwrap();
            assert_eq!(left.len(), 1, "{prefix}");
            assert!(left[0].0.starts_with(format!("{prefix}2026-12-03/").as_bytes()));
        }
    }
}
