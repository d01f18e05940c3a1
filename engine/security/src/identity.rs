//! Who a certificate names. Node certificates carry the URI
//! `sen://node/<id>`; user certificates `sen://user/<name>` (their CN is
//! the name too, and node certificates the DNS name `node-<id>.sen`; a certificate of the cluster CA with only a CN names that
//! user). The caller has already verified the certificate against the
//! cluster CA: this only reads it.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

/// A verified certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertIdentity {
    Node(u64),
    User(String),
}

const NODE_PREFIX: &str = "sen://node/";
const USER_PREFIX: &str = "sen://user/";

pub fn node_uri(id: u64) -> String {
    format!("{NODE_PREFIX}{id}")
}

/// The DNS name every certificate of node `id` carries, so a peer can
/// check it reached node `id` whatever address (or proxy) it dialled.
pub fn node_dns_name(id: u64) -> String {
    format!("node-{id}.sen")
}

pub fn user_uri(name: &str) -> String {
    format!("{USER_PREFIX}{name}")
}

/// User names: 1–64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn valid_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user name {name:?}: use 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

/// The identity in a DER certificate.
pub fn identity_of_der(der: &[u8]) -> Result<CertIdentity, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    identity(&cert)
}

/// Most certificates [`identity_of_der_cached`] remembers; past it the
/// cache starts again empty (a cluster has a few nodes and users).
const CACHED_IDENTITIES: usize = 1024;

/// [`identity_of_der`] for the request path: the identity is a pure
/// function of the certificate's bytes, so it is parsed once per
/// certificate (keyed by the blake3 of its DER) instead of once per
/// request (the parse was ~3% of an idle node's CPU: every Raft
/// heartbeat carries the peer's certificate). Certificates that do not
/// name an identity are not remembered.
pub fn identity_of_der_cached(der: &[u8]) -> Result<CertIdentity, String> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<HashMap<[u8; 32], CertIdentity>>> = LazyLock::new(Default::default);
    let key = *blake3::hash(der).as_bytes();
    if let Some(id) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(id.clone());
    }
    let id = identity_of_der(der)?;
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= CACHED_IDENTITIES {
        cache.clear();
    }
    cache.insert(key, id.clone());
    Ok(id)
}

/// The identity in the first certificate of a PEM file.
pub fn identity_of_pem(pem: &[u8]) -> Result<CertIdentity, String> {
    use rustls_pki_types::pem::PemObject;
    let der =
        rustls_pki_types::CertificateDer::from_pem_slice(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    identity_of_der(&der)
}

fn identity(cert: &X509Certificate<'_>) -> Result<CertIdentity, String> {
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(id) = uri.strip_prefix(NODE_PREFIX) {
                    return id
                        .parse::<u64>()
                        .ok()
                        .filter(|id| *id > 0)
                        .map(CertIdentity::Node)
                        .ok_or_else(|| format!("the certificate names an invalid node {uri:?}"));
                }
                if let Some(name) = uri.strip_prefix(USER_PREFIX) {
                    valid_user_name(name)?;
                    return Ok(CertIdentity::User(name.to_owned()));
                }
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the certificate names no node or user (no sen:// URI and no common name)")?;
    valid_user_name(cn).map_err(|e| format!("the certificate's common name is not a user name: {e}"))?;
    Ok(CertIdentity::User(cn.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for ok in ["admin", "vp-ubnd", "so.tttt", "x1"] {
            assert!(valid_user_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Admin", "-x", "a b", "ä", &"a".repeat(65)] {
            assert!(valid_user_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_certificate_with_only_a_common_name_names_that_user() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, "editor");
        let c = p.self_signed(&key).unwrap();
        assert_eq!(identity_of_der(c.der()).unwrap(), CertIdentity::User("editor".into()));
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, "Not A User");
        let c = p.self_signed(&key).unwrap();
        assert!(identity_of_der(c.der()).is_err());
        assert!(identity_of_der_cached(c.der()).is_err(), "not remembered as valid");
        assert!(identity_of_der_cached(c.der()).is_err());
    }

    #[test]
    fn the_cached_identity_is_the_certificates_own() {
        // Many certificates, each asked twice, past the cache's bound:
        // every answer is the identity of exactly that certificate.
        let key = rcgen::KeyPair::generate().unwrap();
        let certs: Vec<_> = (0..CACHED_IDENTITIES + 10)
            .map(|i| {
                let mut p = rcgen::CertificateParams::default();
                p.distinguished_name = rcgen::DistinguishedName::new();
                p.distinguished_name.push(rcgen::DnType::CommonName, format!("u{i}"));
                (i, p.self_signed(&key).unwrap())
            })
            .collect();
        for _ in 0..2 {
            for (i, c) in &certs {
                assert_eq!(
                    identity_of_der_cached(c.der()).unwrap(),
                    CertIdentity::User(format!("u{i}"))
                );
            }
        }
    }
}
