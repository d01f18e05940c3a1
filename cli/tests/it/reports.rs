//! What the Editorial Board reads (docs/reports.md): availability as the
//! nodes' built-in probes measured it.

use serde_json::Value;

use crate::common::*;

fn report(c: &Cluster, extra: &[&str]) -> (i32, String, String) {
    let eps = c.endpoints().join(",");
    let mut args = vec!["--endpoints", eps.as_str(), "report", "availability"];
    args.extend_from_slice(extra);
    sen(&args)
}

fn report_json(c: &Cluster) -> Value {
    let (code, out, err) = report(c, &["--last", "1h", "--output", "json"]);
    assert_eq!(code, 0, "sen report availability failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("report is not JSON ({e}): {out}"))
}

/// Node 1's failed write probes so far.
async fn write_failures(c: &Cluster) -> f64 {
    c.metric_where(1, "sen_probes_total", &[("target", "write"), ("result", "failed")])
        .await
        .unwrap_or(0.0)
}

fn target<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["targets"].as_array()?.iter().find(|t| t["target"] == name)
}

/// Probes run on every node from the start; a write outage (two of three
/// nodes stopped) shows in the write target as a degraded or down window
/// while the site, served by the surviving node from its own copy, has no
/// down minute; the report names the nodes that measured and prints in
/// Vietnamese.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_measure_a_write_outage_and_the_report_shows_it() {
    let mut c = cluster(
        "report-avail",
        &format!("{FAST}[probe]\ninterval = \"1s\"\ntimeout = \"1s\"\n"),
    );
    c.form(3).await.unwrap();
    let site = TestDir::new("report-site");
    std::fs::write(site.path.join("index.html"), "<h1>Cổng thông tin</h1>").unwrap();
    let eps = c.endpoints().join(",");
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "create", "portal"]);
    assert_eq!(code, 0, "site create failed: {err}");
    let (code, _, err) = sen(&[
        "--endpoints",
        &eps,
        "site",
        "push",
        "portal",
        site.path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "push failed: {err}");

    // Every node's records reach the leader (sent every 6 probes).
    sen_chaos::wait_for("every node's probe records", T, || async {
        let r = report_json(&c);
        let nodes = r["nodes"].as_array().map(Vec::len).unwrap_or(0);
        let measured = |t: &str| target(&r, t).map_or(0, |t| t["measured_minutes"].as_u64().unwrap_or(0));
        Ok((nodes == 3 && measured("write") > 0 && measured("read") > 0 && measured("site:portal") > 0).then_some(()))
    })
    .await
    .unwrap();

    // Stop two nodes: node 1 cannot write (no quorum) but keeps serving.
    let before = write_failures(&c).await;
    c.pause(2).unwrap();
    c.pause(3).unwrap();
    sen_chaos::wait_for("node 1's write probes to fail", T, || async {
        Ok((write_failures(&c).await >= before + 5.0).then_some(()))
    })
    .await
    .unwrap();
    c.resume(2).unwrap();
    c.resume(3).unwrap();
    c.wait_leader(None, T).await.unwrap();

    // Node 1's failures reach the stored records once it can write again.
    sen_chaos::wait_for("the outage in the report", T, || async {
        let r = report_json(&c);
        Ok(target(&r, "write")
            .is_some_and(|w| !w["outages"].as_array().unwrap().is_empty())
            .then_some(r))
    })
    .await
    .unwrap();
    let r = report_json(&c);
    assert_eq!(r["nodes"], serde_json::json!([1, 2, 3]), "{r}");
    let write = target(&r, "write").unwrap();
    let a = write["availability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&a), "{write}");
    let outage = &write["outages"][0];
    assert!(outage["minutes"].as_u64().unwrap() >= 1, "{outage}");
    assert!(outage["end_ms"].as_u64() > outage["start_ms"].as_u64(), "{outage}");
    let portal = target(&r, "site:portal").unwrap();
    assert_eq!(portal["down_minutes"], 0, "node 1 kept serving the site: {portal}");
    assert_eq!(portal["availability"].as_f64(), Some(1.0), "{portal}");

    // The same report for the Board, in Vietnamese.
    let (code, out, err) = report(&c, &["--last", "1h", "--lang", "vi", "--utc-offset", "+07:00"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Độ sẵn sàng"), "{out}");
    assert!(out.contains("site:portal") || out.contains("portal"), "{out}");

    // The monthly report of this month (at UTC+07:00) holds the same
    // interruption, and the admin's changes from the audit log.
    let local = sen_core::now_ms() + 7 * 3_600_000;
    let month = &sen_core::time::utc_day(local)[..7];
    let eps = c.endpoints().join(",");
    let (code, out, err) = sen(&[
        "--endpoints",
        &eps,
        "report",
        "monthly",
        "--month",
        month,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let m: Value = serde_json::from_str(&out).unwrap();
    assert!(m["summary"]["interruptions"].as_u64().unwrap() >= 1, "{m}");
    assert_eq!(m["audit"]["available"], true, "{m}");
    assert!(
        m["audit"]["by_user"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["who"] == "admin" && u["changes"].as_u64() > Some(0)),
        "{m}"
    );
    let file = site.path.join("report.md");
    let (code, _, err) = sen(&[
        "--endpoints",
        &eps,
        "report",
        "monthly",
        "--month",
        month,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let md = std::fs::read_to_string(&file).unwrap();
    assert!(md.starts_with("# Báo cáo quản lý, vận hành tháng"), "{md}");
    assert!(md.contains("## 3. Sự cố, nguyên nhân và biện pháp khắc phục"), "{md}");

    let page = site.path.join("report.html");
    let (code, _, err) = sen(&[
        "--endpoints",
        &eps,
        "report",
        "monthly",
        "--month",
        month,
        "--format",
        "html",
        "--out",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("<svg"), "{html}");
    let (code, _, err) = sen(&[
        "--endpoints",
        &eps,
        "report",
        "monthly",
        "--month",
        month,
        "--format",
        "pdf",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--out"), "{err}");

    // A malformed period is refused with what to write instead.
    let (code, _, err) = report(&c, &["--month", "2026-13"]);
    assert_ne!(code, 0);
    assert!(err.contains("2026-13"), "{err}");
}
