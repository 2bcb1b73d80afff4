//! Randomized model test: thousands of random puts, deletes, transactions and compactions,
//! in batches, with reopens in between, checked against a plain map-per-revision model.

mod common;

use std::collections::BTreeMap;

use common::*;
use etcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_api::etcdserverpb::request_op::Request;
use etcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use etcd_api::mvccpb::KeyValue;
use etcd_mvcc::{ApplyBatch, MvccError};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

type State = BTreeMap<Vec<u8>, KeyValue>;

/// The state at every revision; `states[r]` is the state at revision r (r >= 1).
struct Model {
    states: Vec<State>,
    compact: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            states: vec![State::new(), State::new()],
            compact: -1,
        }
    }
    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }
    fn state(&self) -> &State {
        self.states.last().unwrap()
    }
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

fn model_put(state: &mut State, rev: i64, req: &PutRequest) {
    let (create, version) = match state.get(&req.key) {
        Some(kv) => (kv.create_revision, kv.version + 1),
        None => (rev, 1),
    };
    state.insert(
        req.key.clone(),
        KeyValue {
            key: req.key.clone(),
            create_revision: create,
            mod_revision: rev,
            version,
            value: req.value.clone(),
            lease: req.lease,
        },
    );
}

fn model_delete(state: &mut State, req: &DeleteRangeRequest) -> usize {
    let doomed: Vec<_> = state
        .keys()
        .filter(|k| in_range(k, &req.key, &req.range_end))
        .cloned()
        .collect();
    for k in &doomed {
        state.remove(k);
    }
    doomed.len()
}

fn model_compare(state: &State, c: &Compare) -> bool {
    let kv = state.get(&c.key);
    match (CompareTarget::try_from(c.target).unwrap(), &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.is_some_and(|kv| &kv.value == v),
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => {
            let have = kv.map_or(0, |kv| kv.version);
            match CompareResult::try_from(c.result).unwrap() {
                CompareResult::Equal => have == *v,
                CompareResult::Greater => have > *v,
                CompareResult::Less => have < *v,
                CompareResult::NotEqual => have != *v,
            }
        }
        other => panic!("model does not do {other:?}"),
    }
}

const KEYS: u64 = 12;

fn key(rng: &mut Rng) -> Vec<u8> {
    format!("k{:02}", rng.below(KEYS)).into_bytes()
}

fn range_bounds(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let start = key(rng);
    let end = match rng.below(4) {
        0 => vec![],
        1 => vec![0],
        _ => key(rng),
    };
    (start, end)
}

fn random_put(rng: &mut Rng, i: usize) -> PutRequest {
    PutRequest {
        key: key(rng),
        value: format!("v{i}-{}", rng.below(3)).into_bytes(),
        lease: if rng.chance(20) {
            1 + rng.below(3) as i64
        } else {
            0
        },
        ..Default::default()
    }
}

fn random_delete(rng: &mut Rng) -> DeleteRangeRequest {
    let (key, range_end) = range_bounds(rng);
    DeleteRangeRequest {
        key,
        range_end,
        prev_kv: rng.chance(50),
    }
}

fn random_ops(rng: &mut Rng, i: usize) -> Vec<RequestOp> {
    (0..rng.below(4))
        .map(|_| RequestOp {
            request: Some(if rng.chance(60) {
                Request::RequestPut(random_put(rng, i))
            } else {
                Request::RequestDeleteRange(random_delete(rng))
            }),
        })
        .collect()
}

fn random_txn(rng: &mut Rng, i: usize) -> TxnRequest {
    let compare = (0..rng.below(3))
        .map(|_| {
            if rng.chance(50) {
                Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Value as i32,
                    key: key(rng),
                    range_end: vec![],
                    target_union: Some(TargetUnion::Value(
                        format!("v{}-0", rng.below(i as u64 + 1)).into_bytes(),
                    )),
                }
            } else {
                Compare {
                    result: rng.below(4) as i32,
                    target: CompareTarget::Version as i32,
                    key: key(rng),
                    range_end: vec![],
                    target_union: Some(TargetUnion::Version(rng.below(3) as i64)),
                }
            }
        })
        .collect();
    TxnRequest {
        compare,
        success: random_ops(rng, i),
        failure: random_ops(rng, i),
    }
}

/// A transaction of random compares whose branches only read: ranges at revisions from
/// below the compacted one to above the current one, and nested read-only transactions.
fn random_read_only_txn(rng: &mut Rng, m: &Model, depth: u32) -> TxnRequest {
    let mut req = random_txn(rng, m.current() as usize);
    let ops = |rng: &mut Rng| -> Vec<RequestOp> {
        (0..rng.below(4))
            .map(|_| {
                if depth > 0 && rng.chance(20) {
                    return RequestOp {
                        request: Some(Request::RequestTxn(random_read_only_txn(rng, m, depth - 1))),
                    };
                }
                let (key, range_end) = range_bounds(rng);
                let revision = if rng.chance(70) {
                    0
                } else {
                    // From below the compacted revision to one above the current one.
                    (m.compact - 1 + rng.below((m.current() - m.compact + 3) as u64) as i64).max(0)
                };
                RequestOp {
                    request: Some(Request::RequestRange(RangeRequest {
                        key,
                        range_end,
                        revision,
                        limit: if rng.chance(30) {
                            1 + rng.below(3) as i64
                        } else {
                            0
                        },
                        count_only: rng.chance(10),
                        keys_only: rng.chance(10),
                        ..Default::default()
                    })),
                }
            })
            .collect()
    };
    req.success = ops(rng);
    req.failure = ops(rng);
    assert!(etcd_mvcc::txn_reads_only(&req));
    req
}

/// Applies one random op to both; returns the model's expectation checks inline.
fn step(rng: &mut Rng, i: usize, b: &mut ApplyBatch<'_>, m: &mut Model) {
    let rev = m.current() + 1;
    let kind = rng.below(100);
    if kind < 45 {
        let req = random_put(rng, i);
        let resp = b.put(&req, &|_| true).unwrap();
        assert_eq!(resp.header.unwrap().revision, rev);
        let mut next = m.state().clone();
        model_put(&mut next, rev, &req);
        m.states.push(next);
    } else if kind < 65 {
        let req = random_delete(rng);
        let resp = b.delete_range(&req).unwrap();
        let mut next = m.state().clone();
        let n = model_delete(&mut next, &req);
        assert_eq!(resp.deleted, n as i64, "{req:?}");
        if req.prev_kv {
            let want: Vec<_> = m
                .state()
                .values()
                .filter(|kv| in_range(&kv.key, &req.key, &req.range_end))
                .cloned()
                .collect();
            assert_eq!(resp.prev_kvs, want);
        }
        if n > 0 {
            m.states.push(next);
        }
        assert_eq!(resp.header.unwrap().revision, m.current());
    } else if kind < 98 {
        let req = random_txn(rng, i);
        let resp = b.txn(&req, &|_| true).unwrap();
        let succeeded = req.compare.iter().all(|c| model_compare(m.state(), c));
        assert_eq!(resp.succeeded, succeeded, "{req:?}");
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut next = m.state().clone();
        let mut changed = false;
        for op in ops {
            match &op.request {
                Some(Request::RequestPut(p)) => {
                    model_put(&mut next, rev, p);
                    changed = true;
                }
                Some(Request::RequestDeleteRange(d)) => changed |= model_delete(&mut next, d) > 0,
                _ => unreachable!(),
            }
        }
        if changed {
            m.states.push(next);
        }
        assert_eq!(resp.header.unwrap().revision, m.current());
    } else {
        // Compaction, sometimes at an invalid revision.
        let current = m.current();
        // Anywhere from the compacted revision (refused) to one above current (refused).
        let target = m.compact + rng.below((current - m.compact + 2) as u64) as i64;
        match b.compact(target) {
            Ok(()) => {
                assert!(
                    target > m.compact && target <= current,
                    "compact({target}) accepted"
                );
                m.compact = target;
            }
            Err(MvccError::Compacted) => assert!(target <= m.compact),
            Err(MvccError::FutureRev) => assert!(target > current),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(b.current_revision(), m.current());
}

fn check(rng: &mut Rng, s: &etcd_mvcc::Store, m: &Model) {
    assert_eq!(s.current_revision(), m.current());
    assert_eq!(s.compact_revision(), m.compact);
    let lowest = m.compact.max(1);
    for _ in 0..3 {
        let at = lowest + rng.below((m.current() - lowest + 1) as u64) as i64;
        let (key, range_end) = range_bounds(rng);
        let limit = if rng.chance(30) {
            1 + rng.below(4) as i64
        } else {
            0
        };
        let req = RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            revision: at,
            limit,
            ..Default::default()
        };
        let resp = s.range(&req).unwrap();
        let want: Vec<_> = m.states[at as usize]
            .values()
            .filter(|kv| in_range(&kv.key, &key, &range_end))
            .cloned()
            .collect();
        assert_eq!(resp.count, want.len() as i64, "count of {req:?}");
        let shown = if limit > 0 {
            want.len().min(limit as usize)
        } else {
            want.len()
        };
        assert_eq!(resp.kvs, want[..shown], "{req:?}");
        assert_eq!(resp.more, shown < want.len());
        assert_eq!(resp.header.unwrap().revision, m.current());
    }
    // A read-only transaction served as a read answers as the apply batch answers it.
    for _ in 0..2 {
        let req = random_read_only_txn(rng, m, 2);
        let served = s.read_txn(&req);
        let applied = s.apply(|b| b.txn(&req, &|_| true)).unwrap();
        match (served, applied) {
            (Ok(served), Ok(applied)) => assert_eq!(served, applied, "{req:?}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{req:?}"),
            (a, b) => panic!("read {a:?} but apply {b:?} for {req:?}"),
        }
        assert_eq!(
            s.current_revision(),
            m.current(),
            "a read moved the revision"
        );
    }
    // The whole current state.
    let all = s.range(&range_req("\0", "\0")).unwrap();
    assert_eq!(all.kvs, m.state().values().cloned().collect::<Vec<_>>());
    if m.compact > 1 {
        let below = 1 + rng.below((m.compact - 1) as u64) as i64;
        let err = s
            .range(&RangeRequest {
                revision: below,
                ..range_req("\0", "\0")
            })
            .unwrap_err();
        assert!(
            matches!(err, MvccError::Compacted),
            "read at {below} below {}",
            m.compact
        );
    }
}

fn run(seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut t = TestStore::new();
    let mut m = Model::new();
    let mut i = 0;
    let mut entry = 0u64;
    let mut reopens = 0;
    while i < ops {
        let batch = 1 + rng.below(8) as usize;
        entry += 1;
        let s = t.s();
        s.apply(|b| {
            for _ in 0..batch {
                step(&mut rng, i, b, &mut m);
                i += 1;
            }
            b.set_consistent_index(entry, 1);
        })
        .unwrap();
        check(&mut rng, s, &m);
        if rng.chance(2) {
            let index = s.index_clone();
            let hash = s.hash_kv(0).unwrap();
            t.reopen();
            reopens += 1;
            assert_eq!(
                t.s().index_clone(),
                index,
                "index rebuilt at open differs (seed {seed})"
            );
            assert_eq!(t.s().hash_kv(0).unwrap(), hash);
            assert_eq!(t.s().consistent_index(), (entry, 1));
            check(&mut rng, t.s(), &m);
        }
    }
    // The run must have exercised what it claims to.
    eprintln!(
        "seed {seed}: {} revisions, compacted at {}, {reopens} reopens",
        m.current(),
        m.compact
    );
    assert!(m.current() > ops as i64 / 2);
    assert!(m.compact > m.current() / 2);
    assert!(reopens > 5);
}

#[test]
fn random_ops_match_the_model() {
    for seed in [0x9E37_79B9_7F4A_7C15, 1, 0xDEAD_BEEF] {
        run(seed, 3000);
    }
}
