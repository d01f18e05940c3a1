//! Faults and how they are applied to a running cluster.
//!
//! A [`Fault`] is concrete (it names nodes); scenarios decide targets such
//! as "the leader" at run time and the [`Nemesis`] records every fault it
//! applies with its time, so a run's schedule can be replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::cluster::ProcessCluster;
use crate::proxy::{LinkFault, Proxy};

/// One fault or repair, with concrete targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// `kill -9`.
    Kill { node: u64 },
    /// Start a stopped node again (same data directory).
    Restart { node: u64 },
    /// `SIGTERM` and wait for a clean exit.
    Terminate { node: u64 },
    /// `SIGSTOP`.
    Pause { node: u64 },
    /// `SIGCONT`.
    Resume { node: u64 },
    /// Cut every link between nodes of different groups (both ways).
    Partition { name: String, groups: Vec<Vec<u64>> },
    /// Cut the links from each node of `from` to each node of `to` (RPCs
    /// initiated by `from`), leaving the other direction up.
    OneWay { from: Vec<u64>, to: Vec<u64> },
    /// Cut exactly these directed links.
    Cut { links: Vec<(u64, u64)> },
    /// Apply a delay / jitter / loss to these directed links.
    Degrade { links: Vec<(u64, u64)>, fault: LinkFault },
    /// Every peer link healthy again.
    HealNetwork,
    /// Fill the node's (size-limited tmpfs) data filesystem.
    DiskFull { node: u64 },
    /// Free it again.
    DiskFree { node: u64 },
    /// While the node is down: cut the last `bytes` of its newest Raft WAL
    /// file, or flip one bit in its last 4 KiB.
    CorruptLogTail { node: u64, mode: CorruptMode, bytes: u64 },
    /// Restart the node under libfaketime: wall-clock offset (s) and clock
    /// rate (1.0 = normal).
    Clock { node: u64, offset_s: i64, rate: f64 },
    /// Restart the node with a true clock.
    ClockReset { node: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorruptMode {
    Truncate,
    BitFlip,
}

impl Fault {
    /// A short label for reports and plots.
    pub fn label(&self) -> String {
        match self {
            Fault::Kill { node } => format!("kill -9 n{node}"),
            Fault::Restart { node } => format!("restart n{node}"),
            Fault::Terminate { node } => format!("SIGTERM n{node}"),
            Fault::Pause { node } => format!("pause n{node}"),
            Fault::Resume { node } => format!("resume n{node}"),
            Fault::Partition { name, .. } => format!("partition {name}"),
            Fault::OneWay { from, to } => format!("one-way {from:?}->{to:?}"),
            Fault::Cut { links } => format!("cut {} links", links.len()),
            Fault::Degrade { fault, links } => format!(
                "degrade {} links (delay {}±{} ms, loss {})",
                links.len(),
                fault.delay_ms,
                fault.jitter_ms,
                fault.loss
            ),
            Fault::HealNetwork => "heal network".into(),
            Fault::DiskFull { node } => format!("disk full n{node}"),
            Fault::DiskFree { node } => format!("disk freed n{node}"),
            Fault::CorruptLogTail { node, mode, bytes } => format!("corrupt log tail n{node} ({mode:?} {bytes} B)"),
            Fault::Clock { node, offset_s, rate } => format!("clock n{node} {offset_s:+}s x{rate}"),
            Fault::ClockReset { node } => format!("clock reset n{node}"),
        }
    }

    /// Whether this entry repairs rather than injects.
    pub fn is_repair(&self) -> bool {
        matches!(
            self,
            Fault::Restart { .. }
                | Fault::Resume { .. }
                | Fault::HealNetwork
                | Fault::DiskFree { .. }
                | Fault::ClockReset { .. }
        )
    }
}

/// A fault as executed: when, and what happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Executed {
    pub at_us: u64,
    pub fault: Fault,
    pub label: String,
    /// What the harness observed (e.g. "node refused to start: …").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub ok: bool,
}

/// The proxies of a cluster: `peer[(i, j)]` carries node i's calls to node
/// j; `client[j]` carries the workload's calls to node j.
pub struct Proxies {
    pub peer: BTreeMap<(u64, u64), Proxy>,
    pub client: BTreeMap<u64, Proxy>,
}

impl Proxies {
    /// A proxy for every ordered pair of `ids` and one client proxy per node.
    pub async fn start(cluster: &ProcessCluster, ids: &[u64], seed: u64) -> Result<Self> {
        let mut peer = BTreeMap::new();
        let mut client = BTreeMap::new();
        for &i in ids {
            for &j in ids {
                if i == j {
                    continue;
                }
                let bind = format!("127.0.0.{}:0", 10 + i);
                let p = Proxy::start(&bind, &cluster.grpc(j)?, seed ^ (i << 8 | j)).await?;
                peer.insert((i, j), p);
            }
            let p = Proxy::start("127.0.0.1:0", &cluster.grpc(i)?, seed ^ (i << 16)).await?;
            client.insert(i, p);
        }
        Ok(Self { peer, client })
    }

    /// `network.peer-addresses` for node `i`.
    pub fn overrides_for(&self, i: u64) -> BTreeMap<u64, String> {
        self.peer
            .iter()
            .filter(|((from, _), _)| *from == i)
            .map(|((_, to), p)| (*to, p.addr().to_string()))
            .collect()
    }

    pub fn client_addr(&self, node: u64) -> Result<String> {
        Ok(self
            .client
            .get(&node)
            .ok_or_else(|| anyhow!("no client proxy for node {node}"))?
            .addr()
            .to_string())
    }

    fn set(&self, links: &[(u64, u64)], fault: &LinkFault) {
        for l in links {
            if let Some(p) = self.peer.get(l) {
                p.set(fault.clone());
            }
        }
    }

    pub fn heal(&self) {
        for p in self.peer.values() {
            p.set(LinkFault::default());
        }
    }
}

/// Every directed link between different groups.
pub fn links_between_groups(groups: &[Vec<u64>]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (gi, a) in groups.iter().enumerate() {
        for (gj, b) in groups.iter().enumerate() {
            if gi == gj {
                continue;
            }
            for &i in a {
                for &j in b {
                    out.push((i, j));
                }
            }
        }
    }
    out
}

/// Applies faults to the cluster and remembers what it did.
pub struct Nemesis {
    pub proxies: Proxies,
    pub executed: Vec<Executed>,
    /// Nodes the harness believes are down (killed, terminated, refused).
    pub down: BTreeSet<u64>,
    pub paused: BTreeSet<u64>,
    /// Nodes that refused to start after a fault (kept down).
    pub refused: BTreeMap<u64, String>,
    pub faketime_lib: Option<PathBuf>,
    /// tmpfs mounts created for disk faults.
    pub mounts: BTreeMap<u64, PathBuf>,
    /// Background fillers keeping a node's disk full, by node.
    fillers: BTreeMap<u64, std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// The libfaketime library, if installed (Debian package `faketime`).
pub fn find_faketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

impl Nemesis {
    pub fn new(proxies: Proxies) -> Self {
        Self {
            proxies,
            executed: Vec::new(),
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            refused: BTreeMap::new(),
            faketime_lib: find_faketime(),
            mounts: BTreeMap::new(),
            fillers: BTreeMap::new(),
        }
    }

    /// Apply `fault` now; `now_us` is the run clock.
    pub async fn apply(&mut self, cluster: &mut ProcessCluster, fault: Fault, now_us: u64) -> Executed {
        let result = self.apply_inner(cluster, &fault).await;
        let (ok, note) = match result {
            Ok(note) => (true, note),
            Err(e) => (false, Some(format!("{e:#}"))),
        };
        let ex = Executed {
            at_us: now_us,
            label: fault.label(),
            fault,
            note,
            ok,
        };
        self.executed.push(ex.clone());
        ex
    }

    async fn apply_inner(&mut self, cluster: &mut ProcessCluster, fault: &Fault) -> Result<Option<String>> {
        match fault {
            Fault::Kill { node } => {
                if self.paused.remove(node) {
                    let _ = cluster.resume(*node);
                }
                cluster.kill9(*node)?;
                self.down.insert(*node);
                Ok(None)
            }
            Fault::Terminate { node } => {
                let code = cluster.terminate(*node, Duration::from_secs(30))?;
                self.down.insert(*node);
                Ok(Some(format!("exit code {code:?}")))
            }
            Fault::Restart { node } => self.restart(cluster, *node).await,
            Fault::Pause { node } => {
                cluster.pause(*node)?;
                self.paused.insert(*node);
                Ok(None)
            }
            Fault::Resume { node } => {
                cluster.resume(*node)?;
                self.paused.remove(node);
                Ok(None)
            }
            Fault::Partition { groups, .. } => {
                self.proxies.set(
                    &links_between_groups(groups),
                    &LinkFault {
                        blackhole: true,
                        ..Default::default()
                    },
                );
                Ok(None)
            }
            Fault::OneWay { from, to } => {
                let links: Vec<(u64, u64)> = from.iter().flat_map(|i| to.iter().map(move |j| (*i, *j))).collect();
                self.proxies.set(
                    &links,
                    &LinkFault {
                        blackhole: true,
                        ..Default::default()
                    },
                );
                Ok(None)
            }
            Fault::Cut { links } => {
                self.proxies.set(
                    links,
                    &LinkFault {
                        blackhole: true,
                        ..Default::default()
                    },
                );
                Ok(None)
            }
            Fault::Degrade { links, fault } => {
                self.proxies.set(links, fault);
                Ok(None)
            }
            Fault::HealNetwork => {
                self.proxies.heal();
                Ok(None)
            }
            Fault::DiskFull { node } => {
                let dir = cluster
                    .nodes
                    .get(node)
                    .ok_or_else(|| anyhow!("no node {node}"))?
                    .data_dir
                    .clone();
                let filler = dir.join("FILLER");
                let n = fill_disk(&filler)?;
                // Keep it full: whatever the node frees (compactions, old
                // snapshots) is taken again at once.
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                self.fillers.insert(*node, stop.clone());
                self.mounts.insert(*node, dir.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let _ = fill_disk_append(&filler);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                });
                Ok(Some(format!("wrote {n} bytes of filler; the filesystem stays full")))
            }
            Fault::DiskFree { node } => {
                let dir = cluster
                    .nodes
                    .get(node)
                    .ok_or_else(|| anyhow!("no node {node}"))?
                    .data_dir
                    .clone();
                if let Some(stop) = self.fillers.remove(node) {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = std::fs::remove_file(dir.join("FILLER"));
                // A node whose storage failed stops Raft; restart it.
                let running = cluster.nodes.get_mut(node).is_some_and(|n| n.is_running());
                let healthy = running && cluster.local_status_ok(*node).await;
                if healthy {
                    Ok(Some("freed; the node stayed healthy".into()))
                } else {
                    if running {
                        let _ = cluster.kill9(*node);
                    }
                    let note = self.restart(cluster, *node).await?;
                    Ok(Some(format!(
                        "freed; the node had stopped and was restarted{}",
                        note.map(|n| format!(" ({n})")).unwrap_or_default()
                    )))
                }
            }
            Fault::CorruptLogTail { node, mode, bytes } => {
                if !self.down.contains(node) {
                    bail!("node {node} must be down to corrupt its log");
                }
                let dir = cluster
                    .nodes
                    .get(node)
                    .ok_or_else(|| anyhow!("no node {node}"))?
                    .data_dir
                    .join("raft");
                corrupt_wal_tail(&dir, *mode, *bytes).map(Some)
            }
            Fault::Clock { node, offset_s, rate } => {
                let lib = self.faketime_lib.clone().ok_or_else(|| {
                    anyhow!("libfaketime is not installed (Debian package faketime); clock faults skipped")
                })?;
                if !self.down.contains(node) {
                    cluster.terminate(*node, Duration::from_secs(30))?;
                }
                let spec = format!("{offset_s:+} x{rate}");
                cluster.set_env(
                    *node,
                    vec![
                        ("LD_PRELOAD".into(), lib.display().to_string()),
                        ("FAKETIME".into(), spec),
                        ("FAKETIME_NO_CACHE".into(), "1".into()),
                        ("FAKETIME_DONT_RESET".into(), "1".into()),
                    ],
                )?;
                self.down.insert(*node);
                self.restart(cluster, *node).await
            }
            Fault::ClockReset { node } => {
                if !self.down.contains(node) {
                    cluster.terminate(*node, Duration::from_secs(30))?;
                    self.down.insert(*node);
                }
                cluster.set_env(*node, Vec::new())?;
                self.restart(cluster, *node).await
            }
        }
    }

    /// Start a down node and wait until it answers, or until it exits (a
    /// node may refuse to start after a fault: that is recorded, not an
    /// error of the harness).
    async fn restart(&mut self, cluster: &mut ProcessCluster, node: u64) -> Result<Option<String>> {
        if self.refused.contains_key(&node) {
            return Ok(Some("stays down: it refused to start earlier".into()));
        }
        cluster.start(node)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(code) = cluster.exit_code(node) {
                let reason = cluster
                    .log(node)
                    .lines()
                    .rev()
                    .find(|l| l.contains("ERROR") || l.contains("sen:"))
                    .unwrap_or("")
                    .to_owned();
                self.refused.insert(node, reason.clone());
                return Ok(Some(format!("node refused to start (exit {code:?}): {reason}")));
            }
            if cluster.local_status_ok(node).await {
                self.down.remove(&node);
                return Ok(None);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("node {node} did not come up within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Undo every fault still in effect (network, pauses, down nodes,
    /// disks, clocks), recording each repair.
    pub async fn heal_all(&mut self, cluster: &mut ProcessCluster, now_us: impl Fn() -> u64) {
        if self.proxies.peer.values().any(|p| !p.fault().is_healthy()) {
            self.apply(cluster, Fault::HealNetwork, now_us()).await;
        }
        for node in self.paused.clone() {
            self.apply(cluster, Fault::Resume { node }, now_us()).await;
        }
        for node in self.mounts.keys().copied().collect::<Vec<_>>() {
            let dir = cluster.nodes.get(&node).map(|n| n.data_dir.join("FILLER"));
            if dir.is_some_and(|d| d.exists()) {
                self.apply(cluster, Fault::DiskFree { node }, now_us()).await;
            }
        }
        for node in cluster.env_nodes() {
            self.apply(cluster, Fault::ClockReset { node }, now_us()).await;
        }
        for node in self.down.clone() {
            if !self.refused.contains_key(&node) {
                self.apply(cluster, Fault::Restart { node }, now_us()).await;
            }
        }
    }
}

/// Write zeros into `path` until the filesystem is full; returns the bytes
/// written.
fn fill_disk(path: &std::path::Path) -> Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.write(&buf) {
            Ok(0) => break,
            Ok(w) => n += w as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => return Err(e.into()),
        }
    }
    let _ = f.sync_all();
    Ok(n)
}

/// Append to the filler until the filesystem is full again.
fn fill_disk_append(path: &std::path::Path) -> Result<u64> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    let buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match f.write(&buf) {
            Ok(0) => break,
            Ok(w) => n += w as u64,
            Err(_) => break,
        }
    }
    Ok(n)
}

/// Damage the tail of the newest RocksDB WAL file in `raft_dir`.
pub fn corrupt_wal_tail(raft_dir: &std::path::Path, mode: CorruptMode, bytes: u64) -> Result<String> {
    let mut wals: Vec<(u64, PathBuf)> = std::fs::read_dir(raft_dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let num = name.strip_suffix(".log")?.parse::<u64>().ok()?;
            Some((num, e.path()))
        })
        .collect();
    wals.sort();
    let (_, wal) = wals
        .pop()
        .ok_or_else(|| anyhow!("no WAL file in {}", raft_dir.display()))?;
    let len = std::fs::metadata(&wal)?.len();
    if len == 0 {
        return Ok(format!("{} is empty; nothing to corrupt", wal.display()));
    }
    match mode {
        CorruptMode::Truncate => {
            let cut = bytes.min(len);
            let f = std::fs::OpenOptions::new().write(true).open(&wal)?;
            f.set_len(len - cut)?;
            f.sync_all()?;
            Ok(format!("cut {cut} of {len} bytes from {}", wal.display()))
        }
        CorruptMode::BitFlip => {
            use std::io::{Read, Seek, SeekFrom, Write};
            let window = len.min(4096);
            let pos = len - 1 - (bytes % window);
            let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&wal)?;
            f.seek(SeekFrom::Start(pos))?;
            let mut b = [0u8; 1];
            f.read_exact(&mut b)?;
            b[0] ^= 1 << (bytes % 8);
            f.seek(SeekFrom::Start(pos))?;
            f.write_all(&b)?;
            f.sync_all()?;
            Ok(format!(
                "flipped bit {} of byte {pos} of {} ({len} bytes)",
                bytes % 8,
                wal.display()
            ))
        }
    }
}
