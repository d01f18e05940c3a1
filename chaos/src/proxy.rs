//! A fault-injecting TCP proxy for one directed link.
//!
//! Node `i` reaches node `j` through its own proxy `i→j` (the node's
//! `network.peer-addresses`), and clients reach node `j` through a client
//! proxy. Each proxy's [`LinkFault`] can be changed at any time:
//!
//! - `blackhole`: bytes stop flowing in both directions of every connection
//!   on the link (new connections are accepted but stall), like a cable cut:
//!   nothing is reset, so HTTP/2 keepalive and RPC deadlines must notice.
//!   When lifted, held bytes flow again (TCP retransmission).
//! - `delay_ms` ± `jitter_ms`: every chunk is delivered that much later,
//!   in order.
//! - `loss`: each chunk resets the connection with this probability (a
//!   byte stream cannot lose bytes; a reset is what loss looks like to TCP
//!   users after retransmissions give up).
//! - `refuse`: new connections are closed at once; open ones are reset.
//!
//! A fault on link `i→j` affects connections *initiated* by `i` (its RPCs to
//! `j` and their responses), which is what a one-way partition means for an
//! RPC system.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The fault currently applied to a link. `Default` = healthy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkFault {
    pub blackhole: bool,
    pub delay_ms: u64,
    pub jitter_ms: u64,
    /// Probability in [0, 1] that a chunk resets its connection.
    pub loss: f64,
    pub refuse: bool,
}

impl LinkFault {
    pub fn is_healthy(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// One running proxy.
pub struct Proxy {
    addr: SocketAddr,
    target: String,
    fault: watch::Sender<LinkFault>,
    accept: JoinHandle<()>,
    /// Bumped to reset every open connection.
    epoch: Arc<AtomicU64>,
}

impl Proxy {
    /// Listen on `bind` (port 0 = any) and forward to `target`.
    pub async fn start(bind: &str, target: &str, seed: u64) -> Result<Self> {
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("proxy bind {bind}"))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(LinkFault::default());
        let epoch = Arc::new(AtomicU64::new(0));
        let target_s = target.to_owned();
        let accept = tokio::spawn(accept_loop(listener, target_s, rx, epoch.clone(), seed));
        Ok(Self {
            addr,
            target: target.to_owned(),
            fault: tx,
            accept,
            epoch,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Apply `fault` from now on. Turning on `refuse` or `loss` also resets
    /// the open connections.
    pub fn set(&self, fault: LinkFault) {
        if fault.refuse {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> LinkFault {
        self.fault.borrow().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: String,
    fault: watch::Receiver<LinkFault>,
    epoch: Arc<AtomicU64>,
    seed: u64,
) {
    let mut n = 0u64;
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        n += 1;
        if fault.borrow().refuse {
            drop(inbound);
            continue;
        }
        let _ = inbound.set_nodelay(true);
        let target = target.clone();
        let fault = fault.clone();
        let epoch = epoch.clone();
        let conn_seed = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        tokio::spawn(async move {
            let Ok(Ok(outbound)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&target)).await
            else {
                return;
            };
            let _ = outbound.set_nodelay(true);
            serve(inbound, outbound, fault, epoch, conn_seed).await;
        });
    }
}

/// Pump both directions until either side closes or the link resets them.
async fn serve(
    inbound: TcpStream,
    outbound: TcpStream,
    fault: watch::Receiver<LinkFault>,
    epoch: Arc<AtomicU64>,
    seed: u64,
) {
    let born = epoch.load(Ordering::SeqCst);
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    let up = pump(ir, ow, fault.clone(), epoch.clone(), born, seed);
    let down = pump(or, iw, fault, epoch, born, seed.rotate_left(17));
    // When one direction ends, the connection is over.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<LinkFault>,
    epoch: Arc<AtomicU64>,
    born: u64,
    seed: u64,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Delivery runs separately so delays pipeline instead of adding up.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_due = Instant::now();
    loop {
        // Stall while blackholed (no reading: the sender's TCP backs off).
        loop {
            if epoch.load(Ordering::SeqCst) != born {
                writer.abort();
                return;
            }
            if !fault.borrow().blackhole {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), fault.changed()).await;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = fault.changed() => continue,
        };
        let f = fault.borrow().clone();
        if epoch.load(Ordering::SeqCst) != born || f.refuse || (f.loss > 0.0 && rng.random::<f64>() < f.loss) {
            writer.abort();
            return;
        }
        let mut due = Instant::now();
        if f.delay_ms > 0 || f.jitter_ms > 0 {
            let jitter = if f.jitter_ms > 0 {
                rng.random_range(0..=2 * f.jitter_ms) as i64 - f.jitter_ms as i64
            } else {
                0
            };
            let ms = (f.delay_ms as i64 + jitter).max(0) as u64;
            due += Duration::from_millis(ms);
        }
        // Keep order: never deliver before the previous chunk.
        if due < last_due {
            due = last_due;
        }
        last_due = due;
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            return;
        }
        // While blackholed after this chunk was read, hold it back too.
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn forwards_delays_stalls_and_refuses() {
        let echo = echo_server().await;
        let p = Proxy::start("127.0.0.1:0", &echo.to_string(), 1).await.unwrap();
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"hello").await.unwrap(), b"hello");

        // Delay: both directions, so a round trip takes at least 2 × 100 ms.
        p.set(LinkFault {
            delay_ms: 100,
            ..Default::default()
        });
        let t = std::time::Instant::now();
        roundtrip(&mut s, b"slow").await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(190), "{:?}", t.elapsed());

        // Blackhole: nothing comes back; healing lets the held bytes through.
        p.set(LinkFault {
            blackhole: true,
            ..Default::default()
        });
        s.write_all(b"held").await.unwrap();
        let mut buf = [0u8; 4];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf))
                .await
                .is_err()
        );
        p.set(LinkFault::default());
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"held");

        // Refuse: the open connection is reset, new ones are closed.
        p.set(LinkFault {
            refuse: true,
            ..Default::default()
        });
        assert!(roundtrip(&mut s, b"x").await.is_err());
        let mut s2 = TcpStream::connect(p.addr()).await.unwrap();
        assert!(roundtrip(&mut s2, b"y").await.is_err());
        p.set(LinkFault::default());
        let mut s3 = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s3, b"ok").await.unwrap(), b"ok");
    }
}
