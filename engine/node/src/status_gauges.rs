//! Gauges read from the control plane, so Prometheus can alert on what the
//! cluster recorded (docs/operations.md, the alert rules in
//! docs/deploy/prometheus): the last scheduled backup, and the incidents
//! still open. Every node reads its own replica every [`EVERY`], so any
//! node that is scraped answers (a follower's view may trail the leader's
//! by the replication lag).

use std::sync::Arc;
use std::time::Duration;

use sen_raft::schema::system::{
    BACKUP_RUN_PREFIX, BACKUP_SCHEDULE_KEY, INCIDENT_PREFIX, Incident, RunRecord, SERIOUS, Schedule, SystemRecord,
    run_state,
};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::system::{self, ControlPlane};

/// How often the gauges are refreshed.
pub const EVERY: Duration = Duration::from_secs(15);

/// What the gauges show.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status {
    /// End of the last scheduled backup that succeeded (ms; 0: none).
    pub last_backup_success_ms: u64,
    /// The last finished scheduled run failed.
    pub last_backup_failed: bool,
    /// The schedule's slot (ms; 0: no schedule).
    pub backup_every_ms: u64,
    pub open_serious: u64,
    pub open_ordinary: u64,
    /// Age of the oldest open serious incident (ms; 0: none).
    pub oldest_open_serious_ms: u64,
}

/// Read the status from `cp` at `now` (records that do not decode are
/// left out).
pub fn read(cp: &impl ControlPlane, now: u64) -> Result<Status, ApiError> {
    let mut s = Status::default();
    if let Some((sched, _)) = system::read::<Schedule>(cp, BACKUP_SCHEDULE_KEY)? {
        s.backup_every_ms = sched.every_ms;
    }
    // Runs are keyed by slot, oldest first: the last finished one wins.
    system::each_value(cp, BACKUP_RUN_PREFIX.as_bytes(), None, usize::MAX, |v| {
        let Ok(r) = RunRecord::from_json(v) else { return };
        match r.state.as_str() {
            run_state::SUCCEEDED => {
                s.last_backup_success_ms = s.last_backup_success_ms.max(r.ended_ms);
                s.last_backup_failed = false;
            }
            run_state::FAILED => s.last_backup_failed = true,
            _ => {}
        }
    })?;
    system::each_value(cp, INCIDENT_PREFIX.as_bytes(), None, usize::MAX, |v| {
        let Ok(i) = Incident::from_json(v) else { return };
        if i.end_ms.is_some() {
            return;
        }
        if i.severity == SERIOUS {
            s.open_serious += 1;
            s.oldest_open_serious_ms = s.oldest_open_serious_ms.max(i.duration_ms(now));
        } else {
            s.open_ordinary += 1;
        }
    })?;
    Ok(s)
}

fn publish(m: &Metrics, s: &Status) {
    m.backup_last_success.set((s.last_backup_success_ms / 1000) as i64);
    m.backup_last_failed.set(i64::from(s.last_backup_failed));
    m.backup_every.set((s.backup_every_ms / 1000) as i64);
    for (severity, n) in [("serious", s.open_serious), ("ordinary", s.open_ordinary)] {
        m.incidents_open
            .get_or_create(&crate::metrics::SeverityLabel {
                severity: severity.into(),
            })
            .set(n as i64);
    }
    m.oldest_open_serious.set((s.oldest_open_serious_ms / 1000) as i64);
}

/// Refresh the gauges until `stop`.
pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if node.cluster_id().is_none() {
            continue;
        }
        crate::archive::live_status(&node);
        let n = node.clone();
        match tokio::task::spawn_blocking(move || read(n.as_ref(), sen_core::now_ms())).await {
            Ok(Ok(s)) => publish(&node.metrics, &s),
            Ok(Err(e)) => tracing::debug!("reading the status gauges: {e}"),
            Err(e) => tracing::debug!("status gauges task: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::testing::MemControlPlane;
    use sen_raft::schema::system::{ORDINARY, backup_run_key, incident_key, kind};

    const H: u64 = 3_600_000;

    async fn put<T: SystemRecord>(cp: &MemControlPlane, key: Vec<u8>, r: &T) {
        cp.propose(system::put_op(key, r).unwrap(), Duration::from_secs(1))
            .await
            .unwrap();
    }

    fn run(slot: u64, state: &str, ended_ms: u64) -> RunRecord {
        RunRecord {
            slot,
            state: state.into(),
            ended_ms,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_last_run_and_the_open_incidents_are_read() {
        let cp = MemControlPlane::default();
        let now = 100 * H;
        assert_eq!(read(&cp, now).unwrap(), Status::default());

        put(&cp, backup_run_key(1), &run(1, run_state::SUCCEEDED, 90 * H)).await;
        put(&cp, backup_run_key(2), &run(2, run_state::FAILED, 95 * H)).await;
        put(&cp, backup_run_key(3), &run(3, run_state::RUNNING, 0)).await;
        let mut serious = Incident::new(kind::QUORUM_LOST, SERIOUS, 70 * H, "no leader".into(), vec![1], 1);
        serious.id = 1;
        put(&cp, incident_key(1), &serious).await;
        let mut closed = Incident::new(kind::QUORUM_LOST, SERIOUS, 10 * H, "no leader".into(), vec![1], 1);
        closed.id = 2;
        closed.end_ms = Some(11 * H);
        put(&cp, incident_key(2), &closed).await;
        let mut ordinary = Incident::new(kind::LEADER_CHANGE, ORDINARY, 99 * H, "new leader".into(), vec![2], 2);
        ordinary.id = 3;
        put(&cp, incident_key(3), &ordinary).await;

        let s = read(&cp, now).unwrap();
        assert_eq!(s.last_backup_success_ms, 90 * H);
        assert!(s.last_backup_failed, "run 2 failed after run 1 succeeded");
        assert_eq!((s.open_serious, s.open_ordinary), (1, 1));
        assert_eq!(s.oldest_open_serious_ms, 30 * H);

        // A later success clears the failure.
        put(&cp, backup_run_key(4), &run(4, run_state::SUCCEEDED, 99 * H)).await;
        let s = read(&cp, now).unwrap();
        assert_eq!((s.last_backup_success_ms, s.last_backup_failed), (99 * H, false));

        let m = Metrics::new(1);
        publish(&m, &s);
        let text = m.render_text();
        assert!(
            text.contains("sen_incidents_open{node=\"1\",severity=\"serious\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("sen_backup_last_success_timestamp_seconds{node=\"1\"} 356400\n"),
            "{text}"
        );
        assert!(
            text.contains("sen_incident_oldest_open_serious_seconds{node=\"1\"} 108000\n"),
            "{text}"
        );
    }
}
