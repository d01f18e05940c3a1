//! The control plane's JSON records: what earlier releases stored still
//! reads, what this build writes is pinned, and newer versions are refused.

use super::*;

#[test]
fn records_written_without_a_version_read_as_version_1() {
    // As release 0.1 stored them (no `version` field).
    let run: RunRecord = RunRecord::from_json(
        br#"{"slot":5,"slot_start_ms":300000,"state":"succeeded","attempt":1,"leader":1,"term":3,"node":2,"started_ms":300010,"ended_ms":300900,"snapshot_id":"ab","raft_index":77,"bytes_total":10,"bytes_new":4,"chunks_new":1,"error":"","prune":""}"#,
    )
    .unwrap();
    assert_eq!(
        (
            run.version,
            run.slot,
            run.state.as_str(),
            run.repo_bytes,
            run.repo_free_bytes
        ),
        (1, 5, run_state::SUCCEEDED, 0, 0)
    );
    let p = PlannedTransfer::from_json(br#"{"from":1,"to":2,"at_ms":9,"reason":"drain"}"#).unwrap();
    assert_eq!((p.version, p.to), (1, 2));
    let d = ActiveDrill::from_json(br#"{"id":"x","target":3,"until_ms":10}"#).unwrap();
    assert_eq!((d.version, d.target), (1, 3));
}

#[test]
fn what_this_build_writes_is_pinned() {
    let p = PlannedTransfer {
        version: 1,
        from: 1,
        to: 2,
        at_ms: 9,
        reason: "drain".into(),
    };
    assert_eq!(
        String::from_utf8(p.to_json().unwrap()).unwrap(),
        r#"{"version":1,"from":1,"to":2,"at_ms":9,"reason":"drain"}"#
    );
    let s = Schedule {
        version: 1,
        repo: "file:///var/backups/sen".into(),
        every_ms: 3_600_000,
        password_file: None,
        keep: KeepPolicy {
            daily: 7,
            ..Default::default()
        },
        prune_grace_ms: 3_600_000,
        tags: vec![],
    };
    assert_eq!(
        String::from_utf8(s.to_json().unwrap()).unwrap(),
        r#"{"version":1,"repo":"file:///var/backups/sen","every_ms":3600000,"password_file":null,"keep":{"last":0,"hourly":0,"daily":7,"weekly":0,"monthly":0,"yearly":0},"prune_grace_ms":3600000,"tags":[]}"#
    );
    let i = Incident::new(kind::RECOVERY, SERIOUS, 5, "lost".into(), vec![1, 2], 1);
    assert_eq!(
        String::from_utf8(i.to_json().unwrap()).unwrap(),
        r#"{"version":1,"id":0,"kind":"recovery","severity":"serious","start_ms":5,"end_ms":null,"auto_cause":"lost","auto_cause_vi":"","nodes":[1,2],"detected_by":1,"term":0,"reference":"","cause":"","remedy":"","annotated_by":"","annotated_at_ms":0}"#
    );
    let back = Incident::from_json(&i.to_json().unwrap()).unwrap();
    assert_eq!(back, i);
    let run = RunRecord {
        slot: 5,
        state: run_state::SUCCEEDED.into(),
        repo_bytes: 123_456,
        repo_free_bytes: 7_000,
        repo_total_bytes: 9_000,
        ..Default::default()
    };
    assert_eq!(
        String::from_utf8(run.to_json().unwrap()).unwrap(),
        r#"{"version":1,"slot":5,"slot_start_ms":0,"state":"succeeded","attempt":0,"leader":0,"term":0,"node":0,"started_ms":0,"ended_ms":0,"snapshot_id":"","raft_index":0,"bytes_total":0,"bytes_new":0,"chunks_new":0,"error":"","prune":"","repo_bytes":123456,"repo_free_bytes":7000,"repo_total_bytes":9000}"#
    );
}

#[test]
fn a_newer_version_is_refused_with_the_fix() {
    let e = Incident::from_json(
        br#"{"version":2,"kind":"x","severity":"ordinary","start_ms":1,"auto_cause":"","detected_by":1}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("version 2") && e.contains("upgrade"), "{e}");
    let e = Schedule::from_json(b"{not json").unwrap_err().to_string();
    assert!(e.contains("the backup schedule in sen-system"), "{e}");
}

#[test]
fn keys_are_pinned() {
    assert_eq!(incident_key(12), b"incident/00000012");
    assert_eq!(backup_run_key(3), b"backup/run/00000000000000000003");
    assert_eq!(drained_key(4), b"node/4/drained");
    assert_eq!(
        drill_key("20261203T120000Z-switchover"),
        b"drill/20261203T120000Z-switchover"
    );
}

#[test]
fn drills_tag_the_incidents_they_provoke() {
    let drill = ActiveDrill {
        version: 1,
        id: "d1".into(),
        target: 2,
        until_ms: 1_000,
    };
    // A quorum lost during the drill is expected: ordinary, tagged.
    let mut i = Incident::new(kind::QUORUM_LOST, SERIOUS, 900, "no quorum".into(), vec![2], 2);
    i.tag_with_drill(&drill);
    assert_eq!((i.severity.as_str(), i.reference.as_str()), (ORDINARY, "d1"));
    assert!(i.auto_cause.starts_with("during failover drill d1: "));
    // A failed hook stays serious even during a drill.
    let mut h = Incident::new(kind::HOOK_FAILED, SERIOUS, 900, "exit 1".into(), vec![2], 2);
    h.tag_with_drill(&drill);
    assert_eq!((h.severity.as_str(), h.reference.as_str()), (SERIOUS, "d1"));
    // Long after the drill: untouched.
    let mut late = Incident::new(kind::QUORUM_LOST, SERIOUS, 70_000, "no quorum".into(), vec![2], 2);
    late.tag_with_drill(&drill);
    assert_eq!((late.severity.as_str(), late.reference.as_str()), (SERIOUS, ""));
    // The drill's own incident is not tagged again.
    let mut own = Incident::new(kind::DRILL, ORDINARY, 900, "drill".into(), vec![2], 0);
    own.tag_with_drill(&drill);
    assert_eq!(own.reference, "");
}

#[test]
fn serious_incidents_open_past_the_limit_are_overdue() {
    let day = Duration::from_secs(24 * 3600);
    let mut i = Incident::new(kind::NODE_UNREACHABLE, SERIOUS, 0, String::new(), vec![3], 1);
    assert!(!i.overdue(day.as_millis() as u64, day));
    assert!(i.overdue(day.as_millis() as u64 + 1, day));
    i.end_ms = Some(10);
    assert!(!i.overdue(u64::MAX, day));
    i.severity = ORDINARY.into();
    i.end_ms = None;
    assert!(!i.overdue(u64::MAX, day));
}

#[test]
fn access_records_and_keys_are_pinned() {
    use sen_core::auth::{Grant, Role};
    let u = UserRecord {
        version: 1,
        name: "vp-ubnd".into(),
        grants: vec![Grant {
            role: Role::SiteAdmin,
            scopes: vec!["site:lich-tuan".parse().unwrap(), "db:cong-bao".parse().unwrap()],
        }],
        created_at_ms: 1,
        created_by: "admin".into(),
        updated_at_ms: 2,
    };
    assert_eq!(
        String::from_utf8(u.to_json().unwrap()).unwrap(),
        r#"{"version":1,"name":"vp-ubnd","grants":[{"role":"site-admin","scopes":["site:lich-tuan","db:cong-bao"]}],"created_at_ms":1,"created_by":"admin","updated_at_ms":2}"#
    );
    assert_eq!(UserRecord::from_json(&u.to_json().unwrap()).unwrap(), u);
    let t = TokenRecord {
        version: 1,
        id: "0123456789abcdef".into(),
        user: "vp-ubnd".into(),
        name: "ci".into(),
        hash: "ab".into(),
        created_at_ms: 1,
        created_by: "admin".into(),
        expires_at_ms: Some(9),
        revoked_at_ms: None,
    };
    assert_eq!(
        String::from_utf8(t.to_json().unwrap()).unwrap(),
        r#"{"version":1,"id":"0123456789abcdef","user":"vp-ubnd","name":"ci","hash":"ab","created_at_ms":1,"created_by":"admin","expires_at_ms":9,"revoked_at_ms":null}"#
    );
    let a = AuditRecord {
        version: 1,
        at_ms: 5,
        who: "vp-ubnd".into(),
        token: "0123456789abcdef".into(),
        method: "/sen.v1.Kv/Put".into(),
        resource: "db:cong-bao".into(),
        result: "denied".into(),
        code: "PERMISSION_DENIED".into(),
        message: "needs site-admin on db:cong-bao".into(),
        from: "127.0.0.1:5000".into(),
        node: 2,
    };
    assert_eq!(
        String::from_utf8(a.to_json().unwrap()).unwrap(),
        r#"{"version":1,"at_ms":5,"who":"vp-ubnd","token":"0123456789abcdef","method":"/sen.v1.Kv/Put","resource":"db:cong-bao","result":"denied","code":"PERMISSION_DENIED","message":"needs site-admin on db:cong-bao","from":"127.0.0.1:5000","node":2}"#
    );
    assert_eq!(AuditRecord::from_json(&a.to_json().unwrap()).unwrap(), a);
    let k = AuthKey {
        version: 1,
        key: "00ff".into(),
    };
    assert_eq!(
        String::from_utf8(k.to_json().unwrap()).unwrap(),
        r#"{"version":1,"key":"00ff"}"#
    );
    assert_eq!(AUTH_KEY_KEY, b"auth/token-key");
    assert_eq!(user_key("a"), b"auth/user/a");
    assert_eq!(token_key("ab"), b"auth/token/ab");
    assert_eq!(site_private_key("noi-bo"), b"site/noi-bo/private");
    assert_eq!(audit_key(5, 2, 7), b"audit/0000000000000005-000002-0000000007");
    assert!(audit_from(5) <= audit_key(5, 0, 0) && audit_key(4, 9, 9) < audit_from(5));
}

#[test]
fn quota_records_and_keys_are_pinned() {
    let q = QuotaRecord {
        version: 1,
        kind: QuotaKind::Site,
        name: "lich-tuan".into(),
        max_bytes: 1 << 30,
        set_by: "admin".into(),
        set_at_ms: 7,
    };
    assert_eq!(
        String::from_utf8(q.to_json().unwrap()).unwrap(),
        r#"{"version":1,"kind":"site","name":"lich-tuan","max_bytes":1073741824,"set_by":"admin","set_at_ms":7}"#
    );
    assert_eq!(QuotaRecord::from_json(&q.to_json().unwrap()).unwrap(), q);
    assert_eq!(quota_key(QuotaKind::Database, "cong-bao"), b"quota/database/cong-bao");
    assert_eq!(quota_key(QuotaKind::Site, "portal"), b"quota/site/portal");
}

#[test]
fn probe_path_records_and_keys_are_pinned() {
    let p = ProbePathRecord {
        version: 1,
        site: "lich-tuan".into(),
        path: "/tuan-nay/index.html".into(),
        set_by: "admin".into(),
        set_at_ms: 7,
    };
    assert_eq!(
        String::from_utf8(p.to_json().unwrap()).unwrap(),
        r#"{"version":1,"site":"lich-tuan","path":"/tuan-nay/index.html","set_by":"admin","set_at_ms":7}"#
    );
    assert_eq!(ProbePathRecord::from_json(&p.to_json().unwrap()).unwrap(), p);
    assert_eq!(probe_path_key("portal"), b"probe-path/portal");
}

#[test]
fn probe_paths_are_absolute_paths_within_the_site() {
    for ok in [
        "/",
        "/index.html",
        "/tin-tức/2026/bài 1.html".replace(' ', "-").as_str(),
        "/a/./b",
    ] {
        assert_eq!(check_probe_path(ok), Ok(()), "{ok}");
    }
    for (bad, why) in [
        ("index.html", "does not start with /"),
        ("/../etc/passwd", ".. segment"),
        ("/a/..", ".. segment"),
        ("/a?b=1", "? or #"),
        ("/a#top", "? or #"),
        ("/a b", "space"),
        ("/a\r\nHost: x", "control"),
        ("/a\\b", "? or #"),
    ] {
        let e = check_probe_path(bad).unwrap_err();
        assert!(e.contains(why) && e.contains("/index.html"), "{bad}: {e}");
    }
    assert!(
        check_probe_path(&format!("/{}", "a".repeat(512)))
            .unwrap_err()
            .contains("512")
    );
}

/// What a day of measurements costs in the control plane (docs/reports.md
/// quotes these sizes): one node's availability record of a target, one
/// node's traffic of a site, a site's readers sketch, one node's growth
/// sample — each as full as a day can make it.
#[test]
fn a_day_of_measurements_is_a_few_kb_per_site_and_node() {
    use super::growth::GrowthRecord;
    // A steady day, and the worst case: the state changes every minute.
    let mut steady = AvailabilityRecord::new("2026-12-03", "site:portal", 1);
    let mut flapping = steady.clone();
    for m in 0..1440 {
        steady.observe(m, Minute::Up).unwrap();
        flapping
            .observe(m, [Minute::Up, Minute::Degraded, Minute::Down][m % 3])
            .unwrap();
    }
    let mut traffic = TrafficRecord::new("2026-12-03", "portal", 1);
    for hour in 0..24u8 {
        let h = traffic.hours.entry(hour).or_default();
        for (i, ms) in [1u64, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 9000]
            .iter()
            .enumerate()
        {
            for _ in 0..(i + 1) * 1000 {
                h.observe([200, 304, 404, 503][i % 4], 123_456, *ms);
            }
        }
    }
    let mut sketch = Readers::default();
    for i in 0..1_000_000u64 {
        sketch.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    let readers = ReadersRecord::new("2026-12-03", "portal", &sketch);
    let growth = GrowthRecord {
        version: 1,
        day: "2026-12-03".into(),
        node: 1,
        at_ms: 1_796_288_400_000,
        data_dir_bytes: 123_456_789_012,
        disk_total_bytes: 999_999_999_999,
        disk_free_bytes: 555_555_555_555,
        chunk_bytes: 99_999_999_999,
        sites: (0..30).map(|i| (format!("site-{i:02}"), 1_234_567_890)).collect(),
        dbs: (0..10).map(|i| (format!("db-{i:02}"), 1_234_567_890)).collect(),
    };
    let size = |b: Vec<u8>| b.len();
    let sizes = [
        ("availability, steady", size(steady.to_json().unwrap())),
        ("availability, flapping every minute", size(flapping.to_json().unwrap())),
        ("traffic, every hour and bucket", size(traffic.to_json().unwrap())),
        ("readers sketch", size(readers.to_json().unwrap())),
        ("growth, 30 sites and 10 databases", size(growth.to_json().unwrap())),
    ];
    for (what, n) in sizes {
        eprintln!("{what}: {n} bytes");
    }
    assert!(sizes[0].1 < 200 && sizes[1].1 < 8_000, "{sizes:?}");
    assert!(
        sizes[2].1 < 6_000 && sizes[3].1 < 1_200 && sizes[4].1 < 2_000,
        "{sizes:?}"
    );
}
