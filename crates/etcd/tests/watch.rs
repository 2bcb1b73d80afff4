//! The Watch service end to end through the real binary: etcd's answers on the wire, the
//! ordering guarantees under concurrent writers, compaction, fragmenting, and a client that
//! stops reading.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::EtcdProcess;
use etcd_api::etcdserverpb::{
    CompactionRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse, request_op, watch_request,
};
use etcd_api::mvccpb::event::EventType;
use etcd_client::Client;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// One Watch stream: requests in, responses out.
struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

impl Stream {
    async fn open(client: &mut Client) -> Stream {
        let (tx, rx) = mpsc::channel(16);
        let responses = client
            .watch
            .watch(ReceiverStream::new(rx))
            .await
            .expect("open watch stream")
            .into_inner();
        Stream {
            requests: tx,
            responses,
        }
    }

    async fn send(&self, request: watch_request::RequestUnion) {
        self.requests
            .send(WatchRequest {
                request_union: Some(request),
            })
            .await
            .expect("send watch request");
    }

    async fn create(&self, create: WatchCreateRequest) {
        self.send(watch_request::RequestUnion::CreateRequest(create))
            .await;
    }

    /// The next response, failing the test after `secs` seconds.
    async fn next_within(&mut self, secs: u64) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(secs), self.responses.message())
            .await
            .expect("no watch response in time")
            .expect("watch stream failed")
            .expect("watch stream ended")
    }

    async fn next(&mut self) -> WatchResponse {
        self.next_within(10).await
    }

    /// Creates a watcher and returns (watch id, header revision) of the created answer.
    async fn created(&mut self, create: WatchCreateRequest) -> (i64, i64) {
        self.create(create).await;
        let r = self.next().await;
        assert!(r.created && !r.canceled, "{r:?}");
        (r.watch_id, r.header.expect("header").revision)
    }

    /// Like `created`, for a stream whose other watchers may be sent events meanwhile: those
    /// responses go to `early`.
    async fn created_amid(
        &mut self,
        create: WatchCreateRequest,
        early: &mut Vec<WatchResponse>,
    ) -> (i64, i64) {
        self.create(create).await;
        loop {
            let r = self.next().await;
            if r.created {
                assert!(!r.canceled, "{r:?}");
                return (r.watch_id, r.header.expect("header").revision);
            }
            early.push(r);
        }
    }

    async fn assert_quiet(&mut self, ms: u64) {
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(ms), self.responses.message()).await
        {
            panic!("unexpected watch response {r:?}");
        }
    }
}

fn key(k: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: k.into(),
        ..Default::default()
    }
}

fn prefix(p: &str) -> WatchCreateRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    WatchCreateRequest {
        key: p.into(),
        range_end: end,
        ..Default::default()
    }
}

fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn create_cancel_progress_and_errors_as_etcd_answers() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("w.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let rev = c.put("foo", "1").await.unwrap().header.unwrap().revision;

    let mut s = Stream::open(&mut c).await;
    // Server-chosen ids start at 0; the created answer carries the current revision.
    s.create(key("foo")).await;
    let r = s.next().await;
    let h = r.header.unwrap();
    assert!(r.created && !r.canceled && r.watch_id == 0, "{r:?}");
    assert_eq!(h.revision, rev);
    assert!(h.cluster_id != 0 && h.member_id != 0 && h.raft_term >= 1);

    // A client-chosen id, then the same id again: created + canceled with etcd's reason.
    assert_eq!(
        s.created(WatchCreateRequest {
            watch_id: 100,
            ..key("bar")
        })
        .await
        .0,
        100
    );
    s.create(WatchCreateRequest {
        watch_id: 100,
        ..key("baz")
    })
    .await;
    let dup = s.next().await;
    assert!(dup.created && dup.canceled && dup.watch_id == -1, "{dup:?}");
    assert_eq!(
        dup.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );

    // An empty range.
    s.create(WatchCreateRequest {
        key: "b".into(),
        range_end: "a".into(),
        ..Default::default()
    })
    .await;
    let bad = s.next().await;
    assert!(bad.created && bad.canceled && bad.watch_id == -1, "{bad:?}");
    assert_eq!(bad.cancel_reason, "mvcc: watcher range is empty");

    // Events: header at the event's revision; prev_kv only when asked for.
    let r2 = c.put("foo", "2").await.unwrap().header.unwrap().revision;
    let ev = s.next().await;
    assert_eq!((ev.watch_id, ev.header.unwrap().revision), (0, r2));
    assert_eq!(ev.events.len(), 1);
    assert_eq!(ev.events[0].kv.as_ref().unwrap().value, b"2");
    assert!(ev.events[0].prev_kv.is_none());

    // A progress request: watch id -1, the current revision, no events.
    s.send(watch_request::RequestUnion::ProgressRequest(
        WatchProgressRequest {},
    ))
    .await;
    let p = s.next().await;
    assert_eq!((p.watch_id, p.header.unwrap().revision), (-1, r2));
    assert!(p.events.is_empty() && !p.created && !p.canceled);

    // Cancel: answered, then silence for that watcher.
    s.send(watch_request::RequestUnion::CancelRequest(
        WatchCancelRequest { watch_id: 0 },
    ))
    .await;
    let cancel = s.next().await;
    assert!(cancel.canceled && cancel.watch_id == 0, "{cancel:?}");
    c.put("foo", "3").await.unwrap();
    s.assert_quiet(300).await;
    // Canceling an unknown watcher answers nothing, as in etcd.
    s.send(watch_request::RequestUnion::CancelRequest(
        WatchCancelRequest { watch_id: 12345 },
    ))
    .await;
    s.assert_quiet(300).await;
}

#[tokio::test]
async fn history_filters_prev_kv_and_future_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("h.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let first = c.put("k", "a").await.unwrap().header.unwrap().revision;
    c.put("k", "b").await.unwrap();
    c.delete("k").await.unwrap();
    let last = c.put("k", "c").await.unwrap().header.unwrap().revision;

    let mut s = Stream::open(&mut c).await;
    s.created(WatchCreateRequest {
        start_revision: first,
        prev_kv: true,
        ..key("k")
    })
    .await;
    let mut events = Vec::new();
    while events.len() < 4 {
        events.extend(s.next().await.events);
    }
    // (type, value, mod_revision, previous value) of each event.
    type Shape = (i32, Vec<u8>, i64, Option<Vec<u8>>);
    let shape: Vec<Shape> = events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap();
            (
                e.r#type,
                kv.value,
                kv.mod_revision,
                e.prev_kv.as_ref().map(|p| p.value.clone()),
            )
        })
        .collect();
    let put = EventType::Put as i32;
    let del = EventType::Delete as i32;
    assert_eq!(
        shape,
        vec![
            (put, b"a".to_vec(), first, None),
            (put, b"b".to_vec(), first + 1, Some(b"a".to_vec())),
            (del, vec![], first + 2, Some(b"b".to_vec())),
            (put, b"c".to_vec(), last, None),
        ]
    );

    // NOPUT from history: only the delete.
    s.created(WatchCreateRequest {
        start_revision: first,
        filters: vec![0],
        ..key("k")
    })
    .await;
    let only = s.next().await;
    assert_eq!(only.events.len(), 1);
    assert_eq!(only.events[0].r#type, del);

    // A future start revision waits for that revision.
    let (_, _) = s
        .created(WatchCreateRequest {
            start_revision: last + 2,
            ..key("k")
        })
        .await;
    c.put("k", "d").await.unwrap();
    let live = s.next().await; // the first watcher's event at last + 1
    assert_eq!(live.events[0].kv.as_ref().unwrap().mod_revision, last + 1);
    s.assert_quiet(300).await;
    c.put("k", "e").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = s.next().await;
        assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, last + 2);
        ids.push(r.watch_id);
    }
    ids.sort();
    assert_eq!(ids, vec![0, 2]);
}

#[tokio::test]
async fn compacted_start_revision_is_canceled_with_compact_revision() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("c.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let mut rev = 0;
    for i in 0..5 {
        rev = c
            .put("k", i.to_string())
            .await
            .unwrap()
            .header
            .unwrap()
            .revision;
    }
    c.kv.compact(CompactionRequest {
        revision: rev - 1,
        physical: true,
    })
    .await
    .unwrap();
    let mut s = Stream::open(&mut c).await;
    let (id, _) = s
        .created(WatchCreateRequest {
            start_revision: 2,
            ..key("k")
        })
        .await;
    let r = s.next().await;
    assert!(r.canceled && !r.created, "{r:?}");
    assert_eq!((r.watch_id, r.compact_revision), (id, rev - 1));
    // From the compacted revision on, the history is there.
    s.created(WatchCreateRequest {
        start_revision: rev - 1,
        ..key("k")
    })
    .await;
    assert_eq!(s.next().await.events.len(), 2);
}

#[tokio::test]
async fn large_responses_are_fragmented_for_watchers_that_ask() {
    let dir = tempfile::tempdir().unwrap();
    // Responses fragment at --max-request-bytes plus etcd's 512 KiB gRPC allowance.
    let etcd = EtcdProcess::start(
        &dir.path().join("f.etcd"),
        &["--max-request-bytes", "20000"],
    )
    .await;
    let mut c = etcd.client().await;
    let value = "x".repeat(10_000);
    let mut first = 0;
    for i in 0..80 {
        let r = c.put(format!("f{i:02}"), value.as_str()).await.unwrap();
        if i == 0 {
            first = r.header.unwrap().revision;
        }
    }
    let mut s = Stream::open(&mut c).await;
    s.created(WatchCreateRequest {
        start_revision: first,
        fragment: true,
        ..prefix("f")
    })
    .await;
    let mut revisions = Vec::new();
    let mut fragments = 0;
    while revisions.len() < 80 {
        let r = s.next().await;
        fragments += r.fragment as usize;
        revisions.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
    }
    assert!(
        fragments > 0,
        "an 800 KB catch-up should have been fragmented"
    );
    assert_eq!(revisions, (first..first + 80).collect::<Vec<_>>());
}

/// Writers on several connections; watchers on several streams created while they write.
/// Every watcher sees each revision of its range once, in order, each transaction whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_watchers_see_ordered_unique_whole_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("cw.etcd"), &[]).await;
    let base = etcd
        .client()
        .await
        .get("x")
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;

    const WRITERS: usize = 4;
    const TXNS: usize = 60;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut c = etcd.client().await;
        writers.push(tokio::spawn(async move {
            for i in 0..TXNS {
                // Two keys per transaction, under one of two prefixes.
                let p = if (w + i) % 2 == 0 { "p" } else { "q" };
                c.kv.txn(TxnRequest {
                    success: vec![
                        put_op(&format!("{p}/{w}/a"), &i.to_string()),
                        put_op(&format!("{p}/{w}/b"), &i.to_string()),
                    ],
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    let total = (WRITERS * TXNS) as i64;

    let mut c = etcd.client().await;
    let mut streams = Vec::new();
    for n in 0..3 {
        tokio::time::sleep(Duration::from_millis(30 * n)).await;
        let mut s = Stream::open(&mut c).await;
        // One watcher from the beginning, one from now, on both prefixes.
        let mut early = Vec::new();
        s.created(WatchCreateRequest {
            start_revision: base + 1,
            ..prefix("p")
        })
        .await;
        let (_, now) = s.created_amid(prefix("q"), &mut early).await;
        streams.push((s, now, early));
    }
    for w in writers {
        w.await.unwrap();
    }
    let last = base + total;

    // What each prefix got, from the store itself.
    let mut by_prefix: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut h = Stream::open(&mut c).await;
    h.created(WatchCreateRequest {
        start_revision: base + 1,
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    })
    .await;
    let mut seen_all = Vec::new();
    while seen_all.len() < 2 * total as usize {
        for e in h.next().await.events {
            let kv = e.kv.unwrap();
            let p = if kv.key.starts_with(b"p/") { "p" } else { "q" };
            seen_all.push(kv.mod_revision);
            if by_prefix.get(p).and_then(|v| v.last()) != Some(&kv.mod_revision) {
                by_prefix.entry(p).or_default().push(kv.mod_revision);
            }
        }
    }
    assert_eq!(*seen_all.last().unwrap(), last);

    for (mut s, now, early) in streams {
        let mut got: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let want_p = by_prefix["p"].clone();
        let want_q: Vec<i64> = by_prefix["q"]
            .iter()
            .copied()
            .filter(|r| *r > now)
            .collect();
        let done = |got: &BTreeMap<i64, Vec<i64>>| {
            got.get(&0).map(Vec::len) == Some(want_p.len())
                && got.get(&1).map(Vec::len).unwrap_or(0) == want_q.len()
        };
        let mut early = early.into_iter();
        while !done(&got) {
            let r = match early.next() {
                Some(r) => r,
                None => s.next().await,
            };
            assert!(!r.events.is_empty(), "{r:?}");
            // Each transaction's two events arrive together.
            for pair in r.events.chunks(2) {
                let revs: Vec<i64> = pair
                    .iter()
                    .map(|e| e.kv.as_ref().unwrap().mod_revision)
                    .collect();
                assert!(
                    revs.len() == 2 && revs[0] == revs[1],
                    "split revision: {revs:?}"
                );
                got.entry(r.watch_id).or_default().push(revs[0]);
            }
        }
        assert_eq!(got[&0], want_p);
        assert_eq!(got.get(&1).cloned().unwrap_or_default(), want_q);
        s.assert_quiet(200).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A client that opens a watch and never reads it, while writers keep going: the server keeps
/// serving other watchers promptly, its memory stays bounded, and when the client finally
/// reads it gets every revision once, in order (caught up from history).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_does_not_hold_up_others_and_catches_up_later() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("s.etcd"), &[]).await;
    let pid = etcd.child.as_ref().unwrap().id();
    let mut c = etcd.client().await;
    let mut live = Stream::open(&mut c).await;
    live.created(prefix("s/")).await;

    const PUTS: i64 = 500;
    const VALUE_BYTES: usize = 64 * 1024;
    let value = "v".repeat(VALUE_BYTES);
    // Writes `PUTS` values, checking the live watcher hears of each at once; returns how much
    // the server's resident memory grew meanwhile, in KiB.
    let write_phase = async |c: &mut Client, live: &mut Stream| {
        let before = rss_kib(pid);
        let mut slowest = Duration::ZERO;
        for i in 0..PUTS {
            let rev = c
                .put(format!("s/{}", i % 10), value.as_str())
                .await
                .unwrap()
                .header
                .unwrap()
                .revision;
            let t = Instant::now();
            let r = live.next_within(5).await;
            slowest = slowest.max(t.elapsed());
            assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, rev);
        }
        assert!(
            slowest < Duration::from_secs(2),
            "live watcher waited {slowest:?}"
        );
        rss_kib(pid).saturating_sub(before)
    };

    // The store and the Raft log grow with the writes; measure that without a stalled reader.
    let growth_alone = write_phase(&mut c, &mut live).await;

    // The stalled reader has its own connection, as a separate client would.
    let mut stalled_client = etcd.client().await;
    let mut stalled = Stream::open(&mut stalled_client).await;
    let (_, start) = stalled.created(prefix("s/")).await;
    let growth_stalled = write_phase(&mut c, &mut live).await;
    let written_kib = PUTS as u64 * VALUE_BYTES as u64 / 1024;
    eprintln!(
        "wrote {written_kib} KiB per phase; server RSS grew {growth_alone} KiB alone, \
         {growth_stalled} KiB with a stalled reader"
    );
    // The stalled stream may hold its outbox (4 MiB) and HTTP/2 buffers, not all it missed.
    assert!(
        growth_stalled < growth_alone + written_kib * 2 / 5,
        "a stalled reader cost {} KiB of the {written_kib} KiB it missed",
        growth_stalled.saturating_sub(growth_alone)
    );

    // Now it reads: everything since its start, once, in order.
    let mut revs = Vec::new();
    while revs.last() != Some(&(start + PUTS)) {
        let r = stalled.next_within(30).await;
        revs.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
    }
    assert_eq!(revs, (start + 1..=start + PUTS).collect::<Vec<_>>());
    // And it is live again.
    let rev = c.put("s/x", "y").await.unwrap().header.unwrap().revision;
    let r = stalled.next().await;
    assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, rev);
}

/// A stalled watcher whose missed history is compacted away is canceled with the compact
/// revision once it reads again, as etcd does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_behind_compaction_is_canceled() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("sc.etcd"), &[]).await;
    let mut stalled_client = etcd.client().await;
    let mut stalled = Stream::open(&mut stalled_client).await;
    let (id, _) = stalled.created(prefix("s/")).await;
    let mut c = etcd.client().await;
    let value = "v".repeat(64 * 1024);
    let mut rev = 0;
    for i in 0..200 {
        rev = c
            .put(format!("s/{}", i % 10), value.as_str())
            .await
            .unwrap()
            .header
            .unwrap()
            .revision;
    }
    c.kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .unwrap();
    let mut last_event_rev = 0;
    loop {
        let r = stalled.next_within(30).await;
        if r.canceled {
            assert_eq!((r.watch_id, r.compact_revision), (id, rev));
            break;
        }
        for e in r.events {
            let m = e.kv.unwrap().mod_revision;
            assert!(m > last_event_rev, "out of order");
            last_event_rev = m;
        }
    }
    assert!(
        last_event_rev < rev,
        "a watcher that got everything would not be canceled"
    );
}
