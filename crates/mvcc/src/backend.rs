//! The redb layout and the little codecs around it.
//!
//! Three tables:
//! - `key`: [`RevKey`] (etcd's 17/18-byte revision key) -> prost-encoded `mvccpb::KeyValue`.
//!   A tombstone's value is a `KeyValue` holding only the key.
//! - `meta`: this crate's own state, written in the same transaction as the records it
//!   describes: `consistent_index` and `term` (u64 big-endian), `scheduledCompactRev` and
//!   `finishedCompactRev` (a [`RevKey`] of `(rev, 0)`, as etcd writes them).
//! - `ext`: opaque metadata other subsystems store through `meta_put` (membership, alarms,
//!   leases). Kept apart from `meta` so no caller-chosen name can clobber ours.

use std::collections::HashMap;

use etcd_api::mvccpb::KeyValue;
use prost::Message;
use redb::{ReadableTable, TableDefinition};

use crate::MvccError;
use crate::index::TreeIndex;
use crate::revision::{RevKey, Revision};

/// Revision-keyed records.
pub(crate) const KEY_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
/// This crate's bookkeeping.
pub(crate) const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Other subsystems' opaque metadata.
pub(crate) const EXT_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("ext");

pub(crate) const CONSISTENT_INDEX_KEY: &str = "consistent_index";
pub(crate) const TERM_KEY: &str = "term";
pub(crate) const SCHEDULED_COMPACT_KEY: &str = "scheduledCompactRev";
pub(crate) const FINISHED_COMPACT_KEY: &str = "finishedCompactRev";

/// Encodes a record value.
pub(crate) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    kv.encode_to_vec()
}

/// Reads the live (non-tombstone) record at `rev`; its absence means index and backend
/// disagree.
pub(crate) fn read_kv<T>(table: &T, rev: Revision) -> Result<KeyValue, MvccError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let key = RevKey::new(rev, false);
    match table.get(key.as_bytes())? {
        Some(v) => Ok(KeyValue::decode(v.value())?),
        None => Err(MvccError::Corrupt(format!(
            "index names revision {}.{} but the backend has no record for it",
            rev.main, rev.sub
        ))),
    }
}

/// Decodes a big-endian u64 meta value.
pub(crate) fn decode_u64(name: &str, bytes: &[u8]) -> Result<u64, MvccError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        MvccError::Corrupt(format!("meta {name} has {} bytes, want 8", bytes.len()))
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// What the `meta` table says about the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MetaState {
    pub consistent_index: u64,
    pub term: u64,
    /// `None` if the store was never compacted.
    pub compact_rev: Option<i64>,
}

/// Reads [`MetaState`].
pub(crate) fn read_meta<T>(meta: &T) -> Result<MetaState, MvccError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let u64_at = |name: &str| -> Result<u64, MvccError> {
        match meta.get(name)? {
            Some(v) => decode_u64(name, v.value()),
            None => Ok(0),
        }
    };
    let compact_rev = match meta.get(FINISHED_COMPACT_KEY)? {
        Some(v) => Some(RevKey::decode(v.value())?.0.main),
        None => None,
    };
    Ok(MetaState {
        consistent_index: u64_at(CONSISTENT_INDEX_KEY)?,
        term: u64_at(TERM_KEY)?,
        compact_rev,
    })
}

/// Rebuilds the key index from every record, oldest first; returns it with the highest main
/// revision seen (0 if there are no records).
/// Bytes a record is charged for quota purposes: its key and value plus a fixed per-record
/// overhead standing in for the B-tree's bookkeeping.
pub(crate) fn record_bytes(key_len: usize, value_len: usize) -> u64 {
    (key_len + value_len) as u64 + RECORD_OVERHEAD_BYTES
}

const RECORD_OVERHEAD_BYTES: u64 = 16;

/// What reading every record on open gives.
pub(crate) struct LoadedIndex {
    pub index: TreeIndex,
    /// The highest main revision seen (0 if there are no records).
    pub last_main: i64,
    /// The bytes the records take (see [`record_bytes`]).
    pub stored_bytes: u64,
    /// Each live key attached to a lease, with the lease: what the lessor needs on start, got
    /// here at no cost instead of by reading every record again.
    pub leased: HashMap<Vec<u8>, i64>,
}

/// Rebuilds the key index from the key table.
pub(crate) fn load_index<T>(table: &T) -> Result<LoadedIndex, MvccError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let mut index = TreeIndex::default();
    let mut last_main = 0;
    let mut stored_bytes = 0;
    let mut leased = HashMap::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        stored_bytes += record_bytes(k.value().len(), v.value().len());
        let (rev, tombstone) = RevKey::decode(k.value())?;
        // The fields the index needs, read in place: no copy of the value (most of the time
        // of an open, for large stores).
        let kv = crate::record_fields::index_fields(v.value())?;
        index.restore(kv.key, rev, tombstone, kv.create_revision, kv.version)?;
        // Records come oldest first, so a key's last record says which lease it is on.
        if kv.lease != 0 && !tombstone {
            leased.insert(kv.key.to_vec(), kv.lease);
        } else if !leased.is_empty() {
            leased.remove(kv.key);
        }
        last_main = rev.main;
    }
    Ok(LoadedIndex {
        index,
        last_main,
        stored_bytes,
        leased,
    })
}
