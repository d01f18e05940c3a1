use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sen_chaos::ProcessCluster;

pub const SEN: &str = env!("CARGO_BIN_EXE_sen");

/// Generous deadlines: these run on 2-core CI machines next to other tests.
pub const T: Duration = Duration::from_secs(60);

/// `n` incompressible bytes, the same for the same `seed` (xorshift64).
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

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

/// The CA every cluster of this test process uses (made once, under the
/// target directory; a day-old one left by an earlier run is removed).
/// `sen` commands authenticate with its `admin` certificate, the first
/// cluster-admin of every cluster (they are initialised with it).
pub fn shared_certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(86_400));
                if old && e.file_name().to_string_lossy().starts_with("it-ca-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("it-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        sen_chaos::cluster::Security::open(&dir).expect("test CA");
        dir
    })
}

pub fn cluster(name: &str, extra: &str) -> Cluster {
    let dir = TestDir::new(name);
    let c = ProcessCluster::new(SEN, dir.path.join("cluster"), extra)
        .and_then(|c| c.with_certs(shared_certs()))
        .expect("cluster");
    Cluster { c, _dir: dir }
}

/// The `sen` CLI's credentials as the shared CA's `admin` user.
pub fn admin_env() -> Vec<(String, String)> {
    let certs = shared_certs();
    vec![
        ("SEN_CA".into(), certs.join("ca.pem").display().to_string()),
        ("SEN_CERT".into(), certs.join("admin.pem").display().to_string()),
        ("SEN_KEY".into(), certs.join("admin.key").display().to_string()),
    ]
}

/// Run the `sen` CLI as the cluster-admin; returns (exit code, stdout,
/// stderr).
pub fn sen(args: &[&str]) -> (i32, String, String) {
    sen_env(args, &[])
}

/// [`sen`] with extra environment variables, which win over the admin's
/// credentials (an empty value removes the variable).
pub fn sen_env(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(SEN);
    cmd.args(args)
        .env_remove("SEN_ENDPOINTS")
        .env_remove("SEN_TOKEN")
        .env_remove("SEN_TOKEN_FILE")
        .envs(admin_env());
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().expect("run sen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `sen … --output json` and parse the last line of stdout; panics
/// with stderr on failure.
pub fn json(args: &[&str]) -> serde_json::Value {
    json_env(args, &[])
}

/// [`json`] with extra environment variables.
pub fn json_env(args: &[&str], env: &[(String, String)]) -> serde_json::Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = sen_env(&all, env);
    assert_eq!(code, 0, "sen {args:?} failed: {err}");
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The standard AWS variables that point nodes and the CLI at `s3`.
pub fn s3_env(s3: &sen_backup_s3::testing::SeaweedFs) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), s3.endpoint().to_owned()),
        ("AWS_ACCESS_KEY_ID".into(), sen_backup_s3::testing::ACCESS_KEY_ID.into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            sen_backup_s3::testing::SECRET_ACCESS_KEY.into(),
        ),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}
