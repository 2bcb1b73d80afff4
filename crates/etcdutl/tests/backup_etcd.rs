//! `backup` of etcd 3.4's own data dirs, on data dirs written here with etcd's formats: what
//! the copy holds (entries dropped and renumbered as etcd's backup does, the backend, the
//! snapshot), and that damaged files are refused naming them, never with a panic.
//! (crates/etcdctl/tests/v2.rs backs up a real etcd's data dir and starts etcd on the copy.)

use std::path::{Path, PathBuf};

use etcd_api::etcdserverpb::{InternalRaftRequest, PutRequest, RequestHeader};
use etcdutl::backup::{BackupOptions, BackupSummary, Note, backup_with};
use etcdutl::bbolt::{self, Bucket, Db};
use etcdutl::pb::{self, Entry};
use etcdutl::wal::{self, WalWriter};
use etcdutl::{snap, wal_read};
use prost::Message;

const SNAP_INDEX: u64 = 4;
const SNAP_TERM: u64 = 2;

fn v2_put(path: &str, value: &str) -> Vec<u8> {
    // As etcd 3.4 proposes it: a bare etcdserverpb.Request, every non-nullable field written.
    let mut e = pb::Enc::new();
    e.uint(1, 99)
        .bytes(2, b"PUT")
        .bytes(3, path.as_bytes())
        .bytes(4, value.as_bytes());
    for field in [5, 7, 9, 10, 11, 12, 13, 14, 15, 16] {
        e.uint(field, 0);
    }
    e.done()
}

fn v3_put(key: &str) -> Vec<u8> {
    InternalRaftRequest {
        header: Some(RequestHeader {
            id: 7,
            ..Default::default()
        }),
        put: Some(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The log: bootstrapping (a ConfChange, the leader's empty entry, the member's attributes,
/// the cluster version) up to the snapshot, then a mix after it.
fn log_entries() -> Vec<(u64, Vec<u8>)> {
    let conf = pb::conf_change(0, 0xaa, br#"{"id":170,"peerURLs":["http://a:2380"]}"#);
    vec![
        (1, pb::entry(1, 1, 1, Some(&conf))),
        (2, pb::entry(0, 2, 2, None)),
        (
            3,
            pb::entry(0, 2, 3, Some(&v2_put("/0/members/aa/attributes", "{}"))),
        ),
        (4, pb::entry(0, 2, 4, Some(&v2_put("/0/version", "3.4.0")))),
        (5, pb::entry(0, 2, 5, Some(&v3_put("a")))),
        (6, pb::entry(0, 2, 6, Some(&v2_put("/1/foo", "bar")))),
        (
            7,
            pb::entry(0, 2, 7, Some(&v2_put("/0/members/aa/attributes", "{}"))),
        ),
        (8, pb::entry(0, 2, 8, Some(&v3_put("b")))),
        (9, pb::entry(0, 2, 9, Some(&v2_put("/1/baz", "qux")))),
    ]
}

fn source_buckets() -> Vec<(Vec<u8>, Bucket)> {
    let bucket = |kv: &[(&[u8], &[u8])]| -> Bucket {
        kv.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    };
    vec![
        (
            b"cluster".to_vec(),
            bucket(&[(b"clusterVersion", b"3.4.0")]),
        ),
        (
            b"key".to_vec(),
            bucket(&[(b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\0", b"kv")]),
        ),
        (b"lease".to_vec(), Bucket::new()),
        (b"members".to_vec(), bucket(&[(b"aa", b"{}")])),
        (b"members_removed".to_vec(), Bucket::new()),
        (
            b"meta".to_vec(),
            bucket(&[(b"consistent_index", &5u64.to_be_bytes())]),
        ),
    ]
}

/// An etcd 3.4 data dir: the WAL (with the snapshot's record, when `snapshot_record`), the
/// snap file at index 4, the backend.
fn etcd_data_dir(root: &Path, snapshot_record: bool) -> PathBuf {
    let data = root.join("source");
    let member = data.join("member");
    let mut w = WalWriter::create(&pb::metadata(0xaa, 0xbb));
    for (index, entry) in log_entries() {
        w.record(wal::ENTRY, Some(&entry));
        if index == SNAP_INDEX && snapshot_record {
            w.record(
                wal::SNAPSHOT,
                Some(&pb::wal_snapshot(SNAP_INDEX, SNAP_TERM)),
            );
        }
    }
    w.record(wal::STATE, Some(&pb::hard_state(2, 0xaa, 9)));
    w.write_to(&member.join("wal")).expect("write wal");
    let snap_dir = member.join("snap");
    std::fs::create_dir_all(&snap_dir).expect("snap dir");
    snap::save(
        &snap_dir,
        &snap::Snap {
            path: PathBuf::new(),
            index: SNAP_INDEX,
            term: SNAP_TERM,
            raft_snapshot: pb::raft_snapshot(b"{\"Root\":{}}", &[0xaa], SNAP_INDEX, SNAP_TERM),
        },
    )
    .expect("write snap");
    std::fs::write(snap_dir.join("db"), bbolt::write(&source_buckets(), 4096)).expect("write db");
    data
}

fn run(
    data: &Path,
    backup_dir: &Path,
    with_v3: bool,
) -> (Result<BackupSummary, String>, Vec<Note>) {
    let mut notes = Vec::new();
    let got = backup_with(
        &BackupOptions {
            data_dir: data.to_path_buf(),
            backup_dir: backup_dir.to_path_buf(),
            with_v3,
            ..Default::default()
        },
        &mut |n| notes.push(n),
    );
    (got.map_err(|e| e.to_string()), notes)
}

fn logs(notes: &[Note]) -> Vec<String> {
    notes
        .iter()
        .filter_map(|n| match n {
            Note::Log(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// The copy's log, its entries as (index, data), and its backend.
fn read_backup(backup_dir: &Path) -> (wal_read::WalContents, Vec<(u64, Vec<u8>)>, Db) {
    let member = backup_dir.join("member");
    let wal = wal_read::read_all(&member.join("wal"), SNAP_INDEX, SNAP_TERM).expect("read wal");
    let entries = wal
        .entries
        .iter()
        .map(|e| (e.index, e.data.clone().unwrap_or_default()))
        .collect();
    let db = Db::open(&member.join("snap").join("db")).expect("open db");
    (wal, entries, db)
}

#[test]
fn without_v3_the_v3_entries_go_and_the_backend_is_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = etcd_data_dir(dir.path(), true);
    let backup_dir = dir.path().join("backup");
    let (got, notes) = run(&data, &backup_dir, false);
    let summary = got.expect("backup");
    assert_eq!(
        logs(&notes),
        [
            "ignoring v3 raft entry",
            "ignoring member attribute update on /0/members/aa/attributes",
            "ignoring v3 raft entry",
        ]
    );
    assert_eq!((summary.removed, summary.applied_index), (3, 6));

    let (wal, entries, db) = read_backup(&backup_dir);
    assert!(wal.snapshot_found);
    assert_eq!(
        entries,
        [(5, v2_put("/1/foo", "bar")), (6, v2_put("/1/baz", "qux")),]
    );
    assert_eq!(wal.hard_state, pb::hard_state(2, 0xaa, 6));
    assert_eq!(
        wal.metadata,
        pb::metadata(summary.member_id, summary.cluster_id)
    );
    assert_ne!(summary.member_id, 0xaa);
    let (buckets, _) = db.read_all().expect("read db");
    let names: Vec<&[u8]> = buckets.iter().map(|(n, _)| n.as_slice()).collect();
    assert_eq!(names, [b"meta".as_slice()]);
    assert_eq!(
        buckets[0].1[b"consistent_index".as_slice()],
        6u64.to_be_bytes()
    );

    // The snapshot, byte for byte.
    let name = format!("{SNAP_TERM:016x}-{SNAP_INDEX:016x}.snap");
    assert_eq!(
        std::fs::read(backup_dir.join("member").join("snap").join(&name)).expect("copy"),
        std::fs::read(data.join("member").join("snap").join(&name)).expect("source")
    );

    // A second backup into the same directory is refused, and writes nothing.
    let (got, _) = run(&data, &backup_dir, false);
    assert!(got.unwrap_err().contains("to be empty"));
}

#[test]
fn with_v3_the_backend_is_copied_without_the_membership() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = etcd_data_dir(dir.path(), true);
    let backup_dir = dir.path().join("backup");
    let (got, notes) = run(&data, &backup_dir, true);
    let summary = got.expect("backup");
    assert_eq!(
        logs(&notes),
        ["ignoring member attribute update on /0/members/aa/attributes"]
    );
    assert_eq!((summary.removed, summary.applied_index), (1, 8));
    let (wal, entries, db) = read_backup(&backup_dir);
    let indexes: Vec<u64> = entries.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, [5, 6, 7, 8]);
    assert_eq!(entries[2].1, v3_put("b"));
    assert_eq!(wal.hard_state, pb::hard_state(2, 0xaa, 8));
    let (buckets, _) = db.read_all().expect("read db");
    let want: Vec<(Vec<u8>, Bucket)> = source_buckets()
        .into_iter()
        .filter(|(n, _)| !matches!(n.as_slice(), b"members" | b"members_removed" | b"cluster"))
        .collect();
    assert_eq!(buckets, want);
}

#[test]
fn a_log_without_the_snapshot_record_is_taken_as_etcd_takes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = etcd_data_dir(dir.path(), false);
    let backup_dir = dir.path().join("backup");
    let (got, notes) = run(&data, &backup_dir, false);
    got.expect("backup");
    let logs = logs(&notes);
    assert_eq!(
        logs[0],
        format!(
            "Failed to find the match snapshot record {{Index:4 Term:2 XXX_unrecognized:[]}} \
             in wal {}.",
            data.join("member").join("wal").display()
        )
    );
    assert_eq!(logs[1], "etcdctl will add it back. Start auto fixing...");
    // The copy has the record.
    let (wal, entries, _) = read_backup(&backup_dir);
    assert!(wal.snapshot_found);
    assert_eq!(entries.len(), 2);
}

#[test]
fn a_damaged_snap_file_is_skipped_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = etcd_data_dir(dir.path(), true);
    let snap_file = data
        .join("member")
        .join("snap")
        .join(format!("{SNAP_TERM:016x}-{SNAP_INDEX:016x}.snap"));
    let mut bytes = std::fs::read(&snap_file).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&snap_file, &bytes).expect("write");
    let backup_dir = dir.path().join("backup");
    let (got, notes) = run(&data, &backup_dir, false);
    got.expect("backup");
    assert!(notes.iter().any(|n| matches!(n,
        Note::Warn { msg: "snap file is corrupt", fields }
            if fields[0].1 == snap_file.to_string_lossy())));
    // No snapshot: the whole log, from its start (the ConfChange dropped).
    let wal = wal_read::read_all(&backup_dir.join("member").join("wal"), 0, 0).expect("read");
    assert_eq!(wal.entries.len(), 4);
    assert_eq!(
        wal.entries[0],
        Entry {
            entry_type: 0,
            term: 2,
            index: 1,
            data: None,
            unknown: Vec::new(),
        }
    );
}

#[test]
fn damaged_wal_and_backend_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = etcd_data_dir(dir.path(), true);
    let wal_file = data
        .join("member")
        .join("wal")
        .join("0000000000000000-0000000000000000.wal");
    let good_wal = std::fs::read(&wal_file).expect("read");
    let mut bytes = good_wal.clone();
    bytes[300] ^= 0xff;
    std::fs::write(&wal_file, &bytes).expect("write");
    let backup_dir = dir.path().join("backup");
    let (got, _) = run(&data, &backup_dir, false);
    let e = got.unwrap_err();
    assert!(e.contains(&wal_file.to_string_lossy().into_owned()), "{e}");
    assert!(!backup_dir.exists(), "a refused backup writes nothing");
    std::fs::write(&wal_file, &good_wal).expect("write");

    let db = data.join("member").join("snap").join("db");
    let mut bytes = std::fs::read(&db).expect("read");
    // Page 2 on is the trees; the meta pages stay valid.
    for b in &mut bytes[2 * 4096..] {
        *b = 0xee;
    }
    std::fs::write(&db, &bytes).expect("write");
    let (got, _) = run(&data, &backup_dir, true);
    let e = got.unwrap_err();
    assert!(e.contains(&db.to_string_lossy().into_owned()), "{e}");
    assert!(!backup_dir.exists(), "a refused backup writes nothing");
}

/// Random damage to each file: a backup or an error, never a panic.
#[test]
fn damage_anywhere_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = etcd_data_dir(dir.path(), true);
    let member = data.join("member");
    let files = [
        member
            .join("wal")
            .join("0000000000000000-0000000000000000.wal"),
        member
            .join("snap")
            .join(format!("{SNAP_TERM:016x}-{SNAP_INDEX:016x}.snap")),
        member.join("snap").join("db"),
    ];
    // The WAL without its preallocated zeroes (its records end where the file does).
    let originals: Vec<Vec<u8>> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut bytes = std::fs::read(f).expect("read");
            if i == 0 {
                bytes.truncate(bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1));
                std::fs::write(f, &bytes).expect("write");
            }
            bytes
        })
        .collect();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..60 {
        let which = round % files.len();
        let mut bytes = originals[which].clone();
        let used = bytes.len().max(1);
        for _ in 0..(1 + round % 5) {
            let at = (next() as usize) % used;
            bytes[at] = next() as u8;
        }
        if round % 7 == 0 {
            bytes.truncate((next() as usize) % used);
        }
        std::fs::write(&files[which], &bytes).expect("write");
        for with_v3 in [false, true] {
            let backup_dir = dir.path().join(format!("backup-{round}-{with_v3}"));
            let _ = run(&data, &backup_dir, with_v3);
            let _ = std::fs::remove_dir_all(&backup_dir);
        }
        std::fs::write(&files[which], &originals[which]).expect("restore");
    }
}
