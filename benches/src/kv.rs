//! Key-value throughput and latency on a 3-node cluster (fsync on).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args as ClapArgs;
use hdrhistogram::Histogram;
use sen_chaos::ProcessCluster;
use sen_chaos::cluster::sum_where;
use sen_client::{Client, ClientOptions, Consistency};
use serde::Serialize;
use serde_json::json;

use crate::etcd::{self, EtcdClient, EtcdCluster};
use crate::report::{self, Machine};

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Length of each measurement.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    pub duration: Duration,
    /// Concurrent clients to measure writes at.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Value size in bytes (keys are 16 bytes).
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Rounds per setting (the report gives the median round).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Which measurements: put, put-follower, get, get-stale.
    #[arg(long, value_delimiter = ',', default_value = "put,put-follower,get,get-stale")]
    pub ops: Vec<String>,
    /// Concurrent clients for the reads and the follower writes.
    #[arg(long, default_value_t = 64)]
    pub read_clients: usize,
    /// Measure Sen alone (no etcd side by side).
    #[arg(long)]
    pub no_etcd: bool,
    /// Also measure a second Sen cluster with TLS on every connection and
    /// a bearer token on every request, side by side with the plaintext
    /// one (rounds alternate).
    #[arg(long)]
    pub tls: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            clients: vec![1, 16, 64],
            value_bytes: 256,
            rounds: 3,
            ops: vec!["put".into(), "put-follower".into(), "get".into(), "get-stale".into()],
            read_clients: 64,
            no_etcd: false,
            tls: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `sen`, `sen-tls` (TLS and a token) or `etcd`.
    pub system: String,
    pub op: String,
    pub clients: usize,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// Sen writes to the leader: the leader's mean time from proposing a
    /// write to applying it (`sen_raft_proposal_duration_seconds`), over
    /// the same round.
    pub raft_mean_ms: Option<f64>,
    /// Sen writes to the leader: the steps of the write path over the same
    /// round (`sen_raft_stage_duration_seconds`), as (node and step, mean
    /// ms per step, steps per write).
    pub stages: Vec<(String, f64, f64)>,
    pub errors: u64,
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Get(Consistency),
}

/// Who is measured: a Sen client, or an etcd client.
#[derive(Clone)]
enum Target {
    /// A client and the row's system name.
    Sen(Arc<Client>, &'static str),
    Etcd(EtcdClient),
}

async fn measure(
    target: Target,
    op: Op,
    clients: usize,
    d: Duration,
    value: Arc<Vec<u8>>,
    keyspace: u64,
) -> Result<Row> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..clients {
        let target = target.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut errors = 0u64;
            let mut i = 0u64;
            while start.elapsed() < d {
                let key = format!("k{:015}", (t as u64 * 1_000_003 + i) % keyspace);
                let t0 = Instant::now();
                let ok = match (&target, op) {
                    (Target::Sen(c, _), Op::Put) => c.put("bench", key.as_bytes(), &value).await.is_ok(),
                    (Target::Sen(c, _), Op::Get(cons)) => c.get("bench", key.as_bytes(), cons).await.is_ok(),
                    (Target::Etcd(c), Op::Put) => c.put(key.as_bytes(), &value).await.is_ok(),
                    (Target::Etcd(c), Op::Get(cons)) => {
                        c.get(key.as_bytes(), cons == Consistency::Linearizable).await.is_ok()
                    }
                };
                if ok {
                    h.record(t0.elapsed().as_micros().max(1) as u64).ok();
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (h, errors)
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await?;
        all.add(h)?;
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Row {
        system: match target {
            Target::Sen(_, name) => (*name).into(),
            Target::Etcd(_) => "etcd".into(),
        },
        op: match op {
            Op::Put => "put".into(),
            Op::Get(Consistency::Linearizable) => "get (linearizable)".into(),
            Op::Get(Consistency::Stale) => "get (stale)".into(),
        },
        clients,
        ops_per_sec: all.len() as f64 / secs,
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        mean_ms: all.mean() / 1000.0,
        raft_mean_ms: None,
        stages: Vec::new(),
        errors,
    })
}

/// The sum and count of node `id`'s proposal-duration histogram.
async fn proposals(c: &ProcessCluster, id: u64) -> Option<(f64, f64)> {
    let sum = c.metric(id, "sen_raft_proposal_duration_seconds_sum").await.ok()?;
    let count = c.metric(id, "sen_raft_proposal_duration_seconds_count").await.ok()?;
    Some((sum, count))
}

/// The steps a node reports (`sen_raft_stage_duration_seconds{stage}`).
const STAGES: [&str; 5] = ["log-append", "log-fsync", "apply", "replicate", "follower-append"];

/// Sum and count of each of node `id`'s write-path steps (one scrape).
async fn stage_totals(c: &ProcessCluster, id: u64) -> Vec<(&'static str, f64, f64)> {
    let Ok(page) = c.metrics_text(id).await else {
        return Vec::new();
    };
    STAGES
        .iter()
        .map(|&stage| {
            let labels = [("stage", stage)];
            (
                stage,
                sum_where(&page, "sen_raft_stage_duration_seconds_sum", &labels),
                sum_where(&page, "sen_raft_stage_duration_seconds_count", &labels),
            )
        })
        .collect()
}

/// Mean ms and count per write of each step between two readings.
fn stage_means(
    who: &str,
    before: &[(&str, f64, f64)],
    after: &[(&str, f64, f64)],
    writes: f64,
) -> Vec<(String, f64, f64)> {
    after
        .iter()
        .filter_map(|(stage, s1, n1)| {
            let (_, s0, n0) = before.iter().find(|(s, _, _)| s == stage)?;
            let n = n1 - n0;
            (n > 0.0).then(|| (format!("{who} {stage}"), (s1 - s0) / n * 1000.0, n / writes.max(1.0)))
        })
        .collect()
}

/// Elections started, summed over the nodes.
async fn elections(c: &ProcessCluster) -> f64 {
    let mut n = 0.0;
    for id in 1..=3 {
        n += c.metric(id, "sen_raft_elections_started_total").await.unwrap_or(0.0);
    }
    n
}

fn median_row(mut rows: Vec<Row>) -> Row {
    rows.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    rows[rows.len() / 2].clone()
}

pub async fn run(sen: &Path, data: &Path, out: &Path, machine: &Machine, a: Args) -> Result<()> {
    let dir = data.join("kv");
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster = ProcessCluster::new(sen, dir.join("sen"), "")?
        .with_log("warn")
        .insecure();
    cluster.form(3).await?;
    let leader = cluster.wait_leader(None, Duration::from_secs(30)).await?;
    // Clients talk to the leader directly (as the CLI does after its first
    // hint, and as etcd's client does with its leader endpoint); the
    // follower-forwarding path is measured separately below.
    let opts = ClientOptions {
        timeout: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let sen_leader = Target::Sen(Arc::new(Client::new(&[cluster.grpc(leader)?], opts.clone())?), "sen");
    let follower = (1..=3).find(|i| *i != leader).unwrap_or(2);
    let sen_follower = Target::Sen(Arc::new(Client::new(&[cluster.grpc(follower)?], opts.clone())?), "sen");
    // The same with TLS everywhere (clients and peers) and a token on every
    // request, when asked: a second cluster, idle while the first runs.
    let tls_cluster = if a.tls {
        let mut c = ProcessCluster::new(sen, dir.join("sen-tls"), "[auth]\nwrites-per-second = 0\n")?.with_log("warn");
        c.form(3).await?;
        let l = c.wait_leader(None, Duration::from_secs(30)).await?;
        let f = (1..=3).find(|i| *i != l).unwrap_or(2);
        let o = ClientOptions {
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(5),
            ..c.client_options()?
        };
        let lt = Target::Sen(Arc::new(Client::new(&[c.grpc(l)?], o.clone())?), "sen-tls");
        let ft = Target::Sen(Arc::new(Client::new(&[c.grpc(f)?], o)?), "sen-tls");
        Some((c, lt, ft))
    } else {
        None
    };

    // The peer: etcd 3.4 with its default timers, same disk, same machine.
    let with_etcd = !a.no_etcd;
    let etcd = if with_etcd {
        Some(EtcdCluster::start(&dir.join("etcd"), 3, etcd::Timers::DEFAULT).await?)
    } else {
        None
    };
    let (etcd_leader, etcd_follower) = match &etcd {
        Some(e) => {
            let l = e.wait_leader(Duration::from_secs(30)).await?;
            let f = (0..3).find(|i| *i != l).unwrap_or(1);
            (
                Some(Target::Etcd(EtcdClient::new(&e.endpoint(l), Duration::from_secs(5))?)),
                Some(Target::Etcd(EtcdClient::new(&e.endpoint(f), Duration::from_secs(5))?)),
            )
        }
        None => (None, None),
    };

    let value = Arc::new(vec![b'v'; a.value_bytes]);
    let keyspace = 100_000;
    let elections_before = elections(&cluster).await;
    // Preload the keyspace region the reads use, in both.
    let tls_leader = tls_cluster.as_ref().map(|(_, l, _)| l);
    for t in [Some(&sen_leader), tls_leader, etcd_leader.as_ref()]
        .into_iter()
        .flatten()
    {
        measure(t.clone(), Op::Put, 64, Duration::from_secs(3), value.clone(), keyspace).await?;
    }

    // Each setting: rounds alternate Sen, etcd, Sen, etcd, ...
    let mut rows = Vec::new();
    let want = |op: &str| a.ops.iter().any(|o| o == op);
    let mut settings: Vec<(String, Op, usize, bool)> = Vec::new();
    if want("put") {
        for &c in &a.clients {
            settings.push(("put".into(), Op::Put, c, false));
        }
    }
    if want("put-follower") {
        settings.push(("put via follower".into(), Op::Put, a.read_clients, true));
    }
    if want("get") {
        settings.push((
            "get (linearizable)".into(),
            Op::Get(Consistency::Linearizable),
            a.read_clients,
            false,
        ));
    }
    if want("get-stale") {
        settings.push(("get (stale)".into(), Op::Get(Consistency::Stale), a.read_clients, false));
    }
    for (name, op, clients, via_follower) in settings {
        let mut sen_rounds = Vec::new();
        let mut tls_rounds = Vec::new();
        let mut etcd_rounds = Vec::new();
        for _ in 0..a.rounds {
            let t = if via_follower { &sen_follower } else { &sen_leader };
            let raft_before = proposals(&cluster, leader).await;
            let (leader_before, follower_before) = (
                stage_totals(&cluster, leader).await,
                stage_totals(&cluster, follower).await,
            );
            let mut row = measure(t.clone(), op, clients, a.duration, value.clone(), keyspace).await?;
            if matches!(op, Op::Put)
                && !via_follower
                && let (Some((s0, n0)), Some((s1, n1))) = (raft_before, proposals(&cluster, leader).await)
                && n1 > n0
            {
                row.raft_mean_ms = Some((s1 - s0) / (n1 - n0) * 1000.0);
                let writes = n1 - n0;
                row.stages = stage_means("leader", &leader_before, &stage_totals(&cluster, leader).await, writes);
                row.stages.extend(stage_means(
                    "follower",
                    &follower_before,
                    &stage_totals(&cluster, follower).await,
                    writes,
                ));
            }
            sen_rounds.push(row);
            if let Some((_, l, f)) = &tls_cluster {
                let t = if via_follower { f } else { l };
                tls_rounds.push(measure(t.clone(), op, clients, a.duration, value.clone(), keyspace).await?);
            }
            let e = if via_follower { &etcd_follower } else { &etcd_leader };
            if let Some(e) = e {
                etcd_rounds.push(measure(e.clone(), op, clients, a.duration, value.clone(), keyspace).await?);
            }
        }
        for rounds in [sen_rounds, tls_rounds, etcd_rounds] {
            if !rounds.is_empty() {
                let mut r = median_row(rounds);
                r.op = name.clone();
                rows.push(r);
            }
        }
    }
    let elections_during = elections(&cluster).await - elections_before;
    // Memory after the run: resident now and the peak, per process.
    let sen_pids: Vec<u32> = cluster.nodes.values().filter_map(|n| n.pid()).collect();
    let etcd_pids = etcd.as_ref().map(|e| e.pids()).unwrap_or_default();
    let memory: Vec<(&str, f64, f64)> = sen_pids
        .iter()
        .map(|p| ("sen", *p))
        .chain(etcd_pids.iter().map(|p| ("etcd", *p)))
        .filter_map(|(who, p)| Some((who, crate::content::rss_mib(p)?, crate::content::peak_rss_mib(p)?)))
        .collect();
    drop(cluster);
    drop(tls_cluster);
    drop(etcd);

    let mut md = format!(
        "## Key-value: Sen vs etcd {}, 3 local nodes each, fsync on\n\n{}\nCommand: `target/release/sen-benches kv --out {} --duration {:?} --rounds {}`\n(value {} B, key 16 B; rounds alternate Sen and etcd; median of {} rounds per row; clients send to the leader, except the follower row)\n\n| operation | clients | Sen ops/s | Sen p50 ms | Sen p99 ms | etcd ops/s | etcd p50 ms | etcd p99 ms | Sen / etcd | errors (Sen/etcd) |\n|---|---|---|---|---|---|---|---|---|---|\n",
        etcd::version(),
        machine.markdown(),
        out.display(),
        a.duration,
        a.rounds,
        a.value_bytes,
        a.rounds
    );
    let sen_rows: Vec<&Row> = rows.iter().filter(|r| r.system == "sen").collect();
    for r in sen_rows {
        let e = rows
            .iter()
            .find(|e| e.system == "etcd" && e.op == r.op && e.clients == r.clients);
        match e {
            Some(e) => md.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | **{:.2}×** | {}/{} |\n",
                r.op,
                r.clients,
                r.ops_per_sec,
                r.p50_ms,
                r.p99_ms,
                e.ops_per_sec,
                e.p50_ms,
                e.p99_ms,
                r.ops_per_sec / e.ops_per_sec.max(1e-9),
                r.errors,
                e.errors
            )),
            None => md.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | — | — | — | — | {} |\n",
                r.op, r.clients, r.ops_per_sec, r.p50_ms, r.p99_ms, r.errors
            )),
        }
    }
    let split: Vec<&Row> = rows
        .iter()
        .filter(|r| r.system == "sen" && r.raft_mean_ms.is_some())
        .collect();
    if !split.is_empty() {
        md.push_str(
            "\nWhere a Sen write's time goes (writes to the leader, means over the median round): *in Raft* is the leader's time from proposing the write to applying it (`sen_raft_proposal_duration_seconds`: its append and fsync, the followers' append and fsync and the round trip to them, commit, apply); the rest is the client's RPC to the leader and the request's handling around the proposal.\n\n| clients | client-observed mean ms | in Raft ms | rest ms |\n|---|---|---|---|\n",
        );
        for r in &split {
            let raft = r.raft_mean_ms.unwrap_or(0.0);
            md.push_str(&format!(
                "| {} | {:.3} | {:.3} | {:.3} |\n",
                r.clients,
                r.mean_ms,
                raft,
                r.mean_ms - raft
            ));
        }
        md.push_str(
            "\nThe steps inside Raft, as the nodes measure them (`sen_raft_stage_duration_seconds`, same round): *log-append* is an append until its fsync (group commit wait included), *log-fsync* one fsync, *apply* one applied batch, *replicate* the leader's AppendEntries round trip to one follower (entries only, heartbeats left out), *follower-append* the follower's handling of one (its append and fsync included). *Per write*: how many steps of that kind each write took (below 1: batched).\n\n| clients | node, step | mean ms | per write |\n|---|---|---|---|\n",
        );
        for r in &split {
            for (stage, ms, per) in &r.stages {
                md.push_str(&format!("| {} | {stage} | {ms:.3} | {per:.2} |\n", r.clients));
            }
        }
    }
    if rows.iter().any(|r| r.system == "sen-tls") {
        md.push_str(&format!(
            "\n### TLS and tokens vs plaintext\n\nCommand: `target/release/sen-benches kv --tls --out {} --duration {:?} --rounds {}`. The same operations against a second 3-node cluster with TLS on every connection (clients and peers, rustls/ring) and a bearer token checked on every request; rounds alternate plaintext, TLS (and etcd).\n\n| operation | clients | plaintext ops/s | TLS + token ops/s | TLS / plaintext | plaintext p50 / p99 ms | TLS p50 / p99 ms |\n|---|---|---|---|---|---|---|\n",
            out.display(),
            a.duration,
            a.rounds
        ));
        for r in rows.iter().filter(|r| r.system == "sen") {
            if let Some(t) = rows
                .iter()
                .find(|t| t.system == "sen-tls" && t.op == r.op && t.clients == r.clients)
            {
                md.push_str(&format!(
                    "| {} | {} | {:.0} | {:.0} | **{:.2}×** | {:.2} / {:.2} | {:.2} / {:.2} |\n",
                    r.op,
                    r.clients,
                    r.ops_per_sec,
                    t.ops_per_sec,
                    t.ops_per_sec / r.ops_per_sec.max(1e-9),
                    r.p50_ms,
                    r.p99_ms,
                    t.p50_ms,
                    t.p99_ms
                ));
            }
        }
    }
    md.push_str(&format!(
        "\nElections started on any Sen node during the whole run (spurious elections under load): {elections_during}\n"
    ));
    md.push_str(
        "\nMemory of each process at the end of the run, resident / peak MiB (the TLS cluster, if any, is not counted):\n",
    );
    for who in ["sen", "etcd"] {
        let each: Vec<String> = memory
            .iter()
            .filter(|(w, _, _)| *w == who)
            .map(|(_, now, peak)| format!("{now:.0} / {peak:.0}"))
            .collect();
        if !each.is_empty() {
            md.push_str(&format!("- {who}: {}\n", each.join(", ")));
        }
    }
    report::write(
        out,
        "kv",
        &json!({"machine": machine, "etcd": etcd::version(), "args": format!("{a:?}"), "rows": rows, "elections_during_run": elections_during, "memory_mib": memory.iter().map(|(w, now, peak)| json!({"system": w, "rss": now, "peak": peak})).collect::<Vec<_>>()}),
        &md,
    )
}
