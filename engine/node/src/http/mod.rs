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
//!
//! Access (`guard`, before everything else): `/livez`, `/readyz` and
//! public sites are open; with TLS on, `/metrics` needs an auditor,
//! operator or cluster-admin, and a private site (`sen site set --private`)
//! a reader of it — by `Authorization: Bearer <token>` or the `sen_token`
//! cookie. Refusals are audited like gRPC ones.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use sen_core::auth::{Action, Credential, Principal};
use sen_raft::schema::system::{AuditRecord, SystemRecord};

use crate::auth::{Auth, Presented, Tally, denied_message, permits};
use crate::node::Node;

pub mod content;
pub mod dashboard;
pub mod front;
pub mod serve;

/// What the HTTP handlers need besides the node.
#[derive(Clone)]
pub struct HttpAuth {
    pub node: Arc<Node>,
    pub auth: Arc<Auth>,
}

/// The token of an HTTP request: `Authorization: Bearer …` or the
/// `sen_token` cookie (for browsers).
fn token(headers: &axum::http::HeaderMap) -> Option<&str> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("sen_token="))
}

/// Check `action` for the caller of an HTTP request; the refusal response
/// otherwise (counted against the client's address and audited; an address
/// refused too often gets 429 before any work).
fn check_http(
    h: &HttpAuth,
    req: &axum::extract::Request,
    action: Action<'_>,
) -> Result<(), Box<axum::response::Response>> {
    let remote = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let from = remote.map(|a| a.to_string()).unwrap_or_default();
    let method = format!("{} {}", req.method(), req.uri().path());
    let respond = |status: StatusCode, msg: &str| {
        let mut r = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{msg}\n"),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED
            && let Ok(v) = "Bearer realm=\"sen\"".parse()
        {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        Box::new(r)
    };
    if let Some(r) = remote
        && h.auth.is_throttled(r.ip())
    {
        count(&h.node, "throttled");
        let d = crate::auth::Auth::throttled_denial(r.ip());
        return Err(respond(StatusCode::TOO_MANY_REQUESTS, d.message()));
    }
    let token = token(req.headers());
    let cert = req.extensions().get::<crate::tls::PeerCertificate>();
    // A visitor without credentials (a browser on a private page) is
    // refused but does not count toward throttling its address, which
    // may be a whole office behind one NAT; its refusals are audited
    // within a per-address budget.
    let with_credentials = token.is_some() || cert.is_some();
    let refuse = |status: StatusCode, who: &Principal, result: &str, msg: String| {
        count(&h.node, result);
        let tally = match remote {
            Some(r) if with_credentials => h.auth.count_refusal(r.ip()),
            Some(r) if !h.auth.may_audit(r.ip()) => Tally::Throttled,
            _ => Tally::Counted,
        };
        let logged = match tally {
            Tally::Throttled => None,
            Tally::Counted => Some(msg.clone()),
            Tally::NowThrottled => Some(format!("{msg} ({})", crate::auth::THROTTLED_NOTE)),
        };
        if let Some(logged) = logged {
            let (name, token) = match who {
                Principal::User {
                    name,
                    via: Credential::Token { id },
                } => (name.clone(), id.clone()),
                Principal::User { name, .. } => (name.clone(), String::new()),
                other => (other.to_string(), String::new()),
            };
            h.auth.audit.push(AuditRecord {
                version: AuditRecord::VERSION,
                at_ms: sen_core::now_ms(),
                who: name,
                token,
                method: method.clone(),
                resource: action.to_string(),
                result: result.into(),
                code: status.as_u16().to_string(),
                message: logged.chars().take(500).collect(),
                from: from.clone(),
                node: h.node.id,
            });
        }
        respond(status, &msg)
    };
    let presented = Presented {
        cert: cert.map(|c| c.0.as_slice()),
        token,
        on_behalf: None,
        from_node: None,
        caller_addr: None,
    };
    let (principal, grants, _) = match h.auth.resolve(h.node.as_ref(), &presented, sen_core::now_ms()) {
        Ok(x) => x,
        Err(d) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                &Principal::Anonymous,
                d.result(),
                d.message().to_owned(),
            ));
        }
    };
    if permits(&principal, &grants, &action) {
        return Ok(());
    }
    let (status, result) = if principal == Principal::Anonymous {
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    } else {
        (StatusCode::FORBIDDEN, "denied")
    };
    Err(refuse(status, &principal, result, denied_message(&principal, &action)))
}

fn count(node: &Node, result: &str) {
    node.metrics
        .auth_refused
        .get_or_create(&crate::metrics::ResultLabel { result: result.into() })
        .inc();
}

/// Access to the node's own endpoints and to private sites.
async fn guard(
    State(h): State<HttpAuth>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !h.auth.secure {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let site = match content::vhost_site(&h.node, req.headers()) {
        Some(s) => Some(s),
        // Signing in only stores a cookie; the next page checks it.
        None if path == "/dashboard/login" => None,
        None if path == "/dashboard" || path.starts_with("/dashboard/") => {
            let browser_without_credentials =
                token(req.headers()).is_none() && req.extensions().get::<crate::tls::PeerCertificate>().is_none();
            if browser_without_credentials && path == "/dashboard" {
                let lang = req.uri().query().and_then(|q| q.contains("lang=en").then_some("en"));
                return dashboard::login(lang);
            }
            if let Err(r) = check_http(&h, &req, Action::ClusterRead) {
                return *r;
            }
            None
        }
        None if path == "/metrics" => {
            if let Err(r) = check_http(&h, &req, Action::ClusterRead) {
                return *r;
            }
            None
        }
        None => path
            .strip_prefix("/sites/")
            .map(|rest| content::percent_decode(rest.split('/').next().unwrap_or_default())),
    };
    if let Some(site) = site
        && h.auth.site_is_private(h.node.as_ref(), &site)
        && let Err(r) = check_http(&h, &req, Action::SiteRead(&site))
    {
        return *r;
    }
    next.run(req).await
}

/// Everything the HTTP listener answers: cached site files straight from
/// [`front`], the rest through the router.
pub fn front(node: Arc<Node>, auth: Arc<Auth>) -> front::Front {
    front::Front::new(node.clone(), auth.clone(), router(node, auth))
}

fn router(node: Arc<Node>, auth: Arc<Auth>) -> Router {
    let h = HttpAuth {
        node: node.clone(),
        auth,
    };
    router_inner(node.clone())
        .layer(axum::middleware::from_fn_with_state(h, guard))
        .layer(axum::middleware::from_fn_with_state(node, harden))
}

/// The node's own endpoints.
const ADMIN_PATHS: &[&str] = &["/livez", "/readyz", "/metrics"];

/// The host a request names (`Host`, or the HTTP/2 authority), lower
/// case, without the port.
fn request_host(req: &axum::extract::Request) -> Option<String> {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))?;
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
        None => raw.rsplit_once(':').map_or(raw.as_str(), |(h, _)| h).to_owned(),
    };
    Some(host.to_ascii_lowercase())
}

/// Whether the node's own endpoints answer under `host`: an IP address,
/// `localhost`, or a name in `server.admin-hosts`; never a site's
/// virtual host or a name nobody configured.
fn is_admin_host(node: &Node, host: Option<&str>) -> bool {
    let Some(host) = host else {
        // HTTP/1.0 without Host: only a local tool sends that.
        return true;
    };
    host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok()
        || node
            .config
            .server
            .admin_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
}

/// Before everything: the node's own endpoints only under its admin host
/// names; after: `nosniff` on every answer and the configured CSP on
/// every HTML page.
async fn harden(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    let mut resp = if (ADMIN_PATHS.contains(&path) || path == "/dashboard" || path.starts_with("/dashboard/"))
        && content::vhost_site(&node, req.headers()).is_none()
        && !is_admin_host(&node, request_host(&req).as_deref())
    {
        content::fallback(req.uri().clone()).await
    } else {
        next.run(req).await
    };
    secure_headers(&node, &mut resp);
    resp
}

/// `nosniff` on every answer and the configured CSP on every HTML page.
pub fn secure_headers(node: &Node, resp: &mut axum::response::Response) {
    let headers = resp.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html
        && !node.config.content.csp.is_empty()
        && !headers.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(v) = axum::http::HeaderValue::from_str(&node.config.content.csp)
    {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

fn router_inner(node: Arc<Node>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/report", get(dashboard::download))
        .route("/dashboard/login", axum::routing::post(dashboard::login_post))
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

/// OpenMetrics for clients that ask for it (a Prometheus server does), the
/// Prometheus text format otherwise (curl, `promtool check metrics`).
async fn metrics(State(node): State<Arc<Node>>, headers: HeaderMap) -> impl IntoResponse {
    node.refresh_scraped_gauges();
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            node.metrics.render(),
        )
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            node.metrics.render_text(),
        )
    }
}
