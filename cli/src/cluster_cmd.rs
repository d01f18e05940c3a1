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
                if m.voter { "yes" } else { "no" }.into(),
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
    }
    Ok(())
}
