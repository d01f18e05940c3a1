//! Certificates for a cluster, made with rcgen (no OpenSSL).
//!
//! `DIR/ca.pem` + `DIR/ca.key`: the cluster CA (10 years by default).
//! `DIR/node<N>.pem` + `.key`: node N's certificate, used as server *and*
//! as client (peers require it), SANs: the given hosts, `127.0.0.1`,
//! `localhost`, and the URI `sen://node/<N>` that names the node.
//! `DIR/<user>.pem` + `.key`: a user's client certificate: CN = the user
//! name, URI `sen://user/<name>`, client authentication only.
//! Keys are written 0600; nothing is ever overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::SecurityError;
use crate::identity::{node_uri, user_uri, valid_user_name};

/// Default validity of the CA.
pub const CA_DAYS: u32 = 3650;
/// Default validity of node and user certificates.
pub const LEAF_DAYS: u32 = 365;

/// Paths of a certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn pair(dir: &Path, stem: &str) -> Pair {
    Pair {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    }
}

/// The CA's files in `dir`.
pub fn ca_files(dir: &Path) -> Pair {
    pair(dir, "ca")
}

/// Node `id`'s files in `dir`.
pub fn node_files(dir: &Path, id: u64) -> Pair {
    pair(dir, &format!("node{id}"))
}

/// User `name`'s files in `dir`.
pub fn user_files(dir: &Path, name: &str) -> Pair {
    pair(dir, name)
}

fn rc(what: &str) -> impl FnOnce(rcgen::Error) -> SecurityError + '_ {
    move |e| SecurityError::Invalid(format!("{what}: {e}"))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> SecurityError {
    move |e| SecurityError::Io(format!("{what}: {e}"))
}

/// Write `data` to a new file (never overwrite), with `mode`.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), SecurityError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            SecurityError::Io(if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{} already exists: certificates are never overwritten (remove it first to replace it)",
                    path.display()
                )
            } else {
                format!("create {}: {e}", path.display())
            })
        })?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("write {}", path.display())))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that are behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// The CA of `dir`, to sign with.
fn load_ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), SecurityError> {
    let f = ca_files(dir);
    let cert = std::fs::read_to_string(&f.cert).map_err(io(format!(
        "read the CA certificate {} (make one with `sen certs init`)",
        f.cert.display()
    )))?;
    let key = std::fs::read_to_string(&f.key).map_err(io(format!("read the CA key {}", f.key.display())))?;
    let key = KeyPair::from_pem(&key).map_err(rc("the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(rc("the CA certificate"))?;
    Ok((issuer, cert))
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct Made {
    pub ca: Pair,
    pub nodes: Vec<(u64, Pair)>,
    pub users: Vec<(String, Pair)>,
}

/// A new cluster CA in `dir`, certificates for nodes `1..=nodes` (valid for
/// `hosts` too) and one for user `admin`.
pub fn init(dir: &Path, nodes: u64, hosts: &[String], days: u32) -> Result<Made, SecurityError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let f = ca_files(dir);
    if f.cert.exists() || f.key.exists() {
        return Err(SecurityError::Invalid(format!(
            "{} already holds a CA: add certificates with `sen certs node` and `sen certs client`",
            dir.display()
        )));
    }
    let key = KeyPair::generate().map_err(rc("generate the CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "Sen cluster CA");
    params.distinguished_name.push(DnType::OrganizationName, "Sen");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, CA_DAYS.max(days));
    let cert = params.self_signed(&key).map_err(rc("sign the CA certificate"))?;
    write_new(&f.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&f.cert, cert.pem().as_bytes(), 0o644)?;
    let mut made = Made {
        ca: f,
        nodes: Vec::new(),
        users: Vec::new(),
    };
    for id in 1..=nodes {
        made.nodes.push((id, node(dir, id, hosts, days)?));
    }
    made.users.push(("admin".into(), client(dir, "admin", days)?));
    Ok(made)
}

/// A certificate for node `id`, signed by the CA in `dir`.
pub fn node(dir: &Path, id: u64, hosts: &[String], days: u32) -> Result<Pair, SecurityError> {
    if id == 0 {
        return Err(SecurityError::Invalid("node ids start at 1".into()));
    }
    let (issuer, _) = load_ca(dir)?;
    let mut names: Vec<String> = hosts.to_vec();
    for default in [crate::identity::node_dns_name(id).as_str(), "127.0.0.1", "localhost"] {
        if !names.iter().any(|h| h == default) {
            names.push(default.into());
        }
    }
    let mut params = CertificateParams::new(names).map_err(rc("a host name"))?;
    params
        .subject_alt_names
        .push(SanType::URI(node_uri(id).try_into().map_err(rc("the node URI"))?));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("sen node {id}"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sign_and_write(params, &issuer, days, node_files(dir, id), "sign the node certificate")
}

/// A client certificate for user `name`, signed by the CA in `dir`.
pub fn client(dir: &Path, name: &str, days: u32) -> Result<Pair, SecurityError> {
    valid_user_name(name).map_err(SecurityError::Invalid)?;
    let node_like = name
        .strip_prefix("node")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if name == "ca" || node_like {
        return Err(SecurityError::Invalid(format!(
            "{name:?} names the CA's or a node's files in {}: choose another user name",
            dir.display()
        )));
    }
    let (issuer, _) = load_ca(dir)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(user_uri(name).try_into().map_err(rc("the user URI"))?)];
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sign_and_write(
        params,
        &issuer,
        days,
        user_files(dir, name),
        "sign the client certificate",
    )
}

/// Give `params` a new key and `days` of validity, sign it with the CA's
/// `issuer`, and write the key (0600) and the certificate to `p`.
fn sign_and_write(
    mut params: CertificateParams,
    issuer: &Issuer<'static, KeyPair>,
    days: u32,
    p: Pair,
    what: &'static str,
) -> Result<Pair, SecurityError> {
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(rc("generate a key"))?;
    let cert = params.signed_by(&key, issuer).map_err(rc(what))?;
    write_new(&p.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&p.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::identity::{CertIdentity, identity_of_pem};

    #[test]
    fn init_makes_a_ca_nodes_and_an_admin_with_their_identities() {
        let dir = tempfile::tempdir().unwrap();
        let made = init(dir.path(), 3, &["sen1.example".into(), "10.0.0.5".into()], 30).unwrap();
        assert_eq!(made.nodes.len(), 3);
        for (id, p) in &made.nodes {
            let pem = std::fs::read(&p.cert).unwrap();
            assert_eq!(identity_of_pem(&pem).unwrap(), CertIdentity::Node(*id));
            let mode = std::fs::metadata(&p.key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.key.display());
        }
        let admin = std::fs::read(&made.users[0].1.cert).unwrap();
        assert_eq!(identity_of_pem(&admin).unwrap(), CertIdentity::User("admin".into()));
        // Never twice, never over an existing file.
        assert!(
            init(dir.path(), 1, &[], 30)
                .unwrap_err()
                .to_string()
                .contains("already holds a CA")
        );
        let e = node(dir.path(), 2, &[], 30).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        // More later.
        node(dir.path(), 4, &["10.0.0.9".into()], 30).unwrap();
        client(dir.path(), "vp-ubnd", 30).unwrap();
        assert!(client(dir.path(), "Bad Name", 30).is_err());
        let other = tempfile::tempdir().unwrap();
        assert!(
            node(other.path(), 1, &[], 30)
                .unwrap_err()
                .to_string()
                .contains("sen certs init")
        );
    }
}
