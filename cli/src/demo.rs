//! `sen demo`: a local cluster of `sen server` processes in one folder.
//!
//! Layout under `--dir` (default `./sen-demo`):
//!   node1/ node2/ node3/      data directories
//!   node1.log ...             each node's log
//! Nodes listen on 127.0.0.1:<base+i-1> (gRPC) and 127.0.0.1:<http-base+i-1>
//! (HTTP). Running the demo again on the same folder resumes the cluster.
//! Ctrl-C (or SIGTERM) stops every node with SIGTERM and waits for them.

use std::path::PathBuf;
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
    let exe = std::env::current_exe().map_err(|e| Failure::from(format!("cannot find the sen executable: {e}")))?;
    let grpc = |i: u64| format!("127.0.0.1:{}", args.port as u64 + i - 1);
    let http = |i: u64| format!("127.0.0.1:{}", args.http_port as u64 + i - 1);
    let mut nodes = Nodes { children: Vec::new() };
    for i in 1..=args.nodes {
        let log_path = args.dir.join(format!("node{i}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Failure::from(format!("cannot open {}: {e}", log_path.display())))?;
        let err = log.try_clone().map_err(Failure::from)?;
        let child = Command::new(&exe)
            .arg("server")
            .arg("--id")
            .arg(i.to_string())
            .arg("--data-dir")
            .arg(args.dir.join(format!("node{i}")))
            .arg("--listen")
            .arg(grpc(i))
            .arg("--http")
            .arg(http(i))
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
    let status = rt.block_on(form_cluster(&endpoints, &mut nodes, &args))?;
    let hint = format!(
        "\nTry:\n  export SEN_ENDPOINTS={}\n  sen kv put portal greeting 'xin chào'\n  sen kv get portal greeting\n  sen cluster status\nLogs and data: {}   Metrics: http://{}/metrics",
        endpoints.join(","),
        args.dir.display(),
        http(1)
    );
    emit(
        output,
        json!({"endpoints": endpoints, "dir": args.dir, "status": status_json(&status)}),
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

async fn form_cluster(
    endpoints: &[String],
    nodes: &mut Nodes,
    args: &DemoArgs,
) -> Result<sen_proto::v1::StatusResponse, Failure> {
    let client = crate::client(endpoints, Duration::from_secs(60))?;
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
        client.init().await?;
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
