//! The dashboard every node serves at `/dashboard` (docs/reports.md): the
//! cluster as this node sees it, open incidents (serious first, their age
//! against the 24-hour rule), availability this month, backups, drills and
//! links to the monthly reports. Built from the same [`MonthlyReport`] as
//! the report; the node gathers [`Live`] and the records, this module
//! renders (server side, no script, refreshes itself).

use serde::Serialize;
use serde_json::json;

use crate::OpsError;
use crate::drill::Lang;
use crate::incident_text::{human_ms, kind_label, severity_label};
use crate::monthly::MonthlyReport;
use crate::readers::ReadersReport;
use crate::report::{self, TimeZone, local_time, percent};

const DASHBOARD_HTML: &str = include_str!("../templates/dashboard.html");

/// A member of the cluster as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    /// Entries behind the leader (known on the leader only).
    pub lag: Option<u64>,
    /// Free and total disk bytes, and when the node last sampled them
    /// (its latest growth sample).
    pub disk: Option<(u64, u64, u64)>,
}

/// What this node knows now.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub node_id: u64,
    pub term: u64,
    pub leader: Option<u64>,
    pub applied_index: u64,
    pub members: Vec<Member>,
    pub disk_free_bytes: Option<u64>,
    pub disk_low: bool,
}

/// The page, in Vietnamese or English.
pub fn render(
    live: &Live,
    month: &MonthlyReport,
    (day, days30): (&ReadersReport, &ReadersReport),
    now_ms: u64,
    offset: TimeZone,
    lang: Lang,
) -> Result<String, OpsError> {
    let t = crate::i18n::labels(lang);
    let word = |k: &str| t.get(k).copied().unwrap_or_default().to_owned();
    let when = |ms: u64| local_time(ms, offset, lang);

    let members: Vec<_> = live
        .members
        .iter()
        .map(|m| {
            let (role, class) = if live.leader == Some(m.id) {
                (word("role_leader"), "good")
            } else if m.voter {
                (word("role_follower"), "")
            } else {
                (word("role_learner"), "")
            };
            // Red below a tenth of the disk free.
            let (disk, disk_class) = match m.disk {
                Some((free, total, _)) => (
                    format!("{} / {}", report::bytes_in(free, lang), report::bytes_in(total, lang)),
                    if free.saturating_mul(10) < total { "bad" } else { "" },
                ),
                None => ("—".to_owned(), ""),
            };
            json!({
                "id": m.id,
                "addr": m.addr,
                "this": m.id == live.node_id,
                "role": role,
                "class": class,
                "lag": m.lag.map_or("—".to_owned(), |l| l.to_string()),
                "disk": disk,
                "disk_class": disk_class,
            })
        })
        .collect();
    let disk_free = live
        .disk_free_bytes
        .map_or(word("unknown"), |b| report::bytes_in(b, lang));

    let limit = month.serious_limit_ms;
    let mut open: Vec<_> = month.incidents.iter().filter(|i| i.end_ms.is_none()).collect();
    open.sort_by_key(|i| (i.severity != sen_raft::schema::system::SERIOUS, i.start_ms));
    let open_serious = open
        .iter()
        .filter(|i| i.severity == sen_raft::schema::system::SERIOUS)
        .count();
    let open: Vec<_> = open
        .iter()
        .map(|i| {
            let serious = i.severity == sen_raft::schema::system::SERIOUS;
            // Serious: red past the limit, amber past 80% of it.
            let class = if serious && i.duration_ms > limit {
                "bad"
            } else if serious && i.duration_ms * 5 > limit * 4 {
                "warn"
            } else {
                ""
            };
            json!({
                "id": i.id,
                "kind": kind_label(&i.kind, lang),
                "severity": severity_label(&i.severity, lang),
                "start": when(i.start_ms),
                "age": human_ms(i.duration_ms, lang),
                "class": class,
            })
        })
        .collect();

    let sm = &month.summary;
    let write = sm.targets.iter().find(|x| x.target == "write");
    let cards = vec![
        json!({"label": word("card_leader"), "value": live.leader.map_or(word("unknown"), |l| l.to_string()),
               "class": if live.leader.is_some() { "good" } else { "bad" }}),
        json!({"label": word("card_write"), "value": percent(write.and_then(|w| w.availability), lang),
               "class": report::objective_class(write.and_then(|w| w.meets_objective))}),
        json!({"label": word("card_open_serious"), "value": open_serious, "class": if open_serious > 0 { "bad" } else { "good" }}),
        json!({"label": word("card_interruptions"), "value": sm.interruptions, "class": ""}),
    ];
    let targets: Vec<_> = sm
        .targets
        .iter()
        .map(|x| {
            json!({
                "name": report::target_name(&x.target, lang),
                "availability": percent(x.availability, lang),
                "class": report::objective_class(x.meets_objective),
                "down": report::duration_minutes(x.down_minutes, lang),
                "interruptions": x.interruptions,
            })
        })
        .collect();
    let b = &month.backups;
    let backups = json!({
        "runs": b.runs, "succeeded": b.succeeded, "failed": b.failed,
        "class": if b.failed > 0 { "bad" } else { "good" },
        "last": b.last_success_ms.map_or("—".into(), when),
        "last_restore": b.last_restore_passed_ms.map_or_else(|| word("no_restore_proven"), when),
        "restore_class": if b.last_restore_passed_ms.is_some() { "good" } else { "bad" },
    });
    let drills: Vec<_> = month
        .drills
        .iter()
        .rev()
        .take(5)
        .map(|d| {
            json!({
                "id": d.id, "when": when(d.started_at_ms), "rto": human_ms(d.rto_ms, lang), "lost": d.lost_writes,
                "result": if d.passed { word("passed") } else { word("drill_failed") },
                "class": if d.passed { "good" } else { "bad" },
            })
        })
        .collect();
    let ctx = json!({
        "lang": match lang { Lang::En => "en", Lang::Vi => "vi" },
        "t": t,
        "now": when(now_ms),
        "offset": month.time_zone,
        "live": {
            "node_id": live.node_id, "term": live.term, "applied": live.applied_index, "nodes": members,
            "disk_free": disk_free, "disk_class": if live.disk_low { "bad" } else { "" },
        },
        "cards": cards,
        "open": open,
        "targets": targets,
        "backups": backups,
        "drills": drills,
        "last_month": report::previous_month(&month.month),
        "readers": recent_rows(day, days30, lang),
    });
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("dashboard.html", DASHBOARD_HTML)
        .and_then(|_| env.get_template("dashboard.html"))
        .and_then(|tpl| tpl.render(ctx))
        .map_err(|e| OpsError::Io(format!("rendering the dashboard: {e}")))
}

/// Per site: the last 24 hours and the last 30 days side by side.
fn recent_rows(day: &ReadersReport, days30: &ReadersReport, lang: Lang) -> Vec<serde_json::Value> {
    let ms = crate::readers::bound_ms;
    let mut sites: Vec<&str> = day.sites.iter().chain(&days30.sites).map(|s| s.site.as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    sites
        .into_iter()
        .map(|name| {
            let d = day.sites.iter().find(|s| s.site == name);
            let m = days30.sites.iter().find(|s| s.site == name);
            json!({
                "site": name,
                "requests_24h": d.map_or(0, |x| x.requests),
                "readers_24h": d.map_or(0, |x| x.readers_per_day_max),
                "p95_24h": ms(d.and_then(|x| x.p95_ms)),
                "s5xx_24h": d.map_or(0, |x| x.s5xx),
                "requests_30d": m.map_or(0, |x| x.requests),
                "mean_30d": report::decimal(format!("{:.1}", m.map_or(0.0, |x| x.readers_per_day_mean)), lang),
                "max_30d": m.map_or(0, |x| x.readers_per_day_max),
                "p95_30d": ms(m.and_then(|x| x.p95_ms)),
            })
        })
        .collect()
}

/// The sign-in page shown to a browser without credentials.
pub fn login_page(lang: Lang) -> String {
    let t = crate::i18n::labels(lang);
    let word = |k: &str| t.get(k).copied().unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head><body style=\"font-family: sans-serif; max-width: 32rem; margin: 3rem auto\"><h1>{}</h1><p>{}</p><form method=\"post\" action=\"/dashboard/login\"><input type=\"password\" name=\"token\" autocomplete=\"off\" style=\"width: 100%\" required><p><button type=\"submit\">{}</button></p></form></body></html>",
        match lang {
            Lang::En => "en",
            Lang::Vi => "vi",
        },
        word("dash_title"),
        word("login_title"),
        word("login_text"),
        word("login_button"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monthly::{Inputs, compute};
    use sen_raft::schema::system::{Incident, ORDINARY, SERIOUS, kind};

    const H: u64 = 3_600_000;
    const NOV: u64 = 1_793_466_000_000;

    fn live() -> Live {
        Live {
            node_id: 2,
            term: 7,
            leader: Some(1),
            applied_index: 1234,
            members: vec![
                Member {
                    id: 1,
                    addr: "10.0.0.1:7101".into(),
                    voter: true,
                    lag: None,
                    disk: Some((5 << 30, 100 << 30, 0)),
                },
                Member {
                    id: 2,
                    addr: "10.0.0.2:7101".into(),
                    voter: true,
                    lag: None,
                    disk: None,
                },
                Member {
                    id: 4,
                    addr: "10.0.0.4:7101".into(),
                    voter: false,
                    lag: None,
                    disk: None,
                },
            ],
            disk_free_bytes: Some(3 << 30),
            disk_low: false,
        }
    }

    #[test]
    fn serious_open_incidents_come_first_and_age_against_the_limit() {
        let now = NOV + 10 * 24 * H;
        let mut old = Incident::new(kind::QUORUM_LOST, SERIOUS, now - 25 * H, "no leader".into(), vec![1], 1);
        old.id = 1;
        let mut recent = Incident::new(
            kind::NODE_UNREACHABLE,
            SERIOUS,
            now - 20 * H,
            "node 3".into(),
            vec![3],
            1,
        );
        recent.id = 2;
        let mut ordinary = Incident::new(kind::LEADER_CHANGE, ORDINARY, now - 48 * H, "x".into(), vec![1], 1);
        ordinary.id = 3;
        let month = compute(
            "2026-11",
            report::vietnam(),
            NOV,
            NOV + 30 * 24 * H,
            now,
            0.999,
            Inputs {
                incidents: vec![ordinary, recent, old],
                serious_limit_ms: 24 * H,
                ..Default::default()
            },
        );
        let empty = ReadersReport {
            from_ms: 0,
            to_ms: 0,
            sites: vec![],
        };
        let page = render(&live(), &month, (&empty, &empty), now, report::vietnam(), Lang::Vi)
            .unwrap()
            .replace("&#x2f;", "/");
        let pos = |s: &str| page.find(s).unwrap_or_else(|| panic!("{s:?} missing:\n{page}"));
        assert!(
            pos("<td>1</td><td>mất đa số") < pos("<td>2</td><td>mất liên lạc")
                && pos("<td>2</td><td>mất liên lạc") < pos("<td>3</td><td>đổi nút")
        );
        assert!(page.contains(r#"<td class="num bad">25 giờ</td>"#), "past the limit");
        assert!(page.contains(r#"<td class="num warn">20 giờ</td>"#), "past 80% of it");
        assert!(page.contains("<td>2 *</td>"), "this node is marked");
        assert!(page.contains("học việc (không bỏ phiếu)"));
        assert!(page.contains("3,0 GiB"));
        assert!(page.contains(r#"<meta http-equiv="refresh" content="30">"#));
        assert!(page.contains("month=2026-10&amp;lang=vi"), "last month's report");
        assert!(!page.contains("<script"));
        assert!(
            page.contains(r#"<td class="num bad">5,0 GiB / 100,0 GiB</td>"#),
            "a nearly full disk is red"
        );
        let en = render(&live(), &month, (&empty, &empty), now, report::vietnam(), Lang::En).unwrap();
        assert!(en.contains("Open incidents") && en.contains("learner (not voting)"));
    }
}
