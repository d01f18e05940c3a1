//! rustls configurations built from a node's PEM files, and their reload.
//!
//! A node's listeners take their server configuration from a [`Reloader`]
//! per connection, so certificates replaced on disk (a rotation) are used
//! by the next connection after `reload` — on SIGHUP or when the node sees
//! the files change — without a restart. A reload that fails (a half-
//! written file, a key that does not match) keeps the previous set and
//! says why.
//!
//! Server side: TLS 1.2/1.3 with the ring provider; a client certificate is
//! verified against the cluster CA when one is presented, and may be
//! absent (users may authenticate with a token instead): who may call what
//! is decided after the handshake, from the verified identity.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::SecurityError;
use crate::identity::{CertIdentity, identity_of_der};

/// The ring provider, installed as the process default once (other crates
/// in the same binary may bring aws-lc-rs; rustls refuses to guess).
pub fn provider() -> Arc<CryptoProvider> {
    let p = Arc::new(rustls::crypto::ring::default_provider());
    let _ = CryptoProvider::install_default((*p).clone());
    p
}

/// Where a node's (or a client's) PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate(s): several concatenated during a CA
    /// rotation.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything built from one reading of the files.
#[derive(Clone)]
pub struct TlsSet {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// For the gRPC listener (ALPN h2).
    pub grpc: Arc<ServerConfig>,
    /// For the HTTP listener (ALPN h2 and http/1.1).
    pub http: Arc<ServerConfig>,
    /// For calls to peers, presenting this certificate.
    pub client: Arc<ClientConfig>,
    /// Who this certificate names.
    pub identity: CertIdentity,
    /// When this certificate expires (Unix seconds).
    pub not_after: i64,
}

impl std::fmt::Debug for TlsSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSet")
            .field("identity", &self.identity)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|e| SecurityError::Io(format!("read the {what} {}: {e}", path.display())))
}

fn certs(what: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let v: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| SecurityError::Invalid(format!("the {what} {} is not PEM: {e}", path.display())))?;
    if v.is_empty() {
        return Err(SecurityError::Invalid(format!(
            "the {what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(v)
}

/// Roots from a CA PEM (one or more certificates).
pub fn roots(ca_pem: &[u8], path: &Path) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for c in certs("CA certificate", path, ca_pem)? {
        roots
            .add(c)
            .map_err(|e| SecurityError::Invalid(format!("the CA certificate {}: {e}", path.display())))?;
    }
    Ok(roots)
}

impl TlsSet {
    /// Read and check the files: the certificate must be signed for its
    /// key and name a node or a user.
    pub fn load(files: &TlsFiles) -> Result<Self, SecurityError> {
        let provider = provider();
        let ca_pem = read("CA certificate", &files.ca)?;
        let cert_pem = read("certificate", &files.cert)?;
        let key_pem = read("key", &files.key)?;
        let roots = Arc::new(roots(&ca_pem, &files.ca)?);
        let chain = certs("certificate", &files.cert, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            SecurityError::Invalid(format!("the key {} is not a PEM private key: {e}", files.key.display()))
        })?;
        let certified = CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| {
            SecurityError::Invalid(format!(
                "the certificate {} does not go with the key {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| SecurityError::Invalid(format!("the certificate {}: {e}", files.cert.display())))?;
        let not_after = parsed.validity().not_after.timestamp();
        let identity = identity_of_der(&chain[0])
            .map_err(|e| SecurityError::Invalid(format!("the certificate {}: {e}", files.cert.display())))?;
        drop(certified);

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| SecurityError::Invalid(format!("client verifier: {e}")))?;
        let server = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, SecurityError> {
            let mut c = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| SecurityError::Invalid(e.to_string()))?
                .with_client_cert_verifier(verifier.clone())
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| SecurityError::Invalid(format!("the certificate {}: {e}", files.cert.display())))?;
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(c))
        };
        let grpc = server(&[b"h2"])?;
        let http = server(&[b"h2", b"http/1.1"])?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::Invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| SecurityError::Invalid(format!("the certificate {}: {e}", files.cert.display())))?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
            grpc,
            http,
            client: Arc::new(client),
            identity,
            not_after,
        })
    }
}

/// A client configuration for HTTPS or gRPC over TLS that trusts `ca_pem`
/// (and presents `identity`, PEM certificate and key, if given).
pub fn client_config(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<ClientConfig, SecurityError> {
    let provider = provider();
    let roots = roots(ca_pem, Path::new("(CA)"))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::Invalid(e.to_string()))?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certs("certificate", Path::new("(client)"), cert)?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| SecurityError::Invalid(format!("not a PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SecurityError::Invalid(e.to_string()))
        }
    }
}

/// The node's current [`TlsSet`], replaced by [`Reloader::reload`].
pub struct Reloader {
    files: TlsFiles,
    current: ArcSwap<TlsSet>,
    stamps: Mutex<[Option<SystemTime>; 3]>,
}

fn stamps(files: &TlsFiles) -> [Option<SystemTime>; 3] {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [m(&files.ca), m(&files.cert), m(&files.key)]
}

impl Reloader {
    pub fn new(files: TlsFiles) -> Result<Self, SecurityError> {
        let set = TlsSet::load(&files)?;
        Ok(Self {
            stamps: Mutex::new(stamps(&files)),
            files,
            current: ArcSwap::from_pointee(set),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The set to use now.
    pub fn current(&self) -> Arc<TlsSet> {
        self.current.load_full()
    }

    /// Read the files again and use them from the next connection on.
    /// On error the current set stays.
    pub fn reload(&self) -> Result<Arc<TlsSet>, SecurityError> {
        let new = Arc::new(TlsSet::load(&self.files)?);
        if new.identity != self.current().identity {
            return Err(SecurityError::Invalid(format!(
                "the new certificate {} names {:?}, not {:?}: refusing to change identity on reload",
                self.files.cert.display(),
                new.identity,
                self.current().identity
            )));
        }
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = stamps(&self.files);
        self.current.store(new.clone());
        Ok(new)
    }

    /// [`Reloader::reload`] if any file's modification time changed since
    /// the last load. `Ok(None)`: nothing changed.
    pub fn reload_if_changed(&self) -> Result<Option<Arc<TlsSet>>, SecurityError> {
        let now = stamps(&self.files);
        if *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) == now {
            return Ok(None);
        }
        self.reload().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;

    #[test]
    fn a_node_set_loads_and_reloads_a_rotated_certificate() {
        let dir = tempfile::tempdir().unwrap();
        certs::init(dir.path(), 2, &[], 30).unwrap();
        let n1 = certs::node_files(dir.path(), 1);
        let files = TlsFiles {
            ca: certs::ca_files(dir.path()).cert,
            cert: n1.cert.clone(),
            key: n1.key.clone(),
        };
        let r = Reloader::new(files.clone()).unwrap();
        assert_eq!(r.current().identity, CertIdentity::Node(1));
        assert!(r.reload_if_changed().unwrap().is_none());
        let before = r.current().cert_pem.clone();
        // Rotate: a new certificate for the same node.
        std::fs::remove_file(&n1.cert).unwrap();
        std::fs::remove_file(&n1.key).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        certs::node(dir.path(), 1, &[], 30).unwrap();
        assert!(r.reload_if_changed().unwrap().is_some());
        assert_ne!(r.current().cert_pem, before);
        // A key that does not go with the certificate is refused; the
        // current set stays.
        std::fs::copy(certs::node_files(dir.path(), 2).key, &n1.key).unwrap();
        let e = r.reload().unwrap_err().to_string();
        assert!(e.contains("does not go with the key"), "{e}");
        assert_eq!(r.current().identity, CertIdentity::Node(1));
        // Another node's certificate is refused too.
        let other = TlsFiles {
            cert: certs::node_files(dir.path(), 2).cert,
            key: certs::node_files(dir.path(), 2).key,
            ..files
        };
        let r2 = Reloader::new(other).unwrap();
        assert_eq!(r2.current().identity, CertIdentity::Node(2));
    }
}
