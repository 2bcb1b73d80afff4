//! Fuzzing the segment decoder on stable Rust (proptest): a WAL segment comes from disk, where
//! anything can happen to it. Arbitrary bytes never make it panic; and a valid segment with a
//! bit flipped, a byte overwritten or its tail cut never yields a record that was not written:
//! every record it returns is the one written at that offset. Real segments a member wrote
//! (tests/corpus/wal-segments/) are damaged the same ways.

use etcd_fuzzing::{corpus, mutations_of};
use etcd_wal::record::{RecordType, encode};
use etcd_wal::{DecodeEnd, Record, decode_segment};
use proptest::prelude::*;
use protobuf::Message;
use raft::eraftpb::Entry;

/// A valid segment of `entries` after a metadata record, and each record's offset.
fn segment(meta: &[u8], entries: &[(u64, u64, Vec<u8>)]) -> (Vec<u8>, Vec<(u64, Record)>) {
    let mut out = Vec::new();
    let mut written = Vec::new();
    written.push((0, Record::Metadata(meta.to_vec())));
    encode(&mut out, RecordType::Metadata, meta).expect("small");
    for (term, index, data) in entries {
        let entry = Entry {
            term: *term,
            index: *index,
            data: data.clone().into(),
            ..Default::default()
        };
        let offset = out.len() as u64;
        let payload = entry.write_to_bytes().expect("encodes");
        encode(&mut out, RecordType::Entry, &payload).expect("small");
        written.push((offset, Record::Entry(entry)));
    }
    (out, written)
}

fn entries() -> impl Strategy<Value = Vec<(u64, u64, Vec<u8>)>> {
    prop::collection::vec(
        (
            0u64..10,
            0u64..1000,
            prop::collection::vec(any::<u8>(), 0..200),
        ),
        0..12,
    )
}

/// Every record returned is the one written at its offset.
fn only_what_was_written(bytes: &[u8], written: &[(u64, Record)]) -> Result<(), TestCaseError> {
    let decoded = decode_segment(bytes);
    for r in &decoded.records {
        let original = written.iter().find(|(offset, _)| *offset == r.offset);
        prop_assert!(
            original.is_some_and(|(_, record)| *record == r.record),
            "decoded {:?} at {} which was never written there",
            r.record,
            r.offset
        );
    }
    Ok(())
}

fn wal_corpus() -> Vec<Vec<u8>> {
    corpus(env!("CARGO_MANIFEST_DIR"), "wal-segments")
}

/// The committed corpus is real: segments a member wrote, which decode whole.
#[test]
fn the_corpus_decodes_whole() {
    for file in wal_corpus() {
        let decoded = decode_segment(&file);
        assert_eq!(decoded.end, DecodeEnd::Clean);
        assert!(
            decoded.records.len() > 10,
            "{} records",
            decoded.records.len()
        );
    }
}

etcd_fuzzing::fuzz! {
    target = "wal-segments", cases = 2000;

    /// Real segments damaged as disks damage them (bits, bytes, cuts, chunks spliced,
    /// duplicated or removed): an answer, never a panic, and no record outside the bytes.
    fn damaged_corpus_segments_never_panic(bytes in mutations_of(wal_corpus())) {
        let decoded = decode_segment(&bytes);
        for r in &decoded.records {
            prop_assert!((r.offset as usize) < bytes.len());
        }
    }

    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let decoded = decode_segment(&bytes);
        for r in &decoded.records {
            prop_assert!((r.offset as usize) < bytes.len());
        }
    }

    fn a_valid_segment_decodes_whole(
        meta in prop::collection::vec(any::<u8>(), 0..64),
        entries in entries(),
    ) {
        let (bytes, written) = segment(&meta, &entries);
        let decoded = decode_segment(&bytes);
        prop_assert_eq!(decoded.end, DecodeEnd::Clean);
        let got: Vec<(u64, Record)> =
            decoded.records.into_iter().map(|r| (r.offset, r.record)).collect();
        prop_assert_eq!(got, written);
    }

    fn a_flipped_bit_never_forges_a_record(
        meta in prop::collection::vec(any::<u8>(), 0..64),
        entries in entries(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (mut bytes, written) = segment(&meta, &entries);
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        only_what_was_written(&bytes, &written)?;
    }

    fn an_overwritten_byte_or_a_cut_tail_never_forges_a_record(
        meta in prop::collection::vec(any::<u8>(), 0..64),
        entries in entries(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let (mut bytes, written) = segment(&meta, &entries);
        let i = at.index(bytes.len());
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] = value;
        }
        only_what_was_written(&bytes, &written)?;
    }
}
