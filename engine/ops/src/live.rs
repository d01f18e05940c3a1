//! The live cluster as the target of a restore into it
//! (`sen_backup::restore::LiveCluster` over the client). Repository code
//! runs on a blocking thread; each call here blocks on the client.

use std::collections::{BTreeMap, HashSet};

use sen_backup::RepoError;
use sen_backup::restore::LiveCluster;
use sen_client::{Client, ClientError, Consistency};
use sen_content::manifest::FileEntry;
use sen_content::{ChunkId, StoredChunk};
use sen_proto::v1::ScanRequest;
use tokio::runtime::Handle;

/// A client and the runtime to run it on.
pub struct ClientCluster<'a> {
    pub client: &'a Client,
    pub rt: Handle,
}

fn target(e: ClientError) -> RepoError {
    RepoError::Target(format!("the cluster: {e}"))
}

impl LiveCluster for ClientCluster<'_> {
    fn site_files(&mut self, site: &str) -> Result<(Vec<FileEntry>, u64), RepoError> {
        self.rt.block_on(self.client.current_entries(site)).map_err(target)
    }

    fn missing_chunks(&mut self, ids: &[ChunkId]) -> Result<HashSet<ChunkId>, RepoError> {
        self.rt.block_on(self.client.missing_chunks(ids)).map_err(target)
    }

    fn put_chunks(&mut self, chunks: Vec<StoredChunk>) -> Result<(), RepoError> {
        let wire = chunks.into_iter().map(sen_client::content::wire_chunk).collect();
        self.rt.block_on(self.client.put_chunks(wire)).map_err(target)?;
        Ok(())
    }

    fn deploy(&mut self, site: &str, files: Vec<FileEntry>, base: u64, message: &str) -> Result<u64, RepoError> {
        self.rt
            .block_on(self.client.deploy_entries(site, files, base, "sen restore", message))
            .map_err(target)
    }

    fn db_records(&mut self, db: &str, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, RepoError> {
        let mut live = BTreeMap::new();
        let mut start_after = Vec::new();
        loop {
            let page = self.rt.block_on(self.client.scan_page(ScanRequest {
                db: db.into(),
                prefix: prefix.to_vec(),
                start_after: start_after.clone(),
                limit: 1000,
                consistency: Consistency::Linearizable as i32,
                ..Default::default()
            }));
            let page = match page {
                Ok(p) => p,
                // A database that does not exist (any more) is empty.
                Err(e) if e.code() == Some(tonic::Code::NotFound) => break,
                Err(e) => return Err(target(e)),
            };
            for kv in &page.kvs {
                live.insert(kv.key.clone(), kv.value.clone());
            }
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => start_after = last.key.clone(),
                _ => break,
            }
        }
        Ok(live)
    }

    fn put(&mut self, db: &str, key: &[u8], value: &[u8]) -> Result<(), RepoError> {
        self.rt.block_on(self.client.put(db, key, value)).map_err(target)?;
        Ok(())
    }

    fn delete(&mut self, db: &str, key: &[u8]) -> Result<(), RepoError> {
        self.rt.block_on(self.client.delete(db, key)).map_err(target)?;
        Ok(())
    }
}
