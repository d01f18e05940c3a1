//! Site content in the chaos workload.
//!
//! One pusher deploys numbered versions of a small tree (`sen site push`'s
//! code path, through the proxies like every client) while one HTTP reader
//! per node fetches the files straight from that node, as a portal visitor
//! would. Every file of version `v` carries `v` in its first line and bytes
//! derived from `(v, file)`, so a response proves which version it came
//! from. The checker ([`check`]) then proves, offline:
//!
//! - every body is exactly the bytes of the version it claims (no torn or
//!   corrupt file);
//! - a deployment id always means one version, on every node and for every
//!   file (never a mixed deployment), and it is the version the pusher was
//!   told it got;
//! - a node never goes back to an older deployment;
//! - after healing, every node serves the same deployment, at least as new
//!   as the last acknowledged push (no acknowledged deployment lost).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sen_client::content::PushOptions;
use sen_client::{Client, ClientOptions};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cluster::{ProcessCluster, Web};

/// The site the workload deploys.
pub const SITE: &str = "chaos-site";
/// Files per version.
pub const FILES: usize = 4;

/// One push attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushRec {
    pub version: u64,
    pub invoke_us: u64,
    pub complete_us: u64,
    /// `ok` (deployed as `deployment`) or `unknown` (an error: the
    /// deployment may or may not have been applied).
    pub outcome: String,
    pub deployment: Option<u64>,
    pub error: Option<String>,
}

/// One HTTP read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadRec {
    pub node: u64,
    /// Position in this node's reader (reads are sequential per node).
    pub seq: u64,
    pub at_us: u64,
    pub file: usize,
    /// HTTP status; 0 = no response (connection error or timeout).
    pub status: u16,
    /// `X-Sen-Revision`: the deployment served.
    pub revision: Option<u64>,
    /// The version the body says it is.
    pub version: Option<u64>,
    /// The body is exactly version `version` of file `file`.
    pub body_ok: bool,
    /// Read after healing and convergence.
    #[serde(default)]
    pub final_read: bool,
    pub error: Option<String>,
}

/// Everything the site workload saw (`site.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SiteHistory {
    pub pushes: Vec<PushRec>,
    pub reads: Vec<ReadRec>,
}

/// Verdict of the site checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SiteCheck {
    pub pushes_ok: usize,
    pub pushes_unknown: usize,
    pub reads_ok: usize,
    pub reads_failed: usize,
    /// Distinct deployments seen served.
    pub deployments_served: usize,
    pub violations: Vec<String>,
}

/// The bytes of `file` in `version`: a header line, then 1–24 KiB derived
/// from both.
pub fn file_body(version: u64, file: usize) -> Vec<u8> {
    let mut out = format!("sen-chaos v{version} f{file}\n").into_bytes();
    let n = 1024 + ((version * 7919 + file as u64 * 104_729) % (23 * 1024)) as usize;
    let mut x = (version << 8 | file as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    out.extend((0..n).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    out
}

/// The version a body claims, and whether it is exactly that version of
/// `file`.
fn parse_body(body: &[u8], file: usize) -> (Option<u64>, bool) {
    let first = body.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(first);
    let version = text
        .strip_prefix("sen-chaos v")
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    let ok = version.is_some_and(|v| body == file_body(v, file).as_slice());
    (version, ok)
}

fn file_name(i: usize) -> String {
    format!("trang-{i}.html")
}

/// Deploy version 1, 2, 3, … until `stop`.
pub async fn pusher(
    endpoints: Vec<String>,
    credentials: ClientOptions,
    dir: PathBuf,
    start: Instant,
    seed: u64,
    stop: CancellationToken,
    out: Arc<Mutex<SiteHistory>>,
) {
    let opts = ClientOptions {
        timeout: Duration::from_secs(15),
        attempt_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(300),
        ..credentials
    };
    let Ok(cl) = Client::new(&endpoints, opts) else { return };
    let mut rng = StdRng::seed_from_u64(seed);
    let now = || start.elapsed().as_micros() as u64;
    // The site is created before the faults start; retry until then.
    while !stop.is_cancelled() && cl.create_site(SITE).await.is_err() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut version = 0u64;
    while !stop.is_cancelled() {
        version += 1;
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        for i in 0..FILES {
            if std::fs::write(dir.join(file_name(i)), file_body(version, i)).is_err() {
                return;
            }
        }
        let push = PushOptions {
            delete: true,
            parallel: 2,
            checksum: true,
            message: format!("v{version}"),
            author: "sen-chaos".into(),
            ..Default::default()
        };
        let invoke_us = now();
        let r = cl.push(SITE, &dir, &push, None).await;
        let rec = match r {
            Ok(s) => PushRec {
                version,
                invoke_us,
                complete_us: now(),
                outcome: "ok".into(),
                deployment: s.deployment,
                error: None,
            },
            Err(e) => PushRec {
                version,
                invoke_us,
                complete_us: now(),
                outcome: "unknown".into(),
                deployment: None,
                error: Some(e.to_string()),
            },
        };
        if let Ok(mut h) = out.lock() {
            h.pushes.push(rec);
        }
        let think = rng.random_range(100..=400);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(think)) => {}
            _ = stop.cancelled() => {}
        }
    }
}

async fn read_once(node: u64, http: &Web, seq: u64, file: usize, start: Instant) -> ReadRec {
    let path = format!("/sites/{SITE}/{}", file_name(file));
    let at_us = start.elapsed().as_micros() as u64;
    let mut rec = ReadRec {
        node,
        seq,
        at_us,
        file,
        status: 0,
        revision: None,
        version: None,
        body_ok: false,
        final_read: false,
        error: None,
    };
    match tokio::time::timeout(Duration::from_secs(3), http.request("GET", &path, &[])).await {
        Err(_) => rec.error = Some("timed out".into()),
        Ok(Err(e)) => rec.error = Some(format!("{e:#}")),
        Ok(Ok(r)) => {
            rec.status = r.status;
            rec.revision = r.header("x-sen-revision").and_then(|v| v.parse().ok());
            if r.status == 200 {
                let (v, ok) = parse_body(&r.body, file);
                rec.version = v;
                rec.body_ok = ok;
            }
        }
    }
    rec
}

/// Read node `node`'s copy of the site over HTTP until `stop`.
pub async fn reader(node: u64, http: Web, start: Instant, stop: CancellationToken, out: Arc<Mutex<SiteHistory>>) {
    let mut seq = 0u64;
    while !stop.is_cancelled() {
        seq += 1;
        let rec = read_once(node, &http, seq, seq as usize % FILES, start).await;
        let failed = rec.status == 0;
        if let Ok(mut h) = out.lock() {
            h.reads.push(rec);
        }
        let pause = if failed { 200 } else { 40 };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// After healing: read every file from every node once.
pub async fn final_reads(cluster: &ProcessCluster, nodes: &[u64], start: Instant, out: &Arc<Mutex<SiteHistory>>) {
    for &n in nodes {
        let Ok(http) = cluster.web(n) else { continue };
        for f in 0..FILES {
            let mut rec = read_once(n, &http, u64::MAX - (FILES - f) as u64, f, start).await;
            rec.final_read = true;
            if let Ok(mut h) = out.lock() {
                h.reads.push(rec);
            }
        }
    }
}

/// The offline checks (see the module documentation).
pub fn check(h: &SiteHistory) -> SiteCheck {
    let mut c = SiteCheck::default();
    let mut v = Vec::new();
    let acked: BTreeMap<u64, u64> = h
        .pushes
        .iter()
        .filter(|p| p.outcome == "ok")
        .filter_map(|p| Some((p.deployment?, p.version)))
        .collect();
    c.pushes_ok = h.pushes.iter().filter(|p| p.outcome == "ok").count();
    c.pushes_unknown = h.pushes.len() - c.pushes_ok;
    let max_pushed = h.pushes.iter().map(|p| p.version).max().unwrap_or(0);
    let last_acked = h
        .pushes
        .iter()
        .filter(|p| p.outcome == "ok" && p.deployment.is_some())
        .map(|p| p.version)
        .max()
        .unwrap_or(0);

    // Deployment → the versions it was served as.
    let mut served: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for r in &h.reads {
        if r.status != 200 {
            if r.status != 0 && r.status != 404 {
                v.push(format!("node {} answered {} for file {}", r.node, r.status, r.file));
            }
            c.reads_failed += 1;
            continue;
        }
        c.reads_ok += 1;
        let Some(ver) = r.version else {
            v.push(format!(
                "node {} served file {} with no version header line",
                r.node, r.file
            ));
            continue;
        };
        if !r.body_ok {
            v.push(format!(
                "node {} served a body for file {} that is not exactly version {ver}",
                r.node, r.file
            ));
        }
        if ver > max_pushed {
            v.push(format!("node {} served version {ver}, never pushed", r.node));
        }
        match r.revision {
            Some(rev) => {
                served.entry(rev).or_default().insert(ver);
            }
            None => v.push(format!("node {} served file {} without X-Sen-Revision", r.node, r.file)),
        }
    }
    c.deployments_served = served.len();
    for (rev, vers) in &served {
        if vers.len() > 1 {
            v.push(format!(
                "deployment {rev} was served as versions {vers:?}: a mixed deployment"
            ));
        }
        if let Some(want) = acked.get(rev)
            && vers.iter().any(|x| x != want)
        {
            v.push(format!(
                "deployment {rev} was acknowledged as version {want} but served as {vers:?}"
            ));
        }
    }
    // Per node, deployments never go back and files never disappear once
    // served (reads of one node are sequential).
    let mut per_node: BTreeMap<u64, Vec<&ReadRec>> = BTreeMap::new();
    for r in h.reads.iter().filter(|r| r.status == 200 || r.status == 404) {
        per_node.entry(r.node).or_default().push(r);
    }
    for (node, mut reads) in per_node {
        reads.sort_by_key(|r| (r.final_read, r.seq));
        if let Some(first) = reads.iter().position(|r| r.status == 200)
            && let Some(gone) = reads[first..].iter().find(|r| r.status == 404)
        {
            v.push(format!(
                "node {node} answered 404 for file {} at {:.2} s after serving the site",
                gone.file,
                gone.at_us as f64 / 1e6
            ));
        }
        reads.retain(|r| r.status == 200 && r.revision.is_some());
        for w in reads.windows(2) {
            if let (Some(a), Some(b)) = (w[0].revision, w[1].revision)
                && b < a
            {
                v.push(format!(
                    "node {node} went back from deployment {a} to {b} (at {:.2} s)",
                    w[1].at_us as f64 / 1e6
                ));
                break;
            }
        }
    }
    // After healing: one deployment everywhere, no acknowledged one lost.
    let finals: Vec<&ReadRec> = h.reads.iter().filter(|r| r.final_read).collect();
    if !finals.is_empty() {
        let revs: BTreeSet<Option<u64>> = finals.iter().map(|r| r.revision).collect();
        if revs.len() > 1 {
            v.push(format!("after healing the nodes serve different deployments: {revs:?}"));
        }
        for r in &finals {
            if r.status != 200 {
                v.push(format!(
                    "after healing node {} answered {} for file {} ({})",
                    r.node,
                    r.status,
                    r.file,
                    r.error.as_deref().unwrap_or("")
                ));
            } else if r.version.unwrap_or(0) < last_acked {
                v.push(format!(
                    "after healing node {} serves version {:?}, older than the acknowledged version {last_acked}: an acknowledged deployment was lost",
                    r.node, r.version
                ));
            }
        }
    }
    v.sort();
    v.dedup();
    c.violations = v;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(node: u64, seq: u64, rev: u64, ver: u64, file: usize) -> ReadRec {
        ReadRec {
            node,
            seq,
            at_us: seq,
            file,
            status: 200,
            revision: Some(rev),
            version: Some(ver),
            body_ok: true,
            final_read: false,
            error: None,
        }
    }

    fn push(version: u64, dep: u64) -> PushRec {
        PushRec {
            version,
            invoke_us: 0,
            complete_us: 1,
            outcome: "ok".into(),
            deployment: Some(dep),
            error: None,
        }
    }

    #[test]
    fn bodies_say_what_they_are() {
        let b = file_body(7, 2);
        assert_eq!(parse_body(&b, 2), (Some(7), true));
        assert_eq!(parse_body(&b, 1), (Some(7), false));
        let mut torn = b.clone();
        torn.truncate(b.len() - 1);
        assert_eq!(parse_body(&torn, 2), (Some(7), false));
    }

    #[test]
    fn a_clean_history_passes() {
        let h = SiteHistory {
            pushes: vec![push(1, 10), push(2, 20)],
            reads: vec![read(1, 1, 10, 1, 0), read(1, 2, 20, 2, 1), read(2, 1, 20, 2, 0)],
        };
        assert!(check(&h).violations.is_empty(), "{:?}", check(&h).violations);
    }

    #[test]
    fn mixed_lost_and_backwards_deployments_are_caught() {
        // Deployment 20 served as two versions: a mix.
        let h = SiteHistory {
            pushes: vec![push(1, 10), push(2, 20)],
            reads: vec![read(1, 1, 20, 2, 0), read(2, 1, 20, 1, 1)],
        };
        assert!(check(&h).violations.iter().any(|v| v.contains("mixed")));
        // A node going back.
        let h = SiteHistory {
            pushes: vec![push(1, 10), push(2, 20)],
            reads: vec![read(1, 1, 20, 2, 0), read(1, 2, 10, 1, 1)],
        };
        assert!(check(&h).violations.iter().any(|v| v.contains("went back")));
        // An acknowledged version missing after healing.
        let mut last = read(3, u64::MAX, 10, 1, 0);
        last.final_read = true;
        let h = SiteHistory {
            pushes: vec![push(1, 10), push(2, 20)],
            reads: vec![last],
        };
        assert!(check(&h).violations.iter().any(|v| v.contains("lost")));
        // A corrupt body.
        let mut bad = read(1, 1, 10, 1, 0);
        bad.body_ok = false;
        let h = SiteHistory {
            pushes: vec![push(1, 10)],
            reads: vec![bad],
        };
        assert!(check(&h).violations.iter().any(|v| v.contains("not exactly")));
    }
}
