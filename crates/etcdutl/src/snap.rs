//! etcd 3.4's `.snap` files (`member/snap/<term>-<index>.snap`): a snappb.Snapshot whose
//! CRC-32C covers a raftpb.Snapshot (the v2 store as JSON, the index, term and conf state).
//!
//! [`load_newest`] is etcd's `Snapshotter.Load`: the newest file (by name) that reads back,
//! a damaged one skipped with a warning. Unlike etcd it leaves the damaged file where it is
//! (etcd renames it `.broken`, and deletes `db.tmp*` leftovers): it reads someone else's data
//! dir. [`save`] is `Snapshotter.SaveSnap`.

use std::path::{Path, PathBuf};

use crate::pb::{self, Value};

/// A snapshot read from a `.snap` file.
#[derive(Debug, Clone)]
pub struct Snap {
    pub path: PathBuf,
    pub index: u64,
    pub term: u64,
    /// The raftpb.Snapshot, as the file holds it.
    pub raft_snapshot: Vec<u8>,
}

impl Snap {
    /// The snapshot's data: etcd's v2 store, as JSON.
    pub fn v2_store(&self) -> &[u8] {
        pb::decode_raft_snapshot(&self.raft_snapshot).map_or(b"", |(data, _, _)| data)
    }
}

/// A `.snap` file etcd would not load, and why (etcd's wording).
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    /// etcd's warning for the case ("snap file is corrupt", ...).
    pub warning: &'static str,
    pub error: String,
}

/// The newest snapshot in `dir` that reads back (`None` if there is none: etcd's
/// `ErrNoSnapshot`), and the newer files skipped on the way. An unreadable `dir` is an error.
pub fn load_newest(dir: &Path) -> std::io::Result<(Option<Snap>, Vec<Skipped>)> {
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // etcd deletes orphaned defragmentation files (`db.tmp*`) before looking.
        if name.ends_with(".snap") && !name.starts_with("db.tmp") {
            names.push(name);
        }
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    let mut skipped = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match read(&path) {
            Ok(snap) => return Ok((Some(snap), skipped)),
            Err((warning, error)) => skipped.push(Skipped {
                path,
                warning,
                error,
            }),
        }
    }
    Ok((None, skipped))
}

/// etcd's `snap.Read`: the file, its CRC, the raftpb.Snapshot inside.
fn read(path: &Path) -> Result<Snap, (&'static str, String)> {
    let bytes = std::fs::read(path).map_err(|e| ("failed to read a snap file", e.to_string()))?;
    if bytes.is_empty() {
        return Err((
            "failed to read empty snapshot file",
            "snap: empty snapshot".into(),
        ));
    }
    let (crc, data) =
        snap_file(&bytes).map_err(|e| ("failed to unmarshal snappb.Snapshot", e.to_string()))?;
    if data.is_empty() || crc == 0 {
        return Err((
            "failed to read empty snapshot data",
            "snap: empty snapshot".into(),
        ));
    }
    if crc32c::crc32c(data) != crc {
        return Err(("snap file is corrupt", "snap: crc mismatch".into()));
    }
    let (_, index, term) = pb::decode_raft_snapshot(data)
        .map_err(|e| ("failed to unmarshal raftpb.Snapshot", e.to_string()))?;
    Ok(Snap {
        path: path.to_path_buf(),
        index,
        term,
        raft_snapshot: data.to_vec(),
    })
}

/// snappb.Snapshot: crc=1 (uint32), data=2.
fn snap_file(b: &[u8]) -> Result<(u32, &[u8]), pb::DecodeError> {
    let (mut crc, mut data): (u32, &[u8]) = (0, b"");
    for f in pb::decode_fields(b)? {
        match (f.number, f.value) {
            (1, Value::Varint(v)) => crc = v as u32,
            (2, Value::Bytes(d)) => data = d,
            (1 | 2, _) => {
                return Err(pb::DecodeError(format!(
                    "wrong wireType for field {} of snappb.Snapshot",
                    f.number
                )));
            }
            _ => {}
        }
    }
    Ok((crc, data))
}

/// etcd's `SaveSnap`: `<term>-<index>.snap` in `dir` (nothing for an empty snapshot, index 0),
/// written and synced. Returns the path written.
pub fn save(dir: &Path, snap: &Snap) -> std::io::Result<Option<PathBuf>> {
    if snap.index == 0 {
        return Ok(None);
    }
    let path = dir.join(format!("{:016x}-{:016x}.snap", snap.term, snap.index));
    let bytes = pb::snap_file(crc32c::crc32c(&snap.raft_snapshot), &snap.raft_snapshot);
    let written = (|| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&path)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(index: u64, term: u64) -> Vec<u8> {
        pb::raft_snapshot(b"{\"Root\":{}}", &[1, 2], index, term)
    }

    #[test]
    fn the_newest_readable_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let good = Snap {
            path: PathBuf::new(),
            index: 6,
            term: 2,
            raft_snapshot: snapshot(6, 2),
        };
        let written = save(dir.path(), &good).unwrap().unwrap();
        assert!(written.ends_with("0000000000000002-0000000000000006.snap"));
        // A newer file cut short, and one with a flipped byte: skipped, named.
        let newer = pb::snap_file(crc32c::crc32c(&snapshot(9, 2)), &snapshot(9, 2));
        std::fs::write(
            dir.path().join("0000000000000002-0000000000000009.snap"),
            &newer[..newer.len() - 3],
        )
        .unwrap();
        let mut flipped = newer.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(
            dir.path().join("0000000000000002-000000000000000a.snap"),
            &flipped,
        )
        .unwrap();
        std::fs::write(dir.path().join("db"), b"not a snap").unwrap();
        let (snap, skipped) = load_newest(dir.path()).unwrap();
        let snap = snap.unwrap();
        assert_eq!((snap.index, snap.term), (6, 2));
        assert_eq!(snap.raft_snapshot, good.raft_snapshot);
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].error, "snap: crc mismatch");
        assert!(
            skipped[1]
                .path
                .ends_with("0000000000000002-0000000000000009.snap")
        );
    }

    #[test]
    fn none_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_newest(dir.path()).unwrap().0.is_none());
        std::fs::write(dir.path().join("x.snap"), b"").unwrap();
        let (snap, skipped) = load_newest(dir.path()).unwrap();
        assert!(snap.is_none());
        assert_eq!(skipped[0].error, "snap: empty snapshot");
        assert!(load_newest(&dir.path().join("missing")).is_err());
    }
}
