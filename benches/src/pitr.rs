//! Point-in-time recovery after a total loss (issue 16): clients write to
//! a 3-node cluster with the continuous archive on, every node is killed
//! with SIGKILL at a random instant, and the cluster is restored from the
//! repository alone (`sen restore cluster --at latest`). Per run: how many
//! acknowledged writes came back, the loss window (how long before the
//! kill the oldest missing acknowledged write was acknowledged), that
//! nothing unacknowledged was invented, and how long the restore took.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use sen_chaos::ProcessCluster;
use sen_client::{Client, ClientOptions};
use serde_json::json;

use crate::content::sen_cli;
use crate::report::{self, Machine};

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Total losses to survive.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// The archive's shipping interval.
    #[arg(long, default_value = "1s")]
    pub interval: String,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Seed of the kill instants (each between 3 and 8 s into the writes).
    #[arg(long, default_value_t = 20_261_207)]
    pub seed: u64,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            runs: 20,
            interval: "1s".into(),
            writers: 4,
            seed: 20_261_207,
        }
    }
}

/// What one run measured.
#[derive(Debug, serde::Serialize)]
struct Run {
    kill_after_ms: u64,
    acknowledged: usize,
    lost: usize,
    /// How long before the kill the oldest lost write was acknowledged.
    loss_window_ms: f64,
    invented: usize,
    restore_ms: f64,
    replayed_entries: u64,
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

pub async fn run(sen: &Path, data: &Path, out: &Path, machine: &Machine, a: Args) -> Result<()> {
    let mut rng = a.seed | 1;
    let mut runs = Vec::new();
    for n in 0..a.runs {
        let dir = data.join("pitr").join(format!("run-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cluster = ProcessCluster::new(sen, dir.join("sen"), "")?
            .with_log("warn")
            .insecure();
        cluster.form(3).await?;
        let eps = cluster.endpoints().join(",");
        let repo = format!("file://{}", std::path::absolute(dir.join("repo"))?.display());
        sen_cli(sen, &eps, &["backup", "init", "--repo", &repo, "--no-encryption"])?;
        sen_cli(
            sen,
            &eps,
            &["archive", "enable", "--repo", &repo, "--interval", &a.interval],
        )?;

        // Writers record what they sent and when each was acknowledged.
        let opts = ClientOptions {
            timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(200),
            ..cluster.client_options()?
        };
        let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
        let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..a.writers {
            let client = Client::new(&cluster.endpoints(), opts.clone())?;
            let (sent, acked, stop) = (sent.clone(), acked.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = format!("w{w}-{i:07}");
                    i += 1;
                    sent.lock().unwrap_or_else(|p| p.into_inner()).insert(k.clone());
                    if client.put("pitr", k.as_bytes(), b"x").await.is_ok() {
                        acked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((k, Instant::now()));
                    }
                }
            }));
        }
        let kill_after = Duration::from_millis(3000 + xorshift(&mut rng) % 5000);
        tokio::time::sleep(kill_after).await;
        for id in 1..=3 {
            cluster.kill9(id)?;
        }
        let killed = Instant::now();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }

        let restored = dir.join("restored");
        let t = Instant::now();
        let (r, _, _) = sen_cli(
            sen,
            &eps,
            &[
                "restore",
                "cluster",
                "--at",
                "latest",
                "--repo",
                &repo,
                "--data-dir",
                &restored.display().to_string(),
                "--id",
                "1",
                "--listen",
                "127.0.0.1:7999",
            ],
        )?;
        let restore_ms = t.elapsed().as_secs_f64() * 1000.0;
        let dump = dir.join("pitr.jsonl");
        sen_cli(
            sen,
            &eps,
            &[
                "restore",
                "db",
                "pitr",
                "--at",
                "latest",
                "--repo",
                &repo,
                "--to",
                &dump.display().to_string(),
            ],
        )?;
        let mut present = HashSet::new();
        for line in std::fs::read_to_string(&dump)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if let Some(k) = v["key"].as_str() {
                present.insert(k.to_owned());
            }
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));
        let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|p| p.into_inner()));
        let lost: Vec<&(String, Instant)> = acked.iter().filter(|(k, _)| !present.contains(k)).collect();
        let invented = present.iter().filter(|k| !sent.contains(*k)).count();
        let loss_window_ms = lost
            .iter()
            .map(|(_, at)| killed.duration_since(*at).as_secs_f64() * 1000.0)
            .fold(0.0, f64::max);
        if invented > 0 {
            bail!("run {n}: {invented} keys in the restored state were never written");
        }
        let run = Run {
            kill_after_ms: kill_after.as_millis() as u64,
            acknowledged: acked.len(),
            lost: lost.len(),
            loss_window_ms,
            invented,
            restore_ms,
            replayed_entries: r["replayed_entries"].as_u64().unwrap_or(0),
        };
        eprintln!(
            "pitr {}/{}: {} acknowledged, {} lost (acknowledged at most {:.0} ms before the kill), restore {:.0} ms, {} entries replayed",
            n + 1,
            a.runs,
            run.acknowledged,
            run.lost,
            run.loss_window_ms,
            run.restore_ms,
            run.replayed_entries
        );
        runs.push(run);
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let window = report::summarize(&runs.iter().map(|r| r.loss_window_ms).collect::<Vec<_>>());
    let restore = report::summarize(&runs.iter().map(|r| r.restore_ms).collect::<Vec<_>>());
    let lost: usize = runs.iter().map(|r| r.lost).sum();
    let acked: usize = runs.iter().map(|r| r.acknowledged).sum();
    let md = format!(
        "## Point-in-time recovery after losing every node\n\n{}\n`sen-benches pitr --runs {} --interval {} --writers {}`: {} runs, every node killed -9 at a random instant 3–8 s into the writes, restored with `sen restore cluster --at latest` from the repository alone.\n\n\
         | | min | median | p90 | p99 | max |\n|---|---|---|---|---|---|\n\
         | loss window (ms before the kill of the oldest lost acknowledged write) | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n\
         | restore (ms) | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n\n\
         Acknowledged writes: {acked}, lost: {lost} ({:.3}%); writes invented: 0.\n",
        machine.markdown(),
        a.runs,
        a.interval,
        a.writers,
        runs.len(),
        window.min,
        window.median,
        window.p90,
        window.p99,
        window.max,
        restore.min,
        restore.median,
        restore.p90,
        restore.p99,
        restore.max,
        lost as f64 * 100.0 / acked.max(1) as f64,
    );
    report::write(
        out,
        "pitr",
        &json!({"machine": machine, "args": {"runs": a.runs, "interval": a.interval, "writers": a.writers, "seed": a.seed},
                "runs": runs, "loss_window_ms": window, "restore_ms": restore}),
        &md,
    )
}
