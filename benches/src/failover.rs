//! Failover: kill -9 the leader of a 3-node cluster and time how long until
//! a client write succeeds again; repeat.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args as ClapArgs;
use sen_chaos::ProcessCluster;
use sen_client::{Client, ClientOptions};
use serde_json::json;

use crate::report::{self, Machine};

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// How many times to kill the leader.
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Extra TOML for every node (e.g. to try other election timeouts).
    #[arg(long, default_value = "")]
    pub config: String,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            kills: 20,
            config: String::new(),
        }
    }
}

pub async fn run(sen: &Path, data: &Path, out: &Path, machine: &Machine, a: Args) -> Result<()> {
    let dir = data.join("failover");
    let _ = std::fs::remove_dir_all(&dir);
    let extra = a.config.replace("\\n", "\n");
    let mut cluster = ProcessCluster::new(sen, &dir, &extra)?.with_log("warn");
    cluster.form(3).await?;
    let opts = ClientOptions {
        timeout: Duration::from_secs(30),
        attempt_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(200),
    };
    let mut samples = Vec::new();
    for round in 0..a.kills {
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
        eprintln!("failover {}/{}: {ms:.0} ms (killed node {leader})", round + 1, a.kills);
        cluster.start(leader)?;
    }
    drop(cluster);
    let s = report::summarize(&samples);
    let md = format!(
        "## Failover: kill -9 of the leader → first successful write\n\n{}\nCommand: `target/release/sen-benches failover --out {} --kills {}{}`\n\n| kills | median ms | p90 ms | p99 ms | max ms | min ms |\n|---|---|---|---|---|---|\n| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        machine.markdown(),
        out.display(),
        a.kills,
        if a.config.is_empty() {
            String::new()
        } else {
            format!(" --config '{}'", a.config)
        },
        s.n,
        s.median,
        s.p90,
        s.p99,
        s.max,
        s.min
    );
    report::write(
        out,
        "failover",
        &json!({"machine": machine, "config": a.config, "samples_ms": samples, "summary": s}),
        &md,
    )
}
