//! Serving HTTP connections, plaintext or TLS, within bounds that a slow
//! or hostile client cannot stretch:
//!
//! - at most `server.http-max-connections` open connections; past it, new
//!   ones are closed at once (counted in `sen_http_connections_refused`);
//! - a request's headers must arrive within `server.http-header-timeout`
//!   (HTTP/1: also the longest a kept-alive connection may sit idle
//!   between requests), or the connection is closed: a slow-loris client
//!   holds one socket for that long, not forever;
//! - a connection on which nothing moves in either direction for
//!   `server.http-idle-timeout` is closed (a client that stops reading a
//!   response, an idle HTTP/2 connection);
//! - request bodies are never read (every route is a GET or HEAD).
//!
//! TLS handshakes are bounded before this (`crate::tls::accept`).
//!
//! Connections are served on `server.http-threads` threads, each with its
//! own single-threaded runtime: the accept loop hands each new connection
//! to the next thread in turn (a TLS connection once admitted to its
//! handshake, which then runs on that thread), and the connection stays
//! there until it closes, so a request costs no wake-up of another thread
//! (the node's main runtime moves tasks between its workers). With
//! `http-threads = 0` everything runs on the main runtime.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::tls::{Handshakes, PeerCertificate};
use sen_security::Reloader;

/// The bounds of one HTTP listener (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Threads for plaintext connections (see the module docs).
    pub threads: usize,
}

impl HttpLimits {
    pub fn from_config(c: &crate::config::ServerConfig) -> Self {
        Self {
            header_timeout: c.http_header_timeout,
            idle_timeout: c.http_idle_timeout,
            max_connections: c.http_max_connections,
            threads: c.http_threads,
        }
    }
}

/// Serve `front` on `listener` (over TLS when `tls` is given) until
/// `stop`, then let open requests finish, bounded by `drain`.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    tls: Option<(Arc<Reloader>, Handshakes)>,
    front: super::front::Front,
    limits: HttpLimits,
    drain: Duration,
    stop: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut threads = Threads::start(&front, limits, drain, &stop);
    // Without threads, TLS handshakes run here and connections come from
    // those that finished; with threads, every connection comes straight
    // from the listener (a TLS one admitted to its handshake by `gate`).
    let mut gate = None;
    let mut source = match tls {
        Some((reloader, handshakes)) if threads.is_empty() => Source::Tls(crate::tls::accept(
            listener,
            reloader,
            crate::tls::Listener::Http,
            handshakes,
            stop.clone(),
        )),
        Some((reloader, handshakes)) => {
            gate = Some((crate::tls::Gate::new(reloader, crate::tls::Listener::Http), handshakes));
            Source::Plain(listener)
        }
        None => Source::Plain(listener),
    };
    loop {
        let conn = match &mut source {
            Source::Tls(rx) => tokio::select! {
                _ = stop.cancelled() => break,
                s = rx.recv() => match s {
                    Some(s) => {
                        let remote = s.get_ref().0.peer_addr().unwrap_or_else(|_| unspecified());
                        let cert = peer_certificate(&s);
                        Conn::Tls(Box::new(s), remote, cert)
                    }
                    None => break,
                },
            },
            Source::Plain(listener) => tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((tcp, remote)) => {
                        let _ = tcp.set_nodelay(true);
                        Conn::Plain(tcp, remote)
                    }
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!("HTTP accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            node.metrics.http_connections_refused.inc();
            tracing::debug!(
                "{} HTTP connections open (server.http-max-connections): connection closed",
                limits.max_connections
            );
            continue;
        };
        match conn {
            Conn::Plain(tcp, remote) => match &gate {
                None => {
                    if let Some((tcp, permit)) = threads.hand_over(tcp, remote, permit, None) {
                        spawn_conn(&graceful, &front, limits, tcp, remote, None, permit);
                    }
                }
                Some((gate, handshakes)) => {
                    if let Some(admitted) = gate.admit(remote) {
                        // Only a thread that stopped gives it back: close it.
                        let _ = threads.hand_over(tcp, remote, permit, Some((admitted, handshakes.clone())));
                    }
                }
            },
            Conn::Tls(s, remote, cert) => spawn_conn(&graceful, &front, limits, *s, remote, cert, permit),
        }
    }
    let (here, there) = tokio::join!(tokio::time::timeout(drain, graceful.shutdown()), threads.stopped(drain));
    if here.is_err() || !there {
        tracing::warn!("HTTP connections still open after {drain:?}; closing");
    }
}

/// The verified client certificate of a TLS connection, if it showed one.
fn peer_certificate(s: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Option<PeerCertificate> {
    s.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| PeerCertificate(Arc::new(c.to_vec())))
}

/// A connection handed to a thread of [`Threads`]: the socket, its
/// address, its place under `http-max-connections`, and for TLS its
/// admission to the handshake.
struct Handover {
    tcp: std::net::TcpStream,
    remote: std::net::SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
    tls: Option<(crate::tls::Admitted, Handshakes)>,
}

/// The threads that serve HTTP connections (see the module docs).
#[derive(Default)]
struct Threads {
    queues: Vec<tokio::sync::mpsc::UnboundedSender<Handover>>,
    done: Vec<tokio::sync::oneshot::Receiver<()>>,
    next: usize,
}

impl Threads {
    /// Start `limits.threads` threads serving `front` until `stop`, each
    /// draining its connections for at most `drain` then. A thread that
    /// cannot start is logged and skipped: its share stays on the main
    /// runtime.
    fn start(front: &super::front::Front, limits: HttpLimits, drain: Duration, stop: &CancellationToken) -> Self {
        let mut t = Threads::default();
        for i in 0..limits.threads {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(
                        "cannot start HTTP thread {i} ({e}); its connections are served by the main runtime"
                    );
                    continue;
                }
            };
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let (front, stop) = (front.clone(), stop.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sen-http-{i}"))
                .spawn(move || {
                    rt.block_on(serve_handed(front, limits, drain, stop, rx));
                    let _ = done_tx.send(());
                });
            match spawned {
                Ok(_) => {
                    t.queues.push(tx);
                    t.done.push(done_rx);
                }
                Err(e) => tracing::error!(
                    "cannot start HTTP thread {i} ({e}); its connections are served by the main runtime"
                ),
            }
        }
        t
    }

    fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Give `tcp` to the next thread; back to the caller when there is
    /// none (or it has stopped), to serve it here.
    fn hand_over(
        &mut self,
        tcp: tokio::net::TcpStream,
        remote: std::net::SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
        tls: Option<(crate::tls::Admitted, Handshakes)>,
    ) -> Option<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
        if self.queues.is_empty() {
            return Some((tcp, permit));
        }
        self.next = (self.next + 1) % self.queues.len();
        // Deregistered from this runtime; the thread registers it with its own.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%remote, "HTTP connection lost before it was handed over: {e}");
                return None;
            }
        };
        let handover = Handover {
            tcp: std,
            remote,
            permit,
            tls,
        };
        match self.queues[self.next].send(handover) {
            Ok(()) => None,
            Err(tokio::sync::mpsc::error::SendError(h)) => {
                tokio::net::TcpStream::from_std(h.tcp).ok().map(|tcp| (tcp, h.permit))
            }
        }
    }

    /// Wait (at most `drain` plus a second) for every thread to finish
    /// its connections; whether all did.
    async fn stopped(self, drain: Duration) -> bool {
        drop(self.queues);
        let all = futures::future::join_all(self.done);
        tokio::time::timeout(drain + Duration::from_secs(1), all).await.is_ok()
    }
}

/// The loop of one HTTP thread: serve the connections handed to it until
/// `stop`, then let them finish, bounded by `drain`.
async fn serve_handed(
    front: super::front::Front,
    limits: HttpLimits,
    drain: Duration,
    stop: CancellationToken,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Handover>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // TLS handshakes run in their own tasks and come back here when done.
    let (shaken_tx, mut shaken) = tokio::sync::mpsc::channel(64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            h = rx.recv() => {
                let Some(h) = h else { break };
                let tcp = match tokio::net::TcpStream::from_std(h.tcp) {
                    Ok(tcp) => tcp,
                    Err(e) => {
                        tracing::warn!(remote = %h.remote, "cannot serve an HTTP connection on this thread: {e}");
                        continue;
                    }
                };
                match h.tls {
                    None => spawn_conn(&graceful, &front, limits, tcp, h.remote, None, h.permit),
                    Some((admitted, handshakes)) => {
                        let (tx, remote, permit) = (shaken_tx.clone(), h.remote, h.permit);
                        tokio::spawn(async move {
                            if let Some(s) = admitted.handshake(tcp, &handshakes).await {
                                let _ = tx.send((s, remote, permit)).await;
                            }
                        });
                    }
                }
            }
            Some((s, remote, permit)) = shaken.recv() => {
                let cert = peer_certificate(&s);
                spawn_conn(&graceful, &front, limits, s, remote, cert, permit);
            }
        }
    }
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::debug!("HTTP connections of this thread still open after {drain:?}; closing");
    }
}

enum Source {
    Plain(TcpListener),
    Tls(tokio::sync::mpsc::Receiver<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

enum Conn {
    Plain(tokio::net::TcpStream, std::net::SocketAddr),
    Tls(
        Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
        std::net::SocketAddr,
        Option<PeerCertificate>,
    ),
}

fn unspecified() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 0))
}

fn spawn_conn<IO>(
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    front: &super::front::Front,
    limits: HttpLimits,
    io: IO,
    remote: std::net::SocketAddr,
    cert: Option<PeerCertificate>,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = front.connection(remote, cert);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(64 * 1024);
    let io = Idle::new(io, limits.idle_timeout);
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = conn.await {
            tracing::debug!(%remote, "HTTP connection: {e}");
        }
    });
}

/// A stream that fails with `TimedOut` once nothing has been read or
/// written for `timeout` while someone waits on it.
///
/// Progress only records the time; the timer is moved when it fires
/// early (to the last progress plus `timeout`), not on every read and
/// write: one timer update per `timeout` of a busy connection instead of
/// one per poll.
pub struct Idle<IO> {
    io: IO,
    timer: Pin<Box<Sleep>>,
    timeout: Duration,
    /// When something last moved.
    last: Instant,
}

impl<IO> Idle<IO> {
    pub fn new(io: IO, timeout: Duration) -> Self {
        Self {
            io,
            timer: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            last: Instant::now(),
        }
    }

    /// Whether the connection has been idle for `timeout`; otherwise the
    /// timer is armed to wake `cx` when it might be.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let deadline = self.last + self.timeout;
            if deadline <= Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
        false
    }

    /// What a poll of the stream means for the idle deadline: progress
    /// moves it; waiting past it is a `TimedOut` error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "HTTP connection idle too long")
}

impl<IO: AsyncRead + Unpin> AsyncRead for Idle<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        self.watch(cx, poll)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Idle<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A finished flush is not progress (nothing new moved): it does
        // not move the deadline.
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_idle_stream_times_out_and_a_busy_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut idle = Idle::new(a, Duration::from_secs(1));
        // Data every 300 ms keeps it open past the 1 s timeout.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            b.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            idle.read_exact(&mut one).await.unwrap();
        }
        // Then silence: the read fails once the timeout has passed.
        let mut one = [0u8; 1];
        let e = idle.read_exact(&mut one).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
