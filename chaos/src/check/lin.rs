//! A linearizability checker: the Wing–Gong search with Lowe's memoization,
//! as in porcupine (Athalye), checked per key (P-compositionality: a history
//! is linearizable iff each key's sub-history is).
//!
//! Operations are intervals `[call, ret]`; an operation whose outcome is
//! unknown has `ret = u64::MAX` (it may take effect at any point after its
//! call, or never — "never" is the same as "at the very end", where no later
//! operation can observe it). The search linearizes, in order, an operation
//! whose call is "minimal" (no pending return precedes it), if the model
//! accepts it from the current state; when it reaches a return whose
//! operation is not yet linearized, it backtracks. `(linearized set, state)`
//! pairs already explored are cached, which makes the search practical.
//!
//! Written here (not a dependency) so every step is ours to explain; it is
//! cross-checked against `stateright`'s independent tester in the tests.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::Instant;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;
    fn init(&self) -> Self::State;
    /// The state after applying `input` that returned `output`, or `None`
    /// if that output is impossible from `state`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: &Self::Output) -> Option<Self::State>;
}

/// One operation of a history.
#[derive(Debug, Clone)]
pub struct Event<I, O> {
    pub input: I,
    pub output: O,
    pub call: u64,
    /// `u64::MAX`: unknown outcome.
    pub ret: u64,
}

/// The verdict for one history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Not linearizable. `prefix` is the longest sequence of operations
    /// (indexes into the input) the search could linearize; `stuck` is the
    /// operation that could not be placed after it.
    Illegal {
        prefix: Vec<usize>,
        stuck: usize,
    },
    /// The search ran out of time.
    Unknown,
}

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return entry.
    partner: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Check one history (one key) against `model`, giving up at `deadline`.
pub fn check<M: Model>(model: &M, events: &[Event<M::Input, M::Output>], deadline: Option<Instant>) -> Verdict {
    let n = events.len();
    if n == 0 {
        return Verdict::Ok;
    }
    // Entries sorted by time; at equal times calls come first (the
    // operations overlap), so the checker is never stricter than real time.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in events.iter().enumerate() {
        order.push((e.call, true, i));
        order.push((e.ret.max(e.call), false, i));
    }
    order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));

    // Doubly linked list over an arena; index 0 is the head sentinel.
    let mut entries: Vec<Entry> = Vec::with_capacity(2 * n + 1);
    entries.push(Entry {
        op: NIL,
        is_call: false,
        partner: NIL,
        prev: NIL,
        next: NIL,
    });
    let mut ret_pos = vec![NIL; n];
    let mut call_pos = vec![NIL; n];
    for (k, &(_, is_call, op)) in order.iter().enumerate() {
        let idx = k + 1;
        entries.push(Entry {
            op,
            is_call,
            partner: NIL,
            prev: idx - 1,
            next: if k + 1 < order.len() { idx + 1 } else { NIL },
        });
        if is_call {
            call_pos[op] = idx;
        } else {
            ret_pos[op] = idx;
        }
    }
    entries[0].next = 1;
    for op in 0..n {
        entries[call_pos[op]].partner = ret_pos[op];
    }

    let lift = |entries: &mut Vec<Entry>, call: usize| {
        let ret = entries[call].partner;
        for e in [call, ret] {
            let (p, nx) = (entries[e].prev, entries[e].next);
            entries[p].next = nx;
            if nx != NIL {
                entries[nx].prev = p;
            }
        }
    };
    let unlift = |entries: &mut Vec<Entry>, call: usize| {
        let ret = entries[call].partner;
        for e in [ret, call] {
            let (p, nx) = (entries[e].prev, entries[e].next);
            entries[p].next = e;
            if nx != NIL {
                entries[nx].prev = e;
            }
        }
    };

    let mut state = model.init();
    let mut linearized = Bits::new(n);
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    let mut calls: Vec<(usize, M::State)> = Vec::new();
    let mut best: (Vec<usize>, usize) = (Vec::new(), 0);
    let mut entry = entries[0].next;
    let mut steps = 0u64;
    while entries[0].next != NIL {
        steps += 1;
        if steps.is_multiple_of(4096)
            && let Some(d) = deadline
            && Instant::now() > d
        {
            return Verdict::Unknown;
        }
        let e = entries[entry];
        if e.is_call {
            if let Some(next_state) = model.step(&state, &events[e.op].input, &events[e.op].output) {
                let mut next_lin = linearized.clone();
                next_lin.set(e.op);
                if cache.insert((next_lin.clone(), next_state.clone())) {
                    calls.push((entry, std::mem::replace(&mut state, next_state)));
                    linearized = next_lin;
                    lift(&mut entries, entry);
                    entry = entries[0].next;
                    continue;
                }
            }
            entry = e.next;
        } else {
            // The earliest pending return: its operation must already have
            // been linearized on this path. Backtrack.
            if calls.len() >= best.0.len() {
                best = (calls.iter().map(|(c, _)| entries[*c].op).collect(), e.op);
            }
            let Some((call, prev_state)) = calls.pop() else {
                return Verdict::Illegal {
                    prefix: best.0,
                    stuck: best.1,
                };
            };
            state = prev_state;
            linearized.clear(entries[call].op);
            unlift(&mut entries, call);
            entry = entries[call].next;
        }
    }
    Verdict::Ok
}

/// The register model of Sen's chaos workload: a key's value (`None` =
/// absent), written by put, compare-and-set and append.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegIn {
    Put(String),
    Get,
    /// If the value equals `expect` (None = absent), set it to the second.
    Cas(Option<String>, String),
    Append(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOut {
    /// A write's acknowledgement, or an unknown outcome.
    Done,
    /// A read's result.
    Read(Option<String>),
    /// A cas: `Some(succeeded)`, or `None` when unknown.
    Cas(Option<bool>),
}

impl Model for Register {
    type State = Option<String>;
    type Input = RegIn;
    type Output = RegOut;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, input: &RegIn, output: &RegOut) -> Option<Self::State> {
        match (input, output) {
            (RegIn::Put(v), RegOut::Done) => Some(Some(v.clone())),
            (RegIn::Get, RegOut::Read(r)) => (r == state).then(|| state.clone()),
            (RegIn::Cas(expect, new), RegOut::Cas(res)) => {
                let holds = state == expect;
                match res {
                    Some(true) if holds => Some(Some(new.clone())),
                    Some(false) if !holds => Some(state.clone()),
                    None => Some(if holds { Some(new.clone()) } else { state.clone() }),
                    _ => None,
                }
            }
            (RegIn::Append(t), RegOut::Done) => {
                let mut v = state.clone().unwrap_or_default();
                v.push_str(t);
                Some(Some(v))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
