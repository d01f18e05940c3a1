//! The public content service (`sen.v1.Content`): sites, chunk uploads,
//! deployments, file reads.
//!
//! Writes are proposed on the leader (followers forward them once). Chunk
//! uploads are checked here — every chunk decoded and hashed — before they
//! are proposed, and split into Raft entries of at most
//! `content.max-chunk-entry-bytes`. Reads (listings, file contents) are
//! served from this node's replica, like HTTP.

use std::sync::Arc;

use sen_content::chunk::{Encoding, MAX_CHUNK_BYTES};
use sen_content::{ChunkId, ChunkRef, StoredChunk, path};
use sen_core::auth::Action;
use sen_proto::v1::content_server::Content;
use sen_proto::v1::*;
use sen_raft::apply::FileRecord;
use sen_raft::{Deploy, Op, Outcome};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{measured, request_id, with_id};
use crate::auth;
use crate::deadline;
use crate::error::ApiError;
use crate::forward::{Route, route};
use crate::node::Node;

/// Most chunks in one `PutChunks` request.
pub const MAX_PUT_CHUNKS: usize = 4096;
/// Most plaintext bytes the chunks of one `PutChunks` request expand to.
pub const MAX_PUT_PLAIN_BYTES: u64 = 256 * 1024 * 1024;

pub struct ContentApi {
    pub node: Arc<Node>,
}

fn site_name(s: &str) -> Result<(), ApiError> {
    path::check_site_name(s).map_err(ApiError::InvalidArgument)
}

fn chunk_id(b: &[u8]) -> Result<ChunkId, ApiError> {
    ChunkId::from_slice(b).ok_or_else(|| ApiError::InvalidArgument(format!("a chunk id is 32 bytes, got {}", b.len())))
}

fn refs_out(refs: &[ChunkRef]) -> Vec<sen_proto::v1::ChunkRef> {
    refs.iter()
        .map(|r| sen_proto::v1::ChunkRef {
            id: r.id.0.to_vec(),
            len: r.len,
        })
        .collect()
}

fn file_info(path: String, r: &FileRecord, with_chunks: bool) -> FileInfo {
    FileInfo {
        path,
        size: r.size,
        blake3: r.blake3.to_vec(),
        mtime_ms: r.mtime_ms,
        deployment: r.deployment,
        chunks: if with_chunks { refs_out(&r.chunks) } else { Vec::new() },
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

impl ContentApi {
    fn budget<T>(&self, req: &Request<T>) -> std::time::Duration {
        deadline::budget(req.metadata(), self.node.config.server.request_timeout)
    }
}

#[tonic::async_trait]
impl Content for ContentApi {
    async fn create_site(&self, req: Request<CreateSiteRequest>) -> Result<Response<CreateSiteResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "CreateSite", async {
            auth::require(&req, Action::SiteWrite(&req.get_ref().site))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            site_name(&req.get_ref().site)?;
            let id = request_id(&req.get_ref().header)?;
            match route(&node, &req)? {
                Route::Forward {
                    id: leader,
                    addr,
                    behalf,
                } => {
                    let mut msg = req.into_inner();
                    msg.header = with_id(id);
                    forward_to_leader!(
                        &node,
                        behalf,
                        node.peers.content(leader, &addr),
                        addr,
                        create_site,
                        msg,
                        budget
                    )
                }
                Route::Local => {
                    let site = req.into_inner().site;
                    let r = node.propose(id, Op::CreateSite { site }, budget).await?;
                    let Outcome::SiteCreated { created } = r.outcome else {
                        return Err(ApiError::Internal(format!("unexpected {:?}", r.outcome)));
                    };
                    Ok(CreateSiteResponse {
                        header: Some(node.response_header()),
                        created,
                    })
                }
            }
        })
        .await
    }

    async fn delete_site(&self, req: Request<DeleteSiteRequest>) -> Result<Response<DeleteSiteResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "DeleteSite", async {
            auth::require(&req, Action::SiteWrite(&req.get_ref().site))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            site_name(&req.get_ref().site)?;
            let id = request_id(&req.get_ref().header)?;
            match route(&node, &req)? {
                Route::Forward {
                    id: leader,
                    addr,
                    behalf,
                } => {
                    let mut msg = req.into_inner();
                    msg.header = with_id(id);
                    forward_to_leader!(
                        &node,
                        behalf,
                        node.peers.content(leader, &addr),
                        addr,
                        delete_site,
                        msg,
                        budget
                    )
                }
                Route::Local => {
                    let site = req.into_inner().site;
                    let r = node.propose(id, Op::DeleteSite { site }, budget).await?;
                    let Outcome::SiteDeleted { deleted } = r.outcome else {
                        return Err(ApiError::Internal(format!("unexpected {:?}", r.outcome)));
                    };
                    Ok(DeleteSiteResponse {
                        header: Some(node.response_header()),
                        deleted,
                    })
                }
            }
        })
        .await
    }

    async fn list_sites(&self, req: Request<ListSitesRequest>) -> Result<Response<ListSitesResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "ListSites", async {
            let caller = auth::caller(&req)?;
            node.check_serving()?;
            let state = node.state.clone();
            let start_after = req.get_ref().start_after.clone();
            let limit = node.config.limits.scan_page(req.get_ref().limit as usize);
            let page = blocking(move || Ok(state.sites_page(&start_after, limit)?)).await?;
            Ok(ListSitesResponse {
                header: Some(node.response_header()),
                next: page.next.unwrap_or_default(),
                sites: page
                    .items
                    .into_iter()
                    // Only the sites the caller may read (or write).
                    .filter(|(name, _)| {
                        caller.allows(&Action::SiteRead(name)) || caller.allows(&Action::SiteWrite(name))
                    })
                    .map(|(name, r)| SiteInfo {
                        created_at_ms: r.created_at_ms,
                        deployment: r.current.as_ref().map_or(0, |c| c.id),
                        files: r.current.as_ref().map_or(0, |c| c.files),
                        bytes: r.current.as_ref().map_or(0, |c| c.bytes),
                        probe_path: crate::probe::probe_path(&node, &name).unwrap_or_default(),
                        name,
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn list_files(&self, req: Request<ListFilesRequest>) -> Result<Response<ListFilesResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "ListFiles", async {
            auth::require(&req, Action::SiteRead(&req.get_ref().site))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            let r = req.into_inner();
            site_name(&r.site)?;
            if r.linearizable {
                node.read_barrier(budget).await?;
            }
            let prefix = path::normalize_prefix(&r.prefix).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
            let limit = node.config.limits.scan_page(r.limit as usize);
            let state = node.state.clone();
            let site = r.site.clone();
            let (rec, files, more) = blocking(move || {
                let (rec, _) = state.site(&site)?;
                let after = (!r.start_after.is_empty()).then_some(r.start_after.as_str());
                let (files, more, _) = state.list_files(&site, &prefix, after, limit)?;
                Ok((rec, files, more))
            })
            .await?;
            let Some(rec) = rec else {
                return Err(ApiError::NotFound(format!(
                    "no site {:?}; create it with `sen site create {}`",
                    r.site, r.site
                )));
            };
            Ok(ListFilesResponse {
                header: Some(node.response_header()),
                deployment: rec.current.as_ref().map_or(0, |c| c.id),
                files: files
                    .into_iter()
                    .map(|f| file_info(f.path, &f.record, r.with_chunks))
                    .collect(),
                more,
            })
        })
        .await
    }

    async fn missing_chunks(
        &self,
        req: Request<MissingChunksRequest>,
    ) -> Result<Response<MissingChunksResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "MissingChunks", async {
            auth::require(&req, Action::SiteWriteAny)?;
            node.check_serving()?;
            let budget = self.budget(&req);
            // Ask the leader: it is the one that will check the deployment.
            if let Route::Forward {
                id: leader,
                addr,
                behalf,
            } = route(&node, &req)?
            {
                let msg = req.into_inner();
                return forward_to_leader!(
                    &node,
                    behalf,
                    node.peers.content(leader, &addr),
                    addr,
                    missing_chunks,
                    msg,
                    budget
                );
            }
            let ids: Vec<ChunkId> = req
                .get_ref()
                .ids
                .iter()
                .map(|b| chunk_id(b))
                .collect::<Result<_, _>>()?;
            if ids.len() > 100_000 {
                return Err(ApiError::InvalidArgument(
                    "ask about at most 100,000 chunks per call".into(),
                ));
            }
            let state = node.state.clone();
            // Unused chunks past half their grace period count as missing:
            // re-uploading renews them, so the collector cannot delete them
            // under this push.
            let half_grace = node.config.content.gc_grace.as_millis() as u64 / 2;
            let stale_before = sen_core::now_ms().saturating_sub(half_grace);
            let missing = blocking(move || Ok(state.missing_chunks(&ids, stale_before)?)).await?;
            Ok(MissingChunksResponse {
                missing: missing.into_iter().map(|id| id.0.to_vec()).collect(),
            })
        })
        .await
    }

    async fn put_chunks(&self, req: Request<PutChunksRequest>) -> Result<Response<PutChunksResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "PutChunks", async {
            auth::require(&req, Action::SiteWriteAny)?;
            node.check_serving()?;
            let budget = self.budget(&req);
            if let Route::Forward {
                id: leader,
                addr,
                behalf,
            } = route(&node, &req)?
            {
                let msg = req.into_inner();
                return forward_to_leader!(
                    &node,
                    behalf,
                    node.peers.content(leader, &addr),
                    addr,
                    put_chunks,
                    msg,
                    budget
                );
            }
            // Check every chunk before anything is proposed. Bounded: each
            // chunk decompresses to at most 1 MiB, and a request may not
            // expand to more than MAX_PUT_PLAIN_BYTES.
            let mut incoming = req.into_inner().chunks;
            if incoming.len() > MAX_PUT_CHUNKS {
                return Err(ApiError::InvalidArgument(format!(
                    "{} chunks in one request; send at most {MAX_PUT_CHUNKS}",
                    incoming.len()
                )));
            }
            let mut seen = std::collections::HashSet::new();
            incoming.retain(|c| seen.insert(c.id.clone()));
            let plain: u64 = incoming.iter().map(|c| u64::from(c.len)).sum();
            if plain > MAX_PUT_PLAIN_BYTES {
                return Err(ApiError::InvalidArgument(format!(
                    "the chunks of one request add up to {plain} bytes; send at most {MAX_PUT_PLAIN_BYTES}"
                )));
            }
            let chunks: Vec<StoredChunk> = blocking(move || {
                incoming
                    .into_iter()
                    .map(|c| {
                        let chunk = StoredChunk {
                            id: chunk_id(&c.id)?,
                            encoding: match c.encoding {
                                0 => Encoding::Raw,
                                1 => Encoding::Zstd,
                                e => return Err(ApiError::InvalidArgument(format!("unknown chunk encoding {e}"))),
                            },
                            len: c.len,
                            data: c.data,
                        };
                        if chunk.len as usize > MAX_CHUNK_BYTES || chunk.data.len() > MAX_CHUNK_BYTES + 1024 {
                            return Err(ApiError::InvalidArgument(format!(
                                "chunk {} is larger than {MAX_CHUNK_BYTES} bytes",
                                chunk.id
                            )));
                        }
                        chunk
                            .decode()
                            .map_err(|e| ApiError::InvalidArgument(format!("refused: {e}")))?;
                        Ok(chunk)
                    })
                    .collect()
            })
            .await?;
            // One Raft entry per `max-chunk-entry-bytes` of chunks.
            let max = node.config.content.max_chunk_entry_bytes;
            let (mut new, mut existing) = (0u32, 0u32);
            let mut batch: Vec<StoredChunk> = Vec::new();
            let mut size = 0usize;
            let mut pending = chunks.into_iter().peekable();
            while let Some(c) = pending.next() {
                size += c.data.len();
                batch.push(c);
                let full = pending.peek().is_none_or(|n| size + n.data.len() > max);
                if full {
                    let r = node
                        .propose(
                            None,
                            Op::PutChunks {
                                chunks: std::mem::take(&mut batch),
                            },
                            budget,
                        )
                        .await?;
                    size = 0;
                    if let Outcome::ChunksStored { new: n, existing: e } = r.outcome {
                        new += n;
                        existing += e;
                    }
                }
            }
            Ok(PutChunksResponse {
                header: Some(node.response_header()),
                new,
                existing,
            })
        })
        .await
    }

    async fn deploy(&self, req: Request<DeployRequest>) -> Result<Response<DeployResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "Deploy", async {
            auth::require(&req, Action::SiteWrite(&req.get_ref().site))?;
            node.check_serving()?;
            let budget = self.budget(&req);
            let r = req.get_ref();
            site_name(&r.site)?;
            if r.manifest.is_empty() {
                return Err(ApiError::InvalidArgument(
                    "a deployment needs its manifest's chunks".into(),
                ));
            }
            if r.author.len() > 256 || r.message.len() > 4096 {
                return Err(ApiError::InvalidArgument(
                    "author (256) or message (4096 bytes) too long".into(),
                ));
            }
            let manifest_hash: [u8; 32] = r
                .manifest_hash
                .as_slice()
                .try_into()
                .map_err(|_| ApiError::InvalidArgument("manifest_hash must be 32 bytes".into()))?;
            let manifest_bytes: u64 = r.manifest.iter().map(|c| u64::from(c.len)).sum();
            if manifest_bytes > sen_content::manifest::MAX_MANIFEST_BYTES || r.manifest.len() > 100_000 {
                return Err(ApiError::InvalidArgument(format!(
                    "a manifest of {} chunks and {manifest_bytes} bytes is over the limit ({} bytes); split the site",
                    r.manifest.len(),
                    sen_content::manifest::MAX_MANIFEST_BYTES
                )));
            }
            let manifest: Vec<ChunkRef> = r
                .manifest
                .iter()
                .map(|c| {
                    Ok(ChunkRef {
                        id: chunk_id(&c.id)?,
                        len: c.len,
                    })
                })
                .collect::<Result<_, ApiError>>()?;
            let id = request_id(&r.header)?;
            match route(&node, &req)? {
                Route::Forward {
                    id: leader,
                    addr,
                    behalf,
                } => {
                    let mut msg = req.into_inner();
                    msg.header = with_id(id);
                    forward_to_leader!(
                        &node,
                        behalf,
                        node.peers.content(leader, &addr),
                        addr,
                        deploy,
                        msg,
                        budget
                    )
                }
                Route::Local => {
                    let r = req.into_inner();
                    let d = Deploy {
                        site: r.site,
                        manifest,
                        manifest_hash,
                        base: r.base,
                        author: r.author,
                        message: r.message,
                    };
                    let resp = node.propose(id, Op::Deploy(d), budget).await?;
                    match resp.outcome {
                        Outcome::Deployed { files, bytes } => Ok(DeployResponse {
                            header: Some(node.response_header()),
                            deployment: resp.revision,
                            files,
                            bytes,
                            duplicate: resp.duplicate,
                        }),
                        Outcome::DeployRejected { reason } => Err(ApiError::FailedPrecondition(format!(
                            "deployment refused (nothing changed): {reason}"
                        ))),
                        other => Err(ApiError::Internal(format!("unexpected {other:?}"))),
                    }
                }
            }
        })
        .await
    }

    type ReadFileStream = ReceiverStream<Result<ReadFileResponse, Status>>;

    async fn read_file(&self, req: Request<ReadFileRequest>) -> Result<Response<Self::ReadFileStream>, Status> {
        let node = self.node.clone();
        let started = std::time::Instant::now();
        let result: Result<Self::ReadFileStream, ApiError> = async {
            auth::require(&req, Action::SiteRead(&req.get_ref().site))?;
            node.check_serving()?;
            let r = req.into_inner();
            site_name(&r.site)?;
            let p = path::normalize(&r.path).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
            let state = node.state.clone();
            let (site, pp) = (r.site.clone(), p.clone());
            let (rec, _) = blocking(move || Ok(state.file(&site, &pp)?)).await?;
            let rec = rec.ok_or_else(|| ApiError::NotFound(format!("no file {p:?} in site {:?}", r.site)))?;
            let end = if r.length == 0 {
                rec.size
            } else {
                r.offset.saturating_add(r.length).min(rec.size)
            };
            if r.offset > rec.size {
                return Err(ApiError::InvalidArgument(format!(
                    "offset {} is past the end ({} bytes)",
                    r.offset, rec.size
                )));
            }
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let info = file_info(p, &rec, false);
            let state = node.state.clone();
            tokio::spawn(async move {
                let mut first = Some(info);
                let mut sent_any = false;
                for piece in sen_content::range::pieces(&rec.chunks, r.offset, end) {
                    let st = state.clone();
                    let data = match tokio::task::spawn_blocking(move || crate::http::content::read_piece(&st, &piece))
                        .await
                    {
                        Ok(Ok(d)) => d,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(Status::data_loss(e))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                            return;
                        }
                    };
                    sent_any = true;
                    if tx
                        .send(Ok(ReadFileResponse {
                            data,
                            file: first.take(),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if !sent_any {
                    let _ = tx
                        .send(Ok(ReadFileResponse {
                            data: Vec::new(),
                            file: first.take(),
                        }))
                        .await;
                }
            });
            Ok(ReceiverStream::new(rx))
        }
        .await;
        let out = result.map(Response::new).map_err(Status::from);
        let code = out.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        node.metrics.observe_request("ReadFile", code, started.elapsed());
        out
    }

    async fn history(&self, req: Request<HistoryRequest>) -> Result<Response<HistoryResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "History", async {
            auth::require(&req, Action::SiteRead(&req.get_ref().site))?;
            node.check_serving()?;
            let r = req.into_inner();
            site_name(&r.site)?;
            let limit = if r.limit == 0 {
                100
            } else {
                r.limit.min(10_000) as usize
            };
            let state = node.state.clone();
            let site = r.site.clone();
            let (rec, list) = blocking(move || {
                let (rec, _) = state.site(&site)?;
                Ok((rec, state.deployments(&site, limit)?))
            })
            .await?;
            let Some(rec) = rec else {
                return Err(ApiError::NotFound(format!("no site {:?}", r.site)));
            };
            let current = rec.current.as_ref().map_or(0, |c| c.id);
            Ok(HistoryResponse {
                deployments: list
                    .into_iter()
                    .map(|d| DeploymentInfo {
                        current: d.id == current,
                        id: d.id,
                        at_ms: d.at_ms,
                        author: d.author,
                        message: d.message,
                        files: d.files,
                        bytes: d.bytes,
                        new_chunks: d.new_chunks,
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn collect_garbage(
        &self,
        req: Request<CollectGarbageRequest>,
    ) -> Result<Response<CollectGarbageResponse>, Status> {
        let node = self.node.clone();
        measured(&node, "CollectGarbage", async {
            node.check_serving()?;
            let budget = self.budget(&req);
            let id = request_id(&req.get_ref().header)?;
            match route(&node, &req)? {
                Route::Forward {
                    id: leader,
                    addr,
                    behalf,
                } => {
                    let mut msg = req.into_inner();
                    msg.header = with_id(id);
                    forward_to_leader!(
                        &node,
                        behalf,
                        node.peers.content(leader, &addr),
                        addr,
                        collect_garbage,
                        msg,
                        budget
                    )
                }
                Route::Local => {
                    let grace_ms = req
                        .into_inner()
                        .grace_ms
                        .unwrap_or(node.config.content.gc_grace.as_millis() as u64);
                    let r = node
                        .propose(
                            id,
                            Op::CollectGarbage {
                                grace_ms,
                                limit: 10_000,
                            },
                            budget,
                        )
                        .await?;
                    let Outcome::GarbageCollected { chunks, bytes, more } = r.outcome else {
                        return Err(ApiError::Internal(format!("unexpected {:?}", r.outcome)));
                    };
                    Ok(CollectGarbageResponse {
                        header: Some(node.response_header()),
                        chunks,
                        bytes,
                        more,
                    })
                }
            }
        })
        .await
    }
}
