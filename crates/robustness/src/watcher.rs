//! One watch of every workload key from revision 1, with previous values, recorded response by
//! response. When its member stops answering it moves to the next and resumes after the last
//! revision it received, as a client library does; what it records is what a careful client
//! would have seen. Its progress (the next revision it waits for) is published, for the
//! compactor, which never compacts what it has not received, and for the segment watchers,
//! which open watches from recent past revisions on random members while the run goes on
//! (a watch catching up from history while writes go on is where etcd lost events).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use std::time::Instant;

use etcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};
use etcd_api::mvccpb::event::EventType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{Event, WatchResponse, WatchSegment};
use crate::workload::{PREFIX, client};

/// The next revision the main watch waits for (0 before it started).
#[derive(Clone, Default)]
pub struct Progress(pub Arc<AtomicI64>);

impl Progress {
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn advance(&self, next: i64) {
        self.0.fetch_max(next, Ordering::SeqCst);
    }
}

/// Set to the run's final revision once the clients are done: the watch stops when it has
/// everything up to it.
#[derive(Clone, Default)]
pub struct Target(Arc<AtomicI64>);

impl Target {
    pub fn set(&self, revision: i64) {
        self.0.store(revision, Ordering::SeqCst);
    }

    fn reached(&self, next: i64) -> bool {
        let target = self.0.load(Ordering::SeqCst);
        target > 0 && next > target
    }
}

fn prefix_end() -> Vec<u8> {
    etcd_client::prefix_end(PREFIX.as_bytes())
}

fn to_events(response: &etcd_api::etcdserverpb::WatchResponse) -> Vec<Event> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    response
        .events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap_or_default();
            Event {
                revision: kv.mod_revision,
                key: text(&kv.key),
                value: (e.r#type == EventType::Put as i32).then(|| text(&kv.value)),
                prev_value: e.prev_kv.as_ref().map(|p| text(&p.value)),
            }
        })
        .collect()
}

type WatchStream = tonic::Streaming<etcd_api::etcdserverpb::WatchResponse>;

/// Opens a watch of the workload keys from `start` on `url`; the sender keeps it open.
async fn open(
    url: &str,
    start: i64,
    prev_kv: bool,
) -> Option<(tokio::sync::mpsc::Sender<WatchRequest>, WatchStream)> {
    let mut c = client(url).ok()?;
    let (requests, outgoing) = tokio::sync::mpsc::channel(1);
    requests
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: prefix_end(),
                    start_revision: start,
                    prev_kv,
                    ..WatchCreateRequest::default()
                },
            )),
        })
        .await
        .ok()?;
    let stream = c
        .watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .ok()?
        .into_inner();
    Some((requests, stream))
}

/// Watches from recent past revisions on random members until `deadline`, each for up to a
/// second.
pub async fn watch_segments(
    endpoints: Vec<String>,
    progress: Progress,
    seed: u64,
    deadline: Instant,
) -> Vec<WatchSegment> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut segments = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        let next = progress.get();
        if next < 3 {
            continue;
        }
        let start = (next - rng.random_range(0..200)).max(2);
        let member = rng.random_range(0..endpoints.len());
        // With previous values and without: a member must send them when asked, and only then.
        let prev_kv = rng.random_bool(0.5);
        let Some((requests, mut stream)) = open(&endpoints[member], start, prev_kv).await else {
            continue;
        };
        let mut segment = WatchSegment {
            start_revision: start,
            member,
            responses: Vec::new(),
            compacted: None,
            prev_kv,
        };
        let until = Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(Some(response))) =
            tokio::time::timeout_at(until.into(), stream.message()).await
        {
            if response.compact_revision > 0 {
                segment.compacted = Some(response.compact_revision);
                break;
            }
            if response.canceled {
                break;
            }
            if !response.events.is_empty() {
                segment.responses.push(WatchResponse {
                    header_revision: response.header.map_or(0, |h| h.revision),
                    events: to_events(&response),
                });
            }
        }
        drop(requests);
        segments.push(segment);
    }
    segments
}

/// The main watch's record: its responses with events, and the progress notifications it
/// asked for (see [`crate::history::History::progress`]).
pub struct MainWatch {
    pub responses: Vec<WatchResponse>,
    pub progress: Vec<(usize, i64)>,
}

/// One watch of every workload key from revision 1 until `target`, reopened on the next
/// member whenever its stream fails. Every 100 ms it asks for a progress notification, which
/// promises that every event up to its revision has been sent.
pub async fn watch_all(
    endpoints: Vec<String>,
    target: Target,
    progress: Progress,
    ask_progress: bool,
) -> MainWatch {
    let mut recorded = MainWatch {
        responses: Vec::new(),
        progress: Vec::new(),
    };
    let mut next = 1;
    let mut at = 0;
    while !target.reached(next) {
        let opened = open(&endpoints[at % endpoints.len()], next, true).await;
        if let Some((requests, mut stream)) = opened {
            let mut created = false;
            // Asks for a progress notification every 100 ms, under load too: a notification
            // interleaved with events is where one could run ahead of them.
            let mut ask = tokio::time::interval(Duration::from_millis(100));
            loop {
                if target.reached(next) {
                    return recorded;
                }
                let message = tokio::select! {
                    message = stream.message() => message,
                    // Also the time to look at the target again.
                    _ = ask.tick() => {
                        if ask_progress {
                            // A full request queue just means one is already on its way.
                            let _ = requests.try_send(WatchRequest {
                                request_union: Some(
                                    watch_request::RequestUnion::ProgressRequest(
                                        etcd_api::etcdserverpb::WatchProgressRequest {},
                                    ),
                                ),
                            });
                        }
                        continue;
                    }
                };
                let response = match message {
                    Ok(Some(response)) => response,
                    _ => break,
                };
                if response.canceled {
                    break;
                }
                if response.created {
                    created = true;
                    continue;
                }
                if response.events.is_empty() {
                    // A progress notification (etcd sends one only once the watcher has
                    // caught up); one before the watch is created says nothing about it.
                    let revision = response.header.map_or(0, |h| h.revision);
                    if created && revision > 0 && response.compact_revision == 0 {
                        recorded.progress.push((recorded.responses.len(), revision));
                    }
                    continue;
                }
                let events = to_events(&response);
                if let Some(last) = events.last() {
                    next = next.max(last.revision + 1);
                    progress.advance(next);
                }
                recorded.responses.push(WatchResponse {
                    header_revision: response.header.map_or(0, |h| h.revision),
                    events,
                });
            }
            drop(requests);
        }
        at += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recorded
}
