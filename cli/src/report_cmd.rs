//! `sen report`: what the Editorial Board reads (docs/reports.md). The
//! computation is `sen_ops::report`; this module parses, prints and exits.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use sen_ops::drill::Lang;
use sen_ops::report::{self, TimeZone};

use crate::repo_args::ops_fail;
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// Availability of the write path, the read path and every site, as
    /// the nodes' built-in probes measured it, with every interruption and
    /// the incidents open during it.
    Availability {
        /// A calendar month in --time-zone (YYYY-MM); the current month
        /// when neither --month nor --last is given.
        #[arg(long, conflicts_with = "last")]
        month: Option<String>,
        /// The period up to now instead: `24h`, `7d`, `30d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        last: Option<Duration>,
        /// Times are printed, and months cut, in this time zone (an IANA
        /// name, or an offset such as +07:00).
        #[arg(long, visible_alias = "utc-offset", default_value = "Asia/Ho_Chi_Minh", value_parser = TimeZone::parse, allow_hyphen_values = true)]
        time_zone: TimeZone,
        /// Language of the text report.
        #[arg(long, value_enum, default_value_t = Lang::En)]
        lang: Lang,
    },
    /// The monthly report on management and operation (R11): availability
    /// against the objective, every interruption and incident with its
    /// cause and remedy, drills, backups and who changed what. Needs the
    /// auditor role (or cluster-admin) for the audit section.
    Monthly {
        /// The month (YYYY-MM) in --time-zone; the previous month when not
        /// given.
        #[arg(long)]
        month: Option<String>,
        /// Language: Vietnamese by default.
        #[arg(long, value_enum, default_value_t = Lang::Vi)]
        lang: Lang,
        /// md (Markdown), html (one self-contained page that prints well),
        /// pdf (printed by headless Chromium; needs --out) or json (every
        /// figure the text states).
        #[arg(long, value_enum, default_value_t = Format::Md)]
        format: Format,
        /// Write the report to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Times are printed, and the month cut, in this time zone (an IANA
        /// name, or an offset such as +07:00).
        #[arg(long, visible_alias = "utc-offset", default_value = "Asia/Ho_Chi_Minh", value_parser = TimeZone::parse, allow_hyphen_values = true)]
        time_zone: TimeZone,
        /// The availability objective, in percent.
        #[arg(long, default_value_t = 99.9)]
        objective: f64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Md,
    Html,
    Pdf,
    Json,
}

/// Print `html` to the PDF file `out` with headless Chromium.
fn print_pdf(html: &str, out: &std::path::Path) -> Result<(), Failure> {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or_else(|| {
            "--format pdf needs Chromium: install it (Debian: apt-get install chromium), or write --format html and print it from a browser"
                .to_string()
        })?;
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory for the PDF: {e}"))?;
    let page = dir.path().join("report.html");
    std::fs::write(&page, html).map_err(|e| format!("writing {}: {e}", page.display()))?;
    let out_abs = std::path::absolute(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let status = std::process::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
        .arg(format!("--print-to-pdf={}", out_abs.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("running {browser}: {e}"))?;
    if !status.success() || !out_abs.exists() {
        return Err(format!("{browser} could not print the report to {} ({status})", out.display()).into());
    }
    Ok(())
}

pub async fn run(cmd: ReportCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    match cmd {
        ReportCmd::Monthly {
            month,
            lang,
            format,
            out,
            time_zone,
            objective,
        } => {
            if !(0.0..=100.0).contains(&objective) {
                return Err(format!("--objective {objective}: give a percentage between 0 and 100, e.g. 99.9").into());
            }
            let month =
                month.unwrap_or_else(|| report::previous_month(&report::current_month(sen_core::now_ms(), time_zone)));
            let c = client(endpoints, timeout)?;
            let (r, skipped) = sen_ops::monthly::fetch(&c, &month, time_zone, objective / 100.0)
                .await
                .map_err(ops_fail)?;
            for s in &skipped {
                eprintln!("warning: skipped {s}");
            }
            let text = match (format, output) {
                (Format::Json, _) | (_, Output::Json) => format!("{}\n", serde_json::to_string_pretty(&r)?),
                (Format::Md, Output::Text) => sen_ops::monthly::markdown(&r, time_zone, lang),
                (Format::Html | Format::Pdf, Output::Text) => {
                    sen_ops::monthly::html(&r, time_zone, lang).map_err(ops_fail)?
                }
            };
            match (out, format) {
                (Some(path), Format::Pdf) if output == Output::Text => {
                    print_pdf(&text, &path)?;
                    eprintln!("report for {month} printed to {}", path.display());
                }
                (None, Format::Pdf) if output == Output::Text => {
                    return Err("--format pdf needs --out FILE.pdf".to_string().into());
                }
                (Some(path), _) => {
                    std::fs::write(&path, text)
                        .map_err(|e| format!("writing the report to {}: {e}", path.display()))?;
                    eprintln!("report for {month} written to {}", path.display());
                }
                (None, _) => print!("{text}"),
            }
        }
        ReportCmd::Availability {
            month,
            last,
            time_zone,
            lang,
        } => {
            let now = sen_core::now_ms();
            let (from, to) = match (month, last) {
                (Some(m), _) => report::month_window(&m, time_zone)?,
                (None, Some(d)) => (now.saturating_sub(d.as_millis() as u64), now),
                (None, None) => report::month_window(&report::current_month(now, time_zone), time_zone)?,
            };
            let c = client(endpoints, timeout)?;
            let (r, skipped) = report::fetch(&c, from, to).await.map_err(ops_fail)?;
            for s in &skipped {
                eprintln!("warning: skipped {s}");
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string(&r)?),
                Output::Text => print!("{}", report::markdown(&r, time_zone, lang)),
            }
        }
    }
    Ok(())
}
