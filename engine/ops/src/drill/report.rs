//! A drill's report, computed from what its probes recorded: no network,
//! so every figure (RTO, read gaps, RPO, the timeline) is unit-tested from
//! recorded timelines.

use std::collections::{BTreeMap, BTreeSet};

use sen_raft::schema::system::{DrillReport, DrillTimeline, SystemRecord};

use super::{DrillParams, Scenario};

/// One probe attempt (times in ms after the drill began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub node: u64,
    /// A KV write (else an HTTP read of the probe file).
    pub write: bool,
    pub start_ms: u64,
    pub end_ms: u64,
    pub ok: bool,
    /// The key written (writes only).
    pub key: String,
}

/// Everything a drill observed.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub probes: Vec<Probe>,
    /// `(ms, leader)` samples of who leads (0: none known).
    pub leaders: Vec<(u64, u64)>,
    pub nodes: Vec<u64>,
    pub leader_before: u64,
    pub leader_after: u64,
    pub fault_start_ms: u64,
    pub fault_end_ms: u64,
    pub target_caught_up_ms: Option<u64>,
    pub probes_stopped_ms: u64,
    /// Probe keys present afterwards on the leader (linearizable read).
    pub on_leader: BTreeSet<Vec<u8>>,
    /// Probe keys present on each node once it caught up (nodes that could
    /// not be read are absent).
    pub on_nodes: BTreeMap<u64, BTreeSet<Vec<u8>>>,
    pub notes: Vec<String>,
}

/// Longest interval without a success that overlaps `[from, to]`,
/// counting from the last success before `from`.
pub fn longest_gap(mut successes: Vec<u64>, from: u64, to: u64) -> u64 {
    successes.sort_unstable();
    let before = successes.iter().copied().filter(|t| *t <= from).max().unwrap_or(from);
    let mut prev = before;
    let mut worst = 0;
    for t in successes.into_iter().filter(|t| *t > from && *t <= to) {
        worst = worst.max(t - prev);
        prev = t;
    }
    worst.max(to.saturating_sub(prev))
}

/// The report of drill `id` (its `started_at_ms` and `incident_id` are set
/// by the caller).
pub fn compute(id: &str, p: &DrillParams, target: u64, obs: Observations) -> DrillReport {
    let probes = &obs.probes;
    let acked: Vec<&Probe> = probes.iter().filter(|p| p.write && p.ok).collect();
    let lost_writes = acked
        .iter()
        .filter(|p| !obs.on_leader.contains(p.key.as_bytes()))
        .count() as u64;
    let writes_unknown_applied = probes
        .iter()
        .filter(|p| p.write && !p.ok && obs.on_leader.contains(p.key.as_bytes()))
        .count() as u64;
    let missing_by_node: BTreeMap<u64, u64> = obs
        .on_nodes
        .iter()
        .map(|(n, have)| {
            (
                *n,
                acked.iter().filter(|p| !have.contains(p.key.as_bytes())).count() as u64,
            )
        })
        .collect();

    // Timeline and gaps.
    let fault_start_ms = obs.fault_start_ms;
    let first_failed_request_ms = probes
        .iter()
        .filter(|p| !p.ok && p.end_ms >= fault_start_ms)
        .map(|p| p.start_ms.max(fault_start_ms))
        .min();
    let new_leader_elected_ms = obs
        .leaders
        .iter()
        .find(|(t, l)| *t >= fault_start_ms && *l != 0 && *l != obs.leader_before)
        .map(|(t, _)| *t);
    let after = first_failed_request_ms.unwrap_or(fault_start_ms);
    let first_write_after_failure_ms = probes
        .iter()
        .filter(|p| p.write && p.ok && p.start_ms >= after)
        .map(|p| p.end_ms)
        .min();
    // From the fault until probing stopped (1 s after the target caught
    // up): the whole disturbance and recovery, as clients saw it.
    let window_end = obs.probes_stopped_ms.max(obs.fault_end_ms);
    let successes = |write: bool, node: Option<u64>| -> Vec<u64> {
        probes
            .iter()
            .filter(|p| p.write == write && p.ok && node.is_none_or(|n| p.node == n))
            .map(|p| p.end_ms)
            .collect()
    };
    let rto_ms = longest_gap(successes(true, None), fault_start_ms, window_end);
    let read_gap_ms = longest_gap(successes(false, None), fault_start_ms, window_end);
    let read_gap_by_node_ms: BTreeMap<u64, u64> = obs
        .nodes
        .iter()
        .map(|n| (*n, longest_gap(successes(false, Some(*n)), fault_start_ms, window_end)))
        .collect();

    let objectives = p.objectives();
    let mut failures = Vec::new();
    if lost_writes > 0 {
        failures.push(format!("{lost_writes} acknowledged writes are missing"));
    }
    if missing_by_node.values().sum::<u64>() > 0 {
        failures.push(format!(
            "acknowledged writes missing on nodes after catch-up: {missing_by_node:?}"
        ));
    }
    if rto_ms > objectives.rto_ms {
        failures.push(format!(
            "write gap {rto_ms} ms exceeds the objective {} ms",
            objectives.rto_ms
        ));
    }
    if read_gap_ms > objectives.read_gap_ms {
        failures.push(format!(
            "read gap {read_gap_ms} ms exceeds the objective {} ms",
            objectives.read_gap_ms
        ));
    }
    if obs.target_caught_up_ms.is_none() {
        failures.push(format!(
            "node {target} did not come back and catch up within 60 s of the fault's end"
        ));
    }
    if obs.leader_after == 0 {
        failures.push("no leader after the drill".into());
    }
    DrillReport {
        version: DrillReport::VERSION,
        id: id.to_owned(),
        scenario: p.scenario.name().into(),
        target,
        started_at_ms: 0,
        fault_ms: if p.scenario == Scenario::Switchover {
            0
        } else {
            p.duration.as_millis() as u64
        },
        probe_rate: p.probe_rate,
        nodes: obs.nodes.clone(),
        leader_before: obs.leader_before,
        leader_after: obs.leader_after,
        timeline: DrillTimeline {
            fault_start_ms,
            first_failed_request_ms,
            new_leader_elected_ms,
            first_write_after_failure_ms,
            fault_end_ms: obs.fault_end_ms,
            target_caught_up_ms: obs.target_caught_up_ms,
            probes_stopped_ms: obs.probes_stopped_ms,
        },
        rto_ms,
        read_gap_ms,
        read_gap_by_node_ms,
        writes_attempted: probes.iter().filter(|p| p.write).count() as u64,
        writes_acknowledged: acked.len() as u64,
        writes_failed: probes.iter().filter(|p| p.write && !p.ok).count() as u64,
        writes_unknown_applied,
        reads_attempted: probes.iter().filter(|p| !p.write).count() as u64,
        reads_ok: probes.iter().filter(|p| !p.write && p.ok).count() as u64,
        lost_writes,
        missing_by_node,
        objectives,
        passed: failures.is_empty(),
        failures,
        notes: obs.notes,
        incident_id: 0,
    }
}

#[cfg(test)]
mod tests;
