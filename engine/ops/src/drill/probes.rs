//! The probe workload of a drill: one KV writer and one HTTP reader per
//! node at the probe rate, staggered so that together they sample every
//! `period / nodes`, and a 25 ms leader watch from every node but the
//! target. Every attempt is logged with its start, end and outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sen_client::{Client, ClientOptions};

use super::report::Probe;
use super::{Member, PROBE_DB, PROBE_FILE, PROBE_SITE};
use crate::OpsError;

/// `base`'s credentials with one short `timeout` for every attempt.
pub(crate) fn opts(base: &ClientOptions, timeout: Duration) -> ClientOptions {
    ClientOptions {
        timeout,
        attempt_timeout: timeout,
        ..base.clone()
    }
}

/// The probes while they run.
pub(crate) struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    log: Arc<Mutex<Vec<Probe>>>,
    leaders: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Running {
    /// Wait for every probe task (after `stop` was set); the probe log and
    /// the leader samples `(ms, leader)`.
    pub(crate) async fn finish(self) -> (Vec<Probe>, Vec<(u64, u64)>) {
        for t in self.tasks {
            let _ = t.await;
        }
        (take(&self.log), take(&self.leaders))
    }
}

fn take<T>(log: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()))
}

fn push<T>(log: &Mutex<Vec<T>>, v: T) {
    log.lock().unwrap_or_else(|p| p.into_inner()).push(v);
}

/// What the probes of one drill run against.
pub(crate) struct Plan<'a> {
    pub members: &'a [Member],
    /// The node the fault hits (the leader watch runs on the others).
    pub target: u64,
    pub drill: &'a str,
    /// What the probe file holds.
    pub body: &'a str,
    /// Probes per second per node and kind.
    pub rate: f64,
    /// Time zero of the probe log.
    pub started: Instant,
    /// The operator's client options: the probes use its credentials.
    pub base: &'a ClientOptions,
    /// HTTPS to nodes that serve TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Start the probes of `plan` until `stop` is set.
pub(crate) fn start(plan: Plan<'_>, stop: Arc<AtomicBool>) -> Result<Running, OpsError> {
    let Plan {
        members,
        target,
        drill,
        body,
        rate,
        started,
        base,
        tls,
    } = plan;
    let rel = move || started.elapsed().as_millis() as u64;
    let log: Arc<Mutex<Vec<Probe>>> = Arc::default();
    let period = Duration::from_secs_f64(1.0 / rate);
    let probe_timeout = Duration::from_millis(1000).max(period);
    let mut tasks = Vec::new();
    // Writer i starts i/n of a period later, so the union of all nodes'
    // probes samples every period/n, not all at once.
    let n_members = members.len() as u32;
    for (idx, m) in members.iter().enumerate() {
        let offset = period * idx as u32 / n_members.max(1);
        let writer = Client::new(std::slice::from_ref(&m.grpc), opts(base, probe_timeout))?;
        let (stop_w, log_w, node, drill) = (stop.clone(), log.clone(), m.id, drill.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            while !stop_w.load(Ordering::Relaxed) {
                tick.tick().await;
                seq += 1;
                let key = format!("{drill}/{node}/{seq:08}");
                let start_ms = rel();
                let ok = writer.put(PROBE_DB, key.as_bytes(), b"1").await.is_ok();
                push(
                    &log_w,
                    Probe {
                        node,
                        write: true,
                        start_ms,
                        end_ms: rel(),
                        ok,
                        key,
                    },
                );
            }
        }));
        let (stop_r, log_r, node, http, body) = (stop.clone(), log.clone(), m.id, m.http.clone(), body.to_owned());
        let tls = tls.clone().filter(|_| m.http_tls);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset + period / 2, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop_r.load(Ordering::Relaxed) {
                tick.tick().await;
                let start_ms = rel();
                let ok = http_probe(&http, &body, probe_timeout, tls.clone()).await;
                push(
                    &log_r,
                    Probe {
                        node,
                        write: false,
                        start_ms,
                        end_ms: rel(),
                        ok,
                        key: String::new(),
                    },
                );
            }
        }));
    }
    // Leader watch: who leads, seen from every node but the target. One
    // client, so the 25 ms polls reuse its connections.
    let leaders: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let others: Vec<String> = members
        .iter()
        .filter(|m| m.id != target)
        .map(|m| m.grpc.clone())
        .collect();
    let watch = Client::new(&others, opts(base, Duration::from_millis(300)))?;
    let (stop_l, leaders_l) = (stop, leaders.clone());
    tasks.push(tokio::spawn(async move {
        while !stop_l.load(Ordering::Relaxed) {
            let calls = others
                .iter()
                .map(|a| async { watch.local_status(a, Duration::from_millis(300)).await.ok() });
            let answers = futures::future::join_all(calls).await;
            let leader = answers
                .iter()
                .flatten()
                .filter(|s| s.state == "leader")
                .max_by_key(|s| s.term)
                .map(|s| s.node_id)
                .or_else(|| {
                    answers
                        .iter()
                        .flatten()
                        .filter(|s| s.leader_id != 0)
                        .max_by_key(|s| s.term)
                        .map(|s| s.leader_id)
                })
                .unwrap_or(0);
            push(&leaders_l, (rel(), leader));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }));
    Ok(Running { tasks, log, leaders })
}

/// `GET /sites/<probe>/probe.txt` over HTTP/1.1 (over TLS with `tls`);
/// true on a 200 with the expected body.
async fn http_probe(addr: &str, expect: &str, timeout: Duration, tls: Option<Arc<rustls::ClientConfig>>) -> bool {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn exchange(mut s: impl AsyncRead + AsyncWrite + Unpin, addr: &str) -> Option<String> {
        let req = format!("GET /sites/{PROBE_SITE}/{PROBE_FILE} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        // A TLS peer may close without close_notify after the body.
        let _ = s.read_to_end(&mut buf).await;
        Some(String::from_utf8_lossy(&buf).into_owned())
    }
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let text = match tls {
            None => exchange(tcp, addr).await?,
            Some(cfg) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned();
                let name = rustls::pki_types::ServerName::try_from(host).ok()?;
                let stream = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await.ok()?;
                exchange(stream, addr).await?
            }
        };
        Some(text.starts_with("HTTP/1.1 200") && text.ends_with(expect))
    };
    matches!(tokio::time::timeout(timeout, work).await, Ok(Some(true)))
}
