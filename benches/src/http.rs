//! HTTP serving with and without TLS: the same site on a plaintext
//! cluster and on a cluster with TLS everywhere, measured with wrk,
//! rounds interleaved.
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
}

/// A 3-node cluster serving site `www` from `tree`; the follower that
/// will serve the requests.
async fn cluster(sen: &Path, root: &Path, tls: bool, tree: &Path) -> Result<(ProcessCluster, u64)> {
    let mut c = ProcessCluster::new(sen, root, "")?.with_log("warn");
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
    let dir = data.join("http");
    let _ = std::fs::remove_dir_all(&dir);
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    let files = [
        ("small.bin", Noise::bytes(4, 4096)),
        ("large.bin", Noise::bytes(5, 4 << 20)),
    ];
    for (name, body) in &files {
        std::fs::write(www.join(name), body)?;
    }
    let (plain, pf) = cluster(sen, &dir.join("plain"), false, &www).await?;
    let (tls, tf) = cluster(sen, &dir.join("tls"), true, &www).await?;
    let targets = [
        ("plaintext", format!("http://{}", plain.http(pf)?), plain.web(pf)?),
        ("tls", format!("https://{}", tls.http(tf)?), tls.web(tf)?.anonymous()),
    ];
    // Both serve the same bytes (to an anonymous visitor) before timing.
    for (mode, _, web) in &targets {
        for (name, body) in &files {
            let mut ok = false;
            for _ in 0..50 {
                if let Ok(r) = web.request("GET", &format!("/sites/www/{name}"), &[]).await
                    && r.status == 200
                    && r.body == *body
                {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ok {
                bail!("the {mode} cluster does not serve /sites/www/{name}");
            }
        }
    }
    let wrk_args = content::Args {
        wrk_duration: a.wrk_duration,
        connections: a.connections,
        ..Default::default()
    };
    let mut rows: Vec<WrkRow> = Vec::new();
    for (name, _) in &files {
        let mut by_mode: Vec<(&str, Vec<WrkRow>)> = targets.iter().map(|(m, _, _)| (*m, Vec::new())).collect();
        for _ in 0..a.rounds.max(1) {
            for (i, (mode, base, _)) in targets.iter().enumerate() {
                let url = format!("{base}/sites/www/{name}");
                by_mode[i].1.push(content::wrk(&wrk_bin, &url, &wrk_args, mode, name)?);
            }
        }
        for (_, mut rs) in by_mode {
            rs.sort_by(|x, y| x.requests_per_s.total_cmp(&y.requests_per_s));
            rows.push(rs[rs.len() / 2].clone());
        }
    }
    drop(plain);
    drop(tls);

    let mut md = format!(
        "## HTTP: plaintext vs TLS\n\n{}\nCommand: `target/release/sen-benches http --out {} --wrk-duration {:?} --rounds {}` (wrk -t2 -c{}, keep-alive; one follower of each 3-node cluster serves a public site; median of {} interleaved rounds)\n\n| file | plaintext req/s | TLS req/s | TLS / plaintext | plaintext MB/s | TLS MB/s | plaintext p50 / p99 ms | TLS p50 / p99 ms | errors |\n|---|---|---|---|---|---|---|---|---|\n",
        machine.markdown(),
        out.display(),
        a.wrk_duration,
        a.rounds,
        a.connections,
        a.rounds
    );
    for (name, _) in &files {
        let p = rows.iter().find(|r| r.file == *name && r.server == "plaintext");
        let t = rows.iter().find(|r| r.file == *name && r.server == "tls");
        if let (Some(p), Some(t)) = (p, t) {
            md.push_str(&format!(
                "| {name} | {:.0} | {:.0} | **{:.2}×** | {:.1} | {:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {}/{} |\n",
                p.requests_per_s,
                t.requests_per_s,
                t.requests_per_s / p.requests_per_s.max(1e-9),
                p.mb_per_s,
                t.mb_per_s,
                p.p50_ms,
                p.p99_ms,
                t.p50_ms,
                t.p99_ms,
                p.errors,
                t.errors
            ));
        }
    }
    report::write(
        out,
        "http",
        &json!({"machine": machine, "args": format!("{a:?}"), "rows": rows}),
        &md,
    )
}
