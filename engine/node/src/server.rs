//! Start-up and ordered shutdown of a node.
//!
//! Start: open the stores → check the data directory's identity → build
//! openraft → bind the gRPC and HTTP listeners → serve.
//!
//! Shutdown (on the `shutdown` future, i.e. SIGTERM/SIGINT), in this order:
//! 1. refuse new client requests (`UNAVAILABLE`, retryable) and report
//!    NOT_SERVING on the gRPC health service;
//! 2. if leader, hand leadership to the most caught-up voter and wait for
//!    it to take over (bounded by `server.shutdown-step-timeout`);
//! 3. stop Raft (in-flight IO completes; everything acknowledged is already
//!    fsynced in the log);
//! 4. stop the gRPC and HTTP servers (bounded wait for open calls);
//! 5. fsync the Raft log, flush the state DB, close RocksDB.
//!
//! Each step is logged.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use sen_proto::raft::v1::raft_server::RaftServer;
use sen_proto::v1::access_server::AccessServer;
use sen_proto::v1::admin_server::AdminServer;
use sen_proto::v1::audit_server::AuditServer;
use sen_proto::v1::backup_server::BackupServer;
use sen_proto::v1::cluster_server::ClusterServer;
use sen_proto::v1::content_server::ContentServer;
use sen_proto::v1::control_server::ControlServer;
use sen_proto::v1::incidents_server::IncidentsServer;
use sen_proto::v1::kv_server::KvServer;
use sen_proto::v1::node_ops_server::NodeOpsServer;
use sen_security::{CertIdentity, Reloader, TlsFiles};
use sen_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::grpc::access::{AccessApi, AuditApi, ControlApi};
use crate::grpc::admin::AdminApi;
use crate::grpc::auth_layer::AuthLayer;
use crate::grpc::backup::BackupApi;
use crate::grpc::cluster::ClusterApi;
use crate::grpc::content::ContentApi;
use crate::grpc::incidents::IncidentsApi;
use crate::grpc::kv::KvApi;
use crate::grpc::node_ops::NodeOpsApi;
use crate::grpc::raft::RaftApi;
use crate::metrics::{self, Metrics};
use crate::network::NetworkFactory;
use crate::node::Node;
use crate::peers::Peers;
use crate::types::Raft;

/// Most concurrent gRPC calls on one connection (HTTP/2 streams). The
/// busiest connection is a peer's (Raft appends, heartbeats, forwarded
/// requests) or a benchmark client sharing one channel among 64 tasks.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// openraft's configuration derived from ours.
pub fn raft_config(cfg: &NodeConfig) -> Result<Config, NodeError> {
    let r = &cfg.raft;
    let ms = |d: Duration| d.as_millis() as u64;
    let c = Config {
        cluster_name: "sen".into(),
        heartbeat_interval: ms(r.heartbeat_interval),
        election_timeout_min: ms(r.election_timeout_min),
        election_timeout_max: ms(r.election_timeout_max),
        install_snapshot_timeout: ms(r.snapshot_timeout),
        max_payload_entries: r.max_entries_per_append,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_after_entries),
        snapshot_max_chunk_size: r.snapshot_chunk_bytes as u64,
        max_in_snapshot_log_to_keep: r.keep_entries_after_snapshot,
        purge_batch_size: 64,
        enable_pre_vote: Some(true),
        // A leader that lost its quorum keeps probing so that a bridge node
        // cannot hold two leases (openraft#2080); must be >= 2 x max.
        quorum_loss_probe_interval: Some(ms(r.election_timeout_max) * 2),
        // A follower whose disk lost the tail of its log after acknowledging
        // it (a WAL damaged by a crash, a disk that ignored fsync) answers
        // with a conflict below what it had matched. Without this the
        // leader treats that as impossible: a debug assertion kills the
        // healthy leader, a release build keeps sending from the wrong
        // place. With it the leader restarts replication to that follower
        // from scratch; its commit index is never lowered (openraft keeps
        // the quorum-accepted value), so no committed entry is undone.
        // The damaged follower itself refuses to start if it lost entries
        // it had applied (sen_store::check_log_covers_state).
        allow_log_reversion: Some(true),
        ..Default::default()
    };
    c.validate()
        .map_err(|e| NodeError::Raft(format!("invalid raft settings: {e}")))
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, NodeError> {
    let a: SocketAddr = addr
        .parse()
        .map_err(|_| NodeError::Other(format!("{what} address {addr:?} is not HOST:PORT")))?;
    TcpListener::bind(a).await.map_err(|source| NodeError::Bind {
        what,
        addr: addr.into(),
        source,
    })
}

/// Run a node until `shutdown` completes, then stop in order.
pub async fn run(cfg: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    cfg.validate()?;
    // After a crash drill: stay down for the rest of its down time.
    crate::faults::hold_down_after_crash(&cfg.data_dir).await;
    let metrics = Arc::new(Metrics::new(cfg.id));
    let store = {
        let dir = cfg.data_dir.clone();
        let m = metrics.clone();
        let opts = StoreOptions {
            max_append_bytes: cfg.raft.max_append_bytes,
            state_write_buffer_bytes: cfg.raft.state_write_buffer_bytes,
            memory: sen_store::Memory::new(cfg.raft.store_memory_bytes),
            stages: sen_store::Stages::new(move |stage, took| m.observe_stage(stage.name(), took)),
        };
        tokio::task::spawn_blocking(move || Store::open(&dir, opts))
            .await
            .map_err(|e| NodeError::Other(e.to_string()))??
    };
    let identity = store.log.claim_node_id(cfg.id, &cfg.data_dir)?;
    let replicated = store.state.cluster_id()?;
    if let (Some(local), Some(repl)) = (identity.cluster_id, replicated)
        && local != repl
    {
        return Err(NodeError::Other(format!(
            "data directory {} is bound to cluster {local} but holds the state of cluster {repl}; it is damaged or was copied from another node",
            cfg.data_dir.display()
        )));
    }
    let cluster_id = Arc::new(RwLock::new(identity.cluster_id.or(replicated)));
    tracing::info!(
        node = cfg.id,
        data_dir = %cfg.data_dir.display(),
        cluster_id = ?*cluster_id.read().unwrap_or_else(|p| p.into_inner()),
        applied = store.state.applied_index(),
        "opened stores"
    );

    let grpc_listener = bind("gRPC", &cfg.listen).await?;
    let http_listener = bind("HTTP", &cfg.http).await?;

    // TLS and authentication (docs/security.md).
    let tls = if cfg.tls.enabled() {
        let files = TlsFiles {
            ca: cfg.tls.ca.clone(),
            cert: cfg.tls.cert.clone(),
            key: cfg.tls.key.clone(),
        };
        let reloader = Reloader::new(files).map_err(|e| NodeError::Other(format!("[tls]: {e}")))?;
        match &reloader.current().identity {
            CertIdentity::Node(id) if *id == cfg.id => {}
            other => {
                return Err(NodeError::Other(format!(
                    "[tls] cert {} names {other:?}, not node {}: give this node its own certificate (`sen certs node --id {}`)",
                    cfg.tls.cert.display(),
                    cfg.id,
                    cfg.id
                )));
            }
        }
        Some(Arc::new(reloader))
    } else {
        tracing::warn!(
            "INSECURE: no [tls] configured: no encryption and no authentication; anyone who can reach {} or {} can do anything{}",
            cfg.listen,
            cfg.http,
            if cfg.insecure {
                " (--insecure)"
            } else {
                " (loopback only)"
            }
        );
        None
    };
    let auth = Arc::new(
        Auth::new(tls.is_some(), cfg.auth.failures_per_minute, cfg.auth.audit_queue)
            .with_write_limit(cfg.auth.writes_per_second, cfg.auth.writes_burst),
    );

    let faults = Arc::new(crate::faults::Faults::default());
    let peers = Arc::new(Peers::new(
        cfg.id,
        cluster_id.clone(),
        crate::peers::PeerSettings {
            connect_timeout: Duration::from_secs(1),
            max_message_bytes: cfg.limits.max_request_bytes,
            raft_message_bytes: cfg.raft_message_bytes(),
            overrides: cfg.network.peer_overrides(),
        },
        faults.clone(),
        tls.clone(),
    ));
    let network = NetworkFactory {
        me: cfg.id,
        peers: peers.clone(),
        cfg: cfg.raft.clone(),
        faults: faults.clone(),
        metrics: metrics.clone(),
    };
    let raft: Raft = openraft::Raft::new(
        cfg.id,
        Arc::new(raft_config(&cfg)?),
        network,
        store.log.clone(),
        store.state_machine.clone(),
    )
    .await
    .map_err(|e| NodeError::Raft(format!("cannot start raft: {e}")))?;
    if let Some(t) = &tls {
        metrics.cert_not_after.set(t.current().not_after);
    }
    let node = Arc::new(Node::new(
        cfg.clone(),
        raft.clone(),
        store.state.clone(),
        store.log.clone(),
        peers,
        metrics.clone(),
        cluster_id,
        faults,
    ));

    let stop_servers = CancellationToken::new();
    let stop_watch = CancellationToken::new();
    let watcher = tokio::spawn(metrics::watch_raft(raft.clone(), cfg.id, metrics, stop_watch.clone()));
    let gc = tokio::spawn(collect_garbage(node.clone(), stop_watch.clone()));
    let disk = tokio::spawn(watch_disk(node.clone(), stop_watch.clone()));
    let scheduler = tokio::spawn(crate::backup::run_scheduler(node.clone(), stop_watch.clone()));
    let roles = tokio::spawn(crate::roles::run(node.clone(), stop_watch.clone()));
    let auditor = tokio::spawn(crate::audit_log::run(node.clone(), auth.clone(), stop_watch.clone()));
    let probe = tokio::spawn(crate::probe::run(node.clone(), stop_watch.clone()));
    let archiver = tokio::spawn(crate::archive::run(node.clone(), stop_watch.clone()));
    let gauges = tokio::spawn(crate::status_gauges::run(node.clone(), stop_watch.clone()));
    let tls_watch = tls.clone().map(|t| {
        let peers = node.peers.clone();
        tokio::spawn(crate::tls::watch(
            t,
            cfg.tls.reload_check,
            node.metrics.clone(),
            move || peers.reset_channels(),
            stop_watch.clone(),
        ))
    });

    // gRPC: public API, node-to-node service, health, reflection.
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<KvServer<KvApi>>().await;
    health_reporter.set_serving::<ClusterServer<ClusterApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sen_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Other(format!("reflection service: {e}")))?;
    let max = cfg.limits.max_request_bytes;
    let raft_max = cfg.raft_message_bytes();
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .tcp_nodelay(true)
        // One connection cannot hold more than this many calls open.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        // Peers cancel heartbeats and appends that pass their deadline, and
        // every cancel is an HTTP/2 RST_STREAM. h2's default rapid-reset
        // guard (20 pending) made a loaded follower drop the whole peer
        // connection mid catch-up (seen in the kill-mid-push test); keep a
        // bound, but one that a busy cluster does not reach.
        .http2_max_pending_accept_reset_streams(Some(1024))
        // Every request passes the authorization layer first.
        .layer(AuthLayer {
            node: node.clone(),
            auth: auth.clone(),
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            KvServer::new(KvApi { node: node.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max.max(64 * 1024 * 1024)),
        )
        .add_service(ClusterServer::new(ClusterApi { node: node.clone() }))
        .add_service(AdminServer::new(AdminApi { node: node.clone() }))
        .add_service(BackupServer::new(BackupApi { node: node.clone() }))
        .add_service(NodeOpsServer::new(NodeOpsApi { node: node.clone() }))
        .add_service(IncidentsServer::new(IncidentsApi { node: node.clone() }))
        .add_service(AccessServer::new(AccessApi { node: node.clone() }))
        .add_service(AuditServer::new(AuditApi { node: node.clone() }))
        .add_service(ControlServer::new(ControlApi { node: node.clone() }))
        .add_service(
            ContentServer::new(ContentApi { node: node.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max.max(64 * 1024 * 1024)),
        )
        .add_service(
            RaftServer::new(RaftApi { node: node.clone() })
                .max_decoding_message_size(raft_max)
                .max_encoding_message_size(raft_max),
        );
    let grpc_stop = stop_servers.clone();
    let handshakes = crate::tls::Handshakes {
        timeout: cfg.tls.handshake_timeout,
        auth: auth.clone(),
        node: cfg.id,
    };
    let grpc_task = match &tls {
        None => tokio::spawn(async move {
            // Accepted sockets need TCP_NODELAY too: without it, a response
            // written as several small HTTP/2 frames waits ~40 ms on Nagle
            // and delayed ACKs (measured: stale reads went from 44 ms to
            // sub-ms).
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(30)));
            grpc.serve_with_incoming_shutdown(incoming, grpc_stop.cancelled_owned())
                .await
        }),
        Some(t) => {
            let rx = crate::tls::accept(
                grpc_listener,
                t.clone(),
                crate::tls::Listener::Grpc,
                handshakes.clone(),
                grpc_stop.clone(),
            );
            let incoming = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
            tokio::spawn(async move {
                grpc.serve_with_incoming_shutdown(incoming, grpc_stop.cancelled_owned())
                    .await
            })
        }
    };
    let http_stop = stop_servers.clone();
    let http_front = crate::http::front(node.clone(), auth.clone());
    let http_task = {
        let tls = tls.clone().filter(|_| cfg.tls.http).map(|t| (t, handshakes.clone()));
        let (node, limits, drain) = (
            node.clone(),
            crate::http::serve::HttpLimits::from_config(&cfg.server),
            cfg.server.shutdown_step_timeout,
        );
        tokio::spawn(async move {
            crate::http::serve::serve(node, http_listener, tls, http_front, limits, drain, http_stop).await;
            Ok::<(), String>(())
        })
    };
    tracing::info!(
        node = cfg.id,
        grpc = %cfg.listen,
        advertise = %cfg.advertise_addr(),
        http = %cfg.http,
        "node is serving"
    );

    // Stop on SIGTERM, or when Raft stops on its own (a storage error such
    // as a full disk is fatal to openraft): then exit non-zero, so a
    // supervisor restarts the node once the cause is fixed, instead of
    // leaving a process that answers but cannot take part.
    let recovery = node.recovery.clone();
    let mut recover = false;
    let fatal = tokio::select! {
        _ = shutdown => None,
        _ = recovery.cancelled() => {
            recover = true;
            None
        }
        e = raft_stopped(raft.clone()) => Some(e),
    };
    if let Some(e) = &fatal {
        tracing::error!("raft stopped: {e}; shutting the node down so it can be restarted once the cause is fixed");
    }

    // 1. Refuse new client requests.
    tracing::info!("shutdown 1/5: refusing new client requests");
    node.set_stopping();
    health_reporter.set_not_serving::<KvServer<KvApi>>().await;
    health_reporter.set_not_serving::<ClusterServer<ClusterApi>>().await;

    // 2. Hand over leadership.
    if cfg.server.transfer_leadership_on_shutdown && node.is_leader() {
        tracing::info!("shutdown 2/5: transferring leadership");
        transfer_leadership(&node, cfg.server.shutdown_step_timeout).await;
    } else {
        tracing::info!("shutdown 2/5: not the leader, no transfer needed");
    }

    // 3. Stop Raft.
    tracing::info!("shutdown 3/5: stopping raft");
    if let Err(e) = raft.shutdown().await {
        tracing::warn!("raft did not stop cleanly: {e}");
    }
    stop_watch.cancel();
    let _ = watcher.await;
    let _ = gc.await;
    let _ = disk.await;
    let _ = scheduler.await;
    let _ = roles.await;
    let _ = auditor.await;
    let _ = probe.await;
    let _ = archiver.await;
    let _ = gauges.await;
    if let Some(t) = tls_watch {
        let _ = t.await;
    }

    // 4. Stop the servers.
    tracing::info!("shutdown 4/5: stopping gRPC and HTTP servers");
    stop_servers.cancel();
    let step = cfg.server.shutdown_step_timeout;
    if tokio::time::timeout(step, grpc_task).await.is_err() {
        tracing::warn!("gRPC server did not stop within {step:?}; closing anyway");
    }
    if tokio::time::timeout(step, http_task).await.is_err() {
        tracing::warn!("HTTP server did not stop within {step:?}; closing anyway");
    }

    // 5. Make everything durable and close the stores.
    tracing::info!("shutdown 5/5: syncing and closing storage");
    let log = store.log.clone();
    let state = store.state.clone();
    drop(node);
    let (me, addr) = (cfg.id, cfg.advertise_addr().to_owned());
    tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
        log.sync()?;
        state.flush()?;
        if recover {
            let entry = log.force_single_voter(me, &addr)?;
            tracing::error!(log_id = %entry, "recovery: this node is now the only voter; restarting");
        }
        Ok(())
    })
    .await
    .map_err(|e| NodeError::Other(e.to_string()))??;
    drop(store);
    if recover {
        let e = crate::faults::crash_and_restart(&cfg.data_dir, Duration::from_millis(1), "recovery");
        return Err(NodeError::Other(format!(
            "recovery rewrote the log but this process could not restart itself ({e}); start the node again"
        )));
    }
    tracing::info!("node stopped");
    match fatal {
        Some(e) => Err(NodeError::Raft(format!("raft stopped: {e}"))),
        None => Ok(()),
    }
}

/// The leader's garbage collector: every `content.gc-interval`, propose
/// collecting chunks unreferenced for `content.gc-grace` (in bounded
/// entries, until none is left).
async fn collect_garbage(node: Arc<Node>, stop: CancellationToken) {
    let every = node.config.content.gc_interval;
    let grace_ms = node.config.content.gc_grace.as_millis() as u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        while node.is_leader() && !node.is_stopping() && !stop.is_cancelled() {
            let op = sen_raft::Op::CollectGarbage {
                grace_ms,
                limit: 10_000,
            };
            match node.propose(None, op, node.config.server.request_timeout).await {
                Ok(r) => match r.outcome {
                    sen_raft::Outcome::GarbageCollected { chunks, bytes, more } => {
                        if chunks > 0 {
                            tracing::info!(chunks, bytes, "collected unreferenced chunks");
                        }
                        if !more {
                            break;
                        }
                    }
                    _ => break,
                },
                Err(e) => {
                    tracing::warn!("garbage collection: {e}");
                    break;
                }
            }
        }
    }
}

/// Completes when openraft stops with an error.
///
/// Watches the server metrics, which change only with a role, a leader or
/// a membership (not with every heartbeat, as the whole metrics do): the
/// channel closes when openraft's core task ends, and the whole metrics
/// then carry the reason.
async fn raft_stopped(raft: Raft) -> String {
    use openraft::async_runtime::watch::WatchReceiver;
    let mut server = raft.server_metrics();
    loop {
        if let Err(e) = &raft.metrics().borrow_watched().running_state {
            return e.to_string();
        }
        if server.changed().await.is_err() {
            return match &raft.metrics().borrow_watched().running_state {
                Err(e) => e.to_string(),
                Ok(()) => "raft's core task ended".into(),
            };
        }
    }
}

/// Hand leadership to the voter with the highest acknowledged index and
/// wait (bounded) until this node is no longer leader.
async fn transfer_leadership(node: &Node, timeout: Duration) {
    let m = node.raft_metrics();
    let Some(to) = crate::roles::successor(node, &m, None) else {
        tracing::info!("no other voter (that is not drained) to hand leadership to");
        return;
    };
    if let Err(e) = crate::roles::plan_transfer(node, to, "shutdown", Duration::from_secs(1)).await {
        tracing::warn!("handing over without the planned-transfer marker (it will read as an election): {e}");
    }
    if let Err(e) = node.raft.trigger().transfer_leader(to).await {
        tracing::warn!("cannot transfer leadership to node {to}: {e}");
        return;
    }
    let me = node.id;
    let r = node
        .raft
        .wait(Some(timeout))
        .metrics(|m| m.current_leader.is_some_and(|l| l != me), "leadership moved")
        .await;
    match r {
        Ok(m) => tracing::info!(new_leader = ?m.current_leader, "leadership transferred"),
        Err(e) => tracing::warn!("leadership did not move within {timeout:?}: {e}"),
    }
}

/// Look at the disk (and the bytes of undeployed uploads) every second
/// until `stop`, logging each change once.
async fn watch_disk(node: Arc<Node>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Ok(b) = node.state.unreferenced_bytes() {
            node.metrics.undeployed_bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        match node.disk.refresh(&node.config.data_dir, &node.config.server) {
            Ok(changed) => {
                warned = false;
                let g = &node.disk;
                let (free, reserve) = g.free_and_reserve();
                node.metrics.disk_free_bytes.set(free as i64);
                node.metrics.disk_low.set(i64::from(g.is_low()));
                if changed && g.is_low() {
                    tracing::error!(
                        free,
                        reserve,
                        "disk almost full: refusing client writes that add data until space is freed"
                    );
                } else if changed {
                    tracing::warn!(free, "disk space is back above the reserve: accepting writes again");
                }
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!("cannot read the free space of {}: {e}", node.config.data_dir.display());
            }
            Err(_) => {}
        }
    }
}
