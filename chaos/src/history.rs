//! The operation history a run records, one JSON object per line in
//! `history.jsonl`. Times are microseconds since the run started.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What a client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Set a register key to a unique value.
    Put,
    /// Linearizable read.
    Get,
    /// Read from one node's local state.
    GetStale,
    /// Compare-and-set: if value = `expect` (None = absent) then put `value`.
    Cas,
    /// Append a unique token to an append key.
    Append,
}

impl OpKind {
    pub fn is_write(self) -> bool {
        matches!(self, OpKind::Put | OpKind::Cas | OpKind::Append)
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Definitely had no effect (rejected before it was proposed, or a read
    /// that failed).
    Fail,
    /// Unknown: a write that errored or timed out may or may not take
    /// effect, at any time after it was invoked.
    Unknown,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub id: u64,
    /// Jepsen-style process: one operation at a time; a client gets a new
    /// process after an unknown outcome.
    pub process: u64,
    pub client: u32,
    /// Which node the client talks to ("any" or a node id).
    pub endpoint: String,
    pub f: OpKind,
    pub key: String,
    /// The value written (put, cas) or appended (append).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// For cas: the expected current value (`None` = the key is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    pub invoke_us: u64,
    /// `None` for unknown outcomes (treated as "some time after invoke, or
    /// never").
    #[serde(default)]
    pub complete_us: Option<u64>,
    pub outcome: Outcome,
    /// For reads: `Some(None)` = key absent, `Some(Some(v))` = value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Option<String>>,
    /// Write: revision it took effect at. Read: the key's mod revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// For cas: whether the comparison held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
    /// Hex of the 16-byte request id of writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Node that served it (from the response header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    pub fn latency_us(&self) -> Option<u64> {
        self.complete_us.map(|c| c.saturating_sub(self.invoke_us))
    }
}

/// Write a history as JSON lines.
pub fn save(path: &Path, ops: &[Op]) -> Result<()> {
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?);
    for op in ops {
        serde_json::to_writer(&mut f, op)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    Ok(())
}

/// Read a history written by [`save`].
pub fn load(path: &Path) -> Result<Vec<Op>> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut ops = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(
            serde_json::from_str(&line).with_context(|| format!("{}:{}: bad history line", path.display(), n + 1))?,
        );
    }
    Ok(ops)
}
