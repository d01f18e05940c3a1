//! Hostile and careless input (issue 14): the dangerous operations are
//! refused by the node itself, whatever client sends them, and a refusal
//! changes nothing.

use sen_proto::v1::*;
use tonic::Code;

use crate::common::*;

/// The replicated state's digest as the leader sees it (audit log left
/// out: refusals are audited).
async fn digest(c: &Cluster, id: u64) -> String {
    sen_proto::v1::admin_client::AdminClient::new(c.channel(id).unwrap())
        .digest(DigestRequest {
            without_audit_log: true,
        })
        .await
        .unwrap()
        .into_inner()
        .digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_force_on_a_healthy_follower_is_refused_and_the_cluster_is_unchanged() {
    let mut c = cluster("guard-recover", FAST);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let follower = [1, 2, 3].into_iter().find(|n| *n != leader).unwrap();
    let client = c.client().unwrap();
    let put = client.put("portal", b"k", b"v").await.unwrap();
    c.wait_applied(follower, put.revision, T).await.unwrap();
    let before = digest(&c, leader).await;

    // A raw call, as a script or another client would send it: no CLI
    // dry-run in front.
    let mut ops = node_ops_client::NodeOpsClient::new(c.channel(follower).unwrap());
    let e = ops
        .recover(RecoverRequest {
            force: true,
            confirm: format!("recover node {follower}"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("still answer") && e.message().contains("would fork the cluster"),
        "{e:?}"
    );

    // Still one cluster of three voters with the same leader and state.
    assert_eq!(digest(&c, leader).await, before, "a refused recovery changed the state");
    let status = c.status().await.unwrap();
    let voters = status.members.iter().filter(|m| m.role != "learner").count();
    assert_eq!(voters, 3, "{status:?}");
    assert_eq!(c.wait_leader(None, T).await.unwrap(), leader);
    let again = client.put("portal", b"k2", b"v").await.unwrap();
    c.wait_applied(follower, again.revision, T).await.unwrap();
    assert!(
        c.exit_code(follower).is_none_or(|code| code.is_none()),
        "the follower still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_faults_need_drills_enabled_and_stay_bounded() {
    let mut c = cluster("guard-drills", &format!("{FAST}[drills]\nenabled = false\n"));
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let mut ops = node_ops_client::NodeOpsClient::new(c.channel(leader).unwrap());
    let e = ops
        .inject_fault(InjectFaultRequest {
            fault: "crash".into(),
            duration_ms: 5_000,
            drill_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("drill faults are disabled"), "{e:?}");
    assert!(
        c.exit_code(leader).is_none_or(|code| code.is_none()),
        "the leader still runs"
    );
    assert_eq!(c.wait_leader(None, T).await.unwrap(), leader);

    // Enabled (the test default): a fault longer than the cap is refused.
    let mut c = cluster(
        "guard-drills-on",
        &format!("{FAST}[drills]\nmax-fault-duration = \"2s\"\n"),
    );
    c.form(1).await.unwrap();
    let mut ops = node_ops_client::NodeOpsClient::new(c.channel(1).unwrap());
    let e = ops
        .inject_fault(InjectFaultRequest {
            fault: "isolate".into(),
            duration_ms: 3_000,
            drill_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("drills.max-fault-duration"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_go_only_where_the_nodes_allow() {
    let allowed = "/nonexistent-sen-allowed/backups/";
    let mut c = cluster(
        "guard-backup",
        &format!("{FAST}[backup]\nallowed-repos = [\"file://{allowed}\"]\n"),
    );
    c.form(1).await.unwrap();
    let eps = c.endpoints().join(",");
    let elsewhere = c.root().join("elsewhere");
    let url = format!("file://{}", elsewhere.display());
    let env = c.cli_env();
    let (code, _, err) = sen_env(&["--endpoints", &eps, "backup", "create", "--repo", &url], &env);
    assert_ne!(code, 0);
    assert!(err.contains("outside [backup] allowed-repos"), "{err}");
    assert!(!elsewhere.exists(), "nothing was created at {}", elsewhere.display());

    // A path that climbs out of an allowed directory is refused as well.
    let climbing = format!("file://{allowed}../../../tmp/x");
    let (code, _, err) = sen_env(&["--endpoints", &eps, "backup", "create", "--repo", &climbing], &env);
    assert_ne!(code, 0);
    assert!(err.contains("\"..\""), "{err}");

    // And a schedule pointing elsewhere is refused when it is set.
    let (code, _, err) = sen_env(
        &[
            "--endpoints",
            &eps,
            "backup",
            "schedule",
            "set",
            "--repo",
            &url,
            "--every",
            "1h",
        ],
        &env,
    );
    assert_ne!(code, 0);
    assert!(err.contains("outside [backup] allowed-repos"), "{err}");
}

/// Set every `key` in a JSON document to `value`.
fn set_all(v: &mut serde_json::Value, key: &str, value: serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => {
            let mut n = 0;
            for (k, inner) in m.iter_mut() {
                if k == key {
                    *inner = value.clone();
                    n += 1;
                } else {
                    n += set_all(inner, key, value.clone());
                }
            }
            n
        }
        serde_json::Value::Array(a) => a.iter_mut().map(|x| set_all(x, key, value.clone())).sum(),
        _ => 0,
    }
}

#[test]
fn a_repository_config_asking_for_4_gib_of_key_derivation_memory_is_refused() {
    let dir = TestDir::new("guard-kdf");
    let repo = dir.path.join("repo");
    let url = format!("file://{}", repo.display());
    let pw = dir.path.join("pw");
    std::fs::write(&pw, "mật khẩu\n").unwrap();
    let r = ["--repo", url.as_str(), "--password-file", pw.to_str().unwrap()];
    let (code, _, err) = sen(&[&["backup", "init"][..], &r].concat());
    assert_eq!(code, 0, "{err}");

    let config = repo.join("config");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(set_all(&mut v, "m_cost_kib", (4 * 1024 * 1024u32).into()), 1, "{v}");
    std::fs::write(&config, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, _, err) = sen(&[&["backup", "list"][..], &r].concat());
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("repository config asks for 4096 MiB of memory") && err.contains("the limit is 1024 MiB"),
        "{err}"
    );

    set_all(&mut v, "m_cost_kib", (64 * 1024u32).into());
    set_all(&mut v, "t_cost", u32::MAX.into());
    std::fs::write(&config, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, _, err) = sen(&[&["backup", "list"][..], &r].concat());
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Argon2id passes"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_client_is_dropped_while_others_are_served() {
    let mut c = cluster(
        "guard-slowloris",
        &format!("{FAST}[server]\nhttp-header-timeout = \"2s\"\nhttp-idle-timeout = \"60s\"\n"),
    );
    c.form(1).await.unwrap();
    slow_loris_is_dropped(&c.web(1).unwrap()).await;
}

/// Headers trickle in, one line every 300 ms, never finished: the
/// connection stays busy (no idle timeout) but the header timeout ends it,
/// while other requests are served.
async fn slow_loris_is_dropped(web: &sen_chaos::cluster::Web) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = web.connect().await.unwrap();
    slow.write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let closed = loop {
        // Others are served meanwhile.
        assert_eq!(web.get_status("/livez").await.unwrap().0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break true;
        }
        let mut buf = [0u8; 512];
        if let Ok(r) = tokio::time::timeout(std::time::Duration::from_millis(1), slow.read(&mut buf)).await {
            // Closed (0 bytes or an error), or a 408 before closing.
            let text = String::from_utf8_lossy(&buf[..r.as_ref().map_or(0, |n| *n)]).to_string();
            assert!(r.is_err() || text.is_empty() || text.contains(" 408 "), "{text}");
            break true;
        }
        if started.elapsed() > T {
            break false;
        }
    };
    assert!(closed, "the slow client still holds its connection after {T:?}");
}

/// Plaintext HTTP behind a proxy that terminates TLS (`tls.http = false`)
/// is served on the node's HTTP threads (two here, `server.http-threads`)
/// with every guard of the main runtime: a private site is refused without
/// a token and served with one, cached or not; a slow-loris connection is
/// dropped while others are served; connections past
/// `http-max-connections` are closed and counted; and SIGTERM stops the
/// node cleanly with connections open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_http_runs_on_its_own_threads_with_every_guard() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let extra = format!("{FAST}[server]\nhttp-threads = 2\nhttp-header-timeout = \"3s\"\nhttp-max-connections = 6\n");
    let mut c = cluster("http-threads", &extra);
    c.set_plain_http();
    c.form(1).await.unwrap();
    let admin = c.client().unwrap();
    admin.create_site("noi-bo").await.unwrap();
    let dir = c.root().join("t");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>Nội bộ</p>").unwrap();
    admin.push("noi-bo", &dir, &Default::default(), None).await.unwrap();
    admin.set_site_access("noi-bo", true).await.unwrap();
    let web = c.web(1).unwrap();
    assert!(!web.is_tls());
    // The two threads run beside the main runtime's.
    let pid = c.nodes[&1].pid().unwrap();
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("sen-http-"))
        .collect();
    assert_eq!(threads.len(), 2, "{threads:?}");
    // The first read fills the served-file cache; the next are answered
    // from it. A visitor without a token is refused every time.
    for _ in 0..3 {
        let r = web.request("GET", "/sites/noi-bo/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "<p>Nội bộ</p>".as_bytes());
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let (code, _) = web.anonymous().get_status("/sites/noi-bo/").await.unwrap();
        assert_eq!(code, 401);
    }

    // Slow loris: dropped while others are served.
    slow_loris_is_dropped(&web).await;

    // Six idle connections fill the node: the next is closed on arrival.
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(web.connect().await.unwrap());
    }
    sen_chaos::wait_for("a seventh connection to be refused", T, || async {
        Ok(web.get_status("/livez").await.is_err().then_some(()))
    })
    .await
    .unwrap();
    // Open connections still work, on whichever thread holds them.
    for conn in held.iter_mut() {
        conn.write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    drop(held);
    sen_chaos::wait_for("connections to be accepted again", T, || async {
        Ok((web.get_status("/livez").await.ok().map(|r| r.0) == Some(200)).then_some(()))
    })
    .await
    .unwrap();
    let (_, m) = web.get_status("/metrics").await.unwrap();
    let refused: u64 = m
        .lines()
        .find(|l| l.starts_with("sen_http_connections_refused_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(refused >= 1, "{m}");

    // SIGTERM with a kept-alive connection open: a clean exit.
    let _open = web.connect().await.unwrap();
    assert_eq!(c.terminate(1, std::time::Duration::from_secs(30)).unwrap(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_endpoints_answer_only_under_admin_host_names_and_pages_are_hardened() {
    let extra = format!(
        "{FAST}[content.vhosts]\n\"congbao.dongthap.gov.vn\" = \"congbao\"\n[server]\nadmin-hosts = [\"sen1.internal\"]\n"
    );
    let mut c = cluster("guard-adminhost", &extra);
    c.form(1).await.unwrap();
    let eps = c.endpoints().join(",");
    let env = c.cli_env();
    let dir = c.root().join("site");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>Công báo</h1>").unwrap();
    assert_eq!(sen_env(&["--endpoints", &eps, "site", "create", "congbao"], &env).0, 0);
    let (code, _, err) = sen_env(
        &["--endpoints", &eps, "site", "push", "congbao", dir.to_str().unwrap()],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let web = c.web(1).unwrap();
    for host in ["127.0.0.11", "localhost", "sen1.internal", "SEN1.internal:8443"] {
        let r = web.request("GET", "/readyz", &[("Host", host)]).await.unwrap();
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    for host in ["portal.example.vn", "evil.example"] {
        let r = web.request("GET", "/metrics", &[("Host", host)]).await.unwrap();
        assert_eq!(r.status, 404, "{host}: {}", String::from_utf8_lossy(&r.body));
        let r = web.request("GET", "/livez", &[("Host", host)]).await.unwrap();
        assert_eq!(r.status, 404, "{host}");
    }
    // Under the site's own name, /metrics is a path of the site (absent).
    let r = web
        .request("GET", "/metrics", &[("Host", "congbao.dongthap.gov.vn")])
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = web
        .request("GET", "/", &[("Host", "congbao.dongthap.gov.vn")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("Công báo"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("frame-ancestors 'self'; object-src 'none'; base-uri 'self'")
    );
    // A malformed request line gets a 400, and the node keeps serving.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = web.connect().await.unwrap();
    s.write_all(b"GET /\x01 HTP/9\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(web.get_status("/livez").await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_100_000_keys_comes_back_in_bounded_pages() {
    let mut c = cluster("guard-pages", FAST);
    c.form(1).await.unwrap();
    let mut kv = kv_client::KvClient::new(c.channel(1).unwrap());
    const N: usize = 100_000;
    let mut last = 0;
    for batch in 0..N.div_ceil(128) {
        let success = (batch * 128..((batch + 1) * 128).min(N))
            .map(|i| TxnOp {
                op: Some(txn_op::Op::Put(TxnPut {
                    key: format!("k{i:06}").into_bytes(),
                    value: b"v".to_vec(),
                })),
            })
            .collect();
        last = kv
            .txn(TxnRequest {
                header: Some(RequestHeader {
                    request_id: sen_core::RequestId::generate().0.to_vec(),
                }),
                db: "pages".into(),
                compares: vec![],
                success,
                failure: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .revision;
    }
    assert!(last > 0);
    // One call never answers with more than a page (limits.max-scan-page,
    // 1000 by default), whatever it asks for; the pages cover every key once.
    let mut start_after = Vec::new();
    let (mut keys, mut pages) = (0usize, 0usize);
    loop {
        let r = kv
            .scan(ScanRequest {
                db: "pages".into(),
                start_after: start_after.clone(),
                limit: u32::MAX,
                keys_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.kvs.len() <= 1000, "a page of {}", r.kvs.len());
        keys += r.kvs.len();
        pages += 1;
        if !r.more {
            break;
        }
        start_after = r.kvs.last().unwrap().key.clone();
    }
    assert_eq!(keys, N);
    assert!((N / 1000..=N / 1000 + 1).contains(&pages), "{pages} pages");
    // The list RPCs page too.
    let r = kv
        .list_databases(ListDatabasesRequest {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.databases.len() <= 1);
}

/// Write a filler file in `dir` until its file system has `keep` bytes
/// free (what an unprivileged process may write).
fn fill_until(dir: &std::path::Path, keep: u64) -> std::path::PathBuf {
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    let path = dir.join("FILLER");
    let f = std::fs::File::create(&path).unwrap();
    // Real pages: tmpfs counts written bytes, not the file's length.
    let mut w = std::io::BufWriter::new(f);
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = free.saturating_sub(keep);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        std::io::Write::write_all(&mut w, &chunk[..n]).unwrap();
        left -= n as u64;
    }
    std::io::Write::flush(&mut w).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_filled_to_its_reserve_turns_read_only_and_comes_back() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a size-limited tmpfs needs root");
        return;
    }
    // 128 MB disks, a 32 MiB reserve.
    let mut c = cluster(
        "guard-disk",
        &format!("{FAST}[server]\ndisk-reserve-bytes = 33554432\ndisk-reserve-percent = 50\n"),
    );
    let mut dirs = Vec::new();
    for id in 1..=3 {
        c.add(id).unwrap();
        dirs.push(c.mount_tmpfs(id, 128).unwrap());
    }
    c.form(3).await.unwrap();
    let client = c.client().unwrap();
    client.put("portal", b"before", b"1").await.unwrap();

    // Every disk down to 16 MB free: below the reserve, above zero.
    let fillers: Vec<_> = dirs.iter().map(|d| fill_until(d, 16 << 20)).collect();
    let refused = sen_chaos::wait_for("writes to be refused", T, || {
        let client = &client;
        async move {
            Ok(match client.put("portal", b"during", b"1").await {
                Err(e) if e.code() == Some(tonic::Code::ResourceExhausted) => Some(e.to_string()),
                _ => None,
            })
        }
    })
    .await
    .unwrap();
    assert!(refused.contains("disk almost full on node"), "{refused}");
    assert_eq!(c.metric(1, "sen_disk_low").await.unwrap(), 1.0);

    // Reads and deletes go on; so do elections.
    let got = client
        .get("portal", b"before", sen_client::Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(got.kv.unwrap().value, b"1");
    client.delete("portal", b"before").await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    c.kill9(leader).unwrap();
    let new_leader = c.wait_leader(Some(leader), T).await.unwrap();
    assert_ne!(new_leader, leader);
    c.start(leader).unwrap();
    c.wait_serving(leader, T).await.unwrap();
    let e = client.put("portal", b"during", b"2").await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::ResourceExhausted), "{e}");

    // Space freed: writes are accepted again, nothing restarted.
    for f in fillers {
        std::fs::remove_file(f).unwrap();
    }
    sen_chaos::wait_for("writes to be accepted again", T, || {
        let client = &client;
        async move { Ok(client.put("portal", b"after", b"1").await.ok()) }
    })
    .await
    .unwrap();
    assert!(
        client
            .get("portal", b"before", sen_client::Consistency::Linearizable)
            .await
            .unwrap()
            .kv
            .is_none()
    );
    for id in 1..=3 {
        assert!(
            c.exit_code(id).is_none_or(|code| code.is_none()),
            "node {id} still runs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_number_of_databases_and_sites_is_bounded() {
    let mut c = cluster(
        "guard-counts",
        &format!("{FAST}[limits]\nmax-databases = 3\nmax-sites = 1\n"),
    );
    c.form(1).await.unwrap();
    let client = c.client().unwrap();
    // `sen-system` (users, the audit log) counts too: two more fit.
    let mut created = 0;
    let refused = loop {
        match client.put(&format!("db{created}"), b"k", b"v").await {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
        assert!(created <= 3, "more databases than the limit");
    };
    assert_eq!(refused.code(), Some(tonic::Code::ResourceExhausted), "{refused}");
    assert!(refused.to_string().contains("limits.max-databases"), "{refused}");
    assert!(
        (2..=3).contains(&created),
        "{created} databases created under a limit of 3 (sen-system counts)"
    );
    // Existing databases still take writes.
    client.put("db0", b"k2", b"v").await.unwrap();

    let eps = c.endpoints().join(",");
    let env = c.cli_env();
    assert_eq!(sen_env(&["--endpoints", &eps, "site", "create", "one"], &env).0, 0);
    let (code, _, err) = sen_env(&["--endpoints", &eps, "site", "create", "two"], &env);
    assert_ne!(code, 0);
    assert!(err.contains("limits.max-sites"), "{err}");
    // Creating the existing site again is not a new site.
    assert_eq!(sen_env(&["--endpoints", &eps, "site", "create", "one"], &env).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_cannot_take_every_write() {
    let mut c = cluster(
        "guard-write-rate",
        &format!("{FAST}[auth]\nwrites-per-second = 1\nwrites-burst = 1\n"),
    );
    c.form(1).await.unwrap();
    let client = c.client().unwrap();
    // The first write of the second may pass; one of the next two is
    // refused, with the reason, and nothing is stored for it.
    let mut refused = None;
    for i in 0..3 {
        if let Err(e) = client.put("rate", format!("k{i}").as_bytes(), b"v").await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("a refusal within three quick writes");
    assert_eq!(e.code(), Some(tonic::Code::ResourceExhausted), "{e}");
    assert!(e.to_string().contains("auth.writes-per-second"), "{e}");
    // Reads are not limited; writes pass again once the budget refills.
    client
        .get("rate", b"k0", sen_client::Consistency::Linearizable)
        .await
        .unwrap();
    sen_chaos::wait_for("the write budget to refill", T, || {
        let client = &client;
        async move { Ok(client.put("rate", b"later", b"v").await.ok()) }
    })
    .await
    .unwrap();
}

/// `n` bytes that do not compress (a keyed blake3 stream).
fn noise(seed: u8, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    blake3::Hasher::new_keyed(&[seed; 32]).finalize_xof().fill(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_the_undeployed_upload_bound_refuse_growth_and_nothing_else() {
    let mut c = cluster(
        "guard-quota",
        &format!("{FAST}[limits]\nmax-undeployed-bytes = 150000\n"),
    );
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    let env = c.cli_env();
    let run = |args: &[&str]| {
        let mut all = vec!["--endpoints", eps.as_str()];
        all.extend_from_slice(args);
        sen_env(&all, &env)
    };
    let client = c.client().unwrap();

    // A database quota: 10 keys of 10 bytes fit in 100 bytes, the 11th not.
    let (code, _, err) = run(&["quota", "set", "database", "congbao", "--max-bytes", "100"]);
    assert_eq!(code, 0, "{err}");
    for i in 0..10 {
        client
            .put("congbao", format!("k{i}").as_bytes(), b"12345678")
            .await
            .unwrap();
    }
    let before = digest(&c, c.wait_leader(None, T).await.unwrap()).await;
    let e = client.put("congbao", b"k_", b"12345678").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
    assert!(e.to_string().contains("over its quota of 100 bytes"), "{e}");
    assert_eq!(
        digest(&c, c.wait_leader(None, T).await.unwrap()).await,
        before,
        "a refusal changes nothing"
    );
    // Deletes pass; the freed room takes new keys.
    client.delete("congbao", b"k0").await.unwrap();
    client.put("congbao", b"k_", b"12345678").await.unwrap();
    let (code, out, err) = run(&["--output", "json", "quota", "list"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["quotas"][0]["used_bytes"], 100, "{out}");
    assert_eq!(v["quotas"][0]["max_bytes"], 100, "{out}");
    assert_eq!(
        run(&["quota", "set", "database", "congbao", "--max-bytes", "none"]).0,
        0
    );
    client.put("congbao", b"k11", b"12345678").await.unwrap();
    // Every replica decided the same.
    let leader = c.wait_leader(None, T).await.unwrap();
    sen_chaos::wait_for("replicas to agree", T, || {
        let c = &c;
        async move {
            let want = digest(c, leader).await;
            for id in 1..=3 {
                if digest(c, id).await != want {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        }
    })
    .await
    .unwrap();

    // A site quota refuses the deploy of a larger tree.
    let base = tempfile::tempdir().unwrap();
    let tree = |name: &str, size: usize, seed: u8| {
        let d = base.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("file.bin"), noise(seed, size)).unwrap();
        d.to_str().unwrap().to_owned()
    };
    assert_eq!(run(&["site", "create", "portal"]).0, 0);
    assert_eq!(run(&["quota", "set", "site", "portal", "--max-bytes", "50KB"]).0, 0);
    let (code, _, err) = run(&["site", "push", "portal", &tree("small", 40_000, 1), "--delete"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["site", "push", "portal", &tree("large", 60_000, 2), "--delete"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("site portal would hold 60000 bytes, over its quota of 50000 bytes"),
        "{err}"
    );

    // The refused push left 60 KB of uploads no deployment uses: 120 KB
    // more would pass the 150 KB bound, so the upload itself is refused.
    let (code, _, err) = run(&["site", "push", "portal", &tree("larger", 120_000, 3), "--delete"]);
    assert_ne!(code, 0);
    assert!(err.contains("limits.max-undeployed-bytes"), "{err}");
    // Collecting garbage makes room; without the quota the push goes through.
    assert_eq!(run(&["site", "gc", "--grace", "0s"]).0, 0);
    assert_eq!(run(&["quota", "set", "site", "portal", "--max-bytes", "none"]).0, 0);
    let (code, _, err) = run(&["site", "push", "portal", &tree("larger", 120_000, 3), "--delete"]);
    assert_eq!(code, 0, "{err}");

    // Only administrators set quotas (checked by the node, not the CLI).
    if let Some(sec) = c.security() {
        let nobody = c.client_with(Some(sec.tls_options(None).unwrap()), None).unwrap();
        let e = nobody.set_quota("database", "congbao", 1).await.unwrap_err();
        assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
    }
}
