//! A drill report as Markdown, in English or Vietnamese.

use std::time::Duration;

use sen_raft::schema::system::DrillReport;

/// Language of an operator-facing report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Lang {
    En,
    Vi,
}

fn ms(v: Option<u64>) -> String {
    v.map_or("—".into(), |v| format!("{v} ms"))
}

/// The report as Markdown.
pub fn markdown(r: &DrillReport, lang: Lang) -> String {
    let vi = lang == Lang::Vi;
    let t = |en: &'static str, vi_text: &'static str| if vi { vi_text } else { en };
    let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(r.started_at_ms));
    let mut s = format!(
        "# {} {} — {}\n\n",
        t("Failover drill", "Diễn tập chuyển đổi dự phòng"),
        r.id,
        if r.passed {
            t("PASSED", "ĐẠT")
        } else {
            t("FAILED", "KHÔNG ĐẠT")
        }
    );
    s.push_str(&format!(
        "{}: `{}` · {}: {} · {}: {} · {}: {} → {}\n\n",
        t("Scenario", "Kịch bản"),
        r.scenario,
        t("target node", "nút mục tiêu"),
        r.target,
        t("started", "bắt đầu"),
        when,
        t("leader", "nút lãnh đạo"),
        r.leader_before,
        r.leader_after
    ));
    s.push_str(&format!(
        "| {} | {} | {} |\n|---|---|---|\n",
        t("measure", "chỉ số"),
        t("value", "giá trị"),
        t("objective", "mục tiêu")
    ));
    s.push_str(&format!(
        "| RTO ({}) | {} ms | ≤ {} ms |\n",
        t(
            "longest write gap seen by clients",
            "khoảng ngắt ghi dài nhất phía người dùng"
        ),
        r.rto_ms,
        r.objectives.rto_ms
    ));
    s.push_str(&format!(
        "| {} | {} ms | ≤ {} ms |\n",
        t(
            "longest read gap (site content over HTTP)",
            "khoảng ngắt đọc dài nhất (nội dung trang qua HTTP)"
        ),
        r.read_gap_ms,
        r.objectives.read_gap_ms
    ));
    s.push_str(&format!(
        "| RPO ({}) | {} | 0 |\n\n",
        t("acknowledged writes lost", "bản ghi đã xác nhận bị mất"),
        r.lost_writes
    ));
    s.push_str(&format!(
        "## {}\n\n",
        t(
            "Timeline (ms after the drill began)",
            "Diễn biến (ms kể từ khi bắt đầu)"
        )
    ));
    let tl = &r.timeline;
    for (en, vi_text, v) in [
        ("fault injected", "bắt đầu sự cố", Some(tl.fault_start_ms)),
        (
            "first failed request",
            "yêu cầu lỗi đầu tiên",
            tl.first_failed_request_ms,
        ),
        (
            "new leader elected",
            "bầu xong nút lãnh đạo mới",
            tl.new_leader_elected_ms,
        ),
        (
            "first successful write after the failure",
            "lần ghi thành công đầu tiên sau lỗi",
            tl.first_write_after_failure_ms,
        ),
        ("fault ended", "kết thúc sự cố", Some(tl.fault_end_ms)),
        (
            "target back and caught up",
            "nút mục tiêu hoạt động lại và bắt kịp",
            tl.target_caught_up_ms,
        ),
        ("probes stopped", "dừng thăm dò", Some(tl.probes_stopped_ms)),
    ] {
        s.push_str(&format!("- {}: {}\n", if vi { vi_text } else { en }, ms(v)));
    }
    s.push_str(&format!(
        "\n## {}\n\n- {}: {} / {} {} ({} {}, {} {})\n- {}: {} / {}\n- {}: {:?}\n- {}: {:?}\n",
        t("Probe workload", "Tải thăm dò"),
        t("writes acknowledged", "lần ghi được xác nhận"),
        r.writes_acknowledged,
        r.writes_attempted,
        t("attempted", "lần thử"),
        r.writes_failed,
        t("failed", "lỗi"),
        r.writes_unknown_applied,
        t("of them applied anyway", "trong số đó vẫn được ghi"),
        t("HTTP reads ok", "lần đọc HTTP thành công"),
        r.reads_ok,
        r.reads_attempted,
        t("read gap by node (ms)", "khoảng ngắt đọc theo nút (ms)"),
        r.read_gap_by_node_ms,
        t(
            "acknowledged writes missing by node",
            "bản ghi đã xác nhận bị thiếu theo nút"
        ),
        r.missing_by_node
    ));
    if !r.failures.is_empty() {
        s.push_str(&format!("\n## {}\n\n", t("Why it failed", "Lý do không đạt")));
        for f in &r.failures {
            s.push_str(&format!("- {f}\n"));
        }
    }
    if !r.notes.is_empty() {
        s.push_str(&format!("\n## {}\n\n", t("Notes", "Ghi chú")));
        for n in &r.notes {
            s.push_str(&format!("- {n}\n"));
        }
    }
    if r.incident_id != 0 {
        s.push_str(&format!(
            "\n{}: `sen incident show {}`\n",
            t("Incident", "Sự cố"),
            r.incident_id
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_carry_the_figures() {
        let r = DrillReport {
            id: "20261203T101500Z-crash-leader".into(),
            scenario: "crash-leader".into(),
            rto_ms: 812,
            read_gap_ms: 64,
            passed: true,
            incident_id: 7,
            ..Default::default()
        };
        let en = markdown(&r, Lang::En);
        let vi = markdown(&r, Lang::Vi);
        for s in [&en, &vi] {
            assert!(
                s.contains("812 ms") && s.contains("64 ms") && s.contains("sen incident show 7"),
                "{s}"
            );
        }
        assert!(en.starts_with("# Failover drill 20261203T101500Z-crash-leader — PASSED"));
        assert!(vi.starts_with("# Diễn tập chuyển đổi dự phòng 20261203T101500Z-crash-leader — ĐẠT"));
        assert!(vi.contains("khoảng ngắt ghi dài nhất phía người dùng"));
    }
}
