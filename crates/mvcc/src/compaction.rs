//! Removing compacted records a little at a time.
//!
//! Applying a compaction trims the key index at once (readers never again ask for what it
//! removed) and records the compaction as scheduled; the records themselves are deleted
//! afterwards, a bounded number at a time: a few with every later apply batch, in its own
//! write transaction, and more by the background thread when the store is idle. A compaction
//! of a million revisions so costs writes a few milliseconds per batch instead of stopping
//! them for seconds (etcd deletes in batches in the background too).
//!
//! The compaction is recorded as finished (`finishedCompactRev`) in the transaction that
//! deletes its last record. Opening a store whose scheduled compaction is newer than its
//! finished one (a crash while records were being deleted) compacts again before serving.
//! What reads the records whole (hashes, snapshot copies, backups, defragmentation) first
//! deletes everything pending, so they see what a store that deleted at once would hold.

use std::collections::VecDeque;

use redb::{ReadableTable, WriteTransaction};

use crate::MvccError;
use crate::backend::{FINISHED_COMPACT_KEY, KEY_TABLE, META_TABLE, SCHEDULED_COMPACT_KEY};
use crate::index::TreeIndex;
use crate::revision::{RevKey, Revision};
use crate::store::{Inner, WriterState, unpoison};

/// Records deleted with each apply batch, at most: what a compaction adds to a write's
/// latency.
pub(crate) const PER_BATCH: usize = 100;
/// Records the background thread deletes per write transaction.
pub(crate) const PER_IDLE_TXN: usize = 100;

/// One applied compaction whose records are not all deleted yet.
#[derive(Debug)]
pub(crate) struct Pending {
    revision: i64,
    removed: Vec<(Revision, bool)>,
    /// How many of `removed` are deleted.
    done: usize,
}

/// The compactions waiting for their records to be deleted, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    queue: VecDeque<Pending>,
}

impl Backlog {
    pub(crate) fn push(&mut self, revision: i64, removed: Vec<(Revision, bool)>) {
        self.queue.push_back(Pending {
            revision,
            removed,
            done: 0,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Deletes up to `max` pending records in `txn`, marking each compaction whose last record
/// goes as finished. Returns how many were deleted.
pub(crate) fn delete_pending(
    inner: &Inner,
    txn: &WriteTransaction,
    max: usize,
) -> Result<usize, MvccError> {
    let mut backlog = unpoison(inner.compaction_backlog.lock());
    if backlog.is_empty() {
        return Ok(0);
    }
    let mut table = txn.open_table(KEY_TABLE)?;
    let mut log = unpoison(inner.removal_log.lock());
    let mut deleted = 0;
    let mut freed = 0u64;
    let mut finished = None;
    while deleted < max {
        let Some(front) = backlog.queue.front_mut() else {
            break;
        };
        let end = front.removed.len().min(front.done + (max - deleted));
        for (rev, tombstone) in &front.removed[front.done..end] {
            let key = RevKey::new(*rev, *tombstone);
            freed += remove_record(&mut table, &key)?;
            // A defragmentation copying meanwhile must remove these from its copy too.
            if let Some(log) = log.as_mut() {
                log.note(key);
            }
        }
        deleted += end - front.done;
        front.done = end;
        if front.done == front.removed.len() {
            finished = Some(front.revision);
            backlog.queue.pop_front();
        }
    }
    if backlog.is_empty() {
        // Not committed yet, but the writer lock the caller holds orders any later reader
        // of the records after the commit.
        inner.compaction_drained.notify_all();
    }
    drop(log);
    drop(table);
    if let Some(revision) = finished {
        mark_finished(txn, revision)?;
    }
    inner
        .stored_bytes
        .fetch_sub(freed, std::sync::atomic::Ordering::Relaxed);
    Ok(deleted)
}

/// Deletes every pending record, in write transactions of its own; the caller holds the
/// writer lock.
pub(crate) fn delete_all(inner: &Inner, writer: &mut WriterState) -> Result<(), MvccError> {
    while !unpoison(inner.compaction_backlog.lock()).is_empty() {
        let txn = inner.begin_write()?;
        delete_pending(inner, &txn, PER_IDLE_TXN)?;
        txn.commit()?;
        writer.dirty = true;
    }
    Ok(())
}

/// The background thread's share when the store is idle: one transaction's worth. Returns
/// whether more is pending.
pub(crate) fn delete_some(inner: &Inner) -> Result<bool, MvccError> {
    let mut writer = inner.lock_writer();
    if unpoison(inner.compaction_backlog.lock()).is_empty() {
        return Ok(false);
    }
    let mut txn = inner.begin_write()?;
    txn.set_durability(redb::Durability::None)?;
    delete_pending(inner, &txn, PER_IDLE_TXN)?;
    txn.commit()?;
    writer.dirty = true;
    Ok(!unpoison(inner.compaction_backlog.lock()).is_empty())
}

/// After a store's records were loaded into `index`: if a compaction was scheduled but did
/// not finish, compacts `index` at it and deletes the records it removes, in `txn`. Returns
/// the compacted revision to publish, and the bytes freed.
pub(crate) fn finish_interrupted<M>(
    meta: &M,
    index: &mut TreeIndex,
    txn: &WriteTransaction,
) -> Result<Option<(i64, u64)>, MvccError>
where
    M: ReadableTable<&'static str, &'static [u8]>,
{
    let mark = |name: &str| -> Result<Option<i64>, MvccError> {
        match meta.get(name)? {
            Some(v) => Ok(Some(RevKey::decode(v.value())?.0.main)),
            None => Ok(None),
        }
    };
    let (Some(scheduled), finished) = (mark(SCHEDULED_COMPACT_KEY)?, mark(FINISHED_COMPACT_KEY)?)
    else {
        return Ok(None);
    };
    if finished.is_some_and(|f| f >= scheduled) {
        return Ok(None);
    }
    let removed = index.compact(scheduled);
    let mut table = txn.open_table(KEY_TABLE)?;
    let mut freed = 0u64;
    for (rev, tombstone) in &removed {
        freed += remove_record(&mut table, &RevKey::new(*rev, *tombstone))?;
    }
    drop(table);
    mark_finished(txn, scheduled)?;
    tracing::info!(
        revision = scheduled,
        removed = removed.len(),
        "finished a compaction a restart interrupted"
    );
    Ok(Some((scheduled, freed)))
}

/// Waits until every applied compaction's records are deleted (by the apply batches and the
/// background thread; this thread deletes nothing), as etcd's `physical` compaction waits.
pub(crate) fn wait_drained(inner: &Inner) {
    let mut backlog = unpoison(inner.compaction_backlog.lock());
    while !backlog.is_empty() {
        backlog = unpoison(inner.compaction_drained.wait(backlog));
    }
}

/// Removes one record; returns the bytes it was charged (0 if it was gone already).
fn remove_record(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    key: &RevKey,
) -> Result<u64, MvccError> {
    Ok(match table.remove(key.as_bytes())? {
        Some(old) => crate::backend::record_bytes(key.as_bytes().len(), old.value().len()),
        None => 0,
    })
}

/// Records the compaction at `revision` as finished, in `txn`.
fn mark_finished(txn: &WriteTransaction, revision: i64) -> Result<(), MvccError> {
    let mut meta = txn.open_table(META_TABLE)?;
    let at = RevKey::new(Revision::new(revision, 0), false);
    meta.insert(FINISHED_COMPACT_KEY, at.as_bytes())?;
    Ok(())
}
