//! `sen backup …`: repositories, snapshots, verification, retention and
//! the schedule (docs/backup.md).
//!
//! `backup create` asks a node to back up its own replica (a follower by
//! default, so the leader keeps its resources for writes). Every other
//! command reads or writes the repository from this process: listing,
//! checking and pruning need no running cluster. Restores are in
//! `restore_cmd`, the restore drill in `drill_cmd`.

use std::time::Duration;

use clap::Subcommand;
use sen_backup::format::hex_id;
use sen_backup::prune::KeepPolicy;
use sen_backup::read::{self, SnapshotEntry};
use sen_backup::{InitOptions, Repo, check, prune, restore};
use sen_raft::schema::system::{RunRecord, Schedule, SystemRecord};
use serde_json::json;

use crate::output::{emit, table};
use crate::repo_args::{KeepArgs, RepoArgs, fail, mb, open, ops_fail, record_verification, runtime, store, when};
use crate::{Failure, Output};

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Create a repository (encrypted when a password file is given).
    Init {
        #[command(flatten)]
        repo: RepoArgs,
        /// zstd level for blobs the cluster has not compressed already.
        #[arg(long, default_value_t = 3)]
        zstd_level: i32,
        /// Make a repository without encryption (anyone who can read its
        /// storage can read the backups). Without it, --password-file is
        /// required.
        #[arg(long)]
        no_encryption: bool,
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
        /// Do not record the result in the cluster (by default it is kept
        /// for the monthly report when the cluster can be reached).
        #[arg(long)]
        no_record: bool,
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

/// The first line of every listing: where the repository is and whether
/// it is encrypted.
fn repo_line(r: &Repo) -> String {
    if r.keys.is_encrypted() {
        format!("repository {} (encrypted)", r.describe())
    } else {
        format!(
            "repository {} (NOT ENCRYPTED: anyone who can read its storage can read these backups)",
            r.describe()
        )
    }
}

pub fn run_backup(cmd: BackupCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let rt = runtime()?;
    match cmd {
        BackupCmd::Init {
            repo,
            zstd_level,
            no_encryption,
        } => {
            let password = repo.password()?;
            match (&password, no_encryption) {
                (None, false) => {
                    return Err(Failure::from(
                        "give --password-file FILE (or SEN_REPO_PASSWORD_FILE) to encrypt the repository, \
                         or --no-encryption to make one that anyone with access to its storage can read",
                    ));
                }
                (Some(_), true) => {
                    return Err(Failure::from(
                        "--no-encryption and --password-file contradict each other: give one of them",
                    ));
                }
                _ => {}
            }
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
                let r = sen_ops::backup::create(&client, node, repo.url()?, password, tags, budget)
                    .await
                    .map_err(ops_fail)?;
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
                json!({"repo": r.describe(), "encrypted": r.keys.is_encrypted(), "snapshots": snaps.iter().map(snapshot_json).collect::<Vec<_>>()}),
                || {
                    if rows.is_empty() {
                        format!(
                            "{}\nno snapshots yet (take one with `sen backup create`)",
                            repo_line(&r)
                        )
                    } else {
                        repo_line(&r)
                            + "\n"
                            + &table(
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
            let mut j = snapshot_json(&e);
            j["encrypted"] = json!(r.keys.is_encrypted());
            emit(output, j.clone(), || format!("{}\n{}", repo_line(&r), show_text(&e)));
            Ok(())
        }
        BackupCmd::Diff { repo, id1, id2 } => {
            let r = open(&rt, &repo)?;
            let snaps = read::list_snapshots(&r).map_err(fail)?;
            let a = read::resolve(&snaps, &id1).map_err(fail)?;
            let b = read::resolve(&snaps, &id2).map_err(fail)?;
            let index = r.load_index().map_err(fail)?;
            let changes = restore::diff(&r, &index, &a.snapshot, &b.snapshot).map_err(fail)?;
            emit(
                output,
                json!({"from": hex_id(&a.id), "to": hex_id(&b.id), "changes": changes.iter().map(|c| json!({"kind": c.kind, "what": c.container, "name": c.name, "change": c.change})).collect::<Vec<_>>()}),
                || {
                    if changes.is_empty() {
                        return "no differences in sites or databases".into();
                    }
                    let rows: Vec<Vec<String>> = changes
                        .iter()
                        .map(|c| {
                            vec![
                                format!("{:?}", c.change).to_lowercase(),
                                format!("{} {}", c.kind, c.container),
                                c.name.clone(),
                            ]
                        })
                        .collect();
                    table(&["CHANGE", "IN", "PATH / KEY"], &rows)
                },
            );
            Ok(())
        }
        BackupCmd::Check {
            repo,
            read_data,
            no_record,
        } => {
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
            let started = std::time::Instant::now();
            let report = check::check(&r, percent).map_err(fail)?;
            let mut j = serde_json::to_value(&report).unwrap_or_default();
            j["encrypted"] = json!(r.keys.is_encrypted());
            if !no_record {
                let v = sen_ops::verification::of_check(&r, &report, percent, started.elapsed());
                record_verification(&rt, endpoints, timeout, &v, &mut j);
            }
            emit(output, j, || {
                let mut t = format!(
                    "{}\n{} snapshots, {} index objects, {} packs ({} unindexed), {} blobs; data read: {} packs, {}",
                    repo_line(&r),
                    report.snapshots,
                    report.index_files,
                    report.packs,
                    report.unindexed_packs,
                    report.blobs,
                    report.packs_read,
                    mb(report.bytes_read)
                );
                if report.archive_segments > 0 {
                    t.push_str(&format!(
                        "\narchive: {} segments, indexes {}..={}",
                        report.archive_segments, report.archive_first, report.archive_last
                    ));
                }
                for n in &report.archive_notes {
                    t.push_str(&format!("\nnote: {n}"));
                }
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
                    "{}kept {} snapshot(s), forgot {}: {}\nmarked {} unused pack(s) ({}); deleted {} pack(s) marked earlier ({}); {} put back; {} partly used\ndeleted {} archive segment(s) ({}) no kept snapshot needs",
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
                    report.packs_partly_used,
                    report.segments_deleted,
                    mb(report.segment_bytes_deleted)
                )
            });
            Ok(())
        }
    }
}

async fn schedule(cmd: ScheduleCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
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
                version: Schedule::VERSION,
                repo,
                every_ms: every.as_millis() as u64,
                password_file,
                keep: keep.policy(),
                prune_grace_ms: grace.as_millis() as u64,
                tags,
            };
            let value = String::from_utf8_lossy(&s.to_json()?).into_owned();
            let revision = client.set_backup_schedule(value).await?;
            emit(output, json!({"schedule": s, "revision": revision}), || {
                format!(
                    "backup every {} to {} (first run at the next slot boundary; see `sen backup list --runs`)",
                    humantime::format_duration(every),
                    s.repo
                )
            });
            Ok(())
        }
        ScheduleCmd::Show => {
            let Some(json) = client.get_backup_schedule().await? else {
                emit(output, json!({"schedule": null}), || {
                    "no backup schedule (set one with `sen backup schedule set`)".into()
                });
                return Ok(());
            };
            let s = Schedule::from_json(json.as_bytes())?;
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
            client.clear_backup_schedule().await?;
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

async fn list_runs(endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let client = crate::client(endpoints, timeout)?;
    let mut runs: Vec<RunRecord> = client
        .list_backup_runs()
        .await?
        .iter()
        .filter_map(|j| RunRecord::from_json(j.as_bytes()).ok())
        .collect();
    runs.sort_by_key(|r| r.slot);
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
                if r.repo_bytes > 0 { mb(r.repo_bytes) } else { "-".into() },
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
                    "REPOSITORY",
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
