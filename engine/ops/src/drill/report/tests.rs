//! Drill reports computed from recorded timelines.

use std::time::Duration;

use super::*;

#[test]
fn gaps_count_from_the_last_success_before_the_fault() {
    // Successes every 100 ms, then nothing from 1000 to 2500.
    let s: Vec<u64> = (0..=10).map(|i| i * 100).chain((25..=30).map(|i| i * 100)).collect();
    assert_eq!(longest_gap(s.clone(), 950, 3000), 1500);
    // No success after the fault at all: open until the window ends.
    assert_eq!(longest_gap((0..=10).map(|i| i * 100).collect(), 1000, 4000), 3000);
    // Healthy: the gap is the probe interval.
    assert_eq!(longest_gap((0..=30).map(|i| i * 100).collect(), 1000, 3000), 100);
    // No success before the fault: counted from the fault.
    assert_eq!(longest_gap(vec![1500, 1600], 1000, 1600), 500);
}

fn params(scenario: Scenario) -> DrillParams {
    DrillParams {
        scenario,
        target: None,
        duration: Duration::from_secs(2),
        probe_rate: 10.0,
        rto_objective: Duration::from_millis(1500),
        read_gap_objective: Duration::from_millis(500),
    }
}

/// A crash of leader 1 at 1000 ms: writes through every node fail from
/// 1000 to 1800 (node 2 takes over at 1700), node 1's reads fail until it
/// is back at 3000; the other nodes keep serving.
fn crash_of_the_leader() -> Observations {
    let mut obs = Observations {
        nodes: vec![1, 2, 3],
        leader_before: 1,
        leader_after: 2,
        fault_start_ms: 1000,
        fault_end_ms: 3000,
        target_caught_up_ms: Some(3200),
        probes_stopped_ms: 4200,
        ..Default::default()
    };
    for t in (0..42).map(|i| i * 100) {
        for node in [1u64, 2, 3] {
            let key = format!("d/{node}/{t:08}");
            let write_ok = !((1000..1800).contains(&t) || node == 1 && (1000..3000).contains(&t));
            obs.probes.push(Probe {
                node,
                write: true,
                start_ms: t,
                end_ms: t + 10,
                ok: write_ok,
                key: key.clone(),
            });
            if write_ok {
                obs.on_leader.insert(key.into_bytes());
            }
            let read_ok = !(node == 1 && (1000..3000).contains(&t));
            obs.probes.push(Probe {
                node,
                write: false,
                start_ms: t + 50,
                end_ms: t + 55,
                ok: read_ok,
                key: String::new(),
            });
        }
    }
    for t in (0..42).map(|i| i * 100) {
        obs.leaders.push((
            t,
            if t < 1000 {
                1
            } else if t < 1700 {
                0
            } else {
                2
            },
        ));
    }
    for n in [1, 2, 3] {
        obs.on_nodes.insert(n, obs.on_leader.clone());
    }
    obs
}

#[test]
fn a_crash_of_the_leader_is_timed_and_passes() {
    let r = compute("d", &params(Scenario::CrashLeader), 1, crash_of_the_leader());
    // Last acknowledged write before the fault ended at 910 (started 900);
    // the first after it ended at 1810.
    assert_eq!(r.rto_ms, 900);
    // Nodes 2 and 3 never stopped serving: the cluster read gap is the
    // probe interval; node 1's own gap is its down time.
    assert_eq!(r.read_gap_ms, 100);
    assert_eq!(r.read_gap_by_node_ms[&1], 2100);
    assert_eq!(r.timeline.first_failed_request_ms, Some(1000));
    assert_eq!(r.timeline.new_leader_elected_ms, Some(1700));
    assert_eq!(r.timeline.first_write_after_failure_ms, Some(1810));
    assert_eq!((r.lost_writes, r.writes_unknown_applied), (0, 0));
    assert_eq!(r.writes_attempted, 126);
    assert_eq!(r.writes_failed, 3 * 8 + 12);
    assert_eq!(r.missing_by_node.values().sum::<u64>(), 0);
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!((r.fault_ms, r.scenario.as_str()), (2000, "crash-leader"));
}

#[test]
fn a_lost_acknowledged_write_fails_the_drill() {
    let mut obs = crash_of_the_leader();
    let lost = b"d/2/00000500".to_vec();
    obs.on_leader.remove(&lost);
    obs.on_nodes.get_mut(&3).unwrap().remove(&lost);
    let r = compute("d", &params(Scenario::CrashLeader), 1, obs);
    assert_eq!(r.lost_writes, 1);
    assert_eq!(r.missing_by_node[&3], 1);
    assert!(!r.passed);
    assert!(
        r.failures.iter().any(|f| f == "1 acknowledged writes are missing"),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_failed_write_that_was_applied_anyway_is_counted_not_lost() {
    let mut obs = crash_of_the_leader();
    obs.on_leader.insert(b"d/2/00001000".to_vec());
    let r = compute("d", &params(Scenario::CrashLeader), 1, obs);
    assert_eq!((r.writes_unknown_applied, r.lost_writes), (1, 0));
}

#[test]
fn objectives_and_recovery_decide_the_verdict() {
    let tight = DrillParams {
        rto_objective: Duration::from_millis(500),
        ..params(Scenario::CrashLeader)
    };
    let r = compute("d", &tight, 1, crash_of_the_leader());
    assert!(!r.passed);
    assert_eq!(r.failures, ["write gap 900 ms exceeds the objective 500 ms"]);

    let mut obs = crash_of_the_leader();
    obs.target_caught_up_ms = None;
    obs.leader_after = 0;
    let r = compute("d", &params(Scenario::CrashLeader), 1, obs);
    assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
}

#[test]
fn a_switchover_has_no_fault_duration() {
    let r = compute("d", &params(Scenario::Switchover), 1, crash_of_the_leader());
    assert_eq!(r.fault_ms, 0);
}
