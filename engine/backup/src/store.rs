//! The object-store abstraction every repository backend implements, and
//! the local-directory backend (`file:///path`, the embedded default).
//!
//! The repository needs very little from a store, on purpose, so that any
//! S3-compatible server works:
//! - whole-object `put` (objects are written once and never modified),
//! - `put_if_absent` (conditional create, S3's `If-None-Match: *`) for the
//!   few objects that must have a single writer,
//! - `get`, ranged `get_range`, `list` by prefix, idempotent `delete`.
//!
//! Keys are `/`-separated relative paths such as `data/ab/abcdef…`. Every
//! backend must pass [`conformance::run`].

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// An object-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object does not exist.
    #[error("object {key} does not exist in {store}")]
    NotFound { store: String, key: String },
    /// The key is not a valid object key (a bug or a corrupt listing).
    #[error("invalid object key {key:?}: {why}")]
    InvalidKey { key: String, why: &'static str },
    /// Anything else: I/O, network, permissions, the server's answer.
    #[error("{op} {key} in {store} failed: {detail}")]
    Failed {
        op: &'static str,
        store: String,
        key: String,
        detail: String,
        /// Whether trying again may succeed.
        retry: RetryClass,
    },
}

/// Whether an object-store failure may go away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// A dropped connection, a timeout, a throttled or failing server:
    /// the same request may succeed later.
    Transient,
    /// Wrong credentials, a missing bucket, a full or read-only disk, a
    /// refused request: repeating it cannot help.
    Permanent,
}

impl ObjectError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ObjectError::NotFound { .. })
    }

    /// Whether retrying may help (only ever for `Failed`).
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ObjectError::Failed { retry, .. } => *retry,
            ObjectError::NotFound { .. } | ObjectError::InvalidKey { .. } => RetryClass::Permanent,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.retry_class() == RetryClass::Transient
    }
}

/// The retry class of a local I/O error: interruptions and timeouts pass,
/// everything else (permissions, a full disk, a missing directory) stays.
pub fn io_retry_class(e: &std::io::Error) -> RetryClass {
    use std::io::ErrorKind::*;
    match e.kind() {
        Interrupted | TimedOut | WouldBlock => RetryClass::Transient,
        _ => RetryClass::Permanent,
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// A place that holds a repository's objects.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Where it is, for messages (`file:///backups/sen`, `s3://bucket/prefix`).
    fn describe(&self) -> String;

    /// Store `data` under `key`, replacing any object there. Durable when it
    /// returns (fsynced, or acknowledged by the server).
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), ObjectError>;

    /// Store `data` under `key` only if no object is there. Returns `false`
    /// (and changes nothing) when one exists. Atomic with respect to other
    /// writers: of two concurrent calls, exactly one returns `true`.
    async fn put_if_absent(&self, key: &str, data: Vec<u8>) -> Result<bool, ObjectError>;

    /// The whole object.
    async fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError>;

    /// `len` bytes from `offset` (fewer only if the object ends first).
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, ObjectError>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError>;

    /// Remove `key`; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), ObjectError>;

    /// Free and total bytes of the storage under the repository, when the
    /// store can tell (a local directory's file system; an S3 bucket has no
    /// capacity to report): what the growth report's forecast divides.
    fn space(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Check that `store` honours conditional creates (S3's `If-None-Match: *`):
/// some S3-compatible servers silently ignore it, and such a store cannot
/// keep a repository's single-writer objects safe. Writes and removes one
/// probe object under `locks/`.
pub async fn probe_conditional_create(store: &dyn ObjectStore) -> Result<(), ObjectError> {
    let key = format!("locks/probe-{}", hex::encode(rand::random::<[u8; 8]>()));
    let unsafe_store = |why: &str| ObjectError::Failed {
        op: "probe conditional create",
        store: store.describe(),
        key: key.clone(),
        detail: format!(
            "{why}: this store ignores conditional creates (If-None-Match: *) and cannot hold a Sen repository safely; \
             use AWS S3, SeaweedFS, MinIO, or another server that implements conditional writes"
        ),
        retry: RetryClass::Permanent,
    };
    let result = async {
        if !store.put_if_absent(&key, b"probe 1".to_vec()).await? {
            return Err(unsafe_store("a fresh probe object already existed"));
        }
        if store.put_if_absent(&key, b"probe 2".to_vec()).await? {
            return Err(unsafe_store(
                "a second conditional create of the probe object succeeded",
            ));
        }
        if store.get(&key).await? != b"probe 1" {
            return Err(unsafe_store(
                "a refused conditional create still overwrote the probe object",
            ));
        }
        Ok(())
    }
    .await;
    let cleanup = store.delete(&key).await;
    result?;
    cleanup
}

/// Reject keys that could escape the store or are not portable.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    let bad = |why| {
        Err(ObjectError::InvalidKey {
            key: key.to_owned(),
            why,
        })
    };
    if key.is_empty() || key.len() > 512 {
        return bad("empty or longer than 512 bytes");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return bad("starts or ends with '/'");
    }
    for part in key.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return bad("has an empty, '.' or '..' component");
        }
        if part.starts_with(".tmp-") {
            return bad("uses the reserved '.tmp-' prefix");
        }
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
    {
        return bad("may only hold ASCII letters, digits and '/-_.'");
    }
    Ok(())
}

/// A repository in a local directory. Writes go to a temporary file that is
/// fsynced and then renamed (or hard-linked, for `put_if_absent`) into place,
/// and the directory is fsynced, so an object is either absent or whole.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ObjectError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| ObjectError::Failed {
            op: "create directory",
            store: format!("file://{}", root.display()),
            key: String::new(),
            detail: e.to_string(),
            retry: io_retry_class(&e),
        })?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn space_of(root: &Path) -> Option<(u64, u64)> {
        let st = nix::sys::statvfs::statvfs(root).ok()?;
        let frsize = st.fragment_size() as u64;
        let total = st.blocks() as u64 * frsize;
        Some(((st.blocks_available() as u64 * frsize).min(total), total))
    }

    fn fail(&self, op: &'static str, key: &str, e: std::io::Error) -> ObjectError {
        ObjectError::Failed {
            op,
            store: self.describe(),
            key: key.to_owned(),
            detail: e.to_string(),
            retry: io_retry_class(&e),
        }
    }

    fn not_found_or(&self, op: &'static str, key: &str, e: std::io::Error) -> ObjectError {
        if e.kind() == std::io::ErrorKind::NotFound {
            ObjectError::NotFound {
                store: self.describe(),
                key: key.to_owned(),
            }
        } else {
            self.fail(op, key, e)
        }
    }

    /// Write `data` to a fresh temporary file next to `key`'s path, fsynced.
    fn write_temp(&self, key: &str, data: &[u8]) -> Result<(PathBuf, PathBuf), ObjectError> {
        check_key(key)?;
        let path = self.root.join(key);
        let dir = path.parent().unwrap_or(&self.root).to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| self.fail("create directory for", key, e))?;
        let tmp = dir.join(format!(".tmp-{}", hex::encode(rand::random::<[u8; 8]>())));
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.fail("create temporary file for", key, e))?;
        let written = f.write_all(data).and_then(|()| f.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.fail("write", key, e));
        }
        Ok((tmp, path))
    }

    fn sync_dir(&self, key: &str, path: &Path) -> Result<(), ObjectError> {
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.fail("fsync directory of", key, e))
    }

    fn list_sync(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        // Walk only the directory the prefix lies in.
        let start = match prefix.rfind('/') {
            Some(i) => self.root.join(&prefix[..i]),
            None => self.root.clone(),
        };
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.fail("list", prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.fail("list", prefix, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") {
                    continue;
                }
                let ft = entry.file_type().map_err(|e| self.fail("list", prefix, e))?;
                let path = entry.path();
                let rel = path
                    .strip_prefix(&self.root)
                    .map_err(|e| self.fail("list", prefix, std::io::Error::other(e)))?
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                if ft.is_dir() {
                    if rel.starts_with(prefix) || prefix.starts_with(&format!("{rel}/")) {
                        stack.push(path);
                    }
                } else if ft.is_file() && rel.starts_with(prefix) {
                    let size = entry.metadata().map_err(|e| self.fail("list", prefix, e))?.len();
                    out.push(ObjectInfo { key: rel, size });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn space(&self) -> Option<(u64, u64)> {
        Self::space_of(&self.root)
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), ObjectError> {
        let (tmp, path) = self.write_temp(key, &data)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.fail("rename into place", key, e)
        })?;
        self.sync_dir(key, &path)
    }

    async fn put_if_absent(&self, key: &str, data: Vec<u8>) -> Result<bool, ObjectError> {
        let (tmp, path) = self.write_temp(key, &data)?;
        // link(2) fails if the target exists: an atomic create-if-absent.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.sync_dir(key, &path)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.fail("create", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        check_key(key)?;
        std::fs::read(self.root.join(key)).map_err(|e| self.not_found_or("read", key, e))
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, ObjectError> {
        use std::io::{Read, Seek, SeekFrom};
        check_key(key)?;
        let mut f = std::fs::File::open(self.root.join(key)).map_err(|e| self.not_found_or("open", key, e))?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| self.fail("seek", key, e))?;
        let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
        f.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| self.fail("read", key, e))?;
        Ok(buf)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        self.list_sync(prefix)
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        check_key(key)?;
        match std::fs::remove_file(self.root.join(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.fail("delete", key, e)),
        }
    }
}

/// The behaviour every backend must show. Run it against a fresh, empty
/// store: `conformance::run(&store).await` panics with a precise message on
/// the first deviation.
pub mod conformance {
    use super::*;

    pub async fn run(store: &dyn ObjectStore) {
        let d = store.describe();
        // get / put / overwrite
        let e = store
            .get("conf/missing")
            .await
            .expect_err("get of a missing key must fail");
        assert!(e.is_not_found(), "{d}: missing object must be NotFound, got {e}");
        store.put("conf/a", b"hello".to_vec()).await.expect("put");
        assert_eq!(store.get("conf/a").await.expect("get"), b"hello");
        store.put("conf/a", b"world!".to_vec()).await.expect("overwrite");
        assert_eq!(store.get("conf/a").await.expect("get"), b"world!");
        // empty objects
        store.put("conf/empty", Vec::new()).await.expect("put empty");
        assert_eq!(store.get("conf/empty").await.expect("get empty"), b"");
        // ranges
        assert_eq!(store.get_range("conf/a", 1, 3).await.expect("range"), b"orl");
        assert_eq!(store.get_range("conf/a", 4, 100).await.expect("range past end"), b"d!");
        let e = store.get_range("conf/nope", 0, 1).await.expect_err("range of missing");
        assert!(
            e.is_not_found(),
            "{d}: ranged get of a missing object must be NotFound, got {e}"
        );
        // conditional create
        assert!(store.put_if_absent("conf/lock", b"one".to_vec()).await.expect("create"));
        assert!(
            !store
                .put_if_absent("conf/lock", b"two".to_vec())
                .await
                .expect("second create")
        );
        assert_eq!(
            store.get("conf/lock").await.expect("get lock"),
            b"one",
            "{d}: put_if_absent overwrote an existing object: this store ignores conditional writes"
        );
        // concurrent creators: exactly one wins
        let results =
            futures::future::join_all((0..8).map(|i| store.put_if_absent("conf/race", format!("w{i}").into_bytes())))
                .await;
        let wins = results
            .into_iter()
            .map(|r| r.expect("racing create"))
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1, "{d}: {wins} of 8 concurrent conditional creates succeeded");
        // a larger object, exact bytes
        let big: Vec<u8> = (0..(3 << 20) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        store.put("conf/big/x", big.clone()).await.expect("put 3 MiB");
        assert_eq!(store.get("conf/big/x").await.expect("get 3 MiB"), big);
        assert_eq!(
            store.get_range("conf/big/x", 1 << 20, 10).await.expect("range in big"),
            &big[1 << 20..(1 << 20) + 10]
        );
        // listing: prefix, sorted, sizes, nested keys, more than 1000 keys
        let names: Vec<String> = (0..1100).map(|i| format!("conf/many/{:02x}/{i:05}", i % 7)).collect();
        {
            use futures::StreamExt;
            let puts: Vec<_> = futures::stream::iter(names.iter().map(|k| store.put(k, vec![1, 2, 3])))
                .buffer_unordered(32)
                .collect()
                .await;
            puts.into_iter().for_each(|r| r.expect("put many"));
        }
        let listed = store.list("conf/many/").await.expect("list many");
        let mut want = names.clone();
        want.sort();
        assert_eq!(
            listed.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
            want,
            "{d}: listing of 1100 keys"
        );
        assert!(listed.iter().all(|o| o.size == 3), "{d}: listed sizes");
        let top = store.list("conf/").await.expect("list conf");
        assert!(
            top.iter().any(|o| o.key == "conf/a" && o.size == 6),
            "{d}: list conf/ misses conf/a: {top:?}"
        );
        assert!(
            top.windows(2).all(|w| w[0].key < w[1].key),
            "{d}: listing is not sorted"
        );
        let partial = store.list("conf/big/").await.expect("list big");
        assert_eq!(partial.len(), 1);
        assert!(store.list("nothing-here/").await.expect("list empty").is_empty());
        // delete is idempotent
        store.delete("conf/a").await.expect("delete");
        store.delete("conf/a").await.expect("delete again");
        assert!(store.get("conf/a").await.expect_err("deleted").is_not_found());
        // invalid keys are refused before touching anything
        for bad in ["../escape", "/abs", "a//b", "a/./b", ""] {
            assert!(
                store.put(bad, vec![1]).await.is_err(),
                "{d}: key {bad:?} must be refused"
            );
        }
        // Leave the store empty, so the suite can run again on it.
        for o in store.list("conf/").await.expect("list for cleanup") {
            store.delete(&o.key).await.expect("cleanup");
        }
        assert!(
            store.list("conf/").await.expect("list").is_empty(),
            "{d}: cleanup left objects"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_store_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("repo")).expect("store");
        conformance::run(&store).await;
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("data/ab/cdef").is_ok());
        assert!(check_key("config").is_ok());
        for bad in ["", "/x", "x/", "a/../b", "a b", "a/.tmp-1", "é"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
