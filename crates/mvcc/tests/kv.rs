//! Put / DeleteRange / Range semantics against etcd's.

mod common;

use common::*;
use etcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use etcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use etcd_api::mvccpb::event::EventType;
use etcd_mvcc::MvccError;

#[test]
fn revisions_start_at_one_and_bump_once_per_write() {
    let t = TestStore::new();
    let s = t.s();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(rev(&get(s, &range_req("a", "")).header), 1);
    assert_eq!(rev(&put(s, "a", "1").header), 2);
    assert_eq!(rev(&put(s, "b", "1").header), 3);
    assert_eq!(rev(&put(s, "a", "2").header), 4);
    // Deleting nothing takes no revision; its header is the current revision.
    let d = del(s, "zzz", "");
    assert_eq!((d.deleted, rev(&d.header)), (0, 4));
    assert_eq!(s.current_revision(), 4);
    // Deleting two keys takes one revision, with sub revisions 0 and 1.
    let d = del(s, "a", "c");
    assert_eq!((d.deleted, rev(&d.header)), (2, 5));
    assert_eq!(s.current_revision(), 5);
    assert_eq!(rev(&get(s, &range_req("a", "")).header), 5);
}

#[test]
fn create_mod_version_across_generations() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "k", "v1"); // 2
    put(s, "k", "v2"); // 3
    del(s, "k", ""); // 4
    put(s, "k", "v3"); // 5
    put(s, "k", "v4"); // 6
    let at = |r: i64| {
        let resp = get(
            s,
            &RangeRequest {
                revision: r,
                ..range_req("k", "")
            },
        );
        resp.kvs.first().map(|kv| {
            (
                String::from_utf8(kv.value.clone()).unwrap(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        })
    };
    assert_eq!(at(1), None);
    assert_eq!(at(2), Some(("v1".into(), 2, 2, 1)));
    assert_eq!(at(3), Some(("v2".into(), 2, 3, 2)));
    assert_eq!(at(4), None);
    assert_eq!(at(5), Some(("v3".into(), 5, 5, 1)));
    assert_eq!(at(6), Some(("v4".into(), 5, 6, 2)));
    assert_eq!(at(0), at(6));
}

#[test]
fn future_revision_is_refused() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1");
    let err = s
        .range(&RangeRequest {
            revision: 3,
            ..range_req("a", "")
        })
        .unwrap_err();
    assert!(matches!(err, MvccError::FutureRev), "{err}");
    assert_eq!(
        err.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    // Negative means current.
    assert_eq!(
        get(
            s,
            &RangeRequest {
                revision: -1,
                ..range_req("a", "")
            }
        )
        .kvs
        .len(),
        1
    );
}

fn fill(s: &etcd_mvcc::Store) {
    for k in ["a", "ab", "abc", "b", "ba", "c"] {
        put(s, k, &format!("v-{k}"));
    }
}

#[test]
fn key_prefix_and_from_key_ranges() {
    let t = TestStore::new();
    let s = t.s();
    fill(s);
    assert_eq!(keys(&get(s, &range_req("ab", ""))), ["ab"]);
    assert_eq!(keys(&get(s, &range_req("a", "b"))), ["a", "ab", "abc"]);
    assert_eq!(keys(&get(s, &range_req("b", "\0"))), ["b", "ba", "c"]);
    assert_eq!(
        keys(&get(s, &range_req("\0", "\0"))),
        ["a", "ab", "abc", "b", "ba", "c"]
    );
    assert_eq!(keys(&get(s, &range_req("ab", "ab"))), Vec::<String>::new());
    assert_eq!(keys(&get(s, &range_req("c", "a"))), Vec::<String>::new());
    assert_eq!(get(s, &range_req("zz", "")).count, 0);
}

#[test]
fn limit_more_and_count() {
    let t = TestStore::new();
    let s = t.s();
    fill(s);
    let r = get(
        s,
        &RangeRequest {
            limit: 2,
            ..range_req("a", "\0")
        },
    );
    assert_eq!(keys(&r), ["a", "ab"]);
    assert!(r.more);
    assert_eq!(r.count, 6);
    let r = get(
        s,
        &RangeRequest {
            limit: 6,
            ..range_req("a", "\0")
        },
    );
    assert_eq!(r.kvs.len(), 6);
    assert!(!r.more);
    let r = get(
        s,
        &RangeRequest {
            limit: 0,
            ..range_req("a", "\0")
        },
    );
    assert_eq!((r.kvs.len(), r.more, r.count), (6, false, 6));
    let r = get(
        s,
        &RangeRequest {
            limit: -3,
            ..range_req("a", "\0")
        },
    );
    assert_eq!((r.kvs.len(), r.more), (6, false));
}

#[test]
fn keys_only_and_count_only() {
    let t = TestStore::new();
    let s = t.s();
    fill(s);
    let r = get(
        s,
        &RangeRequest {
            keys_only: true,
            ..range_req("a", "b")
        },
    );
    assert_eq!(keys(&r), ["a", "ab", "abc"]);
    assert!(
        r.kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version == 1 && kv.mod_revision > 0)
    );
    let r = get(
        s,
        &RangeRequest {
            count_only: true,
            limit: 1,
            ..range_req("a", "b")
        },
    );
    assert!(r.kvs.is_empty());
    assert_eq!(r.count, 3);
    assert!(!r.more, "etcd reports more=false with count_only");
}

/// Thousands of keys written out of key order (so the backend's revision order is not the
/// key order), some overwritten: a keys-only list of all of them (read in revision order past
/// 1,024 records) and a list with values (read in key order) give the same keys in key
/// order, the first without values; a keys-only list sorted by value is sorted by the values
/// it does not show.
#[test]
fn many_records_come_back_in_key_order_with_or_without_values() {
    let t = TestStore::new();
    let s = t.s();
    let n = 3000usize;
    // Key i is written at position (i * 7) % n: a permutation, far from key order.
    let mut expected = vec![String::new(); n];
    for step in 0..n {
        let i = (step * 7) % n;
        let value = format!("{:05}", (i * 13) % n);
        put(s, &format!("k{i:05}"), &value);
        expected[i] = value;
    }
    for i in (0..n).step_by(5) {
        let value = format!("{:05}", (i * 13 + 1) % n);
        put(s, &format!("k{i:05}"), &value);
        expected[i] = value;
    }
    let keys_in_order: Vec<String> = (0..n).map(|i| format!("k{i:05}")).collect();

    let with_values = get(s, &range_req("k", "l"));
    assert_eq!(keys(&with_values), keys_in_order);
    let values: Vec<String> = with_values
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.value.clone()).unwrap())
        .collect();
    assert_eq!(values, expected);

    let keys_only = get(
        s,
        &RangeRequest {
            keys_only: true,
            ..range_req("k", "l")
        },
    );
    assert_eq!(keys(&keys_only), keys_in_order);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    let fields = |r: &etcd_api::etcdserverpb::RangeResponse| -> Vec<(i64, i64, i64)> {
        r.kvs
            .iter()
            .map(|kv| (kv.create_revision, kv.mod_revision, kv.version))
            .collect()
    };
    assert_eq!(fields(&keys_only), fields(&with_values));

    let by_value = get(
        s,
        &RangeRequest {
            keys_only: true,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Value as i32,
            ..range_req("k", "l")
        },
    );
    assert!(by_value.kvs.iter().all(|kv| kv.value.is_empty()));
    let shown_values: Vec<String> = keys(&by_value)
        .into_iter()
        .map(|k| expected[k[1..].parse::<usize>().unwrap()].clone())
        .collect();
    let mut sorted_values: Vec<String> = expected.clone();
    sorted_values.sort_by(|a, b| b.cmp(a));
    assert_eq!(shown_values, sorted_values, "sorted by the hidden values");
}

/// Keys with distinct orders per target: versions, create and mod revisions and values all
/// disagree with key order.
fn sortable(s: &etcd_mvcc::Store) {
    put(s, "c", "1"); // create 2
    put(s, "a", "3"); // create 3
    put(s, "b", "2"); // create 4
    put(s, "c", "1"); // c version 2, mod 5
    put(s, "c", "1"); // c version 3, mod 6
    put(s, "b", "2"); // b version 2, mod 7
}

fn sorted(
    s: &etcd_mvcc::Store,
    order: SortOrder,
    target: SortTarget,
    limit: i64,
) -> (Vec<String>, bool) {
    let r = get(
        s,
        &RangeRequest {
            sort_order: order as i32,
            sort_target: target as i32,
            limit,
            ..range_req("a", "\0")
        },
    );
    assert_eq!(r.count, 3);
    (keys(&r), r.more)
}

#[test]
fn every_sort_order_and_target() {
    let t = TestStore::new();
    let s = t.s();
    sortable(s);
    use SortOrder::*;
    use SortTarget::*;
    let cases: &[(SortOrder, SortTarget, [&str; 3])] = &[
        (None, Key, ["a", "b", "c"]),
        (Ascend, Key, ["a", "b", "c"]),
        (Descend, Key, ["c", "b", "a"]),
        // versions: a=1, b=2, c=3
        (Ascend, Version, ["a", "b", "c"]),
        (Descend, Version, ["c", "b", "a"]),
        (None, Version, ["a", "b", "c"]),
        // creates: c=2, a=3, b=4
        (Ascend, Create, ["c", "a", "b"]),
        (Descend, Create, ["b", "a", "c"]),
        (None, Create, ["c", "a", "b"]),
        // mods: a=3, c=6, b=7
        (Ascend, Mod, ["a", "c", "b"]),
        (Descend, Mod, ["b", "c", "a"]),
        (None, Mod, ["a", "c", "b"]),
        // values: c=1, b=2, a=3
        (Ascend, Value, ["c", "b", "a"]),
        (Descend, Value, ["a", "b", "c"]),
        (None, Value, ["c", "b", "a"]),
    ];
    for (order, target, want) in cases {
        assert_eq!(
            sorted(s, *order, *target, 0).0,
            want,
            "{order:?} {target:?}"
        );
    }
    // An explicit order fetches everything before limiting.
    assert_eq!(sorted(s, Descend, Create, 1), (vec!["b".to_string()], true));
    assert_eq!(
        sorted(s, Ascend, Value, 2),
        (vec!["c".to_string(), "b".to_string()], true)
    );
    // etcd quirk: order NONE pushes the limit down in key order first (a, b fetched as
    // limit+1), then sorts those by the target and truncates.
    assert_eq!(sorted(s, None, Create, 1), (vec!["a".to_string()], true));
    assert_eq!(sorted(s, None, Value, 1), (vec!["b".to_string()], true));
}

#[test]
fn sort_ties_keep_key_order() {
    let t = TestStore::new();
    let s = t.s();
    for k in ["d", "b", "a", "c"] {
        put(s, k, "same");
    }
    let (asc, _) = sorted_all(s, SortOrder::Ascend, SortTarget::Value);
    let (desc, _) = sorted_all(s, SortOrder::Descend, SortTarget::Value);
    assert_eq!(asc, ["a", "b", "c", "d"]);
    assert_eq!(desc, ["a", "b", "c", "d"]);
}

fn sorted_all(s: &etcd_mvcc::Store, order: SortOrder, target: SortTarget) -> (Vec<String>, bool) {
    let r = get(
        s,
        &RangeRequest {
            sort_order: order as i32,
            sort_target: target as i32,
            ..range_req("\0", "\0")
        },
    );
    (keys(&r), r.more)
}

#[test]
fn min_max_filters_do_not_change_count() {
    let t = TestStore::new();
    let s = t.s();
    sortable(s); // mods: a=3, c=6, b=7; creates: c=2, a=3, b=4
    let q = |f: &dyn Fn(&mut RangeRequest)| {
        let mut req = range_req("a", "\0");
        f(&mut req);
        let r = get(s, &req);
        (keys(&r), r.count, r.more)
    };
    assert_eq!(
        q(&|r| r.min_mod_revision = 6),
        (vec!["b".into(), "c".into()], 3, false)
    );
    assert_eq!(
        q(&|r| r.max_mod_revision = 6),
        (vec!["a".into(), "c".into()], 3, false)
    );
    assert_eq!(
        q(&|r| r.min_create_revision = 3),
        (vec!["a".into(), "b".into()], 3, false)
    );
    assert_eq!(
        q(&|r| r.max_create_revision = 3),
        (vec!["a".into(), "c".into()], 3, false)
    );
    assert_eq!(
        q(&|r| {
            r.min_mod_revision = 4;
            r.max_create_revision = 3;
        }),
        (vec!["c".into()], 3, false)
    );
    // Filters fetch everything, then limit applies to what survived.
    assert_eq!(
        q(&|r| {
            r.min_mod_revision = 6;
            r.limit = 1;
        }),
        (vec!["b".into()], 3, true)
    );
}

#[test]
fn put_prev_kv_and_events() {
    let t = TestStore::new();
    let s = t.s();
    let req = PutRequest {
        prev_kv: true,
        ..put_req("k", "v1")
    };
    let (resp, events) = s
        .apply(|b| {
            let r = b.put(&req, &no_leases).unwrap();
            (r, b.take_events())
        })
        .unwrap();
    assert!(resp.prev_kv.is_none());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, 2);
    assert_eq!(events[0].1[0].r#type, EventType::Put as i32);
    assert!(events[0].1[0].prev_kv.is_none());

    let req = PutRequest {
        prev_kv: true,
        ..put_req("k", "v2")
    };
    let (resp, events) = s
        .apply(|b| {
            let r = b.put(&req, &no_leases).unwrap();
            (r, b.take_events())
        })
        .unwrap();
    let prev = resp.prev_kv.unwrap();
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision, prev.version),
        (&b"v1"[..], 2, 1)
    );
    let ev = &events[0].1[0];
    assert_eq!(ev.kv.as_ref().unwrap().value, b"v2");
    assert_eq!(ev.prev_kv.as_ref().unwrap().value, b"v1");
}

#[test]
fn ignore_value_and_ignore_lease() {
    let t = TestStore::new();
    let s = t.s();
    // On a missing key both fail before writing anything.
    for req in [
        PutRequest {
            ignore_value: true,
            ..put_req("k", "")
        },
        PutRequest {
            ignore_lease: true,
            ..put_req("k", "x")
        },
    ] {
        let err = try_put(s, &req, &all_leases).unwrap_err();
        assert!(matches!(err, MvccError::KeyNotFound), "{err}");
        assert_eq!(err.to_string(), "etcdserver: key not found");
        assert_eq!(s.current_revision(), 1);
    }
    try_put(
        s,
        &PutRequest {
            lease: 7,
            ..put_req("k", "v1")
        },
        &all_leases,
    )
    .unwrap();
    // ignore_value keeps the value, takes the new lease.
    try_put(
        s,
        &PutRequest {
            ignore_value: true,
            lease: 8,
            ..put_req("k", "")
        },
        &all_leases,
    )
    .unwrap();
    let kv = get(s, &range_req("k", "")).kvs[0].clone();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v1"[..], 8, 2)
    );
    // ignore_lease keeps the lease, takes the new value.
    try_put(
        s,
        &PutRequest {
            ignore_lease: true,
            ..put_req("k", "v2")
        },
        &no_leases,
    )
    .unwrap();
    let kv = get(s, &range_req("k", "")).kvs[0].clone();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v2"[..], 8, 3)
    );
}

#[test]
fn unknown_lease_is_refused_before_writing() {
    let t = TestStore::new();
    let s = t.s();
    let err = try_put(
        s,
        &PutRequest {
            lease: 5,
            ..put_req("k", "v")
        },
        &|id| id == 6,
    )
    .unwrap_err();
    assert!(matches!(err, MvccError::LeaseNotFound));
    assert_eq!(err.to_string(), "etcdserver: requested lease not found");
    assert_eq!(s.current_revision(), 1);
    assert!(get(s, &range_req("k", "")).kvs.is_empty());
    try_put(
        s,
        &PutRequest {
            lease: 6,
            ..put_req("k", "v")
        },
        &|id| id == 6,
    )
    .unwrap();
    assert_eq!(get(s, &range_req("k", "")).kvs[0].lease, 6);
}

#[test]
fn delete_range_prev_kv_and_tombstone_events() {
    let t = TestStore::new();
    let s = t.s();
    fill(s); // revisions 2..=7
    let req = DeleteRangeRequest {
        prev_kv: true,
        ..del_req("ab", "b\0")
    };
    let (resp, events) = s
        .apply(|b| {
            let r = b.delete_range(&req).unwrap();
            (r, b.take_events())
        })
        .unwrap();
    assert_eq!(resp.deleted, 3);
    assert_eq!(rev(&resp.header), 8);
    let prev: Vec<_> = resp
        .prev_kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect();
    assert_eq!(prev, ["ab", "abc", "b"]);
    assert_eq!(events.len(), 1);
    let (main, evs) = &events[0];
    assert_eq!(*main, 8);
    assert_eq!(evs.len(), 3);
    for ev in evs {
        assert_eq!(ev.r#type, EventType::Delete as i32);
        let kv = ev.kv.as_ref().unwrap();
        assert_eq!(kv.mod_revision, 8);
        assert!(kv.value.is_empty());
        assert_eq!(ev.prev_kv.as_ref().unwrap().key, kv.key);
    }
    assert_eq!(keys(&get(s, &range_req("\0", "\0"))), ["a", "ba", "c"]);
    // Historic read still sees the deleted keys.
    let old = get(
        s,
        &RangeRequest {
            revision: 7,
            ..range_req("\0", "\0")
        },
    );
    assert_eq!(old.count, 6);
    // Delete everything with key "\0" and range_end "\0".
    assert_eq!(del(s, "\0", "\0").deleted, 3);
    assert_eq!(get(s, &range_req("\0", "\0")).count, 0);
    // Re-creating a deleted key starts a new generation.
    put(s, "ab", "again");
    let kv = get(s, &range_req("ab", "")).kvs[0].clone();
    assert_eq!((kv.create_revision, kv.version), (10, 1));
}

#[test]
fn batch_reads_see_their_own_writes_and_readers_do_not() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "old");
    s.apply(|b| {
        b.put(&put_req("a", "new"), &no_leases).unwrap();
        b.put(&put_req("b", "x"), &no_leases).unwrap();
        let inside = b.range(&range_req("\0", "\0")).unwrap();
        assert_eq!(
            kv_pairs(&inside),
            [("a".into(), "new".into()), ("b".into(), "x".into())]
        );
        assert_eq!(rev(&inside.header), 4);
        assert_eq!(b.current_revision(), 4);
        // Not published yet.
        let outside = s.range(&range_req("\0", "\0")).unwrap();
        assert_eq!(kv_pairs(&outside), [("a".into(), "old".into())]);
        assert_eq!(rev(&outside.header), 2);
    })
    .unwrap();
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn events_are_grouped_per_revision() {
    let t = TestStore::new();
    let s = t.s();
    let events = s
        .apply(|b| {
            b.put(&put_req("a", "1"), &no_leases).unwrap();
            b.delete_range(&del_req("nothing", "")).unwrap();
            b.put(&put_req("b", "1"), &no_leases).unwrap();
            b.delete_range(&del_req("a", "c")).unwrap();
            b.take_events()
        })
        .unwrap();
    let shape: Vec<(i64, Vec<i32>)> = events
        .iter()
        .map(|(r, evs)| (*r, evs.iter().map(|e| e.r#type).collect()))
        .collect();
    assert_eq!(shape, [(2, vec![0]), (3, vec![0]), (4, vec![1, 1])]);
}

#[test]
fn history_reads_back_events() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1"); // 2
    put(s, "b", "1"); // 3
    del(s, "a", "c"); // 4
    put(s, "a", "2"); // 5
    let all = s.events(2, 0, 100).unwrap();
    type Shape = Vec<(i64, Vec<(i32, String, i64)>)>;
    let shape: Shape = all
        .iter()
        .map(|(r, evs)| {
            (
                *r,
                evs.iter()
                    .map(|e| {
                        let kv = e.kv.as_ref().unwrap();
                        (
                            e.r#type,
                            String::from_utf8(kv.key.clone()).unwrap(),
                            kv.mod_revision,
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (2, vec![(0, "a".into(), 2)]),
            (3, vec![(0, "b".into(), 3)]),
            (4, vec![(1, "a".into(), 4), (1, "b".into(), 4)]),
            (5, vec![(0, "a".into(), 5)]),
        ]
    );
    // Limits stop at revision boundaries, never inside one.
    let part = s.events(3, 0, 2).unwrap();
    assert_eq!(part.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(s.events(4, 4, 1).unwrap().len(), 1);
    assert!(s.events(6, 0, 10).unwrap().is_empty());
    s.apply(|b| b.compact(4)).unwrap().unwrap();
    assert!(matches!(s.events(3, 0, 10), Err(MvccError::Compacted)));
    assert_eq!(s.events(4, 0, 10).unwrap().last().unwrap().0, 5);
}

#[test]
fn metadata_entries() {
    let mut t = TestStore::new();
    t.s()
        .apply(|b| {
            b.meta_put("members/1", b"one");
            b.meta_put("members/2", b"two");
            b.meta_put("alarm", b"none");
            assert_eq!(
                b.meta_get("members/2").unwrap().as_deref(),
                Some(&b"two"[..])
            );
            b.meta_delete("members/2");
            b.meta_put("members/3", b"three");
            assert_eq!(b.meta_get("members/2").unwrap(), None);
            let names: Vec<String> = b
                .meta_range("members/")
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(names, ["members/1", "members/3"]);
        })
        .unwrap();
    // Deletes and puts of entries already on disk, merged in batch reads.
    t.s()
        .apply(|b| {
            b.meta_delete("members/1");
            b.meta_put("members/0", b"zero");
            b.meta_put("membersX", b"not under the prefix");
            let names: Vec<String> = b
                .meta_range("members/")
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(names, ["members/0", "members/3"]);
            b.meta_put("members/1", b"one again");
        })
        .unwrap();
    t.reopen();
    let s = t.s();
    assert_eq!(s.meta_get("alarm").unwrap().as_deref(), Some(&b"none"[..]));
    assert_eq!(s.meta_get("members/2").unwrap(), None);
    let members: Vec<String> = s
        .meta_range("members/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(members, ["members/0", "members/1", "members/3"]);
    assert_eq!(
        s.meta_get("members/1").unwrap().as_deref(),
        Some(&b"one again"[..])
    );
    // The names of the store's own bookkeeping are not reserved.
    s.apply(|b| b.meta_put("consistent_index", b"mine"))
        .unwrap();
    assert_eq!(s.consistent_index(), (0, 0));
    assert_eq!(
        s.meta_get("consistent_index").unwrap().as_deref(),
        Some(&b"mine"[..])
    );
}
