//! The replicated state machine of Sen, without any storage engine.
//!
//! - [`types`]: the openraft type configuration and short aliases. This is
//!   the thin layer that keeps openraft's alpha API churn in one place.
//! - [`command`]: what is replicated (a [`Request`]) and what applying it
//!   returns (a [`Response`]).
//! - [`apply`]: the deterministic apply logic, written against the
//!   [`StateView`] trait and producing [`Mutation`]s, so it can be tested
//!   against the in-memory [`mem::MemState`] and run unchanged on RocksDB.
//! - [`recovery`]: the evidence for a forced recovery after losing a
//!   majority, from the survivors' logs.
//! - [`schema`]: the one owner of the state's layout — tables, key codecs,
//!   stored records and the control plane's typed records.
//!
//! Invariant: applying the same sequence of log entries on any node yields
//! the same key-value state and the same responses, whatever the batching.

pub mod apply;
pub mod command;
pub mod content;
pub mod mem;
pub mod recovery;
pub mod schema;
pub mod types;

pub use apply::{Applier, DEDUP_WINDOW_MS, DedupRecord, KvRecord, Mutation, StateError, StateView};
pub use command::{Compare, CompareOp, CompareTarget, Deploy, Op, Outcome, Request, Response, Txn, TxnOp};
pub use types::*;
