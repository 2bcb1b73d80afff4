//! The in-memory key index: key -> [`KeyIndex`], ordered by key.
//!
//! It answers every "which revisions" question (ranges at any retained revision, counts,
//! which keys a delete hits, what compaction removes) without touching the backend; the
//! backend is only read for the values. It is rebuilt from the backend at open.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::MvccError;
use crate::key_index::{KeyAt, KeyIndex};
use crate::revision::Revision;

/// Which keys a request names, decoded from etcd's `key` / `range_end` convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// `range_end` empty: just `key`.
    Single(&'a [u8]),
    /// `range_end` is `"\0"`: every key `>= key`.
    From(&'a [u8]),
    /// `[key, range_end)`; empty if `range_end <= key`.
    Span(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    /// Decodes etcd's convention: empty end = one key, `"\0"` end = from key onwards.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Span(key, end),
        }
    }

    /// True if `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeyRange::Single(k) => key == k,
            KeyRange::From(start) => key >= start,
            KeyRange::Span(start, end) => key >= start && key < end,
        }
    }
}

/// The whole index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

impl TreeIndex {
    /// Number of keys with any retained revision (live or deleted-but-not-compacted).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Number of keys that exist at revision `at`.
    pub fn live_count(&self, at: i64) -> usize {
        self.keys.values().filter(|k| k.get(at).is_some()).count()
    }

    /// True if no key has any retained revision.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// What `key` looked like at `at_rev`, if it existed.
    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at_rev)
    }

    /// The key indexes of `range`, in key order. `BTreeMap::range` panics on inverted bounds,
    /// so an inverted request range is turned into an empty iteration here.
    fn visit<'s>(
        &'s self,
        range: KeyRange<'_>,
    ) -> Box<dyn Iterator<Item = (&'s Vec<u8>, &'s KeyIndex)> + 's> {
        match range {
            KeyRange::Single(key) => Box::new(self.keys.get_key_value(key).into_iter()),
            KeyRange::From(start) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(start), Bound::Unbounded)),
            ),
            KeyRange::Span(start, end) if start < end => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))),
            ),
            KeyRange::Span(..) => Box::new(std::iter::empty()),
        }
    }

    /// The revisions of the keys in `range` visible at `at_rev`, in key order: the first
    /// `collect_max` of them, plus the total count.
    pub fn revisions(
        &self,
        range: KeyRange<'_>,
        at_rev: i64,
        collect_max: usize,
    ) -> (Vec<Revision>, usize) {
        let mut revs = Vec::new();
        let mut count = 0;
        for (_, ki) in self.visit(range) {
            if let Some(at) = ki.get(at_rev) {
                if revs.len() < collect_max {
                    revs.push(at.modified);
                }
                count += 1;
            }
        }
        (revs, count)
    }

    /// The keys in `range` that exist at `at_rev`, with what the index knows about them.
    pub fn keys_at(&self, range: KeyRange<'_>, at_rev: i64) -> Vec<(Vec<u8>, KeyAt)> {
        self.visit(range)
            .filter_map(|(k, ki)| ki.get(at_rev).map(|at| (k.clone(), at)))
            .collect()
    }

    /// Records a put of `key` at `rev`.
    pub fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), MvccError> {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::default();
                ki.put(rev)?;
                self.keys.insert(key.to_vec(), ki);
                Ok(())
            }
        }
    }

    /// Records a delete of `key` at `rev`; the key must exist.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), MvccError> {
        match self.keys.get_mut(key) {
            Some(ki) => ki.tombstone(rev),
            None => Err(MvccError::Corrupt(format!(
                "tombstone of unknown key {:?}",
                String::from_utf8_lossy(key)
            ))),
        }
    }

    /// Feeds one backend record, in revision order, while rebuilding the index at open.
    /// `created` and `version` come from the record and matter only for the first record of
    /// a key, whose older history may have been compacted away.
    pub fn restore(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        created: i64,
        version: i64,
    ) -> Result<(), MvccError> {
        match self.keys.get_mut(key) {
            Some(ki) if tombstone => {
                if ki.tombstone(rev).is_err() {
                    // etcd ignores a tombstone on an already-deleted key when restoring; do
                    // the same rather than refuse to open.
                    tracing::warn!(key = %String::from_utf8_lossy(key), main = rev.main, sub = rev.sub,
                        "ignoring a tombstone of an already deleted key while rebuilding the index");
                }
                Ok(())
            }
            Some(ki) => ki.put(rev),
            // A tombstone as the first record of a key: its generation was compacted away.
            None if tombstone => Ok(()),
            None => {
                self.keys
                    .insert(key.to_vec(), KeyIndex::restored(created, rev, version));
                Ok(())
            }
        }
    }

    /// Compacts every key at `at_rev`; returns the revisions removed (with tombstone flags),
    /// which the caller deletes from the backend.
    pub fn compact(&mut self, at_rev: i64) -> Vec<(Revision, bool)> {
        let mut removed = Vec::new();
        self.keys.retain(|_, ki| {
            ki.compact(at_rev, &mut removed);
            !ki.is_empty()
        });
        removed
    }

    /// The revisions at or below `at_rev` that a compaction at `at_rev` would keep.
    pub fn keep(&self, at_rev: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(at_rev, &mut keep);
        }
        keep
    }

    /// Undoes every change above main revision `main` to the given keys.
    pub fn truncate_above<'k>(&mut self, keys: impl IntoIterator<Item = &'k [u8]>, main: i64) {
        for key in keys {
            if let Some(ki) = self.keys.get_mut(key) {
                ki.truncate_above(main);
                if ki.is_empty() {
                    self.keys.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    fn sample() -> TreeIndex {
        let mut ti = TreeIndex::default();
        ti.put(b"a", r(2)).unwrap();
        ti.put(b"b", r(3)).unwrap();
        ti.put(b"c", r(4)).unwrap();
        ti.tombstone(b"b", r(5)).unwrap();
        ti.put(b"a", r(6)).unwrap();
        ti
    }

    #[test]
    fn key_ranges() {
        let ti = sample();
        let keys = |range, rev| -> Vec<Vec<u8>> {
            ti.keys_at(range, rev).into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(keys(KeyRange::new(b"a", b""), 6), vec![b"a".to_vec()]);
        assert_eq!(keys(KeyRange::new(b"b", b""), 6), Vec::<Vec<u8>>::new());
        assert_eq!(keys(KeyRange::new(b"b", b""), 4), vec![b"b".to_vec()]);
        assert_eq!(
            keys(KeyRange::new(b"a", b"c"), 4),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(keys(KeyRange::new(b"b", b"\0"), 6), vec![b"c".to_vec()]);
        assert_eq!(
            keys(KeyRange::new(b"\0", b"\0"), 6),
            vec![b"a".to_vec(), b"c".to_vec()]
        );
        // Inverted and empty spans are empty, not a panic.
        assert!(keys(KeyRange::new(b"c", b"a"), 6).is_empty());
        assert!(keys(KeyRange::new(b"c", b"c"), 6).is_empty());
    }

    #[test]
    fn revisions_count_beyond_collect_max() {
        let ti = sample();
        let (revs, count) = ti.revisions(KeyRange::From(b""), 6, 1);
        assert_eq!((revs, count), (vec![r(6)], 2));
        let (revs, count) = ti.revisions(KeyRange::From(b""), 4, usize::MAX);
        assert_eq!((revs, count), (vec![r(2), r(3), r(4)], 3));
    }

    #[test]
    fn compact_drops_dead_keys() {
        let mut ti = sample();
        let mut removed = ti.compact(5);
        removed.sort();
        assert_eq!(removed, vec![(r(3), false), (r(5), true)]);
        assert_eq!(ti.len(), 2);
        assert!(ti.get(b"b", 4).is_none());
        assert_eq!(ti.get(b"a", 5).unwrap().modified, r(2));
    }

    #[test]
    fn truncate_removes_new_keys() {
        let mut ti = sample();
        let before = ti.clone();
        ti.put(b"d", r(7)).unwrap();
        ti.tombstone(b"a", r(7)).unwrap();
        ti.put(b"b", Revision::new(7, 1)).unwrap();
        ti.truncate_above([&b"d"[..], b"a", b"b"], 6);
        assert_eq!(ti, before);
    }
}
