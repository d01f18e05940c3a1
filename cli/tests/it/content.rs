//! Site content: push, serve over HTTP from every node, atomic deploys,
//! garbage collection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sen_chaos::cluster::{Web, url_path};
use sen_chaos::nemesis::{Fault, Nemesis, Proxies};
use sen_chaos::wait_for;

use crate::common::*;

/// A tree with real files from this machine (documentation), generated
/// text and binary files, nested directories and Vietnamese names.
fn make_tree(dir: &Path, real_files: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut budget = 20 * 1024 * 1024usize;
    for entry in walk(Path::new("/usr/share/doc")) {
        if files.len() >= real_files || budget == 0 {
            break;
        }
        let Ok(data) = std::fs::read(&entry) else { continue };
        if data.len() > budget {
            continue;
        }
        let Ok(rel) = entry.strip_prefix("/usr/share/doc") else {
            continue;
        };
        let Some(rel) = rel.to_str() else { continue };
        if sen_content_path_ok(rel) {
            budget -= data.len();
            files.insert(format!("doc/{rel}"), data);
        }
    }
    let names = ["Lịch tuần", "Công báo", "Văn bản chỉ đạo điều hành", "Tin tức"];
    for (i, name) in names.iter().enumerate() {
        for j in 0..50 {
            let text = format!(
                "<html><body><h1>{name} số {j}</h1>{}</body></html>",
                "Ủy ban nhân dân tỉnh Đồng Tháp. ".repeat(j * 7)
            );
            files.insert(format!("{name}/trang {j}.html"), text.into_bytes());
            files.insert(
                format!("{name}/tệp đính kèm/{j}.bin"),
                pseudo_random(1000 + j * 977, (i * 100 + j) as u64),
            );
        }
    }
    files.insert("index.html".into(), "<h1>Cổng thông tin điện tử Đồng Tháp</h1>".into());
    files.insert("rỗng.txt".into(), Vec::new());
    files.insert(
        "Công báo/số-201-2009.pdf".into(),
        pseudo_random(3 * 1024 * 1024 + 17, 201),
    );
    for (p, data) in &files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    files
}

fn sen_content_path_ok(p: &str) -> bool {
    !p.is_empty()
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.chars().any(char::is_control))
        && p.len() < 900
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn push_json(eps: &str, site: &str, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--endpoints",
        eps,
        "--output",
        "json",
        "--timeout",
        "120s",
        "site",
        "push",
        site,
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = sen(&args);
    assert_eq!(code, 0, "push failed: {err}");
    serde_json::from_str(&out).unwrap()
}

async fn get(http: &Web, site: &str, path: &str) -> sen_chaos::cluster::HttpResponse {
    http.request("GET", &format!("/sites/{site}/{}", url_path(path)), &[])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_a_real_tree_serve_it_everywhere_and_push_incrementally() {
    let mut c = cluster("content", FAST);
    c.form(3).await.unwrap();
    let dir = c.root().join("tree");
    let mut files = make_tree(&dir, 1500);
    let eps = c.endpoints().join(",");
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "create", "portal"]);
    assert_eq!(code, 0, "{err}");

    let s = push_json(&eps, "portal", &dir, &["-m", "first"]);
    assert_eq!(s["files_new"], files.len());
    assert!(s["bytes_sent"].as_u64().unwrap() > 0);
    let deployment = s["deployment"].as_u64().unwrap();

    // Every file, from every node, byte for byte, with the right ETag.
    for id in 1..=3 {
        let http = c.web(id).unwrap();
        c.wait_applied(id, deployment, T).await.unwrap();
        for (p, data) in &files {
            let r = get(&http, "portal", p).await;
            assert_eq!(r.status, 200, "node {id} {p}");
            assert_eq!(&r.body, data, "node {id} {p}");
            let etag = format!("\"{}\"", blake3::hash(data).to_hex());
            assert_eq!(r.header("etag"), Some(etag.as_str()), "node {id} {p}");
            assert_eq!(r.header("x-sen-node"), Some(id.to_string().as_str()));
        }
    }

    // Unchanged: nothing sent, no new deployment.
    let s = push_json(&eps, "portal", &dir, &[]);
    assert_eq!(s["bytes_sent"], 0);
    assert_eq!(s["files_unchanged"], files.len());
    assert!(s["deployment"].is_null());
    // ... and nothing read either (size and mtime match), unless --checksum.
    assert_eq!(s["bytes_hashed"], 0);
    let s = push_json(&eps, "portal", &dir, &["--checksum"]);
    assert_eq!(s["bytes_hashed"], s["bytes_scanned"]);
    assert_eq!(s["files_unchanged"], files.len());
    assert_eq!(s["bytes_sent"], 0);

    // One file changed in the middle: only its changed chunks travel.
    let big = "Công báo/số-201-2009.pdf";
    let mut edited = files[big].clone();
    edited.splice(1_500_000..1_500_000, "sửa đổi, bổ sung".bytes());
    std::fs::write(dir.join(big), &edited).unwrap();
    files.insert(big.into(), edited.clone());
    let s = push_json(&eps, "portal", &dir, &[]);
    assert_eq!(s["files_changed"], 1);
    assert_eq!(s["files_unchanged"], files.len() - 1);
    let sent = s["bytes_sent"].as_u64().unwrap();
    assert!(
        sent > 0 && sent < 700 * 1024,
        "sent {sent} bytes for a small edit of a 3 MiB file"
    );
    let r = get(&c.web(2).unwrap(), "portal", big).await;
    if r.body != edited {
        c.wait_applied(2, s["deployment"].as_u64().unwrap(), T).await.unwrap();
        assert_eq!(get(&c.web(2).unwrap(), "portal", big).await.body, edited);
    }

    // A same-size edit is seen through its new modification time.
    let (p, mut same) = files
        .iter()
        .find(|(p, d)| d.len() > 10 && p.as_str() != big)
        .map(|(p, d)| (p.clone(), d.clone()))
        .unwrap();
    same[3] ^= 0xff;
    let before = std::fs::metadata(dir.join(&p)).unwrap().modified().unwrap();
    std::fs::write(dir.join(&p), &same).unwrap();
    // A different modification time, whatever the filesystem's resolution.
    std::fs::File::options()
        .write(true)
        .open(dir.join(&p))
        .unwrap()
        .set_modified(before + Duration::from_secs(2))
        .unwrap();
    files.insert(p, same);
    let s = push_json(&eps, "portal", &dir, &[]);
    assert_eq!(s["files_changed"], 1, "{s}");

    // --delete removes what the directory no longer has; pull gets the tree back.
    std::fs::remove_file(dir.join("rỗng.txt")).unwrap();
    files.remove("rỗng.txt");
    let s = push_json(&eps, "portal", &dir, &["--delete"]);
    assert_eq!(s["files_deleted"], 1);
    let out = c.root().join("pulled");
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "pull", "portal", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for (p, data) in &files {
        assert_eq!(&std::fs::read(out.join(p)).unwrap(), data, "{p}");
    }
    let (code, out, _) = sen(&["--endpoints", &eps, "--output", "json", "site", "history", "portal"]);
    assert_eq!(code, 0);
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["deployments"].as_array().unwrap().len(), 4);
    assert_eq!(h["deployments"][3]["message"], "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_semantics_and_virtual_hosts() {
    let extra = format!("{FAST}[content.vhosts]\n\"congbao.dongthap.gov.vn\" = \"congbao\"\n");
    let mut c = cluster("http", &extra);
    c.form(1).await.unwrap();
    let eps = c.endpoints().join(",");
    let dir = c.root().join("t");
    std::fs::create_dir_all(dir.join("van-ban")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>Công báo</h1>").unwrap();
    std::fs::write(dir.join("van-ban/index.html"), "<h1>Văn bản</h1>").unwrap();
    std::fs::create_dir_all(dir.join("văn-bản")).unwrap();
    std::fs::write(dir.join("văn-bản/index.html"), "<h1>Văn bản</h1>").unwrap();
    let body = pseudo_random(100_000, 5);
    std::fs::write(dir.join("van-ban/201.pdf"), &body).unwrap();
    // Larger than one chunk and than the inline-read limit: read whole
    // into the served-file cache, then answered from it.
    let large = pseudo_random(1_500_000, 6);
    std::fs::write(dir.join("van-ban/large.bin"), &large).unwrap();
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "congbao"]).0, 0);
    push_json(&eps, "congbao", &dir, &[]);
    let http = c.web(1).unwrap();

    let r = get(&http, "congbao", "van-ban/201.pdf").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("last-modified").is_some());
    let etag = r.header("etag").unwrap().to_owned();
    // 304
    let r = http
        .request("GET", "/sites/congbao/van-ban/201.pdf", &[("If-None-Match", &etag)])
        .await
        .unwrap();
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    // 206 and 416
    let r = http
        .request(
            "GET",
            "/sites/congbao/van-ban/201.pdf",
            &[("Range", "bytes=70000-70099")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body[70000..70100]);
    assert_eq!(r.header("content-range"), Some("bytes 70000-70099/100000"));
    let r = http
        .request("GET", "/sites/congbao/van-ban/201.pdf", &[("Range", "bytes=-10")])
        .await
        .unwrap();
    assert_eq!(r.body, body[99990..]);
    let r = http
        .request("GET", "/sites/congbao/van-ban/201.pdf", &[("Range", "bytes=200000-")])
        .await
        .unwrap();
    assert_eq!(r.status, 416);
    // An invalid range is ignored (200, whole file); so is a range under an
    // If-Range naming another version.
    for (k, v) in [("Range", "bytes=5-2"), ("Range", "bytes=abc-")] {
        let r = http
            .request("GET", "/sites/congbao/van-ban/201.pdf", &[(k, v)])
            .await
            .unwrap();
        assert_eq!((r.status, r.body.len()), (200, body.len()), "{v}");
    }
    let r = http
        .request(
            "GET",
            "/sites/congbao/van-ban/201.pdf",
            &[("Range", "bytes=0-9"), ("If-Range", "\"an-older-version\"")],
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    let r = http
        .request(
            "GET",
            "/sites/congbao/van-ban/201.pdf",
            &[("Range", "bytes=0-9"), ("If-Range", &etag)],
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.body.len()), (206, 10));
    // The streamed path: whole file and a range across chunk boundaries.
    let r = get(&http, "congbao", "van-ban/large.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, large);
    let r = http
        .request(
            "GET",
            "/sites/congbao/van-ban/large.bin",
            &[("Range", "bytes=300000-1199999")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, large[300000..1200000]);
    // HEAD: headers, no body.
    let r = http
        .request("HEAD", "/sites/congbao/van-ban/201.pdf", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100000"));
    assert!(r.body.is_empty());
    // Directories, redirects, 404s, bad paths.
    let r = http.request("GET", "/sites/congbao", &[]).await.unwrap();
    assert_eq!((r.status, r.header("location")), (308, Some("/sites/congbao/")));
    assert_eq!(get(&http, "congbao", "").await.body, "<h1>Công báo</h1>".as_bytes());
    assert_eq!(
        get(&http, "congbao", "van-ban/").await.body,
        "<h1>Văn bản</h1>".as_bytes()
    );
    let r = get(&http, "congbao", "van-ban").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/sites/congbao/van-ban/"));
    assert_eq!(get(&http, "congbao", "nope.html").await.status, 404);
    assert_eq!(get(&http, "nosuchsite", "x").await.status, 404);
    let r = http
        .request("GET", "/sites/congbao/a/../../etc/passwd", &[])
        .await
        .unwrap();
    assert!(r.status == 400 || r.status == 404, "{}", r.status);
    // Virtual host: the site at the root of its own name.
    let r = http
        .request("GET", "/van-ban/201.pdf", &[("Host", "congbao.dongthap.gov.vn")])
        .await;
    let r = r.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    let r = http
        .request("GET", "/", &[("Host", "congbao.dongthap.gov.vn:8080")])
        .await
        .unwrap();
    assert_eq!(r.body, "<h1>Công báo</h1>".as_bytes());
    // Under a public host name the node's own endpoints are not reachable.
    let r = http
        .request("GET", "/metrics", &[("Host", "CONGBAO.dongthap.gov.vn")])
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(!String::from_utf8_lossy(&r.body).contains("sen_raft"));
    // A directory redirect under a virtual host stays on the host, encoded.
    let r = http
        .request(
            "GET",
            "/%2Fv%C4%83n-b%E1%BA%A3n",
            &[("Host", "congbao.dongthap.gov.vn")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/v%C4%83n-b%E1%BA%A3n/"));
    // A directory under an encoded Vietnamese name, by prefix and by
    // virtual host: the second read of each is answered from the
    // served-file cache (crate::http::front) and must match the first.
    let host = [("Host", "congbao.dongthap.gov.vn")];
    for (path, headers) in [
        ("/sites/congbao/v%C4%83n-b%E1%BA%A3n/", &[][..]),
        ("/v%C4%83n-b%E1%BA%A3n/", &host[..]),
    ] {
        for _ in 0..2 {
            let r = http.request("GET", path, headers).await.unwrap();
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.body, "<h1>Văn bản</h1>".as_bytes(), "{path}");
        }
    }
    // Not UTF-8 once decoded: refused, never served.
    for _ in 0..2 {
        let r = http.request("GET", "/sites/congbao/%FF", &[]).await.unwrap();
        assert!(r.status == 400 || r.status == 404, "{}", r.status);
    }
    // Content-Encoding: zstd straight from the stored chunks, for a
    // client that asks for it: the same bytes once decoded, its own ETag,
    // `Vary`, fewer bytes; ranges and incompressible files stay plain.
    let page = "<tr><td>Quyết định số 1234/QĐ-UBND</td><td>Đồng Tháp</td></tr>\n".repeat(4000);
    let zstd_page = |r: &sen_chaos::cluster::HttpResponse| {
        sen_content::zstd_ctx::decompress(&r.body, page.len()).expect("a valid zstd stream")
    };
    {
        let dir = c.root().join("t");
        std::fs::write(dir.join("van-ban/list.html"), &page).unwrap();
        push_json(&eps, "congbao", &dir, &[]);
    }
    let zstd = [("Accept-Encoding", "gzip, deflate, br, zstd")];
    let mut zstd_etag = String::new();
    for round in 0..3 {
        // The first fills the served-file cache, the next come from it.
        let r = http
            .request("GET", "/sites/congbao/van-ban/list.html", &zstd)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("zstd"), "round {round}");
        assert_eq!(r.header("vary"), Some("accept-encoding"));
        assert!(r.body.len() * 10 < page.len(), "{} bytes on the wire", r.body.len());
        assert_eq!(zstd_page(&r), page.as_bytes());
        zstd_etag = r.header("etag").unwrap().to_owned();
        assert!(zstd_etag.ends_with(".zst\""), "{zstd_etag}");
    }
    let plain = http
        .request("GET", "/sites/congbao/van-ban/list.html", &[])
        .await
        .unwrap();
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    assert_eq!(plain.body, page.as_bytes());
    assert_ne!(plain.header("etag"), Some(zstd_etag.as_str()));
    let r = http
        .request(
            "GET",
            "/sites/congbao/van-ban/list.html",
            &[("Accept-Encoding", "zstd"), ("If-None-Match", &zstd_etag)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 304);
    let r = http
        .request("HEAD", "/sites/congbao/van-ban/list.html", &zstd)
        .await
        .unwrap();
    assert_eq!(r.header("content-encoding"), Some("zstd"));
    assert_eq!(r.header("etag"), Some(zstd_etag.as_str()));
    let r = http
        .request(
            "GET",
            "/sites/congbao/van-ban/list.html",
            &[("Accept-Encoding", "zstd"), ("Range", "bytes=10-19")],
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.header("content-encoding")), (206, None));
    assert_eq!(r.body, page.as_bytes()[10..20]);
    let r = http
        .request(
            "GET",
            "/sites/congbao/van-ban/list.html",
            &[("Accept-Encoding", "zstd;q=0, gzip")],
        )
        .await
        .unwrap();
    assert_eq!((r.header("content-encoding"), r.body.len()), (None, page.len()));
    // Incompressible: plain, and nothing varies.
    let r = http
        .request("GET", "/sites/congbao/van-ban/201.pdf", &zstd)
        .await
        .unwrap();
    assert_eq!((r.header("content-encoding"), r.header("vary")), (None, None));
    assert_eq!(r.body, body);
    // Per-site metrics.
    let m = http.get("/metrics").await.unwrap();
    assert!(
        m.contains("sen_http_requests_total{node=\"1\",site=\"congbao\",code=\"200\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_push_leaves_old_or_new_never_a_mix() {
    let mut c = cluster("atomic", FAST);
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "s"]).0, 0);
    let dir = c.root().join("tree");
    // Version A.
    let paths: Vec<String> = (0..40).map(|i| format!("d{}/f{i}.bin", i % 4)).collect();
    for (i, p) in paths.iter().enumerate() {
        std::fs::create_dir_all(dir.join(p).parent().unwrap()).unwrap();
        std::fs::write(dir.join(p), pseudo_random(4096, i as u64)).unwrap();
    }
    let a = push_json(&eps, "s", &dir, &[]);
    let dep_a = a["deployment"].as_u64().unwrap();
    // Version B: every file different and larger (the push takes a while).
    for (i, p) in paths.iter().enumerate() {
        std::fs::write(dir.join(p), pseudo_random(600_000, 1000 + i as u64)).unwrap();
    }
    let leader = c.wait_leader(None, T).await.unwrap();
    let puts_before = put_chunks(&c, leader).await;
    let push = std::process::Command::new(SEN)
        .args([
            "--endpoints",
            &eps,
            "--timeout",
            "60s",
            "--output",
            "json",
            "site",
            "push",
            "s",
            dir.to_str().unwrap(),
        ])
        .envs(admin_env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the leader once a few chunk batches have landed: the upload is
    // under way, the deployment not yet proposed.
    wait_for("the leader to store chunks of the push", T, || async {
        Ok((put_chunks(&c, leader).await >= puts_before + 3.0).then_some(()))
    })
    .await
    .unwrap();
    c.kill9(leader).unwrap();
    let out = push.wait_with_output().unwrap();
    eprintln!(
        "push during the kill: {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The push either finished (the kill came late) or failed saying why.
    assert!(
        out.status.success() || !String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "a failed push must explain itself"
    );
    // Whatever the push reported, every live node serves one version only.
    let expect = |version: u64, i: usize| {
        if version == dep_a {
            pseudo_random(4096, i as u64)
        } else {
            pseudo_random(600_000, 1000 + i as u64)
        }
    };
    // Let the live nodes apply everything committed first: a follower may
    // switch from A to B between two of the reads below (each response is
    // still one deployment, which the body check verifies).
    let live: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let new_leader = c.wait_leader(Some(leader), T).await.unwrap();
    let commit = c.client_for(new_leader).unwrap().status().await.unwrap().commit_index;
    for id in &live {
        c.wait_applied(*id, commit, T).await.unwrap();
    }
    for id in live {
        let http = c.web(id).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in paths.iter().enumerate() {
            let r = get(&http, "s", p).await;
            assert_eq!(r.status, 200);
            let rev: u64 = r.header("x-sen-revision").unwrap().parse().unwrap();
            seen.insert(rev);
            assert_eq!(r.body, expect(rev, i), "node {id} {p} at deployment {rev}");
        }
        assert_eq!(seen.len(), 1, "node {id} serves a mix of deployments {seen:?}");
    }
    // Re-running the push completes; the restarted node catches up.
    c.start(leader).unwrap();
    push_json(&eps, "s", &dir, &[]);
    // The push may have found nothing to do (the first one finished before
    // the kill), so ask the cluster which deployment is current.
    let (code, out, _) = sen(&["--endpoints", &eps, "--output", "json", "site", "list"]);
    assert_eq!(code, 0);
    let sites: serde_json::Value = serde_json::from_str(&out).unwrap();
    let dep_b = sites["sites"][0]["deployment"].as_u64().unwrap();
    assert!(dep_b > 0);
    for id in 1..=3 {
        c.wait_applied(id, dep_b, T).await.unwrap();
        let http = c.web(id).unwrap();
        for (i, p) in paths.iter().enumerate() {
            let r = get(&http, "s", p).await;
            assert_eq!(r.body, pseudo_random(600_000, 1000 + i as u64), "node {id} {p}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_from_the_majority_keeps_serving() {
    let mut c = cluster("cutoff", FAST);
    for id in 1..=3 {
        c.add(id).unwrap();
    }
    let proxies = Proxies::start(&c, &[1, 2, 3], 9).await.unwrap();
    for id in 1..=3 {
        c.set_peer_addresses(id, &proxies.overrides_for(id)).unwrap();
    }
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "s"]).0, 0);
    let dir = c.root().join("t");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "v1").unwrap();
    let d = push_json(&eps, "s", &dir, &[])["deployment"].as_u64().unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let f = (1..=3).find(|i| *i != leader).unwrap();
    c.wait_applied(f, d, T).await.unwrap();
    let mut nemesis = Nemesis::new(proxies);
    let rest: Vec<u64> = (1..=3).filter(|i| *i != f).collect();
    let ex = nemesis
        .apply(
            &mut c,
            Fault::Partition {
                name: "isolate".into(),
                groups: vec![vec![f], rest],
            },
            0,
        )
        .await;
    assert!(ex.ok);
    // The majority moves on; the isolated follower still serves v1.
    std::fs::write(dir.join("index.html"), "v2").unwrap();
    let majority: Vec<String> = (1..=3).filter(|i| *i != f).map(|i| c.grpc(i).unwrap()).collect();
    let (code, _, err) = sen(&[
        "--endpoints",
        &majority.join(","),
        "--timeout",
        "60s",
        "site",
        "push",
        "s",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let http = c.web(f).unwrap();
    for _ in 0..5 {
        let r = get(&http, "s", "index.html").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"v1");
    }
    // Healed, it catches up.
    nemesis.apply(&mut c, Fault::HealNetwork, 0).await;
    wait_for("the follower to serve v2", T, || async {
        Ok((get(&http, "s", "index.html").await.body == b"v2").then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_site_frees_its_unique_chunks_only() {
    let mut c = cluster("gc", FAST);
    c.form(1).await.unwrap();
    let eps = c.endpoints().join(",");
    let shared = pseudo_random(200_000, 1);
    let unique = pseudo_random(200_000, 2);
    for (site, files) in [
        ("a", vec![("shared.bin", &shared), ("unique.bin", &unique)]),
        ("b", vec![("shared.bin", &shared)]),
    ] {
        assert_eq!(sen(&["--endpoints", &eps, "site", "create", site]).0, 0);
        let dir = c.root().join(site);
        std::fs::create_dir_all(&dir).unwrap();
        for (p, d) in files {
            std::fs::write(dir.join(p), d).unwrap();
        }
        push_json(&eps, site, &dir, &[]);
    }
    let ids =
        |d: &[u8]| -> Vec<sen_content::ChunkId> { sen_content::chunker::chunks(d).map(|c| c.unwrap().id).collect() };
    let client = c.client().unwrap();
    assert!(client.missing_chunks(&ids(&unique)).await.unwrap().is_empty());
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "delete", "a"]);
    assert_ne!(code, 0, "deleting needs --yes");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(sen(&["--endpoints", &eps, "site", "delete", "a", "--yes"]).0, 0);
    // Within the default grace period nothing is collected.
    let (code, out, _) = sen(&["--endpoints", &eps, "--output", "json", "site", "gc"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["chunks"], 0);
    let (code, out, err) = sen(&["--endpoints", &eps, "--output", "json", "site", "gc", "--grace", "0s"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["chunks"]
            .as_u64()
            .unwrap()
            > 0
    );
    let unique_ids = ids(&unique);
    assert_eq!(
        client.missing_chunks(&unique_ids).await.unwrap().len(),
        unique_ids.len(),
        "site a's unique chunks are gone"
    );
    assert!(
        client.missing_chunks(&ids(&shared)).await.unwrap().is_empty(),
        "chunks site b uses remain"
    );
    let r = get(&c.web(1).unwrap(), "b", "shared.bin").await;
    assert_eq!(r.body, shared);
    assert_eq!(get(&c.web(1).unwrap(), "a", "unique.bin").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_later_gets_the_content_by_snapshot() {
    let extra = format!("{FAST}snapshot-after-entries = 30\nkeep-entries-after-snapshot = 5\n");
    let mut c = cluster("content-snapshot", &extra);
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "congbao"]).0, 0);
    let dir = c.root().join("tree");
    let mut files = BTreeMap::new();
    for i in 0..24u64 {
        let p = format!("số {i:02}/văn bản.pdf");
        let data = pseudo_random(400_000 + i as usize * 1000, 500 + i);
        std::fs::create_dir_all(dir.join(&p).parent().unwrap()).unwrap();
        std::fs::write(dir.join(&p), &data).unwrap();
        files.insert(p, data);
    }
    push_json(&eps, "congbao", &dir, &[]);
    // Move the log on until the leader purged the content entries.
    let client = c.client().unwrap();
    let mut last = 0;
    for i in 0..80 {
        last = client
            .put("x", format!("k{i}").as_bytes(), b"v")
            .await
            .unwrap()
            .revision;
    }
    let leader = c.wait_leader(None, T).await.unwrap();
    wait_for("the leader to purge its log", T, || async {
        Ok((c.metric(leader, "sen_raft_purged_index").await? > 40.0).then_some(()))
    })
    .await
    .unwrap();

    c.add(4).unwrap();
    c.start(4).unwrap();
    let addr = c.grpc(4).unwrap();
    c.wait_serving(4, T).await.unwrap();
    client.add_node(4, &addr, false).await.unwrap();
    c.wait_applied(4, last, T).await.unwrap();
    assert!(c.log(4).contains("installed snapshot"), "node 4 caught up by snapshot");
    let http = c.web(4).unwrap();
    for (p, data) in &files {
        let r = get(&http, "congbao", p).await;
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(&r.body, data, "{p} on node 4");
    }
}

/// Chunk uploads the leader stored (its own and forwarded ones).
async fn put_chunks(c: &Cluster, leader: u64) -> f64 {
    c.metric_where(
        leader,
        "sen_grpc_requests_total",
        &[("method", "PutChunks"), ("code", "Ok")],
    )
    .await
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_push_changes_nothing_and_resumes() {
    let mut c = cluster("interrupted", FAST);
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "s"]).0, 0);
    let dir = c.root().join("tree");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "v1").unwrap();
    let dep_a = push_json(&eps, "s", &dir, &[])["deployment"].as_u64().unwrap();
    // 40 MB of new, incompressible files.
    for i in 0..40u64 {
        std::fs::write(
            dir.join(format!("tai-lieu-{i}.bin")),
            pseudo_random(1_000_000, 7000 + i),
        )
        .unwrap();
    }
    let leader = c.wait_leader(None, T).await.unwrap();
    let puts_before = put_chunks(&c, leader).await;
    let mut push = std::process::Command::new(SEN)
        .args([
            "--endpoints",
            &eps,
            "--output",
            "json",
            "site",
            "push",
            "s",
            dir.to_str().unwrap(),
        ])
        .envs(admin_env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt the client (as a lost connection or kill would) once some
    // chunks have been stored.
    wait_for("the leader to store chunks of the push", T, || async {
        Ok((put_chunks(&c, leader).await >= puts_before + 3.0).then_some(()))
    })
    .await
    .unwrap();
    push.kill().unwrap();
    let status = push.wait().unwrap();
    assert!(!status.success(), "the push finished before it could be interrupted");
    // Nothing changed: same deployment, same single file, on every node.
    let (code, out, _) = sen(&["--endpoints", &eps, "--output", "json", "site", "list"]);
    assert_eq!(code, 0);
    let sites: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sites["sites"][0]["deployment"].as_u64(), Some(dep_a));
    assert_eq!(sites["sites"][0]["files"].as_u64(), Some(1));
    for id in 1..=3 {
        let r = get(&c.web(id).unwrap(), "s", "tai-lieu-0.bin").await;
        assert_eq!(r.status, 404, "node {id} serves a file of the interrupted push");
    }
    // Re-running completes and does not send again what already arrived.
    let s = push_json(&eps, "s", &dir, &[]);
    assert_eq!(s["files_new"], 40);
    let sent = s["bytes_sent_plain"].as_u64().unwrap();
    assert!(
        sent < 40_000_000,
        "re-run sent {sent} bytes: the chunks stored before the interruption were sent again"
    );
    let http = c.web(1).unwrap();
    c.wait_applied(1, s["deployment"].as_u64().unwrap(), T).await.unwrap();
    assert_eq!(
        get(&http, "s", "tai-lieu-39.bin").await.body,
        pseudo_random(1_000_000, 7039)
    );
}

/// The served-file cache (`content.cache-bytes`): a follower answers warm
/// files from memory, yet never serves a file of an older deployment once
/// it applied a newer one, ranges come out of cached bodies right, files
/// over `cache-max-file` still stream, and a site made private is refused
/// even while its pages are cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_cache_serves_only_the_current_deployment() {
    let extra = format!("{FAST}[content]\ncache-max-file = 1048576\n");
    let mut c = cluster("file-cache", &extra);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let admin = c.client().unwrap();
    admin.create_site("s").await.unwrap();
    let dir = c.root().join("t");
    std::fs::create_dir_all(&dir).unwrap();
    // doc.bin: above the inline-read size, cached; big.bin: above
    // cache-max-file, streamed.
    let doc = |v: u64| pseudo_random(600_000, 10 + v);
    let big = pseudo_random(1_500_000, 9);
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let web = c.web(follower).unwrap().anonymous();
    let requests = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with("sen_http_requests_total{") && l.contains("site=\"s\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let hits = |m: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with("sen_content_cache_hits_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    for round in 1..=4u64 {
        // Deployments 1 and 3 hold v1, 2 and 4 hold v2.
        let v = 2 - round % 2;
        std::fs::write(dir.join("index.html"), format!("<p>phiên bản {v}</p>")).unwrap();
        std::fs::write(dir.join("doc.bin"), doc(v)).unwrap();
        admin.push("s", &dir, &Default::default(), None).await.unwrap();
        let index = c.highest_applied().await.unwrap();
        c.wait_applied(follower, index, T).await.unwrap();
        let metrics = c.web(follower).unwrap();
        let m = metrics.get("/metrics").await.unwrap();
        let (before, requests_before) = (hits(&m), requests(&m));
        let mut first: Option<Vec<(String, String)>> = None;
        for _ in 0..3 {
            let r = web.request("GET", "/sites/s/", &[]).await.unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, format!("<p>phiên bản {v}</p>").as_bytes(), "round {round}");
            // The first read fills the cache through the router; the
            // next ones are answered before it (crate::http::front) and
            // must carry the same headers (CSP and nosniff included).
            let headers: Vec<_> = r
                .headers
                .iter()
                .filter(|(k, _)| k != "date" && k != "x-sen-applied")
                .cloned()
                .collect();
            assert!(
                headers.iter().any(|(k, _)| k == "content-security-policy"),
                "{headers:?}"
            );
            assert!(
                headers
                    .iter()
                    .any(|(k, v)| k == "x-content-type-options" && v == "nosniff")
            );
            match &first {
                None => first = Some(headers),
                Some(f) => assert_eq!(&headers, f, "round {round}: a cached answer differs"),
            }
            let r = web.request("GET", "/sites/s/doc.bin", &[]).await.unwrap();
            assert_eq!(r.body, doc(v), "round {round}: doc.bin of another deployment");
            let etag = r.header("etag").unwrap().to_owned();
            assert_eq!(etag, format!("\"{}\"", blake3::hash(&doc(v)).to_hex()));
            let r = web
                .request("GET", "/sites/s/doc.bin", &[("Range", "bytes=300000-300099")])
                .await
                .unwrap();
            assert_eq!(r.status, 206);
            assert_eq!(r.body, doc(v)[300000..300100]);
            let r = web
                .request("GET", "/sites/s/doc.bin", &[("If-None-Match", &etag)])
                .await
                .unwrap();
            assert_eq!(r.status, 304);
            let r = web
                .request("GET", "/sites/s/big.bin", &[("Range", "bytes=200000-1299999")])
                .await
                .unwrap();
            assert_eq!(r.body, big[200000..1300000]);
        }
        let m = metrics.get("/metrics").await.unwrap();
        let after = hits(&m);
        // index.html and doc.bin (4 requests) are read once, then hit;
        // big.bin never is.
        assert!(after - before >= 2 * 4, "round {round}: {before} → {after} hits");
        // Every answer is counted once, cached or not.
        assert_eq!(requests(&m) - requests_before, 3 * 5, "round {round}");
    }
    // Private while its pages are cached: refused.
    admin.set_site_access("s", true).await.unwrap();
    wait_for("the site to be private on the follower", T, || async {
        Ok((web.get_status("/sites/s/").await?.0 == 401).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(web.get_status("/sites/s/doc.bin").await.unwrap().0, 401);
    // Deleted: gone from the cache too.
    admin.set_site_access("s", false).await.unwrap();
    admin.delete_site("s").await.unwrap();
    let index = c.highest_applied().await.unwrap();
    c.wait_applied(follower, index, T).await.unwrap();
    assert_eq!(web.get_status("/sites/s/doc.bin").await.unwrap().0, 404);
}
