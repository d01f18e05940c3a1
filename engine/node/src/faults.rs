//! Faults a failover drill injects into a live node (`sen drill run`).
//!
//! Everything here lives inside the node, needs no OS privileges, is
//! bounded in time and is undone when it ends or the node restarts:
//!
//! - **isolate**: every peer call in or out fails at once, as if the
//!   network cable were pulled. Clients still reach the node (they would
//!   through a front-end network that stayed up); it cannot commit.
//! - **pause**: Raft's timers stop and every peer call in or out waits
//!   until the pause ends (callers time out), as a stopped process would.
//! - **crash**: the process replaces itself (`exec` of its own binary with
//!   the same arguments) after recording when to start again; the new
//!   process waits, then opens the stores from disk. Memory, sockets and
//!   in-flight work are lost exactly as in `kill -9`; what was written to
//!   the OS survives, as it does in a process crash.
//!
//! An active fault ends on its own at its deadline ([`Faults::run_expiry`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ApiError;
use sen_core::now_ms;

pub use crate::config::MAX_FAULT;

/// The file (in the data directory) a crash drill leaves for the next
/// process: when it may start again.
const CRASH_FILE: &str = "drill-crash.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Isolate,
    Pause,
    Crash,
}

impl FaultKind {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "isolate" => Ok(Self::Isolate),
            "pause" => Ok(Self::Pause),
            "crash" => Ok(Self::Crash),
            other => Err(ApiError::InvalidArgument(format!(
                "unknown fault {other:?}: expected isolate, pause or crash"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Isolate => "isolate",
            Self::Pause => "pause",
            Self::Crash => "crash",
        }
    }
}

#[derive(Debug, Clone)]
struct Active {
    kind: FaultKind,
    until: Instant,
    drill: String,
}

/// The fault currently injected into this node, if any.
#[derive(Default)]
pub struct Faults {
    active: Mutex<Option<Active>>,
    /// Signalled whenever a fault begins or ends.
    changed: tokio::sync::Notify,
}

impl Faults {
    fn current(&self) -> Option<Active> {
        let mut g = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_some_and(|a| Instant::now() >= a.until) {
            *g = None;
        }
        g.clone()
    }

    /// Start `kind` for `duration`. Refused while another fault is active.
    pub fn begin(&self, kind: FaultKind, duration: Duration, drill: &str) -> Result<(), ApiError> {
        if duration.is_zero() || duration > MAX_FAULT {
            return Err(ApiError::InvalidArgument(format!(
                "fault duration must be between 1 ms and {MAX_FAULT:?}, not {duration:?}"
            )));
        }
        let mut g = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = g.as_ref()
            && Instant::now() < a.until
        {
            return Err(ApiError::FailedPrecondition(format!(
                "this node is already under fault {} of drill {}; wait for it to end or run `sen drill clear`",
                a.kind.name(),
                a.drill
            )));
        }
        *g = Some(Active {
            kind,
            until: Instant::now() + duration,
            drill: drill.to_owned(),
        });
        drop(g);
        tracing::warn!(fault = kind.name(), ?duration, drill, "drill fault injected");
        self.changed.notify_waiters();
        Ok(())
    }

    /// End the active fault now; returns its name.
    pub fn clear(&self) -> Option<&'static str> {
        let old = self.active.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.changed.notify_waiters();
        old.map(|a| {
            tracing::warn!(fault = a.kind.name(), drill = a.drill, "drill fault cleared");
            a.kind.name()
        })
    }

    /// The drill isolating this node, if it is isolated.
    pub fn isolated_by(&self) -> Option<String> {
        self.current().filter(|a| a.kind == FaultKind::Isolate).map(|a| a.drill)
    }

    /// The name of the active fault, if any.
    pub fn active_name(&self) -> Option<&'static str> {
        self.current().map(|a| a.kind.name())
    }

    pub fn is_paused(&self) -> bool {
        self.current().is_some_and(|a| a.kind == FaultKind::Pause)
    }

    /// Before an outgoing peer call with deadline `timeout`: `Err` when the
    /// call must fail (isolated, or still paused when the deadline passed).
    pub async fn before_outgoing(&self, timeout: Duration) -> Result<(), String> {
        match self.current() {
            None
            | Some(Active {
                kind: FaultKind::Crash, ..
            }) => Ok(()),
            Some(Active {
                kind: FaultKind::Isolate,
                drill,
                ..
            }) => Err(format!("this node is isolated by drill {drill}")),
            Some(Active {
                kind: FaultKind::Pause,
                until,
                drill,
            }) => {
                let wait = until.saturating_duration_since(Instant::now());
                if wait >= timeout {
                    tokio::time::sleep(timeout).await;
                    return Err(format!("this node is paused by drill {drill}"));
                }
                tokio::time::sleep(wait).await;
                Ok(())
            }
        }
    }

    /// Before handling an incoming peer call: isolated nodes refuse it,
    /// paused ones hold it until the pause ends (the caller's deadline
    /// usually passes first).
    pub async fn before_incoming(&self) -> Result<(), tonic::Status> {
        loop {
            match self.current() {
                None
                | Some(Active {
                    kind: FaultKind::Crash, ..
                }) => return Ok(()),
                Some(Active {
                    kind: FaultKind::Isolate,
                    drill,
                    ..
                }) => {
                    return Err(tonic::Status::unavailable(format!(
                        "node is isolated from its peers by drill {drill}"
                    )));
                }
                Some(Active {
                    kind: FaultKind::Pause,
                    until,
                    ..
                }) => {
                    let notified = self.changed.notified();
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => {}
                        _ = notified => {}
                    }
                }
            }
        }
    }

    /// Wait until the active fault (if any) ends or is cleared.
    pub async fn ended(&self) {
        loop {
            let Some(a) = self.current() else { return };
            let notified = self.changed.notified();
            tokio::select! {
                _ = tokio::time::sleep_until(a.until.into()) => {}
                _ = notified => {}
            }
        }
    }
}

/// Crash this process for `down`: record when the next process may start,
/// then replace this process with a fresh copy of itself (same binary,
/// arguments and environment). Returns only on failure.
pub fn crash_and_restart(data_dir: &Path, down: Duration, drill: &str) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let file = data_dir.join(CRASH_FILE);
    let record = serde_json::json!({
        "version": 1,
        "drill": drill,
        "crashed_at_ms": now_ms(),
        "restart_at_ms": now_ms() + down.as_millis() as u64,
    });
    if let Err(e) = std::fs::write(&file, record.to_string()) {
        return e;
    }
    // A supervisor would start the binary at its path (a newer one if it
    // was upgraded in place); if that path is gone, the running image.
    let exe = std::fs::read_link("/proc/self/exe")
        .ok()
        .map(|p| {
            let s = p.to_string_lossy();
            PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_owned())
        })
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    tracing::warn!(drill, ?down, exe = %exe.display(), "drill crash: replacing this process, restart from disk after the down time");
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    std::process::Command::new(&exe).arg0(argv0).args(args).exec()
}

/// At start-up: if a crash drill left a restart time, stay down until then
/// (at most [`MAX_FAULT`]). The file is removed first, so a later restart
/// never waits again.
pub async fn hold_down_after_crash(data_dir: &Path) {
    let file = data_dir.join(CRASH_FILE);
    let Ok(text) = std::fs::read(&file) else { return };
    let _ = std::fs::remove_file(&file);
    let restart_at = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("restart_at_ms").and_then(|x| x.as_u64()))
        .unwrap_or(0);
    let wait = Duration::from_millis(restart_at.saturating_sub(now_ms())).min(MAX_FAULT);
    if !wait.is_zero() {
        tracing::warn!(
            ?wait,
            "restarted by a crash drill: staying down until the drill's down time ends"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn isolate_refuses_and_ends_on_time() {
        let f = Faults::default();
        assert!(f.before_outgoing(Duration::from_millis(10)).await.is_ok());
        f.begin(FaultKind::Isolate, Duration::from_millis(150), "d1").unwrap();
        assert!(f.before_outgoing(Duration::from_millis(10)).await.is_err());
        assert!(f.before_incoming().await.is_err());
        // A second fault is refused while one is active.
        assert!(f.begin(FaultKind::Pause, Duration::from_millis(10), "d2").is_err());
        f.ended().await;
        assert!(f.before_outgoing(Duration::from_millis(10)).await.is_ok());
        assert!(f.begin(FaultKind::Pause, Duration::from_millis(10), "d2").is_ok());
    }

    #[tokio::test]
    async fn pause_holds_calls_until_it_ends_or_is_cleared() {
        let f = std::sync::Arc::new(Faults::default());
        f.begin(FaultKind::Pause, Duration::from_secs(60), "d").unwrap();
        assert!(f.is_paused());
        // Outgoing: a call whose deadline passes first fails after it.
        let t = Instant::now();
        assert!(f.before_outgoing(Duration::from_millis(50)).await.is_err());
        assert!(t.elapsed() >= Duration::from_millis(50));
        // Incoming: held until the pause is cleared.
        let f2 = f.clone();
        let held = tokio::spawn(async move { f2.before_incoming().await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!held.is_finished());
        assert_eq!(f.clear(), Some("pause"));
        assert!(held.await.unwrap().is_ok());
        assert!(!f.is_paused());
    }

    #[test]
    fn durations_are_bounded() {
        let f = Faults::default();
        assert!(f.begin(FaultKind::Isolate, Duration::ZERO, "d").is_err());
        assert!(
            f.begin(FaultKind::Isolate, MAX_FAULT + Duration::from_secs(1), "d")
                .is_err()
        );
        assert!(FaultKind::parse("melt").is_err());
    }
}
