//! Access control, the audit log and the control plane's typed records,
//! from the client side (`sen user|token|role|audit|whoami`, drills and
//! backup schedules). Writes go to the leader (retried there on "not
//! leader"); reads to any node.

use sen_proto::v1::access_client::AccessClient;
use sen_proto::v1::audit_client::AuditClient;
use sen_proto::v1::control_client::ControlClient;
use sen_proto::v1::*;

use crate::{Client, ClientError};

macro_rules! call {
    ($self:ident, $what:expr, $leader:expr, $client:ident, $method:ident, $msg:expr) => {{
        let msg = $msg;
        $self
            .retry($what, $leader, |ch, d| {
                let msg = msg.clone();
                async move { $client::new(ch).$method(Self::request(msg, d)).await }
            })
            .await
    }};
}

impl Client {
    /// Who the cluster takes this client for.
    pub async fn whoami(&self) -> Result<WhoAmIResponse, ClientError> {
        call!(self, "whoami", false, AccessClient, who_am_i, WhoAmIRequest {})
    }

    pub async fn add_user(&self, name: &str) -> Result<String, ClientError> {
        call!(
            self,
            "add user",
            true,
            AccessClient,
            add_user,
            AddUserRequest { name: name.into() }
        )
        .map(|r| r.json)
    }

    pub async fn remove_user(&self, name: &str) -> Result<u32, ClientError> {
        call!(
            self,
            "remove user",
            true,
            AccessClient,
            remove_user,
            RemoveUserRequest { name: name.into() }
        )
        .map(|r| r.tokens_revoked)
    }

    pub async fn list_users(&self) -> Result<Vec<String>, ClientError> {
        call!(self, "list users", true, AccessClient, list_users, ListUsersRequest {})
            .map(|r| r.users.into_iter().map(|u| u.json).collect())
    }

    pub async fn grant(&self, user: &str, role: &str, scopes: Vec<String>) -> Result<String, ClientError> {
        let msg = GrantRequest {
            user: user.into(),
            role: role.into(),
            scopes,
        };
        call!(self, "grant", true, AccessClient, grant, msg).map(|r| r.json)
    }

    pub async fn revoke(&self, user: &str, role: &str, scopes: Vec<String>) -> Result<String, ClientError> {
        let msg = RevokeRequest {
            user: user.into(),
            role: role.into(),
            scopes,
        };
        call!(self, "revoke", true, AccessClient, revoke, msg).map(|r| r.json)
    }

    pub async fn create_token(
        &self,
        user: &str,
        name: &str,
        expires_in_ms: u64,
    ) -> Result<CreateTokenResponse, ClientError> {
        let msg = CreateTokenRequest {
            user: user.into(),
            name: name.into(),
            expires_in_ms,
        };
        call!(self, "create token", true, AccessClient, create_token, msg)
    }

    pub async fn list_tokens(&self, user: &str) -> Result<Vec<String>, ClientError> {
        call!(
            self,
            "list tokens",
            true,
            AccessClient,
            list_tokens,
            ListTokensRequest { user: user.into() }
        )
        .map(|r| r.json)
    }

    pub async fn revoke_token(&self, id: &str) -> Result<String, ClientError> {
        call!(
            self,
            "revoke token",
            true,
            AccessClient,
            revoke_token,
            RevokeTokenRequest { id: id.into() }
        )
        .map(|r| r.json)
    }

    pub async fn set_site_access(&self, site: &str, private: bool) -> Result<(), ClientError> {
        let msg = SetSiteAccessRequest {
            site: site.into(),
            private,
        };
        call!(self, "set site access", true, AccessClient, set_site_access, msg).map(|_| ())
    }

    /// One page of the audit log.
    pub async fn list_audit(&self, req: ListAuditRequest) -> Result<ListAuditResponse, ClientError> {
        call!(self, "list audit", true, AuditClient, list, req)
    }

    pub async fn begin_drill(&self, json: String) -> Result<(), ClientError> {
        call!(
            self,
            "begin drill",
            true,
            ControlClient,
            begin_drill,
            BeginDrillRequest { json }
        )
        .map(|_| ())
    }

    pub async fn end_drill(&self, id: &str) -> Result<(), ClientError> {
        call!(
            self,
            "end drill",
            true,
            ControlClient,
            end_drill,
            EndDrillRequest { id: id.into() }
        )
        .map(|_| ())
    }

    pub async fn store_drill_report(&self, json: String) -> Result<(), ClientError> {
        call!(
            self,
            "store drill report",
            true,
            ControlClient,
            store_drill_report,
            StoreDrillReportRequest { json }
        )
        .map(|_| ())
    }

    /// Record a backup verification (a Verification's JSON); its revision.
    pub async fn store_verification(&self, json: String) -> Result<u64, ClientError> {
        call!(
            self,
            "store backup verification",
            true,
            ControlClient,
            store_verification,
            StoreVerificationRequest { json }
        )
        .map(|r| r.revision)
    }

    /// Backup verifications that finished on the UTC days
    /// `from_day..=to_day` (JSON), oldest first.
    pub async fn list_verifications(&self, from_day: &str, to_day: &str) -> Result<Vec<String>, ClientError> {
        self.list_day_records("verifications", from_day, to_day).await
    }

    /// Turn the continuous archive on (an ArchiveConfig's JSON) or off
    /// (`None`); the revision of the write.
    pub async fn set_archive(&self, json: Option<String>) -> Result<u64, ClientError> {
        call!(
            self,
            "set archive",
            true,
            ControlClient,
            set_archive,
            SetArchiveRequest {
                json: json.unwrap_or_default()
            }
        )
        .map(|r| r.revision)
    }

    /// The archive's configuration, progress and the leader's shipper.
    pub async fn archive_status(&self) -> Result<ArchiveStatusResponse, ClientError> {
        call!(
            self,
            "archive status",
            true,
            ControlClient,
            archive_status,
            ArchiveStatusRequest {}
        )
    }

    /// The archive as node `addr` sees it (its own shipper), without
    /// retries elsewhere.
    pub async fn archive_status_of(
        &self,
        addr: &str,
        timeout: std::time::Duration,
    ) -> Result<ArchiveStatusResponse, ClientError> {
        self.call_at(addr, timeout, |ch, d| async move {
            ControlClient::new(ch)
                .archive_status(Self::request(ArchiveStatusRequest {}, d))
                .await
        })
        .await
    }

    pub async fn list_drill_reports(&self) -> Result<Vec<String>, ClientError> {
        call!(
            self,
            "list drill reports",
            true,
            ControlClient,
            list_drill_reports,
            ListDrillReportsRequest {}
        )
        .map(|r| r.json)
    }

    pub async fn set_backup_schedule(&self, json: String) -> Result<u64, ClientError> {
        call!(
            self,
            "set backup schedule",
            true,
            ControlClient,
            set_backup_schedule,
            SetBackupScheduleRequest { json }
        )
        .map(|r| r.revision)
    }

    /// The schedule's JSON, if there is one.
    pub async fn get_backup_schedule(&self) -> Result<Option<String>, ClientError> {
        call!(
            self,
            "get backup schedule",
            true,
            ControlClient,
            get_backup_schedule,
            GetBackupScheduleRequest {}
        )
        .map(|r| (!r.json.is_empty()).then_some(r.json))
    }

    pub async fn clear_backup_schedule(&self) -> Result<(), ClientError> {
        call!(
            self,
            "clear backup schedule",
            true,
            ControlClient,
            clear_backup_schedule,
            ClearBackupScheduleRequest {}
        )
        .map(|_| ())
    }

    pub async fn list_backup_runs(&self) -> Result<Vec<String>, ClientError> {
        call!(
            self,
            "list backup runs",
            true,
            ControlClient,
            list_backup_runs,
            ListBackupRunsRequest {}
        )
        .map(|r| r.json)
    }

    /// Set the page of `site` the nodes' probes fetch (`""` or `"/"`: the
    /// front page again). Returns the revision of the write.
    pub async fn set_probe_path(&self, site: &str, path: &str) -> Result<u64, ClientError> {
        call!(
            self,
            "set probe path",
            true,
            ControlClient,
            set_probe_path,
            SetProbePathRequest {
                site: site.into(),
                path: path.into(),
            }
        )
        .map(|r| r.revision)
    }

    /// Set (or with `max_bytes == 0` remove) the quota of a `database` or
    /// `site`. Returns the revision of the write.
    pub async fn set_quota(&self, kind: &str, name: &str, max_bytes: u64) -> Result<u64, ClientError> {
        call!(
            self,
            "set quota",
            true,
            ControlClient,
            set_quota,
            SetQuotaRequest {
                kind: kind.into(),
                name: name.into(),
                max_bytes,
            }
        )
        .map(|r| r.revision)
    }

    /// Every quota with what its database or site holds now (all pages).
    pub async fn list_quotas(&self) -> Result<Vec<Quota>, ClientError> {
        let mut out = Vec::new();
        let mut start_after = String::new();
        loop {
            let r = call!(
                self,
                "list quotas",
                false,
                ControlClient,
                list_quotas,
                ListQuotasRequest {
                    start_after: start_after.clone(),
                    limit: 0,
                }
            )?;
            out.extend(r.quotas);
            if r.next.is_empty() {
                return Ok(out);
            }
            start_after = r.next;
        }
    }

    /// The availability records (JSON) of the UTC days `from_day` to
    /// `to_day` (`YYYY-MM-DD`, both included), all pages.
    pub async fn list_availability(&self, from_day: &str, to_day: &str) -> Result<Vec<String>, ClientError> {
        self.list_day_records("", from_day, to_day).await
    }

    /// Traffic records (`kind` "traffic") or readers sketches ("readers")
    /// of the UTC days `from_day..=to_day` (JSON), all pages.
    pub async fn list_day_records(&self, kind: &str, from_day: &str, to_day: &str) -> Result<Vec<String>, ClientError> {
        let mut out = Vec::new();
        let mut start_after = String::new();
        loop {
            let r = call!(
                self,
                "list availability",
                false,
                ControlClient,
                list_availability,
                ListAvailabilityRequest {
                    from_day: from_day.into(),
                    to_day: to_day.into(),
                    start_after: start_after.clone(),
                    limit: 0,
                    kind: kind.into(),
                }
            )?;
            out.extend(r.json);
            if r.next.is_empty() {
                return Ok(out);
            }
            start_after = r.next;
        }
    }
}
