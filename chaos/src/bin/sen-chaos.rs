//! `sen-chaos`: run fault scenarios against real `sen` processes and check
//! that no acknowledged write is lost and every read is linearizable.
//!
//! ```text
//! sen-chaos run --suite smoke|soak|SCENARIO --nodes 3|5 --seed S --duration D --out DIR
//! sen-chaos check DIR          # re-run the checkers on a saved scenario directory
//! sen-chaos list               # scenarios and suites
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use sen_chaos::runner::{self, RunOptions};
use sen_chaos::scenario::{REGRESSIONS, SCENARIOS, SMOKE};
use sen_chaos::workload::WorkloadConfig;

#[derive(Parser, Debug)]
#[command(name = "sen-chaos", about = "Fault injection and consistency checking for Sen")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a suite (smoke, soak) or one scenario.
    Run {
        #[arg(long, default_value = "smoke")]
        suite: String,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Master seed (default: random, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Fault window per scenario (soak: the whole fault phase).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[arg(long, default_value = "chaos-out")]
        out: PathBuf,
        /// The `sen` binary (default: next to this one).
        #[arg(long)]
        sen: Option<PathBuf>,
        /// Replay the faults of a saved run (its schedule.json).
        #[arg(long)]
        replay: Option<PathBuf>,
        /// Concurrent clients.
        #[arg(long, default_value_t = 6)]
        clients: u32,
        /// For soak: how many seeds to run, one after another.
        #[arg(long, default_value_t = 1)]
        runs: u32,
        /// Keep the nodes' data directories of passed scenarios too (by
        /// default only failed runs keep them; logs are always kept).
        #[arg(long)]
        keep_data: bool,
    },
    /// Re-run the checkers on a saved scenario directory.
    Check { dir: PathBuf },
    /// List scenarios and suites.
    List,
    /// Count runs, injected faults by kind and verdicts over every
    /// report.json under the given directories.
    Tally { dirs: Vec<PathBuf> },
}

fn collect_reports(dir: &std::path::Path, out: &mut Vec<sen_chaos::report::Report>) -> Result<()> {
    let p = dir.join("report.json");
    if p.exists() {
        out.push(serde_json::from_str(&std::fs::read_to_string(&p)?)?);
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && e.file_name() != "nodes" {
            collect_reports(&e.path(), out)?;
        }
    }
    Ok(())
}

fn sen_binary(arg: Option<PathBuf>) -> Result<PathBuf> {
    let p = match arg {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("sen"),
    };
    if !p.exists() {
        bail!(
            "{} not found: build it (`cargo build --release -p sen-cli`) or pass --sen",
            p.display()
        );
    }
    Ok(p)
}

#[tokio::main]
async fn main() -> ExitCode {
    match real_main().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sen-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn real_main() -> Result<bool> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List => {
            for (name, what) in SCENARIOS {
                println!("{name:22} {what}");
            }
            println!(
                "\nsuites:\n  smoke    {}\n  soak     random faults, 5 nodes, 10 min per seed (--duration, --runs)",
                SMOKE.join(", ")
            );
            println!("  regress  runs that once found a bug, with their pinned seeds:");
            for (s, seed, nodes, bug) in REGRESSIONS {
                println!("           {s} --seed {seed} --nodes {nodes}: {bug}");
            }
            Ok(true)
        }
        Cmd::Tally { dirs } => {
            let mut reports = Vec::new();
            for d in &dirs {
                collect_reports(d, &mut reports)?;
            }
            let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
            let (mut faults, mut passed, mut lost, mut ops) = (0usize, 0usize, 0usize, 0usize);
            let mut lin: std::collections::BTreeMap<String, usize> = Default::default();
            let mut not_converged = 0;
            for r in &reports {
                for f in r.faults.iter().filter(|f| !f.fault.is_repair()) {
                    faults += 1;
                    let kind = serde_json::to_value(&f.fault)?
                        .get("kind")
                        .and_then(|k| k.as_str())
                        .unwrap_or("?")
                        .to_owned();
                    *kinds.entry(kind).or_default() += 1;
                }
                passed += usize::from(r.passed);
                lost += r.lost_writes;
                ops += r.ops.total;
                *lin.entry(r.linearizable.clone()).or_default() += 1;
                not_converged += usize::from(!r.converged);
            }
            println!(
                "runs: {} ({} passed, {} failed)",
                reports.len(),
                passed,
                reports.len() - passed
            );
            println!("operations: {ops}");
            println!("faults injected: {faults}");
            for (k, n) in &kinds {
                println!("  {k:20} {n}");
            }
            println!("lost acknowledged writes: {lost}");
            println!("linearizable: {lin:?}");
            println!("runs not converged: {not_converged}");
            Ok(passed == reports.len())
        }
        Cmd::Check { dir } => {
            let r = runner::recheck(&dir)?;
            println!("{}", if r.passed { "PASS" } else { "FAIL" });
            for f in &r.failures {
                println!("  {f}");
            }
            Ok(r.passed)
        }
        Cmd::Run {
            suite,
            nodes,
            seed,
            duration,
            out,
            sen,
            replay,
            clients,
            runs,
            keep_data,
        } => {
            let sen = sen_binary(sen)?;
            let seed = seed.unwrap_or_else(rand::random);
            // (scenario, pinned seed) pairs; `None` = use the run's seed.
            let (scenarios, default_d): (Vec<(String, Option<u64>)>, Duration) = match suite.as_str() {
                "smoke" => (
                    SMOKE.iter().map(|s| (s.to_string(), None)).collect(),
                    Duration::from_secs(8),
                ),
                "regress" => (
                    REGRESSIONS
                        .iter()
                        .map(|(s, seed, _, _)| (s.to_string(), Some(*seed)))
                        .collect(),
                    Duration::from_secs(8),
                ),
                "soak" => (vec![("random".into(), None)], Duration::from_secs(600)),
                one => {
                    if !SCENARIOS.iter().any(|(n, _)| *n == one) {
                        bail!("unknown suite or scenario {one:?}; see `sen-chaos list`");
                    }
                    (
                        vec![(one.to_owned(), None)],
                        Duration::from_secs(if one == "random" { 120 } else { 8 }),
                    )
                }
            };
            let nodes = if suite == "soak" && nodes == 3 { 5 } else { nodes };
            let mut all_passed = true;
            let mut summary = Vec::new();
            for run_i in 0..runs.max(1) {
                for (sc, pinned) in &scenarios {
                    let run_seed = pinned.unwrap_or(seed.wrapping_add(run_i as u64));
                    if sen_chaos::scenario::needs_tmpfs(sc) && !nix::unistd::Uid::effective().is_root() {
                        println!("SKIP {sc}: needs root (mounts a size-limited tmpfs)");
                        summary.push(format!("| {sc} | {run_seed} | skipped (needs root) | | | | |"));
                        continue;
                    }
                    let out_dir = if runs > 1 {
                        out.join(format!("seed-{run_seed}"))
                    } else {
                        out.clone()
                    };
                    let opts = RunOptions {
                        scenario: sc.clone(),
                        nodes,
                        seed: run_seed,
                        duration: duration.unwrap_or(default_d),
                        out: out_dir,
                        sen: sen.clone(),
                        workload: WorkloadConfig {
                            clients,
                            ..Default::default()
                        },
                        replay: replay.clone(),
                        warmup: Duration::from_secs(3),
                        recovery: Duration::from_secs(5),
                    };
                    let t = std::time::Instant::now();
                    let r = runner::run(&opts).await?;
                    if r.passed && !keep_data {
                        free_node_data(&opts.out.join(sc).join("nodes"));
                    }
                    println!(
                        "{} {sc} seed={run_seed} faults={} ops={} lost={} linearizable={} converged={} ({:.0} s)",
                        if r.passed { "PASS" } else { "FAIL" },
                        r.faults.len(),
                        r.ops.total,
                        r.lost_writes,
                        r.linearizable,
                        r.converged,
                        t.elapsed().as_secs_f64()
                    );
                    summary.push(format!(
                        "| {sc} | {run_seed} | {} | {} | {} | {} | {} |",
                        if r.passed { "PASS" } else { "FAIL" },
                        r.faults.len(),
                        r.lost_writes,
                        r.linearizable,
                        r.converged
                    ));
                    if !r.passed {
                        all_passed = false;
                        for f in &r.failures {
                            println!("    {f}");
                        }
                        println!("    reproduce: {}", r.reproduce);
                    }
                }
            }
            let md = format!(
                "| scenario | seed | verdict | faults | lost writes | linearizable | converged |\n|---|---|---|---|---|---|---|\n{}\n",
                summary.join("\n")
            );
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("summary.md"), &md)?;
            Ok(all_passed)
        }
    }
}

/// Remove `nodes/*/data` (hundreds of MB per node) of a passed scenario,
/// keeping logs, configs and every report file.
fn free_node_data(nodes: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(nodes) else { return };
    for e in entries.flatten() {
        let data = e.path().join("data");
        if data.is_dir()
            && let Err(err) = std::fs::remove_dir_all(&data)
        {
            eprintln!("could not remove {}: {err}", data.display());
        }
    }
}
