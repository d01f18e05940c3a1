//! Sen's fault-injection harness: real `sen` processes on 127.0.0.x,
//! attacked while a workload records a history that offline checkers
//! examine.
//!
//! - [`cluster`]: start / kill / pause / restart real node processes.
//! - [`proxy`]: a fault-injecting TCP proxy on every directed link.
//! - [`nemesis`]: the faults and how they are applied.
//! - [`workload`]: clients recording the [`history`]; [`site_load`]: site
//!   pushes and HTTP reads during the faults, with their own checker.
//! - [`scenario`]: named scenarios and suites.
//! - [`check`]: linearizability (WGL/porcupine port), lost/duplicated
//!   writes, convergence, Raft invariants.
//! - [`runner`]: one scenario end to end; [`report`]: its outputs.
//!
//! The binary is `sen-chaos` (see `docs/reliability.md`).

pub mod check;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod site_load;
pub mod workload;

pub use cluster::{ProcessCluster, wait_for};
