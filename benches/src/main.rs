//! Sen's benchmark harness. One command per comparison:
//!
//! ```text
//! cargo build --release -p sen-cli -p sen-benches
//! target/release/sen-benches kv --out bench-out          # writes/s, latency, reads/s vs etcd 3.4
//! target/release/sen-benches failover --out bench-out    # kill -9 leader → first write, vs etcd
//! target/release/sen-benches limits --out bench-out      # fsyncs/s, disk MB/s, blake3/zstd/FastCDC MB/s
//! target/release/sen-benches content --out bench-out     # push MB/s, dedup, HTTP vs nginx (needs wrk, nginx)
//! target/release/sen-benches backup --out bench-out     # vs restic and borg (needs restic, borgbackup)
//! target/release/sen-benches pitr --out bench-out       # total loss → restore --at latest: loss window, 20 runs
//! target/release/sen-benches idle --out bench-out       # CPU of an idle 3-node cluster, per node
//! target/release/sen-benches all --out bench-out
//! cargo bench -p sen-benches --features micro            # criterion micro-benchmarks
//! ```
//!
//! The peers (etcd-server, nginx, wrk, restic, borgbackup) come from
//! `./scripts/setup.sh --bench`.
//!
//! Each run writes `<name>.json` and `<name>.md` into `--out` and prints the
//! Markdown. Clusters are real `sen` processes (the `sen` binary next to
//! this one) on 127.0.0.x with fsync on, data under `--data` (default: a
//! temporary directory on the same disk as the build).

mod backup;
mod content;
mod etcd;
mod failover;
mod http;
mod idle;
mod kv;
mod limits;
mod pitr;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "sen-benches", about = "Sen benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    /// Directory for reports.
    #[arg(long, global = true, default_value = "bench-out")]
    out: PathBuf,
    /// Directory for the clusters' data (default: under --out).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// The `sen` binary (default: next to this executable).
    #[arg(long, global = true)]
    sen: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// 3-node clusters of Sen and etcd 3.4 side by side: writes/s and
    /// p50/p99 at 1, 16, 64 clients; linearizable and stale reads/s.
    Kv(kv::Args),
    /// kill -9 the leader repeatedly, Sen and etcd alternately: time until
    /// a write succeeds again.
    Failover(failover::Args),
    /// Physical limits of this machine: fsyncs/s and sequential MB/s of the
    /// data disk; single-core blake3, zstd-3 and FastCDC MB/s.
    Limits,
    /// Site content: push throughput, dedup of ten real releases, HTTP
    /// requests/s side by side with nginx, a large file end to end.
    Content(content::Args),
    /// Backups and restores side by side with restic and borg (needs
    /// `./scripts/setup.sh --bench`).
    Backup(backup::Args),
    /// HTTP requests/s of one site from a plaintext cluster and from a
    /// cluster with TLS, side by side (wrk).
    Http(http::Args),
    /// Point-in-time recovery after every node is lost: acknowledged
    /// writes restored from the continuous archive, the loss window, the
    /// restore time (20 runs).
    Pitr(pitr::Args),
    /// CPU and context switches of an idle 3-node cluster (TLS,
    /// defaults, no client traffic), per node.
    Idle(idle::Args),
    /// Everything above with default settings.
    All,
}

fn sen_binary(arg: Option<PathBuf>) -> Result<PathBuf> {
    let p = match arg {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("sen"),
    };
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p sen-cli` (or pass --sen)",
            p.display()
        );
    }
    Ok(p)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out).with_context(|| format!("create {}", cli.out.display()))?;
    let data = cli.data.clone().unwrap_or_else(|| cli.out.join("data"));
    std::fs::create_dir_all(&data)?;
    let machine = report::Machine::probe(&data);
    match cli.bench {
        Bench::Kv(a) => {
            let sen = sen_binary(cli.sen)?;
            kv::run(&sen, &data, &cli.out, &machine, a).await?;
        }
        Bench::Failover(a) => {
            let sen = sen_binary(cli.sen)?;
            failover::run(&sen, &data, &cli.out, &machine, a).await?;
        }
        Bench::Limits => limits::run(&data, &cli.out, &machine)?,
        Bench::Content(a) => {
            let sen = sen_binary(cli.sen)?;
            content::run(&sen, &data, &cli.out, &machine, a).await?;
        }
        Bench::Backup(a) => {
            let sen = sen_binary(cli.sen)?;
            backup::run(&sen, &data, &cli.out, &machine, a).await?;
        }
        Bench::Pitr(a) => {
            let sen = sen_binary(cli.sen)?;
            pitr::run(&sen, &data, &cli.out, &machine, a).await?;
        }
        Bench::Idle(a) => {
            let sen = sen_binary(cli.sen)?;
            idle::run(&sen, &data, &cli.out, &machine, a).await?;
        }
        Bench::Http(a) => {
            let sen = sen_binary(cli.sen)?;
            http::run(&sen, &data, &cli.out, &machine, a).await?;
        }
        Bench::All => {
            let sen = sen_binary(cli.sen)?;
            limits::run(&data, &cli.out, &machine)?;
            kv::run(&sen, &data, &cli.out, &machine, kv::Args::default()).await?;
            failover::run(&sen, &data, &cli.out, &machine, failover::Args::default()).await?;
            content::run(&sen, &data, &cli.out, &machine, content::Args::default()).await?;
            backup::run(&sen, &data, &cli.out, &machine, backup::Args::default()).await?;
        }
    }
    Ok(())
}

/// Parse "10s"-style durations.
pub fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}
