//! Bearer tokens: `sen_<id>_<secret>`, with a 16-hex-digit id (public: it
//! names the token in listings and the audit log) and a 64-hex-digit
//! secret (32 random bytes). The cluster stores only
//! `blake3::keyed_hash(cluster key, secret)`; a stored hash is not a token,
//! and comparing goes through `blake3::Hash`'s constant-time equality.

use std::fmt;

/// A token as shown once to its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret {
    pub id: String,
    secret: [u8; 32],
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSecret({}, <secret>)", self.id)
    }
}

impl TokenSecret {
    /// A new random token.
    pub fn generate() -> Self {
        Self {
            id: hex::encode(rand::random::<[u8; 8]>()),
            secret: rand::random(),
        }
    }

    /// The full token, to hand to its owner once.
    pub fn reveal(&self) -> String {
        format!("sen_{}_{}", self.id, hex::encode(self.secret))
    }

    /// Parse a token (surrounding whitespace allowed, as read from a file).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || "not a Sen token (expected sen_<16 hex digits>_<64 hex digits>)".to_owned();
        let s = s.trim();
        let rest = s.strip_prefix("sen_").ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let secret: [u8; 32] = hex::decode(secret)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(bad)?;
        Ok(Self {
            id: id.to_ascii_lowercase(),
            secret,
        })
    }

    /// What the cluster stores: the secret's keyed hash.
    pub fn hash(&self, key: &[u8; 32]) -> [u8; 32] {
        *blake3::keyed_hash(key, &self.secret).as_bytes()
    }

    /// Whether this token's secret hashes to `stored` (constant time).
    pub fn matches(&self, key: &[u8; 32], stored: &[u8; 32]) -> bool {
        blake3::keyed_hash(key, &self.secret) == blake3::Hash::from(*stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_only_their_secret_matches() {
        let key = [7u8; 32];
        let t = TokenSecret::generate();
        let text = t.reveal();
        assert!(text.starts_with("sen_") && text.len() == 4 + 16 + 1 + 64);
        let back = TokenSecret::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(back, t);
        let stored = t.hash(&key);
        assert!(back.matches(&key, &stored));
        assert!(!TokenSecret::generate().matches(&key, &stored));
        assert!(!back.matches(&[8u8; 32], &stored), "another cluster key");
        // The stored hash used as a secret does not work.
        let forged = TokenSecret::parse(&format!("sen_{}_{}", t.id, hex::encode(stored))).unwrap();
        assert!(!forged.matches(&key, &stored));
        assert!(
            !format!("{t:?}").contains(&text[21..]),
            "the secret never appears in Debug"
        );
        for bad in [
            "",
            "sen_",
            "sen_abc_def",
            "xyz_0123456789abcdef_00",
            &text[..text.len() - 1],
        ] {
            assert!(TokenSecret::parse(bad).is_err(), "{bad}");
        }
    }
}
