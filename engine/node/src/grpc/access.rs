//! `sen.v1.Access` (users, grants, tokens, private sites), `sen.v1.Audit`
//! (the audit log) and `sen.v1.Control` (the control plane's typed records
//! tools used to write through `Kv`). Writes run on the leader: a follower
//! answers "not leader" with the leader's address and the client retries
//! there. Reads come from this node's replica after a read barrier.

use std::sync::Arc;
use std::time::Duration;

use sen_core::auth::{Credential, Principal};
use sen_proto::v1::access_server::Access;
use sen_proto::v1::audit_server::Audit;
use sen_proto::v1::control_server::Control;
use sen_proto::v1::*;
use sen_raft::Op;
use sen_raft::schema::system::{
    self, ACTIVE_DRILL_KEY, AUDIT_PREFIX, AVAILABILITY_PREFIX, ActiveDrill, AuditRecord, AvailabilityRecord,
    BACKUP_RUN_PREFIX, BACKUP_SCHEDULE_KEY, DRILL_PREFIX, DrillReport, ProbePathRecord, QuotaKind, QuotaRecord,
    RunRecord, SYSTEM_DB, Schedule, SystemRecord, Verification,
};
use tonic::{Request, Response, Status};

use super::measured;
use crate::access;
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::node::Node;
use crate::system::{self as cp, ControlPlane};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn text<T: SystemRecord>(r: &T) -> Result<String, ApiError> {
    String::from_utf8(r.to_json().map_err(internal)?).map_err(internal)
}

fn parse<T: SystemRecord>(json: &str) -> Result<T, ApiError> {
    T::from_json(json.as_bytes()).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

/// Who did it, for `created_by` fields.
fn by(c: &Caller) -> String {
    match &c.principal {
        Principal::User { name, .. } => name.clone(),
        p => p.to_string(),
    }
}

/// Writes go to the leader (the client retries there on "not leader").
fn leader_only(node: &Node) -> Result<(), ApiError> {
    node.check_serving()?;
    if node.is_leader() {
        Ok(())
    } else {
        Err(ApiError::not_leader(node.id, node.leader()))
    }
}

async fn fresh(node: &Node) -> Result<(), ApiError> {
    node.check_serving()?;
    node.read_barrier(node.config.server.request_timeout).await
}

pub struct AccessApi {
    pub node: Arc<Node>,
}

impl AccessApi {
    fn budget(&self) -> Duration {
        self.node.config.server.request_timeout
    }
}

#[tonic::async_trait]
impl Access for AccessApi {
    async fn who_am_i(&self, req: Request<WhoAmIRequest>) -> Result<Response<WhoAmIResponse>, Status> {
        measured(&self.node, "Access/WhoAmI", async {
            let c = auth::caller(&req)?;
            let (kind, name, token_id) = match &c.principal {
                Principal::User { name, via } => (
                    "user",
                    name.clone(),
                    match via {
                        Credential::Token { id } => id.clone(),
                        Credential::Certificate => String::new(),
                    },
                ),
                Principal::Node(id) => ("node", id.to_string(), String::new()),
                Principal::Insecure => ("insecure", String::new(), String::new()),
                Principal::Anonymous => ("anonymous", String::new(), String::new()),
            };
            Ok(WhoAmIResponse {
                kind: kind.into(),
                name,
                token_id,
                grants: c.grants.0.iter().map(|g| g.to_string()).collect(),
                node_id: self.node.id,
            })
        })
        .await
    }

    async fn add_user(&self, req: Request<AddUserRequest>) -> Result<Response<UserDocument>, Status> {
        measured(&self.node, "Access/AddUser", async {
            crate::auth::note(&req, format!("user:{}", req.get_ref().name));
            leader_only(&self.node)?;
            let c = auth::caller(&req)?;
            let u = access::add_user(
                self.node.as_ref(),
                &req.get_ref().name,
                &by(&c),
                sen_core::now_ms(),
                self.budget(),
            )
            .await?;
            Ok(UserDocument { json: text(&u)? })
        })
        .await
    }

    async fn remove_user(&self, req: Request<RemoveUserRequest>) -> Result<Response<RemoveUserResponse>, Status> {
        measured(&self.node, "Access/RemoveUser", async {
            crate::auth::note(&req, format!("user:{}", req.get_ref().name));
            leader_only(&self.node)?;
            let n = access::remove_user(
                self.node.as_ref(),
                &req.get_ref().name,
                sen_core::now_ms(),
                self.budget(),
            )
            .await?;
            Ok(RemoveUserResponse { tokens_revoked: n })
        })
        .await
    }

    async fn list_users(&self, _req: Request<ListUsersRequest>) -> Result<Response<ListUsersResponse>, Status> {
        measured(&self.node, "Access/ListUsers", async {
            fresh(&self.node).await?;
            let users = access::list_users(self.node.as_ref())?
                .iter()
                .map(|u| Ok(UserDocument { json: text(u)? }))
                .collect::<Result<_, ApiError>>()?;
            Ok(ListUsersResponse { users })
        })
        .await
    }

    async fn grant(&self, req: Request<GrantRequest>) -> Result<Response<UserDocument>, Status> {
        measured(&self.node, "Access/Grant", async {
            let r = req.get_ref();
            crate::auth::note(&req, grant_note(&r.user, &r.role, &r.scopes));
            leader_only(&self.node)?;
            let r = req.get_ref();
            let g = access::make_grant(&r.role, &r.scopes)?;
            let u = access::grant(self.node.as_ref(), &r.user, g, sen_core::now_ms(), self.budget()).await?;
            tracing::info!(user = %r.user, role = %r.role, scopes = ?r.scopes, "role granted");
            Ok(UserDocument { json: text(&u)? })
        })
        .await
    }

    async fn revoke(&self, req: Request<RevokeRequest>) -> Result<Response<UserDocument>, Status> {
        measured(&self.node, "Access/Revoke", async {
            let r = req.get_ref();
            crate::auth::note(&req, grant_note(&r.user, &r.role, &r.scopes));
            leader_only(&self.node)?;
            let r = req.get_ref();
            let role = r.role.parse().map_err(ApiError::InvalidArgument)?;
            let scopes = r
                .scopes
                .iter()
                .map(|s| s.parse().map_err(ApiError::InvalidArgument))
                .collect::<Result<Vec<_>, _>>()?;
            let u = access::revoke(
                self.node.as_ref(),
                &r.user,
                role,
                scopes,
                sen_core::now_ms(),
                self.budget(),
            )
            .await?;
            tracing::info!(user = %r.user, role = %r.role, "role revoked");
            Ok(UserDocument { json: text(&u)? })
        })
        .await
    }

    async fn create_token(&self, req: Request<CreateTokenRequest>) -> Result<Response<CreateTokenResponse>, Status> {
        measured(&self.node, "Access/CreateToken", async {
            crate::auth::note(
                &req,
                format!("user:{} token-name:{}", req.get_ref().user, req.get_ref().name),
            );
            leader_only(&self.node)?;
            let c = auth::caller(&req)?;
            let r = req.get_ref();
            let expires = (r.expires_in_ms > 0).then(|| Duration::from_millis(r.expires_in_ms));
            let (secret, rec) = access::create_token(
                self.node.as_ref(),
                &r.user,
                &r.name,
                expires,
                &by(&c),
                sen_core::now_ms(),
                self.budget(),
            )
            .await?;
            tracing::info!(user = %r.user, token = %rec.id, "token created");
            Ok(CreateTokenResponse {
                token: secret.reveal(),
                json: text(&rec)?,
            })
        })
        .await
    }

    async fn list_tokens(&self, req: Request<ListTokensRequest>) -> Result<Response<ListTokensResponse>, Status> {
        measured(&self.node, "Access/ListTokens", async {
            fresh(&self.node).await?;
            let json = access::list_tokens(self.node.as_ref(), &req.get_ref().user)?
                .iter()
                .map(text)
                .collect::<Result<_, _>>()?;
            Ok(ListTokensResponse { json })
        })
        .await
    }

    async fn revoke_token(&self, req: Request<RevokeTokenRequest>) -> Result<Response<RevokeTokenResponse>, Status> {
        measured(&self.node, "Access/RevokeToken", async {
            crate::auth::note(&req, format!("token:{}", req.get_ref().id));
            leader_only(&self.node)?;
            let t =
                access::revoke_token(self.node.as_ref(), &req.get_ref().id, sen_core::now_ms(), self.budget()).await?;
            tracing::info!(token = %t.id, user = %t.user, "token revoked");
            Ok(RevokeTokenResponse { json: text(&t)? })
        })
        .await
    }

    async fn set_site_access(
        &self,
        req: Request<SetSiteAccessRequest>,
    ) -> Result<Response<SetSiteAccessResponse>, Status> {
        measured(&self.node, "Access/SetSiteAccess", async {
            crate::auth::note(
                &req,
                format!("site:{} private:{}", req.get_ref().site, req.get_ref().private),
            );
            leader_only(&self.node)?;
            let r = req.get_ref();
            self.node.config.limits.check_db(&r.site)?;
            access::set_site_private(
                self.node.as_ref(),
                &r.site,
                r.private,
                sen_core::now_ms(),
                self.budget(),
            )
            .await?;
            Ok(SetSiteAccessResponse {})
        })
        .await
    }
}

pub struct AuditApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Audit for AuditApi {
    async fn list(&self, req: Request<ListAuditRequest>) -> Result<Response<ListAuditResponse>, Status> {
        measured(&self.node, "Audit/List", async {
            fresh(&self.node).await?;
            let r = req.into_inner();
            let limit = match r.limit {
                0 => 1000,
                n => n.min(10_000),
            } as usize;
            // Keys sort by time; `audit/<since>` sorts before every key at
            // or after `since`.
            let mut after = if r.after.is_empty() {
                system::audit_from(r.since_ms)
            } else {
                r.after.into_bytes()
            };
            let node = self.node.clone();
            let (json, next) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
                let mut out = Vec::new();
                loop {
                    let page =
                        node.state
                            .scan(SYSTEM_DB, AUDIT_PREFIX.as_bytes(), Some(&after), 1000, 8 << 20, false)?;
                    for (k, rec) in &page.items {
                        after = k.clone();
                        let Ok(a) = AuditRecord::from_json(&rec.value) else {
                            continue;
                        };
                        let refused = matches!(a.result.as_str(), "denied" | "unauthenticated" | "throttled");
                        if (r.user.is_empty() || a.who == r.user) && (!r.denied || refused) {
                            out.push(String::from_utf8_lossy(&rec.value).into_owned());
                            if out.len() >= limit {
                                return Ok((out, String::from_utf8_lossy(&after).into_owned()));
                            }
                        }
                    }
                    if !page.more {
                        return Ok((out, String::new()));
                    }
                }
            })
            .await
            .map_err(internal)??;
            Ok(ListAuditResponse { json, next })
        })
        .await
    }

    async fn append(&self, req: Request<AppendAuditRequest>) -> Result<Response<AppendAuditResponse>, Status> {
        measured(&self.node, "Audit/Append", async {
            leader_only(&self.node)?;
            // A node hands in its own records only (insecure mode: anyone).
            let sender = match auth::caller(&req)?.principal {
                Principal::Node(id) => Some(id),
                _ => None,
            };
            let r = req.into_inner();
            // Nodes of an older release send no keys: the leader picks them.
            let keys = if r.keys.is_empty() {
                vec![None; r.json.len()]
            } else if r.keys.len() == r.json.len() {
                r.keys.into_iter().map(Some).collect()
            } else {
                return Err(ApiError::InvalidArgument(format!(
                    "{} audit records with {} keys: give one key per record",
                    r.json.len(),
                    r.keys.len()
                )));
            };
            let mut records = Vec::with_capacity(r.json.len());
            for (key, j) in keys.into_iter().zip(&r.json) {
                let rec = parse::<AuditRecord>(j)?;
                if sender.is_some_and(|s| s != rec.node) {
                    return Err(ApiError::PermissionDenied(format!(
                        "node {} hands in audit records of node {}: a node hands in its own",
                        sender.unwrap_or_default(),
                        rec.node
                    )));
                }
                let key = match key {
                    None => system::audit_key(rec.at_ms, rec.node, rand::random()),
                    Some(k) => {
                        if !audit_key_names(&k, &rec) {
                            return Err(ApiError::InvalidArgument(format!(
                                "{k:?} is not the audit key of a record of node {} at {}",
                                rec.node, rec.at_ms
                            )));
                        }
                        k.into_bytes()
                    }
                };
                records.push((key, rec));
            }
            crate::audit_log::commit(self.node.as_ref(), records).await?;
            Ok(AppendAuditResponse {})
        })
        .await
    }
}

pub struct ControlApi {
    pub node: Arc<Node>,
}

impl ControlApi {
    async fn put<T: SystemRecord>(&self, key: Vec<u8>, rec: &T) -> Result<u64, ApiError> {
        leader_only(&self.node)?;
        let r = self
            .node
            .propose(None, cp::put_op(key, rec)?, self.node.config.server.request_timeout)
            .await?;
        Ok(r.revision)
    }

    async fn delete(&self, key: &[u8]) -> Result<(), ApiError> {
        leader_only(&self.node)?;
        self.node
            .propose(
                None,
                Op::Delete {
                    db: SYSTEM_DB.into(),
                    key: key.to_vec(),
                },
                self.node.config.server.request_timeout,
            )
            .await?;
        Ok(())
    }

    fn all(&self, prefix: &str) -> Result<Vec<Vec<u8>>, ApiError> {
        Ok(self
            .node
            .as_ref()
            .scan_raw(prefix.as_bytes())?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }
}

#[tonic::async_trait]
impl Control for ControlApi {
    async fn begin_drill(&self, req: Request<BeginDrillRequest>) -> Result<Response<BeginDrillResponse>, Status> {
        measured(&self.node, "Control/BeginDrill", async {
            let d: ActiveDrill = parse(&req.get_ref().json)?;
            self.put(ACTIVE_DRILL_KEY.to_vec(), &d).await?;
            Ok(BeginDrillResponse {})
        })
        .await
    }

    async fn end_drill(&self, req: Request<EndDrillRequest>) -> Result<Response<EndDrillResponse>, Status> {
        measured(&self.node, "Control/EndDrill", async {
            crate::auth::note(&req, format!("drill:{}", req.get_ref().id));
            // Only the drill that is running ends its marker.
            match cp::read::<ActiveDrill>(self.node.as_ref(), ACTIVE_DRILL_KEY)? {
                Some((d, _)) if d.id == req.get_ref().id => self.delete(ACTIVE_DRILL_KEY).await?,
                _ => {}
            }
            Ok(EndDrillResponse {})
        })
        .await
    }

    async fn store_drill_report(
        &self,
        req: Request<StoreDrillReportRequest>,
    ) -> Result<Response<StoreDrillReportResponse>, Status> {
        measured(&self.node, "Control/StoreDrillReport", async {
            let r: DrillReport = parse(&req.get_ref().json)?;
            if r.id.is_empty() || r.id.len() > 200 {
                return Err(ApiError::InvalidArgument(
                    "a drill report needs an id of at most 200 bytes".into(),
                ));
            }
            self.put(system::drill_key(&r.id), &r).await?;
            Ok(StoreDrillReportResponse {})
        })
        .await
    }

    async fn list_drill_reports(
        &self,
        _req: Request<ListDrillReportsRequest>,
    ) -> Result<Response<ListDrillReportsResponse>, Status> {
        measured(&self.node, "Control/ListDrillReports", async {
            fresh(&self.node).await?;
            let json = self
                .all(DRILL_PREFIX)?
                .into_iter()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .collect();
            Ok(ListDrillReportsResponse { json })
        })
        .await
    }

    async fn set_backup_schedule(
        &self,
        req: Request<SetBackupScheduleRequest>,
    ) -> Result<Response<SetBackupScheduleResponse>, Status> {
        measured(&self.node, "Control/SetBackupSchedule", async {
            let s: Schedule = parse(&req.get_ref().json)?;
            if s.every_ms < 1000 {
                return Err(ApiError::InvalidArgument(
                    "a schedule runs at most once a second".into(),
                ));
            }
            // Checked against the configuration of the node that receives
            // the schedule (set the same allowed-repos everywhere: each
            // node checks again before it takes a backup).
            sen_backup_s3::check_allowed(&s.repo, &self.node.config.backup.allowed_repos, self.node.id)
                .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
            let revision = self.put(BACKUP_SCHEDULE_KEY.to_vec(), &s).await?;
            Ok(SetBackupScheduleResponse { revision })
        })
        .await
    }

    async fn get_backup_schedule(
        &self,
        _req: Request<GetBackupScheduleRequest>,
    ) -> Result<Response<GetBackupScheduleResponse>, Status> {
        measured(&self.node, "Control/GetBackupSchedule", async {
            fresh(&self.node).await?;
            let json = match cp::read::<Schedule>(self.node.as_ref(), BACKUP_SCHEDULE_KEY)? {
                Some((s, _)) => text(&s)?,
                None => String::new(),
            };
            Ok(GetBackupScheduleResponse { json })
        })
        .await
    }

    async fn clear_backup_schedule(
        &self,
        _req: Request<ClearBackupScheduleRequest>,
    ) -> Result<Response<ClearBackupScheduleResponse>, Status> {
        measured(&self.node, "Control/ClearBackupSchedule", async {
            self.delete(BACKUP_SCHEDULE_KEY).await?;
            Ok(ClearBackupScheduleResponse {})
        })
        .await
    }

    async fn store_verification(
        &self,
        req: Request<StoreVerificationRequest>,
    ) -> Result<Response<StoreVerificationResponse>, Status> {
        measured(&self.node, "Control/StoreVerification", async {
            let mut v: Verification = parse(&req.get_ref().json)?;
            crate::auth::note(&req, format!("verification:{}:{}", v.kind, v.id));
            v.check()
                .map_err(|e| ApiError::InvalidArgument(format!("a backup verification: {e}")))?;
            let now = sen_core::now_ms();
            // A record from the future would sort past every report; one
            // older than the retention would be pruned at once.
            if v.at_ms > now + 5 * 60_000 {
                return Err(ApiError::InvalidArgument(
                    "the verification finished in the future: check the clock of the machine that ran it".into(),
                ));
            }
            v.by = by(&auth::caller(&req)?);
            let revision = self.put(v.key(), &v).await?;
            Ok(StoreVerificationResponse { revision })
        })
        .await
    }

    async fn set_archive(&self, req: Request<SetArchiveRequest>) -> Result<Response<SetArchiveResponse>, Status> {
        measured(&self.node, "Control/SetArchive", async {
            use sen_raft::schema::system::archive::{ARCHIVE_CONFIG_KEY, ArchiveConfig};
            let json = &req.get_ref().json;
            if json.is_empty() {
                // Off is a record of its own (no repository), not an
                // absent one: `[archive]` in a node's file never turns
                // back on what an operator turned off.
                crate::auth::note(&req, "archive:off".to_string());
                let off = ArchiveConfig {
                    version: ArchiveConfig::VERSION,
                    repo: String::new(),
                    password_file: None,
                    interval_ms: 1000,
                    max_lag_entries: 1_000_000,
                    enabled_at_ms: sen_core::now_ms(),
                    enabled_by: by(&auth::caller(&req)?),
                };
                let revision = self.put(ARCHIVE_CONFIG_KEY.to_vec(), &off).await?;
                return Ok(SetArchiveResponse { revision });
            }
            let mut c: ArchiveConfig = parse(json)?;
            crate::auth::note(&req, format!("archive:{}", c.repo));
            if !(100..=60_000).contains(&c.interval_ms) {
                return Err(ApiError::InvalidArgument(
                    "the archive interval must be between 100 ms and 1 minute".into(),
                ));
            }
            if c.max_lag_entries < 1000 {
                return Err(ApiError::InvalidArgument(
                    "archive max-lag must be at least 1000 entries".into(),
                ));
            }
            sen_backup_s3::check_allowed(&c.repo, &self.node.config.backup.allowed_repos, self.node.id)
                .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
            c.enabled_by = by(&auth::caller(&req)?);
            c.enabled_at_ms = sen_core::now_ms();
            let revision = self.put(ARCHIVE_CONFIG_KEY.to_vec(), &c).await?;
            Ok(SetArchiveResponse { revision })
        })
        .await
    }

    async fn archive_status(
        &self,
        _req: Request<ArchiveStatusRequest>,
    ) -> Result<Response<ArchiveStatusResponse>, Status> {
        measured(&self.node, "Control/ArchiveStatus", async {
            use sen_raft::schema::system::archive::{ARCHIVE_CONFIG_KEY, ARCHIVE_PROGRESS_KEY};
            fresh(&self.node).await?;
            let raw = |key: &[u8]| -> Result<String, ApiError> {
                Ok(self
                    .node
                    .as_ref()
                    .get_raw(key)?
                    .map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default())
            };
            let shipper = crate::archive::live_status(&self.node);
            Ok(ArchiveStatusResponse {
                config: raw(ARCHIVE_CONFIG_KEY)?,
                progress: raw(ARCHIVE_PROGRESS_KEY)?,
                shipper: serde_json::to_string(&shipper).map_err(|e| ApiError::Internal(e.to_string()))?,
                node: self.node.id,
                applied_index: self.node.state.applied_index(),
            })
        })
        .await
    }

    async fn list_backup_runs(
        &self,
        _req: Request<ListBackupRunsRequest>,
    ) -> Result<Response<ListBackupRunsResponse>, Status> {
        measured(&self.node, "Control/ListBackupRuns", async {
            fresh(&self.node).await?;
            let json = self
                .all(BACKUP_RUN_PREFIX)?
                .into_iter()
                .filter(|v| RunRecord::from_json(v).is_ok())
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .collect();
            Ok(ListBackupRunsResponse { json })
        })
        .await
    }

    async fn set_quota(&self, req: Request<SetQuotaRequest>) -> Result<Response<SetQuotaResponse>, Status> {
        measured(&self.node, "Control/SetQuota", async {
            let r = req.get_ref();
            crate::auth::note(&req, format!("{}:{} max_bytes:{}", r.kind, r.name, r.max_bytes));
            let kind = quota_kind(&r.kind)?;
            match kind {
                QuotaKind::Database => {
                    sen_core::limits::check_db_name(&r.name).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
                    if system::is_reserved_db(&r.name) {
                        return Err(ApiError::InvalidArgument(format!(
                            "{} is one of the cluster's own databases; it takes no quota",
                            r.name
                        )));
                    }
                }
                QuotaKind::Site => {
                    sen_content::path::check_site_name(&r.name).map_err(ApiError::InvalidArgument)?;
                }
            }
            let key = system::quota_key(kind, &r.name);
            if r.max_bytes == 0 {
                leader_only(&self.node)?;
                if self.node.as_ref().get_raw(&key)?.is_none() {
                    return Ok(SetQuotaResponse { revision: 0 });
                }
                self.delete(&key).await?;
                tracing::info!(kind = %kind, name = %r.name, "quota removed");
                return Ok(SetQuotaResponse {
                    revision: self.node.state.applied_index(),
                });
            }
            let rec = QuotaRecord {
                version: QuotaRecord::VERSION,
                kind,
                name: r.name.clone(),
                max_bytes: r.max_bytes,
                set_by: by(&auth::caller(&req)?),
                set_at_ms: sen_core::now_ms(),
            };
            let revision = self.put(key, &rec).await?;
            tracing::info!(kind = %kind, name = %r.name, max_bytes = r.max_bytes, "quota set");
            Ok(SetQuotaResponse { revision })
        })
        .await
    }

    async fn set_probe_path(
        &self,
        req: Request<SetProbePathRequest>,
    ) -> Result<Response<SetProbePathResponse>, Status> {
        measured(&self.node, "Control/SetProbePath", async {
            let r = req.get_ref();
            crate::auth::note(&req, format!("site:{} path:{}", r.site, r.path));
            sen_content::path::check_site_name(&r.site).map_err(ApiError::InvalidArgument)?;
            let key = system::probe_path_key(&r.site);
            if r.path.is_empty() || r.path == "/" {
                leader_only(&self.node)?;
                if self.node.as_ref().get_raw(&key)?.is_none() {
                    return Ok(SetProbePathResponse { revision: 0 });
                }
                self.delete(&key).await?;
                tracing::info!(site = %r.site, "probe path removed: the probes fetch the front page");
                return Ok(SetProbePathResponse {
                    revision: self.node.state.applied_index(),
                });
            }
            system::check_probe_path(&r.path).map_err(ApiError::InvalidArgument)?;
            if self.node.state.site(&r.site)?.0.is_none() {
                return Err(ApiError::NotFound(format!(
                    "site {} does not exist; create it first (sen site create {})",
                    r.site, r.site
                )));
            }
            let rec = ProbePathRecord {
                version: ProbePathRecord::VERSION,
                site: r.site.clone(),
                path: r.path.clone(),
                set_by: by(&auth::caller(&req)?),
                set_at_ms: sen_core::now_ms(),
            };
            let revision = self.put(key, &rec).await?;
            tracing::info!(site = %r.site, path = %r.path, "probe path set");
            Ok(SetProbePathResponse { revision })
        })
        .await
    }

    async fn list_quotas(&self, req: Request<ListQuotasRequest>) -> Result<Response<ListQuotasResponse>, Status> {
        measured(&self.node, "Control/ListQuotas", async {
            fresh(&self.node).await?;
            let r = req.get_ref();
            let limit = self.node.config.limits.scan_page(r.limit as usize);
            let after = (!r.start_after.is_empty()).then(|| format!("{}{}", system::QUOTA_PREFIX, r.start_after));
            let rows = self.node.as_ref().scan_rows(
                system::QUOTA_PREFIX.as_bytes(),
                after.as_ref().map(|a| a.as_bytes()),
                limit + 1,
            )?;
            let more = rows.len() > limit;
            let mut quotas = Vec::new();
            let mut next = String::new();
            for (key, value) in rows.into_iter().take(limit) {
                next = String::from_utf8_lossy(&key[system::QUOTA_PREFIX.len()..]).into_owned();
                // A record this build cannot read is shown, not hidden: the
                // state machine applies no quota for it.
                let q = QuotaRecord::from_json(&value).map_err(|e| {
                    ApiError::Internal(format!(
                        "{e} (key {}); set the quota again",
                        String::from_utf8_lossy(&key)
                    ))
                })?;
                let used_bytes = match q.kind {
                    QuotaKind::Database => self.node.state.database_bytes(&q.name)?,
                    QuotaKind::Site => self
                        .node
                        .state
                        .site(&q.name)?
                        .0
                        .and_then(|s| s.current)
                        .map_or(0, |c| c.bytes),
                };
                quotas.push(Quota {
                    kind: q.kind.to_string(),
                    name: q.name,
                    max_bytes: q.max_bytes,
                    used_bytes,
                    set_by: q.set_by,
                    set_at_ms: q.set_at_ms,
                });
            }
            if !more {
                next.clear();
            }
            Ok(ListQuotasResponse { quotas, next })
        })
        .await
    }

    async fn report_probe(&self, req: Request<ReportProbeRequest>) -> Result<Response<ReportProbeResponse>, Status> {
        measured(&self.node, "Control/ReportProbe", async {
            leader_only(&self.node)?;
            // A node hands in its own results (insecure mode: the node
            // the request names).
            let sender = match auth::caller(&req)?.principal {
                Principal::Node(id) => Some(id),
                _ => None,
            };
            let r = req.into_inner();
            let node = match (sender, r.node) {
                (Some(s), 0) => s,
                (Some(s), n) if n != s => {
                    return Err(ApiError::PermissionDenied(format!(
                        "node {s} hands in the probe results of node {n}: a node hands in its own"
                    )));
                }
                (_, 0) => {
                    return Err(ApiError::InvalidArgument(
                        "a probe report names its node (node = 0 needs a node certificate)".into(),
                    ));
                }
                (_, n) => n,
            };
            let records = r
                .json
                .iter()
                .map(|j| parse::<AvailabilityRecord>(j))
                .collect::<Result<Vec<_>, _>>()?;
            let traffic = r
                .traffic
                .iter()
                .map(|j| parse::<sen_raft::schema::system::TrafficRecord>(j))
                .collect::<Result<Vec<_>, _>>()?;
            let readers = r
                .readers
                .iter()
                .map(|j| parse::<sen_raft::schema::system::ReadersRecord>(j))
                .collect::<Result<Vec<_>, _>>()?;
            if r.growth.len() > 1 {
                return Err(ApiError::InvalidArgument(format!(
                    "{} growth samples in one report; a node hands in its latest",
                    r.growth.len()
                )));
            }
            let growth = r
                .growth
                .first()
                .map(|j| parse::<sen_raft::schema::system::growth::GrowthRecord>(j))
                .transpose()?;
            crate::probe::commit_with_traffic(
                self.node.as_ref(),
                node,
                records,
                (traffic, readers),
                growth,
                sen_core::now_ms(),
                self.node.config.server.request_timeout,
            )
            .await?;
            Ok(ReportProbeResponse {})
        })
        .await
    }

    async fn list_availability(
        &self,
        req: Request<ListAvailabilityRequest>,
    ) -> Result<Response<ListAvailabilityResponse>, Status> {
        measured(&self.node, "Control/ListAvailability", async {
            let r = req.get_ref();
            for (what, day) in [("from_day", &r.from_day), ("to_day", &r.to_day)] {
                if sen_core::time::day_start_ms(day).is_none() {
                    return Err(ApiError::InvalidArgument(format!(
                        "{what} {day:?} is not a day (YYYY-MM-DD, UTC)"
                    )));
                }
            }
            if r.from_day > r.to_day {
                return Err(ApiError::InvalidArgument(format!(
                    "from_day {} is after to_day {}",
                    r.from_day, r.to_day
                )));
            }
            fresh(&self.node).await?;
            let limit = match r.limit {
                0 => 1000,
                n => n.min(5000),
            } as usize;
            use sen_raft::schema::system::traffic;
            let (prefix, day_prefix): (&str, fn(&str) -> Vec<u8>) = match r.kind.as_str() {
                "" | "availability" => (AVAILABILITY_PREFIX, system::availability::availability_day_prefix),
                "traffic" => (traffic::TRAFFIC_PREFIX, traffic::traffic_day_prefix),
                "readers" => (traffic::READERS_PREFIX, traffic::readers_day_prefix),
                "growth" => (
                    sen_raft::schema::system::growth::GROWTH_PREFIX,
                    sen_raft::schema::system::growth::growth_day_prefix,
                ),
                "verifications" => (system::VERIFY_PREFIX, system::verification::verify_day_prefix),
                other => {
                    return Err(ApiError::InvalidArgument(format!(
                        "kind {other:?}: use availability, traffic, readers, growth or verifications"
                    )));
                }
            };
            let first = day_prefix(&r.from_day);
            let last = day_prefix(&r.to_day);
            let after = if r.start_after.is_empty() {
                None
            } else {
                Some(r.start_after.as_bytes().to_vec())
            };
            // Start at the first day: `after` sorts before every key of it.
            let after = match after {
                Some(a) if a >= first => a,
                _ => first[..first.len() - 1].to_vec(),
            };
            let rows = self
                .node
                .as_ref()
                .scan_rows(prefix.as_bytes(), Some(&after), limit + 1)?;
            let mut json = Vec::new();
            let mut next = String::new();
            let mut more = false;
            for (key, value) in rows {
                if key > last && !key.starts_with(&last) {
                    break;
                }
                if json.len() == limit {
                    more = true;
                    break;
                }
                next = String::from_utf8_lossy(&key).into_owned();
                json.push(String::from_utf8_lossy(&value).into_owned());
            }
            if !more {
                next.clear();
            }
            Ok(ListAvailabilityResponse { json, next })
        })
        .await
    }
}

fn quota_kind(s: &str) -> Result<QuotaKind, ApiError> {
    match s {
        "database" | "db" => Ok(QuotaKind::Database),
        "site" => Ok(QuotaKind::Site),
        other => Err(ApiError::InvalidArgument(format!(
            "a quota is on a `database` or a `site`, not {other:?}"
        ))),
    }
}

/// Whether `key` is `audit/<at_ms>-<node>-<seq>` for `rec`'s time and node.
fn audit_key_names(key: &str, rec: &AuditRecord) -> bool {
    let Some(rest) = key.strip_prefix(AUDIT_PREFIX) else {
        return false;
    };
    let mut parts = rest.splitn(3, '-');
    let (Some(at), Some(node), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    at.len() == 16
        && at.parse::<u64>().ok() == Some(rec.at_ms)
        && node.parse::<u64>().ok() == Some(rec.node)
        && seq.parse::<u64>().is_ok()
        && system::audit_key(rec.at_ms, rec.node, seq.parse().unwrap_or_default()) == key.as_bytes()
}

/// How a grant or a revocation is named in the audit log.
fn grant_note(user: &str, role: &str, scopes: &[String]) -> String {
    format!("user:{user} role:{role} scopes:{}", scopes.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_key_must_name_its_record() {
        let rec = AuditRecord {
            version: 1,
            at_ms: 5,
            who: "u".into(),
            token: String::new(),
            method: "m".into(),
            resource: String::new(),
            result: "ok".into(),
            code: "Ok".into(),
            message: String::new(),
            from: String::new(),
            node: 2,
        };
        let good = String::from_utf8(system::audit_key(5, 2, 7)).unwrap();
        assert!(audit_key_names(&good, &rec));
        for bad in [
            "audit/zzz",
            "audit/0000000000000005-000003-0000000007",
            "audit/0000000000000006-000002-0000000007",
            "audit/0000000000000005-000002-7",
            "other/0000000000000005-000002-0000000007",
        ] {
            assert!(!audit_key_names(bad, &rec), "{bad}");
        }
    }
}
