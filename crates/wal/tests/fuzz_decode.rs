//! Fuzzing the segment decoder on stable Rust (proptest): a WAL segment comes from disk, where
//! anything can happen to it. Arbitrary bytes never make it panic; and a valid segment with a
//! bit flipped, a byte overwritten or its tail cut never yields a record that was not written:
//! every record it returns is the one written at that offset. Failing inputs are kept in
//! proptest-regressions/ (the corpus) and replayed first.

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let decoded = decode_segment(&bytes);
        for r in &decoded.records {
            prop_assert!((r.offset as usize) < bytes.len());
        }
    }

    #[test]
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

    #[test]
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

    #[test]
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
