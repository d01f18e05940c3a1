//! `sen cluster recover`: survey every member's log, assess recovering
//! from one survivor (`sen_raft::recovery::assess`), and — confirmed — make
//! it the only voter, then wait until it leads and say how to re-add the
//! others.

use std::time::{Duration, Instant};

use sen_client::Client;
use sen_proto::v1::{RecoverRequest, StatusResponse};
use sen_raft::recovery::{Assessment, LogReport, assess};

use crate::OpsError;

/// One member as the survey saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: u64,
    pub addr: String,
    /// Its log, or why it did not answer.
    pub log: Result<LogReport, String>,
}

/// The survey of every member, and the assessment of recovering `from`.
#[derive(Debug, Clone)]
pub struct Survey {
    pub answers: Vec<Answer>,
    pub assessment: Assessment,
    /// `from`'s address.
    pub from_addr: String,
    pub status: StatusResponse,
}

/// Ask every member where its log stands (2 s each).
pub async fn survey(c: &Client, from: u64) -> Result<Survey, OpsError> {
    let status = c.status().await?;
    let mut answers = Vec::new();
    let mut voters_of_from = None;
    for m in &status.members {
        let req = RecoverRequest {
            force: false,
            confirm: String::new(),
        };
        let log = match c.recover(&m.addr, req, Duration::from_secs(2)).await {
            Ok(r) if m.id == from => {
                voters_of_from = Some(r.voters.clone());
                Ok(LogReport {
                    id: m.id,
                    last_log_index: r.last_log_index,
                    commit_index: r.commit_index,
                })
            }
            Ok(r) => Ok(LogReport {
                id: m.id,
                last_log_index: r.last_log_index,
                commit_index: r.commit_index,
            }),
            Err(e) => Err(e.to_string()),
        };
        answers.push(Answer {
            id: m.id,
            addr: m.addr.clone(),
            log,
        });
    }
    // The membership as the node to recover from knows it (another node
    // may know an older or newer one during a membership change).
    let voters: Vec<u64> =
        voters_of_from.unwrap_or_else(|| status.members.iter().filter(|m| m.voter).map(|m| m.id).collect());
    let reports: Vec<(u64, Option<LogReport>)> = answers.iter().map(|a| (a.id, a.log.clone().ok())).collect();
    let assessment = assess(from, &voters, &reports).ok_or_else(|| {
        format!("node {from} is not a reachable member; pick a survivor listed by `sen cluster status`")
    })?;
    let from_addr = answers
        .iter()
        .find(|a| a.id == from)
        .map(|a| a.addr.clone())
        .unwrap_or_default();
    Ok(Survey {
        answers,
        assessment,
        from_addr,
        status,
    })
}

/// The confirmation the operator must type.
pub fn confirmation(from: u64) -> String {
    format!("recover node {from}")
}

/// What a forced recovery did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recovered {
    pub restarting: bool,
    /// The node reported leadership within a minute.
    pub leading: bool,
    /// How to bring the other old voters back.
    pub next_steps: Vec<String>,
}

/// Make `survey`'s node the only voter (refused unless the quorum is lost
/// and `typed` is the confirmation), then wait until it leads.
pub async fn force(c: &Client, survey: &Survey, typed: &str) -> Result<Recovered, OpsError> {
    let a = &survey.assessment;
    let from = a.from_node;
    if !a.quorum_lost {
        return Err("the cluster still has a quorum of voters: recovery is refused (remove dead nodes with `sen cluster remove-node`)".into());
    }
    let expected = confirmation(from);
    if typed != expected {
        return Err(format!("confirmation did not match {expected:?}; nothing was changed").into());
    }
    let r = c
        .recover(
            &survey.from_addr,
            RecoverRequest {
                force: true,
                confirm: typed.to_owned(),
            },
            Duration::from_secs(10),
        )
        .await?;
    // It restarts itself on the rewritten log; wait until it leads.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut leading = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(st) = c.status_of(&survey.from_addr, Duration::from_secs(1)).await
            && st.leader_id == from
        {
            leading = true;
            break;
        }
    }
    let members = &survey.status.members;
    let first_new_id = members.iter().map(|m| m.id).max().unwrap_or(from) + 1;
    let mut next_steps = Vec::new();
    for (next_id, o) in (first_new_id..).zip(a.voters.iter().filter(|v| **v != from)) {
        let addr = members
            .iter()
            .find(|m| m.id == *o)
            .map(|m| m.addr.clone())
            .unwrap_or_default();
        next_steps.push(format!(
            "node {o} ({addr}): keep it stopped; wipe its data directory; start it with --id {next_id}; then `sen cluster add-node --id {next_id} --addr {addr}`"
        ));
    }
    Ok(Recovered {
        restarting: r.restarting,
        leading,
        next_steps,
    })
}
