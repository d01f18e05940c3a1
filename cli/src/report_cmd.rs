//! `sen report`: what the Editorial Board reads (docs/reports.md). The
//! computation is `sen_ops::report`; this module parses, prints and exits.

use std::time::Duration;

use clap::Subcommand;
use sen_ops::drill::Lang;
use sen_ops::report::{self, UtcOffset};

use crate::repo_args::ops_fail;
use crate::{Failure, Output, client};

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// Availability of the write path, the read path and every site, as
    /// the nodes' built-in probes measured it, with every interruption and
    /// the incidents open during it.
    Availability {
        /// A calendar month at --utc-offset (YYYY-MM); the current month
        /// when neither --month nor --last is given.
        #[arg(long, conflicts_with = "last")]
        month: Option<String>,
        /// The period up to now instead: `24h`, `7d`, `30d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        last: Option<Duration>,
        /// Times are printed, and months cut, at this offset from UTC.
        #[arg(long, default_value = "+07:00", value_parser = UtcOffset::parse, allow_hyphen_values = true)]
        utc_offset: UtcOffset,
        /// Language of the text report.
        #[arg(long, value_enum, default_value_t = Lang::En)]
        lang: Lang,
    },
}

pub async fn run(cmd: ReportCmd, endpoints: &[String], output: Output, timeout: Duration) -> Result<(), Failure> {
    match cmd {
        ReportCmd::Availability {
            month,
            last,
            utc_offset,
            lang,
        } => {
            let now = sen_core::now_ms();
            let (from, to) = match (month, last) {
                (Some(m), _) => report::month_window(&m, utc_offset)?,
                (None, Some(d)) => (now.saturating_sub(d.as_millis() as u64), now),
                (None, None) => {
                    let local = now as i64 + i64::from(utc_offset.minutes) * 60_000;
                    let month = &sen_core::time::utc_day(local.max(0) as u64)[..7];
                    report::month_window(month, utc_offset)?
                }
            };
            let c = client(endpoints, timeout)?;
            let (r, skipped) = report::fetch(&c, from, to).await.map_err(ops_fail)?;
            for s in &skipped {
                eprintln!("warning: skipped {s}");
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string(&r)?),
                Output::Text => print!("{}", report::markdown(&r, utc_offset, lang)),
            }
        }
    }
    Ok(())
}
