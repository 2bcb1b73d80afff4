//! The watch hub: carries the store's changes to the watchers of every Watch stream, as
//! etcd's watchable store does.
//!
//! # Shape
//!
//! - A **watcher** follows a key or a range from a revision (`min_rev`: the next revision it
//!   may be sent). It lives in one of two sets:
//!   - **synced**: it has been sent everything before the hub's notified revision. The Raft
//!     thread hands each applied batch to [`WatchHub::notify`], which finds the synced watchers
//!     of each changed key ([`group::WatcherGroup`]) and pushes one response per revision into
//!     their stream's outbox.
//!   - **unsynced**: it is behind: created with a past start revision, or its outbox was full
//!     when a change came. The catch-up thread ([`sync`]) reads its missed revisions back from
//!     the store's history and, once it reaches the notified revision, moves it to synced.
//! - Each **stream** has one bounded outbox ([`queue::StreamQueue`]). A full outbox never
//!   blocks the Raft thread or other streams: the watcher just becomes unsynced (etcd keeps
//!   the missed batch as a "victim"; we re-read it from history, so nothing is held). The
//!   catch-up thread serves a stream only when its outbox has room, so a client that stops
//!   reading costs one bounded outbox and nothing more.
//!
//! # Invariants
//!
//! - The hub lock orders everything a watcher is sent: `notify`, the catch-up thread's
//!   pushes, created/canceled/progress responses all push under it, so a watcher's responses
//!   leave in revision order, after its created response, and none after its cancel.
//! - `notified_rev` is the last revision `notify` handled. A watcher moves from unsynced to
//!   synced only with `min_rev = r + 1` where history up to `r` was read and
//!   `notified_rev <= r`: every later revision is still to be notified, so none is skipped;
//!   every earlier one is below `min_rev`, so none is sent twice.
//! - Lock order: hub -> stream outbox, and hub -> store. Nothing holding a store lock takes the
//!   hub lock (the Raft thread calls `notify` after `Store::apply` returns).
//! - The Raft thread's work in `notify` is in memory and bounded by the batch's changes times
//!   the watchers they match; it never waits for a client.

mod group;
mod queue;
mod sync;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use etcd_api::etcdserverpb::{WatchCreateRequest, WatchResponse, watch_create_request};
use etcd_api::mvccpb::Event;
use etcd_api::mvccpb::event::EventType;
use etcd_mvcc::Store;

use crate::config::{GRPC_OVERHEAD_BYTES, ServerConfig};
use crate::error::ServerError;

pub use group::KeyRange;
use group::{WatcherGroup, WatcherKey};
use queue::QueueLimits;
pub use queue::{Outgoing, StreamQueue};

/// The watch id a create request leaves at 0 to let the server choose (clientv3.AutoWatchID).
pub const AUTO_WATCH_ID: i64 = 0;
/// The watch id of responses not tied to one watcher (clientv3.InvalidWatchID).
pub const INVALID_WATCH_ID: i64 = -1;
/// etcd's cancel reason for a client-chosen watch id already in use on the stream.
pub const DUPLICATE_ID_REASON: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Limits and timings of the hub. Every limit is per stream unless it says otherwise.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// How often watchers that asked for `progress_notify` hear the revision when nothing
    /// happened (etcd's `--experimental-watch-progress-notify-interval`, default 10 minutes,
    /// never below 100 ms). Ten percent jitter is added per stream.
    pub progress_notify_interval: Duration,
    /// Responses an outbox holds before event responses are refused (etcd's chanBufLen).
    pub stream_responses_max: usize,
    /// Bytes an outbox holds before event responses are refused (a lone response always fits).
    pub stream_bytes_max: usize,
    /// Responses larger than this are split for watchers that asked for `fragment` (etcd:
    /// `--max-request-bytes` plus the gRPC overhead allowance).
    pub fragment_bytes: usize,
    /// History events read per catch-up round.
    pub catch_up_events_max: usize,
    /// Bytes of events one catch-up response carries before it is cut at a revision boundary.
    pub catch_up_response_bytes_max: usize,
    /// Unsynced watchers served per catch-up round (etcd's maxWatchersPerSync).
    pub catch_up_watchers_max: usize,
    /// How often the catch-up thread retries when unsynced watchers are waiting for room.
    pub catch_up_interval: Duration,
}

/// etcd's floor for the progress notify interval.
pub const PROGRESS_NOTIFY_INTERVAL_MIN: Duration = Duration::from_millis(100);

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            progress_notify_interval: Duration::from_secs(10 * 60),
            stream_responses_max: 128,
            stream_bytes_max: 4 * 1024 * 1024,
            fragment_bytes: 1_572_864 + 512 * 1024,
            catch_up_events_max: 10_000,
            catch_up_response_bytes_max: 1024 * 1024,
            catch_up_watchers_max: 512,
            catch_up_interval: Duration::from_millis(100),
        }
    }
}

impl WatchConfig {
    /// The interval actually used: etcd raises anything below 100 ms to 100 ms.
    pub fn effective_progress_interval(&self) -> Duration {
        self.progress_notify_interval
            .max(PROGRESS_NOTIFY_INTERVAL_MIN)
    }
}

/// Wakes the catch-up thread; also how it is stopped.
pub(crate) struct SyncSignal {
    state: Mutex<(bool, bool)>, // (woken, stopped)
    cv: Condvar,
}

impl SyncSignal {
    fn new() -> SyncSignal {
        SyncSignal {
            state: Mutex::new((false, false)),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn wake(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 = true;
        self.cv.notify_one();
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.cv.notify_one();
    }

    /// Waits for a wake-up (or `timeout`); returns true once stopped.
    fn wait(&self, timeout: Option<Duration>) -> bool {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut guard = match timeout {
            Some(t) => {
                self.cv
                    .wait_timeout_while(guard, t, |(woken, stopped)| !*woken && !*stopped)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => self
                .cv
                .wait_while(guard, |(woken, stopped)| !*woken && !*stopped)
                .unwrap_or_else(|e| e.into_inner()),
        };
        guard.0 = false;
        guard.1
    }

    fn stopped(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

/// One watcher's state in the hub.
struct Watcher {
    range: KeyRange,
    /// The next revision this watcher may be sent.
    min_rev: i64,
    synced: bool,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// No events were sent since the last progress tick (etcd's per-watcher progress flag).
    progress_due: bool,
    /// Unique per creation: tells the catch-up thread a watcher was canceled and its id reused
    /// while it was reading history.
    epoch: u64,
    queue: Arc<StreamQueue>,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let is_put = ev.r#type == EventType::Put as i32;
        !(is_put && self.no_put || !is_put && self.no_delete)
    }

    /// The event as this watcher is sent it: `prev_kv` only if asked for.
    fn shape(&self, ev: &Event) -> Event {
        Event {
            r#type: ev.r#type,
            kv: ev.kv.clone(),
            prev_kv: if self.prev_kv {
                ev.prev_kv.clone()
            } else {
                None
            },
        }
    }
}

struct StreamEntry {
    next_watch_id: i64,
    watch_ids: BTreeSet<i64>,
    /// A progress request waits for this stream's watchers to catch up (see
    /// [`WatchHub::progress`]); the queue to answer on.
    progress_pending: Option<Arc<StreamQueue>>,
}

struct HubState {
    notified_rev: i64,
    watchers: HashMap<WatcherKey, Watcher>,
    synced: WatcherGroup,
    unsynced: BTreeSet<WatcherKey>,
    streams: HashMap<u64, StreamEntry>,
    next_stream_id: u64,
    next_epoch: u64,
    overflows: u64,
    /// Where the next catch-up round starts in `unsynced`, so every watcher gets its turn.
    catch_up_cursor: Option<WatcherKey>,
}

impl HubState {
    /// Removes a watcher from every set; returns it.
    fn remove_watcher(&mut self, wk: WatcherKey) -> Option<Watcher> {
        let w = self.watchers.remove(&wk)?;
        if w.synced {
            self.synced.remove(wk, &w.range);
        } else {
            self.unsynced.remove(&wk);
        }
        if let Some(stream) = self.streams.get_mut(&wk.0) {
            stream.watch_ids.remove(&wk.1);
        }
        self.answer_pending_progress(wk.0);
        Some(w)
    }

    /// Whether every watcher of `stream` has been sent everything up to the notified revision.
    fn stream_synced(&self, stream: u64) -> bool {
        self.streams.get(&stream).is_none_or(|entry| {
            entry
                .watch_ids
                .iter()
                .all(|id| self.watchers.get(&(stream, *id)).is_none_or(|w| w.synced))
        })
    }

    /// Answers the progress request that waited for `stream`'s watchers, once all are synced.
    /// Called whenever a watcher is removed or catches up, so it looks at the stream's
    /// watchers only when a request is waiting (closing a stream removes every watcher).
    fn answer_pending_progress(&mut self, stream: u64) {
        let waiting = self
            .streams
            .get(&stream)
            .is_some_and(|entry| entry.progress_pending.is_some());
        if !waiting || !self.stream_synced(stream) {
            return;
        }
        let rev = self.notified_rev;
        if let Some(queue) = self
            .streams
            .get_mut(&stream)
            .and_then(|entry| entry.progress_pending.take())
        {
            queue.push_control(progress_response(rev));
        }
    }

    fn make_unsynced(&mut self, wk: WatcherKey, min_rev: i64) {
        if let Some(w) = self.watchers.get_mut(&wk)
            && w.synced
        {
            w.synced = false;
            w.min_rev = min_rev;
            self.synced.remove(wk, &w.range);
            self.unsynced.insert(wk);
        }
    }
}

pub(crate) struct Shared {
    store: Arc<Store>,
    cfg: WatchConfig,
    state: Mutex<HubState>,
    signal: Arc<SyncSignal>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A progress notification for a whole stream (watch ID -1, as etcd), at `rev`.
fn progress_response(rev: i64) -> Outgoing {
    Outgoing {
        response: WatchResponse {
            watch_id: INVALID_WATCH_ID,
            ..Default::default()
        },
        header_revision: rev,
        fragment: false,
    }
}

/// A Watch stream's handle on the hub. Close it with [`WatchHub::close_stream`].
#[derive(Clone)]
pub struct StreamHandle {
    pub id: u64,
    pub queue: Arc<StreamQueue>,
}

/// Counts for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    pub streams: usize,
    pub synced: usize,
    pub unsynced: usize,
    pub notified_rev: i64,
    /// Times a synced watcher's outbox was full and it left the live path.
    pub overflows: u64,
}

pub struct WatchHub {
    shared: Arc<Shared>,
    sync_thread: Mutex<Option<JoinHandle<()>>>,
}

impl WatchHub {
    /// A hub over `store`, with its catch-up thread running.
    pub fn new(store: Arc<Store>, cfg: WatchConfig) -> Result<Arc<WatchHub>, std::io::Error> {
        let notified_rev = store.current_revision();
        let shared = Arc::new(Shared {
            store,
            cfg,
            state: Mutex::new(HubState {
                notified_rev,
                watchers: HashMap::new(),
                synced: WatcherGroup::default(),
                unsynced: BTreeSet::new(),
                streams: HashMap::new(),
                next_stream_id: 1,
                next_epoch: 1,
                overflows: 0,
                catch_up_cursor: None,
            }),
            signal: Arc::new(SyncSignal::new()),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("watch-sync".into())
                .spawn(move || sync::run(&shared))?
        };
        Ok(Arc::new(WatchHub {
            shared,
            sync_thread: Mutex::new(Some(thread)),
        }))
    }

    /// The server's hub: etcd's defaults, fragmenting at `--max-request-bytes` plus the gRPC
    /// allowance, as etcd does.
    pub fn start(cfg: &ServerConfig, store: Arc<Store>) -> Result<Arc<WatchHub>, ServerError> {
        let watch_cfg = WatchConfig {
            fragment_bytes: (cfg.max_request_bytes as usize).saturating_add(GRPC_OVERHEAD_BYTES),
            progress_notify_interval: cfg.watch_progress_notify_interval,
            ..WatchConfig::default()
        };
        WatchHub::new(store, watch_cfg)
            .map_err(|e| ServerError::Internal(format!("cannot start the watch thread: {e}")))
    }

    pub fn config(&self) -> &WatchConfig {
        &self.shared.cfg
    }

    pub fn stats(&self) -> HubStats {
        let st = self.shared.lock();
        HubStats {
            streams: st.streams.len(),
            synced: st.synced.len(),
            unsynced: st.unsynced.len(),
            notified_rev: st.notified_rev,
            overflows: st.overflows,
        }
    }

    /// Hands one applied batch's changes (per main revision, oldest first, as
    /// `ApplyBatch::take_events` gives them) to the synced watchers. Called by the Raft thread
    /// after the batch is committed and published; never blocks on a client.
    pub fn notify(&self, batch: Vec<(i64, Vec<Event>)>, current_rev: i64) {
        let mut st = self.shared.lock();
        if batch.is_empty() && current_rev <= st.notified_rev {
            return;
        }
        let mut matched: Vec<WatcherKey> = Vec::new();
        let mut per_watcher: HashMap<WatcherKey, Vec<Event>> = HashMap::new();
        let mut starved = false;
        let store = &self.shared.store;
        for (rev, events) in batch {
            for ev in &events {
                let Some(kv) = ev.kv.as_ref() else { continue };
                matched.clear();
                st.synced.matching(&kv.key, &mut matched);
                // The apply path does not read previous values it does not need; a watcher
                // that asks for them gets them read here, once per event (etcd reads them when
                // sending, too).
                let mut with_prev: Option<Event> = None;
                for wk in &matched {
                    let Some(w) = st.watchers.get(wk) else {
                        continue;
                    };
                    if rev >= w.min_rev && w.wants(ev) {
                        let ev = if w.prev_kv && ev.prev_kv.is_none() {
                            with_prev.get_or_insert_with(|| {
                                let mut filled = ev.clone();
                                // A live event's previous revision is at or after the
                                // compaction (it cannot pass the current revision).
                                let _ = sync::fill_prev_kv(store, &mut filled);
                                filled
                            })
                        } else {
                            ev
                        };
                        per_watcher.entry(*wk).or_default().push(w.shape(ev));
                    }
                }
            }
            for (wk, events) in per_watcher.drain() {
                let Some(w) = st.watchers.get_mut(&wk) else {
                    continue;
                };
                let out = Outgoing {
                    response: WatchResponse {
                        watch_id: wk.1,
                        events,
                        ..Default::default()
                    },
                    header_revision: rev,
                    fragment: w.fragment,
                };
                if w.queue.try_push_events(out) {
                    w.min_rev = rev + 1;
                    w.progress_due = false;
                } else {
                    // The client is not keeping up: catch it up from history later rather
                    // than hold its events here.
                    st.make_unsynced(wk, rev);
                    st.overflows += 1;
                    starved = true;
                }
            }
            st.notified_rev = st.notified_rev.max(rev);
        }
        st.notified_rev = st.notified_rev.max(current_rev);
        drop(st);
        if starved {
            self.shared.signal.wake();
        }
    }

    /// After the store was replaced wholesale (a Raft snapshot installed), the revisions between
    /// what watchers were sent and the new store's revision were never notified: every synced
    /// watcher that wants them catches up from the new store's history (etcd's
    /// `watchableStore.Restore`). Watchers waiting for a later revision stay synced.
    pub fn restore(&self) {
        let mut st = self.shared.lock();
        let new_rev = self.shared.store.current_revision();
        let sent_up_to = st.notified_rev;
        let synced: Vec<WatcherKey> = st
            .watchers
            .iter()
            .filter(|(_, w)| w.synced)
            .map(|(wk, _)| *wk)
            .collect();
        for wk in synced {
            let Some(w) = st.watchers.get_mut(&wk) else {
                continue;
            };
            // A synced watcher was sent everything up to the notified revision.
            w.min_rev = w.min_rev.max(sent_up_to + 1);
            let min_rev = w.min_rev;
            if min_rev <= new_rev {
                st.make_unsynced(wk, min_rev);
            }
        }
        st.notified_rev = st.notified_rev.max(new_rev);
        drop(st);
        self.shared.signal.wake();
    }

    /// Opens a stream: its outbox and its watch-id space.
    pub fn open_stream(&self) -> StreamHandle {
        let limits = QueueLimits {
            responses_max: self.shared.cfg.stream_responses_max,
            bytes_max: self.shared.cfg.stream_bytes_max,
        };
        let queue = Arc::new(StreamQueue::new(limits, self.shared.signal.clone()));
        let mut st = self.shared.lock();
        let id = st.next_stream_id;
        st.next_stream_id += 1;
        st.streams.insert(
            id,
            StreamEntry {
                next_watch_id: 0,
                watch_ids: BTreeSet::new(),
                progress_pending: None,
            },
        );
        StreamHandle { id, queue }
    }

    /// Removes the stream and all its watchers; its outbox is closed.
    pub fn close_stream(&self, stream: &StreamHandle) {
        let mut st = self.shared.lock();
        if let Some(entry) = st.streams.remove(&stream.id) {
            for watch_id in entry.watch_ids {
                st.remove_watcher((stream.id, watch_id));
            }
        }
        drop(st);
        stream.queue.close();
    }

    /// Refuses a create request before it reaches `create` (auth said no), as etcd does:
    /// `created` + `canceled` with the reason and no watch id.
    pub fn refuse_create(&self, stream: &StreamHandle, reason: &str) {
        let current = {
            let st = self.shared.lock();
            st.notified_rev.max(self.shared.store.current_revision())
        };
        stream.queue.push_control(create_refused(reason, current));
    }

    /// Creates a watcher as etcd's Watch create request does, and queues the answer: `created`
    /// with the watch id and the current revision, or `created` + `canceled` with etcd's
    /// reason (empty range, duplicate id). A start revision below the compacted one is
    /// followed by etcd's compaction cancel (`compact_revision` set).
    pub fn create(&self, stream: &StreamHandle, req: &WatchCreateRequest) {
        let range = KeyRange::from_request(&req.key, &req.range_end);
        let mut st = self.shared.lock();
        // The store may have published revisions `notify` has not seen yet; a watcher "from
        // now" starts after them (their notification will find it below its min_rev).
        let current = st.notified_rev.max(self.shared.store.current_revision());
        let Some(entry) = st.streams.get_mut(&stream.id) else {
            return;
        };
        let refuse = |reason: &str| create_refused(reason, current);
        let range = match range {
            Ok(range) => range,
            Err(reason) => {
                stream.queue.push_control(refuse(reason));
                return;
            }
        };
        let watch_id = if req.watch_id == AUTO_WATCH_ID {
            while entry.watch_ids.contains(&entry.next_watch_id) {
                entry.next_watch_id += 1;
            }
            let id = entry.next_watch_id;
            entry.next_watch_id += 1;
            id
        } else if entry.watch_ids.contains(&req.watch_id) {
            stream.queue.push_control(refuse(DUPLICATE_ID_REASON));
            return;
        } else {
            req.watch_id
        };
        entry.watch_ids.insert(watch_id);

        let start = req.start_revision;
        let (synced, min_rev) = if start == 0 {
            (true, current + 1)
        } else if start > current {
            (true, start)
        } else {
            (false, start)
        };
        let filters = &req.filters;
        let epoch = st.next_epoch;
        st.next_epoch += 1;
        let watcher = Watcher {
            range: range.clone(),
            min_rev,
            synced,
            no_put: filters.contains(&(watch_create_request::FilterType::Noput as i32)),
            no_delete: filters.contains(&(watch_create_request::FilterType::Nodelete as i32)),
            prev_kv: req.prev_kv,
            fragment: req.fragment,
            progress_notify: req.progress_notify,
            progress_due: true,
            epoch,
            queue: stream.queue.clone(),
        };
        let wk = (stream.id, watch_id);
        st.watchers.insert(wk, watcher);
        stream.queue.push_control(Outgoing {
            response: WatchResponse {
                watch_id,
                created: true,
                ..Default::default()
            },
            header_revision: current,
            fragment: false,
        });
        if synced {
            st.synced.insert(wk, &range);
            return;
        }
        let compact_rev = self.shared.store.compact_revision();
        if min_rev < compact_rev {
            st.remove_watcher(wk);
            stream
                .queue
                .push_control(compacted_response(watch_id, compact_rev));
            return;
        }
        st.unsynced.insert(wk);
        drop(st);
        self.shared.signal.wake();
    }

    /// Cancels a watcher of this stream and queues etcd's cancel response; its queued events
    /// are dropped. Returns false (and queues nothing, as etcd) if there is no such watcher.
    pub fn cancel(&self, stream: &StreamHandle, watch_id: i64) -> bool {
        let mut st = self.shared.lock();
        if st.remove_watcher((stream.id, watch_id)).is_none() {
            return false;
        }
        stream.queue.remove_events_of(watch_id);
        stream.queue.push_control(Outgoing {
            response: WatchResponse {
                watch_id,
                canceled: true,
                ..Default::default()
            },
            header_revision: st.notified_rev,
            fragment: false,
        });
        true
    }

    /// Answers a progress request: the revision every synced watcher of the stream has been
    /// sent up to, for watch id -1 (etcd 3.4 answers at once, as here).
    ///
    /// The notification promises that every event up to its revision has been sent, so it is
    /// answered only once every watcher of the stream is synced: at once if they are (after
    /// their queued events, in the same outbox), otherwise when the last of them catches up.
    /// etcd 3.4 answered at once with the store's revision, ahead of events a catching-up
    /// watcher had still to send (etcd issue 15220; the robustness checker caught ours doing
    /// the same).
    pub fn progress(&self, stream: &StreamHandle) {
        let mut st = self.shared.lock();
        if st.stream_synced(stream.id) {
            let rev = st.notified_rev;
            stream.queue.push_control(progress_response(rev));
        } else if let Some(entry) = st.streams.get_mut(&stream.id) {
            entry.progress_pending = Some(stream.queue.clone());
        }
    }

    /// The periodic progress notification of one stream: every synced watcher that asked for
    /// `progress_notify` and was sent no events since the last tick hears the revision.
    /// Skipped for a watcher whose outbox is full (it is receiving events anyway).
    pub fn progress_tick(&self, stream: &StreamHandle) {
        let mut st = self.shared.lock();
        let rev = st.notified_rev;
        let Some(entry) = st.streams.get(&stream.id) else {
            return;
        };
        let ids: Vec<i64> = entry.watch_ids.iter().copied().collect();
        for watch_id in ids {
            let Some(w) = st.watchers.get_mut(&(stream.id, watch_id)) else {
                continue;
            };
            if !w.progress_notify {
                continue;
            }
            if w.progress_due && w.synced {
                let out = Outgoing {
                    response: WatchResponse {
                        watch_id,
                        ..Default::default()
                    },
                    header_revision: rev,
                    fragment: false,
                };
                w.queue.try_push_events(out);
            }
            w.progress_due = true;
        }
    }
}

impl Drop for WatchHub {
    fn drop(&mut self) {
        self.shared.signal.stop();
        let handle = self
            .sync_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::warn!("the watch catch-up thread panicked");
        }
    }
}

/// etcd's answer to a watcher whose next revision was compacted away: canceled, with the
/// compacted revision (header revision 0, as etcd sends it).
fn compacted_response(watch_id: i64, compact_rev: i64) -> Outgoing {
    Outgoing {
        response: WatchResponse {
            watch_id,
            canceled: true,
            compact_revision: compact_rev,
            ..Default::default()
        },
        header_revision: 0,
        fragment: false,
    }
}

/// etcd's answer to a create request it refuses: `created` + `canceled`, the reason, no id.
fn create_refused(reason: &str, header_revision: i64) -> Outgoing {
    Outgoing {
        response: WatchResponse {
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        },
        header_revision,
        fragment: false,
    }
}
