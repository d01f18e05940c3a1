//! The client workload: a few concurrent clients, each with at most one
//! operation in flight, writing unique values, reading (linearizable and
//! stale), compare-and-setting and appending unique tokens, spread over the
//! nodes. Every operation is recorded in the history; every write error or
//! timeout is "unknown", never "failed" (the write may still commit).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sen_client::{Client, ClientError, ClientOptions, Consistency};
use sen_proto::v1::{Compare, TxnAppend, TxnOp, TxnPut, TxnRequest, compare, txn_op};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken as CancelToken;

use crate::history::{Op, OpKind, Outcome};

/// The database the workload uses.
pub const DB: &str = "chaos";

/// Workload shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadConfig {
    pub clients: u32,
    /// Register keys (put / get / cas) live at a time.
    pub keys: usize,
    /// Append keys live at a time.
    pub append_keys: usize,
    /// Switch to fresh keys after this many operations in all (keeps each
    /// key's history small enough to check).
    pub rotate_every: u64,
    /// Give up on one operation (all retries included) after this long.
    pub op_timeout_ms: u64,
    /// Pause between a client's operations, uniformly in [0, max].
    pub think_ms: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            clients: 6,
            keys: 4,
            append_keys: 2,
            rotate_every: 600,
            op_timeout_ms: 2000,
            think_ms: 20,
        }
    }
}

/// State shared by the clients of one run.
pub struct Shared {
    pub start: Instant,
    pub ops: AtomicU64,
    pub processes: AtomicU64,
    pub cfg: WorkloadConfig,
    /// The clients' credentials (TLS and token), timeouts aside.
    pub credentials: ClientOptions,
}

impl Shared {
    pub fn new(cfg: WorkloadConfig, start: Instant, credentials: ClientOptions) -> Arc<Self> {
        Arc::new(Self {
            start,
            ops: AtomicU64::new(0),
            processes: AtomicU64::new(1000),
            cfg,
            credentials,
        })
    }

    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Keys in use right now: (register keys, append keys).
    fn keys(&self) -> (Vec<String>, Vec<String>) {
        let gen_ = self.ops.load(Ordering::Relaxed) / self.cfg.rotate_every.max(1);
        (
            (0..self.cfg.keys).map(|i| format!("r{gen_}-{i}")).collect(),
            (0..self.cfg.append_keys).map(|i| format!("a{gen_}-{i}")).collect(),
        )
    }
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a write error proves the write never happened: only input the
/// node rejected before proposing it.
fn definitely_not_applied(e: &ClientError) -> bool {
    matches!(e.code(), Some(tonic::Code::InvalidArgument))
}

/// One client: runs until `stop` is cancelled, sending every finished
/// operation to `tx`.
pub async fn client(
    id: u32,
    endpoints: Vec<String>,
    endpoint_label: String,
    shared: Arc<Shared>,
    seed: u64,
    stop: CancelToken,
    tx: mpsc::UnboundedSender<Op>,
) {
    let opts = ClientOptions {
        timeout: Duration::from_millis(shared.cfg.op_timeout_ms),
        attempt_timeout: Duration::from_millis((shared.cfg.op_timeout_ms / 2).max(200)),
        connect_timeout: Duration::from_millis(300),
        ..shared.credentials.clone()
    };
    let Ok(cl) = Client::new(&endpoints, opts) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut process = shared.processes.fetch_add(1, Ordering::Relaxed);
    let mut seq = 0u64;
    // Last value this client read per key, to aim its cas at.
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    while !stop.is_cancelled() {
        let op_id = shared.ops.fetch_add(1, Ordering::Relaxed);
        let (regs, apps) = shared.keys();
        seq += 1;
        let unique = format!("c{id}-{seq}");
        let roll = rng.random_range(0..100);
        let mut op = Op {
            id: op_id,
            process,
            client: id,
            endpoint: endpoint_label.clone(),
            f: OpKind::Get,
            key: String::new(),
            value: None,
            expect: None,
            invoke_us: 0,
            complete_us: None,
            outcome: Outcome::Ok,
            read: None,
            revision: None,
            succeeded: None,
            request_id: None,
            served_by: None,
            error: None,
        };
        let request_id = Client::new_request_id();
        op.invoke_us = shared.now_us();
        let result: Result<(), ClientError> = if roll < 30 {
            op.f = OpKind::Put;
            op.key = regs[rng.random_range(0..regs.len())].clone();
            op.value = Some(unique.clone());
            op.request_id = Some(hex(&request_id));
            cl.put_with_id(request_id, DB, op.key.as_bytes(), unique.as_bytes())
                .await
                .map(|r| {
                    op.revision = Some(r.revision);
                    op.served_by = r.header.map(|h| h.node_id);
                })
        } else if roll < 55 || (roll < 65 && apps.is_empty()) {
            op.f = OpKind::Get;
            op.key = if rng.random_bool(0.75) || apps.is_empty() {
                regs[rng.random_range(0..regs.len())].clone()
            } else {
                apps[rng.random_range(0..apps.len())].clone()
            };
            cl.get(DB, op.key.as_bytes(), Consistency::Linearizable).await.map(|r| {
                let v = r.kv.as_ref().map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                op.revision = r.kv.as_ref().map(|kv| kv.mod_revision);
                op.served_by = r.header.map(|h| h.node_id);
                seen.insert(op.key.clone(), v.clone());
                op.read = Some(v);
            })
        } else if roll < 65 {
            op.f = OpKind::GetStale;
            op.key = apps[rng.random_range(0..apps.len())].clone();
            cl.get(DB, op.key.as_bytes(), Consistency::Stale).await.map(|r| {
                op.revision = r.kv.as_ref().map(|kv| kv.mod_revision);
                op.served_by = r.header.map(|h| h.node_id);
                op.read = Some(r.kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()));
            })
        } else if roll < 80 {
            op.f = OpKind::Cas;
            op.key = regs[rng.random_range(0..regs.len())].clone();
            let expect = seen.get(&op.key).cloned().flatten();
            op.expect = expect.clone();
            op.value = Some(unique.clone());
            op.request_id = Some(hex(&request_id));
            let target = match &expect {
                Some(v) => compare::Target::Value(v.clone().into_bytes()),
                None => compare::Target::Exists(false),
            };
            let req = TxnRequest {
                header: None,
                db: DB.into(),
                compares: vec![Compare {
                    key: op.key.clone().into_bytes(),
                    op: compare::Op::Equal as i32,
                    target: Some(target),
                }],
                success: vec![TxnOp {
                    op: Some(txn_op::Op::Put(TxnPut {
                        key: op.key.clone().into_bytes(),
                        value: unique.clone().into_bytes(),
                    })),
                }],
                failure: vec![],
            };
            cl.txn_with_id(request_id, req).await.map(|r| {
                op.revision = Some(r.revision);
                op.succeeded = Some(r.succeeded);
                op.served_by = r.header.map(|h| h.node_id);
            })
        } else {
            op.f = OpKind::Append;
            op.key = apps[rng.random_range(0..apps.len())].clone();
            let token = format!("{unique};");
            op.value = Some(token.clone());
            op.request_id = Some(hex(&request_id));
            let req = TxnRequest {
                header: None,
                db: DB.into(),
                compares: vec![],
                success: vec![TxnOp {
                    op: Some(txn_op::Op::Append(TxnAppend {
                        key: op.key.clone().into_bytes(),
                        value: token.into_bytes(),
                    })),
                }],
                failure: vec![],
            };
            cl.txn_with_id(request_id, req).await.map(|r| {
                op.revision = Some(r.revision);
                op.served_by = r.header.map(|h| h.node_id);
            })
        };
        match result {
            Ok(()) => {
                op.outcome = Outcome::Ok;
                op.complete_us = Some(shared.now_us());
            }
            Err(e) => {
                op.error = Some(e.to_string());
                if !op.f.is_write() || definitely_not_applied(&e) {
                    op.outcome = Outcome::Fail;
                    op.complete_us = Some(shared.now_us());
                } else {
                    // May still commit later: this process cannot issue more
                    // operations (its last one never returned).
                    op.outcome = Outcome::Unknown;
                    op.complete_us = None;
                    process = shared.processes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if tx.send(op).is_err() {
            return;
        }
        let think = rng.random_range(0..=shared.cfg.think_ms);
        if think > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(think)) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}
