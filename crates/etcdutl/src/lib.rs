//! Offline tools on etcd 3.4 data: reading and writing its bbolt backend files, its WAL and snap
//! files, and the `snapshot status` / `snapshot restore` / `defrag` / `migrate` / v2 `backup`
//! operations that `etcdutl` and `etcdctl` expose.

pub use etcd_bbolt as bbolt;
pub mod backup;
mod backup_etcd;
pub mod defrag;
pub mod migrate;
mod migrate_ours;
pub mod pb;
pub mod snap;
pub mod snapshot;
pub mod wal;
pub mod wal_read;
