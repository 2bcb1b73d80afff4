//! The hub without a network: a store in a temp dir, writes applied as the Raft thread applies
//! them (apply, then `notify`), responses read straight from the streams' outboxes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCreateRequest, request_op,
    watch_create_request::FilterType,
};
use etcd_api::mvccpb::event::EventType;
use etcd_mvcc::{Store, StoreOptions};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    hub: Arc<WatchHub>,
    index: std::sync::atomic::AtomicU64,
}

fn fixture(cfg: WatchConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap());
    let hub = WatchHub::new(store.clone(), cfg).unwrap();
    Fixture {
        _dir: dir,
        store,
        hub,
        index: 0.into(),
    }
}

fn no_leases(_: i64) -> bool {
    false
}

impl Fixture {
    /// Applies `f` as one Raft batch and notifies the hub, as the Raft loop does.
    fn apply(&self, f: impl FnOnce(&mut etcd_mvcc::ApplyBatch<'_>)) {
        let index = self.index.fetch_add(1, Ordering::Relaxed) + 1;
        let events = self
            .store
            .apply(|b| {
                f(b);
                b.set_consistent_index(index, 1);
                b.take_events()
            })
            .unwrap();
        self.hub.notify(events, self.store.current_revision());
    }

    fn put(&self, key: &str, value: &str) -> i64 {
        self.apply(|b| {
            b.put(&put_req(key, value), &no_leases).unwrap();
        });
        self.store.current_revision()
    }

    fn delete(&self, key: &str) {
        self.apply(|b| {
            b.delete_range(&DeleteRangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .unwrap();
        });
    }

    fn compact(&self, rev: i64) {
        self.apply(|b| b.compact(rev).unwrap());
    }
}

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn watch(key: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn prefix(key: &str) -> WatchCreateRequest {
    let mut end = key.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    WatchCreateRequest {
        key: key.into(),
        range_end: end,
        ..Default::default()
    }
}

/// Waits up to 5 s for the next response.
fn next(stream: &StreamHandle) -> Outgoing {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(out) = stream.queue.try_pop() {
            return out;
        }
        assert!(Instant::now() < deadline, "no response within 5 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn assert_quiet(stream: &StreamHandle) {
    std::thread::sleep(Duration::from_millis(150));
    if let Some(out) = stream.queue.try_pop() {
        panic!("unexpected response {out:?}");
    }
}

fn created(stream: &StreamHandle) -> (i64, i64) {
    let out = next(stream);
    assert!(out.response.created && !out.response.canceled, "{out:?}");
    (out.response.watch_id, out.header_revision)
}

/// (type, key, value, mod_revision) of each event.
fn summary(out: &Outgoing) -> Vec<(i32, String, String, i64)> {
    out.response
        .events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                kv.mod_revision,
            )
        })
        .collect()
}

const PUT: i32 = EventType::Put as i32;
const DELETE: i32 = EventType::Delete as i32;

#[test]
fn create_answers_with_ids_and_current_revision() {
    let f = fixture(WatchConfig::default());
    f.put("a", "1");
    let s = f.hub.open_stream();
    f.hub.create(&s, &watch("a"));
    assert_eq!(created(&s), (0, 2));
    f.hub.create(&s, &watch("a"));
    assert_eq!(created(&s).0, 1);
    f.hub.create(
        &s,
        &WatchCreateRequest {
            watch_id: 7,
            ..watch("a")
        },
    );
    assert_eq!(created(&s).0, 7);

    // A duplicate client-chosen id: created and canceled at once, with etcd's reason.
    f.hub.create(
        &s,
        &WatchCreateRequest {
            watch_id: 7,
            ..watch("b")
        },
    );
    let dup = next(&s).response;
    assert!(dup.created && dup.canceled);
    assert_eq!(dup.watch_id, INVALID_WATCH_ID);
    assert_eq!(dup.cancel_reason, DUPLICATE_ID_REASON);

    // An empty range likewise.
    f.hub.create(
        &s,
        &WatchCreateRequest {
            key: "b".into(),
            range_end: "a".into(),
            ..Default::default()
        },
    );
    let empty = next(&s).response;
    assert!(empty.created && empty.canceled);
    assert_eq!(empty.cancel_reason, group::EMPTY_RANGE_REASON);

    // Auto ids skip ids taken by the client.
    f.hub.create(
        &s,
        &WatchCreateRequest {
            watch_id: 2,
            ..watch("a")
        },
    );
    assert_eq!(created(&s).0, 2);
    f.hub.create(&s, &watch("a"));
    assert_eq!(created(&s).0, 3);
    assert_eq!(f.hub.stats().synced, 5);
}

#[test]
fn live_events_follow_key_range_and_filters() {
    let f = fixture(WatchConfig::default());
    let s = f.hub.open_stream();
    f.hub.create(&s, &watch("foo"));
    let (key_id, _) = created(&s);
    f.hub.create(&s, &prefix("fo"));
    let (prefix_id, _) = created(&s);
    f.hub.create(
        &s,
        &WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            prev_kv: true,
            ..watch("foo")
        },
    );
    let (nopu_id, _) = created(&s);

    f.put("foo", "1");
    f.put("fox", "2");
    f.put("bar", "3");
    f.delete("foo");
    let mut got: BTreeMap<i64, Vec<Outgoing>> = BTreeMap::new();
    for _ in 0..6 {
        let out = next(&s);
        got.entry(out.response.watch_id).or_default().push(out);
    }
    assert_quiet(&s);

    let key: Vec<_> = got[&key_id].iter().flat_map(summary).collect();
    assert_eq!(
        key,
        vec![
            (PUT, "foo".into(), "1".into(), 2),
            (DELETE, "foo".into(), "".into(), 5)
        ]
    );
    // Without prev_kv asked for, none is sent.
    assert!(
        got[&key_id]
            .iter()
            .all(|o| o.response.events[0].prev_kv.is_none())
    );
    let pre: Vec<_> = got[&prefix_id].iter().flat_map(summary).collect();
    assert_eq!(pre.len(), 3);
    assert_eq!((pre[1].1.as_str(), pre[2].0), ("fox", DELETE));
    // NOPUT: only the delete, with the previous value.
    let nopu = &got[&nopu_id];
    assert_eq!(nopu.len(), 1);
    assert_eq!(nopu[0].header_revision, 5);
    let ev = &nopu[0].response.events[0];
    assert_eq!(ev.r#type, DELETE);
    assert_eq!(ev.prev_kv.as_ref().unwrap().value, b"1");
}

#[test]
fn one_revision_is_one_response() {
    let f = fixture(WatchConfig::default());
    let s = f.hub.open_stream();
    f.hub.create(&s, &prefix("k"));
    created(&s);
    let op = |k: &str| RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(k, "v"))),
    };
    f.apply(|b| {
        b.txn(
            &TxnRequest {
                success: vec![op("k1"), op("k2"), op("k3")],
                ..Default::default()
            },
            &no_leases,
        )
        .unwrap();
        // A second revision in the same Raft batch.
        b.put(&put_req("k4", "v"), &no_leases).unwrap();
    });
    let first = next(&s);
    assert_eq!(first.header_revision, 2);
    assert_eq!(summary(&first).len(), 3);
    let second = next(&s);
    assert_eq!(second.header_revision, 3);
    assert_eq!(summary(&second)[0].1, "k4");
}

#[test]
fn past_start_revision_replays_history_then_goes_live() {
    let f = fixture(WatchConfig::default());
    f.put("a", "1"); // rev 2
    f.put("a", "2"); // rev 3
    f.put("b", "x"); // rev 4
    f.delete("a"); // rev 5
    let s = f.hub.open_stream();
    f.hub.create(
        &s,
        &WatchCreateRequest {
            start_revision: 3,
            prev_kv: true,
            ..watch("a")
        },
    );
    assert_eq!(created(&s), (0, 5));
    let replay = next(&s);
    assert_eq!(
        summary(&replay),
        vec![
            (PUT, "a".into(), "2".into(), 3),
            (DELETE, "a".into(), "".into(), 5)
        ]
    );
    assert_eq!(replay.header_revision, 5);
    // prev_kv read back from history for replayed events.
    assert_eq!(
        replay.response.events[0].prev_kv.as_ref().unwrap().value,
        b"1"
    );
    assert_eq!(
        replay.response.events[1].prev_kv.as_ref().unwrap().value,
        b"2"
    );
    assert_eq!(f.hub.stats().unsynced, 0);

    f.put("a", "3");
    assert_eq!(summary(&next(&s)), vec![(PUT, "a".into(), "3".into(), 6)]);
    assert_quiet(&s);
}

#[test]
fn future_start_revision_waits_for_it() {
    let f = fixture(WatchConfig::default());
    let s = f.hub.open_stream();
    f.hub.create(
        &s,
        &WatchCreateRequest {
            start_revision: 4,
            ..watch("a")
        },
    );
    assert_eq!(created(&s), (0, 1));
    f.put("a", "1"); // 2
    f.put("a", "2"); // 3
    assert_quiet(&s);
    f.put("a", "3"); // 4
    assert_eq!(summary(&next(&s)), vec![(PUT, "a".into(), "3".into(), 4)]);
}

#[test]
fn compacted_start_revision_is_canceled_with_the_compact_revision() {
    let f = fixture(WatchConfig::default());
    for i in 0..5 {
        f.put("a", &i.to_string());
    }
    f.compact(4);
    let s = f.hub.open_stream();
    f.hub.create(
        &s,
        &WatchCreateRequest {
            start_revision: 2,
            ..watch("a")
        },
    );
    let (id, _) = created(&s);
    let canceled = next(&s).response;
    assert!(canceled.canceled && !canceled.created);
    assert_eq!((canceled.watch_id, canceled.compact_revision), (id, 4));
    assert_eq!(f.hub.stats().unsynced + f.hub.stats().synced, 0);

    // At the compacted revision itself, history is still there.
    f.hub.create(
        &s,
        &WatchCreateRequest {
            start_revision: 4,
            ..watch("a")
        },
    );
    created(&s);
    let replay = next(&s);
    assert_eq!(summary(&replay)[0].3, 4);
    assert_eq!(summary(&replay).len(), 3);
}

#[test]
fn cancel_answers_and_stops_events() {
    let f = fixture(WatchConfig::default());
    let s = f.hub.open_stream();
    f.hub.create(&s, &watch("a"));
    let (id, _) = created(&s);
    f.put("a", "queued"); // left in the outbox
    assert!(f.hub.cancel(&s, id));
    let out = next(&s);
    assert!(
        out.response.canceled && out.response.watch_id == id,
        "{out:?}"
    );
    assert_eq!(out.header_revision, 2);
    f.put("a", "after");
    assert_quiet(&s);
    // Unknown ids get no answer, as in etcd.
    assert!(!f.hub.cancel(&s, 42));
    assert_quiet(&s);
}

#[test]
fn progress_request_and_progress_notify() {
    let f = fixture(WatchConfig::default());
    f.put("x", "1");
    let s = f.hub.open_stream();
    f.hub.progress(&s);
    let p = next(&s);
    assert_eq!(
        (p.response.watch_id, p.header_revision),
        (INVALID_WATCH_ID, 2)
    );

    f.hub.create(
        &s,
        &WatchCreateRequest {
            progress_notify: true,
            ..watch("a")
        },
    );
    let (id, _) = created(&s);
    f.hub.create(&s, &watch("a"));
    created(&s);
    // First tick: the progress_notify watcher hears the revision; the other does not.
    f.hub.progress_tick(&s);
    let p = next(&s);
    assert_eq!((p.response.watch_id, p.header_revision), (id, 2));
    assert!(p.response.events.is_empty());
    assert_quiet(&s);
    // Events since the last tick: no progress notification at the next one.
    f.put("a", "1");
    next(&s);
    next(&s);
    f.hub.progress_tick(&s);
    assert_quiet(&s);
    f.hub.progress_tick(&s);
    assert_eq!(next(&s).header_revision, 3);
}

/// A progress notification promises every event up to its revision was sent: one asked for
/// while a watcher of the stream is still catching up comes after that watcher's history,
/// never before it (etcd 3.4 sent it at once, etcd issue 15220).
#[test]
fn progress_waits_for_watchers_catching_up() {
    let f = fixture(WatchConfig::default());
    for i in 0..50 {
        f.put("a", &i.to_string()); // revs 2..=51
    }
    let s = f.hub.open_stream();
    f.hub.create(
        &s,
        &WatchCreateRequest {
            start_revision: 2,
            ..watch("a")
        },
    );
    f.hub.progress(&s);
    assert_eq!(created(&s), (0, 51));
    let mut last_event = 0;
    loop {
        let out = next(&s);
        if out.response.events.is_empty() {
            assert_eq!(out.response.watch_id, INVALID_WATCH_ID);
            assert_eq!(out.header_revision, 51);
            assert_eq!(last_event, 51, "progress came before the events up to it");
            break;
        }
        last_event = out
            .response
            .events
            .last()
            .map_or(0, |e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision));
    }
    assert_quiet(&s);
}

/// A snapshot install jumps the store ahead without notifications: `restore` catches synced
/// watchers up from the new store's history; one waiting for a later revision keeps waiting.
#[test]
fn restore_catches_up_revisions_that_were_never_notified() {
    let f = fixture(WatchConfig::default());
    let s = f.hub.open_stream();
    f.hub.create(&s, &watch("a"));
    created(&s);
    f.hub.create(
        &s,
        &WatchCreateRequest {
            start_revision: 5,
            ..watch("a")
        },
    );
    created(&s);
    f.put("a", "1"); // rev 2, notified
    assert_eq!(summary(&next(&s))[0].3, 2);
    // Revisions 3 and 4 land without a notification, as a snapshot would bring them.
    for v in ["2", "3"] {
        f.store
            .apply(|b| b.put(&put_req("a", v), &no_leases).unwrap())
            .unwrap();
    }
    f.hub.restore();
    let caught_up = next(&s);
    assert_eq!(caught_up.response.watch_id, 0);
    let revs: Vec<i64> = summary(&caught_up).iter().map(|e| e.3).collect();
    assert_eq!(revs, vec![3, 4]);
    assert_quiet(&s);
    f.put("a", "4"); // rev 5: both watchers, once each
    let mut ids = vec![next(&s).response.watch_id, next(&s).response.watch_id];
    ids.sort();
    assert_eq!(ids, vec![0, 1]);
    assert_quiet(&s);
}

#[test]
fn closing_a_stream_removes_its_watchers() {
    let f = fixture(WatchConfig::default());
    let s = f.hub.open_stream();
    f.hub.create(&s, &watch("a"));
    f.hub.create(
        &s,
        &WatchCreateRequest {
            start_revision: 1,
            ..watch("b")
        },
    );
    f.hub.close_stream(&s);
    let stats = f.hub.stats();
    assert_eq!((stats.streams, stats.synced, stats.unsynced), (0, 0, 0));
    f.put("a", "1");
    assert!(s.queue.try_pop().is_none());
}

/// A client that stops reading: its outbox stays bounded, its watcher leaves the live path,
/// other streams keep getting every event at once, and once it reads again it catches up with
/// every revision, in order, once.
#[test]
fn slow_reader_is_bounded_and_catches_up() {
    let cfg = WatchConfig {
        stream_responses_max: 8,
        stream_bytes_max: 64 * 1024,
        catch_up_response_bytes_max: 4 * 1024,
        ..WatchConfig::default()
    };
    let f = fixture(cfg);
    let slow = f.hub.open_stream();
    let fast = f.hub.open_stream();
    f.hub.create(&slow, &prefix("k"));
    created(&slow);
    f.hub.create(&fast, &prefix("k"));
    created(&fast);

    let value = "v".repeat(1000);
    let mut fast_seen = Vec::new();
    for i in 0..300 {
        let rev = f.put(&format!("k{}", i % 7), &value);
        // The fast reader has each revision as soon as it is applied.
        let out = fast.queue.try_pop().expect("fast reader served at once");
        assert_eq!(out.header_revision, rev);
        fast_seen.push(summary(&out)[0].3);
        assert!(slow.queue.len() <= 8);
        assert!(slow.queue.bytes() <= 64 * 1024);
    }
    assert_eq!(fast_seen, (2..302).collect::<Vec<_>>());
    assert_eq!(
        f.hub.stats().unsynced,
        1,
        "the slow watcher left the live path"
    );

    // The slow reader drains: it gets every revision exactly once, in order.
    let mut slow_seen = Vec::new();
    while slow_seen.last() != Some(&301) {
        let out = next(&slow);
        let revs: Vec<i64> = summary(&out).iter().map(|e| e.3).collect();
        assert!(revs.last().unwrap() <= &out.header_revision);
        slow_seen.extend(revs);
    }
    assert_eq!(slow_seen, (2..302).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.hub.stats().unsynced != 0 {
        assert!(Instant::now() < deadline, "slow watcher never resynced");
        std::thread::sleep(Duration::from_millis(5));
    }
    f.put("k0", "live");
    assert_eq!(summary(&next(&slow))[0].3, 302);
}

/// A slow watcher whose missed revisions get compacted away is canceled with the compact
/// revision, as etcd does.
#[test]
fn slow_reader_behind_compaction_is_canceled() {
    let cfg = WatchConfig {
        stream_responses_max: 2,
        ..WatchConfig::default()
    };
    let f = fixture(cfg);
    let slow = f.hub.open_stream();
    f.hub.create(&slow, &watch("k"));
    let (id, _) = created(&slow);
    for i in 0..10 {
        f.put("k", &i.to_string());
    }
    f.compact(8);
    let mut last = None;
    while let Some(out) = (0..100).find_map(|_| {
        let out = slow.queue.try_pop();
        if out.is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        out
    }) {
        last = Some(out.clone());
        if out.response.canceled {
            break;
        }
    }
    let last = last.expect("responses").response;
    assert!(last.canceled);
    assert_eq!((last.watch_id, last.compact_revision), (id, 8));
}

/// The invariants under a concurrent writer: every watcher, created at a random point from a
/// random retained revision and drained at its own pace through a small outbox, sees exactly
/// the revisions of its key range from its start, in order, none twice, each revision whole.
#[test]
fn concurrent_writers_and_watchers_see_every_revision_once_in_order() {
    let cfg = WatchConfig {
        stream_responses_max: 4,
        stream_bytes_max: 8 * 1024,
        catch_up_response_bytes_max: 2 * 1024,
        catch_up_events_max: 50,
        catch_up_interval: Duration::from_millis(5),
        ..WatchConfig::default()
    };
    let f = Arc::new(fixture(cfg));
    const WRITES: usize = 600;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let f = f.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for i in 0..WRITES {
                // Each revision changes two keys of one of three prefixes.
                let p = ["a", "b", "c"][i % 3];
                let op = |k: String| RequestOp {
                    request: Some(request_op::Request::RequestPut(put_req(&k, &i.to_string()))),
                };
                f.apply(|b| {
                    b.txn(
                        &TxnRequest {
                            success: vec![op(format!("{p}1")), op(format!("{p}2"))],
                            ..Default::default()
                        },
                        &no_leases,
                    )
                    .unwrap();
                });
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            done.store(true, Ordering::Release);
        })
    };

    // Readers: each creates watchers while the writer runs, then drains at its own pace.
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let f = f.clone();
        let done = done.clone();
        readers.push(std::thread::spawn(move || {
            let s = f.hub.open_stream();
            let mut expected_from: BTreeMap<i64, (String, i64)> = BTreeMap::new();
            let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            for j in 0..3 {
                std::thread::sleep(Duration::from_millis(5 + 7 * r + 3 * j));
                let p = ["a", "b", "c"][(r as usize + j as usize) % 3];
                let cur = f.store.current_revision();
                let start = if j == 0 {
                    0
                } else {
                    (cur - 40 * j as i64).max(1)
                };
                f.hub.create(
                    &s,
                    &WatchCreateRequest {
                        start_revision: start,
                        ..prefix(p)
                    },
                );
                // Until the created answer arrives, other watchers' responses may come first.
                loop {
                    let out = next(&s);
                    if out.response.created {
                        let from = if start == 0 {
                            out.header_revision + 1
                        } else {
                            start
                        };
                        expected_from.insert(out.response.watch_id, (p.to_string(), from));
                        break;
                    }
                    record(&mut seen, &out);
                }
            }
            // The last reader stops reading until the writer is done: its outbox overflows.
            while r == 3 && !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            let final_rev = 1 + WRITES as i64;
            loop {
                match s.queue.try_pop() {
                    Some(out) => record(&mut seen, &out),
                    None => {
                        let complete = expected_from.keys().all(|id| {
                            seen.get(id)
                                .and_then(|v| v.last())
                                .is_some_and(|last| *last >= final_rev - 2)
                        });
                        if complete {
                            break;
                        }
                        assert!(Instant::now() < deadline, "reader {r} stalled: {seen:?}");
                        // A slow reader: lets its outbox fill now and then.
                        std::thread::sleep(Duration::from_millis(1 + r * 3));
                    }
                }
            }
            (expected_from, seen)
        }));
    }
    writer.join().unwrap();
    assert!(done.load(Ordering::Acquire));
    assert!(
        f.hub.stats().overflows > 0,
        "the slow path was not exercised"
    );
    let final_rev = 1 + WRITES as i64;
    for reader in readers {
        let (expected_from, seen) = reader.join().unwrap();
        for (id, (p, from)) in expected_from {
            // Revision r (2-based) wrote prefix ["a","b","c"][(r - 2) % 3].
            let want: Vec<i64> = (from.max(2)..=final_rev)
                .filter(|r| ["a", "b", "c"][((r - 2) % 3) as usize] == p)
                .collect();
            assert_eq!(
                seen.get(&id).cloned().unwrap_or_default(),
                want,
                "watcher {id} on {p}"
            );
        }
    }
}

/// Records a response's revisions, checking each revision's two events arrived together.
fn record(seen: &mut BTreeMap<i64, Vec<i64>>, out: &Outgoing) {
    let revs: Vec<i64> = summary(out).iter().map(|e| e.3).collect();
    assert!(!revs.is_empty(), "unexpected non-event response {out:?}");
    assert!(
        revs.len().is_multiple_of(2),
        "a revision was split: {revs:?}"
    );
    for pair in revs.chunks(2) {
        assert_eq!(pair[0], pair[1]);
        seen.entry(out.response.watch_id).or_default().push(pair[0]);
    }
}

#[test]
fn live_overwrite_carries_the_previous_value_when_asked() {
    // The apply path no longer reads previous values for puts; the hub must read them for
    // watchers that ask.
    let f = fixture(WatchConfig::default());
    let s = f.hub.open_stream();
    f.hub.create(
        &s,
        &WatchCreateRequest {
            prev_kv: true,
            ..watch("foo")
        },
    );
    created(&s);
    f.put("foo", "1");
    f.put("foo", "2");
    let first = next(&s);
    assert!(
        first.response.events[0].prev_kv.is_none(),
        "a creation has none"
    );
    let second = next(&s);
    let ev = &second.response.events[0];
    assert_eq!(ev.kv.as_ref().unwrap().value, b"2");
    assert_eq!(ev.prev_kv.as_ref().unwrap().value, b"1");
    assert_quiet(&s);
}
