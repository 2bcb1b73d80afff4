//! Offline defragmentation of a db file: its buckets rewritten into a fresh, compact file,
//! swapped in with a rename.

use std::path::Path;

use etcd_bbolt::{BoltError, Db};

pub fn defrag_file(path: &Path) -> Result<(), BoltError> {
    let db = Db::open(path)?;
    let (buckets, _) = db.read_all()?;
    let bytes = etcd_bbolt::write(&buckets, db.meta.page_size as usize);
    let tmp = path.with_extension("defrag.tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
