//! Operator workflows on a live cluster, driven through the client
//! (`sen-client`): what the `sen` command does beyond one RPC, kept in a
//! library so it is tested in-process and the CLI only parses arguments,
//! prints and exits.
//!
//! - [`drill`]: failover drills — probes through every node, the injected
//!   fault, the timeline, RTO/RPO and the stored report (with its
//!   Vietnamese and English rendering).
//! - [`restore_drill`]: restore a snapshot into a scratch data directory
//!   and prove it equals the live cluster's state at that Raft index.
//! - [`live`]: the live cluster as a restore target
//!   (`sen_backup::restore::LiveCluster` over the client).
//! - [`backup`]: which node takes a backup, and asking it to;
//!   [`verification`]: the results of checks and restore drills, kept in
//!   the cluster for the reports.
//! - [`report`]: measured availability from the probes, with outages and
//!   their incidents.
//! - [`readers`]: readers and access speed per site (R4); [`growth`]:
//!   growth and the capacity forecast (R8).
//! - [`monthly`]: the monthly report on management and operation (R11);
//!   [`dashboard`]: the page every node serves from the same figures.
//! - [`incident_text`]: the incident log for people, in English or
//!   Vietnamese.
//! - [`recover`]: the evidence for (and the act of) a forced recovery
//!   after losing a majority.

pub mod backup;
pub mod dashboard;
pub mod drill;
pub mod growth;
pub mod i18n;
pub mod incident_text;
pub mod live;
pub mod monthly;
pub mod readers;
pub mod recover;
pub mod report;
pub mod restore_drill;
pub mod verification;

use sen_backup::RepoError;
use sen_client::ClientError;

/// An operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The cluster answered with an error (or could not be reached).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The backup repository failed (damage, wrong password, I/O).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The request cannot be carried out as asked: the message says why
    /// and what to do.
    #[error("{0}")]
    Usage(String),
    /// A local file or directory could not be used.
    #[error("{0}")]
    Io(String),
}

impl OpsError {
    /// Damaged or inconsistent backup data (the CLI exits with 3).
    pub fn is_corruption(&self) -> bool {
        matches!(self, OpsError::Repo(RepoError::Corrupt(_)))
    }
}

impl From<String> for OpsError {
    fn from(s: String) -> Self {
        OpsError::Usage(s)
    }
}

impl From<&str> for OpsError {
    fn from(s: &str) -> Self {
        OpsError::Usage(s.to_owned())
    }
}
