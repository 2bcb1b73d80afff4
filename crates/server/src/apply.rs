//! Applying committed proposals to the state machine.
//!
//! Every member applies the same entries in the same order, so everything here must be a
//! deterministic function of the entry and the state before it: no clocks, no member-local
//! sizes, no randomness. Checks that depend on local state (quota, request size) happen before
//! proposing, in the gRPC layer.

use etcd_api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, DeleteRangeResponse, PutResponse, RequestOp, TxnRequest,
    TxnResponse, alarm_request::AlarmAction, request_op,
};
use etcd_api::internalpb::{InternalRequest, MemberAttributes, internal_request::Request};
use etcd_mvcc::ApplyBatch;

use crate::error::ServerError;
use crate::membership::Membership;

/// What applying one proposal produced, with the store revision right after it.
pub type ApplyResult = Result<Applied, ServerError>;

#[derive(Debug)]
pub struct Applied {
    pub revision: i64,
    pub response: ApplyResponse,
}

#[derive(Debug)]
pub enum ApplyResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction,
    Alarm(Vec<AlarmMember>),
    /// Requests with nothing to return (no-ops, member attributes).
    Empty,
}

/// The replicated state besides the key space: alarms and membership. Persisted in the
/// backend's meta table in the same transaction as the applied index.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    pub alarms: Vec<AlarmMember>,
    pub membership: Membership,
    /// The Raft configuration (voters, learners) as of the applied index.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

pub const META_ALARMS: &str = "alarms";
pub const META_MEMBERSHIP: &str = "membership";

impl ClusterState {
    pub fn has_alarm(&self, alarm: AlarmType) -> bool {
        self.alarms.iter().any(|a| a.alarm == alarm as i32)
    }
}

/// Applies one proposal. `changed` is set when the cluster state changed and must be saved.
pub fn apply_request(
    batch: &mut ApplyBatch<'_>,
    state: &mut ClusterState,
    changed: &mut bool,
    request: InternalRequest,
) -> ApplyResult {
    let Some(request) = request.request else {
        return Ok(empty(batch));
    };
    let response = match request {
        Request::Put(put) => {
            reject_writes_under_alarm(state, true)?;
            ApplyResponse::Put(batch.put(&put, &no_leases)?)
        }
        Request::DeleteRange(del) => {
            reject_writes_under_alarm(state, false)?;
            ApplyResponse::DeleteRange(batch.delete_range(&del)?)
        }
        Request::Txn(txn) => {
            reject_writes_under_alarm(state, txn_has_put(&txn))?;
            ApplyResponse::Txn(batch.txn(&txn, &no_leases)?)
        }
        Request::Compaction(c) => {
            batch.compact(c.revision)?;
            ApplyResponse::Compaction
        }
        Request::Alarm(alarm) => {
            let result = apply_alarm(state, &alarm);
            *changed |= alarm.action() != AlarmAction::Get;
            ApplyResponse::Alarm(result)
        }
        Request::MemberAttributes(attrs) => {
            *changed |= apply_member_attributes(state, attrs);
            ApplyResponse::Empty
        }
        Request::Noop(_) => ApplyResponse::Empty,
        Request::LeaseGrant(_) | Request::LeaseRevoke(_) | Request::LeaseCheckpoint(_) => {
            // Leases land with the watch/lease work; until then no member proposes these.
            return Err(ServerError::LeaseNotFound);
        }
    };
    Ok(Applied {
        revision: batch.current_revision(),
        response,
    })
}

fn empty(batch: &ApplyBatch<'_>) -> Applied {
    Applied {
        revision: batch.current_revision(),
        response: ApplyResponse::Empty,
    }
}

/// No lease exists until the lease work lands, so any lease ID is unknown.
fn no_leases(_id: i64) -> bool {
    false
}

/// etcd's capped applier: under NOSPACE, writes that can grow the store are refused; deletes and
/// compactions still go through so that an operator can make room. CORRUPT refuses all writes.
fn reject_writes_under_alarm(state: &ClusterState, grows: bool) -> Result<(), ServerError> {
    if state.has_alarm(AlarmType::Corrupt) {
        return Err(ServerError::Internal("etcdserver: corrupt cluster".into()));
    }
    if grows && state.has_alarm(AlarmType::Nospace) {
        return Err(ServerError::NoSpace);
    }
    Ok(())
}

fn txn_has_put(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(txn.failure.iter()).any(op_has_put)
}

fn op_has_put(op: &RequestOp) -> bool {
    match &op.request {
        Some(request_op::Request::RequestPut(_)) => true,
        Some(request_op::Request::RequestTxn(t)) => txn_has_put(t),
        _ => false,
    }
}

fn apply_alarm(state: &mut ClusterState, req: &AlarmRequest) -> Vec<AlarmMember> {
    match req.action() {
        AlarmAction::Get => state.alarms.clone(),
        AlarmAction::Activate => {
            if req.alarm() == AlarmType::None {
                return Vec::new();
            }
            let alarm = AlarmMember {
                member_id: req.member_id,
                alarm: req.alarm,
            };
            if !state.alarms.contains(&alarm) {
                state.alarms.push(alarm);
                tracing::warn!(
                    member = format!("{:x}", req.member_id),
                    alarm = ?req.alarm(),
                    "alarm raised; writes that grow the store are refused until it is disarmed \
                     (after compaction and defragmentation, run `etcdctl alarm disarm`)"
                );
            }
            vec![alarm]
        }
        AlarmAction::Deactivate => {
            let before = state.alarms.len();
            let mut removed = Vec::new();
            state.alarms.retain(|a| {
                let matches = (req.member_id == 0 || a.member_id == req.member_id)
                    && (req.alarm() == AlarmType::None || a.alarm == req.alarm);
                if matches {
                    removed.push(*a);
                }
                !matches
            });
            if state.alarms.len() != before {
                tracing::info!(count = removed.len(), "alarm disarmed");
            }
            removed
        }
    }
}

fn apply_member_attributes(state: &mut ClusterState, attrs: MemberAttributes) -> bool {
    match state.membership.members.get_mut(&attrs.member_id) {
        Some(member) => {
            member.name = attrs.name;
            member.client_urls = attrs.client_urls;
            true
        }
        // The member was removed before its attributes were applied; nothing to update.
        None => false,
    }
}
