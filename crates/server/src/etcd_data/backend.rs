//! etcd's backend (`member/snap/db`, a bbolt file) read into our backend: the inverse of
//! `backup.rs`. The `key` bucket's records are our records byte for byte; the rest becomes our
//! metadata:
//! - `meta`: `consistent_index` (and etcd 3.5's `term`), the compaction marks;
//! - `lease`: `leasepb.Lease` by ID -> our lease records (attachments come from the keys);
//! - `members` (etcd's member JSON), `members_removed`, `alarm`, and the auth buckets (`auth`:
//!   `authEnabled`, `authRevision`; `authUsers`, `authRoles`) -> our cluster state.
//!
//! The `members` bucket is read but is only a fallback: etcd 3.4 recovers its members from the
//! v2 store in its snapshot (see `members.rs`), and its `snapshot restore` leaves the old
//! cluster's members in that bucket.
//!
//! etcd writes the non-KV buckets in the same batch as the entry that changed them but moves
//! `consistent_index` only with KV changes, so they may be a little ahead of it; etcd then
//! applies those entries again on restart, and so do we, with the same outcome (a duplicate
//! add is refused, a repeated attribute set changes nothing).

use std::collections::BTreeMap;
use std::path::Path;

use etcd_api::authpb::{Role, User};
use etcd_api::etcdserverpb::AlarmMember;
use etcd_api::internalpb::AuthStoreState;
use etcd_api::leasepb::Lease;
use etcd_bbolt::{Bucket, Db};
use etcd_mvcc::{ImportMeta, Importer};
use prost::Message;

use super::entries::EtcdMember;
use super::error::ConvertError;
use crate::apply::{ClusterState, META_ALARMS, META_AUTH, META_MEMBERSHIP};
use crate::auth::AuthStore;
use crate::lease;
use crate::raft::encode_cluster_state;

/// What etcd's backend holds.
pub struct EtcdBackend {
    buckets: BTreeMap<Vec<u8>, Bucket>,
    pub consistent_index: u64,
    /// etcd 3.5 keeps the term of the consistent index; 3.4 does not (0).
    pub term: u64,
    pub cluster: ClusterState,
    /// (ID, TTL in seconds) of every lease.
    pub leases: Vec<(i64, i64)>,
}

fn u64_be(path: &Path, what: &str, v: &[u8]) -> Result<u64, ConvertError> {
    let arr: [u8; 8] = v.try_into().map_err(|_| {
        ConvertError::refused(format!(
            "{}: {what} has {} bytes, want 8; the file is not etcd's backend",
            path.display(),
            v.len()
        ))
    })?;
    Ok(u64::from_be_bytes(arr))
}

fn bad(path: &Path, what: String) -> ConvertError {
    ConvertError::refused(format!(
        "{}: {what}; the file is not an intact etcd backend: restore this member from a \
         snapshot (etcdctl snapshot restore)",
        path.display()
    ))
}

/// Reads and checks etcd's backend file.
pub fn read(path: &Path) -> Result<EtcdBackend, ConvertError> {
    let db = Db::open(path).map_err(|e| bad(path, format!("cannot read it as bbolt: {e}")))?;
    let errs = db.check();
    if !errs.is_empty() {
        return Err(bad(
            path,
            format!(
                "bbolt check found {} errors, first: {}",
                errs.len(),
                errs[0]
            ),
        ));
    }
    let (list, _) = db
        .read_all()
        .map_err(|e| bad(path, format!("cannot read its buckets: {e}")))?;
    let buckets: BTreeMap<Vec<u8>, Bucket> = list.into_iter().collect();
    let empty = Bucket::new();
    let bucket = |name: &str| buckets.get(name.as_bytes()).unwrap_or(&empty);

    let meta = bucket("meta");
    let consistent_index = match meta.get(b"consistent_index".as_slice()) {
        Some(v) => u64_be(path, "meta consistent_index", v)?,
        None => 0,
    };
    let term = match meta.get(b"term".as_slice()) {
        Some(v) => u64_be(path, "meta term", v)?,
        None => 0,
    };

    let mut leases = Vec::new();
    for (k, v) in bucket("lease") {
        let l = Lease::decode(v.as_slice())
            .map_err(|e| bad(path, format!("lease {k:02x?} does not decode: {e}")))?;
        leases.push((l.id, l.ttl));
    }

    let mut cluster = ClusterState::default();
    for (k, v) in bucket("members") {
        let member = EtcdMember::parse(v)
            .map_err(|e| bad(path, format!("member {}: {e}", String::from_utf8_lossy(k))))?;
        let record = member.into_record();
        if record.id == 0 {
            return Err(bad(path, "a member with ID 0".into()));
        }
        cluster.membership.members.insert(record.id, record);
    }
    for k in bucket("members_removed").keys() {
        let id = std::str::from_utf8(k)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad(path, format!("removed member key {k:02x?} is not a hex ID")))?;
        cluster.membership.removed.insert(id);
    }
    for m in cluster.membership.members.values() {
        if m.is_learner {
            cluster.learners.push(m.id);
        } else {
            cluster.voters.push(m.id);
        }
    }
    for k in bucket("alarm").keys() {
        let alarm = AlarmMember::decode(k.as_slice())
            .map_err(|e| bad(path, format!("alarm {k:02x?} does not decode: {e}")))?;
        cluster.alarms.push(alarm);
    }

    let auth = bucket("auth");
    let mut state = AuthStoreState {
        enabled: auth
            .get(b"authEnabled".as_slice())
            .is_some_and(|v| v == &[1]),
        revision: match auth.get(b"authRevision".as_slice()) {
            Some(v) => u64_be(path, "authRevision", v)?,
            None => 0,
        },
        ..Default::default()
    };
    for (k, v) in bucket("authUsers") {
        let user = User::decode(v.as_slice())
            .map_err(|e| bad(path, format!("user {}: {e}", String::from_utf8_lossy(k))))?;
        state.users.push(user);
    }
    for (k, v) in bucket("authRoles") {
        let role = Role::decode(v.as_slice())
            .map_err(|e| bad(path, format!("role {}: {e}", String::from_utf8_lossy(k))))?;
        state.roles.push(role);
    }
    cluster.auth = AuthStore::from_state(state);

    Ok(EtcdBackend {
        buckets,
        consistent_index,
        term,
        cluster,
        leases,
    })
}

/// (record count, CRC-32C over every record's key then value in key order): equal on both
/// sides means the records are the same, and so is every HashKV over them.
pub type RecordsDigest = (u64, u32);

impl EtcdBackend {
    pub fn records_digest(&self) -> RecordsDigest {
        let mut crc = 0;
        let mut n = 0;
        if let Some(key) = self.buckets.get(b"key".as_slice()) {
            for (k, v) in key {
                crc = crc32c::crc32c_append(crc, k);
                crc = crc32c::crc32c_append(crc, v);
                n += 1;
            }
        }
        (n, crc)
    }

    /// Writes our backend at `dest` (which must not exist), durably.
    pub fn write(&self, dest: &Path, term: u64) -> Result<(), ConvertError> {
        let mut imp = Importer::create(dest)?;
        if let Some(key) = self.buckets.get(b"key".as_slice()) {
            for (k, v) in key {
                imp.record(k, v)?;
            }
        }
        let (membership, alarms, auth) = encode_cluster_state(&self.cluster);
        imp.ext(META_MEMBERSHIP, membership);
        imp.ext(META_ALARMS, alarms);
        imp.ext(META_AUTH, auth);
        for (id, ttl) in &self.leases {
            imp.ext(&lease::meta_key(*id), lease::encode_meta(*id, *ttl));
        }
        let meta = self.buckets.get(b"meta".as_slice());
        let mark = |name: &str| meta.and_then(|m| m.get(name.as_bytes()).cloned());
        imp.finish(&ImportMeta {
            consistent_index: self.consistent_index,
            term,
            scheduled_compact: mark("scheduledCompactRev"),
            finished_compact: mark("finishedCompactRev"),
        })?;
        Ok(())
    }
}

/// The same digest over our backend's records.
pub fn our_records_digest(store: &etcd_mvcc::Store) -> Result<RecordsDigest, ConvertError> {
    let view = store.view()?;
    let mut crc = 0;
    let mut n = 0;
    view.for_each_record(|k, v| {
        crc = crc32c::crc32c_append(crc, k);
        crc = crc32c::crc32c_append(crc, v);
        n += 1;
        Ok::<(), etcd_mvcc::MvccError>(())
    })?;
    Ok((n, crc))
}
