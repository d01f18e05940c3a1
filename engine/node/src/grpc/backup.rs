//! The backup service (`sen.v1.Backup`): this node backs up its own
//! replica, read through one consistent view at its applied index.

use std::sync::Arc;

use sen_proto::v1::backup_server::Backup;
use sen_proto::v1::*;
use tonic::{Request, Response, Status};

use super::measured;
use crate::backup::{backup_here, backup_response};
use crate::node::Node;

pub struct BackupApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Backup for BackupApi {
    async fn create(&self, req: Request<CreateBackupRequest>) -> Result<Response<CreateBackupResponse>, Status> {
        let node = self.node.clone();
        crate::auth::note(&req, format!("repo:{}", repo_for_audit(&req.get_ref().repo)));
        measured(&self.node.clone(), "BackupCreate", async move {
            let req = req.into_inner();
            let password = (!req.password.is_empty()).then_some(req.password);
            let outcome = backup_here(&node, &req.repo, password, req.tags).await?;
            Ok(backup_response(&outcome))
        })
        .await
    }
}

/// A repository URL as the audit log keeps it: no user information, no
/// query string (credentials never go there, but a mistyped URL might).
fn repo_for_audit(url: &str) -> String {
    sen_proto::redact_url(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn repository_urls_lose_credentials_in_the_audit_log() {
        assert_eq!(
            super::repo_for_audit("s3://key:secret@host/bucket?x=1"),
            "s3://host/bucket"
        );
        assert_eq!(
            super::repo_for_audit("file:///var/backups/sen"),
            "file:///var/backups/sen"
        );
    }
}
