//! `sen.v1.Incidents`: record, annotate and list incidents. Writes run on
//! the leader (forwarded once from a follower); lists read this node's
//! replica.

use std::sync::Arc;

use sen_proto::v1::incidents_server::Incidents;
use sen_proto::v1::*;
use sen_raft::schema::system::{Incident, SystemRecord};
use tonic::{Request, Response, Status};

use super::measured;
use crate::error::ApiError;
use crate::forward::{Route, route};
use crate::incidents::{self, Annotation};
use crate::node::Node;

/// Most incidents read for one `Incidents/List` page.
const MAX_INCIDENTS_PER_PAGE: usize = 500;

pub struct IncidentsApi {
    pub node: Arc<Node>,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Run `$local` on the leader, or forward `$req` to it with `$method`.
macro_rules! on_leader {
    ($self:ident, $req:ident, $method:ident, $local:expr) => {{
        let node = &$self.node;
        match route(node, &$req)? {
            Route::Local => $local,
            Route::Forward { id, addr, behalf } => {
                let budget = node.config.server.forward_timeout;
                forward_to_leader!(
                    node,
                    behalf,
                    node.peers.incidents(id, &addr),
                    addr,
                    $method,
                    $req.into_inner(),
                    budget
                )
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
                incidents::validate(&inc)?;
                let id = incidents::record(self.node.as_ref(), inc, self.node.config.server.request_timeout).await?;
                Ok(RecordIncidentResponse { id })
            })
        })
        .await
    }

    async fn annotate(&self, req: Request<AnnotateIncidentRequest>) -> Result<Response<IncidentDocument>, Status> {
        measured(&self.node, "Incidents/Annotate", async {
            crate::auth::note(&req, format!("incident:{}", req.get_ref().id));
            on_leader!(self, req, annotate, {
                let r = req.get_ref();
                let node = self.node.as_ref();
                let budget = node.config.server.request_timeout;
                // The leader's replica is current for everything it
                // committed; make sure it applied the latest first.
                node.read_barrier(budget).await?;
                let mut inc = incidents::get(node, r.id)?;
                let note = Annotation {
                    cause: &r.cause,
                    remedy: &r.remedy,
                    by: &r.by,
                    resolve: r.resolve,
                };
                incidents::annotate(&mut inc, &note, sen_core::now_ms())?;
                incidents::update(node, &inc, budget).await?;
                Ok(IncidentDocument {
                    json: String::from_utf8(inc.to_json().map_err(internal)?).map_err(internal)?,
                })
            })
        })
        .await
    }

    async fn list(&self, req: Request<ListIncidentsRequest>) -> Result<Response<ListIncidentsResponse>, Status> {
        measured(&self.node, "Incidents/List", async {
            let r = req.get_ref();
            let since = r.since_ms;
            let limit = match r.limit as usize {
                0 => MAX_INCIDENTS_PER_PAGE,
                n => n.min(MAX_INCIDENTS_PER_PAGE),
            };
            let (page, next) = incidents::list_page(self.node.as_ref(), r.after_id, limit)?;
            let json = page
                .into_iter()
                .filter(|i| i.start_ms >= since || i.end_ms.is_none_or(|e| e >= since))
                .map(|i| serde_json::to_string(&i).map_err(internal))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ListIncidentsResponse {
                json,
                serious_limit_ms: self.node.config.incidents.serious_limit.as_millis() as u64,
                next_after_id: next.unwrap_or(0),
            })
        })
        .await
    }
}
