//! Opening RocksDB instances with our options and checking their layout
//! version.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, Options};

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

fn options(kind: Kind) -> Options {
    let mut o = Options::default();
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
            o.set_write_buffer_size(32 * 1024 * 1024);
            o.set_max_total_wal_size(128 * 1024 * 1024);
        }
        Kind::State { write_buffer_bytes } => {
            o.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
            o.set_write_buffer_size(write_buffer_bytes);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            // Applying a write looks up keys that usually do not exist (a
            // fresh request id in the dedup table, a new key): bloom
            // filters on the memtable and on every table file answer "not
            // here" without searching (measured: the memtable skiplist
            // search was the top hotspot of the write path;
            // docs/benchmarks.md).
            o.set_memtable_prefix_bloom_ratio(0.1);
            o.set_memtable_whole_key_filtering(true);
            let mut t = rocksdb::BlockBasedOptions::default();
            t.set_bloom_filter(10.0, false);
            t.set_whole_key_filtering(true);
            o.set_block_based_table_factory(&t);
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
fn cf_options(kind: Kind, cf: &str) -> Options {
    match kind {
        Kind::State { write_buffer_bytes } if cf == crate::format::CF_CHUNKS => {
            options(Kind::Chunks { write_buffer_bytes })
        }
        _ => options(kind),
    }
}

/// Open (or create) a DB at `path` with column families `cfs` (plus `meta`)
/// and check or stamp its layout version.
pub fn open(path: &Path, kind: Kind, cfs: &[&str], what: &str) -> Result<DB, StoreError> {
    let opts = options(kind);
    let mut descs = vec![ColumnFamilyDescriptor::new(CF_META, Options::default())];
    for cf in cfs {
        descs.push(ColumnFamilyDescriptor::new(*cf, cf_options(kind, cf)));
    }
    let db = DB::open_cf_descriptors(&opts, path, descs)
        .map_err(|e| StoreError::rocks(format!("open the {what} at {}", path.display()), e))?;
    check_layout(&db, what, path)?;
    Ok(db)
}

/// Open a DB read-only (used to inspect a snapshot checkpoint).
pub fn open_read_only(path: &Path, kind: Kind, cfs: &[&str], what: &str) -> Result<DB, StoreError> {
    let opts = options(kind);
    let mut descs = vec![ColumnFamilyDescriptor::new(CF_META, Options::default())];
    for cf in cfs {
        descs.push(ColumnFamilyDescriptor::new(*cf, cf_options(kind, cf)));
    }
    let db = DB::open_cf_descriptors_read_only(&opts, path, descs, false)
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
