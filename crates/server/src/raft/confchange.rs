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
    match node.apply_conf_change(&cc) {
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
    use super::quorum;

    #[test]
    fn quorum_sizes() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }
}
