//! `sen node drain|undrain` and `sen incident list|show|annotate`.

use std::time::{Duration, UNIX_EPOCH};

use clap::Subcommand;
use sen_core::now_ms;
use sen_proto::v1::AnnotateIncidentRequest;
use sen_raft::schema::system::Incident;
use serde_json::json;

use crate::output::{emit, table};
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Move leadership away from node ID (if it leads) and keep it from
    /// becoming leader until `undrain`, e.g. before patching its machine.
    Drain { id: u64 },
    /// Let node ID campaign for leadership again.
    Undrain { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum IncidentCmd {
    /// Incidents, oldest first.
    List {
        /// Only those that started (or were still open) within this long
        /// ago, e.g. `30d`, `24h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
    },
    /// One incident in full.
    Show { id: u64 },
    /// Add the cause and remedy (R11: the monthly report explains every
    /// interruption); `--resolve` also closes an open incident.
    Annotate {
        id: u64,
        #[arg(long, default_value = "")]
        cause: String,
        #[arg(long, default_value = "")]
        remedy: String,
        /// Who writes the note (default: the login name).
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        resolve: bool,
    },
}

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn human(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
    }
}

fn incident_json(i: &Incident, now: u64, limit_ms: u64) -> serde_json::Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    v["duration_ms"] = json!(i.duration_ms(now));
    v["open"] = json!(i.end_ms.is_none());
    v["overdue"] = json!(i.overdue(now, Duration::from_millis(limit_ms)));
    v
}

pub async fn run_node(cmd: NodeCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    let (id, drain) = match cmd {
        NodeCmd::Drain { id } => (id, true),
        NodeCmd::Undrain { id } => (id, false),
    };
    let r = c.drain(id, drain).await?;
    emit(
        output,
        json!({"id": id, "drained": r.drained, "leader_id": r.leader_id, "revision": r.revision}),
        || {
            if drain {
                format!(
                    "node {id} is drained: it will not lead (leader now: node {}); patch and restart it, then `sen node undrain {id}`",
                    r.leader_id
                )
            } else {
                format!("node {id} may lead again (drained nodes: {:?})", r.drained)
            }
        },
    );
    Ok(())
}

pub async fn run_incident(
    cmd: IncidentCmd,
    endpoints: &[String],
    output: Output,
    timeout: Duration,
) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    let now = now_ms();
    match cmd {
        IncidentCmd::List { since } => {
            let since_ms = since.map_or(0, |d| now.saturating_sub(d.as_millis() as u64));
            let r = c.list_incidents(since_ms).await?;
            let list: Vec<Incident> = r
                .json
                .iter()
                .map(|j| serde_json::from_str(j))
                .collect::<Result<_, _>>()?;
            let limit = r.serious_limit_ms;
            emit(
                output,
                json!(list.iter().map(|i| incident_json(i, now, limit)).collect::<Vec<_>>()),
                || {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|i| {
                            vec![
                                i.id.to_string(),
                                when(i.start_ms),
                                if i.end_ms.is_some() {
                                    human(i.duration_ms(now))
                                } else {
                                    format!("OPEN {}", human(i.duration_ms(now)))
                                },
                                if i.overdue(now, Duration::from_millis(limit)) {
                                    format!("{} OVERDUE", i.severity)
                                } else {
                                    i.severity.clone()
                                },
                                i.kind.clone(),
                                format!("{:?}", i.nodes),
                                if i.cause.is_empty() {
                                    "(no cause noted)".into()
                                } else {
                                    i.cause.chars().take(40).collect()
                                },
                            ]
                        })
                        .collect();
                    let overdue = list
                        .iter()
                        .filter(|i| i.overdue(now, Duration::from_millis(limit)))
                        .count();
                    let mut t = table(
                        &["ID", "START", "DURATION", "SEVERITY", "KIND", "NODES", "CAUSE"],
                        &rows,
                    );
                    if overdue > 0 {
                        t.push_str(&format!(
                            "\n{overdue} serious incident(s) open longer than {} (R2): resolve them and note the remedy with `sen incident annotate ID --cause … --remedy … --resolve`\n",
                            human(limit)
                        ));
                    }
                    t
                },
            );
        }
        IncidentCmd::Show { id } => {
            let r = c.list_incidents(0).await?;
            let inc: Incident = r
                .json
                .iter()
                .filter_map(|j| serde_json::from_str::<Incident>(j).ok())
                .find(|i| i.id == id)
                .ok_or_else(|| format!("no incident {id}; see `sen incident list`"))?;
            let limit = r.serious_limit_ms;
            emit(output, incident_json(&inc, now, limit), || {
                format!(
                    "incident {}: {} ({}{})\nstart:     {}\nend:       {}\nduration:  {}\nnodes:     {:?}\ndetected:  by node {} (term {})\nautomatic: {}\n{}cause:     {}\nremedy:    {}\n{}",
                    inc.id,
                    inc.kind,
                    inc.severity,
                    if inc.overdue(now, Duration::from_millis(limit)) {
                        ", OVERDUE"
                    } else {
                        ""
                    },
                    when(inc.start_ms),
                    inc.end_ms.map_or("(open)".into(), when),
                    human(inc.duration_ms(now)),
                    inc.nodes,
                    inc.detected_by,
                    inc.term,
                    inc.auto_cause,
                    if inc.reference.is_empty() {
                        String::new()
                    } else {
                        format!("reference: {} (`sen drill show {}`)\n", inc.reference, inc.reference)
                    },
                    if inc.cause.is_empty() {
                        "(not noted yet)"
                    } else {
                        &inc.cause
                    },
                    if inc.remedy.is_empty() {
                        "(not noted yet)"
                    } else {
                        &inc.remedy
                    },
                    if inc.annotated_by.is_empty() {
                        String::new()
                    } else {
                        format!("noted by:  {} at {}\n", inc.annotated_by, when(inc.annotated_at_ms))
                    },
                )
            });
        }
        IncidentCmd::Annotate {
            id,
            cause,
            remedy,
            by,
            resolve,
        } => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "operator".into());
            let j = c
                .annotate_incident(AnnotateIncidentRequest {
                    id,
                    cause,
                    remedy,
                    by,
                    resolve,
                })
                .await?;
            let inc: Incident = serde_json::from_str(&j)?;
            emit(output, incident_json(&inc, now, 0), || {
                format!("incident {id} annotated")
            });
        }
    }
    Ok(())
}
