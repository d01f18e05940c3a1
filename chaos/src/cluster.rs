//! [`ProcessCluster`]: a set of `sen server` processes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sen_client::{Client, ClientOptions, Secret, TlsOptions};
use sen_proto::v1::StatusResponse;
use sen_security::certs;

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
///
/// By default every node has TLS (`[tls]` from a cluster CA made under
/// the cluster's directory, or a shared one: [`ProcessCluster::with_certs`])
/// and clients authenticate: with the `admin` client certificate until the
/// cluster is initialised, then with the first cluster-admin's token.
/// [`ProcessCluster::insecure`] runs plaintext on loopback instead.
pub struct ProcessCluster {
    bin: PathBuf,
    root: PathBuf,
    extra_config: String,
    log_filter: String,
    pub nodes: BTreeMap<u64, NodeProc>,
    /// tmpfs mounts to undo when the cluster is dropped.
    mounts: Vec<PathBuf>,
    security: Option<Security>,
    /// TLS for gRPC but plaintext HTTP (`tls.http = false`), as behind a
    /// reverse proxy that terminates TLS.
    plain_http: bool,
}

/// The cluster's CA and the credentials the harness uses.
#[derive(Clone)]
pub struct Security {
    /// The certificate directory (`sen certs init` layout: `ca.pem`,
    /// `node<N>.pem`, `<user>.pem` and their keys).
    pub dir: PathBuf,
    ca_pem: Vec<u8>,
    /// For HTTPS requests: without a client certificate, and with the
    /// `admin` one.
    http: Arc<rustls::ClientConfig>,
    admin_http: Arc<rustls::ClientConfig>,
    /// The first cluster-admin's token, once known.
    admin_token: Option<Secret>,
}

/// Serialises certificate creation in a directory shared by clusters of
/// one test process.
static CERTS_LOCK: Mutex<()> = Mutex::new(());

/// Days the harness's certificates are valid.
const CERT_DAYS: u32 = 30;

impl Security {
    /// The CA in `dir`, made (with an `admin` client certificate) if absent.
    pub fn open(dir: &Path) -> Result<Self> {
        let _g = CERTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let ca = certs::ca_files(dir);
        if !ca.cert.exists() {
            certs::init(dir, 0, &[], CERT_DAYS).with_context(|| format!("make a CA in {}", dir.display()))?;
        }
        let ca_pem = fs::read(&ca.cert).with_context(|| format!("read {}", ca.cert.display()))?;
        let http = Arc::new(sen_security::tls::client_config(&ca_pem, None)?);
        let admin = certs::user_files(dir, "admin");
        let admin_http = Arc::new(sen_security::tls::client_config(
            &ca_pem,
            Some((&fs::read(&admin.cert)?, &fs::read(&admin.key)?)),
        )?);
        Ok(Self {
            dir: dir.to_owned(),
            ca_pem,
            http,
            admin_http,
            admin_token: None,
        })
    }

    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    pub fn ca_path(&self) -> PathBuf {
        certs::ca_files(&self.dir).cert
    }

    /// Node `id`'s certificate and key (made if absent), valid for `ip`.
    pub fn node_cert(&self, id: u64, ip: &str) -> Result<certs::Pair> {
        let _g = CERTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let p = certs::node_files(&self.dir, id);
        if p.cert.exists() {
            return Ok(p);
        }
        Ok(certs::node(&self.dir, id, &[ip.to_owned()], CERT_DAYS)?)
    }

    /// User `name`'s client certificate and key (made if absent).
    pub fn user_cert(&self, name: &str) -> Result<certs::Pair> {
        let _g = CERTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let p = certs::user_files(&self.dir, name);
        if p.cert.exists() {
            return Ok(p);
        }
        Ok(certs::client(&self.dir, name, CERT_DAYS)?)
    }

    /// TLS options trusting this CA, presenting user `name`'s certificate
    /// if given.
    pub fn tls_options(&self, user: Option<&str>) -> Result<TlsOptions> {
        let identity = match user {
            Some(name) => {
                let p = self.user_cert(name)?;
                Some((fs::read(&p.cert)?, Secret(fs::read_to_string(&p.key)?)))
            }
            None => None,
        };
        Ok(TlsOptions {
            ca: self.ca_pem.clone(),
            identity,
        })
    }

    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }
}

/// Two free TCP ports on `ip` (gRPC and HTTP), never handed out before by
/// this process. Both are held while the second is chosen (a port bound
/// and released at once may come back for the next bind: a node once got
/// the same port for both), and a port is never given twice, since the
/// tests of one process share the loopback addresses.
fn free_ports(ip: &str) -> Result<(u16, u16)> {
    static GIVEN: std::sync::Mutex<BTreeSet<(String, u16)>> = std::sync::Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 2 {
        if held.len() > 64 {
            bail!("no free port on {ip} after {} tries", held.len());
        }
        let l = TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0"))?;
        let port = l.local_addr()?.port();
        if given.insert((ip.to_owned(), port)) {
            ports.push(port);
        }
        held.push(l);
    }
    Ok((ports[0], ports[1]))
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
        let security = Security::open(&root.join("certs"))?;
        Ok(Self {
            bin: bin.into(),
            root,
            extra_config: extra_config.to_owned(),
            log_filter: std::env::var("SEN_TEST_LOG").unwrap_or_else(|_| "info,openraft=info".into()),
            nodes: BTreeMap::new(),
            mounts: Vec::new(),
            security: Some(security),
            plain_http: false,
        })
    }

    /// Keep TLS and tokens but serve HTTP in plaintext (`tls.http =
    /// false`, as behind a proxy that terminates TLS); [`Self::web`] then
    /// speaks plain HTTP with the admin token. Call before `add`.
    pub fn set_plain_http(&mut self) {
        self.plain_http = true;
    }

    /// Use the CA in `dir` (made if absent) instead of one of its own:
    /// clusters of one test process can share it, and with it the
    /// `admin` certificate the `sen` CLI is given. Call before `add`.
    pub fn with_certs(mut self, dir: &Path) -> Result<Self> {
        self.security = Some(Security::open(dir)?);
        Ok(self)
    }

    /// Plaintext nodes on loopback: no TLS, no authentication. Call
    /// before `add`.
    pub fn insecure(mut self) -> Self {
        self.security = None;
        self
    }

    /// The CA and credentials, unless [`ProcessCluster::insecure`].
    pub fn security(&self) -> Option<&Security> {
        self.security.as_ref()
    }

    /// Use `token` as the cluster-admin's from now on (e.g. after a
    /// `sen cluster init` through the CLI); it is also written to
    /// `<root>/admin.token` for CLI commands ([`ProcessCluster::cli_env`]).
    pub fn set_admin_token(&mut self, token: &str) -> Result<()> {
        let path = self.root.join("admin.token");
        fs::write(&path, format!("{token}\n")).with_context(|| format!("write {}", path.display()))?;
        if let Some(s) = &mut self.security {
            s.admin_token = Some(Secret(token.to_owned()));
        }
        Ok(())
    }

    /// Environment for a `sen` CLI command as the cluster-admin: the CA,
    /// and the admin token file once known, else the admin certificate.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        let Some(s) = &self.security else {
            return Vec::new();
        };
        let mut env = vec![("SEN_CA".to_owned(), s.ca_path().display().to_string())];
        if s.admin_token.is_some() {
            env.push((
                "SEN_TOKEN_FILE".into(),
                self.root.join("admin.token").display().to_string(),
            ));
        } else {
            let admin = certs::user_files(&s.dir, "admin");
            env.push(("SEN_CERT".into(), admin.cert.display().to_string()));
            env.push(("SEN_KEY".into(), admin.key.display().to_string()));
        }
        env
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

    /// Declare node `id` on 127.0.0.<10+id> and write its config file
    /// (`extra_config` with [`test_defaults`]).
    pub fn add(&mut self, id: u64) -> Result<&NodeProc> {
        if id == 0 || id > 200 {
            bail!("node ids 1..=200 only");
        }
        let ip = format!("127.0.0.{}", 10 + id);
        let (grpc_port, http_port) = free_ports(&ip)?;
        let grpc = format!("{ip}:{grpc_port}");
        let http = format!("{ip}:{http_port}");
        let dir = self.root.join(format!("node{id}"));
        let data_dir = dir.join("data");
        fs::create_dir_all(&dir)?;
        let config_path = dir.join("sen.toml");
        let mut config = format!(
            "id = {id}\ndata-dir = {:?}\nlisten = {grpc:?}\nhttp = {http:?}\n{}\n",
            data_dir.display().to_string(),
            test_defaults(&self.extra_config)
        );
        if let Some(s) = &self.security {
            let pair = s.node_cert(id, &ip)?;
            config.push_str(&format!(
                "\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\nhttp = {}\n",
                s.ca_path().display().to_string(),
                pair.cert.display().to_string(),
                pair.key.display().to_string(),
                !self.plain_http
            ));
        }
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
        let c = self.client_for(id)?;
        tokio::time::timeout(timeout, c.local_status(&addr, timeout))
            .await
            .map_err(|_| anyhow!("node {id} did not answer within {timeout:?}"))?
            .map_err(|e| anyhow!("node {id}: {e}"))
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

    /// Default client options with the cluster-admin's credentials: the
    /// admin token once known, else the `admin` client certificate.
    pub fn client_options(&self) -> Result<ClientOptions> {
        let mut o = ClientOptions::default();
        if let Some(s) = &self.security {
            match &s.admin_token {
                Some(t) => {
                    o.tls = Some(s.tls_options(None)?);
                    o.token = Some(t.clone());
                }
                None => o.tls = Some(s.tls_options(Some("admin"))?),
            }
        }
        Ok(o)
    }

    /// A client over every node, as the cluster-admin.
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.endpoints(), self.client_options()?)?)
    }

    /// A client over every node with other credentials.
    pub fn client_with(&self, tls: Option<TlsOptions>, token: Option<&str>) -> Result<Client> {
        let opts = ClientOptions {
            tls,
            token: token.map(|t| Secret(t.to_owned())),
            ..ClientOptions::default()
        };
        Ok(Client::new(&self.endpoints(), opts)?)
    }

    /// A client that only talks to node `id` (short timeouts).
    pub fn client_for(&self, id: u64) -> Result<Client> {
        let opts = ClientOptions {
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            ..self.client_options()?
        };
        Ok(Client::new(&[self.grpc(id)?], opts)?)
    }

    /// A connection to node `id` with the cluster-admin's credentials, for
    /// the generated `sen_proto` clients.
    pub fn channel(&self, id: u64) -> Result<sen_client::Ch> {
        Ok(self.client_for(id)?.raw_channel(&self.grpc(id)?)?)
    }

    /// A connection to node `target` presenting node `as_node`'s
    /// certificate (as a peer would; plaintext in an insecure cluster).
    pub async fn peer_channel(&self, target: u64, as_node: u64) -> Result<tonic::transport::Channel> {
        let addr = self.grpc(target)?;
        let ep = match &self.security {
            None => tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?,
            Some(s) => {
                let ip = format!("127.0.0.{}", 10 + as_node);
                let pair = s.node_cert(as_node, &ip)?;
                let tls = tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&s.ca_pem))
                    .identity(tonic::transport::Identity::from_pem(
                        fs::read(&pair.cert)?,
                        fs::read(&pair.key)?,
                    ));
                tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls)?
            }
        };
        Ok(ep.connect_timeout(Duration::from_secs(2)).connect().await?)
    }

    /// Wait until node `id` answers `Cluster/Status` (over TLS with the
    /// `admin` certificate, which a node that has not joined yet can check,
    /// unlike a token).
    pub async fn wait_serving(&self, id: u64, timeout: Duration) -> Result<()> {
        let mut opts = ClientOptions {
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        if let Some(s) = &self.security {
            opts.tls = Some(s.tls_options(Some("admin"))?);
        }
        let addr = self.grpc(id)?;
        let c = Client::new(std::slice::from_ref(&addr), opts)?;
        wait_for(&format!("node {id} to answer"), timeout, || async {
            Ok(c.status_of(&addr, Duration::from_secs(1)).await.ok().map(|_| ()))
        })
        .await
    }

    /// Node `id`'s HTTP listener, over TLS when the cluster has it, with
    /// the admin token (see [`Web::anonymous`]).
    pub fn web(&self, id: u64) -> Result<Web> {
        let addr = self.http(id)?;
        Ok(match &self.security {
            None => Web::plain(&addr),
            Some(s) if self.plain_http => Web {
                token: s.admin_token.as_ref().map(|t| t.0.clone()),
                ..Web::plain(&addr)
            },
            // Like `client_options`: the admin token, else the admin
            // certificate.
            Some(s) => Web {
                addr,
                tls: Some(match &s.admin_token {
                    Some(_) => s.http.clone(),
                    None => s.admin_http.clone(),
                }),
                anonymous_tls: Some(s.http.clone()),
                token: s.admin_token.as_ref().map(|t| t.0.clone()),
            },
        })
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
            self.wait_serving(id, Duration::from_secs(30)).await?;
        }
        let init = self.client_for(1)?.init().await?;
        if self.security.is_some() {
            self.set_admin_token(&init.admin_token)?;
        }
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

    /// The highest index any member has applied, as the cluster status
    /// reports it.
    pub async fn highest_applied(&self) -> Result<u64> {
        Ok(self
            .status()
            .await?
            .members
            .iter()
            .map(|m| m.applied_index)
            .max()
            .unwrap_or(0))
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

    /// The sum of node `id`'s samples of metric `name` whose labels include
    /// all of `labels` (0 when there is none yet, as for a counter never
    /// incremented).
    pub async fn metric_where(&self, id: u64, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(sum_where(&self.metrics_text(id).await?, name, labels))
    }

    /// Node `id`'s whole `/metrics` page (to read several series from one
    /// scrape with [`sum_where`]).
    pub async fn metrics_text(&self, id: u64) -> Result<String> {
        self.web(id)?.get("/metrics").await
    }

    /// One Prometheus metric value of node `id` (first sample).
    pub async fn metric(&self, id: u64, name: &str) -> Result<f64> {
        let body = self.web(id)?.get("/metrics").await?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("metric {name} not found on node {id}"))
    }
}

/// The sum of the samples of `name` carrying `labels` in a `/metrics`
/// page.
pub fn sum_where(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| wanted.iter().all(|w| l.contains(w.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A node's HTTP listener as a client reaches it: the address, TLS (the
/// cluster CA) and a bearer token to send.
#[derive(Clone)]
pub struct Web {
    pub addr: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The same without a client certificate.
    anonymous_tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<String>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

impl Web {
    /// Plain HTTP to `addr`, no credentials.
    pub fn plain(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            tls: None,
            anonymous_tls: None,
            token: None,
        }
    }

    /// The same listener without credentials (a visitor of the portal).
    pub fn anonymous(&self) -> Self {
        Self {
            tls: self.anonymous_tls.clone(),
            token: None,
            ..self.clone()
        }
    }

    /// The same listener with another bearer token (and no certificate).
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            tls: self.anonymous_tls.clone(),
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// GET `path`; the body.
    pub async fn get(&self, path: &str) -> Result<String> {
        Ok(self.get_status(path).await?.1)
    }

    /// GET `path`; the status code and the body.
    pub async fn get_status(&self, path: &str) -> Result<(u16, String)> {
        let r = self.request("GET", path, &[]).await?;
        Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
    }

    /// A minimal HTTP/1.1 request (`Connection: close`, body read to the
    /// end), over TLS when the listener has it; the token goes in an
    /// `Authorization` header unless `headers` carry credentials.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
        let addr = self.addr.as_str();
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {addr}\r\n"));
        }
        let has_credentials = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("cookie"));
        if let Some(t) = self.token.as_ref().filter(|_| !has_credentials) {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let buf = exchange(self.connect().await?, &req, addr).await?;
        parse_response(&buf, addr)
    }

    /// An open connection to the listener (TLS handshaken when it has
    /// TLS), for tests that speak HTTP byte by byte.
    pub async fn connect(&self) -> Result<Box<dyn Stream>> {
        let addr = self.addr.as_str();
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {addr} timed out"))??;
        let Some(cfg) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| anyhow!("{host} is not a server name: {e}"))?;
        let tls = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| anyhow!("TLS handshake with {addr} timed out"))?
        .with_context(|| format!("TLS handshake with {addr}"))?;
        Ok(Box::new(tls))
    }
}

/// A byte stream to a node (TCP or TLS).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Write `req`, read to the end (a TLS peer that closes without
/// `close_notify` still ends the response).
async fn exchange<S>(mut s: S, req: &str, addr: &str) -> Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .map_err(|_| anyhow!("read from {addr} timed out"))?;
    match read {
        Ok(_) => Ok(buf),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => Ok(buf),
        Err(e) => Err(e.into()),
    }
}

/// An HTTP response as read by [`Web::request`].
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

fn parse_response(buf: &[u8], addr: &str) -> Result<HttpResponse> {
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

/// What test clusters add to a test's configuration unless it sets the
/// field itself: drills allowed (fault injection), and backups to any
/// local directory and to the test S3 bucket.
pub fn test_defaults(extra: &str) -> String {
    let mut out = extra.to_owned();
    for (section, field, line) in [
        ("[drills]", "enabled", "enabled = true"),
        (
            "[backup]",
            "allowed-repos",
            "allowed-repos = [\"file:///\", \"s3://sen-backups\"]",
        ),
    ] {
        if let Some(at) = out.find(section) {
            let body_start = at + section.len();
            let body_end = out[body_start..].find("\n[").map_or(out.len(), |i| body_start + i);
            if !out[body_start..body_end].contains(field) {
                out.insert_str(body_start, &format!("\n{line}"));
            }
        } else {
            out.push_str(&format!("\n{section}\n{line}\n"));
        }
    }
    out
}
