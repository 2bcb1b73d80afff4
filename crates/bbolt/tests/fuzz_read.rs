//! Fuzzing the bbolt reader on stable Rust (proptest): etcd's db files and snapshots come from
//! disk and from other machines. Arbitrary bytes and valid files with damage (a flipped bit, an
//! overwritten byte, a cut tail) never make it panic or loop; an intact file reads back exactly
//! what was written. Failing inputs are kept in proptest-regressions/ (the corpus).

use std::collections::BTreeMap;

use etcd_bbolt::{Bucket, Db, write};
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..16384)) {
        read_damaged(bytes);
    }

    #[test]
    fn an_intact_file_reads_back(buckets in buckets()) {
        let bytes = write(&buckets, 4096);
        let db = Db::from_bytes(bytes).expect("a file it wrote");
        let (read, _) = db.read_all().expect("readable");
        prop_assert_eq!(read, buckets);
        prop_assert!(db.check().is_empty());
    }

    #[test]
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
