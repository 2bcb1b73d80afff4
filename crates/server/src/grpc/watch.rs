//! The Watch service: one bidirectional stream carries many watchers.
//!
//! Each stream has a request task (create, cancel, progress requests, and the periodic
//! progress tick) and a response stream that drains the stream's outbox in the hub, filling
//! headers and splitting large responses for watchers that asked for `fragment`. The hub
//! (`crate::watch`) decides what goes out and in which order.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_api::etcdserverpb::watch_server::Watch;
use etcd_api::etcdserverpb::{WatchRequest, WatchResponse, watch_request};
use futures::Stream;
use prost::Message as _;
use tokio::task::AbortHandle;
use tonic::{Response, Status, Streaming};

use super::access;
use crate::auth::AuthError;
use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::watch::{StreamHandle, WatchHub};

pub struct WatchService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(
        &self,
        request: tonic::Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>>, Status>
    {
        let hub = self.server.watch_hub.clone();
        // Who opened the stream: its token, or its client certificate's name.
        let metadata = request.metadata().clone();
        let mut extensions = tonic::Extensions::new();
        if let Some(cn) = request.extensions().get::<access::ClientCommonName>() {
            extensions.insert(cn.clone());
        }
        let stream = hub.open_stream();
        let interval = with_jitter(hub.config().effective_progress_interval(), stream.id);
        let requests = tokio::spawn(serve_requests(
            self.server.clone(),
            (metadata, extensions),
            stream.clone(),
            request.into_inner(),
            interval,
        ));
        let output = WatchOutput {
            server: self.server.clone(),
            hub: hub.clone(),
            fragment_bytes: hub.config().fragment_bytes,
            stream,
            fragments: VecDeque::new(),
            requests: requests.abort_handle(),
        };
        Ok(Response::new(Box::pin(output)))
    }
}

/// Control responses a stream may have queued beyond the outbox's event limit before the
/// request loop stops reading requests (etcd's ctrlStreamBufLen).
const CONTROL_SLACK: usize = 16;

/// Reads the client's requests until it closes its side; runs the progress ticker until the
/// response stream goes away (which aborts this task).
async fn serve_requests(
    server: Arc<EtcdServer>,
    opener: (tonic::metadata::MetadataMap, tonic::Extensions),
    stream: StreamHandle,
    mut requests: Streaming<WatchRequest>,
    progress_interval: Duration,
) {
    let hub = server.watch_hub.clone();
    let queued_max = hub.config().stream_responses_max + CONTROL_SLACK;
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + progress_interval,
        progress_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reading = true;
    loop {
        tokio::select! {
            msg = requests.message(), if reading => match msg {
                Ok(Some(req)) => {
                    // A client that sends requests but does not read answers waits here.
                    stream.queue.wait_until_below(queued_max).await;
                    let opener = access::RequestParts {
                        metadata: &opener.0,
                        extensions: &opener.1,
                    };
                    handle_request(&server, &opener, &stream, req);
                }
                // The client closed its sending side; it may still be reading, as in etcd.
                Ok(None) => reading = false,
                Err(status) => {
                    tracing::debug!(error = %status, "watch stream receive failed; closing it");
                    hub.close_stream(&stream);
                    return;
                }
            },
            _ = ticker.tick() => hub.progress_tick(&stream),
        }
    }
}

fn handle_request(
    server: &EtcdServer,
    opener: &access::RequestParts<'_>,
    stream: &StreamHandle,
    req: WatchRequest,
) {
    let hub = &server.watch_hub;
    match req.request_union {
        Some(watch_request::RequestUnion::CreateRequest(create)) => {
            // Checked at creation with the stream's token, as etcd (its reasons as texts).
            let permitted = access::caller(server, opener).and_then(|caller| {
                access::check(server, &caller, |a| {
                    a.range(&etcd_api::etcdserverpb::RangeRequest {
                        key: create.key.clone(),
                        range_end: create.range_end.clone(),
                        ..Default::default()
                    })
                })
            });
            match permitted {
                Ok(()) => hub.create(stream, &create),
                Err(ServerError::Auth(
                    e @ (AuthError::InvalidAuthToken
                    | AuthError::AuthOldRevision
                    | AuthError::UserEmpty),
                )) => hub.refuse_create(stream, &e.to_string()),
                Err(_) => hub.refuse_create(stream, &AuthError::PermissionDenied.to_string()),
            }
        }
        Some(watch_request::RequestUnion::CancelRequest(cancel)) => {
            hub.cancel(stream, cancel.watch_id);
        }
        Some(watch_request::RequestUnion::ProgressRequest(_)) => hub.progress(stream),
        // etcd ignores requests it does not understand rather than end the stream.
        None => {}
    }
}

/// etcd adds up to a tenth of the interval at random, so streams opened together do not
/// notify together.
fn with_jitter(interval: Duration, seed: u64) -> Duration {
    let tenth_ms = (interval.as_millis() / 10).max(1) as u64;
    let random = std::collections::hash_map::RandomState::new().hash_one(seed);
    interval + Duration::from_millis(random % tenth_ms)
}

/// The response side of one Watch stream. Dropping it (the client went away) closes the
/// stream in the hub and stops its request task.
struct WatchOutput {
    server: Arc<EtcdServer>,
    hub: Arc<WatchHub>,
    stream: StreamHandle,
    fragment_bytes: usize,
    fragments: VecDeque<WatchResponse>,
    requests: AbortHandle,
}

impl Stream for WatchOutput {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(next) = self.fragments.pop_front() {
            return Poll::Ready(Some(Ok(next)));
        }
        let out = match self.stream.queue.poll_pop(cx) {
            Poll::Ready(Some(out)) => out,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let mut response = out.response;
        response.header = self.server.header(out.header_revision);
        if out.fragment {
            let mut parts = split_fragments(response, self.fragment_bytes);
            let first = parts.pop_front();
            self.fragments = parts;
            return Poll::Ready(first.map(Ok));
        }
        Poll::Ready(Some(Ok(response)))
    }
}

impl Drop for WatchOutput {
    fn drop(&mut self) {
        self.requests.abort();
        self.hub.close_stream(&self.stream);
    }
}

/// etcd's fragmenting: a response of at least `max_bytes` with two or more events is sent as
/// several, each as full as it can be below `max_bytes` (but never empty), all but the last
/// marked `fragment`.
fn split_fragments(response: WatchResponse, max_bytes: usize) -> VecDeque<WatchResponse> {
    if response.encoded_len() < max_bytes || response.events.len() < 2 {
        return VecDeque::from([response]);
    }
    let mut template = response;
    let mut events = std::mem::take(&mut template.events).into_iter().peekable();
    template.fragment = true;
    let mut parts = VecDeque::new();
    while events.peek().is_some() {
        let mut part = template.clone();
        while let Some(ev) = events.peek() {
            // Size with this event added: the event and its field tag and length prefix.
            let added = ev.encoded_len();
            let projected =
                part.encoded_len() + 1 + prost::encoding::encoded_len_varint(added as u64) + added;
            if !part.events.is_empty() && projected >= max_bytes {
                break;
            }
            if let Some(ev) = events.next() {
                part.events.push(ev);
            }
        }
        if events.peek().is_none() {
            part.fragment = false;
        }
        parts.push_back(part);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::mvccpb::{Event, KeyValue};

    fn event(key: &str, value_len: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: key.into(),
                value: vec![b'x'; value_len],
                mod_revision: 2,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn small_or_single_event_responses_are_not_split() {
        let small = WatchResponse {
            events: vec![event("a", 10), event("b", 10)],
            ..Default::default()
        };
        assert_eq!(
            split_fragments(small.clone(), 1000),
            VecDeque::from([small])
        );
        let single = WatchResponse {
            events: vec![event("a", 5000)],
            ..Default::default()
        };
        assert_eq!(
            split_fragments(single.clone(), 1000),
            VecDeque::from([single])
        );
    }

    #[test]
    fn large_responses_split_in_order_below_the_limit() {
        let events: Vec<Event> = (0..10).map(|i| event(&format!("k{i}"), 300)).collect();
        let response = WatchResponse {
            watch_id: 7,
            events: events.clone(),
            ..Default::default()
        };
        let parts = split_fragments(response, 1000);
        assert!(parts.len() >= 4, "{} parts", parts.len());
        let mut rejoined = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.watch_id, 7);
            assert_eq!(part.fragment, i + 1 < parts.len());
            assert!(!part.events.is_empty());
            assert!(part.events.len() == 1 || part.encoded_len() < 1000);
            rejoined.extend(part.events.iter().cloned());
        }
        assert_eq!(rejoined, events);
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        let base = Duration::from_secs(600);
        for seed in 0..100 {
            let d = with_jitter(base, seed);
            assert!(d >= base && d < base + Duration::from_secs(60));
        }
    }
}
