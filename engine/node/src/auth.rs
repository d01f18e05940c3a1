//! Who is calling, and may they: the node's one authorization point.
//!
//! Every gRPC request passes `grpc::auth_layer::AuthLayer` before any service sees
//! it: it resolves the caller ([`Auth::resolve`]: a client certificate of
//! the cluster CA, a bearer token, or — on a request a node forwards over
//! mutual TLS — the original caller that node vouches for), looks up the
//! method's rule in [`rules`] (a method without one is refused), decides
//! cluster-level permissions, and hands the handler a [`Caller`] whose
//! [`Caller::require`] checks the site or database the request names.
//! Refusals and every change are written to the audit log ([`audit`]).
//! HTTP routes go through the same [`Auth::resolve`] (`crate::http`).
//!
//! Without TLS (`--insecure`, or plaintext on loopback) nothing is
//! authenticated: every caller is [`Principal::Insecure`] and may do
//! everything. The mode is in `cluster status` and the node's log.

pub mod audit;
pub mod rules;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sen_core::auth::{Action, Credential, Grants, Principal};
use sen_raft::schema::system::{self, AUTH_KEY_KEY, AuthKey, SystemRecord, TokenRecord, UserRecord};
use sen_security::{CertIdentity, TokenSecret};

use crate::error::ApiError;
use crate::system::{self as cp, ControlPlane};
use rules::Rule;

/// How the node authenticates.
pub struct Auth {
    /// TLS is on, and with it authentication.
    pub secure: bool,
    /// Refusals per client address.
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Audit records of refusals that do not count toward throttling
    /// (visitors of a private site without credentials), per address.
    audit_budget: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses refused too often, and until when all their requests are
    /// refused outright (bounded: see [`Auth::count_refusal`]).
    throttled: Mutex<HashMap<IpAddr, Instant>>,
    /// The cluster's token key, once read.
    token_key: OnceLock<[u8; 32]>,
    /// Writes per caller (user name, or who the caller is), when limited.
    writes: Option<(DefaultKeyedRateLimiter<String>, u32)>,
    /// Token records and users' grants read from this replica, kept while
    /// no access-control record changes (see [`ControlPlane::auth_epoch`]):
    /// two reads and two JSON decodes less per request.
    records: Mutex<RecordCache>,
    pub audit: audit::AuditQueue,
}

/// See [`Auth::records`].
#[derive(Default)]
struct RecordCache {
    epoch: u64,
    tokens: HashMap<String, Option<TokenRecord>>,
    grants: HashMap<String, Grants>,
    private_sites: HashMap<String, bool>,
}

impl RecordCache {
    /// Most entries kept (a flood of made-up token ids must not grow it).
    const MAX: usize = 10_000;

    /// The cache for `epoch`, emptied if that changed (or it is full).
    fn at(&mut self, epoch: u64) -> &mut Self {
        if self.epoch != epoch || self.tokens.len() + self.grants.len() + self.private_sites.len() > Self::MAX {
            self.tokens.clear();
            self.grants.clear();
            self.private_sites.clear();
            self.epoch = epoch;
        }
        self
    }
}

/// An authenticated (or insecure-mode) caller, for one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub grants: Grants,
    pub rule: &'static Rule,
    /// The client's address (for a forwarded request: the original one).
    pub addr: String,
    /// A node forwarded this request for `principal`.
    pub forwarded_by: Option<u64>,
    /// What the handler checked, for the audit log; set by `require`.
    checked: Arc<Mutex<Option<String>>>,
    checked_flag: Arc<AtomicBool>,
    /// The handler sent the request on to the leader (which audits it).
    sent_to_leader: Arc<AtomicBool>,
}

/// A refusal, with its gRPC code and the reason.
#[derive(Debug, Clone)]
pub enum Denial {
    /// No or bad credentials.
    Unauthenticated(String),
    /// Credentials this replica does not know (a token or its key not
    /// applied here yet): not final on a follower, which sends the client
    /// to the leader.
    Unknown(String),
    /// Valid credentials without the right.
    Forbidden(String),
    /// Too many failed attempts from one address.
    Throttled(String),
}

impl Denial {
    pub fn message(&self) -> &str {
        match self {
            Denial::Unauthenticated(m) | Denial::Unknown(m) | Denial::Forbidden(m) | Denial::Throttled(m) => m,
        }
    }

    pub fn status(&self) -> tonic::Status {
        ApiError::from(self.clone()).into()
    }

    pub fn result(&self) -> &'static str {
        match self {
            Denial::Unauthenticated(_) | Denial::Unknown(_) => "unauthenticated",
            Denial::Forbidden(_) => "denied",
            Denial::Throttled(_) => "throttled",
        }
    }
}

impl From<Denial> for ApiError {
    fn from(d: Denial) -> Self {
        match d {
            Denial::Unauthenticated(m) | Denial::Unknown(m) => ApiError::Unauthenticated(m),
            Denial::Forbidden(m) => ApiError::PermissionDenied(m),
            Denial::Throttled(m) => ApiError::Exhausted(m),
        }
    }
}

/// How long a throttled address is refused outright.
const THROTTLE_FOR: Duration = Duration::from_secs(60);
/// Most addresses remembered as throttled (past it, new ones are only
/// rate-limited).
const MAX_THROTTLED: usize = 10_000;
/// Added to the audit record of the refusal that throttles an address.
pub const THROTTLED_NOTE: &str = "this address is now throttled for a minute: its refusals are counted in sen_auth_refused_total, not recorded one by one";

/// What a refusal did to its address's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Counted; audit the refusal.
    Counted,
    /// This refusal throttled the address; audit it, saying so.
    NowThrottled,
    /// Already throttled: not audited.
    Throttled,
}

/// The hint on every missing-credentials refusal.
pub const HINT: &str =
    "set SEN_TOKEN (or --token-file) or use a client certificate (SEN_CERT/SEN_KEY); see docs/security.md";

/// What the node learned from the connection and the headers.
pub struct Presented<'a> {
    /// The verified client certificate chain (leaf first), if any.
    pub cert: Option<&'a [u8]>,
    /// `Authorization: Bearer …` (or the `sen_token` cookie over HTTP).
    pub token: Option<&'a str>,
    /// `sen-on-behalf-of`: who a forwarding node acts for.
    pub on_behalf: Option<&'a str>,
    /// `sen-from-node`: the node id a peer call claims.
    pub from_node: Option<u64>,
    /// `sen-caller-addr`: the original client of a forwarded request.
    pub caller_addr: Option<&'a str>,
}

impl Auth {
    pub fn new(secure: bool, failures_per_minute: u32, audit_queue: usize) -> Self {
        let per_minute = NonZeroU32::new(failures_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            secure,
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
            audit_budget: RateLimiter::keyed(Quota::per_minute(per_minute)),
            throttled: Mutex::new(HashMap::new()),
            token_key: OnceLock::new(),
            records: Mutex::new(RecordCache::default()),
            writes: None,
            audit: audit::AuditQueue::new(audit_queue),
        }
    }

    /// Limit each caller to `per_second` writes on average with bursts of
    /// `burst` (`auth.writes-per-second`, `auth.writes-burst`; 0: none).
    pub fn with_write_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.writes = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            (
                RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                per_second,
            )
        });
        self
    }

    /// Whether `who` may send one more write now; `Err` is the refusal.
    pub fn admit_write(&self, who: &Principal) -> Result<(), Denial> {
        let Some((limiter, rate)) = &self.writes else {
            return Ok(());
        };
        let key = match who {
            Principal::User { name, .. } => name.clone(),
            // Insecure mode tells no callers apart: no per-caller limit.
            Principal::Insecure => return Ok(()),
            other => other.to_string(),
        };
        limiter.check_key(&key).map_err(|_| {
            Denial::Throttled(format!(
                "{who} sent more than {rate} writes per second to this node (auth.writes-per-second); \
                 slow down and retry, or ask an administrator to raise the limit"
            ))
        })
    }

    /// Whether requests from `ip` are refused outright for now (it was
    /// refused too often lately).
    pub fn is_throttled(&self, ip: IpAddr) -> bool {
        let mut t = self.throttled.lock().unwrap_or_else(|p| p.into_inner());
        match t.get(&ip) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                t.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Count a refusal of a request from `ip`. Past `failures-per-minute`
    /// the address is throttled for a minute: its requests are refused
    /// before any work and no longer audited one by one.
    pub fn count_refusal(&self, ip: IpAddr) -> Tally {
        if self.is_throttled(ip) {
            return Tally::Throttled;
        }
        if self.failures.check_key(&ip).is_ok() {
            return Tally::Counted;
        }
        let mut t = self.throttled.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= MAX_THROTTLED {
            let now = Instant::now();
            t.retain(|_, until| *until > now);
        }
        if t.len() >= MAX_THROTTLED {
            // Too many addresses at once: this one is only rate-limited,
            // and its refusals no longer audited one by one.
            return Tally::Throttled;
        }
        t.insert(ip, Instant::now() + THROTTLE_FOR);
        Tally::NowThrottled
    }

    /// Whether a refusal that does not throttle (an anonymous visitor of a
    /// private site) may still be audited one by one from `ip`.
    pub fn may_audit(&self, ip: IpAddr) -> bool {
        self.audit_budget.check_key(&ip).is_ok()
    }

    /// The refusal of a throttled address.
    pub fn throttled_denial(ip: IpAddr) -> Denial {
        Denial::Throttled(format!(
            "too many refused requests from {ip}; wait a minute and check your credentials and roles"
        ))
    }

    /// Record a refused TLS handshake (a certificate of another CA, a
    /// plaintext client) in the audit log, counted against the address
    /// like any refusal.
    pub fn audit_tls_refusal(&self, node: u64, remote: SocketAddr, method: &str, why: String) {
        let message = match self.count_refusal(remote.ip()) {
            Tally::Throttled => return,
            Tally::Counted => why,
            Tally::NowThrottled => format!("{why} ({THROTTLED_NOTE})"),
        };
        self.audit.push(system::AuditRecord {
            version: system::AuditRecord::VERSION,
            at_ms: sen_core::now_ms(),
            who: "(no identity: TLS)".into(),
            token: String::new(),
            method: method.to_owned(),
            resource: String::new(),
            result: "unauthenticated".into(),
            code: format!("{:?}", tonic::Code::Unauthenticated),
            message: message.chars().take(500).collect(),
            from: remote.to_string(),
            node,
        });
    }

    /// Forget addresses that have not failed lately (bounded memory).
    pub fn forget_old_failures(&self) {
        if let Some((w, _)) = &self.writes {
            w.retain_recent();
            w.shrink_to_fit();
        }
        self.failures.retain_recent();
        self.failures.shrink_to_fit();
        self.audit_budget.retain_recent();
        self.audit_budget.shrink_to_fit();
        let now = Instant::now();
        self.throttled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
    }

    fn token_key(&self, plane: &impl ControlPlane) -> Result<[u8; 32], Denial> {
        if let Some(k) = self.token_key.get() {
            return Ok(*k);
        }
        let (k, _) = cp::read::<AuthKey>(plane, AUTH_KEY_KEY)
            .map_err(|e| Denial::Unauthenticated(format!("cannot check tokens: {e}")))?
            .ok_or_else(|| {
                Denial::Unknown("this cluster has no tokens yet (initialise it with `sen cluster init`)".into())
            })?;
        let key: [u8; 32] = hex::decode(&k.key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Denial::Unauthenticated("the cluster's token key is damaged".into()))?;
        let _ = self.token_key.set(key);
        Ok(key)
    }

    /// `load` the value of `key` in the table of [`RecordCache`] that
    /// `table` picks, or take it from there while the plane's auth epoch
    /// is unchanged. A value `load` fails to produce is not cached (the
    /// next request reads again).
    fn cached<T: Clone, E>(
        &self,
        plane: &impl ControlPlane,
        table: fn(&mut RecordCache) -> &mut HashMap<String, T>,
        key: &str,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let epoch = plane.auth_epoch();
        if let Some(e) = epoch
            && let Some(v) = table(self.records.lock().unwrap_or_else(|p| p.into_inner()).at(e)).get(key)
        {
            return Ok(v.clone());
        }
        // The epoch is read before the record: a change in between leaves
        // an entry under the old epoch, which the next lookup drops.
        let v = load()?;
        if let Some(e) = epoch {
            table(self.records.lock().unwrap_or_else(|p| p.into_inner()).at(e)).insert(key.to_owned(), v.clone());
        }
        Ok(v)
    }

    /// A user's grants in this replica (none if the user does not exist).
    pub fn grants(&self, plane: &impl ControlPlane, user: &str) -> Grants {
        self.cached(
            plane,
            |c| &mut c.grants,
            user,
            || {
                cp::read::<UserRecord>(plane, &system::user_key(user))
                    .map(|u| Grants(u.map(|(u, _)| u.grants).unwrap_or_default()))
            },
        )
        .unwrap_or_default()
    }

    /// Whether `site` is private over HTTP (cached like grants).
    pub fn site_is_private(&self, plane: &impl ControlPlane, site: &str) -> bool {
        let loaded = self.cached(
            plane,
            |c| &mut c.private_sites,
            site,
            || Ok::<_, std::convert::Infallible>(crate::access::site_is_private(plane, site)),
        );
        match loaded {
            Ok(private) => private,
            Err(never) => match never {},
        }
    }

    /// A token's record in this replica (`None`: unknown here).
    fn token_record(&self, plane: &impl ControlPlane, id: &str) -> Result<Option<TokenRecord>, Denial> {
        self.cached(
            plane,
            |c| &mut c.tokens,
            id,
            || {
                cp::read::<TokenRecord>(plane, &system::token_key(id))
                    .map(|r| r.map(|(r, _)| r))
                    .map_err(|e| Denial::Unauthenticated(format!("cannot check the token: {e}")))
            },
        )
    }

    /// A token a follower accepted must still be valid here (revoked or
    /// expired since, or unknown: refused).
    fn token_still_valid(&self, plane: &impl ControlPlane, id: &str, user: &str, now_ms: u64) -> Result<(), Denial> {
        let rec = self
            .token_record(plane, id)?
            .ok_or_else(|| Denial::Unknown(format!("token {id} is unknown to this cluster")))?;
        if rec.user != user {
            return Err(Denial::Unauthenticated(format!(
                "token {id} belongs to {}, not to {user}",
                rec.user
            )));
        }
        if rec.revoked_at_ms.is_some() {
            return Err(Denial::Unauthenticated(format!(
                "token {id} ({}) was revoked; ask an administrator for a new one",
                rec.name
            )));
        }
        if rec.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(Denial::Unauthenticated(format!(
                "token {id} ({}) has expired; ask an administrator for a new one",
                rec.name
            )));
        }
        Ok(())
    }

    /// Who presented this, with their grants. (The callers count
    /// refusals against the client's address: [`Auth::count_refusal`].)
    pub fn resolve(
        &self,
        plane: &impl ControlPlane,
        p: &Presented<'_>,
        now_ms: u64,
    ) -> Result<(Principal, Grants, Option<u64>), Denial> {
        if !self.secure {
            return Ok((Principal::Insecure, Grants::default(), None));
        }
        self.resolve_secure(plane, p, now_ms)
    }

    fn resolve_secure(
        &self,
        plane: &impl ControlPlane,
        p: &Presented<'_>,
        now_ms: u64,
    ) -> Result<(Principal, Grants, Option<u64>), Denial> {
        if let Some(der) = p.cert {
            match sen_security::identity::identity_of_der_cached(der).map_err(Denial::Unauthenticated)? {
                CertIdentity::Node(id) => {
                    // A node says which node it is; the certificate must
                    // agree (a client holding a node certificate cannot
                    // skip the header to pass as no node in particular).
                    match p.from_node {
                        Some(claimed) if claimed == id => {}
                        Some(claimed) => {
                            return Err(Denial::Unauthenticated(format!(
                                "the certificate is node {id}'s, but the call claims to come from node {claimed}"
                            )));
                        }
                        None => {
                            return Err(Denial::Unauthenticated(format!(
                                "node {id}'s certificate on a call that does not say which node sends it (sen-from-node): node certificates are for nodes; clients use a user certificate or a token"
                            )));
                        }
                    }
                    if let Some(json) = p.on_behalf {
                        let who: Principal = serde_json::from_str(json).map_err(|e| {
                            Denial::Unauthenticated(format!(
                                "node {id} forwarded a request for an unreadable caller: {e}"
                            ))
                        })?;
                        let grants = match &who {
                            // The leader checks again, with its own replica:
                            // the token still valid, the grants as they are.
                            Principal::User {
                                name,
                                via: Credential::Token { id: token_id },
                            } => {
                                self.token_still_valid(plane, token_id, name, now_ms)?;
                                self.grants(plane, name)
                            }
                            Principal::User { name, .. } => self.grants(plane, name),
                            Principal::Anonymous => Grants::default(),
                            // A secure node never forwards for these.
                            Principal::Insecure | Principal::Node(_) => {
                                return Err(Denial::Unauthenticated(format!(
                                    "node {id} forwarded a request for {who}, which only an insecure node would"
                                )));
                            }
                        };
                        return Ok((who, grants, Some(id)));
                    }
                    return Ok((Principal::Node(id), Grants::default(), None));
                }
                CertIdentity::User(name) if p.token.is_none() => {
                    let grants = self.grants(plane, &name);
                    return Ok((
                        Principal::User {
                            name,
                            via: Credential::Certificate,
                        },
                        grants,
                        None,
                    ));
                }
                // A user certificate and a token: the token decides.
                CertIdentity::User(_) => {}
            }
        }
        let Some(text) = p.token else {
            return Ok((Principal::Anonymous, Grants::default(), None));
        };
        let token = TokenSecret::parse(text).map_err(Denial::Unauthenticated)?;
        let rec = self
            .token_record(plane, &token.id)?
            .ok_or_else(|| Denial::Unknown(format!("token {} is unknown to this cluster", token.id)))?;
        let stored: [u8; 32] = hex::decode(&rec.hash)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Denial::Unauthenticated(format!("token {} is damaged in the cluster", token.id)))?;
        if !token.matches(&self.token_key(plane)?, &stored) {
            return Err(Denial::Unauthenticated(format!(
                "token {} does not match its secret",
                token.id
            )));
        }
        if let Some(at) = rec.revoked_at_ms {
            return Err(Denial::Unauthenticated(format!(
                "token {} ({}) was revoked at {}; ask an administrator for a new one",
                rec.id,
                rec.name,
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at))
            )));
        }
        if let Some(at) = rec.expires_at_ms
            && at <= now_ms
        {
            return Err(Denial::Unauthenticated(format!(
                "token {} ({}) expired at {}; ask an administrator for a new one",
                rec.id,
                rec.name,
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at))
            )));
        }
        let Some((user, _)) = cp::read::<UserRecord>(plane, &system::user_key(&rec.user))
            .map_err(|e| Denial::Unauthenticated(format!("cannot check the token's user: {e}")))?
        else {
            return Err(Denial::Unauthenticated(format!(
                "token {} belongs to user {}, who no longer exists",
                rec.id, rec.user
            )));
        };
        Ok((
            Principal::User {
                name: user.name,
                via: Credential::Token { id: rec.id },
            },
            Grants(user.grants),
            None,
        ))
    }
}

impl Caller {
    pub fn new(
        principal: Principal,
        grants: Grants,
        rule: &'static Rule,
        addr: String,
        forwarded_by: Option<u64>,
    ) -> Self {
        Self {
            principal,
            grants,
            rule,
            addr,
            forwarded_by,
            checked: Arc::default(),
            checked_flag: Arc::default(),
            sent_to_leader: Arc::default(),
        }
    }

    /// The handler forwards this request to the leader.
    pub fn mark_sent_to_leader(&self) {
        self.sent_to_leader.store(true, Ordering::SeqCst);
    }

    pub fn was_sent_to_leader(&self) -> bool {
        self.sent_to_leader.load(Ordering::SeqCst)
    }

    /// Whether this caller may do `action`.
    pub fn allows(&self, action: &Action<'_>) -> bool {
        permits(&self.principal, &self.grants, action)
    }

    /// Check `action` (a site or database the request names); remember it
    /// for the audit log.
    pub fn require(&self, action: Action<'_>) -> Result<(), ApiError> {
        let resource = match &action {
            Action::SiteRead(s) | Action::SiteWrite(s) => format!("site:{s}"),
            Action::DbRead(d) | Action::DbWrite(d) => format!("db:{d}"),
            Action::SiteWriteAny => "site:*".into(),
            _ => "cluster".into(),
        };
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(resource);
        self.checked_flag.store(true, Ordering::SeqCst);
        if self.allows(&action) {
            return Ok(());
        }
        Err(ApiError::PermissionDenied(denied_message(&self.principal, &action)))
    }

    /// The resource the handler checked, if it did.
    pub fn checked(&self) -> Option<String> {
        self.checked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn was_checked(&self) -> bool {
        self.checked_flag.load(Ordering::SeqCst)
    }

    /// Headers a forwarding node sends for this caller.
    pub fn on_behalf(&self) -> Option<(String, String)> {
        match &self.principal {
            Principal::Node(_) => None,
            p => serde_json::to_string(p).ok().map(|j| (j, self.addr.clone())),
        }
    }
}

/// Whether `who`, holding `grants`, may do `action`: anyone in insecure
/// mode, a user by their grants, nobody else.
pub fn permits(who: &Principal, grants: &Grants, action: &Action<'_>) -> bool {
    match who {
        Principal::Insecure => true,
        Principal::User { .. } => grants.allows(action),
        Principal::Node(_) | Principal::Anonymous => false,
    }
}

/// "user X needs … for …" (what is missing, never a secret).
pub fn denied_message(who: &Principal, action: &Action<'_>) -> String {
    match who {
        Principal::Node(id) => {
            format!("node {id}'s certificate is for node-to-node calls; clients use a user certificate or a token")
        }
        Principal::Anonymous => format!("no credentials: {HINT}"),
        p => format!("{p} may not do this: it needs {action}; ask a cluster-admin (`sen role grant`)"),
    }
}

/// The caller the layer attached to a gRPC request.
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, ApiError> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("the request did not pass the authorization layer".into()))
}

/// Name what a cluster-level change is about (`user:x role:site-admin`,
/// `node:4`, a repository), for its audit record.
pub fn note<T>(req: &tonic::Request<T>, resource: impl Into<String>) {
    if let Some(c) = req.extensions().get::<Caller>() {
        let r: String = resource.into().chars().take(300).collect();
        *c.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }
}

/// Check `action` for the caller of `req`.
pub fn require<T>(req: &tonic::Request<T>, action: Action<'_>) -> Result<Caller, ApiError> {
    let c = caller(req)?;
    c.require(action)?;
    Ok(c)
}
