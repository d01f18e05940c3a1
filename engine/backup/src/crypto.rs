//! Repository keys and encryption.
//!
//! - A repository with a password has a random 64-byte master key: 32 bytes
//!   for XChaCha20-Poly1305 (every object and every blob is sealed with a
//!   random 24-byte nonce) and 32 bytes that key the blob ids
//!   (`blake3::keyed_hash(id_key, chunk_id)`), so the repository does not
//!   reveal which content it holds to someone who knows a file's hash.
//! - The master key is stored in the repository's `config`, wrapped with a
//!   key derived from the password by Argon2id (parameters and salt stored
//!   next to it). A wrong password fails to unwrap: nothing is written.
//! - A repository without a password stores blobs and objects in the clear,
//!   and blob ids are the chunk ids (blake3 of the plaintext). Integrity is
//!   still checked everywhere: every object's name is the blake3 of its
//!   bytes and every blob's plaintext must hash to its chunk id.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::RepoError;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

/// Most memory a repository's key derivation may ask for: 1 GiB, 16× what
/// Sen writes ([`KdfParams::new_random`]).
pub const MAX_KDF_MEMORY_KIB: u32 = 1024 * 1024;
/// Most Argon2id passes (Sen writes 3).
pub const MAX_KDF_PASSES: u32 = 64;
/// Most Argon2id lanes (Sen writes 1).
pub const MAX_KDF_LANES: u32 = 16;

/// Argon2id parameters, stored in the repository config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: String,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: String,
}

/// The password held in a password file: its first line, without the
/// line ending (`\n` or `\r\n`).
pub fn password_line(text: &[u8]) -> &[u8] {
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl KdfParams {
    /// OWASP's first Argon2id recommendation (19 MiB, 2 passes) is the floor;
    /// we use 64 MiB and 3 passes (≈0.3–0.5 s on a 2-core VM).
    pub fn new_random() -> Self {
        Self {
            algorithm: "argon2id".into(),
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
            salt: hex::encode(rand::random::<[u8; 16]>()),
        }
    }

    /// Refuse costs beyond [`MAX_KDF_MEMORY_KIB`], [`MAX_KDF_PASSES`] and
    /// [`MAX_KDF_LANES`] before hashing: the repository config is read
    /// before anything is authenticated, so a damaged or hostile one must
    /// not be able to make us allocate gigabytes or hash for hours.
    pub fn check_limits(&self) -> Result<(), RepoError> {
        if self.m_cost_kib > MAX_KDF_MEMORY_KIB {
            return Err(RepoError::Corrupt(format!(
                "repository config asks for {} MiB of memory to derive the key; the limit is {} MiB \
                 (the config is damaged or was not written by Sen)",
                self.m_cost_kib / 1024,
                MAX_KDF_MEMORY_KIB / 1024
            )));
        }
        if self.t_cost > MAX_KDF_PASSES {
            return Err(RepoError::Corrupt(format!(
                "repository config asks for {} Argon2id passes; the limit is {MAX_KDF_PASSES} \
                 (the config is damaged or was not written by Sen)",
                self.t_cost
            )));
        }
        if self.p_cost == 0 || self.p_cost > MAX_KDF_LANES {
            return Err(RepoError::Corrupt(format!(
                "repository config asks for {} Argon2id lanes; Sen accepts 1 to {MAX_KDF_LANES} \
                 (the config is damaged or was not written by Sen)",
                self.p_cost
            )));
        }
        Ok(())
    }

    fn derive(&self, password: &[u8]) -> Result<Zeroizing<[u8; 32]>, RepoError> {
        if self.algorithm != "argon2id" {
            return Err(RepoError::Format(format!(
                "the repository key is protected with {:?}, which this build does not know",
                self.algorithm
            )));
        }
        self.check_limits()?;
        let salt = hex::decode(&self.salt).map_err(|_| RepoError::Format("config: salt is not hex".into()))?;
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| RepoError::Format(format!("config: invalid Argon2id parameters: {e}")))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, &salt, out.as_mut())
            .map_err(|e| RepoError::Format(format!("cannot derive the key from the password: {e}")))?;
        Ok(out)
    }
}

/// The wrapped master key, as stored in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub cipher: String,
    pub kdf: KdfParams,
    /// nonce || ciphertext || tag of the 64-byte master key, hex.
    pub wrapped_key: String,
}

/// What seals objects and names blobs.
#[derive(Clone)]
pub enum Keys {
    /// No password: plaintext objects, blob id = chunk id.
    None,
    Encrypted {
        cipher: Box<XChaCha20Poly1305>,
        id_key: Zeroizing<[u8; 32]>,
    },
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_encrypted() {
            "Keys::Encrypted"
        } else {
            "Keys::None"
        })
    }
}

const WRAP_AAD: &[u8] = b"sen-repo-master-key-v1";

impl Keys {
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Keys::Encrypted { .. })
    }

    /// A fresh random master key, wrapped with `password`.
    pub fn generate(password: &[u8], repo_id: &str) -> Result<(Self, KeyInfo), RepoError> {
        if password.is_empty() {
            return Err(RepoError::Usage(
                "the password is empty; give a non-empty password file".into(),
            ));
        }
        let master = Zeroizing::new(rand::random::<[u8; 64]>());
        let kdf = KdfParams::new_random();
        let kek = kdf.derive(password)?;
        let wrapper = XChaCha20Poly1305::new(kek.as_ref().into());
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = [WRAP_AAD, repo_id.as_bytes()].concat();
        let ct = wrapper
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: master.as_ref(),
                    aad: &aad,
                },
            )
            .map_err(|_| RepoError::Format("cannot wrap the master key".into()))?;
        let info = KeyInfo {
            cipher: "xchacha20poly1305".into(),
            kdf,
            wrapped_key: hex::encode([nonce.as_slice(), &ct].concat()),
        };
        Ok((Self::from_master(&master), info))
    }

    /// Unwrap the master key with `password`.
    pub fn unlock(info: &KeyInfo, password: &[u8], repo_id: &str) -> Result<Self, RepoError> {
        if info.cipher != "xchacha20poly1305" {
            return Err(RepoError::Format(format!(
                "the repository uses cipher {:?}, which this build does not know",
                info.cipher
            )));
        }
        let kek = info.kdf.derive(password)?;
        let wrapped =
            hex::decode(&info.wrapped_key).map_err(|_| RepoError::Format("config: wrapped key is not hex".into()))?;
        if wrapped.len() != NONCE_LEN + 64 + TAG_LEN {
            return Err(RepoError::Format("config: wrapped key has the wrong length".into()));
        }
        let aad = [WRAP_AAD, repo_id.as_bytes()].concat();
        let master = XChaCha20Poly1305::new(kek.as_ref().into())
            .decrypt(
                XNonce::from_slice(&wrapped[..NONCE_LEN]),
                Payload {
                    msg: &wrapped[NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| RepoError::WrongPassword)?;
        let master: Zeroizing<Vec<u8>> = Zeroizing::new(master);
        let mut m = Zeroizing::new([0u8; 64]);
        m.copy_from_slice(&master);
        Ok(Self::from_master(&m))
    }

    fn from_master(master: &[u8; 64]) -> Self {
        let mut id_key = Zeroizing::new([0u8; 32]);
        id_key.copy_from_slice(&master[32..]);
        let enc: &[u8; 32] = master[..32].try_into().unwrap_or(&[0u8; 32]);
        Keys::Encrypted {
            cipher: Box::new(XChaCha20Poly1305::new(enc.into())),
            id_key,
        }
    }

    /// The repository's name for the chunk whose plaintext hashes to `chunk`.
    pub fn blob_id(&self, chunk: &[u8; 32]) -> [u8; 32] {
        match self {
            Keys::None => *chunk,
            Keys::Encrypted { id_key, .. } => *blake3::keyed_hash(id_key, chunk).as_bytes(),
        }
    }

    /// Seal `plain` (bound to `aad`): nonce || ciphertext || tag, or the
    /// plaintext itself without a password.
    pub fn seal(&self, plain: Vec<u8>, aad: &[u8]) -> Result<Vec<u8>, RepoError> {
        match self {
            Keys::None => Ok(plain),
            Keys::Encrypted { cipher, .. } => {
                let nonce: [u8; NONCE_LEN] = rand::random();
                let ct = cipher
                    .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad })
                    .map_err(|_| RepoError::Format("encryption failed".into()))?;
                let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
                Ok(out)
            }
        }
    }

    /// Open what [`Keys::seal`] produced; `what` names it in errors.
    pub fn open(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, RepoError> {
        match self {
            Keys::None => Ok(sealed.to_vec()),
            Keys::Encrypted { cipher, .. } => {
                if sealed.len() < NONCE_LEN + TAG_LEN {
                    return Err(RepoError::Corrupt(format!("{what}: too short to be encrypted data")));
                }
                cipher
                    .decrypt(
                        XNonce::from_slice(&sealed[..NONCE_LEN]),
                        Payload {
                            msg: &sealed[NONCE_LEN..],
                            aad,
                        },
                    )
                    .map_err(|_| RepoError::Corrupt(format!("{what}: authentication failed (damaged or tampered)")))
            }
        }
    }

    /// Bytes sealing adds.
    pub fn overhead(&self) -> usize {
        if self.is_encrypted() { NONCE_LEN + TAG_LEN } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unlock_seal_open() {
        let (keys, info) = Keys::generate(b"correct horse", "repo1").expect("generate");
        let again = Keys::unlock(&info, b"correct horse", "repo1").expect("unlock");
        let sealed = keys.seal(b"hello".to_vec(), b"aad").expect("seal");
        assert_ne!(&sealed[NONCE_LEN..NONCE_LEN + 5], b"hello");
        assert_eq!(again.open(&sealed, b"aad", "x").expect("open"), b"hello");
        assert!(again.open(&sealed, b"other", "x").is_err(), "aad is bound");
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(again.open(&flipped, b"aad", "x").is_err(), "bit flip is detected");
        assert!(matches!(
            Keys::unlock(&info, b"wrong", "repo1"),
            Err(RepoError::WrongPassword)
        ));
        assert!(matches!(
            Keys::unlock(&info, b"correct horse", "repo2"),
            Err(RepoError::WrongPassword)
        ));
        assert_eq!(keys.blob_id(&[7; 32]), again.blob_id(&[7; 32]));
        assert_ne!(keys.blob_id(&[7; 32]), [7; 32], "ids are keyed");
        assert_eq!(Keys::None.blob_id(&[7; 32]), [7; 32]);
    }
}
