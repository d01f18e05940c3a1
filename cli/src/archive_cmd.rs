//! `sen archive`: the continuous archive of the replicated log
//! (docs/backup.md, "Continuous archive and point-in-time restore").

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use sen_raft::schema::system::SystemRecord;
use sen_raft::schema::system::archive::{ArchiveConfig, ArchiveProgress};
use serde_json::{Value, json};

use crate::output::emit;
use crate::repo_args::{RepoArgs, fail, open, runtime, when};
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum ArchiveCmd {
    /// Ship every committed log entry to a repository from now on (the
    /// leader ships; a follower takes over after a failover). Once the
    /// first segment is stored, a backup is taken (a point-in-time restore
    /// replays the archive after a snapshot the archive covers).
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
        /// Do not take the first backup (take one yourself once
        /// `sen archive status` shows `shipping`).
        #[arg(long)]
        no_backup: bool,
    },
    /// Stop shipping (what was archived stays in the repository).
    Disable,
    /// Where the archive goes, how far it got and how far behind it is.
    Status,
    /// What happened in a time range, read from the archive: writes,
    /// deletes, transactions, deploys, sites created and deleted, and who
    /// made the changes (the audit records archived with them) — to find
    /// the moment to restore to.
    Log {
        #[command(flatten)]
        repo: RepoArgs,
        /// From this time (`2026-12-03T14:00:00+07:00`).
        #[arg(long)]
        since: String,
        /// Up to this time (default: the end of the archive).
        #[arg(long)]
        until: Option<String>,
        /// Only this database.
        #[arg(long, conflicts_with = "site")]
        db: Option<String>,
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// Stop after this many events.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// One thing that happened, as `archive log` shows it.
#[derive(Debug, serde::Serialize)]
struct Event {
    at_ms: u64,
    index: u64,
    /// `put`, `delete`, `txn`, `deploy`, `create-site`, `delete-site`,
    /// `membership`, `audit`.
    kind: &'static str,
    /// `db:NAME` or `site:NAME` (or the audited resource).
    target: String,
    detail: String,
}

/// The events of one archived entry that pass the filters.
fn events(e: &sen_backup::archive::ArchivedEntry, db: Option<&str>, site: Option<&str>) -> Result<Vec<Event>, String> {
    use openraft::EntryPayload;
    use sen_raft::Op;
    let entry = sen_store::decode_entry(&e.entry).map_err(|err| format!("archived entry {}: {err}", e.index))?;
    let ev = |kind, target: String, detail: String| Event {
        at_ms: e.at_ms,
        index: e.index,
        kind,
        target,
        detail,
    };
    let want_db = |d: &str| site.is_none() && db.is_none_or(|w| w == d);
    let want_site = |s: &str| db.is_none() && site.is_none_or(|w| w == s);
    let mut out = Vec::new();
    match &entry.payload {
        EntryPayload::Normal(req) => match &req.op {
            Op::Put { db: d, key, value } if d == sen_raft::schema::system::SYSTEM_DB => {
                // Who changed what: the audit records archived with the changes.
                if key.starts_with(sen_raft::schema::system::AUDIT_PREFIX.as_bytes())
                    && let Ok(a) = sen_raft::schema::system::AuditRecord::from_json(value)
                    && a.method != "GET"
                    && (db.is_none() && site.is_none()
                        || db.is_some_and(|w| a.resource == format!("db:{w}"))
                        || site.is_some_and(|w| a.resource == format!("site:{w}")))
                {
                    out.push(ev(
                        "audit",
                        a.resource.clone(),
                        format!("{} {} {} {}", a.who, a.method, a.result, a.message)
                            .trim_end()
                            .to_owned(),
                    ));
                }
            }
            Op::Put { db: d, key, value } if want_db(d) => {
                out.push(ev(
                    "put",
                    format!("db:{d}"),
                    format!("{} ({} bytes)", show(key), value.len()),
                ));
            }
            Op::Delete { db: d, key } if want_db(d) => out.push(ev("delete", format!("db:{d}"), show(key))),
            Op::Txn(t) if want_db(&t.db) && t.db != sen_raft::schema::system::SYSTEM_DB => out.push(ev(
                "txn",
                format!("db:{}", t.db),
                format!(
                    "{} comparisons, {} writes on success, {} on failure",
                    t.compares.len(),
                    t.success.len(),
                    t.failure.len()
                ),
            )),
            Op::CreateSite { site: s } if want_site(s) => {
                out.push(ev("create-site", format!("site:{s}"), String::new()))
            }
            Op::DeleteSite { site: s } if want_site(s) => {
                out.push(ev("delete-site", format!("site:{s}"), String::new()))
            }
            Op::Deploy(d) if want_site(&d.site) => out.push(ev(
                "deploy",
                format!("site:{}", d.site),
                format!("by {}: {}", d.author, d.message)
                    .trim_end_matches([':', ' '])
                    .to_owned(),
            )),
            _ => {}
        },
        EntryPayload::Membership(m) if db.is_none() && site.is_none() => out.push(ev(
            "membership",
            "cluster".into(),
            format!("voters {:?}", m.voter_ids().collect::<Vec<_>>()),
        )),
        _ => {}
    }
    Ok(out)
}

fn show(b: &[u8]) -> String {
    crate::output::show(b)
}

/// `sen archive log`.
fn log(
    repo: &RepoArgs,
    since: &str,
    until: Option<&str>,
    db: Option<&str>,
    site: Option<&str>,
    limit: usize,
    output: Output,
) -> Result<(), Failure> {
    use sen_backup::archive::{list_segments, read_segment};
    let since = crate::restore_cmd::parse_time(since)?;
    let until = until
        .map(crate::restore_cmd::parse_time)
        .transpose()?
        .unwrap_or(u64::MAX);
    let rt = runtime()?;
    let r = open(&rt, repo)?;
    let listed = list_segments(&r).map_err(fail)?;
    // Commit times grow with the index: find the last segment that starts
    // before `since` by bisection, and read forward from it.
    let (mut lo, mut hi) = (0usize, listed.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let (seg, _) = read_segment(&r, listed[mid].first).map_err(fail)?;
        if seg.entries.first().is_some_and(|e| e.at_ms < since) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut found = Vec::new();
    'segments: for info in listed.iter().skip(lo) {
        let (seg, _) = read_segment(&r, info.first).map_err(fail)?;
        for e in &seg.entries {
            if e.at_ms < since {
                continue;
            }
            if e.at_ms > until || found.len() >= limit {
                break 'segments;
            }
            found.extend(events(e, db, site)?);
        }
    }
    found.truncate(limit);
    emit(output, json!({"events": found}), || {
        if found.is_empty() {
            return "nothing archived in that range matches".into();
        }
        found
            .iter()
            .map(|e| {
                format!(
                    "{}  #{:<8} {:<11} {:<20} {}",
                    when(e.at_ms),
                    e.index,
                    e.kind,
                    e.target,
                    e.detail
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// `sen archive log` reads the repository only (no cluster needed).
pub fn run_log(cmd: ArchiveCmd, output: Output) -> Result<Option<ArchiveCmd>, Failure> {
    match cmd {
        ArchiveCmd::Log {
            repo,
            since,
            until,
            db,
            site,
            limit,
        } => log(
            &repo,
            &since,
            until.as_deref(),
            db.as_deref(),
            site.as_deref(),
            limit,
            output,
        )
        .map(|()| None),
        other => Ok(Some(other)),
    }
}

/// Wait until the leader has stored the archive's first segment.
async fn wait_for_first_segment(c: &sen_client::Client, timeout: Duration) -> Result<(), Failure> {
    let deadline = std::time::Instant::now() + timeout.max(Duration::from_secs(10));
    loop {
        let s = c.archive_status().await?;
        let shipper: Value = serde_json::from_str(&s.shipper).unwrap_or(Value::Null);
        if shipper["archived_index"].as_u64() > Some(0) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the archive is on but nothing was shipped within {}: {}; see `sen archive status`",
                humantime::format_duration(timeout),
                shipper["error"]
                    .as_str()
                    .filter(|e| !e.is_empty())
                    .unwrap_or("the leader has not shipped yet")
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(cmd: ArchiveCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        ArchiveCmd::Log { .. } => return Err("sen archive log runs without the cluster".into()),
        ArchiveCmd::Enable {
            repo,
            password_file,
            interval,
            max_lag,
            no_backup,
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
            let mut snapshot = None;
            if !no_backup {
                // The first backup must come after the archive's start: wait
                // for the first segment, then back up a caught-up replica.
                wait_for_first_segment(&c, timeout).await?;
                let password = match &config.password_file {
                    None => None,
                    Some(p) => {
                        let text = std::fs::read(p).map_err(|e| {
                            format!(
                                "the archive is on, but the first backup needs the password file {p} here too ({e}): \
                                 take it with `sen backup create --repo {repo} --password-file …`"
                            )
                        })?;
                        Some(sen_backup::crypto::password_line(&text).to_vec())
                    }
                };
                let r = sen_ops::backup::create(&c, None, &repo, password, vec!["archive-start".into()], timeout)
                    .await
                    .map_err(crate::repo_args::ops_fail)?;
                snapshot = Some((r.snapshot_id, r.raft_index));
            }
            emit(
                output,
                json!({"enabled": true, "repo": repo, "revision": revision,
                       "snapshot_id": snapshot.as_ref().map(|s| &s.0), "snapshot_raft_index": snapshot.as_ref().map(|s| s.1)}),
                || {
                    let mut t = format!(
                        "archive on: committed entries go to {repo} at least every {}",
                        humantime::format_duration(interval)
                    );
                    match &snapshot {
                        Some((id, index)) => t.push_str(&format!(
                            "\nfirst backup: snapshot {} at index {index}; point-in-time restores work from here on",
                            &id[..8.min(id.len())]
                        )),
                        None => t.push_str(
                            "\ntake a backup once `sen archive status` shows shipping, so that point-in-time restores have a snapshot to start from",
                        ),
                    }
                    t
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
            let nodes = per_node(&c, s.node, &shipper).await;
            let j = json!({
                "enabled": config.as_ref().is_some_and(|c| !c.repo.is_empty()),
                "config": config,
                "progress": progress,
                "shipper_node": s.node,
                "shipper": shipper,
                "applied_index": s.applied_index,
                "nodes": nodes,
            });
            emit(output, j, || match &config {
                None => "archive off (sen archive enable --repo URL)".into(),
                Some(c) if c.repo.is_empty() => format!(
                    "archive off since {} (by {}); what was archived stays in the repository (sen archive enable --repo URL)",
                    when(c.enabled_at_ms),
                    c.enabled_by
                ),
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
                    for n in &nodes {
                        t.push_str(&format!(
                            "\n  node {}: {}{}",
                            n["node"],
                            n["state"].as_str().unwrap_or("?"),
                            match n["error"].as_str().filter(|e| !e.is_empty()) {
                                Some(e) => format!(" ({e})"),
                                None => format!(
                                    ", knows index {} archived, applied {}",
                                    n["archived_index"], n["applied_index"]
                                ),
                            }
                        ));
                    }
                    t
                }
            });
        }
    }
    Ok(())
}

/// Every member's shipper state (`standby` on followers, `shipping` or
/// `failing` on the one that ships), asked of each node directly; a node
/// that does not answer is listed with the error.
async fn per_node(c: &sen_client::Client, answered: u64, shipper: &Value) -> Vec<Value> {
    let members = match c.status().await {
        Ok(s) => s.members,
        Err(e) => return vec![json!({"node": answered, "state": "?", "error": format!("cluster status: {e}")})],
    };
    let mut out = Vec::new();
    for m in members {
        let row = if m.id == answered {
            json!({
                "node": m.id,
                "state": shipper["state"],
                "archived_index": shipper["archived_index"],
                "applied_index": m.applied_index,
                "error": shipper["error"],
            })
        } else {
            match c.archive_status_of(&m.addr, Duration::from_secs(3)).await {
                Ok(r) => {
                    let sh: Value = serde_json::from_str(&r.shipper).unwrap_or(Value::Null);
                    json!({
                        "node": m.id,
                        "state": sh["state"],
                        "archived_index": sh["archived_index"],
                        "applied_index": r.applied_index,
                        "error": sh["error"],
                    })
                }
                Err(e) => json!({"node": m.id, "state": "unreachable", "error": e.to_string()}),
            }
        };
        out.push(row);
    }
    out
}
