//! The public key-value service (`sen.v1.Kv`).
//!
//! Writes: validated here, then proposed on the leader. A follower forwards
//! the request unchanged (same request id) to the leader with a deadline;
//! the leader never forwards again, it answers "not leader" with a hint.
//! Linearizable reads: a read barrier (ReadIndex via the leader), then a
//! local read. Stale reads: local, reporting the applied index.

use std::sync::Arc;
use std::time::Duration;

use sen_core::auth::Action;
use sen_proto::v1::kv_server::Kv;
use sen_proto::v1::*;
use sen_raft::apply::KvRecord;
use sen_raft::schema::system::{RESERVED_DB_PREFIX as RESERVED_PREFIX, is_reserved_db};
use sen_raft::{Op, Outcome, Response as RaftResponse, command};
use tonic::{Request, Response, Status};

use super::{measured, request_id, with_id};
use crate::auth;
use crate::deadline;
use crate::error::ApiError;
use crate::forward::{Route, route};
use crate::node::Node;

/// Database names the cluster keeps for itself (the control plane) are
/// never reachable through `Kv`.
fn reserved(db: &str) -> Result<(), ApiError> {
    if is_reserved_db(db) {
        return Err(ApiError::InvalidArgument(format!(
            "database {db:?}: names beginning with {RESERVED_PREFIX:?} belong to the cluster's control plane and are not reachable through the key-value API (use the `sen` commands for drills, backups, incidents and access)"
        )));
    }
    Ok(())
}

pub struct KvApi {
    pub node: Arc<Node>,
}

fn kv_out(key: Vec<u8>, r: KvRecord) -> KeyValue {
    KeyValue {
        key,
        value: r.value,
        mod_revision: r.mod_revision,
        create_revision: r.create_revision,
        version: r.version,
    }
}

fn unexpected(r: &RaftResponse) -> ApiError {
    ApiError::Internal(format!("unexpected result {:?} for this request", r.outcome))
}

impl KvApi {
    fn budget<T>(&self, req: &Request<T>) -> Duration {
        deadline::budget(req.metadata(), self.node.config.server.request_timeout)
    }

    async fn read_ready(&self, consistency: i32, budget: Duration) -> Result<(), ApiError> {
        match Consistency::try_from(consistency) {
            Ok(Consistency::Stale) => Ok(()),
            Ok(Consistency::Linearizable) => self.node.read_barrier(budget).await,
            Err(_) => Err(ApiError::InvalidArgument(format!("unknown consistency {consistency}"))),
        }
    }
}

#[tonic::async_trait]
impl Kv for KvApi {
    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Put", async {
            let db = &req.get_ref().db;
            reserved(db)?;
            auth::require(&req, Action::DbWrite(db))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            let r = req.get_ref();
            let limits = &node.config.limits;
            limits.check_db(&r.db)?;
            limits.check_key(&r.key)?;
            limits.check_value(&r.value)?;
            let id = request_id(&r.header)?;
            match route(&node, &req)? {
                Route::Forward {
                    id: leader_id,
                    addr,
                    behalf,
                } => {
                    let mut msg = req.into_inner();
                    msg.header = with_id(id);
                    forward_to_leader!(&node, behalf, node.peers.kv(leader_id, &addr), addr, put, msg, budget)
                }
                Route::Local => {
                    let r = req.into_inner();
                    let resp = node
                        .propose(
                            id,
                            Op::Put {
                                db: r.db,
                                key: r.key,
                                value: r.value,
                            },
                            budget,
                        )
                        .await?;
                    let Outcome::Put { created } = resp.outcome else {
                        return Err(unexpected(&resp));
                    };
                    Ok(PutResponse {
                        header: Some(node.response_header()),
                        revision: resp.revision,
                        created,
                        duplicate: resp.duplicate,
                    })
                }
            }
        })
        .await
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Delete", async {
            let db = &req.get_ref().db;
            reserved(db)?;
            auth::require(&req, Action::DbWrite(db))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            let r = req.get_ref();
            node.config.limits.check_db(&r.db)?;
            node.config.limits.check_key(&r.key)?;
            let id = request_id(&r.header)?;
            match route(&node, &req)? {
                Route::Forward {
                    id: leader_id,
                    addr,
                    behalf,
                } => {
                    let mut msg = req.into_inner();
                    msg.header = with_id(id);
                    forward_to_leader!(
                        &node,
                        behalf,
                        node.peers.kv(leader_id, &addr),
                        addr,
                        delete,
                        msg,
                        budget
                    )
                }
                Route::Local => {
                    let r = req.into_inner();
                    let resp = node.propose(id, Op::Delete { db: r.db, key: r.key }, budget).await?;
                    let Outcome::Delete { deleted } = resp.outcome else {
                        return Err(unexpected(&resp));
                    };
                    Ok(DeleteResponse {
                        header: Some(node.response_header()),
                        revision: resp.revision,
                        deleted,
                        duplicate: resp.duplicate,
                    })
                }
            }
        })
        .await
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Txn", async {
            let db = &req.get_ref().db;
            reserved(db)?;
            auth::require(&req, Action::DbWrite(db))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            let txn = to_txn(&node, req.get_ref())?;
            let id = request_id(&req.get_ref().header)?;
            match route(&node, &req)? {
                Route::Forward {
                    id: leader_id,
                    addr,
                    behalf,
                } => {
                    let mut msg = req.into_inner();
                    msg.header = with_id(id);
                    forward_to_leader!(&node, behalf, node.peers.kv(leader_id, &addr), addr, txn, msg, budget)
                }
                Route::Local => {
                    let resp = node.propose(id, Op::Txn(txn), budget).await?;
                    let succeeded = match &resp.outcome {
                        Outcome::Txn { succeeded } => *succeeded,
                        Outcome::TxnRejected { reason } => {
                            return Err(ApiError::FailedPrecondition(format!(
                                "transaction refused at revision {}: {reason}",
                                resp.revision
                            )));
                        }
                        _ => return Err(unexpected(&resp)),
                    };
                    Ok(TxnResponse {
                        header: Some(node.response_header()),
                        succeeded,
                        revision: resp.revision,
                        duplicate: resp.duplicate,
                    })
                }
            }
        })
        .await
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Get", async {
            let db = &req.get_ref().db;
            reserved(db)?;
            auth::require(&req, Action::DbRead(db))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            let r = req.into_inner();
            node.config.limits.check_db(&r.db)?;
            node.config.limits.check_key(&r.key)?;
            self.read_ready(r.consistency, budget).await?;
            let state = node.state.clone();
            let (db, key) = (r.db, r.key);
            let (rec, applied) =
                tokio::task::spawn_blocking(move || state.get(&db, &key).map(|(rec, a)| (rec.map(|x| (key, x)), a)))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))??;
            let mut header = node.response_header();
            header.applied_index = applied;
            Ok(GetResponse {
                header: Some(header),
                kv: rec.map(|(k, r)| kv_out(k, r)),
            })
        })
        .await
    }

    async fn scan(&self, req: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Scan", async {
            let db = &req.get_ref().db;
            reserved(db)?;
            auth::require(&req, Action::DbRead(db))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            let r = req.into_inner();
            let limits = &node.config.limits;
            limits.check_db(&r.db)?;
            if r.prefix.len() > limits.max_key_bytes || r.start_after.len() > limits.max_key_bytes {
                return Err(ApiError::InvalidArgument(format!(
                    "prefix and start_after must be at most {} bytes (limits.max-key-bytes)",
                    limits.max_key_bytes
                )));
            }
            self.read_ready(r.consistency, budget).await?;
            let page_size = limits.scan_page(r.limit as usize);
            let page_bytes = limits.max_scan_page_bytes;
            let state = node.state.clone();
            let keys_only = r.keys_only;
            let page = tokio::task::spawn_blocking(move || {
                let after = (!r.start_after.is_empty()).then_some(r.start_after.as_slice());
                state.scan(&r.db, &r.prefix, after, page_size, page_bytes, keys_only)
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            let mut header = node.response_header();
            header.applied_index = page.applied_index;
            Ok(ScanResponse {
                header: Some(header),
                kvs: page.items.into_iter().map(|(k, r)| kv_out(k, r)).collect(),
                more: page.more,
            })
        })
        .await
    }

    async fn list_databases(
        &self,
        req: Request<ListDatabasesRequest>,
    ) -> Result<Response<ListDatabasesResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "ListDatabases", async {
            let caller = auth::caller(&req)?;
            node.check_serving()?;
            let budget = self.budget(&req);
            self.read_ready(req.get_ref().consistency, budget).await?;
            let state = node.state.clone();
            let start_after = req.get_ref().start_after.clone();
            let limit = node.config.limits.scan_page(req.get_ref().limit as usize);
            let (page, applied) = tokio::task::spawn_blocking(move || state.databases_page(&start_after, limit))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??;
            let mut header = node.response_header();
            header.applied_index = applied;
            Ok(ListDatabasesResponse {
                header: Some(header),
                next: page.next.unwrap_or_default(),
                databases: page
                    .items
                    .into_iter()
                    // Only the databases the caller may read (or write).
                    .filter(|d| {
                        !is_reserved_db(&d.name)
                            && (caller.allows(&Action::DbRead(&d.name)) || caller.allows(&Action::DbWrite(&d.name)))
                    })
                    .map(|d| DatabaseInfo {
                        name: d.name,
                        keys: d.keys,
                        bytes: d.bytes,
                    })
                    .collect(),
            })
        })
        .await
    }
}

/// Validate a transaction and convert it to the replicated form.
fn to_txn(node: &Node, r: &TxnRequest) -> Result<command::Txn, ApiError> {
    let limits = &node.config.limits;
    limits.check_db(&r.db)?;
    limits.check_txn_len(r.compares.len() + r.success.len() + r.failure.len())?;
    let mut compares = Vec::with_capacity(r.compares.len());
    for (i, c) in r.compares.iter().enumerate() {
        limits.check_key(&c.key)?;
        let op = match compare::Op::try_from(c.op) {
            Ok(compare::Op::Equal) => command::CompareOp::Equal,
            Ok(compare::Op::NotEqual) => command::CompareOp::NotEqual,
            Ok(compare::Op::Less) => command::CompareOp::Less,
            Ok(compare::Op::Greater) => command::CompareOp::Greater,
            Err(_) => {
                return Err(ApiError::InvalidArgument(format!(
                    "compare #{}: unknown operator {}",
                    i + 1,
                    c.op
                )));
            }
        };
        let target = match &c.target {
            Some(compare::Target::Value(v)) => {
                limits.check_value(v)?;
                command::CompareTarget::Value(v.clone())
            }
            Some(compare::Target::ModRevision(n)) => command::CompareTarget::ModRevision(*n),
            Some(compare::Target::CreateRevision(n)) => command::CompareTarget::CreateRevision(*n),
            Some(compare::Target::Version(n)) => command::CompareTarget::Version(*n),
            Some(compare::Target::Exists(b)) => {
                if !matches!(op, command::CompareOp::Equal | command::CompareOp::NotEqual) {
                    return Err(ApiError::InvalidArgument(format!(
                        "compare #{}: existence can only be compared with = or !=",
                        i + 1
                    )));
                }
                command::CompareTarget::Exists(*b)
            }
            None => {
                return Err(ApiError::InvalidArgument(format!("compare #{} has no target", i + 1)));
            }
        };
        compares.push(command::Compare {
            key: c.key.clone(),
            op,
            target,
        });
    }
    let ops = |list: &[TxnOp], branch: &str| -> Result<Vec<command::TxnOp>, ApiError> {
        list.iter()
            .enumerate()
            .map(|(i, o)| match &o.op {
                Some(txn_op::Op::Put(p)) => {
                    limits.check_key(&p.key)?;
                    limits.check_value(&p.value)?;
                    Ok(command::TxnOp::Put {
                        key: p.key.clone(),
                        value: p.value.clone(),
                    })
                }
                Some(txn_op::Op::Delete(d)) => {
                    limits.check_key(&d.key)?;
                    Ok(command::TxnOp::Delete { key: d.key.clone() })
                }
                Some(txn_op::Op::Append(a)) => {
                    limits.check_key(&a.key)?;
                    limits.check_value(&a.value)?;
                    Ok(command::TxnOp::Append {
                        key: a.key.clone(),
                        value: a.value.clone(),
                    })
                }
                None => Err(ApiError::InvalidArgument(format!(
                    "{branch} operation #{} is empty",
                    i + 1
                ))),
            })
            .collect()
    };
    Ok(command::Txn {
        db: r.db.clone(),
        compares,
        success: ops(&r.success, "success")?,
        failure: ops(&r.failure, "failure")?,
    })
}
