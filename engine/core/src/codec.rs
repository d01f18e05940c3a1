//! The serialization codec: bincode 2 driven by serde.
//!
//! Upstream bincode is unmaintained (3.0.0 is a tombstone), so every use of
//! it lives here and nowhere else; swapping it means changing this file.
//!
//! Versioning rule: every type that is persisted or sent between nodes is an
//! `enum` whose variants are the format versions (`V1(..)`, `V2(..)`, …).
//! bincode writes the variant index first, so the version is the first
//! byte(s) of every encoding, and a value written by a newer release decodes
//! to [`CodecError::UnknownVersion`] instead of garbage.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest value the decoder accepts. Protects against corrupted length
/// prefixes that would otherwise allocate gigabytes.
pub const MAX_DECODE_BYTES: usize = 512 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed (a bug: our types always encode).
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: bincode::error::EncodeError,
    },
    /// The bytes are not a valid encoding of the expected type.
    #[error(
        "cannot decode {what} ({len} bytes): {source}; the data is corrupt or was written by an incompatible version of Sen"
    )]
    Decode {
        what: &'static str,
        len: usize,
        source: bincode::error::DecodeError,
    },
    /// Bytes remained after decoding: the data is corrupt.
    #[error("cannot decode {what}: {extra} trailing bytes after a complete value; the data is corrupt")]
    Trailing { what: &'static str, extra: usize },
    /// The format version is newer than this build understands.
    #[error(
        "{what} uses format version {found}, but this build of Sen understands versions up to {supported}; upgrade Sen to read it"
    )]
    UnknownVersion {
        what: &'static str,
        found: u32,
        supported: u32,
    },
}

/// Encode `value`.
pub fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|source| CodecError::Encode { what, source })
}

/// Encode `value` into a writer (a hasher, a file) without an
/// intermediate buffer.
pub fn encode_into<T: Serialize + ?Sized, W: std::io::Write>(
    what: &'static str,
    value: &T,
    writer: &mut W,
) -> Result<usize, CodecError> {
    bincode::serde::encode_into_std_write(value, writer, config()).map_err(|source| CodecError::Encode { what, source })
}

/// Decode a whole buffer as a `T`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config()).map_err(|source| CodecError::Decode {
        what,
        len: bytes.len(),
        source,
    })?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            what,
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Decode a versioned enum (see the module docs), turning an unknown
/// variant index into [`CodecError::UnknownVersion`].
///
/// `supported` is the number of versions this build knows (the highest
/// variant index plus one).
pub fn decode_versioned<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    supported: u32,
) -> Result<T, CodecError> {
    match decode(what, bytes) {
        Ok(v) => Ok(v),
        Err(err) => {
            // The variant index is a bincode varint at the start of the buffer.
            let found: Result<(u32, usize), _> = bincode::decode_from_slice(bytes, bincode::config::standard());
            match found {
                Ok((found, _)) if found >= supported => Err(CodecError::UnknownVersion {
                    what,
                    found: found.saturating_add(1),
                    supported,
                }),
                _ => Err(err),
            }
        }
    }
}

/// Encode `value` as version 1 of a versioned envelope (`V1(value)`), for
/// types that are not themselves versioned enums.
pub fn encode_v1<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    #[derive(Serialize)]
    enum Envelope<'a, T> {
        V1(&'a T),
    }
    encode(what, &Envelope::V1(value))
}

/// Decode what [`encode_v1`] wrote; a newer envelope version is refused
/// with [`CodecError::UnknownVersion`].
pub fn decode_v1<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    #[derive(serde::Deserialize)]
    enum Envelope<T> {
        V1(T),
    }
    let Envelope::V1(v) = decode_versioned::<Envelope<T>>(what, bytes, 1)?;
    Ok(v)
}

#[cfg(test)]
mod tests;
