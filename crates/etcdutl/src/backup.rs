//! `etcdctl backup` (v2): a copy of a data dir under new member and cluster IDs, to be started
//! with `--force-new-cluster`. etcd 3.4's own data dirs (a bbolt backend) are backed up as
//! etcd does it, in `backup_etcd.rs`; this module does ours.
//!
//! On one of our data dirs: a copy of the member's backend and WAL (as etcd's backup).
//! Without `--with-v3` the copy keeps the v2 store and drops the v3 key space: the backend's
//! keys are deleted and compacted away, and v3 entries of the log not yet in the backend are
//! blanked so that they do not come back when the member replays its log.
//!
//! The member may be running: its WAL is read from a copy (a torn last record is cut there,
//! never in the member's own files), and the backend copy is checked by opening it, copied
//! again if a write raced the copy. For a v3 backup of a running member, `etcdctl snapshot
//! save` is the consistent way; etcd asks that the member be stopped for `--with-v3` too.

use std::fs;
use std::path::{Path, PathBuf};

use etcd_api::etcdserverpb::DeleteRangeRequest;
use etcd_api::internalpb::{InternalRequest, WalMetadata, internal_request::Request};
use etcd_mvcc::{Store, StoreOptions};
use etcd_wal::{Wal, WalOptions};
use prost::Message;
use raft::prelude::EntryType;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Msg(String),
}

pub(crate) fn err(s: impl Into<String>) -> BackupError {
    BackupError::Msg(s.into())
}

/// What to copy and where (etcd's backup flags).
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub backup_dir: PathBuf,
    pub backup_wal_dir: Option<PathBuf>,
    pub with_v3: bool,
}

/// What the backup says on the way, as etcd's says it: Go `log` lines (etcdctl prints them as
/// capnslog does, on stderr) and zap events (etcd's backup logs them with zap's example
/// logger: JSON on stdout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Log(String),
    Info {
        msg: &'static str,
        fields: Vec<(&'static str, String)>,
    },
    Warn {
        msg: &'static str,
        fields: Vec<(&'static str, String)>,
    },
}

/// Where a backup reads and writes (etcd's defaults for the WAL dirs).
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub src_snap: PathBuf,
    pub src_db: PathBuf,
    pub src_wal: PathBuf,
    pub dest_snap: PathBuf,
    pub dest_wal: PathBuf,
}

impl Paths {
    fn new(opts: &BackupOptions) -> Paths {
        let src_snap = opts.data_dir.join("member").join("snap");
        Paths {
            src_db: src_snap.join("db"),
            src_snap,
            src_wal: opts
                .wal_dir
                .clone()
                .unwrap_or_else(|| opts.data_dir.join("member").join("wal")),
            dest_snap: opts.backup_dir.join("member").join("snap"),
            dest_wal: opts
                .backup_wal_dir
                .clone()
                .unwrap_or_else(|| opts.backup_dir.join("member").join("wal")),
        }
    }
}

/// Whether `db` is etcd's bbolt backend (rather than ours): bbolt's magic in the first meta
/// page.
pub fn is_bbolt(db: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 20];
    let read = fs::File::open(db).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok() && u32::from_le_bytes([head[16], head[17], head[18], head[19]]) == 0xED0C_DAED
}

/// How many times a backend copy that does not open is taken again.
const COPY_ATTEMPTS: usize = 5;

/// What the backup wrote.
#[derive(Debug)]
pub struct BackupSummary {
    pub member_id: u64,
    pub cluster_id: u64,
    pub applied_index: u64,
    pub entries: usize,
    /// v3 entries of our log blanked (ours; without `--with-v3`).
    pub blanked: usize,
    /// Entries dropped from etcd's log (etcd's: ConfChanges, member attributes, v3 entries
    /// without `--with-v3`).
    pub removed: usize,
}

/// [`backup_with`], its notes dropped.
pub fn backup(opts: &BackupOptions) -> Result<BackupSummary, BackupError> {
    backup_with(opts, &mut |_| {})
}

/// Backs up the data dir `opts` names, ours or etcd 3.4's; what etcd's backup would log goes
/// to `note` as it happens.
pub fn backup_with(
    opts: &BackupOptions,
    note: &mut dyn FnMut(Note),
) -> Result<BackupSummary, BackupError> {
    let paths = Paths::new(opts);
    if !paths.src_db.exists() {
        return Err(err(format!(
            "{} does not exist: not a data dir",
            paths.src_db.display()
        )));
    }
    if is_bbolt(&paths.src_db) {
        return crate::backup_etcd::backup(&paths, opts.with_v3, note);
    }
    backup_ours(opts, &paths)
}

fn backup_ours(opts: &BackupOptions, paths: &Paths) -> Result<BackupSummary, BackupError> {
    let Paths {
        src_db,
        src_wal,
        dest_snap,
        dest_wal,
        ..
    } = paths;
    if Wal::exists(dest_wal) {
        return Err(err(format!("{} already holds a WAL", dest_wal.display())));
    }
    fs::create_dir_all(dest_snap).map_err(|e| {
        err(format!(
            "failed creating backup snapshot dir {}: {e}",
            dest_snap.display()
        ))
    })?;

    let recovered = read_wal_copy(src_wal, &opts.backup_dir)?;
    let applied = copy_backend(src_db, &dest_snap.join("db"), opts.with_v3)?;

    let mut entries = recovered.entries;
    let mut blanked = 0;
    if !opts.with_v3 {
        for entry in entries.iter_mut().filter(|e| e.index > applied) {
            if entry.get_entry_type() == EntryType::EntryNormal && is_v3(&entry.data) {
                entry.data = Vec::new().into();
                blanked += 1;
            }
        }
    }
    let mut metadata = WalMetadata::decode(recovered.metadata.as_slice())
        .map_err(|e| err(format!("cannot decode the WAL metadata: {e}")))?;
    metadata.member_id = new_id();
    metadata.cluster_id = new_id();
    let mut wal = Wal::create(dest_wal, &metadata.encode_to_vec(), WalOptions::default())
        .map_err(|e| err(format!("cannot create {}: {e}", dest_wal.display())))?;
    if let Some(marker) = recovered.snapshot {
        wal.save_snapshot(marker)
            .map_err(|e| err(format!("cannot write {}: {e}", dest_wal.display())))?;
    }
    wal.save(Some(&recovered.hard_state), &entries)
        .map_err(|e| err(format!("cannot write {}: {e}", dest_wal.display())))?;
    Ok(BackupSummary {
        member_id: metadata.member_id,
        cluster_id: metadata.cluster_id,
        applied_index: applied,
        entries: entries.len(),
        blanked,
        removed: 0,
    })
}

/// A random nonzero ID.
fn new_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// Whether a log entry is a v3 change (keys, leases, compaction, v3 auth, alarms).
fn is_v3(data: &[u8]) -> bool {
    if data.is_empty() {
        return false;
    }
    match InternalRequest::decode(data).ok().and_then(|r| r.request) {
        Some(Request::V2(_))
        | Some(Request::MemberAttributes(_))
        | Some(Request::MemberPeerUrls(_))
        | Some(Request::Noop(_))
        | None => false,
        Some(_) => true,
    }
}

/// The member's WAL, read from a copy beside the backup (the member may be appending to its
/// own, and opening a WAL cuts a torn tail).
fn read_wal_copy(src: &Path, backup_dir: &Path) -> Result<etcd_wal::Recovered, BackupError> {
    if !Wal::exists(src) {
        return Err(err(format!("{} holds no WAL", src.display())));
    }
    let copy = backup_dir.join(".wal-being-read");
    let _ = fs::remove_dir_all(&copy);
    fs::create_dir_all(&copy).map_err(|e| err(format!("cannot create {}: {e}", copy.display())))?;
    let result = (|| {
        let read =
            fs::read_dir(src).map_err(|e| err(format!("cannot read {}: {e}", src.display())))?;
        for entry in read {
            let entry = entry.map_err(|e| err(format!("cannot read {}: {e}", src.display())))?;
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".wal") {
                fs::copy(entry.path(), copy.join(&name))
                    .map_err(|e| err(format!("cannot copy {}: {e}", entry.path().display())))?;
            }
        }
        let (_, recovered) = Wal::open(&copy, WalOptions::default())
            .map_err(|e| err(format!("cannot read the WAL in {}: {e}", src.display())))?;
        Ok(recovered)
    })();
    let _ = fs::remove_dir_all(&copy);
    result
}

/// Copies the backend to `dest` (checked by opening it; copied again if a write of a running
/// member raced the copy) and, without v3, empties its key space. Returns the applied index.
fn copy_backend(src: &Path, dest: &Path, with_v3: bool) -> Result<u64, BackupError> {
    let staging = dest.with_extension("being-copied");
    let mut last_error = String::new();
    for _ in 0..COPY_ATTEMPTS {
        let _ = fs::remove_file(&staging);
        fs::copy(src, &staging).map_err(|e| err(format!("cannot copy {}: {e}", src.display())))?;
        let store = match Store::open(&staging, StoreOptions::default()) {
            Ok(store) => store,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        if !with_v3 {
            store
                .apply(|batch| -> Result<(), etcd_mvcc::MvccError> {
                    batch.delete_range(&DeleteRangeRequest {
                        key: vec![0],
                        range_end: vec![0],
                        ..Default::default()
                    })?;
                    let revision = batch.current_revision();
                    batch.compact(revision)
                })
                .and_then(|r| r)
                .map_err(|e| err(format!("cannot drop the v3 keys from the copy: {e}")))?;
        }
        store
            .force_commit()
            .map_err(|e| err(format!("cannot write {}: {e}", staging.display())))?;
        let (applied, _) = store.consistent_index();
        drop(store);
        fs::rename(&staging, dest)
            .map_err(|e| err(format!("cannot write {}: {e}", dest.display())))?;
        return Ok(applied);
    }
    let _ = fs::remove_file(&staging);
    Err(err(format!(
        "cannot take a readable copy of {} (the member kept writing it?): {last_error}",
        src.display()
    )))
}
