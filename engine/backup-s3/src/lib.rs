//! The S3 backend of Sen's backup repositories: [`S3Store`] implements
//! [`sen_backup::ObjectStore`] on Amazon S3 and S3-compatible servers
//! (SeaweedFS, MinIO, Ceph RGW, Garage, …) with `aws-sdk-s3`.
//!
//! # Addressing
//!
//! A store is named by a URL: `s3://BUCKET` (the whole bucket) or
//! `s3://BUCKET/SOME/PREFIX` (object `KEY` is stored as `SOME/PREFIX/KEY`).
//! [`S3Store::open`] never creates the bucket: a missing bucket is reported
//! on first use as "bucket X does not exist at ENDPOINT: create it first".
//! [`S3Store::create_bucket_if_missing`] exists for tests and tools.
//!
//! # Configuration
//!
//! Every [`S3Options`] field left `None` comes from the standard AWS
//! environment and profile chain, much as the AWS CLI resolves them:
//!
//! | what | explicit option | else, from the environment |
//! |---|---|---|
//! | endpoint | [`S3Options::endpoint`] | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `endpoint_url` in the profile; else AWS itself |
//! | region | [`S3Options::region`] | `AWS_REGION` / `AWS_DEFAULT_REGION`, the profile's `region`, then (on AWS only, i.e. no custom endpoint) the EC2 instance metadata; else `us-east-1` |
//! | credentials | [`S3Options::access_key_id`] + [`S3Options::secret_access_key`] | `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`), the profile (`AWS_PROFILE`, `~/.aws/credentials`, `credential_process`, assume-role), web identity, ECS and EC2 metadata |
//! | addressing | [`S3Options::path_style`] | `SEN_S3_PATH_STYLE=1\|true\|0\|false`; else path-style (`http://host/bucket/key`) when a custom endpoint is set, virtual-hosted (`https://bucket.s3…/key`) on AWS |
//!
//! AWS IAM Identity Center (SSO) profiles are not supported (the SDK's `sso`
//! feature is left out to keep the build small): use `aws configure
//! export-credentials` or a `credential_process` instead.
//!
//! # Transport and semantics
//!
//! - HTTP is hyper 1 + rustls with the `ring` provider and the system's root
//!   certificates; plain `http://` endpoints work too (for test servers).
//! - Objects are written with one `PutObject` each (repository objects are at
//!   most ~64 MiB, S3's single-PUT limit is 5 GiB). The SDK adds a CRC32
//!   checksum the server verifies, and verifies the checksums of full reads.
//! - `put_if_absent` is `PutObject` with `If-None-Match: *`: atomic on AWS S3
//!   (since 2024-08) and SeaweedFS, silently ignored by some servers
//!   (rclone `serve s3`, s3rver, older releases of others).
//!   [`S3Store::probe_conditional_create`] detects those; the
//!   repository calls it at `backup init`.
//! - Errors keep the operation, the key, the HTTP status, S3's error code,
//!   message and request id; a missing object or key is
//!   [`ObjectError::NotFound`], everything else [`ObjectError::Failed`].
//! - Each attempt has [`S3Options::request_timeout`]; transient failures
//!   (5xx, throttling, connection errors, timeouts) are retried with
//!   exponential backoff up to [`S3Options::max_attempts`] attempts in all.
//!
//! With the `testing` feature, [`testing::SeaweedFs`] runs a real SeaweedFS
//! server (`weed mini`, installed by `scripts/setup.sh`) for tests.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use sen_backup::store::check_key;
use sen_backup::{ObjectError, ObjectInfo, ObjectStore, RetryClass};

#[cfg(feature = "testing")]
pub mod testing;
mod url;

pub use sen_backup::location::{Location, check_allowed};
pub use url::open_store;

/// The hint added to authentication and authorization failures.
const CREDENTIALS_HINT: &str = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile";

/// S3 error codes that mean "these credentials are wrong or not allowed".
const CREDENTIAL_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
    "AccountProblem",
];

/// How to reach the server. Fields left `None` come from the standard AWS
/// environment/profile chain (see the [crate docs](crate)).
#[derive(Clone)]
pub struct S3Options {
    /// `http(s)://host:port` of an S3-compatible server; `None`: AWS (or
    /// `AWS_ENDPOINT_URL(_S3)`).
    pub endpoint: Option<String>,
    /// Signing region; `None`: `AWS_REGION`, the profile, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing; `None`: `SEN_S3_PATH_STYLE`, else `true` when
    /// a custom endpoint is set and `false` on AWS.
    pub path_style: Option<bool>,
    /// Static credentials (both or neither); `None`: the AWS chain.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Time allowed to establish a TCP (+TLS) connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt of one request, body included (a 64 MiB
    /// PUT needs ~1.1 MiB/s to fit the default 60 s).
    pub request_timeout: Duration,
    /// Attempts per request in all (1 = no retry). Default 3.
    pub max_attempts: u32,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            path_style: None,
            access_key_id: None,
            secret_access_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_attempts: 3,
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// A repository in an S3 bucket, optionally under a key prefix.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// `""` or `a/b` (no leading or trailing `/`).
    prefix: String,
    /// The custom endpoint, if any (`None`: AWS).
    endpoint: Option<String>,
    region: String,
    path_style: bool,
    /// Attempts per read (see `reading`).
    max_attempts: u32,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// Split `s3://bucket[/prefix]` into the bucket and the prefix (no trailing `/`).
fn parse_url(url: &str) -> Result<(String, String), String> {
    const EXPECTED: &str = "expected s3://BUCKET or s3://BUCKET/PREFIX";
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(format!("not an S3 URL: {EXPECTED}"));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("the bucket name is missing: {EXPECTED}"));
    }
    // AWS's rules are stricter (3-63 lowercase letters, digits, '.', '-');
    // other servers (and old AWS buckets) accept a little more, and the
    // server checks the name itself.
    if !(3..=255).contains(&bucket.len())
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(format!(
            "invalid bucket name {bucket:?}: use 3 to 63 lowercase letters, digits, '.' and '-' ({EXPECTED})"
        ));
    }
    let raw_prefix = prefix;
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    if !raw_prefix.is_empty()
        && let Err(e) = check_key(prefix)
    {
        return Err(format!("invalid prefix {raw_prefix:?} ({e})"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// `SEN_S3_PATH_STYLE`, if set.
fn path_style_from_env() -> Result<Option<bool>, String> {
    parse_path_style(std::env::var("SEN_S3_PATH_STYLE").ok().as_deref())
}

fn parse_path_style(value: Option<&str>) -> Result<Option<bool>, String> {
    let Some(v) = value else { return Ok(None) };
    match v.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(format!("SEN_S3_PATH_STYLE={v:?}: expected 1, true, 0 or false")),
    }
}

/// `err` and its sources, `: `-separated: what `DisplayErrorContext` shows,
/// without the `Debug` dump it appends (which repeats the same chain).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let s = e.to_string();
        // Wrappers often repeat their source's text: keep each piece once.
        if !s.is_empty() && !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        next = e.source();
    }
    if parts.is_empty() {
        // Fall back to the SDK's own rendering.
        return DisplayErrorContext(err).to_string();
    }
    parts.join(": ")
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// What an S3 error said, for classification and messages.
struct ErrorInfo {
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
    display: String,
    /// No answer at all: a timeout, a refused or broken connection.
    transport: bool,
}

impl ErrorInfo {
    fn of<E>(err: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        Self {
            status: err.raw_response().map(|r| r.status().as_u16()),
            code: err.code().map(str::to_owned),
            message: err.message().map(str::to_owned),
            request_id: err.request_id().map(str::to_owned),
            display: error_chain(err),
            transport: matches!(
                err,
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
            ),
        }
    }

    /// Whether the same request may succeed later: no answer at all, a
    /// server error, throttling or a request timeout. Everything else (4xx:
    /// credentials, a missing bucket, a refused request) is permanent.
    fn is_transient(&self) -> bool {
        const TRANSIENT_CODES: &[&str] = &[
            "SlowDown",
            "RequestTimeout",
            "Throttling",
            "ThrottlingException",
            "InternalError",
            "ServiceUnavailable",
        ];
        match self.status {
            None => self.transport,
            Some(s) => {
                s >= 500 || s == 408 || s == 429 || self.code.as_deref().is_some_and(|c| TRANSIENT_CODES.contains(&c))
            }
        }
    }

    fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    fn is_no_such_bucket(&self) -> bool {
        self.code_is("NoSuchBucket")
    }

    /// The object (not the bucket) does not exist.
    fn is_missing_object(&self) -> bool {
        self.code_is("NoSuchKey") || (self.status == Some(404) && !self.is_no_such_bucket())
    }
}

impl S3Store {
    /// A store at `url` (`s3://bucket` or `s3://bucket/prefix`). Builds the
    /// client and resolves the configuration; sends no request, so neither
    /// the credentials nor the bucket are checked until first use.
    pub async fn open(url: &str, opts: S3Options) -> Result<S3Store, ObjectError> {
        let open_err = |detail: String| ObjectError::Failed {
            op: "open",
            store: url.to_owned(),
            key: "repository".to_owned(),
            detail,
            retry: RetryClass::Permanent,
        };
        let (bucket, prefix) = parse_url(url).map_err(open_err)?;
        let static_credentials = match (opts.access_key_id.clone(), opts.secret_access_key.clone()) {
            (Some(id), Some(secret)) => Some(Credentials::new(id, secret, None, None, "sen-s3-options")),
            (None, None) => None,
            _ => {
                return Err(open_err(
                    "give both the access key id and the secret access key, or neither (to use the AWS environment/profile)"
                        .to_owned(),
                ));
            }
        };
        let env_path_style = path_style_from_env().map_err(open_err)?;

        // An explicit endpoint, or one the environment names (the profile's
        // endpoint_url is found by aws-config below).
        let explicit_endpoint = opts
            .endpoint
            .clone()
            .filter(|e| !e.trim().is_empty())
            .or_else(|| non_empty_env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| non_empty_env("AWS_ENDPOINT_URL"));

        // Region: explicit, environment, profile, EC2 metadata (on AWS only:
        // never probe 169.254.169.254 for a local server), else us-east-1.
        let mut regions = RegionProviderChain::first_try(opts.region.clone().map(Region::new))
            .or_else(aws_config::environment::region::EnvironmentVariableRegionProvider::new())
            .or_else(aws_config::profile::ProfileFileRegionProvider::builder().build());
        if explicit_endpoint.is_none() {
            regions = regions.or_else(aws_config::imds::region::ImdsRegionProvider::builder().build());
        }
        let region = regions
            .or_else(Region::from_static("us-east-1"))
            .region()
            .await
            .unwrap_or_else(|| Region::from_static("us-east-1"));

        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(opts.connect_timeout)
            .operation_attempt_timeout(opts.request_timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .region(region.clone())
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(opts.max_attempts.max(1)));
        if let Some(credentials) = static_credentials {
            loader = loader.credentials_provider(credentials);
        }
        if let Some(endpoint) = &explicit_endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk_config = loader.load().await;

        let endpoint = explicit_endpoint.or_else(|| sdk_config.endpoint_url().map(str::to_owned));
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(open_err(format!(
                "invalid endpoint {e:?}: expected http://HOST:PORT or https://HOST[:PORT]"
            )));
        }
        let path_style = opts.path_style.or(env_path_style).unwrap_or(endpoint.is_some());
        let mut config = aws_sdk_s3::config::Builder::from(&sdk_config).force_path_style(path_style);
        if let Some(e) = &endpoint {
            config = config.endpoint_url(e);
        }
        let store = S3Store {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket,
            prefix,
            endpoint,
            region: region.to_string(),
            path_style,
            max_attempts: opts.max_attempts.max(1),
        };
        tracing::debug!(store = %store.describe(), region = %store.region, path_style, "opened S3 store");
        Ok(store)
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (`""` for the bucket root), without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The custom endpoint, or `None` for AWS.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The signing region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The underlying SDK client (for tools and tests).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn where_(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("AWS S3 (region {})", self.region),
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }

    /// A failure that trying again cannot fix.
    fn failed(&self, op: &'static str, key: &str, detail: String) -> ObjectError {
        self.failed_as(op, key, detail, RetryClass::Permanent)
    }

    fn failed_as(&self, op: &'static str, key: &str, detail: String, retry: RetryClass) -> ObjectError {
        ObjectError::Failed {
            op,
            store: self.describe(),
            key: key.to_owned(),
            detail,
            retry,
        }
    }

    /// A body that broke off mid-read (the request itself succeeded).
    fn read_failed(&self, key: &str, detail: String) -> ObjectError {
        self.failed_as("read", key, detail, RetryClass::Transient)
    }

    fn not_found(&self, key: &str) -> ObjectError {
        ObjectError::NotFound {
            store: self.describe(),
            key: key.to_owned(),
        }
    }

    /// The `Failed` error for an S3 error that is not otherwise handled.
    fn error(&self, op: &'static str, key: &str, info: &ErrorInfo) -> ObjectError {
        if info.is_no_such_bucket() {
            return self.failed(
                op,
                key,
                format!(
                    "bucket {} does not exist at {}: create it first",
                    self.bucket,
                    self.where_()
                ),
            );
        }
        let mut detail = match (info.status, &info.code) {
            (Some(status), Some(code)) => format!(
                "HTTP {status} {code}: {}",
                info.message.as_deref().unwrap_or("(no message)")
            ),
            (Some(status), None) => format!("HTTP {status}: {}", info.display),
            (None, _) => info.display.clone(),
        };
        if let Some(id) = &info.request_id {
            detail.push_str(&format!(" (request id {id})"));
        }
        let credentials_problem = info.status == Some(403)
            || info.code.as_deref().is_some_and(|c| CREDENTIAL_CODES.contains(&c))
            || (info.status.is_none() && info.display.to_ascii_lowercase().contains("credential"));
        if credentials_problem {
            detail.push_str(&format!(": {CREDENTIALS_HINT}"));
        } else if info.status.is_none() {
            detail.push_str(&format!(" (endpoint {})", self.where_()));
        }
        let retry = if !credentials_problem && info.is_transient() {
            RetryClass::Transient
        } else {
            RetryClass::Permanent
        };
        self.failed_as(op, key, detail, retry)
    }

    /// Create the bucket unless it exists (for tests and tools: a repository
    /// never creates its bucket).
    pub async fn create_bucket_if_missing(&self) -> Result<(), ObjectError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) => {
                let info = ErrorInfo::of(&e);
                if info.status != Some(404) {
                    return Err(self.error("check bucket", &self.bucket, &info));
                }
            }
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        if self.region != "us-east-1" {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let info = ErrorInfo::of(&e);
                if info.code_is("BucketAlreadyOwnedByYou") {
                    Ok(())
                } else {
                    Err(self.error("create bucket", &self.bucket, &info))
                }
            }
        }
    }

    /// Check that the server honours `If-None-Match: *` (conditional
    /// create), which the repository's locks rely on: create a probe object
    /// under `locks/` twice, then delete it. Fails, with an explanation, on
    /// servers that silently overwrite (rclone `serve s3`, s3rver, …), and
    /// with the usual errors for a missing bucket or bad credentials.
    pub async fn probe_conditional_create(&self) -> Result<(), ObjectError> {
        let key = format!("locks/probe-{}", hex::encode(rand::random::<[u8; 8]>()));
        let result = self.probe_at(&key).await;
        let cleanup = self.delete(&key).await;
        result?;
        cleanup
    }

    async fn probe_at(&self, key: &str) -> Result<(), ObjectError> {
        let unsafe_store = |why: &str| {
            self.failed(
                "probe conditional create",
                key,
                format!(
                    "{why}: this server ignores `If-None-Match: *` (conditional create), so it cannot keep \
                     two writers from overwriting each other's locks and cannot hold a Sen repository safely \
                     (use AWS S3, SeaweedFS, or another server that implements conditional writes)"
                ),
            )
        };
        if !self.put_if_absent(key, b"probe 1".to_vec()).await? {
            return Err(self.failed(
                "probe conditional create",
                key,
                "a fresh probe object already existed".to_owned(),
            ));
        }
        if self.put_if_absent(key, b"probe 2".to_vec()).await? {
            return Err(unsafe_store(
                "a second conditional create of the probe object succeeded",
            ));
        }
        if self.get(key).await? != b"probe 1" {
            return Err(unsafe_store(
                "a refused conditional create still overwrote the probe object",
            ));
        }
        Ok(())
    }
}

/// Reads: the SDK retries a request that failed transiently; a body that
/// broke off after the answer started is retried here (the whole read
/// again), the same number of attempts, with backoff. Permanent failures
/// are returned at once.
impl S3Store {
    async fn reading<F, Fut>(&self, mut read: F) -> Result<Vec<u8>, ObjectError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, ObjectError>>,
    {
        let mut attempt = 1;
        loop {
            match read().await {
                Err(e @ ObjectError::Failed { op: "read", .. }) if e.is_transient() && attempt < self.max_attempts => {
                    tracing::debug!(attempt, "S3 read broke off, retrying: {e}");
                    let ms = 50u64 << attempt.min(6);
                    tokio::time::sleep(Duration::from_millis(ms + rand::random::<u64>() % ms)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn get_once(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        check_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let info = ErrorInfo::of(&e);
                return Err(if info.is_missing_object() {
                    self.not_found(key)
                } else {
                    self.error("get", key, &info)
                });
            }
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| self.read_failed(key, error_chain(&e)))?;
        Ok(body.to_vec())
    }

    async fn get_range_once(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, ObjectError> {
        check_key(key)?;
        // `bytes=a-b` is inclusive; for len 0 still ask for one byte, so a
        // missing object (or bucket) is reported as for any other length.
        // Servers parse the end as a signed 64-bit number (Go's, Java's
        // long): clamp it there; no object is that large.
        let last = offset.saturating_add(len.max(1) - 1).min(i64::MAX as u64);
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={offset}-{last}"))
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                let info = ErrorInfo::of(&e);
                if info.is_missing_object() {
                    return Err(self.not_found(key));
                }
                // 416 InvalidRange: the range starts at or after the end
                // (or the object is empty): nothing to read.
                if info.status == Some(416) || info.code_is("InvalidRange") {
                    return Ok(Vec::new());
                }
                return Err(self.error("get range of", key, &info));
            }
        };
        let ranged = out.content_range().is_some();
        let mut body = out
            .body
            .collect()
            .await
            .map_err(|e| self.read_failed(key, error_chain(&e)))?
            .to_vec();
        if !ranged {
            // The server ignored the Range header (200 with the whole object).
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(body.len());
            body.drain(..start);
        }
        body.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(body)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("{} at {e}", self.url()),
            None => self.url(),
        }
    }

    async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), ObjectError> {
        check_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error("put", key, &ErrorInfo::of(&e)))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Vec<u8>) -> Result<bool, ObjectError> {
        check_key(key)?;
        // 409 ConditionalRequestConflict: a concurrent write or delete of the
        // same key was in flight; AWS says to retry. A few quick retries, then
        // report "someone else has it".
        const CONFLICT_RETRIES: u32 = 3;
        for attempt in 0..=CONFLICT_RETRIES {
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .if_none_match("*")
                .body(ByteStream::from(data.clone()))
                .send()
                .await;
            let info = match sent {
                Ok(_) => return Ok(true),
                Err(e) => ErrorInfo::of(&e),
            };
            if info.status == Some(412) || info.code_is("PreconditionFailed") {
                return Ok(false);
            }
            if info.status == Some(409) || info.code_is("ConditionalRequestConflict") {
                if attempt < CONFLICT_RETRIES {
                    let ms = 20u64 << attempt;
                    tokio::time::sleep(Duration::from_millis(ms + rand::random::<u64>() % ms)).await;
                    continue;
                }
                return Ok(false);
            }
            return Err(self.error("conditional create", key, &info));
        }
        Ok(false)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        self.reading(|| self.get_once(key)).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, ObjectError> {
        self.reading(|| self.get_range_once(key, offset, len)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let full_prefix = self.full_key(prefix);
        let what = if prefix.is_empty() { "everything" } else { prefix };
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("list", what, &ErrorInfo::of(&e)))?;
            for object in page.contents() {
                let Some(full) = object.key() else { continue };
                let Some(rel) = full.get(strip..).filter(|_| full.starts_with(&full_prefix)) else {
                    continue;
                };
                if check_key(rel).is_err() {
                    // Not written by Sen (a console's "folder/" marker, say).
                    tracing::warn!(store = %self.describe(), key = full, "ignoring an object whose key Sen cannot use");
                    continue;
                }
                out.push(ObjectInfo {
                    key: rel.to_owned(),
                    size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            match page.next_continuation_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => {
                    return Err(self.failed(
                        "list",
                        what,
                        "the server said the listing is truncated but gave no continuation token".to_owned(),
                    ));
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        check_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let info = ErrorInfo::of(&e);
                if info.is_missing_object() {
                    Ok(())
                } else {
                    Err(self.error("delete", key, &info))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(status: Option<u16>, code: Option<&str>, transport: bool) -> ErrorInfo {
        ErrorInfo {
            status,
            code: code.map(str::to_owned),
            message: None,
            request_id: None,
            display: String::new(),
            transport,
        }
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        for (i, want) in [
            (info(None, None, true), true),
            (info(None, None, false), false),
            (info(Some(500), Some("InternalError"), false), true),
            (info(Some(503), Some("SlowDown"), false), true),
            (info(Some(429), None, false), true),
            (info(Some(400), Some("RequestTimeout"), false), true),
            (info(Some(403), Some("AccessDenied"), false), false),
            (info(Some(404), Some("NoSuchBucket"), false), false),
            (info(Some(400), Some("InvalidArgument"), false), false),
        ] {
            assert_eq!(i.is_transient(), want, "{:?} {:?}", i.status, i.code);
        }
    }

    #[tokio::test]
    async fn broken_reads_are_retried_and_permanent_failures_are_not() {
        let store = S3Store::open(
            "s3://bucket",
            S3Options {
                endpoint: Some("http://127.0.0.1:9".into()),
                region: Some("us-east-1".into()),
                access_key_id: Some("k".into()),
                secret_access_key: Some("s".into()),
                max_attempts: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r = store
            .reading(|| async {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n < 2 {
                    Err(store.read_failed("k", "connection reset".into()))
                } else {
                    Ok(b"data".to_vec())
                }
            })
            .await;
        assert_eq!(r.unwrap(), b"data");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Out of attempts: the last error.
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r = store
            .reading(|| async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(store.read_failed("k", "connection reset".into()))
            })
            .await;
        assert!(r.unwrap_err().is_transient());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Permanent: once.
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r = store
            .reading(|| async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(store.failed("get", "k", "HTTP 403 AccessDenied".into()))
            })
            .await;
        assert!(!r.unwrap_err().is_transient());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn urls() {
        let ok = |b: &str, p: &str| Ok((b.to_owned(), p.to_owned()));
        assert_eq!(parse_url("s3://sen-b1"), ok("sen-b1", ""));
        assert_eq!(parse_url("s3://sen-b1/"), ok("sen-b1", ""));
        assert_eq!(parse_url("s3://sen-b2/some/prefix"), ok("sen-b2", "some/prefix"));
        assert_eq!(parse_url("s3://sen-b2/some/prefix/"), ok("sen-b2", "some/prefix"));
        for bad in [
            "",
            "bucket",
            "s3:/bucket",
            "S3://bucket",
            "file:///x",
            "s3://",
            "s3:///x",
            "s3://ab",
            "s3://a b c",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "s3://bucket//",
            "s3://bucket/x?y",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn path_style_values() {
        assert_eq!(parse_path_style(None), Ok(None));
        assert_eq!(parse_path_style(Some("")), Ok(None));
        assert_eq!(parse_path_style(Some("1")), Ok(Some(true)));
        assert_eq!(parse_path_style(Some("TRUE")), Ok(Some(true)));
        assert_eq!(parse_path_style(Some("0")), Ok(Some(false)));
        assert_eq!(parse_path_style(Some("false")), Ok(Some(false)));
        assert!(parse_path_style(Some("maybe")).is_err());
    }

    #[tokio::test]
    async fn path_style_defaults_to_the_endpoint_kind() {
        // Explicit options only (SEN_S3_PATH_STYLE is not set in tests).
        if std::env::var_os("SEN_S3_PATH_STYLE").is_some() {
            return;
        }
        let local = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("us-east-1".into()),
            ..S3Options::default()
        };
        let store = S3Store::open("s3://bucket/p/", local.clone()).await.expect("open");
        assert!(store.path_style);
        assert_eq!(store.prefix(), "p");
        assert_eq!(store.describe(), "s3://bucket/p at http://127.0.0.1:9000");
        let forced = S3Options {
            path_style: Some(false),
            ..local
        };
        assert!(!S3Store::open("s3://bucket", forced).await.expect("open").path_style);
    }

    #[test]
    fn options_debug_hides_the_secret() {
        let o = S3Options {
            secret_access_key: Some("hunter2".into()),
            ..S3Options::default()
        };
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn open_refuses_bad_input_without_network() {
        let e = S3Store::open("http://x", S3Options::default())
            .await
            .expect_err("bad url");
        assert!(e.to_string().contains("s3://BUCKET"), "{e}");
        let half = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("k".into()),
            ..S3Options::default()
        };
        let e = S3Store::open("s3://bucket", half).await.expect_err("half credentials");
        assert!(e.to_string().contains("both"), "{e}");
        let bad_endpoint = S3Options {
            endpoint: Some("127.0.0.1:9000".into()),
            region: Some("us-east-1".into()),
            ..S3Options::default()
        };
        let e = S3Store::open("s3://bucket", bad_endpoint)
            .await
            .expect_err("endpoint without scheme");
        assert!(e.to_string().contains("http://"), "{e}");
    }
}
