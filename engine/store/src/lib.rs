//! Sen's durable storage: openraft's log store and state machine on RocksDB.
//! This is the only crate that links RocksDB.
//!
//! A node's data directory holds two RocksDB instances, split like TiKV's
//! raftdb/kvdb so each can be tuned and snapshotted on its own:
//!
//! ```text
//! DATA_DIR/
//!   raft/            log DB: the Raft log, vote, committed id, node identity
//!   state/CURRENT    names the live state generation
//!   state/gen-N/     state DB: key-value data, request ids, applied log id
//!   snapshots/S/     Raft snapshots: RocksDB checkpoints of the state DB
//!   incoming/        snapshots being received from the leader
//! ```
//!
//! Durability rules (see docs/ARCHITECTURE.md, "Invariants"):
//! - a vote is fsynced before [`LogStore::save_vote`] returns;
//! - appended entries are fsynced (group commit on a dedicated thread)
//!   before openraft's `IOFlushed` callback fires;
//! - the state DB is written without fsync: after a crash it is behind the
//!   log, and openraft re-applies the committed entries. Everything up to the
//!   last snapshot is durable because building a snapshot flushes it.
//!
//! Modules: [`log_store`] (RaftLogStorage), [`state`] (the state DB, its
//! generations and read API), [`state_machine`] (RaftStateMachine),
//! [`snapshot`] (checkpoint-based snapshots and their transfer format).

pub mod archive;
pub mod backup;
mod error;
mod format;
pub mod log_store;
mod rocks;
pub mod snapshot;
pub mod state;
pub mod state_machine;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use error::StoreError;
pub use format::NodeIdentity;
/// A Raft log entry's stored encoding (what the continuous archive ships).
pub use format::{dec_entry as decode_entry, enc_entry as encode_entry};
pub use log_store::LogStore;
pub use rocks::{Memory, MemoryUsage};
pub use snapshot::{IncomingSnapshot, SnapshotFile, SnapshotHandle};
pub use state::{DbInfo, FileListing, NamePage, ScanPage, StateDb};
pub use state_machine::{RaftSnapshot, StateMachine};

/// A step of the write path whose duration the stores report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// From an append reaching the log store to its entries being fsynced
    /// (the wait for the group commit included).
    LogAppend,
    /// One fsync of the log's WAL (covering every append queued for it).
    LogFsync,
    /// Applying one batch of committed entries to the state DB.
    Apply,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::LogAppend => "log-append",
            Stage::LogFsync => "log-fsync",
            Stage::Apply => "apply",
        }
    }
}

/// Where the stores report how long their steps take (the node turns the
/// reports into `sen_raft_stage_seconds`); by default nowhere.
#[derive(Clone, Default)]
pub struct Stages(Option<Arc<dyn Fn(Stage, Duration) + Send + Sync>>);

impl Stages {
    pub fn new(observe: impl Fn(Stage, Duration) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(observe)))
    }

    pub fn observe(&self, stage: Stage, took: Duration) {
        if let Some(f) = &self.0 {
            f(stage, took);
        }
    }
}

impl std::fmt::Debug for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Stages(observed)"
        } else {
            "Stages(none)"
        })
    }
}

/// Tuning of the stores (from the node's `[storage]` configuration).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest total size of entries returned by one log read, so one
    /// AppendEntries stays bounded (at least one entry is always returned).
    pub max_append_bytes: usize,
    /// RocksDB memtable size for the state DB.
    pub state_write_buffer_bytes: usize,
    /// The memory both DBs share (memtables and block cache), see
    /// [`Memory`]. Clones share it.
    pub memory: Memory,
    /// Where the durations of appends, fsyncs and applies go.
    pub stages: Stages,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_append_bytes: 4 * 1024 * 1024,
            state_write_buffer_bytes: 64 * 1024 * 1024,
            memory: Memory::new(256 * 1024 * 1024),
            stages: Stages::default(),
        }
    }
}

/// Both stores of one node, opened from its data directory.
pub struct Store {
    pub log: LogStore,
    pub state_machine: StateMachine,
    pub state: Arc<StateDb>,
}

impl Store {
    /// Open (creating if needed) the stores under `data_dir`.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::io(format!("create data directory {}", data_dir.display()), e))?;
        let log = LogStore::open(&data_dir.join("raft"), &opts)?;
        let state = Arc::new(StateDb::open(data_dir, &opts)?);
        check_log_covers_state(&log, &state, data_dir)?;
        let state_machine = StateMachine::new(state.clone())?.with_stages(opts.stages.clone());
        Ok(Self {
            log,
            state_machine,
            state,
        })
    }
}

/// Refuse to start when the Raft log no longer holds entries the state has
/// applied. Applied entries were committed and this node acknowledged them;
/// a log that lost them (a truncated or corrupted WAL tail, a disk that lied
/// about fsync) could make this node vote for a candidate missing committed
/// writes. Such a node must be rebuilt, not restarted.
fn check_log_covers_state(log: &LogStore, state: &StateDb, data_dir: &Path) -> Result<(), StoreError> {
    let (last, purged) = log.last_and_purged_index()?;
    let floor = last.max(purged).max(state.snapshot_installed_index()?);
    let applied = state.applied_index();
    if applied > floor {
        return Err(StoreError::Invalid(format!(
            "the Raft log in {} ends at entry {last} but this node has already applied entry {applied}: \
             the log lost entries this node acknowledged (a truncated or corrupted write-ahead log, or a disk that ignored fsync). \
             Do not restart it as it is: remove it with `sen cluster remove-node --id <this node>`, wipe {}, and add it back with a new id",
            data_dir.join("raft").display(),
            data_dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
