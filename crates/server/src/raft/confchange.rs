//! Membership changes: the checks a leader makes before proposing one, and applying a
//! committed ConfChange to raft-rs and to the replicated membership.
//!
//! Every ConfChange we propose carries the affected member's record as its context and the
//! proposer's request ID as its `id`, so the member that proposed can answer its client.

use etcd_api::internalpb::MemberRecord;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry};
use raft::{RawNode, storage::MemStorage};

use crate::apply::ClusterState;
use crate::error::ServerError;

/// A learner may be promoted once it has this fraction of the leader's log (etcd's 90%).
const LEARNER_READY_FRACTION: f64 = 0.9;

/// What applying one ConfChange entry did, for the Raft loop to act on.
#[derive(Debug, Default)]
pub struct Applied {
    /// The proposer's request ID (from `ConfChange.id`).
    pub request_id: u64,
    /// The peer set changed: the transport must add or drop streams.
    pub peers_changed: bool,
    /// This member was removed: it must stop.
    pub removed_self: bool,
    /// What changed in the membership (none for an entry applied before).
    pub change: Option<MemberChange>,
}

/// A membership change as applied, for the v2 store's mirror of the membership.
#[derive(Debug)]
pub enum MemberChange {
    Added(MemberRecord),
    Promoted(MemberRecord),
    Removed(u64),
}

/// Applies a committed ConfChange entry. raft-rs sees every one (its view starts from the
/// bootstrap state or a snapshot); the replicated membership is updated only for entries the
/// backend does not already have (`already_applied` false).
pub fn apply_entry(
    node: &mut RawNode<MemStorage>,
    cluster: &mut ClusterState,
    entry: &Entry,
    already_applied: bool,
    self_id: u64,
) -> Result<Applied, String> {
    let mut cc = ConfChange::default();
    cc.merge_from_bytes(&entry.data)
        .map_err(|e| format!("undecodable ConfChange at index {}: {e}", entry.index))?;
    // A removed member's ID is never used again (its old process could come back with stale
    // state), so adding it changes nothing, in raft-rs or the membership, as etcd's
    // ValidateConfigurationChange refuses it when applied. The proposer checks too; this
    // catches a proposer that had not yet applied the removal. Otherwise raft-rs would count
    // it as a voter while every member refused its links as a removed member's: a quorum lost
    // for good (found by the robustness runner replacing a member twice within a second,
    // when the new ID, hashed from the peer URLs and the second, is the removed one).
    let adds = matches!(
        cc.change_type,
        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode
    );
    if adds && cluster.membership.removed.contains(&cc.node_id) {
        return Err(format!(
            "ConfChange at index {} adds member {:x}, which was removed: not applied",
            entry.index, cc.node_id
        ));
    }
    etcd_failpoints::point(etcd_failpoints::names::BEFORE_APPLY_CONF_CHANGE);
    let applied = node.apply_conf_change(&cc);
    etcd_failpoints::point(etcd_failpoints::names::AFTER_APPLY_CONF_CHANGE);
    match applied {
        Ok(cs) => {
            cluster.voters = cs.voters.clone();
            cluster.learners = cs.learners.clone();
            // Snapshots taken from the storage carry the configuration as of now.
            node.mut_store().wl().set_conf_state(cs);
        }
        // A change raft-rs refuses (removing an unknown member) changes nothing anywhere.
        Err(e) => return Err(format!("ConfChange at index {} refused: {e}", entry.index)),
    }
    let mut applied = Applied {
        request_id: cc.id,
        ..Applied::default()
    };
    if already_applied {
        return Ok(applied);
    }
    let record = MemberRecord::decode(cc.context.as_ref()).ok();
    let members = &mut cluster.membership.members;
    match cc.change_type {
        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
            let is_learner = cc.change_type == ConfChangeType::AddLearnerNode;
            match (members.get_mut(&cc.node_id), record) {
                // Promotion of a learner: it keeps its name and URLs.
                (Some(existing), _) => {
                    existing.is_learner = is_learner;
                    applied.change = Some(MemberChange::Promoted(existing.clone()));
                }
                (None, Some(mut record)) => {
                    record.id = cc.node_id;
                    record.is_learner = is_learner;
                    applied.change = Some(MemberChange::Added(record.clone()));
                    members.insert(cc.node_id, record);
                }
                (None, None) => {
                    let record = MemberRecord {
                        id: cc.node_id,
                        is_learner,
                        ..Default::default()
                    };
                    applied.change = Some(MemberChange::Added(record.clone()));
                    members.insert(cc.node_id, record);
                }
            }
            applied.peers_changed = true;
        }
        ConfChangeType::RemoveNode => {
            members.remove(&cc.node_id);
            cluster.membership.removed.insert(cc.node_id);
            applied.change = Some(MemberChange::Removed(cc.node_id));
            applied.peers_changed = true;
            applied.removed_self = cc.node_id == self_id;
        }
    }
    Ok(applied)
}

/// Builds a ConfChange for a member change, carrying its record and the request ID.
pub fn conf_change(
    change_type: ConfChangeType,
    record: &MemberRecord,
    request_id: u64,
) -> ConfChange {
    ConfChange {
        change_type,
        node_id: record.id,
        context: record.encode_to_vec().into(),
        id: request_id,
        ..Default::default()
    }
}

/// etcd's `--strict-reconfig-check` rules, checked by the leader against Raft's progress: a
/// change may not leave the cluster without a quorum of members that are up.
pub fn check_strict(
    node: &RawNode<MemStorage>,
    cluster: &ClusterState,
    cc: &ConfChange,
) -> Result<(), ServerError> {
    let prs = node.raft.prs();
    let voters: Vec<u64> = cluster.voters.clone();
    let active = |id: u64| id == node.raft.id || prs.get(id).is_some_and(|p| p.recent_active);
    let started = |id: u64| {
        cluster
            .membership
            .members
            .get(&id)
            .is_some_and(|m| !m.name.is_empty())
    };
    match cc.change_type {
        ConfChangeType::AddNode if cluster.learners.contains(&cc.node_id) => {
            // Promotion: the learner must have most of the leader's log.
            let leader_match = prs.get(node.raft.id).map_or(0, |p| p.matched);
            let learner_match = prs.get(cc.node_id).map_or(0, |p| p.matched);
            if (learner_match as f64) < (leader_match as f64) * LEARNER_READY_FRACTION {
                return Err(ServerError::LearnerNotReady);
            }
            Ok(())
        }
        ConfChangeType::AddNode => {
            let size_after = voters.len() + 1;
            let started_count = voters.iter().filter(|id| started(**id)).count();
            // Growing a one-member cluster to two is allowed although the new member cannot
            // be started yet: it is how a cluster is rebuilt from one restored member.
            let growing_from_one = size_after == 2 && started_count == 1;
            if !growing_from_one && started_count < quorum(size_after) {
                tracing::warn!(
                    started = started_count,
                    voters = voters.len(),
                    "refusing to add a voting member: too few members started"
                );
                return Err(ServerError::NotEnoughStartedMembers);
            }
            if voters.iter().any(|id| !active(*id)) {
                return Err(ServerError::Unhealthy);
            }
            Ok(())
        }
        ConfChangeType::AddLearnerNode => Ok(()),
        ConfChangeType::RemoveNode => {
            if cluster.learners.contains(&cc.node_id) {
                return Ok(());
            }
            let remaining: Vec<u64> = voters
                .iter()
                .copied()
                .filter(|id| *id != cc.node_id)
                .collect();
            let started_count = remaining.iter().filter(|id| started(**id)).count();
            if started_count < quorum(remaining.len()) {
                return Err(ServerError::NotEnoughStartedMembers);
            }
            let active_count = remaining.iter().filter(|id| active(**id)).count();
            if active_count < quorum(remaining.len()) {
                return Err(ServerError::Unhealthy);
            }
            Ok(())
        }
    }
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{ConfState, EntryType};

    fn one_member_node() -> RawNode<MemStorage> {
        let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1], vec![])));
        let config = raft::Config {
            id: 1,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        RawNode::new(&config, storage, &logger).expect("raw node")
    }

    fn conf_entry(index: u64, change_type: ConfChangeType, node_id: u64) -> Entry {
        let mut cc = ConfChange::default();
        cc.set_change_type(change_type);
        cc.node_id = node_id;
        let mut entry = Entry::default();
        entry.set_entry_type(EntryType::EntryConfChange);
        entry.index = index;
        entry.data = cc.write_to_bytes().expect("encodes").into();
        entry
    }

    #[test]
    fn a_removed_id_is_never_added_again() {
        let mut node = one_member_node();
        let mut cluster = ClusterState::default();
        for (index, change) in [
            (2, ConfChangeType::AddNode),
            (3, ConfChangeType::RemoveNode),
        ] {
            apply_entry(
                &mut node,
                &mut cluster,
                &conf_entry(index, change, 7),
                false,
                1,
            )
            .expect("applied");
        }
        assert!(cluster.membership.removed.contains(&7));
        let again = apply_entry(
            &mut node,
            &mut cluster,
            &conf_entry(4, ConfChangeType::AddNode, 7),
            false,
            1,
        );
        assert!(again.is_err());
        assert_eq!(cluster.voters, vec![1], "raft-rs left unchanged");
        assert!(!cluster.membership.members.contains_key(&7));
    }

    #[test]
    fn quorum_sizes() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }
}
