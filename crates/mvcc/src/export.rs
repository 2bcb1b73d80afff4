//! A consistent view of the whole backend for backups: every record, this crate's meta and
//! the other subsystems' metadata, all read in one read transaction, so a backup taken while
//! writes go on is one point in time.

use redb::{ReadTransaction, ReadableTable};

use crate::MvccError;
use crate::backend::{
    CONSISTENT_INDEX_KEY, EXT_TABLE, FINISHED_COMPACT_KEY, KEY_TABLE, META_TABLE,
    SCHEDULED_COMPACT_KEY, decode_u64,
};
use crate::store::{Store, meta_prefix};

/// One point in time of the backend. Holding it keeps that version of the file alive (redb's
/// MVCC), so take it, read it through, and drop it.
pub struct BackendView {
    rtxn: ReadTransaction,
}

impl Store {
    pub fn view(&self) -> Result<BackendView, MvccError> {
        self.finish_compactions()?;
        let ((), rtxn) = self.inner.snapshot(|_| Ok(()))?;
        Ok(BackendView { rtxn })
    }
}

impl BackendView {
    /// The Raft index the view's data covers.
    pub fn consistent_index(&self) -> Result<u64, MvccError> {
        let table = self.rtxn.open_table(META_TABLE)?;
        match table.get(CONSISTENT_INDEX_KEY)? {
            Some(v) => decode_u64(CONSISTENT_INDEX_KEY, v.value()),
            None => Ok(0),
        }
    }

    /// etcd's compaction marks (`scheduledCompactRev`, `finishedCompactRev`), as etcd stores
    /// them in its `meta` bucket, in name order.
    pub fn compaction_marks(&self) -> Result<Vec<(&'static str, Vec<u8>)>, MvccError> {
        let table = self.rtxn.open_table(META_TABLE)?;
        let mut marks = Vec::new();
        for name in [FINISHED_COMPACT_KEY, SCHEDULED_COMPACT_KEY] {
            if let Some(v) = table.get(name)? {
                marks.push((name, v.value().to_vec()));
            }
        }
        Ok(marks)
    }

    /// Every record in key order: etcd's revision key and the encoded `mvccpb::KeyValue`.
    pub fn for_each_record<E>(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<MvccError>,
    {
        let table = self.rtxn.open_table(KEY_TABLE).map_err(MvccError::from)?;
        for entry in table.iter().map_err(MvccError::from)? {
            let (k, v) = entry.map_err(MvccError::from)?;
            f(k.value(), v.value())?;
        }
        Ok(())
    }

    /// One entry of the other subsystems' metadata (see `Store::meta_get`).
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, MvccError> {
        let table = self.rtxn.open_table(EXT_TABLE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The other subsystems' metadata under `prefix` (see `Store::meta_range`).
    pub fn meta_range(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MvccError> {
        let table = self.rtxn.open_table(EXT_TABLE)?;
        meta_prefix(&table, prefix)
    }
}
