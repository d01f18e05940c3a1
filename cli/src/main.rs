//! `sen`: run a node (`sen server`), a local demo cluster (`sen demo`), or
//! talk to a cluster (every other command).
//!
//! Client commands take `--endpoints HOST:PORT,...` (or `SEN_ENDPOINTS`) and
//! `--output text|json`; they exit non-zero with a one-line reason on
//! failure.

mod access_cmd;
mod archive_cmd;
mod backup_cmd;
mod certs_cmd;
mod cluster_cmd;
mod demo;
mod drill_cmd;
mod incident_cmd;
mod kv_cmd;
mod log_limit;
mod output;
mod quota_cmd;
mod repo_args;
mod report_cmd;
mod restore_cmd;
mod server_cmd;
mod site_cmd;

use std::path::PathBuf;
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
    /// The cluster CA certificate: talk TLS to the nodes.
    #[arg(long = "ca", global = true, env = "SEN_CA")]
    tls_ca: Option<PathBuf>,
    /// A client certificate (its common name is the user), with --key.
    #[arg(long = "cert", global = true, env = "SEN_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long = "key", global = true, env = "SEN_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A file holding a token (`sen token create`); or set SEN_TOKEN.
    #[arg(long, global = true, env = "SEN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
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
    /// The continuous archive of the log: point-in-time restores.
    #[command(subcommand)]
    Archive(archive_cmd::ArchiveCmd),
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
    /// Certificates for TLS: a cluster CA, node and user certificates.
    #[command(subcommand)]
    Certs(certs_cmd::CertsCmd),
    /// Users (each gets roles and tokens).
    #[command(subcommand)]
    User(access_cmd::UserCmd),
    /// Bearer tokens of users (shown once when created).
    #[command(subcommand)]
    Token(access_cmd::TokenCmd),
    /// Roles granted to users, on the cluster or on sites and databases.
    #[command(subcommand)]
    Role(access_cmd::RoleCmd),
    /// The audit log: every change and every refused request.
    #[command(subcommand)]
    Audit(access_cmd::AuditCmd),
    /// Quotas: the most a database or a site may hold.
    #[command(subcommand)]
    Quota(quota_cmd::QuotaCmd),
    /// Reports for the Editorial Board: measured availability.
    #[command(subcommand)]
    Report(report_cmd::ReportCmd),
    /// Who the cluster takes you for, and your roles.
    Whoami,
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

/// Where the credentials of every client the command makes come from
/// (read when a client is made, so `sen server` ignores them).
#[derive(Debug, Clone, Default)]
struct CredentialArgs {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    token_file: Option<PathBuf>,
}

static CREDENTIALS: std::sync::OnceLock<CredentialArgs> = std::sync::OnceLock::new();

/// TLS and token options from the flags and the environment.
fn credentials(cli: &CredentialArgs) -> Result<(Option<sen_client::TlsOptions>, Option<sen_client::Secret>), Failure> {
    let tls = match &cli.ca {
        None => {
            if cli.cert.is_some() {
                return Err("--cert needs --ca (or SEN_CA): a client certificate is used over TLS".into());
            }
            None
        }
        Some(ca) => {
            let identity = match (&cli.cert, &cli.key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                (Some(_), None) | (None, Some(_)) => {
                    return Err("give --cert and --key together (or SEN_CERT and SEN_KEY)".into());
                }
                (None, None) => None,
            };
            Some(sen_client::TlsOptions::from_files(ca, identity)?)
        }
    };
    let token = match (
        &cli.token_file,
        std::env::var("SEN_TOKEN").ok().filter(|t| !t.trim().is_empty()),
    ) {
        (Some(f), _) => Some(sen_client::Secret::from_token_file(f)?),
        (None, Some(t)) => Some(sen_client::Secret(t.trim().to_owned())),
        (None, None) => None,
    };
    Ok((tls, token))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = CREDENTIALS.set(CredentialArgs {
        ca: cli.tls_ca.clone(),
        cert: cli.tls_cert.clone(),
        key: cli.tls_key.clone(),
        token_file: cli.token_file.clone(),
    });
    let result = match cli.command {
        Command::Server(args) => server_cmd::run(args),
        Command::Demo(args) => demo::run(args, cli.output),
        Command::Cluster(cmd) => client_runtime(|| cluster_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Kv(cmd) => client_runtime(|| kv_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Site(cmd) => client_runtime(|| site_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Backup(cmd) => backup_cmd::run_backup(cmd, &cli.endpoints, cli.output, cli.timeout),
        Command::Restore(cmd) => restore_cmd::run_restore(cmd, &cli.endpoints, cli.output, cli.timeout),
        Command::Archive(cmd) => match archive_cmd::run_log(cmd, cli.output) {
            Ok(None) => Ok(()),
            Ok(Some(cmd)) => client_runtime(|| archive_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
            Err(e) => Err(e),
        },
        Command::Drill(cmd) => drill_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout),
        Command::Node(cmd) => client_runtime(|| incident_cmd::run_node(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Incident(cmd) => {
            client_runtime(|| incident_cmd::run_incident(cmd, &cli.endpoints, cli.output, cli.timeout))
        }
        Command::Certs(cmd) => certs_cmd::run(cmd, cli.output),
        Command::User(cmd) => client_runtime(|| access_cmd::run_user(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Token(cmd) => client_runtime(|| access_cmd::run_token(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Role(cmd) => client_runtime(|| access_cmd::run_role(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Quota(cmd) => client_runtime(|| quota_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Audit(cmd) => client_runtime(|| access_cmd::run_audit(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Report(cmd) => client_runtime(|| report_cmd::run(cmd, &cli.endpoints, cli.output, cli.timeout)),
        Command::Whoami => client_runtime(|| access_cmd::whoami(&cli.endpoints, cli.output, cli.timeout)),
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
    let (tls, token) = credentials(CREDENTIALS.get().unwrap_or(&CredentialArgs::default()))?;
    let opts = sen_client::ClientOptions {
        timeout,
        attempt_timeout: timeout.min(Duration::from_secs(10)),
        tls,
        token,
        ..Default::default()
    };
    Ok(sen_client::Client::new(endpoints, opts)?)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own consistency checks over every subcommand (a global flag
    /// sharing an id with a subcommand's argument fails only at run time).
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_credentials_do_not_shadow_subcommand_arguments() {
        let cli = Cli::try_parse_from(["sen", "--ca", "ca.pem", "kv", "put", "db", "key", "value"]).unwrap();
        assert_eq!(cli.tls_ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        let cli = Cli::try_parse_from(["sen", "kv", "get", "db", "k", "--cert", "a.pem", "--key", "a.key"]).unwrap();
        assert!(cli.tls_cert.is_some() && cli.tls_key.is_some());
        assert!(Cli::try_parse_from(["sen", "--cert", "a.pem", "cluster", "status"]).is_err());
    }
}
