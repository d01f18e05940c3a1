//! Backups through the cluster: which node takes one, and asking it to.

use std::time::Duration;

use sen_client::Client;
use sen_proto::v1::{CreateBackupRequest, CreateBackupResponse};

use crate::OpsError;

/// The node that takes a backup: `node` if given, else the reachable
/// follower with the least replication lag (the leader keeps its resources
/// for writes), else the leader. Returns its address.
pub async fn pick_node(client: &Client, node: Option<u64>) -> Result<String, OpsError> {
    let status = client.status().await?;
    let members = &status.members;
    if let Some(id) = node {
        return members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.addr.clone())
            .ok_or_else(|| format!("node {id} is not a member of the cluster").into());
    }
    let follower = members
        .iter()
        .filter(|m| m.role == "follower" && m.reachable)
        .min_by_key(|m| m.replication_lag);
    match follower.or_else(|| members.iter().find(|m| m.id == status.leader_id)) {
        Some(m) => Ok(m.addr.clone()),
        None => Err("no reachable member to take the backup".into()),
    }
}

/// Ask a node (see [`pick_node`]) to back up its replica into `repo`.
/// `budget` bounds the whole backup (at least an hour).
pub async fn create(
    client: &Client,
    node: Option<u64>,
    repo: &str,
    password: Option<Vec<u8>>,
    tags: Vec<String>,
    budget: Duration,
) -> Result<CreateBackupResponse, OpsError> {
    let addr = pick_node(client, node).await?;
    let req = CreateBackupRequest {
        repo: repo.to_owned(),
        password: password.unwrap_or_default(),
        tags,
    };
    Ok(client
        .create_backup(&addr, req, budget.max(Duration::from_secs(3600)))
        .await?)
}
