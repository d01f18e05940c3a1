//! Offline checkers over a saved run: the history, the request ids and
//! digests dumped from the nodes after healing, and the sampled metrics.
//!
//! - [`lin`]: linearizability per key (register model with put, cas,
//!   append, linearizable get).
//! - [`check_writes`]: every acknowledged write is in the replicated state
//!   (its request id is applied, at the acknowledged revision); append
//!   tokens are neither lost, duplicated nor invented (set checker).
//! - [`check_stale_reads`]: stale reads only return values some write
//!   wrote.
//! - [`check_convergence`]: equal digests at equal applied indexes.
//! - [`check_invariants`]: at most one leader per term; term, commit and
//!   applied never decrease within one process lifetime.

pub mod lin;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::history::{Op, OpKind, Outcome};
use lin::{Event, RegIn, RegOut, Register, Verdict};

/// What the nodes reported after healing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dumps {
    /// Per node: applied index and state digest.
    pub digests: BTreeMap<u64, (u64, String)>,
    /// Per node: request id (hex) → revision, for every request applied in
    /// the deduplication window.
    pub applied: BTreeMap<u64, BTreeMap<String, u64>>,
    /// Per node: final value of every append key (stale read after
    /// convergence).
    pub final_values: BTreeMap<u64, BTreeMap<String, Option<String>>>,
    /// Nodes that could not be reached for the dumps (left out of the
    /// node-by-node checks).
    pub unreachable: Vec<u64>,
}

/// One metrics sample of one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub t_us: u64,
    pub node: u64,
    pub started_at_ms: u64,
    pub state: String,
    pub term: u64,
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
}

/// Result of the linearizability check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinResult {
    /// "true", "false" or "unknown".
    pub linearizable: String,
    pub keys_checked: usize,
    pub ops_checked: usize,
    pub keys_unknown: Vec<String>,
    pub violations: Vec<LinViolation>,
    pub millis: u128,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinViolation {
    pub key: String,
    /// Op ids linearized before the search got stuck.
    pub prefix: Vec<u64>,
    /// The op id that could not be placed.
    pub stuck_op: u64,
}

/// Check every key's sub-history; `budget` bounds the whole search.
pub fn check_linearizability(ops: &[Op], budget: Duration) -> LinResult {
    let started = Instant::now();
    let deadline = started + budget;
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        let include = match (op.f, op.outcome) {
            (OpKind::GetStale, _) => false,
            (OpKind::Get, Outcome::Ok) => true,
            (OpKind::Get, _) => false,
            (_, Outcome::Fail) => false,
            _ => true,
        };
        if include {
            by_key.entry(op.key.as_str()).or_default().push(op);
        }
    }
    let mut result = LinResult {
        linearizable: "true".into(),
        keys_checked: by_key.len(),
        ops_checked: by_key.values().map(Vec::len).sum(),
        keys_unknown: Vec::new(),
        violations: Vec::new(),
        millis: 0,
    };
    for (key, kops) in &by_key {
        let events: Vec<Event<RegIn, RegOut>> = kops.iter().map(|op| to_event(op)).collect();
        match lin::check(&Register, &events, Some(deadline)) {
            Verdict::Ok => {}
            Verdict::Unknown => result.keys_unknown.push((*key).to_owned()),
            Verdict::Illegal { prefix, stuck } => result.violations.push(LinViolation {
                key: (*key).to_owned(),
                prefix: prefix.iter().map(|i| kops[*i].id).collect(),
                stuck_op: kops[stuck].id,
            }),
        }
    }
    result.linearizable = if !result.violations.is_empty() {
        "false"
    } else if !result.keys_unknown.is_empty() {
        "unknown"
    } else {
        "true"
    }
    .into();
    result.millis = started.elapsed().as_millis();
    result
}

fn to_event(op: &Op) -> Event<RegIn, RegOut> {
    let ret = match (op.outcome, op.complete_us) {
        (Outcome::Ok, Some(c)) => c,
        _ => u64::MAX,
    };
    let (input, output) = match op.f {
        OpKind::Put => (RegIn::Put(op.value.clone().unwrap_or_default()), RegOut::Done),
        OpKind::Append => (RegIn::Append(op.value.clone().unwrap_or_default()), RegOut::Done),
        OpKind::Cas => (
            RegIn::Cas(op.expect.clone(), op.value.clone().unwrap_or_default()),
            RegOut::Cas(if op.outcome == Outcome::Ok { op.succeeded } else { None }),
        ),
        OpKind::Get | OpKind::GetStale => (RegIn::Get, RegOut::Read(op.read.clone().flatten())),
    };
    Event {
        input,
        output,
        call: op.invoke_us,
        ret,
    }
}

/// Use the request ids the nodes applied to settle unknown writes: one that
/// was applied took effect; one that was not (while the dump covers the
/// whole run) never did and is dropped. Returns (applied, dropped) counts.
pub fn resolve_unknowns(ops: &mut Vec<Op>, applied: &BTreeMap<String, u64>, dump_covers_run: bool) -> (usize, usize) {
    let mut recovered = 0;
    let mut dropped = 0;
    ops.retain_mut(|op| {
        if op.outcome != Outcome::Unknown || !op.f.is_write() {
            return true;
        }
        match op.request_id.as_ref().and_then(|r| applied.get(r)) {
            Some(rev) => {
                op.revision = Some(*rev);
                recovered += 1;
                true
            }
            None if dump_covers_run => {
                dropped += 1;
                false
            }
            None => true,
        }
    });
    (recovered, dropped)
}

/// Result of the write checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WriteCheck {
    pub acked_writes: usize,
    pub unknown_writes: usize,
    /// Unknown writes found applied.
    pub recovered: usize,
    /// Acknowledged writes missing from the replicated state (request id
    /// not applied, or append token absent) — lost writes.
    pub lost: Vec<String>,
    /// Acknowledged at one revision, applied at another.
    pub revision_mismatch: Vec<String>,
    /// Append tokens present more than once (applied twice).
    pub duplicated: Vec<String>,
    /// Append tokens no client ever sent.
    pub unexpected: Vec<String>,
    /// Nodes whose applied request ids differ from the others'.
    pub diverged_nodes: Vec<u64>,
}

/// Check acknowledged writes against the nodes' dumps.
pub fn check_writes(ops: &[Op], dumps: &Dumps) -> WriteCheck {
    let mut wc = WriteCheck::default();
    // All reachable nodes must agree on which requests were applied.
    let reference: Option<&BTreeMap<String, u64>> = dumps.applied.values().max_by_key(|m| m.len());
    if let Some(r) = reference {
        for (node, m) in &dumps.applied {
            if m != r {
                wc.diverged_nodes.push(*node);
            }
        }
    }
    let empty = BTreeMap::new();
    let applied = reference.unwrap_or(&empty);
    for op in ops.iter().filter(|o| o.f.is_write()) {
        match op.outcome {
            Outcome::Ok => {
                wc.acked_writes += 1;
                let rid = op.request_id.clone().unwrap_or_default();
                match applied.get(&rid) {
                    None => wc
                        .lost
                        .push(format!("op {} {:?} {} (request {rid})", op.id, op.f, op.key)),
                    Some(rev) if Some(*rev) != op.revision => wc.revision_mismatch.push(format!(
                        "op {} acked at revision {:?}, applied at {rev}",
                        op.id, op.revision
                    )),
                    Some(_) => {}
                }
            }
            Outcome::Unknown => {
                wc.unknown_writes += 1;
                if op.request_id.as_ref().is_some_and(|r| applied.contains_key(r)) {
                    wc.recovered += 1;
                }
            }
            Outcome::Fail => {}
        }
    }
    // Set checker over append tokens, on every node's final state.
    let mut attempted: HashMap<&str, (&str, Outcome)> = HashMap::new();
    for op in ops.iter().filter(|o| o.f == OpKind::Append) {
        if let Some(t) = op.value.as_deref() {
            attempted.insert(t, (op.key.as_str(), op.outcome));
        }
    }
    let mut lost: BTreeSet<String> = BTreeSet::new();
    for (node, values) in &dumps.final_values {
        for (key, value) in values {
            let mut count: HashMap<String, usize> = HashMap::new();
            for t in value.as_deref().unwrap_or("").split_inclusive(';') {
                *count.entry(t.to_owned()).or_default() += 1;
            }
            for (t, n) in &count {
                match attempted.get(t.as_str()) {
                    None => wc.unexpected.push(format!("node {node} key {key}: token {t:?}")),
                    Some((k, _)) if *k != key => wc
                        .unexpected
                        .push(format!("node {node} key {key}: token {t:?} of key {k}")),
                    Some(_) if *n > 1 => wc.duplicated.push(format!("node {node} key {key}: token {t:?} ×{n}")),
                    Some(_) => {}
                }
            }
            for (t, (k, outcome)) in &attempted {
                if *k == key && *outcome == Outcome::Ok && !count.contains_key(*t) {
                    lost.insert(format!("append {t:?} to {key} (missing on node {node})"));
                }
            }
        }
    }
    wc.lost.extend(lost);
    wc
}

/// Stale reads must return a value that was written to that key (or
/// nothing): no phantoms.
pub fn check_stale_reads(ops: &[Op]) -> Vec<String> {
    let mut written: HashMap<&str, HashSet<&str>> = HashMap::new();
    for op in ops.iter().filter(|o| o.f.is_write()) {
        if let Some(v) = op.value.as_deref() {
            written.entry(op.key.as_str()).or_default().insert(v);
        }
    }
    let mut out = Vec::new();
    for op in ops
        .iter()
        .filter(|o| o.f == OpKind::GetStale && o.outcome == Outcome::Ok)
    {
        let Some(Some(v)) = &op.read else { continue };
        let ok = if op.key.starts_with('a') {
            // An append value is a concatenation of written tokens.
            let tokens = written.get(op.key.as_str());
            v.split_inclusive(';').all(|t| tokens.is_some_and(|s| s.contains(t)))
        } else {
            written.get(op.key.as_str()).is_some_and(|s| s.contains(v.as_str()))
        };
        if !ok {
            out.push(format!(
                "op {}: stale read of {} returned {v:?}, which was never written",
                op.id, op.key
            ));
        }
    }
    out
}

/// Convergence: every reachable node at the same applied index with the
/// same digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Convergence {
    pub converged: bool,
    pub applied: BTreeMap<u64, u64>,
    pub distinct_digests: usize,
    pub detail: String,
}

pub fn check_convergence(dumps: &Dumps, expected_nodes: usize) -> Convergence {
    let applied: BTreeMap<u64, u64> = dumps.digests.iter().map(|(n, (a, _))| (*n, *a)).collect();
    let indexes: BTreeSet<u64> = applied.values().copied().collect();
    let digests: BTreeSet<&String> = dumps.digests.values().map(|(_, d)| d).collect();
    let converged = dumps.digests.len() == expected_nodes && indexes.len() == 1 && digests.len() == 1;
    let detail = if converged {
        format!(
            "{} nodes at applied index {:?}",
            dumps.digests.len(),
            indexes.iter().next()
        )
    } else if dumps.digests.len() != expected_nodes {
        format!(
            "only {} of {expected_nodes} nodes reported a digest",
            dumps.digests.len()
        )
    } else if indexes.len() != 1 {
        format!("applied indexes differ: {applied:?}")
    } else {
        format!("{} different digests at the same applied index", digests.len())
    };
    Convergence {
        converged,
        applied,
        distinct_digests: digests.len(),
        detail,
    }
}

/// Raft invariants over the sampled metrics.
pub fn check_invariants(samples: &[Sample]) -> Vec<String> {
    let mut out = Vec::new();
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut last: HashMap<(u64, u64), &Sample> = HashMap::new();
    for s in samples {
        if s.state == "leader" {
            leaders.entry(s.term).or_default().insert(s.node);
        }
        // Per node and process lifetime (a restart re-reads state from disk).
        let k = (s.node, s.started_at_ms);
        if let Some(p) = last.get(&k) {
            for (what, before, now) in [
                ("term", p.term, s.term),
                ("commit index", p.commit_index, s.commit_index),
                ("applied index", p.applied_index, s.applied_index),
            ] {
                if now < before {
                    out.push(format!(
                        "node {}: {what} went from {before} to {now} at t={} ms",
                        s.node,
                        s.t_us / 1000
                    ));
                }
            }
        }
        last.insert(k, s);
    }
    for (term, nodes) in leaders {
        if nodes.len() > 1 {
            out.push(format!("term {term} had {} leaders: {nodes:?}", nodes.len()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, f: OpKind, key: &str, value: Option<&str>, outcome: Outcome, rid: &str) -> Op {
        Op {
            id,
            process: id,
            client: 0,
            endpoint: "any".into(),
            f,
            key: key.into(),
            value: value.map(Into::into),
            expect: None,
            invoke_us: id * 10,
            complete_us: (outcome != Outcome::Unknown).then_some(id * 10 + 5),
            outcome,
            read: None,
            revision: Some(id),
            succeeded: None,
            request_id: Some(rid.into()),
            served_by: None,
            error: None,
        }
    }

    #[test]
    fn lost_duplicated_and_unexpected_writes_are_reported() {
        let ops = vec![
            op(1, OpKind::Append, "a0", Some("t1;"), Outcome::Ok, "r1"),
            op(2, OpKind::Append, "a0", Some("t2;"), Outcome::Ok, "r2"),
            op(3, OpKind::Append, "a0", Some("t3;"), Outcome::Unknown, "r3"),
            op(4, OpKind::Put, "r0", Some("v"), Outcome::Ok, "r4"),
        ];
        let mut dumps = Dumps::default();
        let applied: BTreeMap<String, u64> = [("r1".to_string(), 1), ("r3".to_string(), 3)].into();
        dumps.applied.insert(1, applied.clone());
        dumps.applied.insert(2, applied);
        dumps
            .final_values
            .insert(1, [("a0".to_string(), Some("t1;t1;t3;tx;".to_string()))].into());
        let wc = check_writes(&ops, &dumps);
        assert_eq!(wc.acked_writes, 3);
        assert_eq!(wc.recovered, 1);
        // r2 and r4 were acknowledged but never applied; t2 is missing.
        assert_eq!(wc.lost.len(), 3, "{:?}", wc.lost);
        assert_eq!(wc.duplicated.len(), 1, "{:?}", wc.duplicated);
        assert_eq!(wc.unexpected.len(), 1, "{:?}", wc.unexpected);
        assert!(wc.diverged_nodes.is_empty());
    }

    #[test]
    fn unknowns_are_resolved_from_applied_ids() {
        let mut ops = vec![
            op(1, OpKind::Put, "r0", Some("a"), Outcome::Unknown, "r1"),
            op(2, OpKind::Put, "r0", Some("b"), Outcome::Unknown, "r2"),
        ];
        let applied: BTreeMap<String, u64> = [("r1".to_string(), 7)].into();
        assert_eq!(resolve_unknowns(&mut ops, &applied, true), (1, 1));
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].revision, Some(7));
    }

    #[test]
    fn two_leaders_in_one_term_and_going_backwards_are_caught() {
        let s = |t_us, node, started, state: &str, term, commit| Sample {
            t_us,
            node,
            started_at_ms: started,
            state: state.into(),
            term,
            leader_id: 0,
            commit_index: commit,
            applied_index: commit,
            last_log_index: commit,
        };
        let ok = vec![
            s(1, 1, 1, "leader", 2, 5),
            s(2, 1, 1, "leader", 2, 6),
            s(3, 1, 9, "follower", 2, 3),
        ];
        assert!(check_invariants(&ok).is_empty(), "a restart may re-read a lower index");
        let bad = vec![
            s(1, 1, 1, "leader", 3, 5),
            s(1, 2, 1, "leader", 3, 5),
            s(2, 2, 1, "leader", 3, 4),
        ];
        let v = check_invariants(&bad);
        assert_eq!(v.len(), 3, "two leaders, commit and applied went back: {v:?}");
    }
}
