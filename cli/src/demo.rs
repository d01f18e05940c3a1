//! `sen demo`: a local cluster of `sen server` processes in one folder.
//!
//! Layout under `--dir` (default `./sen-demo`):
//!   certs/                    the cluster CA, node and `admin` certificates
//!                             (`sen certs init`)
//!   admin.token               the first cluster-admin's token (0600)
//!   node1.toml ...            each node's configuration (TLS on)
//!   node1/ node2/ node3/      data directories
//!   node1.log ...             each node's log
//! Nodes listen on 127.0.0.1:<base+i-1> (gRPC) and 127.0.0.1:<http-base+i-1>
//! (HTTPS), TLS everywhere as in production. The demo prints the two
//! environment lines (`SEN_CA`, `SEN_TOKEN_FILE`) that let `sen` commands
//! use them. Running the demo again on the same folder resumes the
//! cluster. Ctrl-C (or SIGTERM) stops every node with SIGTERM and waits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::cluster_cmd::{status_json, status_text};
use crate::output::emit;
use crate::{Failure, Output};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for data and logs.
    #[arg(long, default_value = "sen-demo")]
    dir: PathBuf,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// First gRPC port.
    #[arg(long, default_value_t = 7101)]
    port: u16,
    /// First HTTP port.
    #[arg(long, default_value_t = 8101)]
    http_port: u16,
    /// Start the cluster, print its status and exit, leaving the nodes
    /// running (stop them with `kill $(cat DIR/*.pid)`).
    #[arg(long)]
    detach: bool,
}

struct Nodes {
    children: Vec<Child>,
}

impl Nodes {
    fn stop(&mut self) {
        for c in &self.children {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for c in &mut self.children {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        self.children.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn run(args: DemoArgs, output: Output) -> Result<(), Failure> {
    if args.nodes == 0 || args.nodes > 9 {
        return Err(Failure::from("--nodes must be between 1 and 9"));
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Failure::from(format!("cannot create {}: {e}", args.dir.display())))?;
    // Absolute paths: the printed environment lines work from anywhere.
    let dir = std::fs::canonicalize(&args.dir)
        .map_err(|e| Failure::from(format!("cannot resolve {}: {e}", args.dir.display())))?;
    let exe = std::env::current_exe().map_err(|e| Failure::from(format!("cannot find the sen executable: {e}")))?;
    let grpc = |i: u64| format!("127.0.0.1:{}", args.port as u64 + i - 1);
    let http = |i: u64| format!("127.0.0.1:{}", args.http_port as u64 + i - 1);
    let certs = certificates(&dir, args.nodes)?;
    let mut nodes = Nodes { children: Vec::new() };
    for i in 1..=args.nodes {
        let node = sen_security::certs::node_files(&certs, i);
        let config = format!(
            "# Written by `sen demo` (rewritten at every start).\nid = {i}\ndata-dir = {:?}\nlisten = {:?}\nhttp = {:?}\n\n# Failover drills may crash, pause or isolate these nodes.\n[drills]\nenabled = true\n\n# Where the nodes may write backups.\n[backup]\nallowed-repos = [{:?}]\n\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            dir.join(format!("node{i}")).display().to_string(),
            grpc(i),
            http(i),
            format!("file://{}/backups/", dir.display()),
            sen_security::certs::ca_files(&certs).cert.display().to_string(),
            node.cert.display().to_string(),
            node.key.display().to_string(),
        );
        let config_path = dir.join(format!("node{i}.toml"));
        std::fs::write(&config_path, config)
            .map_err(|e| Failure::from(format!("cannot write {}: {e}", config_path.display())))?;
        let log_path = args.dir.join(format!("node{i}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Failure::from(format!("cannot open {}: {e}", log_path.display())))?;
        let err = log.try_clone().map_err(Failure::from)?;
        let child = Command::new(&exe)
            .arg("server")
            .arg("--config")
            .arg(&config_path)
            .env_remove("SEN_CONFIG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| Failure::from(format!("cannot start node {i}: {e}")))?;
        let _ = std::fs::write(args.dir.join(format!("node{i}.pid")), format!("{}\n", child.id()));
        nodes.children.push(child);
    }
    let endpoints: Vec<String> = (1..=args.nodes).map(grpc).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::from)?;
    let ca = sen_security::certs::ca_files(&certs).cert;
    let token_file = dir.join("admin.token");
    let status = rt.block_on(form_cluster(&endpoints, &mut nodes, &args, &certs, &token_file))?;
    let hint = format!(
        "\nUse the cluster as its first admin (TLS, and the admin's token):\n  export SEN_CA={}\n  export SEN_TOKEN_FILE={}\nTry:\n  export SEN_ENDPOINTS={}\n  sen kv put portal greeting 'xin chào'\n  sen kv get portal greeting\n  sen cluster status\n  sen whoami\nLogs and data: {}   Metrics: curl --cacert \"$SEN_CA\" -H \"Authorization: Bearer $(cat \"$SEN_TOKEN_FILE\")\" https://{}/metrics",
        ca.display(),
        token_file.display(),
        endpoints.join(","),
        dir.display(),
        http(1)
    );
    emit(
        output,
        json!({"endpoints": endpoints, "dir": dir, "ca": ca, "token_file": token_file, "status": status_json(&status)}),
        || format!("{}{hint}", status_text(&status)),
    );
    if args.detach {
        nodes.children.clear();
        return Ok(());
    }
    if output == Output::Text {
        println!("\nThe cluster runs until you press Ctrl-C.");
    }
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(Failure::from)?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<(), Failure>(())
    })?;
    if output == Output::Text {
        println!("stopping {} nodes...", nodes.children.len());
    }
    nodes.stop();
    for i in 1..=args.nodes {
        let _ = std::fs::remove_file(args.dir.join(format!("node{i}.pid")));
    }
    if output == Output::Text {
        println!(
            "stopped; data kept in {} (run `sen demo` again to resume)",
            args.dir.display()
        );
    }
    Ok(())
}

/// The demo's certificates in `DIR/certs`: made on the first run, and
/// node certificates added when `--nodes` grows.
fn certificates(dir: &Path, nodes: u64) -> Result<PathBuf, Failure> {
    use sen_security::certs;
    let certs_dir = dir.join("certs");
    let hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let fail = |e: sen_security::SecurityError| Failure::from(format!("certificates in {}: {e}", certs_dir.display()));
    if !certs::ca_files(&certs_dir).cert.exists() {
        certs::init(&certs_dir, nodes, &hosts, 825).map_err(fail)?;
        return Ok(certs_dir);
    }
    for i in 1..=nodes {
        if !certs::node_files(&certs_dir, i).cert.exists() {
            certs::node(&certs_dir, i, &hosts, 825).map_err(fail)?;
        }
    }
    if !certs::user_files(&certs_dir, "admin").cert.exists() {
        certs::client(&certs_dir, "admin", 825).map_err(fail)?;
    }
    Ok(certs_dir)
}

/// Start (or resume) the cluster as the `admin` certificate: it becomes
/// the first cluster-admin, whose token goes to `token_file`.
async fn form_cluster(
    endpoints: &[String],
    nodes: &mut Nodes,
    args: &DemoArgs,
    certs: &Path,
    token_file: &Path,
) -> Result<sen_proto::v1::StatusResponse, Failure> {
    let admin = sen_security::certs::user_files(certs, "admin");
    let tls = sen_client::TlsOptions::from_files(
        &sen_security::certs::ca_files(certs).cert,
        Some((&admin.cert, &admin.key)),
    )?;
    let opts = sen_client::ClientOptions {
        timeout: Duration::from_secs(60),
        tls: Some(tls),
        ..Default::default()
    };
    let client = sen_client::Client::new(endpoints, opts)?;
    // Wait until every node answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, e) in endpoints.iter().enumerate() {
        loop {
            if let Some(Ok(Some(code))) = nodes
                .children
                .get_mut(i)
                .map(|c| c.try_wait().map(|s| s.map(|s| s.code())))
            {
                return Err(Failure::from(format!(
                    "node {} exited ({code:?}); see {}",
                    i + 1,
                    args.dir.join(format!("node{}.log", i + 1)).display()
                )));
            }
            match client.status_of(e, Duration::from_secs(1)).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(err) => return Err(Failure::from(format!("node at {e} did not start: {err}"))),
            }
        }
    }
    let first = client.status_of(&endpoints[0], Duration::from_secs(5)).await?;
    if first.cluster_id.is_empty() {
        let init = client.init().await?;
        if !init.admin_token.is_empty() {
            let _ = std::fs::remove_file(token_file);
            crate::access_cmd::write_token_file(token_file, &init.admin_token)?;
        }
    }
    // A resumed demo whose token file is gone (or that an older Sen made
    // without one): a new token for `admin`, made with its certificate.
    if !token_file.exists() {
        let t = client.create_token("admin", "sen demo", 0).await?;
        crate::access_cmd::write_token_file(token_file, &t.token)?;
    }
    // Wait for a leader, then add whoever is missing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = loop {
        let s = client.status().await?;
        if s.leader_id != 0 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (i, e) in endpoints.iter().enumerate().skip(1) {
        let id = i as u64 + 1;
        if !status.members.iter().any(|m| m.id == id) {
            client.add_node(id, e, false).await?;
        }
    }
    // Report once every member is reachable (or after a while).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        status = client.status().await?;
        let all = status.members.len() == endpoints.len() && status.members.iter().all(|m| m.reachable);
        if all || Instant::now() > deadline {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
