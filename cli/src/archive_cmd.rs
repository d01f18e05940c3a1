//! `sen archive`: the continuous archive of the replicated log
//! (docs/backup.md, "Continuous archive and point-in-time restore").

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use sen_raft::schema::system::SystemRecord;
use sen_raft::schema::system::archive::{ArchiveConfig, ArchiveProgress};
use serde_json::{Value, json};

use crate::output::emit;
use crate::repo_args::when;
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum ArchiveCmd {
    /// Ship every committed log entry to a repository from now on (the
    /// leader ships; a follower takes over after a failover). Take a
    /// backup afterwards: a point-in-time restore replays the archive
    /// after a snapshot.
    Enable {
        /// Repository URL (file:///… or s3://…), under every node's
        /// `[backup] allowed-repos`, initialised with `sen backup init`.
        #[arg(long, env = "SEN_REPO")]
        repo: String,
        /// Password file of an encrypted repository, read on the node that
        /// ships: every node needs it at this path.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Ship what committed at least this often.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        interval: Duration,
        /// Entries the archive may fall behind (an unreachable repository)
        /// before nodes purge their logs anyway.
        #[arg(long, default_value_t = 1_000_000)]
        max_lag: u64,
    },
    /// Stop shipping (what was archived stays in the repository).
    Disable,
    /// Where the archive goes, how far it got and how far behind it is.
    Status,
}

pub async fn run(cmd: ArchiveCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        ArchiveCmd::Enable {
            repo,
            password_file,
            interval,
            max_lag,
        } => {
            let config = ArchiveConfig {
                version: ArchiveConfig::VERSION,
                repo: repo.clone(),
                password_file: password_file.map(|p| p.display().to_string()),
                interval_ms: interval.as_millis() as u64,
                max_lag_entries: max_lag,
                enabled_at_ms: 0,
                enabled_by: String::new(),
            };
            let json = String::from_utf8_lossy(&config.to_json().map_err(|e| e.to_string())?).into_owned();
            let revision = c.set_archive(Some(json)).await?;
            emit(
                output,
                json!({"enabled": true, "repo": repo, "revision": revision}),
                || {
                    format!(
                        "archive on: committed entries go to {repo} at least every {}\ntake a backup now (sen backup create) so that point-in-time restores have a snapshot to start from",
                        humantime::format_duration(interval)
                    )
                },
            );
        }
        ArchiveCmd::Disable => {
            let revision = c.set_archive(None).await?;
            emit(output, json!({"enabled": false, "revision": revision}), || {
                "archive off: nothing more is shipped; what was archived stays in the repository".into()
            });
        }
        ArchiveCmd::Status => {
            let s = c.archive_status().await?;
            let config = (!s.config.is_empty())
                .then(|| ArchiveConfig::from_json(s.config.as_bytes()))
                .transpose()
                .map_err(|e| e.to_string())?;
            let progress = (!s.progress.is_empty())
                .then(|| ArchiveProgress::from_json(s.progress.as_bytes()))
                .transpose()
                .map_err(|e| e.to_string())?;
            let shipper: Value = serde_json::from_str(&s.shipper).unwrap_or(Value::Null);
            let j = json!({
                "config": config,
                "progress": progress,
                "shipper_node": s.node,
                "shipper": shipper,
                "applied_index": s.applied_index,
            });
            emit(output, j, || match &config {
                None => "archive off (sen archive enable --repo URL)".into(),
                Some(c) => {
                    let n = |k: &str| shipper[k].as_u64().unwrap_or(0);
                    let mut t = format!(
                        "archive on since {} (by {}): {} every {}\nnode {} ({}): archived up to index {} (committed {}), applied {}, lag {} entries / {:.1} s, {} segments stored by this node",
                        when(c.enabled_at_ms),
                        c.enabled_by,
                        c.repo,
                        humantime::format_duration(Duration::from_millis(c.interval_ms)),
                        s.node,
                        shipper["state"].as_str().unwrap_or("?"),
                        n("archived_index"),
                        if n("archived_at_ms") > 0 {
                            when(n("archived_at_ms"))
                        } else {
                            "-".into()
                        },
                        s.applied_index,
                        n("lag_entries"),
                        n("lag_ms") as f64 / 1000.0,
                        n("segments"),
                    );
                    if let Some(e) = shipper["error"].as_str().filter(|e| !e.is_empty()) {
                        t.push_str(&format!("\nfailing: {e}"));
                    }
                    if let Some(p) = &progress {
                        t.push_str(&format!(
                            "\nlast recorded progress: index {} by node {} at {}",
                            p.index,
                            p.shipper,
                            when(p.shipped_at_ms)
                        ));
                    }
                    t
                }
            });
        }
    }
    Ok(())
}
