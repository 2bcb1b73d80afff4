//! Record framing: how one typed payload is laid out on disk and checked on the way back.
//!
//! A record is a 9-byte header followed by the payload:
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | `0..4` | payload length, `u32` little-endian                     |
//! | `4`    | record type (see [`RecordType`])                        |
//! | `5..9` | CRC-32C of the type byte then the payload, `u32` LE     |
//!
//! The CRC covers the type so a flipped type byte cannot turn an entry into metadata unnoticed.
//! It does not cover the length: a corrupted length is caught by the bound, by running past the
//! end of the file, or by the CRC then being computed over the wrong bytes.
//!
//! Type 0 is never used, so an all-zero header (space the file system zero-filled after a crash)
//! is recognisably "no record here" rather than a valid empty record.

use std::fmt;

/// Bytes in a record header.
pub const HEADER_BYTES: usize = 9;

/// The largest payload a record may carry. A length above this read from disk is corruption, and
/// writing one is refused, so a flipped bit in a length field can never make a reader trust a
/// multi-gigabyte record.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 256 << 20;

/// What a record's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// Opaque bytes given at create (the server's node and cluster IDs); first in every segment.
    Metadata = 1,
    /// A `raft::eraftpb::Entry`, protobuf-encoded.
    Entry = 2,
    /// A `raft::eraftpb::HardState`, protobuf-encoded.
    HardState = 3,
    /// A snapshot marker: index `u64` LE then term `u64` LE.
    SnapshotMarker = 4,
}

impl RecordType {
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordType::Metadata),
            2 => Some(RecordType::Entry),
            3 => Some(RecordType::HardState),
            4 => Some(RecordType::SnapshotMarker),
            _ => None,
        }
    }
}

/// Why the bytes at some offset are not a good record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than a header remain.
    ShortHeader { available: usize },
    /// The header promises more payload than the file holds.
    ShortPayload { len: usize, available: usize },
    /// The header is all zeros: unwritten, zero-filled space.
    ZeroFilled,
    /// The type byte is not one we write.
    UnknownType(u8),
    /// The length field is above [`RECORD_PAYLOAD_BYTES_MAX`].
    LengthOverLimit(u64),
    /// The stored CRC does not match the type and payload.
    CrcMismatch { stored: u32, computed: u32 },
    /// The frame is intact (the CRC matches) but the payload does not decode as its type.
    BadPayload(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::ShortHeader { available } => {
                write!(f, "incomplete header ({available} of {HEADER_BYTES} bytes)")
            }
            RecordError::ShortPayload { len, available } => {
                write!(f, "incomplete payload ({available} of {len} bytes)")
            }
            RecordError::ZeroFilled => write!(f, "zero-filled space"),
            RecordError::UnknownType(t) => write!(f, "unknown record type {t}"),
            RecordError::LengthOverLimit(len) => write!(
                f,
                "length {len} exceeds the limit of {RECORD_PAYLOAD_BYTES_MAX} bytes"
            ),
            RecordError::CrcMismatch { stored, computed } => write!(
                f,
                "crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            RecordError::BadPayload(why) => write!(f, "undecodable payload: {why}"),
        }
    }
}

/// A record whose frame checked out; the payload is not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: RecordType,
    pub payload: &'a [u8],
    /// Offset just past this record: where the next one starts.
    pub end: usize,
}

/// Reads and checks the record framed at `offset` in `buf`. Never panics and never allocates,
/// whatever the bytes are.
pub fn read_frame(buf: &[u8], offset: usize) -> Result<Frame<'_>, RecordError> {
    let rest = buf.get(offset..).unwrap_or(&[]);
    let Some((header, body)) = rest.split_first_chunk::<HEADER_BYTES>() else {
        return Err(RecordError::ShortHeader {
            available: rest.len(),
        });
    };
    if header.iter().all(|&b| b == 0) {
        return Err(RecordError::ZeroFilled);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let type_byte = header[4];
    let stored = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    let kind = RecordType::from_byte(type_byte).ok_or(RecordError::UnknownType(type_byte))?;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(RecordError::LengthOverLimit(len as u64));
    }
    let Some(payload) = body.get(..len) else {
        return Err(RecordError::ShortPayload {
            len,
            available: body.len(),
        });
    };
    let computed = checksum(type_byte, payload);
    if computed != stored {
        return Err(RecordError::CrcMismatch { stored, computed });
    }
    Ok(Frame {
        kind,
        payload,
        end: offset + HEADER_BYTES + len,
    })
}

/// True if the header at `offset` could be what follows a record: a known type and an in-bound
/// length, or all zeros, or too few bytes left to tell (a torn header). Cheap; used to vet
/// candidate records found while looking past a bad one.
pub(crate) fn header_plausible(buf: &[u8], offset: usize) -> bool {
    let rest = buf.get(offset..).unwrap_or(&[]);
    let Some(header) = rest.first_chunk::<HEADER_BYTES>() else {
        return true;
    };
    if header.iter().all(|&b| b == 0) {
        return true;
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    RecordType::from_byte(header[4]).is_some() && len <= RECORD_PAYLOAD_BYTES_MAX
}

/// Where the record at `offset` would end if its header is sound: a known type, an in-bound
/// length, and the payload inside `buf`. Checks no CRC, so it is cheap enough to try at every
/// offset.
pub(crate) fn framed_end(buf: &[u8], offset: usize) -> Option<usize> {
    let header = buf.get(offset..)?.first_chunk::<HEADER_BYTES>()?;
    RecordType::from_byte(header[4])?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let end = offset + HEADER_BYTES + len;
    (len <= RECORD_PAYLOAD_BYTES_MAX && end <= buf.len()).then_some(end)
}

/// Appends one record to `out`, letting `write_payload` serialise straight into `out` so the
/// payload is copied once. On error `out` is left as it was.
pub fn encode_with<E>(
    out: &mut Vec<u8>,
    kind: RecordType,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), EncodeError<E>> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    if let Err(e) = write_payload(out) {
        out.truncate(start);
        return Err(EncodeError::Payload(e));
    }
    let payload_start = start + HEADER_BYTES;
    let len = out.len() - payload_start;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        out.truncate(start);
        return Err(EncodeError::TooLarge(len));
    }
    let crc = checksum(kind as u8, &out[payload_start..]);
    // `len` fits in u32: it is at most RECORD_PAYLOAD_BYTES_MAX.
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4] = kind as u8;
    out[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends one record whose payload is already in hand.
pub fn encode(
    out: &mut Vec<u8>,
    kind: RecordType,
    payload: &[u8],
) -> Result<(), EncodeError<std::convert::Infallible>> {
    encode_with(out, kind, |out| {
        out.extend_from_slice(payload);
        Ok(())
    })
}

/// Why [`encode_with`] wrote nothing.
#[derive(Debug)]
pub enum EncodeError<E> {
    /// The payload writer failed.
    Payload(E),
    /// The payload exceeds [`RECORD_PAYLOAD_BYTES_MAX`]; carries its length.
    TooLarge(usize),
}

fn checksum(type_byte: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[type_byte]), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(kind: RecordType, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, kind, payload).unwrap();
        out
    }

    #[test]
    fn round_trip_every_type_and_empty_payload() {
        for kind in [
            RecordType::Metadata,
            RecordType::Entry,
            RecordType::HardState,
            RecordType::SnapshotMarker,
        ] {
            for payload in [&b""[..], b"x", b"hello world"] {
                let buf = one(kind, payload);
                assert_eq!(buf.len(), HEADER_BYTES + payload.len());
                let frame = read_frame(&buf, 0).unwrap();
                assert_eq!(frame.kind, kind);
                assert_eq!(frame.payload, payload);
                assert_eq!(frame.end, buf.len());
            }
        }
    }

    #[test]
    fn empty_payload_record_is_not_zero_filled() {
        let buf = one(RecordType::HardState, b"");
        assert!(buf.iter().any(|&b| b != 0));
        assert!(read_frame(&buf, 0).is_ok());
    }

    #[test]
    fn every_short_cut_is_reported_as_short() {
        let buf = one(RecordType::Entry, b"0123456789");
        for cut in 0..buf.len() {
            let err = read_frame(&buf[..cut], 0).unwrap_err();
            if cut < HEADER_BYTES {
                assert_eq!(err, RecordError::ShortHeader { available: cut });
            } else {
                assert_eq!(
                    err,
                    RecordError::ShortPayload {
                        len: 10,
                        available: cut - HEADER_BYTES
                    }
                );
            }
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let buf = one(RecordType::Entry, b"payload bytes");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                // A flipped length bit may make the record short or long instead; any error is
                // fine, accepting the record is not.
                if let Ok(frame) = read_frame(&bad, 0) {
                    panic!("flip of byte {byte} bit {bit} accepted: {frame:?}");
                }
            }
        }
    }

    #[test]
    fn zero_header_and_unknown_type() {
        assert_eq!(read_frame(&[0; 32], 0), Err(RecordError::ZeroFilled));
        let mut buf = one(RecordType::Entry, b"abc");
        buf[4] = 9;
        assert_eq!(read_frame(&buf, 0), Err(RecordError::UnknownType(9)));
    }

    #[test]
    fn garbage_length_is_bounded_before_anything_else() {
        let mut buf = one(RecordType::Entry, b"abc");
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            read_frame(&buf, 0),
            Err(RecordError::LengthOverLimit(u32::MAX as u64))
        );
    }

    #[test]
    fn oversize_payload_is_refused_and_output_untouched() {
        let mut out = vec![7u8; 3];
        let err = encode_with(&mut out, RecordType::Entry, |o| {
            o.resize(o.len() + RECORD_PAYLOAD_BYTES_MAX + 1, 0);
            Ok::<(), ()>(())
        })
        .unwrap_err();
        assert!(matches!(err, EncodeError::TooLarge(n) if n == RECORD_PAYLOAD_BYTES_MAX + 1));
        assert_eq!(out, vec![7u8; 3]);
    }

    #[test]
    fn offset_past_end_is_short_header() {
        assert_eq!(
            read_frame(&[1, 2, 3], 10),
            Err(RecordError::ShortHeader { available: 0 })
        );
    }
}
