//! Requests waiting for their proposal to be applied.
//!
//! A gRPC handler registers an ID before proposing; the apply path, which runs on every member,
//! completes the waiter only on the member that proposed (the others find no waiter). A handler
//! that gives up (timeout, client gone) removes its entry, so the map never outgrows the number
//! of requests in flight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use crate::apply::ApplyResult;

pub struct Wait {
    next_id: AtomicU64,
    waiters: Mutex<HashMap<u64, oneshot::Sender<ApplyResult>>>,
}

impl Wait {
    /// IDs start from a value derived from the member ID and the start time, as etcd's
    /// generator does, so a restarted member does not reuse the IDs of its previous life
    /// (entries it proposed before a crash may still be applied after it restarts).
    pub fn new(member_id: u64, start_unix_millis: u64) -> Wait {
        let prefix = (member_id & 0xffff) << 48;
        let time = (start_unix_millis & 0xff_ffff_ffff) << 8;
        Wait {
            next_id: AtomicU64::new(prefix | time),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    pub fn register(&self) -> (u64, oneshot::Receiver<ApplyResult>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        (id, rx)
    }

    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Completes the waiter for `id`, if this member has one.
    pub fn trigger(&self, id: u64, result: ApplyResult) {
        if let Some(tx) = self.lock().remove(&id) {
            // The receiver may have timed out already; nothing to do then.
            let _ = tx.send(result);
        }
    }

    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<ApplyResult>>> {
        // A panic while holding this lock cannot leave the map inconsistent (each operation is
        // a single insert or remove), so a poisoned lock is safe to keep using.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}
