//! The incident log (R2, R11): every interruption, recorded in the cluster
//! with its start, end, severity, automatic cause and the nodes involved;
//! operators add the cause and the remedy (`sen incident annotate`).
//!
//! Records are `sen_raft::schema::system::Incident` in `sen-system`. Ids
//! come from a counter claimed with a compare-and-set transaction, so two
//! leaders (an old and a new one) never hand out the same id. Who records:
//! the leader (leader changes, unreachable nodes, found by `roles`); any
//! other node through the leader (`forward::record_incident`). The gRPC
//! service is `grpc::incidents`.
//!
//! Everything here is written against [`ControlPlane`], and unit-tested on
//! an in-memory state machine.

use std::time::Duration;

use sen_raft::schema::system::{
    self, ACTIVE_DRILL_KEY, ActiveDrill, INCIDENT_COUNTER_KEY, INCIDENT_PREFIX, Incident, SYSTEM_DB, SystemRecord,
};
use sen_raft::{Compare, CompareOp, CompareTarget, Op, Outcome, Txn, TxnOp};

use crate::error::ApiError;
use crate::system::{self as cp, ControlPlane};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// On the leader: tag `inc` with the drill running now (if any), assign an
/// id and store it. Returns the id.
pub async fn record(plane: &impl ControlPlane, mut inc: Incident, budget: Duration) -> Result<u64, ApiError> {
    if let Ok(Some((drill, _))) = cp::read::<ActiveDrill>(plane, ACTIVE_DRILL_KEY) {
        inc.tag_with_drill(&drill);
    }
    for _ in 0..8 {
        let (next, target) = match plane.get_raw(INCIDENT_COUNTER_KEY)? {
            None => (1, CompareTarget::Exists(false)),
            Some((v, rev)) => (
                String::from_utf8_lossy(&v).trim().parse::<u64>().map_err(internal)?,
                CompareTarget::ModRevision(rev),
            ),
        };
        inc.id = next;
        inc.version = Incident::VERSION;
        let txn = Txn {
            db: SYSTEM_DB.into(),
            compares: vec![Compare {
                key: INCIDENT_COUNTER_KEY.to_vec(),
                op: CompareOp::Equal,
                target,
            }],
            success: vec![
                TxnOp::Put {
                    key: INCIDENT_COUNTER_KEY.to_vec(),
                    value: (next + 1).to_string().into_bytes(),
                },
                TxnOp::Put {
                    key: system::incident_key(next),
                    value: inc.to_json().map_err(internal)?,
                },
            ],
            failure: vec![],
        };
        let r = plane.propose(Op::Txn(txn), budget).await?;
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
pub async fn update(plane: &impl ControlPlane, inc: &Incident, budget: Duration) -> Result<(), ApiError> {
    plane
        .propose(cp::put_op(system::incident_key(inc.id), inc)?, budget)
        .await?;
    Ok(())
}

/// Every incident in this replica, oldest first (unreadable ones are
/// logged and skipped).
pub fn list(plane: &impl ControlPlane) -> Result<Vec<Incident>, ApiError> {
    Ok(decode_rows(plane.scan_raw(INCIDENT_PREFIX.as_bytes())?))
}

/// Up to `limit` incidents after id `after_id`, in id order, and the id
/// to continue after if more may follow.
pub fn list_page(
    plane: &impl ControlPlane,
    after_id: u64,
    limit: usize,
) -> Result<(Vec<Incident>, Option<u64>), ApiError> {
    let after = (after_id > 0).then(|| system::incident_key(after_id));
    let rows = plane.scan_rows(INCIDENT_PREFIX.as_bytes(), after.as_deref(), limit)?;
    let full = rows.len() == limit;
    let page = decode_rows(rows);
    let last = page.last().map(|i| i.id);
    Ok((page, last.filter(|_| full)))
}

/// The incidents among `rows` of the `incident/` prefix (the id counter
/// left out; unreadable ones logged and skipped).
fn decode_rows(rows: Vec<crate::system::Row>) -> Vec<Incident> {
    let mut out = Vec::new();
    for (k, v) in rows {
        if k.as_slice() == INCIDENT_COUNTER_KEY {
            continue;
        }
        match Incident::from_json(&v) {
            Ok(i) => out.push(i),
            Err(e) => tracing::warn!(key = %String::from_utf8_lossy(&k), "unreadable incident: {e}"),
        }
    }
    out
}

pub fn get(plane: &impl ControlPlane, id: u64) -> Result<Incident, ApiError> {
    cp::read::<Incident>(plane, &system::incident_key(id))?
        .map(|(i, _)| i)
        .ok_or_else(|| ApiError::NotFound(format!("no incident {id}; see `sen incident list`")))
}

/// The operator's notes on an incident (`sen incident annotate`).
pub struct Annotation<'a> {
    pub cause: &'a str,
    pub remedy: &'a str,
    pub by: &'a str,
    pub resolve: bool,
}

/// Check and apply an annotation to `inc` (at `now_ms`).
pub fn annotate(inc: &mut Incident, a: &Annotation<'_>, now_ms: u64) -> Result<(), ApiError> {
    if a.cause.trim().is_empty() && a.remedy.trim().is_empty() && !a.resolve {
        return Err(ApiError::InvalidArgument("give --cause, --remedy or --resolve".into()));
    }
    if a.cause.len() + a.remedy.len() > 64 * 1024 {
        return Err(ApiError::InvalidArgument(
            "cause and remedy together must be under 64 KiB".into(),
        ));
    }
    if !a.cause.trim().is_empty() {
        inc.cause = a.cause.trim().to_owned();
    }
    if !a.remedy.trim().is_empty() {
        inc.remedy = a.remedy.trim().to_owned();
    }
    inc.annotated_by = a.by.to_owned();
    inc.annotated_at_ms = now_ms;
    if a.resolve && inc.end_ms.is_none() {
        inc.end_ms = Some(now_ms);
    }
    Ok(())
}

/// Check an incident sent by another node or a client before recording it.
pub fn validate(inc: &Incident) -> Result<(), ApiError> {
    if inc.kind.is_empty() || !matches!(inc.severity.as_str(), system::ORDINARY | system::SERIOUS) {
        return Err(ApiError::InvalidArgument(
            "an incident needs a kind and a severity of ordinary or serious".into(),
        ));
    }
    // An incident is a few lines; a record of megabytes would bloat every
    // replica, every listing and every monthly report.
    let texts = [
        ("kind", inc.kind.len(), 64),
        ("auto_cause", inc.auto_cause.len(), MAX_INCIDENT_TEXT),
        ("auto_cause_vi", inc.auto_cause_vi.len(), MAX_INCIDENT_TEXT),
        ("reference", inc.reference.len(), MAX_INCIDENT_TEXT),
        ("cause + remedy", inc.cause.len() + inc.remedy.len(), 64 * 1024),
        ("annotated_by", inc.annotated_by.len(), 256),
        ("nodes", inc.nodes.len(), 1000),
    ];
    for (what, len, max) in texts {
        if len > max {
            return Err(ApiError::InvalidArgument(format!(
                "an incident's {what} is {len} long, more than the {max} allowed"
            )));
        }
    }
    Ok(())
}

/// Longest automatic cause or reference of an incident, in bytes.
pub const MAX_INCIDENT_TEXT: usize = 8 * 1024;

#[cfg(test)]
mod tests;
