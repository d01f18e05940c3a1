//! The tower layer in front of every gRPC service: it resolves the caller
//! (`auth::Auth::resolve`), applies the method's rule (`auth::rules`),
//! attaches the `Caller` for the handler, refuses a scoped method whose
//! handler answered without checking its site or database, and queues
//! the audit record of every refusal and every change.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sen_core::auth::{Action, Principal};
use sen_proto::meta;
use sen_raft::schema::system::{AuditRecord, SystemRecord};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::auth::rules::{self, ClusterNeed, Need, Rule};
use crate::auth::{Auth, Caller, Denial, Presented, Tally, denied_message};
use crate::error::ApiError;
use crate::node::Node;
use crate::system::ControlPlane;

#[derive(Clone)]
pub struct AuthLayer {
    pub node: Arc<Node>,
    pub auth: Arc<Auth>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            node: self.node.clone(),
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    node: Arc<Node>,
    auth: Arc<Auth>,
}

type Resp = http::Response<tonic::body::Body>;

/// The gRPC status code a response carries in its headers (an error
/// answered at once); `None` for a normal answer.
fn header_code(r: &Resp) -> Option<tonic::Code> {
    r.headers()
        .get("grpc-status")
        .map(|v| tonic::Code::from_bytes(v.as_bytes()))
        .filter(|c| *c != tonic::Code::Ok)
}

/// The status message of an error answer.
fn header_message(r: &Resp) -> Option<String> {
    tonic::Status::from_header_map(r.headers()).map(|s| s.message().to_owned())
}

fn header<'a, B>(req: &'a http::Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether the connection presented a node certificate of the cluster's
/// CA naming the node the request says it comes from (`sen-from-node`).
/// Parsed only on the rare paths that need it (a throttled address, a
/// refusal).
fn from_a_node<B>(req: &http::Request<B>) -> bool {
    let Some(claimed) = header(req, meta::FROM_NODE).and_then(|v| v.parse::<u64>().ok()) else {
        return false;
    };
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|t| t.peer_certs());
    certs
        .as_ref()
        .and_then(|c| c.first())
        .and_then(|c| sen_security::identity::identity_of_der_cached(c.as_ref()).ok())
        == Some(sen_security::CertIdentity::Node(claimed))
}

/// A certificate user without a record in this replica (created on the
/// leader a moment ago, perhaps).
fn unknown_user(node: &Node, who: &Principal) -> bool {
    match who {
        Principal::User {
            name,
            via: sen_core::auth::Credential::Certificate,
        } => matches!(node.get_raw(&sen_raft::schema::system::user_key(name)), Ok(None)),
        _ => false,
    }
}

/// The client's address, from the TLS or TCP connection.
fn remote_addr<B>(req: &http::Request<B>) -> Option<std::net::SocketAddr> {
    req.extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|t| t.get_ref().remote_addr())
        .or_else(|| req.extensions().get::<TcpConnectInfo>().and_then(|t| t.remote_addr()))
}

fn count_metric(node: &Node, result: &str) {
    node.metrics
        .auth_refused
        .get_or_create(&crate::metrics::ResultLabel { result: result.into() })
        .inc();
}

/// A refusal: counted against the client's address, then audited (the one
/// that throttles the address says so; later ones are only counted).
#[allow(clippy::too_many_arguments)]
fn refused(
    node: &Node,
    auth: &Auth,
    path: &str,
    who: &Principal,
    from: &str,
    remote: Option<std::net::SocketAddr>,
    resource: &str,
    denial: &Denial,
) {
    count_metric(node, denial.result());
    let tally = match remote {
        Some(r) => auth.count_refusal(r.ip()),
        None => Tally::Counted,
    };
    let message = match tally {
        Tally::Throttled => return,
        Tally::Counted => denial.message().to_owned(),
        Tally::NowThrottled => format!("{} ({})", denial.message(), crate::auth::THROTTLED_NOTE),
    };
    tracing::info!(method = %path, who = %who, from = %from, "refused: {}", denial.message());
    audit(
        node,
        auth,
        path,
        who,
        from,
        resource,
        denial.result(),
        denial.status().code(),
        &message,
    );
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = Resp> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (node, auth) = (self.node.clone(), self.auth.clone());
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            // No caller holds the node's work open longer than
            // server.max-request-timeout, whatever deadline it asks for.
            crate::deadline::cap(req.headers_mut(), node.config.server.max_request_timeout);
            // Refusals count against the client's address, never a node's:
            // a node's connections carry Raft and the requests it forwards,
            // which must not be throttled for its users' mistakes.
            let remote = remote_addr(&req).filter(|_| auth.secure);
            // An address refused too often is refused before any work.
            if let Some(r) = remote
                && auth.is_throttled(r.ip())
                && rules::lookup(&path).is_some_and(|rule| rule.need != Need::Public)
                && !from_a_node(&req)
            {
                count_metric(&node, "throttled");
                return Ok(Auth::throttled_denial(r.ip()).status().into_http());
            }
            let caller = match admit(&node, &auth, &req, &path, remote) {
                Ok(c) => c,
                Err((denial, who, from)) => {
                    let remote = remote.filter(|_| !from_a_node(&req));
                    let rule = rules::lookup(&path);
                    let deferred = defer(&node, rule, &denial).or_else(|| {
                        // A certificate user this replica does not know yet.
                        (matches!(denial, Denial::Forbidden(_)) && unknown_user(&node, &who))
                            .then(|| defer(&node, rule, &Denial::Unknown(String::new())))
                            .flatten()
                    });
                    if let Some(redirect) = deferred {
                        // Not a decision, but counted: guessing tokens at
                        // followers is throttled like anywhere else.
                        if let Some(r) = remote
                            && auth.count_refusal(r.ip()) == Tally::NowThrottled
                        {
                            refused(&node, &auth, &path, &who, &from, None, "", &denial);
                        }
                        return Ok(redirect.into_http());
                    }
                    let resource = match rule.map(|r| r.need) {
                        Some(Need::Cluster(_) | Need::Bootstrap) => "cluster",
                        _ => "",
                    };
                    refused(&node, &auth, &path, &who, &from, remote, resource, &denial);
                    return Ok(denial.status().into_http());
                }
            };
            let remote =
                remote.filter(|_| caller.forwarded_by.is_none() && !matches!(caller.principal, Principal::Node(_)));
            // One caller cannot take all of the cluster's write capacity:
            // writes are counted where they enter (a forwarded write was
            // counted by the node that forwarded it; nodes are not limited).
            if caller.rule.mutating
                && caller.forwarded_by.is_none()
                && !matches!(caller.principal, Principal::Node(_))
                && let Err(d) = auth.admit_write(&caller.principal)
            {
                count_metric(&node, "rate-limited");
                // Not counted toward the address's refusals (a busy but
                // honest client must not be locked out); audited within
                // the address's audit budget.
                if remote.is_none_or(|r| auth.may_audit(r.ip())) {
                    audit(
                        &node,
                        &auth,
                        &path,
                        &caller.principal,
                        &caller.addr,
                        "",
                        "rate-limited",
                        d.status().code(),
                        d.message(),
                    );
                }
                return Ok(d.status().into_http());
            }
            req.extensions_mut().insert(caller.clone());
            let resp = inner.call(req).await?;
            let code = header_code(&resp);
            if caller.rule.need == Need::Scoped && !caller.was_checked() && code.is_none() {
                // A handler that forgot its check must not leak or change
                // anything: refuse its answer.
                tracing::error!(method = %path, "a scoped handler answered without checking the caller's permission; refused");
                let d = Denial::Forbidden(format!(
                    "{path}: refused (the server did not check this request's site or database)"
                ));
                refused(&node, &auth, &path, &caller.principal, &caller.addr, remote, "", &d);
                return Ok(d.status().into_http());
            }
            let resource = caller.checked().unwrap_or_default();
            let who = caller.principal.to_string();
            // What the leader executed (or refused) it audits, with this
            // node as the one it came through; a redirect (not the leader,
            // no leader yet) changed nothing and is not a decision.
            let forwarded = caller.was_sent_to_leader();
            let redirected = code == Some(tonic::Code::Unavailable);
            if forwarded || redirected {
                return Ok(resp);
            }
            match code {
                Some(c @ (tonic::Code::PermissionDenied | tonic::Code::Unauthenticated)) => {
                    let message = header_message(&resp).unwrap_or_else(|| "refused by the service".into());
                    let d = if c == tonic::Code::PermissionDenied {
                        Denial::Forbidden(message)
                    } else {
                        Denial::Unauthenticated(message)
                    };
                    let _ = who;
                    refused(
                        &node,
                        &auth,
                        &path,
                        &caller.principal,
                        &caller.addr,
                        remote,
                        &resource,
                        &d,
                    );
                }
                Some(c) if caller.rule.mutating => {
                    audit(
                        &node,
                        &auth,
                        &path,
                        &caller.principal,
                        &caller.addr,
                        &resource,
                        "error",
                        c,
                        "",
                    );
                }
                None if caller.rule.mutating => {
                    audit(
                        &node,
                        &auth,
                        &path,
                        &caller.principal,
                        &caller.addr,
                        &resource,
                        "ok",
                        tonic::Code::Ok,
                        "",
                    );
                }
                _ => {}
            }
            Ok(resp)
        })
    }
}

/// A replica that does not know a caller's credentials may only be
/// behind: a node that has not joined a cluster knows no user, and a
/// follower may not have applied a new token (or the token key) yet. Such
/// refusals are not final: the client is sent on (to another endpoint, or
/// to the leader, whose replica decides and audits). Every other refusal
/// is decided — and audited — where it happens. `None`: the refusal
/// stands.
fn defer(node: &Node, rule: Option<&Rule>, denial: &Denial) -> Option<tonic::Status> {
    let rule = rule?;
    if matches!(rule.need, Need::Public | Need::Peer | Need::Bootstrap) {
        return None;
    }
    if node.cluster_id().is_none() {
        return node.check_serving().err().map(tonic::Status::from);
    }
    if !matches!(denial, Denial::Unknown(_)) || node.is_leader() {
        return None;
    }
    let leader = node.leader().filter(|l| l.id != node.id)?;
    Some(ApiError::not_leader(node.id, Some(leader)).into())
}

/// Whether node `id` is in this node's current membership (voter or
/// learner).
fn is_member(node: &Node, id: u64) -> bool {
    node.raft_metrics()
        .membership_config
        .membership()
        .get_node(&id)
        .is_some()
}

/// Resolve the caller and apply the rule; on refusal, who it was.
fn admit<B>(
    node: &Arc<Node>,
    auth: &Auth,
    req: &http::Request<B>,
    path: &str,
    remote: Option<std::net::SocketAddr>,
) -> Result<Caller, (Denial, Principal, String)> {
    let tls = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
    let from = remote.map(|a| a.to_string()).unwrap_or_default();
    let Some(rule) = rules::lookup(path) else {
        return Err((
            Denial::Forbidden(format!(
                "{path} has no authorization rule on this node: refused (deny by default)"
            )),
            Principal::Anonymous,
            from,
        ));
    };
    if rule.need == Need::Public {
        return Ok(Caller::new(Principal::Anonymous, Default::default(), rule, from, None));
    }
    let certs = tls.and_then(|t| t.peer_certs());
    let token = header(req, "authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::trim));
    let presented = Presented {
        cert: certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref()),
        token,
        on_behalf: header(req, meta::ON_BEHALF_OF),
        from_node: header(req, meta::FROM_NODE).and_then(|v| v.parse().ok()),
        caller_addr: header(req, meta::CALLER_ADDR),
    };
    let (principal, grants, forwarded_by) = auth
        .resolve(node.as_ref(), &presented, sen_core::now_ms())
        .map_err(|d| (d, Principal::Anonymous, from.clone()))?;
    let addr = match (forwarded_by, presented.caller_addr) {
        (Some(n), Some(a)) => format!("{a} (via node {n})"),
        _ => from.clone(),
    };
    let caller = Caller::new(principal, grants, rule, addr, forwarded_by);
    match decide(node, rule, &caller) {
        Ok(()) => Ok(caller),
        Err(d) => Err((d, caller.principal, caller.addr)),
    }
}

/// The rule applied to an identified caller.
fn decide(node: &Node, rule: &Rule, caller: &Caller) -> Result<(), Denial> {
    let p = &caller.principal;
    // Only a member of this cluster may act for a user it forwards.
    if let Some(n) = caller.forwarded_by
        && !is_member(node, n)
    {
        return Err(Denial::Unauthenticated(format!(
            "node {n} is not a member of this cluster: it cannot act for other callers"
        )));
    }
    match (p, caller.forwarded_by) {
        (Principal::Insecure, None) => return Ok(()),
        (Principal::Insecure, Some(n)) => {
            return Err(Denial::Forbidden(format!(
                "node {n} runs without TLS and cannot act for callers of a secure cluster"
            )));
        }
        (Principal::Anonymous, _) => {
            return Err(Denial::Unauthenticated(format!(
                "no credentials: {}",
                crate::auth::HINT
            )));
        }
        (Principal::Node(id), _) => {
            // Raft itself: any node certificate of the cluster's CA, under
            // the id it names (the service checks the messages' sender and
            // cluster id). Everything else nodes call: members only.
            let raft = rule.method.starts_with("/sen.raft.v1.");
            let for_nodes = rule.nodes || rule.need == Need::Peer;
            return if raft || (for_nodes && is_member(node, *id)) {
                Ok(())
            } else if for_nodes {
                Err(Denial::Forbidden(format!(
                    "node {id} is not a member of this cluster: {} is for its members",
                    rule.method
                )))
            } else {
                Err(Denial::Forbidden(denied_message(p, &Action::Authenticated)))
            };
        }
        (Principal::User { .. }, _) => {}
    }
    match rule.need {
        Need::Public | Need::Scoped => Ok(()),
        Need::Peer => Err(Denial::Forbidden(format!(
            "{p} may not call {}: it is for the nodes of the cluster (node certificates) only",
            rule.method
        ))),
        Need::Cluster(n) => {
            let action = n.action();
            if caller.allows(&action) {
                Ok(())
            } else {
                Err(Denial::Forbidden(denied_message(p, &action)))
            }
        }
        Need::Bootstrap => {
            // Before the cluster exists nobody has a grant: a certificate
            // of the cluster CA is the proof. Afterwards: cluster-admin.
            // Only the configured bootstrap user (`auth.bootstrap-user`), so
            // that no other certificate of the CA can take a fresh node.
            let by_certificate = matches!(
                p,
                Principal::User {
                    via: sen_core::auth::Credential::Certificate,
                    name,
                } if *name == node.config.auth.bootstrap_user
            );
            let bootstrapped = matches!(node.get_raw(sen_raft::schema::system::AUTH_KEY_KEY), Ok(Some(_)));
            if !bootstrapped && by_certificate {
                return Ok(());
            }
            let action = ClusterNeed::Administer.action();
            if caller.allows(&action) {
                Ok(())
            } else if !bootstrapped {
                Err(Denial::Forbidden(format!(
                    "the first `sen cluster init` needs the client certificate of user {:?} from the cluster CA (admin.pem from `sen certs init`; auth.bootstrap-user names another)",
                    node.config.auth.bootstrap_user
                )))
            } else {
                Err(Denial::Forbidden(denied_message(p, &action)))
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn audit(
    node: &Node,
    auth: &Auth,
    method: &str,
    who: &Principal,
    from: &str,
    resource: &str,
    result: &str,
    code: tonic::Code,
    message: &str,
) {
    let (who_s, token) = match who {
        Principal::User {
            name,
            via: sen_core::auth::Credential::Token { id },
        } => (name.clone(), id.clone()),
        Principal::User { name, .. } => (name.clone(), String::new()),
        other => (other.to_string(), String::new()),
    };
    auth.audit.push(AuditRecord {
        version: AuditRecord::VERSION,
        at_ms: sen_core::now_ms(),
        who: who_s,
        token,
        method: method.to_owned(),
        resource: resource.to_owned(),
        result: result.to_owned(),
        code: format!("{code:?}"),
        message: message.chars().take(500).collect(),
        from: from.to_owned(),
        node: node.id,
    });
}
