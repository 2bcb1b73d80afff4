//! `etcdctl backup` (v2) of etcd 3.4's own data dir, as etcd's `handleBackup` does it:
//!
//! - the newest `.snap` that reads back is copied (none is fine: the log is then read from
//!   its start);
//! - the WAL is read from that snapshot on (a log without the snapshot's record is taken
//!   anyway, as etcd's backup does, saying so);
//! - ConfChange entries and v2 PUTs of member attributes are dropped, and v3 entries without
//!   `--with-v3`; every later entry moves down by the number dropped before it, and the hard
//!   state's commit by the number dropped in all (etcd's arithmetic);
//! - the backend is, with `--with-v3`, the source's (read under a shared lock, as bbolt's
//!   read-only open takes it: a running member holds it exclusively, so this waits for it to
//!   stop), otherwise a new one holding only `meta/consistent_index` at the new commit; either
//!   way without the `members`, `members_removed` and `cluster` buckets, which
//!   `--force-new-cluster` rebuilds;
//! - a new WAL under new member and cluster IDs (etcd's `idutil` from the clock) holds the
//!   entries, the hard state and the snapshot's record.
//!
//! Unlike etcd, everything is read and checked before anything is written, damage is an error
//! naming the file (where etcd panics or writes a half backup), the source is never changed
//! (etcd renames a damaged `.snap` to `.broken`), and a non-empty `--backup-wal-dir` that holds
//! no WAL is refused (etcd deletes what it holds). The backend is rewritten compactly rather
//! than copied page for page: same buckets, keys and values.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use etcd_api::etcdserverpb::InternalRaftRequest;
use etcd_bbolt::{Bucket, Db, FileWriter};
use prost::Message;

use crate::backup::{BackupError, BackupSummary, Note, Paths, err};
use crate::pb::{self, Entry};
use crate::{snap, wal, wal_read};

/// The buckets `--force-new-cluster` rebuilds, dropped from the copy.
const MEMBERSHIP_BUCKETS: [&[u8]; 3] = [b"members", b"members_removed", b"cluster"];
/// bbolt's page size for a new file (`os.Getpagesize()`).
const NEW_DB_PAGE_BYTES: usize = 4096;
/// How long etcd waits for the backend's lock before saying it is waiting.
const LOCK_NOTICE_AFTER: Duration = Duration::from_secs(1);

pub(crate) fn backup(
    paths: &Paths,
    with_v3: bool,
    note: &mut dyn FnMut(Note),
) -> Result<BackupSummary, BackupError> {
    check_destination(paths)?;

    // saveSnap's read side.
    let (snapshot, skipped) = snap::load_newest(&paths.src_snap)
        .map_err(|e| err(format!("cannot read {}: {e}", paths.src_snap.display())))?;
    for s in skipped {
        let path = s.path.to_string_lossy().into_owned();
        note(Note::Warn {
            msg: s.warning,
            fields: vec![("path", path.clone())],
        });
        note(Note::Warn {
            msg: "failed to read a snap file",
            fields: vec![("path", path), ("error", s.error)],
        });
    }
    let (snap_index, snap_term) = snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));

    // loadWAL.
    let read = wal_read::read_all(&paths.src_wal, snap_index, snap_term)
        .map_err(|e| err(e.to_string()))?;
    if !read.snapshot_found {
        note(Note::Log(format!(
            "Failed to find the match snapshot record {{Index:{snap_index} Term:{snap_term} \
             XXX_unrecognized:[]}} in wal {}.",
            paths.src_wal.display()
        )));
        note(Note::Log(
            "etcdctl will add it back. Start auto fixing...".into(),
        ));
    }
    let (entries, removed) =
        filter_entries(read.entries, with_v3, note).map_err(|(index, e)| {
            err(format!(
                "{}: the entry at index {index} is neither an InternalRaftRequest nor a v2 \
             Request: {e}",
                paths.src_wal.display()
            ))
        })?;
    let bad_record = |what: &str, e: pb::DecodeError| {
        err(format!(
            "{}: bad {what} record: {e}",
            paths.src_wal.display()
        ))
    };
    let ([term, vote, commit], state_unknown) =
        varints::<3>(&read.hard_state, "raftpb.HardState").map_err(|e| bad_record("state", e))?;
    let commit = commit.saturating_sub(removed as u64);
    let state = (term, vote, commit) != (0, 0, 0);
    let mut state_bytes = pb::hard_state(term, vote, commit);
    state_bytes.extend_from_slice(&state_unknown);
    let (_, metadata_unknown) = varints::<2>(&read.metadata, "etcdserverpb.Metadata")
        .map_err(|e| bad_record("metadata", e))?;
    let (member_id, cluster_id) = new_ids();
    let mut metadata = pb::metadata(member_id, cluster_id);
    metadata.extend_from_slice(&metadata_unknown);

    // The backend to write, read (under its lock) before anything is written.
    let (buckets, page_bytes) = if with_v3 {
        read_backend(&paths.src_db, note)?
    } else {
        let mut meta = Bucket::new();
        meta.insert(b"consistent_index".to_vec(), commit.to_be_bytes().to_vec());
        (
            BTreeMap::from([(b"meta".to_vec(), meta)]),
            NEW_DB_PAGE_BYTES,
        )
    };

    // Writing: the snapshot, the backend, then the WAL (which moves into place last).
    create_private_dir(&paths.dest_snap).map_err(|e| {
        err(format!(
            "failed creating backup snapshot dir {}: {e}",
            paths.dest_snap.display()
        ))
    })?;
    if let Some(s) = &snapshot {
        snap::save(&paths.dest_snap, s).map_err(|e| {
            err(format!(
                "cannot write the snapshot into {}: {e}",
                paths.dest_snap.display()
            ))
        })?;
    }
    let dest_db = paths.dest_snap.join("db");
    write_backend(&dest_db, &buckets, page_bytes, with_v3)
        .map_err(|e| err(format!("cannot write {}: {e}", dest_db.display())))?;
    let written = entries.len();
    let wal_error =
        |e: std::io::Error| err(format!("cannot write {}: {e}", paths.dest_wal.display()));
    let mut new_wal = wal::WalFiles::create(&paths.dest_wal, &metadata).map_err(wal_error)?;
    new_wal
        .save(
            state.then_some(state_bytes.as_slice()),
            entries.into_iter().map(|e| (e.index, e.encode())),
        )
        .map_err(wal_error)?;
    new_wal
        .save_snapshot(snap_index, snap_term)
        .map_err(wal_error)?;
    for segment in new_wal.finish().map_err(wal_error)?.into_iter().skip(1) {
        note(Note::Info {
            msg: "created a new WAL segment",
            fields: vec![("path", segment.to_string_lossy().into_owned())],
        });
    }
    Ok(BackupSummary {
        member_id,
        cluster_id,
        applied_index: commit,
        entries: written,
        blanked: 0,
        removed,
    })
}

/// A message of varint fields, `N` of them known (fields 1..=N).
fn varints<const N: usize>(b: &[u8], what: &str) -> Result<([u64; N], Vec<u8>), pb::DecodeError> {
    let known: Vec<u32> = (1..=N as u32).collect();
    let (values, unknown) = pb::decode_varints(b, what, &known)?;
    let mut out = [0u64; N];
    out.copy_from_slice(&values);
    Ok((out, unknown))
}

/// etcd's CreateDirAll refuses a snapshot dir that holds anything; wal.Create refuses a WAL
/// dir that holds a WAL. Checked first, so a refused backup writes nothing.
fn check_destination(paths: &Paths) -> Result<(), BackupError> {
    let names = |dir: &Path| -> Result<Vec<String>, BackupError> {
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                let mut names = rd
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(|e| err(format!("cannot read {}: {e}", dir.display())))?;
                names.sort();
                Ok(names)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(err(format!("cannot read {}: {e}", dir.display()))),
        }
    };
    let in_snap = names(&paths.dest_snap)?;
    if !in_snap.is_empty() {
        let quoted: Vec<String> = in_snap.iter().map(|n| format!("{n:?}")).collect();
        return Err(err(format!(
            "failed creating backup snapshot dir {}: expected {:?} to be empty, got [{}]",
            paths.dest_snap.display(),
            paths.dest_snap.to_string_lossy(),
            quoted.join(" ")
        )));
    }
    let in_wal = names(&paths.dest_wal)?;
    if in_wal.iter().any(|n| n.ends_with(".wal")) {
        return Err(err(format!(
            "{}: file already exists (it holds a WAL)",
            paths.dest_wal.display()
        )));
    }
    if !in_wal.is_empty() {
        return Err(err(format!(
            "{} is not empty: the backup's WAL goes into a directory of its own",
            paths.dest_wal.display()
        )));
    }
    Ok(())
}

/// loadWAL's filter: drops ConfChanges, member attribute updates and (without v3) v3
/// entries, renumbering what follows. Returns the entries kept and how many were dropped; an
/// entry that is no request at all is an error (index, why), where etcd panics.
fn filter_entries(
    entries: Vec<Entry>,
    with_v3: bool,
    note: &mut dyn FnMut(Note),
) -> Result<(Vec<Entry>, usize), (u64, pb::DecodeError)> {
    let mut kept = Vec::with_capacity(entries.len());
    let mut removed = 0usize;
    for mut e in entries {
        let original_index = e.index;
        e.index = e.index.wrapping_sub(removed as u64);
        if e.entry_type == pb::ENTRY_CONF_CHANGE {
            note(Note::Log("ignoring EntryConfChange raft entry".into()));
            removed += 1;
            continue;
        }
        let data = e.data.as_deref().unwrap_or_default();
        // pbutil.MaybeUnmarshal as an InternalRaftRequest, else MustUnmarshal as a v2 Request.
        let (v2, has_header) = match InternalRaftRequest::decode(data) {
            Ok(r) => (
                r.v2.map(|v2| (v2.method.into_bytes(), v2.path.into_bytes())),
                r.header.is_some(),
            ),
            Err(_) => {
                let (method, path) =
                    pb::v2_request_method_path(data).map_err(|e| (original_index, e))?;
                (Some((method.to_vec(), path.to_vec())), false)
            }
        };
        if let Some((method, path)) = &v2 {
            if method == b"PUT" && is_member_attributes(path) {
                note(Note::Log(format!(
                    "ignoring member attribute update on {}",
                    String::from_utf8_lossy(path)
                )));
                removed += 1;
                continue;
            }
            kept.push(e);
            continue;
        }
        if with_v3 || !has_header {
            kept.push(e);
            continue;
        }
        note(Note::Log("ignoring v3 raft entry".into()));
        removed += 1;
    }
    Ok((kept, removed))
}

/// etcd's unanchored `/0/members/[[:xdigit:]]{1,16}/attributes`.
fn is_member_attributes(path: &[u8]) -> bool {
    const PREFIX: &[u8] = b"/0/members/";
    (0..path.len()).any(|i| {
        let Some(rest) = path[i..].strip_prefix(PREFIX) else {
            return false;
        };
        let hex = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        (1..=16).contains(&hex) && rest[hex..].starts_with(b"/attributes")
    })
}

/// etcd's `idutil.NewGenerator(0, time.Now())`, two IDs: the low 40 bits of the Unix time in
/// milliseconds, shifted over an 8-bit counter that starts at 1.
fn new_ids() -> (u64, u64) {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let suffix = (millis & ((1 << 40) - 1)) << 8;
    let low48 = |x: u64| x & ((1 << 48) - 1);
    (low48(suffix + 1), low48(suffix + 2))
}

/// The source backend's buckets without the membership ones, and its page size. Read under
/// a shared lock, as bbolt's read-only open: a running member holds it, so this waits (saying
/// so after a second, as etcd does) until the member stops.
fn read_backend(
    path: &Path,
    note: &mut dyn FnMut(Note),
) -> Result<(BTreeMap<Vec<u8>, Bucket>, usize), BackupError> {
    let io = |e: std::io::Error| err(format!("cannot read {}: {e}", path.display()));
    let file = File::open(path).map_err(io)?;
    let mut file = match file.try_lock_shared() {
        Ok(()) => file,
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        Err(std::fs::TryLockError::WouldBlock) => {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let locked = file.lock_shared().map(|()| file);
                let _ = tx.send(locked);
            });
            let locked = match rx.recv_timeout(LOCK_NOTICE_AFTER) {
                Ok(locked) => locked,
                Err(_) => {
                    note(Note::Log(format!(
                        "waiting to acquire lock on {}",
                        path.display()
                    )));
                    rx.recv().map_err(|_| err("the backend lock wait ended"))?
                }
            };
            locked.map_err(io)?
        }
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    drop(file);
    let corrupt = |e: etcd_bbolt::BoltError| {
        err(format!(
            "{}: not a readable bbolt backend: {e}",
            path.display()
        ))
    };
    let db = Db::from_bytes(bytes).map_err(corrupt)?;
    let page_bytes = db.meta.page_size as usize;
    let (read, _) = db.read_all().map_err(corrupt)?;
    drop(db);
    let buckets = read
        .into_iter()
        .filter(|(name, _)| !MEMBERSHIP_BUCKETS.contains(&name.as_slice()))
        .collect();
    let page_bytes = if (1024..=65536).contains(&page_bytes) && page_bytes.is_power_of_two() {
        page_bytes
    } else {
        NEW_DB_PAGE_BYTES
    };
    Ok((buckets, page_bytes))
}

/// Writes the backend: 0644 as bbolt creates a new file, 0666 (less the umask) as etcd's
/// `os.Create` of the copy.
fn write_backend(
    path: &Path,
    buckets: &BTreeMap<Vec<u8>, Bucket>,
    page_bytes: usize,
    with_v3: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if with_v3 { 0o666 } else { 0o644 })
        .open(path)?;
    let mut w = FileWriter::new(BufWriter::with_capacity(1 << 20, file), page_bytes)?;
    for (name, bucket) in buckets {
        let mut b = w.bucket(name)?;
        for (k, v) in bucket {
            b.put(k, v)?;
        }
        b.finish()?;
    }
    let file = w.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_attribute_paths_as_etcds_regexp() {
        assert!(is_member_attributes(
            b"/0/members/b5179d13d0285315/attributes"
        ));
        assert!(is_member_attributes(b"/0/members/a/attributes"));
        assert!(is_member_attributes(b"/1/x/0/members/a/attributesX"));
        assert!(!is_member_attributes(
            b"/0/members/b5179d13d0285315/raftAttributes"
        ));
        assert!(!is_member_attributes(b"/0/members//attributes"));
        assert!(!is_member_attributes(
            b"/0/members/00000000000000001/attributes"
        ));
        assert!(!is_member_attributes(b"/0/members/xyz/attributes"));
    }

    #[test]
    fn ids_follow_etcds_generator() {
        let (member, cluster) = new_ids();
        assert_eq!(cluster, member + 1);
        assert_eq!(member & 0xff, 1);
        assert_eq!(member >> 48, 0);
    }

    fn v2_put(path: &str) -> Vec<u8> {
        pb::Enc::new()
            .uint(1, 7)
            .bytes(2, b"PUT")
            .bytes(3, path.as_bytes())
            .bytes(4, b"v")
            .uint(5, 0)
            .done()
    }

    fn v3_put() -> Vec<u8> {
        InternalRaftRequest {
            header: Some(Default::default()),
            put: Some(etcd_api::etcdserverpb::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn entry(entry_type: i32, index: u64, data: Option<Vec<u8>>) -> Entry {
        Entry {
            entry_type,
            term: 2,
            index,
            data,
            unknown: Vec::new(),
        }
    }

    #[test]
    fn drops_and_renumbers_as_etcd() {
        let entries = vec![
            entry(pb::ENTRY_CONF_CHANGE, 1, Some(b"cc".to_vec())),
            entry(0, 2, None),
            entry(0, 3, Some(v2_put("/0/members/ab/attributes"))),
            entry(0, 4, Some(v2_put("/0/version"))),
            entry(0, 5, Some(v3_put())),
            entry(0, 6, Some(v2_put("/1/foo"))),
        ];
        let mut notes = Vec::new();
        let (kept, removed) = filter_entries(entries.clone(), false, &mut |n| {
            if let Note::Log(s) = n {
                notes.push(s)
            }
        })
        .unwrap();
        assert_eq!(removed, 3);
        let got: Vec<(u64, bool)> = kept.iter().map(|e| (e.index, e.data.is_some())).collect();
        assert_eq!(got, vec![(1, false), (2, true), (3, true)]);
        assert_eq!(
            notes,
            vec![
                "ignoring EntryConfChange raft entry",
                "ignoring member attribute update on /0/members/ab/attributes",
                "ignoring v3 raft entry"
            ]
        );
        let (kept, removed) = filter_entries(entries, true, &mut |_| {}).unwrap();
        assert_eq!(removed, 2);
        assert_eq!(
            kept.iter().map(|e| e.index).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );

        let garbage = vec![entry(0, 9, Some(vec![0xff; 5]))];
        let (index, _) = filter_entries(garbage, true, &mut |_| {}).unwrap_err();
        assert_eq!(index, 9);
    }
}
