use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

use super::*;

fn ev(input: RegIn, output: RegOut, call: u64, ret: u64) -> Event<RegIn, RegOut> {
    Event {
        input,
        output,
        call,
        ret,
    }
}
fn put(v: &str) -> RegIn {
    RegIn::Put(v.into())
}
fn read(v: Option<&str>) -> RegOut {
    RegOut::Read(v.map(Into::into))
}

#[test]
fn sequential_history_is_linearizable() {
    let h = vec![
        ev(put("a"), RegOut::Done, 0, 1),
        ev(RegIn::Get, read(Some("a")), 2, 3),
        ev(RegIn::Cas(Some("a".into()), "b".into()), RegOut::Cas(Some(true)), 4, 5),
        ev(RegIn::Append("x".into()), RegOut::Done, 6, 7),
        ev(RegIn::Get, read(Some("bx")), 8, 9),
    ];
    assert_eq!(check(&Register, &h, None), Verdict::Ok);
}

#[test]
fn stale_read_after_a_completed_write_is_illegal() {
    let h = vec![
        ev(put("a"), RegOut::Done, 0, 1),
        ev(put("b"), RegOut::Done, 2, 3),
        ev(RegIn::Get, read(Some("a")), 4, 5),
    ];
    match check(&Register, &h, None) {
        Verdict::Illegal { stuck, .. } => assert_eq!(stuck, 2, "the stale read cannot be placed"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn concurrent_operations_may_go_either_way() {
    // The read overlaps the write: old or new value are both fine.
    for seen in [None, Some("a")] {
        let h = vec![ev(put("a"), RegOut::Done, 0, 10), ev(RegIn::Get, read(seen), 5, 6)];
        assert_eq!(check(&Register, &h, None), Verdict::Ok);
    }
    // A phantom value is never fine.
    let h = vec![
        ev(put("a"), RegOut::Done, 0, 10),
        ev(RegIn::Get, read(Some("zz")), 5, 6),
    ];
    assert!(matches!(check(&Register, &h, None), Verdict::Illegal { .. }));
}

#[test]
fn unknown_writes_may_or_may_not_happen_but_not_both() {
    // Unknown put, then a read that sees it: fine. One that does not: fine.
    for seen in [None, Some("a")] {
        let h = vec![
            ev(put("a"), RegOut::Done, 0, u64::MAX),
            ev(RegIn::Get, read(seen), 5, 6),
        ];
        assert_eq!(check(&Register, &h, None), Verdict::Ok);
    }
    // Seen, then unseen by a later read: the write cannot be undone.
    let h = vec![
        ev(put("a"), RegOut::Done, 0, u64::MAX),
        ev(RegIn::Get, read(Some("a")), 5, 6),
        ev(RegIn::Get, read(None), 7, 8),
    ];
    assert!(matches!(check(&Register, &h, None), Verdict::Illegal { .. }));
    // An unknown cas takes effect only if its comparison holds.
    let h = vec![
        ev(put("a"), RegOut::Done, 0, 1),
        ev(
            RegIn::Cas(Some("zz".into()), "b".into()),
            RegOut::Cas(None),
            2,
            u64::MAX,
        ),
        ev(RegIn::Get, read(Some("b")), 5, 6),
    ];
    assert!(matches!(check(&Register, &h, None), Verdict::Illegal { .. }));
}

#[test]
fn a_duplicated_append_is_illegal() {
    let h = vec![
        ev(RegIn::Append("t1;".into()), RegOut::Done, 0, 1),
        ev(RegIn::Get, read(Some("t1;t1;")), 2, 3),
    ];
    assert!(matches!(check(&Register, &h, None), Verdict::Illegal { .. }));
}

#[test]
fn long_concurrent_histories_finish_quickly() {
    // 12 writers fully overlapping, then reads: the cache keeps this cheap.
    let mut h: Vec<Event<RegIn, RegOut>> = (0..12)
        .map(|i| ev(put(&format!("v{i}")), RegOut::Done, i, 100 + i))
        .collect();
    h.push(ev(RegIn::Get, read(Some("v7")), 200, 201));
    h.push(ev(RegIn::Get, read(Some("v7")), 202, 203));
    let t = std::time::Instant::now();
    assert_eq!(check(&Register, &h, None), Verdict::Ok);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

// --- differential test against stateright's independent tester ---

#[derive(Clone, Default, Debug)]
struct Reg(Option<String>);

impl SequentialSpec for Reg {
    type Op = RegIn;
    type Ret = RegOut;
    fn invoke(&mut self, op: &RegIn) -> RegOut {
        match op {
            RegIn::Put(v) => {
                self.0 = Some(v.clone());
                RegOut::Done
            }
            RegIn::Get => RegOut::Read(self.0.clone()),
            RegIn::Cas(e, n) => {
                if &self.0 == e {
                    self.0 = Some(n.clone());
                    RegOut::Cas(Some(true))
                } else {
                    RegOut::Cas(Some(false))
                }
            }
            RegIn::Append(t) => {
                let mut v = self.0.clone().unwrap_or_default();
                v.push_str(t);
                self.0 = Some(v);
                RegOut::Done
            }
        }
    }
}

/// A random history of `procs` processes. Outputs come from a real
/// sequential execution at random linearization points, then some are
/// corrupted, so both verdicts occur.
fn random_history(rng: &mut StdRng) -> Vec<(u32, Event<RegIn, RegOut>)> {
    let procs = rng.random_range(2..=3u32);
    let per_proc = rng.random_range(1..=3usize);
    let vals = ["a", "b", "c"];
    // (process, op, output, call, linearize-at, ret, unknown)
    let mut t = 0u64;
    let mut out = Vec::new();
    let mut truth = Reg::default();
    let mut pending: Vec<Option<(RegIn, u64, bool)>> = vec![None; procs as usize];
    let mut remaining = vec![per_proc; procs as usize];
    let mut dead = vec![false; procs as usize];
    loop {
        let live: Vec<u32> = (0..procs)
            .filter(|p| !dead[*p as usize] && (pending[*p as usize].is_some() || remaining[*p as usize] > 0))
            .collect();
        if live.is_empty() {
            break;
        }
        let p = live[rng.random_range(0..live.len())] as usize;
        t += 1;
        match pending[p].take() {
            None => {
                let op = match rng.random_range(0..4) {
                    0 => RegIn::Put(vals[rng.random_range(0..3)].into()),
                    1 => RegIn::Get,
                    2 => RegIn::Cas(
                        if rng.random_bool(0.3) {
                            None
                        } else {
                            Some(vals[rng.random_range(0..3)].into())
                        },
                        vals[rng.random_range(0..3)].into(),
                    ),
                    _ => RegIn::Append(vals[rng.random_range(0..3)].into()),
                };
                remaining[p] -= 1;
                let unknown = !matches!(op, RegIn::Get) && rng.random_bool(0.15);
                pending[p] = Some((op, t, unknown));
            }
            Some((op, call, unknown)) => {
                if unknown {
                    // Maybe it took effect, maybe not; its process stops.
                    if rng.random_bool(0.5) {
                        truth.invoke(&op);
                    }
                    let output = match op {
                        RegIn::Cas(..) => RegOut::Cas(None),
                        _ => RegOut::Done,
                    };
                    out.push((
                        p as u32,
                        Event {
                            input: op,
                            output,
                            call,
                            ret: u64::MAX,
                        },
                    ));
                    dead[p] = true;
                    continue;
                }
                let mut output = truth.invoke(&op);
                if rng.random_bool(0.2) {
                    output = match output {
                        RegOut::Read(_) => RegOut::Read(if rng.random_bool(0.2) {
                            None
                        } else {
                            Some(vals[rng.random_range(0..3)].into())
                        }),
                        RegOut::Cas(Some(b)) => RegOut::Cas(Some(!b)),
                        o => o,
                    };
                }
                out.push((
                    p as u32,
                    Event {
                        input: op,
                        output,
                        call,
                        ret: t,
                    },
                ));
            }
        }
    }
    out
}

fn stateright_verdict(h: &[(u32, Event<RegIn, RegOut>)]) -> bool {
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, (_, e)) in h.iter().enumerate() {
        events.push((e.call, true, i));
        if e.ret != u64::MAX {
            events.push((e.ret, false, i));
        }
    }
    events.sort();
    let mut t = LinearizabilityTester::new(Reg::default());
    for (_, is_call, i) in events {
        let (p, e) = &h[i];
        if is_call {
            t.on_invoke(*p, e.input.clone()).unwrap();
        } else {
            t.on_return(*p, e.output.clone()).unwrap();
        }
    }
    t.serialized_history().is_some()
}

#[test]
fn agrees_with_stateright_on_random_histories() {
    let seed = std::env::var("SEN_LIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261127u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ok, mut bad) = (0, 0);
    for i in 0..3000 {
        let h = random_history(&mut rng);
        let ours = check(&Register, &h.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), None);
        let theirs = stateright_verdict(&h);
        assert_eq!(
            ours == Verdict::Ok,
            theirs,
            "history #{i} (seed {seed}): ours {ours:?}, stateright {theirs}: {h:#?}"
        );
        if theirs { ok += 1 } else { bad += 1 }
    }
    // Both kinds were exercised.
    assert!(ok > 300 && bad > 300, "ok {ok}, bad {bad}");
}
