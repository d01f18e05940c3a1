//! Site content on a 3-node cluster (fsync on):
//!
//! - push throughput of a first push, of an unchanged re-push and of a
//!   re-push with 1% of the files edited (`sen site push`, wall clock);
//! - the dedup ratio of ten consecutive releases of a real source tree
//!   (`aws-sdk-s3` from crates.io: 1 351 files, 19 MB per release);
//! - HTTP requests/s for a 4 KiB and a 4 MiB file with `wrk` against one
//!   node, side by side with nginx serving the same files from disk;
//! - a large file end to end (push, full GET, range GET, pull) with the
//!   peak memory of the client and the nodes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args as ClapArgs;
use sen_chaos::ProcessCluster;
use serde::Serialize;
use serde_json::{Value, json};

use crate::report::{self, Machine};

#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Real tree whose releases are pushed: a crates.io crate.
    #[arg(long, default_value = "aws-sdk-s3")]
    pub krate: String,
    /// Its releases, oldest first (ten consecutive ones by default).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1.148.0,1.149.0,1.150.0,1.151.0,1.152.0,1.153.0,1.154.0,1.155.0,1.156.0,1.157.0"
    )]
    pub versions: Vec<String>,
    /// Incompressible documents (like PDFs and images) added to the
    /// push-throughput tree, in MiB.
    #[arg(long, default_value_t = 200)]
    pub documents_mib: u64,
    /// Size of the large-file test in MiB (0 skips it).
    #[arg(long, default_value_t = 2048)]
    pub big_file_mib: u64,
    /// Length of each wrk run.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    pub wrk_duration: Duration,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Rounds per HTTP measurement (the report gives the median).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            krate: "aws-sdk-s3".into(),
            versions: (148..=157).map(|m| format!("1.{m}.0")).collect(),
            documents_mib: 200,
            big_file_mib: 2048,
            wrk_duration: Duration::from_secs(10),
            connections: 64,
            rounds: 3,
        }
    }
}

/// xorshift64: a fast, reproducible, incompressible byte stream.
pub(crate) struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            c.copy_from_slice(&self.0.to_le_bytes()[..c.len()]);
        }
    }
    pub(crate) fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).fill(&mut v);
        v
    }
}

pub(crate) fn run_ok(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd.output().with_context(|| format!("{what}: cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

pub(crate) fn need(tool: &str) -> Result<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{tool} is not installed: run `./scripts/setup.sh --bench` (installs wrk, nginx, restic and borgbackup)")
}

/// Download and unpack the releases (cached under `corpus`).
fn fetch_versions(corpus: &Path, krate: &str, versions: &[String]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for v in versions {
        let dir = corpus.join(format!("{krate}-{v}"));
        if !dir.join("Cargo.toml").exists() {
            std::fs::create_dir_all(&dir)?;
            let file = corpus.join(format!("{krate}-{v}.crate"));
            let url = format!("https://static.crates.io/crates/{krate}/{krate}-{v}.crate");
            run_ok(
                Command::new("curl")
                    .args(["-sfL", "--retry", "3", "-o"])
                    .arg(&file)
                    .arg(&url),
                &format!("download {url}"),
            )?;
            run_ok(
                Command::new("tar")
                    .arg("xzf")
                    .arg(&file)
                    .arg("-C")
                    .arg(&dir)
                    .arg("--strip-components=1"),
                "unpack",
            )?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to), "copy tree")?;
    Ok(())
}

pub(crate) fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Peak resident memory of a process since the last reset, in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

/// Resident memory of a process now, in MiB.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Run the `sen` CLI, timing it and sampling its peak memory.
pub(crate) fn sen_cli(sen: &Path, eps: &str, args: &[&str]) -> Result<(Value, f64, f64)> {
    let t = Instant::now();
    let mut child = Command::new(sen)
        .args(["--endpoints", eps, "--output", "json", "--timeout", "1h"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut peak: f64 = 0.0;
    // Drain stdout on a thread so a large output cannot block the child.
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    loop {
        if let Some(m) = peak_rss_mib(pid) {
            peak = peak.max(m);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t.elapsed().as_secs_f64();
    let out = child.wait_with_output()?;
    let stdout = reader.join().map_err(|_| anyhow!("reader panicked"))?;
    if !out.status.success() {
        bail!("sen {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).with_context(|| format!("parse output of sen {args:?}"))?
    };
    Ok((v, secs, peak))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

#[derive(Debug, Clone, Serialize)]
pub struct PushRow {
    pub what: String,
    pub files: u64,
    pub bytes_scanned: u64,
    pub bytes_hashed: u64,
    pub bytes_sent: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub client_peak_mib: f64,
}

fn push_row(what: &str, v: &Value, secs: f64, peak: f64) -> PushRow {
    let g = |k: &str| v[k].as_u64().unwrap_or(0);
    PushRow {
        what: what.into(),
        files: g("files_total"),
        bytes_scanned: g("bytes_scanned"),
        bytes_hashed: g("bytes_hashed"),
        bytes_sent: g("bytes_sent"),
        seconds: secs,
        mb_per_s: mb(g("bytes_scanned")) / secs,
        client_peak_mib: peak,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WrkRow {
    pub server: String,
    pub file: String,
    pub requests_per_s: f64,
    pub mb_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

fn parse_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mul
}

fn parse_size_mb(s: &str) -> f64 {
    let s = s.trim();
    for (suffix, mul) in [("GB", 1073.741824), ("MB", 1.048576), ("KB", 0.001024), ("B", 0.000001)] {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap_or(f64::NAN) * mul;
        }
    }
    f64::NAN
}

pub(crate) fn wrk(wrk: &Path, url: &str, a: &Args, server: &str, file: &str) -> Result<WrkRow> {
    wrk_with(wrk, url, a, server, file, &[])
}

/// [`wrk`] sending `headers` (`Name: value`) with every request.
pub(crate) fn wrk_with(wrk: &Path, url: &str, a: &Args, server: &str, file: &str, headers: &[&str]) -> Result<WrkRow> {
    let mut cmd = Command::new(wrk);
    cmd.args(["-t2", &format!("-c{}", a.connections)])
        .arg(format!("-d{}s", a.wrk_duration.as_secs().max(1)));
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = run_ok(cmd.args(["--latency", "--timeout", "10s", url]), "wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim_start()[prefix.len()..].trim().to_owned())
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk output:\n{text}"))?;
    let transfer = field("Transfer/sec:").map_or(f64::NAN, |v| parse_size_mb(&v));
    let p50 = field("50%").map_or(f64::NAN, |v| parse_ms(&v));
    let p99 = field("99%").map_or(f64::NAN, |v| parse_ms(&v));
    let errors: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + text
            .lines()
            .find(|l| l.trim_start().starts_with("Socket errors:"))
            .map_or(0, |l| {
                l.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            });
    Ok(WrkRow {
        server: server.into(),
        file: file.into(),
        requests_per_s: rps,
        mb_per_s: transfer,
        p50_ms: p50,
        p99_ms: p99,
        errors,
    })
}

/// nginx serving `root` on 127.0.0.1:`port` (as the benchmark's user).
pub(crate) struct Nginx {
    child: std::process::Child,
}

impl Nginx {
    pub(crate) fn start(bin: &Path, dir: &Path, root: &Path, port: u16) -> Result<Self> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let user = if nix_is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n  gzip on;\n  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n  server {{ listen 127.0.0.1:{port}; root {r}; }}\n}}\n",
            d = dir.display(),
            r = root.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start nginx")?;
        Ok(Self { child })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// GET `path` from `addr`, streaming: (status, body bytes, blake3, seconds).
async fn stream_get(addr: &str, path: &str, range: Option<&str>) -> Result<(u16, u64, blake3::Hash, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(r) = range {
        req.push_str(&format!("Range: {r}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut body = 0u64;
    let mut in_body = false;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if in_body {
            hasher.update(&buf[..n]);
            body += n as u64;
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = head.split_off(i + 4);
            hasher.update(&rest);
            body += rest.len() as u64;
            in_body = true;
        }
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body, hasher.finalize(), t.elapsed().as_secs_f64()))
}

/// A fresh 3-node cluster (no garbage collection during the run): the
/// cluster, its leader, the leader's gRPC address and the node pids.
async fn start_cluster(sen: &Path, root: &Path) -> Result<(ProcessCluster, u64, String, BTreeMap<u64, u32>)> {
    let mut cluster = ProcessCluster::new(sen, root, "[content]\ngc-grace = \"24h\"\n")?
        .with_log("warn")
        .insecure();
    cluster.form(3).await?;
    let leader = cluster.wait_leader(None, Duration::from_secs(30)).await?;
    let eps = cluster.grpc(leader)?;
    let pids = cluster
        .nodes
        .iter()
        .filter_map(|(id, n)| Some((*id, n.pid()?)))
        .collect();
    Ok((cluster, leader, eps, pids))
}

pub async fn run(sen: &Path, data: &Path, out: &Path, machine: &Machine, a: Args) -> Result<()> {
    let wrk_bin = need("wrk")?;
    let nginx_bin = need("nginx")?;
    let corpus = out.join("corpus");
    std::fs::create_dir_all(&corpus)?;
    let versions = fetch_versions(&corpus, &a.krate, &a.versions)?;

    let dir = data.join("content");
    let _ = std::fs::remove_dir_all(&dir);
    let (cluster, leader, eps, pids) = start_cluster(sen, &dir.join("cluster")).await?;
    let follower = (1..=3).find(|i| *i != leader).unwrap_or(2);
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    let mut md = format!(
        "## Site content: 3 local nodes, fsync on\n\n{}\nCommand: `target/release/sen-benches content --out {}`\n",
        machine.markdown(),
        out.display()
    );

    // 1. Push throughput.
    let tree = work.join("portal");
    copy_tree(versions.last().ok_or_else(|| anyhow!("no versions"))?, &tree)?;
    let docs = tree.join("van-ban");
    std::fs::create_dir_all(&docs)?;
    let mut left = a.documents_mib * 1024 * 1024;
    let mut i = 0u64;
    while left > 0 {
        let size = (100_000 + (i * 7_919_113) % 2_900_000).min(left);
        std::fs::write(
            docs.join(format!("quyet-dinh-{i:04}.pdf")),
            Noise::bytes(i, size as usize),
        )?;
        left -= size;
        i += 1;
    }
    run_ok(
        Command::new(sen).args(["--endpoints", &eps, "site", "create", "portal"]),
        "create site",
    )?;
    let mut pushes = Vec::new();
    for &pid in pids.values() {
        reset_peak_rss(pid);
    }
    let (v, s, p) = sen_cli(
        sen,
        &eps,
        &["site", "push", "portal", tree.to_str().unwrap_or_default()],
    )?;
    pushes.push(push_row("first push", &v, s, p));
    let (v, s, p) = sen_cli(
        sen,
        &eps,
        &["site", "push", "portal", tree.to_str().unwrap_or_default()],
    )?;
    pushes.push(push_row("re-push, unchanged (size+mtime check)", &v, s, p));
    let (v, s, p) = sen_cli(
        sen,
        &eps,
        &[
            "site",
            "push",
            "--checksum",
            "portal",
            tree.to_str().unwrap_or_default(),
        ],
    )?;
    pushes.push(push_row("re-push, unchanged, --checksum (reads all)", &v, s, p));
    // Edit 1% of the files (every 100th, deterministic): insert a line in
    // the middle.
    let all = files_of(&tree);
    let mut edited = 0;
    for f in all.iter().step_by(100) {
        let mut b = std::fs::read(f)?;
        let mid = b.len() / 2;
        b.splice(mid..mid, "\n// Sửa đổi theo Quyết định 201/QĐ-UBND\n".bytes());
        std::fs::write(f, b)?;
        edited += 1;
    }
    let (v, s, p) = sen_cli(
        sen,
        &eps,
        &["site", "push", "portal", tree.to_str().unwrap_or_default()],
    )?;
    let changed = v["files_changed"].as_u64().unwrap_or(0);
    if changed != edited {
        bail!("the 1% re-push saw {changed} changed files, expected {edited}");
    }
    pushes.push(push_row(&format!("re-push, 1% of files edited ({edited})"), &v, s, p));
    let node_peak: Vec<String> = pids
        .iter()
        .map(|(id, pid)| format!("node {id}: {:.0} MiB", peak_rss_mib(*pid).unwrap_or(f64::NAN)))
        .collect();
    md.push_str(&format!(
        "\n### Push throughput\n\nTree: `{}` {} (real source, {} files) + {} MiB of incompressible documents; `sen site push` wall clock, client on the same machine. MB/s = bytes scanned / time.\n\n| push | files | scanned MB | read MB | sent MB | s | MB/s | client peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n",
        a.krate,
        a.versions.last().map_or("", |s| s.as_str()),
        files_of(versions.last().unwrap_or(&tree)).len(),
        a.documents_mib
    ));
    for r in &pushes {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.0} |\n",
            r.what,
            r.files,
            mb(r.bytes_scanned),
            mb(r.bytes_hashed),
            mb(r.bytes_sent),
            r.seconds,
            r.mb_per_s,
            r.client_peak_mib
        ));
    }
    md.push_str(&format!(
        "\nPeak RSS of the nodes during these pushes: {}.\n",
        node_peak.join(", ")
    ));

    // 2. Dedup over ten releases, on a cluster of its own (the portal tree
    // above contains one of the releases).
    let (dcluster, dleader, deps, _) = start_cluster(sen, &dir.join("cluster-dedup")).await?;
    let eps_main = eps;
    let eps = deps;
    let _ = dleader;
    let mut logical = 0u64;
    let mut unique_plain = 0u64;
    let mut stored = 0u64;
    let mut per_version = Vec::new();
    for (n, (ver, vdir)) in a.versions.iter().zip(&versions).enumerate() {
        let site = format!("release-{n:02}");
        run_ok(
            Command::new(sen).args(["--endpoints", &eps, "site", "create", &site]),
            "create site",
        )?;
        let (v, _, _) = sen_cli(sen, &eps, &["site", "push", &site, vdir.to_str().unwrap_or_default()])?;
        let g = |k: &str| v[k].as_u64().unwrap_or(0);
        logical += g("bytes_scanned");
        unique_plain += g("bytes_sent_plain");
        stored += g("bytes_sent");
        per_version.push(json!({"version": ver, "scanned": g("bytes_scanned"), "sent_plain": g("bytes_sent_plain"), "sent": g("bytes_sent")}));
    }
    drop(dcluster);
    let eps = eps_main;
    md.push_str(&format!(
        "\n### Dedup of {} releases\n\n`{}` {} … {}: each release pushed as its own site (all kept).\n\n| | MB |\n|---|---|\n| logical (sum of the {} trees) | {:.1} |\n| unique chunk plaintext sent | {:.1} |\n| stored (compressed) sent | {:.1} |\n\nDedup ratio (logical / unique plaintext): **{:.1}×**; with compression (logical / stored): **{:.1}×**. Per-release bytes: `content.json`.\n",
        a.versions.len(),
        a.krate,
        a.versions.first().map_or("", |s| s.as_str()),
        a.versions.last().map_or("", |s| s.as_str()),
        a.versions.len(),
        mb(logical),
        mb(unique_plain),
        mb(stored),
        logical as f64 / unique_plain.max(1) as f64,
        logical as f64 / stored.max(1) as f64,
    ));

    // 3. HTTP: sen vs nginx.
    let www = work.join("www");
    std::fs::create_dir_all(&www)?;
    let small = Noise::bytes(4, 4096);
    let large = Noise::bytes(5, 4 * 1024 * 1024);
    std::fs::write(www.join("small.bin"), &small)?;
    std::fs::write(www.join("large.bin"), &large)?;
    run_ok(
        Command::new(sen).args(["--endpoints", &eps, "site", "create", "www"]),
        "create site",
    )?;
    sen_cli(sen, &eps, &["site", "push", "www", www.to_str().unwrap_or_default()])?;
    let port = free_port()?;
    let _nginx = Nginx::start(&nginx_bin, &work.join("nginx"), &www, port)?;
    let nginx_addr = format!("127.0.0.1:{port}");
    let sen_http = cluster.http(follower)?;
    // Both must serve the same bytes before we time them.
    for (addr, prefix) in [(&sen_http, "/sites/www/"), (&nginx_addr, "/")] {
        for (name, body) in [("small.bin", &small), ("large.bin", &large)] {
            let mut ok = false;
            for _ in 0..50 {
                if let Ok((200, n, h, _)) = stream_get(addr, &format!("{prefix}{name}"), None).await
                    && n == body.len() as u64
                    && h == blake3::hash(body)
                {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ok {
                bail!("{addr}{prefix}{name} does not serve the expected bytes");
            }
        }
    }
    let mut wrk_rows = Vec::new();
    for file in ["small.bin", "large.bin"] {
        let mut by_server: BTreeMap<&str, Vec<WrkRow>> = BTreeMap::new();
        for _ in 0..a.rounds.max(1) {
            // Interleaved, so both see the same machine state.
            by_server.entry("sen").or_default().push(wrk(
                &wrk_bin,
                &format!("http://{sen_http}/sites/www/{file}"),
                &a,
                "sen",
                file,
            )?);
            by_server.entry("nginx").or_default().push(wrk(
                &wrk_bin,
                &format!("http://{nginx_addr}/{file}"),
                &a,
                "nginx",
                file,
            )?);
        }
        for (_, mut rows) in by_server {
            rows.sort_by(|x, y| x.requests_per_s.total_cmp(&y.requests_per_s));
            wrk_rows.push(rows[rows.len() / 2].clone());
        }
    }
    md.push_str(&format!(
        "\n### HTTP serving vs nginx\n\n`wrk -t2 -c{} -d{}s --latency`, median of {} interleaved rounds; sen: one follower's HTTP port (`/sites/www/…`), nginx {}: the same files from disk (sendfile on). Client, server and the other two nodes share the machine.\n\n| file | server | req/s | MB/s | p50 ms | p99 ms | errors | sen / nginx |\n|---|---|---|---|---|---|---|---|\n",
        a.connections,
        a.wrk_duration.as_secs(),
        a.rounds.max(1),
        String::from_utf8_lossy(&run_ok(Command::new(&nginx_bin).arg("-v"), "nginx -v").map(|o| o.stderr).unwrap_or_default()).trim().trim_start_matches("nginx version: nginx/"),
    ));
    for pair in wrk_rows.chunks(2) {
        let (ng, se) = (&pair[0], &pair[1]);
        for r in [se, ng] {
            md.push_str(&format!(
                "| {} ({}) | {} | {:.0} | {:.1} | {:.2} | {:.2} | {} | {} |\n",
                r.file,
                if r.file == "small.bin" { "4 KiB" } else { "4 MiB" },
                r.server,
                r.requests_per_s,
                r.mb_per_s,
                r.p50_ms,
                r.p99_ms,
                r.errors,
                if r.server == "sen" {
                    format!("{:.2}", se.requests_per_s / ng.requests_per_s)
                } else {
                    String::new()
                }
            ));
        }
    }

    // 4. A large file end to end.
    let mut big = json!(null);
    if a.big_file_mib > 0 {
        let bdir = work.join("big");
        std::fs::create_dir_all(&bdir)?;
        let bfile = bdir.join("ban-do-so-hoa.tif");
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&bfile)?);
            let mut noise = Noise(0xB16F11E);
            let mut buf = vec![0u8; 1 << 20];
            for _ in 0..a.big_file_mib {
                noise.fill(&mut buf);
                f.write_all(&buf)?;
            }
            f.flush()?;
        }
        let size = a.big_file_mib * 1024 * 1024;
        let hash = {
            let mut h = blake3::Hasher::new();
            h.update_reader(std::fs::File::open(&bfile)?)?;
            h.finalize()
        };
        run_ok(
            Command::new(sen).args(["--endpoints", &eps, "site", "create", "big"]),
            "create site",
        )?;
        for &pid in pids.values() {
            reset_peak_rss(pid);
        }
        let (v, push_s, push_peak) = sen_cli(sen, &eps, &["site", "push", "big", bdir.to_str().unwrap_or_default()])?;
        let dep = v["deployment"].as_u64().unwrap_or(0);
        cluster.wait_applied(follower, dep, Duration::from_secs(600)).await?;
        let node_push_peak: BTreeMap<u64, f64> = pids
            .iter()
            .map(|(id, pid)| (*id, peak_rss_mib(*pid).unwrap_or(f64::NAN)))
            .collect();
        reset_peak_rss(pids[&follower]);
        let (st, n, h, get_s) = stream_get(&sen_http, "/sites/big/ban-do-so-hoa.tif", None).await?;
        if st != 200 || n != size || h != hash {
            bail!(
                "GET of the large file returned {st}, {n} bytes, hash match {}",
                h == hash
            );
        }
        let mid = size / 2;
        let (st, n, _, range_s) = stream_get(
            &sen_http,
            "/sites/big/ban-do-so-hoa.tif",
            Some(&format!("bytes={mid}-{}", mid + 999_999)),
        )
        .await?;
        if st != 206 || n != 1_000_000 {
            bail!("range GET of the large file returned {st} with {n} bytes");
        }
        let serve_peak = peak_rss_mib(pids[&follower]).unwrap_or(f64::NAN);
        let pulled = work.join("pulled");
        let (_, pull_s, pull_peak) = sen_cli(sen, &eps, &["site", "pull", "big", pulled.to_str().unwrap_or_default()])?;
        let mut ph = blake3::Hasher::new();
        ph.update_reader(std::fs::File::open(pulled.join("ban-do-so-hoa.tif"))?)?;
        if ph.finalize() != hash {
            bail!("the pulled large file differs");
        }
        let _ = std::fs::remove_dir_all(&pulled);
        let _ = std::fs::remove_file(&bfile);
        md.push_str(&format!(
            "\n### A {} MiB file end to end\n\n| step | s | MB/s | peak RSS MiB |\n|---|---|---|---|\n| push (client) | {:.1} | {:.0} | {:.0} |\n| push (nodes) | | | {} |\n| GET whole file from a follower (streamed, blake3 checked) | {:.1} | {:.0} | node {follower}: {:.0} |\n| GET 1 MB range from the middle | {:.3} | | |\n| `sen site pull` (blake3 checked) | {:.1} | {:.0} | {:.0} |\n",
            a.big_file_mib,
            push_s,
            mb(size) / push_s,
            push_peak,
            node_push_peak.iter().map(|(id, m)| format!("node {id}: {m:.0}")).collect::<Vec<_>>().join(", "),
            get_s,
            mb(size) / get_s,
            serve_peak,
            range_s,
            pull_s,
            mb(size) / pull_s,
            pull_peak
        ));
        big = json!({"mib": a.big_file_mib, "push_s": push_s, "push_client_peak_mib": push_peak, "push_node_peak_mib": node_push_peak,
            "get_s": get_s, "get_node_peak_mib": serve_peak, "range_s": range_s, "pull_s": pull_s, "pull_client_peak_mib": pull_peak});
    }
    drop(cluster);
    report::write(
        out,
        "content",
        &json!({"machine": machine, "args": format!("{a:?}"), "pushes": pushes,
            "dedup": {"logical": logical, "unique_plain": unique_plain, "stored": stored, "per_version": per_version},
            "http": wrk_rows, "big_file": big}),
        &md,
    )
}
