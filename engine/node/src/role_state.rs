//! What the role task ([`crate::roles`]) knows about this node's role,
//! shared with the services: whether it holds a fenced leader lease, when
//! it last heard from a leader, whether it is drained, and the last hook
//! runs. Plain atomics: no dependency on the rest of the node.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Hook runs kept in memory for the status page.
const KEEP_RUNS: usize = 100;

/// One finished hook run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    pub role: String,
    pub term: u64,
    pub started_ms: u64,
    pub duration_ms: u64,
    /// Exit code; `None` if killed on timeout or not started.
    pub exit_code: Option<i32>,
    pub error: String,
}

#[derive(Default)]
pub struct RoleState {
    /// This node holds a leader lease and ran (or is running) on_leader.
    active: AtomicBool,
    /// When this node last accepted an AppendEntries (ms since the epoch):
    /// the last time it heard from a leader.
    last_heard_leader_ms: AtomicU64,
    drained: AtomicBool,
    runs: Mutex<VecDeque<HookRun>>,
    /// The leader this node last saw (0: none).
    leader: AtomicU64,
    /// Woken when this node loses its lease or sees another leader (or
    /// none): writes waiting on the old leader give up at once.
    moved: tokio::sync::Notify,
}

impl RoleState {
    pub fn is_active_leader(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Record whether this node holds the lease now; returns the previous value.
    pub fn set_active_leader(&self, active: bool) -> bool {
        let was = self.active.swap(active, Ordering::SeqCst);
        if was && !active {
            self.moved.notify_waiters();
        }
        was
    }

    /// Record the leader this node sees (`None`: no leader known).
    pub fn observe_leader(&self, leader: Option<u64>) {
        let id = leader.unwrap_or(0);
        if self.leader.swap(id, Ordering::SeqCst) != id {
            self.moved.notify_waiters();
        }
    }

    /// Resolves at the next lease loss or leader change (see `moved`).
    /// Enable it (`Notified::enable`) before checking the condition it
    /// waits for, or a change in between is missed.
    pub fn moved(&self) -> tokio::sync::futures::Notified<'_> {
        self.moved.notified()
    }

    /// Called for every AppendEntries this node accepts.
    pub fn heard_from_leader(&self) {
        self.last_heard_leader_ms.store(sen_core::now_ms(), Ordering::Relaxed);
    }

    /// When this node last heard from a leader (0: never, since start).
    pub fn last_heard_leader_ms(&self) -> u64 {
        self.last_heard_leader_ms.load(Ordering::Relaxed)
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::SeqCst)
    }

    /// Record the drain flag; returns the previous value.
    pub fn set_drained(&self, drained: bool) -> bool {
        self.drained.swap(drained, Ordering::SeqCst)
    }

    /// Keep a finished hook run (the last 100).
    pub fn push_run(&self, run: HookRun) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.push_back(run);
        while runs.len() > KEEP_RUNS {
            runs.pop_front();
        }
    }

    pub fn hook_runs(&self) -> Vec<HookRun> {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// How long a leader `me` with other voters has gone without a quorum
/// acknowledging it; `None` when it does not lead, is the only voter, or
/// has not been acknowledged yet in this term (just elected).
pub fn quorum_silence(me: u64, m: &sen_raft::RaftMetrics) -> Option<std::time::Duration> {
    if m.state != openraft::ServerState::Leader || m.current_leader != Some(me) {
        return None;
    }
    let mut voters = m.membership_config.membership().voter_ids();
    if voters.next() == Some(me) && voters.next().is_none() {
        return None;
    }
    use openraft::Instant as _;
    m.last_quorum_acked.as_ref().map(|t| t.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_hundred_runs_in_order() {
        let s = RoleState::default();
        for term in 0..150 {
            s.push_run(HookRun {
                role: "leader".into(),
                term,
                started_ms: 0,
                duration_ms: 0,
                exit_code: Some(0),
                error: String::new(),
            });
        }
        let runs = s.hook_runs();
        assert_eq!(runs.len(), 100);
        assert_eq!((runs[0].term, runs[99].term), (50, 149));
    }

    #[test]
    fn swaps_return_the_previous_value() {
        let s = RoleState::default();
        assert!(!s.set_active_leader(true));
        assert!(s.set_active_leader(false));
        assert!(!s.set_drained(true));
        assert!(s.is_drained());
        assert_eq!(s.last_heard_leader_ms(), 0);
        s.heard_from_leader();
        assert!(s.last_heard_leader_ms() > 0);
    }
}
