//! Transactions: compares, branch selection, checks before writes, nesting, revisions.

mod common;

use common::*;
use etcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_api::etcdserverpb::request_op::Request;
use etcd_api::etcdserverpb::response_op::Response;
use etcd_api::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use etcd_mvcc::MvccError;

fn when(compare: Vec<Compare>) -> TxnRequest {
    TxnRequest {
        compare,
        success: vec![op_range("x", "")],
        failure: vec![],
    }
}

fn holds(s: &etcd_mvcc::Store, c: Compare) -> bool {
    txn(s, &when(vec![c])).unwrap().succeeded
}

/// a: create 2, mod 4, version 2, value "m", lease 9. b: create 3, mod 3, version 1,
/// value "z", lease 0.
fn setup(s: &etcd_mvcc::Store) {
    try_put(
        s,
        &PutRequest {
            lease: 9,
            ..put_req("a", "a")
        },
        &all_leases,
    )
    .unwrap();
    put(s, "b", "z");
    try_put(
        s,
        &PutRequest {
            lease: 9,
            ..put_req("a", "m")
        },
        &all_leases,
    )
    .unwrap();
}

#[test]
fn every_target_and_result() {
    let t = TestStore::new();
    let s = t.s();
    setup(s);
    use CompareResult::*;
    use CompareTarget as T;
    let value = |v: &str| TargetUnion::Value(v.into());
    let cases: Vec<(CompareTarget, TargetUnion, [bool; 4])> = vec![
        // [Equal, Greater, Less, NotEqual]
        (T::Value, value("m"), [true, false, false, false]),
        (T::Value, value("a"), [false, true, false, true]),
        (T::Value, value("zz"), [false, false, true, true]),
        (
            T::Version,
            TargetUnion::Version(2),
            [true, false, false, false],
        ),
        (
            T::Version,
            TargetUnion::Version(1),
            [false, true, false, true],
        ),
        (
            T::Version,
            TargetUnion::Version(3),
            [false, false, true, true],
        ),
        (
            T::Create,
            TargetUnion::CreateRevision(2),
            [true, false, false, false],
        ),
        (
            T::Create,
            TargetUnion::CreateRevision(1),
            [false, true, false, true],
        ),
        (
            T::Create,
            TargetUnion::CreateRevision(3),
            [false, false, true, true],
        ),
        (
            T::Mod,
            TargetUnion::ModRevision(4),
            [true, false, false, false],
        ),
        (
            T::Mod,
            TargetUnion::ModRevision(3),
            [false, true, false, true],
        ),
        (
            T::Mod,
            TargetUnion::ModRevision(5),
            [false, false, true, true],
        ),
        (T::Lease, TargetUnion::Lease(9), [true, false, false, false]),
        (T::Lease, TargetUnion::Lease(8), [false, true, false, true]),
        (T::Lease, TargetUnion::Lease(10), [false, false, true, true]),
    ];
    for (target, tu, want) in cases {
        for (result, want) in [Equal, Greater, Less, NotEqual].into_iter().zip(want) {
            assert_eq!(
                holds(s, cmp("a", target, result, tu.clone())),
                want,
                "{target:?} {result:?} {tu:?}"
            );
        }
    }
    // Compares take no revision.
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn missing_keys_compare_as_zero_but_value_always_fails() {
    let t = TestStore::new();
    let s = t.s();
    setup(s);
    use CompareResult::*;
    use CompareTarget as T;
    assert!(holds(
        s,
        cmp("nope", T::Version, Equal, TargetUnion::Version(0))
    ));
    assert!(holds(
        s,
        cmp("nope", T::Create, Equal, TargetUnion::CreateRevision(0))
    ));
    assert!(holds(
        s,
        cmp("nope", T::Mod, Less, TargetUnion::ModRevision(1))
    ));
    assert!(holds(
        s,
        cmp("nope", T::Lease, Equal, TargetUnion::Lease(0))
    ));
    assert!(!holds(
        s,
        cmp("nope", T::Value, Equal, TargetUnion::Value(vec![]))
    ));
    assert!(!holds(
        s,
        cmp(
            "nope",
            T::Value,
            NotEqual,
            TargetUnion::Value(b"x".to_vec())
        )
    ));
    // Deleted keys are missing too.
    del(s, "b", "");
    assert!(holds(
        s,
        cmp("b", T::Version, Equal, TargetUnion::Version(0))
    ));
}

#[test]
fn range_compares_need_every_key() {
    let t = TestStore::new();
    let s = t.s();
    setup(s); // a mod 4, b mod 3
    use CompareResult::*;
    use CompareTarget as T;
    assert!(holds(
        s,
        cmp_range("a", "c", T::Mod, Greater, TargetUnion::ModRevision(2))
    ));
    assert!(!holds(
        s,
        cmp_range("a", "c", T::Mod, Greater, TargetUnion::ModRevision(3))
    ));
    assert!(holds(
        s,
        cmp_range("a", "\0", T::Version, Less, TargetUnion::Version(3))
    ));
    assert!(!holds(
        s,
        cmp_range("a", "c", T::Value, Equal, TargetUnion::Value(b"m".to_vec()))
    ));
    assert!(holds(
        s,
        cmp_range(
            "a",
            "c",
            T::Value,
            Greater,
            TargetUnion::Value(b"a".to_vec())
        )
    ));
    // An empty range behaves like a missing key.
    assert!(holds(
        s,
        cmp_range("x", "y", T::Create, Equal, TargetUnion::CreateRevision(0))
    ));
    assert!(!holds(
        s,
        cmp_range("x", "y", T::Value, Equal, TargetUnion::Value(vec![]))
    ));
}

#[test]
fn branches_sub_revisions_and_read_your_writes() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "k", "0"); // 2
    let req = TxnRequest {
        compare: vec![cmp(
            "k",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b"0".to_vec()),
        )],
        success: vec![
            op_range("k", ""),
            op_put("k", "1"),
            op_range("k", ""),
            op_put("k", "2"),
            op_del("k", ""),
            op_put("j", "x"),
            op_range("\0", "\0"),
        ],
        failure: vec![op_put("failed", "1")],
    };
    let (resp, events) = s
        .apply(|b| {
            let r = b.txn(&req, &all_leases).unwrap();
            (r, b.take_events())
        })
        .unwrap();
    assert!(resp.succeeded);
    assert_eq!(rev(&resp.header), 3);
    let r = &resp.responses;
    let range_of = |i: usize| match &r[i].response {
        Some(Response::ResponseRange(rr)) => rr.clone(),
        other => panic!("not a range: {other:?}"),
    };
    // Before any write the view is revision 2; after, revision 3 with the txn's writes.
    assert_eq!(rev(&range_of(0).header), 2);
    assert_eq!(range_of(0).kvs[0].value, b"0");
    assert_eq!(rev(&range_of(2).header), 3);
    let k = &range_of(2).kvs[0];
    assert_eq!(
        (
            k.value.as_slice(),
            k.version,
            k.mod_revision,
            k.create_revision
        ),
        (&b"1"[..], 2, 3, 2)
    );
    assert_eq!(keys(&range_of(6)), ["j"]);
    match &r[1].response {
        Some(Response::ResponsePut(p)) => assert_eq!(rev(&p.header), 3),
        other => panic!("{other:?}"),
    }
    match &r[4].response {
        Some(Response::ResponseDeleteRange(d)) => assert_eq!((d.deleted, rev(&d.header)), (1, 3)),
        other => panic!("{other:?}"),
    }
    // One revision, sub revisions 0..4 in order.
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, 3);
    assert_eq!(events[0].1.len(), 4);
    // k was deleted at the end of the txn, then j created; the same txn re-creating k after
    // the delete would start a new generation.
    assert!(get(s, &range_req("k", "")).kvs.is_empty());
    let req = TxnRequest {
        compare: vec![],
        success: vec![op_put("k", "a"), op_del("k", ""), op_put("k", "b")],
        failure: vec![],
    };
    txn(s, &req).unwrap();
    let kv = get(s, &range_req("k", "")).kvs[0].clone();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (4, 4, 1));
    // Failure branch.
    let req = TxnRequest {
        compare: vec![cmp(
            "k",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b"nope".to_vec()),
        )],
        success: vec![op_put("s", "1")],
        failure: vec![op_put("f", "1")],
    };
    let resp = txn(s, &req).unwrap();
    assert!(!resp.succeeded);
    assert_eq!(rev(&resp.header), 5);
    assert_eq!(keys(&get(s, &range_req("\0", "\0"))), ["f", "j", "k"]);
}

#[test]
fn read_only_txn_takes_no_revision() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1");
    let req = TxnRequest {
        compare: vec![],
        success: vec![op_range("a", "")],
        failure: vec![op_put("x", "y")],
    };
    let resp = txn(s, &req).unwrap();
    assert_eq!(rev(&resp.header), 2);
    // A delete of nothing writes nothing either.
    let req = TxnRequest {
        compare: vec![],
        success: vec![op_del("zz", "")],
        failure: vec![],
    };
    let resp = txn(s, &req).unwrap();
    assert_eq!(rev(&resp.header), 2);
    assert_eq!(s.current_revision(), 2);
    let empty = TxnRequest {
        compare: vec![],
        success: vec![],
        failure: vec![],
    };
    assert_eq!(rev(&txn(s, &empty).unwrap().header), 2);
}

#[test]
fn nested_txns_evaluate_compares_up_front() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1"); // 2
    let inner = TxnRequest {
        // Evaluated before the outer put, so it still sees a = "1".
        compare: vec![cmp(
            "a",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b"1".to_vec()),
        )],
        success: vec![op_put("inner", "yes"), op_range("a", "")],
        failure: vec![op_put("inner", "no")],
    };
    let req = TxnRequest {
        compare: vec![],
        success: vec![op_put("a", "2"), op_txn(inner), op_put("after", "1")],
        failure: vec![],
    };
    let (resp, events) = s
        .apply(|b| {
            let r = b.txn(&req, &all_leases).unwrap();
            (r, b.take_events())
        })
        .unwrap();
    assert!(resp.succeeded);
    assert_eq!(rev(&resp.header), 3);
    let nested = match &resp.responses[1].response {
        Some(Response::ResponseTxn(t)) => t.clone(),
        other => panic!("{other:?}"),
    };
    assert!(nested.succeeded);
    assert_eq!(
        nested.header.unwrap().revision,
        0,
        "etcd leaves nested txn headers empty"
    );
    match &nested.responses[1].response {
        Some(Response::ResponseRange(r)) => {
            assert_eq!(r.kvs[0].value, b"2", "ops do see earlier writes")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get(s, &range_req("inner", "")).kvs[0].value, b"yes");
    assert_eq!(events[0].1.len(), 3);
    let subs: Vec<i64> = get(s, &range_req("\0", "\0"))
        .kvs
        .iter()
        .map(|kv| kv.mod_revision)
        .collect();
    assert_eq!(subs, [3, 3, 3]);
}

#[test]
fn checks_run_before_any_write() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "exists", "1"); // 2
    let hash_before = s.hash_kv(0).unwrap();
    let bad_ignore = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            ignore_value: true,
            ..put_req("missing", "")
        })),
    };
    let bad_lease = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            lease: 77,
            ..put_req("x", "y")
        })),
    };
    let good_ignore = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            ignore_value: true,
            ..put_req("exists", "")
        })),
    };
    let future_range = RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            revision: 3,
            ..range_req("a", "")
        })),
    };
    type Case = (TxnRequest, fn(&MvccError) -> bool);
    let cases: Vec<Case> = vec![
        (
            TxnRequest {
                compare: vec![],
                success: vec![op_put("a", "1"), bad_ignore.clone()],
                failure: vec![],
            },
            |e| matches!(e, MvccError::KeyNotFound),
        ),
        (
            TxnRequest {
                compare: vec![],
                success: vec![op_put("a", "1"), bad_lease.clone()],
                failure: vec![],
            },
            |e| matches!(e, MvccError::LeaseNotFound),
        ),
        // Nested, on the branch taken.
        (
            TxnRequest {
                compare: vec![],
                success: vec![
                    op_put("a", "1"),
                    op_txn(TxnRequest {
                        compare: vec![],
                        success: vec![good_ignore.clone(), bad_lease.clone()],
                        failure: vec![],
                    }),
                ],
                failure: vec![],
            },
            |e| matches!(e, MvccError::LeaseNotFound),
        ),
        // Puts are checked before ranges.
        (
            TxnRequest {
                compare: vec![],
                success: vec![future_range.clone(), bad_ignore.clone()],
                failure: vec![],
            },
            |e| matches!(e, MvccError::KeyNotFound),
        ),
        (
            TxnRequest {
                compare: vec![],
                success: vec![op_put("a", "1"), future_range.clone()],
                failure: vec![],
            },
            |e| matches!(e, MvccError::FutureRev),
        ),
    ];
    for (req, is_want) in cases {
        let err = s
            .apply(|b| b.txn(&req, &|id| id != 77))
            .unwrap()
            .unwrap_err();
        assert!(is_want(&err), "{req:?}: {err}");
        assert_eq!(s.current_revision(), 2);
        assert_eq!(s.hash_kv(0).unwrap(), hash_before);
    }
    // Bad ops on the branch not taken do not matter.
    let req = TxnRequest {
        compare: vec![],
        success: vec![op_put("a", "1")],
        failure: vec![bad_ignore, bad_lease],
    };
    assert!(
        s.apply(|b| b.txn(&req, &|id| id != 77))
            .unwrap()
            .unwrap()
            .succeeded
    );
}

#[test]
fn an_op_failing_mid_txn_undoes_the_whole_txn() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "k", "v"); // 2
    // The check passes (k exists before the txn), but the delete makes the ignore_value put
    // fail during execution. etcd panics here; we undo the transaction.
    let req = TxnRequest {
        compare: vec![],
        success: vec![
            op_put("new", "1"),
            op_del("k", ""),
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    ignore_value: true,
                    ..put_req("k", "")
                })),
            },
        ],
        failure: vec![],
    };
    let (err, events, rev_inside) = s
        .apply(|b| {
            b.put(&put_req("before", "1"), &no_leases).unwrap(); // 3, kept
            let err = b.txn(&req, &all_leases).unwrap_err();
            (err, b.take_events(), b.current_revision())
        })
        .unwrap();
    assert!(matches!(err, MvccError::KeyNotFound));
    assert_eq!(rev_inside, 3);
    assert_eq!(events.len(), 1, "only the put before the txn");
    assert_eq!(s.current_revision(), 3);
    assert_eq!(keys(&get(s, &range_req("\0", "\0"))), ["before", "k"]);
    assert!(
        get(
            s,
            &RangeRequest {
                revision: 3,
                ..range_req("new", "")
            }
        )
        .kvs
        .is_empty()
    );
    // Undoing left index and backend as if the txn never ran.
    put(s, "k", "v2"); // 4: must continue the same generation
    let kv = get(s, &range_req("k", "")).kvs[0].clone();
    assert_eq!((kv.create_revision, kv.version, kv.mod_revision), (2, 2, 4));
    let mut t2 = TestStore::new();
    put(t2.s(), "k", "v");
    put(t2.s(), "before", "1");
    put(t2.s(), "k", "v2");
    assert_eq!(t2.s().hash_kv(0).unwrap().hash, s.hash_kv(0).unwrap().hash);
    assert_eq!(t2.s().index_clone(), s.index_clone());
    t2.reopen();
    assert_eq!(t2.s().index_clone(), s.index_clone());
}

#[test]
fn txn_put_response_fields() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1");
    let req = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    prev_kv: true,
                    ..put_req("a", "2")
                })),
            },
            RequestOp { request: None },
        ],
        failure: vec![],
    };
    let resp: TxnResponse = txn(s, &req).unwrap();
    match &resp.responses[0].response {
        Some(Response::ResponsePut(p)) => assert_eq!(p.prev_kv.as_ref().unwrap().value, b"1"),
        other => panic!("{other:?}"),
    }
    assert!(resp.responses[1].response.is_none());
}

#[test]
fn a_txn_that_writes_is_refused_as_a_read() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1");
    let nested_put = TxnRequest {
        compare: vec![],
        success: vec![op_range("a", "")],
        failure: vec![op_txn(TxnRequest {
            compare: vec![],
            success: vec![op_put("x", "y")],
            failure: vec![],
        })],
    };
    assert!(!etcd_mvcc::txn_reads_only(&nested_put));
    assert!(matches!(
        s.read_txn(&nested_put),
        Err(MvccError::NotReadOnly)
    ));
    // An op without a request is not a read either (etcd sends such a txn through Raft).
    let empty_op = TxnRequest {
        compare: vec![],
        success: vec![RequestOp { request: None }],
        failure: vec![],
    };
    assert!(matches!(s.read_txn(&empty_op), Err(MvccError::NotReadOnly)));
    assert_eq!(s.current_revision(), 2);
    assert_eq!(keys(&get(s, &range_req("x", ""))), Vec::<String>::new());
}
