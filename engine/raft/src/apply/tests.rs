#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sen_core::{ClusterId, RequestId};

use super::*;
use crate::mem::MemState;

fn req(id: Option<RequestId>, at: u64, op: Op) -> Request {
    Request {
        id,
        proposed_at_ms: at,
        op,
    }
}

fn put(db: &str, k: &str, v: &str) -> Op {
    Op::Put {
        db: db.into(),
        key: k.into(),
        value: v.into(),
    }
}

fn del(db: &str, k: &str) -> Op {
    Op::Delete {
        db: db.into(),
        key: k.into(),
    }
}

/// Apply entries one batch at a time, starting at `first_index`.
fn apply_batches(state: &mut MemState, first_index: u64, batches: &[&[Request]]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut index = first_index;
    for batch in batches {
        let mut a = Applier::new(&*state);
        for r in *batch {
            out.push(a.apply(index, r).unwrap());
            index += 1;
        }
        a.gc_dedup(1000).unwrap();
        let m = a.finish();
        state.write(m);
    }
    out
}

fn apply_one(state: &mut MemState, index: u64, r: Request) -> Response {
    apply_batches(state, index, &[&[r]]).remove(0)
}

#[test]
fn revisions_follow_log_indexes() {
    let mut s = MemState::default();
    let r = apply_one(&mut s, 5, req(None, 1, put("lich", "a", "1")));
    assert_eq!(r.revision, 5);
    assert_eq!(r.outcome, Outcome::Put { created: true });
    apply_one(&mut s, 9, req(None, 1, put("lich", "a", "2")));
    let rec = s.kv("lich", b"a").unwrap().unwrap();
    assert_eq!(rec.value, b"2");
    assert_eq!((rec.create_revision, rec.mod_revision, rec.version), (5, 9, 2));
    assert_eq!(s.db_stats("lich").unwrap(), DbStats { keys: 1, bytes: 2 });

    let r = apply_one(&mut s, 10, req(None, 1, del("lich", "a")));
    assert_eq!(r.outcome, Outcome::Delete { deleted: true });
    assert_eq!(s.kv("lich", b"a").unwrap(), None);
    assert!(!s.stats.contains_key("lich"), "an emptied database disappears");
    let r = apply_one(&mut s, 11, req(None, 1, del("lich", "a")));
    assert_eq!(r.outcome, Outcome::Delete { deleted: false });

    // Re-created keys start a new life.
    apply_one(&mut s, 12, req(None, 1, put("lich", "a", "3")));
    let rec = s.kv("lich", b"a").unwrap().unwrap();
    assert_eq!((rec.create_revision, rec.mod_revision, rec.version), (12, 12, 1));
}

#[test]
fn databases_are_separate_namespaces() {
    let mut s = MemState::default();
    apply_one(&mut s, 1, req(None, 1, put("congbao", "k", "x")));
    apply_one(&mut s, 2, req(None, 1, put("lichtuan", "k", "y")));
    assert_eq!(s.kv("congbao", b"k").unwrap().unwrap().value, b"x");
    assert_eq!(s.kv("lichtuan", b"k").unwrap().unwrap().value, b"y");
}

fn cmp(k: &str, op: CompareOp, target: CompareTarget) -> Compare {
    Compare {
        key: k.into(),
        op,
        target,
    }
}

fn txn(compares: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> Op {
    Op::Txn(Txn {
        db: "d".into(),
        compares,
        success,
        failure,
    })
}

fn tput(k: &str, v: &str) -> TxnOp {
    TxnOp::Put {
        key: k.into(),
        value: v.into(),
    }
}

#[test]
fn txn_compare_semantics() {
    use CompareOp::*;
    use CompareTarget::*;
    let mut s = MemState::default();
    apply_one(&mut s, 3, req(None, 1, put("d", "k", "m")));

    let cases: Vec<(Compare, bool)> = vec![
        (cmp("k", Equal, Value(b"m".to_vec())), true),
        (cmp("k", NotEqual, Value(b"m".to_vec())), false),
        (cmp("k", Less, Value(b"n".to_vec())), true),
        (cmp("k", Greater, Value(b"n".to_vec())), false),
        (cmp("k", Equal, ModRevision(3)), true),
        (cmp("k", Less, ModRevision(4)), true),
        (cmp("k", Greater, ModRevision(3)), false),
        (cmp("k", Equal, CreateRevision(3)), true),
        (cmp("k", Equal, Version(1)), true),
        (cmp("k", Equal, Exists(true)), true),
        (cmp("k", Equal, Exists(false)), false),
        // A missing key: revision 0, value absent.
        (cmp("nope", Equal, ModRevision(0)), true),
        (cmp("nope", Equal, Version(0)), true),
        (cmp("nope", Equal, Exists(false)), true),
        (cmp("nope", NotEqual, Exists(true)), true),
        (cmp("nope", Equal, Value(vec![])), false),
        (cmp("nope", NotEqual, Value(vec![])), true),
        (cmp("nope", Less, Value(b"z".to_vec())), false),
        (cmp("nope", Greater, Value(vec![])), false),
    ];
    for (index, (c, expect)) in (10..).zip(cases) {
        let desc = format!("{c:?}");
        let r = apply_one(
            &mut s,
            index,
            req(None, 1, txn(vec![c], vec![tput("ok", "y")], vec![tput("ok", "n")])),
        );
        assert_eq!(r.outcome, Outcome::Txn { succeeded: expect }, "{desc}");
        assert_eq!(r.revision, index);
        let ok = s.kv("d", b"ok").unwrap().unwrap();
        assert_eq!(ok.value, if expect { b"y" } else { b"n" }, "{desc}");
        assert_eq!(ok.mod_revision, index);
    }
}

#[test]
fn txn_is_all_or_nothing_and_sees_state_before_it() {
    use CompareOp::*;
    use CompareTarget::*;
    let mut s = MemState::default();
    // Compare-and-swap that creates, then a second CAS that must fail.
    let create = txn(
        vec![cmp("lock", Equal, Exists(false))],
        vec![tput("lock", "n1"), tput("owner", "n1")],
        vec![],
    );
    let r = apply_one(&mut s, 1, req(None, 1, create.clone()));
    assert_eq!(r.outcome, Outcome::Txn { succeeded: true });
    let r = apply_one(&mut s, 2, req(None, 1, create));
    assert_eq!(r.outcome, Outcome::Txn { succeeded: false });
    assert_eq!(s.kv("d", b"owner").unwrap().unwrap().mod_revision, 1);

    // All comparisons must hold.
    let two = txn(
        vec![
            cmp("lock", Equal, Value(b"n1".to_vec())),
            cmp("owner", Equal, Value(b"nX".to_vec())),
        ],
        vec![TxnOp::Delete { key: "lock".into() }],
        vec![],
    );
    let r = apply_one(&mut s, 3, req(None, 1, two));
    assert_eq!(r.outcome, Outcome::Txn { succeeded: false });
    assert!(s.kv("d", b"lock").unwrap().is_some());

    // Put then delete of the same key inside one branch applies in order.
    let seq = txn(vec![], vec![tput("t", "1"), TxnOp::Delete { key: "t".into() }], vec![]);
    apply_one(&mut s, 4, req(None, 1, seq));
    assert!(s.kv("d", b"t").unwrap().is_none());
    assert_eq!(s.db_stats("d").unwrap().keys, 2);
}

#[test]
fn a_retried_request_id_is_applied_once() {
    let mut s = MemState::default();
    let id = RequestId::generate();
    let first = apply_one(&mut s, 7, req(Some(id), 1_000, put("d", "k", "1")));
    assert!(!first.duplicate);
    // Someone else writes in between.
    apply_one(&mut s, 8, req(None, 1_001, put("d", "k", "2")));
    // The retry (for instance after a leader change) must not write again.
    let retry = apply_one(&mut s, 9, req(Some(id), 2_000, put("d", "k", "1")));
    assert!(retry.duplicate);
    assert_eq!(retry.revision, 7, "a duplicate reports the original revision");
    assert_eq!(retry.outcome, first.outcome);
    assert_eq!(s.kv("d", b"k").unwrap().unwrap().value, b"2");
    assert_eq!(s.kv("d", b"k").unwrap().unwrap().mod_revision, 8);
}

#[test]
fn a_reused_id_with_a_different_request_is_refused_and_changes_nothing() {
    let mut s = MemState::default();
    let id = RequestId::generate();
    let first = apply_one(&mut s, 7, req(Some(id), 1_000, put("d", "a", "1")));
    assert!(matches!(first.outcome, Outcome::Put { created: true }));
    let before = s.clone();
    // Same id, another key: refused, not answered as a duplicate.
    let second = apply_one(&mut s, 8, req(Some(id), 2_000, put("d", "b", "1")));
    assert_eq!(second.outcome, Outcome::RequestIdReused { revision: 7 });
    assert!(!second.duplicate);
    assert!(s.kv("d", b"b").unwrap().is_none());
    assert_eq!(s.kv, before.kv, "nothing written");
    assert_eq!(s.dedup, before.dedup, "the original binding stays");
    // Same id, same operation: still the retry of the first.
    let retry = apply_one(&mut s, 9, req(Some(id), 3_000, put("d", "a", "1")));
    assert!(retry.duplicate);
    assert_eq!(retry.revision, 7);
    // Same key, other value: a different request too.
    let other = apply_one(&mut s, 10, req(Some(id), 3_000, put("d", "a", "2")));
    assert_eq!(other.outcome, Outcome::RequestIdReused { revision: 7 });
}

#[test]
fn records_written_before_ids_were_bound_still_answer_retries() {
    let mut s = MemState::default();
    let id = RequestId::generate();
    apply_one(&mut s, 7, req(Some(id), 1_000, put("d", "a", "1")));
    s.dedup.get_mut(&id).unwrap().request = None;
    let r = apply_one(&mut s, 8, req(Some(id), 2_000, put("d", "b", "1")));
    assert!(r.duplicate, "no digest to compare: answered as before");
}

#[test]
fn duplicate_inside_one_batch_is_detected() {
    let mut s = MemState::default();
    let id = RequestId::generate();
    let r = req(Some(id), 5, txn(vec![], vec![tput("n", "x")], vec![]));
    let out = apply_batches(&mut s, 1, &[&[r.clone(), r]]);
    assert!(!out[0].duplicate);
    assert!(out[1].duplicate);
    assert_eq!(s.kv("d", b"n").unwrap().unwrap().version, 1);
}

#[test]
fn idempotency_window_expires_on_the_replicated_clock() {
    let mut s = MemState::default();
    let id = RequestId::generate();
    apply_one(&mut s, 1, req(Some(id), 10_000, put("d", "k", "1")));
    // Within the window: still a duplicate.
    let r = apply_one(
        &mut s,
        2,
        req(Some(id), 10_000 + DEDUP_WINDOW_MS - 1, put("d", "k", "1")),
    );
    assert!(r.duplicate);
    // A proposer with a clock far behind cannot move the clock backwards,
    // so it cannot resurrect or prolong anything.
    let r = apply_one(&mut s, 3, req(None, 5, put("d", "z", "z")));
    assert!(!r.duplicate);
    assert_eq!(s.clock_ms, 10_000 + DEDUP_WINDOW_MS - 1);
    // After the window the id is forgotten: a new request with that id applies.
    let r = apply_one(
        &mut s,
        4,
        req(Some(id), 10_000 + DEDUP_WINDOW_MS, put("d", "k", "again")),
    );
    assert!(!r.duplicate);
    assert_eq!(s.kv("d", b"k").unwrap().unwrap().value, b"again");
}

#[test]
fn gc_removes_only_expired_records() {
    let mut s = MemState::default();
    let old = RequestId::generate();
    let young = RequestId::generate();
    apply_one(&mut s, 1, req(Some(old), 1_000, put("d", "a", "1")));
    apply_one(&mut s, 2, req(Some(young), 1_000 + DEDUP_WINDOW_MS, put("d", "b", "1")));
    // apply_batches ran gc after the batch: `old` expired exactly now.
    assert!(!s.dedup.contains_key(&old));
    assert!(s.dedup.contains_key(&young));
    assert_eq!(s.dedup_by_time.len(), 1);
}

#[test]
fn init_cluster_is_recorded_once() {
    let mut s = MemState::default();
    let a = ClusterId::generate();
    let b = ClusterId::generate();
    let r = apply_one(&mut s, 1, req(None, 1, Op::InitCluster { cluster_id: a }));
    assert_eq!(
        r.outcome,
        Outcome::InitCluster {
            cluster_id: a,
            already: false
        }
    );
    let r = apply_one(&mut s, 2, req(None, 1, Op::InitCluster { cluster_id: b }));
    assert_eq!(
        r.outcome,
        Outcome::InitCluster {
            cluster_id: a,
            already: true
        }
    );
    assert_eq!(s.cluster_id, Some(a));
}

// Model-based property: whatever the batching, the final state and every
// response are the same as applying one entry at a time.
fn arb_op() -> impl Strategy<Value = Op> {
    let key = prop::sample::select(vec!["a", "b", "c"]);
    let val = prop::sample::select(vec!["", "x", "y"]);
    prop_oneof![
        (key.clone(), val.clone()).prop_map(|(k, v)| put("d", k, v)),
        key.clone().prop_map(|k| del("d", k)),
        (key.clone(), val.clone(), key.clone(), val.clone(), 0u64..6).prop_map(|(k1, v1, k2, v2, rev)| txn(
            vec![
                cmp(k1, CompareOp::Equal, CompareTarget::Value(v1.into())),
                cmp(k2, CompareOp::Less, CompareTarget::ModRevision(rev))
            ],
            vec![tput(k2, v2)],
            vec![TxnOp::Delete { key: k1.into() }],
        )),
    ]
}

proptest! {
    #[test]
    fn batching_does_not_change_results(
        ops in prop::collection::vec((arb_op(), any::<bool>(), 0u64..3), 1..40),
        cuts in prop::collection::vec(any::<bool>(), 40),
    ) {
        let ids: Vec<RequestId> = (0..3).map(|_| RequestId::generate()).collect();
        let reqs: Vec<Request> = ops
            .into_iter()
            .enumerate()
            .map(|(i, (op, with_id, which))| req(with_id.then(|| ids[which as usize]), i as u64 * 10, op))
            .collect();

        let mut one = MemState::default();
        let singles: Vec<&[Request]> = reqs.chunks(1).collect();
        let r1 = apply_batches(&mut one, 1, &singles);

        let mut batches: Vec<&[Request]> = Vec::new();
        let mut start = 0;
        for i in 1..reqs.len() {
            if cuts[i] { batches.push(&reqs[start..i]); start = i; }
        }
        batches.push(&reqs[start..]);
        let mut many = MemState::default();
        let r2 = apply_batches(&mut many, 1, &batches);

        prop_assert_eq!(r1, r2);
        prop_assert_eq!(one, many);
    }
}

#[test]
fn an_id_reused_after_expiry_keeps_its_new_record_through_gc() {
    let mut s = MemState::default();
    let id = RequestId::generate();
    apply_one(&mut s, 1, req(Some(id), 1_000, put("d", "k", "1")));
    // Reused once expired: applied again, with a new record.
    let t1 = 1_000 + DEDUP_WINDOW_MS;
    let r = apply_one(&mut s, 2, req(Some(id), t1, put("d", "k", "2")));
    assert!(!r.duplicate);
    // The old time-index key is gone, the new record stays.
    assert_eq!(s.dedup_by_time.iter().collect::<Vec<_>>(), vec![&(t1, id)]);
    assert_eq!(s.dedup[&id].at_ms, t1);
    // Much later traffic runs GC again; a retry within the new window is
    // still a duplicate until then.
    let r = apply_one(&mut s, 3, req(Some(id), t1 + 10, put("d", "k", "2")));
    assert!(r.duplicate);
    // Within the new window the id is bound to the new operation.
    let r = apply_one(&mut s, 4, req(Some(id), t1 + 20, put("d", "k", "3")));
    assert_eq!(r.outcome, Outcome::RequestIdReused { revision: 2 });
    assert_eq!(s.kv("d", b"k").unwrap().unwrap().value, b"2");
}

#[test]
fn gc_never_deletes_a_record_newer_than_its_index_key() {
    // A stale index key (t0, id) while the record is at t1: GC of the key
    // must leave the record.
    let mut s = MemState::default();
    let id = RequestId::generate();
    s.write([
        Mutation::PutDedup {
            id,
            record: DedupRecord {
                at_ms: 5_000 + DEDUP_WINDOW_MS,
                response: Response {
                    revision: 9,
                    duplicate: false,
                    outcome: Outcome::None,
                },
                request: None,
            },
        },
        Mutation::PutClock {
            ms: 5_000 + DEDUP_WINDOW_MS,
        },
    ]);
    s.dedup_by_time.insert((5_000, id));
    let mut a = Applier::new(&s);
    assert_eq!(a.gc_dedup(10).unwrap(), 1);
    let m = a.finish();
    assert_eq!(m, vec![Mutation::DeleteDedupIndex { id, at_ms: 5_000 }]);
    s.write(m);
    assert!(s.dedup.contains_key(&id));
}

#[test]
fn appends_concatenate_and_respect_the_size_cap() {
    let mut s = MemState::default();
    let append = |k: &str, v: &str| TxnOp::Append {
        key: k.into(),
        value: v.into(),
    };
    apply_one(
        &mut s,
        1,
        req(
            None,
            1,
            txn(vec![], vec![append("log", "a;"), append("log", "b;")], vec![]),
        ),
    );
    apply_one(&mut s, 2, req(None, 1, txn(vec![], vec![append("log", "c;")], vec![])));
    let rec = s.kv("d", b"log").unwrap().unwrap();
    assert_eq!(rec.value, b"a;b;c;");
    assert_eq!((rec.create_revision, rec.mod_revision), (1, 2));

    // An append past the cap refuses the whole transaction.
    let big = "x".repeat(MAX_APPENDED_VALUE_BYTES);
    let r = apply_one(
        &mut s,
        3,
        req(
            None,
            1,
            txn(vec![], vec![tput("other", "1"), append("log", &big)], vec![]),
        ),
    );
    assert!(matches!(r.outcome, Outcome::TxnRejected { .. }), "{:?}", r.outcome);
    assert!(
        s.kv("d", b"other").unwrap().is_none(),
        "nothing of a rejected txn applies"
    );
    assert_eq!(s.kv("d", b"log").unwrap().unwrap().value, b"a;b;c;");
}

fn set_quota(s: &mut MemState, index: u64, kind: QuotaKind, name: &str, max_bytes: u64) {
    let rec = QuotaRecord {
        version: 1,
        kind,
        name: name.into(),
        max_bytes,
        set_by: "admin".into(),
        set_at_ms: 1,
    };
    let op = Op::Put {
        db: SYSTEM_DB.into(),
        key: quota_key(kind, name),
        value: rec.to_json().unwrap(),
    };
    apply_one(s, index, req(None, 1, op));
}

#[test]
fn a_database_quota_refuses_growth_past_it_and_lets_everything_else_pass() {
    let mut s = MemState::default();
    // "a" + 9 bytes = 10 bytes per key.
    apply_one(&mut s, 1, req(None, 1, put("congbao", "a", "123456789")));
    set_quota(&mut s, 2, QuotaKind::Database, "congbao", 25);
    apply_one(&mut s, 3, req(None, 1, put("congbao", "b", "123456789")));
    assert_eq!(s.db_stats("congbao").unwrap().bytes, 20);
    // 30 > 25: refused as a whole, nothing changed.
    let r = apply_one(&mut s, 4, req(None, 1, put("congbao", "c", "123456789")));
    assert_eq!(
        r.outcome,
        Outcome::QuotaExceeded {
            kind: QuotaKind::Database,
            name: "congbao".into(),
            bytes: 30,
            quota: 25
        }
    );
    assert_eq!(s.kv("congbao", b"c").unwrap(), None);
    // Rewriting a key with a value of the same size does not grow it.
    let r = apply_one(&mut s, 5, req(None, 1, put("congbao", "a", "987654321")));
    assert_eq!(r.outcome, Outcome::Put { created: false });
    // A transaction is judged by where the whole branch ends: delete one
    // key and add another of the same size passes; add two does not.
    let swap = Op::Txn(Txn {
        db: "congbao".into(),
        compares: vec![],
        success: vec![
            TxnOp::Delete { key: b"a".to_vec() },
            TxnOp::Put {
                key: b"d".to_vec(),
                value: b"123456789".to_vec(),
            },
        ],
        failure: vec![],
    });
    assert_eq!(
        apply_one(&mut s, 6, req(None, 1, swap)).outcome,
        Outcome::Txn { succeeded: true }
    );
    let grow = Op::Txn(Txn {
        db: "congbao".into(),
        compares: vec![],
        success: vec![TxnOp::Append {
            key: b"d".to_vec(),
            value: b"123456".to_vec(),
        }],
        failure: vec![],
    });
    assert!(matches!(
        apply_one(&mut s, 7, req(None, 1, grow)).outcome,
        Outcome::QuotaExceeded { bytes: 26, .. }
    ));
    // Lowering the quota under the current size still lets deletes and
    // shrinking writes through.
    set_quota(&mut s, 8, QuotaKind::Database, "congbao", 5);
    let r = apply_one(&mut s, 9, req(None, 1, put("congbao", "b", "1")));
    assert_eq!(r.outcome, Outcome::Put { created: false });
    let r = apply_one(&mut s, 10, req(None, 1, del("congbao", "d")));
    assert_eq!(r.outcome, Outcome::Delete { deleted: true });
    // Other databases and the cluster's own are not affected.
    let r = apply_one(&mut s, 11, req(None, 1, put("lichtuan", "x", &"y".repeat(100))));
    assert_eq!(r.outcome, Outcome::Put { created: true });
}

#[test]
fn an_unreadable_quota_record_is_no_quota() {
    let mut s = MemState::default();
    let op = Op::Put {
        db: SYSTEM_DB.into(),
        key: quota_key(QuotaKind::Database, "x"),
        value: br#"{"version":99}"#.to_vec(),
    };
    apply_one(&mut s, 1, req(None, 1, op));
    let r = apply_one(&mut s, 2, req(None, 1, put("x", "k", "v")));
    assert_eq!(r.outcome, Outcome::Put { created: true });
}
