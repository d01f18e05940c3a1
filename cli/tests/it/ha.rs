//! Failover you can trust: switchover, drain, drills, fenced hooks,
//! incidents and quorum-loss recovery, on real `sen` processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sen_client::Consistency;
use serde_json::Value;

use crate::common::*;

/// Cut node `id` off from its peers for `ms` (a drill fault, in the node).
async fn isolate(c: &sen_chaos::ProcessCluster, id: u64, ms: u64, drill: &str) {
    c.client()
        .unwrap()
        .inject_fault(
            &c.grpc(id).unwrap(),
            sen_proto::v1::InjectFaultRequest {
                fault: "isolate".into(),
                duration_ms: ms,
                drill_id: drill.into(),
            },
        )
        .await
        .unwrap();
}

fn env(c: &sen_chaos::ProcessCluster) -> Vec<(String, String)> {
    vec![("SEN_ENDPOINTS".into(), c.endpoints().join(","))]
}

/// Run `sen ARGS --output json` against `c`; panics unless it exits 0.
fn sen_json(c: &sen_chaos::ProcessCluster, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--output", "json"]);
    let (code, out, err) = sen_env(&a, &env(c));
    assert_eq!(code, 0, "sen {args:?} failed: {err}\n{out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("sen {args:?}: not JSON ({e}): {out}"))
}

/// A writer that puts continuously through the CLI's client (with its
/// retries) and counts acknowledged and failed writes.
struct Writer {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

fn writer(c: &sen_chaos::ProcessCluster, prefix: &str) -> Writer {
    let client = c.client().unwrap();
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let (s, o, f, prefix) = (stop.clone(), ok.clone(), failed.clone(), prefix.to_owned());
    let task = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut i = 0u64;
        // A steady rate of ~200 writes/s, whoever leads.
        let mut rate = tokio::time::interval(Duration::from_millis(5));
        rate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !s.load(Ordering::Relaxed) {
            rate.tick().await;
            let k = format!("{prefix}{i:06}");
            match client.put("portal", k.as_bytes(), b"v").await {
                Ok(_) => {
                    o.fetch_add(1, Ordering::Relaxed);
                    acked.push(k);
                }
                Err(e) => {
                    eprintln!("write {k} failed: {e}");
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
            i += 1;
        }
        acked
    });
    Writer { stop, ok, failed, task }
}

impl Writer {
    /// Wait until `n` more writes than now are acknowledged (the writer is
    /// making progress through whoever leads).
    async fn progress(&self, n: u64) {
        let from = self.ok.load(Ordering::Relaxed);
        sen_chaos::wait_for("the writer to make progress", T, || async {
            Ok((self.ok.load(Ordering::Relaxed) >= from + n).then_some(()))
        })
        .await
        .unwrap();
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let acked = self.task.await.unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            acked,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_and_drain_lose_no_client_request() {
    let mut c = cluster("switchover", FAST);
    c.form(3).await.unwrap();
    let w = writer(&c, "sw");
    w.progress(5).await;

    // Three switchovers to the best voter, then one to a named node.
    let mut leader = c.wait_leader(None, T).await.unwrap();
    for _ in 0..3 {
        let r = sen_json(&c, &["cluster", "transfer-leader"]);
        assert_eq!(r["from"], leader);
        assert_ne!(r["to"], leader);
        leader = r["to"].as_u64().unwrap();
        w.progress(3).await;
    }
    let named = (1..=3).find(|i| *i != leader).unwrap();
    let r = sen_json(&c, &["cluster", "transfer-leader", "--to", &named.to_string()]);
    assert_eq!(r["to"], named);
    leader = named;

    // Drain the leader: leadership moves away and the node stays a
    // follower, even when asked to take over.
    let r = sen_json(&c, &["node", "drain", &leader.to_string()]);
    assert_ne!(r["leader_id"], leader);
    assert_eq!(r["drained"], serde_json::json!([leader]));
    let drained = leader;
    let (code, _, err) = sen_env(&["cluster", "transfer-leader", "--to", &drained.to_string()], &env(&c));
    assert_ne!(code, 0);
    assert!(err.contains("drained"), "{err}");
    let s = sen_json(&c, &["cluster", "status"]);
    let m = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == drained)
        .unwrap()
        .clone();
    assert_eq!(m["drained"], true);
    // With one node drained, killing the leader still elects a leader: the
    // third node, or, when the drained node holds the only log complete
    // enough to win (Raft's up-to-date rule), the drained node for as long
    // as it takes the third to catch up. Once the killed node is back,
    // leadership ends up away from the drained node.
    let current = c.wait_leader(None, T).await.unwrap();
    c.kill9(current).unwrap();
    c.wait_leader(Some(current), T).await.unwrap();
    c.start(current).unwrap();
    let client = c.client().unwrap();
    sen_chaos::wait_for("leadership away from the drained node", T, || async {
        let s = client.status().await?;
        Ok((s.leader_id != 0 && s.leader_id != drained).then_some(()))
    })
    .await
    .unwrap();
    // Draining every voter that could lead is refused: with `drained`
    // drained, one of the other two can still be drained (the third may
    // lead), then the third cannot — whoever leads at that moment, even a
    // leader elected a moment ago (it must first apply what was committed
    // before its term).
    let (first, last) = {
        let mut rest = (1..=3).filter(|i| *i != drained);
        (rest.next().unwrap(), rest.next().unwrap())
    };
    let (code, _, err) = sen_env(&["node", "drain", &first.to_string()], &env(&c));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sen_env(&["node", "drain", &last.to_string()], &env(&c));
    assert_ne!(code, 0, "draining the last voter that may lead was accepted");
    assert!(err.contains("no voter that may lead"), "{err}");
    sen_json(&c, &["node", "undrain", &first.to_string()]);
    sen_json(&c, &["node", "undrain", &drained.to_string()]);

    let (ok, failed, acked) = w.finish().await;
    // Switchovers and drains must fail no client write (the client retries
    // across endpoints); the one unplanned leader kill may fail at most one
    // write whose attempt outlived the client's deadline.
    assert!(ok >= 20, "the writer made no progress: {ok} writes");
    assert!(failed <= 1, "{failed} client writes failed");
    // Every acknowledged write is there.
    let client = c.client().unwrap();
    let (kvs, _) = client
        .scan("portal", b"sw", 0, true, Consistency::Linearizable)
        .await
        .unwrap();
    let have: std::collections::BTreeSet<Vec<u8>> = kvs.into_iter().map(|kv| kv.key).collect();
    for k in &acked {
        assert!(have.contains(k.as_bytes()), "acknowledged {k} missing");
    }
    // The planned transfers are recorded as planned leader changes.
    let incidents = sen_json(&c, &["incident", "list"]);
    let planned = incidents
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "leader-change" && i["auto_cause"].as_str().unwrap().contains("planned"))
        .count();
    assert!(planned >= 4, "{incidents}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_report_rto_and_lose_nothing() {
    let mut c = cluster("drills", FAST);
    c.form(3).await.unwrap();
    let scenarios = [
        "switchover",
        "crash-leader",
        "isolate-leader",
        "pause-leader",
        "crash-follower",
        "isolate-follower",
    ];
    for sc in scenarios {
        let r = sen_json(
            &c,
            &[
                "drill",
                "run",
                sc,
                "--duration",
                "2s",
                "--probe-rate",
                "20",
                "--rto-objective",
                "20s",
                "--read-gap-objective",
                "20s",
            ],
        );
        eprintln!("{sc}: rto {} ms, read gap {} ms", r["rto_ms"], r["read_gap_ms"]);
        assert_eq!(r["scenario"], sc);
        assert_eq!(r["passed"], true, "{sc}: {r}");
        assert_eq!(r["lost_writes"], 0, "{sc}");
        let acked = r["writes_acknowledged"].as_u64().unwrap();
        assert!(acked > 20, "{sc}: {acked} writes");
        for (n, missing) in r["missing_by_node"].as_object().unwrap() {
            assert_eq!(missing, 0, "{sc}: node {n}");
        }
        let rto = r["rto_ms"].as_u64().unwrap();
        assert!(rto > 0);
        let tl = &r["timeline"];
        assert!(tl["fault_start_ms"].as_u64().unwrap() <= tl["fault_end_ms"].as_u64().unwrap());
        assert!(tl["target_caught_up_ms"].as_u64().is_some(), "{sc}: {r}");
        let (before, after) = (
            r["leader_before"].as_u64().unwrap(),
            r["leader_after"].as_u64().unwrap(),
        );
        assert_ne!(after, 0);
        match sc {
            "switchover" | "crash-leader" | "isolate-leader" => {
                assert_ne!(before, after, "{sc}: leadership must move");
                assert!(tl["new_leader_elected_ms"].as_u64().is_some(), "{sc}: {r}");
                if sc != "switchover" {
                    // Writes stopped for at least the election.
                    assert!(tl["first_failed_request_ms"].as_u64().is_some(), "{sc}: {r}");
                    assert!(rto >= 100, "{sc}: rto {rto}");
                }
            }
            "crash-follower" | "isolate-follower" => {
                assert_eq!(before, after, "{sc}: a follower fault must not move leadership");
                assert_ne!(r["target"], before);
            }
            _ => {}
        }
        let id = r["id"].as_str().unwrap().to_owned();
        // Stored, and an incident points to it.
        let shown = sen_json(&c, &["drill", "show", &id]);
        assert_eq!(shown["rto_ms"], r["rto_ms"]);
        let inc = r["incident_id"].as_u64().unwrap();
        assert!(inc > 0);
        let i = sen_json(&c, &["incident", "show", &inc.to_string()]);
        assert_eq!(i["kind"], "drill");
        assert_eq!(i["reference"], id.as_str());
    }
    let list = sen_json(&c, &["drill", "list"]);
    assert_eq!(list.as_array().unwrap().len(), scenarios.len());
    // The Vietnamese report renders.
    let (code, out, _) = sen_env(&["drill", "show", "crash-leader", "--lang", "vi"], &env(&c));
    assert_eq!(code, 0);
    assert!(out.contains("Diễn tập chuyển đổi dự phòng"), "{out}");
    // Crash and isolation were noticed by the leader and logged.
    let incidents = sen_json(&c, &["incident", "list"]);
    let kinds: Vec<&str> = incidents
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"leader-change"), "{kinds:?}");
    // What the drills provoked points to them and is not a serious outage.
    let provoked: Vec<&Value> = incidents
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] != "drill" && !i["reference"].as_str().unwrap_or("").is_empty())
        .collect();
    assert!(!provoked.is_empty(), "{incidents}");
    for i in incidents.as_array().unwrap() {
        assert_eq!(i["severity"], "ordinary", "{i}");
    }
    // Annotate one.
    let first = incidents[0]["id"].as_u64().unwrap().to_string();
    let a = sen_json(
        &c,
        &[
            "incident",
            "annotate",
            &first,
            "--cause",
            "monthly drill",
            "--remedy",
            "none needed",
            "--by",
            "test",
        ],
    );
    assert_eq!(a["cause"], "monthly drill");
    assert_eq!(a["remedy"], "none needed");
    // The same, for the Vietnamese-speaking staff on duty.
    let (code, out, err) = sen_env(&["incident", "show", &first, "--lang", "vi"], &env(&c));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nguyên nhân:") && out.contains("monthly drill"), "{out}");
    assert!(out.contains("biện pháp khắc phục: none needed"), "{out}");
    let (code, out, err) = sen_env(&["incident", "list", "--lang", "vi"], &env(&c));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("NGUYÊN NHÂN") && out.contains("đổi nút lãnh đạo"), "{out}");
}

/// A leader cut off from the majority stops taking writes once no quorum
/// has answered it within `hooks.lease`: it refuses at once and says why,
/// instead of holding clients until their deadline (then they retry where
/// a new leader can commit). Checked by what the client is told, not by
/// timing: without the fence the attempt runs into its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_majority_refuses_writes_at_once() {
    let mut c = cluster("fence", FAST);
    c.form(3).await.unwrap();
    let old = c.wait_leader(None, T).await.unwrap();
    c.client().unwrap().put("d", b"before", b"1").await.unwrap();
    isolate(&c, old, 8_000, "fence-test").await;
    let new = c.wait_leader(Some(old), T).await.unwrap();
    assert_ne!(new, old);
    // The old leader still believes it leads (it cannot hear the new term).
    let opts = sen_client::ClientOptions {
        timeout: Duration::from_millis(1_500),
        attempt_timeout: Duration::from_millis(1_500),
        ..c.client_options().unwrap()
    };
    let to_old = sen_client::Client::new(&[c.grpc(old).unwrap()], opts).unwrap();
    let err = to_old.put("d", b"during", b"1").await.unwrap_err().to_string();
    assert!(
        err.contains("no majority has answered it"),
        "the cut-off leader must refuse, not time out: {err}"
    );
    // The majority side takes writes meanwhile.
    c.client().unwrap().put("d", b"majority", b"1").await.unwrap();
    // Healed, the old leader follows and forwards again.
    let via_old = c.client_for(old).unwrap();
    sen_chaos::wait_for("a write through the old leader after healing", T, || async {
        Ok(via_old.put("d", b"after", b"1").await.ok().map(|_| ()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_step_down_before_the_new_leader_starts() {
    let dir = TestDir::new("hooks-log");
    let log = dir.path.join("hooks.log");
    let hook = |role: &str| {
        format!(
            "echo \"$SEN_NODE_ID {role} $SEN_TERM $(date +%s%N)\" >> {}",
            log.display()
        )
    };
    let extra = format!(
        "{FAST}\n[hooks]\non-leader = {:?}\non-step-down = {:?}\non-follower = {:?}\n",
        hook("leader"),
        hook("step-down"),
        hook("follower")
    );
    let mut c = cluster("hooks", &extra);
    c.form(3).await.unwrap();
    let old = c.wait_leader(None, T).await.unwrap();
    // Hook lines: (node, role, term, ns since the epoch).
    let events = || -> Vec<(u64, String, u64, u128)> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let p: Vec<&str> = l.split_whitespace().collect();
                Some((
                    p.first()?.parse().ok()?,
                    p.get(1)?.to_string(),
                    p.get(2)?.parse().ok()?,
                    p.get(3)?.parse().ok()?,
                ))
            })
            .collect()
    };
    sen_chaos::wait_for("the leader's on_leader hook to run", T, || async {
        Ok(events()
            .iter()
            .any(|(n, r, _, _)| *n == old && r == "leader")
            .then_some(()))
    })
    .await
    .unwrap();
    // Cut the leader off from its peers for 3 s.
    isolate(&c, old, 3000, "hooks-test").await;
    let new = c.wait_leader(Some(old), T).await.unwrap();
    // The new leader's on_leader, and the old leader's step-down once its
    // isolation ends (it may only learn of the new term then).
    sen_chaos::wait_for("the new leader's on_leader and the old one's step-down", T, || async {
        let done = || -> Option<()> {
            let ev = events();
            let new_leads = ev.iter().any(|(n, r, _, _)| *n == new && r == "leader");
            let last_lead = ev
                .iter()
                .filter(|(n, r, _, _)| *n == old && r == "leader")
                .map(|e| e.3)
                .max()?;
            let stepped = ev
                .iter()
                .any(|(n, r, _, at)| *n == old && r == "step-down" && *at > last_lead);
            (new_leads && stepped).then_some(())
        };
        Ok(done())
    })
    .await
    .unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let events = events();
    // The new leader's on_leader for its term...
    let (_, _, new_term, new_at) = events
        .iter()
        .find(|(n, r, _, _)| *n == new && r == "leader")
        .cloned()
        .unwrap_or_else(|| panic!("no on_leader from node {new}:\n{text}"));
    // ... came after the old leader's step-down (not the one at start-up).
    let old_leader_at = events
        .iter()
        .filter(|(n, r, t, _)| *n == old && r == "leader" && *t < new_term)
        .map(|e| e.3)
        .max()
        .unwrap_or_else(|| panic!("node {old} never ran on_leader:\n{text}"));
    let step_down_at = events
        .iter()
        .filter(|(n, r, _, at)| *n == old && r == "step-down" && *at > old_leader_at)
        .map(|e| e.3)
        .min()
        .unwrap_or_else(|| panic!("node {old} never stepped down:\n{text}"));
    let gap_ms = (new_at as i128 - step_down_at as i128) / 1_000_000;
    eprintln!("fencing gap: node {old} step-down → node {new} on_leader: {gap_ms} ms");
    assert!(
        step_down_at < new_at,
        "old leader {old} stepped down after the new leader {new} started:\n{text}"
    );
    // Only one node ran on_leader per term.
    let mut per_term = std::collections::BTreeMap::<u64, std::collections::BTreeSet<u64>>::new();
    for (n, r, t, _) in &events {
        if r == "leader" {
            per_term.entry(*t).or_default().insert(*n);
        }
    }
    assert!(per_term.values().all(|s| s.len() == 1), "{per_term:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_from_losing_two_of_three() {
    let mut c = cluster("recover", FAST);
    c.form(3).await.unwrap();
    let client = c.client().unwrap();
    let mut last = 0;
    for i in 0..50 {
        last = client
            .put("portal", format!("k{i:03}").as_bytes(), b"v")
            .await
            .unwrap()
            .revision;
    }
    let leader = c.wait_leader(None, T).await.unwrap();
    let survivor = (1..=3).find(|i| *i != leader).unwrap();
    c.wait_applied(survivor, last, T).await.unwrap();
    // Lose two of three, the leader among them.
    for id in (1..=3).filter(|i| *i != survivor) {
        c.kill9(id).unwrap();
    }
    let eps = c.grpc(survivor).unwrap();
    let e = vec![("SEN_ENDPOINTS".to_owned(), eps.clone())];
    let (code, out, err) = sen_env(
        &[
            "cluster",
            "recover",
            "--from-node",
            &survivor.to_string(),
            "--dry-run",
            "--output",
            "json",
            "--timeout",
            "10s",
        ],
        &e,
    );
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(plan["quorum_lost"], true, "{plan}");
    assert!(plan["lost_committed_range"].is_null(), "{plan}");
    assert_eq!(plan["unreachable"].as_array().unwrap().len(), 2);
    // A wrong confirmation changes nothing.
    let (code, _, err) = sen_env(
        &[
            "cluster",
            "recover",
            "--from-node",
            &survivor.to_string(),
            "--force",
            "--confirm",
            "yes",
            "--timeout",
            "10s",
        ],
        &e,
    );
    assert_ne!(code, 0);
    assert!(err.contains("did not match"), "{err}");
    let confirm = format!("recover node {survivor}");
    let (code, out, err) = sen_env(
        &[
            "cluster",
            "recover",
            "--from-node",
            &survivor.to_string(),
            "--force",
            "--confirm",
            &confirm,
            "--output",
            "json",
            "--timeout",
            "10s",
        ],
        &e,
    );
    assert_eq!(code, 0, "{err}\n{out}");
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["leading"], true, "{r}");
    assert_eq!(r["next_steps"].as_array().unwrap().len(), 2);

    // Everything acknowledged is there, and it takes writes.
    let one = c.client_for(survivor).unwrap();
    for i in 0..50 {
        let kv = one
            .get("portal", format!("k{i:03}").as_bytes(), Consistency::Linearizable)
            .await
            .unwrap();
        assert!(kv.kv.is_some(), "k{i:03} lost");
    }
    one.put("portal", b"after-recovery", b"ok").await.unwrap();
    // A serious incident names the recovery.
    let list = wait_for_incident(&c, survivor, "recovery").await;
    assert_eq!(list["severity"], "serious");
    // A wiped node rejoins under a new id.
    c.add(4).unwrap();
    c.start(4).unwrap();
    let addr4 = c.grpc(4).unwrap();
    c.wait_serving(4, T).await.unwrap();
    one.add_node(4, &addr4, false).await.unwrap();
    let s = one.status().await.unwrap();
    assert_eq!(s.members.len(), 2);
    assert!(s.members.iter().all(|m| m.voter));
}

async fn wait_for_incident(c: &sen_chaos::ProcessCluster, node: u64, kind: &str) -> Value {
    let client = c.client_for(node).unwrap();
    sen_chaos::wait_for("the incident to be recorded", T, || async {
        let r = client.list_incidents(0).await?;
        Ok(r.json
            .iter()
            .filter_map(|j| serde_json::from_str::<Value>(j).ok())
            .find(|i| i["kind"] == kind))
    })
    .await
    .unwrap()
}

/// Drain is a preference, not an outage: when the drained node holds the
/// only log complete enough to win an election, it campaigns, leads, and
/// hands leadership back as soon as another node has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_leads_when_it_alone_can_then_hands_over() {
    let mut c = cluster("drain-fallback", FAST);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let mut others = (1..=3).filter(|i| *i != leader);
    let (drained, behind) = (others.next().unwrap(), others.next().unwrap());
    sen_json(&c, &["node", "drain", &drained.to_string()]);
    let client = c.client().unwrap();
    // Cut `behind` off, write what only the leader and the drained node
    // have, then lose the leader.
    isolate(&c, behind, 60_000, "drain-fallback-test").await;
    let leader_client = c.client_for(leader).unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = leader_client
            .put("portal", format!("only-two-{i}").as_bytes(), b"v")
            .await
            .unwrap()
            .revision;
    }
    c.wait_applied(drained, last, T).await.unwrap();
    c.kill9(leader).unwrap();
    client.clear_fault(&c.grpc(behind).unwrap()).await.unwrap();
    // Only the drained node can win (its log is the most complete): it
    // leads briefly, then hands over once `behind` has caught up.
    let via = c.client_for(behind).unwrap();
    // Nothing acknowledged was lost, and leadership moves on to `behind`.
    for i in 0..20 {
        let kv = via
            .get("portal", format!("only-two-{i}").as_bytes(), Consistency::Linearizable)
            .await
            .unwrap();
        assert!(kv.kv.is_some(), "only-two-{i} lost");
    }
    sen_chaos::wait_for("the drained node to hand over", T, || async {
        let s = via.status().await?;
        Ok((s.leader_id == behind).then_some(()))
    })
    .await
    .unwrap();
    // The record shows it: the drained node took over from the dead leader,
    // then handed over on purpose.
    let incidents = sen_chaos::wait_for("both leader changes recorded", T, || async {
        let r = via.list_incidents(0).await?;
        let v: Vec<Value> = r.json.iter().filter_map(|j| serde_json::from_str(j).ok()).collect();
        let took = v
            .iter()
            .any(|i| i["kind"] == "leader-change" && i["nodes"] == serde_json::json!([leader, drained]));
        let gave = v.iter().any(|i| {
            i["kind"] == "leader-change"
                && i["nodes"] == serde_json::json!([drained, behind])
                && i["auto_cause"]
                    .as_str()
                    .unwrap_or("")
                    .contains("planned leadership transfer (drain)")
        });
        Ok((took && gave).then_some(v))
    })
    .await
    .unwrap();
    assert!(!incidents.is_empty());
}
