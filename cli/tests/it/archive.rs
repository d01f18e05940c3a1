//! The continuous archive of the log and point-in-time restores, against
//! real `sen` processes and a local-directory repository.

use std::time::{Duration, Instant};

use sen_store::StateDb;

use crate::common::*;

fn value_in(dir: &std::path::Path, db: &str, key: &str) -> Option<Vec<u8>> {
    let state = StateDb::open(dir, &Default::default()).unwrap();
    state.get(db, key.as_bytes()).unwrap().0.map(|r| r.value)
}

/// A formed 3-node cluster archiving to the local repository `repo` (under
/// the test's directory) every 200 ms, with the first backup taken (by
/// `archive enable`).
struct Archived {
    c: Cluster,
    eps: String,
    root: std::path::PathBuf,
    repo: String,
}

impl Archived {
    async fn start(name: &str, config: &str, extra: &[&str]) -> Self {
        let mut c = cluster(name, config);
        c.form(3).await.unwrap();
        let eps = c.endpoints().join(",");
        let root = c.root().to_owned();
        let repo = format!("file://{}", root.join("repo").display());
        json(&[
            "--endpoints",
            &eps,
            "backup",
            "init",
            "--no-encryption",
            "--repo",
            &repo,
        ]);
        let enable = [
            &[
                "--endpoints",
                &eps,
                "archive",
                "enable",
                "--repo",
                &repo,
                "--interval",
                "200ms",
            ][..],
            extra,
        ]
        .concat();
        json(&enable);
        Self { c, eps, root, repo }
    }
}

/// Writes acknowledged up to the moment every node is killed are in the
/// cluster restored from the archive (all but the last second's at most);
/// a restore to a chosen index has exactly the live cluster's digest there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lost_the_archive_brings_back_what_was_acknowledged() {
    let Archived { mut c, eps, root, repo } = Archived::start("archive-rpo", FAST, &[]).await;
    let r = ["--endpoints", eps.as_str(), "--repo", repo.as_str()];
    let client = c.client().unwrap();
    for i in 0..50u32 {
        client
            .put("lichtuan", format!("a{i:03}").as_bytes(), b"truoc")
            .await
            .unwrap();
    }

    // A chosen index: the restored state equals the live one there.
    let leader = c.wait_leader(None, T).await.unwrap();
    let d = client
        .digest_of(&c.grpc(leader).unwrap(), T, Default::default())
        .await
        .unwrap();
    sen_chaos::wait_for("the archive to pass the digest's index", T, || async {
        let s = json(&["--endpoints", &eps, "archive", "status"]);
        Ok((s["shipper"]["archived_index"].as_u64() >= Some(d.applied_index)).then_some(()))
    })
    .await
    .unwrap();
    let at_index = root.join("at-index");
    let out = json(
        &[
            &[
                "restore",
                "cluster",
                "--index",
                &d.applied_index.to_string(),
                "--data-dir",
                at_index.to_str().unwrap(),
                "--id",
                "1",
                "--listen",
                "127.0.0.1:7991",
            ][..],
            &r,
        ]
        .concat(),
    );
    assert_eq!(out["raft_index"], d.applied_index, "{out}");
    assert_eq!(out["state_digest"], d.digest, "replayed to {}: {out}", d.applied_index);

    // Writes until every node dies at once.
    let mut acked: Vec<(String, Instant)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let k = format!("b{:05}", acked.len());
        client.put("lichtuan", k.as_bytes(), b"sau").await.unwrap();
        acked.push((k, Instant::now()));
    }
    let killed = Instant::now();
    for id in 1..=3 {
        c.kill9(id).unwrap();
    }
    let latest = root.join("latest");
    let out = json(
        &[
            &[
                "restore",
                "cluster",
                "--at",
                "latest",
                "--data-dir",
                latest.to_str().unwrap(),
                "--id",
                "1",
                "--listen",
                "127.0.0.1:7992",
            ][..],
            &r,
        ]
        .concat(),
    );
    assert!(out["replayed_entries"].as_u64() > Some(0), "{out}");
    let mut lost = Vec::new();
    for (k, at) in &acked {
        if value_in(&latest, "lichtuan", k).is_none() {
            lost.push((k.clone(), killed.duration_since(*at)));
        }
    }
    let worst = lost.iter().map(|(_, d)| *d).max().unwrap_or_default();
    eprintln!(
        "{} of {} acknowledged writes were archived; the missing ones were acknowledged at most {worst:?} before the kill",
        acked.len() - lost.len(),
        acked.len()
    );
    assert!(
        lost.iter().all(|(_, d)| *d <= Duration::from_secs(1)),
        "writes acknowledged more than 1 s before the kill are missing: {lost:?}"
    );
    // Nothing was invented, and what was written before is there.
    assert_eq!(value_in(&latest, "lichtuan", "a049").as_deref(), Some(&b"truoc"[..]));
    assert!(value_in(&latest, "lichtuan", &format!("b{:05}", acked.len() + 1)).is_none());
}

/// The shipper is killed -9 again and again while clients write: each new
/// leader continues the archive with no gap and no overlap, and replaying
/// it gives the live cluster's exact state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_survives_its_shipper_being_killed() {
    let Archived { mut c, eps, root, repo } = Archived::start("archive-failover", FAST, &[]).await;
    let r = ["--endpoints", eps.as_str(), "--repo", repo.as_str()];

    let writer = {
        let client = c.client().unwrap();
        tokio::spawn(async move {
            let mut acked = 0u32;
            let mut revision = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(12) {
                if let Ok(r) = client
                    .put("congbao", format!("so-{acked:05}").as_bytes(), b"ban hanh")
                    .await
                {
                    acked += 1;
                    revision = revision.max(r.revision);
                }
            }
            (acked, revision)
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = c.wait_leader(None, T).await.unwrap();
        c.kill9(leader).unwrap();
        c.wait_leader(Some(leader), T).await.unwrap();
        c.start(leader).unwrap();
    }
    let (acked, last_revision) = writer.await.unwrap();
    assert!(acked > 20, "{acked} writes acknowledged");

    // The digest is of one node's applied state: take it once that node
    // has applied the last acknowledged write (the node the harness finds
    // leading may, just after the kills, not be the one that acknowledged
    // it, and may still be applying).
    let client = c.client().unwrap();
    let d = sen_chaos::wait_for("a digest that covers every acknowledged write", T, || async {
        let leader = c.wait_leader(None, T).await?;
        let d = client.digest_of(&c.grpc(leader)?, T, Default::default()).await?;
        Ok((d.applied_index >= last_revision).then_some(d))
    })
    .await
    .unwrap();
    sen_chaos::wait_for("the archive to pass the digest's index", T, || async {
        let s = json(&["--endpoints", &eps, "archive", "status"]);
        Ok((s["shipper"]["archived_index"].as_u64() >= Some(d.applied_index)).then_some(()))
    })
    .await
    .unwrap();
    // Several nodes shipped, one after the other (a restore checks every
    // link of the chain).
    let dir = root.join("repo");
    let rt = tokio::runtime::Handle::current();
    let shippers = tokio::task::spawn_blocking(move || {
        let store = std::sync::Arc::new(sen_backup::LocalStore::new(&dir).unwrap());
        let repo = sen_backup::Repo::open(store, rt, None).unwrap();
        let mut shippers = std::collections::BTreeSet::new();
        for s in sen_backup::archive::list_segments(&repo).unwrap() {
            shippers.insert(sen_backup::archive::read_segment(&repo, s.first).unwrap().0.shipper);
        }
        shippers
    })
    .await
    .unwrap();
    assert!(shippers.len() >= 2, "segments shipped by {shippers:?}");
    let dir = root.join("replayed");
    let out = json(
        &[
            &[
                "restore",
                "cluster",
                "--index",
                &d.applied_index.to_string(),
                "--data-dir",
                dir.to_str().unwrap(),
                "--id",
                "1",
                "--listen",
                "127.0.0.1:7993",
            ][..],
            &r,
        ]
        .concat(),
    );
    assert_eq!(out["state_digest"], d.digest, "{out}");
    for i in [0, acked / 2, acked - 1] {
        let k = format!("so-{i:05}");
        assert!(value_in(&dir, "congbao", &k).is_some(), "{k} of {acked}");
    }

    // Retention: a new snapshot, then prune keeping it only: the segments
    // before it go, check accepts the repository, and the latest point
    // still restores.
    json(&[&["backup", "create"][..], &r].concat());
    let before = json(&[&["backup", "check"][..], &r].concat());
    assert_eq!(before["ok"], true, "{before}");
    let pruned = json(&[&["backup", "prune", "--keep-last", "1"][..], &r].concat());
    assert!(pruned["segments_deleted"].as_u64() > Some(0), "{pruned}");
    let after = json(&[&["backup", "check"][..], &r].concat());
    assert_eq!(after["ok"], true, "{after}");
    assert!(
        after["archive_first"].as_u64() > before["archive_first"].as_u64(),
        "{after}"
    );
    let dir = root.join("after-prune");
    let out = json(
        &[
            &[
                "restore",
                "cluster",
                "--at",
                "latest",
                "--data-dir",
                dir.to_str().unwrap(),
                "--id",
                "1",
                "--listen",
                "127.0.0.1:7994",
            ][..],
            &r,
        ]
        .concat(),
    );
    assert!(out["raft_index"].as_u64() >= Some(d.applied_index), "{out}");
}

/// Undo mistakes to the second: a site deleted and 100 keys overwritten
/// at a recorded time come back from the state just before it, a dry run
/// lists exactly those changes, and nothing written elsewhere since is
/// touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_a_deleted_site_and_overwritten_keys_to_the_second() {
    let Archived { c, eps, root, repo } = Archived::start("archive-undo", FAST, &[]).await;
    let r = ["--endpoints", eps.as_str(), "--repo", repo.as_str()];

    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("Văn bản chỉ đạo")).unwrap();
    for i in 0..5 {
        std::fs::write(
            tree.join(format!("Văn bản chỉ đạo/so-{i}.html")),
            format!("<p>Chỉ thị số {i}</p>"),
        )
        .unwrap();
    }
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "vanban"]).0, 0);
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "push", "vanban", tree.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let client = c.client().unwrap();
    for i in 0..100u32 {
        client
            .put("lichtuan", format!("k{i:03}").as_bytes(), b"dung")
            .await
            .unwrap();
    }
    // The moment to go back to, with the archive past it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = sen_core::now_ms();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The pushed chunks went into the repository as blobs, listed by
    // reference, not copied into the segments.
    let lists = std::fs::read_dir(root.join("repo").join("archive-chunks"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        lists > 0,
        "no archive-chunks list: the pushed chunks were not stored by reference"
    );

    // The mistakes, then a write that must survive the undo.
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "delete", "vanban", "--yes"]);
    assert_eq!(code, 0, "{err}");
    for i in 0..100u32 {
        client
            .put("lichtuan", format!("k{i:03}").as_bytes(), b"sai")
            .await
            .unwrap();
    }
    client.put("lichtuan", b"k100", b"moi").await.unwrap();
    client.put("congbao", b"so-7", b"giu nguyen").await.unwrap();
    let at = jiff::Timestamp::from_millisecond(t as i64).unwrap().to_string();
    let leader = c.wait_leader(None, T).await.unwrap();
    let written = c.local_status(leader, T).await.unwrap().applied_index;
    sen_chaos::wait_for("the archive to pass the mistakes", T, || async {
        let s = json(&["--endpoints", &eps, "archive", "status"]);
        Ok((s["shipper"]["archived_index"].as_u64() >= Some(written)).then_some(()))
    })
    .await
    .unwrap();

    // What happened since T, from the archive alone: the site deleted,
    // then 101 writes to the database.
    let log = json(&[&["archive", "log", "--since", &at, "--db", "lichtuan"][..], &r].concat());
    let puts: Vec<&serde_json::Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "put")
        .collect();
    assert_eq!(puts.len(), 101, "{log}");
    assert!(puts[0]["detail"].as_str().unwrap().starts_with("k000"), "{log}");
    let log = json(&[&["archive", "log", "--since", &at, "--site", "vanban"][..], &r].concat());
    assert_eq!(log["events"][0]["kind"], "delete-site", "{log}");

    // The database: a dry run lists the 100 resets (and the added key
    // under the same prefix), then the undo.
    let dry = json(
        &[
            &[
                "restore",
                "db",
                "lichtuan",
                "--prefix",
                "k",
                "--at",
                &at,
                "--into-cluster",
                "--dry-run",
            ][..],
            &r,
        ]
        .concat(),
    );
    let changes: Vec<String> = dry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["change"].as_str().unwrap(), c["key"].as_str().unwrap()))
        .collect();
    assert_eq!(changes.len(), 101, "{dry}");
    assert_eq!(changes[0], "delete k100");
    assert!(changes[1..].iter().all(|c| c.starts_with("reset k")), "{changes:?}");
    json(
        &[
            &[
                "restore",
                "db",
                "lichtuan",
                "--prefix",
                "k",
                "--at",
                &at,
                "--into-cluster",
            ][..],
            &r,
        ]
        .concat(),
    );
    for i in [0u32, 42, 99] {
        let got = client
            .get(
                "lichtuan",
                format!("k{i:03}").as_bytes(),
                sen_client::Consistency::Linearizable,
            )
            .await
            .unwrap();
        assert_eq!(got.kv.unwrap().value, b"dung");
    }

    // The site: created again empty, then its files come back as they
    // were at T.
    assert_eq!(sen(&["--endpoints", &eps, "site", "create", "vanban"]).0, 0);
    let dry = json(
        &[
            &["restore", "site", "vanban", "--at", &at, "--into-cluster", "--dry-run"][..],
            &r,
        ]
        .concat(),
    );
    assert_eq!(dry["changes"].as_array().unwrap().len(), 5, "{dry}");
    let done = json(&[&["restore", "site", "vanban", "--at", &at, "--into-cluster"][..], &r].concat());
    assert!(done["deployment"].as_u64().is_some(), "{done}");
    let pulled = root.join("pulled");
    let (code, _, err) = sen(&["--endpoints", &eps, "site", "pull", "vanban", pulled.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for i in 0..5 {
        let p = format!("Văn bản chỉ đạo/so-{i}.html");
        assert_eq!(
            std::fs::read(pulled.join(&p)).unwrap(),
            std::fs::read(tree.join(&p)).unwrap(),
            "{p}"
        );
    }
    // The same point, written to local files instead.
    let out = root.join("lichtuan.jsonl");
    json(
        &[
            &["restore", "db", "lichtuan", "--at", &at, "--to", out.to_str().unwrap()][..],
            &r,
        ]
        .concat(),
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 100);
    // Untouched by the undo.
    let kept = client
        .get("congbao", b"so-7", sen_client::Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(kept.kv.unwrap().value, b"giu nguyen");
}

/// Over S3 (SeaweedFS): the repository stops answering for 30 s while
/// clients write and Raft snapshots would purge the logs; the archive
/// falls behind, the logs keep what it has not shipped, it catches up, and
/// after every node is lost the restore has every acknowledged write
/// (bar the last second's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_s3_the_archive_waits_out_an_unreachable_repository() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let s3 = sen_backup_s3::testing::SeaweedFs::start().await;
    s3.store("s3://sen-backups").await;
    let env = s3_env(&s3);
    let js = |args: &[&str]| json_env(args, &env);
    // Snapshots (and so log purges) every 100 entries.
    let config = format!("{FAST}snapshot-after-entries = 100\nkeep-entries-after-snapshot = 10\n");
    let mut c = cluster("archive-s3", &config);
    for id in 1..=3 {
        c.add(id).unwrap();
        c.set_env(id, env.clone()).unwrap();
    }
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    let root = c.root().to_owned();
    let repo = "s3://sen-backups/pitr";
    let r = ["--endpoints", eps.as_str(), "--repo", repo];
    js(&[&["backup", "init", "--no-encryption"][..], &r].concat());
    js(&[
        "--endpoints",
        &eps,
        "archive",
        "enable",
        "--repo",
        repo,
        "--interval",
        "300ms",
    ]);
    js(&[&["backup", "create"][..], &r].concat());

    let client = c.client().unwrap();
    let writer = tokio::spawn(async move {
        let mut acked: Vec<(String, Instant)> = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(40) {
            let k = format!("w{:05}", acked.len());
            if client.put("lichtuan", k.as_bytes(), b"ghi").await.is_ok() {
                acked.push((k, Instant::now()));
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let weed = Pid::from_raw(s3.pid() as i32);
    kill(weed, Signal::SIGSTOP).unwrap();
    let lagging = sen_chaos::wait_for("the archive to fall behind", T, || async {
        let s = json_status(&eps);
        Ok((s["shipper"]["lag_ms"].as_u64() > Some(10_000)).then_some(s))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    kill(weed, Signal::SIGCONT).unwrap();
    let lagging = lagging.unwrap();
    assert!(lagging["shipper"]["lag_entries"].as_u64() > Some(100), "{lagging}");
    let acked = writer.await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let written = c.local_status(leader, T).await.unwrap().applied_index;
    sen_chaos::wait_for("the archive to catch up", T, || async {
        let s = json_status(&eps);
        Ok((s["shipper"]["archived_index"].as_u64() >= Some(written)).then_some(()))
    })
    .await
    .unwrap();
    let killed = Instant::now();
    for id in 1..=3 {
        c.kill9(id).unwrap();
    }
    let check = js(&[&["backup", "check"][..], &r].concat());
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["archive_notes"].as_array().unwrap().is_empty(),
        "a restart of the chain: {check}"
    );
    let dir = root.join("restored");
    let out = js(&[
        &[
            "restore",
            "cluster",
            "--at",
            "latest",
            "--data-dir",
            dir.to_str().unwrap(),
            "--id",
            "1",
            "--listen",
            "127.0.0.1:7995",
        ][..],
        &r,
    ]
    .concat());
    assert!(out["raft_index"].as_u64() >= Some(written), "{out}");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > Duration::from_secs(1))
        .map(|(k, _)| k)
        .filter(|k| value_in(&dir, "lichtuan", k).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} writes missing: {missing:?}",
        missing.len(),
        acked.len()
    );
}

fn json_status(eps: &str) -> serde_json::Value {
    json(&["--endpoints", eps, "archive", "status"])
}

/// The archive falls more than `--max-lag` entries behind (its directory
/// cannot be written): every node purges its log anyway, the leader opens
/// one serious incident, the shipper backs off instead of hammering the
/// repository, and once the repository is back the archive restarts after
/// a gap that `backup check` names, and the incident is closed. `archive
/// status` shows each node's shipper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falling_past_max_lag_opens_a_serious_incident_and_closes_it() {
    let config = format!("{FAST}snapshot-after-entries = 100\nkeep-entries-after-snapshot = 10\n");
    let Archived { c, eps, root, repo } = Archived::start("archive-max-lag", &config, &["--max-lag", "1000"]).await;
    let dir = root.join("repo");
    let r = ["--endpoints", eps.as_str(), "--repo", repo.as_str()];
    // Every node's shipper, once each has looked at the new setting (a
    // node looks every 2 s while the archive is off).
    let states = |s: &serde_json::Value| -> Vec<String> {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["state"].as_str().unwrap().to_owned())
            .collect()
    };
    let s = sen_chaos::wait_for("every node to see the archive on", T, || async {
        let s = json_status(&eps);
        Ok((!states(&s).iter().any(|st| st == "off")).then_some(s))
    })
    .await
    .unwrap();
    let states = states(&s);
    assert_eq!(states.len(), 3, "{s}");
    assert_eq!(states.iter().filter(|s| *s == "shipping").count(), 1, "{s}");
    assert_eq!(states.iter().filter(|s| *s == "standby").count(), 2, "{s}");

    // The archive directory becomes a file: no segment can be stored.
    std::fs::rename(dir.join("archive"), dir.join("archive.away")).unwrap();
    std::fs::write(dir.join("archive"), b"in the way").unwrap();
    let client = c.client().unwrap();
    for i in 0..1300u32 {
        client
            .put("lichtuan", format!("k{i:05}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    let open = |incidents: &serde_json::Value| -> Vec<serde_json::Value> {
        incidents
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == "archive-behind")
            .cloned()
            .collect()
    };
    let behind = sen_chaos::wait_for("a serious archive-behind incident", T, || async {
        let all = json(&["--endpoints", &eps, "incident", "list"]);
        let found = open(&all);
        Ok((!found.is_empty()).then_some(found))
    })
    .await
    .unwrap();
    assert_eq!(behind.len(), 1, "{behind:?}");
    assert_eq!(behind[0]["severity"], "serious", "{behind:?}");
    assert!(behind[0]["end_ms"].is_null(), "{behind:?}");
    let s = json_status(&eps);
    assert_eq!(s["shipper"]["state"], "failing", "{s}");
    assert!(s["shipper"]["lag_entries"].as_u64() > Some(1000), "{s}");

    // The repository is back: the archive restarts after the gap and the
    // incident closes.
    std::fs::remove_file(dir.join("archive")).unwrap();
    std::fs::rename(dir.join("archive.away"), dir.join("archive")).unwrap();
    let written = c.highest_applied().await.unwrap();
    let closed = sen_chaos::wait_for("the incident to close", Duration::from_secs(60), || async {
        let all = json(&["--endpoints", &eps, "incident", "list"]);
        let found = open(&all);
        Ok(found.iter().all(|i| !i["end_ms"].is_null()).then_some(found))
    })
    .await
    .unwrap();
    assert_eq!(closed.len(), 1, "one episode, one incident: {closed:?}");
    let s = json_status(&eps);
    assert!(s["shipper"]["archived_index"].as_u64() >= Some(written), "{s}");
    // `backup check` names the gap until a backup starts after it.
    let (code, out, err) = sen_env(&[&["backup", "check"][..], &r].concat(), &[]);
    assert_ne!(code, 0, "a gap with no snapshot after it passed the check: {out}");
    assert!(
        format!("{out}{err}").contains("cannot replay across index"),
        "{out}{err}"
    );
    json(&[&["backup", "create"][..], &r].concat());
    let check = json(&[&["backup", "check"][..], &r].concat());
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        !check["archive_notes"].as_array().unwrap().is_empty(),
        "the gap is not named: {check}"
    );
}

/// `[archive]` in the nodes' configuration (here through `SEN_ARCHIVE__*`
/// variables) turns the archive on in a new cluster; `sen archive
/// disable` is a setting of its own, so restarting every node with the
/// same configuration leaves it off, and `status` says who turned it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_declared_in_the_configuration_starts_and_disable_wins() {
    let mut c = cluster("archive-declared", FAST);
    let root = c.root().to_owned();
    let repo = format!("file://{}", root.join("repo").display());
    json(&["backup", "init", "--no-encryption", "--repo", &repo]);
    let env = vec![
        ("SEN_ARCHIVE__REPO".to_string(), repo.clone()),
        ("SEN_ARCHIVE__INTERVAL".to_string(), "200ms".to_string()),
    ];
    for id in 1..=3 {
        c.add(id).unwrap();
        c.set_env(id, env.clone()).unwrap();
    }
    c.form(3).await.unwrap();
    let eps = c.endpoints().join(",");
    let s = sen_chaos::wait_for("the declared archive to ship", T, || async {
        let s = json_status(&eps);
        Ok((s["shipper"]["archived_index"].as_u64() > Some(0)).then_some(s))
    })
    .await
    .unwrap();
    assert_eq!(s["enabled"], true, "{s}");
    assert_eq!(s["config"]["interval_ms"], 200, "{s}");
    assert!(
        s["config"]["enabled_by"].as_str().unwrap().contains("configuration"),
        "{s}"
    );

    json(&["--endpoints", &eps, "archive", "disable"]);
    for id in 1..=3 {
        c.kill9(id).unwrap();
    }
    for id in 1..=3 {
        c.start(id).unwrap();
    }
    c.wait_leader(None, T).await.unwrap();
    // Several turns of every node's archive loop (every 2 s while off).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = json_status(&eps);
    assert_eq!(s["enabled"], false, "{s}");
    assert_eq!(s["shipper"]["state"], "off", "{s}");
    assert!(s["config"]["enabled_by"].as_str().unwrap().contains("admin"), "{s}");
}
