//! `etcdctl migrate` on one of our data dirs: the v2 store's keys (kept in the backend,
//! `etcd_api::records`) written into the v3 key space, each at its v2 modified index as
//! revision, as etcd's migrate does. The member must be stopped (its backend is locked while
//! it runs) and should have stopped cleanly, so that the backend holds every applied v2 write.
//!
//! The backend is rewritten into a new file (every existing record, metadata and mark kept)
//! and swapped in once complete; a failure leaves the old file untouched.

use std::path::Path;

use etcd_api::internalpb::V2Node;
use etcd_api::mvccpb::KeyValue;
use etcd_api::records::V2_NODE_PREFIX;
use etcd_mvcc::{ImportMeta, Importer, MvccError, Store, StoreOptions};
use prost::Message;

use crate::migrate::{MigrateError, Migrated};

/// The v2 namespace of users' keys; a key's v3 name is its path without it.
const KEYS_NAMESPACE: &str = "/1/";

fn err(s: impl Into<String>) -> MigrateError {
    MigrateError::Msg(s.into())
}

/// An etcd revision key: main revision, `_`, sub revision (big-endian).
fn revision_key(main: u64) -> Vec<u8> {
    let mut key = main.to_be_bytes().to_vec();
    key.push(b'_');
    key.extend_from_slice(&0u64.to_be_bytes());
    key
}

pub fn migrate(db_path: &Path, no_ttl: bool) -> Result<Option<Migrated>, MigrateError> {
    let store = Store::open(db_path, StoreOptions::default()).map_err(|e| {
        err(format!(
            "cannot open {} ({e}): stop the member before migrating",
            db_path.display()
        ))
    })?;
    let view = store.view().map_err(|e| err(e.to_string()))?;
    let mut keys = Vec::new();
    for (name, bytes) in view
        .meta_range(V2_NODE_PREFIX)
        .map_err(|e| err(e.to_string()))?
    {
        let path = &name[V2_NODE_PREFIX.len()..];
        let node = V2Node::decode(bytes.as_slice())
            .map_err(|e| err(format!("the v2 store record of {path:?} is damaged: {e}")))?;
        let Some(key) = path.strip_prefix(KEYS_NAMESPACE) else {
            continue;
        };
        if node.dir || (no_ttl && node.expire_unix_nanos != 0) {
            continue;
        }
        let kv = KeyValue {
            key: format!("/{key}").into_bytes(),
            create_revision: node.created_index as i64,
            mod_revision: node.modified_index as i64,
            version: 1,
            value: node.value.into_bytes(),
            lease: 0,
        };
        keys.push((revision_key(node.modified_index), kv.encode_to_vec()));
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let staging = db_path.with_extension("migrating");
    let _ = std::fs::remove_file(&staging);
    let result = (|| -> Result<u64, MvccError> {
        let mut importer = Importer::create(&staging)?;
        view.for_each_record(|k, v| importer.record(k, v))?;
        // A v2 key at a revision a v3 record already has replaces it, as in etcd's migrate.
        for (k, v) in &keys {
            importer.record(k, v)?;
        }
        for (name, value) in view.meta_range("")? {
            importer.ext(&name, value);
        }
        let mut meta = ImportMeta {
            consistent_index: view.consistent_index()?,
            ..ImportMeta::default()
        };
        for (name, mark) in view.compaction_marks()? {
            if name.starts_with("scheduled") {
                meta.scheduled_compact = Some(mark);
            } else {
                meta.finished_compact = Some(mark);
            }
        }
        let index = meta.consistent_index;
        importer.finish(&meta)?;
        Ok(index)
    })();
    drop(view);
    drop(store);
    let index = match result {
        Ok(index) => index,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(err(format!("cannot write the migrated backend: {e}")));
        }
    };
    std::fs::rename(&staging, db_path)?;
    Ok(Some(Migrated {
        keys: keys.len(),
        index,
    }))
}
