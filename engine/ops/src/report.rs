//! Measured availability (`sen report availability`, docs/reports.md):
//! the nodes' probe records joined into one verdict per minute per
//! target, availability over a period, and every outage with the
//! incidents open during it.
//!
//! How a minute is judged, per target (`write`, `read`, `site:NAME`):
//! - the minute's state on each node comes from that node's record
//!   ([`Minute`]); nodes that did not probe (down, stopped, not started)
//!   say nothing;
//! - **up** when every node that probed saw only successes, **down** when
//!   every one saw only failures, **degraded** otherwise (some probes or
//!   some nodes failed: a leader election, one node cut off);
//! - **unmeasured** when no node probed. Those minutes are left out of the
//!   availability, and gaps between measured minutes are listed: a
//!   whole-cluster outage leaves no probe behind, so a gap is something to
//!   explain, not a minute that counts as up.
//!
//! Availability = (measured − down) / measured. Degraded minutes count as
//! available (most requests got through) and are listed with the outages.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sen_client::Client;
use sen_raft::schema::system::availability::MINUTES_PER_DAY;
use sen_raft::schema::system::{AvailabilityRecord, Incident, Minute, SystemRecord};
use serde::Serialize;

use crate::OpsError;
use crate::drill::Lang;

const MINUTE_MS: u64 = 60_000;

/// The zone of a report's times and month boundaries: an IANA name
/// (`Asia/Ho_Chi_Minh`, the default) or a fixed offset (`+07:00`).
pub type TimeZone = sen_core::time::Zone;

/// The portal's zone, `Asia/Ho_Chi_Minh`.
pub fn vietnam() -> TimeZone {
    TimeZone::parse(TimeZone::DEFAULT_NAME).unwrap_or_else(|_| utc())
}

/// UTC.
pub fn utc() -> TimeZone {
    TimeZone::parse("Z").expect("UTC is always a zone")
}

/// `YYYY-MM` of the month `now_ms` falls in, in `zone`.
pub fn current_month(now_ms: u64, zone: TimeZone) -> String {
    let local = (now_ms as i64 + i64::from(zone.offset_minutes_at(now_ms)) * 60_000).max(0) as u64;
    sen_core::time::utc_day(local)[..7].to_owned()
}

/// `YYYY-MM` of the month before `month`.
pub fn previous_month(month: &str) -> String {
    let (y, m) = month.split_once('-').unwrap_or(("1970", "01"));
    let (y, m): (i32, i32) = (y.parse().unwrap_or(1970), m.parse().unwrap_or(1));
    let (y, m) = if m <= 1 { (y - 1, 12) } else { (y, m - 1) };
    format!("{y:04}-{m:02}")
}

/// `[from_ms, to_ms)` for the calendar month `YYYY-MM` in `zone`: from its
/// first midnight there to the next month's.
pub fn month_window(month: &str, zone: TimeZone) -> Result<(u64, u64), String> {
    let bad = || format!("month {month:?}: expected YYYY-MM (e.g. 2026-12)");
    let (y, m) = month.trim().split_once('-').ok_or_else(bad)?;
    let (y, m): (u32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let start = zone.midnight_utc_ms(y as i16, m as i8, 1).ok_or_else(bad)?;
    let end = zone.midnight_utc_ms(ny as i16, nm as i8, 1).ok_or_else(bad)?;
    Ok((start, end))
}

/// The joined state of one minute of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Unmeasured,
    Up,
    Degraded,
    Down,
}

/// What the nodes saw of one minute.
pub fn verdict(seen: impl IntoIterator<Item = Minute>) -> Verdict {
    let (mut up, mut down, mut any) = (false, false, false);
    for m in seen {
        match m {
            Minute::Unknown => {}
            Minute::Up => (up, any) = (true, true),
            Minute::Down => (down, any) = (true, true),
            Minute::Degraded => (up, down, any) = (true, true, true),
        }
    }
    match (any, up, down) {
        (false, _, _) => Verdict::Unmeasured,
        (_, true, false) => Verdict::Up,
        (_, false, true) => Verdict::Down,
        _ => Verdict::Degraded,
    }
}

/// An incident open during an outage.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentRef {
    pub id: u64,
    pub kind: String,
    pub severity: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    /// The operators' cause, else what the node saw.
    pub cause: String,
    /// The same in Vietnamese where the node wrote one (else `cause`).
    pub cause_vi: String,
    pub remedy: String,
}

impl IncidentRef {
    pub fn cause_in(&self, lang: Lang) -> &str {
        match lang {
            Lang::Vi => &self.cause_vi,
            Lang::En => &self.cause,
        }
    }
}

/// A run of degraded or down minutes, or a gap with no measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub minutes: u64,
    /// Of `minutes`, those in which every probe failed.
    pub down_minutes: u64,
    /// Incidents open at some time in the window.
    pub incidents: Vec<IncidentRef>,
}

impl Window {
    /// `down` when any minute of it was down, else `degraded`.
    pub fn kind(&self) -> &'static str {
        if self.down_minutes > 0 { "down" } else { "degraded" }
    }
}

/// One target over the period.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub measured_minutes: u64,
    pub up_minutes: u64,
    pub degraded_minutes: u64,
    pub down_minutes: u64,
    pub unmeasured_minutes: u64,
    /// `None` when nothing was measured.
    pub availability: Option<f64>,
    /// Degraded or down runs, oldest first.
    pub outages: Vec<Window>,
    /// Unmeasured runs between measured minutes.
    pub gaps: Vec<Window>,
    /// The period in days from its start (a month's days at its offset):
    /// measured and down minutes of each.
    pub daily: Vec<DayFigures>,
}

/// One day of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DayFigures {
    pub start_ms: u64,
    pub measured_minutes: u64,
    pub down_minutes: u64,
    pub degraded_minutes: u64,
}

/// Availability of every target over `[from_ms, to_ms)`.
#[derive(Debug, Clone, Serialize)]
pub struct AvailabilityReport {
    pub from_ms: u64,
    pub to_ms: u64,
    pub generated_at_ms: u64,
    /// Nodes whose records were used.
    pub nodes: Vec<u64>,
    /// `write`, `read`, then the sites by name.
    pub targets: Vec<TargetReport>,
}

fn target_order(t: &str) -> (u8, &str) {
    match t {
        "write" => (0, t),
        "read" => (1, t),
        _ => (2, t),
    }
}

/// Join `records` over `[from_ms, to_ms)`; minutes from `now_ms` on are
/// not judged (they have not happened). Records that do not decode are
/// skipped and named in the error list.
pub fn compute(
    records: &[AvailabilityRecord],
    incidents: &[Incident],
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
) -> (AvailabilityReport, Vec<String>) {
    let mut skipped = Vec::new();
    let from = from_ms / MINUTE_MS * MINUTE_MS;
    // Whole minutes: the one `to_ms` falls in is part of the period.
    let to = (to_ms.min(now_ms).div_ceil(MINUTE_MS) * MINUTE_MS).max(from);
    let span = ((to - from) / MINUTE_MS) as usize;
    // target → per minute of the period, the states the nodes saw.
    let mut per_target: BTreeMap<String, Vec<Minute>> = BTreeMap::new();
    let mut joined: BTreeMap<String, Vec<Verdict>> = BTreeMap::new();
    let mut node_seen: BTreeMap<(String, u64), Vec<Minute>> = BTreeMap::new();
    let mut nodes = std::collections::BTreeSet::new();
    for r in records {
        let Some(day_start) = sen_core::time::day_start_ms(&r.day) else {
            skipped.push(format!("{}: day {:?} is not a date", r.target, r.day));
            continue;
        };
        let states = match r.states() {
            Ok(s) => s,
            Err(e) => {
                skipped.push(format!("{} {} node {}: {e}", r.day, r.target, r.node));
                continue;
            }
        };
        nodes.insert(r.node);
        let slots = node_seen
            .entry((r.target.clone(), r.node))
            .or_insert_with(|| vec![Minute::Unknown; span]);
        for (i, m) in states.iter().enumerate().take(MINUTES_PER_DAY) {
            let at = day_start + i as u64 * MINUTE_MS;
            if at < from || at >= to {
                continue;
            }
            let k = ((at - from) / MINUTE_MS) as usize;
            slots[k] = slots[k].join(*m);
        }
        per_target.entry(r.target.clone()).or_default();
    }
    for target in per_target.keys() {
        let mut v = Vec::with_capacity(span);
        for k in 0..span {
            v.push(verdict(
                node_seen
                    .range((target.clone(), 0)..=(target.clone(), u64::MAX))
                    .map(|(_, s)| s[k]),
            ));
        }
        joined.insert(target.clone(), v);
    }
    let mut targets: Vec<TargetReport> = joined
        .into_iter()
        .map(|(target, v)| summarise(target, &v, from, incidents))
        .collect();
    targets.sort_by(|a, b| target_order(&a.target).cmp(&target_order(&b.target)));
    (
        AvailabilityReport {
            from_ms,
            to_ms,
            generated_at_ms: now_ms,
            nodes: nodes.into_iter().collect(),
            targets,
        },
        skipped,
    )
}

fn overlapping(incidents: &[Incident], start: u64, end: u64) -> Vec<IncidentRef> {
    incidents
        .iter()
        .filter(|i| i.start_ms < end && i.end_ms.is_none_or(|e| e >= start))
        .map(|i| IncidentRef {
            id: i.id,
            kind: i.kind.clone(),
            severity: i.severity.clone(),
            start_ms: i.start_ms,
            end_ms: i.end_ms,
            cause: if i.cause.is_empty() {
                i.auto_cause.clone()
            } else {
                i.cause.clone()
            },
            cause_vi: if i.cause.is_empty() {
                i.auto_cause_in(true).to_owned()
            } else {
                i.cause.clone()
            },
            remedy: i.remedy.clone(),
        })
        .collect()
}

fn summarise(target: String, v: &[Verdict], from: u64, incidents: &[Incident]) -> TargetReport {
    let count = |x: Verdict| v.iter().filter(|m| **m == x).count() as u64;
    let (up, degraded, down, unmeasured) = (
        count(Verdict::Up),
        count(Verdict::Degraded),
        count(Verdict::Down),
        count(Verdict::Unmeasured),
    );
    let measured = up + degraded + down;
    let first_measured = v.iter().position(|m| *m != Verdict::Unmeasured);
    let last_measured = v.iter().rposition(|m| *m != Verdict::Unmeasured);
    let mut outages = Vec::new();
    let mut gaps = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let bad = |m: Verdict| matches!(m, Verdict::Degraded | Verdict::Down);
        let j = if bad(v[i]) {
            let mut j = i;
            while j < v.len() && bad(v[j]) {
                j += 1;
            }
            j
        } else {
            let mut j = i;
            while j < v.len() && v[j] == v[i] {
                j += 1;
            }
            j
        };
        let start = from + i as u64 * MINUTE_MS;
        let end = from + j as u64 * MINUTE_MS;
        let window = || Window {
            start_ms: start,
            end_ms: end,
            minutes: (j - i) as u64,
            down_minutes: v[i..j].iter().filter(|m| **m == Verdict::Down).count() as u64,
            incidents: overlapping(incidents, start, end),
        };
        if bad(v[i]) {
            outages.push(window());
        } else if v[i] == Verdict::Unmeasured
            && first_measured.is_some_and(|f| f < i)
            && last_measured.is_some_and(|l| l >= j)
        {
            gaps.push(window());
        }
        i = j;
    }
    let daily = v
        .chunks(MINUTES_PER_DAY)
        .enumerate()
        .map(|(d, day)| DayFigures {
            start_ms: from + (d * MINUTES_PER_DAY) as u64 * MINUTE_MS,
            measured_minutes: day.iter().filter(|m| **m != Verdict::Unmeasured).count() as u64,
            down_minutes: day.iter().filter(|m| **m == Verdict::Down).count() as u64,
            degraded_minutes: day.iter().filter(|m| **m == Verdict::Degraded).count() as u64,
        })
        .collect();
    TargetReport {
        target,
        daily,
        measured_minutes: measured,
        up_minutes: up,
        degraded_minutes: degraded,
        down_minutes: down,
        unmeasured_minutes: unmeasured,
        availability: (measured > 0).then(|| (measured - down) as f64 / measured as f64),
        outages,
        gaps,
    }
}

/// Read the records and incidents of `[from_ms, to_ms)` from the cluster
/// and compute the report. Returns it with the records that were skipped.
pub async fn fetch(client: &Client, from_ms: u64, to_ms: u64) -> Result<(AvailabilityReport, Vec<String>), OpsError> {
    if to_ms <= from_ms {
        return Err(OpsError::Usage(format!(
            "the period ends ({}) before it starts ({})",
            sen_core::time::rfc3339(to_ms),
            sen_core::time::rfc3339(from_ms)
        )));
    }
    let mut skipped = Vec::new();
    let records = fetch_records(client, from_ms, to_ms, &mut skipped).await?;
    let mut incidents = Vec::new();
    for json in client.list_incidents(from_ms).await?.json {
        match Incident::from_json(json.as_bytes()) {
            Ok(i) if i.start_ms < to_ms => incidents.push(i),
            Ok(_) => {}
            Err(e) => skipped.push(format!("an incident: {e}")),
        }
    }
    let (report, more) = compute(&records, &incidents, from_ms, to_ms, sen_core::now_ms());
    skipped.extend(more);
    Ok((report, skipped))
}

/// The availability records of the UTC days `[from_ms, to_ms)` touches;
/// those that do not decode are named in `skipped`.
pub async fn fetch_records(
    client: &Client,
    from_ms: u64,
    to_ms: u64,
    skipped: &mut Vec<String>,
) -> Result<Vec<AvailabilityRecord>, OpsError> {
    let from_day = sen_core::time::utc_day(from_ms);
    let to_day = sen_core::time::utc_day(to_ms.saturating_sub(1));
    let mut records = Vec::new();
    for json in client.list_availability(&from_day, &to_day).await? {
        match AvailabilityRecord::from_json(json.as_bytes()) {
            Ok(r) => records.push(r),
            Err(e) => skipped.push(format!("an availability record: {e}")),
        }
    }
    Ok(records)
}

/// `YYYY-MM-DD HH:MM` (English) or `HH:MM DD/MM/YYYY` (Vietnamese) at
/// `offset`.
pub fn local_time(ms: u64, zone: TimeZone, lang: Lang) -> String {
    let local = (ms as i64 + i64::from(zone.offset_minutes_at(ms)) * MINUTE_MS as i64).max(0) as u64;
    let s =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(local)).to_string();
    // 2026-12-03T14:02:00Z
    let (date, time) = (&s[..10], &s[11..16]);
    match lang {
        Lang::En => format!("{date} {time}"),
        Lang::Vi => format!("{time} {}/{}/{}", &date[8..10], &date[5..7], &date[..4]),
    }
}

/// `1.5 GiB`: a byte count for people.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A number as written in `lang`: a decimal comma in Vietnamese.
pub fn decimal(s: String, lang: Lang) -> String {
    match lang {
        Lang::En => s,
        Lang::Vi => s.replace('.', ","),
    }
}

/// [`human_bytes`] as written in `lang` (`1.5 GiB`, `1,5 GiB`).
pub fn bytes_in(bytes: u64, lang: Lang) -> String {
    decimal(human_bytes(bytes), lang)
}

/// The style of a figure judged against the objective: `bad` when it
/// misses it, `good` when it meets it, none when nothing was measured.
pub fn objective_class(meets: Option<bool>) -> &'static str {
    match meets {
        Some(false) => "bad",
        Some(true) => "good",
        None => "",
    }
}

/// A percentage with three decimals (`99.954%`; `99,954%` in Vietnamese).
pub fn percent(v: Option<f64>, lang: Lang) -> String {
    match v {
        None => match lang {
            Lang::En => "not measured".into(),
            Lang::Vi => "chưa đo".into(),
        },
        Some(v) => decimal(format!("{:.3}%", v * 100.0), lang),
    }
}

/// `1 h 05 min`, `12 min`.
pub fn duration_minutes(m: u64, lang: Lang) -> String {
    let unit = match lang {
        Lang::En => ("h", "min"),
        Lang::Vi => ("giờ", "phút"),
    };
    if m >= 60 {
        format!("{} {} {:02} {}", m / 60, unit.0, m % 60, unit.1)
    } else {
        format!("{m} {}", unit.1)
    }
}

/// A target for people: `write path (cluster)`, `site portal`.
pub fn target_name(target: &str, lang: Lang) -> String {
    let vi = lang == Lang::Vi;
    match target {
        "write" if vi => "ghi dữ liệu (cụm)".into(),
        "write" => "write path (cluster)".into(),
        "read" if vi => "đọc dữ liệu (cụm)".into(),
        "read" => "read path (cluster)".into(),
        s => match s.strip_prefix("site:") {
            Some(n) if vi => format!("trang {n}"),
            Some(n) => format!("site {n}"),
            None => s.into(),
        },
    }
}

/// The report as Markdown, in English or Vietnamese, times at `offset`.
pub fn markdown(r: &AvailabilityReport, offset: TimeZone, lang: Lang) -> String {
    let vi = lang == Lang::Vi;
    let t = |en: &'static str, vi_text: &'static str| if vi { vi_text } else { en };
    let target_name = |x: &str| -> String {
        match x.strip_prefix("site:") {
            Some(n) => format!("{} `{n}`", t("site", "trang")),
            None => target_name(x, lang),
        }
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# {}\n\n{}: {} → {} ({offset}) · {}: {}\n",
        t("Measured availability", "Độ sẵn sàng đo được"),
        t("Period", "Kỳ"),
        local_time(r.from_ms, offset, lang),
        local_time(r.to_ms, offset, lang),
        t("probing nodes", "các nút đo"),
        if r.nodes.is_empty() {
            "—".to_string()
        } else {
            r.nodes.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        }
    );
    if r.targets.is_empty() {
        let _ = writeln!(
            s,
            "{}\n",
            t(
                "No probe results in this period: the nodes were not running, or `[probe] enabled = false`.",
                "Không có kết quả đo trong kỳ này: các nút không chạy, hoặc `[probe] enabled = false`."
            )
        );
        return s;
    }
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} |\n|---|---|---|---|---|---|",
        t("target", "đối tượng"),
        t("availability", "độ sẵn sàng"),
        t("down", "ngừng"),
        t("degraded", "suy giảm"),
        t("measured", "đã đo"),
        t("not measured", "chưa đo"),
    );
    for x in &r.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            target_name(&x.target),
            percent(x.availability, lang),
            duration_minutes(x.down_minutes, lang),
            duration_minutes(x.degraded_minutes, lang),
            duration_minutes(x.measured_minutes, lang),
            duration_minutes(x.unmeasured_minutes, lang),
        );
    }
    let _ = writeln!(
        s,
        "\n{}\n",
        t(
            "A minute is down when every probe of every node failed, degraded when some failed. Availability = (measured − down) / measured.",
            "Một phút là ngừng khi mọi lần đo của mọi nút đều lỗi, suy giảm khi chỉ một số lần lỗi. Độ sẵn sàng = (đã đo − ngừng) / đã đo."
        )
    );
    let any_outage = r.targets.iter().any(|x| !x.outages.is_empty() || !x.gaps.is_empty());
    let _ = writeln!(s, "## {}\n", t("Interruptions", "Các lần gián đoạn"));
    if !any_outage {
        let _ = writeln!(s, "{}\n", t("None.", "Không có."));
        return s;
    }
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} |\n|---|---|---|---|---|---|",
        t("target", "đối tượng"),
        t("from", "từ"),
        t("to", "đến"),
        t("duration", "thời lượng"),
        t("state", "tình trạng"),
        t("incidents (cause → remedy)", "sự cố (nguyên nhân → khắc phục)"),
    );
    for x in &r.targets {
        let rows = x
            .outages
            .iter()
            .map(|w| (w, w.kind()))
            .chain(x.gaps.iter().map(|w| (w, "unmeasured")));
        let mut rows: Vec<_> = rows.collect();
        rows.sort_by_key(|(w, _)| w.start_ms);
        for (w, kind) in rows {
            let state = match kind {
                "down" => format!(
                    "{} ({} {})",
                    t("down", "ngừng"),
                    duration_minutes(w.down_minutes, lang),
                    t("fully down", "ngừng hẳn")
                ),
                "degraded" => t("degraded", "suy giảm").into(),
                _ => t(
                    "not measured: no node was probing (whole cluster down?)",
                    "không đo được: không nút nào chạy đo (cả cụm ngừng?)",
                )
                .into(),
            };
            let incidents = if w.incidents.is_empty() {
                t("none recorded", "chưa ghi nhận").to_string()
            } else {
                w.incidents
                    .iter()
                    .map(|i| {
                        let remedy = if i.remedy.is_empty() {
                            t("(no remedy noted)", "(chưa ghi cách khắc phục)").to_string()
                        } else {
                            i.remedy.clone()
                        };
                        let cause = if i.cause.is_empty() {
                            t("(no cause noted)", "(chưa ghi nguyên nhân)").to_string()
                        } else {
                            i.cause_in(lang).to_owned()
                        };
                        format!(
                            "#{} {}: {} → {}",
                            i.id,
                            crate::incident_text::kind_label(&i.kind, lang),
                            cause.replace('|', "/"),
                            remedy.replace('|', "/")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                target_name(&x.target),
                local_time(w.start_ms, offset, lang),
                local_time(w.end_ms, offset, lang),
                duration_minutes(w.minutes, lang),
                state,
                incidents
            );
        }
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use sen_raft::schema::system::availability::encode_minutes;

    const DAY: u64 = 1_796_256_000_000; // 2026-12-03T00:00:00Z

    fn record(node: u64, target: &str, runs: &[(usize, Minute)]) -> AvailabilityRecord {
        let mut m = Vec::new();
        for (n, s) in runs {
            m.extend(std::iter::repeat_n(*s, *n));
        }
        m.resize(MINUTES_PER_DAY, Minute::Unknown);
        let mut r = AvailabilityRecord::new("2026-12-03", target, node);
        r.minutes = encode_minutes(&m);
        r
    }

    fn incident(id: u64, start_min: u64, end_min: Option<u64>) -> Incident {
        let mut i: Incident = serde_json::from_value(serde_json::json!({
            "version": 1, "id": id, "kind": "leader-lost", "severity": "serious",
            "start_ms": DAY + start_min * MINUTE_MS, "auto_cause": "no leader",
            "detected_by": 1
        }))
        .unwrap();
        i.end_ms = end_min.map(|m| DAY + m * MINUTE_MS);
        i
    }

    #[test]
    fn verdicts_join_the_nodes_and_ignore_the_silent_ones() {
        use Minute::*;
        assert_eq!(verdict([Unknown, Unknown]), Verdict::Unmeasured);
        assert_eq!(verdict([Up, Unknown, Up]), Verdict::Up);
        assert_eq!(verdict([Down, Unknown]), Verdict::Down);
        assert_eq!(verdict([Up, Down]), Verdict::Degraded);
        assert_eq!(verdict([Degraded]), Verdict::Degraded);
    }

    #[test]
    fn a_period_that_does_not_start_or_end_on_a_minute_covers_whole_minutes() {
        // `--last 1h` asked at 10:00:30.5: from 09:00:30.5 to 10:00:30.5.
        let now = DAY + 600 * MINUTE_MS + 30_500;
        let recs = vec![record(1, "write", &[(599, Minute::Up), (2, Minute::Down)])];
        let (r, skipped) = compute(&recs, &[], now - 3_600_000, now, now);
        assert!(skipped.is_empty(), "{skipped:?}");
        let w = &r.targets[0];
        assert_eq!((r.from_ms, r.to_ms), (now - 3_600_000, now), "the period as asked");
        assert_eq!((w.measured_minutes, w.up_minutes, w.down_minutes), (61, 59, 2));
        assert_eq!(w.outages.len(), 1);
        assert_eq!(w.outages[0].end_ms, DAY + 601 * MINUTE_MS);
    }

    #[test]
    fn availability_outages_gaps_and_their_incidents() {
        use Minute::*;
        // Three nodes probe the write path for 600 minutes. Minutes
        // 100–104 every node fails; 300–301 only node 3 does (degraded);
        // 400–409 no node probes (a gap); the day ends at 600.
        let mut recs = Vec::new();
        for node in 1..=3u64 {
            let mid = if node == 3 { Down } else { Up };
            recs.push(record(
                node,
                "write",
                &[
                    (100, Up),
                    (5, Down),
                    (195, Up),
                    (2, mid),
                    (98, Up),
                    (10, Unknown),
                    (190, Up),
                ],
            ));
        }
        // Node 2 was down during the first outage: it says nothing then.
        recs[1] = record(
            2,
            "write",
            &[
                (100, Up),
                (5, Unknown),
                (195, Up),
                (2, Up),
                (98, Up),
                (10, Unknown),
                (190, Up),
            ],
        );
        let incidents = vec![
            incident(7, 101, Some(104)),
            incident(8, 500, None),
            incident(9, 0, Some(50)),
        ];
        let (r, skipped) = compute(&recs, &incidents, DAY, DAY + 86_400_000, DAY + 600 * MINUTE_MS);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(r.nodes, vec![1, 2, 3]);
        let w = &r.targets[0];
        assert_eq!(w.target, "write");
        assert_eq!((w.measured_minutes, w.down_minutes, w.degraded_minutes), (590, 5, 2));
        assert_eq!(w.unmeasured_minutes, 10, "minutes after now are not part of the period");
        let a = w.availability.unwrap();
        assert!((a - 585.0 / 590.0).abs() < 1e-12, "{a}");
        assert_eq!(w.outages.len(), 2);
        let o = &w.outages[0];
        assert_eq!(
            (o.start_ms, o.end_ms, o.minutes, o.kind()),
            (DAY + 100 * MINUTE_MS, DAY + 105 * MINUTE_MS, 5, "down")
        );
        assert_eq!(o.incidents.iter().map(|i| i.id).collect::<Vec<_>>(), vec![7]);
        assert_eq!(w.outages[1].kind(), "degraded");
        assert!(w.outages[1].incidents.is_empty());
        assert_eq!(w.gaps.len(), 1);
        assert_eq!((w.gaps[0].start_ms, w.gaps[0].minutes), (DAY + 400 * MINUTE_MS, 10));
        let md = markdown(&r, vietnam(), Lang::Vi);
        assert!(md.contains("99,153%"), "{md}");
        assert!(md.contains("08:40 03/12/2026"), "{md}");
        assert!(md.contains("#7 leader-lost: no leader"), "{md}");
        let md = markdown(&r, utc(), Lang::En);
        assert!(
            md.contains("| write path (cluster) | 99.153% | 5 min | 2 min | 9 h 50 min | 10 min |"),
            "{md}"
        );
    }

    #[test]
    fn targets_are_ordered_and_a_silent_period_is_not_up() {
        let recs = vec![
            record(1, "site:b", &[(10, Minute::Up)]),
            record(1, "site:a", &[(10, Minute::Up)]),
            record(1, "read", &[(10, Minute::Up)]),
            record(1, "write", &[(10, Minute::Up)]),
        ];
        let (r, _) = compute(&recs, &[], DAY, DAY + 86_400_000, DAY + 86_400_000);
        let names: Vec<_> = r.targets.iter().map(|t| t.target.as_str()).collect();
        assert_eq!(names, ["write", "read", "site:a", "site:b"]);
        // Nothing measured after minute 10: no gap (nothing measured
        // after it), unmeasured minutes counted, availability of what was.
        assert!(r.targets[0].gaps.is_empty());
        assert_eq!(r.targets[0].unmeasured_minutes, 1430);
        assert_eq!(r.targets[0].availability, Some(1.0));
        let (r, _) = compute(&[], &[], DAY, DAY + 86_400_000, DAY + 86_400_000);
        assert!(r.targets.is_empty());
        assert!(markdown(&r, utc(), Lang::En).contains("No probe results"));
    }

    #[test]
    fn a_damaged_record_is_skipped_and_named() {
        let mut bad = record(1, "write", &[(10, Minute::Up)]);
        bad.minutes = "9999u".into();
        let (r, skipped) = compute(&[bad], &[], DAY, DAY + 86_400_000, DAY + 86_400_000);
        assert!(r.targets.is_empty());
        assert_eq!(skipped.len(), 1, "{skipped:?}");
    }

    #[test]
    fn months_roll_back_over_new_year() {
        assert_eq!(previous_month("2027-01"), "2026-12");
        assert_eq!(previous_month("2026-11"), "2026-10");
    }

    #[test]
    fn zones_and_months() {
        assert_eq!(vietnam().to_string(), "Asia/Ho_Chi_Minh");
        assert_eq!(TimeZone::parse("-05:30").unwrap().offset_minutes_at(DAY), -330);
        for bad in ["07:00", "+15", "+07:60", "", "+x", "Asia/Nowhere"] {
            assert!(TimeZone::parse(bad).is_err(), "{bad}");
        }
        // December 2026 in Vietnam starts 2026-11-30T17:00Z, whether the
        // zone is named or given as its offset.
        for zone in [vietnam(), TimeZone::parse("+07:00").unwrap()] {
            let (from, to) = month_window("2026-12", zone).unwrap();
            assert_eq!(from, DAY - 2 * 86_400_000 - 7 * 3_600_000);
            assert_eq!(to - from, 31 * 86_400_000);
            assert_eq!(local_time(DAY, zone, Lang::En), "2026-12-03 07:00");
        }
        assert!(month_window("2026-13", utc()).is_err());
        // Where clocks change, a month is cut at its own midnights: March
        // 2026 in Berlin is 31 days less the hour skipped on the 29th, and
        // times before and after the change read in their own offset.
        let berlin = TimeZone::parse("Europe/Berlin").unwrap();
        let (from, to) = month_window("2026-03", berlin).unwrap();
        assert_eq!(to - from, 31 * 86_400_000 - 3_600_000);
        assert_eq!(local_time(from, berlin, Lang::En), "2026-03-01 00:00");
        assert_eq!(local_time(to, berlin, Lang::En), "2026-04-01 00:00");
        assert_eq!(current_month(to - 1, berlin), "2026-03");
        assert_eq!(percent(Some(0.99954), Lang::Vi), "99,954%");
        assert_eq!(duration_minutes(65, Lang::En), "1 h 05 min");
    }
}
