//! What the key index needs of a stored record (its key, create revision and version), and the
//! lease it is attached to, read straight from the record's protobuf bytes.
//!
//! Rebuilding the index on open reads every record; decoding each into a `KeyValue` copies its
//! value only to drop it. For a million records that copy is most of the time the member takes
//! to open (bench/data-scale). This reads the few fields in place, skipping the rest as the
//! protobuf wire format allows, and refuses a record that is not a well-formed `KeyValue`.

use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::MvccError;

/// The key index's fields of one `mvccpb.KeyValue` record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct IndexFields<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

const KEY: u32 = 1;
const CREATE_REVISION: u32 = 2;
const VERSION: u32 = 4;
const LEASE: u32 = 6;

pub(crate) fn index_fields(record: &[u8]) -> Result<IndexFields<'_>, MvccError> {
    let corrupt =
        |what: &str| MvccError::Corrupt(format!("a stored record is not a KeyValue: {what}"));
    let mut fields = IndexFields {
        key: &[],
        create_revision: 0,
        version: 0,
        lease: 0,
    };
    let mut buf = record;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(|e| corrupt(&e.to_string()))?;
        match (tag, wire_type) {
            (KEY, WireType::LengthDelimited) => {
                let len = decode_varint(&mut buf).map_err(|e| corrupt(&e.to_string()))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|len| *len <= buf.len())
                    .ok_or_else(|| corrupt("a key longer than the record"))?;
                fields.key = &buf[..len];
                buf = &buf[len..];
            }
            (CREATE_REVISION, WireType::Varint) => {
                fields.create_revision =
                    decode_varint(&mut buf).map_err(|e| corrupt(&e.to_string()))? as i64;
            }
            (VERSION, WireType::Varint) => {
                fields.version =
                    decode_varint(&mut buf).map_err(|e| corrupt(&e.to_string()))? as i64;
            }
            (LEASE, WireType::Varint) => {
                fields.lease = decode_varint(&mut buf).map_err(|e| corrupt(&e.to_string()))? as i64;
            }
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())
                .map_err(|e| corrupt(&e.to_string()))?,
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::mvccpb::KeyValue;
    use prost::Message;

    fn check(kv: &KeyValue) {
        let bytes = kv.encode_to_vec();
        let fields = index_fields(&bytes).expect("a KeyValue");
        let full = KeyValue::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            (
                fields.key,
                fields.create_revision,
                fields.version,
                fields.lease
            ),
            (
                full.key.as_slice(),
                full.create_revision,
                full.version,
                full.lease
            )
        );
    }

    #[test]
    fn the_same_fields_as_a_full_decode() {
        check(&KeyValue::default());
        check(&KeyValue {
            key: b"/registry/pods/default/web-0".to_vec(),
            create_revision: 1_000_003,
            mod_revision: 2_000_000_000_000,
            version: 7,
            value: vec![0xab; 70_000],
            lease: -5,
        });
        for i in 0..2000u32 {
            check(&KeyValue {
                key: i.to_le_bytes().repeat((i % 7) as usize),
                create_revision: i64::from(i) * 31,
                mod_revision: i64::from(i) * 97,
                version: i64::from(i % 13),
                value: vec![i as u8; (i % 300) as usize],
                lease: i64::from(i) - 1000,
            });
        }
    }

    #[test]
    fn damaged_records_are_refused_or_read_without_panic() {
        let bytes = KeyValue {
            key: b"key".to_vec(),
            create_revision: 3,
            mod_revision: 4,
            version: 1,
            value: b"value".to_vec(),
            lease: 9,
        }
        .encode_to_vec();
        for cut in 0..bytes.len() {
            let _ = index_fields(&bytes[..cut]);
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                let _ = index_fields(&damaged);
            }
        }
        assert!(
            index_fields(&[0x0a, 0x05, b'k']).is_err(),
            "a key past the end"
        );
    }
}
