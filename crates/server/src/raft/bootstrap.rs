//! Starting the Raft state from the data dir: a new member writes a fresh WAL from the
//! `--initial-cluster` flags; a member with a WAL resumes it and ignores the `--initial-*` flags,
//! as etcd does.

use std::fs;

use etcd_api::internalpb::{MembershipState, WalMetadata};
use etcd_mvcc::Store;
use etcd_wal::{Recovered, Wal};
use prost::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState};
use raft::storage::MemStorage;

use crate::apply::{ClusterState, META_ALARMS, META_AUTH, META_MEMBERSHIP};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::membership::Membership;

/// Everything the Raft loop starts from.
pub struct Bootstrapped {
    pub member_id: u64,
    pub cluster_id: u64,
    pub wal: Wal,
    pub storage: MemStorage,
    /// The index raft-rs may consider applied at start: entries above it are handed to the
    /// apply path again, which skips the ones the backend already has.
    pub applied: u64,
    pub cluster: ClusterState,
    /// True when this start created the data dir.
    pub fresh: bool,
    /// The Raft index of the latest snapshot (0 when none).
    pub snapshot_index: u64,
}

/// The cluster as a running member described it, for a member joining with
/// `--initial-cluster-state existing`.
pub struct RemoteCluster {
    pub cluster_id: u64,
    pub members: Vec<etcd_api::internalpb::MemberRecord>,
}

/// A WAL opened and read (by [`open_wal`]), or why it could not be.
pub type OpenedWal = Result<(Wal, Recovered), ServerError>;

/// Opens the member's WAL and reads all of it. On a restart this takes as long as opening
/// the backend (a second or more for a large member) and shares nothing with it, so the
/// caller may run the two at once and hand the result to [`bootstrap`].
pub fn open_wal(cfg: &ServerConfig) -> OpenedWal {
    Wal::open(&cfg.wal_dir(), cfg.wal_options()).map_err(|e| match e {
        etcd_wal::WalError::Corrupt { .. } => ServerError::Config(format!(
            "{e}; the WAL is damaged before its end, where acknowledged writes may be: remove \
             the member (etcdctl member remove), clear its data dir and add it back (etcdctl \
             member add, --initial-cluster-state existing), or restore it from a backup \
             (etcdctl snapshot restore)"
        )),
        other => ServerError::Wal(other),
    })
}

/// `opened` is the WAL already read by [`open_wal`], when the caller read it; otherwise a WAL
/// in the data dir is read here.
pub fn bootstrap(
    cfg: &ServerConfig,
    store: &Store,
    remote: Option<RemoteCluster>,
    opened: Option<OpenedWal>,
) -> Result<Bootstrapped, ServerError> {
    if let Some(opened) = opened {
        return restart(cfg, store, opened);
    }
    let wal_dir = cfg.wal_dir();
    if Wal::exists(&wal_dir) {
        return restart(cfg, store, open_wal(cfg));
    }
    if let Some(remote) = remote {
        return join(cfg, remote);
    }
    let membership =
        Membership::from_initial_cluster(&cfg.initial_cluster, &cfg.initial_cluster_token)?;
    let member_id = membership.find_self(&cfg.name, &cfg.initial_advertise_peer_urls)?;
    let cluster_id = membership.cluster_id();
    let voters = membership.voters();
    let metadata = WalMetadata {
        member_id,
        cluster_id,
        voters: voters.clone(),
        learners: Vec::new(),
    };
    fs::create_dir_all(&wal_dir)
        .map_err(|e| ServerError::Config(format!("cannot create {}: {e}", wal_dir.display())))?;
    let mut wal = Wal::create(&wal_dir, &metadata.encode_to_vec(), cfg.wal_options())?;
    // As etcd does, the initial membership is the first entries of the log, committed at
    // term 1: a member that joins later learns every member by replaying the log.
    let entries = bootstrap_entries(&membership);
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: entries.len() as u64,
        ..Default::default()
    };
    wal.save(Some(&hard_state), &entries)?;
    let storage = MemStorage::new_with_conf_state(ConfState::from((voters.clone(), vec![])));
    {
        let mut core = storage.wl();
        core.append(&entries)
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        core.set_hardstate(hard_state);
    }
    let cluster = ClusterState {
        membership,
        voters,
        ..ClusterState::default()
    };
    Ok(Bootstrapped {
        member_id,
        cluster_id,
        wal,
        storage,
        // The bootstrap entries are applied already: their configuration is in `storage`
        // and their membership goes to the backend at start.
        applied: entries.len() as u64,
        cluster,
        fresh: true,
        snapshot_index: 0,
    })
}

/// One ConfChange entry adding each initial member, carrying the member's record.
fn bootstrap_entries(membership: &Membership) -> Vec<Entry> {
    membership
        .members
        .values()
        .enumerate()
        .map(|(i, member)| {
            let cc = ConfChange {
                change_type: ConfChangeType::AddNode,
                node_id: member.id,
                context: member.encode_to_vec().into(),
                ..Default::default()
            };
            Entry {
                entry_type: EntryType::EntryConfChange,
                term: 1,
                index: i as u64 + 1,
                data: protobuf::Message::write_to_bytes(&cc)
                    .unwrap_or_default()
                    .into(),
                ..Default::default()
            }
        })
        .collect()
}

/// A member added with MemberAdd starting for the first time: it takes its ID and the
/// cluster's from a running member, and starts with an empty log; the leader sends it the
/// log (whose first entries are the bootstrap membership) or a snapshot.
fn join(cfg: &ServerConfig, remote: RemoteCluster) -> Result<Bootstrapped, ServerError> {
    let mut advertised: Vec<String> = cfg
        .initial_advertise_peer_urls
        .iter()
        .map(crate::membership::url_string)
        .collect();
    advertised.sort();
    let me = remote
        .members
        .iter()
        .find(|m| {
            let mut urls = m.peer_urls.clone();
            urls.sort();
            urls == advertised
        })
        .ok_or_else(|| {
            ServerError::Config(format!(
                "the running cluster has no member with peer URLs {} (add it with \
                 `etcdctl member add` first, with the same --initial-advertise-peer-urls)",
                advertised.join(",")
            ))
        })?;
    let member_id = me.id;
    let mut membership = Membership::default();
    for m in &remote.members {
        membership.members.insert(m.id, m.clone());
    }
    if let Some(m) = membership.members.get_mut(&member_id) {
        m.name = cfg.name.clone();
    }
    let metadata = WalMetadata {
        member_id,
        cluster_id: remote.cluster_id,
        voters: Vec::new(),
        learners: Vec::new(),
    };
    let wal_dir = cfg.wal_dir();
    fs::create_dir_all(&wal_dir)
        .map_err(|e| ServerError::Config(format!("cannot create {}: {e}", wal_dir.display())))?;
    let wal = Wal::create(&wal_dir, &metadata.encode_to_vec(), cfg.wal_options())?;
    tracing::info!(
        member = format!("{member_id:x}"),
        cluster = format!("{:x}", remote.cluster_id),
        "joining an existing cluster"
    );
    Ok(Bootstrapped {
        member_id,
        cluster_id: remote.cluster_id,
        wal,
        storage: MemStorage::new(),
        applied: 0,
        cluster: ClusterState {
            membership,
            ..ClusterState::default()
        },
        fresh: true,
        snapshot_index: 0,
    })
}

fn restart(
    cfg: &ServerConfig,
    store: &Store,
    opened: OpenedWal,
) -> Result<Bootstrapped, ServerError> {
    let (mut wal, mut recovered) = opened?;
    let metadata = WalMetadata::decode(recovered.metadata.as_slice())
        .map_err(|e| ServerError::Config(format!("wal: cannot decode metadata: {e}")))?;
    if let Some(marker) = &recovered.snapshot {
        finish_staged_restore(cfg, store, marker.index)?;
    }
    let (consistent_index, _) = store.consistent_index();

    // The backend holds the configuration as of its applied index; before the first apply it
    // is the bootstrap configuration from the WAL metadata.
    let mut cluster = load_cluster_state(store)?.unwrap_or_else(|| ClusterState {
        voters: metadata.voters.clone(),
        learners: metadata.learners.clone(),
        ..ClusterState::default()
    });
    if cluster.membership.members.is_empty() {
        // A crash before the first backend commit: membership comes from the flags again,
        // which were the ones that created this WAL.
        cluster.membership =
            Membership::from_initial_cluster(&cfg.initial_cluster, &cfg.initial_cluster_token)?;
    }

    let last_index = recovered
        .entries
        .last()
        .map(|e| e.index)
        .or(recovered.snapshot.as_ref().map(|s| s.index))
        .unwrap_or(0);
    // The backend may be ahead of the log when it is a leader's copy that came with a snapshot
    // (the leader went on applying while it copied) and nothing was applied since: the
    // entries between are committed, and come again from the leader, to be skipped. Any other
    // backend ahead of its WAL means the WAL lost entries.
    let restored_copy = store
        .restored_from_snapshot()?
        .is_some_and(|(snapshot, copy)| copy == consistent_index && last_index >= snapshot);
    if consistent_index > last_index && !restored_copy {
        return Err(ServerError::Config(format!(
            "the backend has applied index {consistent_index} but the WAL in {} ends at \
             {last_index}: the WAL lost entries; restore this member from a snapshot",
            cfg.wal_dir().display()
        )));
    }
    let mut hard_state: HardState = recovered.hard_state.clone();
    // The backend may have applied (and durably committed) entries whose commit index the WAL
    // had not recorded yet; those entries are in the WAL, and were committed, so say so.
    if hard_state.commit < consistent_index {
        hard_state.commit = consistent_index.min(last_index);
    }
    // What raft-rs may take as applied: never past its log, whatever the backend has.
    let raft_applied = consistent_index.min(last_index);
    if cfg.force_new_cluster {
        force_standalone(
            &mut wal,
            &mut recovered.entries,
            &mut hard_state,
            &cluster,
            metadata.member_id,
            raft_applied,
        )?;
    }
    let storage = MemStorage::new();
    {
        let mut core = storage.wl();
        core.set_conf_state(ConfState::from((
            cluster.voters.clone(),
            cluster.learners.clone(),
        )));
        let log_start = match &recovered.snapshot {
            Some(marker) => {
                if consistent_index < marker.index {
                    return Err(ServerError::Config(format!(
                        "the WAL has a snapshot at index {} but the backend only reaches {}; \
                         the backend lost data: restore this member from a snapshot",
                        marker.index, consistent_index
                    )));
                }
                let mut snap = raft::prelude::Snapshot::default();
                let meta = snap.mut_metadata();
                meta.index = marker.index;
                meta.term = marker.term;
                meta.set_conf_state(ConfState::from((
                    cluster.voters.clone(),
                    cluster.learners.clone(),
                )));
                core.apply_snapshot(snap)
                    .map_err(|e| ServerError::Raft(e.to_string()))?;
                marker.index + 1
            }
            None => 1,
        };
        if let Some(first) = recovered.entries.first()
            && first.index != log_start
        {
            return Err(ServerError::Config(format!(
                "wal: entries start at index {} but the log should start at {log_start}; \
                 the log is incomplete",
                first.index
            )));
        }
        core.append(&recovered.entries)
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        core.set_hardstate(hard_state);
    }
    tracing::info!(
        member = format!("{:x}", metadata.member_id),
        cluster = format!("{:x}", metadata.cluster_id),
        applied_index = consistent_index,
        last_index,
        "restarting member from existing data dir"
    );
    Ok(Bootstrapped {
        member_id: metadata.member_id,
        cluster_id: metadata.cluster_id,
        wal,
        storage,
        applied: raft_applied,
        cluster,
        fresh: false,
        snapshot_index: recovered.snapshot.as_ref().map_or(0, |s| s.index),
    })
}

/// `--force-new-cluster` (etcd's restart as a standalone member): the entries not known to be
/// committed are dropped (they may never have reached a quorum), and ConfChanges removing every
/// other member are appended as committed, so this member applies them on start, leads a
/// one-member cluster with all its data, and the others are removed members from then on.
fn force_standalone(
    wal: &mut Wal,
    entries: &mut Vec<Entry>,
    hard_state: &mut HardState,
    cluster: &ClusterState,
    self_id: u64,
    applied: u64,
) -> Result<(), ServerError> {
    entries.retain(|e| e.index <= hard_state.commit);
    // Who is in the configuration once the committed log is applied: the backend's as of
    // `applied`, then the changes in the log after it.
    let mut ids: std::collections::BTreeSet<u64> = cluster
        .voters
        .iter()
        .chain(&cluster.learners)
        .copied()
        .collect();
    for e in entries
        .iter()
        .filter(|e| e.index > applied && e.entry_type == EntryType::EntryConfChange)
    {
        let mut cc = ConfChange::default();
        if protobuf::Message::merge_from_bytes(&mut cc, &e.data).is_ok() {
            match cc.change_type {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    ids.insert(cc.node_id);
                }
                ConfChangeType::RemoveNode => {
                    ids.remove(&cc.node_id);
                }
            }
        }
    }
    let term = hard_state.term.max(entries.last().map_or(0, |e| e.term));
    let mut index = hard_state.commit;
    let mut changes = Vec::new();
    let mut push = |change_type, node_id, context: Vec<u8>| {
        index += 1;
        let cc = ConfChange {
            change_type,
            node_id,
            context: context.into(),
            ..Default::default()
        };
        changes.push(Entry {
            entry_type: EntryType::EntryConfChange,
            term,
            index,
            data: protobuf::Message::write_to_bytes(&cc)
                .unwrap_or_default()
                .into(),
            ..Default::default()
        });
    };
    if !ids.contains(&self_id) {
        let record = cluster.membership.members.get(&self_id).cloned().unwrap_or(
            etcd_api::internalpb::MemberRecord {
                id: self_id,
                ..Default::default()
            },
        );
        push(ConfChangeType::AddNode, self_id, record.encode_to_vec());
    }
    // Removals after the addition: raft-rs refuses a configuration with no voter, so a member
    // under a new ID (a backup) must be a voter before the old ones go.
    for id in ids.iter().filter(|id| **id != self_id) {
        push(ConfChangeType::RemoveNode, *id, Vec::new());
    }
    if changes.is_empty() {
        return Ok(());
    }
    hard_state.term = term;
    hard_state.commit = index;
    wal.save(Some(hard_state), &changes)?;
    tracing::warn!(
        removed = ?ids.iter().filter(|id| **id != self_id).map(|id| format!("{id:x}")).collect::<Vec<_>>(),
        commit = index,
        "--force-new-cluster: this member continues alone with its data; the other members \
         are removed from the cluster"
    );
    entries.extend(changes);
    Ok(())
}

pub fn load_cluster_state(store: &Store) -> Result<Option<ClusterState>, ServerError> {
    decode_cluster_state(
        store.meta_get(META_MEMBERSHIP)?.as_deref(),
        store.meta_get(META_ALARMS)?.as_deref(),
        store.meta_get(META_AUTH)?.as_deref(),
    )
}

/// The cluster state from its saved forms (see [`encode_cluster_state`]); `None` before the
/// first save.
pub fn decode_cluster_state(
    membership: Option<&[u8]>,
    alarms: Option<&[u8]>,
    auth: Option<&[u8]>,
) -> Result<Option<ClusterState>, ServerError> {
    let Some(raw) = membership else {
        return Ok(None);
    };
    let saved = MembershipState::decode(raw)
        .map_err(|e| ServerError::Internal(format!("backend: cannot decode membership: {e}")))?;
    let mut cluster = ClusterState {
        voters: saved.voters,
        learners: saved.learners,
        ..ClusterState::default()
    };
    for member in saved.members {
        cluster.membership.members.insert(member.id, member);
    }
    cluster.membership.removed = saved.removed.into_iter().collect();
    if let Some(raw) = alarms {
        let alarms = etcd_api::etcdserverpb::AlarmResponse::decode(raw)
            .map_err(|e| ServerError::Internal(format!("backend: cannot decode alarms: {e}")))?;
        cluster.alarms = alarms.alarms;
    }
    if let Some(raw) = auth {
        let state = etcd_api::internalpb::AuthStoreState::decode(raw)
            .map_err(|e| ServerError::Internal(format!("backend: cannot decode auth: {e}")))?;
        cluster.auth = crate::auth::AuthStore::from_state(state);
    }
    Ok(Some(cluster))
}

/// The encoded forms saved by the apply path (see [`load_cluster_state`]).
pub fn encode_cluster_state(cluster: &ClusterState) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let membership = MembershipState {
        members: cluster.membership.members.values().cloned().collect(),
        voters: cluster.voters.clone(),
        learners: cluster.learners.clone(),
        removed: cluster.membership.removed.iter().copied().collect(),
    };
    let alarms = etcd_api::etcdserverpb::AlarmResponse {
        header: None,
        alarms: cluster.alarms.clone(),
    };
    (
        membership.encode_to_vec(),
        alarms.encode_to_vec(),
        cluster.auth.to_state().encode_to_vec(),
    )
}

/// A snapshot from the leader is recorded in the WAL before its backend file replaces ours
/// (`RaftLoop::apply_snapshot`); after a crash in between, the WAL's snapshot is ahead of the
/// backend and the received file is still staged. Finishes the restore from it.
fn finish_staged_restore(cfg: &ServerConfig, store: &Store, index: u64) -> Result<(), ServerError> {
    if store.consistent_index().0 >= index {
        return Ok(());
    }
    let Some(staged) = crate::snapshot::staged_receipt(&cfg.snap_dir(), index) else {
        // Nothing to finish with: the check below refuses the start, naming what was lost.
        return Ok(());
    };
    tracing::warn!(
        snapshot_index = index,
        file = %staged.display(),
        "the member stopped while applying a snapshot from the leader; finishing the restore"
    );
    store.restore_from(&staged, index)?;
    Ok(())
}
