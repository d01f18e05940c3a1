//! Where a repository URL points, and whether a node may write there
//! (`[backup] allowed-repos`). Pure parsing: shared by the node's
//! configuration check and the backup services.

use crate::RepoError;

/// Where a repository URL points, for comparing it with the locations a
/// node allows (`[backup] allowed-repos`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory, as its normal components (`..` is refused).
    File(Vec<String>),
    /// An S3 bucket and the key prefix inside it, as components.
    S3 { bucket: String, prefix: Vec<String> },
}

impl Location {
    /// Parse `file:///absolute/path` or `s3://bucket[/prefix]`. `.`, empty
    /// components and trailing slashes are ignored; `..` is refused (a
    /// location must say where it is without being resolved).
    pub fn parse(url: &str) -> Result<Self, String> {
        let components = |rest: &str| -> Result<Vec<String>, String> {
            let mut out = Vec::new();
            for c in rest.split('/') {
                match c {
                    "" | "." => {}
                    ".." => return Err(format!("{url:?} contains \"..\"; give the location without it")),
                    c => out.push(c.to_owned()),
                }
            }
            Ok(out)
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url:?}: a file location needs an absolute path, as in file:///var/backups/sen"
                ));
            }
            return Ok(Location::File(components(path)?));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{url:?} names no bucket: use s3://bucket/prefix"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: components(prefix)?,
            });
        }
        Err(format!("{url:?} is not a file:/// or s3:// location"))
    }

    /// Whether this location is `other` or inside it (by whole components:
    /// `file:///srv/backup` does not contain `file:///srv/backup2`).
    pub fn is_within(&self, other: &Location) -> bool {
        match (self, other) {
            (Location::File(p), Location::File(q)) => p.starts_with(q),
            (Location::S3 { bucket: b, prefix: p }, Location::S3 { bucket: c, prefix: q }) => {
                b == c && p.starts_with(q)
            }
            _ => false,
        }
    }
}

/// Refuse a repository URL outside every allowed location, with an error
/// that says what to configure.
pub fn check_allowed(url: &str, allowed: &[String], node: u64) -> Result<(), RepoError> {
    let location = Location::parse(url).map_err(|e| RepoError::Usage(format!("repository URL {e}")))?;
    let inside = allowed
        .iter()
        .filter_map(|a| Location::parse(a).ok())
        .any(|a| location.is_within(&a));
    if inside {
        return Ok(());
    }
    let allowed_list = if allowed.is_empty() {
        "none".to_owned()
    } else {
        allowed.join(", ")
    };
    Err(RepoError::Usage(format!(
        "node {node} does not write backups to {url:?}: it is outside [backup] allowed-repos ({allowed_list}); \
         add the repository (or a directory or bucket holding it) to allowed-repos in every node's configuration"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_locations_are_accepted() {
        let allowed = vec!["file:///srv/backup/".to_owned(), "s3://portal-backups/sen".to_owned()];
        for ok in [
            "file:///srv/backup",
            "file:///srv/backup/sen",
            "file:///srv//backup/./sen/",
            "s3://portal-backups/sen",
            "s3://portal-backups/sen/2026",
        ] {
            check_allowed(ok, &allowed, 1).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("file:///srv/backup2", "outside [backup] allowed-repos"),
            ("file:///srv/backup/../../etc", "contains \"..\""),
            ("file:///etc", "outside"),
            ("s3://portal-backups/other", "outside"),
            ("s3://portal-backups", "outside"),
            ("s3://another/sen", "outside"),
            ("s3:///sen", "names no bucket"),
            ("file://relative", "absolute path"),
            ("http://x/y", "not a file:/// or s3://"),
        ] {
            let e = check_allowed(bad, &allowed, 1).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = check_allowed("file:///srv/backup", &[], 3).unwrap_err().to_string();
        assert!(e.contains("node 3") && e.contains("(none)"), "{e}");
    }
}
