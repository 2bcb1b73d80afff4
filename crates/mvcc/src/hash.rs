//! Consistency hashes, compared across members to detect divergence.
//!
//! `hash_kv` is etcd's `HashByRev`: CRC-32C (Castagnoli) over the string `key`, then each
//! record key and value of the `key` table up to the revision, skipping records at or below
//! the compacted revision that a compaction at the hashed revision would drop. Because record
//! keys and values use etcd's byte layout, the result equals etcd's for the same history.
//!
//! `hash` covers every table (name, then keys and values, tables in name order), minus the
//! consistent index and term, which legitimately differ between members.

use redb::{ReadableTable, TableHandle};

use crate::MvccError;
use crate::backend::{CONSISTENT_INDEX_KEY, EXT_TABLE, KEY_TABLE, META_TABLE, TERM_KEY};
use crate::revision::RevKey;
use crate::store::Store;

/// The result of [`Store::hash_kv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32C of the records.
    pub hash: u32,
    /// The revision hashed up to (the request's, or the current one for 0).
    pub hash_revision: i64,
    /// The compacted revision at the time of hashing.
    pub compact_revision: i64,
    /// The current revision at the time of hashing (the response header's revision).
    pub current_revision: i64,
}

impl Store {
    /// Hashes the history up to `revision` (0 = current). Fails with Compacted at or below
    /// the compacted revision and FutureRev above the current one.
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash, MvccError> {
        self.finish_compactions()?;
        let ((keep, out), rtxn) = self.inner.snapshot(|st| {
            if revision > 0 && revision <= st.compact_rev {
                return Err(MvccError::Compacted);
            }
            if revision > 0 && revision > st.current_rev {
                return Err(MvccError::FutureRev);
            }
            let at = if revision == 0 {
                st.current_rev
            } else {
                revision
            };
            let out = KvHash {
                hash: 0,
                hash_revision: at,
                compact_revision: st.compact_rev,
                current_revision: st.current_rev,
            };
            Ok((st.index.keep(at), out))
        })?;
        let table = rtxn.open_table(KEY_TABLE)?;
        let mut crc = crc32c::crc32c_append(0, b"key");
        // Everything up to and including hash_revision. A negative revision hashes nothing
        // but the table name, as in etcd.
        let upper = RevKey::lower_bound(out.hash_revision.saturating_add(1).max(0));
        for entry in table.range(..upper.as_bytes())? {
            let (k, v) = entry?;
            let (rev, _) = RevKey::decode(k.value())?;
            // Records at or below the compacted revision that a compaction at the hashed
            // revision would remove; `keep` empty means "nothing to judge by", as in etcd.
            if rev.main <= out.compact_revision && !keep.is_empty() && !keep.contains(&rev) {
                continue;
            }
            crc = crc32c::crc32c_append(crc, k.value());
            crc = crc32c::crc32c_append(crc, v.value());
        }
        Ok(KvHash { hash: crc, ..out })
    }

    /// Hashes the whole backend except the consistent index and term.
    pub fn hash(&self) -> Result<u32, MvccError> {
        self.finish_compactions()?;
        let ((), rtxn) = self.inner.snapshot(|_| Ok(()))?;
        let mut crc = 0;
        // Tables in name order: ext, key, meta.
        crc = crc32c::crc32c_append(crc, EXT_TABLE.name().as_bytes());
        for entry in rtxn.open_table(EXT_TABLE)?.iter()? {
            let (k, v) = entry?;
            crc = crc32c::crc32c_append(crc, k.value().as_bytes());
            crc = crc32c::crc32c_append(crc, v.value());
        }
        crc = crc32c::crc32c_append(crc, KEY_TABLE.name().as_bytes());
        for entry in rtxn.open_table(KEY_TABLE)?.iter()? {
            let (k, v) = entry?;
            crc = crc32c::crc32c_append(crc, k.value());
            crc = crc32c::crc32c_append(crc, v.value());
        }
        crc = crc32c::crc32c_append(crc, META_TABLE.name().as_bytes());
        for entry in rtxn.open_table(META_TABLE)?.iter()? {
            let (k, v) = entry?;
            if k.value() == CONSISTENT_INDEX_KEY || k.value() == TERM_KEY {
                continue;
            }
            crc = crc32c::crc32c_append(crc, k.value().as_bytes());
            crc = crc32c::crc32c_append(crc, v.value());
        }
        Ok(crc)
    }
}
