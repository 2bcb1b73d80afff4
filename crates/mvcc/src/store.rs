//! The store: opening and rebuilding, the shared state readers and the writer meet in, the
//! durability policy, and the maintenance calls (defragment, sizes, metadata).
//!
//! # Concurrency
//!
//! One apply thread writes; any number of threads read. They share:
//! - `state` (`RwLock<Published>`): the key index plus the *published* current revision,
//!   compacted revision and consistent index. Readers never look at index entries above the
//!   published revision, so the writer may append a batch's revisions to the index (under
//!   short write locks) before the batch is committed.
//! - redb. A batch is one write transaction, committed (non-durably) before its revision is
//!   published; a reader opens its redb snapshot while holding the `state` read lock, so the
//!   snapshot contains every record the published revision refers to.
//! - Compaction is the one operation that removes what readers may need. It first commits
//!   and publishes everything before it, then trims the index under the write lock, and only
//!   then deletes records (committed later). A reader that saw the untrimmed index opened its
//!   snapshot before the trim, hence before the deletes; one that sees the trimmed index never
//!   asks for a removed record.
//!
//! Lock order: `writer` -> `db` -> `state`. `db` is write-locked only to switch to another
//! file (a snapshot restore, the end of a defragmentation).
//!
//! # Durability
//!
//! The server's WAL is the source of truth. Every batch commits with `Durability::None`
//! (visible at once, no fsync) unless `batch_interval` has passed since the last durable
//! commit or `batch_limit` backend mutations have accumulated; a background thread makes the
//! tail durable when the apply thread goes idle, and `force_commit` does it on demand. The
//! consistent index is written in the same transaction as the records, so whatever commit redb
//! recovers after a crash is self-consistent and the server replays its WAL from there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};

use crate::MvccError;
use crate::apply::ApplyBatch;
use crate::backend::{
    EXT_TABLE, KEY_TABLE, LoadedIndex, META_TABLE, MetaState, load_index, read_meta,
};
use crate::index::TreeIndex;
use crate::{range, txn};

/// Tuning of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Longest time a non-durable commit may wait for a durable one (etcd's
    /// `--backend-batch-interval`).
    pub batch_interval: Duration,
    /// Most backend mutations between durable commits (etcd's `--backend-batch-limit`).
    pub batch_limit: usize,
    /// Tests only (power-loss runs): the backend's writes stay in memory until synced, so a
    /// killed process loses what was never synced, as a power cut would
    /// (`held_writes.rs`).
    pub lose_unsynced_on_crash: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            batch_interval: Duration::from_millis(100),
            batch_limit: 10_000,
            lose_unsynced_on_crash: false,
        }
    }
}

/// What readers may see: the index and the revisions it is valid up to.
#[derive(Debug)]
pub(crate) struct Published {
    pub index: TreeIndex,
    pub current_rev: i64,
    /// -1 until the first compaction, as in etcd.
    pub compact_rev: i64,
    pub consistent_index: u64,
    pub term: u64,
}

/// The durability bookkeeping, owned by whoever holds the writer lock.
#[derive(Debug)]
pub(crate) struct WriterState {
    pub last_durable: Instant,
    pub ops_since_durable: usize,
    /// Some commit since the last durable one was non-durable.
    pub dirty: bool,
}

/// How long a computed `db_size_in_use_bytes` is reused; computing it walks the whole tree.
const IN_USE_CACHE_TTL: Duration = Duration::from_secs(1);

pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) opts: StoreOptions,
    pub(crate) db: RwLock<Database>,
    state: RwLock<Published>,
    writer: Mutex<WriterState>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    pub(crate) in_use_cache: Mutex<Option<(Instant, u64)>>,
    /// Held while a defragmentation runs: one at a time.
    pub(crate) defrag_running: Mutex<()>,
    /// While a defragmentation copies: the records compaction removes (see `defrag`).
    pub(crate) removal_log: Mutex<Option<crate::defrag::RemovalLog>>,
    /// Applied compactions whose records are still to be deleted (see `compaction`).
    pub(crate) compaction_backlog: Mutex<crate::compaction::Backlog>,
    /// Signalled when the backlog empties.
    pub(crate) compaction_drained: Condvar,
    /// Bumped each time the whole store is replaced (a snapshot restore), so a defragmentation
    /// copy of the replaced store is not switched in.
    replaced: AtomicU64,
    /// Bytes of all key records (see `backend::record_bytes`), kept as records are written and
    /// removed, so a quota check costs one atomic load.
    pub(crate) stored_bytes: AtomicU64,
    /// Told how long each durable commit took (`etcd_disk_backend_commit_duration_seconds`).
    commit_observer: std::sync::OnceLock<Box<dyn Fn(std::time::Duration) + Send + Sync>>,
    /// The leased keys found when the records were last read (open or restore), with the
    /// revision they were read at (see [`Store::take_leased_keys_at_load`]).
    leased_at_load: Mutex<Option<(i64, LeasedKeys)>>,
}

/// Keys attached to a lease, with the lease.
pub type LeasedKeys = HashMap<Vec<u8>, i64>;

// Poisoning only says a thread panicked while holding the lock. Every writer path undoes its
// index changes on unwind (see `ApplyBatch`'s Drop), so the data behind the lock is usable.
pub(crate) fn unpoison<G>(r: Result<G, std::sync::PoisonError<G>>) -> G {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, Published> {
        unpoison(self.state.read())
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, Published> {
        unpoison(self.state.write())
    }

    fn read_db(&self) -> RwLockReadGuard<'_, Database> {
        unpoison(self.db.read())
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        unpoison(self.writer.lock())
    }

    /// A redb snapshot of whatever is committed, for reads that need no published state.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, MvccError> {
        Ok(self.read_db().begin_read()?)
    }

    /// How many times the whole store was replaced since it opened.
    pub(crate) fn generation(&self) -> u64 {
        self.replaced.load(Ordering::Acquire)
    }

    /// Begins the (single) redb write transaction.
    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, MvccError> {
        Ok(self.read_db().begin_write()?)
    }

    /// Runs `f` on the published state and opens a redb snapshot that holds every record it
    /// refers to.
    pub(crate) fn snapshot<T>(
        &self,
        f: impl FnOnce(&Published) -> Result<T, MvccError>,
    ) -> Result<(T, ReadTransaction), MvccError> {
        let db = self.read_db();
        let state = self.read_state();
        let out = f(&state)?;
        let rtxn = db.begin_read()?;
        Ok((out, rtxn))
    }

    /// As [`Inner::snapshot`], for reads that must look at records while they decide what else
    /// to read (a transaction's value compares): `f` gets the redb snapshot too.
    pub(crate) fn snapshot_with_records<T>(
        &self,
        f: impl FnOnce(&Published, &ReadTransaction) -> Result<T, MvccError>,
    ) -> Result<(T, ReadTransaction), MvccError> {
        let db = self.read_db();
        let state = self.read_state();
        let rtxn = db.begin_read()?;
        let out = f(&state, &rtxn)?;
        Ok((out, rtxn))
    }

    /// Reports a durable commit's duration to the observer, if one was set.
    pub(crate) fn observe_durable_commit(&self, took: std::time::Duration) {
        if let Some(observe) = self.commit_observer.get() {
            observe(took);
        }
    }

    /// An empty durable commit, which makes every earlier non-durable commit durable.
    fn durable_commit(&self, writer: &mut WriterState) -> Result<(), MvccError> {
        let mut txn = self.begin_write()?;
        txn.set_durability(durable())?;
        let started = Instant::now();
        txn.commit()?;
        self.observe_durable_commit(started.elapsed());
        writer.last_durable = Instant::now();
        writer.ops_since_durable = 0;
        writer.dirty = false;
        Ok(())
    }

    /// The background flusher's tick: make the tail durable once it is old enough.
    fn flush_if_due(&self) -> Result<(), MvccError> {
        let mut writer = self.lock_writer();
        if writer.dirty && writer.last_durable.elapsed() >= self.opts.batch_interval {
            self.durable_commit(&mut writer)?;
        }
        Ok(())
    }
}

/// The MVCC key-value store. Share it as `Arc<Store>`.
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// redb's page cache (half of it at most for pages written by non-durable commits). redb's
/// default is 1 GiB, which the process keeps for as long as it lives; the file's pages are in
/// the kernel's page cache anyway (which, unlike ours, the kernel can reclaim, as it does
/// bbolt's mmap), so a cache of the hot pages is enough. With 100k puts of 256 bytes, peak RSS
/// went from 127 MB to 110 MB, throughput unchanged.
const CACHE_BYTES: usize = 16 << 20;

/// In the `ext` table: the snapshot the backend was last restored from.
const RESTORED_FROM_SNAPSHOT_KEY: &str = "mvcc/restored_from_snapshot";

/// Reads a store's metadata and rebuilds its key index from the records; a compaction a crash
/// interrupted is finished first.
fn load_store(db: &Database) -> Result<(LoadedIndex, MetaState), MvccError> {
    let rtxn = db.begin_read()?;
    let meta_table = rtxn.open_table(META_TABLE)?;
    let mut meta = read_meta(&meta_table)?;
    let mut loaded = load_index(&rtxn.open_table(KEY_TABLE)?)?;
    let mut txn = db.begin_write()?;
    txn.set_durability(durable())?;
    // Finishing a compaction removes records older than each key's last one, and all of a
    // key deleted at or before it: never a live key's last record, so `leased` stays true.
    match crate::compaction::finish_interrupted(&meta_table, &mut loaded.index, &txn)? {
        Some((revision, freed)) => {
            txn.commit()?;
            meta.compact_rev = Some(revision);
            loaded.stored_bytes = loaded.stored_bytes.saturating_sub(freed);
        }
        None => txn.abort()?,
    }
    Ok((loaded, meta))
}

pub(crate) fn open_database(
    path: &Path,
    opts: &StoreOptions,
) -> Result<Database, redb::DatabaseError> {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    if !opts.lose_unsynced_on_crash {
        return builder.create(path);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    builder.create_with_backend(crate::held_writes::HeldWritesBackend::new(file)?)
}

/// How a commit that should be durable is made: not at all while the `unsafeSkipFsync`
/// failpoint is on (a deliberately broken member, for proving the checkers).
pub(crate) fn durable() -> Durability {
    if etcd_failpoints::switched_on(etcd_failpoints::names::UNSAFE_SKIP_FSYNC) {
        Durability::None
    } else {
        Durability::Immediate
    }
}

/// What [`Store::range_within`] gives.
#[derive(Debug)]
pub enum Bounded {
    Answer(RangeResponse),
    /// The answer was not read: it is estimated at this many bytes.
    TooLarge(u64),
}

impl Store {
    /// Opens the store at `path`, creating the file if missing, and rebuilds the key index
    /// from the records.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, MvccError> {
        crate::defrag::remove_leftover(path)?;
        let db = open_database(path, &opts)?;
        {
            let txn = db.begin_write()?;
            txn.open_table(KEY_TABLE)?;
            txn.open_table(META_TABLE)?;
            txn.open_table(EXT_TABLE)?;
            txn.commit()?;
        }
        let (
            LoadedIndex {
                index,
                last_main,
                stored_bytes,
                leased,
            },
            meta,
        ) = load_store(&db)?;
        let compact_rev = meta.compact_rev.unwrap_or(-1);
        // A compaction can remove every record up to it (a delete of the last key), so the
        // compacted revision is a floor; an empty store is at revision 1, as in etcd.
        let current_rev = last_main.max(compact_rev).max(1);
        tracing::info!(
            path = %path.display(),
            current_revision = current_rev,
            compact_revision = compact_rev,
            consistent_index = meta.consistent_index,
            keys = index.len(),
            "opened mvcc store"
        );
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            opts,
            db: RwLock::new(db),
            state: RwLock::new(Published {
                index,
                current_rev,
                compact_rev,
                consistent_index: meta.consistent_index,
                term: meta.term,
            }),
            writer: Mutex::new(WriterState {
                last_durable: Instant::now(),
                ops_since_durable: 0,
                dirty: false,
            }),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            in_use_cache: Mutex::new(None),
            defrag_running: Mutex::new(()),
            removal_log: Mutex::new(None),
            compaction_backlog: Mutex::new(crate::compaction::Backlog::default()),
            compaction_drained: Condvar::new(),
            replaced: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(stored_bytes),
            commit_observer: std::sync::OnceLock::new(),
            leased_at_load: Mutex::new(Some((current_rev, leased))),
        });
        let flusher = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("mvcc-flusher".into())
                .spawn(move || flusher_loop(&inner))?
        };
        Ok(Store {
            inner,
            flusher: Some(flusher),
        })
    }

    /// A range at the published revision; header carries the current revision only.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let (plan, rtxn) = self
            .inner
            .snapshot(|st| range::plan(&st.index, req, st.current_rev, st.compact_rev))?;
        let table = rtxn.open_table(KEY_TABLE)?;
        range::finish(&table, req, plan)
    }

    /// A range at the published revision when its answer is estimated below `max_bytes`
    /// (its planned records, their sizes sampled); otherwise the estimate, read before the
    /// answer is, so that a large answer can wait for its turn (the server's read budget) and
    /// then be read with [`Store::range`]. A plan of no more records than are sampled is read
    /// whole: reading them is the estimate.
    pub fn range_within(&self, req: &RangeRequest, max_bytes: u64) -> Result<Bounded, MvccError> {
        let (plan, rtxn) = self
            .inner
            .snapshot(|st| range::plan(&st.index, req, st.current_rev, st.compact_rev))?;
        let table = rtxn.open_table(KEY_TABLE)?;
        if !range::worth_estimating(&plan) {
            // Few records: reading them costs what sampling would, and measures them exactly.
            let answer = range::finish(&table, req, plan)?;
            let bytes = prost::Message::encoded_len(&answer) as u64;
            if bytes >= max_bytes {
                return Ok(Bounded::TooLarge(bytes));
            }
            return Ok(Bounded::Answer(answer));
        }
        let estimate = range::estimate_bytes(&table, req, &plan)?;
        if estimate >= max_bytes {
            return Ok(Bounded::TooLarge(estimate));
        }
        Ok(Bounded::Answer(range::finish(&table, req, plan)?))
    }

    /// A transaction that only reads ([`crate::txn_reads_only`]), at the published revision,
    /// with the answer the apply batch would give it: etcd serves such transactions like
    /// ranges, without a log entry. A transaction that writes is refused with `NotReadOnly`.
    pub fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let (planned, rtxn) = self.inner.snapshot_with_records(|st, rtxn| {
            let table = rtxn.open_table(KEY_TABLE)?;
            txn::plan_read(&st.index, &table, req, st.current_rev, st.compact_rev)
        })?;
        let table = rtxn.open_table(KEY_TABLE)?;
        planned.read(&table)
    }

    /// A copy of the whole key index, for tests and debugging (it is as large as the index).
    pub fn index_clone(&self) -> crate::index::TreeIndex {
        self.inner.read_state().index.clone()
    }

    /// Keys that exist at the current revision (etcd's `etcd_debugging_mvcc_keys_total`).
    /// Walks the index: for scrapes, not for the write path.
    pub fn live_key_count(&self) -> usize {
        let state = self.inner.read_state();
        state.index.live_count(state.current_rev)
    }

    /// Calls `observe` with the duration of every durable commit (the first call wins).
    pub fn set_commit_observer(&self, observe: Box<dyn Fn(std::time::Duration) + Send + Sync>) {
        let _ = self.inner.commit_observer.set(observe);
    }

    /// The revision of the last applied write.
    pub fn current_revision(&self) -> i64 {
        self.inner.read_state().current_rev
    }

    /// Each live key attached to a lease, with its lease, as found when the records were last
    /// read (the store opened, or restored from a snapshot): the lessor is rebuilt from this
    /// instead of reading every record again. Given once, and only while no write has
    /// happened since (the revision is unchanged); `None` otherwise, when the caller must
    /// read the keys itself.
    pub fn take_leased_keys_at_load(&self) -> Option<LeasedKeys> {
        let (revision, leased) = unpoison(self.inner.leased_at_load.lock()).take()?;
        (revision == self.current_revision()).then_some(leased)
    }

    /// The revision of the last compaction; -1 if never compacted (as etcd reports it).
    pub fn compact_revision(&self) -> i64 {
        self.inner.read_state().compact_rev
    }

    /// The Raft index and term of the last applied entry, as committed with the data.
    pub fn consistent_index(&self) -> (u64, u64) {
        let st = self.inner.read_state();
        (st.consistent_index, st.term)
    }

    /// Applies one batch of Raft entries: everything `f` does commits together and becomes
    /// visible to readers at once (a compaction inside `f` first publishes what precedes it).
    /// `f` may read through the `Store`, but must not call `apply`, `force_commit`,
    /// `defragment` or `db_size_in_use_bytes`, which wait for the batch to end.
    /// If this returns an error, nothing `f` did after the last publication took effect,
    /// including events it took.
    pub fn apply<R>(&self, f: impl FnOnce(&mut ApplyBatch<'_>) -> R) -> Result<R, MvccError> {
        let mut writer = self.inner.lock_writer();
        let mut batch = ApplyBatch::begin(&self.inner, &mut writer)?;
        let out = f(&mut batch);
        batch.finish()?;
        Ok(out)
    }

    /// Makes every commit so far durable. Call before releasing WAL entries (snapshot,
    /// shutdown).
    pub fn force_commit(&self) -> Result<(), MvccError> {
        let mut writer = self.inner.lock_writer();
        crate::compaction::delete_all(&self.inner, &mut writer)?;
        if writer.dirty {
            self.inner.durable_commit(&mut writer)?;
        }
        Ok(())
    }

    /// Deletes every record an applied compaction removed and that is still waiting for the
    /// background deletion (see `compaction`), so the backend holds exactly the compacted
    /// history. Hashes, backups and defragmentation call it first.
    pub fn finish_compactions(&self) -> Result<(), MvccError> {
        let mut writer = self.inner.lock_writer();
        crate::compaction::delete_all(&self.inner, &mut writer)
    }

    /// Waits until the records of every compaction applied so far are deleted, without
    /// deleting any itself (writes go on meanwhile): a `physical` Compact answers after it.
    pub fn wait_compactions_deleted(&self) {
        crate::compaction::wait_drained(&self.inner);
    }

    /// Size of the database file.
    pub fn db_size_bytes(&self) -> u64 {
        match std::fs::metadata(&self.inner.path) {
            Ok(m) => m.len(),
            Err(e) => {
                tracing::warn!(error = %e, path = %self.inner.path.display(),
                    "cannot stat the mvcc database file; reporting size 0");
                0
            }
        }
    }

    /// Bytes the key records take (keys, values, a fixed overhead each): what the backend quota
    /// charges. Unlike the file size it shrinks as soon as compaction removes records, so no
    /// defragmentation is needed to get back under the quota. O(1).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.stored_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of the file in allocated pages (the rest is free space `defragment` returns).
    /// Computing it walks the whole tree, so the value is reused for a second.
    pub fn db_size_in_use_bytes(&self) -> u64 {
        // The cache lock is not held while computing: `defragment` takes it under the writer
        // lock, which the computation needs.
        if let Some((at, bytes)) = *unpoison(self.inner.in_use_cache.lock())
            && at.elapsed() < IN_USE_CACHE_TTL
        {
            return bytes;
        }
        match self.compute_in_use() {
            Ok(bytes) => {
                *unpoison(self.inner.in_use_cache.lock()) = Some((Instant::now(), bytes));
                bytes
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot compute the mvcc database's in-use size; reporting the file size");
                self.db_size_bytes()
            }
        }
    }

    fn compute_in_use(&self) -> Result<u64, MvccError> {
        // Holding the writer lock means no write transaction is live, so this one starts at
        // once and the apply thread waits for at most the walk.
        let _writer = self.inner.lock_writer();
        let txn = self.inner.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        Ok(stats.allocated_pages() * stats.page_size() as u64)
    }

    /// Writes a consistent copy of the backend to `dest`, for sending to a member that is too
    /// far behind. Makes the backend durable first, then copies the file while holding the
    /// writer lock (no commit can change the file meanwhile; readers go on). Returns the
    /// applied index the copy contains.
    pub fn snapshot_to(&self, dest: &Path) -> Result<u64, MvccError> {
        let mut writer = self.inner.lock_writer();
        crate::compaction::delete_all(&self.inner, &mut writer)?;
        if writer.dirty {
            self.inner.durable_commit(&mut writer)?;
        }
        let index = self.inner.read_state().consistent_index;
        std::fs::copy(&self.inner.path, dest)?;
        let file = std::fs::File::open(dest)?;
        file.sync_all()?;
        Ok(index)
    }

    /// Replaces the whole store with the backend file at `src` (a snapshot received from the
    /// leader): the file is moved into place and the key index rebuilt from it. Readers see
    /// either the old store or the new one.
    ///
    /// `snapshot_index` is the Raft index of the snapshot the file came with. The file may be
    /// newer (the leader went on applying while it copied), and the two indexes are recorded
    /// in it before it is moved into place ([`Store::restored_from_snapshot`]), so a restart
    /// before the member's log reaches the file's index knows why the backend is ahead.
    pub fn restore_from(&self, src: &Path, snapshot_index: u64) -> Result<(), MvccError> {
        // Check the file opens as a store before touching ours.
        let (
            LoadedIndex {
                index,
                last_main,
                stored_bytes,
                leased,
            },
            meta,
        ) = {
            let candidate = open_database(src, &self.inner.opts)?;
            let copy_index = {
                let rtxn = candidate.begin_read()?;
                read_meta(&rtxn.open_table(META_TABLE)?)?.consistent_index
            };
            let mut txn = candidate.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut ext = txn.open_table(EXT_TABLE)?;
                let mut record = snapshot_index.to_be_bytes().to_vec();
                record.extend_from_slice(&copy_index.to_be_bytes());
                ext.insert(RESTORED_FROM_SNAPSHOT_KEY, record.as_slice())?;
            }
            txn.commit()?;
            load_store(&candidate)?
        };
        let mut writer = self.inner.lock_writer();
        let mut db = unpoison(self.inner.db.write());
        std::fs::rename(src, &self.inner.path)?;
        if let Some(dir) = self.inner.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        *db = open_database(&self.inner.path, &self.inner.opts)?;
        self.inner.replaced.fetch_add(1, Ordering::AcqRel);
        let compact_rev = meta.compact_rev.unwrap_or(-1);
        let current_rev = last_main.max(compact_rev).max(1);
        {
            let mut st = self.inner.write_state();
            st.index = index;
            st.current_rev = current_rev;
            st.compact_rev = compact_rev;
            st.consistent_index = meta.consistent_index;
            st.term = meta.term;
        }
        self.inner
            .stored_bytes
            .store(stored_bytes, Ordering::Relaxed);
        *unpoison(self.inner.leased_at_load.lock()) = Some((current_rev, leased));
        writer.dirty = false;
        writer.ops_since_durable = 0;
        writer.last_durable = Instant::now();
        drop(db);
        *unpoison(self.inner.in_use_cache.lock()) = None;
        tracing::info!(
            current_revision = current_rev,
            consistent_index = meta.consistent_index,
            "restored mvcc store from a snapshot"
        );
        Ok(())
    }

    /// Rewrites the database file compactly, returning the free space to the filesystem,
    /// while reads and writes go on: writes wait only for the last records and the switch to
    /// the new file (see `defrag`). Needs free disk space for a copy of the live data.
    pub fn defragment(&self) -> Result<(), MvccError> {
        crate::defrag::defragment(&self.inner)
    }

    /// The last snapshot this backend was restored from: (the snapshot's Raft index, the
    /// backend copy's applied index), as [`Store::restore_from`] recorded them.
    pub fn restored_from_snapshot(&self) -> Result<Option<(u64, u64)>, MvccError> {
        Ok(self.meta_get(RESTORED_FROM_SNAPSHOT_KEY)?.and_then(|v| {
            let snapshot = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
            let copy = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
            Some((snapshot, copy))
        }))
    }

    /// One entry of the opaque metadata other subsystems keep here.
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, MvccError> {
        let ((), rtxn) = self.inner.snapshot(|_| Ok(()))?;
        let table = rtxn.open_table(EXT_TABLE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every metadata entry whose name starts with `prefix`, in name order.
    pub fn meta_range(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MvccError> {
        let ((), rtxn) = self.inner.snapshot(|_| Ok(()))?;
        let table = rtxn.open_table(EXT_TABLE)?;
        meta_prefix(&table, prefix)
    }
}

/// Entries of an `ext` table whose names start with `prefix`.
pub(crate) fn meta_prefix<T>(table: &T, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MvccError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let mut out = Vec::new();
    for entry in table.range(prefix..)? {
        let (k, v) = entry?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(out)
}

fn flusher_loop(inner: &Inner) {
    // A zero interval would spin; a millisecond is already far below any useful setting.
    let tick = inner.opts.batch_interval.max(Duration::from_millis(1));
    loop {
        let stopped = {
            let guard = unpoison(inner.stop.lock());
            let (guard, _) = unpoison(inner.stop_cv.wait_timeout_while(guard, tick, |stop| !*stop));
            *guard
        };
        if stopped {
            return;
        }
        if let Err(e) = inner.flush_if_due() {
            tracing::warn!(error = %e,
                "mvcc background commit failed; data stays recoverable from the WAL, check the disk");
        }
        // Compacted records, a transaction's worth at a time, the writer free in between.
        loop {
            let started = Instant::now();
            match crate::compaction::delete_some(inner) {
                // The writer is left free for at least as long as it was held, so writes
                // keep going (a mutex is not fair: without a pause, this thread would take
                // it straight back).
                Ok(true) if !*unpoison(inner.stop.lock()) => {
                    std::thread::sleep(started.elapsed().max(Duration::from_millis(1)));
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e,
                        "deleting compacted records failed; they are deleted again after a restart");
                    break;
                }
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        *unpoison(self.inner.stop.lock()) = true;
        self.inner.stop_cv.notify_all();
        if let Some(handle) = self.flusher.take()
            && handle.join().is_err()
        {
            tracing::warn!("mvcc flusher thread panicked");
        }
        if let Err(e) = self.force_commit() {
            tracing::warn!(error = %e, "final mvcc commit failed; the WAL replays what was lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_shareable() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Store>();
    }

    #[test]
    fn zero_interval_does_not_spin_or_hang() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            batch_interval: Duration::ZERO,
            batch_limit: 0,
            ..StoreOptions::default()
        };
        let store = Store::open(&dir.path().join("db"), opts).unwrap();
        store.apply(|b| b.set_consistent_index(1, 1)).unwrap();
        assert!(!store.inner.lock_writer().dirty, "every commit is durable");
        drop(store);
    }
}
