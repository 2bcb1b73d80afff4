//! What a watcher watches, and the index of synced watchers by key, so the apply path finds
//! the watchers of a changed key without looking at every watcher.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

/// A watcher's identity in the hub: (stream id, watch id). Watch ids are per stream.
pub(crate) type WatcherKey = (u64, i64);

/// The keys one watcher follows, normalised from a create request as etcd does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key.
    Key(Vec<u8>),
    /// `[start, end)`; `end` `None` means every key from `start` on.
    Range {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

/// Why a create request's range is refused; the text is etcd's `cancel_reason`.
pub const EMPTY_RANGE_REASON: &str = "mvcc: watcher range is empty";

impl KeyRange {
    /// etcd's reading of a create request: an empty key is `\0` (the smallest key), an empty
    /// `range_end` watches one key, a `range_end` of `\0` watches every key from `key` on, and
    /// a `range_end` at or before `key` is an empty range (refused).
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Result<KeyRange, &'static str> {
        let start = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        match range_end {
            [] => Ok(KeyRange::Key(start)),
            [0] => Ok(KeyRange::Range { start, end: None }),
            end if start.as_slice() >= end => Err(EMPTY_RANGE_REASON),
            end => Ok(KeyRange::Range {
                start,
                end: Some(end.to_vec()),
            }),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Key(k) => k.as_slice() == key,
            KeyRange::Range { start, end } => {
                start.as_slice() <= key && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }
}

/// Synced watchers by what they watch. Single keys are a hash lookup; ranges are kept sorted
/// by start key, and a lookup walks the ranges starting at or before the key (prefix watches
/// on unrelated prefixes after the key cost nothing). An interval tree would bound the walk
/// further if many overlapping range watchers ever show up in profiles.
#[derive(Default, Debug)]
pub(crate) struct WatcherGroup {
    keys: HashMap<Vec<u8>, BTreeSet<WatcherKey>>,
    /// (start key, watcher) -> end key (`None`: unbounded).
    ranges: BTreeMap<(Vec<u8>, WatcherKey), Option<Vec<u8>>>,
}

impl WatcherGroup {
    pub fn insert(&mut self, wk: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Key(k) => {
                self.keys.entry(k.clone()).or_default().insert(wk);
            }
            KeyRange::Range { start, end } => {
                self.ranges.insert((start.clone(), wk), end.clone());
            }
        }
    }

    pub fn remove(&mut self, wk: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Key(k) => {
                if let Some(set) = self.keys.get_mut(k) {
                    set.remove(&wk);
                    if set.is_empty() {
                        self.keys.remove(k);
                    }
                }
            }
            KeyRange::Range { start, .. } => {
                self.ranges.remove(&(start.clone(), wk));
            }
        }
    }

    /// Appends the watchers whose range holds `key` to `out`.
    pub fn matching(&self, key: &[u8], out: &mut Vec<WatcherKey>) {
        if let Some(set) = self.keys.get(key) {
            out.extend(set.iter().copied());
        }
        if self.ranges.is_empty() {
            return;
        }
        let upper = (key.to_vec(), (u64::MAX, i64::MAX));
        for ((_, wk), end) in self
            .ranges
            .range((Bound::Unbounded, Bound::Included(&upper)))
        {
            if end.as_ref().is_none_or(|e| key < e.as_slice()) {
                out.push(*wk);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keys.values().map(BTreeSet::len).sum::<usize>() + self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: Option<&str>) -> KeyRange {
        KeyRange::Range {
            start: start.into(),
            end: end.map(Into::into),
        }
    }

    #[test]
    fn request_normalisation_follows_etcd() {
        assert_eq!(KeyRange::from_request(b"", b""), Ok(KeyRange::Key(vec![0])));
        assert_eq!(
            KeyRange::from_request(b"", b"\0"),
            Ok(KeyRange::Range {
                start: vec![0],
                end: None
            })
        );
        assert_eq!(
            KeyRange::from_request(b"a", b"b"),
            Ok(range("a", Some("b")))
        );
        assert_eq!(KeyRange::from_request(b"a", b"a"), Err(EMPTY_RANGE_REASON));
        assert_eq!(KeyRange::from_request(b"b", b"a"), Err(EMPTY_RANGE_REASON));
        assert_eq!(
            KeyRange::from_request(b"foo", b"\0"),
            Ok(range("foo", None))
        );
    }

    #[test]
    fn matching_finds_keys_and_ranges() {
        let mut g = WatcherGroup::default();
        g.insert((1, 0), &KeyRange::Key(b"foo".to_vec()));
        g.insert((1, 1), &range("fo", Some("fp")));
        g.insert((2, 0), &range("foo", None));
        g.insert((2, 1), &range("g", None));
        g.insert((2, 2), &range("a", Some("foo")));
        fn find(g: &WatcherGroup, k: &[u8]) -> Vec<WatcherKey> {
            let mut out = Vec::new();
            g.matching(k, &mut out);
            out.sort();
            out
        }
        assert_eq!(find(&g, b"foo"), vec![(1, 0), (1, 1), (2, 0)]);
        assert_eq!(find(&g, b"fo"), vec![(1, 1), (2, 2)]);
        assert_eq!(find(&g, b"zzz"), vec![(2, 0), (2, 1)]);
        assert_eq!(find(&g, b"0"), Vec::<WatcherKey>::new());
        assert_eq!(g.len(), 5);
        g.remove((1, 1), &range("fo", Some("fp")));
        g.remove((1, 0), &KeyRange::Key(b"foo".to_vec()));
        assert_eq!(find(&g, b"foo"), vec![(2, 0)]);
        assert_eq!(g.len(), 3);
    }
}
