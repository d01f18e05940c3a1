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
use crate::auth::{Auth, Caller, Denial, Presented, denied_message};
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

fn header<'a, B>(req: &'a http::Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
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
            let caller = match admit(&node, &auth, &req, &path) {
                Ok(c) => c,
                Err((denial, _, _)) if let Some(redirect) = defer(&node, rules::lookup(&path), &denial) => {
                    return Ok(redirect.into_http());
                }
                Err((denial, who, from)) => {
                    node.metrics
                        .auth_refused
                        .get_or_create(&crate::metrics::ResultLabel {
                            result: denial.result().into(),
                        })
                        .inc();
                    audit(
                        &node,
                        &auth,
                        &path,
                        &who,
                        &from,
                        "",
                        denial.result(),
                        denial.status().code(),
                        denial.message(),
                    );
                    tracing::info!(method = %path, who = %who, from = %from, "refused: {}", denial.message());
                    return Ok(denial.status().into_http());
                }
            };
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
                return Ok(d.status().into_http());
            }
            if let Some(c @ (tonic::Code::PermissionDenied | tonic::Code::Unauthenticated)) = code
                && let Some(redirect) = defer(&node, Some(caller.rule), &Denial::Forbidden(String::new()))
            {
                tracing::debug!(method = %path, "refused by a follower's replica ({c:?}); the leader decides");
                return Ok(redirect.into_http());
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
                    audit(
                        &node,
                        &auth,
                        &path,
                        &caller.principal,
                        &caller.addr,
                        &resource,
                        "denied",
                        c,
                        "refused by the service",
                    );
                    let _ = who;
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

/// A replica that refuses a caller may only be behind: a node that has not
/// joined a cluster knows no user, and a follower may not have applied a
/// new token or grant yet. Such refusals are not final: the client is sent
/// on (to another endpoint, or to the leader, whose replica decides and
/// audits). `None`: the refusal stands (this node leads, no leader is
/// known, the caller is throttled, or the rule does not depend on the
/// replica).
fn defer(node: &Node, rule: Option<&Rule>, denial: &Denial) -> Option<tonic::Status> {
    let rule = rule?;
    if matches!(denial, Denial::Throttled(_)) || matches!(rule.need, Need::Public | Need::Peer | Need::Bootstrap) {
        return None;
    }
    if node.cluster_id().is_none() {
        return node.check_serving().err().map(tonic::Status::from);
    }
    if node.is_leader() {
        return None;
    }
    let leader = node.leader().filter(|l| l.id != node.id)?;
    Some(ApiError::not_leader(node.id, Some(leader)).into())
}

/// Resolve the caller and apply the rule; on refusal, who it was.
fn admit<B>(
    node: &Arc<Node>,
    auth: &Auth,
    req: &http::Request<B>,
    path: &str,
) -> Result<Caller, (Denial, Principal, String)> {
    let tls = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
    let remote = tls
        .and_then(|t| t.get_ref().remote_addr())
        .or_else(|| req.extensions().get::<TcpConnectInfo>().and_then(|t| t.remote_addr()));
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
        remote,
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
        (Principal::Node(_), _) => {
            return if rule.need == Need::Peer || rule.nodes {
                Ok(())
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
            let by_certificate = matches!(
                p,
                Principal::User {
                    via: sen_core::auth::Credential::Certificate,
                    ..
                }
            );
            let bootstrapped = matches!(node.get_raw(sen_raft::schema::system::AUTH_KEY_KEY), Ok(Some(_)));
            if !bootstrapped && by_certificate {
                return Ok(());
            }
            let action = ClusterNeed::Administer.action();
            if caller.allows(&action) {
                Ok(())
            } else if !bootstrapped {
                Err(Denial::Forbidden(
                    "the first `sen cluster init` needs a client certificate of the cluster CA (e.g. admin.pem from `sen certs init`)"
                        .into(),
                ))
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
