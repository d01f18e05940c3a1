//! Opening RocksDB instances with our options and checking their layout
//! version.

use std::path::Path;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBRecoveryMode, Options, WriteBufferManager};

use crate::StoreError;
use crate::format::{CF_META, K_FORMAT, LAYOUT_VERSION, dec, enc};

/// Which of the two DBs: they differ in recovery mode and tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The Raft log: every fsynced record matters, so a corrupt record in
    /// the middle of the WAL refuses to open instead of silently dropping
    /// the acknowledged entries after it; only a torn tail (an unsynced
    /// write cut by a crash) is tolerated.
    Log,
    /// The state DB: anything lost from its WAL is re-applied from the Raft
    /// log, so recover to the last consistent point.
    State { write_buffer_bytes: usize },
    /// The `chunks` column family of the state DB.
    Chunks { write_buffer_bytes: usize },
}

/// The memory all RocksDB instances of one node share: one LRU block
/// cache (data, index and filter blocks of every column family of both
/// DBs) and one write-buffer manager that charges every memtable to that
/// cache. Memtables plus cached blocks stay near `bytes` whatever the
/// size of the content: without it each column family had its own 32 MiB
/// block cache and up to two 64 MiB memtables (eleven column families).
#[derive(Clone)]
pub struct Memory {
    bytes: usize,
    cache: Cache,
    buffers: WriteBufferManager,
}

/// What [`Memory`] holds now, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// The configured bound.
    pub limit: usize,
    /// Everything charged to the shared cache: cached blocks and the
    /// memtables' reservations.
    pub charged: usize,
    /// Memtables of both DBs.
    pub memtables: usize,
    /// Blocks in use by readers or pinned (L0 index and filter blocks).
    pub pinned: usize,
}

impl Memory {
    /// At most `bytes` for memtables and cached blocks together; the
    /// memtables flush once they hold half of it.
    pub fn new(bytes: usize) -> Self {
        let cache = Cache::new_lru_cache(bytes);
        // No write stall: two DBs share the manager, and a stall in one
        // would wait for a flush only the other (perhaps idle) DB makes.
        // Flushes are triggered in the DB being written instead.
        let buffers = WriteBufferManager::new_write_buffer_manager_with_cache(bytes / 2, false, cache.clone());
        Self { bytes, cache, buffers }
    }

    pub fn usage(&self) -> MemoryUsage {
        MemoryUsage {
            limit: self.bytes,
            charged: self.cache.get_usage(),
            memtables: self.buffers.get_usage(),
            pinned: self.cache.get_pinned_usage(),
        }
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// Table options of every column family: blocks (and their index and
/// filter blocks, so those are bounded too) in the shared cache.
fn table_options(mem: &Memory, bloom: bool) -> BlockBasedOptions {
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(&mem.cache);
    t.set_cache_index_and_filter_blocks(true);
    t.set_pin_l0_filter_and_index_blocks_in_cache(true);
    if bloom {
        t.set_bloom_filter(10.0, false);
        t.set_whole_key_filtering(true);
    }
    t
}

fn options(kind: Kind, mem: &Memory) -> Options {
    let mut o = Options::default();
    o.set_write_buffer_manager(&mem.buffers);
    o.set_block_based_table_factory(&table_options(mem, false));
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_paranoid_checks(true);
    o.increase_parallelism(2);
    o.set_max_background_jobs(2);
    o.set_keep_log_file_num(4);
    o.set_max_log_file_size(16 * 1024 * 1024);
    match kind {
        Kind::Log => {
            o.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
            o.set_write_buffer_size((mem.bytes / 4).min(32 * 1024 * 1024));
            o.set_max_total_wal_size(128 * 1024 * 1024);
        }
        Kind::State { write_buffer_bytes } => {
            o.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
            o.set_write_buffer_size(write_buffer_bytes);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            // Applying a write looks up keys that usually do not exist (a
            // fresh request id in the dedup table, a new key): bloom
            // filters on every table file answer "not here" without
            // searching; the memtable's own filter is in `cf_options`.
            o.set_block_based_table_factory(&table_options(mem, true));
        }
        Kind::Chunks { write_buffer_bytes } => {
            o.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
            o.set_write_buffer_size(write_buffer_bytes);
            // Chunks are already compressed and up to 1 MiB: keep them in
            // blob files (written once, never rewritten by compaction),
            // with only small index entries in the LSM tree.
            o.set_compression_type(rocksdb::DBCompressionType::None);
            o.set_enable_blob_files(true);
            o.set_min_blob_size(1024);
            o.set_blob_file_size(256 * 1024 * 1024);
            o.set_enable_blob_gc(true);
        }
    }
    o
}

/// Options of one column family: the chunk store gets blob files.
fn cf_options(kind: Kind, cf: &str, mem: &Memory) -> Options {
    use crate::format::{CF_CHUNK_META, CF_CHUNKS, CF_DEDUP, CF_KV};
    match kind {
        Kind::State { write_buffer_bytes } if cf == CF_CHUNKS => options(Kind::Chunks { write_buffer_bytes }, mem),
        Kind::State { .. } if [CF_KV, CF_DEDUP, CF_CHUNK_META].contains(&cf) => {
            // The column families an applied write looks up keys in that
            // are usually absent (a new key, a fresh request id, a new
            // chunk) get a bloom filter on the memtable too (measured:
            // the memtable skiplist search was the top hotspot of the
            // write path; docs/benchmarks.md). Only those: the filter
            // takes a tenth of the memtable size (charged to the store's
            // memory) as soon as the memtable exists.
            let mut o = options(kind, mem);
            o.set_memtable_prefix_bloom_ratio(0.1);
            o.set_memtable_whole_key_filtering(true);
            o
        }
        _ => options(kind, mem),
    }
}

/// The `meta` column family: small records, the shared memory.
fn meta_options(mem: &Memory) -> Options {
    let mut o = Options::default();
    o.set_block_based_table_factory(&table_options(mem, false));
    o
}

/// Every column family of a DB of `kind`: `meta`, then `cfs`.
fn descriptors(kind: Kind, cfs: &[&str], mem: &Memory) -> Vec<ColumnFamilyDescriptor> {
    std::iter::once(ColumnFamilyDescriptor::new(CF_META, meta_options(mem)))
        .chain(
            cfs.iter()
                .map(|cf| ColumnFamilyDescriptor::new(*cf, cf_options(kind, cf, mem))),
        )
        .collect()
}

/// Open (or create) a DB at `path` with column families `cfs` (plus `meta`)
/// and check or stamp its layout version.
pub fn open(path: &Path, kind: Kind, cfs: &[&str], what: &str, mem: &Memory) -> Result<DB, StoreError> {
    let db = DB::open_cf_descriptors(&options(kind, mem), path, descriptors(kind, cfs, mem))
        .map_err(|e| StoreError::rocks(format!("open the {what} at {}", path.display()), e))?;
    check_layout(&db, what, path)?;
    Ok(db)
}

/// Open a DB read-only (used to inspect a snapshot checkpoint).
pub fn open_read_only(path: &Path, kind: Kind, cfs: &[&str], what: &str, mem: &Memory) -> Result<DB, StoreError> {
    let db = DB::open_cf_descriptors_read_only(&options(kind, mem), path, descriptors(kind, cfs, mem), false)
        .map_err(|e| StoreError::rocks(format!("open the {what} at {} read-only", path.display()), e))?;
    Ok(db)
}

fn check_layout(db: &DB, what: &str, path: &Path) -> Result<(), StoreError> {
    let meta = cf(db, CF_META)?;
    match db
        .get_cf(meta, K_FORMAT)
        .map_err(|e| StoreError::rocks("read the layout version", e))?
    {
        Some(b) => {
            let v: u32 = dec("layout version", &b)?;
            if v > LAYOUT_VERSION {
                return Err(StoreError::Invalid(format!(
                    "the {what} at {} has layout version {v}, but this build of Sen supports up to {LAYOUT_VERSION}; run a newer Sen on this data directory",
                    path.display()
                )));
            }
        }
        None => {
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            db.put_cf_opt(meta, K_FORMAT, enc("layout version", &LAYOUT_VERSION)?, &wo)
                .map_err(|e| StoreError::rocks("write the layout version", e))?;
        }
    }
    Ok(())
}

/// A column family handle, or a clear error if the DB lacks it.
pub fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(name).ok_or_else(|| {
        StoreError::Invalid(format!(
            "RocksDB column family {name:?} is missing; the data directory is damaged"
        ))
    })
}
