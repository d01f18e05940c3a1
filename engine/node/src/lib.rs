//! A Sen cluster node: the composition root that wires the RocksDB stores,
//! openraft, the gRPC services (public `sen.v1` and node-to-node
//! `sen.raft.v1`) and the HTTP endpoints together.
//!
//! Entry point: [`run`] (mini-redis style: configuration and a shutdown
//! future in, so tests can run a real node in-process).
//!
//! Map, from the bottom up (a module uses only modules above it in this
//! list; `layers` in the tests checks it):
//! - [`config`], `deadline`, `types`: the TOML configuration, request
//!   deadlines, type aliases.
//! - `error`: start-up errors and request errors, and their one mapping to
//!   the wire (`sen_proto::status`).
//! - `role_state`, [`faults`]: what the role task knows; drill faults
//!   (isolate, pause, crash).
//! - `peers`, `snapshot_transfer`, `network`: connections to other nodes,
//!   streaming snapshots, openraft's network over gRPC.
//! - `metrics`: Prometheus metrics, fed from openraft's metrics.
//! - `traffic`: readers and speed per site, counted until the leader has
//!   them.
//! - `node`: [`Node`], the shared context every handler gets.
//! - `system`: the control plane (`sen-system` records) on a node.
//! - `auth`: who is calling and may they (principals, the rule table, the
//!   audit queue); `access`: users, grants and tokens.
//! - `incidents`: the incident log, written against `system::ControlPlane`.
//! - `forward`: requests that must run on the leader, from any node.
//! - `recovery`: forced recovery after losing a majority.
//! - [`roles`]: fenced role hooks, drain, incident detection.
//! - `growth`: samples of what this node holds (R8), taken by `probe`.
//! - `probe`: the built-in black-box probe that measures availability
//!   (docs/reports.md); `status_gauges`: backup and incident gauges read
//!   from the control plane for Prometheus alerts.
//! - `backup`: backups of this node's replica and the scheduler;
//!   `audit_log`: committing and pruning the audit log; `tls`: the TLS
//!   listeners and certificate reload.
//! - `grpc`, `http`: the services.
//! - `server`: start-up and the ordered shutdown.

#[macro_use]
mod forward;
mod growth;

mod access;
mod archive;
mod archive_status;
mod audit_log;
mod auth;
pub mod backup;
pub use sen_config as config;
mod deadline;
mod disk;
mod error;
pub mod faults;
mod file_cache;
mod grpc;
mod http;
mod incidents;
mod metrics;
mod network;
mod node;
mod peers;
mod probe;
mod recovery;
mod role_state;
pub mod roles;
mod server;
mod snapshot_transfer;
mod status_gauges;
mod system;
mod tls;
mod traffic;
mod types;

#[cfg(test)]
mod layers;

pub use config::{ConfigError, NodeConfig, Overrides};
pub use error::NodeError;
pub use node::Node;
pub use server::run;
