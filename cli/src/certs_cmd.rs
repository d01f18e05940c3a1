//! `sen certs init|node|client`: a cluster CA and the certificates signed
//! by it (`sen_security::certs`). Files only: no cluster needed.

use std::path::PathBuf;

use clap::Subcommand;
use sen_security::certs;
use serde_json::json;

use crate::output::emit;
use crate::{Failure, Output};

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// A new cluster CA in DIR, one certificate per node (1..=N) and one
    /// for the user `admin`.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// How many node certificates.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Host names or IP addresses the nodes are reached at (repeatable;
        /// 127.0.0.1 and localhost are always included).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Validity of the node and user certificates, in days.
        #[arg(long, default_value_t = certs::LEAF_DAYS)]
        days: u32,
    },
    /// A certificate for node ID, signed by the CA in DIR.
    Node {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: u64,
        #[arg(long = "host")]
        hosts: Vec<String>,
        #[arg(long, default_value_t = certs::LEAF_DAYS)]
        days: u32,
    },
    /// A client certificate for user NAME (its common name).
    Client {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = certs::LEAF_DAYS)]
        days: u32,
    },
}

fn paths(p: &certs::Pair) -> serde_json::Value {
    json!({"cert": p.cert, "key": p.key})
}

pub fn run(cmd: CertsCmd, output: Output) -> Result<(), Failure> {
    match cmd {
        CertsCmd::Init {
            dir,
            nodes,
            hosts,
            days,
        } => {
            let m = certs::init(&dir, nodes, &hosts, days)?;
            emit(
                output,
                json!({
                    "ca": paths(&m.ca),
                    "nodes": m.nodes.iter().map(|(id, p)| json!({"id": id, "files": paths(p)})).collect::<Vec<_>>(),
                    "users": m.users.iter().map(|(u, p)| json!({"user": u, "files": paths(p)})).collect::<Vec<_>>(),
                }),
                || {
                    let mut t = format!(
                        "cluster CA: {} (keep {} offline: it signs every certificate)\n",
                        m.ca.cert.display(),
                        m.ca.key.display()
                    );
                    for (id, p) in &m.nodes {
                        t.push_str(&format!("node {id}: {} + {}\n", p.cert.display(), p.key.display()));
                    }
                    for (u, p) in &m.users {
                        t.push_str(&format!("user {u}: {} + {}\n", p.cert.display(), p.key.display()));
                    }
                    t.push_str(&format!(
                        "in each node's config: [tls] ca = \"{}\", cert and key = its own files; then `sen cluster init` with SEN_CA, SEN_CERT and SEN_KEY set to the admin files",
                        m.ca.cert.display()
                    ));
                    t
                },
            );
        }
        CertsCmd::Node { dir, id, hosts, days } => {
            let p = certs::node(&dir, id, &hosts, days)?;
            emit(output, json!({"id": id, "files": paths(&p)}), || {
                format!("node {id}: {} + {}", p.cert.display(), p.key.display())
            });
        }
        CertsCmd::Client { dir, user, days } => {
            let p = certs::client(&dir, &user, days)?;
            emit(output, json!({"user": user, "files": paths(&p)}), || {
                format!(
                    "user {user}: {} + {} (grant it a role: `sen role grant {user} ROLE`)",
                    p.cert.display(),
                    p.key.display()
                )
            });
        }
    }
    Ok(())
}
