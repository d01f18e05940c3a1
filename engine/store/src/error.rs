use std::io;

use sen_core::codec::CodecError;

/// Opening or using the stores failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("RocksDB failed to {what}: {source}")]
    Rocks {
        what: String,
        #[source]
        source: rocksdb::Error,
    },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn rocks(what: impl Into<String>, source: rocksdb::Error) -> Self {
        Self::Rocks {
            what: what.into(),
            source,
        }
    }
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io { what, source } => io::Error::new(source.kind(), format!("{what}: {source}")),
            other => io::Error::other(other.to_string()),
        }
    }
}
