//! Offline tools on etcd 3.4 data: reading and writing its bbolt backend files, writing its WAL
//! and snap files, and the `snapshot status` / `snapshot restore` / `defrag` operations that
//! both `etcdutl` and `etcdctl` expose.

pub use etcd_bbolt as bbolt;
pub mod backup;
pub mod defrag;
pub mod migrate;
pub mod pb;
pub mod snapshot;
pub mod wal;
