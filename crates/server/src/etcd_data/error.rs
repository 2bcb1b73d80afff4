//! Why an etcd data dir could not be converted. Every message names the file and says what to
//! do; the originals are untouched whenever one of these is returned.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A file is damaged at a known place.
    #[error(
        "{path}: {what} at offset {offset}; the etcd data dir is damaged: restore this member from a snapshot (etcdctl snapshot restore) or remove it and add it back"
    )]
    Corrupt {
        path: String,
        offset: u64,
        what: String,
    },
    /// The data dir holds something this version cannot carry over.
    #[error("{0}")]
    Refused(String),
    /// Writing our backend failed.
    #[error("{0}")]
    Backend(#[from] etcd_mvcc::MvccError),
    /// Writing our WAL failed.
    #[error("{0}")]
    Wal(#[from] etcd_wal::WalError),
}

impl ConvertError {
    pub fn io(path: &Path, source: std::io::Error) -> ConvertError {
        ConvertError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn corrupt(path: &Path, offset: u64, what: &str) -> ConvertError {
        ConvertError::Corrupt {
            path: path.display().to_string(),
            offset,
            what: what.to_string(),
        }
    }

    pub fn refused(why: String) -> ConvertError {
        ConvertError::Refused(why)
    }
}
