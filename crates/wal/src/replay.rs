//! Rebuilding the raft log from records in the order they were written, without touching disk.
//!
//! Raft only ever appends, but an append at index `i` replaces whatever the log held at `i` and
//! after (a new leader overwrote an uncommitted tail), so reading an entry discards every
//! earlier-read entry at or above its index. The last hard state wins. The last snapshot marker
//! says where the log must resume: entries at or below it are dropped and the rest must be
//! contiguous from the marker on, or an entry the state machine needs is missing.

use raft::eraftpb::{Entry, HardState};

use crate::decode::{Record, SnapshotMarker};

/// Where a record was read: the segment's position in the list being replayed, and the byte
/// offset in it. Kept per entry so a gap can be reported against a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub segment: usize,
    pub offset: u64,
}

/// The log as rebuilt so far.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    hard_state: HardState,
    snapshot: Option<SnapshotMarker>,
    /// Strictly increasing by index: every push first drops entries at or above the new index.
    entries: Vec<Entry>,
    origins: Vec<Origin>,
}

/// Replay's result.
#[derive(Debug, PartialEq)]
pub(crate) struct Replayed {
    pub hard_state: HardState,
    pub snapshot: Option<SnapshotMarker>,
    /// Contiguous, starting right after `snapshot` when there is one.
    pub entries: Vec<Entry>,
}

/// An entry does not follow the one before it (or the snapshot marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    pub origin: Origin,
    pub previous: u64,
    pub found: u64,
}

impl Replay {
    /// Applies one record. Metadata is checked by the caller and ignored here.
    pub fn apply(&mut self, record: Record, origin: Origin) {
        match record {
            Record::Metadata(_) => {}
            Record::HardState(hs) => self.hard_state = hs,
            Record::SnapshotMarker(marker) => self.snapshot = Some(marker),
            Record::Entry(entry) => {
                let keep = self.entries.partition_point(|e| e.index < entry.index);
                self.entries.truncate(keep);
                self.origins.truncate(keep);
                self.entries.push(entry);
                self.origins.push(origin);
            }
        }
    }

    pub fn finish(self) -> Result<Replayed, Gap> {
        let Replay {
            hard_state,
            snapshot,
            mut entries,
            origins,
        } = self;
        let covered = snapshot.map_or(0, |s| entries.partition_point(|e| e.index <= s.index));
        let mut previous = snapshot.map(|s| s.index);
        for (entry, origin) in entries[covered..].iter().zip(&origins[covered..]) {
            if let Some(previous) = previous
                && entry.index != previous.wrapping_add(1)
            {
                return Err(Gap {
                    origin: *origin,
                    previous,
                    found: entry.index,
                });
            }
            previous = Some(entry.index);
        }
        entries.drain(..covered);
        Ok(Replayed {
            hard_state,
            snapshot,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Record {
        Record::Entry(Entry {
            index,
            term,
            ..Default::default()
        })
    }

    fn marker(index: u64, term: u64) -> Record {
        Record::SnapshotMarker(SnapshotMarker { index, term })
    }

    fn replay(records: Vec<Record>) -> Result<Replayed, Gap> {
        let mut r = Replay::default();
        for (i, rec) in records.into_iter().enumerate() {
            r.apply(
                rec,
                Origin {
                    segment: 0,
                    offset: i as u64,
                },
            );
        }
        r.finish()
    }

    fn index_terms(r: &Replayed) -> Vec<(u64, u64)> {
        r.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn conflicting_tail_is_replaced() {
        let r = replay(vec![
            entry(1, 1),
            entry(2, 1),
            entry(3, 1),
            entry(4, 1),
            entry(3, 2),
            entry(4, 2),
            entry(5, 2),
        ])
        .unwrap();
        assert_eq!(
            index_terms(&r),
            vec![(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]
        );
    }

    #[test]
    fn overwrite_shorter_than_old_tail_drops_the_rest() {
        let r = replay(vec![entry(1, 1), entry(2, 1), entry(3, 1), entry(2, 3)]).unwrap();
        assert_eq!(index_terms(&r), vec![(1, 1), (2, 3)]);
    }

    #[test]
    fn last_hard_state_wins() {
        let hs = |term| {
            Record::HardState(HardState {
                term,
                ..Default::default()
            })
        };
        let r = replay(vec![hs(1), entry(1, 1), hs(3), hs(2)]).unwrap();
        assert_eq!(r.hard_state.term, 2);
    }

    #[test]
    fn entries_at_or_below_the_last_marker_are_dropped() {
        let r = replay(vec![
            entry(1, 1),
            entry(2, 1),
            entry(3, 1),
            marker(1, 1),
            entry(4, 1),
            marker(2, 1),
        ])
        .unwrap();
        assert_eq!(r.snapshot, Some(SnapshotMarker { index: 2, term: 1 }));
        assert_eq!(index_terms(&r), vec![(3, 1), (4, 1)]);
    }

    #[test]
    fn log_may_start_anywhere_below_the_marker() {
        // Older segments were trimmed: the first entries read are already covered.
        let r = replay(vec![
            marker(10, 2),
            entry(8, 2),
            entry(9, 2),
            entry(10, 2),
            entry(11, 2),
        ])
        .unwrap();
        assert_eq!(index_terms(&r), vec![(11, 2)]);
        // A snapshot from the leader beyond everything held.
        let r = replay(vec![entry(1, 1), entry(2, 1), marker(50, 4), entry(51, 4)]).unwrap();
        assert_eq!(index_terms(&r), vec![(51, 4)]);
    }

    #[test]
    fn without_marker_the_first_entry_sets_the_start() {
        let r = replay(vec![entry(7, 1), entry(8, 1)]).unwrap();
        assert_eq!(index_terms(&r), vec![(7, 1), (8, 1)]);
        assert!(replay(vec![]).unwrap().entries.is_empty());
    }

    #[test]
    fn gaps_are_reported_with_their_origin() {
        let gap = replay(vec![entry(1, 1), entry(2, 1), entry(4, 1)]).unwrap_err();
        assert_eq!(
            gap,
            Gap {
                origin: Origin {
                    segment: 0,
                    offset: 2
                },
                previous: 2,
                found: 4
            }
        );
        // The first entry after a marker must be the one right after it.
        let gap = replay(vec![marker(5, 1), entry(7, 1)]).unwrap_err();
        assert_eq!((gap.previous, gap.found), (5, 7));
        // A gap entirely below the marker does not matter.
        let r = replay(vec![entry(1, 1), entry(3, 1), marker(3, 1), entry(4, 1)]).unwrap();
        assert_eq!(index_terms(&r), vec![(4, 1)]);
    }
}
