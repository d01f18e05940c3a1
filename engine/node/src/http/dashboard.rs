//! `/dashboard` (docs/reports.md): what the Editorial Board and the staff
//! on duty read in a browser, and the monthly reports to download. Read
//! from this node's replica and rendered by `sen_ops::dashboard` and
//! `sen_ops::monthly`, the same code as `sen report monthly`. The guard in
//! `http` lets only users who may read the cluster (auditor and up) in;
//! a browser without credentials gets a sign-in form that stores a token
//! in the `sen_token` cookie.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sen_ops::drill::Lang;
use sen_ops::monthly::{self, Inputs, MonthlyReport};
use sen_ops::report::{self, TimeZone};
use sen_raft::schema::system::growth::{GROWTH_PREFIX, GrowthRecord, growth_day_prefix};
use sen_raft::schema::system::verification::{VERIFY_PREFIX, Verification, verify_day_prefix};
use sen_raft::schema::system::{
    AUDIT_PREFIX, AVAILABILITY_PREFIX, AuditRecord, AvailabilityRecord, BACKUP_RUN_PREFIX, DRILL_PREFIX, DrillReport,
    INCIDENT_PREFIX, Incident, RunRecord, SystemRecord, audit_from, availability::availability_day_prefix,
};
use serde::Deserialize;

use crate::error::ApiError;
use crate::node::Node;

/// The page's own policy: inline styles, nothing else, no framing.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Rows read at most per prefix (a report reads its month).
const MAX_ROWS: usize = 200_000;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    lang: Option<String>,
    month: Option<String>,
    format: Option<String>,
}

/// The portal's time zone (`reports.time-zone`, checked at start).
fn offset(node: &Node) -> TimeZone {
    TimeZone::parse(&node.config.reports.time_zone).unwrap_or_else(|_| report::vietnam())
}

fn lang_of(p: &Params) -> Lang {
    match p.lang.as_deref() {
        Some("en") => Lang::En,
        _ => Lang::Vi,
    }
}

/// Every row under `prefix` after `after` (at most [`MAX_ROWS`]).
fn rows(node: &Node, prefix: &str, after: Option<Vec<u8>>) -> Result<(Vec<Vec<u8>>, bool), ApiError> {
    let mut out = Vec::new();
    let truncated = crate::system::each_value(node, prefix.as_bytes(), after, MAX_ROWS, |v| out.push(v.to_vec()))?;
    Ok((out, truncated))
}

fn decode<T: SystemRecord>(values: Vec<Vec<u8>>) -> Vec<T> {
    values.iter().filter_map(|v| T::from_json(v).ok()).collect()
}

/// The records under `prefix` whose keys start at `first` or after
/// (decoded; those that do not decode are left out), and whether the
/// row cap cut them short.
fn records_from<T: SystemRecord>(node: &Node, prefix: &str, first: &[u8]) -> Result<(Vec<T>, bool), ApiError> {
    // Every key beginning with `first` sorts after `first` less its last byte.
    let (values, truncated) = rows(node, prefix, Some(first[..first.len().saturating_sub(1)].to_vec()))?;
    Ok((decode(values), truncated))
}

/// The monthly report of `month` from this node's replica; `full` adds
/// what only the downloaded report shows (audit log, readers, growth).
fn month_report(node: &Node, month: &str, offset: TimeZone, full: bool) -> Result<MonthlyReport, ApiError> {
    let (from, to) = report::month_window(month, offset).map_err(ApiError::InvalidArgument)?;
    let now = sen_core::now_ms();
    let first_day = sen_core::time::utc_day(from);
    let last_day = sen_core::time::utc_day(to.saturating_sub(1));
    let records: Vec<AvailabilityRecord> =
        records_from::<AvailabilityRecord>(node, AVAILABILITY_PREFIX, &availability_day_prefix(&first_day))?
            .0
            .into_iter()
            .filter(|r| r.day >= first_day && r.day <= last_day)
            .collect();
    let incidents: Vec<Incident> = decode(rows(node, INCIDENT_PREFIX, None)?.0);
    let drills: Vec<DrillReport> = decode(rows(node, DRILL_PREFIX, None)?.0);
    let runs: Vec<RunRecord> = decode(rows(node, BACKUP_RUN_PREFIX, None)?.0);
    // The last year of checks and restore drills: the newest restore that
    // passed is named even when it is older than the month.
    let year_before = sen_core::time::utc_day(from.saturating_sub(366 * sen_core::time::DAY_MS));
    let verifications: Vec<Verification> =
        records_from::<Verification>(node, VERIFY_PREFIX, &verify_day_prefix(&year_before))?
            .0
            .into_iter()
            .filter(|v| v.at_ms < to)
            .collect();
    let (availability, _) = report::compute(&records, &incidents, from, to, now);
    let (mut audit, mut audit_truncated, mut readers, mut growth) = (None, false, None, None);
    if full {
        let (records, truncated) = records_from::<AuditRecord>(node, AUDIT_PREFIX, &audit_from(from))?;
        audit = Some(records.into_iter().filter(|r| r.at_ms < to).collect());
        audit_truncated = truncated;
        readers = Some(readers_between(node, from, to)?);
        let (samples, _) = records_from::<GrowthRecord>(node, GROWTH_PREFIX, &growth_day_prefix(&first_day))?;
        growth = Some(sen_ops::growth::compute(&samples, from, to));
    }
    Ok(monthly::compute(
        month,
        offset,
        from,
        to,
        now,
        node.config.reports.objective / 100.0,
        Inputs {
            growth,
            readers,
            availability: Some(availability),
            incidents,
            drills,
            runs,
            verifications,
            audit,
            audit_truncated,
            serious_limit_ms: node.config.incidents.serious_limit.as_millis() as u64,
        },
    ))
}

/// Readers and speed of `[from, to)` from this replica.
fn readers_between(node: &Node, from: u64, to: u64) -> Result<sen_ops::readers::ReadersReport, ApiError> {
    use sen_raft::schema::system::traffic::{READERS_PREFIX, TRAFFIC_PREFIX, readers_day_prefix, traffic_day_prefix};
    let first_day = sen_core::time::utc_day(from);
    let (traffic, _) =
        records_from::<sen_raft::schema::system::TrafficRecord>(node, TRAFFIC_PREFIX, &traffic_day_prefix(&first_day))?;
    let (readers, _) =
        records_from::<sen_raft::schema::system::ReadersRecord>(node, READERS_PREFIX, &readers_day_prefix(&first_day))?;
    Ok(sen_ops::readers::compute(&traffic, &readers, from, to).0)
}

/// The latest growth sample of every node (today's or yesterday's).
fn latest_samples(node: &Node, now: u64) -> Result<std::collections::BTreeMap<u64, GrowthRecord>, ApiError> {
    let yesterday = sen_core::time::utc_day(now.saturating_sub(sen_core::time::DAY_MS));
    let mut latest: std::collections::BTreeMap<u64, GrowthRecord> = std::collections::BTreeMap::new();
    for g in records_from::<GrowthRecord>(node, GROWTH_PREFIX, &growth_day_prefix(&yesterday))?.0 {
        if latest.get(&g.node).is_none_or(|l| l.at_ms < g.at_ms) {
            latest.insert(g.node, g);
        }
    }
    Ok(latest)
}

fn live(node: &Node) -> sen_ops::dashboard::Live {
    let m = node.raft_metrics();
    let mem = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = mem.voter_ids().collect();
    let last = m.last_log_index.unwrap_or(0);
    let samples = latest_samples(node, sen_core::now_ms()).unwrap_or_default();
    let members = mem
        .nodes()
        .map(|(id, n)| sen_ops::dashboard::Member {
            id: *id,
            addr: n.addr.clone(),
            voter: voters.contains(id),
            disk: samples
                .get(id)
                .map(|g| (g.disk_free_bytes, g.disk_total_bytes, g.at_ms)),
            lag: m
                .replication
                .as_ref()
                .and_then(|r| r.get(id))
                .map(|l| last.saturating_sub(l.as_ref().map_or(0, |l| l.index))),
        })
        .collect();
    sen_ops::dashboard::Live {
        node_id: node.id,
        term: m.current_term,
        leader: m.current_leader,
        applied_index: m.last_applied.map_or(0, |l| l.index),
        members,
        disk_free_bytes: u64::try_from(node.metrics.disk_free_bytes.get())
            .ok()
            .filter(|b| *b > 0),
        disk_low: node.metrics.disk_low.get() != 0,
    }
}

/// Only the leader knows how far behind each member is: a follower asks
/// it (`Cluster/Status`, as this node, within `server.status-timeout`)
/// and shows the leader's figures; without an answer the lag stays
/// unknown ("—"), never guessed.
async fn fill_lags_from_leader(node: &Arc<Node>, live: &mut sen_ops::dashboard::Live) {
    if live.members.iter().all(|m| m.lag.is_some()) {
        return;
    }
    let Some(r) = crate::forward::leader_status(node, None, node.config.server.status_timeout).await else {
        return;
    };
    for m in &mut live.members {
        if let Some(s) = r.members.iter().find(|s| s.id == m.id) {
            m.lag = Some(s.replication_lag);
        }
    }
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn failed(what: &str, e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{what}: {e}\n"),
    )
        .into_response()
}

/// The sign-in form (401: the browser has no credentials).
pub fn login(lang: Option<&str>) -> Response {
    let lang = if lang == Some("en") { Lang::En } else { Lang::Vi };
    html(StatusCode::UNAUTHORIZED, sen_ops::dashboard::login_page(lang))
}

/// `GET /dashboard?lang=vi|en`.
pub async fn page(State(node): State<Arc<Node>>, Query(p): Query<Params>) -> Response {
    let lang = lang_of(&p);
    let offset = offset(&node);
    let mut now_live = live(&node);
    fill_lags_from_leader(&node, &mut now_live).await;
    let n = node.clone();
    let built = tokio::task::spawn_blocking(move || {
        let now = sen_core::now_ms();
        let month = month_report(&n, &report::current_month(now, offset), offset, false)?;
        let day = readers_between(&n, now.saturating_sub(sen_core::time::DAY_MS), now)?;
        let days30 = readers_between(&n, now.saturating_sub(30 * sen_core::time::DAY_MS), now)?;
        sen_ops::dashboard::render(&now_live, &month, (&day, &days30), now, offset, lang)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await;
    match built {
        Ok(Ok(body)) => html(StatusCode::OK, body),
        Ok(Err(e)) => failed("building the dashboard", e),
        Err(e) => failed("building the dashboard", e),
    }
}

/// `GET /dashboard/report?month=YYYY-MM&lang=vi|en&format=html|md|json`.
pub async fn download(State(node): State<Arc<Node>>, Query(p): Query<Params>) -> Response {
    let lang = lang_of(&p);
    let offset = offset(&node);
    let month = p
        .month
        .clone()
        .unwrap_or_else(|| report::current_month(sen_core::now_ms(), offset));
    if report::month_window(&month, offset).is_err() {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("month {month:?}: expected YYYY-MM (e.g. 2026-11)\n"),
        )
            .into_response();
    }
    let format = p.format.clone().unwrap_or_else(|| "html".into());
    if !matches!(format.as_str(), "html" | "md" | "json") {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("format {format:?}: use html, md or json\n"),
        )
            .into_response();
    }
    let n = node.clone();
    let m = month.clone();
    let built = tokio::task::spawn_blocking(move || month_report(&n, &m, offset, true)).await;
    let r = match built {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed("building the report", e),
        Err(e) => return failed("building the report", e),
    };
    let file = format!(
        "sen-report-{month}-{}.{format}",
        if lang == Lang::En { "en" } else { "vi" }
    );
    let (body, ctype) = match format.as_str() {
        "json" => match serde_json::to_string_pretty(&r) {
            Ok(j) => (j, "application/json"),
            Err(e) => return failed("building the report", e),
        },
        "md" => (monthly::markdown(&r, offset, lang), "text/markdown; charset=utf-8"),
        _ => match monthly::html(&r, offset, lang) {
            Ok(h) => {
                let mut resp = html(StatusCode::OK, h);
                if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{file}\"")) {
                    resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
                }
                return resp;
            }
            Err(e) => return failed("building the report", e),
        },
    };
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, ctype)], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /dashboard/login` (form `token=…`): keep the token in an
/// HTTP-only, same-site cookie and go to the dashboard, which checks it.
pub async fn login_post(State(node): State<Arc<Node>>, axum::Form(f): axum::Form<LoginForm>) -> Response {
    let token = f.token.trim();
    // A token is `sen_<id>_<secret>`-like printable ASCII; refuse anything
    // that could break the header.
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        return login(None);
    }
    let secure = if node.peers.tls().is_some() && node.config.tls.http {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("sen_token={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}");
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
