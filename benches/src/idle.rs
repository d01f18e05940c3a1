//! CPU of an idle cluster: three `sen` nodes with TLS and the defaults (as
//! `sen demo` runs them), no client traffic beyond the nodes' own probes.
//! Per node: share of one core (utime + stime from `/proc/<pid>/stat`)
//! and voluntary context switches per second, over `--seconds` after
//! `--settle` seconds; rounds restart the cluster.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use sen_chaos::ProcessCluster;
use serde_json::json;

use crate::report::{self, Machine};

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Seconds measured per round.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seconds to wait after the cluster formed before measuring.
    #[arg(long, default_value_t = 20)]
    pub settle: u64,
    /// Rounds (each a new cluster).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
}

/// CPU ticks (utime + stime) and voluntary context switches (all threads)
/// of `pid`.
fn sample(pid: u32) -> Result<(u64, u64)> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Context switches are counted per thread: sum every thread's.
    let mut switches = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        switches += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok((ticks, switches))
}

/// The unit of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Debug, serde::Serialize)]
struct NodeRow {
    round: usize,
    node: u64,
    leader: bool,
    cpu_percent: f64,
    switches_per_sec: f64,
}

pub async fn run(sen: &Path, data: &Path, out: &Path, machine: &Machine, a: Args) -> Result<()> {
    let hz = clock_ticks_per_second();
    let mut rows = Vec::new();
    for round in 1..=a.rounds {
        let dir = data.join("idle");
        let _ = std::fs::remove_dir_all(&dir);
        let mut cluster = ProcessCluster::new(sen, &dir, "")?.with_log("warn");
        cluster.form(3).await?;
        let leader = cluster.wait_leader(None, Duration::from_secs(30)).await?;
        tokio::time::sleep(Duration::from_secs(a.settle)).await;
        let pids: Vec<(u64, u32)> = (1..=3)
            .filter_map(|id| cluster.nodes.get(&id).and_then(|n| n.pid()).map(|p| (id, p)))
            .collect();
        let before: Vec<(u64, u64)> = pids.iter().map(|(_, p)| sample(*p)).collect::<Result<_>>()?;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(a.seconds)).await;
        let took = started.elapsed().as_secs_f64();
        for ((id, pid), (t0, s0)) in pids.iter().zip(before) {
            let (t1, s1) = sample(*pid)?;
            rows.push(NodeRow {
                round,
                node: *id,
                leader: *id == leader,
                cpu_percent: (t1 - t0) as f64 / hz / took * 100.0,
                // Threads that ended meanwhile take their count along.
                switches_per_sec: s1.saturating_sub(s0) as f64 / took,
            });
        }
        drop(cluster);
    }
    let mut md = String::from("### Idle cluster CPU (`sen-benches idle`)\n\n");
    md.push_str(&machine.markdown());
    md.push_str(&format!(
        "\n3 nodes, TLS, defaults, no client traffic; {} s measured after {} s of settling, {} rounds.\n\n",
        a.seconds, a.settle, a.rounds
    ));
    md.push_str("| round | node | role | CPU, % of one core | voluntary switches/s |\n|---|---|---|---|---|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.0} |\n",
            r.round,
            r.node,
            if r.leader { "leader" } else { "follower" },
            r.cpu_percent,
            r.switches_per_sec
        ));
    }
    let leaders: Vec<f64> = rows.iter().filter(|r| r.leader).map(|r| r.cpu_percent).collect();
    let followers: Vec<f64> = rows.iter().filter(|r| !r.leader).map(|r| r.cpu_percent).collect();
    let (l, f) = (report::summarize(&leaders), report::summarize(&followers));
    md.push_str(&format!(
        "\nLeader {:.2} % (min {:.2}, max {:.2}); followers {:.2} % (min {:.2}, max {:.2}) of one core, median.\n",
        l.median, l.min, l.max, f.median, f.min, f.max
    ));
    report::write(
        out,
        "idle",
        &json!({ "machine": machine, "args": { "seconds": a.seconds, "settle": a.settle, "rounds": a.rounds }, "nodes": rows }),
        &md,
    )
}
