//! Sen's backups: repository format v1 (docs/backup-format.md), its
//! encryption, the object stores that hold it, and the operations on it.
//!
//! - [`store`]: the [`ObjectStore`] trait, the local-directory backend and
//!   the conformance suite every backend passes (S3 lives in `sen-backup-s3`).
//! - [`crypto`]: Argon2id-wrapped master key, XChaCha20-Poly1305, keyed ids.
//! - [`format`]: the stored types and byte layouts.
//! - [`repo`]: an open repository, the blob index, the pack writer.
//! - [`backup`]: a backup of a [`backup::StateSource`] (a consistent view of
//!   a node's state at one Raft index).
//! - [`read`]: snapshots, table streams and content chunks read back.
//! - [`restore`]: a whole cluster state, a site or a database back into a
//!   cluster (fresh or live), and the difference between two snapshots.
//! - [`check`], [`prune`]: verification and retention.
//! - [`archive`]: segments of the continuously shipped Raft log, and the
//!   chain a point-in-time restore replays.

pub mod archive;
pub mod backup;
pub mod check;
pub mod crypto;
pub mod format;
pub mod location;
pub mod prune;
pub mod read;
pub mod repo;
pub mod restore;
pub mod store;

pub use format::{Snapshot, SnapshotStats};
pub use repo::{InitOptions, Repo};
pub use store::{LocalStore, ObjectError, ObjectInfo, ObjectStore, RetryClass};

/// A repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] ObjectError),
    /// The password does not unlock the repository key.
    #[error("wrong password: it does not unlock this repository's key (nothing was read or written)")]
    WrongPassword,
    /// Stored data is damaged or missing.
    #[error("repository damaged: {0}")]
    Corrupt(String),
    /// A format or version this build cannot handle.
    #[error("{0}")]
    Format(String),
    /// The request itself is wrong (what to do is in the message).
    #[error("{0}")]
    Usage(String),
    /// The state being backed up could not be read.
    #[error("reading the cluster state failed: {0}")]
    Source(String),
    /// Writing a restored state failed (a data directory, or the live
    /// cluster refused a change): the message says which and why.
    #[error("{0}")]
    Target(String),
}

#[cfg(test)]
mod tests;
