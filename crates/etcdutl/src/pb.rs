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
