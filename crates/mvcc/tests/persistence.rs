//! Compaction, reopening, the consistent index, hashes, defragmentation and crash recovery.

mod common;

use std::time::Duration;

use common::*;
use etcd_api::etcdserverpb::RangeRequest;
use etcd_api::mvccpb::KeyValue;
use etcd_mvcc::{MvccError, Store, StoreOptions};
use prost::Message;

fn at(s: &Store, key: &str, revision: i64) -> Result<Option<String>, MvccError> {
    let r = s.range(&RangeRequest {
        revision,
        ..range_req(key, "")
    })?;
    Ok(r.kvs
        .first()
        .map(|kv| String::from_utf8(kv.value.clone()).unwrap()))
}

#[test]
fn compaction_keeps_the_latest_revision_per_key() {
    let mut t = TestStore::new();
    let s = t.s();
    put(s, "a", "a1"); // 2
    put(s, "b", "b1"); // 3
    put(s, "a", "a2"); // 4
    del(s, "b", ""); // 5
    put(s, "c", "c1"); // 6
    put(s, "a", "a3"); // 7
    assert_eq!(s.compact_revision(), -1);
    s.apply(|b| b.compact(5)).unwrap().unwrap();
    assert_eq!(s.compact_revision(), 5);
    for t_ in 0..2 {
        let s = t.s();
        assert_eq!(s.compact_revision(), 5, "round {t_}");
        assert_eq!(s.current_revision(), 7);
        // Below the compaction: gone.
        for r in [1, 2, 4] {
            let err = at(s, "a", r).unwrap_err();
            assert!(matches!(err, MvccError::Compacted), "{r}: {err}");
            assert_eq!(
                err.to_string(),
                "etcdserver: mvcc: required revision has been compacted"
            );
        }
        // At and above it: as before.
        assert_eq!(at(s, "a", 5).unwrap().as_deref(), Some("a2"));
        assert_eq!(at(s, "b", 5).unwrap(), None);
        assert_eq!(at(s, "c", 6).unwrap().as_deref(), Some("c1"));
        assert_eq!(at(s, "a", 7).unwrap().as_deref(), Some("a3"));
        assert_eq!(
            get(
                s,
                &RangeRequest {
                    revision: 5,
                    ..range_req("\0", "\0")
                }
            )
            .count,
            1
        );
        // The deleted key's history is gone from the index too.
        let index = s.index_clone();
        assert!(index.get(b"b", 4).is_none());
        assert_eq!(index.len(), 2);
        t.reopen();
    }
    // The backend lost exactly what the index lost: a rebuilt index is identical.
    let live = t.s().index_clone();
    t.reopen();
    assert_eq!(t.s().index_clone(), live);
}

#[test]
fn compaction_revision_rules() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1"); // 2
    put(s, "a", "2"); // 3
    let err = s.apply(|b| b.compact(4)).unwrap().unwrap_err();
    assert!(matches!(err, MvccError::FutureRev));
    s.apply(|b| b.compact(3)).unwrap().unwrap();
    for r in [2, 3] {
        let err = s.apply(|b| b.compact(r)).unwrap().unwrap_err();
        assert!(matches!(err, MvccError::Compacted), "{r}");
    }
    // Compacting at the current revision inside a batch covers the batch's own writes.
    s.apply(|b| {
        b.put(&put_req("a", "3"), &no_leases).unwrap(); // 4
        b.delete_range(&del_req("a", "")).unwrap(); // 5
        b.compact(5).unwrap();
        assert!(b.range(&range_req("a", "")).unwrap().kvs.is_empty());
    })
    .unwrap();
    assert_eq!(s.compact_revision(), 5);
    assert!(s.index_clone().is_empty());
}

#[test]
fn compacting_everything_keeps_the_revision_across_reopen() {
    let mut t = TestStore::new();
    put(t.s(), "a", "1"); // 2
    del(t.s(), "a", ""); // 3
    t.s().apply(|b| b.compact(3)).unwrap().unwrap();
    t.reopen();
    assert_eq!(t.s().current_revision(), 3);
    assert_eq!(t.s().compact_revision(), 3);
    assert_eq!(rev(&put(t.s(), "b", "1").header), 4);
}

#[test]
fn consistent_index_is_committed_with_the_data() {
    let mut t = TestStore::new();
    assert_eq!(t.s().consistent_index(), (0, 0));
    t.s()
        .apply(|b| {
            b.set_consistent_index(10, 2);
            b.put(&put_req("a", "1"), &no_leases).unwrap();
        })
        .unwrap();
    assert_eq!(t.s().consistent_index(), (10, 2));
    // A batch that only advances the index (say, a config change entry) still persists it.
    t.s().apply(|b| b.set_consistent_index(11, 3)).unwrap();
    // A batch without it leaves it alone.
    put(t.s(), "b", "1");
    assert_eq!(t.s().consistent_index(), (11, 3));
    let index = t.s().index_clone();
    t.reopen();
    assert_eq!(t.s().consistent_index(), (11, 3));
    assert_eq!(t.s().index_clone(), index);
    assert_eq!(t.s().current_revision(), 3);
}

#[test]
fn failed_batches_leave_no_trace() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1");
    let index = s.index_clone();
    let hash = s.hash().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.apply(|b| {
            b.set_consistent_index(5, 1);
            b.put(&put_req("a", "2"), &no_leases).unwrap();
            b.put(&put_req("new", "1"), &no_leases).unwrap();
            panic!("apply closure panics");
        })
    }));
    assert!(result.is_err());
    assert_eq!(s.index_clone(), index);
    assert_eq!(s.hash().unwrap(), hash);
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.consistent_index(), (0, 0));
    // And the store keeps working.
    assert_eq!(rev(&put(s, "a", "2").header), 3);
    assert_eq!(get(s, &range_req("a", "")).kvs[0].version, 2);
}

#[test]
fn hash_kv_matches_etcds_layout() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1"); // 2
    let mut want = crc32c::crc32c(b"key");
    let mut key = 2u64.to_be_bytes().to_vec();
    key.push(b'_');
    key.extend(0u64.to_be_bytes());
    let kv = KeyValue {
        key: b"a".to_vec(),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        value: b"1".to_vec(),
        lease: 0,
    };
    want = crc32c::crc32c_append(want, &key);
    want = crc32c::crc32c_append(want, &kv.encode_to_vec());
    let h = s.hash_kv(0).unwrap();
    assert_eq!(
        (
            h.hash,
            h.hash_revision,
            h.compact_revision,
            h.current_revision
        ),
        (want, 2, -1, 2)
    );
    // Empty history: just the table name.
    assert_eq!(s.hash_kv(1).unwrap().hash, crc32c::crc32c(b"key"));
}

#[test]
fn hash_kv_is_deterministic() {
    let run = |reopen_at: Option<usize>| {
        let mut t = TestStore::new();
        for i in 0..40 {
            if Some(i) == reopen_at {
                t.reopen();
            }
            let s = t.s();
            match i % 5 {
                0..=2 => {
                    put(s, &format!("k{}", i % 7), &format!("v{i}"));
                }
                3 => {
                    del(s, &format!("k{}", i % 3), "");
                }
                _ => {
                    if i == 24 {
                        s.apply(|b| b.compact(15)).unwrap().unwrap();
                    }
                }
            }
        }
        let s = t.s();
        let hashes: Vec<_> = (16..=s.current_revision())
            .map(|r| s.hash_kv(r).unwrap())
            .collect();
        (hashes, s.hash().unwrap())
    };
    let base = run(None);
    assert_eq!(run(Some(10)), base);
    assert_eq!(run(Some(30)), base);
    // Later writes do not change the hash of an earlier revision.
    let t = TestStore::new();
    put(t.s(), "a", "1");
    let h = t.s().hash_kv(2).unwrap();
    put(t.s(), "a", "2");
    let h2 = t.s().hash_kv(2).unwrap();
    assert_eq!((h.hash, h.hash_revision), (h2.hash, h2.hash_revision));
    assert_ne!(t.s().hash_kv(3).unwrap().hash, h.hash);
    assert_eq!(h2.current_revision, 3);
}

#[test]
fn hash_kv_revision_rules() {
    let t = TestStore::new();
    let s = t.s();
    put(s, "a", "1");
    put(s, "a", "2");
    assert!(matches!(s.hash_kv(4), Err(MvccError::FutureRev)));
    s.apply(|b| b.compact(2)).unwrap().unwrap();
    assert!(matches!(s.hash_kv(2), Err(MvccError::Compacted)));
    assert!(matches!(s.hash_kv(1), Err(MvccError::Compacted)));
    assert_eq!(s.hash_kv(3).unwrap().compact_revision, 2);
    // The consistent index is not part of the backend hash.
    let h = s.hash().unwrap();
    s.apply(|b| b.set_consistent_index(99, 9)).unwrap();
    assert_eq!(s.hash().unwrap(), h);
    s.apply(|b| b.meta_put("x", b"y")).unwrap();
    assert_ne!(s.hash().unwrap(), h);
}

#[test]
fn defragment_keeps_everything() {
    let t = TestStore::new();
    let s = t.s();
    let value = "x".repeat(4096);
    for i in 0..300 {
        put(s, &format!("k{i:03}"), &value);
    }
    del(s, "k000", "k250");
    let current = s.current_revision();
    s.apply(|b| b.compact(current)).unwrap().unwrap();
    s.apply(|b| b.set_consistent_index(7, 1)).unwrap();
    let before = (s.hash().unwrap(), s.hash_kv(0).unwrap(), s.index_clone());
    let size_before = s.db_size_bytes();
    assert!(s.db_size_in_use_bytes() <= size_before);
    s.defragment().unwrap();
    assert!(
        s.db_size_bytes() <= size_before,
        "{} > {size_before}",
        s.db_size_bytes()
    );
    assert_eq!(
        (s.hash().unwrap(), s.hash_kv(0).unwrap(), s.index_clone()),
        before
    );
    assert_eq!(s.consistent_index(), (7, 1));
    assert_eq!(get(s, &range_req("k", "l")).count, 50);
    put(s, "after", "defrag");
    assert_eq!(get(s, &range_req("after", "")).kvs.len(), 1);
}

/// One Raft entry of the crash test: entry `i` puts or deletes, and records itself as the
/// consistent index.
fn apply_entry(s: &Store, i: u64) {
    s.apply(|b| {
        b.set_consistent_index(i, 1);
        if i % 4 == 3 {
            b.delete_range(&del_req(&format!("k{}", i % 5), ""))
                .unwrap();
        } else {
            b.put(
                &put_req(&format!("k{}", i % 5), &format!("v{i}")),
                &no_leases,
            )
            .unwrap();
        }
    })
    .unwrap();
}

#[test]
fn crash_recovers_a_consistent_prefix_and_replay_converges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // No durable commits unless forced.
    let opts = StoreOptions {
        batch_interval: Duration::from_secs(3600),
        batch_limit: usize::MAX,
        ..StoreOptions::default()
    };
    let s = Store::open(&path, opts.clone()).unwrap();
    for i in 1..=20 {
        apply_entry(&s, i);
    }
    s.force_commit().unwrap();
    for i in 21..=50 {
        apply_entry(&s, i);
    }
    // "Crash": copy the file as it is on disk while the store is still open.
    let crashed = dir.path().join("crashed");
    std::fs::copy(&path, &crashed).unwrap();
    let want_hash = s.hash_kv(0).unwrap();
    let want_index = s.index_clone();
    drop(s);

    let r = Store::open(&crashed, opts).unwrap();
    let (ci, _) = r.consistent_index();
    assert!((20..=50).contains(&ci), "recovered consistent index {ci}");
    // What was recovered is exactly the state after entry `ci`.
    let reference = TestStore::new();
    for i in 1..=ci {
        apply_entry(reference.s(), i);
    }
    assert_eq!(r.hash_kv(0).unwrap(), reference.s().hash_kv(0).unwrap());
    assert_eq!(r.index_clone(), reference.s().index_clone());
    // Replaying the WAL above the consistent index converges on the original.
    for i in ci + 1..=50 {
        apply_entry(&r, i);
    }
    assert_eq!(r.hash_kv(0).unwrap(), want_hash);
    assert_eq!(r.index_clone(), want_index);
}

#[test]
fn background_flush_makes_commits_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = StoreOptions {
        batch_interval: Duration::from_millis(20),
        batch_limit: usize::MAX,
        ..StoreOptions::default()
    };
    let s = Store::open(&path, opts.clone()).unwrap();
    apply_entry(&s, 1);
    apply_entry(&s, 2); // within the interval: not durable yet
    // Give the flusher time, generously: the machine may be busy.
    let mut recovered = (0, 0);
    for attempt in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let crashed = dir.path().join(format!("crashed-{attempt}"));
        std::fs::copy(&path, &crashed).unwrap();
        recovered = Store::open(&crashed, opts.clone())
            .unwrap()
            .consistent_index();
        if recovered == (2, 1) {
            break;
        }
    }
    assert_eq!(recovered, (2, 1));
    drop(s);
}

#[test]
fn batch_limit_forces_durable_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = StoreOptions {
        batch_interval: Duration::from_secs(3600),
        batch_limit: 3,
        ..StoreOptions::default()
    };
    let s = Store::open(&path, opts.clone()).unwrap();
    for i in 1..=7 {
        apply_entry(&s, i);
    }
    let crashed = dir.path().join("crashed");
    std::fs::copy(&path, &crashed).unwrap();
    let r = Store::open(&crashed, opts).unwrap();
    // One record per entry: durable after entries 3 and 6 at the latest.
    let (ci, _) = r.consistent_index();
    assert!((6..=7).contains(&ci), "{ci}");
    drop(s);
}

#[test]
fn stored_bytes_track_writes_compaction_and_reopen() {
    let mut t = TestStore::new();
    let empty = t.s().stored_bytes();
    let value = "v".repeat(1000);
    for _ in 0..10 {
        put(t.s(), "big", &value);
    }
    let after_puts = t.s().stored_bytes();
    // Ten revisions of a 1000-byte value are all still stored.
    assert!(after_puts >= empty + 10 * 1000, "{empty} -> {after_puts}");
    del(t.s(), "big", "");
    let rev = t.s().current_revision();
    t.s().apply(|b| b.compact(rev)).unwrap().unwrap();
    let after_compaction = t.s().stored_bytes();
    assert!(after_compaction < empty + 1000, "{after_compaction}");
    // A failed txn undoes its writes and their bytes.
    let before_failed = t.s().stored_bytes();
    let r = t.s().apply(|b| {
        let mut txn = etcd_api::etcdserverpb::TxnRequest::default();
        txn.success.push(etcd_api::etcdserverpb::RequestOp {
            request: Some(etcd_api::etcdserverpb::request_op::Request::RequestPut(
                put_req("x", &value),
            )),
        });
        txn.success.push(etcd_api::etcdserverpb::RequestOp {
            request: Some(etcd_api::etcdserverpb::request_op::Request::RequestPut(
                etcd_api::etcdserverpb::PutRequest {
                    key: b"missing".to_vec(),
                    ignore_value: true,
                    ..Default::default()
                },
            )),
        });
        b.txn(&txn, &no_leases)
    });
    assert!(r.unwrap().is_err());
    assert_eq!(t.s().stored_bytes(), before_failed);
    put(t.s(), "small", "x");
    let live = t.s().stored_bytes();
    t.reopen();
    assert_eq!(
        t.s().stored_bytes(),
        live,
        "reopen recomputes the same total"
    );
}

#[test]
fn snapshot_copy_restores_into_another_store() {
    let source = TestStore::new();
    for i in 0..50 {
        put(source.s(), &format!("k{i:02}"), &format!("v{i}"));
    }
    del(source.s(), "k07", "");
    source.s().apply(|b| b.set_consistent_index(77, 3)).unwrap();
    let copy = source.dir.path().join("snapshot.db");
    assert_eq!(source.s().snapshot_to(&copy).unwrap(), 77);

    let target = TestStore::new();
    put(target.s(), "stale", "gone after restore");
    // The copy (applied to 77) came with a Raft snapshot at 70.
    target.s().restore_from(&copy, 70).unwrap();
    let t = target.s();
    assert_eq!(t.consistent_index(), (77, 3));
    assert_eq!(t.restored_from_snapshot().unwrap(), Some((70, 77)));
    assert_eq!(t.current_revision(), source.s().current_revision());
    assert_eq!(
        t.hash_kv(0).unwrap().hash,
        source.s().hash_kv(0).unwrap().hash
    );
    assert_eq!(t.stored_bytes(), source.s().stored_bytes());
    assert_eq!(at(t, "stale", 0).unwrap(), None);
    assert_eq!(at(t, "k08", 0).unwrap().as_deref(), Some("v8"));
    // The restored store takes writes and survives reopening.
    put(t, "after", "restore");
    let mut target = target;
    target.reopen();
    assert_eq!(
        at(target.s(), "after", 0).unwrap().as_deref(),
        Some("restore")
    );
    assert_eq!(at(target.s(), "k07", 0).unwrap(), None);
}

/// A compaction's records are deleted after it is applied, a batch at a time. A crash before
/// the last of them leaves the compaction scheduled but not finished; opening the store
/// finishes it, and the store is the one a finished compaction leaves.
#[test]
fn a_compaction_interrupted_by_a_crash_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Every batch durable; the background deletion never is.
    let opts = StoreOptions {
        batch_interval: Duration::from_secs(3600),
        batch_limit: 1,
        ..StoreOptions::default()
    };
    let s = Store::open(&path, opts.clone()).unwrap();
    for round in 0..500 {
        s.apply(|b| {
            for k in 0..10 {
                b.put(&put_req(&format!("k{k}"), &format!("v{round}")), &no_leases)
                    .unwrap();
            }
        })
        .unwrap();
    }
    let stored_before = s.stored_bytes();
    let revision = s.current_revision();
    s.apply(|b| b.compact(revision)).unwrap().unwrap();
    assert_eq!(s.compact_revision(), revision);
    // The compaction's own batch deleted a share of its 4,990 records, not all.
    let crashed = dir.path().join("crashed");
    std::fs::copy(&path, &crashed).unwrap();

    s.finish_compactions().unwrap();
    let want = (s.index_clone(), s.hash_kv(0).unwrap(), s.stored_bytes());
    assert!(
        want.2 < stored_before / 100,
        "{} of {stored_before} bytes left",
        want.2
    );
    drop(s);

    let r = Store::open(&crashed, opts).unwrap();
    assert_eq!(r.compact_revision(), revision);
    assert_eq!(
        (r.index_clone(), r.hash_kv(0).unwrap(), r.stored_bytes()),
        want
    );
    assert!(matches!(
        r.range(&RangeRequest {
            revision: revision - 1,
            ..range_req("k0", "")
        }),
        Err(MvccError::Compacted)
    ));
}

/// The leased keys the store finds while rebuilding its index on open: each live key's last
/// lease, nothing for keys whose last record has none or that were deleted; given once, and
/// not at all once a write has changed the store since.
#[test]
fn leased_keys_are_found_on_open() {
    let mut t = TestStore::new();
    let leased = |s: &Store, key: &str, lease: i64| {
        try_put(
            s,
            &etcd_api::etcdserverpb::PutRequest {
                lease,
                ..put_req(key, "v")
            },
            &all_leases,
        )
        .unwrap()
    };
    let s = t.s();
    leased(s, "a", 7);
    leased(s, "b", 7);
    leased(s, "c", 8);
    put(s, "d", "no lease");
    leased(s, "b", 9); // moved to another lease
    put(s, "c", "v"); // no lease any more
    del(s, "a", ""); // gone
    leased(s, "e", 10);
    del(s, "e", "");
    leased(s, "e", 11); // deleted, then put again with a lease
    // Compacted: the older records of b, c and e go; the answer must not change.
    s.apply(|b| b.compact(s.current_revision()))
        .unwrap()
        .unwrap();
    s.wait_compactions_deleted();
    t.reopen();
    let expected: std::collections::HashMap<Vec<u8>, i64> =
        [(b"b".to_vec(), 9), (b"e".to_vec(), 11)].into();
    assert_eq!(t.s().take_leased_keys_at_load(), Some(expected.clone()));
    assert_eq!(t.s().take_leased_keys_at_load(), None, "given once");

    t.reopen();
    put(t.s(), "f", "a write after the open");
    assert_eq!(
        t.s().take_leased_keys_at_load(),
        None,
        "stale after a write"
    );
}
