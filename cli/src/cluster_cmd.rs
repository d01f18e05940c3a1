//! `sen cluster ...`: lifecycle and status.

use std::time::Duration;

use clap::Subcommand;
use sen_proto::v1::{MemberStatus, StatusResponse};
use serde_json::json;

use crate::output::{emit, table};
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Make the node at the first endpoint a new one-voter cluster, and you
    /// (your certificate's user; `admin` without TLS) its first
    /// cluster-admin, with a token written to --token-out.
    Init {
        /// Where to write the first admin's token (0600; must not exist).
        #[arg(long, default_value = "sen-admin.token")]
        token_out: std::path::PathBuf,
    },
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
        "insecure": s.insecure,
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
    if s.insecure {
        out.push_str(&format!(
            "INSECURE: node {} runs without TLS and authentication (anyone who reaches it can do anything); see docs/security.md\n",
            s.node_id
        ));
    }
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
        ClusterCmd::Init { token_out } => {
            let r = c.init().await?;
            // The token is shown once: if it cannot be written, print it.
            let written = if r.admin_token.is_empty() {
                None
            } else {
                Some(crate::access_cmd::write_token_file(&token_out, &r.admin_token).map_err(|f| f.message))
            };
            emit(
                output,
                json!({
                    "cluster_id": r.cluster_id,
                    "node_id": r.node_id,
                    "admin_user": r.admin_user,
                    "token_file": matches!(written, Some(Ok(()))).then_some(&token_out),
                    "admin_token": matches!(written, Some(Err(_))).then_some(&r.admin_token),
                }),
                || {
                    let mut t = if r.created {
                        format!(
                            "initialized cluster {} with node {} as its only voter",
                            r.cluster_id, r.node_id
                        )
                    } else {
                        format!(
                            "cluster {} already existed; its first administrator was missing",
                            r.cluster_id
                        )
                    };
                    match &written {
                        None => {}
                        Some(Ok(())) => t.push_str(&format!(
                            "\nfirst cluster-admin: {}; its token is in {} (use: export SEN_TOKEN_FILE={})",
                            r.admin_user,
                            token_out.display(),
                            token_out.display()
                        )),
                        Some(Err(e)) => t.push_str(&format!(
                            "\nfirst cluster-admin: {}; the token could not be written ({e}); here it is, shown only now:\n{}",
                            r.admin_user, r.admin_token
                        )),
                    }
                    t
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
    use sen_ops::recover;
    let survey = recover::survey(c, from).await.map_err(crate::repo_args::ops_fail)?;
    let a = &survey.assessment;
    let rows: Vec<Vec<String>> = survey
        .answers
        .iter()
        .map(|x| match &x.log {
            Ok(l) => vec![
                x.id.to_string(),
                x.addr.clone(),
                "answers".into(),
                l.last_log_index.to_string(),
                l.commit_index.to_string(),
            ],
            Err(e) => vec![
                x.id.to_string(),
                x.addr.clone(),
                format!("unreachable: {e}"),
                "".into(),
                "".into(),
            ],
        })
        .collect();
    let summary = serde_json::to_value(a)?;
    let text = || {
        let mut t = table(&["ID", "ADDRESS", "STATE", "LAST LOG", "COMMITTED"], &rows);
        t.push_str(&format!(
            "\nvoters {:?}: {} reachable, {} needed for a quorum{}\n",
            a.voters,
            a.reachable_voters,
            a.quorum,
            if a.quorum_lost {
                ""
            } else {
                " — the cluster has NOT lost its majority; do not recover, remove dead nodes instead"
            }
        ));
        match a.lost_committed_range {
            Some((x, y)) => t.push_str(&format!(
                "recovering from node {from} LOSES committed entries {x}..={y} (another survivor knows they were committed)\n"
            )),
            None => t.push_str(&format!(
                "no entry known to be committed would be lost from node {from} (its log ends at {}; entries only on the unreachable nodes {:?} cannot be known)\n",
                a.last_log_index, a.unreachable
            )),
        }
        if let Some((x, y)) = a.lost_uncommitted_range {
            t.push_str(&format!(
                "entries {x}..={y} exist on another survivor but not on node {from}; they would be dropped\n"
            ));
        }
        if a.best_survivor != from {
            t.push_str(&format!(
                "node {} has the longest log: prefer `--from-node {}`\n",
                a.best_survivor, a.best_survivor
            ));
        }
        t
    };
    if dry_run {
        emit(output, summary, text);
        return Ok(());
    }
    if !a.quorum_lost {
        return Err("the cluster still has a quorum of voters: recovery is refused (remove dead nodes with `sen cluster remove-node`)".into());
    }
    let expected = recover::confirmation(from);
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
    let r = recover::force(c, &survey, &typed)
        .await
        .map_err(crate::repo_args::ops_fail)?;
    emit(
        output,
        json!({"recovered": r.restarting, "leading": r.leading, "node": from, "summary": summary, "next_steps": r.next_steps}),
        || {
            format!(
                "node {from} restarted as the only voter{}.\nA serious incident records the lost range. Re-add the others under new ids:\n{}\n",
                if r.leading {
                    " and leads"
                } else {
                    " (it has not reported leadership yet: check `sen cluster status`)"
                },
                r.next_steps
                    .iter()
                    .map(|s| format!("  - {s}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        },
    );
    Ok(())
}
