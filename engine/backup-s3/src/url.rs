//! Opening a repository's object store from its URL.

use std::sync::Arc;

use sen_backup::{LocalStore, ObjectStore, RepoError};

use crate::{S3Options, S3Store};

/// Open the object store a repository URL names: `file:///absolute/path`
/// or `s3://bucket[/prefix]`. An S3 endpoint, region, credentials and
/// addressing come from the standard AWS environment and profile chain and
/// `SEN_S3_PATH_STYLE` (see the crate docs).
pub async fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>, RepoError> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(RepoError::Usage(format!(
                "repository URL {url:?}: a file repository needs an absolute path, as in file:///var/backups/sen"
            )));
        }
        return Ok(Arc::new(LocalStore::new(path)?));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3Store::open(url, S3Options::default()).await?));
    }
    Err(RepoError::Usage(format!(
        "repository URL {url:?} is not supported: use file:///absolute/path or s3://bucket/prefix"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_checked_before_anything_is_opened() {
        for (url, says) in [
            ("file://relative/path", "needs an absolute path"),
            ("ftp://host/x", "is not supported"),
            ("/var/backups", "is not supported"),
        ] {
            let e = open_store(url).await.err().expect("refused").to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        assert!(
            open_store(&url)
                .await
                .unwrap()
                .describe()
                .contains(&dir.path().display().to_string())
        );
    }
}
