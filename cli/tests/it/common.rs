use std::path::PathBuf;
use std::time::Duration;

use sen_chaos::ProcessCluster;

pub const SEN: &str = env!("CARGO_BIN_EXE_sen");

/// Generous deadlines: these run on 2-core CI machines next to other tests.
pub const T: Duration = Duration::from_secs(60);

/// A temporary directory that is kept (and printed) when the test fails.
pub struct TestDir {
    pub path: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sen-it-{name}-"))
            .tempdir()
            .expect("tempdir");
        Self {
            path: dir.path().to_owned(),
            dir: Some(dir),
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.dir.take()
        {
            eprintln!("test data kept in {}", d.keep().display());
        }
    }
}

/// A cluster whose node logs are printed if the test panics.
pub struct Cluster {
    pub c: ProcessCluster,
    _dir: TestDir,
}

impl std::ops::Deref for Cluster {
    type Target = ProcessCluster;
    fn deref(&self) -> &ProcessCluster {
        &self.c
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut ProcessCluster {
        &mut self.c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for id in self.c.nodes.keys() {
                let log = self.c.log(*id);
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("----- node {id} log (last 60 lines) -----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// Test timing: fast elections so failover tests stay short.
pub const FAST: &str =
    "[raft]\nheartbeat-interval = \"50ms\"\nelection-timeout-min = \"200ms\"\nelection-timeout-max = \"400ms\"\n";

pub fn cluster(name: &str, extra: &str) -> Cluster {
    let dir = TestDir::new(name);
    let c = ProcessCluster::new(SEN, dir.path.join("cluster"), extra).expect("cluster");
    Cluster { c, _dir: dir }
}

/// Run the `sen` CLI; returns (exit code, stdout, stderr).
pub fn sen(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(SEN)
        .args(args)
        .env_remove("SEN_ENDPOINTS")
        .output()
        .expect("run sen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`sen`] with extra environment variables.
pub fn sen_env(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let out = std::process::Command::new(SEN)
        .args(args)
        .env_remove("SEN_ENDPOINTS")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run sen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
