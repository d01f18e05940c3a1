//! Serving sites over HTTP from this node's replica:
//! `GET|HEAD /sites/{site}/{path}` and virtual hosts (`content.vhosts`).
//!
//! A request reads the file's record and then its chunks from one node's
//! state, never through Raft, so a node cut off from the majority keeps
//! serving the last tree it applied. Directories serve `index.html`
//! (`/dir` redirects to `/dir/` when `dir/index.html` exists). Responses
//! carry `Content-Type` (by extension), `ETag` (the file's blake3),
//! `Last-Modified`, `Accept-Ranges`, and `X-Sen-Node` / `X-Sen-Revision`
//! (the deployment served); `If-None-Match` gives 304 and a single
//! `Range` gives 206. Files the served-file cache takes
//! (`crate::file_cache`) are answered from memory after their first read;
//! larger ones stream chunk by chunk: memory does not grow with file size.
//!
//! `Content-Encoding: zstd`: a cached file whose stored chunks make a zstd
//! stream at least 1/16 smaller than the file is sent as that stream to a
//! client whose `Accept-Encoding` names `zstd` — the stored frames as
//! they are (raw chunks wrapped in raw-block frames), so no byte is
//! compressed on a request. Its ETag is the file's with `.zst`, both
//! forms carry `Vary: Accept-Encoding`, and a `Range` request always gets
//! the plain bytes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sen_content::{path, range};
use sen_raft::apply::FileRecord;
use sen_store::StateDb;

use crate::file_cache::{CachedFile, FileHead, SMALL};
use crate::node::Node;

use sen_content::StoredChunk;
use sen_content::range::{Piece, pieces};

/// The chunk of piece `p` as stored and its verified plaintext, which
/// holds the piece (blocking).
fn read_chunk(state: &StateDb, p: &Piece) -> Result<(StoredChunk, Vec<u8>), String> {
    let chunk = state
        .chunk(&p.id)
        .map_err(|e| format!("cannot read chunk {}: {e}", p.id))?
        .ok_or_else(|| format!("chunk {} is missing from this node", p.id))?;
    let plain = chunk.decode().map_err(|e| e.to_string())?;
    if p.to > plain.len() || p.from > p.to {
        return Err(format!("chunk {} is shorter than the file says", p.id));
    }
    Ok((chunk, plain))
}

/// Read and verify one piece (blocking).
pub fn read_piece(state: &StateDb, p: &Piece) -> Result<Vec<u8>, String> {
    let (_, mut plain) = read_chunk(state, p)?;
    plain.truncate(p.to);
    plain.drain(..p.from);
    Ok(plain)
}

fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let s = mime.essence_str().to_owned();
    let textual = mime.type_() == "text"
        || matches!(
            s.as_str(),
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    if textual { format!("{s}; charset=utf-8") } else { s }
}

fn plain(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// Percent-encode a path for a `Location` header (keeps `/` and the
/// unreserved characters of RFC 3986).
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Marks a response about a site known to exist (only those get their own
/// metric series, so made-up site names cannot grow the metrics).
#[derive(Clone, Copy)]
struct KnownSite;

/// Where a site's files are served from, for redirects.
pub enum Mount {
    Prefix,
    VirtualHost,
}

impl Mount {
    fn url(&self, site: &str, path: &str) -> String {
        match self {
            Mount::Prefix => format!("/sites/{site}/{path}"),
            Mount::VirtualHost => format!("/{path}"),
        }
    }
}

/// The address a request came from (set by the accept loop).
fn peer_of(req: &axum::extract::Request) -> Option<IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

pub async fn serve_path(
    State(node): State<Arc<Node>>,
    Path((site, path)): Path<(String, String)>,
    req: axum::extract::Request,
) -> Response {
    let peer = peer_of(&req);
    let (parts, _) = req.into_parts();
    serve(node, site, path, parts.method, parts.headers, Mount::Prefix, peer).await
}

pub async fn serve_root(
    State(node): State<Arc<Node>>,
    Path(site): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let peer = peer_of(&req);
    let (parts, _) = req.into_parts();
    serve(
        node,
        site,
        String::new(),
        parts.method,
        parts.headers,
        Mount::Prefix,
        peer,
    )
    .await
}

/// Requests that match no route: a virtual host, or 404.
/// Requests to a configured virtual host are served from its site, whatever
/// the path: the node's own endpoints (`/metrics`, `/readyz`, `/sites/…`)
/// are not reachable under a public host name. Runs before routing.
pub async fn virtual_hosts(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(site) = vhost_site(&node, req.headers()) else {
        return next.run(req).await;
    };
    let decoded = percent_decode(req.uri().path().trim_start_matches('/'));
    let peer = peer_of(&req);
    let (parts, _) = req.into_parts();
    serve(
        node,
        site,
        decoded,
        parts.method,
        parts.headers,
        Mount::VirtualHost,
        peer,
    )
    .await
}

/// `/sites/{site}` → `/sites/{site}/`, so relative links in its index work.
pub async fn site_root_redirect(Path(site): Path<String>) -> Response {
    if path::check_site_name(&site).is_err() {
        return plain(StatusCode::NOT_FOUND, format!("no site {site:?}"));
    }
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, format!("/sites/{site}/"))],
    )
        .into_response()
}

/// Requests that match no route and no virtual host.
pub async fn fallback(uri: axum::http::Uri) -> Response {
    plain(StatusCode::NOT_FOUND, format!("not found: {}", uri.path()))
}

/// The site a request's `Host` names through `content.vhosts`, if any.
pub fn vhost_site(node: &Node, headers: &HeaderMap) -> Option<String> {
    if node.config.content.vhosts.is_empty() {
        return None;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':').map_or(h, |(name, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    name
                } else {
                    h
                }
            })
        })
        .unwrap_or("");
    // Host names are case-insensitive; configured names are lower case.
    node.config.content.vhosts.get(&host.to_ascii_lowercase()).cloned()
}

pub fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s)).into_owned()
}

/// The bytes `%XX` escapes in `s` stand for (an invalid escape is kept
/// as it is).
fn percent_decode_bytes(s: &str) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

async fn serve(
    node: Arc<Node>,
    site: String,
    raw_path: String,
    method: Method,
    headers: HeaderMap,
    mount: Mount,
    peer: Option<IpAddr>,
) -> Response {
    let started = Instant::now();
    let resp = serve_inner(&node, &site, raw_path, &method, &headers, &mount).await;
    let known = resp.extensions().get::<KnownSite>().is_some();
    account(&node, &site, known, &headers, peer, started, &resp);
    resp
}

/// Count an answer about `site` in the metrics and, for a site that
/// exists (`known`), in the readers report; the node's own probes are
/// neither.
fn account(
    node: &Node,
    site: &str,
    known: bool,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    started: Instant,
    resp: &Response,
) {
    // Only existing sites get their own metric series.
    let label = if known { site } else { "-" };
    // The node's own probes (crate::probe) are not readers.
    let probe = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with(crate::probe::USER_AGENT_PREFIX));
    if !probe {
        let took = started.elapsed();
        node.metrics.observe_http(label, resp.status().as_u16(), took);
        if known && let Some(peer) = peer {
            count_reader(node, site, resp, headers, peer, took);
        }
    }
}

/// The site and file path a request names, if it names one: through a
/// virtual host (any path), or as `/sites/{site}/{path}` — decoded as the
/// router decodes them (`None` where the router would refuse or redirect).
pub fn site_file_of(node: &Node, uri_path: &str, headers: &HeaderMap) -> Option<(String, String)> {
    match vhost_site(node, headers) {
        Some(site) => Some((site, percent_decode(uri_path.trim_start_matches('/')))),
        None => {
            let (site, path) = uri_path.strip_prefix("/sites/")?.split_once('/')?;
            Some((decode_utf8(site)?, decode_utf8(path)?))
        }
    }
}

/// Percent-decode as the router decodes path parameters: `None` when the
/// result is not UTF-8 (the router answers 400).
fn decode_utf8(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    String::from_utf8(percent_decode_bytes(s)).ok()
}

/// The file a request path inside a site names: `index.html` for a
/// directory, normalised.
fn file_path(raw_path: &str) -> Result<(String, bool), path::PathError> {
    let wants_dir = raw_path.is_empty() || raw_path.ends_with('/');
    let full = if wants_dir {
        format!("{raw_path}index.html")
    } else {
        raw_path.to_owned()
    };
    Ok((path::normalize(&full)?, wants_dir))
}

/// The answer to a `GET` or `HEAD` of a site file that the served-file
/// cache holds under the current content epoch, built without the router:
/// the same response, headers, metrics and readers count as the router
/// path gives it (`serve`). `None` for everything else, including every
/// file of a private site while access control is on: the router path
/// decides those (`super::guard`).
pub fn from_cache(
    node: &Node,
    auth: &crate::auth::Auth,
    method: &Method,
    uri_path: &str,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Option<Response> {
    let started = Instant::now();
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let (site, raw_path) = site_file_of(node, uri_path, headers)?;
    if auth.secure && auth.site_is_private(node, &site) {
        return None;
    }
    let (p, _) = file_path(&raw_path).ok()?;
    // Read before the state is: see crate::file_cache.
    let epoch = node.state.content_epoch();
    let f = node.files.get_hit(&site, &p, epoch)?;
    let applied = node.state.applied_index();
    let mut resp = serve_file(node, &f.head, applied, Source::cached(&f), method, headers);
    account(node, &site, true, headers, Some(peer), started, &resp);
    super::secure_headers(node, &mut resp);
    Some(resp)
}

/// The UTC day of `now` (`YYYY-MM-DD`), formatted once a day per thread.
fn today(now: u64) -> Arc<str> {
    thread_local! {
        static DAY: std::cell::RefCell<(u64, Arc<str>)> = std::cell::RefCell::new((u64::MAX, Arc::from("")));
    }
    let n = now / sen_core::time::DAY_MS;
    DAY.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != n {
            *d = (n, Arc::from(sen_core::time::utc_day(now)));
        }
        d.1.clone()
    })
}

/// Count an answer of an existing site for the readers report
/// (`crate::traffic`).
fn count_reader(node: &Node, site: &str, resp: &Response, headers: &HeaderMap, peer: IpAddr, took: Duration) {
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = node.traffic.client_ip(peer, forwarded);
    let now = sen_core::now_ms();
    let day = today(now);
    let hour = ((now % sen_core::time::DAY_MS) / 3_600_000) as u8;
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let secret = || {
        // The cluster's secret token key; a cluster without one (insecure
        // mode) uses its id, which only spreads the hashes.
        let key =
            crate::system::read::<sen_raft::schema::system::AuthKey>(node, sen_raft::schema::system::AUTH_KEY_KEY)
                .ok()
                .flatten()
                .map(|(k, _)| k.key.into_bytes());
        let secret = key.unwrap_or_else(|| {
            node.cluster_id()
                .map(|c| c.to_string())
                .unwrap_or_default()
                .into_bytes()
        });
        crate::traffic::day_key(&secret, &day)
    };
    let stored = || {
        crate::system::read::<sen_raft::schema::system::TrafficRecord>(
            node,
            &sen_raft::schema::system::traffic::traffic_key(&day, site, node.id),
        )
        .ok()
        .flatten()
        .map(|(r, _)| r)
    };
    node.traffic.observe(
        &day,
        hour,
        site,
        node.id,
        resp.status().as_u16(),
        bytes,
        took.as_millis() as u64,
        ip,
        secret,
        stored,
    );
}

/// A file's record, the applied index it was read at, and its whole
/// content when the caller asked for it (`want_data` said yes for its size).
type Found = (Option<FileRecord>, u64, Option<Whole>);

/// A file's whole content, verified, and its `Content-Encoding: zstd`
/// form when that is worth serving.
pub struct Whole {
    plain: Vec<u8>,
    zstd: Option<Vec<u8>>,
}

/// Read the record of `p` and, if `want_data(size)`, its content, in one
/// hop to the blocking pool.
async fn lookup(
    node: &Node,
    site: &str,
    p: &str,
    want_data: impl Fn(u64) -> bool + Send + 'static,
) -> Result<Found, String> {
    let state = node.state.clone();
    let (site, p) = (site.to_owned(), p.to_owned());
    tokio::task::spawn_blocking(move || {
        let (rec, applied) = state.file(&site, &p).map_err(|e| e.to_string())?;
        let data = match &rec {
            Some(r) if want_data(r.size) => Some(read_whole(&state, r)?),
            _ => None,
        };
        Ok((rec, applied, data))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The whole content of a file, each chunk checked against its hash, and
/// its zstd form: the stored chunks' frames in order (a raw chunk wrapped
/// in a frame of raw blocks; `StoredChunk::zstd_frame`), kept only when
/// it is at least 1/16 smaller (the rule chunks are stored by).
fn read_whole(state: &StateDb, r: &FileRecord) -> Result<Whole, String> {
    let mut plain = Vec::with_capacity(r.size as usize);
    let mut zstd: Option<Vec<u8>> = Some(Vec::new());
    for p in pieces(&r.chunks, 0, r.size) {
        let (chunk, decoded) = read_chunk(state, &p)?;
        plain.extend_from_slice(&decoded[p.from..p.to]);
        // A file that uses part of a chunk has no zstd form.
        match zstd.as_mut() {
            Some(z) if p.from == 0 && p.to == decoded.len() => z.extend_from_slice(&chunk.zstd_frame()),
            _ => zstd = None,
        }
    }
    let zstd = zstd.filter(|z| !plain.is_empty() && z.len() + plain.len() / 16 < plain.len());
    Ok(Whole { plain, zstd })
}

/// Whether the client takes `Content-Encoding: zstd` (`Accept-Encoding`
/// names it with a non-zero weight).
fn accepts_zstd(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            name.eq_ignore_ascii_case("zstd") && weight > 0.0
        })
}

impl FileHead {
    fn of(p: &str, rec: &FileRecord) -> Self {
        let hash = blake3::Hash::from(rec.blake3).to_hex();
        let ct = content_type(p);
        let value = |s: String| HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""));
        FileHead {
            size: rec.size,
            etag: value(format!("\"{hash}\"")),
            zstd_etag: value(format!("\"{hash}.zst\"")),
            html: ct.starts_with("text/html"),
            content_type: value(ct),
            last_modified: value(httpdate::fmt_http_date(
                UNIX_EPOCH + Duration::from_millis(rec.mtime_ms),
            )),
            revision: HeaderValue::from(rec.deployment),
        }
    }
}

/// A cache entry for a file read under `epoch`, if its content is whole.
fn cached(epoch: u64, p: &str, rec: &FileRecord, data: Whole) -> Result<Arc<CachedFile>, String> {
    if data.plain.len() as u64 != rec.size {
        return Err(format!(
            "{p}: its chunks hold {} bytes, its record says {}",
            data.plain.len(),
            rec.size
        ));
    }
    Ok(Arc::new(CachedFile {
        epoch,
        head: FileHead::of(p, rec),
        body: Bytes::from(data.plain),
        zstd: data.zstd.map(Bytes::from),
    }))
}

async fn serve_inner(
    node: &Arc<Node>,
    site: &str,
    raw_path: String,
    method: &Method,
    headers: &HeaderMap,
    mount: &Mount,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD".into());
    }
    if path::check_site_name(site).is_err() {
        return plain(StatusCode::NOT_FOUND, format!("no site {site:?}"));
    }
    let (p, wants_dir) = match file_path(&raw_path) {
        Ok(p) => p,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let known = |mut r: Response| {
        r.extensions_mut().insert(KnownSite);
        r
    };
    // Read before the state is: see crate::file_cache.
    let epoch = node.state.content_epoch();
    if let Some(f) = node.files.get(site, &p, epoch) {
        let applied = node.state.applied_index();
        return known(serve_file(node, &f.head, applied, Source::cached(&f), method, headers));
    }
    // A HEAD that may be answered in zstd reads the file as a GET would,
    // so both describe the same representation.
    let get = method == Method::GET || accepts_zstd(headers);
    // Small files come with their record (one hop); larger ones below.
    let (rec, applied, data) = match lookup(node, site, &p, move |size| get && size <= SMALL).await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let Some(rec) = rec else {
        // `dir` → `dir/` when dir/index.html exists.
        if !wants_dir && let Ok((Some(_), _, _)) = lookup(node, site, &format!("{p}/index.html"), |_| false).await {
            // Built from the normalised path, encoded: never `//host`.
            let loc = mount.url(site, &format!("{}/", encode_path(&p)));
            return known((StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, loc)]).into_response());
        }
        let state = node.state.clone();
        let s = site.to_owned();
        let exists = tokio::task::spawn_blocking(move || state.site(&s).map(|(r, _)| r.is_some()))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !exists {
            return plain(StatusCode::NOT_FOUND, format!("no site {site:?}"));
        }
        return known(plain(StatusCode::NOT_FOUND, format!("not found: {p}")));
    };
    let file = match data {
        Some(data) => match cached(epoch, &p, &rec, data) {
            Ok(f) => f,
            Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        // A large file the cache takes: read it once for everyone asking
        // now, then serve it from memory.
        None if get && node.files.admits(rec.size) => {
            let _slot = node.files.fill_slot(site, &p).await;
            match node.files.get(site, &p, epoch) {
                Some(f) => f,
                None => {
                    let state = node.state.clone();
                    let r = rec.clone();
                    let read = tokio::task::spawn_blocking(move || read_whole(&state, &r))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r)
                        .and_then(|data| cached(epoch, &p, &rec, data));
                    match read {
                        Ok(f) => {
                            node.files.insert(site, &p, f.clone(), node.state.content_epoch());
                            f
                        }
                        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e),
                    }
                }
            }
        }
        // HEAD, or too large to cache: headers from the record, the body
        // streamed chunk by chunk.
        None => {
            let head = FileHead::of(&p, &rec);
            return known(serve_file(
                node,
                &head,
                applied,
                Source::Chunks(rec.chunks),
                method,
                headers,
            ));
        }
    };
    node.files.insert(site, &p, file.clone(), node.state.content_epoch());
    known(serve_file(
        node,
        &file.head,
        applied,
        Source::cached(&file),
        method,
        headers,
    ))
}

/// Where a response's body comes from.
enum Source {
    /// The whole file, verified, and its zstd form if it has one.
    Whole { plain: Bytes, zstd: Option<Bytes> },
    /// The file's chunks, read and verified as they are sent.
    Chunks(Vec<sen_content::ChunkRef>),
}

impl Source {
    fn cached(f: &CachedFile) -> Self {
        Source::Whole {
            plain: f.body.clone(),
            zstd: f.zstd.clone(),
        }
    }
}

/// The response for a file that exists.
fn serve_file(
    node: &Node,
    head: &FileHead,
    applied: u64,
    body: Source,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let mut h = HeaderMap::with_capacity(12);
    // The zstd form when the file has one, the client takes it and asks
    // for no range (ranges are answered on the plain bytes).
    let has_zstd = matches!(&body, Source::Whole { zstd: Some(_), .. });
    let zstd = match &body {
        Source::Whole { zstd: Some(z), .. } if !headers.contains_key(header::RANGE) && accepts_zstd(headers) => {
            Some(z.clone())
        }
        _ => None,
    };
    let etag_value = if zstd.is_some() { &head.zstd_etag } else { &head.etag };
    h.insert(header::ETAG, etag_value.clone());
    if has_zstd {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    h.insert(header::CONTENT_TYPE, head.content_type.clone());
    h.insert(header::LAST_MODIFIED, head.last_modified.clone());
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::HeaderName::from_static("x-sen-node"),
        HeaderValue::from(node.id),
    );
    h.insert(header::HeaderName::from_static("x-sen-revision"), head.revision.clone());
    h.insert(
        header::HeaderName::from_static("x-sen-applied"),
        HeaderValue::from(applied),
    );
    let etag = etag_value.to_str().unwrap_or_default();
    let size = head.size;

    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())
        && inm
            .split(',')
            .any(|t| t.trim() == etag || t.trim() == "*" || t.trim().trim_start_matches("W/") == etag)
    {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    if let Some(z) = zstd {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(z.len()));
        if *method == Method::HEAD {
            return (StatusCode::OK, h).into_response();
        }
        return (StatusCode::OK, h, Body::from(z)).into_response();
    }
    // A Range under an If-Range that is not this version's ETag is ignored:
    // resuming a download across a deployment gets the whole new file
    // instead of stitching two versions together.
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    let (status, start, end) = match range::select(text(header::RANGE), text(header::IF_RANGE), etag, size) {
        range::Selection::Whole => (StatusCode::OK, 0, size),
        range::Selection::Part { start: s, end: e } => {
            set(&mut h, header::CONTENT_RANGE, format!("bytes {s}-{}/{size}", e - 1));
            (StatusCode::PARTIAL_CONTENT, s, e)
        }
        range::Selection::Unsatisfiable => {
            set(&mut h, header::CONTENT_RANGE, format!("bytes */{size}"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if *method == Method::HEAD {
        return (status, h).into_response();
    }
    let chunks = match body {
        Source::Whole { plain, .. } => {
            return (status, h, Body::from(plain.slice(start as usize..end as usize))).into_response();
        }
        Source::Chunks(chunks) => chunks,
    };
    let pieces = pieces(&chunks, start, end);
    let state = node.state.clone();
    let stream = futures::stream::iter(pieces).then(move |piece| {
        let state = state.clone();
        async move {
            match tokio::task::spawn_blocking(move || read_piece(&state, &piece)).await {
                Ok(Ok(d)) => Ok(Bytes::from(d)),
                Ok(Err(e)) => Err(std::io::Error::other(e)),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        }
    });
    (status, h, Body::from_stream(stream)).into_response()
}

use futures::StreamExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a/Quyết định.pdf"), "application/pdf");
        assert_eq!(content_type("x.unknownext"), "application/octet-stream");
        assert_eq!(percent_decode("Quy%E1%BA%BFt%20a"), "Quyết a");
    }
}
