//! The incident log on an in-memory state machine (no node, no gRPC).

use sen_raft::schema::system::{ORDINARY, SERIOUS, kind};

use super::*;
use crate::system::testing::MemControlPlane;

const B: Duration = Duration::from_secs(1);

fn inc(kind: &str, severity: &str, start: u64) -> Incident {
    Incident::new(kind, severity, start, format!("{kind} at {start}"), vec![1], 1)
}

#[tokio::test]
async fn ids_are_claimed_in_order_and_records_read_back() {
    let plane = MemControlPlane::default();
    assert_eq!(
        record(&plane, inc(kind::LEADER_CHANGE, ORDINARY, 10), B).await.unwrap(),
        1
    );
    assert_eq!(
        record(&plane, inc(kind::NODE_UNREACHABLE, SERIOUS, 20), B)
            .await
            .unwrap(),
        2
    );
    let all = list(&plane).unwrap();
    assert_eq!(all.iter().map(|i| i.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(all[1].kind, kind::NODE_UNREACHABLE);
    assert_eq!(get(&plane, 2).unwrap().start_ms, 20);
    assert!(matches!(get(&plane, 3), Err(ApiError::NotFound(_))));
}

#[tokio::test]
async fn incidents_are_listed_in_pages() {
    let plane = MemControlPlane::default();
    for t in 0..7 {
        record(&plane, inc(kind::LEADER_CHANGE, ORDINARY, t), B).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let (page, next) = list_page(&plane, after, 3).unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|i| i.id));
        pages += 1;
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    assert_eq!(pages, 3, "3 + 3 + 1 (the counter key is not an incident)");
}

#[tokio::test]
async fn ids_continue_from_the_stored_counter() {
    let plane = MemControlPlane::default();
    // Ids already handed out (say by a previous leader) are never reused.
    plane
        .propose(
            Op::Put {
                db: SYSTEM_DB.into(),
                key: INCIDENT_COUNTER_KEY.to_vec(),
                value: b"5".to_vec(),
            },
            B,
        )
        .await
        .unwrap();
    assert_eq!(record(&plane, inc(kind::QUORUM_LOST, SERIOUS, 1), B).await.unwrap(), 5);
    assert_eq!(record(&plane, inc(kind::QUORUM_LOST, SERIOUS, 2), B).await.unwrap(), 6);
}

#[tokio::test]
async fn incidents_during_a_drill_are_tagged_and_ordinary() {
    let plane = MemControlPlane::default();
    let drill = ActiveDrill {
        version: 1,
        id: "d-1".into(),
        target: 2,
        until_ms: 1_000,
    };
    plane
        .propose(cp::put_op(ACTIVE_DRILL_KEY.to_vec(), &drill).unwrap(), B)
        .await
        .unwrap();
    let id = record(&plane, inc(kind::QUORUM_LOST, SERIOUS, 500), B).await.unwrap();
    let got = get(&plane, id).unwrap();
    assert_eq!((got.severity.as_str(), got.reference.as_str()), (ORDINARY, "d-1"));
}

#[tokio::test]
async fn updates_and_annotations() {
    let plane = MemControlPlane::default();
    let id = record(&plane, inc(kind::NODE_UNREACHABLE, ORDINARY, 5), B)
        .await
        .unwrap();
    let mut i = get(&plane, id).unwrap();
    let empty = Annotation {
        cause: " ",
        remedy: "",
        by: "ops",
        resolve: false,
    };
    assert!(matches!(annotate(&mut i, &empty, 9), Err(ApiError::InvalidArgument(_))));
    let note = Annotation {
        cause: " mất điện phòng máy ",
        remedy: "thay UPS",
        by: "trực ca",
        resolve: true,
    };
    annotate(&mut i, &note, 9).unwrap();
    update(&plane, &i, B).await.unwrap();
    let back = get(&plane, id).unwrap();
    assert_eq!(back.cause, "mất điện phòng máy");
    assert_eq!((back.end_ms, back.annotated_at_ms), (Some(9), 9));
    // Resolving again keeps the first end.
    let mut again = back.clone();
    annotate(&mut again, &note, 20).unwrap();
    assert_eq!(again.end_ms, Some(9));
    let huge = "x".repeat(64 * 1024);
    let too_long = Annotation {
        cause: &huge,
        remedy: "y",
        by: "",
        resolve: false,
    };
    assert!(annotate(&mut again, &too_long, 1).is_err());
}

#[test]
fn validation_needs_kind_and_severity() {
    assert!(validate(&inc(kind::DRILL, ORDINARY, 1)).is_ok());
    assert!(validate(&inc("", ORDINARY, 1)).is_err());
    assert!(validate(&inc(kind::DRILL, "critical", 1)).is_err());
    let mut big = inc(kind::DRILL, ORDINARY, 1);
    big.auto_cause = "x".repeat(4 << 20);
    let e = validate(&big).unwrap_err().to_string();
    assert!(e.contains("auto_cause is 4194304 long"), "{e}");
}
