//! A Sen cluster node: the composition root that wires the RocksDB stores,
//! openraft, the gRPC services (public `sen.v1` and node-to-node
//! `sen.raft.v1`) and the HTTP endpoints together.
//!
//! Entry point: [`run`] (mini-redis style: configuration and a shutdown
//! future in, so tests can run a real node in-process).
//!
//! Map:
//! - [`config`]: the TOML configuration, env overrides, validation.
//! - `node`: [`Node`], the shared context every handler gets.
//! - `peers`: connections to other nodes (one HTTP/2 channel per peer).
//! - `network`: openraft's network over gRPC, with deadlines.
//! - `snapshot_transfer`: streaming snapshot files between nodes.
//! - `grpc`: the gRPC services and the error → status mapping.
//! - `http`: /livez, /readyz, /metrics.
//! - `metrics`: Prometheus metrics, fed from openraft's metrics.
//! - `server`: start-up and the ordered shutdown.
//! - [`faults`]: faults a failover drill injects (isolate, pause, crash).
//! - [`roles`]: fenced role hooks, drain, incident detection.
//! - [`incidents`]: the incident log kept in the cluster.

pub mod backup;
pub mod config;
mod deadline;
mod error;
pub mod faults;
mod grpc;
mod http;
pub mod incidents;
mod metrics;
mod network;
mod node;
mod peers;
pub mod roles;
mod server;
mod snapshot_transfer;

pub use config::{ConfigError, NodeConfig, Overrides};
pub use error::NodeError;
pub use node::Node;
pub use server::run;
