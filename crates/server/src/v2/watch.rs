//! v2 watchers (etcd's watcherHub): a watcher waits on one key, or a prefix with
//! `recursive`, for the first event at or after its index (or every event, with `stream`).
//! Each has a bounded queue; one that falls behind is dropped, which ends its answer, so a
//! slow client never holds up the apply path or other watchers.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::event::Event;

/// Events a watcher may have queued before it is dropped (etcd's 100).
pub const WATCHER_QUEUE: usize = 100;

struct Entry {
    id: u64,
    tx: mpsc::Sender<Arc<Event>>,
    recursive: bool,
    stream: bool,
    since: u64,
}

#[derive(Default)]
pub struct WatcherHub {
    by_key: HashMap<String, Vec<Entry>>,
    count: usize,
    next_id: u64,
}

impl WatcherHub {
    /// Registers a watcher of `key` for changes from index `since`, its queue starting with
    /// `backlog` (past events from the history). Returns its ID (`None` when the backlog
    /// alone overflows the queue: then the queue ends after it) and the queue.
    pub fn add(
        &mut self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
        backlog: Vec<Arc<Event>>,
    ) -> (Option<u64>, mpsc::Receiver<Arc<Event>>) {
        let (tx, rx) = mpsc::channel(WATCHER_QUEUE);
        for event in backlog {
            if tx.try_send(event).is_err() {
                return (None, rx);
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        self.by_key.entry(key.to_string()).or_default().push(Entry {
            id,
            tx,
            recursive,
            stream,
            since,
        });
        self.count += 1;
        (Some(id), rx)
    }

    /// A watcher whose client left.
    pub fn remove(&mut self, key: &str, id: u64) {
        if let Some(list) = self.by_key.get_mut(key) {
            let before = list.len();
            list.retain(|e| e.id != id);
            self.count -= before - list.len();
            if list.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Offers `event` to the watchers of every directory on its key's path, the key's own
    /// watchers included (etcd's notify).
    pub fn notify(&mut self, event: &Arc<Event>) {
        let key = event.node.key.clone();
        self.notify_path(event, "/", false);
        let mut current = String::new();
        for component in super::path::components(&key) {
            current.push('/');
            current.push_str(component);
            self.notify_path(event, &current, false);
        }
    }

    /// Offers `event` to the watchers of exactly `path` (`deleted`: the path itself went away
    /// with the event, so its watchers hear of it even if not recursive).
    pub fn notify_path(&mut self, event: &Arc<Event>, path: &str, deleted: bool) {
        let Some(list) = self.by_key.get_mut(path) else {
            return;
        };
        let own_path = event.node.key == path;
        if !own_path && is_hidden(path, &event.node.key) {
            return;
        }
        let before = list.len();
        list.retain(|w| {
            if !(w.recursive || own_path || deleted) || event.index() < w.since {
                return true;
            }
            // Full or gone: the watcher is dropped, which ends its answer.
            let delivered = w.tx.try_send(event.clone()).is_ok();
            delivered && w.stream
        });
        self.count -= before - list.len();
        if list.is_empty() {
            self.by_key.remove(path);
        }
    }

    /// Every watcher ends (the store was replaced by a snapshot; etcd answers them with
    /// "watcher is cleared due to etcd recovery" by closing them).
    pub fn clear(&mut self) {
        self.by_key.clear();
        self.count = 0;
    }
}

/// Whether `key_path` is hidden as seen from the watched `watch_path`: a component below it
/// starts with `_`.
fn is_hidden(watch_path: &str, key_path: &str) -> bool {
    if watch_path.len() > key_path.len() {
        return false;
    }
    let after = super::path::clean(&key_path[watch_path.len()..]);
    after.contains("/_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::event::Action;

    fn event(index: u64, key: &str) -> Arc<Event> {
        Arc::new(Event::new(Action::Set, key, index, index))
    }

    #[test]
    fn a_watcher_gets_its_key_and_recursive_ones_get_children() {
        let mut hub = WatcherHub::default();
        let (_, mut exact) = hub.add("/1/a", false, false, 1, vec![]);
        let (_, mut rec) = hub.add("/1", true, false, 1, vec![]);
        let (_, mut other) = hub.add("/1/b", false, false, 1, vec![]);
        hub.notify(&event(3, "/1/a"));
        assert_eq!(exact.try_recv().unwrap().index(), 3);
        assert_eq!(rec.try_recv().unwrap().index(), 3);
        assert!(other.try_recv().is_err());
        // One-shot watchers are gone after their event.
        assert_eq!(hub.count(), 1);
    }

    #[test]
    fn hidden_children_are_not_shown_to_parents() {
        let mut hub = WatcherHub::default();
        let (_, mut rec) = hub.add("/1", true, false, 1, vec![]);
        hub.notify(&event(2, "/1/_hidden"));
        assert!(rec.try_recv().is_err());
        hub.notify(&event(3, "/1/x"));
        assert_eq!(rec.try_recv().unwrap().index(), 3);
    }

    #[test]
    fn a_stream_that_does_not_read_is_dropped_when_full() {
        let mut hub = WatcherHub::default();
        let (_, mut slow) = hub.add("/1", true, true, 1, vec![]);
        for i in 1..=(WATCHER_QUEUE as u64 + 1) {
            hub.notify(&event(i, "/1/k"));
        }
        assert_eq!(hub.count(), 0);
        let mut got = 0;
        while slow.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, WATCHER_QUEUE);
    }
}
