//! What a node does about its role, checked every few milliseconds:
//!
//! - **Fenced role hooks.** `hooks.on-leader` runs only once this node
//!   leads *and* holds a leader lease: a quorum acknowledged it within
//!   `hooks.lease`. `hooks.on-step-down` runs as soon as that stops being
//!   true. Followers refuse to elect anyone for `raft.election-timeout-max`
//!   after they last heard from the leader (openraft's leader lease on the
//!   follower side), and `hooks.lease` is shorter, so the old leader's
//!   step-down starts before any other node can become leader: a virtual
//!   IP or write-side service guarded by these hooks is never active on two
//!   nodes (assuming clocks that run at about the same rate). Hooks run one
//!   at a time, in order, each with a timeout.
//! - **Drain.** A node listed as drained in the cluster
//!   (`sen-system/node/<id>/drained`) does not start elections, and hands
//!   leadership away if it has it. Drain is a preference, not an outage: if
//!   no leader emerges for 3 election timeouts (the drained node may hold
//!   the only log complete enough to win), it campaigns too, then hands
//!   over once a successor has caught up.
//! - **Incidents.** The leader records leader changes and unreachable
//!   nodes; a leader that lost its quorum records that once it can.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::Instant as _;
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use sen_raft::RaftMetrics;
use sen_raft::schema::system::{
    Incident, ORDINARY, PLANNED_TRANSFER_KEY, PlannedTransfer, SERIOUS, SystemRecord, kind,
};
use tokio_util::sync::CancellationToken;

use crate::config::IncidentsConfig;
use crate::error::ApiError;
use crate::incidents;
use crate::node::Node;
use crate::role_state::HookRun;
use crate::system::{self, ControlPlane};
use sen_core::now_ms;

/// The role loop runs at most this often (a burst of Raft metrics changes
/// under load is looked at once per tick)...
const TICK: Duration = Duration::from_millis(10);
/// ...and at least this often when nothing changes (drain and incident
/// checks); a leader also wakes exactly when its fencing lease would lapse.
const IDLE_WAKE: Duration = Duration::from_millis(100);
const DRAIN_CHECK: Duration = Duration::from_millis(100);
const INCIDENT_CHECK: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct HookEvent {
    role: &'static str,
    term: u64,
    leader_id: u64,
    leader_addr: String,
    at_ms: u64,
}

/// Whether node `me` leads and a quorum acknowledged it within `lease`.
fn holds_lease(me: u64, m: &RaftMetrics, lease: Duration) -> bool {
    if m.state != ServerState::Leader || m.current_leader != Some(me) {
        return false;
    }
    let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
    if voters == [me] {
        return true;
    }
    m.last_quorum_acked.as_ref().is_some_and(|t| t.elapsed() < lease)
}

/// How long the role loop may sleep when nothing changes: [`IDLE_WAKE`],
/// or less for a leader, whose lease lapses `lease` after a quorum last
/// acknowledged it (it must step down at that moment, not later).
fn next_wake(m: &RaftMetrics, leased: bool, lease: Duration) -> Duration {
    match (&m.last_quorum_acked, leased) {
        (Some(t), true) => lease
            .saturating_sub(t.elapsed())
            .saturating_add(Duration::from_millis(1))
            .min(IDLE_WAKE),
        _ => IDLE_WAKE,
    }
}

/// Whether a node may campaign: always unless drained; a drained node too
/// once nobody has led for `limit` (it may hold the only log complete
/// enough to win). `silent_ms`: since this node last heard from a leader;
/// `leaderless_for`: since it last knew of one.
fn may_elect(drained: bool, leading: bool, silent_ms: u64, leaderless_for: Option<Duration>, limit: Duration) -> bool {
    let silent = !leading && silent_ms > limit.as_millis() as u64;
    let stuck = silent || leaderless_for.is_some_and(|t| t > limit);
    !drained || stuck
}

/// Run until `stop`: hooks, drain and incident detection.
pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<HookEvent>();
    let runner = tokio::spawn(run_hooks(node.clone(), rx));
    let lease = node.config.hooks.lease;
    // A restarted node is not the leader: make sure nothing it guarded is
    // still active from before a crash.
    let _ = tx.send(HookEvent {
        role: "step-down",
        term: node.raft_metrics().current_term,
        leader_id: 0,
        leader_addr: String::new(),
        at_ms: now_ms(),
    });
    // A forced recovery left an incident to record once this node leads.
    if let Some(inc) = crate::recovery::pending(&node.config.data_dir) {
        let n = node.clone();
        tokio::spawn(async move {
            record_with_retry(&n, inc).await;
            crate::recovery::clear_pending(&n.config.data_dir);
        });
    }
    let mut followed: Option<(u64, u64)> = None; // (leader, term) we ran on_follower for
    let mut last_drain_check = Instant::now() - DRAIN_CHECK;
    let mut last_transfer_try = Instant::now() - Duration::from_secs(10);
    let mut watch = IncidentWatch::default();
    let mut leaderless_since: Option<Instant> = None;
    // Whether openraft's election timer is on (it is at start).
    let mut elect_on = true;
    let mut last_incident_check = Instant::now();
    // Woken by a change of role, leader, vote or membership (openraft's
    // server metrics), at the moment the lease would lapse, or after
    // IDLE_WAKE; by any change of the Raft metrics (at most once per TICK)
    // only while that matters: a leader waiting for its first quorum or for
    // its first applied entry, a candidate, or a moment when the two
    // channels disagree. A heartbeat
    // changes the whole metrics: an idle node is not woken by each one.
    let mut metrics = node.raft.metrics();
    let mut server = node.raft.server_metrics();
    let mut every_change = true;
    let mut wait = Duration::ZERO;
    let mut last_pass = Instant::now();
    let mut raft_gone = false;
    loop {
        let changed = tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => None,
            changed = server.changed(), if !raft_gone => Some(changed),
            changed = metrics.changed(), if !raft_gone && every_change => Some(changed),
        };
        if let Some(changed) = changed {
            // Raft has stopped: nothing will change any more.
            raft_gone = changed.is_err();
            let since = last_pass.elapsed();
            if since < TICK {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(TICK - since) => {}
                }
            }
        }
        last_pass = Instant::now();
        let m = metrics.borrow_and_update().clone();
        let leased = holds_lease(node.id, &m, lease);
        wait = next_wake(&m, leased, lease);
        every_change = {
            let s = server.borrow_and_update();
            let agree = s.state == m.state && s.current_leader == m.current_leader && s.vote == m.vote;
            // A new leader records the change of leader once it has applied
            // an entry of its term (`IncidentWatch::leader_change`): follow
            // every change until then, or a leader that hands over within
            // IDLE_WAKE (planned transfers in a row) would record nothing.
            let unrecorded =
                m.state == ServerState::Leader && m.last_applied.is_none_or(|a| a.leader_id.term != m.current_term);
            !agree || m.state == ServerState::Candidate || (m.state == ServerState::Leader && !leased) || unrecorded
        };
        let was = node.roles.set_active_leader(leased);
        node.roles.observe_leader(m.current_leader);
        // From the metrics in hand (no second clone), only when an event needs it.
        let leader_addr = || {
            m.current_leader
                .and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.addr.clone()))
                .unwrap_or_default()
        };
        if leased != was {
            let _ = tx.send(HookEvent {
                role: if leased { "leader" } else { "step-down" },
                term: m.current_term,
                leader_id: m.current_leader.unwrap_or(0),
                leader_addr: leader_addr(),
                at_ms: now_ms(),
            });
        }
        if matches!(m.state, ServerState::Follower | ServerState::Learner)
            && let Some(l) = m.current_leader
            && l != node.id
            && followed != Some((l, m.current_term))
        {
            followed = Some((l, m.current_term));
            let _ = tx.send(HookEvent {
                role: "follower",
                term: m.current_term,
                leader_id: l,
                leader_addr: leader_addr(),
                at_ms: now_ms(),
            });
        }

        // Leaderless for a while: remember since when (drain fallback).
        if m.current_leader.is_some() {
            leaderless_since = None;
        } else if leaderless_since.is_none() {
            leaderless_since = Some(Instant::now());
        }
        if last_drain_check.elapsed() >= DRAIN_CHECK {
            last_drain_check = Instant::now();
            let drained = system::is_drained(node.as_ref(), node.id);
            if drained != node.roles.set_drained(drained) {
                tracing::info!(
                    drained,
                    "drain state changed: this node {} campaign for leadership",
                    if drained { "will not" } else { "may" }
                );
            }
            // Drain is a preference, never an outage: a drained node whose
            // log is the most complete may be the only one the others can
            // elect (Raft elects only an up-to-date candidate). If nobody
            // has led for 3 election timeouts, it campaigns too, and hands
            // leadership over as soon as a successor has caught up.
            // (A drained follower keeps its old leader in view: it never
            // times out itself. Not hearing from any leader is the signal.)
            let limit = node.config.raft.election_timeout_max * 3;
            let heard = node.roles.last_heard_leader_ms().max(node.started_at_ms);
            let may_elect = may_elect(
                drained,
                m.state == ServerState::Leader,
                now_ms().saturating_sub(heard),
                leaderless_since.map(|t| t.elapsed()),
                limit,
            );
            if may_elect != elect_on {
                elect_on = may_elect;
                if drained && may_elect {
                    tracing::warn!(
                        "drained, but no leader could be elected for {:?}: campaigning until a successor can take over",
                        node.config.raft.election_timeout_max * 3
                    );
                }
                node.raft.runtime_config().elect(may_elect);
            }
            if drained
                && m.state == ServerState::Leader
                && !node.is_stopping()
                && last_transfer_try.elapsed() >= Duration::from_secs(1)
            {
                last_transfer_try = Instant::now();
                let last = m.last_log_index.unwrap_or(0);
                if let Some(to) = successor(&node, &m, None)
                    && m.replication
                        .as_ref()
                        .and_then(|r| r.get(&to))
                        .and_then(|l| l.as_ref())
                        .is_some_and(|l| l.index >= last)
                {
                    tracing::info!(to, "this node is drained: handing leadership over");
                    if let Err(e) = plan_transfer(&node, to, "drain", Duration::from_secs(1)).await {
                        tracing::warn!(
                            "handing over without the planned-transfer marker (it will read as an election): {e}"
                        );
                    }
                    if let Err(e) = node.raft.trigger().transfer_leader(to).await {
                        tracing::warn!("drained leader cannot transfer to node {to}: {e}");
                    }
                }
            }
        }

        let me = node.id;
        watch.observe(
            me,
            &m,
            node.roles.last_heard_leader_ms(),
            node.config.raft.election_timeout_max * 2,
        );
        if node.roles.is_active_leader() {
            // The marker is read only when a change is to be recorded.
            let planned = || {
                system::read::<PlannedTransfer>(node.as_ref(), PLANNED_TRANSFER_KEY)
                    .ok()
                    .flatten()
                    .map(|(p, _)| p)
            };
            if let Some(inc) = watch.leader_change(me, &m, planned, &node.config.incidents) {
                let n = node.clone();
                tokio::spawn(async move { record_with_retry(&n, inc).await });
            }
        }
        if last_incident_check.elapsed() >= INCIDENT_CHECK {
            last_incident_check = Instant::now();
            if let Some(inc) = watch.quorum_regained(
                me,
                &m,
                node.roles.is_active_leader(),
                node.config.raft.election_timeout_max * 2,
            ) {
                let n = node.clone();
                tokio::spawn(async move { record_with_retry(&n, inc).await });
            }
            let budget = node.config.server.request_timeout;
            watch
                .check_members(
                    node.as_ref(),
                    me,
                    &m,
                    node.roles.is_active_leader(),
                    &node.config.incidents,
                    budget,
                )
                .await;
        }
    }
    drop(tx);
    let _ = runner.await;
}

/// The most caught-up voter other than `me` that is not drained (only
/// `only`, if given).
pub fn best_successor(me: u64, m: &RaftMetrics, only: Option<u64>, drained: impl Fn(u64) -> bool) -> Option<u64> {
    let voters: Vec<u64> = m
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != me)
        .filter(|id| only.is_none_or(|o| o == *id))
        .filter(|id| !drained(*id))
        .collect();
    voters.into_iter().max_by_key(|id| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(id))
            .and_then(|l| l.as_ref())
            .map_or(0, |l| l.index)
    })
}

/// [`best_successor`] of `node`, with the drain flags of its replica.
pub fn successor(node: &Node, m: &RaftMetrics, only: Option<u64>) -> Option<u64> {
    best_successor(node.id, m, only, |id| system::is_drained(node, id))
}

/// Record that leadership is about to move to `to` on purpose (best
/// effort: the transfer goes ahead even if this write fails).
pub async fn plan_transfer(node: &Node, to: u64, reason: &str, within: Duration) -> Result<(), ApiError> {
    let p = PlannedTransfer {
        version: PlannedTransfer::VERSION,
        from: node.id,
        to,
        at_ms: now_ms(),
        reason: reason.into(),
    };
    let op = system::put_op(PLANNED_TRANSFER_KEY.to_vec(), &p)?;
    // Retried until `within`: under load one attempt may time out, and a
    // transfer without its marker is reported as an unplanned election.
    // The marker is a plain put, so a retry of a write whose outcome was
    // unknown only writes it again.
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match node.propose(None, op.clone(), left.min(Duration::from_secs(1))).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() + Duration::from_millis(50) >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!("planned-transfer marker not written yet ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Run hooks one at a time, in the order the events happened.
async fn run_hooks(node: Arc<Node>, mut rx: tokio::sync::mpsc::UnboundedReceiver<HookEvent>) {
    while let Some(ev) = rx.recv().await {
        let cfg = &node.config.hooks;
        let cmd = match ev.role {
            "leader" => &cfg.on_leader,
            "step-down" => &cfg.on_step_down,
            _ => &cfg.on_follower,
        };
        tracing::info!(role = ev.role, term = ev.term, leader = ev.leader_id, "role change");
        if cmd.trim().is_empty() {
            continue;
        }
        let started = Instant::now();
        let mut run = HookRun {
            role: ev.role.into(),
            term: ev.term,
            started_ms: now_ms(),
            duration_ms: 0,
            exit_code: None,
            error: String::new(),
        };
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("SEN_ROLE", ev.role)
            .env("SEN_NODE_ID", node.id.to_string())
            .env("SEN_TERM", ev.term.to_string())
            .env("SEN_LEADER_ID", ev.leader_id.to_string())
            .env("SEN_LEADER_ADDR", &ev.leader_addr)
            .env("SEN_EVENT_AT_MS", ev.at_ms.to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(cfg.timeout, child).await {
            Err(_) => run.error = format!("timed out after {:?} and was killed", cfg.timeout),
            Ok(Err(e)) => run.error = format!("could not start `sh -c {cmd}`: {e}"),
            Ok(Ok(out)) => {
                run.exit_code = out.status.code();
                let text = |b: &[u8]| String::from_utf8_lossy(b).trim().chars().take(2000).collect::<String>();
                if !out.status.success() {
                    run.error = format!("exited with {}: {}", out.status, text(&out.stderr));
                }
                if !out.stdout.is_empty() {
                    tracing::info!(role = ev.role, "hook output: {}", text(&out.stdout));
                }
            }
        }
        run.duration_ms = started.elapsed().as_millis() as u64;
        node.metrics.observe_hook(ev.role, run.error.is_empty());
        if run.error.is_empty() {
            tracing::info!(role = ev.role, term = ev.term, ms = run.duration_ms, "hook succeeded");
        } else {
            tracing::error!(role = ev.role, term = ev.term, "hook failed: {}", run.error);
            let inc = Incident::new(
                kind::HOOK_FAILED,
                SERIOUS,
                run.started_ms,
                format!("the {} hook on node {} {}", ev.role, node.id, run.error),
                vec![node.id],
                node.id,
            )
            .with_vi(format!(
                "hook {} trên nút {} không thành công: {}",
                ev.role, node.id, run.error
            ));
            let n = node.clone();
            tokio::spawn(async move { record_with_retry(&n, inc).await });
        }
        node.roles.push_run(run);
    }
}

/// Record an incident from any node, retrying while there is no leader
/// (for up to a minute).
async fn record_with_retry(node: &Arc<Node>, mut inc: Incident) {
    let mut left = 60;
    loop {
        match crate::forward::record_incident(node, inc.clone()).await {
            Ok(_) => return,
            Err(e) if left > 0 && !node.is_stopping() => {
                tracing::debug!("incident not recorded yet: {e}");
                left -= 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                if inc.end_ms.is_none() && inc.kind == kind::QUORUM_LOST {
                    inc.end_ms = Some(now_ms());
                }
            }
            Err(e) => {
                tracing::error!("could not record incident {:?}: {e}", inc.kind);
                return;
            }
        }
    }
}

/// What the incident detector remembers between checks.
#[derive(Default)]
struct IncidentWatch {
    /// The last leader this node knew, and when it last knew it.
    last_leader: Option<(u64, u64)>,
    /// When this node noticed the leader it knew was gone.
    leader_lost_ms: Option<u64>,
    /// The term this node last recorded a leader change for.
    recorded_term: u64,
    /// On the leader: open unreachable incidents by node (id, start).
    unreachable: BTreeMap<u64, (u64, u64, bool)>,
    unreachable_term: u64,
    /// On a leader that lost its quorum: since when.
    quorum_lost_ms: Option<u64>,
    /// The term this node leads and since when.
    leader_since: Option<(u64, Instant)>,
    /// The leader this node took over from, and when it was lost.
    prev_leader: Option<(u64, u64)>,
}

impl IncidentWatch {
    /// Every tick: follow who leads (`heard_ms`: when this node last heard
    /// from a leader; `grace`: how long a new leader may go without a
    /// quorum acknowledgement before it counts as having lost its quorum).
    fn observe(&mut self, me: u64, m: &RaftMetrics, heard_ms: u64, grace: Duration) {
        let now = now_ms();
        match m.current_leader {
            // Following another node: that is the leader now.
            Some(l) if l != me => {
                self.last_leader = Some((l, now));
                self.leader_lost_ms = None;
            }
            // Leading, or no leader known: remember when the previous
            // leader was lost (`leader_change` records it once this node
            // leads with a lease).
            _ => {
                if self.last_leader.is_some_and(|(l, _)| l != me) && self.leader_lost_ms.is_none() {
                    // The interruption began when this node last heard
                    // from that leader, not when it noticed.
                    self.leader_lost_ms = Some(if heard_ms > 0 && heard_ms <= now { heard_ms } else { now });
                }
            }
        }
        if m.state == ServerState::Leader {
            if self.leader_since.is_none_or(|(t, _)| t != m.current_term) {
                self.leader_since = Some((m.current_term, Instant::now()));
            }
        } else {
            self.leader_since = None;
        }
        // A leader without a quorum.
        let lease_lost = m.state == ServerState::Leader
            && self.leader_since.is_some_and(|(_, t)| t.elapsed() > grace)
            && m.membership_config.membership().voter_ids().count() > 1
            && m.last_quorum_acked.as_ref().is_none_or(|t| t.elapsed() > grace);
        if lease_lost && self.quorum_lost_ms.is_none() {
            self.quorum_lost_ms = Some(now);
        }
    }

    /// On a leader holding its lease, every tick: the change of leader to
    /// record, once per term, once this node has applied its first entry of
    /// the term (so it sees everything the old leader committed, such as a
    /// planned-transfer marker). A new leader that dies quickly still
    /// leaves a record.
    fn leader_change(
        &mut self,
        me: u64,
        m: &RaftMetrics,
        planned: impl FnOnce() -> Option<PlannedTransfer>,
        cfg: &IncidentsConfig,
    ) -> Option<Incident> {
        let now = now_ms();
        let caught_up = m.last_applied.is_some_and(|a| a.leader_id.term == m.current_term);
        if self.recorded_term == m.current_term || !caught_up {
            return None;
        }
        self.recorded_term = m.current_term;
        let prev = self.last_leader.filter(|(l, _)| *l != me).map(|(l, _)| l);
        self.prev_leader = None;
        self.last_leader = Some((me, now));
        let start = self.leader_lost_ms.take().unwrap_or(now);
        let prev = prev?;
        self.prev_leader = Some((prev, start));
        let gap = now.saturating_sub(start);
        let planned = planned().filter(|p| p.to == me && p.from == prev && now.saturating_sub(p.at_ms) < 30_000);
        let severity = if planned.is_none() && gap > cfg.leaderless_serious_after.as_millis() as u64 {
            SERIOUS
        } else {
            ORDINARY
        };
        let (cause, cause_vi) = match &planned {
            Some(p) => (
                format!(
                    "planned leadership transfer ({}) from node {prev} to node {me}",
                    p.reason
                ),
                format!(
                    "chuyển giao lãnh đạo có kế hoạch ({}) từ nút {prev} sang nút {me}",
                    p.reason
                ),
            ),
            None => (
                format!(
                    "node {me} was elected in term {} after node {prev} stopped leading (no heartbeat reached a quorum, or it stepped down); {gap} ms after node {me} last heard from the old leader",
                    m.current_term
                ),
                format!(
                    "nút {me} được bầu ở nhiệm kỳ {} sau khi nút {prev} thôi lãnh đạo (nhịp tim không tới được đa số, hoặc nút đó tự rút); {gap} ms sau lần cuối nút {me} nhận được tin từ nút lãnh đạo cũ",
                    m.current_term
                ),
            ),
        };
        Some(Incident {
            end_ms: Some(now),
            term: m.current_term,
            ..Incident::new(kind::LEADER_CHANGE, severity, start, cause, vec![prev, me], me).with_vi(cause_vi)
        })
    }

    /// A lost quorum that is regained (as leader again, or following
    /// someone): the incident to record from this node.
    fn quorum_regained(&mut self, me: u64, m: &RaftMetrics, active: bool, grace: Duration) -> Option<Incident> {
        let since = self.quorum_lost_ms?;
        if !(active || m.state != ServerState::Leader) {
            return None;
        }
        self.quorum_lost_ms = None;
        Some(Incident {
            end_ms: Some(now_ms()),
            term: m.current_term,
            ..Incident::new(
                kind::QUORUM_LOST,
                SERIOUS,
                since,
                format!(
                    "node {me} led term {} but heard from no quorum for over {grace:?}; writes through it failed",
                    m.current_term
                ),
                vec![me],
                me,
            )
            .with_vi(format!(
                "nút {me} lãnh đạo nhiệm kỳ {} nhưng không nhận được tin từ đa số trong hơn {grace:?}; các lần ghi qua nút này đều thất bại",
                m.current_term
            ))
        })
    }

    /// On the leader holding its lease: open, escalate and close the
    /// incidents of members that do not acknowledge it. A new leader first
    /// adopts the open incidents of the old one, so they are closed
    /// exactly once.
    async fn check_members(
        &mut self,
        plane: &impl ControlPlane,
        me: u64,
        m: &RaftMetrics,
        active: bool,
        cfg: &IncidentsConfig,
        budget: Duration,
    ) {
        let now = now_ms();
        if !active {
            if m.state != ServerState::Leader {
                self.unreachable.clear();
                self.unreachable_term = 0;
            }
            return;
        }
        if self.unreachable_term != m.current_term {
            self.unreachable_term = m.current_term;
            self.unreachable.clear();
            if let Ok(all) = incidents::list(plane) {
                for i in all
                    .into_iter()
                    .filter(|i| i.kind == kind::NODE_UNREACHABLE && i.end_ms.is_none())
                {
                    if let Some(n) = i.nodes.first() {
                        self.unreachable.insert(*n, (i.id, i.start_ms, i.severity == SERIOUS));
                    }
                }
            }
        }
        let Some(hb) = m.heartbeat.as_ref() else { return };
        for (id, last) in hb {
            if *id == me {
                continue;
            }
            let age = last.as_ref().map(|t| t.elapsed());
            // A new leader has no acknowledgement from anyone yet: give
            // every member `unreachable-after` from the election first.
            let lead_for = self.leader_since.map_or(Duration::ZERO, |(_, t)| t.elapsed());
            let down = match age {
                Some(a) => a > cfg.unreachable_after,
                None => lead_for > cfg.unreachable_after,
            };
            match (down, self.unreachable.get(id).copied()) {
                (true, None) => {
                    let start = match age {
                        Some(a) => now.saturating_sub(a.as_millis() as u64),
                        // The old leader was lost when this node last heard
                        // from it; others since this node leads.
                        None => match self.prev_leader {
                            Some((p, lost)) if p == *id => lost,
                            _ => now.saturating_sub(lead_for.as_millis() as u64),
                        },
                    };
                    let inc = Incident {
                        term: m.current_term,
                        ..Incident::new(
                            kind::NODE_UNREACHABLE,
                            ORDINARY,
                            start,
                            format!(
                                "node {id} has not acknowledged leader {me} for over {:?} (stopped, crashed or cut off)",
                                cfg.unreachable_after
                            ),
                            vec![*id],
                            me,
                        )
                        .with_vi(format!(
                            "nút {id} không phản hồi nút lãnh đạo {me} trong hơn {:?} (đã dừng, bị sập hoặc bị cắt mạng)",
                            cfg.unreachable_after
                        ))
                    };
                    match incidents::record(plane, inc, budget).await {
                        Ok(iid) => {
                            self.unreachable.insert(*id, (iid, start, false));
                        }
                        Err(e) => tracing::warn!("cannot record that node {id} is unreachable: {e}"),
                    }
                }
                (true, Some((iid, start, false)))
                    if now.saturating_sub(start) > cfg.node_down_serious_after.as_millis() as u64 =>
                {
                    if let Ok(mut inc) = incidents::get(plane, iid) {
                        inc.severity = SERIOUS.into();
                        inc.add_to_cause(
                            &format!(
                                "; still unreachable after {:?}, so the cluster has run with less redundancy for too long",
                                cfg.node_down_serious_after
                            ),
                            &format!(
                                "; vẫn không liên lạc được sau {:?}, nên cụm đã chạy với ít bản sao dự phòng quá lâu",
                                cfg.node_down_serious_after
                            ),
                        );
                        if incidents::update(plane, &inc, budget).await.is_ok() {
                            self.unreachable.insert(*id, (iid, start, true));
                        }
                    }
                }
                (false, Some((iid, _, _))) => {
                    if let Ok(mut inc) = incidents::get(plane, iid) {
                        inc.end_ms = Some(now.saturating_sub(age.map_or(0, |a| a.as_millis() as u64)));
                        inc.add_to_cause(
                            &format!("; node {id} answered again"),
                            &format!("; nút {id} đã phản hồi trở lại"),
                        );
                        if incidents::update(plane, &inc, budget).await.is_ok() {
                            self.unreachable.remove(id);
                        }
                    } else {
                        self.unreachable.remove(id);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
