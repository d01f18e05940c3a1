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

/// The dashboard: a sign-in form without credentials, 403 without a role
/// that may read the cluster, the page for the Board's auditor (in
/// Vietnamese unless asked otherwise), the reports to download, and a
/// token pasted into the form kept as a cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_needs_an_auditor_and_offers_the_reports() {
    let mut c = cluster("dashboard", FAST);
    c.form(3).await.unwrap();
    let admin = c.client().unwrap();
    admin.add_user("ban-bien-tap").await.unwrap();
    admin.grant("ban-bien-tap", "auditor", vec![]).await.unwrap();
    let board = admin.create_token("ban-bien-tap", "browser", 0).await.unwrap().token;
    admin.add_user("khach").await.unwrap();
    let stranger = admin.create_token("khach", "", 0).await.unwrap().token;
    let web = c.web(1).unwrap();
    let visitor = web.anonymous();

    let (code, body) = visitor.get_status("/dashboard").await.unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("<form") && body.contains("/dashboard/login"), "{body}");
    assert_eq!(
        visitor.get_status("/dashboard/report?format=json").await.unwrap().0,
        401
    );
    // The token must reach the node first (it may be a follower).
    let as_board = web.with_token(&board);
    let (code, body) = sen_chaos::wait_for("the auditor's token on node 1", T, || async {
        let r = as_board.get_status("/dashboard").await?;
        Ok((r.0 == 200).then_some(r))
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("tình hình vận hành cổng thông tin"), "{body}");
    for addr in c.endpoints() {
        assert!(body.contains(&addr), "member {addr} missing: {body}");
    }
    assert_eq!(web.with_token(&stranger).get_status("/dashboard").await.unwrap().0, 403);
    let (_, en) = as_board.get_status("/dashboard?lang=en").await.unwrap();
    assert!(en.contains("Open incidents"), "{en}");
    // A follower's page shows every member's lag as the leader knows it.
    let leader = c.wait_leader(None, T).await.unwrap();
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let (code, page) = c
        .web(follower)
        .unwrap()
        .with_token(&board)
        .get_status("/dashboard")
        .await
        .unwrap();
    assert_eq!(code, 200, "{page}");
    // The members table's lag cell: `<td class="num">LAG</td><td class="num DISK`.
    let lags: Vec<&str> = page
        .split(r#"<td class="num">"#)
        .skip(1)
        .filter_map(|cell| cell.split_once(r#"</td><td class="num "#).map(|(lag, _)| lag))
        .collect();
    assert_eq!(lags.len(), 3, "{page}");
    assert!(
        lags.iter().all(|l| l.parse::<u64>().is_ok()),
        "every member's lag on follower {follower}'s page: {lags:?}"
    );

    let r = as_board
        .request("GET", "/dashboard/report?format=json", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-disposition").unwrap_or("").starts_with("attachment"));
    let j: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(j["summary"]["targets"].is_array(), "{j}");
    assert_eq!(j["audit"]["available"], true);
    let (code, html) = as_board
        .get_status("/dashboard/report?lang=en&format=html")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(html.contains("Operations report for"), "{html}");
    assert_eq!(
        as_board.get_status("/dashboard/report?month=2026-13").await.unwrap().0,
        400
    );

    // In a real browser (headless Chromium over the DevTools protocol):
    // the live page and the report load with the auditor's token, without
    // a console error, a refused style or a failed request; their figures
    // are on the page, a screenshot of each is kept for review, and the
    // report prints to PDF.
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let base = format!("https://{}", c.http(1).unwrap());
    let bearer = format!("Bearer {board}");
    for (name, path, expected) in [
        (
            "dashboard-vi",
            "/dashboard",
            &["Sự cố đang mở", "Tính sẵn sàng tháng này", "Cụm máy chủ"][..],
        ),
        (
            "report-en",
            "/dashboard/report?lang=en&format=html",
            &["Who changed what", "Readers and access speed"][..],
        ),
    ] {
        let url = format!("{base}{path}");
        let bearer = bearer.clone();
        let page = tokio::task::spawn_blocking(move || {
            crate::browser::render(&url, &[("Authorization", &bearer)], name == "report-en")
        })
        .await
        .unwrap();
        assert!(page.problems.is_empty(), "{name}: {:#?}", page.problems);
        for figure in expected {
            assert!(page.text.contains(figure), "{name} lacks {figure:?}: {}", page.text);
        }
        assert!(
            page.png.starts_with(b"\x89PNG") && page.png.len() > 10_000,
            "{name}: {} bytes",
            page.png.len()
        );
        std::fs::write(shots.join(format!("{name}.png")), &page.png).unwrap();
        if let Some(pdf) = page.pdf {
            assert!(pdf.starts_with(b"%PDF-") && pdf.len() > 10_000, "{} bytes", pdf.len());
            std::fs::write(shots.join(format!("{name}.pdf")), pdf).unwrap();
        }
    }
    // The same with the CLI, which prints through Chromium too.
    let pdf = shots.join("report-vi.pdf");
    let (code, _, err) = sen(&[
        "--endpoints",
        &c.endpoints().join(","),
        "report",
        "monthly",
        "--format",
        "pdf",
        "--out",
        pdf.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(
        bytes.starts_with(b"%PDF-") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );

    // Signing in through the form: a cookie the page then accepts.
    let url = format!("https://{}/dashboard/login", c.http(1).unwrap());
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--cacert"])
        .arg(shared_certs().join("ca.pem"))
        .args(["--data-urlencode", &format!("token={board}"), &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(
        head.lines().next().is_some_and(|l| l.trim_end().ends_with(" 303")),
        "{head}"
    );
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Secure"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let r = visitor.request("GET", "/dashboard", &[("Cookie", pair)]).await.unwrap();
    assert_eq!(r.status, 200);
}

/// Readers from 50 distinct loopback addresses to one site through all
/// three nodes, and from 5 to another: the monthly report counts each
/// site's readers (50 ± 2 and 5) and every request exactly, over nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_are_counted_per_site_across_nodes() {
    let mut c = cluster(
        "readers",
        &format!("{FAST}[probe]\ninterval = \"1s\"\ntimeout = \"1s\"\ngrowth-interval = \"2s\"\n"),
    );
    c.form(3).await.unwrap();
    let admin = c.client().unwrap();
    let tree = c.root().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("index.html"), "Lịch công tác tuần").unwrap();
    for site in ["portal", "gazette"] {
        admin.create_site(site).await.unwrap();
        admin.push(site, &tree, &Default::default(), None).await.unwrap();
    }
    let ca = shared_certs().join("ca.pem");
    let get = |from: String, node: u64, site: &str| {
        let url = format!("https://{}/sites/{site}/", c.http(node).unwrap());
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--interface",
                &from,
                "--cacert",
            ])
            .arg(&ca)
            .arg(&url)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "GET {url} from {from}");
    };
    // Every node must have applied the sites before serving them.
    let leader = c.wait_leader(None, T).await.unwrap();
    let applied = c.local_status(leader, T).await.unwrap().applied_index;
    for id in 1..=3 {
        c.wait_applied(id, applied, T).await.unwrap();
    }
    for i in 0..50u64 {
        for k in 0..2 {
            get(format!("127.0.2.{}", i + 1), (i + k) % 3 + 1, "portal");
        }
    }
    for i in 0..5u64 {
        for node in 1..=3 {
            get(format!("127.0.3.{}", i + 1), node, "gazette");
        }
    }

    let local = sen_core::now_ms() + 7 * 3_600_000;
    let month = sen_core::time::utc_day(local)[..7].to_owned();
    let eps = c.endpoints().join(",");
    let site = |r: &Value, name: &str| -> Option<Value> {
        r["readers"]["sites"]
            .as_array()?
            .iter()
            .find(|s| s["site"] == name)
            .cloned()
    };
    let r = sen_chaos::wait_for("every node's counts in the cluster", T, || async {
        let (code, out, err) = sen(&[
            "--endpoints",
            &eps,
            "report",
            "monthly",
            "--month",
            &month,
            "--format",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        let grown = r["growth"]["sites"].as_array().is_some_and(|s| {
            s.iter()
                .any(|x| x["name"] == "portal" && x["end_bytes"].as_u64() > Some(0))
        });
        let done = site(&r, "portal").is_some_and(|p| p["requests"] == 100)
            && site(&r, "gazette").is_some_and(|g| g["requests"] == 15)
            && grown
            && r["growth"]["nodes"].as_array().is_some_and(|n| n.len() == 3);
        Ok(done.then_some(r))
    })
    .await
    .unwrap();
    let portal = site(&r, "portal").unwrap();
    let readers = portal["readers_per_day_max"].as_u64().unwrap();
    // 50 readers in 1,024 registers: the estimate (linear counting) only
    // loses readers that share a register, about 1.2 pairs on average, and
    // the daily key is random per cluster. 4 shared pairs (an estimate of
    // 47) happen in ~4 % of clusters, 7 (44) in ~0.03 %: allow up to 6.
    assert!(
        (45..=52).contains(&readers),
        "50 readers estimated as {readers}: {portal}"
    );
    assert_eq!(portal["s2xx"], 100);
    let gazette = site(&r, "gazette").unwrap();
    assert_eq!(gazette["readers_per_day_max"], 5, "{gazette}");
    // The nodes' own probes of the sites are not readers.
    assert!(portal["p50_ms"].as_u64().is_some());
    // The dashboard shows the same counts for the last 24 hours, and every
    // node's free disk from its latest sample.
    let page = c.web(1).unwrap().get("/dashboard?lang=en").await.unwrap();
    assert!(page.contains(r#"<td>portal</td><td class="num">100</td>"#), "{page}");
    assert!(
        page.contains(r#"<td>gazette</td><td class="num">15</td><td class="num">5</td>"#),
        "{page}"
    );
    assert!(
        !page.contains(r#"<td class="num ">—</td></tr>"#),
        "a node without a disk sample: {page}"
    );
    // Growth: every node sampled what it holds.
    for n in r["growth"]["nodes"].as_array().unwrap() {
        assert!(n["data_dir_end_bytes"].as_u64() > Some(0), "{n}");
        assert!(n["disk_total_bytes"].as_u64() >= n["disk_free_bytes"].as_u64(), "{n}");
    }
}

/// A site's probe path: once set, the probes fetch that page and the site
/// counts as down while it is missing; `site list` shows it; `/` goes
/// back to the front page; a path outside the site, or for a site that
/// does not exist, is refused with what to write instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_is_probed_at_the_page_its_operator_chose() {
    let mut c = cluster(
        "probe-path",
        &format!("{FAST}[probe]\ninterval = \"1s\"\ntimeout = \"1s\"\n"),
    );
    c.form(3).await.unwrap();
    let admin = c.client().unwrap();
    let tree = c.root().join("tree");
    std::fs::create_dir_all(tree.join("tuần-này")).unwrap();
    std::fs::write(tree.join("tuần-này/index.html"), "Lịch công tác tuần này").unwrap();
    admin.create_site("lich").await.unwrap();
    admin.push("lich", &tree, &Default::default(), None).await.unwrap();
    let eps = c.endpoints().join(",");
    let set = |path: &str| sen(&["--endpoints", &eps, "site", "set", "lich", "--probe-path", path]);
    let count = |result: &'static str| {
        let c = &c;
        async move {
            c.metric_where(1, "sen_probes_total", &[("target", "site:lich"), ("result", result)])
                .await
                .unwrap_or(0.0)
        }
    };

    // The front page is missing (no index.html at the top): still up.
    sen_chaos::wait_for("node 1 probing the site", T, || async {
        Ok((count("ok").await >= 2.0).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(count("failed").await, 0.0);

    // A page that is not there: down.
    let (code, out, err) = set("/tuan-truoc/index.html");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/tuan-truoc/index.html"), "{out}");
    let (_, listed, _) = sen(&["--endpoints", &eps, "--output", "json", "site", "list"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["sites"][0]["probe_path"], "/tuan-truoc/index.html", "{listed}");
    sen_chaos::wait_for("the probes to find the page missing", T, || async {
        Ok((count("failed").await >= 2.0).then_some(()))
    })
    .await
    .unwrap();

    // The page that is there: up again, and no more failures once the
    // probes in flight are done.
    let (code, _, err) = set("/tuần-này/index.html");
    assert_eq!(code, 0, "{err}");
    let ok = count("ok").await;
    sen_chaos::wait_for("the probes to find the page", T, || async {
        Ok((count("ok").await >= ok + 2.0).then_some(()))
    })
    .await
    .unwrap();
    let (failed, ok) = (count("failed").await, count("ok").await);
    sen_chaos::wait_for("three more probes", T, || async {
        Ok((count("ok").await >= ok + 3.0).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(count("failed").await, failed);

    // Back to the front page.
    let (code, out, err) = set("/");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("front page"), "{out}");
    let (_, listed, _) = sen(&["--endpoints", &eps, "--output", "json", "site", "list"]);
    assert!(listed.contains(r#""probe_path":"/""#), "{listed}");

    // Refused, saying why and what to write.
    for (path, why) in [("index.html", "does not start with /"), ("/../secret", ".. segment")] {
        let (code, _, err) = set(path);
        assert_ne!(code, 0, "{path}");
        assert!(err.contains(why) && err.contains("/index.html"), "{path}: {err}");
    }
    let (code, _, err) = sen(&[
        "--endpoints",
        &eps,
        "site",
        "set",
        "khong-co",
        "--probe-path",
        "/a.html",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("does not exist") && err.contains("sen site create"),
        "{err}"
    );
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "set", "lich"]);
    assert_ne!(code, 0);
    assert!(err.contains("--probe-path"), "{err}");
}
