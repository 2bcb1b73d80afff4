//! The write-ahead log: the durable storage of the Raft log, hard state and snapshot position.
//!
//! The server appends every Raft `Ready` batch with one [`Wal::save`] (one fsync for the whole
//! batch) before acknowledging anything, and on restart [`Wal::open`] hands back what raft needs
//! to resume. Semantics follow etcd's WAL; the on-disk format is our own:
//!
//! - a directory of segment files `{seq:016x}-{first_index:016x}.wal`, each starting with the metadata, the current hard state and the latest snapshot
//!   marker, so any suffix of segments replays to the same state;
//! - each segment a sequence of CRC-32C-checked records ([`record`]), decoded by
//!   [`decode_segment`], which is total and is the fuzzing entry point;
//! - replay resolves overwritten tails and checks contiguity, without touching disk.
//!
//! ```
//! use etcd_wal::{SnapshotMarker, Wal, WalOptions};
//! use raft::eraftpb::{Entry, HardState};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let dir = dir.path().join("wal");
//! let mut wal = Wal::create(&dir, b"member 1", WalOptions::default()).unwrap();
//! let entry = Entry { index: 1, term: 1, ..Default::default() };
//! let hs = HardState { term: 1, commit: 1, ..Default::default() };
//! wal.save(Some(&hs), &[entry]).unwrap();
//! wal.save_snapshot(SnapshotMarker { index: 1, term: 1 }).unwrap();
//! drop(wal);
//!
//! let (_wal, recovered) = Wal::open(&dir, WalOptions::default()).unwrap();
//! assert_eq!(recovered.metadata, b"member 1");
//! assert_eq!(recovered.hard_state, hs);
//! assert!(recovered.entries.is_empty()); // covered by the snapshot marker
//! ```

mod decode;
mod error;
pub mod record;
mod replay;
mod segment;
mod wal;

#[cfg(test)]
mod tests;

pub use decode::{DecodeEnd, Decoded, DecodedRecord, Record, SnapshotMarker, decode_segment};
pub use error::WalError;
pub use record::RecordError;
pub use wal::{Recovered, Wal, WalOptions};
