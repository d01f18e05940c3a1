//! Forced recovery after losing a majority of voters, decided from
//! evidence: what every reachable member's log holds. Pure, so the CLI's
//! dry run and the node that must refuse an unwarranted recovery compute
//! the same answer.

use serde::Serialize;

/// What a reachable member reported about its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogReport {
    pub id: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
}

/// The evidence for recovering from node `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub from_node: u64,
    pub voters: Vec<u64>,
    /// Members that did not answer.
    pub unreachable: Vec<u64>,
    /// Voters needed for a quorum, and how many answered.
    pub quorum: usize,
    pub reachable_voters: usize,
    /// Fewer voters than a quorum answered: recovery is warranted.
    pub quorum_lost: bool,
    /// Where `from`'s log ends.
    pub last_log_index: u64,
    /// The highest commit index any survivor knows.
    pub commit_index_known: u64,
    /// Entries some survivor knows were committed that `from` lacks: they
    /// would be lost.
    pub lost_committed_range: Option<(u64, u64)>,
    /// Entries another survivor has (not known committed) that `from` lacks.
    pub lost_uncommitted_range: Option<(u64, u64)>,
    /// The survivor with the longest log (the best one to recover from).
    pub best_survivor: u64,
}

/// Assess recovering from `from`, given the voters and every member's
/// answer (`None`: unreachable). `None` if `from` itself did not answer.
pub fn assess(from: u64, voters: &[u64], answers: &[(u64, Option<LogReport>)]) -> Option<Assessment> {
    let me = answers.iter().find(|(id, _)| *id == from).and_then(|(_, r)| *r)?;
    let reachable: Vec<LogReport> = answers.iter().filter_map(|(_, r)| *r).collect();
    let max_commit = reachable.iter().map(|r| r.commit_index).max().unwrap_or(0);
    let max_last = reachable.iter().map(|r| r.last_log_index).max().unwrap_or(0);
    let best_survivor = reachable
        .iter()
        // Ties go to `from` (no need to switch), then to the lowest id.
        .max_by_key(|r| (r.last_log_index, r.id == from, std::cmp::Reverse(r.id)))
        .map_or(from, |r| r.id);
    let unreachable: Vec<u64> = answers.iter().filter(|(_, r)| r.is_none()).map(|(id, _)| *id).collect();
    let quorum = voters.len() / 2 + 1;
    let reachable_voters = voters.iter().filter(|v| !unreachable.contains(v)).count();
    Some(Assessment {
        from_node: from,
        voters: voters.to_vec(),
        unreachable,
        quorum,
        reachable_voters,
        quorum_lost: reachable_voters < quorum,
        last_log_index: me.last_log_index,
        commit_index_known: max_commit,
        lost_committed_range: (max_commit > me.last_log_index).then_some((me.last_log_index + 1, max_commit)),
        lost_uncommitted_range: (max_last > me.last_log_index).then_some((me.last_log_index + 1, max_last)),
        best_survivor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: u64, last: u64, commit: u64) -> Option<LogReport> {
        Some(LogReport {
            id,
            last_log_index: last,
            commit_index: commit,
        })
    }

    #[test]
    fn a_healthy_cluster_has_not_lost_its_quorum() {
        let a = assess(2, &[1, 2, 3], &[(1, r(1, 50, 50)), (2, r(2, 50, 50)), (3, None)]).unwrap();
        assert!(!a.quorum_lost);
        assert_eq!((a.quorum, a.reachable_voters, a.unreachable.clone()), (2, 2, vec![3]));
    }

    #[test]
    fn losing_two_of_three_is_a_lost_quorum_with_the_ranges_at_risk() {
        let a = assess(3, &[1, 2, 3], &[(1, None), (2, None), (3, r(3, 40, 38))]).unwrap();
        assert!(a.quorum_lost);
        assert_eq!((a.lost_committed_range, a.lost_uncommitted_range), (None, None));
        assert_eq!(a.best_survivor, 3);
        // Five voters, two survivors, the other one ahead.
        let a = assess(
            4,
            &[1, 2, 3, 4, 5],
            &[(1, None), (2, None), (3, r(3, 90, 85)), (4, r(4, 80, 80)), (5, None)],
        )
        .unwrap();
        assert!(a.quorum_lost);
        assert_eq!(a.lost_committed_range, Some((81, 85)));
        assert_eq!(a.lost_uncommitted_range, Some((81, 90)));
        assert_eq!(a.best_survivor, 3);
    }

    #[test]
    fn an_unreachable_source_gives_no_assessment() {
        assert!(assess(1, &[1, 2, 3], &[(1, None), (2, r(2, 1, 1))]).is_none());
    }
}
