//! `sen drill restore`: restore a snapshot into a scratch data directory
//! and prove it equals the live cluster's state at the snapshot's Raft
//! index; report duration and throughput.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sen_backup::read::SnapshotEntry;
use sen_backup::repo::Index;
use sen_backup::restore::{self, StateSink};
use sen_backup::{Repo, RepoError};
use sen_client::Client;
use sen_proto::v1::DigestRequest;

/// A live node's state digest at its applied index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveDigest {
    pub node: u64,
    pub applied_index: u64,
    pub digest: String,
}

/// The outcome of a restore drill.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreDrill {
    pub raft_index: u64,
    pub expected_digest: String,
    pub restored_digest: String,
    /// The restored state equals the one recorded at backup time.
    pub equal: bool,
    /// Every live node's digest; those at the snapshot's index must equal.
    pub live: Vec<LiveDigest>,
    pub bytes: u64,
    pub duration_ms: u64,
    /// Kept scratch copy (a startable data directory).
    pub scratch: Option<PathBuf>,
    pub error: Option<String>,
    pub passed: bool,
}

impl RestoreDrill {
    pub fn live_at_same_index(&self) -> impl Iterator<Item = &LiveDigest> {
        self.live.iter().filter(move |l| l.applied_index == self.raft_index)
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e3 / (self.duration_ms.max(1) as f64)
    }
}

/// Every reachable node's digest (each asked directly, 30 s at most).
pub async fn live_digests(c: &Client, endpoints: &[String]) -> Vec<LiveDigest> {
    let mut out = Vec::new();
    for ep in endpoints {
        if let Ok(d) = c.digest_of(ep, Duration::from_secs(30), DigestRequest::default()).await {
            out.push(LiveDigest {
                node: d.node_id,
                applied_index: d.applied_index,
                digest: d.digest,
            });
        }
    }
    out
}

/// Where a restore drill builds its copy.
#[derive(Debug, Clone, Copy)]
pub struct Scratch<'a> {
    /// A new directory (removed afterwards unless `keep`).
    pub dir: &'a Path,
    /// Keep a successful copy (a startable data directory).
    pub keep: bool,
}

/// Restore `e` into the scratch directory through the sink `make_sink`
/// opens there (a fresh data directory), compare digests with the snapshot
/// and with `live`, and remove the copy unless kept (and it succeeded).
pub fn run<S: StateSink>(
    repo: &Repo,
    index: &Index,
    e: &SnapshotEntry,
    Scratch { dir, keep }: Scratch<'_>,
    make_sink: impl FnOnce(&Path) -> Result<S, RepoError>,
    live: Vec<LiveDigest>,
    progress: &dyn Fn(u64),
) -> RestoreDrill {
    let started = Instant::now();
    let result = make_sink(dir).and_then(|mut sink| restore::cluster(repo, index, &e.snapshot, &mut sink, progress));
    let duration_ms = started.elapsed().as_millis() as u64;
    let (restored_digest, bytes, error) = match result {
        Ok(r) => (r.digest, r.bytes, None),
        Err(err) => (String::new(), 0, Some(err.to_string())),
    };
    if !keep || error.is_some() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let equal = error.is_none() && restored_digest == e.snapshot.state_digest;
    let live_equal = live
        .iter()
        .filter(|l| l.applied_index == e.snapshot.raft_index)
        .all(|l| l.digest == restored_digest);
    RestoreDrill {
        raft_index: e.snapshot.raft_index,
        expected_digest: e.snapshot.state_digest.clone(),
        restored_digest,
        equal,
        live,
        bytes,
        duration_ms,
        scratch: (keep && error.is_none()).then(|| dir.to_owned()),
        error,
        passed: equal && live_equal,
    }
}
