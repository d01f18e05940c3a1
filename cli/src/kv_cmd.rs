//! `sen kv ...`: key-value databases.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use sen_client::Consistency;
use sen_proto::v1::{KeyValue, TxnRequest};
use serde_json::json;

use crate::output::{emit, json_bytes, show, table};
use crate::{Failure, Output, client};
use sen_client::txn as txn_parse;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReadConsistency {
    /// ReadIndex through the leader (default).
    Linearizable,
    /// The answering node's local state; reports its applied index.
    Stale,
}

impl From<ReadConsistency> for Consistency {
    fn from(c: ReadConsistency) -> Self {
        match c {
            ReadConsistency::Linearizable => Consistency::Linearizable,
            ReadConsistency::Stale => Consistency::Stale,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum KvCmd {
    /// Set KEY in database DB.
    Put {
        db: String,
        key: String,
        /// The value (or use --value-file).
        value: Option<String>,
        /// Read the value from this file ("-" = standard input).
        #[arg(long, conflicts_with = "value")]
        value_file: Option<PathBuf>,
    },
    /// Print the value of KEY (exit status 1 if it does not exist).
    Get {
        db: String,
        key: String,
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        consistency: ReadConsistency,
    },
    /// Delete KEY.
    Del { db: String, key: String },
    /// List keys (and values) in key order.
    Scan {
        db: String,
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Stop after this many keys (0 = all; fetched page by page).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        consistency: ReadConsistency,
    },
    /// Compare-then-act transaction on one database.
    ///
    /// Example: sen kv txn portal --if 'value(lock) = free' --then 'put lock n1' --else 'del tmp'
    #[command(verbatim_doc_comment)]
    Txn {
        db: String,
        /// A comparison: value(K) = V, value(K) != V, value(K) < V, value(K) > V,
        /// mod(K) OP N, create(K) OP N, version(K) OP N, exists(K), !exists(K).
        #[arg(long = "if")]
        ifs: Vec<String>,
        /// An operation if every comparison holds: "put K V", "del K" or "append K V".
        #[arg(long = "then")]
        thens: Vec<String>,
        /// An operation otherwise.
        #[arg(long = "else")]
        elses: Vec<String>,
        /// Read clauses from a file ("-" = stdin), one per line: "if ...", "then ...", "else ...".
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List databases with their key counts and sizes.
    Dbs {
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        consistency: ReadConsistency,
    },
}

fn read_input(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| Failure::from(format!("cannot read standard input: {e}")))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| Failure::from(format!("cannot read {}: {e}", path.display())))
    }
}

fn kv_json(kv: &KeyValue) -> serde_json::Value {
    json!({
        "key": json_bytes(&kv.key),
        "value": json_bytes(&kv.value),
        "mod_revision": kv.mod_revision,
        "create_revision": kv.create_revision,
        "version": kv.version,
    })
}

pub async fn run(cmd: KvCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        KvCmd::Put {
            db,
            key,
            value,
            value_file,
        } => {
            let value = match (value, value_file) {
                (Some(v), None) => v.into_bytes(),
                (None, Some(p)) => read_input(&p)?,
                _ => return Err(Failure::from("give a VALUE or --value-file")),
            };
            let r = c.put(&db, key.as_bytes(), &value).await?;
            emit(
                output,
                json!({"db": db, "key": key, "revision": r.revision, "created": r.created, "duplicate": r.duplicate}),
                || {
                    if r.duplicate {
                        format!("OK (already applied) revision={}", r.revision)
                    } else {
                        format!("OK revision={}", r.revision)
                    }
                },
            );
        }
        KvCmd::Get { db, key, consistency } => {
            let r = c.get(&db, key.as_bytes(), consistency.into()).await?;
            let applied = r.header.as_ref().map_or(0, |h| h.applied_index);
            let node = r.header.as_ref().map_or(0, |h| h.node_id);
            match r.kv {
                Some(kv) => emit(
                    output,
                    json!({"db": db, "found": true, "kv": kv_json(&kv), "applied_index": applied, "node_id": node}),
                    || show(&kv.value),
                ),
                None => {
                    if output == Output::Json {
                        println!(
                            "{}",
                            json!({"db": db, "key": key, "found": false, "applied_index": applied, "node_id": node})
                        );
                    }
                    return Err(Failure {
                        code: 1,
                        message: format!("key {key:?} not found in database {db:?}"),
                    });
                }
            }
        }
        KvCmd::Del { db, key } => {
            let r = c.delete(&db, key.as_bytes()).await?;
            emit(
                output,
                json!({"db": db, "key": key, "deleted": r.deleted, "revision": r.revision, "duplicate": r.duplicate}),
                || {
                    if r.deleted {
                        format!("deleted revision={}", r.revision)
                    } else {
                        format!("not found, nothing deleted revision={}", r.revision)
                    }
                },
            );
        }
        KvCmd::Scan {
            db,
            prefix,
            limit,
            keys_only,
            consistency,
        } => {
            let (kvs, more) = c
                .scan(&db, prefix.as_bytes(), limit, keys_only, consistency.into())
                .await?;
            emit(
                output,
                json!({"db": db, "kvs": kvs.iter().map(kv_json).collect::<Vec<_>>(), "count": kvs.len(), "more": more}),
                || {
                    let mut s = String::new();
                    for kv in &kvs {
                        if keys_only {
                            s.push_str(&format!("{}\n", show(&kv.key)));
                        } else {
                            s.push_str(&format!("{}\t{}\n", show(&kv.key), show(&kv.value)));
                        }
                    }
                    s
                },
            );
        }
        KvCmd::Txn {
            db,
            mut ifs,
            mut thens,
            mut elses,
            file,
        } => {
            if let Some(f) = file {
                let text =
                    String::from_utf8(read_input(&f)?).map_err(|_| Failure::from("transaction file is not UTF-8"))?;
                let (i, t, e) = txn_parse::parse_file(&text)?;
                ifs.extend(i);
                thens.extend(t);
                elses.extend(e);
            }
            if thens.is_empty() && elses.is_empty() {
                return Err(Failure::from(
                    "a transaction needs at least one --then or --else operation",
                ));
            }
            let req = TxnRequest {
                header: None,
                db: db.clone(),
                compares: ifs
                    .iter()
                    .map(|s| txn_parse::parse_compare(s))
                    .collect::<Result<_, _>>()?,
                success: thens.iter().map(|s| txn_parse::parse_op(s)).collect::<Result<_, _>>()?,
                failure: elses.iter().map(|s| txn_parse::parse_op(s)).collect::<Result<_, _>>()?,
            };
            let r = c.txn(req).await?;
            emit(
                output,
                json!({"db": db, "succeeded": r.succeeded, "revision": r.revision, "duplicate": r.duplicate}),
                || {
                    if r.succeeded {
                        format!("SUCCEEDED revision={}", r.revision)
                    } else {
                        format!("FAILED (a comparison did not hold; ran --else) revision={}", r.revision)
                    }
                },
            );
        }
        KvCmd::Dbs { consistency } => {
            let r = c.list_databases(consistency.into()).await?;
            emit(
                output,
                json!({"databases": r.databases.iter().map(|d| json!({"name": d.name, "keys": d.keys, "bytes": d.bytes})).collect::<Vec<_>>()}),
                || {
                    let rows: Vec<Vec<String>> = r
                        .databases
                        .iter()
                        .map(|d| vec![d.name.clone(), d.keys.to_string(), d.bytes.to_string()])
                        .collect();
                    table(&["DATABASE", "KEYS", "BYTES"], &rows)
                },
            );
        }
    }
    Ok(())
}
