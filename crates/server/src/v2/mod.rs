//! etcd 3.4's v2 store (`--enable-v2`), replicated: the store itself (`store.rs`: nodes,
//! TTLs, compare-and-swap, history; `watch.rs`: watchers), how committed v2 requests change
//! it (`apply.rs`), how the backend keeps it (`persist.rs`), and the leader's expiry of TTL
//! keys (`run_expiry`). The HTTP API over it is `crate::v2http`.
//!
//! Every v2 write is a Raft entry carrying etcd's own v2 `Request`; the store is applied in
//! the same backend transaction as the entry, so it is saved, restored and sent in snapshots
//! with the rest of the member's state, and stays apart from the v3 key space.

pub mod apply;
pub mod auth;
pub mod error;
pub mod event;
pub mod json;
pub mod members;
pub mod path;
pub mod persist;
pub mod store;
pub mod watch;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_api::etcdserverpb::Request as V2Request;
use etcd_api::internalpb::internal_request::Request;
use tokio::sync::mpsc;

use crate::server::EtcdServer;
use error::V2Error;
use event::Event;
use store::Store;

/// How often the leader looks for TTL keys due (etcd's SYNC ticker).
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The member's v2 store, shared by the apply path (the only writer) and the HTTP handlers.
#[derive(Default)]
pub struct V2 {
    store: Mutex<Store>,
    /// v2 auth made its directories under `/2` (etcd does once per member life).
    pub auth_dirs_ready: AtomicBool,
}

impl V2 {
    pub fn new(store: Store) -> V2 {
        V2 {
            store: Mutex::new(store),
            auth_dirs_ready: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Swaps in the store a Raft snapshot brought; every watch of the old one ends.
    pub fn replace(&self, store: Store) {
        let mut current = self.lock();
        current.clear_watchers();
        *current = store;
    }

    /// Starts a watch; the hub forgets it when the returned `Watcher` is dropped.
    pub fn watch(
        self: &Arc<Self>,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> Result<Watcher, V2Error> {
        let start = self.lock().watch(key, recursive, stream, since)?;
        Ok(Watcher {
            v2: self.clone(),
            key: start.key,
            id: start.id,
            rx: start.rx,
            start_index: start.start_index,
        })
    }
}

/// A v2 watch in progress.
pub struct Watcher {
    v2: Arc<V2>,
    key: String,
    id: Option<u64>,
    pub rx: mpsc::Receiver<Arc<Event>>,
    /// The store index when the watch began (`X-Etcd-Index`).
    pub start_index: u64,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.v2.lock().unwatch(&self.key, id);
        }
    }
}

/// Unix nanoseconds of this member's clock.
pub fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// The leader proposes a SYNC with its clock whenever a TTL key is due; every member then
/// expires the same keys at the same index. A new leader picks up where the old one stopped,
/// and a key that expired is gone from the store, so no key expires twice.
pub async fn run_expiry(server: Arc<EtcdServer>) {
    let mut ticker = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !server.is_leader() {
            continue;
        }
        let now = unix_nanos(SystemTime::now());
        let due = server.v2.lock().next_expiry().is_some_and(|t| t <= now);
        if !due {
            continue;
        }
        let sync = V2Request {
            method: "SYNC".into(),
            time: now,
            ..Default::default()
        };
        if let Err(e) = server.propose(Request::V2(sync)).await {
            tracing::warn!(error = %e, "failed to expire v2 TTL keys; will retry");
        }
    }
}
