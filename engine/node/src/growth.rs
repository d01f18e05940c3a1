//! Growth samples (R8; `sen_raft::schema::system::growth`): what this node
//! holds, taken by the probe loop every `probe.growth-interval` and handed
//! to the leader with its next report.

use std::collections::BTreeMap;
use std::path::Path;

use sen_raft::schema::system::SystemRecord;
use sen_raft::schema::system::growth::{GrowthRecord, cap_names};

use crate::error::ApiError;
use crate::node::Node;

/// Bytes of the regular files under `dir` (symbolic links not followed;
/// files that vanish while counting are skipped).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

/// Take a sample now (blocking: walks the data directory and reads the
/// state).
pub fn sample(node: &Node) -> Result<GrowthRecord, ApiError> {
    let now = sen_core::now_ms();
    let dir = &node.config.data_dir;
    let st = nix::sys::statvfs::statvfs(dir.as_path())
        .map_err(|e| ApiError::Internal(format!("statvfs {}: {e}", dir.display())))?;
    let frsize = st.fragment_size() as u64;
    let (_, chunk_bytes, _) = node.state.chunk_totals()?;
    let sites: BTreeMap<String, u64> = node
        .state
        .sites()?
        .into_iter()
        .map(|(name, s)| (name, s.current.map_or(0, |c| c.bytes)))
        .collect();
    let (dbs, _) = node.state.databases()?;
    let dbs: BTreeMap<String, u64> = dbs.into_iter().map(|d| (d.name, d.bytes)).collect();
    Ok(GrowthRecord {
        version: GrowthRecord::VERSION,
        day: sen_core::time::utc_day(now),
        node: node.id,
        at_ms: now,
        data_dir_bytes: dir_bytes(dir),
        disk_total_bytes: st.blocks() as u64 * frsize,
        disk_free_bytes: (st.blocks_available() as u64 * frsize).min(st.blocks() as u64 * frsize),
        chunk_bytes,
        sites: cap_names(sites),
        dbs: cap_names(dbs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_tree_is_summed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir_all(d.path().join("x/y")).unwrap();
        std::fs::write(d.path().join("x/y/b"), vec![0u8; 24]).unwrap();
        assert_eq!(dir_bytes(d.path()), 1024);
        assert_eq!(dir_bytes(&d.path().join("missing")), 0);
    }
}
