//! Site content in the replicated state: chunks with reference counts,
//! sites, deployments and the file index, and how content commands apply.
//!
//! Reference counting: each *deployment* holds one reference on every
//! distinct chunk it uses (its files' chunks and its manifest's chunks).
//! Deploying moves the site's references from the old tree to the new one
//! (only the difference is touched); deleting a site drops its references.
//! A chunk with no reference is remembered with the replicated time it
//! became unreferenced (or was uploaded), and `CollectGarbage` deletes it
//! once that is older than the grace period — so chunks of a push that never
//! committed are collected too, and a push in progress is not raced.
//! Everything depends only on the log, so every node deletes the same
//! chunks at the same index.

use std::collections::{BTreeMap, BTreeSet};

use sen_content::manifest::MAX_MANIFEST_BYTES;
use sen_content::{ChunkId, ChunkRef, Manifest, StoredChunk};

use crate::apply::{Applier, Mutation, StateError, StateView};
use crate::command::{Deploy, Outcome};
use crate::schema::records::{ChunkMeta, CurrentDeployment, DeploymentInfo, FileRecord, SiteRecord};
use crate::schema::system::QuotaKind;

/// Read access to content state (part of [`StateView`]).
pub trait ContentView {
    fn chunk_meta(&self, id: &ChunkId) -> Result<Option<ChunkMeta>, StateError>;
    fn chunk(&self, id: &ChunkId) -> Result<Option<StoredChunk>, StateError>;
    fn site(&self, name: &str) -> Result<Option<SiteRecord>, StateError>;
    /// Up to `limit` unreferenced chunks, oldest first, unreferenced before
    /// `before_ms`.
    fn zero_chunks(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, ChunkId)>, StateError>;
}

#[cfg(test)]
mod tests;

fn corrupt(e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt(e.to_string())
}

impl<V: StateView> Applier<'_, V> {
    pub(crate) fn meta(&self, id: &ChunkId) -> Result<Option<ChunkMeta>, StateError> {
        match self.chunk_meta.get(id) {
            Some(m) => Ok(*m),
            None => self.view.chunk_meta(id),
        }
    }

    fn set_meta(&mut self, id: ChunkId, old: Option<ChunkMeta>, new: ChunkMeta) {
        // And the unreferenced bytes with both.
        let unreferenced = |m: Option<ChunkMeta>| m.filter(|m| m.refs == 0).map_or(0, |m| i64::from(m.stored_len));
        self.unreferenced_delta += unreferenced(Some(new)) - unreferenced(old);
        // Keep the unreferenced-chunk index in step with `refs`.
        if let Some(o) = old
            && o.refs == 0
            && (new.refs != 0 || new.zero_since_ms != o.zero_since_ms)
        {
            self.mutations.push(Mutation::DeleteZeroChunk {
                at_ms: o.zero_since_ms,
                id,
            });
        }
        if new.refs == 0 && old.is_none_or(|o| o.refs != 0 || o.zero_since_ms != new.zero_since_ms) {
            self.mutations.push(Mutation::PutZeroChunk {
                at_ms: new.zero_since_ms,
                id,
            });
        }
        self.chunk_meta.insert(id, Some(new));
        self.mutations.push(Mutation::PutChunkMeta { id, meta: new });
    }

    fn stored_chunk(&self, id: &ChunkId) -> Result<Option<StoredChunk>, StateError> {
        match self.chunk_data.get(id) {
            Some(c) => Ok(Some(c.clone())),
            None if self.chunk_meta.get(id).is_some_and(Option::is_none) => Ok(None),
            None => self.view.chunk(id),
        }
    }

    pub(crate) fn site_record(&self, name: &str) -> Result<Option<SiteRecord>, StateError> {
        match self.sites.get(name) {
            Some(s) => Ok(s.clone()),
            None => self.view.site(name),
        }
    }

    fn set_site(&mut self, name: &str, rec: Option<SiteRecord>) {
        self.sites.insert(name.to_owned(), rec.clone());
        self.mutations.push(match rec {
            Some(rec) => Mutation::PutSite {
                site: name.to_owned(),
                rec,
            },
            None => Mutation::DeleteSite { site: name.to_owned() },
        });
    }

    pub(crate) fn create_site(&mut self, site: &str, now: u64) -> Result<Outcome, StateError> {
        if self.site_record(site)?.is_some() {
            return Ok(Outcome::SiteCreated { created: false });
        }
        self.set_site(
            site,
            Some(SiteRecord {
                created_at_ms: now,
                current: None,
            }),
        );
        Ok(Outcome::SiteCreated { created: true })
    }

    pub(crate) fn put_chunks(&mut self, chunks: &[StoredChunk], now: u64) -> Result<Outcome, StateError> {
        let (mut new, mut existing) = (0u32, 0u32);
        for c in chunks {
            match self.meta(&c.id)? {
                Some(m) => {
                    existing += 1;
                    // An unreferenced chunk uploaded again gets a fresh
                    // grace period: a push is about to use it.
                    if m.refs == 0 {
                        self.set_meta(
                            c.id,
                            Some(m),
                            ChunkMeta {
                                zero_since_ms: now,
                                ..m
                            },
                        );
                    }
                }
                None => {
                    new += 1;
                    let meta = ChunkMeta {
                        refs: 0,
                        zero_since_ms: now,
                        len: c.len,
                        stored_len: c.data.len() as u32,
                    };
                    self.chunk_data.insert(c.id, c.clone());
                    self.mutations.push(Mutation::PutChunk { chunk: c.clone() });
                    self.set_meta(c.id, None, meta);
                }
            }
        }
        Ok(Outcome::ChunksStored { new, existing })
    }

    /// Reassemble and check a manifest from stored chunks. The size is
    /// bounded from the stored lengths before anything is decoded.
    fn load_manifest(&self, refs: &[ChunkRef], hash: &[u8; 32]) -> Result<Result<Manifest, String>, StateError> {
        let mut total = 0u64;
        for r in refs {
            match self.meta(&r.id)? {
                None => return Ok(Err(format!("manifest chunk {} is not stored; re-run the push", r.id))),
                Some(m) if m.len != r.len => {
                    return Ok(Err(format!(
                        "manifest chunk {} is {} bytes, the deploy says {}",
                        r.id, m.len, r.len
                    )));
                }
                Some(m) => total += u64::from(m.len),
            }
        }
        if total > MAX_MANIFEST_BYTES {
            return Ok(Err(format!(
                "the manifest is {total} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit; split the site"
            )));
        }
        let mut buf = Vec::with_capacity(total as usize);
        for r in refs {
            let Some(c) = self.stored_chunk(&r.id)? else {
                return Ok(Err(format!("manifest chunk {} is not stored; re-run the push", r.id)));
            };
            match c.decode() {
                Ok(plain) => buf.extend_from_slice(&plain),
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        if blake3::hash(&buf).as_bytes() != hash {
            return Ok(Err("the manifest's chunks do not match its hash".into()));
        }
        Ok(Manifest::decode(&buf)
            .and_then(|m| m.validate().map(|()| m))
            .map_err(|e| e.to_string()))
    }

    /// The distinct chunks a deployment holds a reference on.
    /// (Ordered, so mutations come out in the same order on every node.)
    fn deployment_chunks(manifest_refs: &[ChunkRef], m: &Manifest) -> BTreeSet<ChunkId> {
        m.chunk_ids().chain(manifest_refs.iter().map(|r| r.id)).collect()
    }

    fn current_chunks(&self, site: &SiteRecord) -> Result<BTreeSet<ChunkId>, StateError> {
        let Some(cur) = &site.current else {
            return Ok(BTreeSet::new());
        };
        match self.load_manifest(&cur.manifest, &cur.manifest_hash)? {
            Ok(m) => Ok(Self::deployment_chunks(&cur.manifest, &m)),
            // The current manifest is referenced, so it must be stored.
            Err(e) => Err(corrupt(format!("current manifest unreadable: {e}"))),
        }
    }

    fn add_ref(&mut self, id: ChunkId) -> Result<(), StateError> {
        let m = self
            .meta(&id)?
            .ok_or_else(|| corrupt(format!("chunk {id} has no metadata")))?;
        self.set_meta(id, Some(m), ChunkMeta { refs: m.refs + 1, ..m });
        Ok(())
    }

    fn drop_ref(&mut self, id: ChunkId, now: u64) -> Result<(), StateError> {
        let m = self
            .meta(&id)?
            .ok_or_else(|| corrupt(format!("chunk {id} has no metadata")))?;
        let refs = m.refs.saturating_sub(1);
        let zero_since_ms = if refs == 0 { now } else { m.zero_since_ms };
        self.set_meta(
            id,
            Some(m),
            ChunkMeta {
                refs,
                zero_since_ms,
                ..m
            },
        );
        Ok(())
    }

    pub(crate) fn deploy(&mut self, d: &Deploy, index: u64, now: u64) -> Result<Outcome, StateError> {
        let reject = |reason: String| Ok(Outcome::DeployRejected { reason });
        let Some(site) = self.site_record(&d.site)? else {
            return reject(format!(
                "site {:?} does not exist; create it with `sen site create {}`",
                d.site, d.site
            ));
        };
        let current_id = site.current.as_ref().map_or(0, |c| c.id);
        if let Some(base) = d.base
            && base != current_id
        {
            return reject(format!(
                "site {} changed while you were pushing (deployment {current_id}, you started from {base}); run the push again",
                d.site
            ));
        }
        let manifest = match self.load_manifest(&d.manifest, &d.manifest_hash)? {
            Ok(m) => m,
            Err(e) => return reject(e),
        };
        let bytes = manifest.total_bytes();
        let before = site.current.as_ref().map_or(0, |c| c.bytes);
        if let Some(refused) = self.quota_check(QuotaKind::Site, &d.site, before, bytes)? {
            return Ok(refused);
        }
        let new_set = Self::deployment_chunks(&d.manifest, &manifest);
        // Every chunk must be stored, with the length the manifest gives it
        // (a wrong length would make ranges and downloads wrong).
        let mut lens: BTreeMap<ChunkId, u32> = BTreeMap::new();
        for c in manifest.files.iter().flat_map(|f| &f.chunks) {
            if *lens.entry(c.id).or_insert(c.len) != c.len {
                return reject(format!("the manifest gives chunk {} two different lengths", c.id));
            }
        }
        let mut missing = 0usize;
        let mut example = None;
        for id in &new_set {
            match self.meta(id)? {
                None => {
                    missing += 1;
                    example.get_or_insert(*id);
                }
                Some(m) => {
                    if let Some(&len) = lens.get(id)
                        && len != m.len
                    {
                        return reject(format!(
                            "the manifest says chunk {id} is {len} bytes, it is stored with {}; the manifest is wrong",
                            m.len
                        ));
                    }
                }
            }
        }
        if let Some(id) = example {
            return reject(format!(
                "{missing} chunks the manifest uses are not stored (e.g. {id}); they may have been collected: run the push again"
            ));
        }
        let old_set = self.current_chunks(&site)?;
        let mut new_chunks = 0u64;
        for id in new_set.difference(&old_set) {
            self.add_ref(*id)?;
            new_chunks += 1;
        }
        for id in old_set.difference(&new_set) {
            self.drop_ref(*id, now)?;
        }
        let files: Vec<(String, FileRecord)> = manifest
            .files
            .iter()
            .map(|f| {
                (
                    f.path.clone(),
                    FileRecord {
                        deployment: index,
                        size: f.size,
                        blake3: f.blake3,
                        mtime_ms: f.mtime_ms,
                        chunks: f.chunks.clone(),
                    },
                )
            })
            .collect();
        let nfiles = manifest.files.len() as u64;
        self.mutations.push(Mutation::ReplaceFiles {
            site: d.site.clone(),
            files,
        });
        self.mutations.push(Mutation::PutDeployment {
            site: d.site.clone(),
            info: DeploymentInfo {
                id: index,
                at_ms: now,
                author: d.author.clone(),
                message: d.message.clone(),
                files: nfiles,
                bytes,
                new_chunks,
            },
        });
        self.set_site(
            &d.site,
            Some(SiteRecord {
                current: Some(CurrentDeployment {
                    id: index,
                    manifest: d.manifest.clone(),
                    manifest_hash: d.manifest_hash,
                    files: nfiles,
                    bytes,
                }),
                ..site
            }),
        );
        Ok(Outcome::Deployed { files: nfiles, bytes })
    }

    pub(crate) fn delete_site(&mut self, name: &str, now: u64) -> Result<Outcome, StateError> {
        let Some(site) = self.site_record(name)? else {
            return Ok(Outcome::SiteDeleted { deleted: false });
        };
        for id in self.current_chunks(&site)? {
            self.drop_ref(id, now)?;
        }
        self.mutations.push(Mutation::DeleteFiles { site: name.to_owned() });
        self.mutations
            .push(Mutation::DeleteDeployments { site: name.to_owned() });
        self.set_site(name, None);
        Ok(Outcome::SiteDeleted { deleted: true })
    }

    /// The first `limit` entries of the unreferenced-chunk index before
    /// `before_ms`, *as of this entry*: the view (state at the start of the
    /// batch) corrected by what earlier entries of this batch changed. So
    /// the result — which chunks are deleted — does not depend on how
    /// entries were grouped into batches.
    fn zero_index(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, ChunkId)>, StateError> {
        let mut overlay: BTreeMap<(u64, ChunkId), bool> = BTreeMap::new();
        for m in &self.mutations {
            match m {
                Mutation::PutZeroChunk { at_ms, id } => {
                    overlay.insert((*at_ms, *id), true);
                }
                Mutation::DeleteZeroChunk { at_ms, id } => {
                    overlay.insert((*at_ms, *id), false);
                }
                _ => {}
            }
        }
        // Enough of the view that, after removing what this batch deleted,
        // its first `limit` entries are still all there.
        let removed = overlay.values().filter(|present| !**present).count();
        let mut index: BTreeSet<(u64, ChunkId)> =
            self.view.zero_chunks(before_ms, limit + removed)?.into_iter().collect();
        for (key, present) in overlay {
            if !present {
                index.remove(&key);
            } else if key.0 < before_ms {
                index.insert(key);
            }
        }
        Ok(index.into_iter().take(limit).collect())
    }

    pub(crate) fn collect_garbage(&mut self, grace_ms: u64, limit: u32, now: u64) -> Result<Outcome, StateError> {
        let Some(before) = (now + 1).checked_sub(grace_ms) else {
            return Ok(Outcome::GarbageCollected {
                chunks: 0,
                bytes: 0,
                more: false,
            });
        };
        let found = self.zero_index(before, limit as usize)?;
        let more = found.len() == limit as usize;
        let (mut chunks, mut bytes) = (0u64, 0u64);
        for (at_ms, id) in found {
            match self.meta(&id)? {
                Some(m) if m.refs == 0 && m.zero_since_ms == at_ms => {
                    chunks += 1;
                    bytes += u64::from(m.stored_len);
                    self.unreferenced_delta -= i64::from(m.stored_len);
                    self.chunk_meta.insert(id, None);
                    self.chunk_data.remove(&id);
                    self.mutations.push(Mutation::DeleteZeroChunk { at_ms, id });
                    self.mutations.push(Mutation::DeleteChunk { id });
                }
                // Referenced again, or re-uploaded: the index entry is stale.
                _ => self.mutations.push(Mutation::DeleteZeroChunk { at_ms, id }),
            }
        }
        Ok(Outcome::GarbageCollected { chunks, bytes, more })
    }
}
