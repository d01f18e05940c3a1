//! `/metrics` for Prometheus: the text format passes `promtool check
//! metrics`, OpenMetrics is served to those who ask for it, the gauges read
//! from the control plane are there, and the shipped alert rules pass
//! their unit tests (docs/deploy/prometheus).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// `promtool` (Debian's `prometheus` package, installed by
/// scripts/setup.sh).
fn promtool() -> Command {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "promtool is not installed: run scripts/setup.sh (it installs Debian's prometheus package)"
    );
    Command::new("promtool")
}

fn check_metrics(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_carry_the_control_plane_gauges() {
    let mut c = cluster("metrics", FAST);
    c.form(3).await.unwrap();
    let web = c.web(1).unwrap();

    // The gauges read from the control plane appear once the node has
    // read it (every 15 s).
    let text = sen_chaos::wait_for("the status gauges", T, || async {
        let r = web.request("GET", "/metrics", &[]).await?;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        Ok(body
            .contains("sen_incidents_open{node=\"1\",severity=\"serious\"}")
            .then_some((r, body)))
    })
    .await
    .unwrap();
    let (r, body) = text;
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers
    );
    for name in [
        "sen_backup_last_success_timestamp_seconds",
        "sen_backup_last_run_failed",
        "sen_backup_schedule_interval_seconds",
        "sen_incident_oldest_open_serious_seconds",
        "sen_probes_total",
    ] {
        assert!(body.contains(&format!("# TYPE {name} ")), "{name} missing:\n{body}");
    }
    let (ok, lint) = check_metrics(&body);
    assert!(ok, "promtool check metrics failed:\n{lint}\n{body}");

    // What the Grafana dashboard and the alerts query exists on the nodes
    // (the leader exports the replication lag, followers do not).
    let mut families = std::collections::BTreeSet::new();
    for id in 1..=3 {
        // One answer of a site (here: none of that name), so the HTTP
        // series exist.
        let web = c.web(id).unwrap();
        assert_eq!(web.get_status("/sites/nothing/").await.unwrap().0, 404);
        let text = web.get("/metrics").await.unwrap();
        families.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
                .map(str::to_owned),
        );
    }
    the_shipped_queries_name_real_series(&families);

    // A Prometheus server asks for OpenMetrics and gets it.
    let r = web
        .request(
            "GET",
            "/metrics",
            &[(
                "Accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )],
        )
        .await
        .unwrap();
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/openmetrics-text")
    );
    assert!(String::from_utf8_lossy(&r.body).ends_with("# EOF\n"));
}

#[test]
fn the_shipped_alert_rules_pass_their_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy/prometheus");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let out = promtool().args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every series the shipped Grafana dashboard and alert rules query is one
/// the nodes export (a renamed metric would leave them silently empty).
fn the_shipped_queries_name_real_series(families: &std::collections::BTreeSet<String>) {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/sen.json")).unwrap()).unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    queries.push(std::fs::read_to_string(deploy.join("prometheus/alerts.yml")).unwrap());
    let mut checked = 0;
    for q in &queries {
        for (i, _) in q.match_indices("sen_") {
            if i > 0 && q.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = q[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
                .unwrap_or(&name);
            assert!(
                families.contains(family),
                "{name} is not exported by a node (query: {q})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} series checked");
}
