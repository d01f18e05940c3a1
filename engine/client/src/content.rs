//! Site content from the client side: the content RPCs (sites, files,
//! chunks, deployments, history, garbage collection), editing a site's
//! tree (removing paths, deploying a list of files), and — in submodules —
//! pushing a directory as one atomic deployment ([`push`]) and pulling a
//! site into a directory ([`pull`]).

mod pull;
pub mod push;

use std::collections::HashSet;

use sen_content::chunk::Encoding;
use sen_content::{ChunkId, ChunkRef, FileEntry, Manifest, StoredChunk, path};
use sen_proto::v1::content_client::ContentClient;
use sen_proto::v1::*;
use tonic::Code;

use crate::{Client, ClientError};

/// Chunk ids per MissingChunks call.
const MISSING_BATCH: usize = 10_000;

pub use push::{Progress, PushEvent, PushOptions, PushSummary};

pub(crate) fn err(code: Code, message: impl Into<String>) -> ClientError {
    ClientError::Status {
        code,
        message: message.into(),
    }
}

fn to_chunk_ref(c: &sen_proto::v1::ChunkRef) -> Result<ChunkRef, ClientError> {
    Ok(ChunkRef {
        id: ChunkId::from_slice(&c.id).ok_or_else(|| err(Code::Internal, "server sent a bad chunk id"))?,
        len: c.len,
    })
}

pub(crate) fn to_entry(f: &FileInfo) -> Result<FileEntry, ClientError> {
    Ok(FileEntry {
        path: f.path.clone(),
        size: f.size,
        blake3: f
            .blake3
            .as_slice()
            .try_into()
            .map_err(|_| err(Code::Internal, "server sent a bad file hash"))?,
        mtime_ms: f.mtime_ms,
        chunks: f.chunks.iter().map(to_chunk_ref).collect::<Result<_, _>>()?,
    })
}

pub fn wire_chunk(c: StoredChunk) -> Chunk {
    Chunk {
        id: c.id.0.to_vec(),
        encoding: match c.encoding {
            Encoding::Raw => 0,
            Encoding::Zstd => 1,
        },
        len: c.len,
        data: c.data,
    }
}

impl Client {
    fn content(ch: crate::Ch) -> ContentClient<crate::Ch> {
        ContentClient::new(ch)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub async fn create_site(&self, site: &str) -> Result<CreateSiteResponse, ClientError> {
        let msg = CreateSiteRequest {
            header: Some(RequestHeader {
                request_id: Self::new_request_id().to_vec(),
            }),
            site: site.into(),
        };
        self.retry("create site", true, |ch, d| {
            let m = msg.clone();
            async move { Self::content(ch).create_site(Self::request(m, d)).await }
        })
        .await
    }

    pub async fn delete_site(&self, site: &str) -> Result<DeleteSiteResponse, ClientError> {
        let msg = DeleteSiteRequest {
            header: Some(RequestHeader {
                request_id: Self::new_request_id().to_vec(),
            }),
            site: site.into(),
        };
        self.retry("delete site", true, |ch, d| {
            let m = msg.clone();
            async move { Self::content(ch).delete_site(Self::request(m, d)).await }
        })
        .await
    }

    /// Every site the caller may see, read page by page.
    pub async fn list_sites(&self) -> Result<ListSitesResponse, ClientError> {
        let mut all = ListSitesResponse::default();
        loop {
            let start_after = all.next.clone();
            let page = self
                .retry("list sites", false, |ch, d| {
                    let start_after = start_after.clone();
                    async move {
                        Self::content(ch)
                            .list_sites(Self::request(ListSitesRequest { start_after, limit: 0 }, d))
                            .await
                    }
                })
                .await?;
            all.header = page.header;
            all.sites.extend(page.sites);
            all.next = page.next;
            if all.next.is_empty() {
                return Ok(all);
            }
        }
    }

    /// Every file of `site` under `prefix`, and the current deployment id.
    ///
    /// Pages are read with a linearizable barrier, so the listing includes
    /// every deployment acknowledged before the call. If a deployment lands
    /// between two pages the listing starts over (a few times) so the result
    /// always describes one deployment.
    pub async fn list_files(
        &self,
        site: &str,
        prefix: &str,
        with_chunks: bool,
    ) -> Result<(Vec<FileInfo>, u64), ClientError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            if let Some(listing) = self.list_files_once(site, prefix, with_chunks).await? {
                return Ok(listing);
            }
        }
        Err(err(
            Code::Aborted,
            format!(
                "site {site} kept changing while it was being listed ({ATTEMPTS} attempts); try again when deployments pause"
            ),
        ))
    }

    /// One pass over the listing; `None` if the deployment changed under it.
    async fn list_files_once(
        &self,
        site: &str,
        prefix: &str,
        with_chunks: bool,
    ) -> Result<Option<(Vec<FileInfo>, u64)>, ClientError> {
        let mut out = Vec::new();
        let mut after = String::new();
        let mut deployment = None;
        loop {
            let msg = ListFilesRequest {
                site: site.into(),
                prefix: prefix.into(),
                start_after: after.clone(),
                limit: 0,
                with_chunks,
                linearizable: true,
            };
            let page = self
                .retry("list files", true, |ch, d| {
                    let m = msg.clone();
                    async move { Self::content(ch).list_files(Self::request(m, d)).await }
                })
                .await?;
            match deployment {
                None => deployment = Some(page.deployment),
                Some(d) if d != page.deployment => return Ok(None),
                Some(_) => {}
            }
            if let Some(last) = page.files.last() {
                after = last.path.clone();
            }
            out.extend(page.files);
            if !page.more {
                return Ok(Some((out, deployment.unwrap_or(0))));
            }
        }
    }

    /// Which of `ids` the cluster does not hold.
    pub async fn missing_chunks(&self, ids: &[ChunkId]) -> Result<HashSet<ChunkId>, ClientError> {
        let mut missing = HashSet::new();
        for batch in ids.chunks(MISSING_BATCH) {
            let msg = MissingChunksRequest {
                ids: batch.iter().map(|i| i.0.to_vec()).collect(),
            };
            let r = self
                .retry("missing chunks", true, |ch, d| {
                    let m = msg.clone();
                    async move { Self::content(ch).missing_chunks(Self::request(m, d)).await }
                })
                .await?;
            for b in r.missing {
                missing.insert(ChunkId::from_slice(&b).ok_or_else(|| err(Code::Internal, "bad chunk id"))?);
            }
        }
        Ok(missing)
    }

    pub async fn put_chunks(&self, chunks: Vec<Chunk>) -> Result<PutChunksResponse, ClientError> {
        let msg = PutChunksRequest { chunks };
        self.retry("upload chunks", true, |ch, d| {
            let m = msg.clone();
            async move { Self::content(ch).put_chunks(Self::request(m, d)).await }
        })
        .await
    }

    pub async fn deploy(&self, req: DeployRequest) -> Result<DeployResponse, ClientError> {
        let mut req = req;
        req.header = Some(RequestHeader {
            request_id: Self::new_request_id().to_vec(),
        });
        self.retry("deploy", true, |ch, d| {
            let m = req.clone();
            async move { Self::content(ch).deploy(Self::request(m, d)).await }
        })
        .await
    }

    pub async fn history(&self, site: &str, limit: u32) -> Result<HistoryResponse, ClientError> {
        let msg = HistoryRequest {
            site: site.into(),
            limit,
        };
        self.retry("history", false, |ch, d| {
            let m = msg.clone();
            async move { Self::content(ch).history(Self::request(m, d)).await }
        })
        .await
    }

    pub async fn collect_garbage(&self, grace_ms: Option<u64>) -> Result<CollectGarbageResponse, ClientError> {
        let msg = CollectGarbageRequest {
            header: Some(RequestHeader {
                request_id: Self::new_request_id().to_vec(),
            }),
            grace_ms,
        };
        self.retry("collect garbage", true, |ch, d| {
            let m = msg.clone();
            async move { Self::content(ch).collect_garbage(Self::request(m, d)).await }
        })
        .await
    }

    /// Stream a file (or a byte range of it) from one node, calling `sink`
    /// with each piece; returns the file's metadata.
    pub async fn read_file(
        &self,
        site: &str,
        path: &str,
        offset: u64,
        length: u64,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<FileInfo, ClientError> {
        let msg = ReadFileRequest {
            site: site.into(),
            path: path.into(),
            offset,
            length,
        };
        let mut stream = self
            .retry("read file", false, |ch, d| {
                let m = msg.clone();
                async move {
                    let mut r = tonic::Request::new(m);
                    r.set_timeout(d * 30);
                    Self::content(ch).read_file(r).await
                }
            })
            .await?;
        let mut info = None;
        loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    if let Some(f) = m.file {
                        info = Some(f);
                    }
                    sink(&m.data).map_err(|e| err(Code::Internal, format!("cannot write: {e}")))?;
                }
                Ok(None) => break,
                Err(s) => return Err(err(s.code(), format!("read {site}/{path}: {}", s.message()))),
            }
        }
        info.ok_or_else(|| err(Code::Internal, "the server sent no file metadata"))
    }

    /// Remove a file (or every file under a directory) as a new deployment.
    /// Returns the files removed and the new deployment.
    pub async fn remove_path(&self, site: &str, target: &str, author: &str) -> Result<(u64, u64), ClientError> {
        let target =
            path::normalize(target.trim_end_matches('/')).map_err(|e| err(Code::InvalidArgument, e.to_string()))?;
        let (list, base) = self.list_files(site, "", true).await?;
        let dir_prefix = format!("{target}/");
        let mut removed = 0u64;
        let mut files = Vec::new();
        for f in &list {
            if f.path == target || f.path.starts_with(&dir_prefix) {
                removed += 1;
            } else {
                files.push(to_entry(f)?);
            }
        }
        if removed == 0 {
            return Err(err(
                Code::NotFound,
                format!("no file or directory {target:?} in site {site}"),
            ));
        }
        let deployment = self
            .deploy_entries(site, files, base, author, &format!("remove {target}"))
            .await?;
        Ok((removed, deployment))
    }

    /// The current files of `site` (with their chunk lists) and the
    /// deployment they belong to, as manifest entries.
    pub async fn current_entries(&self, site: &str) -> Result<(Vec<FileEntry>, u64), ClientError> {
        let (list, base) = self.list_files(site, "", true).await?;
        Ok((list.iter().map(to_entry).collect::<Result<_, _>>()?, base))
    }

    /// Deploy `files` (whose chunks the cluster must hold) as the site's
    /// new tree, refused if the site moved past `base` meanwhile. Returns
    /// the new deployment.
    pub async fn deploy_entries(
        &self,
        site: &str,
        files: Vec<FileEntry>,
        base: u64,
        author: &str,
        message: &str,
    ) -> Result<u64, ClientError> {
        let packed = Manifest::pack(files, 3).map_err(|e| err(Code::Internal, e.to_string()))?;
        let missing = self
            .missing_chunks(&packed.refs.iter().map(|r| r.id).collect::<Vec<_>>())
            .await?;
        let up: Vec<Chunk> = packed
            .chunks
            .into_iter()
            .filter(|c| missing.contains(&c.id))
            .map(wire_chunk)
            .collect();
        for b in up.chunks(8) {
            self.put_chunks(b.to_vec()).await?;
        }
        let r = self
            .deploy(DeployRequest {
                header: None,
                site: site.into(),
                manifest: packed
                    .refs
                    .iter()
                    .map(|r| sen_proto::v1::ChunkRef {
                        id: r.id.0.to_vec(),
                        len: r.len,
                    })
                    .collect(),
                manifest_hash: packed.hash.to_vec(),
                base: Some(base),
                author: author.into(),
                message: message.into(),
            })
            .await?;
        Ok(r.deployment)
    }
}
