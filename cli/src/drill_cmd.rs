//! `sen drill ...`: failover drills on the live cluster (and the restore
//! drill, in `backup_cmd`).
//!
//! A drill: read who leads; push a one-file probe site; start a probe
//! workload that writes (KV) and reads (HTTP site content) through every
//! node at `--probe-rate` per node; inject the scenario's fault into the
//! target node (inside the node: no OS privileges, bounded in time); end it;
//! wait until the target is back and caught up; then verify every
//! acknowledged probe write on the leader and on every node. The report
//! (timeline, RTO, read gap, RPO, pass/fail against the objectives) is
//! stored in the cluster (`sen-system/drill/<id>`) and an incident of kind
//! `drill` points to it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use sen_client::content::now_ms;
use sen_client::{Client, ClientOptions, Consistency};
use sen_node::backup::SYSTEM_DB;
use sen_node::incidents::{Incident, ORDINARY, SERIOUS};
use sen_proto::v1::InjectFaultRequest;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::output::table;
use crate::{Failure, Output, client};

/// Database the probe writes go to (kept as evidence, small).
pub const PROBE_DB: &str = "sen-drill";
/// Site the probe reads.
pub const PROBE_SITE: &str = "sen-drill";
const PROBE_FILE: &str = "probe.txt";
const REPORT_PREFIX: &str = "drill/";
pub const REPORT_VERSION: u32 = 1;

#[derive(Subcommand, Debug)]
pub enum DrillCmd {
    /// Run a failover drill on the live cluster and store its report.
    Run(RunArgs),
    /// Stored drill reports, newest last.
    List,
    /// One stored report.
    Show {
        /// Report id (or a unique prefix / suffix such as the scenario).
        id: String,
        /// `md` prints the report as Markdown; `json` as stored.
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
        /// Language of the Markdown report.
        #[arg(long, value_enum, default_value_t = Lang::En)]
        lang: Lang,
    },
    /// End a drill fault on a node now (e.g. after interrupting a drill).
    Clear {
        /// The node's gRPC address.
        #[arg(long)]
        addr: String,
    },
    #[command(flatten)]
    Backup(crate::backup_cmd::DrillCmd),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Planned switchover: `transfer-leader` to the best voter.
    Switchover,
    /// The target process crashes (exec of itself) and restarts from disk
    /// after --duration.
    CrashLeader,
    CrashFollower,
    /// The target drops all peer traffic for --duration.
    IsolateLeader,
    IsolateFollower,
    /// The target's Raft freezes (timers and peer traffic) for --duration.
    PauseLeader,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Switchover => "switchover",
            Self::CrashLeader => "crash-leader",
            Self::CrashFollower => "crash-follower",
            Self::IsolateLeader => "isolate-leader",
            Self::IsolateFollower => "isolate-follower",
            Self::PauseLeader => "pause-leader",
        }
    }

    fn fault(self) -> Option<&'static str> {
        match self {
            Self::Switchover => None,
            Self::CrashLeader | Self::CrashFollower => Some("crash"),
            Self::IsolateLeader | Self::IsolateFollower => Some("isolate"),
            Self::PauseLeader => Some("pause"),
        }
    }

    fn default_target(self) -> &'static str {
        match self {
            Self::CrashFollower | Self::IsolateFollower => "follower",
            _ => "leader",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Md,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    En,
    Vi,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(value_enum)]
    scenario: Scenario,
    /// `leader`, `follower` or a node id (default: the scenario's role).
    #[arg(long)]
    target: Option<String>,
    /// How long the fault lasts (ignored by switchover).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Probe writes and reads per second, per node.
    #[arg(long, default_value_t = 10.0)]
    probe_rate: f64,
    /// Longest acceptable client-observed write gap.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    rto_objective: Duration,
    /// Longest acceptable gap with no node serving site content.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    read_gap_objective: Duration,
    /// Language of the printed report (the stored one is language-free).
    #[arg(long, value_enum, default_value_t = Lang::En)]
    lang: Lang,
}

/// A stored drill report (JSON, `version` 1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    pub timeline: Timeline,
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
    pub objectives: Objectives,
    pub passed: bool,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub incident_id: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub fault_start_ms: u64,
    pub first_failed_request_ms: Option<u64>,
    pub new_leader_elected_ms: Option<u64>,
    pub first_write_after_failure_ms: Option<u64>,
    pub fault_end_ms: u64,
    pub target_caught_up_ms: Option<u64>,
    pub probes_stopped_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Objectives {
    pub rto_ms: u64,
    pub read_gap_ms: u64,
    pub lost_writes: u64,
}

#[derive(Debug, Clone)]
struct Probe {
    node: u64,
    write: bool,
    start_ms: u64,
    end_ms: u64,
    ok: bool,
    key: String,
}

fn opts(timeout: Duration) -> ClientOptions {
    ClientOptions {
        timeout,
        attempt_timeout: timeout,
        ..Default::default()
    }
}

/// `GET /sites/<probe>/probe.txt` over HTTP/1.1; true on a 200 with the
/// expected body.
async fn http_probe(addr: &str, expect: &str, timeout: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /sites/{PROBE_SITE}/{PROBE_FILE} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        Some(text.starts_with("HTTP/1.1 200") && text.ends_with(expect))
    };
    matches!(tokio::time::timeout(timeout, work).await, Ok(Some(true)))
}

/// Longest interval without a success that overlaps `[from, to]`,
/// counting from the last success before `from`.
fn longest_gap(mut successes: Vec<u64>, from: u64, to: u64) -> u64 {
    successes.sort_unstable();
    let before = successes.iter().copied().filter(|t| *t <= from).max().unwrap_or(from);
    let mut prev = before;
    let mut worst = 0;
    for t in successes.into_iter().filter(|t| *t > from && *t <= to) {
        worst = worst.max(t - prev);
        prev = t;
    }
    worst.max(to.saturating_sub(prev))
}

pub async fn run(cmd: DrillCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        DrillCmd::Run(args) => {
            let report = run_drill(&c, &args).await?;
            let passed = report.passed;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&report)?),
                Output::Text => print!("{}", markdown(&report, args.lang)),
            }
            if !passed {
                return Err(Failure {
                    code: 2,
                    message: format!("drill {} failed: {}", report.id, report.failures.join("; ")),
                });
            }
        }
        DrillCmd::List => {
            let reports = load_reports(&c).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&reports)?),
                Output::Text => {
                    let rows: Vec<Vec<String>> = reports
                        .iter()
                        .map(|r| {
                            vec![
                                r.id.clone(),
                                r.scenario.clone(),
                                r.target.to_string(),
                                format!("{} ms", r.rto_ms),
                                format!("{} ms", r.read_gap_ms),
                                r.lost_writes.to_string(),
                                format!("{} → {}", r.leader_before, r.leader_after),
                                if r.passed { "pass" } else { "FAIL" }.into(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(
                            &[
                                "ID", "SCENARIO", "TARGET", "RTO", "READ GAP", "LOST", "LEADER", "RESULT"
                            ],
                            &rows
                        )
                    );
                }
            }
        }
        DrillCmd::Show { id, format, lang } => {
            let reports = load_reports(&c).await?;
            let found: Vec<&DrillReport> = reports
                .iter()
                .filter(|r| r.id == id || r.id.starts_with(&id) || r.id.ends_with(&id))
                .collect();
            let r = match found.as_slice() {
                [] => return Err(format!("no drill report {id:?}; see `sen drill list`").into()),
                [r] => *r,
                many if many.iter().any(|r| r.id == id) => many.iter().find(|r| r.id == id).copied().unwrap_or(many[0]),
                many => *many.last().unwrap_or(&many[0]),
            };
            match (output, format) {
                (Output::Json, _) | (_, ReportFormat::Json) => println!("{}", serde_json::to_string_pretty(r)?),
                _ => print!("{}", markdown(r, lang)),
            }
        }
        DrillCmd::Clear { addr } => {
            let r = c.clear_fault(&addr).await?;
            crate::output::emit(output, json!({"cleared": r.cleared}), || {
                if r.cleared.is_empty() {
                    format!("no drill fault was active on {addr}")
                } else {
                    format!("ended the {} fault on {addr}", r.cleared)
                }
            });
        }
        DrillCmd::Backup(_) => unreachable!("handled by backup_cmd"),
    }
    Ok(())
}

async fn load_reports(c: &Client) -> Result<Vec<DrillReport>, Failure> {
    let (kvs, _) = c
        .scan(SYSTEM_DB, REPORT_PREFIX.as_bytes(), 0, false, Consistency::Linearizable)
        .await?;
    let mut out: Vec<DrillReport> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    out.sort_by_key(|r| r.started_at_ms);
    Ok(out)
}

struct Member {
    id: u64,
    grpc: String,
    http: String,
}

async fn run_drill(c: &Client, a: &RunArgs) -> Result<DrillReport, Failure> {
    if !(0.5..=200.0).contains(&a.probe_rate) {
        return Err("--probe-rate must be between 0.5 and 200 per second per node".into());
    }
    if a.duration < Duration::from_millis(500) || a.duration > Duration::from_secs(600) {
        return Err("--duration must be between 500ms and 10m".into());
    }
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
        });
    }
    let leader_before = status.leader_id;
    let voters: Vec<u64> = status.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let target = match a.target.as_deref().unwrap_or(a.scenario.default_target()) {
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
        a.scenario.name()
    );
    let rel = move || started.elapsed().as_millis() as u64;

    // The probe site: one small file whose body names this drill.
    let body = format!("sen drill probe {id}\n");
    let dir = std::env::temp_dir().join(format!("sen-drill-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(PROBE_FILE), &body)?;
    let _ = c.create_site(PROBE_SITE).await;
    c.push(PROBE_SITE, &dir, &Default::default(), None).await?;
    let _ = std::fs::remove_dir_all(&dir);

    // Probes: one writer and one reader per node.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Probe>>> = Arc::default();
    let period = Duration::from_secs_f64(1.0 / a.probe_rate);
    let probe_timeout = Duration::from_millis(1000).max(period);
    let mut tasks = Vec::new();
    // Probes are staggered (writer i starts i/n of a period later), so the
    // union of all nodes' probes samples every period/n, not all at once.
    let n_members = members.len() as u32;
    for (idx, m) in members.iter().enumerate() {
        let offset = period * idx as u32 / n_members.max(1);
        let writer = Client::new(std::slice::from_ref(&m.grpc), opts(probe_timeout))?;
        let (stop_w, log_w, node, drill) = (stop.clone(), log.clone(), m.id, id.clone());
        tasks.push(tokio::spawn(async move {
            let (stop, log) = (stop_w, log_w);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                seq += 1;
                let key = format!("{drill}/{node}/{seq:08}");
                let start_ms = rel();
                let ok = writer.put(PROBE_DB, key.as_bytes(), b"1").await.is_ok();
                let p = Probe {
                    node,
                    write: true,
                    start_ms,
                    end_ms: rel(),
                    ok,
                    key,
                };
                log.lock().unwrap_or_else(|p| p.into_inner()).push(p);
            }
        }));
        let (stop_r, log_r, node, http, body) = (stop.clone(), log.clone(), m.id, m.http.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let (stop, log) = (stop_r, log_r);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset + period / 2, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let start_ms = rel();
                let ok = http_probe(&http, &body, probe_timeout).await;
                let p = Probe {
                    node,
                    write: false,
                    start_ms,
                    end_ms: rel(),
                    ok,
                    key: String::new(),
                };
                log.lock().unwrap_or_else(|p| p.into_inner()).push(p);
            }
        }));
    }
    // Leader watch: who leads, seen from every node but the target.
    let leaders: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    {
        let (stop, leaders) = (stop.clone(), leaders.clone());
        let others: Vec<String> = members
            .iter()
            .filter(|m| m.id != target)
            .map(|m| m.grpc.clone())
            .collect();
        // One client, so the 25 ms polls reuse its connections.
        let watch = Client::new(&others, opts(Duration::from_millis(300)))?;
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let calls = others
                    .iter()
                    .map(|a| async { watch.local_status(a, Duration::from_millis(300)).await.ok() });
                let answers = futures::future::join_all(calls).await;
                let leader = answers
                    .iter()
                    .flatten()
                    .filter(|s| s.state == "leader")
                    .max_by_key(|s| s.term)
                    .map(|s| s.node_id)
                    .or_else(|| {
                        answers
                            .iter()
                            .flatten()
                            .filter(|s| s.leader_id != 0)
                            .max_by_key(|s| s.term)
                            .map(|s| s.leader_id)
                    })
                    .unwrap_or(0);
                leaders.lock().unwrap_or_else(|p| p.into_inner()).push((rel(), leader));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }

    // Mark the drill as running (incidents it causes point to it), let the
    // probes settle, then inject.
    let marker = sen_node::incidents::ActiveDrill {
        id: id.clone(),
        target,
        until_ms: now_ms() + a.duration.as_millis() as u64 + 120_000,
    };
    c.put(
        SYSTEM_DB,
        sen_node::incidents::ACTIVE_DRILL_KEY,
        &serde_json::to_vec(&marker)?,
    )
    .await?;
    let result = drive(
        c,
        a,
        &id,
        target,
        &target_addr,
        started,
        &members,
        leader_before,
        stop,
        tasks,
        log,
        leaders,
    )
    .await;
    let _ = c.delete(SYSTEM_DB, sen_node::incidents::ACTIVE_DRILL_KEY).await;
    let mut report = result?;
    report.started_at_ms = started_at_ms;
    let (fault_start_ms, target) = (report.timeline.fault_start_ms, report.target);
    // The incident (drills are interruptions too, planned ones).
    let inc = Incident {
        end_ms: Some(started_at_ms + report.timeline.probes_stopped_ms),
        reference: id.clone(),
        ..Incident::new(
            "drill",
            if report.passed { ORDINARY } else { SERIOUS },
            started_at_ms + fault_start_ms,
            format!(
                "failover drill {} on node {target}: write gap {} ms, read gap {} ms, {} lost writes, {}",
                a.scenario.name(),
                report.rto_ms,
                report.read_gap_ms,
                report.lost_writes,
                if report.passed { "passed" } else { "FAILED" }
            ),
            vec![target],
            0,
        )
    };
    match c.record_incident(serde_json::to_string(&inc)?).await {
        Ok(iid) => report.incident_id = iid,
        Err(e) => report.notes.push(format!("could not record the drill incident: {e}")),
    }
    c.put(
        SYSTEM_DB,
        format!("{REPORT_PREFIX}{id}").as_bytes(),
        &serde_json::to_vec(&report)?,
    )
    .await?;
    Ok(report)
}

/// Inject, observe, verify: everything between the marker and the report.
#[allow(clippy::too_many_arguments)]
async fn drive(
    c: &Client,
    a: &RunArgs,
    id: &str,
    target: u64,
    target_addr: &str,
    started: Instant,
    members: &[Member],
    leader_before: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    log: Arc<Mutex<Vec<Probe>>>,
    leaders: Arc<Mutex<Vec<(u64, u64)>>>,
) -> Result<DrillReport, Failure> {
    let rel = move || started.elapsed().as_millis() as u64;
    let id = id.to_owned();
    let target_addr = target_addr.to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut notes = Vec::new();
    let fault_start_ms;
    let fault_end_ms;
    match a.scenario.fault() {
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
                &target_addr,
                InjectFaultRequest {
                    fault: fault.into(),
                    duration_ms: a.duration.as_millis() as u64,
                    drill_id: id.clone(),
                },
            )
            .await?;
            fault_start_ms = rel();
            tokio::time::sleep(a.duration).await;
            if fault != "crash" {
                // It ends on its own; clearing is a no-op unless clocks drift.
                let _ = c.clear_fault(&target_addr).await;
            }
            fault_end_ms = rel();
        }
    }

    // Wait until the target is back and caught up (at most 60 s).
    let mut target_caught_up_ms = None;
    let wait_until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < wait_until {
        if let (Some(t), Ok(s)) = (
            c.local_status(&target_addr, Duration::from_millis(500)).await.ok(),
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
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let probes_stopped_ms = rel();
    let probes = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
    let leaders = std::mem::take(&mut *leaders.lock().unwrap_or_else(|p| p.into_inner()));

    // RPO: every acknowledged write present on the leader (linearizable)...
    let (present, _) = c
        .scan(
            PROBE_DB,
            format!("{id}/").as_bytes(),
            0,
            true,
            Consistency::Linearizable,
        )
        .await?;
    let present: BTreeSet<Vec<u8>> = present.into_iter().map(|kv| kv.key).collect();
    let acked: Vec<&Probe> = probes.iter().filter(|p| p.write && p.ok).collect();
    let lost_writes = acked.iter().filter(|p| !present.contains(p.key.as_bytes())).count() as u64;
    let writes_unknown_applied = probes
        .iter()
        .filter(|p| p.write && !p.ok && present.contains(p.key.as_bytes()))
        .count() as u64;
    // ... and on every node once it has applied the leader's commit index.
    let commit = c.status().await.map(|s| s.commit_index).unwrap_or(0);
    let mut missing_by_node = BTreeMap::new();
    for m in members {
        let node_client = Client::new(std::slice::from_ref(&m.grpc), opts(Duration::from_secs(5)))?;
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
            .scan(PROBE_DB, format!("{id}/").as_bytes(), 0, true, Consistency::Stale)
            .await
        {
            Ok((kvs, _)) => {
                let have: BTreeSet<Vec<u8>> = kvs.into_iter().map(|kv| kv.key).collect();
                let missing = acked.iter().filter(|p| !have.contains(p.key.as_bytes())).count() as u64;
                missing_by_node.insert(m.id, missing);
            }
            Err(e) => notes.push(format!("could not check node {}: {e}", m.id)),
        }
    }

    // Timeline and gaps.
    let first_failed_request_ms = probes
        .iter()
        .filter(|p| !p.ok && p.end_ms >= fault_start_ms)
        .map(|p| p.start_ms.max(fault_start_ms))
        .min();
    let new_leader_elected_ms = leaders
        .iter()
        .find(|(t, l)| *t >= fault_start_ms && *l != 0 && *l != leader_before)
        .map(|(t, _)| *t);
    let after = first_failed_request_ms.unwrap_or(fault_start_ms);
    let first_write_after_failure_ms = probes
        .iter()
        .filter(|p| p.write && p.ok && p.start_ms >= after)
        .map(|p| p.end_ms)
        .min();
    // From the fault until probing stopped (1 s after the target caught up):
    // the whole disturbance and recovery, as clients saw it.
    let window_end = probes_stopped_ms.max(fault_end_ms);
    let writes_ok: Vec<u64> = probes.iter().filter(|p| p.write && p.ok).map(|p| p.end_ms).collect();
    let reads_ok: Vec<u64> = probes.iter().filter(|p| !p.write && p.ok).map(|p| p.end_ms).collect();
    let rto_ms = longest_gap(writes_ok, fault_start_ms, window_end);
    let read_gap_ms = longest_gap(reads_ok, fault_start_ms, window_end);
    let mut read_gap_by_node_ms = BTreeMap::new();
    for m in members {
        let ok: Vec<u64> = probes
            .iter()
            .filter(|p| !p.write && p.ok && p.node == m.id)
            .map(|p| p.end_ms)
            .collect();
        read_gap_by_node_ms.insert(m.id, longest_gap(ok, fault_start_ms, window_end));
    }
    let leader_after = c.status().await.map(|s| s.leader_id).unwrap_or(0);

    let objectives = Objectives {
        rto_ms: a.rto_objective.as_millis() as u64,
        read_gap_ms: a.read_gap_objective.as_millis() as u64,
        lost_writes: 0,
    };
    let mut failures = Vec::new();
    if lost_writes > 0 {
        failures.push(format!("{lost_writes} acknowledged writes are missing"));
    }
    let missing_total: u64 = missing_by_node.values().sum();
    if missing_total > 0 {
        failures.push(format!(
            "acknowledged writes missing on nodes after catch-up: {missing_by_node:?}"
        ));
    }
    if rto_ms > objectives.rto_ms {
        failures.push(format!(
            "write gap {rto_ms} ms exceeds the objective {} ms",
            objectives.rto_ms
        ));
    }
    if read_gap_ms > objectives.read_gap_ms {
        failures.push(format!(
            "read gap {read_gap_ms} ms exceeds the objective {} ms",
            objectives.read_gap_ms
        ));
    }
    if target_caught_up_ms.is_none() {
        failures.push(format!(
            "node {target} did not come back and catch up within 60 s of the fault's end"
        ));
    }
    if leader_after == 0 {
        failures.push("no leader after the drill".into());
    }
    notes.push(format!(
        "probe: {} writes/s and {} reads/s per node through {} nodes; an idle gap of ~{} ms between acknowledged writes is the probe interval, not an outage",
        a.probe_rate,
        a.probe_rate,
        members.len(),
        (1000.0 / (a.probe_rate * members.len() as f64)).round()
    ));
    let report = DrillReport {
        version: REPORT_VERSION,
        id: id.clone(),
        scenario: a.scenario.name().into(),
        target,
        started_at_ms: 0,
        fault_ms: if a.scenario == Scenario::Switchover {
            0
        } else {
            a.duration.as_millis() as u64
        },
        probe_rate: a.probe_rate,
        nodes: members.iter().map(|m| m.id).collect(),
        leader_before,
        leader_after,
        timeline: Timeline {
            fault_start_ms,
            first_failed_request_ms,
            new_leader_elected_ms,
            first_write_after_failure_ms,
            fault_end_ms,
            target_caught_up_ms,
            probes_stopped_ms,
        },
        rto_ms,
        read_gap_ms,
        read_gap_by_node_ms,
        writes_attempted: probes.iter().filter(|p| p.write).count() as u64,
        writes_acknowledged: acked.len() as u64,
        writes_failed: probes.iter().filter(|p| p.write && !p.ok).count() as u64,
        writes_unknown_applied,
        reads_attempted: probes.iter().filter(|p| !p.write).count() as u64,
        reads_ok: probes.iter().filter(|p| !p.write && p.ok).count() as u64,
        lost_writes,
        missing_by_node,
        objectives,
        passed: failures.is_empty(),
        failures,
        notes,
        incident_id: 0,
    };

    Ok(report)
}

fn ms(v: Option<u64>) -> String {
    v.map_or("—".into(), |v| format!("{v} ms"))
}

/// The report as Markdown, in English or Vietnamese.
pub fn markdown(r: &DrillReport, lang: Lang) -> String {
    let vi = lang == Lang::Vi;
    let t = |en: &'static str, vi_text: &'static str| if vi { vi_text } else { en };
    let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(r.started_at_ms));
    let mut s = format!(
        "# {} {} — {}\n\n",
        t("Failover drill", "Diễn tập chuyển đổi dự phòng"),
        r.id,
        if r.passed {
            t("PASSED", "ĐẠT")
        } else {
            t("FAILED", "KHÔNG ĐẠT")
        }
    );
    s.push_str(&format!(
        "{}: `{}` · {}: {} · {}: {} · {}: {} → {}\n\n",
        t("Scenario", "Kịch bản"),
        r.scenario,
        t("target node", "nút mục tiêu"),
        r.target,
        t("started", "bắt đầu"),
        when,
        t("leader", "nút lãnh đạo"),
        r.leader_before,
        r.leader_after
    ));
    s.push_str(&format!(
        "| {} | {} | {} |\n|---|---|---|\n",
        t("measure", "chỉ số"),
        t("value", "giá trị"),
        t("objective", "mục tiêu")
    ));
    s.push_str(&format!(
        "| RTO ({}) | {} ms | ≤ {} ms |\n",
        t(
            "longest write gap seen by clients",
            "khoảng ngắt ghi dài nhất phía người dùng"
        ),
        r.rto_ms,
        r.objectives.rto_ms
    ));
    s.push_str(&format!(
        "| {} | {} ms | ≤ {} ms |\n",
        t(
            "longest read gap (site content over HTTP)",
            "khoảng ngắt đọc dài nhất (nội dung trang qua HTTP)"
        ),
        r.read_gap_ms,
        r.objectives.read_gap_ms
    ));
    s.push_str(&format!(
        "| RPO ({}) | {} | 0 |\n\n",
        t("acknowledged writes lost", "bản ghi đã xác nhận bị mất"),
        r.lost_writes
    ));
    s.push_str(&format!(
        "## {}\n\n",
        t(
            "Timeline (ms after the drill began)",
            "Diễn biến (ms kể từ khi bắt đầu)"
        )
    ));
    let tl = &r.timeline;
    for (en, vi_text, v) in [
        ("fault injected", "bắt đầu sự cố", Some(tl.fault_start_ms)),
        (
            "first failed request",
            "yêu cầu lỗi đầu tiên",
            tl.first_failed_request_ms,
        ),
        (
            "new leader elected",
            "bầu xong nút lãnh đạo mới",
            tl.new_leader_elected_ms,
        ),
        (
            "first successful write after the failure",
            "lần ghi thành công đầu tiên sau lỗi",
            tl.first_write_after_failure_ms,
        ),
        ("fault ended", "kết thúc sự cố", Some(tl.fault_end_ms)),
        (
            "target back and caught up",
            "nút mục tiêu hoạt động lại và bắt kịp",
            tl.target_caught_up_ms,
        ),
        ("probes stopped", "dừng thăm dò", Some(tl.probes_stopped_ms)),
    ] {
        s.push_str(&format!("- {}: {}\n", if vi { vi_text } else { en }, ms(v)));
    }
    s.push_str(&format!(
        "\n## {}\n\n- {}: {} / {} {} ({} {}, {} {})\n- {}: {} / {}\n- {}: {:?}\n- {}: {:?}\n",
        t("Probe workload", "Tải thăm dò"),
        t("writes acknowledged", "lần ghi được xác nhận"),
        r.writes_acknowledged,
        r.writes_attempted,
        t("attempted", "lần thử"),
        r.writes_failed,
        t("failed", "lỗi"),
        r.writes_unknown_applied,
        t("of them applied anyway", "trong số đó vẫn được ghi"),
        t("HTTP reads ok", "lần đọc HTTP thành công"),
        r.reads_ok,
        r.reads_attempted,
        t("read gap by node (ms)", "khoảng ngắt đọc theo nút (ms)"),
        r.read_gap_by_node_ms,
        t(
            "acknowledged writes missing by node",
            "bản ghi đã xác nhận bị thiếu theo nút"
        ),
        r.missing_by_node
    ));
    if !r.failures.is_empty() {
        s.push_str(&format!("\n## {}\n\n", t("Why it failed", "Lý do không đạt")));
        for f in &r.failures {
            s.push_str(&format!("- {f}\n"));
        }
    }
    if !r.notes.is_empty() {
        s.push_str(&format!("\n## {}\n\n", t("Notes", "Ghi chú")));
        for n in &r.notes {
            s.push_str(&format!("- {n}\n"));
        }
    }
    if r.incident_id != 0 {
        s.push_str(&format!(
            "\n{}: `sen incident show {}`\n",
            t("Incident", "Sự cố"),
            r.incident_id
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::longest_gap;

    #[test]
    fn gaps_count_from_the_last_success_before_the_fault() {
        // Successes every 100 ms, then nothing from 1000 to 2500.
        let s: Vec<u64> = (0..=10).map(|i| i * 100).chain((25..=30).map(|i| i * 100)).collect();
        assert_eq!(longest_gap(s.clone(), 950, 3000), 1500);
        // No success after the fault at all: open until the window ends.
        assert_eq!(longest_gap((0..=10).map(|i| i * 100).collect(), 1000, 4000), 3000);
        // Healthy: the gap is the probe interval.
        assert_eq!(longest_gap((0..=30).map(|i| i * 100).collect(), 1000, 3000), 100);
    }
}
