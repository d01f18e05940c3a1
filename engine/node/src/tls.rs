//! The node's TLS listeners. Each connection takes the server
//! configuration current when it arrives (`sen_security::Reloader`), so
//! certificates replaced on disk are used without a restart; the handshake
//! runs in its own task with a deadline, so a client that never finishes
//! it holds nothing but that task.

use std::sync::Arc;
use std::time::Duration;

use sen_security::Reloader;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// TLS handshakes one listener runs at once, and from one address.
const MAX_PENDING_HANDSHAKES: usize = 1024;
const MAX_PENDING_PER_ADDRESS: usize = 256;

/// Handshakes in progress per client address; the guard gives its slot
/// back when the handshake ends.
#[derive(Default, Clone)]
struct PerAddress(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

struct Slot(PerAddress, std::net::IpAddr);

impl PerAddress {
    fn take(&self, ip: std::net::IpAddr) -> Option<Slot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= MAX_PENDING_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Which server configuration a listener uses.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Grpc,
    Http,
}

/// How handshakes are run and refused ones recorded.
#[derive(Clone)]
pub struct Handshakes {
    /// Longest handshake before the connection is dropped.
    pub timeout: Duration,
    /// Where refused handshakes go (the audit log, rate-limited per address).
    pub auth: Arc<crate::auth::Auth>,
    pub node: u64,
}

/// Why a handshake failed, if the client was refused (rather than gone):
/// a certificate that is not of this cluster's CA, or not TLS at all.
fn refusal(e: &std::io::Error) -> Option<String> {
    use tokio_rustls::rustls::Error;
    let r = e.get_ref()?.downcast_ref::<Error>()?;
    match r {
        Error::InvalidCertificate(_) => Some(format!("client certificate refused: {r}")),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            Some(format!("not a TLS client (plaintext?): {r}"))
        }
        _ => None,
    }
}

/// Which connections may start a TLS handshake on one listener: at most
/// [`MAX_PENDING_HANDSHAKES`] at once, [`MAX_PENDING_PER_ADDRESS`] from one
/// address; past that, new connections are closed at once. A flood of
/// connections that never finish their handshake holds at most that many
/// sockets, each for at most the handshake timeout.
#[derive(Clone)]
pub struct Gate {
    pending: Arc<tokio::sync::Semaphore>,
    per_address: PerAddress,
    reloader: Arc<Reloader>,
    kind: Listener,
}

/// A connection admitted to its handshake: its share of the bounds (held
/// until the handshake ends) and the server configuration current when it
/// arrived.
pub struct Admitted {
    _bounds: (tokio::sync::OwnedSemaphorePermit, Slot),
    config: Arc<tokio_rustls::rustls::ServerConfig>,
    remote: std::net::SocketAddr,
    kind: Listener,
}

impl Gate {
    pub fn new(reloader: Arc<Reloader>, kind: Listener) -> Self {
        Self {
            pending: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES)),
            per_address: PerAddress::default(),
            reloader,
            kind,
        }
    }

    /// Admit a connection from `remote` to a handshake, or `None`: too
    /// many are in progress (close it).
    pub fn admit(&self, remote: std::net::SocketAddr) -> Option<Admitted> {
        let Some(slot) = self.per_address.take(remote.ip()) else {
            tracing::debug!(%remote, "{MAX_PENDING_PER_ADDRESS} TLS handshakes from this address in progress: connection closed");
            return None;
        };
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "{MAX_PENDING_HANDSHAKES} TLS handshakes already in progress: connection closed");
            return None;
        };
        let set = self.reloader.current();
        let config = match self.kind {
            Listener::Grpc => set.grpc.clone(),
            Listener::Http => set.http.clone(),
        };
        Some(Admitted {
            _bounds: (permit, slot),
            config,
            remote,
            kind: self.kind,
        })
    }
}

impl Admitted {
    /// The handshake on `tcp`, within `h.timeout`; a refused client
    /// (a certificate of another CA, not TLS at all) is logged and
    /// audited. `None`: no TLS stream (close it).
    pub async fn handshake(self, tcp: TcpStream, h: &Handshakes) -> Option<TlsStream<TcpStream>> {
        let (remote, kind) = (self.remote, self.kind);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        match tokio::time::timeout(h.timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                match refusal(&e) {
                    Some(why) => {
                        tracing::info!(%remote, listener = ?kind, "TLS handshake refused: {why}");
                        h.auth
                            .audit_tls_refusal(h.node, remote, &format!("TLS handshake ({kind:?})"), why);
                    }
                    None => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                }
                None
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake did not finish within {:?}", h.timeout);
                None
            }
        }
    }
}

/// Accept TLS connections on `listener` until `stop`: handshaken streams
/// arrive on the returned channel. Each handshake runs in its own task,
/// admitted by a [`Gate`].
pub fn accept(
    listener: TcpListener,
    reloader: Arc<Reloader>,
    kind: Listener,
    handshakes: Handshakes,
    stop: CancellationToken,
) -> tokio::sync::mpsc::Receiver<TlsStream<TcpStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let gate = Gate::new(reloader, kind);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!("accept on {:?}: {e}", listener.local_addr());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let Some(admitted) = gate.admit(remote) else {
                continue;
            };
            let tx = tx.clone();
            let h = handshakes.clone();
            tokio::spawn(async move {
                if let Some(stream) = admitted.handshake(tcp, &h).await {
                    let _ = tx.send(stream).await;
                }
            });
        }
    });
    rx
}

/// Reload the certificates on SIGHUP and when the files change (checked
/// every `every`), until `stop`. `on_reload` runs after each successful
/// reload (peers reconnect with the new client certificate).
pub async fn watch(
    reloader: Arc<Reloader>,
    every: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    on_reload: impl Fn() + Send + 'static,
    stop: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let count = |result: &str| {
        metrics
            .tls_reloads
            .get_or_create(&crate::metrics::ResultLabel { result: result.into() })
            .inc();
    };
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => false,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let result = if forced {
            reloader.reload().map(Some)
        } else {
            reloader.reload_if_changed()
        };
        match result {
            Ok(Some(set)) => {
                metrics.cert_not_after.set(set.not_after);
                count("ok");
                tracing::info!(
                    cert = %reloader.files().cert.display(),
                    not_after = set.not_after,
                    "certificates reloaded: new connections use them"
                );
                on_reload();
            }
            Ok(None) => {}
            Err(e) => {
                count("error");
                tracing::error!("certificates not reloaded (the previous ones stay in use): {e}");
            }
        }
    }
}

/// The verified client certificate of an HTTPS connection (leaf, DER), in
/// its requests' extensions: a user (or a metrics scraper) can
/// authenticate with it as over gRPC.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<Vec<u8>>);
