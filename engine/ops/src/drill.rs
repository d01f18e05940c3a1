//! Failover drills on the live cluster (`sen drill run`).
//!
//! A drill: read who leads; push a one-file probe site; start a probe
//! workload that writes (KV) and reads (HTTP site content) through every
//! node at the probe rate; mark the drill as running in the control plane
//! (incidents it provokes are tagged with it); inject the scenario's fault
//! into the target node (inside the node: no OS privileges, bounded in
//! time); end it; wait until the target is back and caught up; then verify
//! every acknowledged probe write on the leader and on every node. The
//! report ([`report::compute`]: timeline, RTO, read gap, RPO, pass/fail
//! against the objectives) is stored in the cluster and an incident of
//! kind `drill` points to it.

mod markdown;
mod probes;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sen_client::{Client, Consistency};
use sen_core::now_ms;
use sen_proto::v1::InjectFaultRequest;
use sen_raft::schema::system::{ActiveDrill, Incident, ORDINARY, SERIOUS, SystemRecord, kind};

pub use markdown::{Lang, markdown};
pub use report::{Observations, Probe, longest_gap};
pub use sen_raft::schema::system::{DrillObjectives, DrillReport, DrillTimeline};

use crate::OpsError;

/// Database the probe writes go to (kept as evidence, small); the
/// operator role may write it.
pub const PROBE_DB: &str = sen_core::auth::DRILL_PROBE;
/// Site the probe reads.
pub const PROBE_SITE: &str = sen_core::auth::DRILL_PROBE;
/// The file of the probe site that readers fetch.
pub const PROBE_FILE: &str = "probe.txt";

/// What a drill rehearses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Scenario {
    /// Planned switchover: `transfer-leader` to the best voter.
    Switchover,
    /// The target process crashes (exec of itself) and restarts from disk
    /// after the fault's duration.
    CrashLeader,
    CrashFollower,
    /// The target drops all peer traffic for the fault's duration.
    IsolateLeader,
    IsolateFollower,
    /// The target's Raft freezes (timers and peer traffic).
    PauseLeader,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Switchover => "switchover",
            Self::CrashLeader => "crash-leader",
            Self::CrashFollower => "crash-follower",
            Self::IsolateLeader => "isolate-leader",
            Self::IsolateFollower => "isolate-follower",
            Self::PauseLeader => "pause-leader",
        }
    }

    /// The fault injected into the target (`None`: a planned switchover).
    pub fn fault(self) -> Option<&'static str> {
        match self {
            Self::Switchover => None,
            Self::CrashLeader | Self::CrashFollower => Some("crash"),
            Self::IsolateLeader | Self::IsolateFollower => Some("isolate"),
            Self::PauseLeader => Some("pause"),
        }
    }

    /// `leader` or `follower`: the role the target has by default.
    pub fn default_target(self) -> &'static str {
        match self {
            Self::CrashFollower | Self::IsolateFollower => "follower",
            _ => "leader",
        }
    }
}

/// How to run a drill.
#[derive(Debug, Clone)]
pub struct DrillParams {
    pub scenario: Scenario,
    /// `leader`, `follower` or a node id (default: the scenario's role).
    pub target: Option<String>,
    /// How long the fault lasts (ignored by switchover).
    pub duration: Duration,
    /// Probe writes and reads per second, per node.
    pub probe_rate: f64,
    /// Longest acceptable client-observed write gap.
    pub rto_objective: Duration,
    /// Longest acceptable gap with no node serving site content.
    pub read_gap_objective: Duration,
}

impl DrillParams {
    fn check(&self) -> Result<(), OpsError> {
        if !(0.5..=200.0).contains(&self.probe_rate) {
            return Err("--probe-rate must be between 0.5 and 200 per second per node".into());
        }
        if self.duration < Duration::from_millis(500) || self.duration > Duration::from_secs(600) {
            return Err("--duration must be between 500ms and 10m".into());
        }
        Ok(())
    }

    pub fn objectives(&self) -> DrillObjectives {
        DrillObjectives {
            rto_ms: self.rto_objective.as_millis() as u64,
            read_gap_ms: self.read_gap_objective.as_millis() as u64,
            lost_writes: 0,
        }
    }
}

/// A member as a drill reaches it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    /// Its HTTP listener speaks TLS.
    pub http_tls: bool,
}

/// Run a drill and store its report (and its incident) in the cluster.
pub async fn run(c: &Client, p: &DrillParams) -> Result<DrillReport, OpsError> {
    p.check()?;
    let status = c.status().await?;
    if status.leader_id == 0 {
        return Err("the cluster has no leader right now; a drill needs a healthy cluster to start from".into());
    }
    let unhealthy: Vec<u64> = status.members.iter().filter(|m| !m.reachable).map(|m| m.id).collect();
    if !unhealthy.is_empty() {
        return Err(format!(
            "nodes {unhealthy:?} are unreachable; a drill starts from a healthy cluster (see `sen cluster status`)"
        )
        .into());
    }
    let mut members = Vec::new();
    for m in &status.members {
        let ls = c
            .local_status(&m.addr, Duration::from_secs(2))
            .await
            .map_err(|e| format!("node {} at {} does not answer: {e}", m.id, m.addr))?;
        if !ls.fault.is_empty() {
            return Err(format!(
                "node {} already has a drill fault ({}) active; `sen drill clear --addr {}`",
                m.id, ls.fault, m.addr
            )
            .into());
        }
        members.push(Member {
            id: m.id,
            grpc: m.addr.clone(),
            http: ls.http_addr,
            http_tls: ls.http_tls,
        });
    }
    let leader_before = status.leader_id;
    let voters: Vec<u64> = status.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let target = match p.target.as_deref().unwrap_or(p.scenario.default_target()) {
        "leader" => leader_before,
        "follower" => *voters
            .iter()
            .find(|v| **v != leader_before)
            .ok_or("there is no follower to target (a one-voter cluster)")?,
        n => n
            .parse::<u64>()
            .ok()
            .filter(|id| members.iter().any(|m| m.id == *id))
            .ok_or_else(|| format!("--target {n:?}: not leader, follower or a member id"))?,
    };
    let target_addr = members
        .iter()
        .find(|m| m.id == target)
        .map(|m| m.grpc.clone())
        .unwrap_or_default();
    let started = Instant::now();
    let started_at_ms = now_ms();
    let id = format!(
        "{}-{}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace([':', '-'], ""),
        p.scenario.name()
    );

    // The probe site: one small file whose body names this drill.
    let body = format!("sen drill probe {id}\n");
    let dir = std::env::temp_dir().join(format!("sen-drill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| OpsError::Io(format!("create {}: {e}", dir.display())))?;
    std::fs::write(dir.join(PROBE_FILE), &body)
        .map_err(|e| OpsError::Io(format!("write {}: {e}", dir.join(PROBE_FILE).display())))?;
    let _ = c.create_site(PROBE_SITE).await;
    let pushed = c.push(PROBE_SITE, &dir, &Default::default(), None).await;
    let _ = std::fs::remove_dir_all(&dir);
    pushed?;

    let tls = match c.tls_ca() {
        Some(ca) => Some(Arc::new(
            sen_security::tls::client_config(ca, None).map_err(|e| OpsError::Usage(format!("TLS: {e}")))?,
        )),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    // However this function ends, the probes stop.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_guard = StopOnDrop(stop.clone());
    let plan = probes::Plan {
        members: &members,
        target,
        drill: &id,
        body: &body,
        rate: p.probe_rate,
        started,
        base: c.options(),
        tls,
    };
    let running = probes::start(plan, stop.clone())?;

    // Mark the drill as running (incidents it causes point to it), let the
    // probes settle, then inject.
    let marker = ActiveDrill {
        version: ActiveDrill::VERSION,
        id: id.clone(),
        target,
        until_ms: now_ms() + p.duration.as_millis() as u64 + 120_000,
    };
    c.begin_drill(json(&marker)?).await?;
    let result = drive(
        c,
        p,
        &id,
        target,
        &target_addr,
        started,
        &members,
        leader_before,
        stop,
        running,
    )
    .await;
    let _ = c.end_drill(&id).await;
    let mut report = result?;
    report.started_at_ms = started_at_ms;

    // The incident (drills are interruptions too, planned ones).
    let inc = Incident {
        end_ms: Some(started_at_ms + report.timeline.probes_stopped_ms),
        reference: id.clone(),
        ..Incident::new(
            kind::DRILL,
            if report.passed { ORDINARY } else { SERIOUS },
            started_at_ms + report.timeline.fault_start_ms,
            format!(
                "failover drill {} on node {target}: write gap {} ms, read gap {} ms, {} lost writes, {}",
                p.scenario.name(),
                report.rto_ms,
                report.read_gap_ms,
                report.lost_writes,
                if report.passed { "passed" } else { "FAILED" }
            ),
            vec![target],
            0,
        )
        .with_vi(format!(
            "diễn tập chuyển đổi dự phòng {} trên nút {target}: gián đoạn ghi {} ms, gián đoạn đọc {} ms, {} lần ghi bị mất, {}",
            p.scenario.name(),
            report.rto_ms,
            report.read_gap_ms,
            report.lost_writes,
            if report.passed { "đạt" } else { "KHÔNG ĐẠT" }
        ))
    };
    match c
        .record_incident(serde_json::to_string(&inc).map_err(|e| e.to_string())?)
        .await
    {
        Ok(iid) => report.incident_id = iid,
        Err(e) => report.notes.push(format!("could not record the drill incident: {e}")),
    }
    c.store_drill_report(json(&report)?).await?;
    Ok(report)
}

fn json<T: SystemRecord>(r: &T) -> Result<String, OpsError> {
    r.to_json()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| OpsError::Usage(e.to_string()))
}

/// Inject, observe, verify: everything between the marker and the report.
#[allow(clippy::too_many_arguments)]
async fn drive(
    c: &Client,
    p: &DrillParams,
    id: &str,
    target: u64,
    target_addr: &str,
    started: Instant,
    members: &[Member],
    leader_before: u64,
    stop: Arc<AtomicBool>,
    running: probes::Running,
) -> Result<DrillReport, OpsError> {
    let rel = move || started.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut notes = Vec::new();
    let fault_start_ms;
    let fault_end_ms;
    match p.scenario.fault() {
        None => {
            fault_start_ms = rel();
            let r = c.transfer_leader(0).await;
            fault_end_ms = rel();
            match r {
                Ok(r) => notes.push(format!(
                    "leadership moved from node {} to node {} in {} ms (as seen by the old leader)",
                    r.from, r.to, r.elapsed_ms
                )),
                Err(e) => notes.push(format!("transfer-leader failed: {e}")),
            }
        }
        Some(fault) => {
            c.inject_fault(
                target_addr,
                InjectFaultRequest {
                    fault: fault.into(),
                    duration_ms: p.duration.as_millis() as u64,
                    drill_id: id.to_owned(),
                },
            )
            .await?;
            fault_start_ms = rel();
            tokio::time::sleep(p.duration).await;
            if fault != "crash" {
                // It ends on its own; clearing is a no-op unless clocks drift.
                let _ = c.clear_fault(target_addr).await;
            }
            fault_end_ms = rel();
        }
    }

    // Wait until the target is back and caught up (at most 60 s).
    let mut target_caught_up_ms = None;
    let wait_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < wait_until {
        if let (Ok(t), Ok(s)) = (
            c.local_status(target_addr, Duration::from_millis(500)).await,
            c.status().await,
        ) && t.fault.is_empty()
            && s.leader_id != 0
            && t.applied_index >= s.commit_index
        {
            target_caught_up_ms = Some(rel());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little more probing after recovery, then stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (probes, leaders) = running.finish().await;
    let probes_stopped_ms = rel();

    // RPO: every acknowledged write present on the leader (linearizable)...
    let prefix = format!("{id}/");
    let (present, _) = c
        .scan(PROBE_DB, prefix.as_bytes(), 0, true, Consistency::Linearizable)
        .await?;
    let on_leader: BTreeSet<Vec<u8>> = present.into_iter().map(|kv| kv.key).collect();
    // ... and on every node once it has applied the leader's commit index.
    let commit = c.status().await.map(|s| s.commit_index).unwrap_or(0);
    let mut on_nodes = BTreeMap::new();
    for m in members {
        let node_client = Client::new(
            std::slice::from_ref(&m.grpc),
            probes::opts(c.options(), Duration::from_secs(5)),
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if c.local_status(&m.grpc, Duration::from_millis(500))
                .await
                .ok()
                .is_some_and(|s| s.applied_index >= commit)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match node_client
            .scan(PROBE_DB, prefix.as_bytes(), 0, true, Consistency::Stale)
            .await
        {
            Ok((kvs, _)) => {
                on_nodes.insert(m.id, kvs.into_iter().map(|kv| kv.key).collect());
            }
            Err(e) => notes.push(format!("could not check node {}: {e}", m.id)),
        }
    }
    let leader_after = c.status().await.map(|s| s.leader_id).unwrap_or(0);
    notes.push(format!(
        "probe: {} writes/s and {} reads/s per node through {} nodes; an idle gap of ~{} ms between acknowledged writes is the probe interval, not an outage",
        p.probe_rate,
        p.probe_rate,
        members.len(),
        (1000.0 / (p.probe_rate * members.len() as f64)).round()
    ));
    let obs = Observations {
        probes,
        leaders,
        nodes: members.iter().map(|m| m.id).collect(),
        leader_before,
        leader_after,
        fault_start_ms,
        fault_end_ms,
        target_caught_up_ms,
        probes_stopped_ms,
        on_leader,
        on_nodes,
        notes,
    };
    Ok(report::compute(id, p, target, obs))
}

/// Every stored drill report, oldest first.
pub async fn load_reports(c: &Client) -> Result<Vec<DrillReport>, OpsError> {
    let mut out: Vec<DrillReport> = c
        .list_drill_reports()
        .await?
        .iter()
        .filter_map(|j| DrillReport::from_json(j.as_bytes()).ok())
        .collect();
    out.sort_by_key(|r| r.started_at_ms);
    Ok(out)
}

/// The report `id` names: its exact id, else the only (or newest) one
/// whose id starts or ends with it (`switchover` finds the last one).
pub fn find<'a>(reports: &'a [DrillReport], id: &str) -> Result<&'a DrillReport, OpsError> {
    if let Some(r) = reports.iter().find(|r| r.id == id) {
        return Ok(r);
    }
    reports
        .iter()
        .rev()
        .find(|r| r.id.starts_with(id) || r.id.ends_with(id))
        .ok_or_else(|| format!("no drill report {id:?}; see `sen drill list`").into())
}
