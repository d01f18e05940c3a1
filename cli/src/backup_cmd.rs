//! `sen backup …` and `sen restore …`: backups to a repository and
//! restores from it (docs/backup.md).
//!
//! `backup create` asks a node to back up its own replica (a follower by
//! default, so the leader keeps its resources for writes). Every other
//! command reads or writes the repository from this process: listing,
//! checking, pruning and restoring need no running cluster.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use sen_backup::format::{Snapshot, hex_id};
use sen_backup::prune::KeepPolicy;
use sen_backup::read::{self, SnapshotEntry};
use sen_backup::repo::Index;
use sen_backup::{InitOptions, ObjectStore, Repo, RepoError, check, prune};
use serde_json::json;

use crate::output::{emit, table};
use crate::{Failure, Output};

/// Where the repository is, and its password.
#[derive(Args, Debug, Clone)]
pub struct RepoArgs {
    /// Repository URL: file:///absolute/path or s3://bucket/prefix.
    #[arg(long, env = "SEN_REPO")]
    repo: Option<String>,
    /// File holding the repository password (first line; encrypted
    /// repositories only).
    #[arg(long, env = "SEN_REPO_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
}

impl RepoArgs {
    fn url(&self) -> Result<&str, Failure> {
        self.repo.as_deref().ok_or_else(|| {
            Failure::from("give the repository with --repo URL (or SEN_REPO), e.g. file:///var/backups/sen")
        })
    }

    fn password(&self) -> Result<Option<Vec<u8>>, Failure> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read(path).map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
        let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
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
    fn policy(&self) -> KeepPolicy {
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

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Create a repository (encrypted when a password file is given).
    Init {
        #[command(flatten)]
        repo: RepoArgs,
        /// zstd level for blobs the cluster has not compressed already.
        #[arg(long, default_value_t = 3)]
        zstd_level: i32,
    },
    /// Back up the cluster: a node backs up its replica at one Raft index.
    Create {
        #[command(flatten)]
        repo: RepoArgs,
        /// Label the snapshot (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Node to read from (default: a reachable follower, else the leader).
        #[arg(long)]
        node: Option<u64>,
    },
    /// List snapshots (or, with --runs, the scheduled runs recorded in the cluster).
    List {
        #[command(flatten)]
        repo: RepoArgs,
        /// Show the scheduled backup runs recorded in the cluster instead.
        #[arg(long)]
        runs: bool,
    },
    /// The backup schedule kept in the cluster and run by the leader.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Show one snapshot (`latest` or an id prefix).
    Show {
        #[command(flatten)]
        repo: RepoArgs,
        id: String,
    },
    /// What changed between two snapshots (files per site, keys per database).
    Diff {
        #[command(flatten)]
        repo: RepoArgs,
        id1: String,
        id2: String,
    },
    /// Verify the repository; with --read-data also every byte (or a percentage of packs).
    Check {
        #[command(flatten)]
        repo: RepoArgs,
        /// Read and verify data: all of it, or PERCENT of the packs.
        #[arg(long, num_args = 0..=1, default_missing_value = "100", value_name = "PERCENT")]
        read_data: Option<String>,
    },
    /// Forget snapshots the rules do not keep, and delete data only they used.
    Prune {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        keep: KeepArgs,
        /// Data marked unused is deleted by a later prune once it has been
        /// marked this long (longer than any backup runs).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        grace: Duration,
        /// Show what would be forgotten and deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DrillCmd {
    /// Restore a snapshot to a scratch location and prove it equals the
    /// live cluster's state at the snapshot's Raft index; report duration
    /// and throughput.
    Restore {
        #[command(flatten)]
        repo: RepoArgs,
        /// `latest` or a snapshot id prefix.
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// Take a new backup of the live cluster first and restore that.
        #[arg(long, conflicts_with = "snapshot")]
        fresh: bool,
        /// Where to build the scratch copy (default: the system's temp dir).
        #[arg(long)]
        scratch: Option<PathBuf>,
        /// Keep the scratch copy (a startable data directory) afterwards.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Set (or replace) the schedule.
    Set {
        /// Repository URL, as the nodes reach it.
        #[arg(long, env = "SEN_REPO")]
        repo: String,
        /// One backup per period (slots aligned to the epoch, UTC): 15m, 1h, 1d…
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Duration,
        /// Password file path on the nodes (each node that may take the
        /// backup needs it).
        #[arg(long)]
        password_file: Option<String>,
        #[command(flatten)]
        keep: KeepArgs,
        /// Prune's grace period for data it marks unused.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        grace: Duration,
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Show the schedule.
    Show,
    /// Remove the schedule (runs already recorded stay).
    Clear,
}

#[derive(Subcommand, Debug)]
pub enum RestoreCmd {
    /// Prepare a data directory that starts a new one-node cluster holding
    /// exactly a snapshot's state (disaster recovery).
    Cluster {
        #[command(flatten)]
        repo: RepoArgs,
        /// `latest` or a snapshot id prefix.
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// New, empty data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Node id of the restored node.
        #[arg(long)]
        id: u64,
        /// gRPC address the node will listen on.
        #[arg(long)]
        listen: String,
        /// Address other nodes reach it at (default: --listen).
        #[arg(long)]
        advertise: Option<String>,
    },
    /// Restore a site (or a file or directory of it) to a local directory.
    Site {
        #[command(flatten)]
        repo: RepoArgs,
        site: String,
        /// A file or directory of the site (default: all of it).
        #[arg(long, default_value = "")]
        path: String,
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// Local directory to write into.
        #[arg(long, required_unless_present = "into_cluster", conflicts_with = "into_cluster")]
        to: Option<PathBuf>,
        /// Put the files back into the live site instead (one atomic
        /// deployment: under --path the site becomes what the snapshot had;
        /// everything else stays as it is now).
        #[arg(long)]
        into_cluster: bool,
        /// With --into-cluster: list what would change, change nothing.
        #[arg(long, requires = "into_cluster")]
        dry_run: bool,
    },
    /// Restore a database (or the keys under a prefix) to a JSON-lines file.
    Db {
        #[command(flatten)]
        repo: RepoArgs,
        db: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// File to write (`-`: standard output).
        #[arg(long, required_unless_present = "into_cluster", conflicts_with = "into_cluster")]
        to: Option<PathBuf>,
        /// Write the records back into the live database instead: under
        /// --prefix the database becomes what the snapshot had (keys added
        /// since are deleted, changed ones reset).
        #[arg(long)]
        into_cluster: bool,
        /// With --into-cluster: list what would change, change nothing.
        #[arg(long, requires = "into_cluster")]
        dry_run: bool,
    },
}

/// A runtime for the object store; repository code runs on this thread.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::from(format!("cannot start the async runtime: {e}")))
}

fn store(rt: &tokio::runtime::Runtime, url: &str) -> Result<Arc<dyn ObjectStore>, Failure> {
    rt.block_on(sen_node::backup::open_store(url)).map_err(fail)
}

fn open(rt: &tokio::runtime::Runtime, args: &RepoArgs) -> Result<Repo, Failure> {
    let password = args.password()?;
    Repo::open(store(rt, args.url()?)?, rt.handle().clone(), password.as_deref()).map_err(fail)
}

/// Open the repository, find snapshot `which` (`latest` or an id prefix)
/// and load the blob index: what every restore starts with.
fn open_snapshot(
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

fn fail(e: RepoError) -> Failure {
    let code = match e {
        RepoError::Corrupt(_) => 3,
        _ => 1,
    };
    Failure {
        code,
        message: e.to_string(),
    }
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn snapshot_json(e: &SnapshotEntry) -> serde_json::Value {
    let s = &e.snapshot;
    json!({
        "snapshot_id": hex_id(&e.id),
        "short_id": e.short_id(),
        "time": when(s.time_ms),
        "time_ms": s.time_ms,
        "cluster_id": s.cluster_id,
        "raft_index": s.raft_index,
        "raft_term": s.raft_term,
        "source_node": s.source_node,
        "hostname": s.hostname,
        "tags": s.tags,
        "state_digest": s.state_digest,
        "sites": s.sites.iter().map(|x| json!({"name": x.name, "deployment": x.deployment, "files": x.files, "bytes": x.bytes})).collect::<Vec<_>>(),
        "databases": s.databases.iter().map(|x| json!({"name": x.name, "keys": x.keys, "bytes": x.bytes})).collect::<Vec<_>>(),
        "tables": s.tables.iter().map(|t| json!({"name": t.name, "records": t.records, "bytes": t.bytes, "chunks": t.chunks.len()})).collect::<Vec<_>>(),
        "bytes_total": s.stats.bytes_total,
        "bytes_new": s.stats.bytes_new,
        "blobs_total": s.stats.blobs_total,
        "blobs_new": s.stats.blobs_new,
        "content_chunks": s.stats.content_chunks,
        "content_chunks_new": s.stats.content_chunks_new,
        "duration_ms": s.stats.duration_ms,
    })
}

pub fn run_backup(cmd: BackupCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let rt = runtime()?;
    match cmd {
        BackupCmd::Init { repo, zstd_level } => {
            let password = repo.password()?;
            let r = Repo::init(
                store(&rt, repo.url()?)?,
                rt.handle().clone(),
                password.as_deref(),
                &InitOptions {
                    zstd_level,
                    ..Default::default()
                },
            )
            .map_err(fail)?;
            emit(
                output,
                json!({"repo": r.describe(), "repository_id": r.config.id, "encrypted": r.keys.is_encrypted(), "format_version": r.config.version}),
                || {
                    format!(
                        "created repository {} at {} ({})",
                        r.config.id,
                        r.describe(),
                        if r.keys.is_encrypted() {
                            "encrypted: keep the password file safe, without it the backups cannot be read"
                        } else {
                            "not encrypted"
                        }
                    )
                },
            );
            Ok(())
        }
        BackupCmd::Create { repo, tags, node } => {
            let password = repo.password()?;
            // A backup may take long: --timeout bounds it (at least 1 h).
            let budget = timeout.max(Duration::from_secs(3600));
            rt.block_on(async {
                let client = crate::client(endpoints, Duration::from_secs(15).max(timeout.min(Duration::from_secs(60))))?;
                let addr = pick_node(&client, node).await?;
                let req = sen_proto::v1::CreateBackupRequest {
                    repo: repo.url()?.to_owned(),
                    password: password.unwrap_or_default(),
                    tags,
                };
                let r = client.create_backup(&addr, req, budget).await?;
                emit(
                    output,
                    json!({
                        "snapshot_id": r.snapshot_id,
                        "short_id": &r.snapshot_id[..8.min(r.snapshot_id.len())],
                        "raft_index": r.raft_index,
                        "raft_term": r.raft_term,
                        "node_id": r.node_id,
                        "state_digest": r.state_digest,
                        "bytes_total": r.bytes_total,
                        "bytes_new": r.bytes_new,
                        "blobs_total": r.blobs_total,
                        "blobs_new": r.blobs_new,
                        "content_chunks": r.content_chunks,
                        "content_chunks_new": r.content_chunks_new,
                        "duration_ms": r.duration_ms,
                    }),
                    || {
                        format!(
                            "snapshot {} at raft index {} (node {}): {} total, {} new, {} of {} content chunks new, {:.1} s",
                            &r.snapshot_id[..8.min(r.snapshot_id.len())],
                            r.raft_index,
                            r.node_id,
                            mb(r.bytes_total),
                            mb(r.bytes_new),
                            r.content_chunks_new,
                            r.content_chunks,
                            r.duration_ms as f64 / 1000.0
                        )
                    },
                );
                Ok::<(), Failure>(())
            })
        }
        BackupCmd::Schedule(cmd) => rt.block_on(schedule(cmd, endpoints, output, timeout)),
        BackupCmd::List { runs: true, .. } => rt.block_on(list_runs(endpoints, output, timeout)),
        BackupCmd::List { repo, .. } => {
            let r = open(&rt, &repo)?;
            let snaps = read::list_snapshots(&r).map_err(fail)?;
            let rows: Vec<Vec<String>> = snaps
                .iter()
                .map(|e| {
                    let s = &e.snapshot;
                    vec![
                        e.short_id(),
                        when(s.time_ms),
                        s.raft_index.to_string(),
                        s.source_node.to_string(),
                        s.sites.len().to_string(),
                        s.databases.len().to_string(),
                        mb(s.stats.bytes_total),
                        mb(s.stats.bytes_new),
                        s.tags.join(","),
                    ]
                })
                .collect();
            emit(
                output,
                json!({"snapshots": snaps.iter().map(snapshot_json).collect::<Vec<_>>()}),
                || {
                    if rows.is_empty() {
                        "no snapshots yet (take one with `sen backup create`)".into()
                    } else {
                        table(
                            &[
                                "ID",
                                "TIME",
                                "RAFT INDEX",
                                "NODE",
                                "SITES",
                                "DBS",
                                "TOTAL",
                                "NEW",
                                "TAGS",
                            ],
                            &rows,
                        )
                    }
                },
            );
            Ok(())
        }
        BackupCmd::Show { repo, id } => {
            let r = open(&rt, &repo)?;
            let snaps = read::list_snapshots(&r).map_err(fail)?;
            let e = read::resolve(&snaps, &id).map_err(fail)?;
            let j = snapshot_json(&e);
            emit(output, j.clone(), || show_text(&e));
            Ok(())
        }
        BackupCmd::Diff { repo, id1, id2 } => {
            let r = open(&rt, &repo)?;
            let snaps = read::list_snapshots(&r).map_err(fail)?;
            let a = read::resolve(&snaps, &id1).map_err(fail)?;
            let b = read::resolve(&snaps, &id2).map_err(fail)?;
            let index = r.load_index().map_err(fail)?;
            let changes = diff(&r, &index, &a.snapshot, &b.snapshot)?;
            emit(
                output,
                json!({"from": hex_id(&a.id), "to": hex_id(&b.id), "changes": changes.iter().map(|c| json!({"kind": c.0, "what": c.1, "name": c.2, "change": c.3})).collect::<Vec<_>>()}),
                || {
                    if changes.is_empty() {
                        return "no differences in sites or databases".into();
                    }
                    let rows: Vec<Vec<String>> = changes
                        .iter()
                        .map(|c| vec![c.3.to_string(), format!("{} {}", c.0, c.1), c.2.clone()])
                        .collect();
                    table(&["CHANGE", "IN", "PATH / KEY"], &rows)
                },
            );
            Ok(())
        }
        BackupCmd::Check { repo, read_data } => {
            let percent = match read_data.as_deref() {
                None => 0,
                Some(p) => {
                    let p = p.trim_end_matches('%');
                    match p.parse::<u32>() {
                        Ok(n) if (1..=100).contains(&n) => n,
                        _ => return Err(format!("--read-data takes a percentage from 1 to 100, not {p:?}").into()),
                    }
                }
            };
            let r = open(&rt, &repo)?;
            let report = check::check(&r, percent).map_err(fail)?;
            emit(output, serde_json::to_value(&report).unwrap_or_default(), || {
                let mut t = format!(
                    "{} snapshots, {} index objects, {} packs ({} unindexed), {} blobs; data read: {} packs, {}",
                    report.snapshots,
                    report.index_files,
                    report.packs,
                    report.unindexed_packs,
                    report.blobs,
                    report.packs_read,
                    mb(report.bytes_read)
                );
                if report.ok {
                    t.push_str("\nno errors found");
                } else {
                    for e in &report.errors {
                        t.push_str(&format!("\nerror: {e}"));
                    }
                }
                t
            });
            if report.ok {
                Ok(())
            } else {
                Err(Failure {
                    code: 3,
                    message: format!(
                        "the repository has {} problem(s); restore what you can from snapshots `check` does not name, and take a new backup",
                        report.errors.len()
                    ),
                })
            }
        }
        BackupCmd::Prune {
            repo,
            keep,
            grace,
            dry_run,
        } => {
            let policy = keep.policy();
            let r = open(&rt, &repo)?;
            let report = prune::prune(&r, &policy, grace, dry_run).map_err(fail)?;
            emit(output, serde_json::to_value(&report).unwrap_or_default(), || {
                format!(
                    "{}kept {} snapshot(s), forgot {}: {}\nmarked {} unused pack(s) ({}); deleted {} pack(s) marked earlier ({}); {} put back; {} partly used",
                    if dry_run { "dry run: " } else { "" },
                    report.kept.len(),
                    report.forgotten.len(),
                    if report.forgotten.is_empty() {
                        "-".into()
                    } else {
                        report.forgotten.join(" ")
                    },
                    report.packs_marked,
                    mb(report.bytes_marked),
                    report.packs_deleted,
                    mb(report.bytes_deleted),
                    report.packs_restored,
                    report.packs_partly_used
                )
            });
            Ok(())
        }
    }
}

async fn schedule(cmd: ScheduleCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    use sen_node::backup::{SCHEDULE_KEY, SYSTEM_DB, Schedule};
    let client = crate::client(endpoints, timeout)?;
    match cmd {
        ScheduleCmd::Set {
            repo,
            every,
            password_file,
            keep,
            grace,
            tags,
        } => {
            if every < Duration::from_secs(1) {
                return Err("--every must be at least 1s (periods under a few minutes are for testing)".into());
            }
            if !(repo.starts_with("file:///") || repo.starts_with("s3://")) {
                return Err(format!("--repo {repo:?}: use file:///absolute/path or s3://bucket/prefix").into());
            }
            let s = Schedule {
                version: 1,
                repo,
                every_ms: every.as_millis() as u64,
                password_file,
                keep: keep.policy(),
                prune_grace_ms: grace.as_millis() as u64,
                tags,
            };
            let value = serde_json::to_vec(&s).map_err(|e| e.to_string())?;
            let r = client.put(SYSTEM_DB, SCHEDULE_KEY, &value).await?;
            emit(output, json!({"schedule": s, "revision": r.revision}), || {
                format!(
                    "backup every {} to {} (first run at the next slot boundary; see `sen backup list --runs`)",
                    humantime::format_duration(every),
                    s.repo
                )
            });
            Ok(())
        }
        ScheduleCmd::Show => {
            let r = client
                .get(SYSTEM_DB, SCHEDULE_KEY, sen_client::Consistency::Linearizable)
                .await;
            let kv = match r {
                Ok(r) => r.kv,
                Err(e) if e.code() == Some(tonic_code_not_found()) => None,
                Err(e) => return Err(e.into()),
            };
            let Some(kv) = kv else {
                emit(output, json!({"schedule": null}), || {
                    "no backup schedule (set one with `sen backup schedule set`)".into()
                });
                return Ok(());
            };
            let s: Schedule =
                serde_json::from_slice(&kv.value).map_err(|e| format!("the stored schedule is unreadable: {e}"))?;
            emit(output, json!({"schedule": s}), || {
                format!(
                    "every {} to {}{}; keep {}; prune grace {}",
                    humantime::format_duration(Duration::from_millis(s.every_ms)),
                    s.repo,
                    s.password_file
                        .as_deref()
                        .map(|p| format!(" (password file {p} on the nodes)"))
                        .unwrap_or_default(),
                    keep_text(&s.keep),
                    humantime::format_duration(Duration::from_millis(s.prune_grace_ms))
                )
            });
            Ok(())
        }
        ScheduleCmd::Clear => {
            client.delete(SYSTEM_DB, SCHEDULE_KEY).await?;
            emit(output, json!({"schedule": null}), || "backup schedule removed".into());
            Ok(())
        }
    }
}

/// `last 3, daily 7` (or `everything` when no rule is set: no prune).
fn keep_text(k: &KeepPolicy) -> String {
    let rules: Vec<String> = [
        ("last", k.last),
        ("hourly", k.hourly),
        ("daily", k.daily),
        ("weekly", k.weekly),
        ("monthly", k.monthly),
        ("yearly", k.yearly),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| format!("{name} {n}"))
    .collect();
    if rules.is_empty() {
        "everything (no prune)".into()
    } else {
        rules.join(", ")
    }
}

fn tonic_code_not_found() -> tonic::Code {
    tonic::Code::NotFound
}

async fn list_runs(endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    use sen_node::backup::{RUN_PREFIX, RunRecord, SYSTEM_DB};
    let client = crate::client(endpoints, timeout)?;
    let mut runs: Vec<RunRecord> = Vec::new();
    let mut start_after: Option<Vec<u8>> = None;
    loop {
        let page = client
            .scan_page(sen_proto::v1::ScanRequest {
                db: SYSTEM_DB.into(),
                prefix: RUN_PREFIX.as_bytes().to_vec(),
                start_after: start_after.clone().unwrap_or_default(),
                limit: 500,
                consistency: sen_client::Consistency::Linearizable as i32,
                ..Default::default()
            })
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) if e.code() == Some(tonic::Code::NotFound) => break,
            Err(e) => return Err(e.into()),
        };
        for kv in &page.kvs {
            if let Ok(r) = serde_json::from_slice::<RunRecord>(&kv.value) {
                runs.push(r);
            }
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => start_after = Some(last.key.clone()),
            _ => break,
        }
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                when(r.slot_start_ms),
                r.state.clone(),
                r.attempt.to_string(),
                r.node.to_string(),
                if r.snapshot_id.len() >= 8 {
                    r.snapshot_id[..8].to_owned()
                } else {
                    "-".into()
                },
                mb(r.bytes_total),
                mb(r.bytes_new),
                r.chunks_new.to_string(),
                format!("{:.1}", r.ended_ms.saturating_sub(r.started_ms) as f64 / 1000.0),
                if r.error.is_empty() {
                    r.prune.clone()
                } else {
                    r.error.clone()
                },
            ]
        })
        .collect();
    emit(output, json!({"runs": runs}), || {
        if rows.is_empty() {
            "no scheduled runs recorded".into()
        } else {
            table(
                &[
                    "SLOT",
                    "STATE",
                    "TRY",
                    "NODE",
                    "SNAPSHOT",
                    "TOTAL",
                    "NEW",
                    "CHUNKS NEW",
                    "SECONDS",
                    "NOTE",
                ],
                &rows,
            )
        }
    });
    Ok(())
}

fn show_text(e: &SnapshotEntry) -> String {
    let s = &e.snapshot;
    let mut t = format!(
        "snapshot {}\ntime        {}\ncluster     {}\nraft index  {} (term {}), read on node {} ({})\ndigest      {}\ntags        {}\ntotal       {} ({} blobs, {} content chunks)\nnew         {} ({} blobs, {} content chunks) in {:.1} s\n",
        hex_id(&e.id),
        when(s.time_ms),
        s.cluster_id,
        s.raft_index,
        s.raft_term,
        s.source_node,
        s.hostname,
        s.state_digest,
        if s.tags.is_empty() {
            "-".into()
        } else {
            s.tags.join(",")
        },
        mb(s.stats.bytes_total),
        s.stats.blobs_total,
        s.stats.content_chunks,
        mb(s.stats.bytes_new),
        s.stats.blobs_new,
        s.stats.content_chunks_new,
        s.stats.duration_ms as f64 / 1000.0
    );
    t.push_str("\nsites:\n");
    for x in &s.sites {
        t.push_str(&format!("  {:<24} {:>8} files  {}\n", x.name, x.files, mb(x.bytes)));
    }
    t.push_str("databases:\n");
    for x in &s.databases {
        t.push_str(&format!("  {:<24} {:>8} keys   {}\n", x.name, x.keys, mb(x.bytes)));
    }
    t
}

/// Pick the node that takes the backup.
async fn pick_node(client: &sen_client::Client, node: Option<u64>) -> Result<String, Failure> {
    let status = client.status().await?;
    let members = &status.members;
    if let Some(id) = node {
        return members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.addr.clone())
            .ok_or_else(|| Failure::from(format!("node {id} is not a member of the cluster")));
    }
    let follower = members
        .iter()
        .filter(|m| m.role == "follower" && m.reachable)
        .min_by_key(|m| m.replication_lag);
    match follower.or_else(|| members.iter().find(|m| m.id == status.leader_id)) {
        Some(m) => Ok(m.addr.clone()),
        None => Err("no reachable member to take the backup".into()),
    }
}

/// (kind, container, name, change) for every differing file and key.
type Change = (&'static str, String, String, &'static str);

fn diff(r: &Repo, index: &Index, a: &Snapshot, b: &Snapshot) -> Result<Vec<Change>, Failure> {
    let mut out = Vec::new();
    for (table, kind) in [("files", "site"), ("kv", "db")] {
        let ta = a.tables.iter().find(|t| t.name == table);
        let tb = b.tables.iter().find(|t| t.name == table);
        if let (Some(x), Some(y)) = (ta, tb)
            && x.chunks == y.chunks
        {
            continue;
        }
        let mut ia = read::table(r, index, a, table).map_err(fail)?.peekable();
        let mut ib = read::table(r, index, b, table).map_err(fail)?.peekable();
        loop {
            let ka = match ia.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => {
                    return Err(fail(
                        ia.next()
                            .and_then(|r| r.err())
                            .unwrap_or(RepoError::Corrupt("?".into())),
                    ));
                }
                None => None,
            };
            let kb = match ib.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => {
                    return Err(fail(
                        ib.next()
                            .and_then(|r| r.err())
                            .unwrap_or(RepoError::Corrupt("?".into())),
                    ));
                }
                None => None,
            };
            let (key, change) = match (ka, kb) {
                (None, None) => break,
                (Some(x), None) => {
                    ia.next();
                    (x, "removed")
                }
                (None, Some(y)) => {
                    ib.next();
                    (y, "added")
                }
                (Some(x), Some(y)) if x < y => {
                    ia.next();
                    (x, "removed")
                }
                (Some(x), Some(y)) if x > y => {
                    ib.next();
                    (y, "added")
                }
                (Some(x), Some(_)) => {
                    let va = ia.next().and_then(|r| r.ok()).map(|(_, v)| v);
                    let vb = ib.next().and_then(|r| r.ok()).map(|(_, v)| v);
                    if same_value(table, va.as_deref(), vb.as_deref()) {
                        continue;
                    }
                    (x, "changed")
                }
            };
            let (container, name) = read::split_key(&key)
                .map(|(c, n)| (c.to_owned(), String::from_utf8_lossy(n).into_owned()))
                .unwrap_or_default();
            out.push((kind, container, name, change));
        }
    }
    Ok(out)
}

/// Equal for a diff: files by content (each deployment rewrites every
/// file record with its own id), keys by their whole record.
fn same_value(table: &str, a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    if table == "files"
        && let (Some(a), Some(b)) = (a, b)
    {
        let dec = |v: &[u8]| sen_core_decode_file(v).map(|f| (f.size, f.blake3));
        if let (Some(x), Some(y)) = (dec(a), dec(b)) {
            return x == y;
        }
    }
    a == b
}

fn sen_core_decode_file(v: &[u8]) -> Option<sen_raft::apply::FileRecord> {
    sen_core::codec::decode_v1("file record", v).ok()
}

/// A progress bar on a terminal (text output only).
fn bar(output: Output, total: u64) -> indicatif::ProgressBar {
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

pub fn run_restore(cmd: RestoreCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let rt = runtime()?;
    let started = Instant::now();
    match cmd {
        RestoreCmd::Site {
            repo,
            site,
            path,
            snapshot,
            into_cluster: true,
            dry_run,
            ..
        } => {
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let files = read::site_files(&r, &index, &e.snapshot, &site, &path).map_err(fail)?;
            let client = crate::client(endpoints, timeout)?;
            site_into_cluster(&rt, &r, &index, &client, &e, &site, &path, files, dry_run, output)
        }
        RestoreCmd::Db {
            repo,
            db,
            prefix,
            snapshot,
            into_cluster: true,
            dry_run,
            ..
        } => {
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let client = crate::client(endpoints, timeout)?;
            db_into_cluster(&rt, &r, &index, &client, &e, &db, &prefix, dry_run, output)
        }
        RestoreCmd::Site {
            repo,
            site,
            path,
            snapshot,
            to,
            ..
        } => {
            let to = to.ok_or_else(|| Failure::from("give --to DIR or --into-cluster"))?;
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let files = read::site_files(&r, &index, &e.snapshot, &site, &path).map_err(fail)?;
            if files.is_empty() {
                return Err(format!("snapshot {} has nothing at {site}/{path}", e.short_id()).into());
            }
            let total: u64 = files.iter().map(|f| f.record.size).sum();
            let pb = bar(output, total);
            let stats = read::restore_files(&r, &index, &files, &to, &|n| pb.inc(n)).map_err(fail)?;
            pb.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            emit(
                output,
                json!({"snapshot_id": hex_id(&e.id), "site": site, "path": path, "to": to, "files": stats.files, "bytes": stats.bytes, "duration_ms": (secs * 1000.0) as u64}),
                || {
                    format!(
                        "restored {} file(s), {} of site {site} from snapshot {} into {} in {secs:.1} s ({:.1} MB/s)",
                        stats.files,
                        mb(stats.bytes),
                        e.short_id(),
                        to.display(),
                        stats.bytes as f64 / 1e6 / secs.max(1e-3)
                    )
                },
            );
            Ok(())
        }
        RestoreCmd::Db {
            repo,
            db,
            prefix,
            snapshot,
            to,
            ..
        } => {
            let to = to.ok_or_else(|| Failure::from("give --to FILE or --into-cluster"))?;
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let stdout = to.as_os_str() == "-";
            let tmp = to.with_extension("sen-restore-tmp");
            let mut w: Box<dyn Write> = if stdout {
                Box::new(std::io::BufWriter::new(std::io::stdout()))
            } else {
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?,
                ))
            };
            let n = read::db_records(&r, &index, &e.snapshot, &db, prefix.as_bytes(), &mut |k, rec| {
                let line = serde_json::to_string(&read::DbRecord::new(&db, k, &rec))
                    .map_err(|e| RepoError::Usage(e.to_string()))?;
                writeln!(w, "{line}").map_err(|e| RepoError::Usage(format!("write {}: {e}", to.display())))
            })
            .map_err(fail)?;
            w.flush().map_err(|e| format!("write {}: {e}", to.display()))?;
            drop(w);
            if !stdout {
                std::fs::rename(&tmp, &to).map_err(|e| format!("rename into {}: {e}", to.display()))?;
                emit(
                    output,
                    json!({"snapshot_id": hex_id(&e.id), "db": db, "prefix": prefix, "to": to, "records": n}),
                    || {
                        format!(
                            "restored {n} record(s) of database {db} from snapshot {} into {}",
                            e.short_id(),
                            to.display()
                        )
                    },
                );
            }
            Ok(())
        }
        RestoreCmd::Cluster {
            repo,
            snapshot,
            data_dir,
            id,
            listen,
            advertise,
        } => {
            let (r, e, index) = open_snapshot(&rt, &repo, &snapshot)?;
            let addr = advertise.unwrap_or_else(|| listen.clone());
            let pb = bar(output, e.snapshot.stats.bytes_total);
            let result = restore_cluster(&r, &index, &e.snapshot, &data_dir, id, &addr, &pb);
            pb.finish_and_clear();
            let (cluster_id, digest, bytes) = match result {
                Ok(x) => x,
                Err(f) => {
                    // Leave nothing half-built behind that could be started.
                    let _ = std::fs::remove_dir_all(&data_dir);
                    return Err(f);
                }
            };
            let secs = started.elapsed().as_secs_f64();
            emit(
                output,
                json!({
                    "snapshot_id": hex_id(&e.id),
                    "cluster_id": cluster_id,
                    "raft_index": e.snapshot.raft_index,
                    "state_digest": digest,
                    "data_dir": data_dir,
                    "node_id": id,
                    "bytes": bytes,
                    "duration_ms": (secs * 1000.0) as u64,
                }),
                || {
                    format!(
                        "restored snapshot {} (cluster {}, raft index {}) into {} in {secs:.1} s ({:.1} MB/s); state digest verified\nstart it with: sen server --id {id} --data-dir {} --listen {listen}{}\nthen add nodes with `sen cluster add-node`",
                        e.short_id(),
                        cluster_id,
                        e.snapshot.raft_index,
                        data_dir.display(),
                        bytes as f64 / 1e6 / secs.max(1e-3),
                        data_dir.display(),
                        if addr != listen {
                            format!(" --advertise {addr}")
                        } else {
                            String::new()
                        }
                    )
                },
            );
            Ok(())
        }
    }
}

/// Put a site's files (under `path`) back as they were in the snapshot,
/// as one deployment on top of the current tree.
#[allow(clippy::too_many_arguments)]
fn site_into_cluster(
    rt: &tokio::runtime::Runtime,
    r: &Repo,
    index: &Index,
    client: &sen_client::Client,
    e: &SnapshotEntry,
    site: &str,
    path: &str,
    files: Vec<read::SnapFile>,
    dry_run: bool,
    output: Output,
) -> Result<(), Failure> {
    use std::collections::{BTreeMap, HashSet};
    let (current, base) = rt.block_on(client.current_entries(site))?;
    let mut now: BTreeMap<String, sen_content::FileEntry> = current.into_iter().map(|f| (f.path.clone(), f)).collect();
    let mut changes: Vec<(&'static str, String)> = Vec::new();
    let wanted: BTreeMap<String, sen_content::FileEntry> = files
        .into_iter()
        .map(|f| {
            (
                f.path.clone(),
                sen_content::FileEntry {
                    path: f.path,
                    size: f.record.size,
                    blake3: f.record.blake3,
                    mtime_ms: f.record.mtime_ms,
                    chunks: f.record.chunks,
                },
            )
        })
        .collect();
    // Under the selection: what the snapshot had, nothing else.
    let selected: Vec<String> = now.keys().filter(|p| read::path_selected(p, path)).cloned().collect();
    for p in selected {
        if !wanted.contains_key(&p) {
            now.remove(&p);
            changes.push(("remove", p));
        }
    }
    for (p, f) in &wanted {
        match now.get(p) {
            Some(cur) if cur.blake3 == f.blake3 => {}
            Some(_) => changes.push(("replace", p.clone())),
            None => changes.push(("add", p.clone())),
        }
        now.insert(p.clone(), f.clone());
    }
    let report = |deployment: Option<u64>| {
        emit(
            output,
            json!({"snapshot_id": hex_id(&e.id), "site": site, "path": path, "dry_run": dry_run, "deployment": deployment,
                   "changes": changes.iter().map(|(k, p)| json!({"change": k, "path": p})).collect::<Vec<_>>()}),
            || {
                let mut t = String::new();
                for (k, p) in &changes {
                    t.push_str(&format!("{k:<8} {p}\n"));
                }
                t.push_str(&match deployment {
                    _ if changes.is_empty() => format!(
                        "site {site} already matches snapshot {} under {path:?}: nothing to do",
                        e.short_id()
                    ),
                    None => format!(
                        "dry run: {} change(s) to site {site} from snapshot {}",
                        changes.len(),
                        e.short_id()
                    ),
                    Some(d) => format!(
                        "restored {} change(s) to site {site} from snapshot {} as deployment {d}",
                        changes.len(),
                        e.short_id()
                    ),
                });
                t
            },
        )
    };
    if dry_run || changes.is_empty() {
        report(None);
        return Ok(());
    }
    // Upload the chunks the cluster lacks, from the repository (verified).
    let needed: Vec<sen_content::ChunkId> = {
        let mut seen = HashSet::new();
        wanted
            .values()
            .flat_map(|f| f.chunks.iter().map(|c| c.id))
            .filter(|id| seen.insert(*id))
            .collect()
    };
    let mut missing: Vec<[u8; 32]> = Vec::new();
    for part in needed.chunks(4096) {
        let m = rt.block_on(client.missing_chunks(part))?;
        missing.extend(part.iter().filter(|id| m.contains(id)).map(|id| id.0));
    }
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    for blob in r.fetch_blobs(index, missing) {
        let blob = blob.map_err(fail)?;
        let chunk = cluster_chunk(blob)?;
        batch_bytes += chunk.data.len();
        batch.push(sen_client::content::wire_chunk(chunk));
        if batch.len() >= 256 || batch_bytes >= 16 << 20 {
            rt.block_on(client.put_chunks(std::mem::take(&mut batch)))?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        rt.block_on(client.put_chunks(batch))?;
    }
    let message = format!("restore {path:?} from snapshot {}", e.short_id());
    let d = rt.block_on(client.deploy_entries(site, now.into_values().collect(), base, "sen restore", &message))?;
    report(Some(d));
    Ok(())
}

/// Reset a database's keys under `prefix` to what the snapshot had.
#[allow(clippy::too_many_arguments)]
fn db_into_cluster(
    rt: &tokio::runtime::Runtime,
    r: &Repo,
    index: &Index,
    client: &sen_client::Client,
    e: &SnapshotEntry,
    db: &str,
    prefix: &str,
    dry_run: bool,
    output: Output,
) -> Result<(), Failure> {
    use std::collections::BTreeMap;
    let mut wanted: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    read::db_records(r, index, &e.snapshot, db, prefix.as_bytes(), &mut |k, rec| {
        wanted.insert(k.to_vec(), rec.value);
        Ok(())
    })
    .map_err(fail)?;
    // The live keys under the prefix.
    let mut live: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut start_after = Vec::new();
    loop {
        let page = rt.block_on(client.scan_page(sen_proto::v1::ScanRequest {
            db: db.into(),
            prefix: prefix.as_bytes().to_vec(),
            start_after: start_after.clone(),
            limit: 1000,
            consistency: sen_client::Consistency::Linearizable as i32,
            ..Default::default()
        }));
        let page = match page {
            Ok(p) => p,
            Err(e) if e.code() == Some(tonic::Code::NotFound) => break,
            Err(e) => return Err(e.into()),
        };
        for kv in &page.kvs {
            live.insert(kv.key.clone(), kv.value.clone());
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => start_after = last.key.clone(),
            _ => break,
        }
    }
    let mut changes: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for k in live.keys() {
        if !wanted.contains_key(k) {
            changes.push(("delete", k.clone()));
        }
    }
    for (k, v) in &wanted {
        match live.get(k) {
            Some(cur) if cur == v => {}
            Some(_) => changes.push(("reset", k.clone())),
            None => changes.push(("add", k.clone())),
        }
    }
    if !dry_run {
        for (kind, k) in &changes {
            match *kind {
                "delete" => {
                    rt.block_on(client.delete(db, k))?;
                }
                _ => {
                    rt.block_on(client.put(db, k, &wanted[k]))?;
                }
            }
        }
    }
    emit(
        output,
        json!({"snapshot_id": hex_id(&e.id), "db": db, "prefix": prefix, "dry_run": dry_run,
               "changes": changes.iter().map(|(c, k)| json!({"change": c, "key": crate::output::json_bytes(k)})).collect::<Vec<_>>()}),
        || {
            let mut t = String::new();
            for (c, k) in &changes {
                t.push_str(&format!("{c:<7} {}\n", crate::output::show(k)));
            }
            t.push_str(&if dry_run {
                format!(
                    "dry run: {} change(s) to database {db} from snapshot {}",
                    changes.len(),
                    e.short_id()
                )
            } else {
                format!(
                    "applied {} change(s) to database {db} from snapshot {}",
                    changes.len(),
                    e.short_id()
                )
            });
            t
        },
    );
    Ok(())
}

pub fn run_drill(cmd: DrillCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let DrillCmd::Restore {
        repo,
        snapshot,
        fresh,
        scratch,
        keep,
    } = cmd;
    let rt = runtime()?;
    let mut fresh_id = None;
    if fresh {
        let password = repo.password()?;
        let url = repo.url()?.to_owned();
        let r = rt.block_on(async {
            let client = crate::client(endpoints, timeout)?;
            let addr = pick_node(&client, None).await?;
            let req = sen_proto::v1::CreateBackupRequest {
                repo: url,
                password: password.unwrap_or_default(),
                tags: vec!["drill".into()],
            };
            Ok::<_, Failure>(
                client
                    .create_backup(&addr, req, timeout.max(Duration::from_secs(3600)))
                    .await?,
            )
        })?;
        fresh_id = Some(r.snapshot_id);
    }
    let (r, e, index) = open_snapshot(&rt, &repo, fresh_id.as_deref().unwrap_or(&snapshot))?;
    let base = scratch.unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("sen-drill-{}-{}", e.short_id(), std::process::id()));
    let started = Instant::now();
    let pb = bar(output, e.snapshot.stats.bytes_total);
    let result = restore_cluster(&r, &index, &e.snapshot, &dir, 1, "127.0.0.1:7101", &pb);
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let (restored_digest, bytes, error) = match result {
        Ok((_, d, b)) => (d, b, None),
        Err(f) => (String::new(), 0, Some(f.message)),
    };
    if !keep || error.is_some() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The live cluster: a node at exactly the snapshot's index gives a
    // direct comparison; otherwise the digest the live node computed at
    // that index while taking the backup is the reference.
    let live: Vec<(u64, u64, String)> = rt.block_on(async {
        let mut out = Vec::new();
        for ep in endpoints {
            let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{ep}")) else {
                continue;
            };
            let ch = ch
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30));
            let Ok(ch) = ch.connect().await else { continue };
            if let Ok(d) = sen_proto::v1::admin_client::AdminClient::new(ch)
                .digest(sen_proto::v1::DigestRequest {})
                .await
            {
                let d = d.into_inner();
                out.push((d.node_id, d.applied_index, d.digest));
            }
        }
        out
    });
    let same_index: Vec<&(u64, u64, String)> = live.iter().filter(|(_, i, _)| *i == e.snapshot.raft_index).collect();
    let equal = error.is_none() && restored_digest == e.snapshot.state_digest;
    let live_equal = same_index.iter().all(|(_, _, d)| *d == restored_digest);
    let passed = equal && live_equal;
    emit(
        output,
        json!({
            "snapshot_id": hex_id(&e.id),
            "raft_index": e.snapshot.raft_index,
            "snapshot_time": when(e.snapshot.time_ms),
            "expected_digest": e.snapshot.state_digest,
            "restored_digest": restored_digest,
            "equal": equal,
            "live_nodes_at_same_index": same_index.iter().map(|(n, _, d)| json!({"node": n, "digest": d, "equal": *d == restored_digest})).collect::<Vec<_>>(),
            "live_nodes": live.iter().map(|(n, i, _)| json!({"node": n, "applied_index": i})).collect::<Vec<_>>(),
            "bytes": bytes,
            "duration_ms": (secs * 1000.0) as u64,
            "mb_per_s": bytes as f64 / 1e6 / secs.max(1e-3),
            "scratch": if keep && error.is_none() { Some(dir.clone()) } else { None },
            "error": error,
            "passed": passed,
        }),
        || {
            let mut t = format!(
                "restore drill of snapshot {} (raft index {}, taken {})\n",
                e.short_id(),
                e.snapshot.raft_index,
                when(e.snapshot.time_ms)
            );
            match &error {
                Some(m) => t.push_str(&format!("FAILED: {m}\n")),
                None => t.push_str(&format!(
                    "restored {:.1} MB in {secs:.1} s ({:.1} MB/s) into a scratch data directory\nstate digest {} {} the live cluster's at index {}\n",
                    bytes as f64 / 1e6,
                    bytes as f64 / 1e6 / secs.max(1e-3),
                    &restored_digest[..16.min(restored_digest.len())],
                    if equal { "equals" } else { "DIFFERS FROM" },
                    e.snapshot.raft_index
                )),
            }
            for (n, _, d) in &same_index {
                t.push_str(&format!(
                    "live node {n} is at the same index: digest {}\n",
                    if *d == restored_digest { "equal" } else { "DIFFERENT" }
                ));
            }
            t.push_str(if passed { "PASSED" } else { "FAILED" });
            t
        },
    );
    if passed {
        Ok(())
    } else {
        Err(Failure {
            code: 3,
            message: "the restore drill failed: see the report above".into(),
        })
    }
}

/// A verified blob in the cluster's stored form: its own zstd frame when
/// the repository kept it, else compressed again (zstd 3, as a push does).
fn cluster_chunk(blob: sen_backup::repo::FetchedBlob) -> Result<sen_content::StoredChunk, Failure> {
    use sen_backup::format::BlobEncoding;
    let len = blob.plain.len() as u32;
    Ok(match (blob.encoding, blob.stored) {
        (BlobEncoding::Zstd, Some(z)) => sen_content::StoredChunk {
            id: sen_content::ChunkId(blob.id),
            encoding: sen_content::chunk::Encoding::Zstd,
            len,
            data: z,
        },
        (BlobEncoding::Raw, _) => sen_content::StoredChunk {
            id: sen_content::ChunkId(blob.id),
            encoding: sen_content::chunk::Encoding::Raw,
            len,
            data: blob.plain,
        },
        _ => sen_content::StoredChunk::encode(&blob.plain, 3).map_err(|e| e.to_string())?,
    })
}

fn restore_cluster(
    r: &Repo,
    index: &Index,
    snap: &Snapshot,
    dir: &std::path::Path,
    id: u64,
    addr: &str,
    pb: &indicatif::ProgressBar,
) -> Result<(String, String, u64), Failure> {
    let mut b = sen_store::backup::DataDirBuilder::create(dir, id)?;
    let mut bytes = 0u64;
    for t in &snap.tables {
        let mut chunk_ids = Vec::new();
        for rec in read::TableReader::new(r, index, t) {
            let (k, v) = rec.map_err(fail)?;
            bytes += (k.len() + v.len()) as u64;
            pb.inc((k.len() + v.len()) as u64);
            if t.name == sen_backup::backup::CHUNK_META_TABLE {
                let cid: [u8; 32] = k
                    .as_slice()
                    .try_into()
                    .map_err(|_| fail(RepoError::Corrupt("chunk_meta key of the wrong length".into())))?;
                chunk_ids.push(cid);
            }
            b.put(&t.name, &k, &v)?;
        }
        for blob in r.fetch_blobs(index, chunk_ids) {
            let blob = blob.map_err(fail)?;
            bytes += blob.plain.len() as u64;
            pb.inc(blob.plain.len() as u64);
            let chunk = cluster_chunk(blob)?;
            b.put_chunk(&chunk)?;
        }
    }
    let (cluster_id, digest) = b.finish(snap.raft_term, snap.raft_index, addr)?;
    if digest != snap.state_digest {
        return Err(Failure {
            code: 3,
            message: format!(
                "the restored state's digest {digest} differs from the snapshot's {}: the repository or this build is inconsistent; nothing was kept",
                snap.state_digest
            ),
        });
    }
    Ok((cluster_id.to_string(), digest, bytes))
}
