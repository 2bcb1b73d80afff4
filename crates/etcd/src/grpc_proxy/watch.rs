//! The Watch service through the proxy, with watches coalesced: client watches of the same
//! range share one watch on a member (a "broadcast") when their start revisions allow it, so a
//! thousand clients watching one prefix cost the member one watcher, as with etcd's proxy.
//!
//! A broadcast watches its range on a member with `prev_kv` and progress notifications, and
//! hands each response to its receivers, each taking what it asked for: events from its own
//! next revision on (never one twice, never one revision split), its filters, `prev_kv` only if
//! asked, progress notifications only if asked. A client watch joins a broadcast when
//! - it watches from now and the broadcast does too or is already running (it then sees
//!   events after the broadcast's latest revision, as a watch on a member sees events after
//!   that member's revision), or
//! - it watches from revision `S` and the broadcast has delivered nothing at or after `S` yet.
//!
//! Otherwise it gets a broadcast of its own. A broadcast whose member connection breaks
//! resumes from its next revision on the next member, so its clients see no gap; a compaction
//! or a cancellation by the member is passed to every receiver. A client that does not read its
//! answers is not waited for: its queue is bounded, and when it is full the client's stream is
//! ended with an error (clients resume from their last revision), so it never stalls others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_api::etcdserverpb::kv_client::KvClient;
use etcd_api::etcdserverpb::watch_client::WatchClient;
use etcd_api::etcdserverpb::watch_server::Watch;
use etcd_api::etcdserverpb::{
    RangeRequest, ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use etcd_api::mvccpb::event::EventType;
use tokio::sync::{Notify, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::metrics::ProxyMetrics;
use super::namespace::Namespace;
use super::upstream::{Upstream, copy_metadata, outgoing, upstream_call, upstream_client};

/// Answers queued for one client stream before it counts as too slow.
const CLIENT_QUEUE: usize = 1024;
/// Longest wait before a broadcast tries a member again.
const MAX_RESUME_BACKOFF: Duration = Duration::from_secs(5);

/// etcd's `mvcc.ErrWatcherDuplicateID`.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Answer = Result<WatchResponse, Status>;

/// Where one client stream's answers go.
#[derive(Clone)]
struct ClientSink {
    answers: mpsc::Sender<Answer>,
    /// Ends the client's stream with an error, ahead of its queued answers.
    abort: mpsc::Sender<Answer>,
}

impl ClientSink {
    /// Queues `answer`; false when the client is gone or too slow (its stream is then ended).
    fn deliver(&self, answer: WatchResponse) -> bool {
        match self.answers.try_send(Ok(answer)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = self.abort.try_send(Err(Status::resource_exhausted(
                    "grpc-proxy: the watch client fell too far behind reading its events; \
                     reconnect and resume from the last revision received",
                )));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// One client watch, as a receiver of a broadcast.
struct Receiver {
    watch_id: i64,
    /// The first revision this watch has not been given; 0 until the broadcast knows it.
    next_rev: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress: bool,
    created_sent: bool,
    sink: ClientSink,
}

impl Receiver {
    fn new(create: &WatchCreateRequest, watch_id: i64, sink: ClientSink) -> Receiver {
        let filter = |f: i32| create.filters.contains(&f);
        Receiver {
            watch_id,
            next_rev: create.start_revision,
            no_put: filter(0),
            no_delete: filter(1),
            prev_kv: create.prev_kv,
            progress: create.progress_notify,
            created_sent: false,
            sink,
        }
    }

    fn created(&mut self, header: &ResponseHeader) -> bool {
        self.created_sent = true;
        self.sink.deliver(WatchResponse {
            header: Some(*header),
            watch_id: self.watch_id,
            created: true,
            ..WatchResponse::default()
        })
    }

    /// Hands this watch its part of a broadcast response (events or a progress notification);
    /// false when the client is gone or too slow.
    fn send(&mut self, response: &WatchResponse, header: &ResponseHeader) -> bool {
        if response.events.is_empty() {
            if !self.progress || header.revision + 1 < self.next_rev {
                return true;
            }
            self.next_rev = header.revision + 1;
            return self.sink.deliver(WatchResponse {
                header: Some(*header),
                watch_id: self.watch_id,
                ..WatchResponse::default()
            });
        }
        let mut events = Vec::with_capacity(response.events.len());
        let mut last = None;
        for event in &response.events {
            let revision = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
            if revision < self.next_rev {
                continue;
            }
            last = Some(revision);
            let is_put = event.r#type == EventType::Put as i32;
            if (is_put && self.no_put) || (!is_put && self.no_delete) {
                continue;
            }
            let mut event = event.clone();
            if !self.prev_kv {
                event.prev_kv = None;
            }
            events.push(event);
        }
        if let Some(last) = last {
            self.next_rev = last + 1;
        }
        if events.is_empty() {
            return true;
        }
        self.sink.deliver(WatchResponse {
            header: Some(*header),
            watch_id: self.watch_id,
            events,
            ..WatchResponse::default()
        })
    }
}

type RangeKey = (Vec<u8>, Vec<u8>);

struct Broadcast {
    range: RangeKey,
    state: Mutex<BroadcastState>,
    stop: Notify,
}

#[derive(Default)]
struct BroadcastState {
    /// The first revision not yet delivered; 0 for a watch from now that the member has not
    /// confirmed yet.
    next_rev: i64,
    created: bool,
    header: ResponseHeader,
    receivers: HashMap<u64, Receiver>,
    stopped: bool,
}

impl BroadcastState {
    /// Where a watch starting at `start` (0: now) would begin in this broadcast, if it can
    /// join it.
    fn joinable(&self, start: i64) -> Option<i64> {
        if self.stopped {
            return None;
        }
        match start {
            0 if self.created => Some(self.next_rev),
            0 if self.next_rev == 0 => Some(0),
            0 => None,
            s if self.next_rev != 0 && self.next_rev <= s => Some(s),
            _ => None,
        }
    }
}

/// A client watch's place in the hub.
pub struct Registration {
    broadcast: Arc<Broadcast>,
    receiver: u64,
}

pub struct WatchHub {
    upstream: Arc<Upstream>,
    namespace: Namespace,
    metrics: Arc<ProxyMetrics>,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    ranges: HashMap<RangeKey, Vec<Arc<Broadcast>>>,
    next_receiver: u64,
}

impl WatchHub {
    pub fn new(
        upstream: Arc<Upstream>,
        namespace: Namespace,
        metrics: Arc<ProxyMetrics>,
    ) -> Arc<WatchHub> {
        Arc::new(WatchHub {
            upstream,
            namespace,
            metrics,
            state: Mutex::new(HubState::default()),
        })
    }

    /// Adds a client watch of `create` (already namespaced), joining a broadcast if one fits.
    fn add(
        self: &Arc<Self>,
        create: &WatchCreateRequest,
        mut receiver: Receiver,
        metadata: &MetadataMap,
    ) -> Registration {
        let range = (create.key.clone(), create.range_end.clone());
        let mut hub = lock(&self.state);
        let id = hub.next_receiver;
        hub.next_receiver += 1;
        for broadcast in hub.ranges.get(&range).into_iter().flatten() {
            let mut state = lock(&broadcast.state);
            let Some(next_rev) = state.joinable(create.start_revision) else {
                continue;
            };
            receiver.next_rev = next_rev;
            if state.created {
                let mut header = state.header;
                if create.start_revision == 0 {
                    header.revision = next_rev - 1;
                }
                receiver.created(&header);
            }
            state.receivers.insert(id, receiver);
            self.metrics.watchers_coalescing.inc();
            return Registration {
                broadcast: broadcast.clone(),
                receiver: id,
            };
        }
        let broadcast = Arc::new(Broadcast {
            range: range.clone(),
            state: Mutex::new(BroadcastState {
                next_rev: create.start_revision,
                receivers: HashMap::from([(id, receiver)]),
                ..BroadcastState::default()
            }),
            stop: Notify::new(),
        });
        hub.ranges.entry(range).or_default().push(broadcast.clone());
        let mut forwarded = MetadataMap::new();
        copy_metadata(metadata, &mut forwarded);
        tokio::spawn(self.clone().run(broadcast.clone(), forwarded));
        Registration {
            broadcast,
            receiver: id,
        }
    }

    /// Takes a client watch out; the header to answer its cancellation with.
    fn remove(&self, registration: &Registration) -> ResponseHeader {
        let mut hub = lock(&self.state);
        let broadcast = &registration.broadcast;
        let mut state = lock(&broadcast.state);
        let header = state.header;
        if state.receivers.remove(&registration.receiver).is_some() {
            if state.receivers.is_empty() {
                if !state.stopped {
                    state.stopped = true;
                    drop(state);
                    forget(&mut hub, broadcast);
                    broadcast.stop.notify_one();
                }
            } else {
                self.metrics.watchers_coalescing.dec();
            }
        }
        header
    }

    /// The revision up to which every one of `registrations` has been given all events.
    fn progress(&self, registrations: &[&Registration]) -> Option<ResponseHeader> {
        let mut lowest: Option<ResponseHeader> = None;
        for registration in registrations {
            let state = lock(&registration.broadcast.state);
            let Some(receiver) = state.receivers.get(&registration.receiver) else {
                continue;
            };
            if !state.created || receiver.next_rev == 0 {
                return None;
            }
            let revision = receiver.next_rev - 1;
            if lowest.as_ref().is_none_or(|h| revision < h.revision) {
                lowest = Some(ResponseHeader {
                    revision,
                    ..state.header
                });
            }
        }
        lowest
    }

    /// A broadcast's life: watch its range on a member, hand out what comes, resume on
    /// another connection when one breaks, until its last receiver leaves or the member
    /// cancels it.
    async fn run(self: Arc<Self>, broadcast: Arc<Broadcast>, metadata: MetadataMap) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let next_rev = {
                let state = lock(&broadcast.state);
                if state.stopped {
                    return;
                }
                state.next_rev
            };
            let (requests, outgoing_requests) = mpsc::channel(1);
            let create = WatchCreateRequest {
                key: broadcast.range.0.clone(),
                range_end: broadcast.range.1.clone(),
                start_revision: next_rev,
                prev_kv: true,
                progress_notify: true,
                ..WatchCreateRequest::default()
            };
            let _ = requests.try_send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            });
            let mut request = Request::new(ReceiverStream::new(outgoing_requests));
            copy_metadata(&metadata, request.metadata_mut());
            let (at, mut client) = upstream_client!(self.upstream, WatchClient);
            let call = client.watch(request);
            let opened = tokio::select! {
                opened = call => opened,
                _ = broadcast.stop.notified() => return,
            };
            self.upstream.observe(at, &opened);
            if let Ok(response) = opened {
                let mut inbound = response.into_inner();
                loop {
                    let message = tokio::select! {
                        message = inbound.message() => message,
                        _ = broadcast.stop.notified() => return,
                    };
                    match message {
                        Ok(Some(response)) => {
                            backoff = Duration::from_millis(100);
                            if !self.fan_out(&broadcast, response) {
                                return;
                            }
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            // Keeps the request stream open until here: dropping it would end the watch.
            drop(requests);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = broadcast.stop.notified() => return,
            }
            backoff = (backoff * 2).min(MAX_RESUME_BACKOFF);
        }
    }

    /// Hands one member response to the broadcast's receivers; false when the broadcast ends.
    fn fan_out(&self, broadcast: &Arc<Broadcast>, mut response: WatchResponse) -> bool {
        for event in &mut response.events {
            self.namespace.event(event);
        }
        let mut state = lock(&broadcast.state);
        if let Some(header) = &response.header {
            state.header = *header;
        }
        let header = state.header;
        let mut gone = Vec::new();
        if response.canceled || response.compact_revision != 0 {
            // Compacted, or refused by the member (no permission, no leader): every receiver
            // hears it and the broadcast ends.
            for receiver in state.receivers.values() {
                receiver.sink.deliver(WatchResponse {
                    header: Some(header),
                    watch_id: receiver.watch_id,
                    created: !receiver.created_sent,
                    canceled: true,
                    compact_revision: response.compact_revision,
                    cancel_reason: response.cancel_reason.clone(),
                    ..WatchResponse::default()
                });
            }
            let coalesced = state.receivers.len().saturating_sub(1) as i64;
            self.metrics.watchers_coalescing.sub(coalesced);
            state.receivers.clear();
            state.stopped = true;
            drop(state);
            forget(&mut lock(&self.state), broadcast);
            return false;
        }
        if response.created {
            if !state.created {
                state.created = true;
                if state.next_rev == 0 {
                    state.next_rev = header.revision + 1;
                }
                let next_rev = state.next_rev;
                for (id, receiver) in state.receivers.iter_mut() {
                    if receiver.next_rev == 0 {
                        receiver.next_rev = next_rev;
                    }
                    if !receiver.created_sent && !receiver.created(&header) {
                        gone.push(*id);
                    }
                }
            }
            // A resumed watch's created answer is the proxy's own business.
        } else {
            match response.events.last().and_then(|e| e.kv.as_ref()) {
                Some(kv) => state.next_rev = state.next_rev.max(kv.mod_revision + 1),
                None => state.next_rev = state.next_rev.max(header.revision + 1),
            }
            let receivers = state.receivers.len() as u64;
            if !response.events.is_empty() && receivers > 1 {
                self.metrics.events_coalescing.inc_by(receivers - 1);
            }
            for (id, receiver) in state.receivers.iter_mut() {
                if !receiver.send(&response, &header) {
                    gone.push(*id);
                }
            }
        }
        for id in gone {
            // Too slow or gone: its client stream is ending, which removes the rest of it.
            if state.receivers.remove(&id).is_some() && !state.receivers.is_empty() {
                self.metrics.watchers_coalescing.dec();
            }
        }
        if state.receivers.is_empty() {
            state.stopped = true;
            drop(state);
            forget(&mut lock(&self.state), broadcast);
            return false;
        }
        true
    }
}

/// Takes `broadcast` out of the hub's index (the hub lock held by the caller).
fn forget(hub: &mut HubState, broadcast: &Arc<Broadcast>) {
    if let Some(list) = hub.ranges.get_mut(&broadcast.range) {
        list.retain(|b| !Arc::ptr_eq(b, broadcast));
        if list.is_empty() {
            hub.ranges.remove(&broadcast.range);
        }
    }
}

pub struct WatchProxy {
    pub hub: Arc<WatchHub>,
}

/// etcd's proxy refuses a range whose end is not after its key (other than "\0").
fn valid_range(key: &[u8], end: &[u8]) -> bool {
    end.is_empty() || end == [0] || end > key
}

struct ClientWatches {
    hub: Arc<WatchHub>,
    metadata: MetadataMap,
    sink: ClientSink,
    watches: HashMap<i64, Registration>,
    next_id: i64,
}

impl ClientWatches {
    async fn create(&mut self, mut create: WatchCreateRequest) {
        let refuse = |reason: String| WatchResponse {
            header: Some(ResponseHeader::default()),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..WatchResponse::default()
        };
        if !valid_range(&create.key, &create.range_end) {
            self.sink.deliver(refuse(String::new()));
            return;
        }
        self.hub.namespace.watch_create(&mut create);
        // The member checks read permission when a watch is created on it, but a joined
        // broadcast was created with someone else's token: check this client's, as etcd's
        // proxy does, with a one-key serializable count.
        let (key, range_end) = if create.key.is_empty() {
            (vec![0], vec![0])
        } else {
            (create.key.clone(), create.range_end.clone())
        };
        let check = RangeRequest {
            key,
            range_end,
            serializable: true,
            count_only: true,
            limit: 1,
            ..RangeRequest::default()
        };
        let checked = upstream_call!(
            self.hub.upstream,
            KvClient,
            range(outgoing(&self.metadata, check))
        );
        if let Err(status) = checked {
            self.sink.deliver(refuse(status.message().to_string()));
            return;
        }
        let watch_id = if create.watch_id != 0 {
            if self.watches.contains_key(&create.watch_id) {
                self.sink.deliver(refuse(DUPLICATE_ID.into()));
                return;
            }
            create.watch_id
        } else {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let receiver = Receiver::new(&create, watch_id, self.sink.clone());
        let registration = self.hub.add(&create, receiver, &self.metadata);
        self.watches.insert(watch_id, registration);
    }

    fn cancel(&mut self, watch_id: i64) {
        if let Some(registration) = self.watches.remove(&watch_id) {
            let header = self.hub.remove(&registration);
            self.sink.deliver(WatchResponse {
                header: Some(header),
                watch_id,
                canceled: true,
                ..WatchResponse::default()
            });
        }
    }

    async fn progress(&mut self) {
        let registrations: Vec<&Registration> = self.watches.values().collect();
        let header = match self.hub.progress(&registrations) {
            Some(header) if !registrations.is_empty() => Some(header),
            // No watch yet: the member's current revision, as a member answers.
            _ if registrations.is_empty() => {
                let request = RangeRequest {
                    key: vec![0],
                    serializable: true,
                    count_only: true,
                    ..RangeRequest::default()
                };
                let answer = upstream_call!(
                    self.hub.upstream,
                    KvClient,
                    range(outgoing(&self.metadata, request))
                );
                answer.ok().and_then(|a| a.into_inner().header)
            }
            // A watch not yet running on a member: nothing true to say yet.
            _ => None,
        };
        if let Some(header) = header {
            self.sink.deliver(WatchResponse {
                header: Some(header),
                watch_id: -1,
                ..WatchResponse::default()
            });
        }
    }

    fn close(&mut self) {
        for registration in self.watches.values() {
            self.hub.remove(registration);
        }
        self.watches.clear();
    }
}

#[tonic::async_trait]
impl Watch for WatchProxy {
    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<BoxStream<WatchResponse>>, Status> {
        let (metadata, _, mut inbound) = request.into_parts();
        let (answers, answers_out) = mpsc::channel(CLIENT_QUEUE);
        let (abort, abort_out) = mpsc::channel(1);
        let mut client = ClientWatches {
            hub: self.hub.clone(),
            metadata,
            sink: ClientSink { answers, abort },
            watches: HashMap::new(),
            next_id: 0,
        };
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = inbound.message() => message,
                    _ = client.sink.answers.closed() => break,
                };
                let Ok(Some(request)) = message else { break };
                match request.request_union {
                    Some(watch_request::RequestUnion::CreateRequest(create)) => {
                        client.create(create).await
                    }
                    Some(watch_request::RequestUnion::CancelRequest(cancel)) => {
                        client.cancel(cancel.watch_id)
                    }
                    Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                        client.progress().await
                    }
                    None => {}
                }
            }
            client.close();
        });
        let answers = ReceiverStream::new(answers_out).merge(ReceiverStream::new(abort_out));
        Ok(Response::new(Box::pin(answers)))
    }
}
