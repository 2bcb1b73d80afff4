//! The one error type of the MVCC layer.
//!
//! Request-level errors carry etcd's exact messages, because the server maps them to gRPC
//! statuses whose text clients (and etcd's own tests) match on. Backend errors are wrapped
//! whole so the cause is not lost.

/// Everything that can go wrong in the MVCC store.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// A read or compaction named a revision at or below the compacted one.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read or compaction named a revision above the current one.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A put attached a lease the lessor does not know.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// The backend holds something this code never writes: a malformed record key, a value
    /// that does not decode, or an index entry without its record.
    #[error("mvcc: backend is corrupt: {0}")]
    Corrupt(String),
    /// redb failed (I/O, corruption detected by redb, ...).
    #[error("mvcc: backend error: {0}")]
    Backend(#[from] redb::Error),
    /// A file-system call outside redb failed.
    #[error("mvcc: io error: {0}")]
    Io(#[from] std::io::Error),
    /// An earlier backend failure in this batch left its write transaction unusable; nothing
    /// in the batch will commit.
    #[error("mvcc: batch abandoned after an earlier backend error")]
    BatchAbandoned,
    /// A write transaction was handed to the read-only path; it must be applied through Raft.
    #[error("mvcc: the transaction writes, so it cannot be served as a read")]
    NotReadOnly,
    /// Defragmentation's copy was overtaken by the store every time it tried (a snapshot
    /// restore, or compactions removing more than it can track).
    #[error("mvcc: defragment gave up: the store changed too much while it was being copied")]
    DefragmentBusy,
}

// redb has one error type per operation; all convert into `redb::Error`, which is what we keep.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MvccError {
            fn from(e: $t) -> Self {
                MvccError::Backend(redb::Error::from(e))
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError,
    redb::SetDurabilityError
);

impl From<prost::DecodeError> for MvccError {
    fn from(e: prost::DecodeError) -> Self {
        MvccError::Corrupt(format!("record does not decode: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_etcds() {
        assert_eq!(
            MvccError::Compacted.to_string(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(
            MvccError::FutureRev.to_string(),
            "etcdserver: mvcc: required revision is a future revision"
        );
        assert_eq!(
            MvccError::KeyNotFound.to_string(),
            "etcdserver: key not found"
        );
        assert_eq!(
            MvccError::LeaseNotFound.to_string(),
            "etcdserver: requested lease not found"
        );
    }
}
