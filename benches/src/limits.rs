//! The machine's ceilings, which bound every other figure: fsyncs/s of the
//! data disk (Raft commits without batching), sequential write and read
//! MB/s on the data disk, and single-core MB/s of the three CPU stages a
//! byte of site content or backup goes through in Sen: blake3 (chunk ids),
//! zstd at Sen's level (3, `StoredChunk::encode`) and FastCDC with Sen's
//! parameters (`sen_content::chunker::cut`).

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::report::{self, Machine, Summary};

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

/// Write `bytes` in 1 MiB blocks and fsync once; then read it back (after
/// asking the kernel to drop its cache, which needs root; if it cannot,
/// the read figure is from the page cache and says so). MB/s each.
fn sequential(dir: &Path, bytes: usize) -> Result<(f64, f64, bool)> {
    let path = dir.join("seq-probe");
    let block = pseudo_random(1 << 20, 99);
    let start = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    for _ in 0..bytes >> 20 {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    let write = bytes as f64 / 1e6 / start.elapsed().as_secs_f64();
    drop(f);
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok();
    let start = Instant::now();
    let mut f = std::fs::File::open(&path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0usize;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let read = n as f64 / 1e6 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok((write, read, dropped))
}

/// Deterministic incompressible bytes (xorshift).
fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Real, compressible text: the system's documentation, up to `n` bytes
/// (repeated if the machine has less).
fn real_text(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut stack = vec![std::path::PathBuf::from("/usr/share/doc")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if v.len() >= n {
                break;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                v.extend_from_slice(&b);
            }
        }
    }
    if v.is_empty() {
        v = b"Cong thong tin dien tu tinh Dong Thap. ".repeat(1024);
    }
    while v.len() < n {
        let more = v.clone();
        v.extend_from_slice(&more);
    }
    v.truncate(n);
    v
}

/// MB/s of `f` over `data`, best of 3 (single thread).
fn throughput(data: &[u8], mut f: impl FnMut(&[u8])) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            f(data);
            data.len() as f64 / 1e6 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

pub struct Limits {
    pub fsyncs: Summary,
    pub seq_write_mb_s: f64,
    pub seq_read_mb_s: f64,
    pub read_uncached: bool,
    pub blake3_mb_s: f64,
    pub zstd3_text_mb_s: f64,
    pub zstd3_text_ratio: f64,
    pub zstd3_random_mb_s: f64,
    pub fastcdc_mb_s: f64,
}

pub fn measure(data: &Path) -> Result<Limits> {
    let rounds: Vec<f64> = (0..3)
        .map(|_| fsyncs_per_sec(data, Duration::from_secs(3)))
        .collect::<Result<_>>()?;
    let (seq_write_mb_s, seq_read_mb_s, read_uncached) = sequential(data, 1 << 30)?;
    let random = pseudo_random(256 << 20, 7);
    let text = real_text(64 << 20);
    let blake3_mb_s = throughput(&random, |d| {
        std::hint::black_box(blake3::hash(d));
    });
    let mut compressed = 0usize;
    let zstd3_text_mb_s = throughput(&text, |d| {
        compressed = d
            .chunks(sen_content::chunker::AVG_CHUNK)
            .map(|c| zstd::bulk::compress(c, 3).map_or(c.len(), |z| z.len()))
            .sum();
    });
    let zstd3_random_mb_s = throughput(&random[..64 << 20], |d| {
        for c in d.chunks(sen_content::chunker::AVG_CHUNK) {
            std::hint::black_box(zstd::bulk::compress(c, 3).ok());
        }
    });
    let fastcdc_mb_s = throughput(&random, |d| {
        std::hint::black_box(sen_content::chunker::cut(d));
    });
    Ok(Limits {
        fsyncs: report::summarize(&rounds),
        seq_write_mb_s,
        seq_read_mb_s,
        read_uncached,
        blake3_mb_s,
        zstd3_text_mb_s,
        zstd3_text_ratio: text.len() as f64 / compressed.max(1) as f64,
        zstd3_random_mb_s,
        fastcdc_mb_s,
    })
}

pub fn run(data: &Path, out: &Path, machine: &Machine) -> Result<()> {
    let l = measure(data)?;
    let md = format!(
        "## Limits\n\n{}\nCommand: `target/release/sen-benches limits --out {}`\n\n| measure | value |\n|---|---|\n| fsyncs/s (256 B append + fdatasync, 3 × 3 s): median (min–max) | {:.0} ({:.0}–{:.0}) |\n| sequential write, 1 GiB + one fsync | {:.0} MB/s |\n| sequential read, 1 GiB{} | {:.0} MB/s |\n| blake3, one core (256 MiB incompressible) | {:.0} MB/s |\n| zstd level 3, one core, 64 KiB pieces of real text (/usr/share/doc, 64 MiB; ratio {:.2}) | {:.0} MB/s |\n| zstd level 3, one core, incompressible | {:.0} MB/s |\n| FastCDC 16/64/256 KiB (`sen_content::chunker::cut`), one core | {:.0} MB/s |\n",
        machine.markdown(),
        out.display(),
        l.fsyncs.median,
        l.fsyncs.min,
        l.fsyncs.max,
        l.seq_write_mb_s,
        if l.read_uncached {
            " (page cache dropped first)"
        } else {
            " (FROM THE PAGE CACHE: could not drop it)"
        },
        l.seq_read_mb_s,
        l.blake3_mb_s,
        l.zstd3_text_ratio,
        l.zstd3_text_mb_s,
        l.zstd3_random_mb_s,
        l.fastcdc_mb_s,
    );
    report::write(
        out,
        "limits",
        &json!({
            "machine": machine,
            "fsyncs_per_sec": l.fsyncs,
            "seq_write_mb_s": l.seq_write_mb_s,
            "seq_read_mb_s": l.seq_read_mb_s,
            "read_uncached": l.read_uncached,
            "blake3_mb_s": l.blake3_mb_s,
            "zstd3_text_mb_s": l.zstd3_text_mb_s,
            "zstd3_text_ratio": l.zstd3_text_ratio,
            "zstd3_random_mb_s": l.zstd3_random_mb_s,
            "fastcdc_mb_s": l.fastcdc_mb_s,
        }),
        &md,
    )
}
