//! `sen`: run a node (`sen server`), a local demo cluster (`sen demo`), or
//! talk to a cluster (every other command).
//!
//! Client commands take `--endpoints HOST:PORT,...` (or `SEN_ENDPOINTS`) and
//! `--output text|json`; they exit non-zero with a one-line reason on
//! failure.

mod backup_cmd;
mod cluster_cmd;
mod demo;
mod drill_cmd;
mod incident_cmd;
mod kv_cmd;
mod output;
mod repo_args;
mod restore_cmd;
mod server_cmd;
mod site_cmd;
mod txn_parse;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Sen: high-availability replication and backup for portal content and
/// databases.
#[derive(Parser, Debug)]
#[command(name = "sen", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Cluster endpoints (gRPC addresses of any nodes), comma-separated.
    #[arg(
        long,
        global = true,
        env = "SEN_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
    )]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(long, global = true, env = "SEN_OUTPUT", value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Give up on an operation (all retries included) after this long.
    #[arg(long, global = true, env = "SEN_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node.
    Server(server_cmd::ServerArgs),
    /// Start a local cluster of nodes (data, logs and status under one
    /// folder); Ctrl-C stops it cleanly.
    Demo(demo::DemoArgs),
    /// Cluster lifecycle and status.
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCmd),
    /// Key-value databases.
    #[command(subcommand)]
    Kv(kv_cmd::KvCmd),
    /// Component sites: push, serve, pull.
    #[command(subcommand)]
    Site(site_cmd::SiteCmd),
    /// Backups: repositories, snapshots, verification, retention.
    #[command(subcommand)]
    Backup(backup_cmd::BackupCmd),
    /// Restore from a backup: a whole cluster, a site, a database.
    #[command(subcommand)]
    Restore(restore_cmd::RestoreCmd),
    /// Drills that prove recovery works: failover drills on the live
    /// cluster (`run`, `list`, `show`) and restore drills (`restore`).
    #[command(subcommand)]
    Drill(drill_cmd::DrillCmd),
    /// Maintenance of one node: drain (never lead) and undrain.
    #[command(subcommand)]
    Node(incident_cmd::NodeCmd),
    /// The incident log: every interruption, its cause and remedy.
    #[command(subcommand)]
    Incident(incident_cmd::IncidentCmd),
}

/// A command failed: print this line and exit with `code`.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server_cmd::run(args),
        Command::Demo(args) => demo::run(args, cli.output),
        Command::Cluster(cmd) => client_runtime(|| cluster_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Kv(cmd) => client_runtime(|| kv_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Site(cmd) => client_runtime(|| site_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Backup(cmd) => backup_cmd::run_backup(cmd, &cli.endpoints, cli.output, cli.timeout),
        Command::Restore(cmd) => restore_cmd::run_restore(cmd, &cli.endpoints, cli.output, cli.timeout),
        Command::Drill(cmd) => drill_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout),
        Command::Node(cmd) => client_runtime(|| incident_cmd::run_node(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Incident(cmd) => {
            client_runtime(|| incident_cmd::run_incident(cmd, &cli.endpoints, cli.output, cli.timeout))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let msg = f.message.replace('\n', " ");
            if cli.output == Output::Json && f.code != 0 {
                println!("{}", serde_json::json!({ "error": msg }));
            }
            eprintln!("sen: {msg}");
            ExitCode::from(f.code)
        }
    }
}

fn client_runtime<F, Fut>(f: F) -> Result<(), Failure>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::from(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(f())
}

/// A client for the global flags.
pub fn client(endpoints: &[String], timeout: Duration) -> Result<sen_client::Client, Failure> {
    let opts = sen_client::ClientOptions {
        timeout,
        attempt_timeout: timeout.min(Duration::from_secs(10)),
        ..Default::default()
    };
    Ok(sen_client::Client::new(endpoints, opts)?)
}
