//! What the backup, restore and drill commands share: where the
//! repository is and its password, retention flags, opening a snapshot,
//! progress bars, and how repository errors become exit codes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sen_backup::prune::KeepPolicy;
use sen_backup::read::{self, SnapshotEntry};
use sen_backup::repo::Index;
use sen_backup::{ObjectStore, Repo, RepoError};

use crate::{Failure, Output};

/// Where the repository is, and its password.
#[derive(Args, Debug, Clone)]
pub struct RepoArgs {
    /// Repository URL: file:///absolute/path or s3://bucket/prefix.
    #[arg(long, env = "SEN_REPO")]
    pub repo: Option<String>,
    /// File holding the repository password (first line; encrypted
    /// repositories only).
    #[arg(long, env = "SEN_REPO_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

impl RepoArgs {
    pub fn url(&self) -> Result<&str, Failure> {
        self.repo.as_deref().ok_or_else(|| {
            Failure::from("give the repository with --repo URL (or SEN_REPO), e.g. file:///var/backups/sen")
        })
    }

    pub fn password(&self) -> Result<Option<Vec<u8>>, Failure> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read(path).map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
        let line = sen_backup::crypto::password_line(&text);
        if line.is_empty() {
            return Err(format!("the password file {} is empty", path.display()).into());
        }
        Ok(Some(line.to_vec()))
    }
}

/// Retention rules (`--keep-last N --keep-daily N …`).
#[derive(Args, Debug, Clone)]
pub struct KeepArgs {
    #[arg(long, default_value_t = 0)]
    keep_last: u32,
    #[arg(long, default_value_t = 0)]
    keep_hourly: u32,
    #[arg(long, default_value_t = 0)]
    keep_daily: u32,
    #[arg(long, default_value_t = 0)]
    keep_weekly: u32,
    #[arg(long, default_value_t = 0)]
    keep_monthly: u32,
    #[arg(long, default_value_t = 0)]
    keep_yearly: u32,
}

impl KeepArgs {
    pub fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
        }
    }
}

/// A runtime for the object store; repository code runs on this thread.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::from(format!("cannot start the async runtime: {e}")))
}

pub fn store(rt: &tokio::runtime::Runtime, url: &str) -> Result<Arc<dyn ObjectStore>, Failure> {
    rt.block_on(sen_backup_s3::open_store(url)).map_err(fail)
}

pub fn open(rt: &tokio::runtime::Runtime, args: &RepoArgs) -> Result<Repo, Failure> {
    let password = args.password()?;
    Repo::open(store(rt, args.url()?)?, rt.handle().clone(), password.as_deref()).map_err(fail)
}

/// Open the repository, find snapshot `which` (`latest` or an id prefix)
/// and load the blob index: what every restore starts with.
pub fn open_snapshot(
    rt: &tokio::runtime::Runtime,
    args: &RepoArgs,
    which: &str,
) -> Result<(Repo, SnapshotEntry, Index), Failure> {
    let r = open(rt, args)?;
    let snaps = read::list_snapshots(&r).map_err(fail)?;
    let e = read::resolve(&snaps, which).map_err(fail)?;
    let index = r.load_index().map_err(fail)?;
    Ok((r, e, index))
}

/// Damaged repository data exits with 3, everything else with 1.
pub fn fail(e: RepoError) -> Failure {
    let code = match e {
        RepoError::Corrupt(_) => 3,
        _ => 1,
    };
    Failure {
        code,
        message: e.to_string(),
    }
}

/// [`fail`] for the operations library.
pub fn ops_fail(e: sen_ops::OpsError) -> Failure {
    Failure {
        code: if e.is_corruption() { 3 } else { 1 },
        message: e.to_string(),
    }
}

pub fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

pub fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A progress bar on a terminal (text output only).
pub fn bar(output: Output, total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if output == Output::Json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}") {
        pb.set_style(style);
    }
    pb
}

/// Keep the result of a check or a restore drill in the cluster, for the
/// monthly report and the dashboard. Never fails the command: a check
/// needs no running cluster, so an unreachable one is said on stderr and
/// in the JSON (`recorded`, `not_recorded_because`).
pub fn record_verification(
    rt: &tokio::runtime::Runtime,
    endpoints: &[String],
    timeout: Duration,
    v: &sen_raft::schema::system::Verification,
    json: &mut serde_json::Value,
) {
    let _in_runtime = rt.enter();
    let outcome = crate::client(endpoints, timeout.min(Duration::from_secs(10)))
        .map_err(|f| f.message)
        .and_then(|c| {
            rt.block_on(sen_ops::verification::record(&c, v))
                .map_err(|e| e.to_string())
        });
    match outcome {
        Ok(revision) => {
            json["recorded"] = serde_json::json!(true);
            json["record_revision"] = serde_json::json!(revision);
        }
        Err(why) => {
            eprintln!(
                "note: the result was not recorded in the cluster, so the monthly report will not show it: {why} \
                 (give --endpoints of the cluster and credentials with the operator role, or --no-record)"
            );
            json["recorded"] = serde_json::json!(false);
            json["not_recorded_because"] = serde_json::json!(why);
        }
    }
}
