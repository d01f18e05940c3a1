//! Who may do what, against real processes over TLS: the RBAC matrix
//! (every RPC from every kind of identity), mutual TLS between nodes,
//! certificate rotation under load, forwarding that keeps the caller, and
//! private sites over HTTPS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use sen_proto::v1::*;
use tonic::codec::{DecodeBuf, EncodeBuf};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::common::*;

/// Bytes in, bytes out: any method can be called with an encoded request.
#[derive(Clone, Copy, Default)]
struct Raw;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Unary,
    ServerStream,
    ClientStream,
}

/// Call `path` with `body`; the status it ends with (Ok for success).
/// How one identity calls one node: the channel (with its TLS identity),
/// a bearer token, and the node id a node certificate's holder says it is.
#[derive(Clone)]
struct Id {
    ch: Channel,
    token: Option<String>,
    from_node: Option<u64>,
}

/// Call `path` as `id` with `body`; the status it ends with (Ok for
/// success).
async fn call_as(id: &Id, path: &'static str, body: Vec<u8>, shape: Shape) -> Status {
    call_with(id.ch.clone(), id.token.as_deref(), id.from_node, path, body, shape).await
}

async fn call(ch: Channel, token: Option<&str>, path: &'static str, body: Vec<u8>, shape: Shape) -> Status {
    call_with(ch, token, None, path, body, shape).await
}

async fn call_with(
    ch: Channel,
    token: Option<&str>,
    from_node: Option<u64>,
    path: &'static str,
    body: Vec<u8>,
    shape: Shape,
) -> Status {
    let mut grpc = tonic::client::Grpc::new(ch);
    if let Err(e) = grpc.ready().await {
        return Status::unavailable(format!("transport: {e}"));
    }
    let path = PathAndQuery::from_static(path);
    let auth = |md: &mut tonic::metadata::MetadataMap| {
        if let Some(t) = token {
            md.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        if let Some(n) = from_node {
            md.insert("sen-from-node", n.to_string().parse().unwrap());
        }
    };
    let result = match shape {
        Shape::Unary => {
            let mut req = tonic::Request::new(body);
            auth(req.metadata_mut());
            req.set_timeout(Duration::from_secs(20));
            grpc.unary(req, path, Raw).await.map(|_| ())
        }
        Shape::ServerStream => {
            let mut req = tonic::Request::new(body);
            auth(req.metadata_mut());
            req.set_timeout(Duration::from_secs(20));
            match grpc.server_streaming(req, path, Raw).await {
                Ok(r) => {
                    let mut s = r.into_inner();
                    loop {
                        match s.message().await {
                            Ok(Some(_)) => {}
                            Ok(None) => break Ok(()),
                            Err(e) => break Err(e),
                        }
                    }
                }
                Err(e) => Err(e),
            }
        }
        Shape::ClientStream => {
            let mut req = tonic::Request::new(tokio_stream::iter(vec![body]));
            auth(req.metadata_mut());
            req.set_timeout(Duration::from_secs(20));
            grpc.client_streaming(req, path, Raw).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Status::ok(""),
        Err(s) => s,
    }
}

/// The kinds of caller the matrix is run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    /// cluster-admin, by token.
    Admin,
    /// operator, by token.
    Operator,
    /// auditor, by token.
    Auditor,
    /// site-admin of `site:portal*` and `db:portal*`, by token.
    SiteIn,
    /// site-admin of `site:xa-*` and `db:xa-*` (the matrix's resources are
    /// out of its scope), by token.
    SiteOut,
    /// reader of `site:portal` and `db:portal`, by client certificate.
    Reader,
    /// a user without any grant, by token.
    NoGrant,
    /// a revoked token.
    Revoked,
    /// an expired token.
    Expired,
    /// a client certificate of another CA.
    WrongCa,
    /// TLS, but no credentials at all.
    NoCredentials,
    /// a member node's certificate (saying which node it is), as a client
    /// holding it would use it.
    NodeCert,
    /// a node certificate of the cluster's CA for node 9, not a member.
    Outsider,
}

use Who::*;

const EVERYONE: &[Who] = &[
    Admin,
    Operator,
    Auditor,
    SiteIn,
    SiteOut,
    Reader,
    NoGrant,
    Revoked,
    Expired,
    WrongCa,
    NoCredentials,
    NodeCert,
    Outsider,
];
/// Any user of the cluster (cluster-wide reads of one's own view).
const USERS: &[Who] = &[Admin, Operator, Auditor, SiteIn, SiteOut, Reader, NoGrant];

/// One row: a method, a request that changes nothing harmful when
/// allowed, and who may call it — written from the role table of
/// docs/security.md, not from the server's rule table.
struct Row {
    path: &'static str,
    body: Vec<u8>,
    shape: Shape,
    allowed: Vec<Who>,
}

fn row(path: &'static str, msg: impl Message, allowed: &[Who]) -> Row {
    Row {
        path,
        body: msg.encode_to_vec(),
        shape: Shape::Unary,
        allowed: allowed.to_vec(),
    }
}

fn plus(a: &[Who], b: &[Who]) -> Vec<Who> {
    a.iter().chain(b).copied().collect()
}

fn matrix() -> Vec<Row> {
    let put = |db: &str| PutRequest {
        header: None,
        db: db.into(),
        key: b"matrix/k".to_vec(),
        value: b"v".to_vec(),
    };
    let txn = TxnRequest {
        header: None,
        db: "portal".into(),
        compares: vec![],
        success: vec![TxnOp {
            op: Some(txn_op::Op::Put(TxnPut {
                key: b"matrix/t".to_vec(),
                value: b"v".to_vec(),
            })),
        }],
        failure: vec![],
    };
    let mut rows = vec![
        // Key-value: the database's site-admin writes, its readers read.
        row("/sen.v1.Kv/Put", put("portal"), &[Admin, SiteIn]),
        row(
            "/sen.v1.Kv/Get",
            GetRequest {
                db: "portal".into(),
                key: b"matrix/k".to_vec(),
                consistency: Consistency::Linearizable as i32,
            },
            &[Admin, SiteIn, Reader],
        ),
        row(
            "/sen.v1.Kv/Delete",
            DeleteRequest {
                header: None,
                db: "portal".into(),
                key: b"matrix/none".to_vec(),
            },
            &[Admin, SiteIn],
        ),
        row(
            "/sen.v1.Kv/Scan",
            ScanRequest {
                db: "portal".into(),
                prefix: b"matrix/".to_vec(),
                ..Default::default()
            },
            &[Admin, SiteIn, Reader],
        ),
        row("/sen.v1.Kv/Txn", txn, &[Admin, SiteIn]),
        row("/sen.v1.Kv/ListDatabases", ListDatabasesRequest::default(), USERS),
        // Site content.
        row(
            "/sen.v1.Content/CreateSite",
            CreateSiteRequest {
                header: None,
                site: "portal-matrix".into(),
            },
            &[Admin, SiteIn],
        ),
        row(
            "/sen.v1.Content/DeleteSite",
            DeleteSiteRequest {
                header: None,
                site: "portal-gone".into(),
            },
            &[Admin, SiteIn],
        ),
        row("/sen.v1.Content/ListSites", ListSitesRequest::default(), USERS),
        row(
            "/sen.v1.Content/ListFiles",
            ListFilesRequest {
                site: "portal".into(),
                ..Default::default()
            },
            &[Admin, SiteIn, Reader],
        ),
        // Chunk uploads name no site (the deployment does): any site-admin,
        // and operators (a drill pushes its probe site).
        row(
            "/sen.v1.Content/MissingChunks",
            MissingChunksRequest::default(),
            &[Admin, Operator, SiteIn, SiteOut],
        ),
        row(
            "/sen.v1.Content/PutChunks",
            PutChunksRequest::default(),
            &[Admin, Operator, SiteIn, SiteOut],
        ),
        row(
            "/sen.v1.Content/Deploy",
            DeployRequest {
                site: "portal-gone".into(),
                ..Default::default()
            },
            &[Admin, SiteIn],
        ),
        Row {
            shape: Shape::ServerStream,
            ..row(
                "/sen.v1.Content/ReadFile",
                ReadFileRequest {
                    site: "portal".into(),
                    path: "index.html".into(),
                    ..Default::default()
                },
                &[Admin, SiteIn, Reader],
            )
        },
        row(
            "/sen.v1.Content/History",
            HistoryRequest {
                site: "portal".into(),
                limit: 5,
            },
            &[Admin, SiteIn, Reader],
        ),
        row(
            "/sen.v1.Content/CollectGarbage",
            CollectGarbageRequest {
                header: None,
                grace_ms: Some(24 * 3600 * 1000),
            },
            &[Admin, Operator],
        ),
        // The cluster.
        row("/sen.v1.Cluster/Init", InitRequest::default(), &[Admin]),
        row(
            "/sen.v1.Cluster/AddNode",
            AddNodeRequest {
                id: 99,
                addr: "127.0.0.99:1".into(),
                learner: true,
            },
            &[Admin],
        ),
        row("/sen.v1.Cluster/PromoteNode", PromoteNodeRequest { id: 99 }, &[Admin]),
        row("/sen.v1.Cluster/RemoveNode", RemoveNodeRequest { id: 99 }, &[Admin]),
        row(
            "/sen.v1.Cluster/Status",
            StatusRequest::default(),
            &plus(USERS, &[NodeCert]),
        ),
        row(
            "/sen.v1.Cluster/TransferLeader",
            TransferLeaderRequest { to: 99 },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Cluster/Drain",
            DrainRequest { id: 99, drain: true },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Admin/Digest",
            DigestRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        row(
            "/sen.v1.Admin/AppliedRequests",
            AppliedRequestsRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        row(
            "/sen.v1.Admin/LocalStatus",
            LocalStatusRequest::default(),
            &plus(USERS, &[NodeCert]),
        ),
        // Backups: operators; a leader asks a follower node to make one.
        row(
            "/sen.v1.Backup/Create",
            CreateBackupRequest::default(),
            &[Admin, Operator, NodeCert],
        ),
        // Faults and recovery: drills are the operators', recovery the
        // administrators'.
        row(
            "/sen.v1.NodeOps/InjectFault",
            InjectFaultRequest {
                fault: "no-such-fault".into(),
                duration_ms: 1,
                drill_id: String::new(),
            },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.NodeOps/ClearFault",
            ClearFaultRequest::default(),
            &[Admin, Operator],
        ),
        row("/sen.v1.NodeOps/Recover", RecoverRequest::default(), &[Admin]),
        // Incidents: recorded by nodes and operators, read by auditors.
        row(
            "/sen.v1.Incidents/Record",
            RecordIncidentRequest { json: "{}".into() },
            &[Admin, Operator, NodeCert],
        ),
        row(
            "/sen.v1.Incidents/Annotate",
            AnnotateIncidentRequest {
                id: 999_999,
                cause: "matrix".into(),
                ..Default::default()
            },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Incidents/List",
            ListIncidentsRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        // Access control: administrators only; anyone may ask who they are.
        row("/sen.v1.Access/WhoAmI", WhoAmIRequest::default(), USERS),
        row(
            "/sen.v1.Access/AddUser",
            AddUserRequest {
                name: "matrix-new".into(),
            },
            &[Admin],
        ),
        row(
            "/sen.v1.Access/RemoveUser",
            RemoveUserRequest {
                name: "nobody-here".into(),
            },
            &[Admin],
        ),
        row("/sen.v1.Access/ListUsers", ListUsersRequest::default(), &[Admin]),
        row(
            "/sen.v1.Access/Grant",
            GrantRequest {
                user: "nobody-here".into(),
                role: "reader".into(),
                scopes: vec!["site:portal".into()],
            },
            &[Admin],
        ),
        row(
            "/sen.v1.Access/Revoke",
            RevokeRequest {
                user: "nobody-here".into(),
                role: "reader".into(),
                scopes: vec![],
            },
            &[Admin],
        ),
        row(
            "/sen.v1.Access/CreateToken",
            CreateTokenRequest {
                user: "nobody-here".into(),
                ..Default::default()
            },
            &[Admin],
        ),
        row("/sen.v1.Access/ListTokens", ListTokensRequest::default(), &[Admin]),
        row(
            "/sen.v1.Access/RevokeToken",
            RevokeTokenRequest {
                id: "0000000000000000".into(),
            },
            &[Admin],
        ),
        row(
            "/sen.v1.Access/SetSiteAccess",
            SetSiteAccessRequest {
                site: "portal-gone".into(),
                private: true,
            },
            &[Admin],
        ),
        // The audit log: auditors read it; nodes hand their records to the
        // leader.
        row("/sen.v1.Audit/List", ListAuditRequest::default(), &[Admin, Auditor]),
        row("/sen.v1.Audit/Append", AppendAuditRequest::default(), &[NodeCert]),
        // The control plane's records.
        row(
            "/sen.v1.Control/BeginDrill",
            BeginDrillRequest { json: "{".into() },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Control/EndDrill",
            EndDrillRequest { id: "none".into() },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Control/StoreDrillReport",
            StoreDrillReportRequest { json: "{".into() },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Control/ListDrillReports",
            ListDrillReportsRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        row(
            "/sen.v1.Control/SetBackupSchedule",
            SetBackupScheduleRequest { json: "{".into() },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Control/GetBackupSchedule",
            GetBackupScheduleRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        row(
            "/sen.v1.Control/ClearBackupSchedule",
            ClearBackupScheduleRequest::default(),
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Control/ListBackupRuns",
            ListBackupRunsRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        row(
            "/sen.v1.Control/StoreVerification",
            StoreVerificationRequest { json: "{".into() },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Control/SetArchive",
            SetArchiveRequest { json: "{".into() },
            &[Admin, Operator],
        ),
        row(
            "/sen.v1.Control/ArchiveStatus",
            ArchiveStatusRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        // Quotas: set by administrators (removing the quota of a database
        // that has none changes nothing), read by operators and auditors.
        row(
            "/sen.v1.Control/SetQuota",
            SetQuotaRequest {
                kind: "database".into(),
                name: "portal-none".into(),
                max_bytes: 0,
            },
            &[Admin],
        ),
        row(
            "/sen.v1.Control/ListQuotas",
            ListQuotasRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        // The page a site is probed at: set by operators (clearing the
        // path of a site that has none changes nothing).
        row(
            "/sen.v1.Control/SetProbePath",
            SetProbePathRequest {
                site: "portal-none".into(),
                path: String::new(),
            },
            &[Admin, Operator],
        ),
        // Availability: nodes hand their probe results to the leader (a
        // report naming no node speaks for the certificate's node);
        // operators and auditors read them.
        row(
            "/sen.v1.Control/ReportProbe",
            ReportProbeRequest::default(),
            &[NodeCert],
        ),
        row(
            "/sen.v1.Control/ListAvailability",
            ListAvailabilityRequest::default(),
            &[Admin, Operator, Auditor],
        ),
        // Health: anyone who completes the TLS handshake.
        row(
            "/grpc.health.v1.Health/Check",
            tonic_health::pb::HealthCheckRequest::default(),
            &plus(USERS, &[Revoked, Expired, NoCredentials, NodeCert, Outsider]),
        ),
        Row {
            shape: Shape::ServerStream,
            ..row(
                "/grpc.health.v1.Health/Watch",
                tonic_health::pb::HealthCheckRequest {
                    service: "no.such.Service".into(),
                },
                &plus(USERS, &[Revoked, Expired, NoCredentials, NodeCert, Outsider]),
            )
        },
    ];
    // Node to node: node certificates of this CA only (the cluster id and
    // the target id are checked after; a payload that does not decode
    // changes nothing).
    for path in [
        "/sen.raft.v1.Raft/AppendEntries",
        "/sen.raft.v1.Raft/Vote",
        "/sen.raft.v1.Raft/PreVote",
        "/sen.raft.v1.Raft/TransferLeader",
    ] {
        rows.push(row(
            path,
            sen_proto::raft::v1::RaftPayload { data: vec![1] },
            &[NodeCert, Outsider],
        ));
    }
    rows.push(Row {
        shape: Shape::ClientStream,
        ..row(
            "/sen.raft.v1.Raft/InstallSnapshot",
            sen_proto::raft::v1::SnapshotFrame { data: vec![1] },
            &[NodeCert, Outsider],
        )
    });
    rows.push(row(
        "/sen.raft.v1.Raft/Join",
        sen_proto::raft::v1::JoinRequest {
            cluster_id: "not-this-one".into(),
            node_id: 9,
            leader_id: 1,
        },
        &[NodeCert, Outsider],
    ));
    rows.push(row(
        "/sen.raft.v1.Raft/NodeStatus",
        sen_proto::raft::v1::NodeStatusRequest::default(),
        &[NodeCert, Outsider],
    ));
    rows.push(row(
        "/sen.raft.v1.Raft/ReadIndex",
        sen_proto::raft::v1::ReadIndexRequest::default(),
        &[NodeCert, Outsider],
    ));
    rows
}

/// Every method of every service in a descriptor set.
fn methods(set: &[u8]) -> Vec<String> {
    let fds = prost_types::FileDescriptorSet::decode(set).unwrap();
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

/// A TLS channel to `addr` trusting `ca`, presenting `identity` if given.
async fn tls_channel(addr: &str, ca: &[u8], identity: Option<(Vec<u8>, Vec<u8>)>) -> Channel {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy()
}

fn read_pair(p: &sen_security::certs::Pair) -> (Vec<u8>, Vec<u8>) {
    (std::fs::read(&p.cert).unwrap(), std::fs::read(&p.key).unwrap())
}

/// The matrix's users and what each presents: a token, or a certificate
/// (user name or node id) with the CA it comes from.
struct Creds {
    tokens: BTreeMap<Who, String>,
    certs: BTreeMap<Who, (Vec<u8>, Vec<u8>)>,
    /// The member node whose certificate `NodeCert` uses.
    member: u64,
}

/// Create the users, grants and tokens of the matrix (once).
async fn creds(c: &Cluster, member: u64) -> Creds {
    let admin = c.client().unwrap();
    let sec = c.security().unwrap().clone();
    let token_for = |user: &'static str, role: Option<(&'static str, Vec<&'static str>)>, expires_ms: u64| {
        let admin = &admin;
        async move {
            let _ = admin.add_user(user).await;
            if let Some((role, scopes)) = role {
                admin
                    .grant(user, role, scopes.into_iter().map(String::from).collect())
                    .await
                    .unwrap();
            }
            admin.create_token(user, "matrix", expires_ms).await.unwrap()
        }
    };
    let mut tokens = BTreeMap::new();
    tokens.insert(Admin, sec.admin_token().unwrap().0.clone());
    tokens.insert(
        Operator,
        token_for("ops-on-duty", Some(("operator", vec![])), 0).await.token,
    );
    tokens.insert(
        Auditor,
        token_for("editorial-board", Some(("auditor", vec![])), 0).await.token,
    );
    let t = token_for(
        "portal-admin",
        Some(("site-admin", vec!["site:portal*", "db:portal*"])),
        0,
    )
    .await;
    tokens.insert(SiteIn, t.token);
    let t = token_for("xa-admin", Some(("site-admin", vec!["site:xa-*", "db:xa-*"])), 0).await;
    tokens.insert(SiteOut, t.token);
    tokens.insert(NoGrant, token_for("no-grant", None, 0).await.token);
    let t = token_for("was-reader", Some(("reader", vec!["site:portal", "db:portal"])), 0).await;
    let rec: serde_json::Value = serde_json::from_str(&t.json).unwrap();
    admin.revoke_token(rec["id"].as_str().unwrap()).await.unwrap();
    tokens.insert(Revoked, t.token);
    let t = token_for("short-lived", Some(("reader", vec!["site:portal", "db:portal"])), 1000).await;
    let expired = t.token.clone();
    tokens.insert(Expired, t.token);
    // The reader authenticates with its client certificate.
    admin.add_user("portal-reader").await.unwrap();
    admin
        .grant(
            "portal-reader",
            "reader",
            vec!["site:portal".into(), "db:portal".into()],
        )
        .await
        .unwrap();
    let mut certs = BTreeMap::new();
    certs.insert(Reader, read_pair(&sec.user_cert("portal-reader").unwrap()));
    // A certificate named like the admin, signed by another CA.
    let other = c.root().join("other-ca");
    let made = sen_security::certs::init(&other, 0, &[], 1).unwrap();
    certs.insert(WrongCa, read_pair(&made.users[0].1));
    certs.insert(
        NodeCert,
        read_pair(&sec.node_cert(member, &format!("127.0.0.{}", 10 + member)).unwrap()),
    );
    certs.insert(Outsider, read_pair(&sec.node_cert(9, "127.0.0.19").unwrap()));
    // The short-lived token has expired once a whoami with it says so.
    let tls = sec.tls_options(None).unwrap();
    let probe = c.client_with(Some(tls), Some(&expired)).unwrap();
    sen_chaos::wait_for("the short-lived token to expire", T, || async {
        Ok(probe
            .whoami()
            .await
            .err()
            .filter(|e| e.to_string().contains("expired"))
            .map(|_| ()))
    })
    .await
    .unwrap();
    Creds { tokens, certs, member }
}

/// How each identity reaches node `node`.
async fn identities(c: &Cluster, node: u64, creds: &Creds) -> BTreeMap<Who, Id> {
    let sec = c.security().unwrap().clone();
    let addr = c.grpc(node).unwrap();
    let mut out = BTreeMap::new();
    for &who in EVERYONE {
        let cert = creds.certs.get(&who).cloned();
        let from_node = match who {
            NodeCert => Some(creds.member),
            Outsider => Some(9),
            _ => None,
        };
        out.insert(
            who,
            Id {
                ch: tls_channel(&addr, sec.ca_pem(), cert).await,
                token: creds.tokens.get(&who).cloned(),
                from_node,
            },
        );
    }
    out
}

/// The code a refusal of `who` must carry.
fn refusal_code(who: Who) -> Code {
    match who {
        Revoked | Expired | NoCredentials => Code::Unauthenticated,
        // The handshake itself fails: the client sees a transport error.
        WrongCa => Code::Unavailable,
        _ => Code::PermissionDenied,
    }
}

/// Every refusal in the audit log.
async fn refusals(admin: &sen_client::Client) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = admin
            .list_audit(ListAuditRequest {
                denied: true,
                limit: 10_000,
                after: after.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        out.extend(
            page.json
                .iter()
                .map(|j| serde_json::from_str::<serde_json::Value>(j).unwrap()),
        );
        if page.next.is_empty() {
            return out;
        }
        after = page.next;
    }
}

/// Whether an audit record is the refusal of `who` calling `path`.
fn audited(rec: &serde_json::Value, who: Who, path: &str, names: &BTreeMap<Who, &str>) -> bool {
    let s = |k: &str| rec[k].as_str().unwrap_or("").to_owned();
    let refused = matches!(s("result").as_str(), "denied" | "unauthenticated");
    if !refused {
        return false;
    }
    match who {
        WrongCa => s("method").starts_with("TLS handshake") && s("message").contains("client certificate refused"),
        _ if s("method") != path => false,
        Revoked => s("message").contains("revoked"),
        Expired => s("message").contains("expired"),
        NoCredentials => s("who") == "anonymous" && s("message").contains("no credentials"),
        NodeCert | Outsider => s("who").starts_with("node "),
        _ => s("who") == names[&who],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rbac_matrix_every_rpc_from_every_identity() {
    // Refusals from one address would soon be throttled: the matrix makes
    // hundreds on purpose (throttling has its own unit test).
    let mut c = cluster("rbac", &format!("{FAST}[auth]\nfailures-per-minute = 100000\n"));
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let admin = c.client().unwrap();
    // Content to read: the public portal site and one key.
    admin.create_site("portal").await.unwrap();
    let tree = c.root().join("portal-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("index.html"), "<h1>Cổng thông tin</h1>").unwrap();
    admin.push("portal", &tree, &Default::default(), None).await.unwrap();
    admin.put("portal", b"matrix/k", b"v").await.unwrap();
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let creds = creds(&c, follower).await;
    // Refusals are checked on the leader and on a follower (whose replica
    // decides them too, and audits them through the leader).
    let r = admin.put("portal", b"matrix/ready", b"1").await.unwrap();
    c.wait_applied(follower, r.revision, T).await.unwrap();
    let on: BTreeMap<u64, BTreeMap<Who, Id>> = [
        (leader, identities(&c, leader, &creds).await),
        (follower, identities(&c, follower, &creds).await),
    ]
    .into();
    let ids = &on[&leader];
    let names: BTreeMap<Who, &str> = [
        (Admin, "admin"),
        (Operator, "ops-on-duty"),
        (Auditor, "editorial-board"),
        (SiteIn, "portal-admin"),
        (SiteOut, "xa-admin"),
        (Reader, "portal-reader"),
        (NoGrant, "no-grant"),
    ]
    .into();

    // The matrix covers every method the node serves.
    let rows = matrix();
    let covered: BTreeSet<&str> = rows.iter().map(|r| r.path).collect();
    assert_eq!(covered.len(), rows.len(), "a method appears twice");
    let all: BTreeSet<String> = methods(sen_proto::FILE_DESCRIPTOR_SET)
        .into_iter()
        .chain(methods(tonic_health::pb::FILE_DESCRIPTOR_SET))
        .collect();
    let missing: Vec<&String> = all.iter().filter(|m| !covered.contains(m.as_str())).collect();
    assert!(missing.is_empty(), "methods the matrix does not exercise: {missing:?}");

    // 1. Every refused cell: the right code, and nothing changes.
    let digest = |c: &Cluster| {
        let ch = c.channel(leader).unwrap();
        async move {
            sen_proto::v1::admin_client::AdminClient::new(ch)
                .digest(DigestRequest {
                    without_audit_log: true,
                })
                .await
                .unwrap()
                .into_inner()
                .digest
        }
    };
    let before = digest(&c).await;
    let mut refused = Vec::new();
    let mut failures = Vec::new();
    for (&node, ids) in &on {
        for r in &rows {
            for &who in EVERYONE {
                if r.allowed.contains(&who) {
                    continue;
                }
                let st = call_as(&ids[&who], r.path, r.body.clone(), r.shape).await;
                let want = refusal_code(who);
                let ok = if who == WrongCa {
                    // The server closes the connection with a TLS alert: the
                    // client sees the transport fail, never an answer.
                    matches!(st.code(), Code::Unavailable | Code::Unknown | Code::Cancelled)
                        && (st.message().contains("transport") || st.message().contains("cancel"))
                } else {
                    st.code() == want && !st.message().is_empty()
                };
                if !ok {
                    failures.push(format!(
                        "{} as {who:?} on node {node}: expected {want:?}, got {:?}: {}",
                        r.path,
                        st.code(),
                        st.message()
                    ));
                }
                refused.push((who, r.path, node));
            }
        }
    }
    assert!(failures.is_empty(), "refusals:\n{}", failures.join("\n"));
    assert_eq!(before, digest(&c).await, "a refused request changed the state");

    // 2. Every allowed cell passes authorization (it may still fail for
    // its own reasons: a node that does not exist, a malformed record).
    let mut failures = Vec::new();
    for r in &rows {
        for &who in &r.allowed {
            let st = call_as(&ids[&who], r.path, r.body.clone(), r.shape).await;
            if matches!(st.code(), Code::PermissionDenied | Code::Unauthenticated)
                || (st.code() == Code::Unavailable && st.message().starts_with("transport"))
            {
                failures.push(format!("{} as {who:?}: {:?}: {}", r.path, st.code(), st.message()));
            }
        }
    }
    assert!(failures.is_empty(), "allowed cells refused:\n{}", failures.join("\n"));

    // 3. Every refusal is in the audit log (the leader's own, flushed
    // every 200 ms).
    let missing = sen_chaos::wait_for("every refusal in the audit log", T, || async {
        let recs = refusals(&admin).await;
        let missing: Vec<String> = refused
            .iter()
            .filter(|(who, path, node)| {
                !recs
                    .iter()
                    .any(|r| r["node"].as_u64() == Some(*node) && audited(r, *who, path, &names))
            })
            .map(|(who, path, node)| format!("{path} as {who:?} on node {node}"))
            .collect();
        Ok(missing.is_empty().then_some(()).or_else(|| {
            eprintln!("{} refusals not audited yet, e.g. {:?}", missing.len(), missing.first());
            None
        }))
    })
    .await;
    missing.unwrap();
    // The audit log is readable only as documented: an operator is refused.
    let st = call_as(
        &ids[&Operator],
        "/sen.v1.Audit/List",
        ListAuditRequest::default().encode_to_vec(),
        Shape::Unary,
    )
    .await;
    assert_eq!(st.code(), Code::PermissionDenied);
    assert!(
        st.message().contains("auditor"),
        "the refusal names the role: {}",
        st.message()
    );
    // Secrets never reach the log: no token secret in any record.
    let recs = refusals(&admin).await;
    for id in ids.values() {
        if let Some(t) = &id.token {
            let secret = t.rsplit('_').next().unwrap();
            assert!(
                !recs.iter().any(|r| r.to_string().contains(secret)),
                "a token secret is in the audit log"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_must_be_nodes_of_this_cluster() {
    let mut c = cluster("mtls", FAST);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let addr = c.grpc(follower).unwrap();
    let sec = c.security().unwrap().clone();
    let cluster_id = c.status().await.unwrap().cluster_id;
    let term_before = c.local_status(follower, T).await.unwrap().term;

    // A "node" of another CA cannot even connect ...
    let other = c.root().join("other-ca");
    sen_security::certs::init(&other, 3, &[], 1).unwrap();
    let foreign = read_pair(&sen_security::certs::node_files(&other, leader));
    let ch = tls_channel(&addr, sec.ca_pem(), Some(foreign)).await;
    let mut vote = tonic::Request::new(sen_proto::raft::v1::RaftPayload { data: vec![] }.encode_to_vec());
    vote.metadata_mut()
        .insert("sen-cluster-id", cluster_id.parse().unwrap());
    vote.metadata_mut()
        .insert("sen-from-node", leader.to_string().parse().unwrap());
    let mut grpc = tonic::client::Grpc::new(ch);
    let st = match grpc.ready().await {
        Err(e) => Status::unavailable(format!("transport: {e}")),
        Ok(()) => grpc
            .unary(vote, PathAndQuery::from_static("/sen.raft.v1.Raft/Vote"), Raw)
            .await
            .err()
            .unwrap_or_else(|| Status::ok("")),
    };
    assert_ne!(st.code(), Code::Ok, "a node of another CA was heard");
    // ... and the refusal is audited.
    let admin = c.client().unwrap();
    sen_chaos::wait_for("the refused handshake in the audit log", T, || async {
        let page = admin
            .list_audit(ListAuditRequest {
                denied: true,
                ..Default::default()
            })
            .await?;
        Ok(page
            .json
            .iter()
            .any(|j| j.contains("TLS handshake") && j.contains("client certificate refused"))
            .then_some(()))
    })
    .await
    .unwrap();

    // A node certificate of this CA for another id cannot speak for the
    // leader: vote, append and join are refused.
    let node9 = read_pair(&sec.node_cert(9, "127.0.0.19").unwrap());
    let ch = tls_channel(&addr, sec.ca_pem(), Some(node9)).await;
    for path in [
        "/sen.raft.v1.Raft/Vote",
        "/sen.raft.v1.Raft/AppendEntries",
        "/sen.raft.v1.Raft/Join",
    ] {
        let mut req = tonic::Request::new(sen_proto::raft::v1::RaftPayload { data: vec![] }.encode_to_vec());
        req.metadata_mut().insert("sen-cluster-id", cluster_id.parse().unwrap());
        req.metadata_mut()
            .insert("sen-from-node", leader.to_string().parse().unwrap());
        let mut grpc = tonic::client::Grpc::new(ch.clone());
        grpc.ready().await.unwrap();
        let st = grpc
            .unary(req, PathAndQuery::from_static(path), Raw)
            .await
            .expect_err("a node certificate for another id was accepted");
        assert_eq!(st.code(), Code::Unauthenticated, "{path}: {st:?}");
        assert!(
            st.message().contains("node 9's") && st.message().contains(&format!("node {leader}")),
            "{path}: {}",
            st.message()
        );
    }
    // ... nor without saying which node it is (as a client holding a node
    // certificate might try), on Raft or on the calls nodes make.
    for path in ["/sen.raft.v1.Raft/Vote", "/sen.v1.Cluster/Status"] {
        let st = call(ch.clone(), None, path, vec![], Shape::Unary).await;
        assert_eq!(st.code(), Code::Unauthenticated, "{path}: {st:?}");
        assert!(st.message().contains("sen-from-node"), "{path}: {}", st.message());
    }
    // Under its own id, a node that is not a member may not use what
    // members use (status, incidents, audit records, backups).
    let st = call_with(
        ch.clone(),
        None,
        Some(9),
        "/sen.v1.Cluster/Status",
        vec![],
        Shape::Unary,
    )
    .await;
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
    assert!(st.message().contains("not a member"), "{}", st.message());
    // A plaintext client gets nowhere.
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = sen_proto::v1::cluster_client::ClusterClient::new(ch)
            .status(StatusRequest::default())
            .await;
        assert!(r.is_err(), "a plaintext client was answered");
    }
    // Nothing moved: same term, same members, the follower still follows.
    let after = c.local_status(follower, T).await.unwrap();
    assert_eq!(after.term, term_before, "a refused peer call changed the term");
    assert_eq!(c.status().await.unwrap().members.len(), 3);
    // And a user certificate is not a node's: peers calls are refused.
    let reader = read_pair(&sec.user_cert("admin").unwrap());
    let ch = tls_channel(&addr, sec.ca_pem(), Some(reader)).await;
    let st = call(
        ch,
        None,
        "/sen.raft.v1.Raft/NodeStatus",
        sen_proto::raft::v1::NodeStatusRequest::default().encode_to_vec(),
        Shape::Unary,
    )
    .await;
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_on_sighup_while_a_writer_runs() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    // This cluster has its own CA: its node certificates are replaced.
    let dir = TestDir::new("rotate");
    let mut c = sen_chaos::ProcessCluster::new(SEN, dir.path.join("cluster"), FAST).unwrap();
    c.form(3).await.unwrap();
    let certs = c.security().unwrap().dir.clone();
    let not_after = |c: &sen_chaos::ProcessCluster, id: u64| {
        let ch = c.channel(id).unwrap();
        async move {
            sen_proto::v1::admin_client::AdminClient::new(ch)
                .local_status(LocalStatusRequest::default())
                .await
                .unwrap()
                .into_inner()
                .cert_not_after_ms
        }
    };
    let old: Vec<u64> = futures_join(&c, not_after).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let client = c.client().unwrap();
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.put("portal", format!("rot/{i:06}").as_bytes(), b"x").await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(e.to_string());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
            errors
        })
    };
    // New certificates (longer-lived) for every node, in place, then
    // SIGHUP one node at a time while the writer runs.
    for id in 1..=3u64 {
        let p = sen_security::certs::node_files(&certs, id);
        std::fs::remove_file(&p.cert).unwrap();
        std::fs::remove_file(&p.key).unwrap();
        sen_security::certs::node(&certs, id, &[format!("127.0.0.{}", 10 + id)], 90).unwrap();
        let n = &c.nodes[&id];
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(n.pid().unwrap() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        let before = ok.load(Ordering::Relaxed);
        sen_chaos::wait_for(&format!("node {id} to reload"), T, || async {
            Ok((c.log(id).contains("certificates reloaded") && ok.load(Ordering::Relaxed) > before + 20).then_some(()))
        })
        .await
        .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let errors = writer.await.unwrap();
    assert!(ok.load(Ordering::Relaxed) > 60);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed writes during the rotation: {errors:?}"
    );
    // Every node now presents the new certificate, and peers still talk.
    let new: Vec<u64> = futures_join(&c, not_after).await;
    for (o, n) in old.iter().zip(&new) {
        assert!(n > o, "certificate not replaced: {o} -> {n}");
    }
    let r = c
        .client()
        .unwrap()
        .put("portal", b"after-rotation", b"ok")
        .await
        .unwrap();
    for id in 1..=3 {
        c.wait_applied(id, r.revision, T).await.unwrap();
    }
    assert!(c.metric(1, "sen_tls_reloads_total").await.unwrap() >= 1.0);

    // A replacement that names another node is refused: node 1 keeps its
    // certificate (and its place in the cluster), and says why.
    let one = sen_security::certs::node_files(&certs, 1);
    let two = sen_security::certs::node_files(&certs, 2);
    let saved = (std::fs::read(&one.cert).unwrap(), std::fs::read(&one.key).unwrap());
    std::fs::copy(&two.cert, &one.cert).unwrap();
    std::fs::copy(&two.key, &one.key).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.nodes[&1].pid().unwrap() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    sen_chaos::wait_for("node 1 to refuse the certificate of node 2", T, || async {
        Ok(c.log(1).contains("certificates not reloaded").then_some(()))
    })
    .await
    .unwrap();
    let errors = c
        .metric_where(1, "sen_tls_reloads_total", &[("result", "error")])
        .await
        .unwrap();
    assert!(errors >= 1.0, "{errors}");
    assert_eq!(
        not_after(&c, 1).await,
        new[0],
        "node 1 still presents its own certificate"
    );
    std::fs::write(&one.cert, saved.0).unwrap();
    std::fs::write(&one.key, saved.1).unwrap();
    let r = c
        .client()
        .unwrap()
        .put("portal", b"after-refusal", b"ok")
        .await
        .unwrap();
    for id in 1..=3 {
        c.wait_applied(id, r.revision, T).await.unwrap();
    }
}

/// `f` for nodes 1..=3 in order.
async fn futures_join<F, Fut>(c: &sen_chaos::ProcessCluster, f: F) -> Vec<u64>
where
    F: Fn(&sen_chaos::ProcessCluster, u64) -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let mut out = Vec::new();
    for id in 1..=3 {
        out.push(f(c, id).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_the_caller_not_itself() {
    let mut c = cluster("forward-principal", FAST);
    c.form(3).await.unwrap();
    let leader = c.wait_leader(None, T).await.unwrap();
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let admin = c.client().unwrap();
    admin.add_user("lich-tuan-admin").await.unwrap();
    admin
        .grant(
            "lich-tuan-admin",
            "site-admin",
            vec!["site:lich-tuan".into(), "db:lich-tuan".into()],
        )
        .await
        .unwrap();
    let token = admin
        .create_token("lich-tuan-admin", "forwarding", 0)
        .await
        .unwrap()
        .token;
    // The follower must know the user and the token before it is asked
    // (a replica that does not yet sends the client to the leader instead
    // of forwarding, which is not what this test looks at).
    let applied = c.local_status(leader, T).await.unwrap().applied_index;
    c.wait_applied(follower, applied, T).await.unwrap();
    let tls = c.security().unwrap().tls_options(None).unwrap();
    let via_follower = sen_client::Client::new(
        &[c.grpc(follower).unwrap()],
        sen_client::ClientOptions {
            tls: Some(tls),
            token: Some(sen_client::Secret(token)),
            ..Default::default()
        },
    )
    .unwrap();
    // Its own database and site, through the follower: allowed.
    let w = via_follower
        .put("lich-tuan", b"2026-w49", "Thứ hai: giao ban".as_bytes())
        .await
        .unwrap();
    assert!(w.revision > 0);
    via_follower.create_site("lich-tuan").await.unwrap();
    // Another's: refused, by the leader too (the follower forwarded the
    // user, not its own node identity).
    let e = via_follower.put("cong-bao", b"so-201", b"x").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    assert!(e.to_string().contains("db:cong-bao"), "{e}");
    let e = via_follower.create_site("cong-bao").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    // The leader decides again, with its own replica: a member node that
    // forwards for the user (as a follower whose replica was behind would)
    // is refused for the other database, and for a revoked token.
    let cluster_id = c.status().await.unwrap().cluster_id;
    let token_id = via_follower.whoami().await.unwrap().token_id;
    let forward = |db: &'static str, by: u64, ch: Channel| {
        let behalf = format!(r#"{{"User":{{"name":"lich-tuan-admin","via":{{"Token":{{"id":"{token_id}"}}}}}}}}"#);
        let cluster_id = cluster_id.clone();
        async move {
            let mut req = tonic::Request::new(PutRequest {
                header: None,
                db: db.into(),
                key: b"forwarded".to_vec(),
                value: b"x".to_vec(),
            });
            let md = req.metadata_mut();
            md.insert("sen-from-node", by.to_string().parse().unwrap());
            md.insert("sen-forwarded-by", by.to_string().parse().unwrap());
            md.insert("sen-cluster-id", cluster_id.parse().unwrap());
            md.insert("sen-on-behalf-of", behalf.parse().unwrap());
            sen_proto::v1::kv_client::KvClient::new(ch).put(req).await
        }
    };
    let e = forward("cong-bao", follower, c.peer_channel(leader, follower).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    forward("lich-tuan", follower, c.peer_channel(leader, follower).await.unwrap())
        .await
        .unwrap();
    // A node certificate of the CA that is not a member cannot act for users.
    let e = forward("lich-tuan", 9, c.peer_channel(leader, 9).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("not a member"), "{}", e.message());
    admin.revoke_token(&token_id).await.unwrap();
    let e = forward("lich-tuan", follower, c.peer_channel(leader, follower).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("revoked"), "{}", e.message());

    // The leader's audit log shows the user, through the follower.
    let recs: Vec<serde_json::Value> = sen_chaos::wait_for("the write in the audit log", T, || async {
        let recs: Vec<serde_json::Value> = admin
            .list_audit(ListAuditRequest {
                user: "lich-tuan-admin".into(),
                ..Default::default()
            })
            .await?
            .json
            .iter()
            .map(|j| serde_json::from_str(j).unwrap())
            .collect();
        let refusals = recs.iter().filter(|r| r["result"] == "denied").count();
        let puts = recs
            .iter()
            .filter(|r| r["method"] == "/sen.v1.Kv/Put" && r["result"] == "ok")
            .count();
        // Two writes; three refusals of the user: two by the follower, the
        // other database by the leader (the revoked token's refusal names
        // no user).
        Ok((puts >= 2 && refusals >= 3).then_some(recs))
    })
    .await
    .unwrap();
    let put = recs
        .iter()
        .find(|r| r["method"] == "/sen.v1.Kv/Put" && r["result"] == "ok")
        .unwrap_or_else(|| panic!("no audited put in {recs:?}"));
    assert_eq!(put["node"].as_u64(), Some(leader), "{put}");
    assert!(
        put["from"].as_str().unwrap().contains(&format!("via node {follower}")),
        "{put}"
    );
    assert_eq!(
        recs.iter()
            .filter(|r| r["method"] == "/sen.v1.Kv/Put" && r["result"] == "ok")
            .count(),
        2,
        "two writes (through the follower, and forwarded by hand), one record each: the follower does not audit what it forwards: {recs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_sites_need_a_reader_over_https() {
    let mut c = cluster("private-site", FAST);
    c.form(1).await.unwrap();
    let admin = c.client().unwrap();
    let tree = c.root().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("index.html"), "Văn bản chỉ đạo").unwrap();
    for site in ["cong-khai", "noi-bo"] {
        admin.create_site(site).await.unwrap();
        admin.push(site, &tree, &Default::default(), None).await.unwrap();
    }
    admin.set_site_access("noi-bo", true).await.unwrap();
    admin.add_user("can-bo").await.unwrap();
    admin
        .grant("can-bo", "reader", vec!["site:noi-bo".into()])
        .await
        .unwrap();
    let reader = admin.create_token("can-bo", "browser", 0).await.unwrap().token;
    admin.add_user("khach").await.unwrap();
    let stranger = admin.create_token("khach", "", 0).await.unwrap().token;
    let web = c.web(1).unwrap();
    assert!(web.is_tls());
    let visitor = web.anonymous();
    // A public site: everyone, over HTTPS.
    assert_eq!(visitor.get_status("/sites/cong-khai/").await.unwrap().0, 200);
    // A private one: 401 without credentials, 403 without the grant, 200
    // for its reader (bearer token or cookie).
    let (code, body) = visitor.get_status("/sites/noi-bo/").await.unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("Văn bản"));
    assert_eq!(
        web.with_token(&stranger).get_status("/sites/noi-bo/").await.unwrap().0,
        403
    );
    let (code, body) = web.with_token(&reader).get_status("/sites/noi-bo/").await.unwrap();
    assert_eq!((code, body.as_str()), (200, "Văn bản chỉ đạo"));
    let cookie = format!("sen_token={reader}");
    let r = visitor
        .request("GET", "/sites/noi-bo/index.html", &[("Cookie", &cookie)])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Refusals are audited.
    sen_chaos::wait_for("HTTP refusals in the audit log", T, || async {
        let page = admin
            .list_audit(ListAuditRequest {
                denied: true,
                ..Default::default()
            })
            .await?;
        let http: Vec<&String> = page.json.iter().filter(|j| j.contains("GET /sites/noi-bo/")).collect();
        Ok((http.len() >= 2 && http.iter().any(|j| j.contains("\"who\":\"khach\""))).then_some(()))
    })
    .await
    .unwrap();
    // Public again: anyone.
    admin.set_site_access("noi-bo", false).await.unwrap();
    sen_chaos::wait_for("the site to be public", T, || async {
        Ok((visitor.get_status("/sites/noi-bo/").await?.0 == 200).then_some(()))
    })
    .await
    .unwrap();
}
