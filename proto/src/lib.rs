//! Generated gRPC code for Sen's APIs (see `proto/`).
//!
//! - [`v1`]: the public API (`sen.v1`: `Kv`, `Cluster`).
//! - [`raft::v1`]: the node-to-node service (`sen.raft.v1.Raft`).
//! - [`status`]: the wire-error contract (status ↔ [`status::WireError`]).

pub mod status;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sen.v1");
}

#[allow(clippy::all, missing_docs)]
pub mod raft {
    pub mod v1 {
        tonic::include_proto!("sen.raft.v1");
    }
}

/// A URL without what could hold a secret: user information before the
/// host, and the query string and fragment (for logs and audit records).
pub fn redact_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// `Debug` for the messages that carry a secret (a backup password, a
/// token): the secret is never printed, whatever logs the message.
mod redacted {
    use std::fmt;

    use super::v1::{CreateBackupRequest, CreateTokenResponse, InitResponse};

    const HIDDEN: &str = "<redacted>";

    impl fmt::Debug for CreateBackupRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateBackupRequest")
                .field("repo", &super::redact_url(&self.repo))
                .field("password", &if self.password.is_empty() { "" } else { HIDDEN })
                .field("tags", &self.tags)
                .finish()
        }
    }

    impl fmt::Debug for InitResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("InitResponse")
                .field("cluster_id", &self.cluster_id)
                .field("node_id", &self.node_id)
                .field("admin_user", &self.admin_user)
                .field("admin_token", &if self.admin_token.is_empty() { "" } else { HIDDEN })
                .field("created", &self.created)
                .finish()
        }
    }

    impl fmt::Debug for CreateTokenResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateTokenResponse")
                .field("token", &HIDDEN)
                .field("json", &self.json)
                .finish()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn secrets_never_reach_debug_output() {
            let b = CreateBackupRequest {
                repo: "file:///b?key=mat-khau-2".into(),
                password: b"mat-khau-bi-mat".to_vec(),
                tags: vec![],
            };
            let i = InitResponse {
                admin_token: "sen_0123456789abcdef_secret-part".into(),
                ..Default::default()
            };
            let t = CreateTokenResponse {
                token: "sen_0123456789abcdef_secret-part".into(),
                json: "{}".into(),
            };
            let text = format!("{b:?} {i:?} {t:?}");
            assert!(!text.contains("mat-khau") && !text.contains("secret-part"), "{text}");
            assert!(text.contains("file:///b") && text.contains("<redacted>"), "{text}");
        }
    }
}

/// Encoded file descriptors, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sen_descriptor");

/// Metadata keys used on every call.
pub mod meta {
    /// Id of the leader, on retryable "not leader" errors.
    pub const LEADER_ID: &str = "sen-leader-id";
    /// gRPC address of the leader, on retryable "not leader" errors.
    pub const LEADER_ADDR: &str = "sen-leader-addr";
    /// Set by a node that forwards a client request to the leader, so the
    /// leader never forwards it again.
    pub const FORWARDED_BY: &str = "sen-forwarded-by";
    /// Peer calls: the caller's cluster id.
    pub const CLUSTER_ID: &str = "sen-cluster-id";
    /// Peer calls: the caller's node id.
    pub const FROM_NODE: &str = "sen-from-node";
    /// On errors from a node that has not joined a cluster: clients should
    /// try another endpoint.
    pub const NO_CLUSTER: &str = "sen-no-cluster";
    /// Peer calls: the node the caller meant to reach.
    pub const TO_NODE: &str = "sen-to-node";
    /// A request a node forwards to the leader: who the original caller
    /// is (JSON of `sen_core::auth::Principal`). Trusted only from a peer
    /// that proved, with its node certificate, to be a node of this cluster.
    pub const ON_BEHALF_OF: &str = "sen-on-behalf-of";
    /// A request a node forwards: the original caller's address.
    pub const CALLER_ADDR: &str = "sen-caller-addr";
}
