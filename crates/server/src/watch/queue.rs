//! One watch stream's outbox: the responses waiting for the client, bounded in count and
//! bytes. The hub pushes (never waiting); the gRPC stream pops as the client's HTTP/2 flow
//! control lets it send.
//!
//! Event responses are refused when the outbox is full: the hub then moves that watcher to
//! the unsynced set, and it catches up from the store's history once the client reads again.
//! Control responses (created, canceled, progress) are always accepted; their producer, the
//! stream's request loop, waits for room before handling the next request, which bounds them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use etcd_api::etcdserverpb::WatchResponse;
use prost::Message as _;

use super::SyncSignal;

/// A response waiting to be sent. The header is filled at send time (it carries the Raft
/// term, which the hub does not know).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub response: WatchResponse,
    /// The revision the header will carry.
    pub header_revision: i64,
    /// The watcher asked for large responses to be split (`fragment`).
    pub fragment: bool,
}

impl Outgoing {
    /// Events or a progress notification, as opposed to a created/canceled answer.
    fn is_update(&self) -> bool {
        !self.response.created && !self.response.canceled
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub responses_max: usize,
    pub bytes_max: usize,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<(Outgoing, usize)>,
    bytes: usize,
    waker: Option<Waker>,
    closed: bool,
    /// A watcher of this stream could not be served because the outbox was full; wake the
    /// catch-up thread once it drains.
    starved: bool,
}

pub struct StreamQueue {
    inner: Mutex<Inner>,
    limits: QueueLimits,
    /// Signalled when a response leaves, for the request loop waiting for room.
    room: tokio::sync::Notify,
    sync: Arc<SyncSignal>,
}

impl StreamQueue {
    pub(crate) fn new(limits: QueueLimits, sync: Arc<SyncSignal>) -> StreamQueue {
        StreamQueue {
            inner: Mutex::new(Inner::default()),
            limits,
            room: tokio::sync::Notify::new(),
            sync,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event response unless the outbox is full (a lone response always fits, so
    /// one larger than the byte limit still goes out). Returns false if it was refused.
    pub(crate) fn try_push_events(&self, out: Outgoing) -> bool {
        let size = out.response.encoded_len();
        let mut inner = self.lock();
        if inner.closed {
            return true; // Nobody will read it; the watcher goes with the stream.
        }
        let full = inner.items.len() >= self.limits.responses_max
            || (!inner.items.is_empty() && inner.bytes + size > self.limits.bytes_max);
        if full {
            inner.starved = true;
            return false;
        }
        Self::push(&mut inner, out, size);
        true
    }

    /// Queues a control response (created, canceled, progress): always accepted.
    pub(crate) fn push_control(&self, out: Outgoing) {
        let size = out.response.encoded_len();
        let mut inner = self.lock();
        if !inner.closed {
            Self::push(&mut inner, out, size);
        }
    }

    fn push(inner: &mut Inner, out: Outgoing, size: usize) {
        inner.items.push_back((out, size));
        inner.bytes += size;
        if let Some(w) = inner.waker.take() {
            w.wake();
        }
    }

    /// Whether the catch-up thread should send this stream more history now: at most half
    /// full, so a reader that keeps up is not fed one response at a time.
    pub(crate) fn has_catch_up_room(&self) -> bool {
        let mut inner = self.lock();
        let room = inner.items.len() <= self.limits.responses_max / 2
            && inner.bytes <= self.limits.bytes_max / 2;
        if !room {
            inner.starved = true;
        }
        room
    }

    /// Drops the queued events and progress notifications of one watcher (it was canceled);
    /// its created answer stays, so the client still hears of it before the cancel.
    pub(crate) fn remove_events_of(&self, watch_id: i64) {
        let mut inner = self.lock();
        let mut removed = 0;
        inner.items.retain(|(out, size)| {
            let drop = out.response.watch_id == watch_id && out.is_update();
            if drop {
                removed += size;
            }
            !drop
        });
        inner.bytes -= removed;
        drop(inner);
        self.room.notify_one();
    }

    /// No more responses: the stream is gone. Wakes the reader so it ends.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.items.clear();
        inner.bytes = 0;
        if let Some(w) = inner.waker.take() {
            w.wake();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Waits until fewer than `max` responses are queued.
    pub async fn wait_until_below(&self, max: usize) {
        loop {
            let notified = self.room.notified();
            {
                let inner = self.lock();
                if inner.closed || inner.items.len() < max {
                    return;
                }
            }
            notified.await;
        }
    }

    /// The next response, `None` once closed, or pending (the waker is kept).
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        let mut inner = self.lock();
        match self.pop_locked(&mut inner) {
            Some(out) => Poll::Ready(Some(out)),
            None if inner.closed => Poll::Ready(None),
            None => {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The next response if one is queued.
    pub fn try_pop(&self) -> Option<Outgoing> {
        let mut inner = self.lock();
        self.pop_locked(&mut inner)
    }

    fn pop_locked(&self, inner: &mut Inner) -> Option<Outgoing> {
        let (out, size) = inner.items.pop_front()?;
        inner.bytes -= size;
        if inner.starved
            && inner.items.len() <= self.limits.responses_max / 2
            && inner.bytes <= self.limits.bytes_max / 2
        {
            inner.starved = false;
            self.sync.wake();
        }
        self.room.notify_one();
        Some(out)
    }
}
