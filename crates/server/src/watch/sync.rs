//! The catch-up thread: brings unsynced watchers up to date from the store's history, then
//! hands them back to the live path (etcd's syncWatchersLoop).
//!
//! A round: under the hub lock, pick unsynced watchers whose outbox has room (and cancel
//! those whose next revision was compacted away); without the lock, read the history from the
//! lowest of their revisions and build each one's response; under the lock again, queue the
//! responses and move every watcher that reached the notified revision to the synced set.
//! Reading happens outside the lock, so the Raft thread never waits for the disk here.

use std::ops::Bound;
use std::time::Duration;

use etcd_api::etcdserverpb::{RangeRequest, WatchResponse};
use etcd_api::mvccpb::Event;
use etcd_api::mvccpb::event::EventType;
use etcd_mvcc::{MvccError, Store};
use prost::Message as _;

use super::group::{KeyRange, WatcherKey};
use super::{Outgoing, Shared, compacted_response};

/// How many unsynced watchers a round looks at, per watcher it may serve: those whose outbox
/// is full are skipped, and looking at all of them each round would cost O(unsynced).
const EXAMINE_PER_SERVED: usize = 4;

enum Outcome {
    /// Some watcher has more to catch up and room to take it: go again at once.
    More,
    /// Unsynced watchers are waiting for their clients to read: retry after a while, or when an
    /// outbox drains.
    Waiting,
    /// Nobody is unsynced: sleep until woken.
    Idle,
}

pub(super) fn run(shared: &Shared) {
    let interval = shared.cfg.catch_up_interval.max(Duration::from_millis(1));
    loop {
        if shared.signal.stopped() {
            return;
        }
        let stopped = match round(shared) {
            Outcome::More => false,
            Outcome::Waiting => shared.signal.wait(Some(interval)),
            Outcome::Idle => shared.signal.wait(None),
        };
        if stopped {
            return;
        }
    }
}

/// What the round needs of one watcher, copied out so the history is read without the lock.
struct Candidate {
    wk: WatcherKey,
    epoch: u64,
    min_rev: i64,
    range: KeyRange,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
}

impl Candidate {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = ev.kv.as_ref() else {
            return false;
        };
        let is_put = ev.r#type == EventType::Put as i32;
        self.range.contains(&kv.key) && !(is_put && self.no_put || !is_put && self.no_delete)
    }
}

/// One watcher's share of a round: its events and the revision they bring it up to.
struct CaughtUp {
    candidate: Candidate,
    events: Vec<Event>,
    /// `None`: the history read stopped before this watcher's first revision.
    reached: Option<i64>,
    /// The previous value of one of its events was compacted away while it was read: the
    /// watcher is cancelled as compacted at this revision rather than sent events without
    /// the previous values it asked for.
    compacted: Option<i64>,
}

fn round(shared: &Shared) -> Outcome {
    let store = &shared.store;
    let cfg = &shared.cfg;
    let (candidates, current, any_compacted) = {
        let mut st = shared.lock();
        if st.unsynced.is_empty() {
            return Outcome::Idle;
        }
        let current = store.current_revision();
        let compact_rev = store.compact_revision();
        let serve_max = cfg.catch_up_watchers_max.max(1);
        let after = match st.catch_up_cursor {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let order: Vec<WatcherKey> = st
            .unsynced
            .range((after, Bound::Unbounded))
            .chain(
                st.unsynced
                    .range((Bound::Unbounded, after_inclusive(after))),
            )
            .take(serve_max * EXAMINE_PER_SERVED)
            .copied()
            .collect();
        let mut candidates = Vec::new();
        let mut compacted = Vec::new();
        for wk in order {
            st.catch_up_cursor = Some(wk);
            let Some(w) = st.watchers.get(&wk) else {
                continue;
            };
            if w.min_rev < compact_rev {
                compacted.push(wk);
                continue;
            }
            if !w.queue.has_catch_up_room() {
                continue;
            }
            candidates.push(Candidate {
                wk,
                epoch: w.epoch,
                min_rev: w.min_rev,
                range: w.range.clone(),
                no_put: w.no_put,
                no_delete: w.no_delete,
                prev_kv: w.prev_kv,
                fragment: w.fragment,
            });
            if candidates.len() >= serve_max {
                break;
            }
        }
        let any_compacted = !compacted.is_empty();
        for wk in compacted {
            if let Some(w) = st.remove_watcher(wk) {
                w.queue.push_control(compacted_response(wk.1, compact_rev));
            }
        }
        (candidates, current, any_compacted)
    };
    if candidates.is_empty() {
        return if any_compacted {
            Outcome::More
        } else {
            Outcome::Waiting
        };
    }

    let Some(low) = candidates.iter().map(|c| c.min_rev).min() else {
        return Outcome::Waiting;
    };
    let history = match store.events(low, current, cfg.catch_up_events_max) {
        Ok(h) => h,
        // Compacted since the watchers were picked: the next round cancels them.
        Err(MvccError::Compacted) => return Outcome::More,
        Err(e) => {
            tracing::warn!(error = %e, "watch catch-up cannot read the store's history; retrying");
            return Outcome::Waiting;
        }
    };
    let read: usize = history.iter().map(|(_, evs)| evs.len()).sum();
    // A full read may have stopped early (at a revision boundary); a short one reached the end.
    let read_to = match history.last() {
        Some((rev, _)) if read >= cfg.catch_up_events_max => *rev,
        _ => current,
    };
    let caught_up: Vec<CaughtUp> = candidates
        .into_iter()
        .map(|c| {
            let bytes_max = cfg.catch_up_response_bytes_max;
            catch_up(store, c, &history, (read_to, current), bytes_max)
        })
        .collect();

    let mut more = false;
    let mut st = shared.lock();
    let notified = st.notified_rev;
    for CaughtUp {
        candidate: c,
        events,
        reached,
        compacted,
    } in caught_up
    {
        if let Some(compact_rev) = compacted {
            let current = st.watchers.get(&c.wk).map(|w| (w.epoch, w.min_rev));
            if current == Some((c.epoch, c.min_rev))
                && let Some(w) = st.remove_watcher(c.wk)
            {
                w.queue
                    .push_control(compacted_response(c.wk.1, compact_rev));
            }
            more = true;
            continue;
        }
        let Some(reached) = reached else {
            more = true;
            continue;
        };
        let Some(w) = st.watchers.get_mut(&c.wk) else {
            continue;
        };
        if w.epoch != c.epoch || w.synced || w.min_rev != c.min_rev {
            continue; // Canceled or changed while we read.
        }
        if !events.is_empty() {
            let out = Outgoing {
                response: WatchResponse {
                    watch_id: c.wk.1,
                    events,
                    ..Default::default()
                },
                header_revision: reached,
                fragment: c.fragment,
            };
            if !w.queue.try_push_events(out) {
                continue; // Its outbox filled meanwhile: same revisions next time.
            }
            w.progress_due = false;
        }
        w.min_rev = reached + 1;
        if notified <= reached {
            // Every revision after `reached` is still to be notified: live from here.
            w.synced = true;
            let range = w.range.clone();
            st.unsynced.remove(&c.wk);
            st.synced.insert(c.wk, &range);
            st.answer_pending_progress(c.wk.0);
        } else {
            more = true;
        }
    }
    if more {
        Outcome::More
    } else if st.unsynced.is_empty() {
        Outcome::Idle
    } else {
        Outcome::Waiting
    }
}

/// The second half of a wrapped walk: everything up to and including the cursor.
fn after_inclusive(after: Bound<WatcherKey>) -> Bound<WatcherKey> {
    match after {
        Bound::Excluded(c) => Bound::Included(c),
        _ => Bound::Excluded((0, i64::MIN)), // the first half already covered everything
    }
}

/// One watcher's events in `history` (read up to `read_to` of `current`) from its `min_rev`,
/// cut at a revision boundary once the response passes `bytes_max`.
fn catch_up(
    store: &Store,
    candidate: Candidate,
    history: &[(i64, Vec<Event>)],
    (read_to, current): (i64, i64),
    bytes_max: usize,
) -> CaughtUp {
    if candidate.min_rev > read_to {
        // Nothing of its range was read. If the read went to the end, it waits for a future
        // revision (after a snapshot restore) and nothing before `min_rev` concerns it.
        let reached = (read_to == current).then_some(candidate.min_rev - 1);
        return CaughtUp {
            candidate,
            events: Vec::new(),
            reached,
            compacted: None,
        };
    }
    let mut events = Vec::new();
    let mut bytes = 0;
    let mut reached = read_to;
    for (rev, revision_events) in history {
        if *rev < candidate.min_rev {
            continue;
        }
        for ev in revision_events.iter().filter(|ev| candidate.wants(ev)) {
            let mut ev = ev.clone();
            if candidate.prev_kv && fill_prev_kv(store, &mut ev).is_err() {
                // Compacted since the history was read. An event before the compaction
                // revision is itself gone: the watcher is behind the compaction and is
                // cancelled as etcd cancels such watchers. The event at the compaction
                // revision is not gone, only its previous value: it goes without, as etcd
                // sends it (a watch may start at the compaction revision).
                let compact_rev = store.compact_revision();
                if *rev < compact_rev {
                    return CaughtUp {
                        candidate,
                        events: Vec::new(),
                        reached: None,
                        compacted: Some(compact_rev),
                    };
                }
            }
            bytes += ev.encoded_len();
            events.push(ev);
        }
        if bytes >= bytes_max && *rev < read_to {
            reached = *rev;
            break;
        }
    }
    CaughtUp {
        candidate,
        events,
        reached: Some(reached),
        compacted: None,
    }
}

/// History does not keep previous values with events; as etcd does, read the key at the
/// revision before the change. Creations have none. When that revision was compacted away
/// (a watcher catching up while compaction overtakes it), the previous value is gone: an
/// error, and the caller cancels the watcher as compacted where etcd would send the event
/// without the previous value its client asked for (which then takes a change for a creation).
pub(super) fn fill_prev_kv(store: &Store, ev: &mut Event) -> Result<(), MvccError> {
    let Some(kv) = ev.kv.as_ref() else {
        return Ok(());
    };
    if ev.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision {
        return Ok(());
    }
    let req = RangeRequest {
        key: kv.key.clone(),
        revision: kv.mod_revision - 1,
        ..Default::default()
    };
    ev.prev_kv = store.range(&req)?.kvs.into_iter().next();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::etcdserverpb::PutRequest;
    use etcd_mvcc::StoreOptions;

    fn put(store: &Store, index: u64, key: &str, value: &str) {
        store
            .apply(|b| {
                b.put(
                    &PutRequest {
                        key: key.into(),
                        value: value.into(),
                        ..Default::default()
                    },
                    &|_| false,
                )
                .unwrap();
                b.set_consistent_index(index, 1);
            })
            .unwrap();
    }

    fn candidate(min_rev: i64) -> Candidate {
        Candidate {
            wk: (1, 0),
            epoch: 0,
            min_rev,
            range: KeyRange::from_request(b"k", b"").unwrap(),
            no_put: false,
            no_delete: false,
            prev_kv: true,
            fragment: false,
        }
    }

    /// Compaction overtakes a watcher between reading the history and reading previous
    /// values: it is cancelled as compacted, never sent changes without the previous values
    /// it asked for; the event at the compaction revision itself still goes, as in etcd.
    #[test]
    fn compaction_during_catch_up_cancels_rather_than_dropping_previous_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
        for (i, v) in ["a", "b", "c", "d"].iter().enumerate() {
            put(&store, i as u64 + 1, "k", v); // revisions 2..=5
        }
        let history = store.events(3, 0, 100).unwrap();
        store
            .apply(|b| {
                b.compact(4).unwrap();
                b.set_consistent_index(5, 1);
            })
            .unwrap();
        let caught = catch_up(&store, candidate(3), &history, (5, 5), usize::MAX);
        assert_eq!(caught.compacted, Some(4));
        assert!(caught.events.is_empty());

        // From the compaction revision: its event has no previous value left; later ones do.
        let history = store.events(4, 0, 100).unwrap();
        let caught = catch_up(&store, candidate(4), &history, (5, 5), usize::MAX);
        assert_eq!(caught.compacted, None);
        let prev: Vec<Option<Vec<u8>>> = caught
            .events
            .iter()
            .map(|e| e.prev_kv.as_ref().map(|kv| kv.value.clone()))
            .collect();
        assert_eq!(prev, vec![None, Some(b"c".to_vec())]);
    }
}
