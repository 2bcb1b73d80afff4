//! Backups in etcd's own format. `Maintenance.Snapshot` streams a point-in-time copy of the
//! backend as etcd 3.4's bbolt file followed by its SHA-256, so `etcdctl snapshot save`,
//! `snapshot status` and `snapshot restore` (ours and etcd's) all work on it.
//!
//! The copy is read from one backend read transaction (writes go on meanwhile) and written
//! page by page to a temporary file beside the backend, which is then streamed and removed:
//! memory stays at a page plus one index entry per page, whatever the size of the data.
//!
//! Buckets, as etcd 3.4 lays them out:
//! - `key`: revision key -> `mvccpb.KeyValue` (our records are already in this form);
//! - `meta`: `consistent_index`, `finishedCompactRev`, `scheduledCompactRev`;
//! - `lease`: lease ID (8 bytes, big-endian) -> `leasepb.Lease`;
//! - `members`: member ID in hex -> etcd's member JSON; `members_removed`: ID -> "removed";
//! - `alarm`: an encoded `AlarmMember` -> empty; `cluster`: `clusterVersion` -> "3.4.0";
//! - `auth` (`authRevision`, `authEnabled`), `authUsers`, `authRoles` (`authpb.User`/`Role`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use etcd_api::etcdserverpb::LeaseGrantRequest;
use etcd_api::leasepb::Lease;
use etcd_bbolt::FileWriter;
use etcd_mvcc::{BackendView, MvccError, Store};
use prost::Message;
use serde::Serialize;

use crate::apply::{META_ALARMS, META_AUTH, META_MEMBERSHIP};
use crate::config::CLUSTER_VERSION;
use crate::error::ServerError;
use crate::lease::LEASE_META_PREFIX;
use crate::raft::decode_cluster_state;

/// etcd's page size on Linux.
const PAGE_BYTES: usize = 4096;
/// How much of the file each stream message carries (etcd: 32 KiB).
pub const CHUNK_BYTES: usize = 32 * 1024;

/// Writes the backend as an etcd 3.4 bbolt file at `path`; returns the file's size.
pub fn write_bbolt(store: &Store, path: &Path) -> Result<u64, ServerError> {
    let view = store.view()?;
    let out = BufWriter::new(File::create(path).map_err(io_error(path))?);
    let mut file = FileWriter::new(out, PAGE_BYTES).map_err(io_error(path))?;
    let cluster = decode_cluster_state(
        view.meta_get(META_MEMBERSHIP)?.as_deref(),
        view.meta_get(META_ALARMS)?.as_deref(),
        view.meta_get(META_AUTH)?.as_deref(),
    )?
    .unwrap_or_default();

    let mut alarms = BTreeMap::new();
    for alarm in &cluster.alarms {
        alarms.insert(alarm.encode_to_vec(), Vec::new());
    }
    bucket(&mut file, b"alarm", &alarms, path)?;
    // etcd's auth buckets: the revision and the enabled flag, then roles and users by name.
    let auth_state = cluster.auth.to_state();
    let mut auth = BTreeMap::from([(
        b"authRevision".to_vec(),
        auth_state.revision.to_be_bytes().to_vec(),
    )]);
    auth.insert(b"authEnabled".to_vec(), vec![u8::from(auth_state.enabled)]);
    bucket(&mut file, b"auth", &auth, path)?;
    let roles = auth_state
        .roles
        .iter()
        .map(|r| (r.name.clone(), r.encode_to_vec()))
        .collect();
    bucket(&mut file, b"authRoles", &roles, path)?;
    let users = auth_state
        .users
        .iter()
        .map(|u| (u.name.clone(), u.encode_to_vec()))
        .collect();
    bucket(&mut file, b"authUsers", &users, path)?;
    let version = BTreeMap::from([(
        b"clusterVersion".to_vec(),
        CLUSTER_VERSION.as_bytes().to_vec(),
    )]);
    bucket(&mut file, b"cluster", &version, path)?;
    write_records(&mut file, &view, path)?;
    bucket(&mut file, b"lease", &leases(&view)?, path)?;

    let mut members = BTreeMap::new();
    for m in cluster.membership.members.values() {
        let json = serde_json::to_vec(&EtcdMember {
            id: m.id,
            peer_urls: &m.peer_urls,
            is_learner: m.is_learner,
            name: &m.name,
            client_urls: &m.client_urls,
        })
        .map_err(|e| ServerError::Internal(format!("member JSON: {e}")))?;
        members.insert(format!("{:x}", m.id).into_bytes(), json);
    }
    bucket(&mut file, b"members", &members, path)?;
    let removed: BTreeMap<Vec<u8>, Vec<u8>> = cluster
        .membership
        .removed
        .iter()
        .map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec()))
        .collect();
    bucket(&mut file, b"members_removed", &removed, path)?;

    let mut meta = BTreeMap::new();
    meta.insert(
        b"consistent_index".to_vec(),
        view.consistent_index()?.to_be_bytes().to_vec(),
    );
    for (name, value) in view.compaction_marks()? {
        meta.insert(name.as_bytes().to_vec(), value);
    }
    bucket(&mut file, b"meta", &meta, path)?;

    let out = file.finish().map_err(io_error(path))?;
    let file = out
        .into_inner()
        .map_err(|e| io_error(path)(e.into_error()))?;
    file.sync_all().map_err(io_error(path))?;
    Ok(file.metadata().map_err(io_error(path))?.len())
}

/// etcd's member JSON (`membership.Member`): ID as a number, empty fields left out.
#[derive(Serialize)]
struct EtcdMember<'a> {
    id: u64,
    #[serde(rename = "peerURLs")]
    peer_urls: &'a [String],
    #[serde(rename = "isLearner", skip_serializing_if = "std::ops::Not::not")]
    is_learner: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "clientURLs", skip_serializing_if = "<[String]>::is_empty")]
    client_urls: &'a [String],
}

fn bucket<W: std::io::Write + std::io::Seek>(
    file: &mut FileWriter<W>,
    name: &[u8],
    entries: &BTreeMap<Vec<u8>, Vec<u8>>,
    path: &Path,
) -> Result<(), ServerError> {
    let mut b = file.bucket(name).map_err(io_error(path))?;
    for (k, v) in entries {
        b.put(k, v).map_err(io_error(path))?;
    }
    b.finish().map_err(io_error(path))
}

/// The `key` bucket, streamed from the view in key order.
fn write_records<W: std::io::Write + std::io::Seek>(
    file: &mut FileWriter<W>,
    view: &BackendView,
    path: &Path,
) -> Result<(), ServerError> {
    let mut b = file.bucket(b"key").map_err(io_error(path))?;
    view.for_each_record(|k, v| b.put(k, v).map_err(io_error(path)))?;
    b.finish().map_err(io_error(path))
}

/// The `lease` bucket: every granted lease, keyed by its ID.
fn leases(view: &BackendView) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, ServerError> {
    let mut out = BTreeMap::new();
    for (name, value) in view.meta_range(LEASE_META_PREFIX)? {
        let grant = LeaseGrantRequest::decode(value.as_slice()).map_err(|e| {
            ServerError::from(MvccError::Corrupt(format!("lease record {name}: {e}")))
        })?;
        let lease = Lease {
            id: grant.id,
            ttl: grant.ttl,
            remaining_ttl: 0,
        };
        out.insert(
            (grant.id as u64).to_be_bytes().to_vec(),
            lease.encode_to_vec(),
        );
    }
    Ok(out)
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ServerError + '_ {
    move |e| ServerError::Internal(format!("writing the snapshot {}: {e}", path.display()))
}

/// Where a snapshot being sent is staged: beside the backend, removed once sent.
pub fn staging_path(snap_dir: &Path) -> PathBuf {
    let nonce: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    snap_dir.join(format!("backup-{nonce:016x}.db.tmp"))
}

/// Reads `path` in chunks of [`CHUNK_BYTES`], handing each to `send` with the bytes left
/// after it, then the SHA-256 of the whole file with 0 left, as etcd's Snapshot stream.
/// Stops early (returning `Ok`) when `send` says the receiver is gone.
pub fn stream_file(
    path: &Path,
    mut send: impl FnMut(u64, Vec<u8>) -> bool,
) -> Result<(), ServerError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let total = file.metadata().map_err(io_error(path))?.len();
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut sent = 0u64;
    while sent < total {
        let mut chunk = vec![0u8; CHUNK_BYTES.min((total - sent) as usize)];
        file.read_exact(&mut chunk).map_err(io_error(path))?;
        sent += chunk.len() as u64;
        sha.update(&chunk);
        if !send(total - sent, chunk) {
            return Ok(());
        }
    }
    send(0, sha.finish().as_ref().to_vec());
    Ok(())
}
