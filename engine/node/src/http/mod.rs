//! The HTTP endpoints: `/livez`, `/readyz`, `/metrics`, and the sites
//! (`/sites/{site}/...` and virtual hosts; see [`content`]).
//!
//! - `/livez`: 200 while the process runs and Raft has not stopped.
//! - `/readyz`: 200 when this node can serve: it belongs to a cluster, knows
//!   a leader, is not shutting down, and has applied to within
//!   `server.ready-max-lag` entries of the commit index it knows. Otherwise
//!   503 with the reason. The body is JSON either way.
//! - `/metrics`: Prometheus/OpenMetrics text.
//!
//! A request whose `Host` is a configured virtual host never reaches these
//! routes: it is served from that site (see [`content::virtual_hosts`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::node::Node;

pub mod content;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/sites/{site}", get(content::site_root_redirect))
        .route("/sites/{site}/", get(content::serve_root))
        .route("/sites/{site}/{*path}", get(content::serve_path))
        .fallback(content::fallback)
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            content::virtual_hosts,
        ))
        .with_state(node)
}

async fn livez(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let m = node.raft_metrics();
    match &m.running_state {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("raft stopped: {e}\n")),
    }
}

/// Why this node is not ready, if it is not.
pub fn not_ready_reason(node: &Node) -> Option<String> {
    let m = node.raft_metrics();
    if let Err(e) = &m.running_state {
        return Some(format!("raft stopped: {e}"));
    }
    if node.is_stopping() {
        return Some("shutting down".into());
    }
    if node.cluster_id().is_none() {
        return Some("not part of a cluster yet".into());
    }
    if m.current_leader.is_none() {
        return Some("no leader known".into());
    }
    let commit = m.local_committed.map_or(0, |l| l.index);
    let applied = m.last_applied.map_or(0, |l| l.index);
    let lag = commit.saturating_sub(applied);
    if lag > node.config.server.ready_max_lag {
        return Some(format!(
            "applied index {applied} is {lag} entries behind the commit index {commit} (limit server.ready-max-lag = {})",
            node.config.server.ready_max_lag
        ));
    }
    None
}

async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let m = node.raft_metrics();
    let reason = not_ready_reason(&node);
    let body = json!({
        "ready": reason.is_none(),
        "reason": reason,
        "node_id": node.id,
        "leader_id": m.current_leader,
        "term": m.current_term,
        "commit_index": m.local_committed.map_or(0, |l| l.index),
        "applied_index": m.last_applied.map_or(0, |l| l.index),
    });
    let code = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [(header::CONTENT_TYPE, "application/json")], format!("{body}\n"))
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.render(),
    )
}
