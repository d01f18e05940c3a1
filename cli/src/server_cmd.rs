//! `sen server`: run one node until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::Args;
use sen_node::{NodeConfig, Overrides};
use tracing_subscriber::EnvFilter;

use crate::Failure;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "SEN_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (positive integer, unique in the cluster).
    #[arg(long)]
    id: Option<u64>,
    /// Where the node keeps its data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address (clients and peers).
    #[arg(long)]
    listen: Option<String>,
    /// gRPC address other nodes use to reach this one (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// HTTP listen address (/livez, /readyz, /metrics).
    #[arg(long)]
    http: Option<String>,
    /// Run without TLS and authentication on any address (trusted test
    /// networks only: anyone who reaches a port can do anything).
    #[arg(long)]
    insecure: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

pub fn run(args: ServerArgs) -> Result<(), Failure> {
    let overrides = Overrides {
        id: args.id,
        data_dir: args.data_dir,
        listen: args.listen,
        advertise: args.advertise,
        http: args.http,
        insecure: args.insecure,
    };
    let cfg = NodeConfig::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    init_logging(&cfg);
    return_freed_memory_periodically();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sen")
        .build()
        .map_err(|e| Failure::from(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        sen_node::run(cfg, shutdown_signal()).await.map_err(|e| {
            tracing::error!("{e}");
            Failure::from(e)
        })
    })
}

/// How often the node hands freed heap memory back to the system.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// glibc keeps memory freed by a thread in that thread's arena for reuse,
/// and after a large buffer is freed it serves buffers of that size from
/// the arenas too: a node that had taken a 650 MB push kept ~290 MiB
/// resident for good. Every [`TRIM_EVERY`] one thread asks glibc to
/// return the free pages of every arena (`malloc_trim`), which costs
/// nothing measurable on the hot paths (a fixed 256 KiB mmap threshold
/// did the same but made pushes 15% slower; every 2 s rather than 10 s
/// took the peak of a backup right after a 2 GB push from 413–446 to
/// 396–398 MiB at the same speeds; docs/benchmarks.md). RocksDB's memory
/// is bounded by `raft.store-memory-bytes`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn return_freed_memory_periodically() {
    let started = std::thread::Builder::new().name("sen-trim".into()).spawn(|| {
        loop {
            std::thread::sleep(TRIM_EVERY);
            // SAFETY: malloc_trim only returns free pages of glibc's
            // heaps to the system, under the allocator's own locks.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    if let Err(e) = started {
        tracing::warn!("cannot start the thread that returns freed memory: {e}; the node runs without it");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_memory_periodically() {}

fn init_logging(cfg: &NodeConfig) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("SEN_LOG").unwrap_or_else(|_| cfg.log.level.clone());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Repeated lines (a peer down: every retry) are held back and
    // summarised once per window, so an outage cannot fill the log disk.
    let limiter = crate::log_limit::RepeatLimiter::new(cfg.log.repeat_window);
    limiter.spawn_summaries();
    let registry = tracing_subscriber::registry().with(filter).with(limiter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt.with_ansi(false)).init();
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
