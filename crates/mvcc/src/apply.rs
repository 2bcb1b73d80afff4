//! The write side: a batch of Raft entries applied in one redb write transaction.
//!
//! Each request is applied as one etcd "write transaction" (a [`Scope`]): all its changes
//! share the next main revision and take sub revisions 0, 1, 2...; a scope that changes
//! nothing takes no revision. A scope either completes or is undone (backend records removed,
//! index truncated), so a failing request leaves no trace even in the middle of a batch.
//!
//! Index changes are made as requests execute, above the published revision, where readers
//! do not look (see the `store` module docs). If the batch fails to commit, or is dropped
//! without committing, they are truncated away again.

use std::collections::BTreeMap;
use std::ops::Bound;

use etcd_api::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use etcd_api::mvccpb::event::EventType;
use etcd_api::mvccpb::{Event, KeyValue};
use redb::{Durability, ReadableTable, WriteTransaction};

use crate::MvccError;
use crate::backend::{
    CONSISTENT_INDEX_KEY, EXT_TABLE, KEY_TABLE, META_TABLE, SCHEDULED_COMPACT_KEY, TERM_KEY,
    encode_kv, read_kv,
};
use crate::index::KeyRange;
use crate::key_index::KeyAt;
use crate::range::{self, header};
use crate::revision::{RevKey, Revision};
use crate::store::{Inner, WriterState, meta_prefix};

/// One batch of writes; see [`crate::Store::apply`].
pub struct ApplyBatch<'s> {
    inner: &'s Inner,
    writer: &'s mut WriterState,
    /// `None` once committed, or after a backend failure left it unusable.
    txn: Option<WriteTransaction>,
    /// The revision readers see; every index change above it belongs to this batch.
    published_rev: i64,
    current_rev: i64,
    compact_rev: i64,
    consistent: Option<(u64, u64)>,
    /// Keys whose index changed above `published_rev`, for undo.
    touched: Vec<Vec<u8>>,
    events: Vec<(i64, Vec<Event>)>,
    /// Backend mutations not yet committed.
    ops: usize,
    /// Metadata writes for commit time; `None` deletes.
    pending_meta: BTreeMap<String, Option<Vec<u8>>>,
}

/// One etcd write transaction inside the batch: the changes that share a main revision.
pub(crate) struct Scope {
    begin_rev: i64,
    changes: i64,
    events: Vec<Event>,
    written: Vec<RevKey>,
    touched: Vec<Vec<u8>>,
}

impl Scope {
    /// The revision reads inside the scope see: its own changes once it has any.
    pub(crate) fn view_rev(&self) -> i64 {
        if self.changes > 0 {
            self.begin_rev + 1
        } else {
            self.begin_rev
        }
    }

    fn next_rev(&self) -> Revision {
        Revision::new(self.begin_rev + 1, self.changes)
    }
}

impl<'s> ApplyBatch<'s> {
    fn add_stored(&self, key_len: usize, value_len: usize) {
        let bytes = crate::backend::record_bytes(key_len, value_len);
        self.inner
            .stored_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn sub_stored(&self, key_len: usize, value_len: usize) {
        let bytes = crate::backend::record_bytes(key_len, value_len);
        self.inner
            .stored_bytes
            .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn begin(inner: &'s Inner, writer: &'s mut WriterState) -> Result<Self, MvccError> {
        let txn = inner.begin_write()?;
        let st = inner.read_state();
        let (current_rev, compact_rev) = (st.current_rev, st.compact_rev);
        drop(st);
        Ok(ApplyBatch {
            inner,
            writer,
            txn: Some(txn),
            published_rev: current_rev,
            current_rev,
            compact_rev,
            consistent: None,
            touched: Vec::new(),
            events: Vec::new(),
            ops: 0,
            pending_meta: BTreeMap::new(),
        })
    }

    pub(crate) fn wtxn(&self) -> Result<&WriteTransaction, MvccError> {
        self.txn.as_ref().ok_or(MvccError::BatchAbandoned)
    }

    /// The keys in `range` that exist at `rev`, from the index.
    pub(crate) fn index_keys_at(&self, range: KeyRange<'_>, rev: i64) -> Vec<(Vec<u8>, KeyAt)> {
        self.inner.read_state().index.keys_at(range, rev)
    }

    /// The current revision including this batch's writes so far.
    pub fn current_revision(&self) -> i64 {
        self.current_rev
    }

    /// The compacted revision including compactions in this batch.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }

    /// Records the Raft position this batch brings the store to; committed with the batch.
    /// Set it after applying each entry: a compaction commits what precedes it, consistent
    /// index included, so the index must never name an entry whose changes are not in.
    pub fn set_consistent_index(&mut self, index: u64, term: u64) {
        self.consistent = Some((index, term));
    }

    /// A range that sees this batch's own writes.
    pub fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.range_at(req, self.current_rev)
    }

    /// A range in a view whose current revision is `view_rev`.
    pub(crate) fn range_at(
        &self,
        req: &RangeRequest,
        view_rev: i64,
    ) -> Result<RangeResponse, MvccError> {
        let plan = {
            let st = self.inner.read_state();
            range::plan(&st.index, req, view_rev, self.compact_rev)?
        };
        let table = self.wtxn()?.open_table(KEY_TABLE)?;
        range::finish(&table, req, plan)
    }

    /// A put. `leases` says whether a lease ID exists.
    pub fn put(
        &mut self,
        req: &PutRequest,
        leases: &dyn Fn(i64) -> bool,
    ) -> Result<PutResponse, MvccError> {
        if req.lease != 0 && !leases(req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        self.in_scope(|batch, scope| batch.put_in(scope, req))
    }

    /// A delete of a key or range; deleting nothing takes no revision.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        self.in_scope(|batch, scope| batch.delete_in(scope, req))
    }

    /// Runs `f` as one write transaction: commits its revision if it succeeds, undoes it
    /// entirely if it fails.
    pub(crate) fn in_scope<T>(
        &mut self,
        f: impl FnOnce(&mut Self, &mut Scope) -> Result<T, MvccError>,
    ) -> Result<T, MvccError> {
        let mut scope = Scope {
            begin_rev: self.current_rev,
            changes: 0,
            events: Vec::new(),
            written: Vec::new(),
            touched: Vec::new(),
        };
        match f(self, &mut scope) {
            Ok(out) => {
                if scope.changes > 0 {
                    self.current_rev = scope.begin_rev + 1;
                    self.events.push((self.current_rev, scope.events));
                    self.ops += scope.written.len();
                    self.touched.extend(scope.touched);
                }
                Ok(out)
            }
            Err(e) => {
                self.undo_scope(scope)?;
                Err(e)
            }
        }
    }

    fn undo_scope(&mut self, scope: Scope) -> Result<(), MvccError> {
        self.inner
            .write_state()
            .index
            .truncate_above(scope.touched.iter().map(Vec::as_slice), scope.begin_rev);
        if scope.written.is_empty() {
            return Ok(());
        }
        let removed = (|| -> Result<(), MvccError> {
            let mut table = self.wtxn()?.open_table(KEY_TABLE)?;
            for key in &scope.written {
                if let Some(old) = table.remove(key.as_bytes())? {
                    self.sub_stored(key.as_bytes().len(), old.value().len());
                }
            }
            Ok(())
        })();
        if let Err(e) = removed {
            // The backend now holds records the index does not; nothing in this batch may
            // commit.
            self.txn = None;
            return Err(e);
        }
        Ok(())
    }

    pub(crate) fn put_in(
        &mut self,
        scope: &mut Scope,
        req: &PutRequest,
    ) -> Result<PutResponse, MvccError> {
        let prev_at = self
            .inner
            .read_state()
            .index
            .get(&req.key, scope.view_rev());
        if prev_at.is_none() && (req.ignore_value || req.ignore_lease) {
            return Err(MvccError::KeyNotFound);
        }
        let mut table = self.wtxn()?.open_table(KEY_TABLE)?;
        // The previous record is read only when this request needs it: the index has the
        // create revision and version, the lessor has the previous lease, and watchers that
        // want previous values read them at send time (as etcd does).
        let needs_prev = req.prev_kv || req.ignore_value || req.ignore_lease;
        let prev = match prev_at {
            Some(at) if needs_prev => Some(read_kv(&table, at.modified)?),
            _ => None,
        };
        let (value, lease) = match &prev {
            Some(p) => (
                if req.ignore_value {
                    p.value.clone()
                } else {
                    req.value.clone()
                },
                if req.ignore_lease { p.lease } else { req.lease },
            ),
            None => (req.value.clone(), req.lease),
        };
        let rev = scope.next_rev();
        // A put inside the key's current generation keeps its create revision.
        let (create_revision, version) = match prev_at {
            Some(at) => (at.created, at.version + 1),
            None => (rev.main, 1),
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        let rev_key = RevKey::new(rev, false);
        let encoded = encode_kv(&kv);
        table.insert(rev_key.as_bytes(), encoded.as_slice())?;
        self.add_stored(rev_key.as_bytes().len(), encoded.len());
        drop(table);
        scope.written.push(rev_key);
        scope.touched.push(req.key.clone());
        self.inner.write_state().index.put(&req.key, rev)?;
        scope.changes += 1;
        let (event_prev, response_prev) = if req.prev_kv {
            (prev.clone(), prev)
        } else {
            (prev, None)
        };
        scope.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: event_prev,
        });
        Ok(PutResponse {
            header: header(rev.main),
            prev_kv: response_prev,
        })
    }

    pub(crate) fn delete_in(
        &mut self,
        scope: &mut Scope,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let targets = self
            .inner
            .read_state()
            .index
            .keys_at(KeyRange::new(&req.key, &req.range_end), scope.view_rev());
        let mut prev_kvs = Vec::new();
        let mut table = self.wtxn()?.open_table(KEY_TABLE)?;
        for (key, at) in &targets {
            let prev = read_kv(&table, at.modified)?;
            let rev = scope.next_rev();
            let rev_key = RevKey::new(rev, true);
            let tombstone = KeyValue {
                key: key.clone(),
                ..Default::default()
            };
            let encoded = encode_kv(&tombstone);
            table.insert(rev_key.as_bytes(), encoded.as_slice())?;
            self.add_stored(rev_key.as_bytes().len(), encoded.len());
            scope.written.push(rev_key);
            scope.touched.push(key.clone());
            self.inner.write_state().index.tombstone(key, rev)?;
            scope.changes += 1;
            // As etcd's watchable store does: a delete event carries the key and the delete's
            // revision as mod_revision.
            scope.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: key.clone(),
                    mod_revision: rev.main,
                    ..Default::default()
                }),
                prev_kv: Some(prev.clone()),
            });
            if req.prev_kv {
                prev_kvs.push(prev);
            }
        }
        Ok(DeleteRangeResponse {
            header: header(scope.view_rev()),
            deleted: targets.len() as i64,
            prev_kvs,
        })
    }

    /// Compacts at `revision`: drops every revision at or below it except each key's latest
    /// (and that too if it is a delete), from the index and the backend. Persisted with the
    /// batch.
    pub fn compact(&mut self, revision: i64) -> Result<(), MvccError> {
        if revision <= self.compact_rev {
            return Err(MvccError::Compacted);
        }
        if revision > self.current_rev {
            return Err(MvccError::FutureRev);
        }
        // Readers must see everything up to here before the index loses old revisions, or a
        // reader still at the published revision could find a key's history trimmed past it.
        if self.current_rev > self.published_rev {
            self.commit()?;
            self.txn = Some(self.inner.begin_write()?);
        }
        etcd_failpoints::point(etcd_failpoints::names::COMPACT_BEFORE_COMMIT);
        let removed = {
            let mut st = self.inner.write_state();
            st.compact_rev = revision;
            st.index.compact(revision)
        };
        self.compact_rev = revision;
        // The records go later, a bounded number per write transaction (`compaction`): the
        // index no longer names them, so no reader asks for them meanwhile.
        let scheduled = (|| -> Result<(), MvccError> {
            let mut meta = self.wtxn()?.open_table(META_TABLE)?;
            let at = RevKey::new(Revision::new(revision, 0), false);
            meta.insert(SCHEDULED_COMPACT_KEY, at.as_bytes())?;
            Ok(())
        })();
        if let Err(e) = scheduled {
            self.txn = None;
            return Err(e);
        }
        let count = removed.len();
        crate::store::unpoison(self.inner.compaction_backlog.lock()).push(revision, removed);
        self.ops += 1;
        etcd_failpoints::point(etcd_failpoints::names::COMPACT_AFTER_COMMIT);
        tracing::info!(revision, removed = count, "compacted mvcc store");
        Ok(())
    }

    /// Sets an opaque metadata entry. Buffered and written at commit, so a backend failure
    /// surfaces as the batch's error rather than here.
    pub fn meta_put(&mut self, key: &str, value: &[u8]) {
        self.pending_meta
            .insert(key.to_string(), Some(value.to_vec()));
    }

    /// Removes an opaque metadata entry (buffered like [`ApplyBatch::meta_put`]).
    pub fn meta_delete(&mut self, key: &str) {
        self.pending_meta.insert(key.to_string(), None);
    }

    /// Reads an opaque metadata entry, seeing this batch's writes.
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, MvccError> {
        if let Some(pending) = self.pending_meta.get(key) {
            return Ok(pending.clone());
        }
        let table = self.wtxn()?.open_table(EXT_TABLE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Metadata entries whose names start with `prefix`, in name order, seeing this batch's
    /// writes.
    pub fn meta_range(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MvccError> {
        let table = self.wtxn()?.open_table(EXT_TABLE)?;
        let mut merged: BTreeMap<String, Vec<u8>> =
            meta_prefix(&table, prefix)?.into_iter().collect();
        let pending = self
            .pending_meta
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        for (k, v) in pending {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// The changes made so far (and not yet taken), one entry per main revision, oldest
    /// first. `prev_kv` is the value just before each change (for a key changed twice in one
    /// transaction, the first change; etcd's watch would report the pre-transaction value),
    /// absent for creates. Delete events carry the key and the delete's revision as
    /// `mod_revision`, as etcd's watch does.
    pub fn take_events(&mut self) -> Vec<(i64, Vec<Event>)> {
        std::mem::take(&mut self.events)
    }

    /// Commits the batch; called by `Store::apply` after the caller's closure.
    pub(crate) fn finish(mut self) -> Result<(), MvccError> {
        self.commit()
    }

    /// Commits the write transaction (durably if due) and publishes its revision. Leaves no
    /// transaction behind.
    fn commit(&mut self) -> Result<(), MvccError> {
        let Some(mut txn) = self.txn.take() else {
            return Err(MvccError::BatchAbandoned);
        };
        if !self.pending_meta.is_empty() {
            let mut ext = txn.open_table(EXT_TABLE)?;
            for (k, v) in std::mem::take(&mut self.pending_meta) {
                match v {
                    Some(v) => ext.insert(k.as_str(), v.as_slice())?,
                    None => ext.remove(k.as_str())?,
                };
                self.ops += 1;
            }
        }
        if let Some((index, term)) = self.consistent {
            let mut meta = txn.open_table(META_TABLE)?;
            meta.insert(CONSISTENT_INDEX_KEY, index.to_be_bytes().as_slice())?;
            meta.insert(TERM_KEY, term.to_be_bytes().as_slice())?;
        }
        let changed = self.ops > 0 || self.consistent.is_some();
        let ops_since_durable = self.writer.ops_since_durable + self.ops;
        let durable = ops_since_durable >= self.inner.opts.batch_limit
            || ((changed || self.writer.dirty)
                && self.writer.last_durable.elapsed() >= self.inner.opts.batch_interval);
        if !changed && !durable {
            txn.abort()?;
            return Ok(());
        }
        // Records of earlier compactions, a bounded share per batch.
        let deleted =
            crate::compaction::delete_pending(self.inner, &txn, crate::compaction::PER_BATCH)?;
        self.ops += deleted;
        txn.set_durability(if durable {
            crate::store::durable()
        } else {
            Durability::None
        })?;
        let started = std::time::Instant::now();
        etcd_failpoints::point(etcd_failpoints::names::BACKEND_BEFORE_COMMIT);
        txn.commit()?;
        etcd_failpoints::point(etcd_failpoints::names::BACKEND_AFTER_COMMIT);
        if durable {
            self.inner.observe_durable_commit(started.elapsed());
            self.writer.last_durable = std::time::Instant::now();
            self.writer.ops_since_durable = 0;
            self.writer.dirty = false;
        } else {
            self.writer.ops_since_durable = ops_since_durable;
            self.writer.dirty = true;
        }
        {
            let mut st = self.inner.write_state();
            st.current_rev = self.current_rev;
            st.compact_rev = self.compact_rev;
            if let Some((index, term)) = self.consistent {
                st.consistent_index = index;
                st.term = term;
            }
        }
        self.published_rev = self.current_rev;
        self.touched.clear();
        self.consistent = None;
        self.ops = 0;
        Ok(())
    }
}

impl Drop for ApplyBatch<'_> {
    fn drop(&mut self) {
        // Unpublished index changes of a batch that did not commit (error or panic).
        if !self.touched.is_empty() {
            self.inner
                .write_state()
                .index
                .truncate_above(self.touched.iter().map(Vec::as_slice), self.published_rev);
        }
    }
}
