//! The `sen` command as a user meets it: outputs, exit codes, errors.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_and_json_output() {
    let mut c = cluster("cli", FAST);
    for id in 1..=3 {
        c.add(id).unwrap();
        c.start(id).unwrap();
    }
    let eps = c.endpoints().join(",");
    let first = c.grpc(1).unwrap();
    // Wait for node 1 to answer.
    sen_chaos::wait_for("node 1", T, || async {
        Ok(c.client_for(1)?
            .status_of(&first, std::time::Duration::from_secs(1))
            .await
            .ok()
            .map(|_| ()))
    })
    .await
    .unwrap();

    // The first init makes the caller (the `admin` certificate) the first
    // cluster-admin and writes its token to a private file.
    let token_file = c.root().join("first-admin.token");
    let tf = token_file.to_str().unwrap();
    let (code, out, err) = sen(&[
        "--endpoints",
        &first,
        "--output",
        "json",
        "cluster",
        "init",
        "--token-out",
        tf,
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cluster_id = v["cluster_id"].as_str().unwrap().to_owned();
    assert_eq!(v["admin_user"], "admin", "{v}");
    assert!(
        v["admin_token"].is_null(),
        "the token is in the file, not the output: {v}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    }
    // The token works alone (no client certificate) ...
    let ca = admin_env()[0].1.clone();
    let only_token = [
        ("SEN_CA".to_owned(), ca.clone()),
        ("SEN_CERT".to_owned(), String::new()),
        ("SEN_KEY".to_owned(), String::new()),
        ("SEN_TOKEN_FILE".to_owned(), tf.to_owned()),
    ];
    let (code, out, err) = sen_env(&["--endpoints", &first, "--output", "json", "whoami"], &only_token);
    assert_eq!(code, 0, "{err}");
    let who: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (who["kind"].as_str(), who["name"].as_str()),
        (Some("user"), Some("admin")),
        "{who}"
    );
    // ... and a second init is refused, without a second token.
    let (code, _, err) = sen_env(
        &["--endpoints", &first, "cluster", "init", "--token-out", tf],
        &only_token,
    );
    assert_ne!(code, 0);
    assert!(err.contains("already part of cluster"), "{err}");
    // No credentials at all: refused with the hint.
    let none = [
        ("SEN_CA".to_owned(), ca),
        ("SEN_CERT".to_owned(), String::new()),
        ("SEN_KEY".to_owned(), String::new()),
    ];
    let (code, _, err) = sen_env(&["--endpoints", &first, "cluster", "status"], &none);
    assert_ne!(code, 0);
    assert!(err.contains("SEN_TOKEN") && err.contains("docs/security.md"), "{err}");
    for id in 2..=3 {
        let addr = c.grpc(id).unwrap();
        let (code, out, err) = sen(&[
            "--endpoints",
            &eps,
            "--output",
            "json",
            "cluster",
            "add-node",
            "--id",
            &id.to_string(),
            "--addr",
            &addr,
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["member"]["voter"], true);
    }

    let (code, out, err) = sen(&["--endpoints", &eps, "--output", "json", "cluster", "status"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cluster_id"], cluster_id.as_str());
    assert_eq!(v["insecure"], false, "{v}");
    assert!(v["leader_id"].as_u64().unwrap() >= 1);
    assert!(v["term"].as_u64().unwrap() >= 1);
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        for field in ["id", "addr", "role", "applied_index"] {
            assert!(!m[field].is_null(), "member field {field}: {m}");
        }
    }
    let (code, out, _) = sen(&["--endpoints", &eps, "cluster", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&cluster_id) && out.contains("leader") && out.contains("APPLIED"),
        "{out}"
    );

    // put / get / del / scan / txn / dbs through a follower endpoint.
    let e2 = c.grpc(2).unwrap();
    let (code, out, err) = sen(&[
        "--endpoints",
        &e2,
        "kv",
        "put",
        "congbao",
        "số-1",
        "Quyết định 201/QĐ-UBND.HC",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("OK revision="), "{out}");
    let (code, out, _) = sen(&["--endpoints", &e2, "kv", "get", "congbao", "số-1"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim_end(), "Quyết định 201/QĐ-UBND.HC");
    let (code, out, _) = sen(&[
        "--endpoints",
        &e2,
        "--output",
        "json",
        "kv",
        "get",
        "congbao",
        "số-1",
        "--consistency",
        "stale",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kv"]["version"], 1);
    assert!(v["applied_index"].as_u64().unwrap() >= v["kv"]["mod_revision"].as_u64().unwrap());

    for i in 0..5 {
        let (code, _, err) = sen(&[
            "--endpoints",
            &eps,
            "kv",
            "put",
            "congbao",
            &format!("p/{i}"),
            &i.to_string(),
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, _) = sen(&[
        "--endpoints",
        &eps,
        "kv",
        "scan",
        "congbao",
        "--prefix",
        "p/",
        "--limit",
        "3",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["p/0\t0", "p/1\t1", "p/2\t2"]);
    let (code, out, _) = sen(&[
        "--endpoints",
        &eps,
        "--output",
        "json",
        "kv",
        "scan",
        "congbao",
        "--prefix",
        "p/",
        "--limit",
        "3",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 3);
    assert_eq!(v["more"], true);

    let (code, out, _) = sen(&[
        "--endpoints",
        &eps,
        "--output",
        "json",
        "kv",
        "txn",
        "congbao",
        "--if",
        "value(p/0) = 0",
        "--if",
        "!exists(lock)",
        "--then",
        "put lock n1",
        "--else",
        "del p/0",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["succeeded"], true);
    let (code, out, _) = sen(&[
        "--endpoints",
        &eps,
        "kv",
        "txn",
        "congbao",
        "--if",
        "!exists(lock)",
        "--then",
        "put lock n2",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("FAILED"), "{out}");

    let (code, out, _) = sen(&["--endpoints", &eps, "kv", "del", "congbao", "p/4"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("deleted"), "{out}");
    let (code, out, _) = sen(&["--endpoints", &eps, "--output", "json", "kv", "dbs"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["databases"][0]["name"], "congbao");
    assert_eq!(v["databases"][0]["keys"], 6);

    // Failures: non-zero exit and one line on stderr.
    let (code, _, err) = sen(&["--endpoints", &eps, "kv", "get", "congbao", "missing"]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = sen(&["--endpoints", &eps, "kv", "put", "Bad Name", "k", "v"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("invalid database name") && err.lines().count() == 1,
        "{err}"
    );
    let big = c.root().join("big.bin");
    std::fs::write(&big, vec![b'x'; 1024 * 1024 + 1]).unwrap();
    let (code, _, err) = sen(&[
        "--endpoints",
        &eps,
        "kv",
        "put",
        "congbao",
        "big",
        "--value-file",
        big.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("larger than the limit"), "{err}");
    let (code, _, err) = sen(&[
        "--endpoints",
        &eps,
        "kv",
        "txn",
        "congbao",
        "--if",
        "value(k) ~ 1",
        "--then",
        "del k",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("expected one of"), "{err}");
    let (code, _, err) = sen(&[
        "--endpoints",
        "127.0.0.1:1",
        "--timeout",
        "2s",
        "kv",
        "get",
        "congbao",
        "x",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("failed after") && err.lines().count() == 1, "{err}");
}

#[test]
fn server_config_errors_are_reported() {
    let dir = TestDir::new("config");
    let bad = dir.path.join("bad.toml");
    std::fs::write(&bad, "id = 1\n[raft]\nhearbeat-interval = \"1s\"\n").unwrap();
    let (code, _, err) = sen(&["server", "--config", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown field `hearbeat-interval`"), "{err}");

    let (code, out, _) = sen(&["server", "--id", "4", "--data-dir", "/tmp/x", "--print-config"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("id = 4") && out.contains("[raft]") && out.contains("heartbeat-interval"),
        "{out}"
    );

    let (code, _, err) = sen(&["server", "--id", "0", "--print-config"]);
    assert_ne!(code, 0);
    assert!(err.contains("positive"), "{err}");

    // A data directory belongs to one node id for life. (A plaintext node
    // on loopback: allowed, and it says it runs without authentication.)
    let mut c = sen_chaos::ProcessCluster::new(SEN, dir.path.join("c"), "")
        .unwrap()
        .insecure();
    c.add(1).unwrap();
    c.start(1).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.wait_serving(1, T)).unwrap();
    let local = rt.block_on(c.local_status(1, T)).unwrap();
    assert!(local.insecure && !local.http_tls, "{local:?}");
    assert!(
        c.log(1).contains("INSECURE: no [tls] configured"),
        "the log says so: {}",
        c.log(1)
    );
    c.terminate(1, std::time::Duration::from_secs(30)).unwrap();
    let cfg = c.nodes[&1].config_path.to_str().unwrap().to_owned();
    let (code, _, err) = sen(&["server", "--config", &cfg, "--id", "2"]);
    assert_ne!(code, 0);
    assert!(err.contains("belongs to node 1, not node 2"), "{err}");
}

#[test]
fn certificates_in_one_command() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("certs");
    let pki = dir.path.join("pki");
    let p = pki.to_str().unwrap();
    let (code, out, err) = sen(&[
        "--output",
        "json",
        "certs",
        "init",
        "--dir",
        p,
        "--nodes",
        "2",
        "--host",
        "10.0.0.11",
        "--host",
        "sen.dongthap.gov.vn",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.to_string().contains("node2.pem"), "{v}");
    for f in [
        "ca.pem",
        "ca.key",
        "node1.pem",
        "node1.key",
        "node2.pem",
        "node2.key",
        "admin.pem",
        "admin.key",
    ] {
        let m = std::fs::metadata(pki.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        if f.ends_with(".key") {
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
        }
    }
    // The node certificate names its node and the given hosts.
    let pem = std::fs::read(pki.join("node2.pem")).unwrap();
    assert_eq!(
        sen_security::identity::identity_of_pem(&pem).unwrap(),
        sen_security::CertIdentity::Node(2)
    );
    // A second init would make a second CA: refused.
    let (code, _, err) = sen(&["certs", "init", "--dir", p]);
    assert_ne!(code, 0);
    assert!(err.contains("already holds a CA"), "{err}");
    // More nodes and users later.
    let (code, _, err) = sen(&["certs", "node", "--dir", p, "--id", "3", "--host", "10.0.0.13"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sen(&["certs", "client", "--dir", p, "--user", "cong-bao-admin"]);
    assert_eq!(code, 0, "{err}");
    let pem = std::fs::read(pki.join("cong-bao-admin.pem")).unwrap();
    assert_eq!(
        sen_security::identity::identity_of_pem(&pem).unwrap(),
        sen_security::CertIdentity::User("cong-bao-admin".into())
    );
    // Names that would overwrite the CA's or a node's files are refused.
    for bad in ["ca", "node7", "Không-hợp-lệ"] {
        let (code, _, err) = sen(&["certs", "client", "--dir", p, "--user", bad]);
        assert_ne!(code, 0, "{bad}");
        assert!(!err.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_is_not_a_database() {
    let mut c = cluster("reserved", FAST);
    c.form(1).await.unwrap();
    let eps = c.endpoints().join(",");
    for args in [
        &["kv", "get", "sen-system", "ha/active-drill"][..],
        &["kv", "put", "sen-system", "ha/active-drill", "{}"][..],
        &["kv", "scan", "sen-anything"][..],
    ] {
        let (code, _, err) = sen(&[&["--endpoints", &eps][..], args].concat());
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("control plane"), "{args:?}: {err}");
    }
    // Nor listed as one.
    let (code, out, err) = sen(&["--endpoints", &eps, "--output", "json", "kv", "dbs"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("sen-system"), "{out}");
}
