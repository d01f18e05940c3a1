//! `sen node drain|undrain` and `sen incident list|show|annotate`.

use std::time::Duration;

use clap::{Args, Subcommand};
use sen_core::now_ms;
use sen_ops::drill::Lang;
use sen_ops::incident_text;
use sen_ops::report::TimeZone;
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

/// How incidents are printed as text (JSON is always UTC milliseconds and
/// the stored English kinds).
#[derive(Args, Debug, Clone, Copy)]
pub struct Display {
    /// Language of the text: kinds, severities and labels are translated;
    /// the notes are shown as written.
    #[arg(long, value_enum, default_value_t = Lang::En)]
    lang: Lang,
    /// Times are printed in this time zone (an IANA name, or an offset
    /// such as +07:00).
    #[arg(long, visible_alias = "utc-offset", default_value = "Asia/Ho_Chi_Minh", value_parser = TimeZone::parse, allow_hyphen_values = true)]
    time_zone: TimeZone,
}

#[derive(Subcommand, Debug)]
pub enum IncidentCmd {
    /// Incidents, oldest first.
    List {
        /// Only those that started (or were still open) within this long
        /// ago, e.g. `30d`, `24h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        #[command(flatten)]
        display: Display,
    },
    /// One incident in full.
    Show {
        id: u64,
        #[command(flatten)]
        display: Display,
    },
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
        IncidentCmd::List { since, display } => {
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
                    let (headers, rows, footer) =
                        incident_text::list_table(&list, now, limit, display.time_zone, display.lang);
                    let mut t = table(&headers, &rows);
                    if let Some(f) = footer {
                        t.push_str(&format!("\n{f}\n"));
                    }
                    t
                },
            );
        }
        IncidentCmd::Show { id, display } => {
            let r = c.list_incidents(0).await?;
            let inc: Incident = r
                .json
                .iter()
                .filter_map(|j| serde_json::from_str::<Incident>(j).ok())
                .find(|i| i.id == id)
                .ok_or_else(|| format!("no incident {id}; see `sen incident list`"))?;
            let limit = r.serious_limit_ms;
            emit(output, incident_json(&inc, now, limit), || {
                incident_text::show(&inc, now, limit, display.time_zone, display.lang)
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
