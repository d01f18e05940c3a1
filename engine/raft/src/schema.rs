//! The layout of the replicated state, owned here and nowhere else.
//!
//! Every crate that reads or writes the state by table and key — the
//! RocksDB store (`sen-store`), the backup writer and readers
//! (`sen-backup`), the node's control plane and the CLI — imports its
//! names, key codecs and record types from this module, so a renamed table
//! or a changed key layout cannot drift between the store and a backup
//! reader.
//!
//! - [`tables`]: the tables (RocksDB column families) of the state, which
//!   of them a backup holds, and their key codecs (`db\0key`,
//!   `site\0path`, big-endian time indexes).
//! - [`records`]: the values stored in those tables (bincode, versioned
//!   envelope `V1`), each with its name for error messages.
//! - [`system`]: the control plane kept in the cluster (`sen-system`):
//!   backup schedules and runs, incidents, drills, drains and planned
//!   transfers, as typed JSON records that carry a `version`.
//! - [`snapshot`]: Raft snapshots: the manifest of a snapshot directory and
//!   the frames of a transfer between nodes.
//!
//! Formats and their version markers are listed in docs/formats.md; each
//! record has a golden-bytes test here.

pub mod records;
pub mod snapshot;
pub mod system;
pub mod tables;

pub use records::{
    ChunkMeta, CurrentDeployment, DbStats, DedupRecord, DeploymentInfo, FileRecord, KvRecord, Record, SiteRecord,
};
