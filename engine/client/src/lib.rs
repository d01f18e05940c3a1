//! A client for a Sen cluster: endpoint failover, leader hints and safe
//! retries.
//!
//! Every call goes to the last known leader if there is one, else to the
//! configured endpoints in turn. Retryable failures (`UNAVAILABLE`,
//! connection errors, `DEADLINE_EXCEEDED`) are retried with backoff until
//! the overall timeout; a "not leader" error carrying the leader's address
//! sends the next attempt there. Writes carry one request id for all their
//! attempts, so a retry after an unknown outcome is applied at most once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sen_client::ClientError> {
//! let client = sen_client::Client::new(&["127.0.0.1:7101".to_string()], Default::default())?;
//! let put = client.put("lichtuan", b"2026-w48", b"...").await?;
//! let got = client.get("lichtuan", b"2026-w48", sen_client::Consistency::Linearizable).await?;
//! assert_eq!(got.kv.unwrap().mod_revision, put.revision);
//! # Ok(()) }
//! ```

pub mod access;
pub mod content;
pub mod txn;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sen_proto::status::{Retry, WireError};
pub use sen_proto::v1::Consistency;
use sen_proto::v1::cluster_client::ClusterClient;
use sen_proto::v1::incidents_client::IncidentsClient;
use sen_proto::v1::kv_client::KvClient;
use sen_proto::v1::node_ops_client::NodeOpsClient;
use sen_proto::v1::*;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Upper bound on the overall timeout: well inside the cluster's 15-minute
/// request-id deduplication window.
pub const MAX_RETRY_TIME: Duration = Duration::from_secs(10 * 60);

/// Timeouts and credentials of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Total time for one operation, all retries included.
    pub timeout: Duration,
    /// Deadline of one attempt (also sent to the server).
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// Talk TLS (the cluster's CA, and a client certificate if given).
    pub tls: Option<TlsOptions>,
    /// A bearer token (`sen_<id>_<secret>`).
    pub token: Option<Secret>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            tls: None,
            token: None,
        }
    }
}

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// TLS towards the cluster: PEM contents.
#[derive(Clone)]
pub struct TlsOptions {
    /// The cluster CA certificate(s).
    pub ca: Vec<u8>,
    /// A client certificate and its key (the user is its common name).
    pub identity: Option<(Vec<u8>, Secret)>,
}

impl TlsOptions {
    /// Read the CA and, optionally, a client certificate and its key from
    /// PEM files.
    pub fn from_files(
        ca: &std::path::Path,
        identity: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Self, ClientError> {
        let read = |what: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ClientError::Tls(format!("cannot read the {what} {}: {e}", p.display())))
        };
        let identity = match identity {
            Some((cert, key)) => Some((
                read("client certificate", cert)?,
                Secret(String::from_utf8_lossy(&read("client key", key)?).into_owned()),
            )),
            None => None,
        };
        Ok(Self {
            ca: read("CA certificate", ca)?,
            identity,
        })
    }
}

impl Secret {
    /// A token from a file (`sen cluster init --token-out`, `sen token
    /// create`): its first line, trimmed.
    pub fn from_token_file(p: &std::path::Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| ClientError::TokenFile(format!("cannot read the token file {}: {e}", p.display())))?;
        let t = text.lines().next().unwrap_or("").trim();
        if t.is_empty() {
            return Err(ClientError::TokenFile(format!(
                "the token file {} is empty",
                p.display()
            )));
        }
        Ok(Secret(t.to_owned()))
    }
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Credentials {
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    }
}

/// A connection to one node, with the client's credentials.
pub type Ch = tonic::service::interceptor::InterceptedService<Channel, Credentials>;

/// A failed operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoints given: use --endpoints HOST:PORT[,HOST:PORT...] or set SEN_ENDPOINTS")]
    NoEndpoints,
    #[error("invalid endpoint {0:?}: use HOST:PORT")]
    BadEndpoint(String),
    #[error("the token is not valid text for a header: check SEN_TOKEN or the token file")]
    BadToken,
    #[error("TLS: {0} (check SEN_CA, SEN_CERT and SEN_KEY)")]
    Tls(String),
    #[error("{0} (check --token-file or SEN_TOKEN_FILE)")]
    TokenFile(String),
    /// The cluster answered with an error that retrying will not fix, or
    /// retries ran out.
    #[error("{message}")]
    Status { code: Code, message: String },
}

impl ClientError {
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Whether `HOST:PORT` names this machine (a loopback IP or `localhost`).
fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A client of a Sen cluster. Cheap to share behind an `Arc`; calls may run
/// concurrently.
pub struct Client {
    endpoints: Vec<String>,
    opts: ClientOptions,
    credentials: Credentials,
    channels: Mutex<HashMap<String, Channel>>,
    /// Where the leader is believed to be.
    leader: Mutex<Option<String>>,
    /// Next endpoint to try when no leader is known.
    next: Mutex<usize>,
}

impl Client {
    /// A client for the given `HOST:PORT` endpoints.
    pub fn new(endpoints: &[String], mut opts: ClientOptions) -> Result<Self, ClientError> {
        // Retries of a write reuse its request id, which the cluster
        // remembers for 15 minutes: never retry for longer than that.
        opts.timeout = opts.timeout.min(MAX_RETRY_TIME);
        let endpoints: Vec<String> = endpoints
            .iter()
            .flat_map(|e| e.split(','))
            .map(|e| e.trim().trim_start_matches("http://").to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        for e in &endpoints {
            if !e
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(ClientError::BadEndpoint(e.clone()));
            }
        }
        if opts.token.is_some() && opts.tls.is_none() {
            // A bearer token crosses the network only inside TLS.
            if let Some(e) = endpoints.iter().find(|e| !is_loopback(e)) {
                return Err(ClientError::Tls(format!(
                    "a token is sent only over TLS, and {e} is not a loopback address: give the cluster CA (--ca or SEN_CA)"
                )));
            }
        }
        let token = match &opts.token {
            None => None,
            Some(t) => {
                let mut v: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = format!("Bearer {}", t.0.trim())
                    .parse()
                    .map_err(|_| ClientError::BadToken)?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Self {
            endpoints,
            credentials: Credentials { token },
            opts,
            channels: Mutex::new(HashMap::new()),
            leader: Mutex::new(None),
            next: Mutex::new(0),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// This client's options (timeouts and credentials), e.g. to make a
    /// client for one node with the same credentials.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The cluster CA this client trusts (PEM), when it talks TLS.
    pub fn tls_ca(&self) -> Option<&[u8]> {
        self.opts.tls.as_ref().map(|t| t.ca.as_slice())
    }

    /// A connection to the node at `addr` carrying this client's
    /// credentials, for the generated `sen_proto` clients (no retries,
    /// no leader tracking: the caller does that).
    pub fn raw_channel(&self, addr: &str) -> Result<Ch, ClientError> {
        self.channel(addr)
    }

    fn channel(&self, addr: &str) -> Result<Ch, ClientError> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(Ch::new(c.clone(), self.credentials.clone()));
        }
        let scheme = if self.opts.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|_| ClientError::BadEndpoint(addr.to_owned()))?;
        if let Some(tls) = &self.opts.tls {
            let mut cfg = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca));
            if let Some((cert, key)) = &tls.identity {
                cfg = cfg.identity(tonic::transport::Identity::from_pem(cert, &key.0));
            }
            endpoint = endpoint.tls_config(cfg).map_err(|e| ClientError::Tls(e.to_string()))?;
        }
        let c = endpoint
            .connect_timeout(self.opts.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        map.insert(addr.to_owned(), c.clone());
        Ok(Ch::new(c, self.credentials.clone()))
    }

    fn pick(&self) -> String {
        if let Some(l) = self.leader.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return l;
        }
        let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let e = self.endpoints[*n % self.endpoints.len()].clone();
        *n += 1;
        e
    }

    fn forget_leader(&self, addr: &str) {
        let mut l = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if l.as_deref() == Some(addr) {
            *l = None;
        }
    }

    /// Run `f` against endpoints until it succeeds, fails for good, or the
    /// overall timeout passes. `prefer_leader` sends the first attempt to
    /// the known leader (writes, linearizable reads).
    async fn retry<T, F, Fut>(&self, what: &str, prefer_leader: bool, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(Ch, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(25);
        let mut attempts = 0u32;
        // Endpoints that said they are not in a cluster yet, in a row.
        let mut no_cluster = 0usize;
        loop {
            attempts += 1;
            let addr = if prefer_leader {
                self.pick()
            } else {
                let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
                let e = self.endpoints[*n % self.endpoints.len()].clone();
                *n += 1;
                e
            };
            let left = self.opts.timeout.saturating_sub(start.elapsed());
            // Membership changes wait for a node to catch up: one attempt may
            // use the whole budget.
            let per_attempt = if what == "add-node" || what == "promote" {
                left
            } else {
                self.opts.attempt_timeout
            };
            let attempt = per_attempt.min(left).max(Duration::from_millis(50));
            let channel = self.channel(&addr)?;
            let result = match tokio::time::timeout(attempt, f(channel, attempt)).await {
                Ok(r) => r,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer from {addr} within {attempt:?}"
                ))),
            };
            let status = match result {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => s,
            };
            // The one wire contract decides: never the message text.
            let wire = WireError::from_status(&status);
            let hint = wire.leader.as_ref().map(|l| l.addr.clone()).filter(|a| !a.is_empty());
            if wire.retry() == Retry::OtherEndpoint {
                // That node cannot help; another endpoint may.
                self.forget_leader(&addr);
                no_cluster += 1;
                if no_cluster < self.endpoints.len() && start.elapsed() < self.opts.timeout {
                    continue;
                }
                return Err(ClientError::Status {
                    code: status.code(),
                    message: format!("{what} failed: {}", wire.message),
                });
            }
            no_cluster = 0;
            let retryable = wire.retry() == Retry::Retry;
            if !retryable || start.elapsed() + backoff >= self.opts.timeout {
                let message = if retryable {
                    format!(
                        "{what} failed after {attempts} attempts over {:?}: {} (last tried {addr})",
                        start.elapsed(),
                        wire.message
                    )
                } else {
                    format!("{what} failed: {}", wire.message)
                };
                return Err(ClientError::Status {
                    code: status.code(),
                    message,
                });
            }
            tracing::debug!(%addr, code = ?status.code(), message = status.message(), "retrying {what}");
            match hint {
                Some(h) if h != addr => {
                    *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
                    // A fresh hint deserves an immediate try.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => {
                    self.forget_leader(&addr);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
            }
        }
    }

    fn remember_leader(&self, header: &Option<ResponseHeader>, served_by: &str) {
        // A response from the leader itself tells us where it is.
        if let Some(h) = header
            && h.node_id == h.leader_id
            && h.leader_id != 0
        {
            *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(served_by.to_owned());
        }
    }

    fn request<T>(msg: T, deadline: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(deadline);
        r
    }

    fn header() -> Option<RequestHeader> {
        Some(RequestHeader {
            request_id: uuid::Uuid::new_v4().as_bytes().to_vec(),
        })
    }

    /// A fresh random request id (what [`Client::put`] and friends use).
    pub fn new_request_id() -> [u8; 16] {
        *uuid::Uuid::new_v4().as_bytes()
    }

    /// Set `key` in `db` to `value`.
    pub async fn put(&self, db: &str, key: &[u8], value: &[u8]) -> Result<PutResponse, ClientError> {
        self.put_with_id(Self::new_request_id(), db, key, value).await
    }

    /// [`Client::put`] with a caller-chosen request id (kept for all retries).
    pub async fn put_with_id(
        &self,
        id: [u8; 16],
        db: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<PutResponse, ClientError> {
        let msg = PutRequest {
            header: Some(RequestHeader {
                request_id: id.to_vec(),
            }),
            db: db.into(),
            key: key.into(),
            value: value.into(),
        };
        self.retry("put", true, |ch, d| {
            let msg = msg.clone();
            async move {
                KvClient::new(ch)
                    .max_decoding_message_size(64 << 20)
                    .put(Self::request(msg, d))
                    .await
            }
        })
        .await
    }

    /// Read `key` from `db`.
    pub async fn get(&self, db: &str, key: &[u8], consistency: Consistency) -> Result<GetResponse, ClientError> {
        let msg = GetRequest {
            db: db.into(),
            key: key.into(),
            consistency: consistency as i32,
        };
        let stale = consistency == Consistency::Stale;
        self.retry("get", !stale, |ch, d| {
            let msg = msg.clone();
            async move {
                KvClient::new(ch)
                    .max_decoding_message_size(64 << 20)
                    .get(Self::request(msg, d))
                    .await
            }
        })
        .await
    }

    /// Remove `key` from `db`.
    pub async fn delete(&self, db: &str, key: &[u8]) -> Result<DeleteResponse, ClientError> {
        let msg = DeleteRequest {
            header: Self::header(),
            db: db.into(),
            key: key.into(),
        };
        self.retry("delete", true, |ch, d| {
            let msg = msg.clone();
            async move { KvClient::new(ch).delete(Self::request(msg, d)).await }
        })
        .await
    }

    /// One page of keys.
    pub async fn scan_page(&self, req: ScanRequest) -> Result<ScanResponse, ClientError> {
        let stale = req.consistency == Consistency::Stale as i32;
        self.retry("scan", !stale, |ch, d| {
            let msg = req.clone();
            async move {
                KvClient::new(ch)
                    .max_decoding_message_size(256 << 20)
                    .scan(Self::request(msg, d))
                    .await
            }
        })
        .await
    }

    /// Up to `limit` keys (0 = all) with `prefix`, fetched page by page.
    /// Each page is consistent on its own; the whole scan is not one
    /// point-in-time snapshot.
    pub async fn scan(
        &self,
        db: &str,
        prefix: &[u8],
        limit: usize,
        keys_only: bool,
        consistency: Consistency,
    ) -> Result<(Vec<KeyValue>, bool), ClientError> {
        let mut out: Vec<KeyValue> = Vec::new();
        let mut after = Vec::new();
        loop {
            let want = if limit == 0 { 0 } else { (limit - out.len()) as u32 };
            let page = self
                .scan_page(ScanRequest {
                    db: db.into(),
                    prefix: prefix.into(),
                    start_after: after.clone(),
                    limit: want,
                    consistency: consistency as i32,
                    keys_only,
                })
                .await?;
            if let Some(last) = page.kvs.last() {
                after = last.key.clone();
            }
            out.extend(page.kvs);
            let full = limit != 0 && out.len() >= limit;
            if !page.more || full {
                return Ok((out, page.more));
            }
        }
    }

    /// Run a transaction.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, ClientError> {
        self.txn_with_id(Self::new_request_id(), req).await
    }

    /// [`Client::txn`] with a caller-chosen request id (kept for all retries).
    pub async fn txn_with_id(&self, id: [u8; 16], mut req: TxnRequest) -> Result<TxnResponse, ClientError> {
        req.header = Some(RequestHeader {
            request_id: id.to_vec(),
        });
        self.retry("txn", true, |ch, d| {
            let msg = req.clone();
            async move { KvClient::new(ch).txn(Self::request(msg, d)).await }
        })
        .await
    }

    /// Every database and its size.
    /// Every database the caller may see, read page by page.
    pub async fn list_databases(&self, consistency: Consistency) -> Result<ListDatabasesResponse, ClientError> {
        let stale = consistency == Consistency::Stale;
        let mut all = ListDatabasesResponse::default();
        loop {
            let start_after = all.next.clone();
            let page = self
                .retry("list databases", !stale, |ch, d| {
                    let start_after = start_after.clone();
                    async move {
                        KvClient::new(ch)
                            .list_databases(Self::request(
                                ListDatabasesRequest {
                                    consistency: consistency as i32,
                                    start_after,
                                    limit: 0,
                                },
                                d,
                            ))
                            .await
                    }
                })
                .await?;
            all.header = page.header;
            all.databases.extend(page.databases);
            all.next = page.next;
            if all.next.is_empty() {
                return Ok(all);
            }
        }
    }

    /// Turn the first endpoint's node into a new one-voter cluster. Not
    /// retried on other endpoints: it is about that node.
    pub async fn init(&self) -> Result<InitResponse, ClientError> {
        let addr = self.endpoints[0].clone();
        let ch = self.channel(&addr)?;
        let d = self.opts.timeout;
        match tokio::time::timeout(d, ClusterClient::new(ch).init(Self::request(InitRequest {}, d))).await {
            Err(_) => Err(ClientError::Status {
                code: Code::DeadlineExceeded,
                message: format!("init: no answer from {addr} within {d:?}"),
            }),
            Ok(Err(s)) => Err(ClientError::Status {
                code: s.code(),
                message: format!("init on {addr} failed: {}", s.message()),
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Add a node (see `sen cluster add-node`). Waits for it to catch up.
    pub async fn add_node(&self, id: u64, addr: &str, learner: bool) -> Result<AddNodeResponse, ClientError> {
        let msg = AddNodeRequest {
            id,
            addr: addr.into(),
            learner,
        };
        self.retry("add-node", true, |ch, d| {
            let msg = msg.clone();
            async move { ClusterClient::new(ch).add_node(Self::request(msg, d)).await }
        })
        .await
    }

    pub async fn promote_node(&self, id: u64) -> Result<PromoteNodeResponse, ClientError> {
        self.retry("promote", true, |ch, d| async move {
            ClusterClient::new(ch)
                .promote_node(Self::request(PromoteNodeRequest { id }, d))
                .await
        })
        .await
    }

    pub async fn remove_node(&self, id: u64) -> Result<RemoveNodeResponse, ClientError> {
        self.retry("remove-node", true, |ch, d| async move {
            ClusterClient::new(ch)
                .remove_node(Self::request(RemoveNodeRequest { id }, d))
                .await
        })
        .await
    }

    /// Cluster status (from the leader when reachable).
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.retry("status", false, |ch, d| async move {
            ClusterClient::new(ch).status(Self::request(StatusRequest {}, d)).await
        })
        .await
    }

    /// Status as seen by one specific endpoint, without retries elsewhere.
    pub async fn status_of(&self, addr: &str, timeout: Duration) -> Result<StatusResponse, ClientError> {
        self.call_at(addr, timeout, |ch, d| async move {
            ClusterClient::new(ch).status(Self::request(StatusRequest {}, d)).await
        })
        .await
    }

    /// One call to the node at `addr` (no retry elsewhere, no leader
    /// tracking), bounded by `timeout`; `call` gets the channel and the
    /// deadline to put on its request.
    pub(crate) async fn call_at<T, F, Fut>(&self, addr: &str, timeout: Duration, call: F) -> Result<T, ClientError>
    where
        F: FnOnce(Ch, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let ch = self.channel(addr)?;
        match tokio::time::timeout(timeout, call(ch, timeout)).await {
            Err(_) => Err(ClientError::Status {
                code: Code::DeadlineExceeded,
                message: format!("no answer from {addr} within {timeout:?}"),
            }),
            Ok(Err(s)) => Err(ClientError::Status {
                code: s.code(),
                message: s.message().to_owned(),
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Ask the node at `addr` to back up its replica (no retry elsewhere:
    /// a retry would take a second backup). `timeout` bounds the backup.
    pub async fn create_backup(
        &self,
        addr: &str,
        req: CreateBackupRequest,
        timeout: Duration,
    ) -> Result<CreateBackupResponse, ClientError> {
        let ch = self.channel(addr)?;
        match tokio::time::timeout(
            timeout,
            sen_proto::v1::backup_client::BackupClient::new(ch).create(Self::request(req, timeout)),
        )
        .await
        {
            Err(_) => Err(ClientError::Status {
                code: Code::DeadlineExceeded,
                message: format!(
                    "the backup on {addr} did not finish within {timeout:?} (raise --timeout); it may still complete"
                ),
            }),
            Ok(Err(s)) => Err(ClientError::Status {
                code: s.code(),
                message: format!("{addr}: {}", s.message()),
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Hand leadership to voter `to` (0 = the best one); waits until it
    /// leads. Retried until a leader answers.
    pub async fn transfer_leader(&self, to: u64) -> Result<TransferLeaderResponse, ClientError> {
        self.retry("transfer-leader", true, |ch, d| async move {
            ClusterClient::new(ch)
                .transfer_leader(Self::request(TransferLeaderRequest { to }, d))
                .await
        })
        .await
    }

    /// Drain (`drain = true`) or undrain node `id`.
    pub async fn drain(&self, id: u64, drain: bool) -> Result<DrainResponse, ClientError> {
        self.retry(if drain { "drain" } else { "undrain" }, true, |ch, d| async move {
            ClusterClient::new(ch)
                .drain(Self::request(DrainRequest { id, drain }, d))
                .await
        })
        .await
    }

    /// Record an incident (a JSON document without id); returns its id.
    pub async fn record_incident(&self, json: String) -> Result<u64, ClientError> {
        self.retry("record-incident", true, |ch, d| {
            let json = json.clone();
            async move {
                IncidentsClient::new(ch)
                    .record(Self::request(RecordIncidentRequest { json }, d))
                    .await
            }
        })
        .await
        .map(|r| r.id)
    }

    pub async fn annotate_incident(&self, req: AnnotateIncidentRequest) -> Result<String, ClientError> {
        self.retry("annotate-incident", true, |ch, d| {
            let req = req.clone();
            async move { IncidentsClient::new(ch).annotate(Self::request(req, d)).await }
        })
        .await
        .map(|r| r.json)
    }

    /// Every incident that started at or after `since_ms` or was open
    /// then, read page by page.
    pub async fn list_incidents(&self, since_ms: u64) -> Result<ListIncidentsResponse, ClientError> {
        let mut all = ListIncidentsResponse::default();
        loop {
            let after_id = all.next_after_id;
            let page = self
                .retry("list-incidents", true, |ch, d| async move {
                    IncidentsClient::new(ch)
                        .list(Self::request(
                            ListIncidentsRequest {
                                since_ms,
                                after_id,
                                limit: 0,
                            },
                            d,
                        ))
                        .await
                })
                .await?;
            all.json.extend(page.json);
            all.serious_limit_ms = page.serious_limit_ms;
            all.next_after_id = page.next_after_id;
            if all.next_after_id == 0 {
                return Ok(all);
            }
        }
    }

    /// One call to the node at `addr` only (no retry elsewhere).
    async fn at<T, F, Fut>(&self, what: &str, addr: &str, timeout: Duration, f: F) -> Result<T, ClientError>
    where
        F: FnOnce(Ch, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let ch = self.channel(addr)?;
        match tokio::time::timeout(timeout, f(ch, timeout)).await {
            Err(_) => Err(ClientError::Status {
                code: Code::DeadlineExceeded,
                message: format!("{what}: no answer from {addr} within {timeout:?}"),
            }),
            Ok(Err(s)) => Err(ClientError::Status {
                code: s.code(),
                message: format!("{what} on {addr}: {}", s.message()),
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// The node-local status of the node at `addr` (answers without a
    /// leader; no retry elsewhere).
    pub async fn local_status(&self, addr: &str, timeout: Duration) -> Result<LocalStatusResponse, ClientError> {
        self.at("local status", addr, timeout, |ch, d| async move {
            sen_proto::v1::admin_client::AdminClient::new(ch)
                .local_status(Self::request(LocalStatusRequest {}, d))
                .await
        })
        .await
    }

    /// The state digest of the node at `addr` at its applied index (no
    /// retry elsewhere).
    pub async fn digest_of(
        &self,
        addr: &str,
        timeout: Duration,
        req: DigestRequest,
    ) -> Result<DigestResponse, ClientError> {
        self.at("digest", addr, timeout, |ch, d| async move {
            sen_proto::v1::admin_client::AdminClient::new(ch)
                .digest(Self::request(req, d))
                .await
        })
        .await
    }

    /// Inject a drill fault into the node at `addr`.
    pub async fn inject_fault(&self, addr: &str, req: InjectFaultRequest) -> Result<InjectFaultResponse, ClientError> {
        let t = self.opts.attempt_timeout;
        self.at("inject fault", addr, t, |ch, d| async move {
            NodeOpsClient::new(ch).inject_fault(Self::request(req, d)).await
        })
        .await
    }

    /// End the drill fault on the node at `addr`.
    pub async fn clear_fault(&self, addr: &str) -> Result<ClearFaultResponse, ClientError> {
        let t = self.opts.attempt_timeout;
        self.at("clear fault", addr, t, |ch, d| async move {
            NodeOpsClient::new(ch)
                .clear_fault(Self::request(ClearFaultRequest {}, d))
                .await
        })
        .await
    }

    /// Quorum-loss recovery on the node at `addr` (see `sen cluster recover`).
    pub async fn recover(
        &self,
        addr: &str,
        req: RecoverRequest,
        timeout: Duration,
    ) -> Result<RecoverResponse, ClientError> {
        self.at("recover", addr, timeout, |ch, d| async move {
            NodeOpsClient::new(ch).recover(Self::request(req, d)).await
        })
        .await
    }

    /// Note the leader from a response header (for callers using
    /// [`Client::put`] etc., this happens automatically on errors).
    pub fn observe(&self, header: &Option<ResponseHeader>, served_by: &str) {
        self.remember_leader(header, served_by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_never_leaves_the_machine_in_plaintext() {
        let opts = |tls: bool| ClientOptions {
            token: Some(Secret("sen_0123456789abcdef_00".into())),
            tls: tls.then(|| TlsOptions {
                ca: b"-----BEGIN CERTIFICATE-----".to_vec(),
                identity: None,
            }),
            ..Default::default()
        };
        let e = Client::new(&["10.0.0.11:7001".into()], opts(false))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("only over TLS"), "{e}");
        for local in ["127.0.0.1:7101", "localhost:7101", "[::1]:7101"] {
            assert!(Client::new(&[local.into()], opts(false)).is_ok(), "{local}");
        }
        assert!(Client::new(&["10.0.0.11:7001".into()], opts(true)).is_ok());
    }
}
