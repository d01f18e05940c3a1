//! The machine's ceilings: how many fsyncs per second the data disk does
//! (the bound on Raft commits without batching).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::report::{self, Machine};

/// Append 256 bytes and fsync, repeatedly, for `d`; returns fsyncs/s.
pub fn fsyncs_per_sec(dir: &Path, d: Duration) -> Result<f64> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    let buf = [7u8; 256];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        f.write_all(&buf)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

pub fn run(data: &Path, out: &Path, machine: &Machine) -> Result<()> {
    let rounds: Vec<f64> = (0..3)
        .map(|_| fsyncs_per_sec(data, Duration::from_secs(3)))
        .collect::<Result<_>>()?;
    let s = report::summarize(&rounds);
    let md = format!(
        "## Limits\n\n{}\nCommand: `target/release/sen-benches limits --out {}`\n\n| measure | median | min | max |\n|---|---|---|---|\n| fsyncs/s (256 B append + fdatasync, 3 × 3 s) | {:.0} | {:.0} | {:.0} |\n",
        machine.markdown(),
        out.display(),
        s.median,
        s.min,
        s.max
    );
    report::write(
        out,
        "limits",
        &json!({"machine": machine, "fsyncs_per_sec": s, "rounds": rounds}),
        &md,
    )
}
