//! `sen user`, `sen token`, `sen role`, `sen audit` and `sen whoami`:
//! access control (docs/security.md). Everything but `whoami` needs
//! cluster-admin (the audit log: auditor).

use std::time::{Duration, UNIX_EPOCH};

use clap::Subcommand;
use sen_raft::schema::system::{AuditRecord, SystemRecord, TokenRecord, UserRecord};
use serde_json::json;

use crate::output::{emit, table};
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user (then grant roles and create a token or a certificate).
    Add { name: String },
    /// Every user and their roles.
    List,
    /// Remove a user; their tokens are revoked.
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// A new token for a user, printed once (only a hash is kept).
    Create {
        #[arg(long)]
        user: String,
        /// A label, e.g. laptop or ci.
        #[arg(long, default_value = "")]
        name: String,
        /// Expire after this long (30d, 12h); default: never.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// Write the token to this file (0600) instead of printing it.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Tokens (ids, owners, names, expiry; never secrets).
    List {
        #[arg(long, default_value = "")]
        user: String,
    },
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// Grant ROLE to USER: cluster-admin, operator and auditor are
    /// cluster-wide; site-admin and reader need --scope.
    Grant {
        user: String,
        role: String,
        /// site:NAME or db:NAME (NAME may end with *), comma-separated or
        /// repeated.
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Revoke ROLE from USER (only the given scopes, if any).
    Revoke {
        user: String,
        role: String,
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Every user's grants.
    List,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Audit records, oldest first.
    List {
        /// Only those within this long ago (24h, 30d).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        #[arg(long, default_value = "")]
        user: String,
        /// Only refused requests.
        #[arg(long)]
        denied: bool,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn parse<T: SystemRecord>(j: &str) -> Result<T, Failure> {
    T::from_json(j.as_bytes()).map_err(|e| Failure::from(e.to_string()))
}

fn user_row(u: &UserRecord) -> Vec<String> {
    vec![
        u.name.clone(),
        if u.grants.is_empty() {
            "-".into()
        } else {
            u.grants.iter().map(|g| g.to_string()).collect::<Vec<_>>().join("; ")
        },
        u.created_by.clone(),
        when(u.created_at_ms),
    ]
}

pub async fn run_user(cmd: UserCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        UserCmd::Add { name } => {
            let u: UserRecord = parse(&c.add_user(&name).await?)?;
            emit(output, json!({"user": u}), || {
                format!("added user {name}; grant a role with `sen role grant {name} ROLE`")
            });
        }
        UserCmd::List => {
            let users: Vec<UserRecord> = c
                .list_users()
                .await?
                .iter()
                .map(|j| parse(j))
                .collect::<Result<_, _>>()?;
            emit(output, json!({"users": users}), || {
                table(
                    &["USER", "ROLES", "CREATED BY", "CREATED"],
                    &users.iter().map(user_row).collect::<Vec<_>>(),
                )
            });
        }
        UserCmd::Remove { name } => {
            let n = c.remove_user(&name).await?;
            emit(output, json!({"user": name, "tokens_revoked": n}), || {
                format!("removed user {name} ({n} token(s) revoked)")
            });
        }
    }
    Ok(())
}

/// Write a secret to a new file, readable by its owner only.
pub fn write_token_file(path: &std::path::Path, secret: &str) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::from(format!("cannot create {} (it must not exist yet): {e}", path.display())))?;
    f.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::from(format!("write {}: {e}", path.display())))
}

pub async fn run_token(cmd: TokenCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        TokenCmd::Create {
            user,
            name,
            expires,
            out,
        } => {
            if expires.is_some_and(|d| d < Duration::from_secs(1)) {
                return Err(Failure::from(
                    "--expires must be at least 1s (omit it for a token that never expires)",
                ));
            }
            let r = c
                .create_token(&user, &name, expires.map_or(0, |d| d.as_millis() as u64))
                .await?;
            let rec: TokenRecord = parse(&r.json)?;
            match &out {
                Some(path) => {
                    write_token_file(path, &r.token)?;
                    emit(output, json!({"token": rec, "file": path}), || {
                        format!(
                            "token {} for {user} written to {} (use it with --token-file or SEN_TOKEN_FILE)",
                            rec.id,
                            path.display()
                        )
                    });
                }
                None => emit(output, json!({"token": rec, "secret": r.token}), || {
                    format!(
                        "{}\n(token {} for {user}: shown only now, keep it safe; use it as SEN_TOKEN or in a --token-file)",
                        r.token, rec.id
                    )
                }),
            }
        }
        TokenCmd::List { user } => {
            let tokens: Vec<TokenRecord> = c
                .list_tokens(&user)
                .await?
                .iter()
                .map(|j| parse(j))
                .collect::<Result<_, _>>()?;
            emit(output, json!({"tokens": tokens}), || {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.user.clone(),
                            t.name.clone(),
                            when(t.created_at_ms),
                            t.expires_at_ms.map_or("never".into(), when),
                            t.revoked_at_ms.map_or("-".into(), when),
                        ]
                    })
                    .collect();
                table(&["ID", "USER", "NAME", "CREATED", "EXPIRES", "REVOKED"], &rows)
            });
        }
        TokenCmd::Revoke { id } => {
            let t: TokenRecord = parse(&c.revoke_token(&id).await?)?;
            emit(output, json!({"token": t}), || {
                format!("revoked token {} of {}", t.id, t.user)
            });
        }
    }
    Ok(())
}

pub async fn run_role(cmd: RoleCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    match cmd {
        RoleCmd::Grant { user, role, scopes } => {
            let u: UserRecord = parse(&c.grant(&user, &role, scopes).await?)?;
            emit(output, json!({"user": u}), || {
                format!("{user} now has: {}", user_row(&u)[1])
            });
        }
        RoleCmd::Revoke { user, role, scopes } => {
            let u: UserRecord = parse(&c.revoke(&user, &role, scopes).await?)?;
            emit(output, json!({"user": u}), || {
                format!("{user} now has: {}", user_row(&u)[1])
            });
        }
        RoleCmd::List => {
            let users: Vec<UserRecord> = c
                .list_users()
                .await?
                .iter()
                .map(|j| parse(j))
                .collect::<Result<_, _>>()?;
            let grants: Vec<serde_json::Value> = users
                .iter()
                .flat_map(|u| {
                    u.grants
                        .iter()
                        .map(move |g| json!({"user": u.name, "role": g.role, "scopes": g.scopes}))
                })
                .collect();
            emit(output, json!({"grants": grants}), || {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .flat_map(|u| {
                        u.grants.iter().map(move |g| {
                            vec![
                                u.name.clone(),
                                g.role.to_string(),
                                g.scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
                            ]
                        })
                    })
                    .collect();
                table(&["USER", "ROLE", "SCOPE"], &rows)
            });
        }
    }
    Ok(())
}

pub async fn run_audit(cmd: AuditCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    let AuditCmd::List {
        since,
        user,
        denied,
        limit,
    } = cmd;
    let since_ms = since.map_or(0, |d| sen_core::now_ms().saturating_sub(d.as_millis() as u64));
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut after = String::new();
    loop {
        let want = limit.saturating_sub(records.len() as u32).min(10_000);
        if want == 0 {
            break;
        }
        let page = c
            .list_audit(sen_proto::v1::ListAuditRequest {
                since_ms,
                user: user.clone(),
                denied,
                limit: want,
                after: after.clone(),
            })
            .await?;
        for j in &page.json {
            records.push(parse(j)?);
        }
        if page.next.is_empty() {
            break;
        }
        after = page.next;
    }
    emit(output, json!({"records": records}), || {
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                vec![
                    when(r.at_ms),
                    r.who.clone(),
                    r.method.clone(),
                    r.resource.clone(),
                    r.result.clone(),
                    r.from.clone(),
                    r.node.to_string(),
                    r.message.clone(),
                ]
            })
            .collect();
        if rows.is_empty() {
            "no audit records match".into()
        } else {
            table(
                &["TIME", "WHO", "METHOD", "RESOURCE", "RESULT", "FROM", "NODE", "WHY"],
                &rows,
            )
        }
    });
    Ok(())
}

pub async fn whoami(endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    let c = client(endpoints, timeout)?;
    let r = c.whoami().await?;
    emit(
        output,
        json!({"kind": r.kind, "name": r.name, "token_id": r.token_id, "grants": r.grants, "node_id": r.node_id}),
        || match r.kind.as_str() {
            "user" => format!(
                "user {}{} (answered by node {}): {}",
                r.name,
                if r.token_id.is_empty() {
                    " by certificate".to_owned()
                } else {
                    format!(" by token {}", r.token_id)
                },
                r.node_id,
                if r.grants.is_empty() {
                    "no roles".to_owned()
                } else {
                    r.grants.join("; ")
                }
            ),
            "insecure" => format!(
                "node {} runs without TLS and authentication: anyone can do anything",
                r.node_id
            ),
            other => format!("{other} {}", r.name),
        },
    );
    Ok(())
}
