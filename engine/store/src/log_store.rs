//! The Raft log on RocksDB, with group commit.
//!
//! `append` writes entries to RocksDB without syncing and hands the
//! `IOFlushed` callback to a dedicated flusher thread. The thread drains
//! every callback queued so far, fsyncs the WAL once, then completes them
//! all: concurrent appends share one fsync. openraft does not wait for the
//! callback before issuing the next append, so the log keeps filling while
//! a sync is in progress.
//!
//! The newest entries are also kept in memory (`Tail`, up to
//! [`TAIL_BYTES`]): replication and apply read what was just appended, and
//! serving them from memory spares a RocksDB iterator and a decode per
//! read. The tail mirrors the log exactly: it changes only after the
//! RocksDB write it mirrors succeeded, and a read it cannot answer whole
//! goes to RocksDB.
//!
//! The vote and truncations are written with `sync = true`; purges and the
//! committed log id are not (losing them is harmless: purged entries
//! reappear, and the committed id is re-learned from the leader), and they
//! become durable with the next fsync of the shared WAL anyway.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Instant;

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use sen_core::{ClusterId, NodeId};
use sen_raft::{Entry, LogId, TypeConfig, Vote};

use crate::format::*;
use crate::rocks::{self, Kind, cf};
use crate::{StoreError, StoreOptions};

/// The Raft log store. Cheap to clone: clones share the DB.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<DB>,
    /// `None` only while dropping.
    flusher: Option<mpsc::Sender<(IOFlushed<TypeConfig>, Instant)>>,
    flusher_thread: Option<thread::JoinHandle<()>>,
    max_append_bytes: usize,
    /// Entries after this index are kept through purges (the continuous
    /// archive has not shipped them yet); `u64::MAX`: no archive.
    keep_after: AtomicU64,
    /// The newest entries, as written.
    tail: Mutex<Tail>,
}

/// Encoded bytes of entries the in-memory tail holds at most.
pub const TAIL_BYTES: usize = 8 << 20;
/// Entries the in-memory tail holds at most.
const TAIL_ENTRIES: usize = 16_384;

/// The last entries of the log, contiguous, each with its encoded size.
/// Invariant: when not empty, its last entry is the log's last entry and
/// every entry it holds is the one RocksDB holds at that index.
#[derive(Default)]
pub(crate) struct Tail {
    entries: VecDeque<(Entry, usize)>,
    pub(crate) bytes: usize,
}

impl Tail {
    pub(crate) fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries just written after the current last one (or, when they do
    /// not follow it, after a truncation or a purge: they start a new tail).
    fn extend(&mut self, written: Vec<(Entry, usize)>) {
        let follows = match (self.entries.back(), written.first()) {
            (Some((last, _)), Some((first, _))) => first.log_id.index == last.log_id.index + 1,
            _ => true,
        };
        if !follows {
            self.clear();
        }
        for (e, n) in written {
            self.bytes += n;
            self.entries.push_back((e, n));
        }
        while self.bytes > TAIL_BYTES || self.entries.len() > TAIL_ENTRIES {
            match self.entries.pop_front() {
                Some((_, n)) => self.bytes -= n,
                None => break,
            }
        }
    }

    /// Drop the entries from `from` on (a truncation).
    fn truncate_from(&mut self, from: u64) {
        while self.entries.back().is_some_and(|(e, _)| e.log_id.index >= from) {
            if let Some((_, n)) = self.entries.pop_back() {
                self.bytes -= n;
            }
        }
    }

    /// Drop the entries up to `upto` (a purge).
    fn purge_upto(&mut self, upto: u64) {
        while self.entries.front().is_some_and(|(e, _)| e.log_id.index <= upto) {
            if let Some((_, n)) = self.entries.pop_front() {
                self.bytes -= n;
            }
        }
    }

    /// Entries in `[start, end)` as [`LogStore::read_range`] returns them,
    /// if the tail holds all the log has there (`None`: ask RocksDB).
    fn read(&self, start: u64, end: u64, max_bytes: usize) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        if start < first {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (e, n) in self.entries.iter().skip((start - first) as usize) {
            if e.log_id.index >= end {
                break;
            }
            bytes += n;
            out.push(e.clone());
            if bytes >= max_bytes {
                break;
            }
        }
        Some(out)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has completed every
        // queued callback; joining it releases its handle on the DB, so the
        // DB is closed when this returns.
        self.flusher.take();
        if let Some(t) = self.flusher_thread.take() {
            let _ = t.join();
        }
    }
}

fn sync_opts() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

fn to_io(e: StoreError) -> io::Error {
    e.into()
}

fn rocks_io(what: &str, e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("RocksDB failed to {what}: {e}"))
}

impl LogStore {
    /// Open the log DB at `path`.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        let db = Arc::new(rocks::open(path, Kind::Log, &[CF_LOG], "raft log", &opts.memory)?);
        let (tx, rx) = mpsc::channel::<(IOFlushed<TypeConfig>, Instant)>();
        let flush_db = db.clone();
        let stages = opts.stages.clone();
        let thread = thread::Builder::new()
            .name("sen-log-fsync".into())
            .spawn(move || flusher(flush_db, rx, stages))
            .map_err(|e| StoreError::io("start the log fsync thread", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                flusher: Some(tx),
                flusher_thread: Some(thread),
                max_append_bytes: opts.max_append_bytes,
                keep_after: AtomicU64::new(u64::MAX),
                tail: Mutex::new(Tail::default()),
            }),
        })
    }

    pub(crate) fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.inner.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db(&self) -> &DB {
        &self.inner.db
    }

    /// Keep the entries after `index` through purges (the archive has not
    /// shipped them); `u64::MAX` lets purges go as far as Raft asks.
    /// Raft still believes them purged: they are read only by the archive.
    pub fn keep_after(&self, index: u64) {
        self.inner.keep_after.store(index, Ordering::Relaxed);
    }

    /// The first entry this log holds (`None`: empty).
    pub fn first_index(&self) -> Option<u64> {
        let log = cf(self.db(), CF_LOG).ok()?;
        let (k, _) = self.db().iterator_cf(log, IteratorMode::Start).next()?.ok()?;
        log_index(&k).ok()
    }

    /// Committed entries in `[start, end)` for the archive, at most about
    /// `max_bytes` (at least one), each with its stored encoding. Fails
    /// when `start` is no longer in this log (purged, or this node
    /// installed a snapshot past it).
    pub fn archive_entries(&self, start: u64, end: u64, max_bytes: usize) -> io::Result<Vec<(Entry, Vec<u8>)>> {
        let entries = self.read_range(start, end, max_bytes)?;
        if let Some(first) = entries.first()
            && first.log_id.index != start
        {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "entries {start}..{} are no longer in this node's log",
                    first.log_id.index
                ),
            ));
        }
        if entries.is_empty() && start < end {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("entry {start} is not in this node's log"),
            ));
        }
        entries
            .into_iter()
            .map(|e| {
                let bytes = enc_entry(&e).map_err(to_io)?;
                Ok((e, bytes))
            })
            .collect()
    }

    /// The node identity stored in this data directory, if any.
    pub fn identity(&self) -> Result<Option<NodeIdentity>, StoreError> {
        let meta = cf(self.db(), CF_META)?;
        match self
            .db()
            .get_cf(meta, K_IDENTITY)
            .map_err(|e| StoreError::rocks("read the node identity", e))?
        {
            Some(b) => Ok(Some(dec("node identity", &b)?)),
            None => Ok(None),
        }
    }

    /// Record the node identity (fsynced).
    pub fn set_identity(&self, id: &NodeIdentity) -> Result<(), StoreError> {
        let meta = cf(self.db(), CF_META)?;
        self.db()
            .put_cf_opt(meta, K_IDENTITY, enc("node identity", id)?, &sync_opts())
            .map_err(|e| StoreError::rocks("write the node identity", e))
    }

    /// Bind this data directory to `node_id`, or check that it already is.
    /// Returns the stored identity.
    pub fn claim_node_id(&self, node_id: NodeId, dir: &Path) -> Result<NodeIdentity, StoreError> {
        match self.identity()? {
            Some(id) if id.node_id == node_id => Ok(id),
            Some(id) => Err(StoreError::Invalid(format!(
                "data directory {} belongs to node {}, not node {node_id}; start it with --id {} or use another --data-dir",
                dir.display(),
                id.node_id,
                id.node_id
            ))),
            None => {
                let id = NodeIdentity {
                    node_id,
                    cluster_id: None,
                    joined: false,
                };
                self.set_identity(&id)?;
                Ok(id)
            }
        }
    }

    /// Record the cluster this node belongs to (fsynced). `joined`: the id
    /// came from another node rather than from `cluster init` here.
    pub fn set_cluster_id(&self, node_id: NodeId, cluster_id: ClusterId, joined: bool) -> Result<(), StoreError> {
        self.set_identity(&NodeIdentity {
            node_id,
            cluster_id: Some(cluster_id),
            joined,
        })
    }

    /// Seed an empty log restored from a backup: it starts after `last`
    /// (purged and committed up to it) with `vote` (fsynced).
    pub fn seed_after_restore(&self, last: LogId, vote: Vote) -> Result<(), StoreError> {
        if !self.is_pristine()? {
            return Err(StoreError::Invalid(
                "the Raft log is not empty; restore into a new data directory".into(),
            ));
        }
        let meta = cf(self.db(), CF_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, K_PURGED, enc_log_id(&last)?);
        batch.put_cf(meta, K_COMMITTED, enc_log_id(&last)?);
        batch.put_cf(meta, K_VOTE, enc_vote(&vote)?);
        self.db()
            .write_opt(batch, &sync_opts())
            .map_err(|e| StoreError::rocks("seed the restored raft log", e))
    }

    /// Quorum-loss recovery (`sen cluster recover --force`): append, after
    /// the last entry, a membership entry making `me` the only voter, in a
    /// term above every term this node has seen, and vote for itself in it
    /// (fsynced). When openraft starts on this log it finds itself the sole
    /// voter, elects itself and commits everything in its log. Raft must
    /// not be running on this store. Returns the new entry's log id.
    pub fn force_single_voter(&self, me: sen_core::NodeId, addr: &str) -> Result<LogId, StoreError> {
        use openraft::vote::RaftLeaderId;
        use std::collections::{BTreeMap, BTreeSet};
        let io = |e| StoreError::io("read the raft log state", e);
        let vote = self.get_meta(K_VOTE, dec_vote).map_err(io)?;
        let last = self.last_entry_log_id().map_err(io)?;
        let purged = self.get_meta(K_PURGED, dec_log_id).map_err(io)?;
        let last = last.or(purged);
        let term = vote
            .as_ref()
            .map_or(0, |v| v.leader_id().term)
            .max(last.as_ref().map_or(0, |l| l.leader_id.term))
            + 1;
        let index = last.as_ref().map_or(1, |l| l.index + 1);
        let log_id = LogId::new(
            openraft::impls::leader_id_std::LeaderId { term, voted_for: me }.to_committed(),
            index,
        );
        let membership = sen_raft::Membership::new(
            vec![BTreeSet::from([me])],
            BTreeMap::from([(me, sen_raft::NodeInfo { addr: addr.to_owned() })]),
        )
        .map_err(|e| StoreError::Invalid(format!("one-voter membership: {e}")))?;
        let entry = Entry {
            log_id,
            payload: openraft::EntryPayload::Membership(membership),
        };
        let new_vote = Vote::new_committed(term, me);
        let meta = cf(self.db(), CF_META)?;
        let log = cf(self.db(), CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(log, log_key(index), enc_entry(&entry)?);
        batch.put_cf(meta, K_VOTE, enc_vote(&new_vote)?);
        self.db()
            .write_opt(batch, &sync_opts())
            .map_err(|e| StoreError::rocks("write the recovery membership entry", e))?;
        Ok(log_id)
    }

    /// Whether the log holds no entries and no vote (a node that never took
    /// part in a cluster).
    pub fn is_pristine(&self) -> Result<bool, StoreError> {
        let meta = cf(self.db(), CF_META)?;
        let vote = self
            .db()
            .get_cf(meta, K_VOTE)
            .map_err(|e| StoreError::rocks("read the vote", e))?;
        let purged = self
            .db()
            .get_cf(meta, K_PURGED)
            .map_err(|e| StoreError::rocks("read the purge point", e))?;
        let mut it = self.db().iterator_cf(cf(self.db(), CF_LOG)?, IteratorMode::Start);
        Ok(vote.is_none() && purged.is_none() && it.next().is_none())
    }

    /// Index of the last entry and of the purge point (0 when none), read
    /// at start-up.
    pub fn last_and_purged_index(&self) -> Result<(u64, u64), StoreError> {
        let io = |e| StoreError::io("read the raft log state", e);
        let purged = self.get_meta(K_PURGED, dec_log_id).map_err(io)?.map_or(0, |l| l.index);
        let last = self.last_entry_log_id().map_err(io)?.map_or(0, |l| l.index);
        Ok((last, purged))
    }

    /// Make every write so far durable (used at shutdown).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db()
            .flush_wal(true)
            .map_err(|e| StoreError::rocks("sync the raft log", e))
    }

    fn get_meta<T>(&self, key: &[u8], dec_fn: fn(&[u8]) -> Result<T, StoreError>) -> io::Result<Option<T>> {
        let meta = cf(self.db(), CF_META).map_err(to_io)?;
        match self
            .db()
            .get_cf(meta, key)
            .map_err(|e| rocks_io("read raft metadata", e))?
        {
            Some(b) => Ok(Some(dec_fn(&b).map_err(to_io)?)),
            None => Ok(None),
        }
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogId>> {
        let log = cf(self.db(), CF_LOG).map_err(to_io)?;
        let mut it = self.db().iterator_cf(log, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(r) => {
                let (_, v) = r.map_err(|e| rocks_io("read the last log entry", e))?;
                Ok(Some(dec_entry(&v).map_err(to_io)?.log_id))
            }
        }
    }

    /// Read entries in `[start, end)`, stopping after `max_bytes` (but always
    /// returning at least one entry when the range is not empty).
    pub(crate) fn read_range(&self, start: u64, end: u64, max_bytes: usize) -> io::Result<Vec<Entry>> {
        if start >= end {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.tail().read(start, end, max_bytes) {
            return Ok(entries);
        }
        self.read_range_stored(start, end, max_bytes)
    }

    /// [`LogStore::read_range`] from RocksDB, never from the tail.
    pub(crate) fn read_range_stored(&self, start: u64, end: u64, max_bytes: usize) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let log = cf(self.db(), CF_LOG).map_err(to_io)?;
        let start_key = log_key(start);
        let mut bytes = 0usize;
        // Entries below the first one found were purged; after it, the log
        // must be contiguous.
        let mut expect: Option<u64> = None;
        for r in self
            .db()
            .iterator_cf(log, IteratorMode::From(&start_key, Direction::Forward))
        {
            let (k, v) = r.map_err(|e| rocks_io("read the raft log", e))?;
            let index = log_index(&k).map_err(to_io)?;
            if index >= end {
                break;
            }
            if let Some(expect) = expect
                && index != expect
            {
                return Err(io::Error::other(format!(
                    "raft log has a hole: expected entry {expect}, found {index}; the data directory is damaged"
                )));
            }
            let entry = dec_entry(&v).map_err(to_io)?;
            if entry.log_id.index != index {
                return Err(io::Error::other(format!(
                    "raft log entry stored at {index} claims index {}; the data directory is damaged",
                    entry.log_id.index
                )));
            }
            bytes += v.len();
            out.push(entry);
            expect = Some(index + 1);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(x) => x.saturating_add(1),
        Bound::Excluded(x) => *x,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// The group-commit loop: one fsync for every callback queued so far.
/// Each callback comes with when its append started.
fn flusher(db: Arc<DB>, rx: mpsc::Receiver<(IOFlushed<TypeConfig>, Instant)>, stages: crate::Stages) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let fsync = Instant::now();
        let res = db.flush_wal(true);
        stages.observe(crate::Stage::LogFsync, fsync.elapsed());
        for (cb, started) in batch {
            stages.observe(crate::Stage::LogAppend, started.elapsed());
            let r = match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(format!("fsync of the raft log failed: {e}"))),
            };
            cb.io_completed(r);
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        self.read_range(start, end, usize::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(K_VOTE, dec_vote)
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        self.read_range(start, end, self.inner.max_append_bytes)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged = self.get_meta(K_PURGED, dec_log_id)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let meta = cf(self.db(), CF_META).map_err(to_io)?;
        self.db()
            .put_cf_opt(meta, K_VOTE, enc_vote(vote).map_err(to_io)?, &sync_opts())
            .map_err(|e| rocks_io("save the vote", e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let meta = cf(self.db(), CF_META).map_err(to_io)?;
        match committed {
            Some(c) => self.db().put_cf(meta, K_COMMITTED, enc_log_id(&c).map_err(to_io)?),
            None => self.db().delete_cf(meta, K_COMMITTED),
        }
        .map_err(|e| rocks_io("save the committed log id", e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.get_meta(K_COMMITTED, dec_log_id)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = Instant::now();
        let log = cf(self.db(), CF_LOG).map_err(to_io)?;
        let mut batch = WriteBatch::default();
        let mut written = Vec::new();
        for e in entries {
            let bytes = enc_entry(&e).map_err(to_io)?;
            batch.put_cf(log, log_key(e.log_id.index), &bytes);
            written.push((e, bytes.len()));
        }
        // Not synced here: the flusher thread fsyncs for many appends at once.
        let res = self.db().write(batch);
        let mut tail = self.tail();
        match res {
            Ok(()) => tail.extend(written),
            Err(e) => {
                // What RocksDB holds now is not known: forget the tail.
                tail.clear();
                return Err(rocks_io("append to the raft log", e));
            }
        }
        drop(tail);
        self.inner
            .flusher
            .as_ref()
            .ok_or_else(|| io::Error::other("the raft log is closing"))?
            .send((callback, started))
            .map_err(|_| io::Error::other("the raft log fsync thread has stopped"))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        let log = cf(self.db(), CF_LOG).map_err(to_io)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, log_key(from), log_key(u64::MAX));
        batch.delete_cf(log, log_key(u64::MAX));
        let res = self.db().write_opt(batch, &sync_opts());
        let mut tail = self.tail();
        match res {
            Ok(()) => tail.truncate_from(from),
            Err(_) => tail.clear(),
        }
        res.map_err(|e| rocks_io("truncate the raft log", e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let log = cf(self.db(), CF_LOG).map_err(to_io)?;
        let meta = cf(self.db(), CF_META).map_err(to_io)?;
        let mut batch = WriteBatch::default();
        // Record the purge point first in the same atomic batch, so there is
        // never a moment with entries gone and the purge point unknown.
        batch.put_cf(meta, K_PURGED, enc_log_id(&log_id).map_err(to_io)?);
        let upto = log_id.index.min(self.inner.keep_after.load(Ordering::Relaxed));
        batch.delete_range_cf(log, log_key(0), log_key(upto.saturating_add(1)));
        let res = self.db().write(batch);
        let mut tail = self.tail();
        match res {
            // The tail follows Raft's view (up to the purge point gone);
            // entries kept for the archive are read from RocksDB.
            Ok(()) => tail.purge_upto(log_id.index),
            Err(_) => tail.clear(),
        }
        res.map_err(|e| rocks_io("purge the raft log", e))
    }
}
