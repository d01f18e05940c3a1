//! The monthly report on management and operation (R11; `sen report
//! monthly`, docs/reports.md): availability against the objective, every
//! interruption with its incidents, the incidents of the month with their
//! cause and remedy and whether a serious one was fixed within the limit
//! (R2: 24 h), the failover drills, the scheduled backups, and who changed
//! what (the audit log). Built from what the cluster recorded; [`compute`]
//! is pure, [`fetch`] reads the cluster, [`markdown`] writes it for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sen_client::Client;
use sen_proto::v1::ListAuditRequest;
use sen_raft::schema::system::{
    AuditRecord, DrillReport, Incident, RunRecord, SERIOUS, SystemRecord, Verification, kind, run_state, verify_kind,
};
use serde::Serialize;

use crate::OpsError;
use crate::drill::Lang;
use crate::incident_text::{human_ms, kind_label, severity_label};
use crate::report::{self, AvailabilityReport, TimeZone, local_time, percent};

/// Audit records read at most for one report (the summary says when the
/// month had more).
pub const MAX_AUDIT_RECORDS: usize = 200_000;

/// Cluster-level changes listed one by one at most.
const MAX_LISTED_CHANGES: usize = 200;

/// What the report is built from.
#[derive(Debug, Default)]
pub struct Inputs {
    pub availability: Option<AvailabilityReport>,
    pub incidents: Vec<Incident>,
    pub drills: Vec<DrillReport>,
    pub runs: Vec<RunRecord>,
    /// Checks and restore drills of the backups.
    pub verifications: Vec<Verification>,
    /// `None`: the caller may not read the audit log.
    pub audit: Option<Vec<AuditRecord>>,
    /// The audit log had more records than were read.
    pub audit_truncated: bool,
    /// `incidents.serious-limit` (ms).
    pub serious_limit_ms: u64,
    /// Readers and speed per site; `None`: not read.
    pub readers: Option<crate::readers::ReadersReport>,
    /// Growth and capacity; `None`: not read.
    pub growth: Option<crate::growth::GrowthReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetLine {
    pub target: String,
    pub availability: Option<f64>,
    pub meets_objective: Option<bool>,
    pub down_minutes: u64,
    pub degraded_minutes: u64,
    pub interruptions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub targets: Vec<TargetLine>,
    /// Degraded or down windows of every target.
    pub interruptions: u64,
    /// Down minutes of the write path (the cluster refused writes).
    pub write_downtime_minutes: u64,
    pub incidents: u64,
    pub serious_incidents: u64,
    /// Mean time to restore: the mean duration of the serious incidents
    /// that ended in the month (ms).
    pub mttr_ms: Option<u64>,
    /// Serious incidents that took (or have taken) longer than the limit.
    pub serious_beyond_limit: u64,
    /// Incidents of the month without an operator's cause note.
    pub unexplained: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentLine {
    pub id: u64,
    pub kind: String,
    pub severity: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub duration_ms: u64,
    pub auto_cause: String,
    /// `auto_cause` in Vietnamese, where the node wrote one.
    pub auto_cause_vi: String,
    pub cause: String,
    pub remedy: String,
    pub reference: String,
    /// Serious ones: fixed within the limit (an open one that is not yet
    /// past it counts as `true`).
    pub within_limit: Option<bool>,
}

impl IncidentLine {
    /// What the node saw, in Vietnamese when it wrote that too.
    pub fn auto_cause_in(&self, lang: Lang) -> &str {
        sen_raft::schema::system::auto_cause_in(&self.auto_cause, &self.auto_cause_vi, lang == Lang::Vi)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillLine {
    pub id: String,
    pub scenario: String,
    pub started_at_ms: u64,
    pub rto_ms: u64,
    pub read_gap_ms: u64,
    pub lost_writes: u64,
    pub passed: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupSection {
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub bytes_new: u64,
    pub last_success_ms: Option<u64>,
    /// (slot start, error) of every failed run.
    pub failures: Vec<(u64, String)>,
    /// `sen backup check` runs recorded, and those that found no problem.
    pub checks: u64,
    pub checks_passed: u64,
    /// `sen drill restore` runs recorded, and those that passed.
    pub restore_drills: u64,
    pub restore_drills_passed: u64,
    /// The last restore drill that passed, up to the report's end (it may
    /// be older than the month: the report says how old).
    pub last_restore_passed_ms: Option<u64>,
    /// Every check and restore drill of the month, oldest first.
    pub verifications: Vec<VerificationLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerificationLine {
    /// `check` or `restore-drill`.
    pub kind: String,
    pub at_ms: u64,
    pub duration_ms: u64,
    pub repo: String,
    /// A restore drill: the snapshot (first 8 hex digits) and its index.
    pub snapshot: String,
    pub raft_index: u64,
    /// A check: the share of pack data read.
    pub read_data_percent: u32,
    pub bytes: u64,
    pub passed: bool,
    /// The first problem, if any, and how many there were.
    pub first_error: String,
    pub errors: u64,
    pub by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserChanges {
    pub who: String,
    pub changes: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub at_ms: u64,
    pub who: String,
    pub method: String,
    pub resource: String,
    pub result: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditSection {
    pub available: bool,
    pub records: u64,
    pub truncated: bool,
    pub by_user: Vec<UserChanges>,
    /// Changes to users, roles, tokens, nodes, schedules, quotas (not
    /// content or data writes), oldest first.
    pub cluster_changes: Vec<Change>,
    pub cluster_changes_not_listed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthlyReport {
    pub month: String,
    pub time_zone: String,
    pub from_ms: u64,
    pub to_ms: u64,
    pub generated_at_ms: u64,
    /// Availability objective (a fraction, e.g. 0.999).
    pub objective: f64,
    pub serious_limit_ms: u64,
    pub summary: Summary,
    pub availability: Option<AvailabilityReport>,
    pub incidents: Vec<IncidentLine>,
    pub drills: Vec<DrillLine>,
    pub backups: BackupSection,
    pub audit: AuditSection,
    /// Readers and access speed per site (R4).
    pub readers: Option<crate::readers::ReadersReport>,
    /// Growth and the capacity forecast (R8).
    pub growth: Option<crate::growth::GrowthReport>,
}

/// The backup repository's line of the growth section.
pub fn repository_text(g: &crate::growth::RepoGrowth, lang: Lang) -> String {
    let bytes = |b: u64| report::bytes_in(b, lang);
    let age = g.last_backup_age_ms.map_or("—".into(), |a| human_ms(a, lang));
    let space = match (g.free_bytes, g.total_bytes, lang) {
        (Some(free), Some(total), Lang::En) => format!(
            " Its storage has {} free of {}: full in {} at this pace.",
            bytes(free),
            bytes(total),
            crate::growth::full_in_text(g.days_until_full, lang)
        ),
        (Some(free), Some(total), Lang::Vi) => format!(
            " Nơi lưu kho còn trống {} trên {}: đầy sau {} nếu tăng như hiện nay.",
            bytes(free),
            bytes(total),
            crate::growth::full_in_text(g.days_until_full, lang)
        ),
        (_, _, Lang::En) => " Its storage reports no capacity (an S3 bucket): watch the provider's quota.".into(),
        (_, _, Lang::Vi) => {
            " Nơi lưu kho không cho biết dung lượng (S3): hãy theo dõi hạn mức của nhà cung cấp.".into()
        }
    };
    let growth = match lang {
        Lang::En => format!(
            "Backup repository: {} → {} over {} measured runs ({} per day); the last backup was {} old at the end of the period.",
            bytes(g.start_bytes),
            bytes(g.end_bytes),
            g.runs,
            crate::growth::per_day_text(g.bytes_per_day, lang),
            age
        ),
        Lang::Vi => format!(
            "Kho sao lưu: {} → {} qua {} lần sao lưu có đo ({} mỗi ngày); bản sao lưu thành công gần nhất cách cuối kỳ {}.",
            bytes(g.start_bytes),
            bytes(g.end_bytes),
            g.runs,
            crate::growth::per_day_text(g.bytes_per_day, lang),
            age
        ),
    };
    growth + &space
}

/// "repository check" or "restore drill", in `lang`.
pub fn verification_what(v: &VerificationLine, lang: Lang) -> &'static str {
    match (v.kind.as_str(), lang) {
        (verify_kind::CHECK, Lang::En) => "repository check",
        (verify_kind::CHECK, Lang::Vi) => "kiểm tra kho sao lưu",
        (_, Lang::En) => "restore drill",
        (_, Lang::Vi) => "diễn tập khôi phục",
    }
}

/// The snapshot a restore drill restored, or the share of data a check read.
pub fn verification_scope(v: &VerificationLine, lang: Lang) -> String {
    match (v.kind.as_str(), lang) {
        (verify_kind::CHECK, Lang::En) => format!("{}% of the data", v.read_data_percent),
        (verify_kind::CHECK, Lang::Vi) => format!("{}% dữ liệu", v.read_data_percent),
        (_, Lang::En) => format!("{} (index {})", v.snapshot, v.raft_index),
        (_, Lang::Vi) => format!("{} (chỉ số {})", v.snapshot, v.raft_index),
    }
}

/// Resources whose changes are listed one by one.
fn is_cluster_change(r: &AuditRecord) -> bool {
    !(r.resource.starts_with("db:") || r.resource.starts_with("site:"))
}

/// Build the report of `month` (`[from_ms, to_ms)`) from `inputs`.
pub fn compute(
    month: &str,
    offset: TimeZone,
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
    objective: f64,
    inputs: Inputs,
) -> MonthlyReport {
    let limit = inputs.serious_limit_ms;
    let in_month = |start: u64, end: Option<u64>| start < to_ms && end.is_none_or(|e| e >= from_ms);

    // Incidents open at some time in the month, oldest first.
    let mut incidents: Vec<&Incident> = inputs
        .incidents
        .iter()
        .filter(|i| in_month(i.start_ms, i.end_ms))
        .collect();
    incidents.sort_by_key(|i| (i.start_ms, i.id));
    let lines: Vec<IncidentLine> = incidents
        .iter()
        .map(|i| {
            let duration = i.duration_ms(now_ms);
            IncidentLine {
                id: i.id,
                kind: i.kind.clone(),
                severity: i.severity.clone(),
                start_ms: i.start_ms,
                end_ms: i.end_ms,
                duration_ms: duration,
                auto_cause: i.auto_cause.clone(),
                auto_cause_vi: i.auto_cause_vi.clone(),
                cause: i.cause.clone(),
                remedy: i.remedy.clone(),
                reference: i.reference.clone(),
                within_limit: (i.severity == SERIOUS).then_some(duration <= limit),
            }
        })
        .collect();
    let serious: Vec<&IncidentLine> = lines.iter().filter(|l| l.severity == SERIOUS).collect();
    let restored: Vec<u64> = serious
        .iter()
        .filter(|l| l.end_ms.is_some_and(|e| e >= from_ms && e < to_ms))
        .map(|l| l.duration_ms)
        .collect();
    let mttr_ms = (!restored.is_empty()).then(|| restored.iter().sum::<u64>() / restored.len() as u64);

    let targets: Vec<TargetLine> = inputs
        .availability
        .iter()
        .flat_map(|a| &a.targets)
        .map(|t| TargetLine {
            target: t.target.clone(),
            availability: t.availability,
            meets_objective: t.availability.map(|a| a + 1e-12 >= objective),
            down_minutes: t.down_minutes,
            degraded_minutes: t.degraded_minutes,
            interruptions: t.outages.len() as u64,
        })
        .collect();
    let summary = Summary {
        interruptions: targets.iter().map(|t| t.interruptions).sum(),
        write_downtime_minutes: targets
            .iter()
            .find(|t| t.target == "write")
            .map_or(0, |t| t.down_minutes),
        incidents: lines.len() as u64,
        serious_incidents: serious.len() as u64,
        mttr_ms,
        serious_beyond_limit: serious.iter().filter(|l| l.within_limit == Some(false)).count() as u64,
        unexplained: lines
            .iter()
            .filter(|l| l.cause.trim().is_empty() && l.kind != kind::DRILL)
            .count() as u64,
        targets,
    };

    let mut drills: Vec<DrillLine> = inputs
        .drills
        .iter()
        .filter(|d| d.started_at_ms >= from_ms && d.started_at_ms < to_ms)
        .map(|d| DrillLine {
            id: d.id.clone(),
            scenario: d.scenario.clone(),
            started_at_ms: d.started_at_ms,
            rto_ms: d.rto_ms,
            read_gap_ms: d.read_gap_ms,
            lost_writes: d.lost_writes,
            passed: d.passed,
        })
        .collect();
    drills.sort_by_key(|d| d.started_at_ms);

    let mut backups = BackupSection::default();
    let mut runs: Vec<&RunRecord> = inputs
        .runs
        .iter()
        .filter(|r| r.slot_start_ms >= from_ms && r.slot_start_ms < to_ms)
        .collect();
    runs.sort_by_key(|r| r.slot_start_ms);
    for r in runs {
        backups.runs += 1;
        match r.state.as_str() {
            run_state::SUCCEEDED => {
                backups.succeeded += 1;
                backups.bytes_new += r.bytes_new;
                backups.last_success_ms = Some(backups.last_success_ms.unwrap_or(0).max(r.ended_ms));
            }
            run_state::FAILED => {
                backups.failed += 1;
                backups.failures.push((r.slot_start_ms, r.error.clone()));
            }
            _ => {}
        }
    }

    for v in &inputs.verifications {
        if v.at_ms < to_ms && v.passed && v.kind == verify_kind::RESTORE_DRILL {
            backups.last_restore_passed_ms = backups.last_restore_passed_ms.max(Some(v.at_ms));
        }
        if v.at_ms < from_ms || v.at_ms >= to_ms {
            continue;
        }
        let (n, ok) = match v.kind.as_str() {
            verify_kind::CHECK => (&mut backups.checks, &mut backups.checks_passed),
            _ => (&mut backups.restore_drills, &mut backups.restore_drills_passed),
        };
        *n += 1;
        *ok += v.passed as u64;
        backups.verifications.push(VerificationLine {
            kind: v.kind.clone(),
            at_ms: v.at_ms,
            duration_ms: v.duration_ms,
            repo: v.repo.clone(),
            snapshot: v.snapshot_id.chars().take(8).collect(),
            raft_index: v.raft_index,
            read_data_percent: v.read_data_percent,
            bytes: v.bytes,
            passed: v.passed,
            first_error: v.errors.first().cloned().unwrap_or_default(),
            errors: v.errors.len() as u64,
            by: v.by.clone(),
        });
    }
    backups.verifications.sort_by_key(|v| v.at_ms);

    let audit = match inputs.audit {
        None => AuditSection {
            available: false,
            records: 0,
            truncated: false,
            by_user: vec![],
            cluster_changes: vec![],
            cluster_changes_not_listed: 0,
        },
        Some(records) => {
            let mut by_user: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            let mut changes = Vec::new();
            let mut not_listed = 0u64;
            let mut n = 0u64;
            for r in records.iter().filter(|r| r.at_ms >= from_ms && r.at_ms < to_ms) {
                n += 1;
                let e = by_user.entry(r.who.clone()).or_default();
                if r.result == "ok" {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
                if r.result == "ok" && is_cluster_change(r) {
                    if changes.len() < MAX_LISTED_CHANGES {
                        changes.push(Change {
                            at_ms: r.at_ms,
                            who: r.who.clone(),
                            method: r.method.clone(),
                            resource: r.resource.clone(),
                            result: r.result.clone(),
                        });
                    } else {
                        not_listed += 1;
                    }
                }
            }
            AuditSection {
                available: true,
                records: n,
                truncated: inputs.audit_truncated,
                by_user: by_user
                    .into_iter()
                    .map(|(who, (changes, refused))| UserChanges { who, changes, refused })
                    .collect(),
                cluster_changes: changes,
                cluster_changes_not_listed: not_listed,
            }
        }
    };

    MonthlyReport {
        month: month.to_owned(),
        time_zone: offset.to_string(),
        from_ms,
        to_ms,
        generated_at_ms: now_ms,
        objective,
        serious_limit_ms: limit,
        summary,
        availability: inputs.availability,
        incidents: lines,
        drills,
        backups,
        audit,
        readers: inputs.readers,
        growth: inputs.growth.map(|mut g| {
            g.repository = crate::growth::repository(&inputs.runs, from_ms, to_ms, now_ms);
            g
        }),
    }
}

/// Read everything the report of `month` needs from the cluster. The
/// audit section needs the auditor role (or cluster-admin); without it the
/// report says so instead of failing.
pub async fn fetch(
    client: &Client,
    month: &str,
    offset: TimeZone,
    objective: f64,
) -> Result<(MonthlyReport, Vec<String>), OpsError> {
    let (from_ms, to_ms) = report::month_window(month, offset).map_err(OpsError::Usage)?;
    let now = sen_core::now_ms();
    if from_ms >= now {
        return Err(OpsError::Usage(format!(
            "month {month} has not started yet; ask for this month or an earlier one"
        )));
    }
    let mut skipped = Vec::new();
    let records = report::fetch_records(client, from_ms, to_ms, &mut skipped).await?;
    let listed = client.list_incidents(from_ms).await?;
    let mut incidents = Vec::new();
    for j in &listed.json {
        match Incident::from_json(j.as_bytes()) {
            Ok(i) => incidents.push(i),
            Err(e) => skipped.push(format!("an incident: {e}")),
        }
    }
    let (availability, more) = report::compute(&records, &incidents, from_ms, to_ms, now);
    skipped.extend(more);
    let mut drills = Vec::new();
    for j in client.list_drill_reports().await? {
        match DrillReport::from_json(j.as_bytes()) {
            Ok(d) => drills.push(d),
            Err(e) => skipped.push(format!("a drill report: {e}")),
        }
    }
    let mut runs = Vec::new();
    for j in client.list_backup_runs().await? {
        match RunRecord::from_json(j.as_bytes()) {
            Ok(r) => runs.push(r),
            Err(e) => skipped.push(format!("a backup run: {e}")),
        }
    }
    // Restore drills of the last year: the newest that passed is named
    // even when it is older than the month.
    let (verifications, more) =
        crate::verification::fetch(client, from_ms.saturating_sub(366 * 86_400_000), to_ms).await?;
    skipped.extend(more);
    let (audit, audit_truncated) = match read_audit(client, from_ms, to_ms, &mut skipped).await {
        Ok((a, t)) => (Some(a), t),
        Err(e) if e.code() == Some(tonic::Code::PermissionDenied) => {
            skipped.push("the audit log: this user may not read it (it needs the auditor role)".into());
            (None, false)
        }
        Err(e) => return Err(e.into()),
    };
    let (readers, more) = crate::readers::fetch(client, from_ms, to_ms).await?;
    skipped.extend(more);
    let (growth, more) = crate::growth::fetch(client, from_ms, to_ms).await?;
    skipped.extend(more);
    let inputs = Inputs {
        growth: Some(growth),
        readers: Some(readers),
        availability: Some(availability),
        incidents,
        drills,
        runs,
        verifications,
        audit,
        audit_truncated,
        serious_limit_ms: listed.serious_limit_ms,
    };
    Ok((compute(month, offset, from_ms, to_ms, now, objective, inputs), skipped))
}

async fn read_audit(
    client: &Client,
    from_ms: u64,
    to_ms: u64,
    skipped: &mut Vec<String>,
) -> Result<(Vec<AuditRecord>, bool), sen_client::ClientError> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = client
            .list_audit(ListAuditRequest {
                since_ms: from_ms,
                user: String::new(),
                denied: false,
                limit: 10_000,
                after: after.clone(),
            })
            .await?;
        let mut past_end = false;
        for j in &page.json {
            match AuditRecord::from_json(j.as_bytes()) {
                Ok(r) if r.at_ms >= to_ms => past_end = true,
                Ok(r) => out.push(r),
                Err(e) => skipped.push(format!("an audit record: {e}")),
            }
        }
        if past_end || page.next.is_empty() {
            return Ok((out, false));
        }
        if out.len() >= MAX_AUDIT_RECORDS {
            return Ok((out, true));
        }
        after = page.next;
    }
}

/// A heading one level down (the availability report inside this one).
fn demote(md: &str) -> String {
    md.lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("#{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The report as Markdown, in Vietnamese or English, times at `offset`.
pub fn markdown(r: &MonthlyReport, offset: TimeZone, lang: Lang) -> String {
    let t = |en: &'static str, vi: &'static str| match lang {
        Lang::En => en,
        Lang::Vi => vi,
    };
    let when = |ms: u64| local_time(ms, offset, lang);
    let yes_no = |b: bool| if b { t("yes", "có") } else { t("no", "không") };
    let cell = |s: &str| s.replace('|', "/").replace('\n', " ");
    let (y, m) = r.month.split_once('-').unwrap_or((&r.month, ""));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# {} {}\n",
        t("Operations report for", "Báo cáo quản lý, vận hành tháng"),
        match lang {
            Lang::En => r.month.clone(),
            Lang::Vi => format!("{m}/{y}"),
        }
    );
    let _ = writeln!(
        s,
        "{}: {} → {} ({}) · {}: {}\n",
        t("Period", "Kỳ báo cáo"),
        when(r.from_ms),
        when(r.to_ms),
        r.time_zone,
        t("generated", "lập lúc"),
        when(r.generated_at_ms)
    );

    // 1. Summary.
    let _ = writeln!(s, "## 1. {}\n", t("Summary", "Tóm tắt"));
    let objective = percent(Some(r.objective), lang);
    let _ = writeln!(
        s,
        "| {} | {} | {} ({objective}) | {} | {} |\n|---|---|---|---|---|",
        t("target", "đối tượng"),
        t("availability", "tính sẵn sàng"),
        t("meets the objective", "đạt mục tiêu"),
        t("down", "ngừng"),
        t("interruptions", "số lần gián đoạn"),
    );
    for x in &r.summary.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            report::target_name(&x.target, lang),
            percent(x.availability, lang),
            x.meets_objective.map_or("—", yes_no),
            report::duration_minutes(x.down_minutes, lang),
            x.interruptions
        );
    }
    let sm = &r.summary;
    let _ = writeln!(
        s,
        "\n- {}: {}\n- {}: {}\n- {}: {} ({}: {})\n- {}: {}\n- {} {}: {}\n- {}: {}\n",
        t("Interruptions (all targets)", "Số lần gián đoạn (mọi đối tượng)"),
        sm.interruptions,
        t("Time the cluster refused writes", "Thời gian gián đoạn ghi dữ liệu"),
        report::duration_minutes(sm.write_downtime_minutes, lang),
        t("Incidents", "Sự cố"),
        sm.incidents,
        t("serious", "nghiêm trọng"),
        sm.serious_incidents,
        t(
            "Mean time to restore (serious incidents)",
            "Thời gian khắc phục trung bình (sự cố nghiêm trọng)"
        ),
        sm.mttr_ms.map_or("—".into(), |v| human_ms(v, lang)),
        t(
            "Serious incidents not fixed within",
            "Sự cố nghiêm trọng không khắc phục trong"
        ),
        human_ms(r.serious_limit_ms, lang),
        sm.serious_beyond_limit,
        t("Incidents without a noted cause", "Sự cố chưa ghi nguyên nhân"),
        sm.unexplained,
    );

    // 2. Availability and interruptions.
    let _ = writeln!(
        s,
        "## 2. {}\n",
        t("Availability and interruptions", "Tính sẵn sàng và các lần gián đoạn")
    );
    match &r.availability {
        Some(a) => {
            let _ = writeln!(s, "{}\n", demote(&report::markdown(a, offset, lang)));
        }
        None => {
            let _ = writeln!(s, "{}\n", t("Not measured.", "Chưa đo."));
        }
    }

    // 3. Incidents.
    let _ = writeln!(
        s,
        "## 3. {}\n",
        t(
            "Incidents, causes and remedies",
            "Sự cố, nguyên nhân và biện pháp khắc phục"
        )
    );
    if r.incidents.is_empty() {
        let _ = writeln!(s, "{}\n", t("No incident this month.", "Không có sự cố trong tháng."));
    } else {
        let _ = writeln!(
            s,
            "| # | {} | {} | {} | {} | {} | {} | {} |\n|---|---|---|---|---|---|---|---|",
            t("kind", "loại"),
            t("severity", "mức độ"),
            t("start", "bắt đầu"),
            t("duration", "thời gian gián đoạn"),
            t("cause", "nguyên nhân"),
            t("remedy", "biện pháp khắc phục"),
            t("fixed within the limit", "khắc phục đúng hạn"),
        );
        for i in &r.incidents {
            let cause = if i.cause.is_empty() {
                format!("{} — {}", t("(not noted)", "(chưa ghi)"), cell(i.auto_cause_in(lang)))
            } else {
                cell(&i.cause)
            };
            let remedy = if i.remedy.is_empty() {
                t("(not noted)", "(chưa ghi)").to_owned()
            } else {
                cell(&i.remedy)
            };
            let duration = match i.end_ms {
                Some(_) => human_ms(i.duration_ms, lang),
                None => format!("{} {}", t("open", "đang mở"), human_ms(i.duration_ms, lang)),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                i.id,
                kind_label(&i.kind, lang),
                severity_label(&i.severity, lang),
                when(i.start_ms),
                duration,
                cause,
                remedy,
                i.within_limit.map_or("—", yes_no)
            );
        }
        s.push('\n');
    }

    // 4. Drills.
    let _ = writeln!(s, "## 4. {}\n", t("Failover drills", "Diễn tập chuyển đổi dự phòng"));
    if r.drills.is_empty() {
        let _ = writeln!(
            s,
            "{}\n",
            t("No drill this month.", "Không có cuộc diễn tập nào trong tháng.")
        );
    } else {
        let _ = writeln!(
            s,
            "| {} | {} | {} | RTO | {} | RPO ({}) | {} |\n|---|---|---|---|---|---|---|",
            t("drill", "mã"),
            t("scenario", "kịch bản"),
            t("when", "thời điểm"),
            t("read gap", "gián đoạn đọc"),
            t("acknowledged writes lost", "số bản ghi đã xác nhận bị mất"),
            t("result", "kết quả"),
        );
        for d in &r.drills {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                d.id,
                d.scenario,
                when(d.started_at_ms),
                human_ms(d.rto_ms, lang),
                human_ms(d.read_gap_ms, lang),
                d.lost_writes,
                if d.passed {
                    t("passed", "đạt")
                } else {
                    t("FAILED", "KHÔNG ĐẠT")
                }
            );
        }
        s.push('\n');
    }

    // 5. Backups.
    let b = &r.backups;
    let _ = writeln!(s, "## 5. {}\n", t("Backups", "Sao lưu"));
    let _ = writeln!(
        s,
        "- {}: {} ({}: {}, {}: {})\n- {}: {}\n- {}: {}",
        t("Scheduled runs", "Số lần sao lưu theo lịch"),
        b.runs,
        t("succeeded", "thành công"),
        b.succeeded,
        t("failed", "thất bại"),
        b.failed,
        t("New data stored", "Dữ liệu mới được lưu"),
        report::bytes_in(b.bytes_new, lang),
        t("Last success", "Lần thành công gần nhất"),
        b.last_success_ms.map_or("—".into(), when),
    );
    for (slot, err) in &b.failures {
        let _ = writeln!(s, "- {} {}: {}", t("Failed", "Thất bại"), when(*slot), cell(err));
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "### {}\n\n- {}: {} ({}: {})\n- {}: {} ({}: {})\n- {}: {}\n",
        t(
            "Were the backups proven restorable?",
            "Bản sao lưu có khôi phục được không?"
        ),
        t(
            "Repository checks (`sen backup check`)",
            "Kiểm tra kho sao lưu (`sen backup check`)"
        ),
        b.checks,
        t("no problem found", "không phát hiện lỗi"),
        b.checks_passed,
        t(
            "Restore drills (`sen drill restore`)",
            "Diễn tập khôi phục (`sen drill restore`)"
        ),
        b.restore_drills,
        t("passed", "đạt"),
        b.restore_drills_passed,
        t("Last restore drill that passed", "Lần diễn tập khôi phục đạt gần nhất"),
        match b.last_restore_passed_ms {
            Some(ms) => when(ms),
            None => t(
                "none in the last year: no backup has been proven restorable",
                "không có trong một năm qua: chưa bản sao lưu nào được chứng minh là khôi phục được"
            )
            .into(),
        },
    );
    if !b.verifications.is_empty() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |\n|---|---|---|---|---|---|---|",
            t("when", "thời điểm"),
            t("what", "nội dung"),
            t("snapshot / data read", "bản chụp / dữ liệu đã đọc"),
            t("data", "dữ liệu"),
            t("took", "thời gian thực hiện"),
            t("result", "kết quả"),
            t("by", "người thực hiện"),
        );
        for v in &b.verifications {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                when(v.at_ms),
                verification_what(v, lang),
                verification_scope(v, lang),
                report::bytes_in(v.bytes, lang),
                human_ms(v.duration_ms, lang),
                if v.passed {
                    t("passed", "đạt").to_owned()
                } else {
                    format!("{}: {}", t("FAILED", "KHÔNG ĐẠT"), cell(&v.first_error))
                },
                cell(&v.by),
            );
        }
        s.push('\n');
    }

    // 6. Audit.
    let a = &r.audit;
    let _ = writeln!(
        s,
        "## 6. {}\n",
        t("Who changed what (audit log)", "Ai đã thay đổi gì (nhật ký kiểm toán)")
    );
    if !a.available {
        let _ = writeln!(
            s,
            "{}\n",
            t(
                "Not available: the user who made this report may not read the audit log (it needs the auditor role).",
                "Không có: người lập báo cáo không có quyền đọc nhật ký kiểm toán (cần vai trò auditor)."
            )
        );
    } else {
        let _ = writeln!(
            s,
            "| {} | {} | {} |\n|---|---|---|",
            t("who", "người dùng"),
            t("changes", "số thay đổi"),
            t("refused", "bị từ chối")
        );
        for u in &a.by_user {
            let _ = writeln!(s, "| {} | {} | {} |", cell(&u.who), u.changes, u.refused);
        }
        if a.truncated {
            let _ = writeln!(
                s,
                "\n{}",
                t(
                    "The month has more audit records than one report reads; the counts cover the first ones.",
                    "Tháng này có nhiều bản ghi kiểm toán hơn mức một báo cáo đọc; số liệu chỉ tính phần đầu."
                )
            );
        }
        if !a.cluster_changes.is_empty() {
            let _ = writeln!(
                s,
                "\n{}:\n",
                t(
                    "Changes to users, roles, tokens, nodes and settings",
                    "Thay đổi về người dùng, vai trò, token, nút và cấu hình"
                )
            );
            for c in &a.cluster_changes {
                let _ = writeln!(
                    s,
                    "- {} {}: `{}` {}",
                    when(c.at_ms),
                    cell(&c.who),
                    c.method,
                    cell(&c.resource)
                );
            }
            if a.cluster_changes_not_listed > 0 {
                let _ = writeln!(s, "- … {} {}", a.cluster_changes_not_listed, t("more", "thay đổi khác"));
            }
        }
        s.push('\n');
    }

    // 7. Readers and speed.
    let _ = writeln!(
        s,
        "## 7. {}\n",
        t(
            "Readers and access speed per site",
            "Lượng người đọc và tốc độ truy cập theo trang"
        )
    );
    match r.readers.as_ref().filter(|x| !x.sites.is_empty()) {
        None => {
            let _ = writeln!(
                s,
                "{}\n",
                t("No answers served this month.", "Không có lượt truy cập trong tháng.")
            );
        }
        Some(x) => {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | p50 | p95 | p99 | 4xx | 5xx |\n|---|---|---|---|---|---|---|---|---|---|",
                t("site", "trang"),
                t("requests", "lượt truy cập"),
                t("data sent", "dữ liệu gửi đi"),
                t("readers per day (mean)", "người đọc mỗi ngày (trung bình)"),
                t("most in a day", "nhiều nhất một ngày"),
            );
            let ms = crate::readers::bound_ms;
            for site in &x.sites {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    site.site,
                    site.requests,
                    report::bytes_in(site.bytes, lang),
                    report::decimal(format!("{:.1}", site.readers_per_day_mean), lang),
                    site.readers_per_day_max,
                    ms(site.p50_ms),
                    ms(site.p95_ms),
                    ms(site.p99_ms),
                    site.s4xx,
                    site.s5xx
                );
            }
            let _ = writeln!(
                s,
                "\n{}\n",
                t(
                    "Readers are distinct client addresses per UTC day, estimated (about ±3%); the nodes' own probes are not counted.",
                    "Người đọc là số địa chỉ truy cập khác nhau trong một ngày (giờ UTC), ước lượng (sai số khoảng ±3%); các lần đo của chính các nút không được tính."
                )
            );
        }
    }

    // 8. Growth and capacity.
    let _ = writeln!(
        s,
        "## 8. {}\n",
        t("Growth and capacity", "Tăng trưởng dữ liệu và dung lượng")
    );
    let bytes = |b: u64| report::bytes_in(b, lang);
    if let Some(repo) = r.growth.as_ref().and_then(|g| g.repository.as_ref()) {
        let _ = writeln!(s, "{}\n", repository_text(repo, lang));
    }
    match r.growth.as_ref().filter(|g| !g.nodes.is_empty()) {
        None => {
            let _ = writeln!(s, "{}\n", t("No samples this month.", "Không có số liệu trong tháng."));
        }
        Some(g) => {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |\n|---|---|---|---|---|",
                t("node", "nút"),
                t("data directory (start → end)", "thư mục dữ liệu (đầu → cuối kỳ)"),
                t("free disk", "đĩa còn trống"),
                t("growth per day", "tăng mỗi ngày"),
                t("full in (at that pace)", "đầy sau (theo tốc độ đó)"),
            );
            for n in &g.nodes {
                let _ = writeln!(
                    s,
                    "| {} | {} → {} | {} / {} | {} | {} |",
                    n.node,
                    bytes(n.data_dir_start_bytes),
                    bytes(n.data_dir_end_bytes),
                    bytes(n.disk_free_bytes),
                    bytes(n.disk_total_bytes),
                    crate::growth::per_day_text(n.used_bytes_per_day, lang),
                    crate::growth::full_in_text(n.days_until_full, lang)
                );
            }
            let _ = writeln!(
                s,
                "\n{}: {} → {}\n",
                t(
                    "Stored site content (compressed, deduplicated)",
                    "Nội dung các trang đã lưu (nén, loại trùng)"
                ),
                bytes(g.chunk_start_bytes),
                bytes(g.chunk_end_bytes)
            );
            for (title, list) in [
                (t("Sites", "Các trang"), &g.sites),
                (t("Databases", "Cơ sở dữ liệu"), &g.dbs),
            ] {
                if list.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {title} | {} | {} |\n|---|---|---|",
                    t("start", "đầu kỳ"),
                    t("end", "cuối kỳ")
                );
                for x in list.iter() {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} |",
                        cell(&x.name),
                        bytes(x.start_bytes),
                        bytes(x.end_bytes)
                    );
                }
                s.push('\n');
            }
            let _ = writeln!(
                s,
                "{}\n",
                t(
                    "One sample per node and day (the day's last); the forecast is a straight line through the month's samples of used disk.",
                    "Mỗi nút một mẫu mỗi ngày (mẫu cuối ngày); dự báo là đường thẳng qua các mẫu dung lượng đĩa đã dùng trong tháng."
                )
            );
        }
    }
    s
}

/// The template of the HTML report (self-contained: inline CSS and SVG,
/// no scripts, prints on A4).
const MONTHLY_HTML: &str = include_str!("../templates/monthly.html");

/// The bar charts of the HTML report: one bar per day, this wide, after a
/// left margin for the scale, at most this high (the template's `bars`).
const DAY_BAR: u64 = 14;
const DAY_BARS_LEFT: u64 = 30;
const DAY_BARS_HEIGHT: f64 = 80.0;

/// A chart of `days` bars as the template's `bars` macro draws it.
fn day_bars(
    name: &str,
    days: u64,
    max_label: String,
    bars: Vec<serde_json::Value>,
    labels: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "width": DAY_BARS_LEFT + days * DAY_BAR,
        "max_label": max_label,
        "bars": bars,
        "labels": labels,
    })
}

/// Down (red) and degraded (amber) minutes per day of one target, as SVG
/// bars: a value of the template.
fn chart(name: String, daily: &[report::DayFigures], offset: TimeZone, lang: Lang) -> serde_json::Value {
    let max = daily
        .iter()
        .map(|d| d.down_minutes + d.degraded_minutes)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut bars = Vec::new();
    let mut labels = Vec::new();
    for (i, d) in daily.iter().enumerate() {
        let x = DAY_BARS_LEFT + i as u64 * DAY_BAR;
        let day = local_time(d.start_ms, offset, lang);
        let h_down = d.down_minutes as f64 / max as f64 * DAY_BARS_HEIGHT;
        let h_deg = d.degraded_minutes as f64 / max as f64 * DAY_BARS_HEIGHT;
        let title = format!(
            "{day}: {} / {}",
            report::duration_minutes(d.down_minutes, lang),
            report::duration_minutes(d.degraded_minutes, lang)
        );
        if d.down_minutes > 0 {
            bars.push(serde_json::json!({"x": x, "y": format!("{:.1}", 90.0 - h_down), "w": DAY_BAR - 2, "h": format!("{h_down:.1}"), "color": "#b00020", "title": title}));
        }
        if d.degraded_minutes > 0 {
            bars.push(serde_json::json!({"x": x, "y": format!("{:.1}", 90.0 - h_down - h_deg), "w": DAY_BAR - 2, "h": format!("{h_deg:.1}"), "color": "#e69500", "title": title}));
        }
        if d.measured_minutes == 0 {
            bars.push(serde_json::json!({"x": x, "y": "88", "w": DAY_BAR - 2, "h": "2", "color": "#bbb", "title": format!("{day}: —")}));
        }
        if i % 5 == 0 {
            // The day of the month (dd).
            let dd = match lang {
                Lang::En => day[8..10].to_owned(),
                Lang::Vi => day[6..8].to_owned(),
            };
            labels.push(serde_json::json!({"x": x, "text": dd}));
        }
    }
    day_bars(
        &name,
        daily.len() as u64,
        report::duration_minutes(max, lang),
        bars,
        labels,
    )
}

/// Distinct readers per UTC day of one site over `[from_ms, to_ms)`, as
/// SVG bars (the day's requests in each bar's title): a value of the
/// template. Days without an answer have no bar.
fn readers_chart(site: &crate::readers::SiteReaders, from_ms: u64, to_ms: u64, lang: Lang) -> serde_json::Value {
    const DAY_MS: u64 = sen_core::time::DAY_MS;
    let t = crate::i18n::labels(lang);
    let word = |k: &str| t.get(k).copied().unwrap_or_default();
    let by_day: BTreeMap<&str, &crate::readers::SiteDay> = site.days.iter().map(|d| (d.day.as_str(), d)).collect();
    let max = site.days.iter().map(|d| d.readers).max().unwrap_or(0).max(1);
    let (mut bars, mut labels) = (Vec::new(), Vec::new());
    let mut day_ms = from_ms - from_ms % DAY_MS;
    let mut i = 0u64;
    while day_ms < to_ms {
        let day = sen_core::time::utc_day(day_ms);
        let x = DAY_BARS_LEFT + i * DAY_BAR;
        // dd/mm/yyyy in Vietnamese, yyyy-mm-dd in English.
        let shown = match lang {
            Lang::En => day.clone(),
            Lang::Vi => format!("{}/{}/{}", &day[8..10], &day[5..7], &day[..4]),
        };
        if let Some(d) = by_day.get(day.as_str()).filter(|d| d.readers > 0 || d.requests > 0) {
            let h = d.readers as f64 / max as f64 * DAY_BARS_HEIGHT;
            bars.push(serde_json::json!({
                "x": x, "y": format!("{:.1}", 90.0 - h), "w": DAY_BAR - 2, "h": format!("{h:.1}"), "color": "#1f5f99",
                "title": format!("{shown}: {} {}, {} {}", d.readers, word("readers_col"), d.requests, word("requests")),
            }));
        }
        if i.is_multiple_of(5) {
            labels.push(serde_json::json!({"x": x, "text": &day[8..10]}));
        }
        day_ms += DAY_MS;
        i += 1;
    }
    day_bars(&site.site, i, max.to_string(), bars, labels)
}

/// The readers table of the HTML report and the dashboard.
pub fn readers_rows(r: Option<&crate::readers::ReadersReport>, lang: Lang) -> Vec<serde_json::Value> {
    let ms = crate::readers::bound_ms;
    r.map(|r| {
        r.sites
            .iter()
            .map(|x| {
                serde_json::json!({
                    "site": x.site,
                    "requests": x.requests,
                    "bytes": report::bytes_in(x.bytes, lang),
                    "mean": report::decimal(format!("{:.1}", x.readers_per_day_mean), lang),
                    "max": x.readers_per_day_max,
                    "p50": ms(x.p50_ms), "p95": ms(x.p95_ms), "p99": ms(x.p99_ms),
                    "s4xx": x.s4xx, "s5xx": x.s5xx,
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The report as one self-contained HTML page, in Vietnamese or English.
pub fn html(r: &MonthlyReport, offset: TimeZone, lang: Lang) -> Result<String, OpsError> {
    use serde_json::json;
    let t = crate::i18n::labels(lang);
    let word = |k: &str| t.get(k).copied().unwrap_or_default().to_owned();
    let when = |ms: u64| local_time(ms, offset, lang);
    let yes_no = |b: bool| if b { word("yes") } else { word("no") };
    let (y, m) = r.month.split_once('-').unwrap_or((&r.month, ""));
    let title = match lang {
        Lang::En => format!("{} {}", word("title"), r.month),
        Lang::Vi => format!("{} {m}/{y}", word("title")),
    };
    let sm = &r.summary;
    let write = sm.targets.iter().find(|x| x.target == "write");
    let cards = vec![
        json!({"label": word("card_write"), "value": percent(write.and_then(|w| w.availability), lang),
               "class": report::objective_class(write.and_then(|w| w.meets_objective))}),
        json!({"label": word("card_interruptions"), "value": sm.interruptions, "class": ""}),
        json!({"label": word("card_incidents"), "value": format!("{} ({})", sm.incidents, sm.serious_incidents), "class": ""}),
        json!({"label": word("card_mttr"), "value": sm.mttr_ms.map_or("—".into(), |v| human_ms(v, lang)), "class": ""}),
        json!({"label": format!("{} ({})", word("card_beyond"), human_ms(r.serious_limit_ms, lang)), "value": sm.serious_beyond_limit,
               "class": if sm.serious_beyond_limit > 0 { "bad" } else { "good" }}),
        json!({"label": word("card_unexplained"), "value": sm.unexplained, "class": if sm.unexplained > 0 { "bad" } else { "good" }}),
        json!({"label": word("verify_last"), "value": r.backups.last_restore_passed_ms.map_or_else(|| word("none_recorded"), when),
               "class": if r.backups.last_restore_passed_ms.is_some() { "good" } else { "bad" }}),
    ];
    let targets: Vec<_> = sm
        .targets
        .iter()
        .map(|x| {
            json!({
                "name": report::target_name(&x.target, lang),
                "availability": percent(x.availability, lang),
                "meets": x.meets_objective.map_or("—".into(), yes_no),
                "class": report::objective_class(x.meets_objective),
                "down": report::duration_minutes(x.down_minutes, lang),
                "degraded": report::duration_minutes(x.degraded_minutes, lang),
                "interruptions": x.interruptions,
            })
        })
        .collect();
    let mut charts = Vec::new();
    let mut outages = Vec::new();
    for x in r.availability.iter().flat_map(|a| &a.targets) {
        let name = report::target_name(&x.target, lang);
        charts.push(chart(name.clone(), &x.daily, offset, lang));
        let mut rows: Vec<(&report::Window, &str)> = x
            .outages
            .iter()
            .map(|w| (w, w.kind()))
            .chain(x.gaps.iter().map(|w| (w, "unmeasured")))
            .collect();
        rows.sort_by_key(|(w, _)| w.start_ms);
        for (w, kind) in rows {
            let incidents = if w.incidents.is_empty() {
                word("none_recorded")
            } else {
                w.incidents
                    .iter()
                    .map(|i| {
                        let or_not = |s: &str| if s.is_empty() { word("not_noted") } else { s.to_owned() };
                        format!(
                            "#{} {}: {} → {}",
                            i.id,
                            kind_label(&i.kind, lang),
                            or_not(i.cause_in(lang)),
                            or_not(&i.remedy)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            outages.push(json!({
                "name": name,
                "from": when(w.start_ms),
                "to": when(w.end_ms),
                "duration": report::duration_minutes(w.minutes, lang),
                "state": word(&format!("state_{kind}")),
                "class": if kind == "down" { "bad" } else { "" },
                "incidents": incidents,
            }));
        }
    }
    let incidents: Vec<_> = r
        .incidents
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "kind": kind_label(&i.kind, lang),
                "severity": severity_label(&i.severity, lang),
                "start": when(i.start_ms),
                "duration": match i.end_ms {
                    Some(_) => human_ms(i.duration_ms, lang),
                    None => format!("{} {}", word("open"), human_ms(i.duration_ms, lang)),
                },
                "cause": if i.cause.is_empty() { format!("{} — {}", word("not_noted"), i.auto_cause_in(lang)) } else { i.cause.clone() },
                "remedy": if i.remedy.is_empty() { word("not_noted") } else { i.remedy.clone() },
                "within": i.within_limit.map_or("—".into(), yes_no),
                "class": if i.within_limit == Some(false) { "bad" } else { "" },
            })
        })
        .collect();
    let drills: Vec<_> = r
        .drills
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "scenario": d.scenario, "when": when(d.started_at_ms),
                "rto": human_ms(d.rto_ms, lang), "read_gap": human_ms(d.read_gap_ms, lang), "lost": d.lost_writes,
                "result": if d.passed { word("passed") } else { word("drill_failed") },
                "class": if d.passed { "good" } else { "bad" },
            })
        })
        .collect();
    let b = &r.backups;
    let backups = json!({
        "runs": b.runs, "succeeded": b.succeeded, "failed": b.failed, "bytes": report::bytes_in(b.bytes_new, lang),
        "last": b.last_success_ms.map_or("—".into(), when),
        "class": if b.failed > 0 { "bad" } else { "" },
        "failures": b.failures.iter().map(|(slot, e)| json!({"when": when(*slot), "error": e})).collect::<Vec<_>>(),
        "checks": format!("{} ({} {})", b.checks, b.checks_passed, word("passed")),
        "restore_drills": format!("{} ({} {})", b.restore_drills, b.restore_drills_passed, word("passed")),
        "last_restore": b.last_restore_passed_ms.map_or_else(|| word("no_restore_proven"), when),
        "restore_class": if b.last_restore_passed_ms.is_some() { "good" } else { "bad" },
        "verifications": b.verifications.iter().map(|v| json!({
            "when": when(v.at_ms), "what": verification_what(v, lang), "scope": verification_scope(v, lang),
            "bytes": report::bytes_in(v.bytes, lang), "duration": human_ms(v.duration_ms, lang),
            "result": if v.passed { word("passed") } else { format!("{}: {}", word("drill_failed"), v.first_error) },
            "class": if v.passed { "good" } else { "bad" }, "by": v.by,
        })).collect::<Vec<_>>(),
    });
    let a = &r.audit;
    let audit = json!({
        "available": a.available,
        "truncated": a.truncated,
        "by_user": a.by_user,
        "changes": a.cluster_changes.iter().map(|c| json!({"when": when(c.at_ms), "who": c.who, "method": c.method, "resource": c.resource})).collect::<Vec<_>>(),
    });
    let readers = readers_rows(r.readers.as_ref(), lang);
    let readers_charts: Vec<_> = r
        .readers
        .iter()
        .flat_map(|x| x.sites.iter().map(move |s| readers_chart(s, x.from_ms, x.to_ms, lang)))
        .collect();
    let size = |b: u64| report::bytes_in(b, lang);
    let growth_nodes: Vec<_> = r
        .growth
        .iter()
        .flat_map(|g| &g.nodes)
        .map(|n| {
            json!({
                "node": n.node,
                "data_dir": format!("{} → {}", size(n.data_dir_start_bytes), size(n.data_dir_end_bytes)),
                "free": format!("{} / {}", size(n.disk_free_bytes), size(n.disk_total_bytes)),
                "per_day": crate::growth::per_day_text(n.used_bytes_per_day, lang),
                "full": crate::growth::full_in_text(n.days_until_full, lang),
                "class": if n.days_until_full.is_some_and(|d| d < 90.0) { "bad" } else { "" },
            })
        })
        .collect();
    let growth_sites: Vec<_> = r
        .growth
        .iter()
        .flat_map(|g| g.sites.iter().chain(&g.dbs))
        .map(|x| json!({"name": x.name, "start": size(x.start_bytes), "end": size(x.end_bytes)}))
        .collect();
    let ctx = json!({
        "lang": match lang { Lang::En => "en", Lang::Vi => "vi" },
        "t": t,
        "readers": readers,
        "readers_charts": readers_charts,
        "growth_nodes": growth_nodes,
        "growth_sites": growth_sites,
        "growth_repo": r.growth.as_ref().and_then(|g| g.repository.as_ref()).map(|g| repository_text(g, lang)),
        "title": title,
        "period": format!("{} → {}", when(r.from_ms), when(r.to_ms)),
        "offset": r.time_zone,
        "generated": when(r.generated_at_ms),
        "objective": percent(Some(r.objective), lang),
        "cards": cards,
        "targets": targets,
        "charts": charts,
        "outages": outages,
        "incidents": incidents,
        "drills": drills,
        "backups": backups,
        "audit": audit,
    });
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("monthly.html", MONTHLY_HTML)
        .and_then(|_| env.get_template("monthly.html"))
        .and_then(|tpl| tpl.render(ctx))
        .map_err(|e| OpsError::Io(format!("rendering the HTML report: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sen_raft::schema::system::{
        AvailabilityRecord, Minute, ORDINARY,
        availability::{MINUTES_PER_DAY, encode_minutes},
    };

    const MIN: u64 = 60_000;
    const H: u64 = 3_600_000;
    const DAY_MS: u64 = 86_400_000;
    /// 2026-11-01T00:00+07:00.
    const NOV: u64 = 1_793_466_000_000;

    fn day_record(day: &str, node: u64, target: &str, runs: &[(usize, Minute)]) -> AvailabilityRecord {
        let mut m = Vec::with_capacity(MINUTES_PER_DAY);
        for (n, x) in runs {
            m.extend(std::iter::repeat_n(*x, *n));
        }
        m.resize(MINUTES_PER_DAY, Minute::Up);
        AvailabilityRecord {
            version: 1,
            day: day.into(),
            target: target.into(),
            node,
            minutes: encode_minutes(&m),
            updated_at_ms: 0,
        }
    }

    fn incident(id: u64, severity: &str, start: u64, end: Option<u64>, cause: &str, remedy: &str) -> Incident {
        let mut i = Incident::new(kind::QUORUM_LOST, severity, start, "no leader".into(), vec![1], 1)
            .with_vi("không có nút lãnh đạo".into());
        i.id = id;
        i.end_ms = end;
        i.cause = cause.into();
        i.remedy = remedy.into();
        i
    }

    /// November 2026 at UTC+07:00: every day of the month up for the write
    /// path and the site on one node, except a 90-minute write outage on
    /// 10/11 and 30 degraded minutes on the site on 20/11; a serious
    /// incident that took 30 h, one that took 2 h, one ordinary without a
    /// note; two drills (one in October); three backup runs (one failed).
    fn november() -> MonthlyReport {
        let mut records = Vec::new();
        // UTC days 2026-10-31 (its last 7 h belong to November at +07:00)
        // through 2026-11-30.
        for d in 0..31u64 {
            let day = sen_core::time::utc_day(NOV - 17 * H + d * DAY_MS);
            let write = if day == "2026-11-10" {
                vec![(600, Minute::Up), (90, Minute::Down)]
            } else {
                vec![]
            };
            let site = if day == "2026-11-20" {
                vec![(100, Minute::Up), (30, Minute::Degraded)]
            } else {
                vec![]
            };
            records.push(day_record(&day, 1, "write", &write));
            records.push(day_record(&day, 1, "site:portal", &site));
        }
        // 2026-11-30 UTC until 17:00 is November at +07:00.
        let to = NOV + 30 * DAY_MS;
        let now = to + 5 * DAY_MS;
        let (avail, skipped) = report::compute(&records, &[], NOV, to, now);
        assert!(skipped.is_empty(), "{skipped:?}");
        let incidents = vec![
            incident(
                1,
                SERIOUS,
                NOV + 9 * DAY_MS,
                Some(NOV + 9 * DAY_MS + 30 * H),
                "power cut",
                "UPS replaced",
            ),
            incident(
                2,
                SERIOUS,
                NOV + 12 * DAY_MS,
                Some(NOV + 12 * DAY_MS + 2 * H),
                "disk full",
                "disk added",
            ),
            incident(
                3,
                ORDINARY,
                NOV + 15 * DAY_MS,
                Some(NOV + 15 * DAY_MS + 10 * MIN),
                "",
                "",
            ),
            // October: not in the report.
            incident(4, SERIOUS, NOV - 3 * DAY_MS, Some(NOV - 3 * DAY_MS + H), "x", "y"),
        ];
        let drill = |id: &str, at: u64, rto: u64| DrillReport {
            version: 1,
            id: id.into(),
            scenario: "crash-leader".into(),
            started_at_ms: at,
            rto_ms: rto,
            passed: true,
            ..Default::default()
        };
        let audit = |at_ms: u64, who: &str, method: &str, resource: &str, result: &str| AuditRecord {
            version: 1,
            at_ms,
            who: who.into(),
            token: String::new(),
            method: method.into(),
            resource: resource.into(),
            result: result.into(),
            code: "0".into(),
            message: String::new(),
            from: "127.0.0.1".into(),
            node: 1,
        };
        let run = |slot: u64, state: &str, bytes: u64, err: &str| RunRecord {
            slot,
            slot_start_ms: NOV + slot * DAY_MS,
            state: state.into(),
            ended_ms: NOV + slot * DAY_MS + 5 * MIN,
            bytes_new: bytes,
            error: err.into(),
            repo_bytes: if err.is_empty() { slot << 20 } else { 0 },
            // A local repository on a 10 MiB file system.
            repo_free_bytes: if err.is_empty() { (10 - slot) << 20 } else { 0 },
            repo_total_bytes: if err.is_empty() { 10 << 20 } else { 0 },
            ..Default::default()
        };
        let verification = |kind: &str, at_ms: u64, errors: Vec<String>| Verification {
            version: 1,
            id: format!("v-{at_ms}"),
            kind: kind.into(),
            at_ms,
            duration_ms: 65_000,
            repo: "file:///srv/backup".into(),
            snapshot_id: "9f86d081884c7d65aa".into(),
            raft_index: 4211,
            read_data_percent: 5,
            bytes: 3 * 1024 * 1024,
            digest_equal: errors.is_empty(),
            passed: errors.is_empty(),
            errors,
            by: "hanh".into(),
            ..Default::default()
        };
        let verifications = vec![
            verification(verify_kind::RESTORE_DRILL, NOV - 20 * DAY_MS, vec![]),
            verification(
                verify_kind::CHECK,
                NOV + 4 * DAY_MS,
                vec!["pack 3f2a: hash mismatch".into()],
            ),
            verification(verify_kind::RESTORE_DRILL, NOV + 6 * DAY_MS, vec![]),
            // December: not in the report, and not "the last that passed".
            verification(verify_kind::RESTORE_DRILL, NOV + 31 * DAY_MS, vec![]),
        ];
        let audit = vec![
            audit(NOV + H, "admin", "/sen.v1.Access/GrantRole", "user:cong-bao", "ok"),
            audit(NOV + 2 * H, "cong-bao", "/sen.v1.Kv/Put", "db:cong-bao", "ok"),
            audit(NOV + 3 * H, "cong-bao", "/sen.v1.Kv/Put", "db:portal", "denied"),
        ];
        compute(
            "2026-11",
            report::vietnam(),
            NOV,
            to,
            now,
            0.999,
            Inputs {
                availability: Some(avail),
                incidents,
                drills: vec![drill("d-1", NOV + 5 * DAY_MS, 1_800), drill("d-0", NOV - DAY_MS, 900)],
                runs: vec![
                    run(1, run_state::SUCCEEDED, 1000, ""),
                    run(2, run_state::FAILED, 0, "repository unreachable"),
                    run(3, run_state::SUCCEEDED, 2000, ""),
                ],
                verifications,
                audit: Some(audit),
                audit_truncated: false,
                serious_limit_ms: 24 * H,
                readers: None,
                growth: Some(crate::growth::GrowthReport::default()),
            },
        )
    }

    #[test]
    fn every_figure_of_a_simulated_month() {
        assert_eq!(
            report::month_window("2026-11", report::vietnam()).unwrap(),
            (NOV, NOV + 30 * DAY_MS)
        );
        let r = november();
        let s = &r.summary;
        let write = s.targets.iter().find(|t| t.target == "write").unwrap();
        // 30 days = 43,200 minutes, 90 of them down.
        assert_eq!((write.down_minutes, write.interruptions), (90, 1));
        let a = write.availability.unwrap();
        assert!((a - (43_200.0 - 90.0) / 43_200.0).abs() < 1e-9, "{a}");
        assert_eq!(format!("{:.2}", a * 100.0), "99.79");
        assert_eq!(write.meets_objective, Some(false));
        let site = s.targets.iter().find(|t| t.target == "site:portal").unwrap();
        assert_eq!(
            (site.down_minutes, site.degraded_minutes, site.interruptions),
            (0, 30, 1)
        );
        assert_eq!(site.availability, Some(1.0));
        assert_eq!(site.meets_objective, Some(true));
        assert_eq!(s.interruptions, 2);
        assert_eq!(s.write_downtime_minutes, 90);
        assert_eq!((s.incidents, s.serious_incidents), (3, 2));
        assert_eq!(s.mttr_ms, Some(16 * H), "(30 h + 2 h) / 2");
        assert_eq!(s.serious_beyond_limit, 1);
        assert_eq!(s.unexplained, 1);
        assert_eq!(
            r.incidents.iter().map(|i| i.within_limit).collect::<Vec<_>>(),
            vec![Some(false), Some(true), None]
        );
        assert_eq!(r.drills.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["d-1"]);
        let b = &r.backups;
        assert_eq!((b.runs, b.succeeded, b.failed, b.bytes_new), (3, 2, 1, 3000));
        assert_eq!(b.last_success_ms, Some(NOV + 3 * DAY_MS + 5 * MIN));
        assert_eq!(
            b.failures,
            vec![(NOV + 2 * DAY_MS, "repository unreachable".to_string())]
        );
        assert_eq!(
            (b.checks, b.checks_passed, b.restore_drills, b.restore_drills_passed),
            (1, 0, 1, 1)
        );
        assert_eq!(b.last_restore_passed_ms, Some(NOV + 6 * DAY_MS));
        assert_eq!(
            b.verifications.iter().map(|v| (v.at_ms, v.passed)).collect::<Vec<_>>(),
            vec![(NOV + 4 * DAY_MS, false), (NOV + 6 * DAY_MS, true)]
        );
        assert_eq!(b.verifications[0].first_error, "pack 3f2a: hash mismatch");
        assert_eq!(b.verifications[1].snapshot, "9f86d081");
        let repo = r.growth.as_ref().unwrap().repository.as_ref().unwrap();
        assert_eq!((repo.runs, repo.start_bytes, repo.end_bytes), (2, 1 << 20, 3 << 20));
        assert_eq!(repo.last_backup_ms, Some(NOV + 3 * DAY_MS + 5 * MIN));
        assert_eq!((repo.free_bytes, repo.total_bytes), (Some(7 << 20), Some(10 << 20)));
        assert!((repo.days_until_full.unwrap() - 7.0).abs() < 1e-9, "{repo:?}");
        assert_eq!(
            repo.last_backup_age_ms,
            Some(NOV + 30 * DAY_MS - (NOV + 3 * DAY_MS + 5 * MIN))
        );
        assert_eq!(r.audit.records, 3);
        assert_eq!(
            r.audit.cluster_changes.len(),
            1,
            "the data write is counted, not listed"
        );
        let cb = r.audit.by_user.iter().find(|u| u.who == "cong-bao").unwrap();
        assert_eq!((cb.changes, cb.refused), (1, 1));

        // The JSON carries every number the prose states.
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["summary"]["mttr_ms"], 16 * H);
        assert_eq!(j["backups"]["failed"], 1);
    }

    #[test]
    fn the_html_report_is_self_contained_and_escapes_what_people_wrote() {
        let mut r = november();
        r.incidents[0].cause = "<script>alert(1)</script> cáp quang".into();
        let raw = html(&r, report::vietnam(), Lang::Vi).unwrap();
        assert!(!raw.contains("<script>") && raw.contains("&lt;script&gt;alert(1)&lt;"));
        // minijinja writes `/` as `&#x2f;` in text: the same to a browser.
        let page = raw.replace("&#x2f;", "/");
        assert!(page.contains("Lượng người đọc và tốc độ truy cập theo trang"), "{page}");
        assert!(page.starts_with("<!doctype html>"));
        assert!(
            page.contains("<title>Báo cáo quản lý, vận hành tháng 11/2026</title>"),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; cáp quang"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external resource"
        );
        // A bar for the write outage of 10/11 (90 down minutes: the tallest).
        assert!(
            page.contains("<title>00:00 10/11/2026: 1 giờ 30 phút / 0 phút</title>"),
            "{page}"
        );
        assert!(page.contains(r##"height="80.0" fill="#b00020""##), "{page}");
        for want in [
            "99,792%",
            "30 giờ",
            "repository unreachable",
            "cong-bao",
            "Tăng trưởng dữ liệu và dung lượng",
            "tính sẵn sàng ghi dữ liệu",
            "Bản sao lưu có khôi phục được không?",
            "KHÔNG ĐẠT: pack 3f2a: hash mismatch",
            "lần diễn tập khôi phục đạt gần nhất",
        ] {
            assert!(page.contains(want), "missing {want:?}");
        }
        let en = html(&r, report::vietnam(), Lang::En).unwrap().replace("&#x2f;", "/");
        assert!(en.contains("<title>Operations report for 2026-11</title>") && en.contains("write path (cluster)"));
    }

    /// Section 7 draws each site's readers per day over the whole month:
    /// the busiest day is the full height, a quieter day in proportion,
    /// a day without answers has no bar.
    #[test]
    fn the_html_report_charts_readers_per_day() {
        use crate::readers::{ReadersReport, SiteDay, SiteReaders};
        let mut r = november();
        let day = |day: &str, requests, readers| SiteDay {
            day: day.into(),
            requests,
            readers,
        };
        r.readers = Some(ReadersReport {
            from_ms: r.from_ms,
            to_ms: r.to_ms,
            sites: vec![SiteReaders {
                site: "lich-cong-tac".into(),
                requests: 120,
                bytes: 1 << 20,
                s2xx: 120,
                s3xx: 0,
                s4xx: 0,
                s5xx: 0,
                p50_ms: Some(5),
                p95_ms: Some(10),
                p99_ms: Some(25),
                readers_per_day_mean: 29.0,
                readers_per_day_max: 48,
                days: vec![day("2026-11-05", 100, 48), day("2026-11-06", 20, 12)],
            }],
        });
        let page = html(&r, report::vietnam(), Lang::Vi).unwrap().replace("&#x2f;", "/");
        let bars = |p: &str| p.matches(r##"fill="#1f5f99""##).count();
        assert_eq!(bars(&page), 2, "{page}");
        assert!(
            page.contains("<title>05/11/2026: 48 người đọc, 100 lượt truy cập</title>"),
            "{page}"
        );
        assert!(page.contains(r##"height="80.0" fill="#1f5f99""##), "{page}");
        assert!(page.contains(r##"height="20.0" fill="#1f5f99""##), "12 of 48: {page}");
        assert!(
            page.contains("lich-cong-tac: số người đọc khác nhau mỗi ngày"),
            "{page}"
        );
        // The month at +07:00 touches 31 UTC days (31 Oct 17:00 → 30 Nov 17:00).
        assert!(
            page.contains(r##"aria-label="lich-cong-tac""##) && page.contains(r##"viewBox="0 0 464 110""##),
            "{page}"
        );
        let en = html(&r, report::vietnam(), Lang::En).unwrap().replace("&#x2f;", "/");
        assert!(
            en.contains("<title>2026-11-05: 48 readers, 100 requests</title>"),
            "{en}"
        );
    }

    #[test]
    fn the_report_reads_in_both_languages() {
        let r = november();
        let vi = markdown(&r, report::vietnam(), Lang::Vi);
        for want in [
            "# Báo cáo quản lý, vận hành tháng 11/2026",
            "| ghi dữ liệu (cụm) | 99,792% | không | 1 giờ 30 phút | 1 |",
            "Thời gian khắc phục trung bình (sự cố nghiêm trọng): 16 giờ\n",
            "Sự cố nghiêm trọng không khắc phục trong 24 giờ: 1",
            "| 1 | mất đa số (cụm ngừng ghi) | nghiêm trọng | 00:00 10/11/2026 | 30 giờ | power cut | UPS replaced | không |",
            "(chưa ghi) — không có nút lãnh đạo",
            "## 4. Diễn tập chuyển đổi dự phòng",
            "| d-1 | crash-leader | 00:00 06/11/2026 | 1 giây | 0ms | 0 | đạt |",
            "Số lần sao lưu theo lịch: 3 (thành công: 2, thất bại: 1)",
            "Thất bại 00:00 03/11/2026: repository unreachable",
            "| cong-bao | 1 | 1 |",
            "`/sen.v1.Access/GrantRole` user:cong-bao",
            "## 8. Tăng trưởng dữ liệu và dung lượng",
            "### Các lần gián đoạn",
            "Dữ liệu mới được lưu: 2,9 KiB",
            "### Bản sao lưu có khôi phục được không?",
            "- Kiểm tra kho sao lưu (`sen backup check`): 1 (không phát hiện lỗi: 0)",
            "- Lần diễn tập khôi phục đạt gần nhất: 00:00 07/11/2026",
            "| 00:00 05/11/2026 | kiểm tra kho sao lưu | 5% dữ liệu | 3,0 MiB | 1 phút 5 giây | KHÔNG ĐẠT: pack 3f2a: hash mismatch | hanh |",
            "| 00:00 07/11/2026 | diễn tập khôi phục | 9f86d081 (chỉ số 4211) |",
            "Kho sao lưu: 1,0 MiB → 3,0 MiB qua 2 lần sao lưu có đo (1,0 MiB mỗi ngày); bản sao lưu thành công gần nhất cách cuối kỳ 26 ngày 23 giờ. Nơi lưu kho còn trống 7,0 MiB trên 10,0 MiB: đầy sau 7 ngày nếu tăng như hiện nay.",
        ] {
            assert!(vi.contains(want), "missing {want:?} in:\n{vi}");
        }
        let en = markdown(&r, report::vietnam(), Lang::En);
        for want in [
            "# Operations report for 2026-11",
            "| write path (cluster) | 99.792% | no | 1 h 30 min | 1 |",
            "Mean time to restore (serious incidents): 16h\n",
            "| 2 | quorum lost | serious | 2026-11-13 00:00 | 2h | disk full | disk added | yes |",
            "- Restore drills (`sen drill restore`): 1 (passed: 1)",
            "Backup repository: 1.0 MiB → 3.0 MiB over 2 measured runs (1.0 MiB per day); the last backup was 26d 23h old at the end of the period. Its storage has 7.0 MiB free of 10.0 MiB: full in 7 days at this pace.",
            "| 2026-11-07 00:00 | restore drill | 9f86d081 (index 4211) |",
        ] {
            assert!(en.contains(want), "missing {want:?} in:\n{en}");
        }
    }
}
