//! Key-value throughput and latency on a 3-node cluster (fsync on).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args as ClapArgs;
use hdrhistogram::Histogram;
use sen_chaos::ProcessCluster;
use sen_client::{Client, ClientOptions, Consistency};
use serde::Serialize;
use serde_json::json;

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
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub op: String,
    pub clients: usize,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Get(Consistency),
}

async fn measure(
    client: Arc<Client>,
    op: Op,
    clients: usize,
    d: Duration,
    value: Arc<Vec<u8>>,
    keyspace: u64,
) -> Result<Row> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..clients {
        let client = client.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut errors = 0u64;
            let mut i = 0u64;
            while start.elapsed() < d {
                let key = format!("k{:015}", (t as u64 * 1_000_003 + i) % keyspace);
                let t0 = Instant::now();
                let ok = match op {
                    Op::Put => client.put("bench", key.as_bytes(), &value).await.is_ok(),
                    Op::Get(c) => client.get("bench", key.as_bytes(), c).await.is_ok(),
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
        op: match op {
            Op::Put => "put".into(),
            Op::Get(Consistency::Linearizable) => "get (linearizable)".into(),
            Op::Get(Consistency::Stale) => "get (stale)".into(),
        },
        clients,
        ops_per_sec: all.len() as f64 / secs,
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    })
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
    let mut cluster = ProcessCluster::new(sen, &dir, "")?.with_log("warn");
    cluster.form(3).await?;
    let leader = cluster.wait_leader(None, Duration::from_secs(30)).await?;
    // Clients talk to the leader directly (as the CLI does after its first
    // hint); the follower-forwarding path is measured separately below.
    let opts = ClientOptions {
        timeout: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let client = Arc::new(Client::new(&[cluster.grpc(leader)?], opts.clone())?);
    let value = Arc::new(vec![b'v'; a.value_bytes]);
    let keyspace = 100_000;
    let elections_before = elections(&cluster).await;
    // Preload the keyspace region the reads use.
    measure(
        client.clone(),
        Op::Put,
        64,
        Duration::from_secs(3),
        value.clone(),
        keyspace,
    )
    .await?;

    let mut rows = Vec::new();
    let want = |op: &str| a.ops.iter().any(|o| o == op);
    if want("put") {
        for &c in &a.clients {
            let mut rounds = Vec::new();
            for _ in 0..a.rounds {
                rounds.push(measure(client.clone(), Op::Put, c, a.duration, value.clone(), keyspace).await?);
            }
            rows.push(median_row(rounds));
        }
    }
    if want("put-follower") {
        let follower = (1..=3).find(|i| *i != leader).unwrap_or(2);
        let via_follower = Arc::new(Client::new(&[cluster.grpc(follower)?], opts.clone())?);
        let mut rounds = Vec::new();
        for _ in 0..a.rounds {
            rounds.push(
                measure(
                    via_follower.clone(),
                    Op::Put,
                    a.read_clients,
                    a.duration,
                    value.clone(),
                    keyspace,
                )
                .await?,
            );
        }
        let mut r = median_row(rounds);
        r.op = "put via follower".into();
        rows.push(r);
    }
    for (name, cons) in [("get", Consistency::Linearizable), ("get-stale", Consistency::Stale)] {
        if !want(name) {
            continue;
        }
        let mut rounds = Vec::new();
        for _ in 0..a.rounds {
            rounds.push(
                measure(
                    client.clone(),
                    Op::Get(cons),
                    a.read_clients,
                    a.duration,
                    value.clone(),
                    keyspace,
                )
                .await?,
            );
        }
        rows.push(median_row(rounds));
    }
    let elections_during = elections(&cluster).await - elections_before;
    drop(cluster);

    let mut md = format!(
        "## Key-value: 3 local nodes, fsync on\n\n{}\nCommand: `target/release/sen-benches kv --out {} --duration {:?} --rounds {}`\n(value {} B, key 16 B; median of {} rounds per row)\n\n| operation | clients | ops/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|\n",
        machine.markdown(),
        out.display(),
        a.duration,
        a.rounds,
        a.value_bytes,
        a.rounds
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} |\n",
            r.op, r.clients, r.ops_per_sec, r.p50_ms, r.p99_ms, r.errors
        ));
    }
    md.push_str(&format!(
        "\nElections started on any node during the whole run (spurious elections under load): {elections_during}\n"
    ));
    report::write(
        out,
        "kv",
        &json!({"machine": machine, "args": format!("{a:?}"), "rows": rows, "elections_during_run": elections_during}),
        &md,
    )
}
