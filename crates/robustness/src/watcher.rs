//! One watch of every workload key from revision 1, with previous values, recorded response by
//! response. When its member stops answering it moves to the next and resumes after the last
//! revision it received, as a client library does; what it records is what a careful client
//! would have seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_api::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};
use etcd_api::mvccpb::event::EventType;

use crate::history::{Event, WatchResponse};
use crate::workload::{PREFIX, client};

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
    let mut end = PREFIX.as_bytes().to_vec();
    *end.last_mut().expect("a prefix") += 1;
    end
}

pub async fn watch_all(endpoints: Vec<String>, target: Target) -> Vec<WatchResponse> {
    let mut recorded = Vec::new();
    let mut next = 1;
    let mut at = 0;
    while !target.reached(next) {
        let Ok(mut c) = client(&endpoints[at % endpoints.len()]) else {
            at += 1;
            continue;
        };
        let (requests, outgoing) = tokio::sync::mpsc::channel(1);
        let _ = requests
            .send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: PREFIX.as_bytes().to_vec(),
                        range_end: prefix_end(),
                        start_revision: next,
                        prev_kv: true,
                        ..WatchCreateRequest::default()
                    },
                )),
            })
            .await;
        let opened = c
            .watch
            .watch(tokio_stream::wrappers::ReceiverStream::new(outgoing))
            .await;
        if let Ok(stream) = opened {
            let mut stream = stream.into_inner();
            loop {
                if target.reached(next) {
                    return recorded;
                }
                let message =
                    tokio::time::timeout(Duration::from_millis(200), stream.message()).await;
                let response = match message {
                    Err(_) => continue, // nothing yet; look at the target again
                    Ok(Ok(Some(response))) => response,
                    Ok(_) => break,
                };
                if response.canceled {
                    break;
                }
                if response.events.is_empty() {
                    continue;
                }
                let events: Vec<Event> = response
                    .events
                    .iter()
                    .map(|e| {
                        let kv = e.kv.clone().unwrap_or_default();
                        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                        Event {
                            revision: kv.mod_revision,
                            key: text(&kv.key),
                            value: (e.r#type == EventType::Put as i32).then(|| text(&kv.value)),
                            prev_value: e.prev_kv.as_ref().map(|p| text(&p.value)),
                        }
                    })
                    .collect();
                if let Some(last) = events.last() {
                    next = next.max(last.revision + 1);
                }
                recorded.push(WatchResponse {
                    header_revision: response.header.map_or(0, |h| h.revision),
                    events,
                });
            }
        }
        drop(requests);
        at += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recorded
}
