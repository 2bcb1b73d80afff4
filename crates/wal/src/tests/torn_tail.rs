//! A crash mid-write leaves the last segment ending in part of a record: open must cut it off,
//! keep everything before it, and keep working.

use std::fs;

use super::util::*;
use crate::{Wal, WalOptions};

/// Writes a log whose last record is entry 6 alone, returning the directory, the last segment
/// and where that record starts and ends.
fn log_ending_in_one_entry() -> (tempfile::TempDir, std::path::PathBuf, u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"meta", WalOptions::default()).unwrap();
    wal.save(Some(&hard_state(1, 1, 3)), &entries(1..=5, 1))
        .unwrap();
    let seg = segment_files(tmp.path()).pop().unwrap();
    let start = file_len(&seg);
    wal.save(None, &entries(6..=6, 1)).unwrap();
    let end = file_len(&seg);
    (tmp, seg, start, end)
}

#[test]
fn every_cut_of_the_last_record_is_truncated_and_appends_recover() {
    let (written, seg, start, end) = log_ending_in_one_entry();
    let name = seg.file_name().unwrap().to_owned();
    assert!(end - start > 9, "record should be longer than its header");
    for cut in start..end {
        let copy = copy_dir(written.path());
        let path = copy.path().join(&name);
        truncate(&path, cut);

        let (mut wal, rec) = Wal::open(copy.path(), WalOptions::default()).unwrap();
        assert_eq!(rec.entries, entries(1..=5, 1), "cut at {cut}");
        assert_eq!(rec.hard_state, hard_state(1, 1, 3), "cut at {cut}");
        assert_eq!(file_len(&path), start, "cut at {cut}: tail not truncated");

        // The lost entry is written again (a different one, even) and everything reads back.
        wal.save(Some(&hard_state(2, 1, 6)), &entries(6..=7, 2))
            .unwrap();
        drop(wal);
        let (_wal, rec) = Wal::open(copy.path(), WalOptions::default()).unwrap();
        let mut expected = entries(1..=5, 1);
        expected.extend(entries(6..=7, 2));
        assert_eq!(rec.entries, expected, "cut at {cut}");
        assert_eq!(rec.hard_state, hard_state(2, 1, 6), "cut at {cut}");
    }
}

#[test]
fn uncut_log_is_left_alone() {
    let (written, seg, _, end) = log_ending_in_one_entry();
    let (_wal, rec) = Wal::open(written.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=6, 1));
    assert_eq!(file_len(&seg), end);
}

#[test]
fn zero_filled_tail_is_truncated() {
    let (written, seg, _, end) = log_ending_in_one_entry();
    let mut bytes = fs::read(&seg).unwrap();
    bytes.resize(bytes.len() + 8192, 0);
    fs::write(&seg, bytes).unwrap();
    let (mut wal, rec) = Wal::open(written.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=6, 1));
    assert_eq!(file_len(&seg), end);
    wal.save(None, &entries(7..=7, 1)).unwrap();
    drop(wal);
    let (_wal, rec) = Wal::open(written.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=7, 1));
}

#[test]
fn zeroed_last_record_is_truncated() {
    // The file system kept the size but not the data of the last write.
    let (written, seg, start, end) = log_ending_in_one_entry();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[start as usize..end as usize].fill(0);
    fs::write(&seg, bytes).unwrap();
    let (_wal, rec) = Wal::open(written.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=5, 1));
    assert_eq!(file_len(&seg), start);
}

#[test]
fn bad_crc_on_the_final_record_is_truncated() {
    let (written, seg, start, end) = log_ending_in_one_entry();
    flip_byte(&seg, (start + end) / 2);
    let (_wal, rec) = Wal::open(written.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=5, 1));
    assert_eq!(file_len(&seg), start);
}

#[test]
fn torn_tail_after_a_cut_segment_is_truncated_in_the_new_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = tiny(200);
    let mut wal = Wal::create(tmp.path(), b"meta", opts).unwrap();
    for i in 1..=20 {
        wal.save(None, &entries(i..=i, 1)).unwrap();
    }
    let last = segment_files(tmp.path()).pop().unwrap();
    let before = file_len(&last);
    wal.save(None, &entries(21..=21, 1)).unwrap();
    drop(wal);
    // Entry 21 may have filled the segment and caused a cut; crash before the cut instead.
    for extra in segment_files(tmp.path()) {
        if extra > last {
            fs::remove_file(extra).unwrap();
        }
    }
    truncate(&last, before + 3);
    let (_wal, rec) = Wal::open(tmp.path(), opts).unwrap();
    assert_eq!(rec.entries, entries(1..=20, 1));
    assert_eq!(file_len(&last), before);
}
