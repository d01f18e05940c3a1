//! Sen's transport security and credentials, without the node:
//!
//! - [`certs`]: a cluster CA, node certificates (server and client, with
//!   the node id as `sen://node/<id>`) and user client certificates
//!   (`sen://user/<name>`, the name also as CN), written as PEM files
//!   (keys 0600) — `sen certs init|node|client`.
//! - [`tls`]: rustls configurations from those files (ring provider),
//!   reloaded when the files change or on SIGHUP, for the node's gRPC and
//!   HTTP listeners and its calls to peers; and a client configuration
//!   for tools that speak HTTPS.
//! - [`identity`]: who a verified certificate names (a node or a user).
//! - [`token`]: bearer tokens: `sen_<id>_<secret>`, stored only as a keyed
//!   blake3 hash, compared in constant time.

pub mod certs;
pub mod identity;
pub mod tls;
pub mod token;

pub use identity::CertIdentity;
pub use tls::{Reloader, TlsFiles, TlsSet};
pub use token::TokenSecret;

/// A certificate, key or TLS configuration could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("{0}")]
    Io(String),
    /// A certificate or key is malformed or does not fit.
    #[error("{0}")]
    Invalid(String),
}
