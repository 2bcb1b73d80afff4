//! The multi-version key-value store under etcd's KV API: revisions, key generations, the
//! in-memory key index, and the redb backend that holds the records together with the
//! applied Raft position.
//!
//! One apply thread writes through [`Store::apply`]; any thread reads through
//! [`Store::range`] and friends, concurrently, always at a whole revision.
//!
//! ```
//! use etcd_api::etcdserverpb::{PutRequest, RangeRequest};
//! use etcd_mvcc::{Store, StoreOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
//! let put = PutRequest { key: b"foo".to_vec(), value: b"bar".to_vec(), ..Default::default() };
//! let resp = store
//!     .apply(|batch| {
//!         batch.set_consistent_index(1, 1);
//!         batch.put(&put, &|_lease| false)
//!     })
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(resp.header.unwrap().revision, 2); // an empty store is at revision 1
//! let got = store.range(&RangeRequest { key: b"foo".to_vec(), ..Default::default() }).unwrap();
//! assert_eq!(got.kvs[0].value, b"bar");
//! assert_eq!(store.consistent_index(), (1, 1));
//! ```
//!
//! Module map: [`revision`] (revision keys), [`key_index`] (one key's generations), [`index`]
//! (all keys), `backend` (redb layout), `range` (range semantics), `apply` (the write batch),
//! `txn` (transactions), `store` (sharing, durability, maintenance), `hash` (consistency
//! hashes), `history` (past events for watch).

mod apply;
mod backend;
mod compaction;
mod defrag;
mod error;
mod export;
mod hash;
mod held_writes;
mod history;
mod import;
pub mod index;
pub mod key_index;
mod range;
mod record_fields;
pub mod revision;
mod store;
mod txn;

pub use apply::ApplyBatch;
pub use error::MvccError;
pub use export::BackendView;
pub use hash::KvHash;
pub use import::{ImportMeta, Importer};
pub use store::{Bounded, Store, StoreOptions};
pub use txn::reads_only as txn_reads_only;
