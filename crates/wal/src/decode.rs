//! Decoding a whole segment's bytes into typed records, and deciding how the bytes end.
//!
//! This is the one place that tells a torn tail (a crash cut the last write short: safe to cut
//! off) from corruption (a bad record with good records after it: refuse). The rule: a bad record
//! is the tail only if no valid record can be found anywhere after it. Because a corrupted length
//! field hides where the next record starts, "anywhere" means every later byte offset; a cheap
//! header check on the candidate and on the record that would follow it keeps that scan from
//! computing a CRC at most offsets.
//!
//! When in doubt this errs towards corruption: refusing to start loses nothing, while cutting
//! off a tail that held valid records could lose acknowledged writes. (So a torn final record
//! whose payload happens to contain a well-formed record, as user data may, is reported as
//! corruption rather than cut off.)
//!
//! [`decode_segment`] is pure and total: it never panics and never allocates more than the input
//! justifies, so it is also the fuzzing entry point for the on-disk format.

use protobuf::Message;
use raft::eraftpb::{Entry, HardState};

use crate::record::{self, Frame, RecordError, RecordType};

/// The state machine has a snapshot at `index`; entries at or below it may be gone from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMarker {
    pub index: u64,
    pub term: u64,
}

/// Bytes in an encoded [`SnapshotMarker`] payload.
pub(crate) const SNAPSHOT_MARKER_BYTES: usize = 16;

impl SnapshotMarker {
    pub(crate) fn to_bytes(self) -> [u8; SNAPSHOT_MARKER_BYTES] {
        let mut out = [0; SNAPSHOT_MARKER_BYTES];
        out[..8].copy_from_slice(&self.index.to_le_bytes());
        out[8..].copy_from_slice(&self.term.to_le_bytes());
        out
    }

    fn from_bytes(payload: &[u8]) -> Result<Self, RecordError> {
        let bytes: [u8; SNAPSHOT_MARKER_BYTES] = payload.try_into().map_err(|_| {
            RecordError::BadPayload(format!(
                "snapshot marker is {} bytes, expected {SNAPSHOT_MARKER_BYTES}",
                payload.len()
            ))
        })?;
        // Index in bytes 0..8 and term in 8..16, both LE, is one LE u128 split in halves.
        let both = u128::from_le_bytes(bytes);
        Ok(SnapshotMarker {
            index: both as u64,
            term: (both >> 64) as u64,
        })
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Metadata(Vec<u8>),
    Entry(Entry),
    HardState(HardState),
    SnapshotMarker(SnapshotMarker),
}

/// A decoded record and the byte offset of its header in the segment.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRecord {
    pub offset: u64,
    pub record: Record,
}

/// How a segment's bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeEnd {
    /// The last record ends exactly at the end of the bytes.
    Clean,
    /// From `offset` on there is no valid record: an incomplete or failed final record, or
    /// zero-filled space. In the last segment this is a torn write and is cut off.
    TornTail { offset: u64, reason: RecordError },
    /// The record at `offset` is bad and valid records follow it (or its frame is intact but its
    /// payload does not decode): damage that cutting off a tail cannot explain.
    Corrupt { offset: u64, reason: RecordError },
}

/// The records of one segment, in order, and how the bytes ended. Records after a
/// [`DecodeEnd::Corrupt`] point are not returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub records: Vec<DecodedRecord>,
    pub end: DecodeEnd,
}

/// Decodes every record in `buf` (the full contents of one segment file). Never panics.
pub fn decode_segment(buf: &[u8]) -> Decoded {
    let mut records = Vec::new();
    let mut offset = 0;
    let end = loop {
        if offset == buf.len() {
            break DecodeEnd::Clean;
        }
        match record::read_frame(buf, offset) {
            Ok(frame) => match decode_payload(frame) {
                Ok(record) => {
                    records.push(DecodedRecord {
                        offset: offset as u64,
                        record,
                    });
                    offset = frame.end;
                }
                // The CRC matched, so these are the bytes we wrote: no crash explains them.
                Err(reason) => {
                    break DecodeEnd::Corrupt {
                        offset: offset as u64,
                        reason,
                    };
                }
            },
            Err(reason) => {
                let offset_u64 = offset as u64;
                break if valid_record_after(buf, offset) {
                    DecodeEnd::Corrupt {
                        offset: offset_u64,
                        reason,
                    }
                } else {
                    DecodeEnd::TornTail {
                        offset: offset_u64,
                        reason,
                    }
                };
            }
        }
    };
    Decoded { records, end }
}

fn decode_payload(frame: Frame<'_>) -> Result<Record, RecordError> {
    let bad =
        |what: &str, e: protobuf::ProtobufError| RecordError::BadPayload(format!("{what}: {e}"));
    Ok(match frame.kind {
        RecordType::Metadata => Record::Metadata(frame.payload.to_vec()),
        RecordType::Entry => {
            Record::Entry(Entry::parse_from_bytes(frame.payload).map_err(|e| bad("entry", e))?)
        }
        RecordType::HardState => Record::HardState(
            HardState::parse_from_bytes(frame.payload).map_err(|e| bad("hard state", e))?,
        ),
        RecordType::SnapshotMarker => {
            Record::SnapshotMarker(SnapshotMarker::from_bytes(frame.payload)?)
        }
    })
}

/// True if some offset after `bad` holds a record whose frame checks out.
fn valid_record_after(buf: &[u8], bad: usize) -> bool {
    // No record starts inside a trailing run of zeros (its type byte would be zero), so that run
    // is skipped in one pass instead of probed offset by offset: zero-filled tails can be large.
    let data_end = buf.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    (bad + 1..data_end).any(|candidate| {
        // Cheap filters first: the candidate's header must frame a record inside the buffer and
        // whatever follows it must look like a header. Only then pay for the CRC.
        record::framed_end(buf, candidate).is_some_and(|end| {
            record::header_plausible(buf, end) && record::read_frame(buf, candidate).is_ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{HEADER_BYTES, encode_with};

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn push(out: &mut Vec<u8>, kind: RecordType, payload: &[u8]) -> usize {
        let start = out.len();
        record::encode(out, kind, payload).unwrap();
        start
    }

    fn push_entry(out: &mut Vec<u8>, e: &Entry) -> usize {
        let start = out.len();
        encode_with(out, RecordType::Entry, |o| e.write_to_vec(o)).unwrap();
        start
    }

    fn sample() -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut starts = vec![push(&mut buf, RecordType::Metadata, b"meta")];
        for i in 1..=4 {
            starts.push(push_entry(&mut buf, &entry(i, 1, b"some entry data")));
        }
        (buf, starts)
    }

    #[test]
    fn decodes_all_record_types() {
        let mut buf = Vec::new();
        push(&mut buf, RecordType::Metadata, b"m");
        push_entry(&mut buf, &entry(7, 2, b"d"));
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 7,
            ..Default::default()
        };
        push(
            &mut buf,
            RecordType::HardState,
            &hs.write_to_bytes().unwrap(),
        );
        let marker = SnapshotMarker { index: 5, term: 2 };
        push(&mut buf, RecordType::SnapshotMarker, &marker.to_bytes());
        let decoded = decode_segment(&buf);
        assert_eq!(decoded.end, DecodeEnd::Clean);
        let records: Vec<_> = decoded.records.into_iter().map(|r| r.record).collect();
        assert_eq!(
            records,
            vec![
                Record::Metadata(b"m".to_vec()),
                Record::Entry(entry(7, 2, b"d")),
                Record::HardState(hs),
                Record::SnapshotMarker(marker),
            ]
        );
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let (buf, starts) = sample();
        let last = *starts.last().unwrap();
        for cut in last + 1..buf.len() {
            let decoded = decode_segment(&buf[..cut]);
            assert_eq!(decoded.records.len(), starts.len() - 1, "cut {cut}");
            assert!(
                matches!(decoded.end, DecodeEnd::TornTail { offset, .. } if offset == last as u64),
                "cut {cut}: {:?}",
                decoded.end
            );
        }
    }

    #[test]
    fn zero_fill_after_records_is_a_torn_tail() {
        let (mut buf, starts) = sample();
        let end = buf.len();
        buf.resize(end + 4096, 0);
        let decoded = decode_segment(&buf);
        assert_eq!(decoded.records.len(), starts.len());
        assert_eq!(
            decoded.end,
            DecodeEnd::TornTail {
                offset: end as u64,
                reason: RecordError::ZeroFilled
            }
        );
    }

    #[test]
    fn flipped_byte_before_valid_records_is_corrupt() {
        let (buf, starts) = sample();
        // Every byte of record 2 (header included): whatever field the flip hits, the valid
        // records after it must turn it into corruption at that record's offset.
        for at in starts[2]..starts[3] {
            let mut bad = buf.clone();
            bad[at] ^= 0x40;
            let decoded = decode_segment(&bad);
            assert_eq!(decoded.records.len(), 2, "flip at {at}");
            assert!(
                matches!(decoded.end, DecodeEnd::Corrupt { offset, .. } if offset == starts[2] as u64),
                "flip at {at}: {:?}",
                decoded.end
            );
        }
    }

    #[test]
    fn flipped_byte_in_final_record_is_a_torn_tail() {
        let (buf, starts) = sample();
        let last = *starts.last().unwrap();
        for at in last + HEADER_BYTES..buf.len() {
            let mut bad = buf.clone();
            bad[at] ^= 0x01;
            let decoded = decode_segment(&bad);
            assert!(
                matches!(decoded.end, DecodeEnd::TornTail { offset, reason: RecordError::CrcMismatch { .. } } if offset == last as u64),
                "flip at {at}: {:?}",
                decoded.end
            );
        }
    }

    #[test]
    fn intact_frame_with_bad_payload_is_corrupt_even_at_the_end() {
        let mut buf = Vec::new();
        push(&mut buf, RecordType::Metadata, b"m");
        let at = push(&mut buf, RecordType::SnapshotMarker, b"short");
        let decoded = decode_segment(&buf);
        assert!(matches!(
            decoded.end,
            DecodeEnd::Corrupt { offset, reason: RecordError::BadPayload(_) } if offset == at as u64
        ));
        let mut buf = Vec::new();
        let at = push(&mut buf, RecordType::Entry, &[0xff; 8]);
        assert!(matches!(
            decode_segment(&buf).end,
            DecodeEnd::Corrupt { offset, reason: RecordError::BadPayload(_) } if offset == at as u64
        ));
    }

    #[test]
    fn garbage_length_in_the_middle_is_corrupt_not_an_allocation() {
        let (mut buf, starts) = sample();
        buf[starts[1]..starts[1] + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let decoded = decode_segment(&buf);
        assert_eq!(
            decoded.end,
            DecodeEnd::Corrupt {
                offset: starts[1] as u64,
                reason: RecordError::LengthOverLimit(0xFFFF_FFF0)
            }
        );
    }

    #[test]
    fn empty_input_is_clean() {
        assert_eq!(
            decode_segment(&[]),
            Decoded {
                records: vec![],
                end: DecodeEnd::Clean
            }
        );
    }

    /// Fuzz stand-in: random bytes, and random mutations of a valid segment, must never panic,
    /// and whatever is returned must be consistent with the input.
    #[test]
    fn random_bytes_never_panic() {
        let (valid, _) = sample();
        let mut rng = crate::tests::util::Rng::new(0x5eed);
        for round in 0..3000 {
            let buf: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(200) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut b = valid.clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(b.len() as u64) as usize;
                    b[at] = rng.next() as u8;
                }
                let keep = rng.below(b.len() as u64 + 1) as usize;
                b.truncate(keep);
                b
            };
            let decoded = decode_segment(&buf);
            for pair in decoded.records.windows(2) {
                assert!(pair[0].offset < pair[1].offset);
            }
            match decoded.end {
                DecodeEnd::Clean => {}
                DecodeEnd::TornTail { offset, .. } | DecodeEnd::Corrupt { offset, .. } => {
                    assert!(offset < buf.len() as u64)
                }
            }
        }
    }

    /// Fuzz stand-in for the payload decoders: random bytes in intact frames reach protobuf and
    /// the marker decoder, which must reject or accept them without panicking.
    #[test]
    fn random_payloads_in_valid_frames_never_panic() {
        let mut rng = crate::tests::util::Rng::new(0xf00d);
        let kinds = [
            RecordType::Metadata,
            RecordType::Entry,
            RecordType::HardState,
            RecordType::SnapshotMarker,
        ];
        let mut accepted = 0;
        for _ in 0..5000 {
            let len = rng.below(64) as usize;
            let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let kind = kinds[rng.below(4) as usize];
            let mut buf = Vec::new();
            push(&mut buf, kind, &payload);
            let decoded = decode_segment(&buf);
            match decoded.end {
                DecodeEnd::Clean => {
                    assert_eq!(decoded.records.len(), 1);
                    accepted += 1;
                }
                DecodeEnd::Corrupt {
                    offset: 0,
                    reason: RecordError::BadPayload(_),
                } => assert!(decoded.records.is_empty()),
                other => panic!("intact frame reported as {other:?}"),
            }
        }
        assert!(accepted > 0);
    }
}
