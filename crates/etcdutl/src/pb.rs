//! Hand-written protobuf encoding of the few gogoproto (proto2) messages etcd keeps on disk:
//! raftpb entries, hard state and snapshots, walpb records, snappb snapshots. Proto2
//! non-nullable fields are always written, so these cannot be prost's proto3 defaults.

pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn new() -> Enc {
        Enc(Vec::new())
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    pub fn uint(&mut self, field: u32, v: u64) -> &mut Enc {
        self.varint(u64::from(field) << 3);
        self.varint(v);
        self
    }
    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Enc {
        self.varint((u64::from(field) << 3) | 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    pub fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl Default for Enc {
    fn default() -> Self {
        Enc::new()
    }
}

/// raftpb.Entry: Type=1, Term=2, Index=3, Data=4.
pub fn entry(entry_type: u64, term: u64, index: u64, data: Option<&[u8]>) -> Vec<u8> {
    let mut e = Enc::new();
    e.uint(1, entry_type).uint(2, term).uint(3, index);
    if let Some(d) = data {
        e.bytes(4, d);
    }
    e.done()
}

/// raftpb.ConfChange: ID=1, Type=2, NodeID=3, Context=4.
pub fn conf_change(cc_type: u64, node_id: u64, context: &[u8]) -> Vec<u8> {
    Enc::new()
        .uint(1, 0)
        .uint(2, cc_type)
        .uint(3, node_id)
        .bytes(4, context)
        .done()
}

/// raftpb.HardState: term=1, vote=2, commit=3.
pub fn hard_state(term: u64, vote: u64, commit: u64) -> Vec<u8> {
    Enc::new()
        .uint(1, term)
        .uint(2, vote)
        .uint(3, commit)
        .done()
}

/// raftpb.Snapshot with a ConfState of voters only.
pub fn raft_snapshot(data: &[u8], voters: &[u64], index: u64, term: u64) -> Vec<u8> {
    let mut cs = Enc::new();
    for v in voters {
        cs.uint(1, *v);
    }
    cs.uint(5, 0);
    let cs = cs.done();
    let meta = Enc::new().bytes(1, &cs).uint(2, index).uint(3, term).done();
    Enc::new().bytes(1, data).bytes(2, &meta).done()
}

/// walpb.Record: type=1, crc=2, data=3 (data only when present).
pub fn wal_record(rec_type: u64, crc: u32, data: Option<&[u8]>) -> Vec<u8> {
    let mut e = Enc::new();
    e.uint(1, rec_type).uint(2, u64::from(crc));
    if let Some(d) = data {
        e.bytes(3, d);
    }
    e.done()
}

/// walpb.Snapshot: index=1, term=2.
pub fn wal_snapshot(index: u64, term: u64) -> Vec<u8> {
    Enc::new().uint(1, index).uint(2, term).done()
}

/// etcdserverpb.Metadata: NodeID=1, ClusterID=2.
pub fn metadata(node_id: u64, cluster_id: u64) -> Vec<u8> {
    Enc::new().uint(1, node_id).uint(2, cluster_id).done()
}

/// snappb.Snapshot: crc=1, data=2.
pub fn snap_file(crc: u32, data: &[u8]) -> Vec<u8> {
    Enc::new().uint(1, u64::from(crc)).bytes(2, data).done()
}

// ---------------------------------------------------------------------------------------
// Decoding, as gogoproto's generated `Unmarshal` does it: a known field with the wrong wire
// type is an error, unknown fields are skipped (and kept where etcd keeps them, to be written
// back after the known ones), the last occurrence of a field wins.

/// Why bytes are not the message they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proto: {0}")]
pub struct DecodeError(pub String);

fn decode_error(s: impl Into<String>) -> DecodeError {
    DecodeError(s.into())
}

/// A field's value by wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// A group (wire types 3..4), skipped whole.
    Group,
    Fixed32(u32),
}

/// One field of a message: its number, value, and bytes (tag included).
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub raw: &'a [u8],
}

/// A varint of at most ten bytes (gogoproto's `ErrIntOverflow` past that).
fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or_else(|| decode_error("unexpected EOF"))?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(decode_error("integer overflow"))
}

/// Moves `pos` past `n` bytes, if there are that many.
fn advance(b: &[u8], pos: &mut usize, n: u64) -> Result<(), DecodeError> {
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| pos.checked_add(n))
        .filter(|end| *end <= b.len())
        .ok_or_else(|| decode_error("unexpected EOF"))?;
    *pos = end;
    Ok(())
}

/// Every field of a message, in order.
pub fn decode_fields(b: &[u8]) -> Result<Vec<Field<'_>>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let start = pos;
        let tag = read_varint(b, &mut pos)?;
        let number = (tag >> 3) as i32;
        let wire = tag & 7;
        if wire == 4 {
            return Err(decode_error("wiretype end group for non-group"));
        }
        if number <= 0 {
            return Err(decode_error(format!(
                "illegal tag {number} (wire type {wire})"
            )));
        }
        let value = match wire {
            0 => Value::Varint(read_varint(b, &mut pos)?),
            1 => {
                let at = pos;
                advance(b, &mut pos, 8)?;
                Value::Fixed64(u64::from_le_bytes(b[at..pos].try_into().unwrap_or([0; 8])))
            }
            2 => {
                let len = read_varint(b, &mut pos)?;
                if len > i64::MAX as u64 {
                    return Err(decode_error("negative length found during unmarshaling"));
                }
                let at = pos;
                advance(b, &mut pos, len)?;
                Value::Bytes(&b[at..pos])
            }
            3 => {
                skip_group(b, &mut pos)?;
                Value::Group
            }
            5 => {
                let at = pos;
                advance(b, &mut pos, 4)?;
                Value::Fixed32(u32::from_le_bytes(b[at..pos].try_into().unwrap_or([0; 4])))
            }
            _ => return Err(decode_error(format!("illegal wireType {wire}"))),
        };
        out.push(Field {
            number: number as u32,
            value,
            raw: &b[start..pos],
        });
    }
    Ok(out)
}

/// Skips a group's fields up to its end-group tag (nested groups included, iteratively).
fn skip_group(b: &[u8], pos: &mut usize) -> Result<(), DecodeError> {
    let mut depth = 1usize;
    while depth > 0 {
        let tag = read_varint(b, pos)?;
        match tag & 7 {
            0 => {
                read_varint(b, pos)?;
            }
            1 => advance(b, pos, 8)?,
            2 => {
                let len = read_varint(b, pos)?;
                advance(b, pos, len)?;
            }
            3 => depth += 1,
            4 => depth -= 1,
            5 => advance(b, pos, 4)?,
            wire => return Err(decode_error(format!("illegal wireType {wire}"))),
        }
    }
    Ok(())
}

fn wrong_wire(message: &str, field: u32) -> DecodeError {
    decode_error(format!("wrong wireType for field {field} of {message}"))
}

/// A message whose known fields are all varints (raftpb.HardState, walpb.Snapshot,
/// etcdserverpb.Metadata): their values by position in `known` (0 when absent), and the
/// unknown fields' bytes.
pub fn decode_varints(
    b: &[u8],
    message: &str,
    known: &[u32],
) -> Result<(Vec<u64>, Vec<u8>), DecodeError> {
    let mut values = vec![0u64; known.len()];
    let mut unknown = Vec::new();
    for f in decode_fields(b)? {
        match known.iter().position(|n| *n == f.number) {
            Some(i) => match f.value {
                Value::Varint(v) => values[i] = v,
                _ => return Err(wrong_wire(message, f.number)),
            },
            None => unknown.extend_from_slice(f.raw),
        }
    }
    Ok((values, unknown))
}

/// raftpb.Entry, as etcd reads and writes it back: its type is an int32 enum, its data is
/// written only when it was there (present but empty stays present), unknown fields follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub entry_type: i32,
    pub term: u64,
    pub index: u64,
    pub data: Option<Vec<u8>>,
    pub unknown: Vec<u8>,
}

/// raftpb.EntryConfChange.
pub const ENTRY_CONF_CHANGE: i32 = 1;

impl Entry {
    pub fn decode(b: &[u8]) -> Result<Entry, DecodeError> {
        let mut e = Entry::default();
        for f in decode_fields(b)? {
            match (f.number, f.value) {
                (1, Value::Varint(v)) => e.entry_type = v as i32,
                (2, Value::Varint(v)) => e.term = v,
                (3, Value::Varint(v)) => e.index = v,
                (4, Value::Bytes(d)) => e.data = Some(d.to_vec()),
                (1..=4, _) => return Err(wrong_wire("raftpb.Entry", f.number)),
                _ => e.unknown.extend_from_slice(f.raw),
            }
        }
        Ok(e)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = entry(
            i64::from(self.entry_type) as u64,
            self.term,
            self.index,
            self.data.as_deref(),
        );
        out.extend_from_slice(&self.unknown);
        out
    }
}

/// Checks that `b` is a raftpb.Snapshot (data, metadata with conf state, index and term) and
/// returns its (data, index, term).
pub fn decode_raft_snapshot(b: &[u8]) -> Result<(&[u8], u64, u64), DecodeError> {
    const WHAT: &str = "raftpb.Snapshot";
    let mut data: &[u8] = b"";
    let mut index_term = (0, 0);
    for f in decode_fields(b)? {
        match (f.number, f.value) {
            (1, Value::Bytes(d)) => data = d,
            (2, Value::Bytes(meta)) => index_term = snapshot_metadata(meta)?,
            (1 | 2, _) => return Err(wrong_wire(WHAT, f.number)),
            _ => {}
        }
    }
    Ok((data, index_term.0, index_term.1))
}

/// raftpb.SnapshotMetadata: conf_state=1, index=2, term=3.
fn snapshot_metadata(b: &[u8]) -> Result<(u64, u64), DecodeError> {
    const WHAT: &str = "raftpb.SnapshotMetadata";
    let (mut index, mut term) = (0, 0);
    for f in decode_fields(b)? {
        match (f.number, f.value) {
            (1, Value::Bytes(cs)) => conf_state(cs)?,
            (2, Value::Varint(v)) => index = v,
            (3, Value::Varint(v)) => term = v,
            (1..=3, _) => return Err(wrong_wire(WHAT, f.number)),
            _ => {}
        }
    }
    Ok((index, term))
}

/// raftpb.ConfState: four repeated uint64 (packed or not) and a bool.
fn conf_state(b: &[u8]) -> Result<(), DecodeError> {
    for f in decode_fields(b)? {
        match (f.number, f.value) {
            (1..=5, Value::Varint(_)) => {}
            (1..=4, Value::Bytes(packed)) => {
                let mut pos = 0;
                while pos < packed.len() {
                    read_varint(packed, &mut pos)?;
                }
            }
            (1..=5, _) => return Err(wrong_wire("raftpb.ConfState", f.number)),
            _ => {}
        }
    }
    Ok(())
}

/// What etcd's backup needs of a v2 etcdserverpb.Request (Method, Path), the whole message
/// checked field by field as gogoproto does. Strings are not checked for UTF-8 (gogoproto does
/// not, and v2 keys may be any bytes).
pub fn v2_request_method_path(b: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let (mut method, mut path): (&[u8], &[u8]) = (b"", b"");
    for f in decode_fields(b)? {
        match (f.number, f.value) {
            (2, Value::Bytes(v)) => method = v,
            (3, Value::Bytes(v)) => path = v,
            (4 | 6, Value::Bytes(_)) => {}
            (1 | 5 | 7..=17, Value::Varint(_)) => {}
            (1..=17, _) => return Err(wrong_wire("etcdserverpb.Request", f.number)),
            _ => {}
        }
    }
    Ok((method, path))
}
