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
//!    the newest or removed by compaction. Reads and writes go on.
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

/// Records copied per write transaction of the new file (and per read snapshot of the old).
const CHUNK_RECORDS: usize = 20_000;
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
    let generation = inner.generation();
    *unpoison(inner.removal_log.lock()) = Some(RemovalLog::default());
    let copy = open_database(&temp, &inner.opts)?;
    let mut last: Option<Vec<u8>> = None;
    let mut records = 0u64;

    // Without the writer lock: the bulk, then what was added meanwhile, a few times over.
    for pass in 0..=CATCH_UP_PASSES {
        let mut copied = 0;
        loop {
            let snapshot = inner.begin_read()?;
            let source = snapshot.open_table(KEY_TABLE)?;
            let n = copy_keys(&source, &copy, &mut last, CHUNK_RECORDS, Durability::None)?;
            copied += n;
            if n < CHUNK_RECORDS {
                break;
            }
        }
        records += copied as u64;
        if pass > 0 && copied < CHUNK_RECORDS / 10 {
            break;
        }
    }

    // Under the writer lock: the tail, the removals, the small tables, and the switch.
    let mut writer = inner.lock_writer();
    let stall = Instant::now();
    if inner.generation() != generation {
        stop_logging(inner);
        drop(copy);
        std::fs::remove_file(&temp)?;
        return Ok(Outcome::Overtaken("the store was replaced by a snapshot"));
    }
    let log = stop_logging(inner).unwrap_or_default();
    if log.overflowed {
        drop(copy);
        std::fs::remove_file(&temp)?;
        return Ok(Outcome::Overtaken(
            "compaction removed too many records meanwhile",
        ));
    }
    {
        let snapshot = inner.begin_read()?;
        let source = snapshot.open_table(KEY_TABLE)?;
        records += copy_keys(&source, &copy, &mut last, usize::MAX, Durability::None)? as u64;
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
    {
        let mut db = unpoison(inner.db.write());
        std::fs::rename(&temp, &inner.path)?;
        if let Some(dir) = inner.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        // The copy's handle stays valid across the rename; the old database closes here,
        // its file kept alive by readers still on it.
        *db = copy;
    }
    *unpoison(inner.in_use_cache.lock()) = None;
    writer.dirty = false;
    writer.ops_since_durable = 0;
    writer.last_durable = Instant::now();
    Ok(Outcome::Switched {
        records,
        stalled: stall.elapsed(),
    })
}

/// Copies up to `limit` records of the key table after `last` into `dest`, in one write
/// transaction; moves `last` to the last key copied. Returns how many were copied.
fn copy_keys<T>(
    source: &T,
    dest: &Database,
    last: &mut Option<Vec<u8>>,
    limit: usize,
    durability: Durability,
) -> Result<usize, MvccError>
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
    let mut copied_to = None;
    {
        let mut table = txn.open_table(KEY_TABLE)?;
        for entry in source.range::<&[u8]>((lower, Bound::Unbounded))? {
            if n == limit {
                break;
            }
            let (k, v) = entry?;
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
    Ok(n)
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
