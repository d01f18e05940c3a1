//! Multi-process integration tests: real `sen` processes on 127.0.0.x.
//!
//! Every wait polls a condition under a deadline (`sen_chaos::wait_for`);
//! nothing sleeps for a fixed time. On failure, tests print the node logs.

#![allow(clippy::unwrap_used)]

mod archive;
mod backup;
mod browser;
mod cli;
mod cluster;
mod common;
mod content;
mod guards;
mod ha;
mod membership;
mod metrics;
mod readme;
mod reports;
mod security;
