//! The incident log (R2, R11): every interruption, recorded in the cluster
//! with its start, end, severity, automatic cause and the nodes involved;
//! operators add the cause and the remedy (`sen incident annotate`).
//!
//! Storage: database `sen-system`, key `incident/<id, 8 digits>`, value a
//! JSON [`Incident`] (`version` 1). Ids come from the counter
//! `incident/next`, claimed with a compare-and-set transaction, so two
//! leaders (an old and a new one) never hand out the same id.
//!
//! Who records: the leader (leader changes, unreachable nodes); any node
//! (lost quorum, failed hooks, drills) through the leader
//! ([`record_anywhere`]). Detection itself is in `roles`.

use std::sync::Arc;
use std::time::Duration;

use sen_proto::v1::incidents_server::Incidents;
use sen_proto::v1::*;
use sen_raft::{Compare, CompareOp, CompareTarget, Op, Outcome, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::backup::SYSTEM_DB;
use crate::error::ApiError;
use crate::grpc::{Route, forwarded, measured, route};
use crate::node::{Node, now_ms, status_to_api};

pub const PREFIX: &str = "incident/";
const COUNTER: &[u8] = b"incident/next";
pub const FORMAT_VERSION: u32 = 1;

/// Written by `sen drill run` while a drill runs: incidents it causes are
/// tagged with the drill, and expected consequences are ordinary.
pub const ACTIVE_DRILL_KEY: &[u8] = b"ha/active-drill";

/// The drill running now (`ACTIVE_DRILL_KEY`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActiveDrill {
    pub id: String,
    pub target: u64,
    /// The drill's probes end by then (plus a minute of slack).
    pub until_ms: u64,
}

pub const ORDINARY: &str = "ordinary";
pub const SERIOUS: &str = "serious";

/// One incident (the stored JSON document).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub version: u32,
    /// Assigned by the leader when recorded (0 before).
    #[serde(default)]
    pub id: u64,
    /// `leader-change`, `node-unreachable`, `quorum-lost`, `hook-failed`,
    /// `drill`, `recovery`.
    pub kind: String,
    /// `ordinary` or `serious` (R2).
    pub severity: String,
    pub start_ms: u64,
    /// `None` while the incident is open.
    #[serde(default)]
    pub end_ms: Option<u64>,
    /// What the node that detected it saw.
    pub auto_cause: String,
    #[serde(default)]
    pub nodes: Vec<u64>,
    pub detected_by: u64,
    #[serde(default)]
    pub term: u64,
    /// A related record, e.g. the drill id.
    #[serde(default)]
    pub reference: String,
    /// Operator notes.
    #[serde(default)]
    pub cause: String,
    #[serde(default)]
    pub remedy: String,
    #[serde(default)]
    pub annotated_by: String,
    #[serde(default)]
    pub annotated_at_ms: u64,
}

impl Incident {
    pub fn new(kind: &str, severity: &str, start_ms: u64, auto_cause: String, nodes: Vec<u64>, by: u64) -> Self {
        Self {
            version: FORMAT_VERSION,
            kind: kind.into(),
            severity: severity.into(),
            start_ms,
            auto_cause,
            nodes,
            detected_by: by,
            ..Default::default()
        }
    }

    pub fn duration_ms(&self, now: u64) -> u64 {
        self.end_ms.unwrap_or(now).saturating_sub(self.start_ms)
    }

    /// Serious, still open, and open longer than `limit` (R2: 24 h).
    pub fn overdue(&self, now: u64, limit: Duration) -> bool {
        self.severity == SERIOUS && self.end_ms.is_none() && self.duration_ms(now) > limit.as_millis() as u64
    }
}

pub fn key(id: u64) -> Vec<u8> {
    format!("{PREFIX}{id:08}").into_bytes()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// On the leader: assign an id and store `inc`. Returns the id.
pub async fn record_here(node: &Node, mut inc: Incident) -> Result<u64, ApiError> {
    let budget = node.config.server.request_timeout;
    if inc.kind != "drill"
        && inc.reference.is_empty()
        && let Ok(Some((d, _))) = crate::backup::read_json::<ActiveDrill>(node, ACTIVE_DRILL_KEY)
        && inc.start_ms <= d.until_ms + 60_000
    {
        inc.auto_cause = format!("during failover drill {}: {}", d.id, inc.auto_cause);
        inc.reference = d.id;
        // What a drill provokes on purpose is planned, not an outage.
        if matches!(inc.kind.as_str(), "leader-change" | "node-unreachable" | "quorum-lost") {
            inc.severity = ORDINARY.into();
        }
    }
    for _ in 0..8 {
        let (rec, _) = node.state.get(SYSTEM_DB, COUNTER)?;
        let (next, target) = match rec {
            None => (1, CompareTarget::Exists(false)),
            Some(r) => (
                String::from_utf8_lossy(&r.value)
                    .trim()
                    .parse::<u64>()
                    .map_err(internal)?,
                CompareTarget::ModRevision(r.mod_revision),
            ),
        };
        inc.id = next;
        inc.version = FORMAT_VERSION;
        let txn = Txn {
            db: SYSTEM_DB.into(),
            compares: vec![Compare {
                key: COUNTER.to_vec(),
                op: CompareOp::Equal,
                target,
            }],
            success: vec![
                TxnOp::Put {
                    key: COUNTER.to_vec(),
                    value: (next + 1).to_string().into_bytes(),
                },
                TxnOp::Put {
                    key: key(next),
                    value: serde_json::to_vec(&inc).map_err(internal)?,
                },
            ],
            failure: vec![],
        };
        let r = node.propose(None, Op::Txn(txn), budget).await?;
        if matches!(r.outcome, Outcome::Txn { succeeded: true }) {
            tracing::warn!(id = next, kind = %inc.kind, severity = %inc.severity, cause = %inc.auto_cause, "incident recorded");
            return Ok(next);
        }
        // Another writer took this id (a new leader applying its own
        // record): read the counter again.
    }
    Err(ApiError::Unavailable(
        "could not claim an incident id after 8 attempts; retry".into(),
    ))
}

/// On the leader: overwrite an incident (it must exist).
pub async fn update_here(node: &Node, inc: &Incident) -> Result<(), ApiError> {
    let value = serde_json::to_vec(inc).map_err(internal)?;
    node.propose(
        None,
        Op::Put {
            db: SYSTEM_DB.into(),
            key: key(inc.id),
            value,
        },
        node.config.server.request_timeout,
    )
    .await?;
    Ok(())
}

/// Record `inc` from any node: here if leading, else through the leader.
pub async fn record_anywhere(node: &Arc<Node>, inc: Incident) -> Result<u64, ApiError> {
    if node.is_leader() {
        return record_here(node, inc).await;
    }
    let leader = node.leader().ok_or_else(|| ApiError::not_leader(node.id, None))?;
    let budget = node.config.server.request_timeout;
    let json = serde_json::to_string(&inc).map_err(internal)?;
    let mut client = node.peers.incidents(leader.id, &leader.addr).map_err(status_to_api)?;
    let r = tokio::time::timeout(
        budget,
        client.record(forwarded(node, RecordIncidentRequest { json }, budget)),
    )
    .await
    .map_err(|_| ApiError::Timeout(format!("the leader did not record the incident within {budget:?}")))?
    .map_err(status_to_api)?;
    Ok(r.into_inner().id)
}

/// Every incident in this node's replica, oldest first.
pub fn list(node: &Node) -> Result<Vec<Incident>, ApiError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = node
            .state
            .scan(SYSTEM_DB, PREFIX.as_bytes(), after.as_deref(), 1000, 8 << 20, false)?;
        let last = page.items.last().map(|(k, _)| k.clone());
        for (k, rec) in &page.items {
            if k.as_slice() == COUNTER {
                continue;
            }
            match serde_json::from_slice::<Incident>(&rec.value) {
                Ok(i) => out.push(i),
                Err(e) => tracing::warn!(key = %String::from_utf8_lossy(k), "unreadable incident: {e}"),
            }
        }
        if !page.more {
            break;
        }
        after = last;
    }
    Ok(out)
}

pub fn get(node: &Node, id: u64) -> Result<Incident, ApiError> {
    let (rec, _) = node.state.get(SYSTEM_DB, &key(id))?;
    let rec = rec.ok_or_else(|| ApiError::NotFound(format!("no incident {id}; see `sen incident list`")))?;
    serde_json::from_slice(&rec.value).map_err(internal)
}

pub struct IncidentsApi {
    pub node: Arc<Node>,
}

/// Run `$local` on the leader, or forward `$req` to it with `$method`.
macro_rules! on_leader {
    ($self:ident, $req:ident, $method:ident, $local:expr) => {{
        let node = &$self.node;
        match route(node, &$req)? {
            Route::Local => $local,
            Route::Forward { id, addr } => {
                let budget = node.config.server.forward_timeout;
                let mut client = node.peers.incidents(id, &addr).map_err(status_to_api)?;
                let r = tokio::time::timeout(budget, client.$method(forwarded(node, $req.into_inner(), budget)))
                    .await
                    .map_err(|_| ApiError::Timeout(format!("the leader at {addr} did not answer within {budget:?}")))?
                    .map_err(status_to_api)?;
                Ok(r.into_inner())
            }
        }
    }};
}

#[tonic::async_trait]
impl Incidents for IncidentsApi {
    async fn record(&self, req: Request<RecordIncidentRequest>) -> Result<Response<RecordIncidentResponse>, Status> {
        measured(&self.node, "Incidents/Record", async {
            on_leader!(self, req, record, {
                let inc: Incident = serde_json::from_str(&req.get_ref().json)
                    .map_err(|e| ApiError::InvalidArgument(format!("incident document: {e}")))?;
                if inc.kind.is_empty() || !matches!(inc.severity.as_str(), ORDINARY | SERIOUS) {
                    return Err(ApiError::InvalidArgument(
                        "an incident needs a kind and a severity of ordinary or serious".into(),
                    ));
                }
                let id = record_here(&self.node, inc).await?;
                Ok(RecordIncidentResponse { id })
            })
        })
        .await
    }

    async fn annotate(&self, req: Request<AnnotateIncidentRequest>) -> Result<Response<IncidentDocument>, Status> {
        measured(&self.node, "Incidents/Annotate", async {
            on_leader!(self, req, annotate, {
                let r = req.get_ref();
                if r.cause.trim().is_empty() && r.remedy.trim().is_empty() && !r.resolve {
                    return Err(ApiError::InvalidArgument("give --cause, --remedy or --resolve".into()));
                }
                if r.cause.len() + r.remedy.len() > 64 * 1024 {
                    return Err(ApiError::InvalidArgument(
                        "cause and remedy together must be under 64 KiB".into(),
                    ));
                }
                // The leader's replica is current for everything it
                // committed; make sure it applied the latest first.
                self.node.read_barrier(self.node.config.server.request_timeout).await?;
                let mut inc = get(&self.node, r.id)?;
                if !r.cause.trim().is_empty() {
                    inc.cause = r.cause.trim().to_owned();
                }
                if !r.remedy.trim().is_empty() {
                    inc.remedy = r.remedy.trim().to_owned();
                }
                inc.annotated_by = r.by.clone();
                inc.annotated_at_ms = now_ms();
                if r.resolve && inc.end_ms.is_none() {
                    inc.end_ms = Some(now_ms());
                }
                update_here(&self.node, &inc).await?;
                Ok(IncidentDocument {
                    json: serde_json::to_string(&inc).map_err(internal)?,
                })
            })
        })
        .await
    }

    async fn list(&self, req: Request<ListIncidentsRequest>) -> Result<Response<ListIncidentsResponse>, Status> {
        measured(&self.node, "Incidents/List", async {
            let since = req.get_ref().since_ms;
            let json = list(&self.node)?
                .into_iter()
                .filter(|i| i.start_ms >= since || i.end_ms.is_none_or(|e| e >= since))
                .map(|i| serde_json::to_string(&i).map_err(internal))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ListIncidentsResponse {
                json,
                serious_limit_ms: self.node.config.incidents.serious_limit.as_millis() as u64,
            })
        })
        .await
    }
}
