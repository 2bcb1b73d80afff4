//! Fuzzing the bbolt reader on stable Rust (proptest): etcd's db files and snapshots come from
//! disk and from other machines. Arbitrary bytes and valid files with damage (a flipped bit, an
//! overwritten byte, a cut tail) never make it panic or loop; an intact file reads back exactly
//! what was written. etcd's own db file (tests/corpus/bbolt-files/) is damaged the same ways.

use std::collections::BTreeMap;

use etcd_bbolt::{Bucket, Db, write};
use etcd_fuzzing::{corpus, mutations_of};
use proptest::prelude::*;

fn buckets() -> impl Strategy<Value = Vec<(Vec<u8>, Bucket)>> {
    prop::collection::btree_map(
        prop::collection::vec(any::<u8>(), 1..8),
        prop::collection::btree_map(
            prop::collection::vec(any::<u8>(), 1..16),
            prop::collection::vec(any::<u8>(), 0..64),
            0..40,
        ),
        1..4,
    )
    .prop_map(|m: BTreeMap<Vec<u8>, Bucket>| m.into_iter().collect())
}

/// Reads everything a damaged file offers; only errors may come out.
fn read_damaged(bytes: Vec<u8>) {
    if let Ok(db) = Db::from_bytes(bytes) {
        let _ = db.read_all();
        let _ = db.check();
    }
}

fn db_corpus() -> Vec<Vec<u8>> {
    corpus(env!("CARGO_MANIFEST_DIR"), "bbolt-files")
}

/// The committed corpus is real: etcd 3.4.23's own db file, which reads whole and checks
/// clean, with its keys in the `key` bucket.
#[test]
fn the_corpus_reads_whole() {
    for file in db_corpus() {
        let db = Db::from_bytes(file).expect("etcd's file");
        let (buckets, _) = db.read_all().expect("readable");
        assert_eq!(db.check(), Vec::<String>::new());
        let keys = buckets
            .iter()
            .find(|(name, _)| name == b"key")
            .expect("key bucket");
        assert!(keys.1.len() > 10, "{} keys", keys.1.len());
    }
}

/// A page header claiming billions of overflow pages (found by the fuzzer: `check` walked
/// every claimed page id, for hours): the check reports it, bounded by the file.
#[test]
fn a_huge_overflow_count_is_reported_not_walked() {
    let buckets = vec![(
        b"key".to_vec(),
        (0..50u8).map(|i| (vec![i], vec![i; 40])).collect(),
    )];
    let mut bytes = write(&buckets, 4096);
    for page in 2..bytes.len() / 4096 {
        bytes[page * 4096 + 12..page * 4096 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    }
    let db = Db::from_bytes(bytes).expect("metas intact");
    let problems = db.check();
    assert!(
        problems.iter().any(|p| p.contains("run past")),
        "{problems:?}"
    );
    assert!(
        problems.len() <= etcd_bbolt::CHECK_ERRORS_MAX + 1,
        "{}",
        problems.len()
    );
}

etcd_fuzzing::fuzz! {
    target = "bbolt-files", cases = 500;

    /// etcd's own file damaged as disks damage it: only errors come out.
    fn damaged_corpus_files_never_panic(bytes in mutations_of(db_corpus())) {
        read_damaged(bytes);
    }

    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..16384)) {
        read_damaged(bytes);
    }

    fn an_intact_file_reads_back(buckets in buckets()) {
        let bytes = write(&buckets, 4096);
        let db = Db::from_bytes(bytes).expect("a file it wrote");
        let (read, _) = db.read_all().expect("readable");
        prop_assert_eq!(read, buckets);
        prop_assert!(db.check().is_empty());
    }

    fn a_damaged_file_never_panics(
        buckets in buckets(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        value in any::<u8>(),
        how in 0u8..3,
    ) {
        let mut bytes = write(&buckets, 4096);
        let i = at.index(bytes.len());
        match how {
            0 => bytes[i] ^= 1 << bit,
            1 => bytes[i] = value,
            _ => bytes.truncate(i),
        }
        read_damaged(bytes);
    }
}
