//! Readers running while the apply thread writes and compacts see only whole revisions.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use etcd_api::etcdserverpb::{RangeRequest, TxnRequest};
use etcd_mvcc::{MvccError, Store, StoreOptions};

const WRITES: usize = 1500;

#[test]
fn readers_only_see_whole_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap());
    let done = Arc::new(AtomicBool::new(false));

    let writer = {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for i in 1..=WRITES {
                let v = i.to_string();
                store
                    .apply(|b| {
                        // Three keys change together in one revision; a batch sometimes holds
                        // two such revisions and unrelated deletes.
                        let all = TxnRequest {
                            compare: vec![],
                            success: vec![op_put("a", &v), op_put("b", &v), op_put("c", &v)],
                            failure: vec![],
                        };
                        b.txn(&all, &no_leases).unwrap();
                        if i % 7 == 0 {
                            b.put(&put_req("x", &v), &no_leases).unwrap();
                            b.delete_range(&del_req("x", "y")).unwrap();
                        }
                        if i % 3 == 0 {
                            b.txn(&all, &no_leases).unwrap();
                        }
                        // Compacting at the batch's own newest revision trims history that
                        // readers at the published revision still need, unless the batch is
                        // published first.
                        if i % 50 == 0 {
                            let current = b.current_revision();
                            b.compact(current).unwrap();
                        } else if i % 25 == 0 {
                            let current = b.current_revision();
                            b.compact(current - 5).unwrap();
                        }
                        b.set_consistent_index(i as u64, 1);
                    })
                    .unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let readers: Vec<_> = (0..3)
        .map(|n| {
            let store = Arc::clone(&store);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut last_rev = 0;
                let mut reads = 0;
                while !done.load(Ordering::SeqCst) {
                    let resp = store.range(&range_req("a", "d")).unwrap();
                    let rev = resp.header.unwrap().revision;
                    assert!(
                        rev >= last_rev,
                        "revision went back from {last_rev} to {rev}"
                    );
                    last_rev = rev;
                    // Nothing before the first write, then all three keys, always with one
                    // value and one mod revision.
                    assert_eq!(
                        resp.kvs.len(),
                        if rev == 1 { 0 } else { 3 },
                        "at {rev}: {resp:?}"
                    );
                    if let Some(first) = resp.kvs.first() {
                        for kv in &resp.kvs {
                            assert_eq!(
                                (&kv.value, kv.mod_revision),
                                (&first.value, first.mod_revision)
                            );
                            assert!(kv.mod_revision <= rev);
                        }
                    }
                    assert_eq!(resp.count as usize, resp.kvs.len());
                    // A historic read either works (whole revision) or is compacted. (0 and
                    // below would mean "current".)
                    if rev <= 3 {
                        continue;
                    }
                    match store.range(&RangeRequest {
                        revision: rev - 3,
                        ..range_req("a", "d")
                    }) {
                        Ok(old) => {
                            assert_eq!(old.kvs.len(), 3, "at {}: {old:?}", rev - 3);
                            assert!(old.kvs.iter().all(|kv| kv.mod_revision <= rev - 3));
                        }
                        Err(MvccError::Compacted) => {}
                        Err(e) => panic!("reader {n}: {e}"),
                    }
                    if reads % 50 == 0 {
                        match store.hash_kv(rev) {
                            Ok(_) | Err(MvccError::Compacted) => {}
                            Err(e) => panic!("reader {n}: {e}"),
                        }
                        let (ci, _) = store.consistent_index();
                        assert!(ci as usize <= WRITES);
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    writer.join().unwrap();
    for r in readers {
        let reads = r.join().unwrap();
        assert!(reads > 0);
    }
    assert_eq!(store.consistent_index(), (WRITES as u64, 1));
    let last = store.range(&range_req("a", "d")).unwrap();
    assert_eq!(last.kvs.len(), 3);
    assert_eq!(last.kvs[0].value, WRITES.to_string().as_bytes());
}

#[test]
fn defragment_while_reading() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap());
    for i in 0..200 {
        put(&store, &format!("k{i:03}"), &"v".repeat(1000));
    }
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                assert_eq!(store.range(&range_req("k", "l")).unwrap().count, 200);
            }
        })
    };
    for _ in 0..3 {
        store.defragment().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    reader.join().unwrap();
}

/// Defragmentation copies the file while writes and compactions go on: afterwards the file
/// holds exactly what the store holds (the index rebuilt from it on reopen equals the live
/// one, so no record was lost and no compacted one came back), and the writes made during
/// the copy are all there.
#[test]
fn defragment_while_writing_and_compacting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Arc::new(Store::open(&path, StoreOptions::default()).unwrap());
    const KEYS: usize = 200;
    for round in 0..50 {
        store
            .apply(|b| {
                for k in 0..1000 {
                    let key = format!("k{:03}", k % KEYS);
                    b.put(&put_req(&key, &format!("seed{round}-{k}")), &no_leases)
                        .unwrap();
                }
            })
            .unwrap();
    }
    const WRITES: u64 = 6000;
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for i in 1..=WRITES {
                store
                    .apply(|b| {
                        let key = format!("k{:03}", i as usize % KEYS);
                        b.put(&put_req(&key, &format!("w{i}")), &no_leases).unwrap();
                        if i % 100 == 0 {
                            let to = b.current_revision() - 50;
                            b.compact(to).unwrap();
                        }
                        b.set_consistent_index(i, 1);
                    })
                    .unwrap();
            }
        })
    };
    let mut defrags = 0;
    while defrags == 0 || !writer.is_finished() {
        store.defragment().unwrap();
        defrags += 1;
    }
    writer.join().unwrap();
    eprintln!("{defrags} defragmentations during {WRITES} writes");

    let live = (
        store.index_clone(),
        store.hash_kv(0).unwrap(),
        store.current_revision(),
    );
    let latest = store.range(&range_req("k", "l")).unwrap();
    assert_eq!(latest.kvs.len(), KEYS);
    for kv in &latest.kvs {
        let k: u64 = std::str::from_utf8(&kv.key[1..]).unwrap().parse().unwrap();
        let last_write = (1..=WRITES).rev().find(|i| i % KEYS as u64 == k).unwrap();
        assert_eq!(kv.value, format!("w{last_write}").as_bytes());
    }
    drop(latest);
    let store = Arc::into_inner(store).unwrap();
    drop(store);
    let reopened = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(reopened.consistent_index(), (WRITES, 1));
    assert_eq!(
        (
            reopened.index_clone(),
            reopened.hash_kv(0).unwrap(),
            reopened.current_revision()
        ),
        live,
        "the defragmented file differs from the store it was copied from"
    );
}

/// A crash in the middle of a defragmentation leaves a partial copy beside the database;
/// opening the store removes it and keeps the database as it was.
#[test]
fn an_unfinished_defragmentation_copy_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        put(&store, "a", "1");
    }
    let leftover = dir.path().join("db.defrag");
    std::fs::write(&leftover, b"half a copy").unwrap();
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(store.range(&range_req("a", "")).unwrap().kvs[0].value, b"1");
}
