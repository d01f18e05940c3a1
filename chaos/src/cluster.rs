//! [`ProcessCluster`]: a set of `sen server` processes.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sen_client::{Client, ClientOptions};
use sen_proto::v1::StatusResponse;

/// One node of the cluster.
#[derive(Debug)]
pub struct NodeProc {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    /// Extra environment for the process (e.g. libfaketime).
    env: Vec<(String, String)>,
    /// Exit status of the last process, once it exited.
    exited: Option<Option<i32>>,
}

impl NodeProc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => match c.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    self.exited = Some(status.code());
                    self.child = None;
                    false
                }
                Err(_) => false,
            },
            None => false,
        }
    }
}

/// A cluster of `sen server` processes under one directory.
pub struct ProcessCluster {
    bin: PathBuf,
    root: PathBuf,
    extra_config: String,
    log_filter: String,
    pub nodes: BTreeMap<u64, NodeProc>,
    /// tmpfs mounts to undo when the cluster is dropped.
    mounts: Vec<PathBuf>,
}

/// A free TCP port on `ip` (bound then released; each node has its own
/// loopback address, which makes collisions unlikely).
fn free_port(ip: &str) -> Result<u16> {
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0"))?;
    Ok(l.local_addr()?.port())
}

/// Poll `f` every 20–200 ms until it returns `Some`, or fail after
/// `timeout` with `what` and the last error.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    let mut last_err = String::from("condition not met");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}: {last_err}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

impl ProcessCluster {
    /// A cluster description; nothing runs yet. `extra_config` is TOML
    /// appended to every node's configuration (e.g. `[raft]` settings).
    pub fn new(bin: impl Into<PathBuf>, root: impl Into<PathBuf>, extra_config: &str) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
        Ok(Self {
            bin: bin.into(),
            root,
            extra_config: extra_config.to_owned(),
            log_filter: std::env::var("SEN_TEST_LOG").unwrap_or_else(|_| "info,openraft=info".into()),
            nodes: BTreeMap::new(),
            mounts: Vec::new(),
        })
    }

    /// Set the nodes' log filter (`SEN_LOG`); default `SEN_TEST_LOG` or
    /// `info,openraft=info`.
    pub fn with_log(mut self, filter: &str) -> Self {
        self.log_filter = filter.to_owned();
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Declare node `id` on 127.0.0.<10+id> and write its config file.
    pub fn add(&mut self, id: u64) -> Result<&NodeProc> {
        if id == 0 || id > 200 {
            bail!("node ids 1..=200 only");
        }
        let ip = format!("127.0.0.{}", 10 + id);
        let grpc = format!("{ip}:{}", free_port(&ip)?);
        let http = format!("{ip}:{}", free_port(&ip)?);
        let dir = self.root.join(format!("node{id}"));
        let data_dir = dir.join("data");
        fs::create_dir_all(&dir)?;
        let config_path = dir.join("sen.toml");
        let config = format!(
            "id = {id}\ndata-dir = {:?}\nlisten = {grpc:?}\nhttp = {http:?}\n{}\n",
            data_dir.display().to_string(),
            self.extra_config
        );
        fs::write(&config_path, config)?;
        let node = NodeProc {
            id,
            grpc,
            http,
            data_dir,
            log_path: dir.join("node.log"),
            config_path,
            child: None,
            env: Vec::new(),
            exited: None,
        };
        self.nodes.insert(id, node);
        Ok(&self.nodes[&id])
    }

    fn node(&self, id: u64) -> Result<&NodeProc> {
        self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut NodeProc> {
        self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))
    }

    /// Start (or restart) node `id`.
    pub fn start(&mut self, id: u64) -> Result<()> {
        let bin = self.bin.clone();
        let log_filter = self.log_filter.clone();
        let n = self.node_mut(id)?;
        if n.is_running() {
            bail!("node {id} is already running");
        }
        let log = fs::OpenOptions::new().create(true).append(true).open(&n.log_path)?;
        let err = log.try_clone()?;
        let child = Command::new(&bin)
            .arg("server")
            .arg("--config")
            .arg(&n.config_path)
            .envs(n.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SEN_LOG", &log_filter)
            .env_remove("SEN_ENDPOINTS")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        n.child = Some(child);
        n.exited = None;
        Ok(())
    }

    /// The exit code of node `id` if its process has exited since it was
    /// last started (`Some(None)` = killed by a signal).
    pub fn exit_code(&mut self, id: u64) -> Option<Option<i32>> {
        let n = self.nodes.get_mut(&id)?;
        n.is_running();
        n.exited
    }

    /// Extra environment for node `id`'s next start (replaces the old).
    pub fn set_env(&mut self, id: u64, env: Vec<(String, String)>) -> Result<()> {
        self.node_mut(id)?.env = env;
        Ok(())
    }

    /// Nodes started with extra environment.
    pub fn env_nodes(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| !n.env.is_empty())
            .map(|n| n.id)
            .collect()
    }

    /// Add `network.peer-addresses` to node `id`'s configuration (applies at
    /// its next start).
    pub fn set_peer_addresses(&mut self, id: u64, peers: &BTreeMap<u64, String>) -> Result<()> {
        let n = self.node(id)?;
        let mut cfg = fs::read_to_string(&n.config_path)?;
        if let Some(i) = cfg.find("\n[network.peer-addresses]") {
            cfg.truncate(i + 1);
        }
        cfg.push_str("\n[network.peer-addresses]\n");
        for (peer, addr) in peers {
            cfg.push_str(&format!("\"{peer}\" = {addr:?}\n"));
        }
        fs::write(&n.config_path, cfg)?;
        Ok(())
    }

    /// Whether node `id` answers `Admin.LocalStatus` right now.
    pub async fn local_status_ok(&self, id: u64) -> bool {
        self.local_status(id, Duration::from_millis(500)).await.is_ok()
    }

    /// Node `id`'s own view of its Raft state (direct, not through proxies).
    pub async fn local_status(&self, id: u64, timeout: Duration) -> Result<sen_proto::v1::LocalStatusResponse> {
        let addr = self.grpc(id)?;
        let fut = async {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(timeout)
                .connect()
                .await?;
            let r = sen_proto::v1::admin_client::AdminClient::new(ch)
                .local_status(sen_proto::v1::LocalStatusRequest {})
                .await?;
            Ok::<_, anyhow::Error>(r.into_inner())
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow!("node {id} did not answer within {timeout:?}"))?
    }

    /// Mount a `size_mb` tmpfs on node `id`'s data directory (root only), so
    /// its disk can be filled.
    pub fn mount_tmpfs(&mut self, id: u64, size_mb: u64) -> Result<PathBuf> {
        let dir = self.node(id)?.data_dir.clone();
        fs::create_dir_all(&dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .context("run mount")?;
        if !out.status.success() {
            bail!(
                "mount tmpfs on {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.mounts.push(dir.clone());
        Ok(dir)
    }

    fn signal(&mut self, id: u64, sig: Signal) -> Result<()> {
        let n = self.node_mut(id)?;
        let pid = n.pid().ok_or_else(|| anyhow!("node {id} is not running"))?;
        kill(Pid::from_raw(pid as i32), sig).with_context(|| format!("send {sig} to node {id}"))?;
        Ok(())
    }

    /// `kill -9` node `id` and reap it.
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        self.signal(id, Signal::SIGKILL)?;
        let n = self.node_mut(id)?;
        if let Some(mut c) = n.child.take() {
            let _ = c.wait();
        }
        Ok(())
    }

    /// `SIGTERM` node `id` and wait (up to `timeout`) for it to exit;
    /// returns its exit code.
    pub fn terminate(&mut self, id: u64, timeout: Duration) -> Result<Option<i32>> {
        self.signal(id, Signal::SIGTERM)?;
        let n = self.node_mut(id)?;
        let mut c = n.child.take().ok_or_else(|| anyhow!("node {id} is not running"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("node {id} did not exit within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freeze node `id` (`SIGSTOP`).
    pub fn pause(&mut self, id: u64) -> Result<()> {
        self.signal(id, Signal::SIGSTOP)
    }

    /// Unfreeze node `id` (`SIGCONT`).
    pub fn resume(&mut self, id: u64) -> Result<()> {
        self.signal(id, Signal::SIGCONT)
    }

    /// gRPC addresses of all declared nodes.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.grpc.clone()).collect()
    }

    pub fn grpc(&self, id: u64) -> Result<String> {
        Ok(self.node(id)?.grpc.clone())
    }

    pub fn http(&self, id: u64) -> Result<String> {
        Ok(self.node(id)?.http.clone())
    }

    /// A client over every node.
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.endpoints(), ClientOptions::default())?)
    }

    /// A client that only talks to node `id` (short timeouts).
    pub fn client_for(&self, id: u64) -> Result<Client> {
        let opts = ClientOptions {
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        };
        Ok(Client::new(&[self.grpc(id)?], opts)?)
    }

    /// The node's log so far (for failure messages).
    pub fn log(&self, id: u64) -> String {
        self.nodes
            .get(&id)
            .and_then(|n| fs::read_to_string(&n.log_path).ok())
            .unwrap_or_default()
    }

    /// Start nodes `1..=n`, initialise node 1 and add the others as voters.
    pub async fn form(&mut self, n: u64) -> Result<()> {
        for id in 1..=n {
            if !self.nodes.contains_key(&id) {
                self.add(id)?;
            }
            self.start(id)?;
        }
        for id in 1..=n {
            let c = self.client_for(id)?;
            let addr = self.grpc(id)?;
            wait_for(&format!("node {id} to answer"), Duration::from_secs(30), || async {
                Ok(c.status_of(&addr, Duration::from_secs(1)).await.ok().map(|_| ()))
            })
            .await?;
        }
        self.client_for(1)?.init().await?;
        let client = self.client()?;
        for id in 2..=n {
            client.add_node(id, &self.grpc(id)?, false).await?;
        }
        Ok(())
    }

    /// Cluster status as seen through any node.
    pub async fn status(&self) -> Result<StatusResponse> {
        Ok(self.client()?.status().await?)
    }

    /// Wait until a leader other than `not` is known and accepts writes;
    /// returns its id.
    pub async fn wait_leader(&self, not: Option<u64>, timeout: Duration) -> Result<u64> {
        let client = self.client()?;
        wait_for("a leader", timeout, || async {
            let s = client.status().await?;
            Ok((s.leader_id != 0 && Some(s.leader_id) != not).then_some(s.leader_id))
        })
        .await
    }

    /// Wait until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> Result<()> {
        let addr = self.grpc(id)?;
        let c = self.client_for(id)?;
        wait_for(&format!("node {id} to apply {index}"), timeout, || async {
            let s = c.status_of(&addr, Duration::from_secs(2)).await?;
            let me = s.members.iter().find(|m| m.id == id);
            Ok(me.filter(|m| m.applied_index >= index).map(|_| ()))
        })
        .await
    }

    /// One Prometheus metric value of node `id` (first sample).
    pub async fn metric(&self, id: u64, name: &str) -> Result<f64> {
        let http = self.http(id)?;
        let body = http_get(&http, "/metrics").await?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("metric {name} not found on node {id}"))
    }
}

/// A minimal HTTP/1.1 GET (status line and body) for the health and
/// metrics endpoints.
pub async fn http_get(addr: &str, path: &str) -> Result<String> {
    Ok(http_get_status(addr, path).await?.1)
}

/// GET `path` and return the status code and the body.
pub async fn http_get_status(addr: &str, path: &str) -> Result<(u16, String)> {
    let r = http_request(addr, "GET", path, &[]).await?;
    Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

/// An HTTP response as read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Percent-encode a URL path (keeping `/`).
pub fn url_path(p: &str) -> String {
    let mut out = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A minimal HTTP/1.1 request (`Connection: close`, body read to the end).
pub async fn http_request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connect to {addr} timed out"))??;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .map_err(|_| anyhow!("read from {addr} timed out"))??;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("bad HTTP response from {addr}"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let body = buf[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line from {addr}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse { status, headers, body })
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                // A paused process must be resumed to die cleanly.
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}
