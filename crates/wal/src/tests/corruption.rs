//! Damage that a crash cannot explain must stop open with an error naming the file and offset.

use std::fs;
use std::path::Path;

use super::util::*;
use crate::{Record, RecordError, Wal, WalError, WalOptions, decode_segment};

/// Offsets of the records in a segment file, and the file's length.
fn record_offsets(path: &Path) -> (Vec<u64>, u64) {
    let bytes = fs::read(path).unwrap();
    let decoded = decode_segment(&bytes);
    (
        decoded.records.iter().map(|r| r.offset).collect(),
        bytes.len() as u64,
    )
}

/// Offset of the record holding entry `index` in a segment file.
fn offset_of_entry(path: &Path, index: u64) -> u64 {
    let bytes = fs::read(path).unwrap();
    decode_segment(&bytes)
        .records
        .iter()
        .find(|r| matches!(&r.record, Record::Entry(e) if e.index == index))
        .map(|r| r.offset)
        .unwrap()
}

fn assert_corrupt_at(err: WalError, path: &Path, offset: u64) -> RecordError {
    let text = err.to_string();
    let WalError::Corrupt {
        path: p,
        offset: o,
        reason,
    } = err
    else {
        panic!("expected corruption, got {text}");
    };
    assert_eq!(p, path);
    assert_eq!(o, offset);
    assert!(
        text.starts_with(&format!(
            "wal: corrupt record in {} at offset {offset}: ",
            path.display()
        )),
        "{text}"
    );
    reason
}

#[test]
fn flipped_byte_in_an_earlier_record_of_the_last_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"meta", WalOptions::default()).unwrap();
    for i in 1..=5 {
        wal.save(Some(&hard_state(1, 1, i)), &entries(i..=i, 1))
            .unwrap();
    }
    drop(wal);
    let seg = segment_files(tmp.path()).pop().unwrap();
    let at = offset_of_entry(&seg, 3);
    let (offsets, _) = record_offsets(&seg);
    let next = offsets[offsets.iter().position(|&o| o == at).unwrap() + 1];
    // Flip a byte in the payload, then separately in each header field.
    for target in [(at + next) / 2, at, at + 4, at + 6] {
        let copy = copy_dir(tmp.path());
        let path = copy.path().join(seg.file_name().unwrap());
        flip_byte(&path, target);
        let err = Wal::open(copy.path(), WalOptions::default()).unwrap_err();
        assert_corrupt_at(err, &path, at);
        // Refusing must not have modified the file.
        assert_eq!(file_len(&path), file_len(&seg));
    }
}

#[test]
fn flipped_byte_in_a_non_last_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = tiny(200);
    let mut wal = Wal::create(tmp.path(), b"meta", opts).unwrap();
    for i in 1..=30 {
        wal.save(None, &entries(i..=i, 1)).unwrap();
    }
    drop(wal);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3);
    // The final record of segment 1: in the last segment this would be a torn tail.
    let (offsets, len) = record_offsets(&files[1]);
    let last_record = *offsets.last().unwrap();
    flip_byte(&files[1], (last_record + len) / 2);
    let err = Wal::open(tmp.path(), opts).unwrap_err();
    let reason = assert_corrupt_at(err, &files[1], last_record);
    assert!(
        matches!(reason, RecordError::CrcMismatch { .. }),
        "{reason}"
    );
}

#[test]
fn truncated_non_last_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = tiny(200);
    let mut wal = Wal::create(tmp.path(), b"meta", opts).unwrap();
    for i in 1..=30 {
        wal.save(None, &entries(i..=i, 1)).unwrap();
    }
    drop(wal);
    let files = segment_files(tmp.path());
    let (offsets, len) = record_offsets(&files[0]);
    let last_record = *offsets.last().unwrap();
    truncate(&files[0], len - 1);
    let err = Wal::open(tmp.path(), opts).unwrap_err();
    assert_corrupt_at(err, &files[0], last_record);
}

#[test]
fn garbage_length_is_corruption_in_the_middle_and_a_tail_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), b"meta", WalOptions::default()).unwrap();
    wal.save(None, &entries(1..=5, 1)).unwrap();
    drop(wal);
    let seg = segment_files(tmp.path()).pop().unwrap();
    let write_len = |path: &Path, at: u64, len: u32| {
        let mut bytes = fs::read(path).unwrap();
        bytes[at as usize..at as usize + 4].copy_from_slice(&len.to_le_bytes());
        fs::write(path, bytes).unwrap();
    };

    // In the middle: a length of 4 GiB - 1 must be refused as over the limit (never trusted
    // and allocated), and one within the limit but past the file end as corruption too.
    let at = offset_of_entry(&seg, 2);
    for (garbage, over_limit) in [(u32::MAX, true), (200 << 20, false)] {
        let copy = copy_dir(tmp.path());
        let path = copy.path().join(seg.file_name().unwrap());
        write_len(&path, at, garbage);
        let err = Wal::open(copy.path(), WalOptions::default()).unwrap_err();
        let reason = assert_corrupt_at(err, &path, at);
        assert_eq!(
            matches!(reason, RecordError::LengthOverLimit(_)),
            over_limit,
            "{reason}"
        );
    }

    // On the final record the same damage is indistinguishable from a torn write.
    let at = offset_of_entry(&seg, 5);
    write_len(&seg, at, u32::MAX);
    let (_wal, rec) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=4, 1));
    assert_eq!(file_len(&seg), at);
}

#[test]
fn valid_crc_with_undecodable_payload_is_corrupt_even_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Wal::create(tmp.path(), b"meta", WalOptions::default()).unwrap());
    let seg = segment_files(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes.len() as u64;
    crate::record::encode(&mut bytes, crate::record::RecordType::Entry, &[0xff; 5]).unwrap();
    fs::write(&seg, bytes).unwrap();
    let err = Wal::open(tmp.path(), WalOptions::default()).unwrap_err();
    let reason = assert_corrupt_at(err, &seg, at);
    assert!(matches!(reason, RecordError::BadPayload(_)), "{reason}");
}
