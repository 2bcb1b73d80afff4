//! The revision history of one key.
//!
//! A key lives through generations: a generation starts with the put that creates the key and
//! ends with the tombstone that deletes it, after which an empty generation waits for the next
//! create. For put(1) put(2) delete(3) put(4) delete(5) the generations are
//! `{1, 2, 3t} {4, 5t} {}`. This is what answers "which revision of this key is visible at
//! revision R, and what are its create revision and version", and what compaction trims.
//!
//! Only the writer mutates a `KeyIndex`, and only by appending revisions above everything it
//! holds (or by removing them again on rollback, or old ones on compaction). A reader that asks
//! about revision R therefore gets the same answer no matter how many newer revisions were
//! appended since; that is what lets readers share the index with an in-flight batch.

use std::collections::HashSet;

use crate::MvccError;
use crate::revision::Revision;

/// The revisions of a key from one create up to (and including) its delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// Number of revisions ever put in this generation (compaction does not lower it).
    pub ver: i64,
    /// Main revision of the put that created the key in this generation.
    pub created: i64,
    /// Revisions in ascending order; in every generation but the last, the final one is the
    /// tombstone.
    pub revs: Vec<Revision>,
}

/// What the index knows about a key at a revision, without reading the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAt {
    /// The revision of the record visible at the asked revision.
    pub modified: Revision,
    /// The key's create revision in that generation.
    pub created: i64,
    /// The key's version at that revision.
    pub version: i64,
}

/// All generations of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIndex {
    /// The last revision appended; appends must be above it.
    pub modified: Revision,
    /// Oldest first; never empty.
    pub generations: Vec<Generation>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            modified: Revision::default(),
            generations: vec![Generation::default()],
        }
    }
}

impl KeyIndex {
    /// The index of a key found first in the backend at `modified`, which may be a compacted
    /// history: the record says its create revision and version, the older revisions are gone.
    pub fn restored(created: i64, modified: Revision, version: i64) -> Self {
        KeyIndex {
            modified,
            generations: vec![Generation {
                ver: version,
                created,
                revs: vec![modified],
            }],
        }
    }

    /// True when the key has no revision at all (only the one empty generation).
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    /// Appends a put at `rev`.
    pub fn put(&mut self, rev: Revision) -> Result<(), MvccError> {
        if rev <= self.modified {
            return Err(MvccError::Corrupt(format!(
                "put at {rev:?} not above last revision {:?}",
                self.modified
            )));
        }
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[last];
        if g.revs.is_empty() {
            g.created = rev.main;
            g.ver = 0;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
        Ok(())
    }

    /// Appends a tombstone at `rev`, ending the current generation. Fails if the key is
    /// already deleted (there is nothing to end).
    pub fn tombstone(&mut self, rev: Revision) -> Result<(), MvccError> {
        let live = self.generations.last().is_some_and(|g| !g.revs.is_empty());
        if !live {
            return Err(MvccError::Corrupt(format!(
                "tombstone at {rev:?} on a key that does not exist"
            )));
        }
        self.put(rev)?;
        self.generations.push(Generation::default());
        Ok(())
    }

    /// The record visible at `at_rev`, or `None` if the key did not exist then.
    pub fn get(&self, at_rev: i64) -> Option<KeyAt> {
        let g = self.find_generation(at_rev)?;
        let n = g.revs.iter().rposition(|r| r.main <= at_rev)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// The generation alive at `rev`, or `None` if `rev` falls in a gap between generations
    /// (the key was deleted) or before the first.
    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            // A closed generation whose tombstone is at or below rev: deleted at rev.
            if i != last && end.main <= rev {
                return None;
            }
            if first.main <= rev {
                return Some(g);
            }
        }
        None
    }

    /// The generation holding the latest revision at or below `at_rev` that compaction may
    /// keep: the first whose tombstone is above `at_rev`, else the last.
    fn compaction_generation(&self, at_rev: i64) -> usize {
        let last = self.generations.len() - 1;
        let mut idx = 0;
        while idx < last {
            match self.generations[idx].revs.last() {
                Some(tomb) if tomb.main > at_rev => break,
                _ => idx += 1,
            }
        }
        idx
    }

    /// Removes every revision at or below `at_rev` except the latest one, which is removed too
    /// if it is a tombstone. Appends each removed revision (with its tombstone flag) to
    /// `removed`. Leaves the key empty if nothing remains; the caller then drops it.
    pub fn compact(&mut self, at_rev: i64, removed: &mut Vec<(Revision, bool)>) {
        if self.generations.is_empty() {
            return;
        }
        let last = self.generations.len() - 1;
        let mut gen_idx = self.compaction_generation(at_rev);
        let g = &mut self.generations[gen_idx];
        if let Some(i) = g.revs.iter().rposition(|r| r.main <= at_rev) {
            removed.extend(g.revs.drain(..i).map(|r| (r, false)));
            // Only the tombstone is left: the key was deleted at or below at_rev, so the whole
            // generation goes.
            if g.revs.len() == 1 && gen_idx != last {
                gen_idx += 1;
            }
        }
        for g in self.generations.drain(..gen_idx) {
            let n = g.revs.len();
            // Every drained generation is closed, so its final revision is the tombstone.
            removed.extend(g.revs.into_iter().enumerate().map(|(j, r)| (r, j + 1 == n)));
        }
    }

    /// Adds to `keep` the revision that `compact(at_rev)` would keep among those at or below
    /// `at_rev`, if any.
    pub fn keep(&self, at_rev: i64, keep: &mut HashSet<Revision>) {
        if self.is_empty() || self.generations.is_empty() {
            return;
        }
        let last = self.generations.len() - 1;
        let gen_idx = self.compaction_generation(at_rev);
        let g = &self.generations[gen_idx];
        if let Some(i) = g.revs.iter().rposition(|r| r.main <= at_rev) {
            let is_tombstone = i + 1 == g.revs.len() && gen_idx != last;
            if !is_tombstone {
                keep.insert(g.revs[i]);
            }
        }
    }

    /// Undoes every append with a main revision above `main`; used when a transaction or a
    /// batch fails after it touched the index.
    pub fn truncate_above(&mut self, main: i64) {
        loop {
            let n = self.generations.len();
            if n == 0 {
                self.generations.push(Generation::default());
                break;
            }
            let g = &mut self.generations[n - 1];
            if let Some(r) = g.revs.last() {
                if r.main <= main {
                    break;
                }
                g.revs.pop();
                g.ver -= 1;
                if g.revs.is_empty() {
                    g.ver = 0;
                    g.created = 0;
                }
                continue;
            }
            // An empty last generation was opened by the tombstone that closed the one before
            // it; drop it if that tombstone is being undone.
            if n >= 2
                && self.generations[n - 2]
                    .revs
                    .last()
                    .is_some_and(|r| r.main > main)
            {
                self.generations.pop();
                continue;
            }
            break;
        }
        self.modified = self
            .generations
            .iter()
            .rev()
            .find_map(|g| g.revs.last().copied())
            .unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put(2) put(4) tombstone(6) put(8) put(10) tombstone(12) put(14) put(16) —
    /// etcd's key_index_test fixture.
    fn fixture() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(r(2)).unwrap();
        ki.put(r(4)).unwrap();
        ki.tombstone(r(6)).unwrap();
        ki.put(r(8)).unwrap();
        ki.put(r(10)).unwrap();
        ki.tombstone(r(12)).unwrap();
        ki.put(r(14)).unwrap();
        ki.put(r(16)).unwrap();
        ki
    }

    #[test]
    fn get_walks_generations() {
        let ki = fixture();
        let at = |rev| ki.get(rev).map(|k| (k.modified.main, k.created, k.version));
        assert_eq!(at(1), None);
        assert_eq!(at(2), Some((2, 2, 1)));
        assert_eq!(at(5), Some((4, 2, 2)));
        assert_eq!(at(6), None);
        assert_eq!(at(7), None);
        assert_eq!(at(8), Some((8, 8, 1)));
        assert_eq!(at(11), Some((10, 8, 2)));
        assert_eq!(at(12), None);
        assert_eq!(at(13), None);
        assert_eq!(at(14), Some((14, 14, 1)));
        assert_eq!(at(100), Some((16, 14, 2)));
    }

    #[test]
    fn put_must_ascend_and_tombstone_needs_a_live_key() {
        let mut ki = KeyIndex::default();
        assert!(ki.tombstone(r(1)).is_err());
        ki.put(r(5)).unwrap();
        assert!(ki.put(r(5)).is_err());
        assert!(ki.put(r(4)).is_err());
        ki.put(Revision::new(5, 1)).unwrap();
        ki.tombstone(r(6)).unwrap();
        assert!(ki.tombstone(r(7)).is_err());
    }

    fn revs(ki: &KeyIndex) -> Vec<Vec<i64>> {
        ki.generations
            .iter()
            .map(|g| g.revs.iter().map(|r| r.main).collect())
            .collect()
    }

    #[test]
    fn compaction_keeps_latest_and_drops_tombstones() {
        // (at_rev, expected generations, expected removed count)
        let cases: &[(i64, Vec<Vec<i64>>, usize)] = &[
            (1, vec![vec![2, 4, 6], vec![8, 10, 12], vec![14, 16]], 0),
            (2, vec![vec![2, 4, 6], vec![8, 10, 12], vec![14, 16]], 0),
            (3, vec![vec![2, 4, 6], vec![8, 10, 12], vec![14, 16]], 0),
            (4, vec![vec![4, 6], vec![8, 10, 12], vec![14, 16]], 1),
            (5, vec![vec![4, 6], vec![8, 10, 12], vec![14, 16]], 1),
            (6, vec![vec![8, 10, 12], vec![14, 16]], 3),
            (7, vec![vec![8, 10, 12], vec![14, 16]], 3),
            (8, vec![vec![8, 10, 12], vec![14, 16]], 3),
            (10, vec![vec![10, 12], vec![14, 16]], 4),
            (12, vec![vec![14, 16]], 6),
            (13, vec![vec![14, 16]], 6),
            (14, vec![vec![14, 16]], 6),
            (16, vec![vec![16]], 7),
            (17, vec![vec![16]], 7),
        ];
        for (at, want, nremoved) in cases {
            let mut ki = fixture();
            let mut removed = Vec::new();
            let mut keep = HashSet::new();
            ki.keep(*at, &mut keep);
            ki.compact(*at, &mut removed);
            assert_eq!(&revs(&ki), want, "compact({at})");
            assert_eq!(removed.len(), *nremoved, "compact({at}) removed");
            for (rev, tomb) in &removed {
                assert!(rev.main <= *at);
                assert_eq!(
                    *tomb,
                    [6, 12].contains(&rev.main),
                    "tombstone flag of {rev:?}"
                );
                assert!(!keep.contains(rev));
            }
            // keep names exactly the surviving revision at or below at_rev.
            let survivors: HashSet<Revision> = ki
                .generations
                .iter()
                .flat_map(|g| g.revs.iter().copied())
                .filter(|r| r.main <= *at)
                .collect();
            assert_eq!(keep, survivors, "keep({at})");
        }
    }

    #[test]
    fn compaction_of_deleted_key_empties_it() {
        let mut ki = KeyIndex::default();
        ki.put(r(2)).unwrap();
        ki.tombstone(r(3)).unwrap();
        let mut removed = Vec::new();
        ki.compact(3, &mut removed);
        assert!(ki.is_empty());
        removed.sort();
        assert_eq!(removed, vec![(r(2), false), (r(3), true)]);
    }

    #[test]
    fn compaction_keeps_reads_at_and_above_it() {
        for at in 1..=17 {
            let mut ki = fixture();
            let before: Vec<_> = (at..=18).map(|rev| ki.get(rev)).collect();
            ki.compact(at, &mut Vec::new());
            let after: Vec<_> = (at..=18).map(|rev| ki.get(rev)).collect();
            assert_eq!(before, after, "compact({at})");
        }
    }

    #[test]
    fn truncate_undoes_appends() {
        for cut in [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 20] {
            let mut want = KeyIndex::default();
            for (rev, tomb) in [
                (2, false),
                (4, false),
                (6, true),
                (8, false),
                (10, false),
                (12, true),
                (14, false),
                (16, false),
            ] {
                if rev <= cut {
                    if tomb {
                        want.tombstone(r(rev)).unwrap();
                    } else {
                        want.put(r(rev)).unwrap();
                    }
                }
            }
            let mut ki = fixture();
            ki.truncate_above(cut);
            assert_eq!(ki, want, "truncate_above({cut})");
        }
    }

    #[test]
    fn restored_index_answers_like_the_original() {
        let mut ki = fixture();
        ki.compact(9, &mut Vec::new());
        // The backend now starts this key at revision 8 with version 1.
        let mut restored = KeyIndex::restored(8, r(8), 1);
        restored.put(r(10)).unwrap();
        restored.tombstone(r(12)).unwrap();
        restored.put(r(14)).unwrap();
        restored.put(r(16)).unwrap();
        assert_eq!(ki, restored);
    }
}
