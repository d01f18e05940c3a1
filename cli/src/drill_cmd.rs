//! `sen drill …`: failover drills on the live cluster (`run`, `list`,
//! `show`, `clear`) and restore drills (`restore`). The drills themselves
//! are `sen_ops::drill` and `sen_ops::restore_drill`; this module parses,
//! prints and exits (2 when a drill fails, 3 when a restore drill finds
//! damage).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use sen_backup::format::hex_id;
use sen_ops::drill::{self, DrillParams, DrillReport, Lang, Scenario};
use sen_ops::restore_drill::{self, RestoreDrill};
use sen_store::backup::DataDirSink;
use serde_json::json;

use crate::output::{emit, table};
use crate::repo_args::{RepoArgs, bar, open_snapshot, ops_fail, record_verification, runtime, when};
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum DrillCmd {
    /// Run a failover drill on the live cluster and store its report.
    Run(RunArgs),
    /// Stored drill reports, newest last.
    List,
    /// One stored report.
    Show {
        /// Report id (or a unique prefix / suffix such as the scenario).
        id: String,
        /// `md` prints the report as Markdown; `json` as stored.
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
        /// Language of the Markdown report.
        #[arg(long, value_enum, default_value_t = Lang::En)]
        lang: Lang,
    },
    /// End a drill fault on a node now (e.g. after interrupting a drill).
    Clear {
        /// The node's gRPC address.
        #[arg(long)]
        addr: String,
    },
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
        /// Do not record the result in the cluster (by default it is kept
        /// for the monthly report).
        #[arg(long)]
        no_record: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Md,
    Json,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(value_enum)]
    scenario: Scenario,
    /// `leader`, `follower` or a node id (default: the scenario's role).
    #[arg(long)]
    target: Option<String>,
    /// How long the fault lasts (ignored by switchover).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Probe writes and reads per second, per node.
    #[arg(long, default_value_t = 10.0)]
    probe_rate: f64,
    /// Longest acceptable client-observed write gap.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    rto_objective: Duration,
    /// Longest acceptable gap with no node serving site content.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    read_gap_objective: Duration,
    /// Language of the printed report (the stored one is language-free).
    #[arg(long, value_enum, default_value_t = Lang::En)]
    lang: Lang,
}

pub fn run(cmd: DrillCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    if let DrillCmd::Restore {
        repo,
        snapshot,
        fresh,
        scratch,
        keep,
        no_record,
    } = cmd
    {
        let opts = RestoreOpts {
            fresh,
            scratch,
            keep,
            record: !no_record,
        };
        return restore(endpoints, output, timeout, &repo, &snapshot, opts);
    }
    crate::client_runtime(|| failover(cmd, endpoints, output, timeout))
}

async fn failover(cmd: DrillCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        DrillCmd::Run(a) => {
            let params = DrillParams {
                scenario: a.scenario,
                target: a.target,
                duration: a.duration,
                probe_rate: a.probe_rate,
                rto_objective: a.rto_objective,
                read_gap_objective: a.read_gap_objective,
            };
            let report = drill::run(&c, &params).await.map_err(ops_fail)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&report)?),
                Output::Text => print!("{}", drill::markdown(&report, a.lang)),
            }
            if !report.passed {
                return Err(Failure {
                    code: 2,
                    message: format!("drill {} failed: {}", report.id, report.failures.join("; ")),
                });
            }
        }
        DrillCmd::List => {
            let reports = drill::load_reports(&c).await.map_err(ops_fail)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&reports)?),
                Output::Text => print!("{}", list_text(&reports)),
            }
        }
        DrillCmd::Show { id, format, lang } => {
            let reports = drill::load_reports(&c).await.map_err(ops_fail)?;
            let r = drill::find(&reports, &id).map_err(ops_fail)?;
            match (output, format) {
                (Output::Json, _) | (_, ReportFormat::Json) => println!("{}", serde_json::to_string_pretty(r)?),
                _ => print!("{}", drill::markdown(r, lang)),
            }
        }
        DrillCmd::Clear { addr } => {
            let r = c.clear_fault(&addr).await?;
            emit(output, json!({"cleared": r.cleared}), || {
                if r.cleared.is_empty() {
                    format!("no drill fault was active on {addr}")
                } else {
                    format!("ended the {} fault on {addr}", r.cleared)
                }
            });
        }
        DrillCmd::Restore { .. } => return Err("the restore drill runs without this runtime".into()),
    }
    Ok(())
}

fn list_text(reports: &[DrillReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.scenario.clone(),
                r.target.to_string(),
                format!("{} ms", r.rto_ms),
                format!("{} ms", r.read_gap_ms),
                r.lost_writes.to_string(),
                format!("{} → {}", r.leader_before, r.leader_after),
                if r.passed { "pass" } else { "FAIL" }.into(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "SCENARIO", "TARGET", "RTO", "READ GAP", "LOST", "LEADER", "RESULT",
        ],
        &rows,
    )
}

/// How `drill restore` runs (its flags).
struct RestoreOpts {
    fresh: bool,
    scratch: Option<PathBuf>,
    keep: bool,
    record: bool,
}

fn restore(
    endpoints: &[String],
    output: Output,
    timeout: Duration,
    repo: &RepoArgs,
    snapshot: &str,
    opts: RestoreOpts,
) -> Result<(), Failure> {
    let RestoreOpts {
        fresh,
        scratch,
        keep,
        record,
    } = opts;
    let rt = runtime()?;
    let c = client(endpoints, timeout)?;
    let mut fresh_id = None;
    if fresh {
        let password = repo.password()?;
        let r = rt
            .block_on(sen_ops::backup::create(
                &c,
                None,
                repo.url()?,
                password,
                vec!["drill".into()],
                timeout,
            ))
            .map_err(ops_fail)?;
        fresh_id = Some(r.snapshot_id);
    }
    let (r, e, index) = open_snapshot(&rt, repo, fresh_id.as_deref().unwrap_or(snapshot))?;
    let base = scratch.unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("sen-drill-{}-{}", e.short_id(), std::process::id()));
    let live = rt.block_on(restore_drill::live_digests(&c, c.endpoints()));
    let pb = bar(output, e.snapshot.stats.bytes_total);
    let d = restore_drill::run(
        &r,
        &index,
        &e,
        restore_drill::Scratch { dir: &dir, keep },
        |dir| DataDirSink::create(dir, 1, "127.0.0.1:7101").map_err(|e| sen_backup::RepoError::Target(e.to_string())),
        live,
        &|n| pb.inc(n),
    );
    pb.finish_and_clear();
    let mut j = json!({
            "snapshot_id": hex_id(&e.id),
            "raft_index": d.raft_index,
            "snapshot_time": when(e.snapshot.time_ms),
            "expected_digest": d.expected_digest,
            "restored_digest": d.restored_digest,
            "equal": d.equal,
            "live_nodes_at_same_index": d.live_at_same_index().map(|l| json!({"node": l.node, "digest": l.digest, "equal": l.digest == d.restored_digest})).collect::<Vec<_>>(),
            "live_nodes": d.live.iter().map(|l| json!({"node": l.node, "applied_index": l.applied_index})).collect::<Vec<_>>(),
            "bytes": d.bytes,
            "duration_ms": d.duration_ms,
            "mb_per_s": d.mb_per_s(),
            "scratch": d.scratch,
            "error": d.error,
            "passed": d.passed,
    });
    if record {
        let v = sen_ops::verification::of_restore_drill(&r, &e, &d);
        record_verification(&rt, endpoints, timeout, &v, &mut j);
    }
    emit(output, j, || restore_text(&e, &d));
    if d.passed {
        Ok(())
    } else {
        Err(Failure {
            code: 3,
            message: "the restore drill failed: see the report above".into(),
        })
    }
}

fn restore_text(e: &sen_backup::read::SnapshotEntry, d: &RestoreDrill) -> String {
    let mut t = format!(
        "restore drill of snapshot {} (raft index {}, taken {})\n",
        e.short_id(),
        d.raft_index,
        when(e.snapshot.time_ms)
    );
    match &d.error {
        Some(m) => t.push_str(&format!("FAILED: {m}\n")),
        None => t.push_str(&format!(
            "restored {:.1} MB in {:.1} s ({:.1} MB/s) into a scratch data directory\nstate digest {} {} the live cluster's at index {}\n",
            d.bytes as f64 / 1e6,
            d.duration_ms as f64 / 1000.0,
            d.mb_per_s(),
            &d.restored_digest[..16.min(d.restored_digest.len())],
            if d.equal { "equals" } else { "DIFFERS FROM" },
            d.raft_index
        )),
    }
    for l in d.live_at_same_index() {
        t.push_str(&format!(
            "live node {} is at the same index: digest {}\n",
            l.node,
            if l.digest == d.restored_digest {
                "equal"
            } else {
                "DIFFERENT"
            }
        ));
    }
    t.push_str(if d.passed { "PASSED" } else { "FAILED" });
    t
}
