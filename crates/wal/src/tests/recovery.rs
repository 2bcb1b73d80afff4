//! Round trips through create/save/open, segment cutting, trimming and snapshot markers.

use std::fs;

use super::util::*;
use crate::{SnapshotMarker, Wal, WalError, WalOptions};

#[test]
fn round_trip_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member").join("wal");
    assert!(!Wal::exists(&dir));
    let mut wal = Wal::create(&dir, b"node=1 cluster=7", WalOptions::default()).unwrap();
    assert!(Wal::exists(&dir));
    wal.save(Some(&hard_state(1, 1, 0)), &entries(1..=3, 1))
        .unwrap();
    wal.save(Some(&hard_state(1, 1, 3)), &entries(4..=5, 1))
        .unwrap();
    wal.save(None, &entries(6..=6, 1)).unwrap();
    drop(wal);

    let (mut wal, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(rec.metadata, b"node=1 cluster=7");
    assert_eq!(rec.hard_state, hard_state(1, 1, 3));
    assert_eq!(rec.snapshot, None);
    assert_eq!(rec.entries, entries(1..=6, 1));

    // Appends continue after what was recovered.
    wal.save(Some(&hard_state(2, 3, 6)), &entries(7..=8, 2))
        .unwrap();
    drop(wal);
    let (_wal, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(rec.hard_state, hard_state(2, 3, 6));
    assert_eq!(ids(&rec.entries).len(), 8);
    assert_eq!(rec.entries[6..], entries(7..=8, 2)[..]);
}

#[test]
fn fresh_log_recovers_empty() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Wal::create(tmp.path(), b"", WalOptions::default()).unwrap());
    let (_wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.metadata, b"");
    assert_eq!(rec.hard_state, hard_state(0, 0, 0));
    assert!(rec.entries.is_empty());
}

#[test]
fn conflicting_tail_is_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap();
    wal.save(Some(&hard_state(1, 1, 2)), &entries(1..=5, 1))
        .unwrap();
    // A new leader of term 2 replaces the uncommitted 3..=5 with a shorter tail.
    wal.save(Some(&hard_state(2, 2, 2)), &entries(3..=4, 2))
        .unwrap();
    drop(wal);
    let (mut wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(ids(&rec.entries), vec![(1, 1), (2, 1), (3, 2), (4, 2)]);

    // After reopen the log continues from index 4, and may be overwritten again.
    wal.save(None, &entries(4..=6, 3)).unwrap();
    drop(wal);
    let (_wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(
        ids(&rec.entries),
        vec![(1, 1), (2, 1), (3, 2), (4, 3), (5, 3), (6, 3)]
    );
}

#[test]
fn nothing_to_save_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap();
    let seg = &segment_files(tmp.path())[0];
    let before = file_len(seg);
    wal.save(None, &[]).unwrap();
    assert_eq!(file_len(seg), before);
    wal.save(Some(&hard_state(1, 0, 0)), &[]).unwrap();
    assert!(file_len(seg) > before);
}

#[test]
fn appends_that_would_leave_a_hole_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap();
    let seg = &segment_files(tmp.path())[0];
    let before = file_len(seg);
    for bad in [
        vec![entry(0, 1)],
        vec![entry(1, 1), entry(3, 1)],
        vec![entry(2, 1), entry(2, 1)],
    ] {
        assert!(matches!(
            wal.save(None, &bad),
            Err(WalError::InvalidAppend { .. })
        ));
    }
    assert_eq!(file_len(seg), before, "refused batches must write nothing");
    wal.save(None, &entries(1..=3, 1)).unwrap();
    assert!(matches!(
        wal.save(None, &entries(5..=5, 1)),
        Err(WalError::InvalidAppend {
            found: 5,
            next_max: 4
        })
    ));
    // Refusal does not poison: a good batch still goes through.
    wal.save(None, &entries(4..=4, 1)).unwrap();
    drop(wal);
    let (_wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=4, 1));
}

#[test]
fn segments_are_cut_and_recovered_across_many() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"meta", tiny(256)).unwrap();
    for i in 1..=60 {
        wal.save(Some(&hard_state(1, 1, i - 1)), &entries(i..=i, 1))
            .unwrap();
    }
    drop(wal);
    let files = segment_files(tmp.path());
    assert!(
        files.len() >= 10,
        "expected many segments, got {}",
        files.len()
    );
    // Names carry consecutive sequence numbers and rising first indexes.
    let mut previous_first = 0;
    for (seq, path) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_str().unwrap();
        let (s, first) = crate::segment::parse_name(name).unwrap();
        assert_eq!(s, seq as u64);
        assert!(first >= previous_first);
        previous_first = first;
    }
    let (mut wal, rec) = Wal::open(tmp.path(), tiny(256)).unwrap();
    assert_eq!(rec.metadata, b"meta");
    assert_eq!(rec.entries, entries(1..=60, 1));
    assert_eq!(rec.hard_state, hard_state(1, 1, 59));
    // Cutting continues after reopen.
    for i in 61..=80 {
        wal.save(None, &entries(i..=i, 1)).unwrap();
    }
    drop(wal);
    assert!(segment_files(tmp.path()).len() > files.len());
    let (_wal, rec) = Wal::open(tmp.path(), tiny(256)).unwrap();
    assert_eq!(rec.entries, entries(1..=80, 1));
}

#[test]
fn snapshot_marker_drops_covered_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap();
    wal.save(Some(&hard_state(1, 1, 8)), &entries(1..=10, 1))
        .unwrap();
    wal.save_snapshot(SnapshotMarker { index: 8, term: 1 })
        .unwrap();
    drop(wal);
    let (mut wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.snapshot, Some(SnapshotMarker { index: 8, term: 1 }));
    assert_eq!(rec.entries, entries(9..=10, 1));

    // A snapshot from the leader beyond the end of the log: the log resumes after it.
    wal.save_snapshot(SnapshotMarker { index: 50, term: 3 })
        .unwrap();
    wal.save(Some(&hard_state(3, 2, 51)), &entries(51..=52, 3))
        .unwrap();
    drop(wal);
    let (_wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.snapshot, Some(SnapshotMarker { index: 50, term: 3 }));
    assert_eq!(rec.entries, entries(51..=52, 3));
    assert_eq!(rec.hard_state, hard_state(3, 2, 51));
}

#[test]
fn release_deletes_old_segments_and_recovery_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = tiny(300);
    let mut wal = Wal::create(tmp.path(), b"meta", opts).unwrap();
    for i in 1..=100 {
        wal.save(Some(&hard_state(2, 1, i)), &entries(i..=i, 2))
            .unwrap();
    }
    let all = segment_files(tmp.path());
    assert!(all.len() > 5);

    // No snapshot marker yet: nothing may go.
    wal.release_to(100).unwrap();
    assert_eq!(segment_files(tmp.path()), all);

    wal.save_snapshot(SnapshotMarker { index: 70, term: 2 })
        .unwrap();
    wal.release_to(70).unwrap();
    let kept = segment_files(tmp.path());
    assert!(kept.len() < all.len(), "nothing was released");
    assert!(kept.len() >= 2);
    assert!(kept.contains(all.last().unwrap()));
    // What is kept starts right where it must: the oldest kept segment's name says it may hold
    // entries from at most 70 on, and the deleted ones held only entries below 70.
    let first_kept = kept[0].file_name().unwrap().to_str().unwrap();
    let (_, first_index) = crate::segment::parse_name(first_kept).unwrap();
    assert!(first_index <= 70, "kept segment starts at {first_index}");

    drop(wal);
    let (mut wal, rec) = Wal::open(tmp.path(), opts).unwrap();
    assert_eq!(rec.metadata, b"meta");
    assert_eq!(rec.snapshot, Some(SnapshotMarker { index: 70, term: 2 }));
    assert_eq!(rec.hard_state, hard_state(2, 1, 100));
    assert_eq!(rec.entries, entries(71..=100, 2));

    // Releasing beyond the snapshot marker is capped at it.
    wal.release_to(u64::MAX).unwrap();
    drop(wal);
    let (mut wal, rec) = Wal::open(tmp.path(), opts).unwrap();
    assert_eq!(rec.entries, entries(71..=100, 2));

    // Snapshot at the end: everything but the last segment may go, and the state survives in
    // the headers of the segments that remain.
    wal.save_snapshot(SnapshotMarker {
        index: 100,
        term: 2,
    })
    .unwrap();
    wal.save(None, &entries(101..=101, 2)).unwrap();
    wal.release_to(101).unwrap();
    drop(wal);
    assert!(segment_files(tmp.path()).len() <= 2);
    let (_wal, rec) = Wal::open(tmp.path(), opts).unwrap();
    assert_eq!(rec.metadata, b"meta");
    assert_eq!(rec.hard_state, hard_state(2, 1, 100));
    assert_eq!(
        rec.snapshot,
        Some(SnapshotMarker {
            index: 100,
            term: 2
        })
    );
    assert_eq!(rec.entries, entries(101..=101, 2));
}

#[test]
fn release_never_deletes_the_last_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap();
    wal.save(None, &entries(1..=5, 1)).unwrap();
    wal.save_snapshot(SnapshotMarker { index: 5, term: 1 })
        .unwrap();
    wal.release_to(u64::MAX).unwrap();
    assert_eq!(segment_files(tmp.path()).len(), 1);
}

#[test]
fn create_refuses_an_existing_log_and_open_an_empty_dir() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wal::open(tmp.path(), WalOptions::default()),
        Err(WalError::NoSegments(_))
    ));
    drop(Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap());
    assert!(matches!(
        Wal::create(tmp.path(), b"m", WalOptions::default()),
        Err(WalError::AlreadyExists(_))
    ));
}

#[test]
fn a_second_wal_on_the_same_dir_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap();
    assert!(matches!(
        Wal::open(tmp.path(), WalOptions::default()),
        Err(WalError::Locked(_))
    ));
    drop(wal);
    Wal::open(tmp.path(), WalOptions::default()).unwrap();
}

#[test]
fn leftover_temp_and_foreign_files_are_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap();
    wal.save(None, &entries(1..=2, 1)).unwrap();
    drop(wal);
    let temp = tmp.path().join("0000000000000001-0000000000000003.wal.tmp");
    fs::write(&temp, b"half a segment").unwrap();
    fs::write(tmp.path().join("notes.wal"), b"not ours").unwrap();
    let (_wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=2, 1));
    assert!(!temp.exists(), "stale temp segment should be removed");
}

#[test]
fn missing_segment_in_the_middle_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"m", tiny(200)).unwrap();
    for i in 1..=30 {
        wal.save(None, &entries(i..=i, 1)).unwrap();
    }
    drop(wal);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3);
    fs::remove_file(&files[1]).unwrap();
    let err = Wal::open(tmp.path(), tiny(200)).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::SegmentSequence {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn mixed_or_missing_metadata_is_an_error() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(a.path(), b"member a", tiny(200)).unwrap();
    for i in 1..=10 {
        wal.save(None, &entries(i..=i, 1)).unwrap();
    }
    drop(wal);
    drop(Wal::create(b.path(), b"member b", tiny(200)).unwrap());
    // Replace a's second segment with b's first, renamed into the sequence.
    let a_files = segment_files(a.path());
    let b_first = &segment_files(b.path())[0];
    fs::copy(b_first, &a_files[1]).unwrap();
    let err = Wal::open(a.path(), tiny(200)).unwrap_err();
    assert!(
        matches!(&err, WalError::MetadataMismatch(p) if *p == a_files[1]),
        "{err}"
    );

    // A segment whose first record is not metadata.
    let c = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    crate::record::encode(&mut bytes, crate::record::RecordType::HardState, b"").unwrap();
    let path = c.path().join(crate::segment::file_name(0, 0));
    fs::write(&path, bytes).unwrap();
    let err = Wal::open(c.path(), WalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, WalError::MissingMetadata(p) if *p == path),
        "{err}"
    );
}

#[test]
fn entry_gap_is_reported_with_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    // Write a log with a hole by hand: metadata, entries 1, 2, 4.
    let mut bytes = Vec::new();
    crate::record::encode(&mut bytes, crate::record::RecordType::Metadata, b"m").unwrap();
    let mut offset_of_4 = 0;
    for i in [1, 2, 4] {
        offset_of_4 = bytes.len();
        crate::record::encode_with(&mut bytes, crate::record::RecordType::Entry, |o| {
            protobuf::Message::write_to_vec(&entry(i, 1), o)
        })
        .unwrap();
    }
    let path = tmp.path().join(crate::segment::file_name(0, 0));
    fs::write(&path, bytes).unwrap();
    let err = Wal::open(tmp.path(), WalOptions::default()).unwrap_err();
    match &err {
        WalError::EntryGap {
            path: p,
            offset,
            previous: 2,
            found: 4,
        } => {
            assert_eq!(*p, path);
            assert_eq!(*offset, offset_of_4 as u64);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn state_written_only_in_trimmed_segments_survives_in_later_headers() {
    // The only hard state and marker ever written go into the first segment, which is cut
    // right after the marker: measure how big that is, then make it the segment size.
    let write_first_segment = |wal: &mut Wal| {
        wal.save(Some(&hard_state(2, 1, 10)), &entries(1..=10, 2))
            .unwrap();
        wal.save_snapshot(SnapshotMarker { index: 10, term: 2 })
            .unwrap();
    };
    let scratch = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(scratch.path(), b"meta", WalOptions::default()).unwrap();
    write_first_segment(&mut wal);
    let opts = tiny(file_len(&segment_files(scratch.path())[0]));

    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"meta", opts).unwrap();
    write_first_segment(&mut wal);
    assert_eq!(segment_files(tmp.path()).len(), 2);
    for i in 11..=40 {
        wal.save(None, &entries(i..=i, 2)).unwrap();
    }
    let first = segment_files(tmp.path())[0].clone();
    wal.release_to(40).unwrap();
    assert!(
        !first.exists(),
        "the first segment should have been released"
    );
    drop(wal);
    let (_wal, rec) = Wal::open(tmp.path(), opts).unwrap();
    assert_eq!(rec.metadata, b"meta");
    assert_eq!(rec.hard_state, hard_state(2, 1, 10));
    assert_eq!(rec.snapshot, Some(SnapshotMarker { index: 10, term: 2 }));
    assert_eq!(rec.entries, entries(11..=40, 2));
}

#[test]
fn only_entries_or_a_new_term_or_vote_cost_an_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"m", WalOptions::default()).unwrap();
    let base = wal.fsyncs();
    wal.save(Some(&hard_state(1, 1, 0)), &entries(1..=2, 1))
        .unwrap();
    assert_eq!(wal.fsyncs(), base + 1, "entries are synced");
    wal.save(Some(&hard_state(1, 1, 2)), &[]).unwrap();
    assert_eq!(wal.fsyncs(), base + 1, "a commit-only change is not synced");
    wal.save(Some(&hard_state(2, 1, 2)), &[]).unwrap();
    assert_eq!(wal.fsyncs(), base + 2, "a new term is synced");
    wal.save(Some(&hard_state(2, 3, 2)), &[]).unwrap();
    assert_eq!(wal.fsyncs(), base + 3, "a new vote is synced");
    drop(wal);
    // The unsynced commit index was still written and reads back.
    let (_wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.hard_state, hard_state(2, 3, 2));
}

#[test]
fn an_unsynced_tail_is_synced_before_a_segment_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size_bytes: 256,
        ..WalOptions::default()
    };
    let mut wal = Wal::create(tmp.path(), b"m", opts).unwrap();
    wal.save(Some(&hard_state(1, 1, 0)), &entries(1..=1, 1))
        .unwrap();
    let mut commit = 1;
    while segment_files(tmp.path()).len() == 1 {
        let before = wal.fsyncs();
        wal.save(Some(&hard_state(1, 1, commit)), &[]).unwrap();
        commit += 1;
        if segment_files(tmp.path()).len() == 1 {
            assert_eq!(wal.fsyncs(), before, "no cut, no sync");
        } else {
            assert!(
                wal.fsyncs() > before,
                "the full segment was synced before the cut"
            );
        }
    }
    drop(wal);
    let (_wal, rec) = Wal::open(tmp.path(), opts).unwrap();
    assert_eq!(rec.hard_state, hard_state(1, 1, commit - 1));
    assert_eq!(rec.entries, entries(1..=1, 1));
}

#[test]
fn release_keeps_the_newest_segments_it_is_told_to() {
    for (retain, want) in [(4usize, Some(4usize)), (usize::MAX, None)] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            retain_segments: retain,
            ..tiny(300)
        };
        let mut wal = Wal::create(tmp.path(), b"meta", opts).unwrap();
        for i in 1..=100 {
            wal.save(Some(&hard_state(2, 1, i)), &entries(i..=i, 2))
                .unwrap();
        }
        let all = segment_files(tmp.path());
        assert!(all.len() > 5);
        wal.save_snapshot(SnapshotMarker {
            index: 100,
            term: 2,
        })
        .unwrap();
        wal.release_to(100).unwrap();
        let kept = segment_files(tmp.path());
        match want {
            Some(n) => {
                assert_eq!(kept.len(), n);
                assert_eq!(kept[..], all[all.len() - n..]);
            }
            None => assert_eq!(kept, all, "unlimited retention deletes nothing"),
        }
    }
}

#[test]
fn held_unsynced_writes_are_lost_by_a_crash_and_synced_ones_kept() {
    for hold in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            lose_unsynced_on_crash: hold,
            ..WalOptions::default()
        };
        let mut wal = Wal::create(tmp.path(), b"m", opts).unwrap();
        wal.save(Some(&hard_state(1, 1, 0)), &entries(1..=2, 1))
            .unwrap();
        // Moves only the commit index: written, not synced.
        wal.save(Some(&hard_state(1, 1, 2)), &[]).unwrap();
        // A crash: nothing is flushed on the way out.
        drop(wal);
        let (_wal, rec) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(rec.entries, entries(1..=2, 1), "hold: {hold}");
        // Held, the unsynced commit index is gone as after a power cut; written to the page
        // cache, a process crash keeps it.
        let commit = if hold { 0 } else { 2 };
        assert_eq!(rec.hard_state, hard_state(1, 1, commit), "hold: {hold}");
    }
}

#[test]
fn held_bytes_reach_the_old_segment_when_it_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        lose_unsynced_on_crash: true,
        ..tiny(256)
    };
    let mut wal = Wal::create(tmp.path(), b"m", opts).unwrap();
    for i in 1..=20 {
        wal.save(Some(&hard_state(1, 1, i - 1)), &entries(i..=i, 1))
            .unwrap();
    }
    assert!(segment_files(tmp.path()).len() > 1);
    drop(wal);
    let (_wal, rec) = Wal::open(tmp.path(), opts).unwrap();
    assert_eq!(rec.entries, entries(1..=20, 1));
}
