//! The `--write-out` formats (simple, json, fields, protobuf, table) of every response, as
//! etcdctl 3.4's printer_*.go print them.

use std::io::Write;

use etcd_api::authpb::Permission;
use etcd_api::etcdserverpb::{
    AlarmMember, AlarmResponse, DeleteRangeResponse, HashKvResponse, LeaseGrantResponse,
    LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse,
    Member, MemberAddResponse, MemberListResponse, MemberPromoteResponse, MemberRemoveResponse,
    MemberUpdateResponse, PutResponse, RangeResponse, ResponseHeader, ResponseOp, StatusResponse,
    TxnResponse, WatchResponse, response_op,
};
use etcd_api::mvccpb::{Event, KeyValue};
use prost::Message;

use crate::exit::{self, EXIT_BAD_FEATURE};
use crate::gofmt::{self, quote, quote_bytes};
use crate::json::Obj;
use crate::table;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Protobuf,
    Table,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "fields" => Format::Fields,
            "protobuf" => Format::Protobuf,
            "table" => Format::Table,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Protobuf => "protobuf",
            Format::Table => "table",
        }
    }
}

/// The result of `endpoint health` for one endpoint.
#[derive(Clone, Debug)]
pub struct EpHealth {
    pub ep: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

pub struct EpStatus {
    pub ep: String,
    pub resp: StatusResponse,
}

pub struct EpHashKv {
    pub ep: String,
    pub resp: HashKvResponse,
}

/// What `snapshot status` reports about a db file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_key: i64,
    pub total_size: i64,
}

pub struct Printer {
    pub format: Format,
    pub hex: bool,
    pub value_only: bool,
}

fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

fn out_bytes(b: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(b);
    let _ = o.flush();
}

fn hex_prefixed(b: &[u8]) -> String {
    b.iter().map(|x| format!("\\x{x:02x}")).collect()
}

// ----- JSON pieces (Go struct field order and tags) -----

fn j_header(h: &ResponseHeader) -> String {
    j_header_obj(h).done()
}

fn j_header_obj(h: &ResponseHeader) -> Obj {
    Obj::new()
        .u64("cluster_id", h.cluster_id, true)
        .u64("member_id", h.member_id, true)
        .i64("revision", h.revision, true)
        .u64("raft_term", h.raft_term, true)
}

fn j_hdr(h: &Option<ResponseHeader>) -> Option<String> {
    h.as_ref().map(j_header)
}

fn j_kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key, true)
        .i64("create_revision", kv.create_revision, true)
        .i64("mod_revision", kv.mod_revision, true)
        .i64("version", kv.version, true)
        .bytes("value", &kv.value, true)
        .i64("lease", kv.lease, true)
        .done()
}

fn j_kvs(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(j_kv).collect()
}

fn j_range(r: &RangeResponse) -> String {
    Obj::new()
        .raw_opt("header", j_hdr(&r.header))
        .list("kvs", j_kvs(&r.kvs), true, true)
        .bool("more", r.more, true)
        .i64("count", r.count, true)
        .done()
}

fn j_put(r: &PutResponse) -> String {
    Obj::new()
        .raw_opt("header", j_hdr(&r.header))
        .raw_opt("prev_kv", r.prev_kv.as_ref().map(j_kv))
        .done()
}

fn j_del(r: &DeleteRangeResponse) -> String {
    Obj::new()
        .raw_opt("header", j_hdr(&r.header))
        .i64("deleted", r.deleted, true)
        .list("prev_kvs", j_kvs(&r.prev_kvs), true, true)
        .done()
}

fn j_txn(r: &TxnResponse) -> String {
    let ops: Vec<String> = r.responses.iter().map(j_op).collect();
    Obj::new()
        .raw_opt("header", j_hdr(&r.header))
        .bool("succeeded", r.succeeded, true)
        .list("responses", ops, true, true)
        .done()
}

fn j_op(op: &ResponseOp) -> String {
    let inner = match &op.response {
        Some(response_op::Response::ResponseRange(r)) => {
            Some(Obj::new().raw("ResponseRange", &j_range(r)).done())
        }
        Some(response_op::Response::ResponsePut(r)) => {
            Some(Obj::new().raw("ResponsePut", &j_put(r)).done())
        }
        Some(response_op::Response::ResponseDeleteRange(r)) => {
            Some(Obj::new().raw("ResponseDeleteRange", &j_del(r)).done())
        }
        Some(response_op::Response::ResponseTxn(r)) => {
            Some(Obj::new().raw("ResponseTxn", &j_txn(r)).done())
        }
        None => None,
    };
    Obj::new()
        .raw("Response", &inner.unwrap_or_else(|| "null".to_string()))
        .done()
}

fn j_event(e: &Event) -> String {
    Obj::new()
        .i64("type", i64::from(e.r#type), true)
        .raw_opt("kv", e.kv.as_ref().map(j_kv))
        .raw_opt("prev_kv", e.prev_kv.as_ref().map(j_kv))
        .done()
}

fn j_member(m: &Member) -> String {
    Obj::new()
        .u64("ID", m.id, true)
        .str("name", &m.name, true)
        .strs("peerURLs", &m.peer_ur_ls, true)
        .strs("clientURLs", &m.client_ur_ls, true)
        .bool("isLearner", m.is_learner, true)
        .done()
}

fn j_members(ms: &[Member]) -> Vec<String> {
    ms.iter().map(j_member).collect()
}

fn j_status(r: &StatusResponse) -> String {
    Obj::new()
        .raw_opt("header", j_hdr(&r.header))
        .str("version", &r.version, true)
        .i64("dbSize", r.db_size, true)
        .u64("leader", r.leader, true)
        .u64("raftIndex", r.raft_index, true)
        .u64("raftTerm", r.raft_term, true)
        .u64("raftAppliedIndex", r.raft_applied_index, true)
        .strs("errors", &r.errors, true)
        .i64("dbSizeInUse", r.db_size_in_use, true)
        .bool("isLearner", r.is_learner, true)
        .done()
}

fn j_header_only(h: &Option<ResponseHeader>) -> String {
    Obj::new().raw_opt("header", j_hdr(h)).done()
}

/// Go's embedded `*pb.ResponseHeader`: its fields promoted into the outer object.
fn promoted(h: &Option<ResponseHeader>) -> Obj {
    match h {
        Some(h) => j_header_obj(h),
        None => Obj::new(),
    }
}

fn alarm_name(a: i32) -> &'static str {
    match a {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}

fn perm_name(p: i32) -> &'static str {
    match p {
        1 => "WRITE",
        2 => "READWRITE",
        _ => "READ",
    }
}

fn event_name(t: i32) -> &'static str {
    if t == 1 { "DELETE" } else { "PUT" }
}

// ----- tables shared by simple and table -----

fn member_rows(ms: &[Member]) -> Vec<Vec<String>> {
    ms.iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}
const MEMBER_HDR: [&str; 6] = [
    "ID",
    "Status",
    "Name",
    "Peer Addrs",
    "Client Addrs",
    "Is Learner",
];

fn health_rows(hs: &[EpHealth]) -> Vec<Vec<String>> {
    hs.iter()
        .map(|h| {
            vec![
                h.ep.clone(),
                h.health.to_string(),
                h.took.clone(),
                h.error.clone(),
            ]
        })
        .collect()
}
const HEALTH_HDR: [&str; 4] = ["endpoint", "health", "took", "error"];

fn status_rows(ss: &[EpStatus]) -> Vec<Vec<String>> {
    ss.iter()
        .map(|s| {
            let r = &s.resp;
            let member_id = r.header.as_ref().map(|h| h.member_id).unwrap_or(0);
            vec![
                s.ep.clone(),
                format!("{member_id:x}"),
                r.version.clone(),
                gofmt::humanize_bytes(r.db_size.max(0) as u64),
                (r.leader == member_id).to_string(),
                r.is_learner.to_string(),
                r.raft_term.to_string(),
                r.raft_index.to_string(),
                r.raft_applied_index.to_string(),
                r.errors.join(", "),
            ]
        })
        .collect()
}
const STATUS_HDR: [&str; 10] = [
    "endpoint",
    "ID",
    "version",
    "db size",
    "is leader",
    "is learner",
    "raft term",
    "raft index",
    "raft applied index",
    "errors",
];

fn hash_rows(hs: &[EpHashKv]) -> Vec<Vec<String>> {
    hs.iter()
        .map(|h| vec![h.ep.clone(), h.resp.hash.to_string()])
        .collect()
}
const HASH_HDR: [&str; 2] = ["endpoint", "hash"];

fn db_rows(d: &DbStatus) -> Vec<Vec<String>> {
    vec![vec![
        format!("{:x}", d.hash),
        d.revision.to_string(),
        d.total_key.to_string(),
        gofmt::humanize_bytes(d.total_size.max(0) as u64),
    ]]
}
const DB_HDR: [&str; 4] = ["hash", "revision", "total keys", "total size"];

fn simple_rows(rows: Vec<Vec<String>>) {
    let mut s = String::new();
    for r in rows {
        s.push_str(&r.join(", "));
        s.push('\n');
    }
    out(&s);
}

// ----- fields pieces -----

fn f_hdr(h: &Option<ResponseHeader>) -> String {
    let d = ResponseHeader::default();
    let h = h.as_ref().unwrap_or(&d);
    format!(
        "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : {}\n\"RaftTerm\" : {}\n",
        h.cluster_id, h.member_id, h.revision, h.raft_term
    )
}

fn f_kv(pfx: &str, kv: &KeyValue) -> String {
    format!(
        "\"{pfx}Key\" : {}\n\"{pfx}CreateRevision\" : {}\n\"{pfx}ModRevision\" : {}\n\"{pfx}Version\" : {}\n\"{pfx}Value\" : {}\n\"{pfx}Lease\" : {}\n",
        quote_bytes(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        quote_bytes(&kv.value),
        kv.lease
    )
}

fn f_range(r: &RangeResponse) -> String {
    let mut s = f_hdr(&r.header);
    for kv in &r.kvs {
        s.push_str(&f_kv("", kv));
    }
    s.push_str(&format!("\"More\" : {}\n\"Count\" : {}\n", r.more, r.count));
    s
}

fn f_put(r: &PutResponse) -> String {
    let mut s = f_hdr(&r.header);
    if let Some(kv) = &r.prev_kv {
        s.push_str(&f_kv("Prev", kv));
    }
    s
}

fn f_del(r: &DeleteRangeResponse) -> String {
    let mut s = f_hdr(&r.header);
    s.push_str(&format!("\"Deleted\" : {}\n", r.deleted));
    for kv in &r.prev_kvs {
        s.push_str(&f_kv("Prev", kv));
    }
    s
}

fn f_txn(r: &TxnResponse) -> String {
    let mut s = f_hdr(&r.header);
    s.push_str(&format!("\"Succeeded\" : {}\n", r.succeeded));
    for op in &r.responses {
        match &op.response {
            Some(response_op::Response::ResponseRange(x)) => s.push_str(&f_range(x)),
            Some(response_op::Response::ResponsePut(x)) => s.push_str(&f_put(x)),
            Some(response_op::Response::ResponseDeleteRange(x)) => s.push_str(&f_del(x)),
            other => s.push_str(&format!("\"Unknown\" : {}\n", quote(&format!("{other:?}")))),
        }
    }
    s
}

impl Printer {
    pub fn new(format: Format, hex: bool) -> Printer {
        Printer {
            format,
            hex,
            value_only: false,
        }
    }

    fn unsupported(&self) -> ! {
        exit::fail(
            EXIT_BAD_FEATURE,
            &format!("{} not supported as output format", self.format.name()),
        )
    }

    fn pb<M: Message>(&self, m: &M) {
        out_bytes(&m.encode_to_vec());
    }

    fn kv_simple(&self, kv: &KeyValue) -> String {
        let (k, v) = if self.hex {
            (hex_prefixed(&kv.key), hex_prefixed(&kv.value))
        } else {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        };
        let mut s = String::new();
        if !self.value_only {
            s.push_str(&k);
            s.push('\n');
        }
        s.push_str(&v);
        s.push('\n');
        s
    }

    fn kv_simple_raw(&self, kv: &KeyValue) -> Vec<u8> {
        // Keys and values are printed as raw bytes, not re-encoded.
        if self.hex {
            return self.kv_simple(kv).into_bytes();
        }
        let mut s = Vec::new();
        if !self.value_only {
            s.extend_from_slice(&kv.key);
            s.push(b'\n');
        }
        s.extend_from_slice(&kv.value);
        s.push(b'\n');
        s
    }

    fn simple_get_bytes(&self, r: &RangeResponse) -> Vec<u8> {
        let mut s = Vec::new();
        for kv in &r.kvs {
            s.extend(self.kv_simple_raw(kv));
        }
        s
    }
    fn simple_put_bytes(&self, r: &PutResponse) -> Vec<u8> {
        let mut s = b"OK\n".to_vec();
        if let Some(kv) = &r.prev_kv {
            s.extend(self.kv_simple_raw(kv));
        }
        s
    }
    fn simple_del_bytes(&self, r: &DeleteRangeResponse) -> Vec<u8> {
        let mut s = format!("{}\n", r.deleted).into_bytes();
        for kv in &r.prev_kvs {
            s.extend(self.kv_simple_raw(kv));
        }
        s
    }

    pub fn get(&self, r: &RangeResponse) {
        match self.format {
            Format::Simple => out_bytes(&self.simple_get_bytes(r)),
            Format::Json => out(&(j_range(r) + "\n")),
            Format::Fields => out(&f_range(r)),
            Format::Protobuf => self.pb(r),
            Format::Table => self.unsupported(),
        }
    }

    pub fn put(&self, r: &PutResponse) {
        match self.format {
            Format::Simple => out_bytes(&self.simple_put_bytes(r)),
            Format::Json => out(&(j_put(r) + "\n")),
            Format::Fields => out(&f_put(r)),
            Format::Protobuf => self.pb(r),
            Format::Table => self.unsupported(),
        }
    }

    pub fn del(&self, r: &DeleteRangeResponse) {
        match self.format {
            Format::Simple => out_bytes(&self.simple_del_bytes(r)),
            Format::Json => out(&(j_del(r) + "\n")),
            Format::Fields => out(&f_del(r)),
            Format::Protobuf => self.pb(r),
            Format::Table => self.unsupported(),
        }
    }

    pub fn txn(&self, r: &TxnResponse) {
        match self.format {
            Format::Simple => {
                let mut s = if r.succeeded {
                    b"SUCCESS\n".to_vec()
                } else {
                    b"FAILURE\n".to_vec()
                };
                for op in &r.responses {
                    s.push(b'\n');
                    match &op.response {
                        Some(response_op::Response::ResponseRange(x)) => {
                            s.extend(self.simple_get_bytes(x))
                        }
                        Some(response_op::Response::ResponsePut(x)) => {
                            s.extend(self.simple_put_bytes(x))
                        }
                        Some(response_op::Response::ResponseDeleteRange(x)) => {
                            s.extend(self.simple_del_bytes(x))
                        }
                        other => s.extend(format!("unexpected response {other:?}\n").into_bytes()),
                    }
                }
                out_bytes(&s);
            }
            Format::Json => out(&(j_txn(r) + "\n")),
            Format::Fields => out(&f_txn(r)),
            Format::Protobuf => self.pb(r),
            Format::Table => self.unsupported(),
        }
    }

    pub fn watch(&self, r: &WatchResponse) {
        match self.format {
            Format::Simple => {
                let mut s = Vec::new();
                for e in &r.events {
                    s.extend(format!("{}\n", event_name(e.r#type)).into_bytes());
                    if let Some(p) = &e.prev_kv {
                        s.extend(self.kv_simple_raw(p));
                    }
                    s.extend(self.kv_simple_raw(&e.kv.clone().unwrap_or_default()));
                }
                out_bytes(&s);
            }
            Format::Json => {
                let d = ResponseHeader::default();
                let events: Vec<String> = r.events.iter().map(j_event).collect();
                let o = Obj::new()
                    .raw("Header", &j_header(r.header.as_ref().unwrap_or(&d)))
                    .list("Events", events, false, true)
                    .i64("CompactRevision", r.compact_revision, false)
                    .bool("Canceled", r.canceled, false)
                    .bool("Created", r.created, false)
                    .done();
                out(&(o + "\n"));
            }
            Format::Fields => {
                let mut s = f_hdr(&r.header);
                for e in &r.events {
                    s.push_str(&format!("\"Type\" : {}\n", event_name(e.r#type)));
                    if let Some(p) = &e.prev_kv {
                        s.push_str(&f_kv("Prev", p));
                    }
                    s.push_str(&f_kv("", &e.kv.clone().unwrap_or_default()));
                }
                out(&s);
            }
            Format::Protobuf => {
                let w = WatchResponse {
                    header: Some(r.header.unwrap_or_default()),
                    events: r.events.clone(),
                    compact_revision: r.compact_revision,
                    canceled: r.canceled,
                    created: r.created,
                    ..Default::default()
                };
                self.pb(&w)
            }
            Format::Table => self.unsupported(),
        }
    }

    fn pb_unsupported(&self, ty: &str) -> ! {
        exit::fail(
            EXIT_BAD_FEATURE,
            &format!("marshal unsupported for type {ty}"),
        )
    }

    pub fn grant(&self, r: &LeaseGrantResponse) {
        match self.format {
            Format::Simple => out(&format!(
                "lease {:016x} granted with TTL({}s)\n",
                r.id, r.ttl
            )),
            Format::Json => {
                let o = promoted(&r.header)
                    .i64("ID", r.id, false)
                    .i64("TTL", r.ttl, false)
                    .str("Error", &r.error, false)
                    .done();
                out(&(o + "\n"));
            }
            Format::Fields => out(&format!(
                "{}\"ID\" : {}\n\"TTL\" : {}\n",
                f_hdr(&r.header),
                r.id,
                r.ttl
            )),
            Format::Protobuf => self.pb(&r.header.unwrap_or_default()),
            Format::Table => self.unsupported(),
        }
    }

    pub fn revoke(&self, id: i64, r: &LeaseRevokeResponse) {
        match self.format {
            Format::Simple => out(&format!("lease {id:016x} revoked\n")),
            Format::Json => out(&(j_header_only(&r.header) + "\n")),
            Format::Fields => out(&f_hdr(&r.header)),
            Format::Protobuf => {
                let h = r.header.unwrap_or_default();
                let mut t = String::new();
                for (k, v) in [
                    ("cluster_id", h.cluster_id),
                    ("member_id", h.member_id),
                    ("revision", h.revision as u64),
                    ("raft_term", h.raft_term),
                ] {
                    if v != 0 {
                        t.push_str(&format!("{k}:{v} "));
                    }
                }
                self.pb_unsupported(&format!("clientv3.LeaseRevokeResponse ({{{t}}})"))
            }
            Format::Table => self.unsupported(),
        }
    }

    pub fn keep_alive(&self, r: &LeaseKeepAliveResponse) {
        match self.format {
            Format::Simple => out(&format!(
                "lease {:016x} keepalived with TTL({})\n",
                r.id, r.ttl
            )),
            Format::Json => {
                let o = promoted(&r.header)
                    .i64("ID", r.id, false)
                    .i64("TTL", r.ttl, false)
                    .done();
                out(&(o + "\n"));
            }
            Format::Fields => out(&format!(
                "{}\"ID\" : {}\n\"TTL\" : {}\n",
                f_hdr(&r.header),
                r.id,
                r.ttl
            )),
            Format::Protobuf => self.pb(&r.header.unwrap_or_default()),
            Format::Table => self.unsupported(),
        }
    }

    pub fn time_to_live(&self, r: &LeaseTimeToLiveResponse, keys: bool) {
        match self.format {
            Format::Simple => {
                if r.granted_ttl == 0 && r.ttl == -1 {
                    out(&format!("lease {:016x} already expired\n", r.id));
                    return;
                }
                let mut txt = format!(
                    "lease {:016x} granted with TTL({}s), remaining({}s)",
                    r.id, r.granted_ttl, r.ttl
                );
                if keys {
                    let ks: Vec<String> = r
                        .keys
                        .iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    txt.push_str(&format!(", attached keys([{}])", ks.join(" ")));
                }
                out(&(txt + "\n"));
            }
            Format::Json => {
                let keys: Vec<String> = r
                    .keys
                    .iter()
                    .map(|k| format!("\"{}\"", gofmt::base64(k)))
                    .collect();
                let o = promoted(&r.header)
                    .i64("id", r.id, false)
                    .i64("ttl", r.ttl, false)
                    .i64("granted-ttl", r.granted_ttl, false)
                    .list("keys", keys, false, true)
                    .done();
                out(&(o + "\n"));
            }
            Format::Fields => {
                let mut s = format!(
                    "{}\"ID\" : {}\n\"TTL\" : {}\n\"GrantedTTL\" : {}\n",
                    f_hdr(&r.header),
                    r.id,
                    r.ttl,
                    r.granted_ttl
                );
                for k in &r.keys {
                    s.push_str(&format!("\"Key\" : {}\n", quote_bytes(k)));
                }
                out(&s);
            }
            Format::Protobuf => self.pb(&r.header.unwrap_or_default()),
            Format::Table => self.unsupported(),
        }
    }

    pub fn leases(&self, r: &LeaseLeasesResponse) {
        match self.format {
            Format::Simple => {
                let mut s = format!("found {} leases\n", r.leases.len());
                for l in &r.leases {
                    s.push_str(&format!("{:016x}\n", l.id));
                }
                out(&s);
            }
            Format::Json => {
                let ls: Vec<String> = r
                    .leases
                    .iter()
                    .map(|l| Obj::new().i64("id", l.id, false).done())
                    .collect();
                out(&(promoted(&r.header).list("leases", ls, false, false).done() + "\n"));
            }
            Format::Fields => {
                let mut s = f_hdr(&r.header);
                for l in &r.leases {
                    s.push_str(&format!("\"ID\" : {}\n", l.id));
                }
                out(&s);
            }
            Format::Protobuf => self.pb(&r.header.unwrap_or_default()),
            Format::Table => self.unsupported(),
        }
    }

    pub fn member_add(&self, r: &MemberAddResponse) {
        match self.format {
            Format::Simple => out(&format!(
                "Member {:>16x} added to cluster {:>16x}\n",
                r.member.as_ref().map(|m| m.id).unwrap_or(0),
                r.header.as_ref().map(|h| h.cluster_id).unwrap_or(0)
            )),
            Format::Json => {
                let o = Obj::new()
                    .raw_opt("header", j_hdr(&r.header))
                    .raw_opt("member", r.member.as_ref().map(j_member))
                    .list("members", j_members(&r.members), true, true)
                    .done();
                out(&(o + "\n"));
            }
            Format::Fields => self.unsupported(),
            Format::Protobuf => self.pb(r),
            Format::Table => self.unsupported(),
        }
    }

    fn members_only(&self, header: &Option<ResponseHeader>, members: &[Member]) -> String {
        Obj::new()
            .raw_opt("header", j_hdr(header))
            .list("members", j_members(members), true, true)
            .done()
            + "\n"
    }

    pub fn member_remove(&self, id: u64, r: &MemberRemoveResponse) {
        match self.format {
            Format::Simple => out(&format!(
                "Member {id:>16x} removed from cluster {:>16x}\n",
                r.header.as_ref().map(|h| h.cluster_id).unwrap_or(0)
            )),
            Format::Json => out(&self.members_only(&r.header, &r.members)),
            Format::Protobuf => self.pb(r),
            _ => self.unsupported(),
        }
    }

    pub fn member_update(&self, id: u64, r: &MemberUpdateResponse) {
        match self.format {
            Format::Simple => out(&format!(
                "Member {id:>16x} updated in cluster {:>16x}\n",
                r.header.as_ref().map(|h| h.cluster_id).unwrap_or(0)
            )),
            Format::Json => out(&self.members_only(&r.header, &r.members)),
            Format::Protobuf => self.pb(r),
            _ => self.unsupported(),
        }
    }

    pub fn member_promote(&self, id: u64, r: &MemberPromoteResponse) {
        match self.format {
            Format::Simple => out(&format!(
                "Member {id:>16x} promoted in cluster {:>16x}\n",
                r.header.as_ref().map(|h| h.cluster_id).unwrap_or(0)
            )),
            // etcdctl 3.4's other printers have no MemberPromote of their own.
            Format::Json | Format::Protobuf | Format::Fields | Format::Table => self.unsupported(),
        }
    }

    pub fn member_list(&self, r: &MemberListResponse) {
        match self.format {
            Format::Simple => simple_rows(member_rows(&r.members)),
            Format::Json => out(&self.members_only(&r.header, &r.members)),
            Format::Fields => {
                let mut s = f_hdr(&r.header);
                for m in &r.members {
                    s.push_str(&format!(
                        "\"ID\" : {}\n\"Name\" : {}\n",
                        m.id,
                        quote(&m.name)
                    ));
                    for u in &m.peer_ur_ls {
                        s.push_str(&format!("\"PeerURL\" : {}\n", quote(u)));
                    }
                    for u in &m.client_ur_ls {
                        s.push_str(&format!("\"ClientURL\" : {}\n", quote(u)));
                    }
                    s.push_str(&format!("\"IsLearner\" : {}\n\n", m.is_learner));
                }
                out(&s);
            }
            Format::Protobuf => self.pb(r),
            Format::Table => out(&table::render(&MEMBER_HDR, &member_rows(&r.members))),
        }
    }

    pub fn endpoint_health(&self, hs: &[EpHealth]) {
        match self.format {
            Format::Simple => {
                let mut s = String::new();
                for h in hs {
                    if h.error.is_empty() {
                        s.push_str(&format!(
                            "{} is healthy: successfully committed proposal: took = {}\n",
                            h.ep, h.took
                        ));
                    } else {
                        s.push_str(&format!(
                            "{} is unhealthy: failed to commit proposal: {}\n",
                            h.ep, h.error
                        ));
                    }
                }
                eprint!("{s}");
            }
            Format::Json => {
                let items: Vec<String> = hs
                    .iter()
                    .map(|h| {
                        Obj::new()
                            .str("endpoint", &h.ep, false)
                            .bool("health", h.health, false)
                            .str("took", &h.took, false)
                            .str("error", &h.error, true)
                            .done()
                    })
                    .collect();
                out(&format!("[{}]\n", items.join(",")));
            }
            Format::Fields => {
                let mut s = String::new();
                for h in hs {
                    s.push_str(&format!(
                        "\"Endpoint\" : {}\n\"Health\" : {}\n\"Took\" : {}\n\"Error\" : {}\n\n",
                        quote(&h.ep),
                        h.health,
                        h.took,
                        h.error
                    ));
                }
                out(&s);
            }
            Format::Table => out(&table::render(&HEALTH_HDR, &health_rows(hs))),
            Format::Protobuf => self.unsupported(),
        }
    }

    pub fn endpoint_status(&self, ss: &[EpStatus]) {
        match self.format {
            Format::Simple => simple_rows(status_rows(ss)),
            Format::Json => {
                let items: Vec<String> = ss
                    .iter()
                    .map(|s| {
                        Obj::new()
                            .str("Endpoint", &s.ep, false)
                            .raw("Status", &j_status(&s.resp))
                            .done()
                    })
                    .collect();
                out(&format!("[{}]\n", items.join(",")));
            }
            Format::Fields => {
                let mut o = String::new();
                for s in ss {
                    let r = &s.resp;
                    o.push_str(&f_hdr(&r.header));
                    o.push_str(&format!(
                        "\"Version\" : {}\n\"DBSize\" : {}\n\"Leader\" : {}\n\"IsLearner\" : {}\n\"RaftIndex\" : {}\n\"RaftTerm\" : {}\n\"RaftAppliedIndex\" : {}\n\"Errors\" : [{}]\n\"Endpoint\" : {}\n\n",
                        quote(&r.version),
                        r.db_size,
                        r.leader,
                        r.is_learner,
                        r.raft_index,
                        r.raft_term,
                        r.raft_applied_index,
                        r.errors.join(" "),
                        quote(&s.ep)
                    ));
                }
                out(&o);
            }
            Format::Table => out(&table::render(&STATUS_HDR, &status_rows(ss))),
            Format::Protobuf => self.unsupported(),
        }
    }

    pub fn endpoint_hashkv(&self, hs: &[EpHashKv]) {
        match self.format {
            Format::Simple => simple_rows(hash_rows(hs)),
            Format::Json => {
                let items: Vec<String> = hs
                    .iter()
                    .map(|h| {
                        let inner = Obj::new()
                            .raw_opt("header", j_hdr(&h.resp.header))
                            .u64("hash", u64::from(h.resp.hash), true)
                            .i64("compact_revision", h.resp.compact_revision, true)
                            .done();
                        Obj::new()
                            .str("Endpoint", &h.ep, false)
                            .raw("HashKV", &inner)
                            .done()
                    })
                    .collect();
                out(&format!("[{}]\n", items.join(",")));
            }
            Format::Fields => {
                let mut o = String::new();
                for h in hs {
                    o.push_str(&f_hdr(&h.resp.header));
                    o.push_str(&format!(
                        "\"Endpoint\" : {}\n\"Hash\" : {}\n\n",
                        quote(&h.ep),
                        h.resp.hash
                    ));
                }
                out(&o);
            }
            Format::Table => out(&table::render(&HASH_HDR, &hash_rows(hs))),
            Format::Protobuf => self.unsupported(),
        }
    }

    pub fn move_leader(
        &self,
        leader: u64,
        target: u64,
        r: &etcd_api::etcdserverpb::MoveLeaderResponse,
    ) {
        match self.format {
            Format::Simple => out(&format!(
                "Leadership transferred from {leader:x} to {target:x}\n"
            )),
            Format::Json => out(&(j_header_only(&r.header) + "\n")),
            Format::Protobuf => self.pb(r),
            _ => self.unsupported(),
        }
    }

    pub fn alarm(&self, r: &AlarmResponse) {
        match self.format {
            Format::Simple => {
                let mut s = String::new();
                for a in &r.alarms {
                    s.push_str(&alarm_text(a));
                    s.push('\n');
                }
                out(&s);
            }
            Format::Json => {
                let items: Vec<String> = r
                    .alarms
                    .iter()
                    .map(|a| {
                        Obj::new()
                            .u64("memberID", a.member_id, true)
                            .i64("alarm", i64::from(a.alarm), true)
                            .done()
                    })
                    .collect();
                out(&(Obj::new()
                    .raw_opt("header", j_hdr(&r.header))
                    .list("alarms", items, true, true)
                    .done()
                    + "\n"));
            }
            Format::Fields if r.header.is_none() => {
                // etcdctl 3.4 dereferences the missing header.
                eprintln!(
                    "panic: runtime error: invalid memory address or nil pointer dereference"
                );
                exit::exit(2)
            }
            Format::Fields => {
                let mut s = f_hdr(&r.header);
                for a in &r.alarms {
                    s.push_str(&format!(
                        "\"MemberID\" : {}\n\"AlarmType\" : {}\n\n",
                        a.member_id,
                        alarm_name(a.alarm)
                    ));
                }
                out(&s);
            }
            Format::Protobuf => self.pb(r),
            Format::Table => self.unsupported(),
        }
    }

    pub fn db_status(&self, d: &DbStatus) {
        match self.format {
            Format::Simple => simple_rows(db_rows(d)),
            Format::Json => out(&format!(
                "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
                d.hash, d.revision, d.total_key, d.total_size
            )),
            Format::Fields => out(&format!(
                "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
                d.hash, d.revision, d.total_key, d.total_size
            )),
            Format::Table => out(&table::render(&DB_HDR, &db_rows(d))),
            Format::Protobuf => self.unsupported(),
        }
    }

    /// Responses that carry only a header (auth changes): `simple` prints `text`.
    pub fn header_only<M: Message>(
        &self,
        text: &str,
        header: &Option<ResponseHeader>,
        m: &M,
        fields_ok: bool,
    ) {
        match self.format {
            Format::Simple => out(text),
            Format::Json => out(&(j_header_only(header) + "\n")),
            Format::Fields if fields_ok => out(&f_hdr(header)),
            Format::Protobuf => self.pb(m),
            _ => self.unsupported(),
        }
    }

    pub fn role_get(
        &self,
        role: &str,
        header: &Option<ResponseHeader>,
        perms: &[Permission],
        m: &impl Message,
    ) {
        match self.format {
            Format::Simple => out(&role_get_simple(role, perms)),
            Format::Json => {
                let items: Vec<String> = perms
                    .iter()
                    .map(|p| {
                        Obj::new()
                            .i64("permType", i64::from(p.perm_type), true)
                            .bytes("key", &p.key, true)
                            .bytes("range_end", &p.range_end, true)
                            .done()
                    })
                    .collect();
                out(&(Obj::new()
                    .raw_opt("header", j_hdr(header))
                    .list("perm", items, true, true)
                    .done()
                    + "\n"));
            }
            Format::Fields => {
                let mut s = f_hdr(header);
                for p in perms {
                    s.push_str(&format!(
                        "\"PermType\" :  {}\n\"Key\" : {}\n\"RangeEnd\" : {}\n",
                        perm_name(p.perm_type),
                        quote_bytes(&p.key),
                        quote_bytes(&p.range_end)
                    ));
                }
                out(&s);
            }
            Format::Protobuf => self.pb(m),
            Format::Table => self.unsupported(),
        }
    }

    /// Role and user lists: `simple` prints one name per line; `fields` only for roles.
    pub fn names(
        &self,
        key: &str,
        header: &Option<ResponseHeader>,
        names: &[String],
        m: &impl Message,
        fields_ok: bool,
    ) {
        match self.format {
            Format::Simple => {
                let mut s = String::new();
                for n in names {
                    s.push_str(n);
                    s.push('\n');
                }
                out(&s);
            }
            Format::Json => out(&(Obj::new()
                .raw_opt("header", j_hdr(header))
                .strs(key, names, true)
                .done()
                + "\n")),
            Format::Fields if fields_ok => {
                let mut s = f_hdr(header);
                s.push_str("\"Roles\" :");
                for n in names {
                    s.push(' ');
                    s.push_str(&quote(n));
                }
                s.push('\n');
                out(&s);
            }
            Format::Protobuf => self.pb(m),
            _ => self.unsupported(),
        }
    }

    pub fn user_get(
        &self,
        name: &str,
        header: &Option<ResponseHeader>,
        roles: &[String],
        m: &impl Message,
    ) {
        match self.format {
            Format::Simple => {
                let mut s = format!("User: {name}\nRoles:");
                for r in roles {
                    s.push(' ');
                    s.push_str(r);
                }
                s.push('\n');
                out(&s);
            }
            Format::Json => out(&(Obj::new()
                .raw_opt("header", j_hdr(header))
                .strs("roles", roles, true)
                .done()
                + "\n")),
            Format::Protobuf => self.pb(m),
            _ => self.unsupported(),
        }
    }
}

/// `%+v` of an `*AlarmMember`: gogo's compact text form.
fn alarm_text(a: &AlarmMember) -> String {
    let mut s = String::new();
    if a.member_id != 0 {
        s.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        s.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
    }
    s
}

pub fn role_get_simple(role: &str, perms: &[Permission]) -> String {
    let mut s = format!("Role {role}\nKV Read:\n");
    let range = |p: &Permission| -> String {
        let key = String::from_utf8_lossy(&p.key).into_owned();
        let end = String::from_utf8_lossy(&p.range_end).into_owned();
        let mut t = if p.range_end != b"\0" {
            format!("\t[{key}, {end})")
        } else {
            format!("\t[{key}, <open ended>")
        };
        if etcd_client::prefix_end(&p.key) == p.range_end {
            t.push_str(&format!(" (prefix {key})"));
        }
        t.push('\n');
        t
    };
    for p in perms {
        if p.perm_type == 0 || p.perm_type == 2 {
            if p.range_end.is_empty() {
                s.push_str(&format!("\t{}\n", String::from_utf8_lossy(&p.key)));
            } else {
                s.push_str(&range(p));
            }
        }
    }
    s.push_str("KV Write:\n");
    for p in perms {
        if p.perm_type == 1 || p.perm_type == 2 {
            if p.range_end.is_empty() {
                s.push_str(&format!("\t{}\n", String::from_utf8_lossy(&p.key)));
            } else {
                s.push_str(&range(p));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_range_matches_etcdctl() {
        let r = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 5,
                raft_term: 2,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 5,
                version: 3,
                value: b"bar2".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            j_range(&r),
            r#"{"header":{"cluster_id":1,"member_id":2,"revision":5,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":5,"version":3,"value":"YmFyMg=="}],"count":1}"#
        );
    }

    #[test]
    fn role_get_lists_ranges() {
        let perms = vec![Permission {
            perm_type: 2,
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
        }];
        assert_eq!(
            role_get_simple("r", &perms),
            "Role r\nKV Read:\n\t[a, b) (prefix a)\nKV Write:\n\t[a, b) (prefix a)\n"
        );
    }
}
