//! Defragmentation that does not stop the world.
//!
//! redb's own `compact` needs the database to itself: the writer and every new reader wait
//! for as long as it rewrites the file, as etcd's defrag makes everything wait (etcd issue
//! 9222). Here the records are copied into a new file while the store goes on serving, and
//! the writer waits only for the tail:
//! 1. A log of the records compaction removes is switched on, so every removal from then on
//!    is known ([`RemovalLog`]).
//! 2. The key table is copied in chunks, each from a fresh read snapshot, each continuing
//!    after the last key copied: records are keyed by revision and are only ever added after
//!    the newest or removed by compaction. Reads and writes go on; the copy pauses between
//!    chunks so they keep at least half of the disk and a core. The copy's file is then
//!    compacted (redb grows files ahead of their pages), still without holding anyone up.
//! 3. Under the writer lock: the records added since the last chunk are copied, the logged
//!    removals applied, and the small `meta` and `ext` tables copied whole; the new file is
//!    committed durably and renamed over the old one, and the store switches to it. A reader
//!    holding a snapshot of the old file finishes on it; the old file's space returns to the
//!    filesystem when the last such reader ends.
//!
//! A crash before the rename leaves the old file as it was and a partial `<db>.defrag`, which
//! opening the store removes; after the rename the new file is complete and durable.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::MvccError;
use crate::backend::{EXT_TABLE, KEY_TABLE, META_TABLE};
use crate::revision::RevKey;
use crate::store::{Inner, open_database, unpoison};

/// Records copied per write transaction of the new file (and per read snapshot of the old),
/// at most; and bytes, at most. Each chunk is made durable on its own: many small flushes
/// instead of one of the whole file, which would hold up the WAL's fsyncs behind it.
const CHUNK_RECORDS: usize = 20_000;
const CHUNK_BYTES: usize = 4 << 20;
/// Pause after each chunk, as a share of the time the chunk took.
const PACING: f64 = 1.0;
/// Catch-up passes without the writer lock before the final one under it: each copies what
/// was added during the previous one, so the tail left for the locked pass is small.
const CATCH_UP_PASSES: usize = 3;
/// Removals the log holds at most (18 bytes each). A compaction of more revisions than this
/// during one defragmentation makes that copy useless; it starts over (see `MAX_ATTEMPTS`).
const REMOVAL_LOG_MAX: usize = 4_000_000;
/// Copies started before giving up with [`MvccError::DefragmentBusy`].
const MAX_ATTEMPTS: usize = 3;

/// The records compaction removed while a copy was under way.
#[derive(Debug, Default)]
pub(crate) struct RemovalLog {
    removed: Vec<RevKey>,
    /// More removals than `REMOVAL_LOG_MAX`: the copy cannot be completed.
    overflowed: bool,
}

impl RemovalLog {
    /// Notes that compaction removed the record at `key`.
    pub(crate) fn note(&mut self, key: RevKey) {
        if self.removed.len() < REMOVAL_LOG_MAX {
            self.removed.push(key);
        } else {
            self.overflowed = true;
        }
    }
}

/// Where a defragmentation writes the new file before it replaces the store's.
pub(crate) fn temp_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".defrag");
    PathBuf::from(name)
}

/// Removes a partial copy a crash left behind; called when the store opens.
pub(crate) fn remove_leftover(db_path: &Path) -> Result<(), MvccError> {
    match std::fs::remove_file(temp_path(db_path)) {
        Ok(()) => {
            tracing::info!(path = %db_path.display(), "removed an unfinished defragmentation copy");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Rewrites the store's file compactly while reads and writes go on; see the module docs.
pub(crate) fn defragment(inner: &Inner) -> Result<(), MvccError> {
    // One defragmentation at a time: a second caller waits and then does its own, which finds
    // little to do.
    let _running = unpoison(inner.defrag_running.lock());
    etcd_failpoints::point(etcd_failpoints::names::DEFRAG_BEFORE_COPY);
    let started = Instant::now();
    for attempt in 1..=MAX_ATTEMPTS {
        match copy_and_switch(inner) {
            Ok(Outcome::Switched { records, stalled }) => {
                etcd_failpoints::point(etcd_failpoints::names::DEFRAG_AFTER_COPY);
                tracing::info!(
                    records,
                    took_ms = started.elapsed().as_millis() as u64,
                    writes_stalled_ms = stalled.as_millis() as u64,
                    "defragmented mvcc store"
                );
                return Ok(());
            }
            Ok(Outcome::Overtaken(why)) => {
                tracing::warn!(
                    attempt,
                    why,
                    "defragmentation copy overtaken; starting over"
                );
            }
            Err(e) => {
                stop_logging(inner);
                let _ = std::fs::remove_file(temp_path(&inner.path));
                return Err(e);
            }
        }
    }
    Err(MvccError::DefragmentBusy)
}

enum Outcome {
    Switched {
        records: u64,
        stalled: std::time::Duration,
    },
    /// Something made the copy useless (too many removals to log, or the store was replaced
    /// by a snapshot meanwhile); nothing was changed.
    Overtaken(&'static str),
}

fn stop_logging(inner: &Inner) -> Option<RemovalLog> {
    unpoison(inner.removal_log.lock()).take()
}

fn copy_and_switch(inner: &Inner) -> Result<Outcome, MvccError> {
    let temp = temp_path(&inner.path);
    remove_leftover(&inner.path)?;
    // Switched on under the writer lock, so no batch is between its removals and its commit:
    // a batch that removed records before this point committed before, and no snapshot the
    // copy reads can hold them; every later batch logs its removals.
    let generation = {
        let mut writer = inner.lock_writer();
        // Not worth copying what a compaction is about to delete.
        crate::compaction::delete_all(inner, &mut writer)?;
        *unpoison(inner.removal_log.lock()) = Some(RemovalLog::default());
        inner.generation()
    };
    let mut copy = open_database(&temp, &inner.opts)?;
    let mut last: Option<Vec<u8>> = None;
    let mut records = 0u64;

    // Without the writer lock: the bulk, then what was added meanwhile, a few times over.
    for pass in 0..=CATCH_UP_PASSES {
        let mut copied = 0;
        loop {
            let chunk_started = Instant::now();
            let snapshot = inner.begin_read()?;
            let source = snapshot.open_table(KEY_TABLE)?;
            let chunk = Limit {
                records: CHUNK_RECORDS,
                bytes: CHUNK_BYTES,
            };
            let (n, exhausted) =
                copy_keys(&source, &copy, &mut last, chunk, crate::store::durable())?;
            drop(source);
            drop(snapshot);
            copied += n;
            if exhausted {
                break;
            }
            // The copy takes the disk and a core from the requests it runs beside: it pauses
            // for as long as each chunk took, so they get at least half of both.
            std::thread::sleep(chunk_started.elapsed().mul_f64(PACING));
        }
        records += copied as u64;
        if pass > 0 && copied < CHUNK_RECORDS / 10 {
            break;
        }
    }

    // redb grows a file ahead of its pages (doubling it, up to a region): the copy's file is
    // cut to what it holds, so the space is returned, before the writer is held up.
    let compacting = Instant::now();
    while copy.compact()? {}
    tracing::debug!(
        took_ms = compacting.elapsed().as_millis() as u64,
        "defragmentation copy compacted"
    );

    // Under the writer lock: the tail, the removals, the small tables, and the switch.
    let mut writer = inner.lock_writer();
    let stall = Instant::now();
    let log = stop_logging(inner).unwrap_or_default();
    let overtaken = if inner.generation() != generation {
        Some("the store was replaced by a snapshot")
    } else if log.overflowed {
        Some("compaction removed too many records meanwhile")
    } else {
        None
    };
    if let Some(why) = overtaken {
        drop(copy);
        std::fs::remove_file(&temp)?;
        return Ok(Outcome::Overtaken(why));
    }
    {
        let snapshot = inner.begin_read()?;
        let source = snapshot.open_table(KEY_TABLE)?;
        let (n, _) = copy_keys(&source, &copy, &mut last, Limit::NONE, Durability::None)?;
        records += n as u64;
        let mut txn = copy.begin_write()?;
        txn.set_durability(crate::store::durable())?;
        {
            let mut keys = txn.open_table(KEY_TABLE)?;
            for key in &log.removed {
                keys.remove(key.as_bytes())?;
            }
        }
        copy_whole(&snapshot.open_table(META_TABLE)?, &txn, META_TABLE)?;
        copy_whole(&snapshot.open_table(EXT_TABLE)?, &txn, EXT_TABLE)?;
        txn.commit()?;
    }
    let old = {
        let mut db = unpoison(inner.db.write());
        std::fs::rename(&temp, &inner.path)?;
        if let Some(dir) = inner.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        // The copy's handle stays valid across the rename.
        std::mem::replace(&mut *db, copy)
    };
    *unpoison(inner.in_use_cache.lock()) = None;
    writer.dirty = false;
    writer.ops_since_durable = 0;
    writer.last_durable = Instant::now();
    let stalled = stall.elapsed();
    drop(writer);
    // Closing the old database writes to its (now unlinked) file; writes go on meanwhile.
    // Readers still on one of its snapshots keep the file until they end.
    drop(old);
    Ok(Outcome::Switched { records, stalled })
}

/// How much one write transaction of the copy takes.
#[derive(Clone, Copy)]
struct Limit {
    records: usize,
    bytes: usize,
}

impl Limit {
    const NONE: Limit = Limit {
        records: usize::MAX,
        bytes: usize::MAX,
    };
}

/// Copies the key table's records after `last` into `dest`, in one write transaction, up to
/// `limit`; moves `last` to the last key copied. Returns how many were copied and whether
/// that was all of them.
fn copy_keys<T>(
    source: &T,
    dest: &Database,
    last: &mut Option<Vec<u8>>,
    limit: Limit,
    durability: Durability,
) -> Result<(usize, bool), MvccError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let after = last.take();
    let lower = match &after {
        Some(k) => Bound::Excluded(k.as_slice()),
        None => Bound::Unbounded,
    };
    let mut txn = dest.begin_write()?;
    txn.set_durability(durability)?;
    let mut n = 0;
    let mut bytes = 0;
    let mut copied_to = None;
    let mut exhausted = true;
    {
        let mut table = txn.open_table(KEY_TABLE)?;
        for entry in source.range::<&[u8]>((lower, Bound::Unbounded))? {
            if n == limit.records || bytes >= limit.bytes {
                exhausted = false;
                break;
            }
            let (k, v) = entry?;
            bytes += k.value().len() + v.value().len();
            table.insert(k.value(), v.value())?;
            copied_to = Some(k);
            n += 1;
        }
    }
    txn.commit()?;
    *last = match copied_to {
        Some(k) => Some(k.value().to_vec()),
        None => after,
    };
    Ok((n, exhausted))
}

/// Replaces `def`'s table in `txn` with a copy of `source`.
fn copy_whole<T>(
    source: &T,
    txn: &redb::WriteTransaction,
    def: TableDefinition<&'static str, &'static [u8]>,
) -> Result<(), MvccError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    txn.delete_table(def)?;
    let mut table = txn.open_table(def)?;
    for entry in source.iter()? {
        let (k, v) = entry?;
        table.insert(k.value(), v.value())?;
    }
    Ok(())
}
