//! etcd's `.snap` files (`member/snap/<term>-<index>.snap`): a `snappb.snapshot` whose CRC-32C
//! covers a `raftpb.Snapshot`, whose data is the v2 store as JSON. etcd starts from the newest
//! one that reads back; so do we. A damaged one is skipped, as etcd skips it.
//!
//! The v2 store holds the members (which the backend holds too) and, when `--enable-v2` was
//! used, v2 keys: those we cannot carry yet, so [`v2_user_nodes`] counts them for the caller
//! to refuse rather than lose them.

use std::path::{Path, PathBuf};

use etcd_api::etcdfiles::{ConfState, SnapFile, Snapshot};
use prost::Message;

use super::error::ConvertError;

/// The snapshot a restart starts from.
#[derive(Debug, Default)]
pub struct EtcdSnap {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    /// The v2 store, as etcd's JSON.
    pub v2_store: Vec<u8>,
    pub path: PathBuf,
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".snap")?;
    let (term, index) = stem.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(term, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

/// The `.snap` files in `dir`, newest first.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConvertError::io(dir, e)),
    };
    let mut named = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| ConvertError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((term, index)) = parse_name(&name) {
            named.push(((term, index), entry.path()));
        }
    }
    named.sort();
    Ok(named.into_iter().rev().map(|(_, p)| p).collect())
}

/// Decodes one `.snap` file.
pub fn load(path: &Path) -> Result<EtcdSnap, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let file = SnapFile::decode(bytes.as_slice()).map_err(|e| format!("not a snap file: {e}"))?;
    if crc32c::crc32c(&file.data) != file.crc {
        return Err("CRC mismatch".into());
    }
    let snap =
        Snapshot::decode(file.data.as_slice()).map_err(|e| format!("not a raft snapshot: {e}"))?;
    let meta = snap.metadata.unwrap_or_default();
    Ok(EtcdSnap {
        index: meta.index,
        term: meta.term,
        conf_state: meta.conf_state.unwrap_or_default(),
        v2_store: snap.data,
        path: path.to_path_buf(),
    })
}

/// Snapshot files passed over, and why.
pub type Skipped = Vec<(PathBuf, String)>;

/// The newest readable snapshot in `dir`, with the files skipped on the way.
pub fn newest(dir: &Path) -> Result<(Option<EtcdSnap>, Skipped), ConvertError> {
    let mut skipped = Vec::new();
    for path in files(dir)? {
        match load(&path) {
            Ok(snap) => return Ok((Some(snap), skipped)),
            Err(why) => skipped.push((path, why)),
        }
    }
    Ok((None, skipped))
}

/// The v2 keys a v2 store holds outside etcd's own `/0` (members, version): nodes under `/1`
/// (the v2 keys API) and `/2` (v2 auth), counted as leaves.
pub fn v2_user_nodes(v2_store: &[u8]) -> Result<usize, String> {
    if v2_store.is_empty() {
        return Ok(0);
    }
    let doc: serde_json::Value =
        serde_json::from_slice(v2_store).map_err(|e| format!("the v2 store is not JSON: {e}"))?;
    let root_children = doc.pointer("/Root/Children");
    let mut count = 0;
    for top in ["1", "2"] {
        if let Some(node) = root_children.and_then(|c| c.get(top)) {
            count += leaves(node.get("Children"));
        }
    }
    Ok(count)
}

fn leaves(children: Option<&serde_json::Value>) -> usize {
    let Some(serde_json::Value::Object(map)) = children else {
        return 0;
    };
    map.values()
        .map(|child| match child.get("Children") {
            Some(serde_json::Value::Object(c)) if !c.is_empty() => leaves(child.get("Children")),
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcdutl::pb;

    fn snap_bytes(data: &[u8], index: u64, term: u64) -> Vec<u8> {
        let raft = pb::raft_snapshot(data, &[1, 2], index, term);
        pb::snap_file(crc32c::crc32c(&raft), &raft)
    }

    #[test]
    fn newest_readable_snapshot_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(format!("{:016x}-{:016x}.snap", 2, 10)),
            snap_bytes(b"{}", 10, 2),
        )
        .unwrap();
        let mut broken = snap_bytes(b"{}", 20, 3);
        let n = broken.len();
        broken[n - 1] ^= 1;
        std::fs::write(
            dir.path().join(format!("{:016x}-{:016x}.snap", 3, 20)),
            broken,
        )
        .unwrap();
        let (snap, skipped) = newest(dir.path()).unwrap();
        let snap = snap.unwrap();
        assert_eq!((snap.index, snap.term), (10, 2));
        assert_eq!(snap.conf_state.voters, vec![1, 2]);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].1.contains("CRC") || skipped[0].1.contains("not a"));
    }

    #[test]
    fn counts_v2_keys_but_not_members() {
        let only_members = br#"{"Root":{"Children":{"0":{"Children":{"members":{"Children":{"1":{}}}}},"1":{"Children":{}}}}}"#;
        assert_eq!(v2_user_nodes(only_members).unwrap(), 0);
        let with_keys = br#"{"Root":{"Children":{"1":{"Children":{"foo":{"Value":"x"},"dir":{"Children":{"a":{},"b":{}}}}}}}}"#;
        assert_eq!(v2_user_nodes(with_keys).unwrap(), 3);
        assert!(v2_user_nodes(b"not json").is_err());
    }
}
