//! Building a backend file from another store's records: how a member starts on data another
//! implementation wrote (etcd's bbolt `key` bucket holds exactly our record layout).
//!
//! The file is written to a path of the caller's choosing, checked record by record (a key
//! that is not a revision key or a value that is not a `KeyValue` is refused, naming it), and
//! committed in batches; only [`Importer::finish`] makes it durable. A crash before that leaves
//! a partial file the caller throws away.

use std::path::Path;

use etcd_api::mvccpb::KeyValue;
use prost::Message;
use redb::{Database, Durability};

use crate::MvccError;
use crate::backend::{
    CONSISTENT_INDEX_KEY, EXT_TABLE, FINISHED_COMPACT_KEY, KEY_TABLE, META_TABLE,
    SCHEDULED_COMPACT_KEY, TERM_KEY,
};
use crate::revision::RevKey;

/// Records per write transaction: bounds the dirty pages redb holds before a commit.
const RECORDS_PER_COMMIT: usize = 10_000;

/// What the imported store says about itself besides its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportMeta {
    /// The last Raft index whose effects the records include.
    pub consistent_index: u64,
    /// The term of that entry (0 when unknown).
    pub term: u64,
    /// etcd's compaction marks, as their 17-byte revision keys (absent when never compacted).
    pub scheduled_compact: Option<Vec<u8>>,
    pub finished_compact: Option<Vec<u8>>,
}

/// Writes a new backend file. Records may come in any order.
pub struct Importer {
    db: Database,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    records: u64,
    ext: Vec<(String, Vec<u8>)>,
}

impl Importer {
    /// Creates the file at `path`, which must not exist.
    pub fn create(path: &Path) -> Result<Importer, MvccError> {
        if path.exists() {
            return Err(MvccError::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", path.display()),
            )));
        }
        let db = Database::builder().create(path)?;
        Ok(Importer {
            db,
            pending: Vec::new(),
            records: 0,
            ext: Vec::new(),
        })
    }

    /// Adds one record: an etcd revision key and an encoded `mvccpb.KeyValue`.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<(), MvccError> {
        let (rev, tombstone) = RevKey::decode(key)?;
        let kv = KeyValue::decode(value).map_err(|e| {
            MvccError::Corrupt(format!(
                "record at revision {}.{} is not a KeyValue: {e}",
                rev.main, rev.sub
            ))
        })?;
        if kv.key.is_empty() {
            return Err(MvccError::Corrupt(format!(
                "record at revision {}.{} has an empty key",
                rev.main, rev.sub
            )));
        }
        if !tombstone && kv.mod_revision != rev.main {
            return Err(MvccError::Corrupt(format!(
                "record at revision {}.{} says it was modified at {}",
                rev.main, rev.sub, kv.mod_revision
            )));
        }
        self.pending.push((key.to_vec(), value.to_vec()));
        self.records += 1;
        if self.pending.len() >= RECORDS_PER_COMMIT {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds an entry of the other subsystems' metadata (see `Store::meta_get`).
    pub fn ext(&mut self, key: &str, value: Vec<u8>) {
        self.ext.push((key.to_string(), value));
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    fn flush(&mut self) -> Result<(), MvccError> {
        let mut txn = self.db.begin_write()?;
        // Only `finish` needs to be durable: a crash before it discards the whole file.
        txn.set_durability(Durability::None)?;
        {
            let mut table = txn.open_table(KEY_TABLE)?;
            for (k, v) in self.pending.drain(..) {
                table.insert(k.as_slice(), v.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Writes the meta and the metadata and commits everything durably.
    pub fn finish(mut self, meta: &ImportMeta) -> Result<(), MvccError> {
        self.flush()?;
        let txn = self.db.begin_write()?;
        {
            txn.open_table(KEY_TABLE)?;
            let mut table = txn.open_table(META_TABLE)?;
            table.insert(
                CONSISTENT_INDEX_KEY,
                meta.consistent_index.to_be_bytes().as_slice(),
            )?;
            table.insert(TERM_KEY, meta.term.to_be_bytes().as_slice())?;
            for (name, mark) in [
                (SCHEDULED_COMPACT_KEY, &meta.scheduled_compact),
                (FINISHED_COMPACT_KEY, &meta.finished_compact),
            ] {
                if let Some(mark) = mark {
                    RevKey::decode(mark).map_err(|_| {
                        MvccError::Corrupt(format!("meta {name} is not a revision key"))
                    })?;
                    table.insert(name, mark.as_slice())?;
                }
            }
            let mut ext = txn.open_table(EXT_TABLE)?;
            for (k, v) in &self.ext {
                ext.insert(k.as_str(), v.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revision::Revision;
    use crate::{Store, StoreOptions};
    use etcd_api::etcdserverpb::RangeRequest;

    fn record(main: i64, key: &[u8], value: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: main,
            mod_revision: main,
            version: 1,
            value: value.to_vec(),
            lease: 0,
        };
        (
            RevKey::new(Revision { main, sub: 0 }, false)
                .as_bytes()
                .to_vec(),
            kv.encode_to_vec(),
        )
    }

    #[test]
    fn imported_records_open_as_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut imp = Importer::create(&path).unwrap();
        // Out of order on purpose.
        for (k, v) in [record(3, b"b", b"2"), record(2, b"a", b"1")] {
            imp.record(&k, &v).unwrap();
        }
        imp.ext("membership", b"m".to_vec());
        imp.finish(&ImportMeta {
            consistent_index: 9,
            term: 2,
            ..Default::default()
        })
        .unwrap();
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(store.current_revision(), 3);
        assert_eq!(store.consistent_index(), (9, 2));
        assert_eq!(store.meta_get("membership").unwrap().unwrap(), b"m");
        let got = store
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        let keys: Vec<_> = got.kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn refuses_what_is_not_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut imp = Importer::create(&dir.path().join("db")).unwrap();
        let (k, v) = record(2, b"a", b"1");
        assert!(imp.record(&k[..5], &v).is_err(), "short revision key");
        assert!(imp.record(&k, b"\xff\xff").is_err(), "value not a KeyValue");
        let (k3, _) = record(3, b"a", b"1");
        assert!(imp.record(&k3, &v).is_err(), "mod revision disagrees");
        assert!(Importer::create(&dir.path().join("db")).is_err(), "exists");
    }
}
