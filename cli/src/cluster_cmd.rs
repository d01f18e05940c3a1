//! `sen cluster ...`: lifecycle and status.

use std::time::Duration;

use clap::Subcommand;
use sen_proto::v1::{MemberStatus, StatusResponse};
use serde_json::json;

use crate::output::{emit, table};
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Make the node at the first endpoint a new one-voter cluster and print
    /// the cluster id.
    Init,
    /// Add a running, empty node: it joins as a learner, catches up, then
    /// becomes a voter (unless --learner).
    AddNode {
        #[arg(long)]
        id: u64,
        /// The node's gRPC address (its --advertise / --listen).
        #[arg(long)]
        addr: String,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
    },
    /// Make a caught-up learner a voter.
    Promote {
        #[arg(long)]
        id: u64,
    },
    /// Remove a node from the cluster.
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
    /// Cluster id, leader, term and every member's state.
    Status,
    /// Planned switchover: hand leadership to a caught-up voter (the most
    /// caught-up one that is not drained, unless --to) and wait until it
    /// leads. Client writes pause briefly; the CLI's retries hide it.
    TransferLeader {
        #[arg(long)]
        to: Option<u64>,
    },
    /// After losing a majority of voters: show what each survivor has
    /// (--dry-run), or make node N the only voter from its own log
    /// (--force; asks you to type a confirmation).
    Recover {
        #[arg(long)]
        from_node: u64,
        #[arg(long, conflicts_with = "force")]
        dry_run: bool,
        #[arg(long)]
        force: bool,
        /// The confirmation text, for scripts: "recover node N".
        #[arg(long)]
        confirm: Option<String>,
    },
}

pub fn member_json(m: &MemberStatus) -> serde_json::Value {
    json!({
        "id": m.id,
        "addr": m.addr,
        "role": m.role,
        "voter": m.voter,
        "reachable": m.reachable,
        "term": m.term,
        "last_log_index": m.last_log_index,
        "applied_index": m.applied_index,
        "matched_index": m.matched_index,
        "replication_lag": m.replication_lag,
        "drained": m.drained,
        "error": if m.error.is_empty() { serde_json::Value::Null } else { json!(m.error) },
    })
}

pub fn status_json(s: &StatusResponse) -> serde_json::Value {
    json!({
        "cluster_id": s.cluster_id,
        "leader_id": if s.leader_id == 0 { serde_json::Value::Null } else { json!(s.leader_id) },
        "term": s.term,
        "commit_index": s.commit_index,
        "answered_by": s.node_id,
        "members": s.members.iter().map(member_json).collect::<Vec<_>>(),
    })
}

pub fn status_text(s: &StatusResponse) -> String {
    if s.cluster_id.is_empty() {
        return format!(
            "node {} is not part of a cluster yet: run `sen cluster init` against one node, then `sen cluster add-node` for the others",
            s.node_id
        );
    }
    let leader = if s.leader_id == 0 {
        "none".to_owned()
    } else {
        s.leader_id.to_string()
    };
    let mut out = format!(
        "cluster {}  leader {}  term {}  commit {}\n",
        s.cluster_id, leader, s.term, s.commit_index
    );
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.addr.clone(),
                m.role.clone(),
                match (m.voter, m.drained) {
                    (true, true) => "yes (drained)".into(),
                    (true, false) => "yes".into(),
                    (false, _) => "no".into(),
                },
                if m.reachable {
                    "yes".into()
                } else {
                    format!("NO ({})", m.error)
                },
                m.last_log_index.to_string(),
                m.applied_index.to_string(),
                m.replication_lag.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ID",
            "ADDRESS",
            "ROLE",
            "VOTER",
            "REACHABLE",
            "LAST LOG",
            "APPLIED",
            "LAG",
        ],
        &rows,
    ));
    out
}

pub async fn run(cmd: ClusterCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        ClusterCmd::Init => {
            let r = c.init().await?;
            emit(
                output,
                json!({"cluster_id": r.cluster_id, "node_id": r.node_id}),
                || {
                    format!(
                        "initialized cluster {} with node {} as its only voter",
                        r.cluster_id, r.node_id
                    )
                },
            );
        }
        ClusterCmd::AddNode { id, addr, learner } => {
            let r = c.add_node(id, &addr, learner).await?;
            let m = r.member.unwrap_or_default();
            emit(
                output,
                json!({"member": member_json(&m), "revision": r.revision}),
                || {
                    format!(
                        "added node {id} at {addr} as a {}{}",
                        if m.voter { "voter" } else { "learner" },
                        if m.voter {
                            ""
                        } else {
                            " (run `sen cluster promote` to make it a voter)"
                        }
                    )
                },
            );
        }
        ClusterCmd::Promote { id } => {
            let r = c.promote_node(id).await?;
            emit(output, json!({"id": id, "revision": r.revision}), || {
                format!("node {id} is now a voter")
            });
        }
        ClusterCmd::RemoveNode { id } => {
            let r = c.remove_node(id).await?;
            emit(output, json!({"id": id, "revision": r.revision}), || {
                format!("removed node {id}; stop it and wipe its data directory before reusing the machine")
            });
        }
        ClusterCmd::Status => {
            let s = c.status().await?;
            emit(output, status_json(&s), || status_text(&s));
        }
        ClusterCmd::TransferLeader { to } => {
            let r = c.transfer_leader(to.unwrap_or(0)).await?;
            emit(
                output,
                json!({"from": r.from, "to": r.to, "term": r.term, "elapsed_ms": r.elapsed_ms}),
                || {
                    if r.from == r.to {
                        format!("node {} already leads", r.to)
                    } else {
                        format!(
                            "leadership moved from node {} to node {} (term {}) in {} ms",
                            r.from, r.to, r.term, r.elapsed_ms
                        )
                    }
                },
            );
        }
        ClusterCmd::Recover {
            from_node,
            dry_run,
            force,
            confirm,
        } => recover(&c, from_node, dry_run || !force, confirm, output).await?,
    }
    Ok(())
}

/// `sen cluster recover`: survey the survivors, then (with --force) make
/// `from` the only voter.
async fn recover(
    c: &sen_client::Client,
    from: u64,
    dry_run: bool,
    confirm: Option<String>,
    output: Output,
) -> Result<(), Failure> {
    use sen_proto::v1::RecoverRequest;
    let s = c.status().await?;
    let survey_timeout = Duration::from_secs(2);
    let mut rows = Vec::new();
    let mut answers = Vec::new();
    for m in &s.members {
        match c
            .recover(
                &m.addr,
                RecoverRequest {
                    force: false,
                    confirm: String::new(),
                },
                survey_timeout,
            )
            .await
        {
            Ok(r) => answers.push((m.id, m.addr.clone(), Some(r))),
            Err(e) => {
                rows.push(vec![
                    m.id.to_string(),
                    m.addr.clone(),
                    format!("unreachable: {e}"),
                    "".into(),
                    "".into(),
                ]);
                answers.push((m.id, m.addr.clone(), None));
            }
        }
    }
    let Some((_, from_addr, Some(me))) = answers.iter().find(|(id, _, _)| *id == from).cloned() else {
        return Err(
            format!("node {from} is not a reachable member; pick a survivor listed by `sen cluster status`").into(),
        );
    };
    for (id, addr, r) in &answers {
        if let Some(r) = r {
            rows.push(vec![
                id.to_string(),
                addr.clone(),
                "answers".into(),
                r.last_log_index.to_string(),
                r.commit_index.to_string(),
            ]);
        }
    }
    let reachable: Vec<&sen_proto::v1::RecoverResponse> = answers.iter().filter_map(|(_, _, r)| r.as_ref()).collect();
    let max_commit = reachable.iter().map(|r| r.commit_index).max().unwrap_or(0);
    let max_last = reachable.iter().map(|r| r.last_log_index).max().unwrap_or(0);
    let best = answers
        .iter()
        .filter_map(|(id, _, r)| r.as_ref().map(|r| (*id, r.last_log_index)))
        .max_by_key(|(_, l)| *l)
        .map(|(id, _)| id)
        .unwrap_or(from);
    let unreachable: Vec<u64> = answers
        .iter()
        .filter(|(_, _, r)| r.is_none())
        .map(|(id, _, _)| *id)
        .collect();
    let voters = me.voters.clone();
    let quorum = voters.len() / 2 + 1;
    let reachable_voters = voters.iter().filter(|v| !unreachable.contains(v)).count();
    let lost_committed = (max_commit > me.last_log_index).then(|| (me.last_log_index + 1, max_commit));
    let lost_other = (max_last > me.last_log_index).then(|| (me.last_log_index + 1, max_last));
    let summary = json!({
        "from_node": from,
        "voters": voters,
        "unreachable": unreachable,
        "quorum_lost": reachable_voters < quorum,
        "last_log_index": me.last_log_index,
        "commit_index_known": max_commit,
        "lost_committed_range": lost_committed,
        "lost_uncommitted_range": lost_other,
        "best_survivor": best,
    });
    let text = || {
        let mut t = table(&["ID", "ADDRESS", "STATE", "LAST LOG", "COMMITTED"], &rows);
        t.push_str(&format!(
            "\nvoters {voters:?}: {reachable_voters} reachable, {quorum} needed for a quorum{}\n",
            if reachable_voters >= quorum {
                " — the cluster has NOT lost its majority; do not recover, remove dead nodes instead"
            } else {
                ""
            }
        ));
        match lost_committed {
            Some((a, b)) => t.push_str(&format!(
                "recovering from node {from} LOSES committed entries {a}..={b} (another survivor knows they were committed)\n"
            )),
            None => t.push_str(&format!(
                "no entry known to be committed would be lost from node {from} (its log ends at {}; entries only on the unreachable nodes {unreachable:?} cannot be known)\n",
                me.last_log_index
            )),
        }
        if let Some((a, b)) = lost_other {
            t.push_str(&format!(
                "entries {a}..={b} exist on another survivor but not on node {from}; they would be dropped\n"
            ));
        }
        if best != from {
            t.push_str(&format!(
                "node {best} has the longest log: prefer `--from-node {best}`\n"
            ));
        }
        t
    };
    if dry_run {
        emit(output, summary, text);
        return Ok(());
    }
    if reachable_voters >= quorum {
        return Err("the cluster still has a quorum of voters: recovery is refused (remove dead nodes with `sen cluster remove-node`)".into());
    }
    let expected = format!("recover node {from}");
    let typed = match confirm {
        Some(c) => c,
        None => {
            eprint!("{}", text());
            eprintln!("This makes node {from} the only voter. Type \"{expected}\" to go on:");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    if typed != expected {
        return Err(format!("confirmation did not match {expected:?}; nothing was changed").into());
    }
    let r = c
        .recover(
            &from_addr,
            RecoverRequest {
                force: true,
                confirm: typed,
            },
            Duration::from_secs(10),
        )
        .await?;
    // It restarts itself on the rewritten log; wait until it leads.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut leading = false;
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(st) = c.status_of(&from_addr, Duration::from_secs(1)).await
            && st.leader_id == from
        {
            leading = true;
            break;
        }
    }
    let others: Vec<u64> = voters.iter().copied().filter(|v| *v != from).collect();
    let mut next_id = s.members.iter().map(|m| m.id).max().unwrap_or(from) + 1;
    let mut steps = Vec::new();
    for o in &others {
        let addr = s
            .members
            .iter()
            .find(|m| m.id == *o)
            .map(|m| m.addr.clone())
            .unwrap_or_default();
        steps.push(format!(
            "node {o} ({addr}): keep it stopped; wipe its data directory; start it with --id {next_id}; then `sen cluster add-node --id {next_id} --addr {addr}`"
        ));
        next_id += 1;
    }
    emit(
        output,
        json!({"recovered": r.restarting, "leading": leading, "node": from, "summary": summary, "next_steps": steps}),
        || {
            format!(
                "node {from} restarted as the only voter{}.\nA serious incident records the lost range. Re-add the others under new ids:\n{}\n",
                if leading {
                    " and leads"
                } else {
                    " (it has not reported leadership yet: check `sen cluster status`)"
                },
                steps.iter().map(|s| format!("  - {s}")).collect::<Vec<_>>().join("\n")
            )
        },
    );
    Ok(())
}
