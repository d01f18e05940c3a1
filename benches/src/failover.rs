//! Failover: kill -9 the leader of a 3-node cluster and time how long until
//! a client write succeeds again; repeat.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args as ClapArgs;
use sen_chaos::ProcessCluster;
use sen_client::{Client, ClientOptions};
use serde_json::json;

use crate::etcd::{self, EtcdClient, EtcdCluster};
use crate::report::{self, Machine};

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// How many times to kill the leader.
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Extra TOML for every node (e.g. to try other election timeouts).
    #[arg(long, default_value = "")]
    pub config: String,
    /// Measure Sen alone (no etcd side by side).
    #[arg(long)]
    pub no_etcd: bool,
    /// etcd's election timeout in ms (its default: 1000; heartbeat 100).
    #[arg(long, default_value_t = 1000)]
    pub etcd_election_ms: u64,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            kills: 20,
            config: String::new(),
            no_etcd: false,
            etcd_election_ms: 1000,
        }
    }
}

/// A client that knows every etcd endpoint and moves to the next one after
/// an error or 500 ms without an answer, as Sen's client does.
async fn etcd_put_any(endpoints: &[String], key: &[u8], value: &[u8]) -> Result<()> {
    let start = Instant::now();
    let mut i = 0usize;
    loop {
        let c = EtcdClient::new(&endpoints[i % endpoints.len()], Duration::from_millis(500))?;
        if c.put(key, value).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("etcd took no write for 30 s");
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn run(sen: &Path, data: &Path, out: &Path, machine: &Machine, a: Args) -> Result<()> {
    let dir = data.join("failover");
    let _ = std::fs::remove_dir_all(&dir);
    let extra = a.config.replace("\\n", "\n");
    let mut cluster = ProcessCluster::new(sen, dir.join("sen"), &extra)?
        .with_log("warn")
        .insecure();
    cluster.form(3).await?;
    let timers = etcd::Timers {
        heartbeat_ms: 100,
        election_ms: a.etcd_election_ms,
    };
    let mut etcd = if a.no_etcd {
        None
    } else {
        Some(EtcdCluster::start(&dir.join("etcd"), 3, timers).await?)
    };
    let opts = ClientOptions {
        timeout: Duration::from_secs(30),
        attempt_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(200),
        ..cluster.client_options()?
    };
    let mut samples = Vec::new();
    let mut etcd_samples = Vec::new();
    for round in 0..a.kills {
        // Sen: kill -9 the leader, time the first write that succeeds.
        let leader = cluster.wait_leader(None, Duration::from_secs(30)).await?;
        // Everyone caught up and a write works before the fault.
        let client = Client::new(&cluster.endpoints(), opts.clone())?;
        let r = client.put("bench", b"failover", round.to_string().as_bytes()).await?;
        for id in 1..=3 {
            cluster.wait_applied(id, r.revision, Duration::from_secs(30)).await?;
        }
        // A fresh client that only knows the endpoints, like a new CLI call.
        let client = Client::new(&cluster.endpoints(), opts.clone())?;
        cluster.kill9(leader)?;
        let killed = Instant::now();
        client.put("bench", b"failover", b"after").await?;
        let ms = killed.elapsed().as_secs_f64() * 1000.0;
        samples.push(ms);
        eprintln!(
            "sen failover {}/{}: {ms:.0} ms (killed node {leader})",
            round + 1,
            a.kills
        );
        cluster.start(leader)?;

        // etcd: the same, alternating.
        if let Some(e) = etcd.as_mut() {
            let l = e.wait_leader(Duration::from_secs(30)).await?;
            let eps = e.endpoints();
            etcd_put_any(&eps, b"failover", round.to_string().as_bytes()).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            e.kill9(l)?;
            let killed = Instant::now();
            etcd_put_any(&eps, b"failover", b"after").await?;
            let ms = killed.elapsed().as_secs_f64() * 1000.0;
            etcd_samples.push(ms);
            eprintln!(
                "etcd failover {}/{}: {ms:.0} ms (killed member {})",
                round + 1,
                a.kills,
                l + 1
            );
            e.restart(l)?;
            e.wait_leader(Duration::from_secs(30)).await?;
        }
        // Let the restarted nodes catch up before the next round.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(cluster);
    drop(etcd);
    let s = report::summarize(&samples);
    let mut md = format!(
        "## Failover: kill -9 of the leader → first successful write (Sen vs etcd {})\n\n{}\nCommand: `target/release/sen-benches failover --out {} --kills {}{}`\n(rounds alternate Sen and etcd; a fresh client that knows every endpoint, 500 ms per attempt; Sen timers: {}; etcd: heartbeat 100 ms, election timeout {} ms{})\n\n| system | kills | median ms | p90 ms | p99 ms | max ms | min ms |\n|---|---|---|---|---|---|---|\n| Sen | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        etcd::version(),
        machine.markdown(),
        out.display(),
        a.kills,
        if a.config.is_empty() {
            String::new()
        } else {
            format!(" --config '{}'", a.config)
        },
        if a.config.is_empty() {
            "defaults (heartbeat 100 ms, election 250–400 ms)".to_owned()
        } else {
            a.config.clone()
        },
        a.etcd_election_ms,
        if a.etcd_election_ms == 1000 {
            " = its default"
        } else {
            ""
        },
        s.n,
        s.median,
        s.p90,
        s.p99,
        s.max,
        s.min
    );
    let es = (!etcd_samples.is_empty()).then(|| report::summarize(&etcd_samples));
    if let Some(e) = &es {
        md.push_str(&format!(
            "| etcd | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n\nSen / etcd median: **{:.2}×** (lower is better)\n",
            e.n,
            e.median,
            e.p90,
            e.p99,
            e.max,
            e.min,
            s.median / e.median.max(1e-9)
        ));
    }
    report::write(
        out,
        "failover",
        &json!({"machine": machine, "config": a.config, "samples_ms": samples, "summary": s,
                "etcd": {"version": etcd::version(), "election_ms": a.etcd_election_ms, "samples_ms": etcd_samples, "summary": es}}),
        &md,
    )
}
