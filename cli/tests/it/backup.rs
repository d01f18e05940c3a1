//! Backups and restores against real `sen` processes and a local-directory
//! repository: round trips, incremental backups, damage, wrong passwords,
//! disaster recovery of a whole cluster.

use std::collections::BTreeMap;
use std::path::Path;

use sen_chaos::cluster::url_path;

use crate::common::*;

/// A portal-like tree: pages, attachments, Vietnamese names.
fn make_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (i, name) in ["Lịch tuần", "Công báo", "Văn bản chỉ đạo"].iter().enumerate() {
        for j in 0..20 {
            files.insert(
                format!("{name}/trang {j}.html"),
                format!("<h1>{name} {j}</h1>{}", "Đồng Tháp. ".repeat(j * 40)).into_bytes(),
            );
            files.insert(
                format!("{name}/đính kèm/{j}.pdf"),
                pseudo_random(5_000 + j * 3_001, (i * 50 + j) as u64),
            );
        }
    }
    files.insert("index.html".into(), b"<h1>Cong thong tin</h1>".to_vec());
    files.insert("big.bin".into(), pseudo_random(2 * 1024 * 1024 + 5, 77));
    for (p, data) in &files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    files
}

fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_destroy_everything_restore_the_cluster() {
    let mut c = cluster("backup", FAST);
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    let root = c.root().to_owned();
    let repo_url = format!("file://{}", root.join("repo").display());
    let pw = root.join("pw");
    std::fs::write(&pw, "mật khẩu đủ dài\n").unwrap();
    let pwf = pw.to_str().unwrap();
    let r = ["--repo", repo_url.as_str(), "--password-file", pwf];

    // Content and databases.
    let tree = root.join("tree");
    let mut files = make_tree(&tree);
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "congbao"]).0, 0);
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "push", "congbao", tree.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let client = c.client().unwrap();
    let mut kv = BTreeMap::new();
    for i in 0..300u32 {
        let (db, k, v) = (
            if i % 3 == 0 { "lich" } else { "portal" },
            format!("key/{i:04}"),
            format!("giá trị {i}"),
        );
        client.put(db, k.as_bytes(), v.as_bytes()).await.unwrap();
        kv.insert((db.to_owned(), k), v);
    }

    // Init refuses a second time; a backup reports what the issue asks.
    let init = json(&[&["backup", "init"][..], &r].concat());
    assert_eq!(init["encrypted"], true);
    let (code, _, err) = sen(&[&["backup", "init"][..], &r].concat());
    assert_ne!(code, 0);
    assert!(err.contains("already holds"), "{err}");
    let first = json(&[&["--endpoints", &eps, "backup", "create", "--tag", "dau-tien"][..], &r].concat());
    for f in ["snapshot_id", "raft_index", "bytes_total", "bytes_new", "duration_ms"] {
        assert!(!first[f].is_null(), "{f} missing: {first}");
    }
    let total = first["bytes_total"].as_u64().unwrap();
    assert!(total > 2_000_000, "{first}");
    assert!(first["bytes_new"].as_u64().unwrap() > 1_000_000, "{first}");
    // Taken on a follower by default.
    let leader = c.status().await.unwrap().leader_id;
    assert_ne!(first["node_id"].as_u64().unwrap(), leader, "{first}");

    // Incremental: one file and a few keys change; little travels.
    let edited = pseudo_random(9_000, 999);
    std::fs::write(tree.join("Công báo/đính kèm/3.pdf"), &edited).unwrap();
    files.insert("Công báo/đính kèm/3.pdf".into(), edited);
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "push", "congbao", tree.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for i in [5u32, 77, 201] {
        client
            .put("portal", format!("key/{i:04}").as_bytes(), b"doi")
            .await
            .unwrap();
        kv.insert(("portal".into(), format!("key/{i:04}")), "doi".into());
    }
    client.delete("portal", b"key/0010").await.unwrap();
    kv.remove(&("portal".to_owned(), "key/0010".to_owned()));
    let second = json(&[&["--endpoints", &eps, "backup", "create"][..], &r].concat());
    let new = second["bytes_new"].as_u64().unwrap();
    assert!(
        new < total / 10,
        "incremental backup sent {new} of {total} bytes: {second}"
    );
    assert!(second["raft_index"].as_u64() > first["raft_index"].as_u64());

    // list / show / diff / check.
    let list = json(&[&["backup", "list"][..], &r].concat());
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 2);
    let id1 = first["snapshot_id"].as_str().unwrap();
    let show = json(&[&["backup", "show", &id1[..10]][..], &r].concat());
    assert_eq!(show["tags"][0], "dau-tien");
    let diff = json(&[&["backup", "diff", &id1[..8], "latest"][..], &r].concat());
    let changes: Vec<String> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["change"].as_str().unwrap(),
                c["what"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        changes.contains(&"changed congbao Công báo/đính kèm/3.pdf".to_owned()),
        "{changes:?}"
    );
    assert!(changes.contains(&"removed portal key/0010".to_owned()), "{changes:?}");
    assert_eq!(changes.len(), 5, "{changes:?}");
    let check = json(&[&["backup", "check", "--read-data"][..], &r].concat());
    assert_eq!(check["ok"], true, "{check}");

    // Wrong password: a clear error, nothing written.
    let bad = root.join("bad");
    std::fs::write(&bad, "sai").unwrap();
    let (code, _, err) = sen(&[
        "backup",
        "list",
        "--repo",
        &repo_url,
        "--password-file",
        bad.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("wrong password"), "{err}");

    // Site, path and table restores to local disk.
    let out = root.join("restored-site");
    json(&[&["restore", "site", "congbao", "--to", out.to_str().unwrap()][..], &r].concat());
    assert_eq!(read_tree(&out), files);
    let one = root.join("restored-one");
    json(
        &[
            &[
                "restore",
                "site",
                "congbao",
                "--path",
                "Công báo/đính kèm",
                "--snapshot",
                &id1[..8],
                "--to",
                one.to_str().unwrap(),
            ][..],
            &r,
        ]
        .concat(),
    );
    let got = read_tree(&one);
    assert_eq!(got.len(), 20);
    assert_eq!(
        got["Công báo/đính kèm/3.pdf"],
        pseudo_random(5_000 + 3 * 3_001, 53),
        "the old version"
    );
    let dbfile = root.join("portal.jsonl");
    json(
        &[
            &[
                "restore",
                "db",
                "portal",
                "--prefix",
                "key/00",
                "--to",
                dbfile.to_str().unwrap(),
            ][..],
            &r,
        ]
        .concat(),
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dbfile)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<_> = kv
        .iter()
        .filter(|((db, k), _)| db == "portal" && k.starts_with("key/00"))
        .collect();
    assert_eq!(lines.len(), want.len());
    for (l, ((_, k), v)) in lines.iter().zip(want) {
        assert_eq!(l["key"].as_str().unwrap(), k);
        assert_eq!(l["value"].as_str().unwrap(), v);
    }

    // Disaster: every node is lost.
    let digest = second["state_digest"].as_str().unwrap().to_owned();
    for id in 1..=3 {
        c.kill9(id).unwrap();
        std::fs::remove_dir_all(&c.nodes[&id].data_dir).unwrap();
    }
    let mut c2 = cluster("backup-restored", FAST);
    let n1 = {
        let n = c2.add(1).unwrap();
        (n.grpc.clone(), n.http.clone(), n.data_dir.display().to_string())
    };
    let restored = json(
        &[
            &[
                "restore",
                "cluster",
                "--snapshot",
                "latest",
                "--data-dir",
                &n1.2,
                "--id",
                "1",
                "--listen",
                &n1.0,
            ][..],
            &r,
        ]
        .concat(),
    );
    assert_eq!(restored["state_digest"].as_str().unwrap(), digest);
    c2.start(1).unwrap();
    c2.wait_leader(None, T).await.unwrap();
    let client2 = c2.client().unwrap();
    for ((db, k), v) in &kv {
        let got = client2
            .get(db, k.as_bytes(), sen_client::Consistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(got.kv.unwrap().value, v.as_bytes(), "{db}/{k}");
    }
    // A node joining the restored cluster gets everything and serves it.
    c2.add(2).unwrap();
    c2.start(2).unwrap();
    let addr2 = c2.grpc(2).unwrap();
    c2.wait_serving(2, T).await.unwrap();
    client2.add_node(2, &addr2, false).await.unwrap();
    let applied = c2.highest_applied().await.unwrap();
    c2.wait_applied(2, applied, T).await.unwrap();
    let http2 = c2.web(2).unwrap();
    for (p, data) in &files {
        let resp = http2
            .request("GET", &format!("/sites/congbao/{}", url_path(p)), &[])
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{p}");
        assert_eq!(&resp.body, data, "{p}");
    }
    // The restored cluster takes writes and backups to the same repository.
    client2.put("portal", b"after", b"restore").await.unwrap();
    let eps2 = c2.endpoints().join(",");
    json(&[&["--endpoints", &eps2, "backup", "create"][..], &r].concat());
    let check = json(&[&["backup", "check"][..], &r].concat());
    assert_eq!(check["ok"], true, "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_repositories_are_reported_and_newer_formats_refused() {
    let mut c = cluster("backup-damage", FAST);
    c.form(1).await.unwrap();
    let eps = c.endpoints().join(",");
    let root = c.root().to_owned();
    let repo_dir = root.join("repo");
    let repo_url = format!("file://{}", repo_dir.display());
    let r = ["--repo", repo_url.as_str()];
    let tree = root.join("tree");
    let files = make_tree(&tree);
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "s"]).0, 0);
    assert_eq!(
        sen(&["--endpoints", &eps, "site", "push", "s", tree.to_str().unwrap()]).0,
        0
    );
    // An unencrypted repository only on purpose, and said in every listing.
    let (code, _, err) = sen(&[&["backup", "init"][..], &r].concat());
    assert_ne!(code, 0);
    assert!(
        err.contains("--password-file") && err.contains("--no-encryption"),
        "{err}"
    );
    assert!(!repo_dir.join("config").exists(), "nothing written");
    json(&[&["backup", "init", "--no-encryption"][..], &r].concat());
    json(&[&["--endpoints", &eps, "backup", "create"][..], &r].concat());
    let (code, out, _) = sen(&[&["backup", "list"][..], &r].concat());
    assert_eq!(code, 0);
    assert!(out.contains("NOT ENCRYPTED"), "{out}");
    assert_eq!(json(&[&["backup", "list"][..], &r].concat())["encrypted"], false);

    let mut packs = Vec::new();
    for d in std::fs::read_dir(repo_dir.join("data")).unwrap().flatten() {
        for p in std::fs::read_dir(d.path()).unwrap().flatten() {
            packs.push(p.path());
        }
    }
    // Largest first: the site's chunks fill the big packs; the cluster's
    // tables (whose size depends on timing: probes, audit records) may
    // fill one too.
    packs.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    // Damage in each pack in turn: check --read-data names the pack
    // (exit code 3), and a restore of the site either fails, saying what
    // is damaged, or — when the damaged blob is not one the site needs —
    // writes exactly the original files. Never wrong data.
    let mut damaged = None;
    for (i, pack) in packs.iter().enumerate() {
        let name = pack.file_name().unwrap().to_str().unwrap().to_owned();
        let original = std::fs::read(pack).unwrap();
        let mut b = original.clone();
        // One flipped bit every 512 bytes: whichever blobs the pack
        // holds (the order of site and table blobs in a pack depends on
        // timing), each one of more than 512 bytes is damaged.
        for at in (100.min(b.len() - 1)..b.len()).step_by(512) {
            b[at] ^= 1;
        }
        std::fs::write(pack, &b).unwrap();
        let (code, out, _) = sen(&[&["--output", "json", "backup", "check", "--read-data"][..], &r].concat());
        assert_eq!(code, 3, "{out}");
        assert!(out.contains(&name), "{out}");
        let to = root.join(format!("x{i}"));
        let (code, _, err) = sen(&[&["restore", "site", "s", "--to", to.to_str().unwrap()][..], &r].concat());
        if code != 0 {
            assert!(err.contains("damaged") || err.contains("does not match"), "{err}");
            damaged = Some((pack.clone(), name, b));
            break;
        }
        assert_eq!(
            read_tree(&to),
            files,
            "a restore past damage in {name} must write the original files"
        );
        std::fs::write(pack, &original).unwrap();
    }
    let (victim, name, b) = damaged.expect("damage in a pack the site needs stops its restore");
    // Truncated: found without reading data.
    std::fs::write(&victim, &b[..b.len() / 2]).unwrap();
    let (code, out, _) = sen(&[&["backup", "check"][..], &r].concat());
    assert_eq!(code, 3);
    assert!(out.contains(&name) && out.contains("truncated"), "{out}");
    // Missing.
    std::fs::remove_file(&victim).unwrap();
    let (code, out, _) = sen(&[&["backup", "check"][..], &r].concat());
    assert_eq!(code, 3);
    assert!(out.contains(&name) && out.contains("missing"), "{out}");

    // A repository written by a newer Sen is refused, clearly.
    let cfg = repo_dir.join("config");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"version\": 1", "\"version\": 7")).unwrap();
    let (code, _, err) = sen(&[&["backup", "list"][..], &r].concat());
    assert_ne!(code, 0);
    assert!(err.contains("version 7") && err.contains("upgrade Sen"), "{err}");
    // Bad URLs say what to use.
    let (code, _, err) = sen(&["backup", "list", "--repo", "/tmp/x"]);
    assert_ne!(code, 0);
    assert!(err.contains("file:///"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_run_once_per_slot_across_a_failover() {
    let config = format!("{FAST}[backup]\ncheck-interval = \"200ms\"\n");
    let mut c = cluster("backup-schedule", &config);
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    let root = c.root().to_owned();
    let repo_url = format!("file://{}", root.join("repo").display());
    let client = c.client().unwrap();
    client.put("portal", b"k", b"v").await.unwrap();
    json(&["backup", "init", "--no-encryption", "--repo", &repo_url]);
    json(&[
        "--endpoints",
        &eps,
        "backup",
        "schedule",
        "set",
        "--repo",
        &repo_url,
        "--every",
        "2s",
        "--keep-last",
        "100",
    ]);
    let show = json(&["--endpoints", &eps, "backup", "schedule", "show"]);
    assert_eq!(show["schedule"]["every_ms"], 2000);

    let succeeded = |eps: String| async move {
        let runs = json(&["--endpoints", &eps, "backup", "list", "--runs"]);
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "succeeded")
            .count()
    };
    sen_chaos::wait_for("3 scheduled runs", T, || {
        let eps = eps.clone();
        async move { Ok((succeeded(eps).await >= 3).then_some(())) }
    })
    .await
    .unwrap();
    // Fail over: the new leader carries on with the next slots.
    let leader = c.wait_leader(None, T).await.unwrap();
    c.kill9(leader).unwrap();
    let alive: Vec<String> = (1..=3).filter(|i| *i != leader).map(|i| c.grpc(i).unwrap()).collect();
    let eps2 = alive.join(",");
    let before = succeeded(eps2.clone()).await;
    sen_chaos::wait_for("2 more scheduled runs after the failover", T, || {
        let eps = eps2.clone();
        async move { Ok((succeeded(eps).await >= before + 2).then_some(())) }
    })
    .await
    .unwrap();
    json(&["--endpoints", &eps2, "backup", "schedule", "clear"]);

    // Every succeeded run names a snapshot in the repository, and no slot
    // has two snapshots.
    let runs = json(&["--endpoints", &eps2, "backup", "list", "--runs"]);
    let list = json(&["backup", "list", "--repo", &repo_url]);
    let snaps = list["snapshots"].as_array().unwrap();
    let mut slots = std::collections::BTreeMap::new();
    for s in snaps {
        let tag = s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|t| t.as_str().filter(|t| t.starts_with("slot=")))
            .unwrap()
            .to_owned();
        *slots.entry(tag).or_insert(0) += 1;
    }
    assert!(slots.values().all(|n| *n == 1), "a slot was backed up twice: {slots:?}");
    for r in runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "succeeded")
    {
        let id = r["snapshot_id"].as_str().unwrap();
        assert!(
            snaps.iter().any(|s| s["snapshot_id"] == id),
            "run {r} names a missing snapshot"
        );
        assert_ne!(r["node"], r["leader"], "taken on a follower: {r}");
    }
    let check = json(&["backup", "check", "--repo", &repo_url]);
    assert_eq!(check["ok"], true, "{check}");

    // Each run records the repository's size afterwards: it never shrinks
    // (nothing is pruned here), and the last one is what the repository's
    // directory holds, give or take the few-KB index and snapshot objects
    // of earlier runs it does not count.
    let mut ok: Vec<&serde_json::Value> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "succeeded")
        .collect();
    ok.sort_by_key(|r| r["ended_ms"].as_u64());
    let sizes: Vec<u64> = ok.iter().map(|r| r["repo_bytes"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]) && sizes[0] > 0, "{sizes:?}");
    fn du(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                if m.is_dir() { du(&e.path()) } else { m.len() }
            })
            .sum()
    }
    let on_disk = du(&root.join("repo"));
    let last = *sizes.last().unwrap();
    assert!(
        last <= on_disk && on_disk - last < 64 * 1024 * ok.len() as u64,
        "recorded {last}, on disk {on_disk}"
    );
    // A local repository's file system reports its space with each run
    // (the growth report's forecast of when it fills).
    let newest = ok.last().unwrap();
    let (free, total) = (
        newest["repo_free_bytes"].as_u64().unwrap(),
        newest["repo_total_bytes"].as_u64().unwrap(),
    );
    assert!(free > 0 && free <= total, "{newest}");
}

/// The same round trip against a real S3 server (SeaweedFS, started here):
/// nodes and CLI get the endpoint and credentials from the standard AWS
/// environment variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_s3_and_restore_the_cluster_from_it() {
    let s3 = sen_backup_s3::testing::SeaweedFs::start().await;
    s3.store("s3://sen-backups").await; // creates the bucket
    let env = s3_env(&s3);
    let js = |args: &[&str]| json_env(args, &env);

    let mut c = cluster("backup-s3", FAST);
    for id in 1..=3 {
        c.add(id).unwrap();
        c.set_env(id, env.clone()).unwrap();
    }
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    let root = c.root().to_owned();
    let tree = root.join("tree");
    let files = make_tree(&tree);
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "vanban"]).0, 0);
    assert_eq!(
        sen(&["--endpoints", &eps, "site", "push", "vanban", tree.to_str().unwrap()]).0,
        0
    );
    let client = c.client().unwrap();
    for i in 0..100u32 {
        client
            .put(
                "chidao",
                format!("vb-{i:03}").as_bytes(),
                format!("Chỉ thị số {i}").as_bytes(),
            )
            .await
            .unwrap();
    }
    let pw = root.join("pw");
    std::fs::write(&pw, "s3 mật khẩu\n").unwrap();
    let r = [
        "--repo",
        "s3://sen-backups/dongthap",
        "--password-file",
        pw.to_str().unwrap(),
    ];

    js(&[&["backup", "init"][..], &r].concat());
    let first = js(&[&["--endpoints", &eps, "backup", "create"][..], &r].concat());
    client.put("chidao", b"vb-new", b"moi").await.unwrap();
    let second = js(&[&["--endpoints", &eps, "backup", "create"][..], &r].concat());
    assert!(
        second["bytes_new"].as_u64().unwrap() * 10 < first["bytes_new"].as_u64().unwrap(),
        "{second}"
    );
    let check = js(&[&["backup", "check", "--read-data"][..], &r].concat());
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["packs_read"].as_u64().unwrap() >= 1);
    let out = root.join("restored");
    js(&[&["restore", "site", "vanban", "--to", out.to_str().unwrap()][..], &r].concat());
    assert_eq!(read_tree(&out), files);

    // Lose the cluster; bring it back from S3.
    for id in 1..=3 {
        c.kill9(id).unwrap();
    }
    let mut c2 = cluster("backup-s3-restored", FAST);
    let (grpc, data_dir) = {
        let n = c2.add(1).unwrap();
        (n.grpc.clone(), n.data_dir.display().to_string())
    };
    let restored = js(&[
        &[
            "restore",
            "cluster",
            "--data-dir",
            &data_dir,
            "--id",
            "1",
            "--listen",
            &grpc,
        ][..],
        &r,
    ]
    .concat());
    assert_eq!(restored["state_digest"], second["state_digest"]);
    c2.start(1).unwrap();
    c2.wait_leader(None, T).await.unwrap();
    let client2 = c2.client().unwrap();
    let got = client2
        .get("chidao", b"vb-new", sen_client::Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(got.kv.unwrap().value, b"moi");
    let http = c2.web(1).unwrap();
    let resp = http
        .request(
            "GET",
            &format!("/sites/vanban/{}", url_path("Công báo/trang 3.html")),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(resp.body, files["Công báo/trang 3.html"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_deletions_into_the_live_cluster_and_drill_a_restore() {
    let mut c = cluster("backup-undo", FAST);
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    let root = c.root().to_owned();
    let repo_url = format!("file://{}", root.join("repo").display());
    let r = ["--endpoints", eps.as_str(), "--repo", repo_url.as_str()];
    let tree = root.join("tree");
    let files = make_tree(&tree);
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "lich"]).0, 0);
    assert_eq!(
        sen(&["--endpoints", &eps, "site", "push", "lich", tree.to_str().unwrap()]).0,
        0
    );
    let client = c.client().unwrap();
    for i in 0..50u32 {
        client
            .put(
                "lichtuan",
                format!("2026-w{i:02}").as_bytes(),
                format!("tuần {i}").as_bytes(),
            )
            .await
            .unwrap();
    }
    json(&[&["backup", "init", "--no-encryption"][..], &r].concat());
    json(&[&["backup", "create"][..], &r].concat());

    // Accidents: a directory deleted, a file replaced, keys deleted and changed.
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "rm", "lich", "Văn bản chỉ đạo"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(tree.join("index.html"), b"<h1>defaced</h1>").unwrap();
    std::fs::remove_dir_all(tree.join("Văn bản chỉ đạo")).unwrap();
    assert_eq!(
        sen(&[
            "--endpoints",
            &eps,
            "site",
            "push",
            "lich",
            tree.to_str().unwrap(),
            "--delete"
        ])
        .0,
        0
    );
    client.delete("lichtuan", b"2026-w07").await.unwrap();
    client.put("lichtuan", b"2026-w08", b"sai").await.unwrap();
    client.put("lichtuan", b"2026-w99", b"moi them").await.unwrap();
    client.put("other", b"2026-w01", b"untouched").await.unwrap();

    // Dry runs list exactly the changes and change nothing.
    let dry = json(
        &[
            &[
                "restore",
                "site",
                "lich",
                "--path",
                "Văn bản chỉ đạo",
                "--into-cluster",
                "--dry-run",
            ][..],
            &r,
        ]
        .concat(),
    );
    assert_eq!(dry["changes"].as_array().unwrap().len(), 40, "{dry}");
    assert!(dry["changes"].as_array().unwrap().iter().all(|c| c["change"] == "add"));
    let dry = json(
        &[
            &[
                "restore",
                "db",
                "lichtuan",
                "--prefix",
                "2026-w",
                "--into-cluster",
                "--dry-run",
            ][..],
            &r,
        ]
        .concat(),
    );
    let kinds: Vec<String> = dry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["change"].as_str().unwrap(), c["key"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, ["delete 2026-w99", "add 2026-w07", "reset 2026-w08"], "{dry}");
    assert_eq!(
        client
            .get("lichtuan", b"2026-w99", sen_client::Consistency::Linearizable)
            .await
            .unwrap()
            .kv
            .unwrap()
            .value,
        b"moi them"
    );

    // Into the cluster: the directory comes back in one deployment; the
    // defaced index.html (outside --path) stays as it is now.
    let done = json(
        &[
            &["restore", "site", "lich", "--path", "Văn bản chỉ đạo", "--into-cluster"][..],
            &r,
        ]
        .concat(),
    );
    assert!(done["deployment"].as_u64().is_some(), "{done}");
    let http = c.web(2).unwrap();
    c.wait_applied(2, done["deployment"].as_u64().unwrap(), T)
        .await
        .unwrap();
    for (p, data) in files.iter().filter(|(p, _)| p.starts_with("Văn bản chỉ đạo/")) {
        let resp = http
            .request("GET", &format!("/sites/lich/{}", url_path(p)), &[])
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{p}");
        assert_eq!(&resp.body, data, "{p}");
    }
    let idx = http.request("GET", "/sites/lich/index.html", &[]).await.unwrap();
    assert_eq!(idx.body, b"<h1>defaced</h1>");
    json(
        &[
            &["restore", "db", "lichtuan", "--prefix", "2026-w", "--into-cluster"][..],
            &r,
        ]
        .concat(),
    );
    for i in 0..50u32 {
        let k = format!("2026-w{i:02}");
        let got = client
            .get("lichtuan", k.as_bytes(), sen_client::Consistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(got.kv.unwrap().value, format!("tuần {i}").as_bytes(), "{k}");
    }
    let gone = client
        .get("lichtuan", b"2026-w99", sen_client::Consistency::Linearizable)
        .await;
    assert!(
        gone.map_or(true, |r| r.kv.is_none()),
        "a key added after the snapshot is deleted"
    );
    assert_eq!(
        client
            .get("other", b"2026-w01", sen_client::Consistency::Linearizable)
            .await
            .unwrap()
            .kv
            .unwrap()
            .value,
        b"untouched"
    );

    // The restore drill: a fresh backup restored to scratch equals the live state.
    let drill = json(&[&["drill", "restore", "--fresh"][..], &r].concat());
    assert_eq!(drill["passed"], true, "{drill}");
    assert_eq!(drill["equal"], true, "{drill}");
    assert!(drill["bytes"].as_u64().unwrap() > 1_000_000, "{drill}");
    // With the cluster idle, the nodes sit at the snapshot's index: a
    // direct comparison with live nodes is part of the report.
    let again = json(&[&["drill", "restore"][..], &r].concat());
    assert_eq!(again["passed"], true, "{again}");

    // Both drills and a check are recorded in the cluster, and the monthly
    // report says the backups were proven restorable.
    assert_eq!(
        (drill["recorded"].clone(), again["recorded"].clone()),
        (true.into(), true.into())
    );
    let check = json(&[&["backup", "check", "--read-data=50"][..], &r].concat());
    assert_eq!(check["recorded"], true, "{check}");
    let quiet = json(&[&["backup", "check", "--no-record"][..], &r].concat());
    assert!(quiet.get("recorded").is_none(), "{quiet}");
    // No cluster at that address: the check still passes and says the
    // result was not recorded.
    let (code, out, err) = sen(&[
        "--endpoints",
        "127.0.0.1:9",
        "--timeout",
        "3s",
        "--output",
        "json",
        "backup",
        "check",
        "--repo",
        &repo_url,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not recorded in the cluster"), "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["recorded"],
        false
    );
    let month = &sen_core::time::utc_day(sen_core::now_ms() + 7 * 3_600_000)[..7];
    let (code, out, err) = sen(&[
        "--endpoints",
        &eps,
        "report",
        "monthly",
        "--month",
        month,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = &m["backups"];
    assert_eq!(
        (b["restore_drills"].as_u64(), b["restore_drills_passed"].as_u64()),
        (Some(2), Some(2)),
        "{b}"
    );
    assert_eq!(
        (b["checks"].as_u64(), b["checks_passed"].as_u64()),
        (Some(1), Some(1)),
        "{b}"
    );
    assert!(b["last_restore_passed_ms"].as_u64().is_some(), "{b}");
    let v = &b["verifications"].as_array().unwrap()[2];
    assert_eq!(
        (v["kind"].as_str(), v["read_data_percent"].as_u64()),
        (Some("check"), Some(50)),
        "{b}"
    );
    let (code, md, err) = sen(&[
        "--endpoints",
        &eps,
        "report",
        "monthly",
        "--month",
        month,
        "--lang",
        "en",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        md.contains("- Restore drills (`sen drill restore`): 2 (passed: 2)"),
        "{md}"
    );
}

/// kill -9 the node taking a backup, and the CLI running a prune, at
/// whatever point they have reached: `check` accepts the repository, the
/// earlier snapshots restore, and running the command again completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_backup_and_during_prune() {
    let mut c = cluster("backup-kill", FAST);
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    let root = c.root().to_owned();
    let repo_url = format!("file://{}", root.join("repo").display());
    let r = ["--repo", repo_url.as_str()];
    let tree = root.join("tree");
    let mut files = make_tree(&tree);
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "s"]).0, 0);
    assert_eq!(
        sen(&["--endpoints", &eps, "site", "push", "s", tree.to_str().unwrap()]).0,
        0
    );
    json(&[&["backup", "init", "--no-encryption"][..], &r].concat());
    let first = json(&[&["--endpoints", &eps, "backup", "create", "--node", "2"][..], &r].concat());

    // New content (so the next backup has something to upload), then kill
    // node 2 while it backs up, at a few different moments.
    for (round, delay_ms) in [5u64, 40, 150].into_iter().enumerate() {
        let name = format!("new-{round}.bin");
        let data = pseudo_random(3 * 1024 * 1024, 1000 + round as u64);
        std::fs::write(tree.join(&name), &data).unwrap();
        files.insert(name, data);
        assert_eq!(
            sen(&["--endpoints", &eps, "site", "push", "s", tree.to_str().unwrap()]).0,
            0
        );
        let applied = c.highest_applied().await.unwrap();
        c.wait_applied(2, applied, T).await.unwrap();
        let mut child = std::process::Command::new(SEN)
            .args([
                "--endpoints",
                &eps,
                "backup",
                "create",
                "--node",
                "2",
                "--repo",
                &repo_url,
            ])
            .envs(admin_env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        c.kill9(2).unwrap();
        let _ = child.wait();
        let check = json(&[&["backup", "check", "--read-data"][..], &r].concat());
        assert_eq!(check["ok"], true, "after kill at {delay_ms} ms: {check}");
        c.start(2).unwrap();
        c.wait_applied(2, applied, T).await.unwrap();
    }
    // The first snapshot restores; a new backup completes and restores all.
    let out = root.join("first");
    json(
        &[
            &[
                "restore",
                "site",
                "s",
                "--snapshot",
                &first["snapshot_id"].as_str().unwrap()[..8],
                "--to",
                out.to_str().unwrap(),
            ][..],
            &r,
        ]
        .concat(),
    );
    assert_eq!(read_tree(&out).len(), files.len() - 3);
    json(&[&["--endpoints", &eps, "backup", "create", "--node", "2"][..], &r].concat());
    let out = root.join("last");
    json(&[&["restore", "site", "s", "--to", out.to_str().unwrap()][..], &r].concat());
    assert_eq!(read_tree(&out), files);

    // Prune killed at a few moments (keep the last snapshot only).
    for delay_ms in [1u64, 20, 60] {
        let mut child = std::process::Command::new(SEN)
            .args([
                "backup",
                "prune",
                "--keep-last",
                "1",
                "--grace",
                "0s",
                "--repo",
                &repo_url,
            ])
            .envs(admin_env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let check = json(&[&["backup", "check", "--read-data"][..], &r].concat());
        assert_eq!(check["ok"], true, "after killing prune at {delay_ms} ms: {check}");
        let out = root.join(format!("after-prune-{delay_ms}"));
        json(&[&["restore", "site", "s", "--to", out.to_str().unwrap()][..], &r].concat());
        assert_eq!(read_tree(&out), files);
    }
    json(&[&["backup", "prune", "--keep-last", "1", "--grace", "0s"][..], &r].concat());
    json(&[&["backup", "prune", "--keep-last", "1", "--grace", "0s"][..], &r].concat());
    let list = json(&[&["backup", "list"][..], &r].concat());
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1);
    let check = json(&[&["backup", "check", "--read-data"][..], &r].concat());
    assert_eq!(check["ok"], true, "{check}");
}
