//! The service every HTTP connection runs.
//!
//! A `GET` or `HEAD` of a site file that the served-file cache
//! (`crate::file_cache`) holds is answered here, before the router and its
//! middlewares (`super::harden`, `super::guard`, `content::virtual_hosts`):
//! those cost more than the answer itself for a small file (routing, three
//! boxed futures per request). The answer is the one the router path gives
//! — same headers (`super::secure_headers`), same metrics and readers
//! count — and the checks the router path makes for such a request are
//! made here ([`content::from_cache`]): a private site's files, while
//! access control is on, always go through the router and its `guard`.
//! Everything else (other methods, the node's own endpoints, a file not
//! in the cache, redirects, errors) goes to the router unchanged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use futures::future::{Either, Ready, ready};
use hyper::Request;
use hyper::body::Incoming;
use tower::ServiceExt;
use tower::util::Oneshot;

use super::content;
use crate::auth::Auth;
use crate::node::Node;
use crate::tls::PeerCertificate;

/// What every connection shares: see the module docs.
#[derive(Clone)]
pub struct Front {
    node: Arc<Node>,
    auth: Arc<Auth>,
    router: Router,
}

impl Front {
    pub fn new(node: Arc<Node>, auth: Arc<Auth>, router: Router) -> Self {
        Self { node, auth, router }
    }

    /// The service of one connection from `remote` (with its TLS client
    /// certificate, if it showed one).
    pub fn connection(&self, remote: SocketAddr, cert: Option<PeerCertificate>) -> Connection {
        Connection {
            front: self.clone(),
            remote,
            cert,
        }
    }
}

/// The service of one HTTP connection.
pub struct Connection {
    front: Front,
    remote: SocketAddr,
    cert: Option<PeerCertificate>,
}

impl hyper::service::Service<Request<Incoming>> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, Oneshot<Router, Request<Incoming>>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let f = &self.front;
        if let Some(resp) = content::from_cache(
            &f.node,
            &f.auth,
            req.method(),
            req.uri().path(),
            req.headers(),
            self.remote.ip(),
        ) {
            return Either::Left(ready(Ok(resp)));
        }
        req.extensions_mut().insert(ConnectInfo(self.remote));
        if let Some(cert) = &self.cert {
            req.extensions_mut().insert(cert.clone());
        }
        Either::Right(f.router.clone().oneshot(req))
    }
}
