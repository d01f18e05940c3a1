//! The words of the HTML report (and, later, the dashboard): one table per
//! language, the same keys in each (a test checks it). Templates read them
//! as `t.<key>`.

use std::collections::BTreeMap;

use crate::drill::Lang;

const EN: &[(&str, &str)] = &[
    ("title", "Operations report for"),
    ("period", "Period"),
    ("generated", "generated"),
    ("summary", "Summary"),
    ("target", "target"),
    ("availability", "availability"),
    ("meets", "meets the objective"),
    ("down", "down"),
    ("degraded", "degraded"),
    ("interruptions", "interruptions"),
    ("availability_title", "Availability and interruptions"),
    ("chart_caption", "down (red) and degraded (amber) minutes per day"),
    ("from", "from"),
    ("to", "to"),
    ("duration", "duration"),
    ("state", "state"),
    ("incidents_col", "incidents (cause → remedy)"),
    ("no_interruption", "No interruption this month."),
    ("incidents_title", "Incidents, causes and remedies"),
    ("kind", "kind"),
    ("severity", "severity"),
    ("start", "start"),
    ("cause", "cause"),
    ("remedy", "remedy"),
    ("within_limit", "fixed within the limit"),
    ("no_incident", "No incident this month."),
    ("drills_title", "Failover drills"),
    ("drill", "drill"),
    ("scenario", "scenario"),
    ("when", "when"),
    ("read_gap", "read gap"),
    ("lost", "acknowledged writes lost"),
    ("result", "result"),
    ("no_drill", "No drill this month."),
    ("backups_title", "Backups"),
    ("runs", "scheduled runs"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("new_data", "new data stored"),
    ("last_success", "last success"),
    ("audit_title", "Who changed what (audit log)"),
    ("who", "who"),
    ("changes", "changes"),
    ("refused", "refused"),
    (
        "audit_truncated",
        "The month has more audit records than one report reads; the counts cover the first ones.",
    ),
    ("cluster_changes", "Changes to users, roles, tokens, nodes and settings"),
    (
        "audit_unavailable",
        "Not available: the user who made this report may not read the audit log (it needs the auditor role).",
    ),
    ("not_measured_title", "Not measured yet"),
    (
        "not_measured",
        "Readers and access speed per site (R4) and growth with a capacity forecast (R8) are not measured by this version of Sen; per-site request counts and latencies are in /metrics.",
    ),
    ("card_write", "write path availability"),
    ("card_interruptions", "interruptions"),
    ("card_incidents", "incidents (serious)"),
    ("card_mttr", "mean time to restore"),
    ("card_beyond", "serious, not fixed within the limit"),
    ("card_unexplained", "without a noted cause"),
    ("yes", "yes"),
    ("no", "no"),
    ("open", "open"),
    ("not_noted", "(not noted)"),
    ("none_recorded", "none recorded"),
    ("passed", "passed"),
    ("drill_failed", "FAILED"),
    ("state_down", "down"),
    ("state_degraded", "degraded"),
    ("state_unmeasured", "not measured (no node was probing)"),
];

const VI: &[(&str, &str)] = &[
    ("title", "Báo cáo quản lý, vận hành tháng"),
    ("period", "Kỳ báo cáo"),
    ("generated", "lập lúc"),
    ("summary", "Tóm tắt"),
    ("target", "đối tượng"),
    ("availability", "tính sẵn sàng"),
    ("meets", "đạt mục tiêu"),
    ("down", "ngừng"),
    ("degraded", "suy giảm"),
    ("interruptions", "số lần gián đoạn"),
    ("availability_title", "Tính sẵn sàng và các lần gián đoạn"),
    ("chart_caption", "số phút ngừng (đỏ) và suy giảm (vàng) mỗi ngày"),
    ("from", "từ"),
    ("to", "đến"),
    ("duration", "thời gian gián đoạn"),
    ("state", "tình trạng"),
    ("incidents_col", "sự cố (nguyên nhân → khắc phục)"),
    ("no_interruption", "Không có gián đoạn trong tháng."),
    ("incidents_title", "Sự cố, nguyên nhân và biện pháp khắc phục"),
    ("kind", "loại"),
    ("severity", "mức độ"),
    ("start", "bắt đầu"),
    ("cause", "nguyên nhân"),
    ("remedy", "biện pháp khắc phục"),
    ("within_limit", "khắc phục đúng hạn"),
    ("no_incident", "Không có sự cố trong tháng."),
    ("drills_title", "Diễn tập chuyển đổi dự phòng"),
    ("drill", "mã"),
    ("scenario", "kịch bản"),
    ("when", "thời điểm"),
    ("read_gap", "gián đoạn đọc"),
    ("lost", "số bản ghi đã xác nhận bị mất"),
    ("result", "kết quả"),
    ("no_drill", "Không có cuộc diễn tập nào trong tháng."),
    ("backups_title", "Sao lưu"),
    ("runs", "số lần sao lưu theo lịch"),
    ("succeeded", "thành công"),
    ("failed", "thất bại"),
    ("new_data", "dữ liệu mới được lưu"),
    ("last_success", "lần thành công gần nhất"),
    ("audit_title", "Ai đã thay đổi gì (nhật ký kiểm toán)"),
    ("who", "người dùng"),
    ("changes", "số thay đổi"),
    ("refused", "bị từ chối"),
    (
        "audit_truncated",
        "Tháng này có nhiều bản ghi kiểm toán hơn mức một báo cáo đọc; số liệu chỉ tính phần đầu.",
    ),
    (
        "cluster_changes",
        "Thay đổi về người dùng, vai trò, token, nút và cấu hình",
    ),
    (
        "audit_unavailable",
        "Không có: người lập báo cáo không có quyền đọc nhật ký kiểm toán (cần vai trò auditor).",
    ),
    ("not_measured_title", "Chưa đo"),
    (
        "not_measured",
        "Lượng người đọc, tốc độ truy cập theo từng trang (R4) và mức tăng trưởng kèm dự báo dung lượng (R8) chưa được phiên bản Sen này đo; số yêu cầu và độ trễ theo trang có trong /metrics.",
    ),
    ("card_write", "tính sẵn sàng ghi dữ liệu"),
    ("card_interruptions", "số lần gián đoạn"),
    ("card_incidents", "sự cố (nghiêm trọng)"),
    ("card_mttr", "thời gian khắc phục trung bình"),
    ("card_beyond", "sự cố nghiêm trọng quá hạn"),
    ("card_unexplained", "chưa ghi nguyên nhân"),
    ("yes", "có"),
    ("no", "không"),
    ("open", "đang mở"),
    ("not_noted", "(chưa ghi)"),
    ("none_recorded", "chưa ghi nhận"),
    ("passed", "đạt"),
    ("drill_failed", "KHÔNG ĐẠT"),
    ("state_down", "ngừng"),
    ("state_degraded", "suy giảm"),
    ("state_unmeasured", "không đo được (không nút nào chạy đo)"),
];

/// The table of `lang`.
pub fn labels(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    match lang {
        Lang::En => EN,
        Lang::Vi => VI,
    }
    .iter()
    .copied()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_word_once() {
        for table in [EN, VI] {
            let keys: std::collections::BTreeSet<&str> = table.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys.len(), table.len(), "a key is repeated");
        }
        let en: Vec<&str> = labels(Lang::En).into_keys().collect();
        let vi: Vec<&str> = labels(Lang::Vi).into_keys().collect();
        assert_eq!(en, vi);
    }
}
