//! The one table that says who may call what: every gRPC method of every
//! service the node serves, and every HTTP route. A method missing here is
//! refused (deny by default); `every_rpc_has_a_rule` enumerates the
//! generated descriptors and fails when a new method has no rule.

use sen_core::auth::Action;

/// What a method needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone, without credentials (health checks).
    Public,
    /// A cluster-level permission, decided before the handler runs.
    Cluster(ClusterNeed),
    /// A permission on a site or database named in the request: the
    /// handler checks it (`Caller::require`) before doing anything; the
    /// layer refuses the answer if it did not.
    Scoped,
    /// Nodes of this cluster only (mutual TLS with a node certificate).
    Peer,
    /// `Cluster/Init`: any user with a certificate of the cluster CA while
    /// the node has no cluster; a cluster-admin afterwards.
    Bootstrap,
}

/// Cluster-level permissions (`sen_core::auth::Action` without a resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterNeed {
    Authenticated,
    Read,
    Operate,
    Audit,
    Administer,
}

impl ClusterNeed {
    pub fn action(self) -> Action<'static> {
        match self {
            ClusterNeed::Authenticated => Action::Authenticated,
            ClusterNeed::Read => Action::ClusterRead,
            ClusterNeed::Operate => Action::Operate,
            ClusterNeed::Audit => Action::AuditRead,
            ClusterNeed::Administer => Action::Administer,
        }
    }
}

/// The rule of one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub method: &'static str,
    pub need: Need,
    /// A node may call it on its own behalf (not forwarding a user).
    pub nodes: bool,
    /// It changes state: every call is audited, not only refusals.
    pub mutating: bool,
}

use ClusterNeed::*;
use Need::*;

const fn r(method: &'static str, need: Need, nodes: bool, mutating: bool) -> Rule {
    Rule {
        method,
        need,
        nodes,
        mutating,
    }
}

/// Every gRPC method (`/package.Service/Method`).
pub static RULES: &[Rule] = &[
    // Health and reflection.
    r("/grpc.health.v1.Health/Check", Public, true, false),
    r("/grpc.health.v1.Health/Watch", Public, true, false),
    r(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Cluster(Authenticated),
        false,
        false,
    ),
    // Key-value databases: scoped to the database in the request.
    r("/sen.v1.Kv/Put", Scoped, false, true),
    r("/sen.v1.Kv/Get", Scoped, false, false),
    r("/sen.v1.Kv/Delete", Scoped, false, true),
    r("/sen.v1.Kv/Scan", Scoped, false, false),
    r("/sen.v1.Kv/Txn", Scoped, false, true),
    r("/sen.v1.Kv/ListDatabases", Cluster(Authenticated), false, false),
    // Site content: scoped to the site.
    r("/sen.v1.Content/CreateSite", Scoped, false, true),
    r("/sen.v1.Content/DeleteSite", Scoped, false, true),
    r("/sen.v1.Content/ListSites", Cluster(Authenticated), false, false),
    r("/sen.v1.Content/ListFiles", Scoped, false, false),
    r("/sen.v1.Content/MissingChunks", Scoped, false, false),
    r("/sen.v1.Content/PutChunks", Scoped, false, true),
    r("/sen.v1.Content/Deploy", Scoped, false, true),
    r("/sen.v1.Content/ReadFile", Scoped, false, false),
    r("/sen.v1.Content/History", Scoped, false, false),
    r("/sen.v1.Content/CollectGarbage", Cluster(Operate), false, true),
    // The cluster.
    r("/sen.v1.Cluster/Init", Bootstrap, false, true),
    r("/sen.v1.Cluster/AddNode", Cluster(Administer), false, true),
    r("/sen.v1.Cluster/PromoteNode", Cluster(Administer), false, true),
    r("/sen.v1.Cluster/RemoveNode", Cluster(Administer), false, true),
    r("/sen.v1.Cluster/Status", Cluster(Authenticated), true, false),
    r("/sen.v1.Cluster/TransferLeader", Cluster(Operate), false, true),
    r("/sen.v1.Cluster/Drain", Cluster(Operate), false, true),
    r("/sen.v1.Admin/Digest", Cluster(Read), false, false),
    r("/sen.v1.Admin/AppliedRequests", Cluster(Read), false, false),
    r("/sen.v1.Admin/LocalStatus", Cluster(Authenticated), true, false),
    r("/sen.v1.Backup/Create", Cluster(Operate), true, true),
    r("/sen.v1.NodeOps/InjectFault", Cluster(Operate), false, true),
    r("/sen.v1.NodeOps/ClearFault", Cluster(Operate), false, true),
    r("/sen.v1.NodeOps/Recover", Cluster(Administer), false, true),
    r("/sen.v1.Incidents/Record", Cluster(Operate), true, true),
    r("/sen.v1.Incidents/Annotate", Cluster(Operate), false, true),
    r("/sen.v1.Incidents/List", Cluster(Read), false, false),
    // Access control and the audit log.
    r("/sen.v1.Access/WhoAmI", Cluster(Authenticated), false, false),
    r("/sen.v1.Access/AddUser", Cluster(Administer), false, true),
    r("/sen.v1.Access/RemoveUser", Cluster(Administer), false, true),
    r("/sen.v1.Access/ListUsers", Cluster(Administer), false, false),
    r("/sen.v1.Access/Grant", Cluster(Administer), false, true),
    r("/sen.v1.Access/Revoke", Cluster(Administer), false, true),
    r("/sen.v1.Access/CreateToken", Cluster(Administer), false, true),
    r("/sen.v1.Access/ListTokens", Cluster(Administer), false, false),
    r("/sen.v1.Access/RevokeToken", Cluster(Administer), false, true),
    r("/sen.v1.Access/SetSiteAccess", Cluster(Administer), false, true),
    r("/sen.v1.Audit/List", Cluster(Audit), false, false),
    r("/sen.v1.Audit/Append", Peer, true, false),
    // The control plane's typed records.
    r("/sen.v1.Control/BeginDrill", Cluster(Operate), false, true),
    r("/sen.v1.Control/EndDrill", Cluster(Operate), false, true),
    r("/sen.v1.Control/StoreDrillReport", Cluster(Operate), false, true),
    r("/sen.v1.Control/ListDrillReports", Cluster(Read), false, false),
    r("/sen.v1.Control/SetBackupSchedule", Cluster(Operate), false, true),
    r("/sen.v1.Control/GetBackupSchedule", Cluster(Read), false, false),
    r("/sen.v1.Control/ClearBackupSchedule", Cluster(Operate), false, true),
    r("/sen.v1.Control/ListBackupRuns", Cluster(Read), false, false),
    r("/sen.v1.Control/StoreVerification", Cluster(Operate), false, true),
    r("/sen.v1.Control/SetArchive", Cluster(Operate), false, true),
    r("/sen.v1.Control/ArchiveStatus", Cluster(Read), false, false),
    r("/sen.v1.Control/SetQuota", Cluster(Administer), false, true),
    r("/sen.v1.Control/SetProbePath", Cluster(Operate), false, true),
    r("/sen.v1.Control/ListQuotas", Cluster(Read), false, false),
    r("/sen.v1.Control/ReportProbe", Peer, true, false),
    r("/sen.v1.Control/ListAvailability", Cluster(Read), false, false),
    // Node to node.
    r("/sen.raft.v1.Raft/AppendEntries", Peer, true, false),
    r("/sen.raft.v1.Raft/Vote", Peer, true, false),
    r("/sen.raft.v1.Raft/PreVote", Peer, true, false),
    r("/sen.raft.v1.Raft/TransferLeader", Peer, true, false),
    r("/sen.raft.v1.Raft/InstallSnapshot", Peer, true, false),
    r("/sen.raft.v1.Raft/Join", Peer, true, false),
    r("/sen.raft.v1.Raft/NodeStatus", Peer, true, false),
    r("/sen.raft.v1.Raft/ReadIndex", Peer, true, false),
];

/// The rule of gRPC method `path`, if it has one.
pub fn lookup(path: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.method == path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// Every method of every service in the generated descriptors.
    fn methods(set: &[u8]) -> Vec<String> {
        let fds = prost_types::FileDescriptorSet::decode(set).expect("descriptor set");
        let mut out = Vec::new();
        for f in fds.file {
            for s in &f.service {
                for m in &s.method {
                    out.push(format!("/{}.{}/{}", f.package(), s.name(), m.name()));
                }
            }
        }
        out
    }

    #[test]
    fn every_rpc_has_a_rule() {
        let ours = methods(sen_proto::FILE_DESCRIPTOR_SET);
        let health = methods(tonic_health::pb::FILE_DESCRIPTOR_SET);
        assert!(ours.len() > 50, "{ours:?}");
        assert!(ours.iter().any(|m| m.starts_with("/sen.raft.v1.Raft/")));
        let missing: Vec<&String> = ours.iter().chain(&health).filter(|m| lookup(m).is_none()).collect();
        assert!(missing.is_empty(), "methods without an authorization rule: {missing:?}");
        // And no rule for a method that does not exist (a typo would leave
        // the real method without one).
        let all: BTreeSet<&String> = ours.iter().chain(&health).collect();
        for r in RULES {
            assert!(
                all.contains(&r.method.to_owned()) || r.method.starts_with("/grpc.reflection."),
                "rule for an unknown method {}",
                r.method
            );
        }
        let mut seen = BTreeSet::new();
        assert!(RULES.iter().all(|r| seen.insert(r.method)), "a method has two rules");
    }

    #[test]
    fn the_node_to_node_service_is_for_nodes_only() {
        for m in methods(sen_proto::FILE_DESCRIPTOR_SET)
            .iter()
            .filter(|m| m.starts_with("/sen.raft.v1."))
        {
            assert_eq!(lookup(m).map(|r| r.need), Some(Need::Peer), "{m}");
        }
        assert!(lookup("/sen.v1.Kv/Nope").is_none());
    }
}
