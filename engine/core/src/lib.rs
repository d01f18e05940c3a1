//! Shared building blocks of Sen that every other crate may use without
//! pulling in RocksDB, tonic or openraft.
//!
//! - [`auth`]: principals, roles scoped to sites and databases, and the
//!   one permission check.
//! - [`codec`]: the one place that turns values into bytes (bincode 2 + serde).
//!   Every persisted or replicated structure goes through it, so the encoding
//!   can be swapped in one module.
//! - [`limits`]: validation of user input (database names, key and value
//!   sizes) with messages that say what to do.
//! - [`ids`]: identifiers shared by the cluster (node, cluster and request ids).
//! - [`time`]: wall-clock milliseconds ([`now_ms`]), defined once.

pub mod auth;
pub mod codec;
pub mod ids;
pub mod limits;
pub mod time;

pub use ids::{ClusterId, NodeId, RequestId};
pub use time::now_ms;
