//! Sen's process-level harness: real `sen server` processes on 127.0.0.x,
//! started, killed (`SIGKILL`), paused (`SIGSTOP`/`SIGCONT`), stopped
//! (`SIGTERM`) and restarted, with polling helpers that wait for a
//! condition under a deadline (never a fixed sleep).
//!
//! Used by the multi-process integration tests (`cli/tests`), the
//! benchmarks (`benches/`), and the fault-injection runner to come
//! (issue "sen-chaos").

pub mod cluster;

pub use cluster::{ProcessCluster, wait_for};
