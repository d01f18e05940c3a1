//! openraft's `RaftStateMachine` over [`StateDb`].
//!
//! Applying runs on the blocking thread pool (RocksDB calls block), one
//! ready batch at a time: the whole batch is written in one RocksDB write,
//! and only then are the clients' responders completed, so a client that
//! saw its write acknowledged reads it back from this node.

use std::io;
use std::sync::Arc;

use futures::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};

/// openraft's snapshot type for Sen: metadata plus a [`SnapshotHandle`].
pub type RaftSnapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotHandle>;
use openraft::OptionalSend;
use sen_raft::{LogId, SnapshotMeta, StoredMembership, TypeConfig};

use crate::StoreError;
use crate::snapshot::SnapshotHandle;
use crate::state::StateDb;

/// Largest number of entries applied in one RocksDB write.
const MAX_APPLY_BATCH: usize = 1024;

/// The state machine handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    state: Arc<StateDb>,
    stages: crate::Stages,
}

impl StateMachine {
    pub fn new(state: Arc<StateDb>) -> Result<Self, StoreError> {
        Ok(Self {
            state,
            stages: crate::Stages::default(),
        })
    }

    /// Report how long each applied batch takes to `stages`.
    pub fn with_stages(mut self, stages: crate::Stages) -> Self {
        self.stages = stages;
        self
    }

    /// The state DB, for reads.
    pub fn state(&self) -> &Arc<StateDb> {
        &self.state
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("state machine task failed: {e}")))?
        .map_err(io::Error::from)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotHandle;

    async fn build_snapshot(&mut self) -> Result<RaftSnapshot, io::Error> {
        let state = self.state.clone();
        let handle = blocking(move || state.build_snapshot()).await?;
        Ok(Snapshot {
            meta: handle.manifest().meta.clone(),
            snapshot: handle,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotHandle;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let a = self.state.applied();
        Ok((a.log_id, a.membership))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut chunks = entries.ready_chunks(MAX_APPLY_BATCH);
        while let Some(chunk) = chunks.next().await {
            let mut batch = Vec::with_capacity(chunk.len());
            let mut responders = Vec::with_capacity(chunk.len());
            for item in chunk {
                let (entry, responder) = item?;
                batch.push(entry);
                responders.push(responder);
            }
            let state = self.state.clone();
            let started = std::time::Instant::now();
            let responses = blocking(move || state.apply_entries(&batch)).await?;
            self.stages.observe(crate::Stage::Apply, started.elapsed());
            for (responder, response) in responders.into_iter().zip(responses) {
                if let Some(r) = responder {
                    r.send(response);
                }
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotHandle) -> Result<(), io::Error> {
        let state = self.state.clone();
        let meta = meta.clone();
        blocking(move || state.install_snapshot(&meta, &snapshot)).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<RaftSnapshot>, io::Error> {
        Ok(self.state.current_snapshot().map(|h| Snapshot {
            meta: h.manifest().meta.clone(),
            snapshot: h,
        }))
    }
}
