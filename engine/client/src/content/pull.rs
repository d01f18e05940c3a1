//! Pulling a site (or the files under a prefix) into a local directory,
//! every file verified against its blake3.

use std::path::Path;
use std::time::UNIX_EPOCH;

use sen_content::path;
use sen_proto::v1::*;
use tonic::Code;

use crate::{Client, ClientError};

use super::err;

impl Client {
    /// Download `site`'s files under `prefix` into `dir`, verifying each
    /// file's blake3. Returns (files, bytes).
    pub async fn pull(&self, site: &str, prefix: &str, dir: &Path) -> Result<(u64, u64), ClientError> {
        let (files, _) = self.list_files(site, prefix, false).await?;
        let (mut n, mut bytes) = (0u64, 0u64);
        for f in files {
            // Never trust a path from the wire with the local file system.
            let rel = path::normalize(&f.path).map_err(|e| {
                err(
                    Code::DataLoss,
                    format!("the cluster listed an invalid path {:?}: {e}", f.path),
                )
            })?;
            let target = dir.join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| err(Code::Internal, format!("cannot create {}: {e}", parent.display())))?;
            }
            let mut tmp_name = target.file_name().unwrap_or_default().to_os_string();
            tmp_name.push(".sen-part");
            let tmp = target.with_file_name(tmp_name);
            // A node that has not applied the listed deployment yet (or a
            // deployment landing meanwhile) gives other bytes: try again a
            // few times before calling it an error.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.download_to(site, &f, &tmp).await {
                    Ok(()) => break,
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        if attempt >= 3 || e.code() != Some(Code::DataLoss) {
                            return Err(e);
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                    }
                }
            }
            std::fs::rename(&tmp, &target)
                .map_err(|e| err(Code::Internal, format!("cannot write {}: {e}", target.display())))?;
            n += 1;
            bytes += f.size;
        }
        Ok((n, bytes))
    }

    /// Download one listed file into `tmp`, checking its blake3, and set
    /// its modification time.
    async fn download_to(&self, site: &str, f: &FileInfo, tmp: &Path) -> Result<(), ClientError> {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(tmp)
                .map_err(|e| err(Code::Internal, format!("cannot create {}: {e}", tmp.display())))?,
        );
        let mut hasher = blake3::Hasher::new();
        self.read_file(site, &f.path, 0, 0, |d| {
            hasher.update(d);
            std::io::Write::write_all(&mut out, d)
        })
        .await?;
        let file = out.into_inner().map_err(|e| err(Code::Internal, e.to_string()))?;
        if hasher.finalize().as_bytes().as_slice() != f.blake3.as_slice() {
            return Err(err(
                Code::DataLoss,
                format!("{} does not match its blake3 after download", f.path),
            ));
        }
        let _ = file.set_modified(UNIX_EPOCH + std::time::Duration::from_millis(f.mtime_ms));
        Ok(())
    }
}
