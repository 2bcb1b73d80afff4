//! The one error type of the WAL layer.
//!
//! Every variant that concerns a file names it, and corruption names the byte offset too, so an
//! operator can find the damage with a hex dump without reading our code.

use std::io;
use std::path::PathBuf;

use crate::record::RecordError;

/// Everything that can go wrong creating, opening, appending to or trimming a WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An operating-system call failed. `op` says what we were doing (`"open"`, `"fsync"`, ...).
    #[error("wal: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A record before the tail of the log failed its checks. The server must not start on this
    /// log: records after `offset` may hold acknowledged writes. Inspect the file; if the damage
    /// is in the last segment and losing everything after `offset` is acceptable, truncating the
    /// file at `offset` lets the log open again.
    #[error("wal: corrupt record in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: RecordError,
    },

    /// Another `Wal` (in this or another process) has the directory open.
    #[error("wal: {0} is locked by another process; stop it before starting this one")]
    Locked(PathBuf),

    /// `open` found no `*.wal` segment whose name we understand.
    #[error("wal: no segment files in {0}")]
    NoSegments(PathBuf),

    /// `create` was pointed at a directory that already holds a log; opening it is what the
    /// caller wants, or else the directory must be emptied first.
    #[error("wal: {0} already contains a write-ahead log; open it instead of creating one")]
    AlreadyExists(PathBuf),

    /// A segment does not start with a metadata record (every segment we write does).
    #[error("wal: segment {0} does not start with a metadata record")]
    MissingMetadata(PathBuf),

    /// A segment carries different metadata from the first segment: files from two different
    /// members or clusters have been mixed in one directory.
    #[error(
        "wal: metadata in {0} differs from the first segment's; segments from different logs are mixed"
    )]
    MetadataMismatch(PathBuf),

    /// Segment sequence numbers must rise by exactly one; a hole means a segment was lost.
    #[error(
        "wal: segment {path} has sequence {found}, expected {expected}; a segment is missing or misnamed"
    )]
    SegmentSequence {
        path: PathBuf,
        expected: u64,
        found: u64,
    },

    /// After replay the entries are not contiguous: an entry the log needs is missing.
    #[error(
        "wal: entry index {found} in {path} at offset {offset} follows index {previous}; entries in between are missing"
    )]
    EntryGap {
        path: PathBuf,
        offset: u64,
        previous: u64,
        found: u64,
    },

    /// A caller tried to append entries that would leave a hole in the log or that are not
    /// consecutive; writing them would make the log unrecoverable, so nothing was written.
    #[error(
        "wal: refusing to append entry index {found}: expected an index from 1 to {next_max}, consecutive within the batch"
    )]
    InvalidAppend { found: u64, next_max: u64 },

    /// A single record would exceed the bound the reader enforces, so it could never be read back.
    #[error("wal: record payload of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: u64, max: u64 },

    /// protobuf refused to encode a message.
    #[error("wal: encoding {what}: {reason}")]
    Encode { what: &'static str, reason: String },

    /// An earlier write or fsync failed, so the file's tail is unknown. After a failed fsync the
    /// kernel may have dropped the dirty pages, so retrying could report success for lost data;
    /// the only safe way on is to reopen the log (restart the server), which re-reads the disk.
    #[error("wal: an earlier write failed; reopen the log to continue")]
    Poisoned,
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
