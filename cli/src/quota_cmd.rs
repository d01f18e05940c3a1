//! `sen quota`: the most a database or a site may hold.

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use crate::output::{emit, human_bytes, parse_bytes, table};
use crate::repo_args::when;
use crate::{Failure, Output, client};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Database,
    Site,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Database => "database",
            Kind::Site => "site",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum QuotaCmd {
    /// Set the quota of a database (keys and values) or a site (its
    /// deployed files). Writes that would pass it are refused with
    /// RESOURCE_EXHAUSTED; deletes and shrinking writes always pass.
    Set {
        kind: Kind,
        name: String,
        /// `10GiB`, `500MB`, a number of bytes, or `none` to remove it.
        #[arg(long)]
        max_bytes: String,
    },
    /// Every quota and what its database or site holds now.
    List,
}

pub async fn run(cmd: QuotaCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        QuotaCmd::Set { kind, name, max_bytes } => {
            let bytes =
                if max_bytes.trim().eq_ignore_ascii_case("none") {
                    0
                } else {
                    match parse_bytes(&max_bytes)? {
                        0 => return Err(
                            "a quota of 0 bytes would refuse every write; use `--max-bytes none` to remove the quota"
                                .into(),
                        ),
                        n => n,
                    }
                };
            let revision = c.set_quota(kind.as_str(), &name, bytes).await?;
            emit(
                output,
                json!({"kind": kind.as_str(), "name": name, "max_bytes": bytes, "revision": revision}),
                || match bytes {
                    0 => format!("{} {name}: no quota", kind.as_str()),
                    n => format!("{} {name}: at most {} ({n} bytes)", kind.as_str(), human_bytes(n)),
                },
            );
        }
        QuotaCmd::List => {
            let quotas = c.list_quotas().await?;
            let rows: Vec<Vec<String>> = quotas
                .iter()
                .map(|q| {
                    vec![
                        q.kind.clone(),
                        q.name.clone(),
                        human_bytes(q.used_bytes),
                        human_bytes(q.max_bytes),
                        format!("{:.0}%", 100.0 * q.used_bytes as f64 / q.max_bytes.max(1) as f64),
                        q.set_by.clone(),
                        when(q.set_at_ms),
                    ]
                })
                .collect();
            let list: Vec<_> = quotas
                .iter()
                .map(|q| {
                    json!({"kind": q.kind, "name": q.name, "max_bytes": q.max_bytes, "used_bytes": q.used_bytes,
                           "set_by": q.set_by, "set_at_ms": q.set_at_ms})
                })
                .collect();
            emit(output, json!({"quotas": list}), || {
                if rows.is_empty() {
                    "no quotas".into()
                } else {
                    table(&["KIND", "NAME", "USED", "QUOTA", "USE", "SET BY", "SET AT"], &rows)
                }
            });
        }
    }
    Ok(())
}
