//! The incident log for people: `sen incident list|show` and the reports,
//! in English or Vietnamese, times at the portal's offset from UTC.
//!
//! Kinds, severities and labels are translated; what a node wrote by itself
//! is shown in Vietnamese when the node wrote it in both languages
//! (`auto_cause_vi`; records of earlier releases have English only), and
//! the operators' cause and remedy notes in the language they were written
//! in.

use std::time::Duration;

use sen_raft::schema::system::{Incident, ORDINARY, SERIOUS, kind};

use crate::drill::Lang;
use crate::report::{TimeZone, local_time};

/// What an incident kind means, for people.
pub fn kind_label(k: &str, lang: Lang) -> String {
    let (en, vi) = match k {
        kind::LEADER_CHANGE => ("leader change", "đổi nút lãnh đạo"),
        kind::NODE_UNREACHABLE => ("node unreachable", "mất liên lạc với nút"),
        kind::QUORUM_LOST => ("quorum lost", "mất đa số (cụm ngừng ghi)"),
        kind::HOOK_FAILED => ("role hook failed", "lệnh chuyển vai trò thất bại"),
        kind::DRILL => ("failover drill", "diễn tập chuyển đổi dự phòng"),
        kind::RECOVERY => ("forced recovery", "khôi phục cưỡng bức"),
        kind::ARCHIVE_BEHIND => (
            "continuous archive fell behind",
            "lưu trữ nhật ký liên tục bị tụt quá giới hạn",
        ),
        other => return other.to_owned(),
    };
    match lang {
        Lang::En => en,
        Lang::Vi => vi,
    }
    .to_owned()
}

/// `serious` / `ordinary` (R2), for people.
pub fn severity_label(s: &str, lang: Lang) -> String {
    match (s, lang) {
        (SERIOUS, Lang::Vi) => "nghiêm trọng".into(),
        (ORDINARY, Lang::Vi) => "thông thường".into(),
        (other, _) => other.to_owned(),
    }
}

/// A duration of milliseconds: `850ms`, `42s`, `4m 12s`, `3h 05m`, `30h`,
/// `3d 4h` (`3 giờ 5 phút`, `30 giờ`, `3 ngày 4 giờ` in Vietnamese). Up to
/// two days are told in hours, as the 24-hour rule (R2) is.
pub fn human_ms(ms: u64, lang: Lang) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let hours = s / 3600;
    match lang {
        Lang::En if d >= 2 && h == 0 => format!("{d}d"),
        Lang::En if d >= 2 => format!("{d}d {h}h"),
        Lang::En if hours > 0 && m == 0 => format!("{hours}h"),
        Lang::En if hours > 0 => format!("{hours}h {m:02}m"),
        Lang::En if m > 0 && sec == 0 => format!("{m}m"),
        Lang::En if m > 0 => format!("{m}m {sec:02}s"),
        Lang::En => format!("{sec}s"),
        Lang::Vi if d >= 2 && h == 0 => format!("{d} ngày"),
        Lang::Vi if d >= 2 => format!("{d} ngày {h} giờ"),
        Lang::Vi if hours > 0 && m == 0 => format!("{hours} giờ"),
        Lang::Vi if hours > 0 => format!("{hours} giờ {m} phút"),
        Lang::Vi if m > 0 && sec == 0 => format!("{m} phút"),
        Lang::Vi if m > 0 => format!("{m} phút {sec} giây"),
        Lang::Vi => format!("{sec} giây"),
    }
}

fn t(lang: Lang, en: &'static str, vi: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Vi => vi,
    }
}

/// The table of `sen incident list`: headers, rows, and a closing line
/// when serious incidents are open beyond `limit_ms` (R2: 24 h).
pub fn list_table(
    list: &[Incident],
    now: u64,
    limit_ms: u64,
    offset: TimeZone,
    lang: Lang,
) -> (Vec<&'static str>, Vec<Vec<String>>, Option<String>) {
    let limit = Duration::from_millis(limit_ms);
    let headers = match lang {
        Lang::En => vec!["ID", "START", "DURATION", "SEVERITY", "KIND", "NODES", "CAUSE"],
        Lang::Vi => vec!["SỐ", "BẮT ĐẦU", "THỜI GIAN", "MỨC ĐỘ", "LOẠI", "NÚT", "NGUYÊN NHÂN"],
    };
    let rows = list
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                local_time(i.start_ms, offset, lang),
                if i.end_ms.is_some() {
                    human_ms(i.duration_ms(now), lang)
                } else {
                    format!("{} {}", t(lang, "OPEN", "ĐANG MỞ"), human_ms(i.duration_ms(now), lang))
                },
                if i.overdue(now, limit) {
                    format!(
                        "{} {}",
                        severity_label(&i.severity, lang),
                        t(lang, "OVERDUE", "QUÁ HẠN")
                    )
                } else {
                    severity_label(&i.severity, lang)
                },
                kind_label(&i.kind, lang),
                i.nodes.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                if i.cause.is_empty() {
                    t(lang, "(no cause noted)", "(chưa ghi nguyên nhân)").into()
                } else {
                    i.cause.chars().take(40).collect()
                },
            ]
        })
        .collect();
    let overdue = list.iter().filter(|i| i.overdue(now, limit)).count();
    let footer = (overdue > 0).then(|| match lang {
        Lang::En => format!(
            "{overdue} serious incident(s) open longer than {} (R2): resolve them and note the remedy with `sen incident annotate ID --cause … --remedy … --resolve`",
            human_ms(limit_ms, lang)
        ),
        Lang::Vi => format!(
            "{overdue} sự cố nghiêm trọng đã mở quá {} (R2): hãy khắc phục và ghi lại bằng `sen incident annotate ID --cause … --remedy … --resolve`",
            human_ms(limit_ms, lang)
        ),
    });
    (headers, rows, footer)
}

/// `sen incident show ID` as text.
pub fn show(inc: &Incident, now: u64, limit_ms: u64, offset: TimeZone, lang: Lang) -> String {
    let tt = |en, vi| t(lang, en, vi);
    let none = tt("(not noted yet)", "(chưa ghi)");
    let mut rows: Vec<(&str, String)> = vec![
        (tt("start", "bắt đầu"), local_time(inc.start_ms, offset, lang)),
        (
            tt("end", "kết thúc"),
            inc.end_ms
                .map_or_else(|| tt("(open)", "(đang mở)").into(), |e| local_time(e, offset, lang)),
        ),
        (
            tt("duration", "thời gian gián đoạn"),
            human_ms(inc.duration_ms(now), lang),
        ),
        (
            tt("nodes", "nút"),
            inc.nodes.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        ),
        (
            tt("detected", "phát hiện"),
            format!(
                "{} {} ({} {})",
                tt("by node", "bởi nút"),
                inc.detected_by,
                tt("term", "nhiệm kỳ"),
                inc.term
            ),
        ),
        (
            tt("automatic", "tự động ghi"),
            inc.auto_cause_in(lang == Lang::Vi).to_owned(),
        ),
    ];
    if !inc.reference.is_empty() {
        rows.push((
            tt("reference", "tham chiếu"),
            format!("{} (`sen drill show {}`)", inc.reference, inc.reference),
        ));
    }
    rows.push((
        tt("cause", "nguyên nhân"),
        if inc.cause.is_empty() {
            none.into()
        } else {
            inc.cause.clone()
        },
    ));
    rows.push((
        tt("remedy", "biện pháp khắc phục"),
        if inc.remedy.is_empty() {
            none.into()
        } else {
            inc.remedy.clone()
        },
    ));
    if !inc.annotated_by.is_empty() {
        rows.push((
            tt("noted by", "người ghi"),
            format!(
                "{} ({})",
                inc.annotated_by,
                local_time(inc.annotated_at_ms, offset, lang)
            ),
        ));
    }
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0) + 1;
    let mut s = format!(
        "{} {}: {} ({}{}) · {offset}\n",
        tt("incident", "sự cố"),
        inc.id,
        kind_label(&inc.kind, lang),
        severity_label(&inc.severity, lang),
        if inc.overdue(now, Duration::from_millis(limit_ms)) {
            tt(", OVERDUE", ", QUÁ HẠN")
        } else {
            ""
        },
    );
    for (k, v) in rows {
        let pad = width - k.chars().count();
        s.push_str(&format!("{k}:{:pad$}{v}\n", ""));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report;

    const H: u64 = 3_600_000;
    const DAY: u64 = 1_796_256_000_000; // 2026-12-03T00:00:00Z

    fn serious_open() -> Incident {
        let mut i = Incident::new(
            kind::QUORUM_LOST,
            SERIOUS,
            DAY + 2 * H,
            "no leader for 12s".into(),
            vec![2, 3],
            1,
        )
        .with_vi("không có nút lãnh đạo trong 12 giây".into());
        i.id = 4;
        i
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_ms(850, Lang::En), "850ms");
        assert_eq!(human_ms(252_000, Lang::En), "4m 12s");
        assert_eq!(human_ms(3 * H + 5 * 60_000, Lang::En), "3h 05m");
        assert_eq!(human_ms(26 * H, Lang::En), "26h");
        assert_eq!(human_ms(50 * H, Lang::En), "2d 2h");
        assert_eq!(human_ms(48 * H, Lang::Vi), "2 ngày");
        assert_eq!(human_ms(10 * 60_000, Lang::Vi), "10 phút");
        assert_eq!(human_ms(3 * H + 5 * 60_000, Lang::Vi), "3 giờ 5 phút");
        assert_eq!(human_ms(42_000, Lang::Vi), "42 giây");
    }

    #[test]
    fn kinds_and_severities_are_translated_and_unknown_ones_kept() {
        assert_eq!(kind_label(kind::QUORUM_LOST, Lang::Vi), "mất đa số (cụm ngừng ghi)");
        assert_eq!(kind_label(kind::QUORUM_LOST, Lang::En), "quorum lost");
        assert_eq!(kind_label("future-kind", Lang::Vi), "future-kind");
        assert_eq!(severity_label(SERIOUS, Lang::Vi), "nghiêm trọng");
        assert_eq!(severity_label(ORDINARY, Lang::En), "ordinary");
    }

    #[test]
    fn an_open_serious_incident_past_the_limit_is_flagged_in_both_languages() {
        let inc = serious_open();
        let now = DAY + 27 * H;
        let (headers, rows, footer) = list_table(std::slice::from_ref(&inc), now, 24 * H, report::vietnam(), Lang::Vi);
        assert_eq!(headers[0], "SỐ");
        // 02:00 UTC is 09:00 in Vietnam.
        assert_eq!(rows[0][1], "09:00 03/12/2026");
        assert_eq!(rows[0][2], "ĐANG MỞ 25 giờ");
        assert_eq!(rows[0][3], "nghiêm trọng QUÁ HẠN");
        assert_eq!(rows[0][6], "(chưa ghi nguyên nhân)");
        assert!(
            footer
                .unwrap()
                .starts_with("1 sự cố nghiêm trọng đã mở quá 24 giờ (R2)")
        );

        let (_, rows, footer) = list_table(
            std::slice::from_ref(&inc),
            DAY + 3 * H,
            24 * H,
            report::vietnam(),
            Lang::En,
        );
        assert_eq!(rows[0][3], "serious");
        assert!(footer.is_none());

        let text = show(&inc, now, 24 * H, report::vietnam(), Lang::Vi);
        assert!(
            text.starts_with("sự cố 4: mất đa số (cụm ngừng ghi) (nghiêm trọng, QUÁ HẠN) · Asia/Ho_Chi_Minh\n"),
            "{text}"
        );
        assert!(text.contains("biện pháp khắc phục: (chưa ghi)\n"), "{text}");
        // What the node saw, in the reader's language; a record of an
        // earlier release (English only) stays readable.
        assert!(
            text.contains("tự động ghi:         không có nút lãnh đạo trong 12 giây\n"),
            "{text}"
        );
        let older = Incident {
            auto_cause_vi: String::new(),
            ..inc.clone()
        };
        let text_older = show(&older, now, 24 * H, report::vietnam(), Lang::Vi);
        assert!(
            text_older.contains("tự động ghi:         no leader for 12s\n"),
            "{text_older}"
        );
        let text = show(&inc, now, 24 * H, report::vietnam(), Lang::En);
        assert!(text.contains("no leader for 12s"), "{text}");
        assert!(text.contains("\nremedy:    (not noted yet)\n"), "{text}");
    }
}
