//! Per-scenario reports: `report.json`, `report.md` and a latency plot
//! (`latency.svg`) with fault windows shaded, like Jepsen's perf graphs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::check::{Convergence, LinResult, WriteCheck};
use crate::history::{Op, OpKind, Outcome};
use crate::nemesis::Executed;

/// A fault's time window, for availability and the plot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    pub label: String,
    pub start_us: u64,
    pub end_us: u64,
}

/// Availability during one fault window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowStats {
    pub label: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// From the fault's start to the first write that was invoked after it
    /// and succeeded (client-observed failover time).
    pub first_write_after_ms: Option<u64>,
    /// Longest time without a successful write completion, over the window
    /// and the recovery after it.
    pub max_write_gap_ms: u64,
    pub max_read_gap_ms: u64,
    pub success_before: f64,
    pub success_during: f64,
    pub success_after: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub total: usize,
    pub ok: usize,
    pub fail: usize,
    pub unknown: usize,
    pub by_kind: BTreeMap<String, [usize; 3]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Liveness {
    pub ok: bool,
    pub millis: u64,
    pub detail: String,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub seed: u64,
    pub scenario: String,
    pub commit: String,
    pub nodes: usize,
    pub started_at: String,
    pub duration_ms: u64,
    pub config: String,
    /// Every fault and repair applied, in order.
    pub faults: Vec<Executed>,
    pub windows: Vec<WindowStats>,
    pub ops: Counts,
    pub ops_per_sec: f64,
    pub write_latency_p50_ms: f64,
    pub write_latency_p99_ms: f64,
    pub read_latency_p50_ms: f64,
    pub read_latency_p99_ms: f64,
    /// Acknowledged writes missing from the replicated state.
    pub lost_writes: usize,
    /// "true", "false" or "unknown" (search budget exhausted).
    pub linearizable: String,
    pub converged: bool,
    pub passed: bool,
    /// Why it did not pass (harness problems and checker findings).
    pub failures: Vec<String>,
    /// Problems found by the harness itself (scenario, liveness, too little
    /// traffic), kept apart so `sen-chaos check` can re-run the checkers.
    pub harness_failures: Vec<String>,
    /// Nodes that refused to start after a fault, with their reason.
    pub refused_nodes: BTreeMap<u64, String>,
    pub lin: LinResult,
    pub writes: WriteCheck,
    pub stale_read_violations: Vec<String>,
    pub invariant_violations: Vec<String>,
    pub convergence: Convergence,
    pub liveness: Liveness,
    pub unknowns_resolved: (usize, usize),
    /// Site pushes and HTTP reads during the run (absent in old reports).
    #[serde(default)]
    pub site: crate::site_load::SiteCheck,
    pub reproduce: String,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Op counts and latency percentiles.
pub fn summarize(ops: &[Op]) -> (Counts, [f64; 4]) {
    let mut c = Counts::default();
    let (mut w, mut r) = (Vec::new(), Vec::new());
    for op in ops {
        c.total += 1;
        let slot = match op.outcome {
            Outcome::Ok => {
                c.ok += 1;
                0
            }
            Outcome::Fail => {
                c.fail += 1;
                1
            }
            Outcome::Unknown => {
                c.unknown += 1;
                2
            }
        };
        c.by_kind.entry(format!("{:?}", op.f).to_lowercase()).or_default()[slot] += 1;
        if op.outcome == Outcome::Ok
            && let Some(l) = op.latency_us()
        {
            if op.f.is_write() { &mut w } else { &mut r }.push(l as f64 / 1000.0);
        }
    }
    let lat = [pct(&mut w, 0.5), pct(&mut w, 0.99), pct(&mut r, 0.5), pct(&mut r, 0.99)];
    (c, lat)
}

fn max_gap(times: &[u64], from: u64, to: u64) -> u64 {
    // Gaps between consecutive successes that overlap [from, to].
    let mut prev = from;
    let mut max = 0;
    for &t in times {
        if t < from {
            continue;
        }
        if t > to {
            max = max.max(t.min(to) - prev);
            prev = to;
            break;
        }
        max = max.max(t - prev);
        prev = t;
    }
    max.max(to.saturating_sub(prev))
}

fn success_rate(ops: &[Op], from: u64, to: u64) -> f64 {
    let in_range: Vec<&Op> = ops.iter().filter(|o| o.invoke_us >= from && o.invoke_us < to).collect();
    if in_range.is_empty() {
        return 0.0;
    }
    in_range.iter().filter(|o| o.outcome == Outcome::Ok).count() as f64 / in_range.len() as f64
}

/// Availability per window; `end_us` is the end of the workload.
pub fn window_stats(ops: &[Op], windows: &[Window], end_us: u64) -> Vec<WindowStats> {
    let mut writes: Vec<u64> = ops
        .iter()
        .filter(|o| o.f.is_write() && o.outcome == Outcome::Ok)
        .filter_map(|o| o.complete_us)
        .collect();
    writes.sort_unstable();
    let mut reads: Vec<u64> = ops
        .iter()
        .filter(|o| matches!(o.f, OpKind::Get | OpKind::GetStale) && o.outcome == Outcome::Ok)
        .filter_map(|o| o.complete_us)
        .collect();
    reads.sort_unstable();
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            // The recovery after a window lasts until the next one starts.
            let next = windows.get(i + 1).map_or(end_us, |n| n.start_us).max(w.end_us);
            let before_from = if i == 0 { 0 } else { windows[i - 1].end_us };
            let first_write_after_ms = ops
                .iter()
                .filter(|o| o.f.is_write() && o.outcome == Outcome::Ok && o.invoke_us >= w.start_us)
                .filter_map(|o| o.complete_us)
                .min()
                .map(|c| (c - w.start_us) / 1000);
            WindowStats {
                label: w.label.clone(),
                start_ms: w.start_us / 1000,
                end_ms: w.end_us / 1000,
                first_write_after_ms,
                max_write_gap_ms: max_gap(&writes, w.start_us, next) / 1000,
                max_read_gap_ms: max_gap(&reads, w.start_us, next) / 1000,
                success_before: success_rate(ops, before_from, w.start_us),
                success_during: success_rate(ops, w.start_us, w.end_us),
                success_after: success_rate(ops, w.end_us, next),
            }
        })
        .collect()
}

/// Write report.json, report.md and latency.svg into `dir`.
pub fn write(dir: &Path, report: &Report, ops: &[Op], windows: &[Window]) -> Result<()> {
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(report)?)?;
    std::fs::write(dir.join("report.md"), markdown(report))?;
    std::fs::write(dir.join("latency.svg"), svg(report, ops, windows))?;
    Ok(())
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let verdict = if r.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(s, "# sen-chaos: {} — {verdict}\n", r.scenario);
    let _ = writeln!(
        s,
        "seed `{}` · commit `{}` · {} nodes · {:.1} s · started {}\n",
        r.seed,
        r.commit,
        r.nodes,
        r.duration_ms as f64 / 1000.0,
        r.started_at
    );
    let _ = writeln!(s, "Reproduce: `{}`\n", r.reproduce);
    let _ = writeln!(s, "## Verdicts\n");
    let _ = writeln!(s, "| check | result |\n|---|---|");
    let _ = writeln!(s, "| lost writes | {} |", r.lost_writes);
    let _ = writeln!(
        s,
        "| linearizable | {} ({} keys, {} ops, {} ms) |",
        r.linearizable, r.lin.keys_checked, r.lin.ops_checked, r.lin.millis
    );
    let _ = writeln!(s, "| duplicated appends | {} |", r.writes.duplicated.len());
    let _ = writeln!(s, "| unexpected values | {} |", r.writes.unexpected.len());
    let _ = writeln!(s, "| stale-read phantoms | {} |", r.stale_read_violations.len());
    let _ = writeln!(s, "| converged | {} ({}) |", r.converged, r.convergence.detail);
    let _ = writeln!(s, "| raft invariants | {} violations |", r.invariant_violations.len());
    let _ = writeln!(
        s,
        "| liveness after healing | {} ({} ms) |",
        r.liveness.ok, r.liveness.millis
    );
    let _ = writeln!(
        s,
        "| site content | {} violations ({} pushes acknowledged, {} unknown; {} HTTP reads ok, {} failed; {} deployments served) |",
        r.site.violations.len(),
        r.site.pushes_ok,
        r.site.pushes_unknown,
        r.site.reads_ok,
        r.site.reads_failed,
        r.site.deployments_served
    );
    if !r.failures.is_empty() {
        let _ = writeln!(s, "\nFailures:\n");
        for f in &r.failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    if !r.site.violations.is_empty() {
        let _ = writeln!(s, "\nSite content violations:\n");
        for v in r.site.violations.iter().take(20) {
            let _ = writeln!(s, "- {v}");
        }
    }
    if !r.refused_nodes.is_empty() {
        let _ = writeln!(s, "\nNodes that refused to start (expected after log corruption):\n");
        for (n, why) in &r.refused_nodes {
            let _ = writeln!(s, "- node {n}: {why}");
        }
    }
    let _ = writeln!(s, "\n## Faults\n\n| t (s) | fault | ok | note |\n|---|---|---|---|");
    for f in &r.faults {
        let _ = writeln!(
            s,
            "| {:.2} | {} | {} | {} |",
            f.at_us as f64 / 1e6,
            f.label,
            f.ok,
            f.note.as_deref().unwrap_or("").replace('|', "/")
        );
    }
    let _ = writeln!(
        s,
        "\n## Availability\n\n| window | start s | end s | first write after (ms) | max write gap (ms) | max read gap (ms) | success before / during / after |\n|---|---|---|---|---|---|---|"
    );
    for w in &r.windows {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.1} | {} | {} | {} | {:.0}% / {:.0}% / {:.0}% |",
            w.label,
            w.start_ms as f64 / 1000.0,
            w.end_ms as f64 / 1000.0,
            w.first_write_after_ms.map_or("-".into(), |v| v.to_string()),
            w.max_write_gap_ms,
            w.max_read_gap_ms,
            w.success_before * 100.0,
            w.success_during * 100.0,
            w.success_after * 100.0
        );
    }
    let _ = writeln!(
        s,
        "\n## Operations\n\n{} operations ({:.0}/s): {} ok, {} failed, {} unknown ({} unknown writes later found applied, {} found never applied).\n\nWrite latency p50 {:.1} ms, p99 {:.1} ms; read latency p50 {:.1} ms, p99 {:.1} ms.\n",
        r.ops.total,
        r.ops_per_sec,
        r.ops.ok,
        r.ops.fail,
        r.ops.unknown,
        r.unknowns_resolved.0,
        r.unknowns_resolved.1,
        r.write_latency_p50_ms,
        r.write_latency_p99_ms,
        r.read_latency_p50_ms,
        r.read_latency_p99_ms
    );
    let _ = writeln!(s, "| op | ok | failed | unknown |\n|---|---|---|---|");
    for (k, [ok, fail, unk]) in &r.ops.by_kind {
        let _ = writeln!(s, "| {k} | {ok} | {fail} | {unk} |");
    }
    let _ = writeln!(s, "\n![latency](latency.svg)");
    s
}

/// Latency over time, log scale, fault windows shaded.
pub fn svg(r: &Report, ops: &[Op], windows: &[Window]) -> String {
    let (w, h) = (960.0f64, 360.0f64);
    let (left, right, top, bottom) = (60.0, 20.0, 30.0, 40.0);
    let end_us = ops
        .iter()
        .map(|o| o.complete_us.unwrap_or(o.invoke_us))
        .chain(windows.iter().map(|w| w.end_us))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |us: f64| left + (w - left - right) * us / end_us;
    let (lo, hi) = (0.1f64.log10(), 10_000f64.log10());
    let y = |ms: f64| {
        let v = ms.clamp(0.1, 10_000.0).log10();
        top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="13">{} — seed {} — {}</text>"#,
        r.scenario,
        r.seed,
        if r.passed { "PASS" } else { "FAIL" }
    );
    for win in windows {
        let (x0, x1) = (x(win.start_us as f64), x(win.end_us.max(win.start_us + 1) as f64));
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="#f4c7c3" opacity="0.6"/><text x="{x0:.1}" y="{:.1}" fill="#a33">{}</text>"##,
            (x1 - x0).max(1.0),
            h - top - bottom,
            top + 12.0,
            xml(&win.label)
        );
    }
    for ms in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
        let yy = y(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ms} ms</text>"##,
            w - right,
            left - 4.0,
            yy + 4.0
        );
    }
    let secs = (end_us / 1e6).ceil() as u64;
    let step = (secs / 10).max(1);
    for t in (0..=secs).step_by(step as usize) {
        let xx = x(t as f64 * 1e6);
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{t} s</text>"#,
            h - bottom + 16.0
        );
    }
    for op in ops {
        let (color, lat) = match (op.outcome, op.latency_us()) {
            (Outcome::Ok, Some(l)) if op.f.is_write() => ("#1f77b4", l as f64 / 1000.0),
            (Outcome::Ok, Some(l)) => ("#2ca02c", l as f64 / 1000.0),
            (Outcome::Fail, Some(l)) => ("#ff7f0e", l as f64 / 1000.0),
            _ => ("#d62728", 10_000.0),
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{color}"/>"#,
            x(op.invoke_us as f64),
            y(lat)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{:.1}"><tspan fill="#1f77b4">● write ok</tspan>  <tspan fill="#2ca02c">● read ok</tspan>  <tspan fill="#ff7f0e">● failed</tspan>  <tspan fill="#d62728">● unknown (top)</tspan>  <tspan fill="#a33">shaded: fault</tspan></text>"##,
        h - 6.0
    );
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
