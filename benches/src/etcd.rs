//! etcd 3.4 (Debian's `etcd-server`) as the peer for the key-value and
//! failover comparisons: a local 3-member cluster on 127.0.0.6x with fsync
//! on (etcd always syncs its WAL), and a minimal gRPC client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tonic::transport::{Channel, Endpoint};

pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;

/// Timing flags, so both systems can be compared on the same budget.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub heartbeat_ms: u64,
    pub election_ms: u64,
}

impl Timers {
    /// etcd's defaults (heartbeat 100 ms, election timeout 1000 ms).
    pub const DEFAULT: Timers = Timers {
        heartbeat_ms: 100,
        election_ms: 1000,
    };
}

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct EtcdCluster {
    members: Vec<Member>,
    initial: String,
    timers: Timers,
}

fn free_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

pub fn binary() -> Result<PathBuf> {
    let p = PathBuf::from("/usr/bin/etcd");
    if !p.exists() {
        bail!("etcd is not installed: run `./scripts/setup.sh --bench` (Debian package etcd-server 3.4)");
    }
    Ok(p)
}

pub fn version() -> String {
    Command::new("/usr/bin/etcd")
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

impl EtcdCluster {
    /// Process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(|c| c.id()))
            .collect()
    }

    /// Start `n` members under `dir` and wait until they have a leader.
    pub async fn start(dir: &Path, n: usize, timers: Timers) -> Result<Self> {
        binary()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let mut members = Vec::new();
        for i in 1..=n {
            let ip = format!("127.0.0.{}", 60 + i);
            members.push(Member {
                name: format!("e{i}"),
                client_url: format!("http://{ip}:{}", free_port(&ip)?),
                peer_url: format!("http://{ip}:{}", free_port(&ip)?),
                dir: dir.join(format!("e{i}")),
                log: dir.join(format!("e{i}.log")),
                child: None,
            });
        }
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Self {
            members,
            initial,
            timers,
        };
        for i in 0..n {
            c.spawn(i, "new")?;
        }
        c.wait_leader(Duration::from_secs(30)).await?;
        Ok(c)
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<()> {
        let initial = self.initial.clone();
        let t = self.timers;
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log)?;
        let child = Command::new("/usr/bin/etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "sen-bench"])
            .args(["--heartbeat-interval", &t.heartbeat_ms.to_string()])
            .args(["--election-timeout", &t.election_ms.to_string()])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start etcd")?;
        m.child = Some(child);
        Ok(())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url.clone()
    }

    /// Index of the member that leads (asked of every member).
    pub async fn leader(&self) -> Result<usize> {
        for m in &self.members {
            let Ok(ch) = channel(&m.client_url) else { continue };
            let mut c = MaintenanceClient::new(ch);
            let mut req = tonic::Request::new(pb::StatusRequest {});
            req.set_timeout(Duration::from_millis(500));
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(500), c.status(req)).await {
                let r = r.into_inner();
                if r.leader == 0 {
                    continue;
                }
                // Find which member has that id.
                for (j, o) in self.members.iter().enumerate() {
                    let Ok(ch) = channel(&o.client_url) else { continue };
                    let mut c = MaintenanceClient::new(ch);
                    let mut req = tonic::Request::new(pb::StatusRequest {});
                    req.set_timeout(Duration::from_millis(500));
                    if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(500), c.status(req)).await
                        && s.into_inner().header.is_some_and(|h| h.member_id == r.leader)
                    {
                        return Ok(j);
                    }
                }
            }
        }
        Err(anyhow!("no etcd member reports a leader"))
    }

    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        let start = Instant::now();
        loop {
            if let Ok(l) = self.leader().await {
                return Ok(l);
            }
            if start.elapsed() > timeout {
                bail!(
                    "etcd has no leader after {timeout:?} (logs in {})",
                    self.members[0].log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill9(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Start member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.spawn(i, "existing")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

pub fn channel(url: &str) -> Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_millis(200))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// A client bound to one etcd endpoint (the benchmarks pick which).
#[derive(Clone)]
pub struct EtcdClient {
    kv: KvClient<Channel>,
    timeout: Duration,
}

impl EtcdClient {
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        Ok(Self {
            kv: KvClient::new(channel(url)?),
            timeout,
        })
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut req = tonic::Request::new(pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
        });
        req.set_timeout(self.timeout);
        let mut kv = self.kv.clone();
        tokio::time::timeout(self.timeout, kv.put(req))
            .await
            .map_err(|_| anyhow!("etcd put timed out"))??;
        Ok(())
    }

    pub async fn get(&self, key: &[u8], linearizable: bool) -> Result<()> {
        let mut req = tonic::Request::new(pb::RangeRequest {
            key: key.to_vec(),
            serializable: !linearizable,
        });
        req.set_timeout(self.timeout);
        let mut kv = self.kv.clone();
        tokio::time::timeout(self.timeout, kv.range(req))
            .await
            .map_err(|_| anyhow!("etcd get timed out"))??;
        Ok(())
    }
}
