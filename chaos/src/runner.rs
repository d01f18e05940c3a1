//! Running one scenario end to end: start a cluster behind proxies, run the
//! workload, inject the faults, heal, check liveness and convergence, dump
//! the nodes' state, run every checker and write the report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sen_client::{Client, ClientOptions, Consistency};
use sen_proto::v1::admin_client::AdminClient;
use sen_proto::v1::{AppliedRequestsRequest, DigestRequest, LocalStatusRequest};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::check::{self, Dumps, Sample};
use crate::cluster::{ProcessCluster, wait_for};
use crate::history::{self, Op, OpKind, Outcome};
use crate::nemesis::{Executed, Fault, Nemesis, Proxies};
use crate::report::{self, Liveness, Report, Window};
use crate::scenario;
use crate::site_load::{self, SiteHistory};
use crate::workload::{self, DB, Shared, WorkloadConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: String,
    pub nodes: usize,
    pub seed: u64,
    /// Length of the fault window (for `random`: of the whole fault phase).
    pub duration: Duration,
    pub out: PathBuf,
    pub sen: PathBuf,
    pub workload: WorkloadConfig,
    /// Re-run the faults recorded in this schedule instead of the scenario.
    pub replay: Option<PathBuf>,
    /// Traffic before the first fault.
    pub warmup: Duration,
    /// Traffic after healing, before the final checks.
    pub recovery: Duration,
}

/// What `schedule.json` holds: enough to replay the faults of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    pub scenario: String,
    pub seed: u64,
    pub nodes: usize,
    pub duration_ms: u64,
    pub windows: Vec<Window>,
    pub faults: Vec<Executed>,
}

/// Node configuration used by every chaos run: frequent snapshots so the
/// snapshot paths run often, short server deadlines, garbage collection of
/// site chunks running during the faults.
pub const NODE_CONFIG: &str = "[raft]\nsnapshot-after-entries = 300\nkeep-entries-after-snapshot = 50\n[server]\nrequest-timeout = \"3s\"\nforward-timeout = \"2s\"\n[content]\ngc-grace = \"30s\"\ngc-interval = \"5s\"\n";

/// What scenarios use to act on the cluster.
pub struct Ctx {
    pub cluster: ProcessCluster,
    pub nemesis: Nemesis,
    pub rng: StdRng,
    pub start: Instant,
    pub windows: Vec<Window>,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
    tmpfs: Option<u64>,
    ids: Vec<u64>,
}

impl Ctx {
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub fn node_ids(&self) -> Vec<u64> {
        self.ids.clone()
    }

    pub fn tmpfs_node(&self) -> Option<u64> {
        self.tmpfs
    }

    pub fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    pub async fn apply(&mut self, f: Fault) -> Executed {
        let now = self.now_us();
        let ex = self.nemesis.apply(&mut self.cluster, f, now).await;
        if !ex.ok {
            self.notes
                .push(format!("{}: {}", ex.label, ex.note.clone().unwrap_or_default()));
        }
        ex
    }

    /// Apply `faults`, wait `d`, apply `repairs`; record the window.
    pub async fn window(
        &mut self,
        label: &str,
        faults: impl IntoIterator<Item = Fault>,
        d: Duration,
        repairs: impl IntoIterator<Item = Fault>,
    ) {
        let start = self.begin_window(label, faults).await;
        self.sleep(d).await;
        self.end_window(start, repairs).await;
    }

    pub async fn begin_window(&mut self, label: &str, faults: impl IntoIterator<Item = Fault>) -> (String, u64) {
        let start = self.now_us();
        for f in faults {
            self.apply(f).await;
        }
        (label.to_owned(), start)
    }

    pub async fn end_window(&mut self, (label, start): (String, u64), repairs: impl IntoIterator<Item = Fault>) {
        for f in repairs {
            self.apply(f).await;
        }
        let end_us = self.now_us();
        self.windows.push(Window {
            label,
            start_us: start,
            end_us,
        });
    }

    fn live_nodes(&self) -> Vec<u64> {
        self.ids
            .iter()
            .copied()
            .filter(|n| !self.nemesis.down.contains(n) && !self.nemesis.paused.contains(n))
            .collect()
    }

    /// The current leader (the live node that says it leads, newest term).
    pub async fn leader(&mut self) -> Result<u64> {
        let cluster = &self.cluster;
        let live = self.live_nodes();
        wait_for("a leader", Duration::from_secs(30), || async {
            let mut best: Option<(u64, u64)> = None;
            for n in &live {
                if let Ok(s) = cluster.local_status(*n, Duration::from_millis(500)).await
                    && s.state == "leader"
                    && best.is_none_or(|(t, _)| s.term > t)
                {
                    best = Some((s.term, *n));
                }
            }
            Ok(best.map(|(_, n)| n))
        })
        .await
    }

    pub async fn random_follower(&mut self) -> Result<u64> {
        let l = self.leader().await?;
        let f: Vec<u64> = self.live_nodes().into_iter().filter(|n| *n != l).collect();
        if f.is_empty() {
            bail!("no live follower");
        }
        Ok(f[self.rng.random_range(0..f.len())])
    }

    /// Wait until the leader's purge point is past node `f`'s last entry.
    pub async fn wait_purged_past(&mut self, f: u64, budget: Duration) -> Result<()> {
        let last = self
            .cluster
            .local_status(f, Duration::from_secs(1))
            .await?
            .last_log_index;
        let cluster = &self.cluster;
        let live: Vec<u64> = self.live_nodes().into_iter().filter(|n| *n != f).collect();
        wait_for(
            &format!("a leader purge past node {f}'s last entry {last}"),
            budget,
            || async {
                for n in &live {
                    if let Ok(s) = cluster.local_status(*n, Duration::from_millis(500)).await
                        && s.state == "leader"
                        && s.purged_index > last
                    {
                        return Ok(Some(()));
                    }
                }
                Ok(None)
            },
        )
        .await
    }

    /// Expect node `f` to have installed a snapshot (it was cut off past the
    /// leader's purge point).
    pub async fn require_snapshot_installed(&mut self, f: u64) {
        let log = self.cluster.log(f);
        if !log.contains("installed snapshot") {
            self.failures.push(format!(
                "node {f} was cut off past the purge point but did not install a snapshot"
            ));
        }
    }

    /// Wait until `node` has applied what the leader committed.
    pub async fn wait_caught_up(&mut self, node: u64, budget: Duration) {
        let Ok(l) = self.leader().await else { return };
        let cluster = &self.cluster;
        let r = wait_for(&format!("node {node} to catch up"), budget, || async {
            let lead = cluster.local_status(l, Duration::from_millis(500)).await?;
            let me = cluster.local_status(node, Duration::from_millis(500)).await?;
            Ok((me.applied_index >= lead.commit_index).then_some(()))
        })
        .await;
        if let Err(e) = r {
            self.notes.push(format!("{e:#}"));
        }
    }
}

fn git_commit() -> String {
    env!("SEN_CHAOS_COMMIT").to_owned()
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Sample every node's local status every 100 ms (direct connections, not
/// through the proxies) until `stop`.
async fn sample(nodes: Vec<(u64, sen_client::Ch)>, start: Instant, stop: CancellationToken) -> Vec<Sample> {
    let mut clients = BTreeMap::new();
    for (id, ch) in nodes {
        clients.insert(id, AdminClient::new(ch));
    }
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return out,
            _ = tick.tick() => {}
        }
        for (id, c) in clients.iter_mut() {
            let mut req = tonic::Request::new(LocalStatusRequest {});
            req.set_timeout(Duration::from_millis(300));
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(300), c.local_status(req)).await {
                let r = r.into_inner();
                out.push(Sample {
                    t_us: start.elapsed().as_micros() as u64,
                    node: *id,
                    started_at_ms: r.started_at_ms,
                    state: r.state,
                    term: r.term,
                    leader_id: r.leader_id,
                    commit_index: r.commit_index,
                    applied_index: r.applied_index,
                    last_log_index: r.last_log_index,
                });
            }
        }
    }
}

/// Run one scenario and write its report into `opts.out/<scenario>/`.
pub async fn run(opts: &RunOptions) -> Result<Report> {
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let dir = opts.out.join(&opts.scenario);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let replay: Option<Schedule> = match &opts.replay {
        Some(p) => Some(serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
        )?),
        None => None,
    };
    let mut rng = StdRng::seed_from_u64(opts.seed);

    let mut ctx = setup(opts, &dir, &mut rng).await?;
    let sampler_stop = CancellationToken::new();
    let sampler = tokio::spawn(sample(
        ctx.ids
            .iter()
            .map(|i| Ok((*i, ctx.cluster.channel(*i)?)))
            .collect::<Result<_>>()?,
        ctx.start,
        sampler_stop.clone(),
    ));
    let load = Load::start(opts, &ctx, &dir, &mut rng)?;
    // Drawn after the workload's seeds, as always: a seed reproduces a run.
    ctx.rng = StdRng::seed_from_u64(rng.random());

    // Faults, then healing and recovery traffic.
    tokio::time::sleep(opts.warmup).await;
    let warm_ok = load.shared.ops.load(std::sync::atomic::Ordering::Relaxed);
    inject(&mut ctx, opts, replay.as_ref()).await;
    let start = ctx.start;
    ctx.nemesis
        .heal_all(&mut ctx.cluster, || start.elapsed().as_micros() as u64)
        .await;
    tokio::time::sleep(opts.recovery).await;
    let (mut ops, site_hist) = load.stop().await?;
    let workload_end_us = start.elapsed().as_micros() as u64;

    // After the faults: liveness, convergence, final reads, dumps.
    let expected: Vec<u64> = ctx
        .ids
        .iter()
        .copied()
        .filter(|n| !ctx.nemesis.refused.contains_key(n))
        .collect();
    let endpoints: Vec<String> = expected
        .iter()
        .map(|i| ctx.nemesis.proxies.client_addr(*i))
        .collect::<Result<_>>()?;
    let liveness = liveness(&endpoints, ctx.cluster.client_options()?).await?;
    if let Err(e) = converge(&ctx.cluster, &expected).await {
        ctx.notes.push(format!("{e:#}"));
    }
    site_load::final_reads(&ctx.cluster, &expected, start, &site_hist).await;
    let site_history = site_hist.lock().map(|h| h.clone()).unwrap_or_default();
    final_reads(
        &mut ops,
        &endpoints,
        ctx.cluster.client_options()?,
        start,
        &mut ctx.failures,
    )
    .await?;
    let dumps = dump_all(&ctx.cluster, &expected, &ops, &mut ctx.failures).await;
    sampler_stop.cancel();
    let samples = sampler.await.unwrap_or_default();

    // Checks and the verdict.
    let union: BTreeMap<String, u64> = dumps.applied.values().flat_map(|m| m.clone()).collect();
    let dump_covers_run = start.elapsed() < Duration::from_secs(10 * 60);
    let mut checked_ops = ops.clone();
    let resolved = check::resolve_unknowns(&mut checked_ops, &union, dump_covers_run);
    let lin = check::check_linearizability(&checked_ops, Duration::from_secs(120));
    let writes = check::check_writes(&ops, &dumps);
    let stale = check::check_stale_reads(&ops);
    let convergence = check::check_convergence(&dumps, expected.len());
    let invariants = check::check_invariants(&samples);
    let site = site_load::check(&site_history);
    let (counts, lat) = report::summarize(&ops);
    let windows = report::window_stats(&ops, &ctx.windows, workload_end_us);

    let mut harness_failures = ctx.failures.clone();
    if warm_ok < 20 {
        harness_failures.push(format!(
            "only {warm_ok} operations before the first fault: inconclusive"
        ));
    }
    if !liveness.ok {
        harness_failures.push(format!("no liveness after healing: {}", liveness.detail));
    }
    let duration_s = workload_end_us as f64 / 1e6;
    let reproduce = format!(
        "sen-chaos run --suite {} --nodes {} --seed {} --duration {} --out {}   # commit {}; replay the exact fault schedule with --replay {}",
        opts.scenario,
        opts.nodes,
        opts.seed,
        humantime::format_duration(opts.duration),
        opts.out.display(),
        git_commit(),
        dir.join("schedule.json").display()
    );
    let mut report = Report {
        seed: opts.seed,
        scenario: opts.scenario.clone(),
        commit: git_commit(),
        nodes: opts.nodes,
        started_at,
        duration_ms: workload_end_us / 1000,
        config: NODE_CONFIG.into(),
        faults: ctx.nemesis.executed.clone(),
        windows,
        ops_per_sec: counts.total as f64 / duration_s.max(0.001),
        ops: counts,
        write_latency_p50_ms: lat[0],
        write_latency_p99_ms: lat[1],
        read_latency_p50_ms: lat[2],
        read_latency_p99_ms: lat[3],
        lost_writes: writes.lost.len(),
        linearizable: lin.linearizable.clone(),
        converged: convergence.converged,
        passed: false,
        failures: Vec::new(),
        harness_failures,
        refused_nodes: ctx.nemesis.refused.clone(),
        lin,
        writes,
        stale_read_violations: stale,
        invariant_violations: invariants,
        convergence,
        liveness,
        unknowns_resolved: resolved,
        site,
        reproduce,
    };
    finish_verdict(&mut report);

    let schedule = Schedule {
        scenario: opts.scenario.clone(),
        seed: opts.seed,
        nodes: opts.nodes,
        duration_ms: opts.duration.as_millis() as u64,
        windows: ctx.windows.clone(),
        faults: ctx.nemesis.executed.clone(),
    };
    let files = RunFiles {
        ops: &ops,
        schedule: &schedule,
        dumps: &dumps,
        site_history: &site_history,
        notes: &ctx.notes,
        samples: &samples,
    };
    files.save(&dir, &report, &ctx.windows)?;
    drop(ctx);
    Ok(report)
}

/// The cluster behind fault-injecting proxies, formed and caught up.
async fn setup(opts: &RunOptions, dir: &Path, rng: &mut StdRng) -> Result<Ctx> {
    let ids: Vec<u64> = (1..=opts.nodes as u64).collect();
    let mut cluster = ProcessCluster::new(&opts.sen, dir.join("nodes"), NODE_CONFIG)?
        .with_log(&std::env::var("SEN_CHAOS_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()));
    for id in &ids {
        cluster.add(*id)?;
    }
    let mut tmpfs = None;
    if scenario::needs_tmpfs(&opts.scenario) {
        if !is_root() {
            bail!(
                "scenario {} needs root (it mounts a size-limited tmpfs); run as root or skip it",
                opts.scenario
            );
        }
        let victim = *ids.last().ok_or_else(|| anyhow!("no nodes"))?;
        cluster.mount_tmpfs(victim, 256)?;
        tmpfs = Some(victim);
    }
    let proxies = Proxies::start(&cluster, &ids, rng.random()).await?;
    for id in &ids {
        cluster.set_peer_addresses(*id, &proxies.overrides_for(*id))?;
    }
    cluster.form(opts.nodes as u64).await.context("form the cluster")?;
    // Node 1 leads after formation; start traffic once everyone caught up.
    for id in &ids {
        cluster.wait_applied(*id, 1, Duration::from_secs(30)).await?;
    }
    Ok(Ctx {
        cluster,
        nemesis: Nemesis::new(proxies),
        rng: StdRng::seed_from_u64(0),
        start: Instant::now(),
        windows: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
        tmpfs,
        ids,
    })
}

/// The workload while it runs: KV clients, one site pusher, one HTTP
/// reader per node, and the collector of the clients' history.
struct Load {
    shared: std::sync::Arc<Shared>,
    stop: CancellationToken,
    clients: Vec<tokio::task::JoinHandle<()>>,
    site_tasks: Vec<tokio::task::JoinHandle<()>>,
    site_hist: std::sync::Arc<std::sync::Mutex<SiteHistory>>,
    collector: tokio::task::JoinHandle<Vec<Op>>,
}

impl Load {
    fn start(opts: &RunOptions, ctx: &Ctx, dir: &Path, rng: &mut StdRng) -> Result<Self> {
        let (ids, proxies, start) = (&ctx.ids, &ctx.nemesis.proxies, ctx.start);
        let shared = Shared::new(opts.workload.clone(), start, ctx.cluster.client_options()?);
        let stop = CancellationToken::new();
        let (tx, mut rx) = mpsc::unbounded_channel::<Op>();
        let mut clients = Vec::new();
        for c in 0..opts.workload.clients {
            let (endpoints, label) = if (c as usize) < ids.len() {
                let node = ids[c as usize];
                (vec![proxies.client_addr(node)?], format!("n{node}"))
            } else {
                (
                    ids.iter()
                        .map(|i| proxies.client_addr(*i))
                        .collect::<Result<Vec<_>>>()?,
                    "any".to_owned(),
                )
            };
            clients.push(tokio::spawn(workload::client(
                c,
                endpoints,
                label,
                shared.clone(),
                rng.random(),
                stop.clone(),
                tx.clone(),
            )));
        }
        drop(tx);
        // Site content: one pusher through the proxies, one HTTP reader per node.
        let site_hist = std::sync::Arc::new(std::sync::Mutex::new(SiteHistory::default()));
        let mut site_tasks = vec![tokio::spawn(site_load::pusher(
            ids.iter()
                .map(|i| proxies.client_addr(*i))
                .collect::<Result<Vec<_>>>()?,
            ctx.cluster.client_options()?,
            dir.join("site-tree"),
            start,
            rng.random(),
            stop.clone(),
            site_hist.clone(),
        ))];
        for id in ids {
            site_tasks.push(tokio::spawn(site_load::reader(
                *id,
                ctx.cluster.web(*id)?,
                start,
                stop.clone(),
                site_hist.clone(),
            )));
        }
        let collector = tokio::spawn(async move {
            let mut ops = Vec::new();
            while let Some(op) = rx.recv().await {
                ops.push(op);
            }
            ops
        });
        Ok(Self {
            shared,
            stop,
            clients,
            site_tasks,
            site_hist,
            collector,
        })
    }

    /// Stop every client; the history and the site history.
    async fn stop(self) -> Result<(Vec<Op>, std::sync::Arc<std::sync::Mutex<SiteHistory>>)> {
        self.stop.cancel();
        for c in self.clients {
            let _ = c.await;
        }
        for t in self.site_tasks {
            let _ = t.await;
        }
        Ok((self.collector.await?, self.site_hist))
    }
}

/// The scenario's faults, or the ones a replayed schedule recorded.
async fn inject(ctx: &mut Ctx, opts: &RunOptions, replay: Option<&Schedule>) {
    match replay {
        None => {
            if let Err(e) = scenario::run(&opts.scenario, ctx, opts.duration).await {
                ctx.failures.push(format!("scenario could not run: {e:#}"));
            }
        }
        Some(s) => {
            for f in &s.faults {
                let due = ctx.start + Duration::from_micros(f.at_us);
                tokio::time::sleep_until(due.into()).await;
                ctx.apply(f.fault.clone()).await;
            }
            ctx.windows = s.windows.clone();
        }
    }
}

/// Liveness after healing: a write and a linearizable read through any node.
async fn liveness(endpoints: &[String], credentials: ClientOptions) -> Result<Liveness> {
    let t = Instant::now();
    let c = Client::new(
        endpoints,
        ClientOptions {
            timeout: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            ..credentials
        },
    )?;
    let (ok, detail) = match c.put(DB, b"liveness", b"ok").await {
        Ok(_) => match c.get(DB, b"liveness", Consistency::Linearizable).await {
            Ok(_) => (true, "write and linearizable read succeeded after healing".to_owned()),
            Err(e) => (false, format!("read after healing failed: {e}")),
        },
        Err(e) => (false, format!("write after healing failed: {e}")),
    };
    Ok(Liveness {
        ok,
        millis: t.elapsed().as_millis() as u64,
        detail,
    })
}

/// Quiesce: every expected node applies the same index (the commit index).
async fn converge(cluster: &ProcessCluster, expected: &[u64]) -> Result<()> {
    wait_for(
        "every node to apply the same index",
        Duration::from_secs(60),
        || async {
            let mut idx = BTreeSet::new();
            let mut commit = 0;
            for n in expected {
                let s = cluster.local_status(*n, Duration::from_millis(500)).await?;
                idx.insert(s.applied_index);
                commit = commit.max(s.commit_index);
            }
            Ok((idx.len() == 1 && idx.iter().next() == Some(&commit)).then_some(()))
        },
    )
    .await
}

/// A final linearizable read of every key, appended to the history.
async fn final_reads(
    ops: &mut Vec<Op>,
    endpoints: &[String],
    credentials: ClientOptions,
    start: Instant,
    failures: &mut Vec<String>,
) -> Result<()> {
    let keys: BTreeSet<String> = ops.iter().map(|o| o.key.clone()).collect();
    let client = Client::new(endpoints, credentials)?;
    let first_id = ops.iter().map(|o| o.id).max().unwrap_or(0) + 1;
    for (i, key) in keys.iter().enumerate() {
        let invoke_us = start.elapsed().as_micros() as u64;
        let r = client.get(DB, key.as_bytes(), Consistency::Linearizable).await;
        let complete_us = start.elapsed().as_micros() as u64;
        let mut op = Op {
            id: first_id + i as u64,
            process: 9_000_000 + i as u64,
            client: 999,
            endpoint: "final".into(),
            f: OpKind::Get,
            key: key.clone(),
            value: None,
            expect: None,
            invoke_us,
            complete_us: Some(complete_us),
            outcome: Outcome::Ok,
            read: None,
            revision: None,
            succeeded: None,
            request_id: None,
            served_by: None,
            error: None,
        };
        match r {
            Ok(r) => {
                op.revision = r.kv.as_ref().map(|kv| kv.mod_revision);
                op.read = Some(r.kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()));
            }
            Err(e) => {
                op.outcome = Outcome::Fail;
                op.error = Some(e.to_string());
                failures.push(format!("final read of {key} failed: {e}"));
            }
        }
        ops.push(op);
    }
    Ok(())
}

/// Digest, applied request ids and final values of every expected node.
/// Dump every node; if a write landed between two nodes' dumps (the
/// cluster's own: audit records and incidents flush a little after the
/// load stops), wait until they converge again and dump again, up to five
/// times. Differing indexes after that are reported as they are.
async fn dump_all(cluster: &ProcessCluster, expected: &[u64], ops: &[Op], failures: &mut Vec<String>) -> Dumps {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut errors = Vec::new();
        let dumps = dump_once(cluster, expected, ops, &mut errors).await;
        let indexes: BTreeSet<u64> = dumps.digests.values().map(|(a, _)| *a).collect();
        if indexes.len() <= 1 || attempt >= 5 {
            failures.extend(errors);
            return dumps;
        }
        let _ = converge(cluster, expected).await;
    }
}

async fn dump_once(cluster: &ProcessCluster, expected: &[u64], ops: &[Op], failures: &mut Vec<String>) -> Dumps {
    let mut dumps = Dumps::default();
    let append_keys: BTreeSet<String> = ops
        .iter()
        .filter(|o| o.f == OpKind::Append)
        .map(|o| o.key.clone())
        .collect();
    for n in expected {
        match dump_node(cluster, *n, &append_keys).await {
            Ok((digest, applied, finals)) => {
                dumps.digests.insert(*n, digest);
                dumps.applied.insert(*n, applied);
                dumps.final_values.insert(*n, finals);
            }
            Err(e) => {
                dumps.unreachable.push(*n);
                failures.push(format!("node {n}: cannot dump its state: {e:#}"));
            }
        }
    }
    dumps
}

/// Everything a run writes besides the report.
struct RunFiles<'a> {
    ops: &'a [Op],
    schedule: &'a Schedule,
    dumps: &'a Dumps,
    site_history: &'a SiteHistory,
    notes: &'a [String],
    samples: &'a [Sample],
}

impl RunFiles<'_> {
    fn save(&self, dir: &Path, report: &Report, windows: &[Window]) -> Result<()> {
        history::save(&dir.join("history.jsonl"), self.ops)?;
        std::fs::write(dir.join("schedule.json"), serde_json::to_string_pretty(self.schedule)?)?;
        std::fs::write(dir.join("dumps.json"), serde_json::to_string_pretty(self.dumps)?)?;
        std::fs::write(dir.join("site.json"), serde_json::to_string(self.site_history)?)?;
        std::fs::write(dir.join("notes.txt"), self.notes.join("\n"))?;
        {
            use std::io::Write;
            let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("metrics.jsonl"))?);
            for s in self.samples {
                serde_json::to_writer(&mut f, s)?;
                f.write_all(b"\n")?;
            }
        }
        report::write(dir, report, self.ops, windows)
    }
}

type NodeDump = ((u64, String), BTreeMap<String, u64>, BTreeMap<String, Option<String>>);

async fn dump_node(cluster: &ProcessCluster, n: u64, append_keys: &BTreeSet<String>) -> Result<NodeDump> {
    let mut admin = AdminClient::new(cluster.channel(n)?);
    let d = admin.digest(DigestRequest::default()).await?.into_inner();
    let mut requests = Vec::new();
    let mut start_after = Vec::new();
    loop {
        let a = admin
            .applied_requests(AppliedRequestsRequest { start_after, limit: 0 })
            .await?
            .into_inner();
        requests.extend(a.requests);
        if a.next.is_empty() {
            break;
        }
        start_after = a.next;
    }
    let applied = requests
        .into_iter()
        .map(|r| {
            (
                r.request_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                r.revision,
            )
        })
        .collect();
    let c = cluster.client_for(n)?;
    let mut finals = BTreeMap::new();
    for k in append_keys {
        let r = c.get(DB, k.as_bytes(), Consistency::Stale).await?;
        finals.insert(
            k.clone(),
            r.kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
        );
    }
    Ok(((d.applied_index, d.digest), applied, finals))
}

/// Collect every reason the run failed (harness problems plus checker
/// findings) and set `passed`.
fn finish_verdict(r: &mut Report) {
    let mut f = r.harness_failures.clone();
    let w = &r.writes;
    if !w.lost.is_empty() {
        f.push(format!("{} acknowledged writes lost", w.lost.len()));
    }
    if !w.revision_mismatch.is_empty() {
        f.push(format!(
            "{} writes applied at another revision than acknowledged",
            w.revision_mismatch.len()
        ));
    }
    if !w.duplicated.is_empty() {
        f.push(format!("{} appends applied twice", w.duplicated.len()));
    }
    if !w.unexpected.is_empty() {
        f.push(format!("{} values nobody wrote", w.unexpected.len()));
    }
    if !w.diverged_nodes.is_empty() {
        f.push(format!("nodes {:?} applied different request ids", w.diverged_nodes));
    }
    if r.lin.linearizable == "false" {
        f.push(format!("not linearizable on {} keys", r.lin.violations.len()));
    }
    if !r.stale_read_violations.is_empty() {
        f.push(format!(
            "{} stale reads returned values nobody wrote",
            r.stale_read_violations.len()
        ));
    }
    if !r.convergence.converged {
        f.push(format!("not converged: {}", r.convergence.detail));
    }
    if !r.invariant_violations.is_empty() {
        f.push(format!("{} raft invariant violations", r.invariant_violations.len()));
    }
    if !r.site.violations.is_empty() {
        f.push(format!(
            "site content: {} violations, e.g. {}",
            r.site.violations.len(),
            r.site.violations[0]
        ));
    }
    r.lost_writes = w.lost.len();
    r.linearizable = r.lin.linearizable.clone();
    r.converged = r.convergence.converged;
    r.passed = f.is_empty();
    r.failures = f;
}

/// Re-run the checkers on a saved run directory (`sen-chaos check DIR`).
pub fn recheck(dir: &Path) -> Result<Report> {
    let mut report: Report = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json"))?)?;
    let ops = history::load(&dir.join("history.jsonl"))?;
    let dumps: Dumps = serde_json::from_str(&std::fs::read_to_string(dir.join("dumps.json"))?)?;
    let union: BTreeMap<String, u64> = dumps.applied.values().flat_map(|m| m.clone()).collect();
    let mut checked = ops.clone();
    report.unknowns_resolved = check::resolve_unknowns(&mut checked, &union, report.duration_ms < 10 * 60 * 1000);
    report.lin = check::check_linearizability(&checked, Duration::from_secs(300));
    report.linearizable = report.lin.linearizable.clone();
    report.writes = check::check_writes(&ops, &dumps);
    report.lost_writes = report.writes.lost.len();
    report.stale_read_violations = check::check_stale_reads(&ops);
    report.convergence = check::check_convergence(&dumps, dumps.digests.len() + dumps.unreachable.len());
    report.converged = report.convergence.converged;
    let samples: Vec<Sample> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    report.invariant_violations = check::check_invariants(&samples);
    if let Ok(text) = std::fs::read_to_string(dir.join("site.json")) {
        let h: SiteHistory = serde_json::from_str(&text)?;
        report.site = site_load::check(&h);
    }
    finish_verdict(&mut report);
    let schedule: Schedule = serde_json::from_str(&std::fs::read_to_string(dir.join("schedule.json"))?)?;
    report::write(dir, &report, &ops, &schedule.windows)?;
    Ok(report)
}
