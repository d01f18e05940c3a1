//! HTTP serving side by side: the same files from a follower of a
//! plaintext cluster, from a follower of a cluster with TLS everywhere, and
//! from nginx reading them from disk (sendfile on), measured with wrk,
//! rounds interleaved. Files: 4 KiB and 4 MiB of incompressible bytes, and
//! a 946 KB HTML page (compressible, like a portal's document list).
//!
//! ```text
//! target/release/sen-benches http --out bench-out
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use sen_chaos::ProcessCluster;
use serde_json::json;

use crate::content::{self, Noise, WrkRow};
use crate::report::{self, Machine};

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Length of each wrk run.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    pub wrk_duration: Duration,
    /// wrk connections (kept alive: the handshake is paid once each).
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Rounds per file and mode (the report gives the median).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Also serve from a third cluster whose nodes run plaintext HTTP on
    /// their main runtime (`server.http-threads = 0`): the column
    /// "main runtime" shows what the HTTP threads bring.
    #[arg(long)]
    pub also_main_runtime: bool,
}

/// A 3-node cluster serving site `www` from `tree`; the follower that
/// will serve the requests.
async fn cluster(sen: &Path, root: &Path, tls: bool, tree: &Path, extra: &str) -> Result<(ProcessCluster, u64)> {
    let mut c = ProcessCluster::new(sen, root, extra)?.with_log("warn");
    if !tls {
        c = c.insecure();
    }
    c.form(3).await?;
    let leader = c.wait_leader(None, Duration::from_secs(30)).await?;
    let client = c.client()?;
    client.create_site("www").await?;
    client.push("www", tree, &Default::default(), None).await?;
    Ok((c, (1..=3).find(|i| *i != leader).unwrap_or(2)))
}

pub async fn run(sen: &Path, data: &Path, out: &Path, machine: &Machine, a: Args) -> Result<()> {
    let wrk_bin = content::need("wrk")?;
    let nginx_bin = content::need("nginx")?;
    let dir = data.join("http");
    let _ = std::fs::remove_dir_all(&dir);
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    let files = [
        ("small.bin", Noise::bytes(4, 4096)),
        ("large.bin", Noise::bytes(5, 4 << 20)),
        ("page.html", html_page(946_000)),
    ];
    for (name, body) in &files {
        std::fs::write(www.join(name), body)?;
    }
    let (plain, pf) = cluster(sen, &dir.join("plain"), false, &www, "").await?;
    let (tls, tf) = cluster(sen, &dir.join("tls"), true, &www, "").await?;
    let main_runtime = if a.also_main_runtime {
        let extra = "[server]\nhttp-threads = 0\n";
        Some(cluster(sen, &dir.join("main-runtime"), false, &www, extra).await?)
    } else {
        None
    };
    let port = content::free_port()?;
    let _nginx = content::Nginx::start(&nginx_bin, &dir.join("nginx"), &www, port)?;
    let nginx_addr = format!("127.0.0.1:{port}");
    let mut targets = vec![
        (
            "plaintext",
            format!("http://{}/sites/www", plain.http(pf)?),
            plain.web(pf)?,
        ),
        (
            "tls",
            format!("https://{}/sites/www", tls.http(tf)?),
            tls.web(tf)?.anonymous(),
        ),
        (
            "nginx",
            format!("http://{nginx_addr}"),
            sen_chaos::cluster::Web::plain(&nginx_addr),
        ),
    ];
    if let Some((c, f)) = &main_runtime {
        targets.push(("main runtime", format!("http://{}/sites/www", c.http(*f)?), c.web(*f)?));
    }
    // Both serve the same bytes (to an anonymous visitor) before timing.
    for (mode, _, web) in &targets {
        for (name, body) in &files {
            let mut ok = false;
            for _ in 0..50 {
                let prefix = if *mode == "nginx" { "" } else { "/sites/www" };
                if let Ok(r) = web.request("GET", &format!("{prefix}/{name}"), &[]).await
                    && r.status == 200
                    && r.body == *body
                {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ok {
                bail!("{mode} does not serve {name}");
            }
        }
    }
    let wrk_args = content::Args {
        wrk_duration: a.wrk_duration,
        connections: a.connections,
        ..Default::default()
    };
    // Every round of every server, and the median round of each.
    let mut rounds: Vec<WrkRow> = Vec::new();
    let mut rows: Vec<WrkRow> = Vec::new();
    for (name, _) in &files {
        let mut by_mode: Vec<(&str, Vec<WrkRow>)> = targets.iter().map(|(m, _, _)| (*m, Vec::new())).collect();
        for _ in 0..a.rounds.max(1) {
            for (i, (mode, base, _)) in targets.iter().enumerate() {
                let url = format!("{base}/{name}");
                by_mode[i].1.push(content::wrk(&wrk_bin, &url, &wrk_args, mode, name)?);
            }
        }
        for (_, mut rs) in by_mode {
            rounds.extend(rs.iter().cloned());
            rs.sort_by(|x, y| x.requests_per_s.total_cmp(&y.requests_per_s));
            rows.push(rs[rs.len() / 2].clone());
        }
    }
    // The compressible page as a browser asks for it: Sen sends the
    // stored chunks' zstd frames, nginx gzips it on the fly (`gzip on`,
    // level 1); bytes per response from wrk's transfer rate.
    let page_url = |i: usize| format!("{}/page.html", targets[i].1);
    let mut encoded: Vec<WrkRow> = Vec::new();
    for _ in 0..a.rounds.max(1) {
        for (i, label, header) in [
            (0, "Sen zstd", "Accept-Encoding: zstd"),
            (2, "nginx gzip", "Accept-Encoding: gzip"),
        ] {
            encoded.push(content::wrk_with(
                &wrk_bin,
                &page_url(i),
                &wrk_args,
                label,
                "page.html",
                &[header],
            )?);
        }
    }
    let encoded_median = |server: &str| {
        let mut v: Vec<&WrkRow> = encoded.iter().filter(|r| r.server == server).collect();
        v.sort_by(|x, y| x.requests_per_s.total_cmp(&y.requests_per_s));
        v.get(v.len() / 2).map(|r| (*r).clone())
    };
    drop(plain);
    drop(tls);
    drop(main_runtime);
    let spread = |file: &str, server: &str| {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter(|r| r.file == file && r.server == server)
            .map(|r| r.requests_per_s)
            .collect();
        v.sort_by(f64::total_cmp);
        v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" / ")
    };

    let mut md = format!(
        "## HTTP: Sen (plaintext, TLS) vs nginx\n\n{}\nCommand: `target/release/sen-benches http --out {} --wrk-duration {:?} --rounds {}{}` (wrk -t2 -c{}, keep-alive, no `Accept-Encoding`; one follower of each 3-node cluster serves a public site; nginx serves the same files from disk with sendfile on; median of {} interleaved rounds; client, servers and the other nodes share the machine)\n\n| file | plaintext req/s | TLS req/s | nginx req/s | **plaintext / nginx** | TLS / plaintext | plaintext MB/s | nginx MB/s | p50 / p99 ms (plaintext, TLS, nginx) | errors |\n|---|---|---|---|---|---|---|---|---|---|\n",
        machine.markdown(),
        out.display(),
        a.wrk_duration,
        a.rounds,
        if a.also_main_runtime {
            " --also-main-runtime"
        } else {
            ""
        },
        a.connections,
        a.rounds
    );
    for (name, _) in &files {
        let find = |server: &str| rows.iter().find(|r| r.file == *name && r.server == server);
        if let (Some(p), Some(t), Some(n)) = (find("plaintext"), find("tls"), find("nginx")) {
            md.push_str(&format!(
                "| {name} | {:.0} | {:.0} | {:.0} | **{:.2}×** | {:.2}× | {:.1} | {:.1} | {:.2}/{:.2}, {:.2}/{:.2}, {:.2}/{:.2} | {}/{}/{} |\n",
                p.requests_per_s,
                t.requests_per_s,
                n.requests_per_s,
                p.requests_per_s / n.requests_per_s.max(1e-9),
                t.requests_per_s / p.requests_per_s.max(1e-9),
                p.mb_per_s,
                n.mb_per_s,
                p.p50_ms,
                p.p99_ms,
                t.p50_ms,
                t.p99_ms,
                n.p50_ms,
                n.p99_ms,
                p.errors,
                t.errors,
                n.errors
            ));
        }
    }
    md.push_str(
        "\nEvery round, req/s from lowest to highest:\n\n| file | plaintext | TLS | nginx |\n|---|---|---|---|\n",
    );
    for (name, _) in &files {
        md.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            spread(name, "plaintext"),
            spread(name, "tls"),
            spread(name, "nginx")
        ));
    }
    let page_len = files
        .iter()
        .find(|(n, _)| *n == "page.html")
        .map_or(0, |(_, b)| b.len());
    if let (Some(z), Some(g), Some(p)) = (
        encoded_median("Sen zstd"),
        encoded_median("nginx gzip"),
        rows.iter().find(|r| r.file == "page.html" && r.server == "plaintext"),
    ) {
        let per = |r: &WrkRow| r.mb_per_s * 1e6 / r.requests_per_s.max(1e-9);
        let spread = |server: &str| {
            let mut v: Vec<f64> = encoded
                .iter()
                .filter(|r| r.server == server)
                .map(|r| r.requests_per_s)
                .collect();
            v.sort_by(f64::total_cmp);
            v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" / ")
        };
        md.push_str(&format!(
            "\npage.html ({page_len} bytes) as a browser asks for it, same run (median of {} rounds; bytes per response = wrk's transfer rate / req/s, headers included):\n\n| | Sen, `Accept-Encoding: zstd` (stored frames) | nginx, `Accept-Encoding: gzip` (`gzip on`, level 1) | Sen, no `Accept-Encoding` |\n|---|---|---|---|\n| req/s | {:.0} | {:.0} | {:.0} |\n| bytes per response | {:.0} | {:.0} | {:.0} |\n| every round, req/s | {} | {} | (above) |\n",
            a.rounds,
            z.requests_per_s,
            g.requests_per_s,
            p.requests_per_s,
            per(&z),
            per(&g),
            per(p),
            spread("Sen zstd"),
            spread("nginx gzip"),
        ));
    }
    if a.also_main_runtime {
        md.push_str(
            "\nPlaintext on the nodes' main runtime (`server.http-threads = 0`) vs the HTTP threads (default), same run:\n\n| file | main runtime req/s (median) | HTTP threads req/s (median) | threads / main runtime | main runtime, every round |\n|---|---|---|---|---|\n",
        );
        for (name, _) in &files {
            let find = |server: &str| rows.iter().find(|r| r.file == *name && r.server == server);
            if let (Some(m), Some(p)) = (find("main runtime"), find("plaintext")) {
                md.push_str(&format!(
                    "| {name} | {:.0} | {:.0} | {:.2}× | {} |\n",
                    m.requests_per_s,
                    p.requests_per_s,
                    p.requests_per_s / m.requests_per_s.max(1e-9),
                    spread(name, "main runtime")
                ));
            }
        }
    }
    report::write(
        out,
        "http",
        &json!({"machine": machine, "args": format!("{a:?}"), "rows": rows, "rounds": rounds, "encoded": encoded}),
        &md,
    )
}

/// A compressible HTML page of about `len` bytes: a long list of documents
/// as a portal's document index would show them (the text varies, the
/// markup repeats), reproducible.
pub(crate) fn html_page(len: usize) -> Vec<u8> {
    let kinds = ["Quyết định", "Công văn", "Chỉ thị", "Thông báo", "Kế hoạch", "Báo cáo"];
    let units = ["UBND tỉnh", "Sở Nội vụ", "Sở Tài chính", "Văn phòng UBND", "Sở Y tế"];
    let mut out = String::from(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Văn bản chỉ đạo điều hành</title></head><body><table class=\"van-ban\">\n",
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i += 1;
        out.push_str(&format!(
            "<tr><td>{i}</td><td><a href=\"/van-ban/{}/{}.pdf\">{} số {}/{}-{}</a></td><td>{}</td><td>{:02}/{:02}/2026</td><td>Về việc triển khai nhiệm vụ số {} năm 2026</td></tr>\n",
            2020 + x % 7,
            x % 100_000,
            kinds[(x % 6) as usize],
            x % 9_999,
            2026,
            units[((x >> 8) % 5) as usize],
            units[((x >> 16) % 5) as usize],
            1 + (x >> 24) % 28,
            1 + (x >> 32) % 12,
            (x >> 40) % 1_000
        ));
    }
    out.push_str("</table></body></html>\n");
    out.into_bytes()
}
