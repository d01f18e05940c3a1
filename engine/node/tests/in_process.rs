//! Three nodes in one process (`sen_node::run` with a shutdown future,
//! mini-redis style): a cluster formed through the public API, writes
//! through a follower, an ordered shutdown of the leader that hands
//! leadership over (recorded as a planned change), and a restart from
//! disk. Faster to run and to debug than the process-level tests in
//! `cli/tests`.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use sen_client::{Client, ClientOptions, Consistency};
use sen_node::NodeConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct RunningNode {
    grpc: String,
    cfg: NodeConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sen_node::NodeError>>>,
}

impl RunningNode {
    fn start(cfg: NodeConfig) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let grpc = cfg.listen.clone();
        let task = tokio::spawn(sen_node::run(cfg.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            grpc,
            cfg,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stop in order (as on SIGTERM) and wait for it.
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(60), t).await;
            assert!(
                matches!(r, Ok(Ok(Ok(())))),
                "node {} did not stop cleanly: {r:?}",
                self.cfg.id
            );
        }
    }
}

fn config(id: u64, dir: &std::path::Path) -> NodeConfig {
    let mut cfg = NodeConfig {
        id,
        data_dir: dir.join(format!("node{id}")),
        listen: format!("127.0.0.1:{}", free_port()),
        http: format!("127.0.0.1:{}", free_port()),
        ..Default::default()
    };
    cfg.raft.heartbeat_interval = Duration::from_millis(50);
    cfg.raft.election_timeout_min = Duration::from_millis(200);
    cfg.raft.election_timeout_max = Duration::from_millis(400);
    cfg.hooks.lease = Duration::from_millis(150);
    cfg
}

fn client(endpoints: &[String]) -> Client {
    let opts = ClientOptions {
        timeout: Duration::from_secs(30),
        attempt_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    Client::new(endpoints, opts).expect("client")
}

/// Poll `f` until it returns `Some`, or fail after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_in_one_process_form_a_cluster_and_hand_over_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes: Vec<RunningNode> = (1..=3).map(|id| RunningNode::start(config(id, dir.path()))).collect();
    let all: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();

    // Form the cluster through the public API.
    let first = client(&all[..1]);
    eventually("node 1 answers", Duration::from_secs(30), || async {
        first.init().await.ok()
    })
    .await;
    for n in &nodes[1..] {
        first.add_node(n.cfg.id, &n.grpc, false).await.expect("add node");
    }
    let c = client(&all);
    let s = c.status().await.expect("status");
    assert_eq!(s.members.iter().filter(|m| m.voter).count(), 3);
    let leader = s.leader_id;
    assert_eq!(leader, 1, "the initialised node leads");

    // A write through a follower is forwarded; every node reads it.
    let follower = client(&all[1..2]);
    let put = follower
        .put("lichtuan", "2026-w49".as_bytes(), "Thứ hai: họp giao ban".as_bytes())
        .await
        .expect("put through a follower");
    for addr in &all {
        let one = client(std::slice::from_ref(addr));
        let got = one
            .get("lichtuan", b"2026-w49", Consistency::Linearizable)
            .await
            .expect("linearizable read");
        assert_eq!(got.kv.expect("the key").mod_revision, put.revision, "on {addr}");
    }

    // Stop the leader in order: it hands leadership to a caught-up voter
    // first, and the new leader records a planned change.
    nodes[0].stop().await;
    let rest = client(&all[1..]);
    let new_leader = eventually("a new leader", Duration::from_secs(30), || async {
        rest.status()
            .await
            .ok()
            .map(|s| s.leader_id)
            .filter(|l| *l != 0 && *l != leader)
    })
    .await;
    rest.put("lichtuan", b"2026-w50", b"after")
        .await
        .expect("write after the hand-over");
    let incidents = eventually("the leader change is recorded", Duration::from_secs(30), || async {
        let r = rest.list_incidents(0).await.ok()?;
        r.json.iter().find(|j| j.contains("leader-change")).cloned()
    })
    .await;
    assert!(
        incidents.contains("planned leadership transfer (shutdown)"),
        "{incidents}"
    );
    assert!(incidents.contains(&format!("to node {new_leader}")), "{incidents}");

    // Restart the old leader from its data directory: it catches up.
    let cfg = nodes[0].cfg.clone();
    nodes[0] = RunningNode::start(cfg);
    let back = client(&all[..1]);
    eventually(
        "the restarted node has the later write",
        Duration::from_secs(30),
        || async {
            back.get("lichtuan", b"2026-w50", Consistency::Stale)
                .await
                .ok()
                .and_then(|r| r.kv)
        },
    )
    .await;

    for n in nodes.iter_mut() {
        n.stop().await;
    }
}
