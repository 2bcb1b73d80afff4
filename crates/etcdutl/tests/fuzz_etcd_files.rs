//! Fuzzing the readers of etcd's own files (proptest, stable Rust): `etcdctl backup`,
//! `migrate` and the server's start on an etcd data dir read WAL segments and `.snap` files
//! that etcd wrote, or that a crash, a disk or an operator damaged. Arbitrary bytes and bit
//! flips never make them panic; a WAL cut anywhere (a torn tail) is refused or read as a
//! prefix of what was written, never as something else; a damaged `.snap` file is skipped.
//!
//! A flipped bit is not always detected, by etcd's reader or ours: etcd's WAL checksums a
//! record's data but not its type, so a hard state record whose type turns into an entry's
//! reads as an entry (found here: the hard state at commit 3 read as an empty entry 3).

use etcd_fuzzing::{corpus, mutations_of};
use etcdutl::pb;
use etcdutl::snap;
use etcdutl::wal::{ENTRY, STATE, WalWriter, segment_name};
use etcdutl::wal_read::read_all;
use proptest::prelude::*;

const NORMAL: u64 = 0;

/// A segment with `entries` (index, data) after etcd's opening records, and its bytes.
fn segment(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut w = WalWriter::create(&pb::metadata(1, 2));
    for (i, data) in entries.iter().enumerate() {
        let index = i as u64 + 1;
        w.record(ENTRY, Some(&pb::entry(NORMAL, 1, index, Some(data))));
        w.record(STATE, Some(&pb::hard_state(1, 1, index)));
    }
    // Without etcd's 64 MB of preallocated zeros after the records: the reader stops at the
    // first zero frame either way.
    w.bytes().to_vec()
}

/// Reads `bytes` as the only segment of a WAL: the data of the entries read.
fn read(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join(segment_name(0, 0)), bytes).expect("write");
    read_all(dir.path(), 0, 0)
        .map(|c| {
            c.entries
                .into_iter()
                .map(|e| e.data.unwrap_or_default())
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn entries() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..12)
}

fn wal_corpus() -> Vec<Vec<u8>> {
    corpus(env!("CARGO_MANIFEST_DIR"), "etcd-wal")
}

fn snap_corpus() -> Vec<Vec<u8>> {
    corpus(env!("CARGO_MANIFEST_DIR"), "etcd-snap")
}

/// Loads `bytes` as the only `.snap` file of a directory.
fn load_snap(bytes: &[u8]) -> (Option<snap::Snap>, usize) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("0000000000000002-0000000000000034.snap"),
        bytes,
    )
    .expect("write");
    let (loaded, skipped) = snap::load_newest(dir.path()).expect("dir readable");
    (loaded, skipped.len())
}

/// The committed corpus is real: a WAL segment etcd 3.4.23 wrote (its 64 MB of preallocated
/// zeros cut off) and a `.snap` file it wrote, which read whole.
#[test]
fn the_corpus_reads_whole() {
    for file in wal_corpus() {
        let entries = read(&file).expect("etcd's WAL");
        assert!(entries.len() > 50, "{} entries", entries.len());
    }
    for file in snap_corpus() {
        let (loaded, skipped) = load_snap(&file);
        assert!(loaded.is_some() && skipped == 0, "etcd's .snap refused");
    }
}

etcd_fuzzing::fuzz! {
    target = "etcd-wal-and-snap", cases = 500;

    /// etcd's own WAL damaged as disks damage it: read or refused, never a panic.
    fn damaged_etcd_wal_never_panics(bytes in mutations_of(wal_corpus())) {
        let _ = read(&bytes);
    }

    /// etcd's own `.snap` file damaged: loaded only if its checksum still holds, else skipped.
    fn damaged_etcd_snap_never_panics(bytes in mutations_of(snap_corpus())) {
        let (loaded, skipped) = load_snap(&bytes);
        prop_assert_eq!(usize::from(loaded.is_none()), skipped);
    }

    fn an_intact_wal_reads_back(written in entries()) {
        prop_assert_eq!(read(&segment(&written)), Ok(written));
    }

    fn a_wal_cut_anywhere_is_refused_or_read_as_a_prefix(
        written in entries(),
        at in any::<usize>(),
    ) {
        let mut bytes = segment(&written);
        bytes.truncate(at % bytes.len());
        if let Ok(got) = read(&bytes) {
            prop_assert!(got.len() <= written.len());
            prop_assert_eq!(&written[..got.len()], &got[..]);
        }
    }

    fn a_wal_with_a_bit_flipped_never_panics(
        written in entries(),
        at in any::<usize>(),
        bit in 0u8..8,
    ) {
        let mut bytes = segment(&written);
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        let _ = read(&bytes);
    }

    fn arbitrary_bytes_as_a_wal_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = read(&bytes);
    }

    fn a_damaged_snap_file_is_skipped(
        data in prop::collection::vec(any::<u8>(), 0..200),
        at in any::<usize>(),
        bit in 0u8..8,
        garbage in prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let written = snap::Snap {
            path: Default::default(),
            index: 5,
            term: 2,
            raft_snapshot: pb::raft_snapshot(&data, &[1], 5, 2),
        };
        let path = snap::save(dir.path(), &written).expect("save").expect("a file");
        let mut bytes = std::fs::read(&path).expect("read");
        match garbage {
            Some(garbage) => bytes = garbage,
            None => {
                let at = at % bytes.len();
                bytes[at] ^= 1 << bit;
            }
        }
        std::fs::write(&path, &bytes).expect("write");
        let (loaded, skipped) = snap::load_newest(dir.path()).expect("dir readable");
        match loaded {
            // A flip the checksum cannot see (none should exist) would have to leave the
            // snapshot as written.
            Some(s) => prop_assert_eq!(s.raft_snapshot, written.raft_snapshot),
            None => prop_assert_eq!(skipped.len(), 1),
        }
    }
}
