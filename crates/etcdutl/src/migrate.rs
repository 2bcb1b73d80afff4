//! `etcdctl migrate`: the v2 keys of an etcd 3.4 data dir (rebuilt from its snap file and
//! WAL, read as etcd reads them: `snap.rs`, `wal_read.rs`) copied into the v3 store, each key
//! at its v2 modified index as revision.
//!
//! The v2 store here is the part of etcd's that decides indexes: every successful write
//! (set, create, update, compare-and-swap, delete; member additions; member attributes; the
//! cluster version) takes the next index. TTLs are remembered, not enforced.

use std::collections::BTreeMap;
use std::path::Path;

use crate::pb::{self, Enc};
use crate::{snap, wal_read};
use etcd_bbolt::{Bucket, Db};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Bolt(#[from] etcd_bbolt::BoltError),
    #[error("{0}")]
    Msg(String),
}

fn msg(s: impl Into<String>) -> MigrateError {
    MigrateError::Msg(s.into())
}

/// A protobuf field: number and either a varint or bytes.
enum Val<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn fields(b: &[u8]) -> Option<Vec<(u64, Val<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let tag = varint(b, &mut pos)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((field, Val::Int(varint(b, &mut pos)?))),
            1 => {
                let v = u64::from_le_bytes(b.get(pos..pos + 8)?.try_into().ok()?);
                pos += 8;
                out.push((field, Val::Int(v)));
            }
            2 => {
                let len = varint(b, &mut pos)? as usize;
                let v = b.get(pos..pos.checked_add(len)?)?;
                pos += len;
                out.push((field, Val::Bytes(v)));
            }
            5 => {
                let v = u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
                pos += 4;
                out.push((field, Val::Int(u64::from(v))));
            }
            _ => return None,
        }
    }
    Some(out)
}

fn int(f: &[(u64, Val<'_>)], n: u64) -> u64 {
    f.iter()
        .rev()
        .find_map(|(k, v)| match v {
            Val::Int(i) if *k == n => Some(*i),
            _ => None,
        })
        .unwrap_or(0)
}

fn bytes<'a>(f: &[(u64, Val<'a>)], n: u64) -> Option<&'a [u8]> {
    f.iter().rev().find_map(|(k, v)| match v {
        Val::Bytes(b) if *k == n => Some(*b),
        _ => None,
    })
}

fn string(f: &[(u64, Val<'_>)], n: u64) -> String {
    String::from_utf8_lossy(bytes(f, n).unwrap_or(b"")).into_owned()
}

#[derive(Clone, Debug)]
struct Node {
    value: String,
    dir: bool,
    created: u64,
    modified: u64,
    ttl: bool,
}

/// The v2 store, as far as indexes and values go.
struct Store {
    nodes: BTreeMap<String, Node>,
    index: u64,
}

fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

impl Store {
    fn parent_dirs(&mut self, path: &str, idx: u64) -> bool {
        let mut cur = String::new();
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            cur.push('/');
            cur.push_str(p);
            match self.nodes.get(&cur) {
                Some(n) if !n.dir => return false,
                Some(_) => {}
                None => {
                    self.nodes.insert(
                        cur.clone(),
                        Node {
                            value: String::new(),
                            dir: true,
                            created: idx,
                            modified: idx,
                            ttl: false,
                        },
                    );
                }
            }
        }
        true
    }

    fn put_node(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        ttl: bool,
        keep_created: bool,
    ) -> bool {
        let idx = self.index + 1;
        if !self.parent_dirs(path, idx) {
            return false;
        }
        let created = match self.nodes.get(path) {
            Some(n) if keep_created => n.created,
            _ => idx,
        };
        self.nodes.insert(
            path.to_string(),
            Node {
                value: value.to_string(),
                dir,
                created,
                modified: idx,
                ttl,
            },
        );
        self.index = idx;
        true
    }

    fn delete(&mut self, path: &str, recursive: bool) -> bool {
        let Some(n) = self.nodes.get(path) else {
            return false;
        };
        if n.dir
            && !recursive
            && self
                .nodes
                .keys()
                .any(|k| k.starts_with(&format!("{path}/")))
        {
            return false;
        }
        let prefix = format!("{path}/");
        self.nodes
            .retain(|k, _| k != path && !k.starts_with(&prefix));
        self.index += 1;
        true
    }

    fn apply_v2(&mut self, r: &[(u64, Val<'_>)]) {
        let method = string(r, 2);
        let path = clean(&string(r, 3));
        let val = string(r, 4);
        let dir = int(r, 5) != 0;
        let prev_value = string(r, 6);
        let prev_index = int(r, 7);
        let prev_exist = r.iter().rev().find_map(|(k, v)| match v {
            Val::Int(i) if *k == 8 => Some(*i != 0),
            _ => None,
        });
        let ttl = int(r, 9) != 0;
        let recursive = int(r, 12) != 0;
        let exists = self.nodes.contains_key(&path);
        let cas_ok = |n: Option<&Node>| {
            n.is_some_and(|n| {
                (prev_value.is_empty() || n.value == prev_value)
                    && (prev_index == 0 || n.modified == prev_index)
            })
        };
        match method.as_str() {
            "POST" => {
                let p = format!("{path}/{:020}", self.index + 1);
                self.put_node(&p, dir, &val, ttl, false);
            }
            "PUT" => match prev_exist {
                Some(true) if prev_index == 0 && prev_value.is_empty() => {
                    if exists {
                        self.put_node(&path, dir, &val, ttl, true);
                    }
                }
                Some(true) => {
                    if cas_ok(self.nodes.get(&path)) {
                        self.put_node(&path, dir, &val, ttl, true);
                    }
                }
                Some(false) => {
                    if !exists {
                        self.put_node(&path, dir, &val, ttl, false);
                    }
                }
                None if prev_index > 0 || !prev_value.is_empty() => {
                    if cas_ok(self.nodes.get(&path)) {
                        self.put_node(&path, dir, &val, ttl, true);
                    }
                }
                None => {
                    let is_attr = path.starts_with("/0/members/") && path.ends_with("/attributes");
                    if is_attr {
                        let member = path.trim_end_matches("/attributes").to_string();
                        if self.nodes.contains_key(&format!("{member}/raftAttributes")) {
                            self.put_node(&path, false, &val, false, false);
                        }
                    } else {
                        self.put_node(&path, dir, &val, ttl, false);
                    }
                }
            },
            "DELETE" => {
                if prev_index > 0 || !prev_value.is_empty() {
                    if cas_ok(self.nodes.get(&path)) {
                        self.delete(&path, true);
                    }
                } else {
                    self.delete(&path, dir || recursive);
                }
            }
            _ => {}
        }
    }

    /// A ConfChange: adding a member writes its raft attributes; removing deletes it.
    fn apply_conf(&mut self, data: &[u8]) {
        let Some(cc) = fields(data) else { return };
        let node_id = int(&cc, 3);
        let member = format!("/0/members/{node_id:x}");
        match int(&cc, 2) {
            0 | 3 => {
                if self.nodes.contains_key(&format!("{member}/raftAttributes")) {
                    return;
                }
                let ctx = String::from_utf8_lossy(bytes(&cc, 4).unwrap_or(b"")).into_owned();
                let peers = ctx
                    .find("\"peerURLs\":")
                    .map(|i| {
                        let rest = &ctx[i + 11..];
                        rest[..rest.find(']').map(|e| e + 1).unwrap_or(rest.len())].to_string()
                    })
                    .unwrap_or_else(|| "[]".to_string());
                self.put_node(
                    &format!("{member}/raftAttributes"),
                    false,
                    &format!("{{\"peerURLs\":{peers}}}"),
                    false,
                    false,
                );
            }
            1 if self.nodes.contains_key(&member) => {
                self.delete(&member, true);
            }
            2 if self.nodes.contains_key(&format!("{member}/raftAttributes")) => {
                let ctx = String::from_utf8_lossy(bytes(&cc, 4).unwrap_or(b"")).into_owned();
                self.put_node(
                    &format!("{member}/raftAttributes"),
                    false,
                    &ctx,
                    false,
                    true,
                );
            }
            _ => {}
        }
    }
}

/// The newest `*.snap` file that reads back (etcd's `Snapshotter.Load`), if any: its index,
/// term and v2 store.
fn load_snapshot(snap_dir: &Path) -> Result<Option<(u64, u64, Store)>, MigrateError> {
    let snapshot = match snap::load_newest(snap_dir) {
        Ok((snapshot, _skipped)) => snapshot,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(msg(format!("open {}: {e}", snap_dir.display()))),
    };
    Ok(snapshot.map(|s| {
        let store_json = String::from_utf8_lossy(s.v2_store()).into_owned();
        (s.index, s.term, parse_store_json(&store_json))
    }))
}

/// Pulls every node (Path, CreatedIndex, ModifiedIndex, Value, Children) out of a v2 store
/// JSON without a JSON library: the shape is fixed by etcd.
fn parse_store_json(s: &str) -> Store {
    let mut st = Store {
        nodes: BTreeMap::new(),
        index: 0,
    };
    if let Some(i) = s.rfind("\"CurrentIndex\":") {
        let rest = &s[i + 15..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        st.index = rest[..end].parse().unwrap_or(0);
    }
    let mut pos = 0;
    let events_at = s.find("\"WatcherHub\"").unwrap_or(s.len());
    while let Some(i) = s[pos..events_at].find("{\"Path\":") {
        let start = pos + i + 8;
        let Some((path, rest)) = json_string(&s[start..]) else {
            break;
        };
        let num = |key: &str| -> u64 {
            rest.find(key)
                .map(|j| {
                    let r = &rest[j + key.len()..];
                    let e = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                    r[..e].parse().unwrap_or(0)
                })
                .unwrap_or(0)
        };
        let created = num("\"CreatedIndex\":");
        let modified = num("\"ModifiedIndex\":");
        let value = rest
            .find("\"Value\":")
            .and_then(|j| json_string(&rest[j + 8..]))
            .map(|(v, _)| v)
            .unwrap_or_default();
        let children_null = rest
            .find("\"Children\":")
            .map(|j| rest[j + 11..].starts_with("null"))
            .unwrap_or(true);
        let ttl = rest
            .find("\"ExpireTime\":\"")
            .map(|j| !rest[j + 14..].starts_with("0001-01-01T00:00:00Z"))
            .unwrap_or(false);
        if path != "/" {
            st.nodes.insert(
                path,
                Node {
                    value,
                    dir: !children_null,
                    created,
                    modified,
                    ttl,
                },
            );
        }
        pos = start;
    }
    st
}

fn json_string(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let h: String = (0..4)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        out.push(
                            char::from_u32(u32::from_str_radix(&h, 16).ok()?).unwrap_or('\u{fffd}'),
                        );
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    None
}

/// mvccpb.KeyValue: key=1, create_revision=2, mod_revision=3, version=4, value=5.
fn key_value(key: &[u8], create: u64, modified: u64, value: &[u8]) -> Vec<u8> {
    let mut e = Enc::new();
    if !key.is_empty() {
        e.bytes(1, key);
    }
    if create != 0 {
        e.uint(2, create);
    }
    if modified != 0 {
        e.uint(3, modified);
    }
    e.uint(4, 1);
    if !value.is_empty() {
        e.bytes(5, value);
    }
    e.done()
}

/// What a migration did: `None` when there were no v2 keys.
pub struct Migrated {
    pub keys: usize,
    pub index: u64,
}

pub fn migrate(
    data_dir: &Path,
    wal_dir: Option<&Path>,
    no_ttl: bool,
) -> Result<Option<Migrated>, MigrateError> {
    let member = data_dir.join("member");
    let our_db = member.join("snap").join("db");
    if our_db.exists() && !crate::backup::is_bbolt(&our_db) {
        // Our data dir: the v2 store is in the backend already.
        return crate::migrate_ours::migrate(&our_db, no_ttl);
    }
    let wal_dir = wal_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| member.join("wal"));
    let (snap_index, snap_term, mut store) = match load_snapshot(&member.join("snap"))? {
        Some(loaded) => loaded,
        None => (
            0,
            0,
            Store {
                nodes: BTreeMap::new(),
                index: 0,
            },
        ),
    };
    let read =
        wal_read::read_all(&wal_dir, snap_index, snap_term).map_err(|e| msg(e.to_string()))?;
    if !read.snapshot_found {
        return Err(msg("wal: snapshot not found"));
    }
    let mut index = snap_index;
    for e in read.entries {
        let data = e.data.unwrap_or_default();
        if e.entry_type == pb::ENTRY_CONF_CHANGE {
            store.apply_conf(&data);
        } else if let Some(f) = fields(&data) {
            let method = string(&f, 2);
            if matches!(method.as_str(), "POST" | "PUT" | "DELETE" | "QGET" | "SYNC")
                && bytes(&f, 3).is_some_and(|p| p.starts_with(b"/"))
            {
                store.apply_v2(&f);
            } else if let Some(v2) = bytes(&f, 2).and_then(fields) {
                store.apply_v2(&v2);
            }
        }
        index = index.max(e.index);
    }
    if !store.nodes.contains_key("/1") {
        return Ok(None);
    }
    let db_path = member.join("snap").join("db");
    let db = Db::open(&db_path)?;
    let page_size = db.meta.page_size as usize;
    let (mut buckets, _) = db.read_all()?;
    for name in [&b"key"[..], b"meta"] {
        if !buckets.iter().any(|(n, _)| n == name) {
            buckets.push((name.to_vec(), Bucket::new()));
        }
    }
    let mut count = 0;
    for (name, b) in buckets.iter_mut() {
        if name == b"key" {
            for (path, n) in &store.nodes {
                if n.dir || !path.starts_with("/1/") || (no_ttl && n.ttl) {
                    continue;
                }
                let mut rev = n.modified.to_be_bytes().to_vec();
                rev.push(b'_');
                rev.extend_from_slice(&0u64.to_be_bytes());
                b.insert(
                    rev,
                    key_value(
                        &path.as_bytes()[2..],
                        n.created,
                        n.modified,
                        n.value.as_bytes(),
                    ),
                );
                count += 1;
            }
        } else if name == b"meta" {
            b.insert(b"consistent_index".to_vec(), index.to_be_bytes().to_vec());
        }
    }
    let out = etcd_bbolt::write(&buckets, page_size);
    let tmp = db_path.with_extension("migrate.tmp");
    std::fs::write(&tmp, &out)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &db_path)?;
    Ok(Some(Migrated { keys: count, index }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_writes_take_the_next_index() {
        let mut st = Store {
            nodes: BTreeMap::new(),
            index: 0,
        };
        let put = |p: &str, v: &str| {
            Enc::new()
                .uint(1, 9)
                .bytes(2, b"PUT")
                .bytes(3, p.as_bytes())
                .bytes(4, v.as_bytes())
                .done()
        };
        st.apply_conf(&crate::pb::conf_change(
            0,
            0xab,
            br#"{"id":171,"peerURLs":["http://a:1"],"name":"x"}"#,
        ));
        for (p, v) in [
            ("/0/members/ab/attributes", "{}"),
            ("/0/version", "3.4.0"),
            ("/1/foo", "bar"),
            ("/1/foo", "baz"),
        ] {
            let b = put(p, v);
            st.apply_v2(&fields(&b).unwrap());
        }
        assert_eq!(st.index, 5);
        let foo = &st.nodes["/1/foo"];
        assert_eq!(
            (foo.value.as_str(), foo.created, foo.modified),
            ("baz", 5, 5)
        );
    }

    #[test]
    fn parses_a_restored_store() {
        let m = crate::snapshot::Member {
            id: 0xab,
            name: "x".into(),
            peer_urls: vec!["http://a:1".into()],
        };
        let _ = m;
        let json = r#"{"Root":{"Path":"/","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"1":{"Path":"/1","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"k":{"Path":"/1/k","CreatedIndex":7,"ModifiedIndex":8,"ExpireTime":"0001-01-01T00:00:00Z","Value":"v\"x","Children":null}}}}},"WatcherHub":{},"CurrentIndex":8}"#;
        let st = parse_store_json(json);
        assert_eq!(st.index, 8);
        assert!(st.nodes["/1"].dir);
        let k = &st.nodes["/1/k"];
        assert_eq!(
            (k.value.as_str(), k.created, k.modified, k.dir),
            ("v\"x", 7, 8, false)
        );
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Random and mutated inputs to every decoder here: errors or nothing, never a panic.
    #[test]
    fn decoders_never_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = crate::wal::WalWriter::create(&crate::pb::metadata(1, 2));
        w.record(
            crate::wal::ENTRY,
            Some(&crate::pb::entry(0, 1, 1, Some(b"x"))),
        );
        let wal_dir = dir.path().join("wal");
        w.write_to(&wal_dir).expect("wal");
        let wal_file = wal_dir.join("0000000000000000-0000000000000000.wal");
        let good = std::fs::read(&wal_file).expect("read");
        for round in 0..300 {
            let len = (next() % 512) as usize;
            let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = fields(&junk);
            let _ = parse_store_json(&String::from_utf8_lossy(&junk));
            let mut mutated = good[..good.len().min(4096)].to_vec();
            for _ in 0..(1 + round % 8) {
                let i = (next() as usize) % mutated.len();
                mutated[i] = next() as u8;
            }
            std::fs::write(&wal_file, &mutated).expect("write");
            let _ = wal_read::read_all(&wal_dir, 0, 0);
            let db = etcd_bbolt::write(&[(b"key".to_vec(), Bucket::new())], 4096);
            let mut db = db;
            for _ in 0..(1 + round % 8) {
                let i = (next() as usize) % db.len();
                db[i] = next() as u8;
            }
            if let Ok(d) = Db::from_bytes(db) {
                let _ = d.read_all();
                let _ = d.check();
            }
        }
    }
}
