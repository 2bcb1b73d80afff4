//! Randomized crash test: random batches (appends, overwrites, hard states, snapshot markers,
//! trimming) with a crash in the middle of the last write, checking after every reopen that the
//! log holds every synced batch and at most a prefix of the interrupted one.

use std::fs;

use raft::eraftpb::{Entry, HardState};

use super::util::*;
use crate::{Recovered, SnapshotMarker, Wal};

/// The log as the test believes it is: a second, simpler implementation of replay.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    hard_state: HardState,
    snapshot: Option<SnapshotMarker>,
    entries: Vec<Entry>,
}

impl Model {
    fn from(rec: &Recovered) -> Self {
        Model {
            hard_state: rec.hard_state.clone(),
            snapshot: rec.snapshot,
            entries: rec.entries.clone(),
        }
    }

    fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.index)
            .or(self.snapshot.map(|s| s.index))
            .unwrap_or(0)
    }

    fn term_at(&self, index: u64) -> u64 {
        self.entries
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.term)
            .or(self.snapshot.filter(|s| s.index == index).map(|s| s.term))
            .unwrap_or(0)
    }

    fn append(&mut self, e: &Entry) {
        self.entries.retain(|old| old.index < e.index);
        self.entries.push(e.clone());
    }
}

/// One `save`: what it wrote, in write order (entries, then the hard state).
struct Batch {
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
}

impl Batch {
    /// The model after each prefix of this batch's records, from none to all.
    fn prefixes(&self, before: &Model) -> Vec<Model> {
        let mut states = vec![before.clone()];
        let mut m = before.clone();
        for e in &self.entries {
            m.append(e);
            states.push(m.clone());
        }
        if let Some(hs) = &self.hard_state {
            m.hard_state = hs.clone();
            states.push(m);
        }
        states
    }
}

fn random_batch(rng: &mut Rng, model: &Model, term: &mut u64) -> Batch {
    let commit = model.hard_state.commit;
    let last = model.last_index();
    // Raft never rewrites committed entries; a new leader may rewrite the uncommitted tail.
    let start = if last > commit && rng.below(4) == 0 {
        *term += 1;
        rng.between(commit + 1, last)
    } else {
        last + 1
    };
    let count = rng.below(6);
    let entries: Vec<Entry> = (0..count)
        .map(|k| {
            let mut e = entry(start + k, *term);
            // Sizes from empty to a few hundred bytes, so records straddle segment limits.
            e.data = vec![rng.next() as u8; rng.below(300) as usize].into();
            e
        })
        .collect();
    let new_last = entries.last().map_or(last, |e| e.index);
    let hard_state = (entries.is_empty() || rng.below(2) == 0).then(|| {
        // Commit may only cover entries that exist once this batch is in.
        let floor = commit.min(new_last);
        hard_state(*term, 1, rng.between(floor, new_last))
    });
    Batch {
        hard_state,
        entries,
    }
}

/// How often the interesting paths were taken, so the test fails if it stops exercising them.
#[derive(Debug, Default)]
struct Coverage {
    overwrites: u32,
    segments_released: usize,
    partial_batches_recovered: u32,
    max_segments: usize,
}

#[test]
fn random_batches_with_crashes_recover_a_prefix() {
    let mut cov = Coverage::default();
    for seed in 0..12u64 {
        run_seed(seed, &mut cov);
    }
    assert!(cov.overwrites > 0, "{cov:?}");
    assert!(cov.segments_released > 0, "{cov:?}");
    assert!(cov.partial_batches_recovered > 0, "{cov:?}");
    assert!(cov.max_segments > 3, "{cov:?}");
}

fn run_seed(seed: u64, cov: &mut Coverage) {
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let opts = tiny(rng.between(150, 2000));
    let mut wal = Wal::create(tmp.path(), b"meta", opts).unwrap();
    let mut model = Model {
        hard_state: HardState::default(),
        snapshot: None,
        entries: Vec::new(),
    };
    let mut term = 1;

    for round in 0..6 {
        let ctx = format!("seed {seed} round {round}");
        // Synced batches, with the occasional snapshot marker and trim.
        for _ in 0..rng.between(1, 15) {
            let batch = random_batch(&mut rng, &model, &mut term);
            if batch
                .entries
                .first()
                .is_some_and(|e| e.index <= model.last_index())
            {
                cov.overwrites += 1;
            }
            wal.save(batch.hard_state.as_ref(), &batch.entries).unwrap();
            model = batch.prefixes(&model).pop().unwrap();
            let commit = model.hard_state.commit;
            let marked = model.snapshot.map_or(0, |s| s.index);
            if commit > marked && rng.below(5) == 0 {
                let marker = SnapshotMarker {
                    index: commit,
                    term: model.term_at(commit),
                };
                wal.save_snapshot(marker).unwrap();
                model.snapshot = Some(marker);
                model.entries.retain(|e| e.index > commit);
                if rng.below(2) == 0 {
                    let segments = segment_files(tmp.path()).len();
                    cov.max_segments = cov.max_segments.max(segments);
                    wal.release_to(rng.between(marked, commit + 1)).unwrap();
                    cov.segments_released += segments - segment_files(tmp.path()).len();
                }
            }
        }

        // The batch the crash interrupts: written, then cut short at a random byte.
        let before = segment_files(tmp.path());
        let tail = before.last().unwrap().clone();
        let tail_len = file_len(&tail);
        let batch = random_batch(&mut rng, &model, &mut term);
        wal.save(batch.hard_state.as_ref(), &batch.entries).unwrap();
        drop(wal);
        // A crash mid-write happens before any cut that write would have caused.
        for path in segment_files(tmp.path()) {
            if !before.contains(&path) {
                fs::remove_file(path).unwrap();
            }
        }
        let written_len = file_len(&tail);
        let cut = rng.between(tail_len, written_len);
        truncate(&tail, cut);

        let (reopened, rec) = Wal::open(tmp.path(), opts).unwrap();
        wal = reopened;
        let got = Model::from(&rec);
        assert_eq!(rec.metadata, b"meta", "{ctx}");
        let candidates = batch.prefixes(&model);
        let position = candidates.iter().position(|c| *c == got);
        assert!(
            position.is_some(),
            "{ctx}: recovered {:?} is not the synced log plus a prefix of the last batch",
            crate::tests::util::ids(&got.entries)
        );
        if position.is_some_and(|p| p + 1 < candidates.len()) {
            cov.partial_batches_recovered += 1;
        }
        if cut == written_len {
            assert_eq!(got, *candidates.last().unwrap(), "{ctx}: uncut batch lost");
        }
        model = got;
    }
}
