//! The role task's decisions, on metrics built by hand and an in-memory
//! control plane: no Raft, no node, no gRPC.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::metrics::SerdeInstant;
use openraft::vote::RaftLeaderId;
use sen_raft::schema::system::PlannedTransfer;
use sen_raft::{LogId, Membership, NodeInfo, StoredMembership};

use super::*;
use crate::system::testing::MemControlPlane;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        openraft::impls::leader_id_std::LeaderId { term, voted_for: 1 }.to_committed(),
        index,
    )
}

/// Metrics of node `me` in a cluster of `voters`.
fn metrics(me: u64, voters: &[u64]) -> RaftMetrics {
    let mut m = RaftMetrics::new_initial(me);
    let membership = Membership::new(
        vec![voters.iter().copied().collect::<BTreeSet<u64>>()],
        voters
            .iter()
            .map(|v| {
                (
                    *v,
                    NodeInfo {
                        addr: format!("127.0.0.{v}:7100"),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    )
    .unwrap();
    m.membership_config = Arc::new(StoredMembership::new(Some(log_id(1, 1)), membership));
    m
}

fn leading(me: u64, voters: &[u64], term: u64) -> RaftMetrics {
    let mut m = metrics(me, voters);
    m.state = ServerState::Leader;
    m.current_leader = Some(me);
    m.current_term = term;
    m.last_applied = Some(log_id(term, 10));
    m
}

fn ago(d: Duration) -> SerdeInstant<openraft::TokioInstant> {
    SerdeInstant::new(<openraft::TokioInstant as openraft::Instant>::now() - d)
}

#[test]
fn the_lease_needs_leadership_and_a_recent_quorum() {
    let lease = Duration::from_millis(250);
    let mut m = leading(1, &[1, 2, 3], 2);
    assert!(!holds_lease(1, &m, lease), "no quorum acknowledgement yet");
    m.last_quorum_acked = Some(ago(Duration::from_millis(50)));
    assert!(holds_lease(1, &m, lease));
    m.last_quorum_acked = Some(ago(Duration::from_millis(400)));
    assert!(
        !holds_lease(1, &m, lease),
        "the acknowledgement is older than the lease"
    );
    // A sole voter needs nobody.
    assert!(holds_lease(1, &leading(1, &[1], 2), lease));
    // A follower never holds it.
    let mut f = metrics(2, &[1, 2, 3]);
    f.current_leader = Some(1);
    f.last_quorum_acked = Some(ago(Duration::ZERO));
    assert!(!holds_lease(2, &f, lease));
}

#[test]
fn a_drained_node_campaigns_only_when_nobody_can_lead() {
    let limit = Duration::from_millis(1200);
    assert!(may_elect(false, false, 0, None, limit));
    assert!(!may_elect(true, false, 100, None, limit));
    assert!(!may_elect(true, false, 100, Some(Duration::from_millis(500)), limit));
    assert!(
        may_elect(true, false, 1300, None, limit),
        "silent for longer than the limit"
    );
    assert!(
        may_elect(true, false, 0, Some(Duration::from_millis(1300)), limit),
        "leaderless too long"
    );
    assert!(!may_elect(true, true, 5000, None, limit), "a leader is not silent");
}

#[test]
fn the_successor_is_the_most_caught_up_voter_that_is_not_drained() {
    let mut m = leading(1, &[1, 2, 3, 4], 3);
    m.replication = Some(BTreeMap::from([
        (2, Some(log_id(3, 90))),
        (3, Some(log_id(3, 100))),
        (4, Some(log_id(3, 80))),
    ]));
    assert_eq!(best_successor(1, &m, None, |_| false), Some(3));
    assert_eq!(best_successor(1, &m, None, |id| id == 3), Some(2));
    assert_eq!(best_successor(1, &m, Some(4), |_| false), Some(4));
    assert_eq!(best_successor(1, &m, Some(4), |id| id == 4), None);
    assert_eq!(best_successor(1, &m, None, |id| id != 1), None);
}

fn cfg() -> IncidentsConfig {
    IncidentsConfig {
        unreachable_after: Duration::from_millis(300),
        node_down_serious_after: Duration::from_secs(3600),
        leaderless_serious_after: Duration::from_secs(30),
        ..Default::default()
    }
}

#[test]
fn a_new_leader_records_the_change_once_per_term() {
    let mut w = IncidentWatch::default();
    // Node 2 follows node 1, then node 1 goes away and node 2 leads.
    let mut f = metrics(2, &[1, 2, 3]);
    f.current_leader = Some(1);
    f.current_term = 1;
    w.observe(2, &f, now_ms(), Duration::from_secs(1));
    let heard = now_ms() - 700;
    let mut m = leading(2, &[1, 2, 3], 2);
    w.observe(2, &m, heard, Duration::from_secs(1));
    // Not caught up with its own term yet: nothing.
    m.last_applied = Some(log_id(1, 9));
    assert!(w.leader_change(2, &m, || None, &cfg()).is_none());
    m.last_applied = Some(log_id(2, 10));
    let inc = w.leader_change(2, &m, || None, &cfg()).expect("a leader change");
    assert_eq!(
        (inc.kind.as_str(), inc.severity.as_str()),
        (kind::LEADER_CHANGE, ORDINARY)
    );
    assert_eq!(inc.nodes, [1, 2]);
    assert_eq!(
        inc.start_ms, heard,
        "the outage began when node 2 last heard from node 1"
    );
    assert!(inc.auto_cause.contains("elected in term 2"), "{}", inc.auto_cause);
    assert!(
        inc.auto_cause_vi.contains("được bầu ở nhiệm kỳ 2"),
        "{}",
        inc.auto_cause_vi
    );
    // Once per term.
    assert!(w.leader_change(2, &m, || None, &cfg()).is_none());
}

#[test]
fn planned_transfers_are_ordinary_and_long_gaps_serious() {
    let follow = |w: &mut IncidentWatch| {
        let mut f = metrics(2, &[1, 2, 3]);
        f.current_leader = Some(1);
        w.observe(2, &f, now_ms(), Duration::from_secs(1));
    };
    let mut w = IncidentWatch::default();
    follow(&mut w);
    let m = leading(2, &[1, 2, 3], 2);
    w.observe(2, &m, now_ms() - 40_000, Duration::from_secs(1));
    let inc = w.leader_change(2, &m, || None, &cfg()).unwrap();
    assert_eq!(inc.severity, SERIOUS, "40 s without a leader");

    let mut w = IncidentWatch::default();
    follow(&mut w);
    let m = leading(2, &[1, 2, 3], 3);
    w.observe(2, &m, now_ms() - 40_000, Duration::from_secs(1));
    let planned = PlannedTransfer {
        version: 1,
        from: 1,
        to: 2,
        at_ms: now_ms(),
        reason: "drain".into(),
    };
    let inc = w.leader_change(2, &m, || Some(planned.clone()), &cfg()).unwrap();
    assert_eq!(inc.severity, ORDINARY);
    assert!(
        inc.auto_cause.starts_with("planned leadership transfer (drain)"),
        "{}",
        inc.auto_cause
    );
    // A marker for another target does not count.
    let mut w = IncidentWatch::default();
    follow(&mut w);
    w.observe(2, &m, now_ms(), Duration::from_secs(1));
    let other = PlannedTransfer { to: 3, ..planned };
    let inc = w.leader_change(2, &m, || Some(other), &cfg()).unwrap();
    assert!(inc.auto_cause.contains("was elected"), "{}", inc.auto_cause);
}

#[test]
fn the_first_leader_of_a_cluster_records_nothing() {
    let mut w = IncidentWatch::default();
    let m = leading(1, &[1], 1);
    w.observe(1, &m, 0, Duration::from_secs(1));
    assert!(w.leader_change(1, &m, || None, &cfg()).is_none());
}

#[tokio::test]
async fn unreachable_members_are_opened_adopted_and_closed_once() {
    let plane = MemControlPlane::default();
    let b = Duration::from_secs(1);
    let mut w = IncidentWatch::default();
    let mut m = leading(1, &[1, 2, 3], 2);
    w.observe(1, &m, 0, Duration::from_secs(60));
    m.heartbeat = Some(BTreeMap::from([
        (2, Some(ago(Duration::from_millis(10)))),
        (3, Some(ago(Duration::from_millis(900)))),
    ]));
    w.check_members(&plane, 1, &m, true, &cfg(), b).await;
    let open = incidents::list(&plane).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].kind.as_str(), open[0].nodes.as_slice()),
        (kind::NODE_UNREACHABLE, &[3][..])
    );
    assert!(open[0].end_ms.is_none());
    // Checked again: still one.
    w.check_members(&plane, 1, &m, true, &cfg(), b).await;
    assert_eq!(incidents::list(&plane).unwrap().len(), 1);

    // A new leader (node 2, term 3) adopts it and closes it when node 3
    // answers again.
    let mut w2 = IncidentWatch::default();
    let mut m2 = leading(2, &[1, 2, 3], 3);
    w2.observe(2, &m2, 0, Duration::from_secs(60));
    m2.heartbeat = Some(BTreeMap::from([
        (1, Some(ago(Duration::from_millis(10)))),
        (3, Some(ago(Duration::from_millis(20)))),
    ]));
    w2.check_members(&plane, 2, &m2, true, &cfg(), b).await;
    let all = incidents::list(&plane).unwrap();
    assert_eq!(all.len(), 1, "adopted, not opened again");
    assert!(all[0].end_ms.is_some(), "closed");
    assert!(
        all[0].auto_cause.ends_with("node 3 answered again"),
        "{}",
        all[0].auto_cause
    );
    assert!(
        all[0].auto_cause_vi.ends_with("nút 3 đã phản hồi trở lại"),
        "{}",
        all[0].auto_cause_vi
    );
}

#[tokio::test]
async fn a_member_down_too_long_makes_the_incident_serious() {
    let plane = MemControlPlane::default();
    let b = Duration::from_secs(1);
    let mut w = IncidentWatch::default();
    let mut m = leading(1, &[1, 2], 2);
    w.observe(1, &m, 0, Duration::from_secs(60));
    // Unreachable for 400 ms: recorded as ordinary first; escalated by the
    // next check, since it has now been down longer than 350 ms.
    let c = IncidentsConfig {
        node_down_serious_after: Duration::from_millis(350),
        ..cfg()
    };
    m.heartbeat = Some(BTreeMap::from([(2, Some(ago(Duration::from_millis(400))))]));
    w.check_members(&plane, 1, &m, true, &c, b).await;
    assert_eq!(incidents::list(&plane).unwrap()[0].severity, ORDINARY);
    w.check_members(&plane, 1, &m, true, &c, b).await;
    let i = &incidents::list(&plane).unwrap()[0];
    assert_eq!(i.severity, SERIOUS);
    assert!(i.auto_cause.contains("less redundancy"), "{}", i.auto_cause);
}

#[test]
fn a_leader_without_a_quorum_is_recorded_when_it_regains_one() {
    let grace = Duration::from_millis(100);
    let mut w = IncidentWatch::default();
    let mut m = leading(1, &[1, 2, 3], 4);
    w.observe(1, &m, 0, grace);
    // Leading for longer than the grace with no acknowledgement.
    w.leader_since = Some((4, Instant::now() - Duration::from_millis(500)));
    w.observe(1, &m, 0, grace);
    assert!(w.quorum_lost_ms.is_some());
    assert!(w.quorum_regained(1, &m, false, grace).is_none(), "still without quorum");
    m.last_quorum_acked = Some(ago(Duration::ZERO));
    let inc = w.quorum_regained(1, &m, true, grace).expect("recorded");
    assert_eq!((inc.kind.as_str(), inc.severity.as_str()), (kind::QUORUM_LOST, SERIOUS));
    assert!(w.quorum_regained(1, &m, true, grace).is_none(), "once");
}
