//! Report files and the machine description.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

/// What the numbers were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory_gib: f64,
    pub data_fs: String,
}

impl Machine {
    pub fn probe(data: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let data_fs = std::process::Command::new("df")
            .arg("-hT")
            .arg(data)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .nth(1)
                    .unwrap_or("")
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel,
            memory_gib: (mem_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            data_fs,
        }
    }

    pub fn markdown(&self) -> String {
        format!(
            "Machine: {} cores ({}), {} GiB RAM, Linux {}, data on `{}`.\n",
            self.cores, self.cpu, self.memory_gib, self.kernel, self.data_fs
        )
    }
}

/// Write `<name>.json` and `<name>.md` and print the Markdown.
pub fn write(out: &Path, name: &str, json: &impl Serialize, md: &str) -> Result<()> {
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(json)?)?;
    std::fs::write(out.join(format!("{name}.md")), md)?;
    println!("{md}");
    Ok(())
}

/// Median and spread of a sample.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

pub fn summarize(values: &[f64]) -> Summary {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i]
    };
    Summary {
        n: v.len(),
        min: v.first().copied().unwrap_or(0.0),
        median: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: v.last().copied().unwrap_or(0.0),
        mean: if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        },
    }
}
