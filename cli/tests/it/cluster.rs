//! Replication, failover, snapshots and shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use sen_chaos::wait_for;
use sen_client::Consistency;
use sen_proto::v1::kv_client::KvClient;
use sen_proto::v1::{PutRequest, RequestHeader};

use crate::common::*;

/// Read `key` on node `id` from its local state.
async fn stale_get(c: &sen_chaos::ProcessCluster, id: u64, key: &str) -> Option<Vec<u8>> {
    c.client_for(id)
        .unwrap()
        .get("portal", key.as_bytes(), Consistency::Stale)
        .await
        .unwrap()
        .kv
        .map(|kv| kv.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_leader_kill_and_reach_every_node() {
    let mut c = cluster("failover", FAST);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let follower = (1..=3).find(|i| *i != leader).unwrap();

    // Writes through a follower are forwarded to the leader.
    let via_follower = c.client_for(follower).unwrap();
    let mut acked: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for i in 0..20 {
        let (k, v) = (format!("k{i:03}"), format!("v{i}"));
        let r = via_follower.put("portal", k.as_bytes(), v.as_bytes()).await.unwrap();
        assert!(!r.duplicate);
        acked.insert(k, (v, r.revision));
    }
    // Linearizable read through the follower sees the last write.
    let got = via_follower
        .get("portal", b"k019", Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(got.kv.unwrap().value, b"v19");

    // kill -9 the leader: another node takes over and accepts writes.
    c.kill9(leader).unwrap();
    let new_leader = c.wait_leader(Some(leader), T).await.unwrap();
    assert_ne!(new_leader, leader);
    let client = c.client().unwrap();
    for i in 20..40 {
        let (k, v) = (format!("k{i:03}"), format!("v{i}"));
        let r = client.put("portal", k.as_bytes(), v.as_bytes()).await.unwrap();
        acked.insert(k, (v, r.revision));
    }
    let last = acked.values().map(|(_, r)| *r).max().unwrap();

    // The killed node restarts from disk, catches up, and every
    // acknowledged write is readable on every node.
    c.start(leader).unwrap();
    for id in 1..=3 {
        c.wait_applied(id, last, T).await.unwrap();
        for (k, (v, rev)) in &acked {
            let kv = c
                .client_for(id)
                .unwrap()
                .get("portal", k.as_bytes(), Consistency::Stale)
                .await
                .unwrap()
                .kv
                .unwrap_or_else(|| panic!("node {id} lost acknowledged key {k}"));
            assert_eq!(&kv.value, v.as_bytes(), "node {id} key {k}");
            assert_eq!(kv.mod_revision, *rev, "node {id} key {k} revision");
        }
    }
    let s = c.status().await.unwrap();
    assert_eq!(s.members.len(), 3);
    assert!(s.members.iter().all(|m| m.reachable), "{s:?}");
    // Elections were counted on the node that won.
    assert!(c.metric(new_leader, "sen_raft_elections_started_total").await.unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot() {
    let extra = format!("{FAST}snapshot-after-entries = 30\nkeep-entries-after-snapshot = 5\n");
    let mut c = cluster("snapshot", &extra);
    c.form(3).await.unwrap();
    c.kill9(3).unwrap();
    let client = c.client().unwrap();
    let mut last = 0;
    for i in 0..300 {
        last = client
            .put(
                "portal",
                format!("doc/{i:04}").as_bytes(),
                format!("nội dung {i}").as_bytes(),
            )
            .await
            .unwrap()
            .revision;
    }
    // The leader's log no longer holds what node 3 is missing.
    let leader = c.wait_leader(None, T).await.unwrap();
    wait_for("the leader to purge its log", T, || async {
        Ok((c.metric(leader, "sen_raft_purged_index").await? > 100.0).then_some(()))
    })
    .await
    .unwrap();

    c.start(3).unwrap();
    c.wait_applied(3, last, T).await.unwrap();
    // The index gauges follow the log once a second.
    wait_for("node 3 to show its snapshot", T, || async {
        Ok((c.metric(3, "sen_raft_snapshot_index").await? > 0.0).then_some(()))
    })
    .await
    .unwrap();
    assert!(
        c.log(3).contains("installed snapshot"),
        "node 3 caught up by installing a snapshot"
    );
    let n3 = c.client_for(3).unwrap();
    let (kvs, more) = n3.scan("portal", b"doc/", 0, false, Consistency::Stale).await.unwrap();
    assert!(!more);
    assert_eq!(kvs.len(), 300);
    assert_eq!(kvs[299].value, "nội dung 299".as_bytes());
    // And it keeps replicating after the snapshot.
    let r = client.put("portal", b"after", b"snapshot").await.unwrap();
    c.wait_applied(3, r.revision, T).await.unwrap();
    assert_eq!(stale_get(&c, 3, "after").await.unwrap(), b"snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_request_ids_apply_once_across_a_leader_change() {
    let mut c = cluster("idempotent", FAST);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let id = vec![7u8; 16];
    let put = |ch: sen_client::Ch, value: &'static str| {
        let id = id.clone();
        async move {
            let mut kv = KvClient::new(ch);
            kv.put(PutRequest {
                header: Some(RequestHeader { request_id: id }),
                db: "portal".into(),
                key: b"once".to_vec(),
                value: value.as_bytes().to_vec(),
            })
            .await
        }
    };
    let first = put(c.channel(leader).unwrap(), "first").await.unwrap().into_inner();
    assert!(!first.duplicate);
    c.kill9(leader).unwrap();
    let new_leader = c.wait_leader(Some(leader), T).await.unwrap();
    // The same request id again, now to the new leader (as a client
    // retrying after a lost reply would).
    let again = put(c.channel(new_leader).unwrap(), "first").await.unwrap().into_inner();
    assert!(again.duplicate, "the retry must not apply again");
    assert_eq!(again.revision, first.revision);
    // The same id for a different request is refused, never dropped
    // silently, whichever node it is sent to.
    for node in [1, 2, 3].into_iter().filter(|n| *n != leader) {
        let e = put(c.channel(node).unwrap(), "second").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message().contains("request id reused for a different request"),
            "{e:?}"
        );
    }
    let v = c
        .client()
        .unwrap()
        .get("portal", b"once", Consistency::Linearizable)
        .await
        .unwrap();
    let kv = v.kv.unwrap();
    assert_eq!(kv.value, b"first");
    assert_eq!(kv.version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_over_leadership_and_keeps_data() {
    let mut c = cluster("sigterm", FAST);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let client = c.client().unwrap();
    let r = client.put("portal", b"before", b"stop").await.unwrap();
    let code = c.terminate(leader, Duration::from_secs(30)).unwrap();
    assert_eq!(code, Some(0), "clean exit on SIGTERM");
    let log = c.log(leader);
    for step in [
        "shutdown 1/5",
        "shutdown 2/5: transferring leadership",
        "leadership transferred",
        "shutdown 5/5",
        "node stopped",
    ] {
        assert!(log.contains(step), "missing {step:?} in the shutdown log");
    }
    let new_leader = c.wait_leader(Some(leader), T).await.unwrap();
    assert_ne!(new_leader, leader);
    c.start(leader).unwrap();
    c.wait_applied(leader, r.revision, T).await.unwrap();
    assert_eq!(stale_get(&c, leader, "before").await.unwrap(), b"stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let mut c = cluster("health", FAST);
    c.add(1).unwrap();
    c.add(2).unwrap();
    c.start(1).unwrap();
    c.start(2).unwrap();
    let http = c.web(1).unwrap();
    // Before init: alive but not ready.
    let (code, _) = wait_for("livez", T, || async { Ok(http.get_status("/livez").await.ok()) })
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (code, body) = http.get_status("/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not part of a cluster"), "{body}");

    c.client_for(1).unwrap().init().await.unwrap();
    c.client()
        .unwrap()
        .add_node(2, &c.grpc(2).unwrap(), false)
        .await
        .unwrap();
    wait_for("readyz", T, || async {
        let (code, _) = http.get_status("/readyz").await?;
        Ok((code == 200).then_some(()))
    })
    .await
    .unwrap();
    c.client().unwrap().put("portal", b"k", b"v").await.unwrap();
    let metrics = http.get("/metrics").await.unwrap();
    for name in [
        "sen_raft_term",
        "sen_raft_leader_id",
        "sen_raft_is_leader",
        "sen_raft_commit_index",
        "sen_raft_applied_index",
        "sen_raft_replication_lag_entries",
        "sen_raft_proposals_total",
        "sen_raft_proposal_duration_seconds_bucket",
        "sen_raft_elections_started_total",
        "sen_grpc_requests_total",
    ] {
        assert!(metrics.contains(name), "metric {name} missing");
    }
    assert!(c.metric(1, "sen_raft_is_leader").await.unwrap() == 1.0);
    // The steps of that write: appended, fsynced, applied and replicated on
    // the leader; appended by the follower.
    let steps = |id: u64, stage: &'static str| {
        let c = &c;
        async move {
            c.metric_where(id, "sen_raft_stage_duration_seconds_count", &[("stage", stage)])
                .await
                .unwrap()
        }
    };
    for stage in ["log-append", "log-fsync", "apply", "replicate"] {
        assert!(steps(1, stage).await >= 1.0, "leader step {stage} not measured");
    }
    wait_for("the follower's append to be measured", T, || async {
        Ok((steps(2, "follower-append").await >= 1.0).then_some(()))
    })
    .await
    .unwrap();
    // RocksDB's memory: the configured bound, and the memtables holding
    // the write above counted against it.
    let store_memory = |part: &str| -> f64 {
        let series = format!("sen_store_memory_bytes{{node=\"1\",part=\"{part}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .unwrap_or_else(|| panic!("{series} missing"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(store_memory("limit"), 256.0 * 1024.0 * 1024.0);
    let memtables = store_memory("memtables");
    assert!(memtables > 0.0 && memtables <= store_memory("limit"), "{memtables}");

    // Metrics are for the cluster's readers: a visitor gets 401.
    let (code, _) = http.anonymous().get_status("/metrics").await.unwrap();
    assert_eq!(code, 401);

    // Standard gRPC health service: over TLS, without credentials.
    let ca = c.security().unwrap().ca_pem().to_vec();
    let ch = tonic::transport::Endpoint::from_shared(format!("https://{}", c.grpc(1).unwrap()))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca)),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "sen.v1.Kv".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// A follower whose disk lost the tail of its Raft log after it had
/// acknowledged those entries (kill -9, then the WAL tail cut) must not take
/// the leader down: openraft treats such a "log reversion" as impossible
/// unless told otherwise, and a debug build's leader panicked on it (found
/// by the chaos smoke suite, `corrupt-log-truncate`, 1 run in 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_that_lost_its_log_tail_does_not_stop_the_leader() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let mut c = cluster("log-tail", FAST);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let follower = (1..=3).find(|i| *i != leader).unwrap();

    // Concurrent writes, so the follower always has entries it has
    // acknowledged but not yet applied when it is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let last_rev = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = c.client_for(leader).unwrap();
            let (stop, last_rev) = (stop.clone(), last_rev.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("w{w}-{i:06}");
                    if let Ok(r) = client.put("portal", k.as_bytes(), &[b'x'; 200]).await {
                        last_rev.fetch_max(r.revision, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();

    let mut refused = false;
    // Cuts from a few bytes (a torn last record) to a few records.
    for (round, cut) in [40u64, 90, 160, 60, 250, 120, 400].into_iter().enumerate() {
        // Let the writers move the log on (so the cut removes fresh entries).
        let from = last_rev.load(Ordering::Relaxed);
        sen_chaos::wait_for("the writers to make progress", T, || async {
            Ok((last_rev.load(Ordering::Relaxed) >= from + 50).then_some(()))
        })
        .await
        .unwrap();
        c.kill9(follower).unwrap();
        let raft_dir = c.nodes[&follower].data_dir.join("raft");
        sen_chaos::nemesis::corrupt_wal_tail(&raft_dir, sen_chaos::nemesis::CorruptMode::Truncate, cut).unwrap();
        c.start(follower).unwrap();
        // It rejoins (answers and applies what the leader had committed
        // when it restarted) or refuses to start.
        let target = last_rev.load(Ordering::Relaxed);
        let follower_addr = c.grpc(follower).unwrap();
        let probe = c.client_for(follower).unwrap();
        let deadline = std::time::Instant::now() + T;
        loop {
            if c.exit_code(follower).is_some() {
                break;
            }
            if let Ok(s) = probe.local_status(&follower_addr, Duration::from_millis(500)).await
                && s.applied_index >= target
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the follower neither rejoined nor refused to start within {T:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "round {round}: cut {cut} bytes; follower running: {}",
            c.exit_code(follower).is_none()
        );
        // The follower either rejoins or, if it lost entries it had already
        // applied, refuses to start with a message saying how to rebuild it.
        if c.exit_code(follower).is_some() {
            let log = c.log(follower);
            assert!(log.contains("the log lost entries this node acknowledged"), "{log}");
            refused = true;
            break;
        }
        assert_eq!(c.exit_code(leader), None, "the leader exited in round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    // The leader is alive and still takes writes; a follower that rejoined
    // converges to the last acknowledged write.
    assert_eq!(c.exit_code(leader), None, "the leader exited");
    let r = c
        .client_for(leader)
        .unwrap()
        .put("portal", b"after", b"ok")
        .await
        .unwrap();
    assert!(r.revision > last_rev.load(Ordering::Relaxed));
    let nodes: Vec<u64> = (1..=3).filter(|i| !(refused && *i == follower)).collect();
    for id in nodes {
        c.wait_applied(id, r.revision, T).await.unwrap();
    }
}
