//! Starting on etcd's data dir: a data dir an etcd 3.4/3.5 member ran on (or that etcd's
//! `snapshot restore` made) is converted into ours before anything opens it, so switching from
//! etcd to ours is swapping the binary. The member keeps its ID, its cluster's ID, every key
//! and revision, leases, users, roles, alarms and members, and the Raft log from etcd's last
//! snapshot on (translated entry by entry, `entries.rs`), so members of one cluster converted
//! one by one still agree.
//!
//! Crash safety: nothing of etcd's is touched until our copy is complete, durable and checked.
//! 1. Our backend is written to `member/snap/db.converting` and our WAL to `<wal-dir>.converting`;
//!    the backend's records are compared with etcd's, record for record.
//! 2. The marker `member/etcd-conversion.done` is written and synced: the commit point.
//! 3. The swap: etcd's WAL and backend move aside (`*.etcd`), ours move into their places; then
//!    etcd's files are removed and the marker last.
//!
//! A start that finds the marker finishes the swap (each step can run again); one that finds
//! `*.converting` without it throws them away and converts again from etcd's untouched files.

mod backend;
mod entries;
mod error;
mod members;
mod snap;
mod wal;

use std::fs;
use std::path::{Path, PathBuf};

use etcd_api::etcdserverpb::Metadata;
use etcd_api::internalpb::WalMetadata;
use etcd_mvcc::{Store, StoreOptions};
use etcd_wal::{SnapshotMarker, Wal, WalOptions};
use prost::Message;
use raft::prelude::HardState;

pub use error::ConvertError;

use crate::config::ServerConfig;
use crate::membership::Membership;
use entries::Untranslatable;

/// bbolt's magic number, at byte 16 of both meta pages.
const BBOLT_MAGIC: [u8; 4] = 0xED0C_DAEDu32.to_le_bytes();

/// Where everything lives, ours and etcd's.
#[derive(Clone, Debug)]
pub struct DataDirPaths {
    pub member: PathBuf,
    pub snap: PathBuf,
    pub db: PathBuf,
    pub wal: PathBuf,
    staged_db: PathBuf,
    staged_wal: PathBuf,
    old_db: PathBuf,
    old_wal: PathBuf,
    marker: PathBuf,
}

impl DataDirPaths {
    pub fn new(data_dir: &Path, wal_dir: Option<&Path>) -> DataDirPaths {
        let member = data_dir.join("member");
        let snap = member.join("snap");
        let wal = wal_dir.map_or_else(|| member.join("wal"), Path::to_path_buf);
        let sibling = |p: &Path, suffix: &str| {
            let mut s = p.as_os_str().to_owned();
            s.push(suffix);
            PathBuf::from(s)
        };
        DataDirPaths {
            db: snap.join("db"),
            staged_db: snap.join("db.converting"),
            old_db: snap.join("db.etcd"),
            staged_wal: sibling(&wal, ".converting"),
            old_wal: sibling(&wal, ".etcd"),
            marker: member.join("etcd-conversion.done"),
            member,
            snap,
            wal,
        }
    }

    pub fn of(cfg: &ServerConfig) -> DataDirPaths {
        DataDirPaths::new(&cfg.data_dir, cfg.wal_dir.as_deref())
    }
}

/// What a conversion carried over, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub member_id: u64,
    pub cluster_id: u64,
    pub consistent_index: u64,
    pub snapshot_index: u64,
    pub entries: usize,
    pub records: u64,
    pub revision: i64,
    pub hash_kv: u32,
    pub leases: usize,
    pub members: usize,
}

/// Makes the data dir ours if it is etcd's, finishing a conversion a crash interrupted.
/// Returns what was converted, `None` when there was nothing to do.
pub fn prepare(paths: &DataDirPaths) -> Result<Option<Converted>, ConvertError> {
    if paths.marker.exists() {
        tracing::warn!(
            marker = %paths.marker.display(),
            "finishing the switch from etcd's data files to ours, interrupted by a crash"
        );
        swap(paths)?;
    }
    discard_staging(paths)?;
    if !is_etcd(paths)? {
        return Ok(None);
    }
    tracing::info!(
        data_dir = %paths.member.display(),
        "this data dir is etcd's: converting it (etcd's files stay until ours are complete and checked)"
    );
    let converted = convert(paths)?;
    swap(paths)?;
    tracing::info!(
        member = format!("{:x}", converted.member_id),
        cluster = format!("{:x}", converted.cluster_id),
        revision = converted.revision,
        hash_kv = converted.hash_kv,
        keys_records = converted.records,
        leases = converted.leases,
        members = converted.members,
        applied_index = converted.consistent_index,
        log_entries = converted.entries,
        "converted etcd's data dir; `etcdctl endpoint hashkv` gives the same hash etcd gave"
    );
    Ok(Some(converted))
}

/// True when the backend is a bbolt file or the WAL is in etcd's format. Half of an etcd data
/// dir (a backend without a WAL or the reverse) is refused: etcd itself would not start on it
/// as this member.
fn is_etcd(paths: &DataDirPaths) -> Result<bool, ConvertError> {
    let db_is_bbolt = is_bbolt(&paths.db);
    let wal_is_etcd = wal::looks_like_etcd(&paths.wal);
    match (db_is_bbolt, wal_is_etcd) {
        (false, false) => Ok(false),
        (true, true) => Ok(true),
        (true, false) if !Wal::exists(&paths.wal) => Err(ConvertError::refused(format!(
            "{} is etcd's backend but {} holds no WAL: a backend alone is not a member's data \
             dir; to start from a snapshot file use `etcdctl snapshot restore`",
            paths.db.display(),
            paths.wal.display()
        ))),
        (false, true) if !paths.db.exists() => Err(ConvertError::refused(format!(
            "{} holds etcd's WAL but {} is missing: etcd's backend is needed too; restore \
             this member from a snapshot (etcdctl snapshot restore)",
            paths.wal.display(),
            paths.db.display()
        ))),
        _ => Err(ConvertError::refused(format!(
            "{} and {} are not both etcd's nor both ours: the data dir mixes two formats; \
             restore this member from a snapshot",
            paths.db.display(),
            paths.wal.display()
        ))),
    }
}

fn is_bbolt(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 20];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head[16..20] == BBOLT_MAGIC
}

fn convert(paths: &DataDirPaths) -> Result<Converted, ConvertError> {
    let (snapshot, skipped) = snap::newest(&paths.snap)?;
    for (path, why) in skipped {
        tracing::warn!(
            file = %path.display(),
            reason = %why,
            hint = "an older snapshot and the WAL are used instead; nothing to do unless the \
                    start fails, then restore from a backup",
            "skipping a damaged etcd snapshot file"
        );
    }
    let (snap_index, snap_term) = snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
    if let Some(s) = &snapshot {
        let v2_keys = snap::v2_user_nodes(&s.v2_store)
            .map_err(|e| ConvertError::refused(format!("{}: {e}", s.path.display())))?;
        if v2_keys > 0 {
            return Err(ConvertError::refused(format!(
                "{}: etcd's v2 store holds {v2_keys} v2 keys (written with --enable-v2), which \
                 this version cannot carry over yet; copy them to v3 with `ETCDCTL_API=3 \
                 etcdctl migrate` on the stopped etcd member, or delete them with etcd's v2 \
                 API, then start again",
                s.path.display()
            )));
        }
    }
    let log = wal::read(&paths.wal, snap_index, snap_term)?;
    if let Some((path, offset)) = &log.torn_at {
        tracing::warn!(
            file = %path.display(),
            offset,
            "etcd's WAL ends in a torn write; the log is read up to it, as etcd repairs it"
        );
    }
    let metadata = Metadata::decode(log.metadata.as_slice()).map_err(|e| {
        ConvertError::refused(format!(
            "{}: the WAL metadata is not etcd's: {e}",
            paths.wal.display()
        ))
    })?;
    if metadata.node_id == 0 || metadata.cluster_id == 0 {
        return Err(ConvertError::refused(format!(
            "{}: the WAL metadata has no member or cluster ID",
            paths.wal.display()
        )));
    }
    let mut etcd_backend = backend::read(&paths.db)?;
    let applied = etcd_backend.consistent_index;
    let last_index = snap_index + log.entries.len() as u64;
    if applied < snap_index {
        return Err(ConvertError::refused(format!(
            "{} has applied up to index {applied}, before etcd's snapshot at {snap_index}: \
             the backend is older than the WAL; restore this member from a snapshot",
            paths.db.display()
        )));
    }
    if applied > last_index {
        return Err(ConvertError::refused(format!(
            "{} has applied up to index {applied} but the WAL in {} ends at {last_index}: \
             the WAL lost entries; restore this member from a snapshot",
            paths.db.display(),
            paths.wal.display()
        )));
    }

    let mut ours = Vec::with_capacity(log.entries.len());
    for e in &log.entries {
        match entries::translate(e) {
            Ok(entry) => ours.push(entry),
            Err(Untranslatable::V2Write(what)) => {
                return Err(ConvertError::refused(format!(
                    "{}: entry {} is a v2 write ({what}), which this version cannot carry \
                     over yet; remove v2 keys with etcd's v2 API or copy them with `etcdctl \
                     migrate`, then start again",
                    paths.wal.display(),
                    e.index
                )));
            }
            Err(Untranslatable::Malformed(what)) => {
                return Err(ConvertError::refused(format!(
                    "{}: entry {} (term {}) is {what}",
                    paths.wal.display(),
                    e.index,
                    e.term
                )));
            }
        }
    }
    // The membership as of the applied index: the snapshot's v2 store, then the log's changes
    // up to that index (those after it are applied again on start). Without a snapshot the log
    // starts at the cluster's first entries, so it has every change; etcd 3.5's backend is the
    // fallback for a snapshot without members.
    let mut membership = match &snapshot {
        Some(s) => members::from_v2_store(&s.v2_store)
            .map_err(|e| ConvertError::refused(format!("{}: {e}", s.path.display())))?
            .unwrap_or_else(|| etcd_backend.cluster.membership.clone()),
        None => Membership::default(),
    };
    for entry in &ours[..(applied - snap_index) as usize] {
        members::apply(&mut membership, entry);
    }
    let (voters, learners) = members::configuration(&membership);
    etcd_backend.cluster.membership = membership;
    etcd_backend.cluster.voters = voters;
    etcd_backend.cluster.learners = learners;
    if etcd_backend.cluster.voters.is_empty()
        && let Some(s) = &snapshot
    {
        etcd_backend.cluster.voters = s.conf_state.voters.clone();
        etcd_backend.cluster.learners = s.conf_state.learners.clone();
    }

    let term_at = |index: u64| -> u64 {
        if index == snap_index {
            snap_term
        } else if index > snap_index {
            ours.get((index - snap_index - 1) as usize)
                .map_or(0, |e| e.term)
        } else {
            0
        }
    };
    let applied_term = if etcd_backend.term != 0 {
        etcd_backend.term
    } else {
        term_at(applied)
    };

    // Our backend, checked against etcd's record for record.
    if let Some(parent) = paths.staged_db.parent() {
        fs::create_dir_all(parent).map_err(|e| ConvertError::io(parent, e))?;
    }
    etcd_backend.write(&paths.staged_db, applied_term)?;
    let (records, hash_kv, revision) = {
        let store = Store::open(&paths.staged_db, StoreOptions::default())?;
        let theirs = etcd_backend.records_digest();
        let mine = backend::our_records_digest(&store)?;
        if theirs != mine {
            return Err(ConvertError::refused(format!(
                "the converted backend differs from {} ({} records with CRC {:08x} against \
                 {} with {:08x}); etcd's files are untouched: please report this",
                paths.db.display(),
                mine.0,
                mine.1,
                theirs.0,
                theirs.1
            )));
        }
        let hash = store.hash_kv(0)?;
        (mine.0, hash.hash, hash.current_revision)
    };

    // Our WAL: etcd's metadata, the snapshot marker, the translated entries, the hard state.
    let meta = WalMetadata {
        member_id: metadata.node_id,
        cluster_id: metadata.cluster_id,
        voters: etcd_backend.cluster.voters.clone(),
        learners: etcd_backend.cluster.learners.clone(),
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&paths.staged_wal)
            .map_err(|e| ConvertError::io(&paths.staged_wal, e))?;
    }
    let mut our_wal = Wal::create(
        &paths.staged_wal,
        &meta.encode_to_vec(),
        WalOptions::default(),
    )?;
    if snap_index > 0 {
        our_wal.save_snapshot(SnapshotMarker {
            index: snap_index,
            term: snap_term,
        })?;
    }
    let last_term = ours.last().map_or(snap_term, |e| e.term);
    // A torn tail may have cut entries the last hard state counted as committed: commit no
    // further than the log reaches (but at least what the backend applied).
    let hard_state = HardState {
        term: log.hard_state.term.max(last_term),
        vote: log.hard_state.vote,
        commit: log.hard_state.commit.min(last_index).max(applied),
        ..Default::default()
    };
    our_wal.save(Some(&hard_state), &ours)?;
    drop(our_wal);

    fs::write(
        &paths.marker,
        format!(
            "etcd data converted: member {:x}, cluster {:x}, applied index {applied}\n",
            metadata.node_id, metadata.cluster_id
        ),
    )
    .map_err(|e| ConvertError::io(&paths.marker, e))?;
    sync_file(&paths.marker)?;
    sync_dir(&paths.member)?;

    Ok(Converted {
        member_id: metadata.node_id,
        cluster_id: metadata.cluster_id,
        consistent_index: applied,
        snapshot_index: snap_index,
        entries: ours.len(),
        records,
        revision,
        hash_kv,
        leases: etcd_backend.leases.len(),
        members: etcd_backend.cluster.membership.members.len(),
    })
}

/// Moves ours into place and etcd's out, then removes etcd's. Every step may already be done.
fn swap(paths: &DataDirPaths) -> Result<(), ConvertError> {
    let rename =
        |from: &Path, to: &Path| fs::rename(from, to).map_err(|e| ConvertError::io(from, e));
    if paths.staged_wal.exists() {
        if paths.wal.exists() {
            if paths.old_wal.exists() {
                fs::remove_dir_all(&paths.old_wal)
                    .map_err(|e| ConvertError::io(&paths.old_wal, e))?;
            }
            rename(&paths.wal, &paths.old_wal)?;
        }
        rename(&paths.staged_wal, &paths.wal)?;
    }
    if paths.staged_db.exists() {
        if paths.db.exists() {
            rename(&paths.db, &paths.old_db)?;
        }
        rename(&paths.staged_db, &paths.db)?;
    }
    sync_dir(&paths.snap)?;
    if let Some(parent) = paths.wal.parent() {
        sync_dir(parent)?;
    }
    // Ours are in place for good: etcd's files can go.
    if paths.old_wal.exists() {
        fs::remove_dir_all(&paths.old_wal).map_err(|e| ConvertError::io(&paths.old_wal, e))?;
    }
    remove_if_present(&paths.old_db)?;
    for entry in fs::read_dir(&paths.snap).map_err(|e| ConvertError::io(&paths.snap, e))? {
        let entry = entry.map_err(|e| ConvertError::io(&paths.snap, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".snap") || name.ends_with(".snap.db") || name.ends_with(".snap.broken") {
            remove_if_present(&entry.path())?;
        }
    }
    sync_dir(&paths.snap)?;
    remove_if_present(&paths.marker)?;
    sync_dir(&paths.member)
}

/// Leftovers of a conversion that crashed before its commit point.
fn discard_staging(paths: &DataDirPaths) -> Result<(), ConvertError> {
    if paths.staged_wal.exists() {
        tracing::warn!(dir = %paths.staged_wal.display(), "removing an unfinished conversion");
        fs::remove_dir_all(&paths.staged_wal)
            .map_err(|e| ConvertError::io(&paths.staged_wal, e))?;
    }
    if paths.staged_db.exists() {
        tracing::warn!(file = %paths.staged_db.display(), "removing an unfinished conversion");
    }
    remove_if_present(&paths.staged_db)
}

fn remove_if_present(path: &Path) -> Result<(), ConvertError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ConvertError::io(path, e)),
    }
}

fn sync_file(path: &Path) -> Result<(), ConvertError> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| ConvertError::io(path, e))
}

fn sync_dir(path: &Path) -> Result<(), ConvertError> {
    match fs::File::open(path) {
        Ok(f) => f.sync_all().map_err(|e| ConvertError::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ConvertError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::etcdserverpb::RangeRequest;
    use etcd_api::mvccpb::KeyValue;
    use etcd_bbolt::Bucket;
    use etcd_mvcc::revision::{RevKey, Revision};

    /// An etcd 3.4 data dir as etcd's `snapshot restore` makes it (our etcdutl writes the same
    /// files), holding `n` keys.
    fn etcd_data_dir(root: &Path, n: i64) -> DataDirPaths {
        let mut key = Bucket::new();
        for main in 2..2 + n {
            let kv = KeyValue {
                key: format!("key/{main:03}").into_bytes(),
                create_revision: main,
                mod_revision: main,
                version: 1,
                value: b"value".to_vec(),
                lease: 0,
            };
            key.insert(
                RevKey::new(Revision { main, sub: 0 }, false)
                    .as_bytes()
                    .to_vec(),
                kv.encode_to_vec(),
            );
        }
        let file = root.join("snapshot.db");
        std::fs::write(
            &file,
            etcd_bbolt::write(
                &[(b"key".to_vec(), key), (b"meta".to_vec(), Bucket::new())],
                4096,
            ),
        )
        .unwrap();
        let data_dir = root.join("data");
        let peer = "http://127.0.0.1:2380".to_string();
        etcdutl::snapshot::restore(&etcdutl::snapshot::RestoreConfig {
            snapshot_path: file,
            name: "m".into(),
            output_data_dir: data_dir.clone(),
            output_wal_dir: data_dir.join("member/wal"),
            peer_urls: vec![peer.clone()],
            initial_cluster: format!("m={peer}"),
            initial_cluster_token: "etcd-cluster".into(),
            skip_hash_check: true,
        })
        .unwrap();
        DataDirPaths::new(&data_dir, None)
    }

    /// The converted dir is ours: a WAL we open and a store with every key.
    fn assert_converted(paths: &DataDirPaths, n: usize) {
        assert!(!paths.marker.exists() && !paths.staged_db.exists() && !paths.staged_wal.exists());
        assert!(!paths.old_db.exists() && !paths.old_wal.exists());
        assert!(!is_bbolt(&paths.db) && !wal::looks_like_etcd(&paths.wal));
        let (_wal, recovered) = Wal::open(&paths.wal, WalOptions::default()).unwrap();
        let meta = WalMetadata::decode(recovered.metadata.as_slice()).unwrap();
        assert_ne!(meta.member_id, 0);
        let store = Store::open(&paths.db, StoreOptions::default()).unwrap();
        let all = store
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.kvs.len(), n);
        let cluster = crate::raft::decode_cluster_state(
            store
                .meta_get(crate::apply::META_MEMBERSHIP)
                .unwrap()
                .as_deref(),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(cluster.voters, vec![meta.member_id]);
        assert_eq!(
            cluster.membership.members[&meta.member_id].peer_urls,
            vec!["http://127.0.0.1:2380".to_string()]
        );
    }

    #[test]
    fn converts_and_leaves_nothing_of_etcds_behind() {
        let dir = tempfile::tempdir().unwrap();
        let paths = etcd_data_dir(dir.path(), 40);
        let converted = prepare(&paths).unwrap().expect("converted");
        assert_eq!(converted.records, 40);
        assert_eq!(converted.revision, 41);
        assert_converted(&paths, 40);
        // Ours now: a second start does nothing.
        assert_eq!(prepare(&paths).unwrap(), None);
    }

    #[test]
    fn a_crash_before_the_commit_point_converts_again_from_etcds_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = etcd_data_dir(dir.path(), 10);
        convert(&paths).unwrap();
        // The marker never reached the disk.
        std::fs::remove_file(&paths.marker).unwrap();
        assert!(is_bbolt(&paths.db), "etcd's backend untouched");
        prepare(&paths).unwrap().expect("converted again");
        assert_converted(&paths, 10);
    }

    #[test]
    fn a_crash_during_the_swap_is_finished_on_the_next_start() {
        for step in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let paths = etcd_data_dir(dir.path(), 5);
            convert(&paths).unwrap();
            // Crash after `step` renames of the swap.
            if step >= 1 {
                std::fs::rename(&paths.wal, &paths.old_wal).unwrap();
            }
            if step >= 2 {
                std::fs::rename(&paths.staged_wal, &paths.wal).unwrap();
            }
            assert_eq!(prepare(&paths).unwrap(), None, "step {step}");
            assert_converted(&paths, 5);
        }
    }

    #[test]
    fn damage_is_refused_and_etcds_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let paths = etcd_data_dir(dir.path(), 5);
        let segment = wal::segments(&paths.wal).unwrap()[0].2.clone();
        let mut data = std::fs::read(&segment).unwrap();
        data[40] ^= 0xff;
        std::fs::write(&segment, &data).unwrap();
        let err = prepare(&paths).unwrap_err().to_string();
        assert!(err.contains(&segment.display().to_string()), "{err}");
        assert!(is_bbolt(&paths.db) && wal::looks_like_etcd(&paths.wal));

        // Half an etcd data dir: a backend without its WAL.
        let dir = tempfile::tempdir().unwrap();
        let paths = etcd_data_dir(dir.path(), 5);
        std::fs::remove_dir_all(&paths.wal).unwrap();
        let err = prepare(&paths).unwrap_err().to_string();
        assert!(err.contains("holds no WAL"), "{err}");
    }

    #[test]
    fn a_torn_wal_tail_is_cut_as_etcd_repairs_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = etcd_data_dir(dir.path(), 8);
        let segment = wal::segments(&paths.wal).unwrap()[0].2.clone();
        let mut data = std::fs::read(&segment).unwrap();
        let end = data.iter().rposition(|b| *b != 0).unwrap() + 1;
        let end = end.div_ceil(8) * 8;
        // A frame promising 600 bytes, of which only the first sector-aligned piece was
        // written before the crash: the rest is still zero.
        data[end..end + 8].copy_from_slice(&600u64.to_le_bytes());
        data[end + 8..end + 20].fill(0xab);
        std::fs::write(&segment, &data).unwrap();
        let converted = prepare(&paths).unwrap().expect("converted");
        assert_eq!(converted.records, 8);
        assert_converted(&paths, 8);
    }

    #[test]
    fn every_truncation_of_etcds_backend_is_refused_or_converted_without_panic() {
        let dir = tempfile::tempdir().unwrap();
        let paths = etcd_data_dir(dir.path(), 30);
        let db = std::fs::read(&paths.db).unwrap();
        let copy = dir.path().join("copy");
        for cut in (0..db.len()).step_by(4096).chain([db.len() - 1]) {
            let _ = std::fs::remove_dir_all(&copy);
            copy_dir(&paths.member, &copy.join("member"));
            let p = DataDirPaths::new(&copy, None);
            std::fs::write(&p.db, &db[..cut]).unwrap();
            if let Ok(Some(c)) = prepare(&p) {
                assert_eq!(c.records, 30, "a cut file converted must have lost nothing");
            }
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
}
