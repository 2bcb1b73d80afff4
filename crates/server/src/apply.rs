//! Applying committed proposals to the state machine.
//!
//! Every member applies the same entries in the same order, so everything here must be a
//! deterministic function of the entry and the state before it: no clocks, no member-local
//! sizes, no randomness. Checks that depend on local state (quota, request size) happen before
//! proposing, in the gRPC layer.

use std::time::Instant;

use etcd_api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, PutResponse, RangeRequest,
    RequestOp, TxnRequest, TxnResponse, alarm_request::AlarmAction, request_op,
};
use etcd_api::internalpb::{
    InternalRequest, MemberAttributes, RequestAuth, internal_request::Request,
};
use etcd_api::mvccpb::{Event, event::EventType};
use etcd_mvcc::ApplyBatch;

use crate::auth::checks::Asker;
use crate::auth::tokens::{AuthInfo, SimpleTokens};
use crate::auth::{AuthError, AuthStore};
use crate::error::ServerError;
use crate::lease::{self, Lessor};
use crate::membership::Membership;

/// The changes of one applied batch, per main revision, for watchers.
pub type RevisionEvents = Vec<(i64, Vec<Event>)>;

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
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke,
    Alarm(Vec<AlarmMember>),
    /// An auth change went through (its response carries only a header).
    Auth,
    /// An Authenticate was applied: the token every member now accepts.
    Authenticated(String),
    /// A v2 request's event or v2 error (`None` for a SYNC).
    V2(Option<crate::v2::apply::V2Outcome>),
    /// Requests with nothing to return (no-ops, member attributes).
    Empty,
}

/// The replicated state besides the key space: alarms and membership. Persisted in the
/// backend's meta table in the same transaction as the applied index.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    pub alarms: Vec<AlarmMember>,
    /// Users, roles, whether auth is on, and the auth revision.
    pub auth: AuthStore,
    pub membership: Membership,
    /// The Raft configuration (voters, learners) as of the applied index.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

pub const META_ALARMS: &str = "alarms";
pub const META_MEMBERSHIP: &str = "membership";
pub const META_AUTH: &str = "auth";

impl ClusterState {
    pub fn has_alarm(&self, alarm: AlarmType) -> bool {
        self.alarms.iter().any(|a| a.alarm == alarm as i32)
    }
}

/// What one apply batch works on besides the key space.
pub struct ApplyContext<'a> {
    pub cluster: &'a mut ClusterState,
    /// Set when `cluster` changed and must be saved.
    pub cluster_changed: bool,
    pub lessor: &'a mut Lessor,
    /// The v2 store, changed by v2 requests and saved in the same batch.
    pub v2: &'a crate::v2::V2,
    /// Member-local: the simple tokens this member accepts (not part of the replicated state;
    /// a token's expiry is by this member's clock, as a lease's deadline).
    pub tokens: &'a SimpleTokens,
    /// Every change the batch made, in revision order, for watchers.
    pub events: RevisionEvents,
}

/// Applies one proposal, then moves the key changes it made to `ctx.events` after updating
/// lease attachments from them.
pub fn apply_request(
    batch: &mut ApplyBatch<'_>,
    ctx: &mut ApplyContext<'_>,
    request: InternalRequest,
) -> ApplyResult {
    let result = apply_one(batch, ctx, request);
    let events = batch.take_events();
    for (_, revision_events) in &events {
        track_lease_attachments(ctx.lessor, revision_events);
    }
    ctx.events.extend(events);
    result
}

/// Reads the previous value of each change of this batch that has none yet, while the
/// history is still there: the watch hub hears of the batch after it is applied, and reads
/// previous values then for watchers that ask for them; a compaction later in the same batch
/// would have removed them (found by the robustness runner: live watchers got changes without
/// the previous values they asked for). Compactions are rare; this reads one key per change.
fn fill_previous_values(batch: &mut ApplyBatch<'_>, events: &mut RevisionEvents) {
    for (_, revision_events) in events.iter_mut() {
        for ev in revision_events.iter_mut().filter(|ev| ev.prev_kv.is_none()) {
            let Some(kv) = ev.kv.as_ref() else { continue };
            let created =
                ev.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision;
            if created {
                continue;
            }
            let previous = RangeRequest {
                key: kv.key.clone(),
                revision: kv.mod_revision - 1,
                ..Default::default()
            };
            if let Ok(found) = batch.range(&previous) {
                ev.prev_kv = found.kvs.into_iter().next();
            }
        }
    }
}

fn apply_one(
    batch: &mut ApplyBatch<'_>,
    ctx: &mut ApplyContext<'_>,
    request: InternalRequest,
) -> ApplyResult {
    let asker = request.auth;
    let Some(request) = request.request else {
        return Ok(empty(batch));
    };
    if let Some(asker) = &asker
        && ctx.cluster.auth.is_enabled()
    {
        check_permissions(&ctx.cluster.auth, ctx.lessor, asker, &request)?;
    }
    let state = &mut *ctx.cluster;
    let changed = &mut ctx.cluster_changed;
    let lessor = &mut *ctx.lessor;
    let response = match request {
        Request::Put(put) => {
            reject_writes_under_alarm(state, true)?;
            ApplyResponse::Put(batch.put(&put, &|id| lessor.exists(id))?)
        }
        Request::DeleteRange(del) => {
            reject_writes_under_alarm(state, false)?;
            ApplyResponse::DeleteRange(batch.delete_range(&del)?)
        }
        Request::Txn(txn) => {
            reject_writes_under_alarm(state, txn_has_put(&txn))?;
            ApplyResponse::Txn(batch.txn(&txn, &|id| lessor.exists(id))?)
        }
        Request::Compaction(c) => {
            fill_previous_values(batch, &mut ctx.events);
            batch.compact(c.revision)?;
            ApplyResponse::Compaction
        }
        Request::Alarm(alarm) => {
            let result = apply_alarm(state, &alarm);
            *changed |= alarm.action() != AlarmAction::Get;
            ApplyResponse::Alarm(result)
        }
        Request::MemberAttributes(attrs) => {
            let id = attrs.member_id;
            *changed |= apply_member_attributes(state, attrs);
            if let Some(member) = state.membership.members.get(&id) {
                mirror_in_v2(batch, ctx.v2, |v2, now| {
                    crate::v2::members::published(v2, member, now)
                });
            }
            ApplyResponse::Empty
        }
        Request::Noop(_) => ApplyResponse::Empty,
        Request::V2(req) => {
            let mut v2 = ctx.v2.lock();
            let now = crate::v2::unix_nanos(std::time::SystemTime::now());
            let outcome = crate::v2::apply::apply(&mut v2, &req, now);
            crate::v2::persist::save_changes(batch, &mut v2);
            ApplyResponse::V2(outcome)
        }
        Request::MemberPeerUrls(update) => {
            if let Some(member) = state.membership.members.get_mut(&update.member_id) {
                member.peer_urls = update.peer_urls;
                *changed = true;
                let member = &*member;
                mirror_in_v2(batch, ctx.v2, |v2, now| {
                    crate::v2::members::updated(v2, member, now)
                });
            }
            ApplyResponse::Empty
        }
        Request::LeaseGrant(grant) => {
            ApplyResponse::LeaseGrant(apply_lease_grant(batch, lessor, &grant)?)
        }
        Request::LeaseRevoke(revoke) => {
            apply_lease_revoke(batch, lessor, &revoke)?;
            ApplyResponse::LeaseRevoke
        }
        // Checkpoints (etcd's experimental remaining-TTL persistence) are not proposed by us.
        Request::LeaseCheckpoint(_) => ApplyResponse::Empty,
        Request::Authenticate(auth) => {
            let info = AuthInfo {
                user: auth.name,
                revision: state.auth.revision(),
            };
            ctx.tokens
                .assign(auth.simple_token.clone(), info, Instant::now());
            ApplyResponse::Authenticated(auth.simple_token)
        }
        auth => {
            apply_auth_change(&mut state.auth, ctx.tokens, auth)?;
            *changed = true;
            ApplyResponse::Auth
        }
    };
    Ok(Applied {
        revision: batch.current_revision(),
        response,
    })
}

/// Changes the v2 store's mirror of the membership and saves it in the batch.
fn mirror_in_v2(
    batch: &mut ApplyBatch<'_>,
    v2: &crate::v2::V2,
    change: impl FnOnce(&mut crate::v2::store::Store, i64),
) {
    let mut store = v2.lock();
    change(
        &mut store,
        crate::v2::unix_nanos(std::time::SystemTime::now()),
    );
    crate::v2::persist::save_changes(batch, &mut store);
}

/// A client's request, checked against the auth store as it stands when the request is
/// applied (etcd's auth applier): a permission revoked before it, or a token from an older
/// auth revision, refuses it on every member alike.
fn check_permissions(
    auth: &AuthStore,
    lessor: &Lessor,
    asker: &RequestAuth,
    request: &Request,
) -> Result<(), ServerError> {
    let asker = Asker {
        store: auth,
        user: &asker.user,
        revision: asker.revision,
    };
    let lease_keys = |id: i64| lessor.keys_of(id);
    match request {
        Request::Put(r) => asker.put(r, &lease_keys)?,
        Request::DeleteRange(r) => asker.delete_range(r)?,
        Request::Txn(r) => asker.txn(r, &lease_keys)?,
        Request::LeaseRevoke(r) => asker.lease_revoke(&lease_keys(r.id))?,
        Request::AuthEnable(_)
        | Request::AuthDisable(_)
        | Request::AuthUserAdd(_)
        | Request::AuthUserDelete(_)
        | Request::AuthUserChangePassword(_)
        | Request::AuthUserGrantRole(_)
        | Request::AuthUserRevokeRole(_)
        | Request::AuthRoleAdd(_)
        | Request::AuthRoleGrantPermission(_)
        | Request::AuthRoleRevokePermission(_)
        | Request::AuthRoleDelete(_) => asker.admin()?,
        _ => {}
    }
    Ok(())
}

/// An auth change; tokens follow it (a deleted user, a changed password, auth turned off).
fn apply_auth_change(
    auth: &mut AuthStore,
    tokens: &SimpleTokens,
    request: Request,
) -> Result<(), ServerError> {
    match request {
        Request::AuthEnable(_) => auth.enable()?,
        Request::AuthDisable(_) => {
            auth.disable();
            tokens.clear();
        }
        Request::AuthUserAdd(r) => {
            let no_password = r.options.is_some_and(|o| o.no_password);
            auth.user_add(&r.name, Some(&r.hashed_password), no_password)?;
        }
        Request::AuthUserDelete(r) => {
            auth.user_delete(&r.name)?;
            tokens.invalidate_user(&r.name);
        }
        Request::AuthUserChangePassword(r) => {
            auth.user_change_password(&r.name, &r.hashed_password)?;
            tokens.invalidate_user(&r.name);
        }
        Request::AuthUserGrantRole(r) => auth.user_grant_role(&r.user, &r.role)?,
        Request::AuthUserRevokeRole(r) => auth.user_revoke_role(&r.name, &r.role)?,
        Request::AuthRoleAdd(r) => auth.role_add(&r.name)?,
        Request::AuthRoleDelete(r) => auth.role_delete(&r.role)?,
        Request::AuthRoleGrantPermission(r) => {
            let perm = r
                .perm
                .ok_or(ServerError::Auth(AuthError::PermissionNotGranted))?;
            auth.role_grant_permission(&r.name, perm)?;
        }
        Request::AuthRoleRevokePermission(r) => {
            auth.role_revoke_permission(&r.role, &r.key, &r.range_end)?
        }
        other => {
            return Err(ServerError::Internal(format!(
                "not an auth change: {other:?}"
            )));
        }
    }
    Ok(())
}

fn empty(batch: &ApplyBatch<'_>) -> Applied {
    Applied {
        revision: batch.current_revision(),
        response: ApplyResponse::Empty,
    }
}

fn apply_lease_grant(
    batch: &mut ApplyBatch<'_>,
    lessor: &mut Lessor,
    req: &LeaseGrantRequest,
) -> Result<LeaseGrantResponse, ServerError> {
    if req.id == 0 {
        // The proposing member picks an ID when the client gives none; 0 is etcd's "no
        // lease". Any other ID is the client's to choose, negative ones included, as etcd's
        // lessor takes them.
        return Err(ServerError::LeaseNotFound);
    }
    // The deadline is member-local (only the leader keeps one), so reading the clock here
    // does not make members diverge.
    let ttl = lessor.grant(req.id, req.ttl, Instant::now())?;
    batch.meta_put(&lease::meta_key(req.id), &lease::encode_meta(req.id, ttl));
    Ok(LeaseGrantResponse {
        header: None,
        id: req.id,
        ttl,
        error: String::new(),
    })
}

/// Revokes a lease: its keys are deleted in one revision, then the lease is gone.
fn apply_lease_revoke(
    batch: &mut ApplyBatch<'_>,
    lessor: &mut Lessor,
    req: &LeaseRevokeRequest,
) -> Result<(), ServerError> {
    let keys = lessor.revoke(req.id)?;
    if !keys.is_empty() {
        let deletes = keys
            .into_iter()
            .map(|key| RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key,
                        ..Default::default()
                    },
                )),
            })
            .collect();
        let txn = TxnRequest {
            compare: Vec::new(),
            success: deletes,
            failure: Vec::new(),
        };
        batch.txn(&txn, &|_| true)?;
    }
    batch.meta_delete(&lease::meta_key(req.id));
    Ok(())
}

/// Keeps each lease's key set in step with the key space: a put attaches the key to its lease
/// (and detaches it from the lease it had), a delete detaches it.
fn track_lease_attachments(lessor: &mut Lessor, events: &[Event]) {
    for event in events {
        let Some(kv) = &event.kv else { continue };
        let previous_lease = lessor.lease_of(&kv.key);
        let is_put = event.r#type == EventType::Put as i32;
        let new_lease = if is_put { kv.lease } else { 0 };
        if previous_lease != 0 && previous_lease != new_lease {
            lessor.detach(previous_lease, &kv.key);
        }
        if new_lease != 0 {
            lessor.attach(new_lease, &kv.key);
        }
    }
}

/// etcd's capped applier: under NOSPACE, writes that can grow the store are refused; deletes and
/// compactions still go through so that an operator can make room. CORRUPT refuses all writes.
fn reject_writes_under_alarm(state: &ClusterState, grows: bool) -> Result<(), ServerError> {
    if state.has_alarm(AlarmType::Corrupt) {
        return Err(ServerError::Corrupt);
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

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::etcdserverpb::{CompactionRequest, PutRequest};
    use etcd_mvcc::{Store, StoreOptions};

    fn request(request: Request) -> InternalRequest {
        InternalRequest {
            request: Some(request),
            ..InternalRequest::default()
        }
    }

    /// A batch that changes a key and then compacts past the change: the change still carries
    /// the value it replaced, read before the compaction removed it.
    #[test]
    fn a_compaction_in_the_batch_leaves_earlier_changes_their_previous_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
        let mut cluster = ClusterState::default();
        let mut lessor = Lessor::new(1);
        let v2 = crate::v2::V2::new(crate::v2::store::Store::new());
        let tokens = SimpleTokens::new(std::time::Duration::from_secs(60));
        let put = |value: &str| {
            request(Request::Put(PutRequest {
                key: b"k".to_vec(),
                value: value.as_bytes().to_vec(),
                ..PutRequest::default()
            }))
        };
        let events = store
            .apply(|batch| {
                let mut ctx = ApplyContext {
                    cluster: &mut cluster,
                    cluster_changed: false,
                    lessor: &mut lessor,
                    v2: &v2,
                    tokens: &tokens,
                    events: RevisionEvents::new(),
                };
                for (index, value) in ["a", "b", "c"].iter().enumerate() {
                    apply_request(batch, &mut ctx, put(value)).unwrap();
                    batch.set_consistent_index(index as u64 + 1, 1);
                }
                let compaction = request(Request::Compaction(CompactionRequest {
                    revision: 4,
                    physical: false,
                }));
                apply_request(batch, &mut ctx, compaction).unwrap();
                batch.set_consistent_index(4, 1);
                ctx.events
            })
            .unwrap();
        let previous: Vec<Option<Vec<u8>>> = events
            .iter()
            .flat_map(|(_, evs)| evs.iter())
            .map(|e| e.prev_kv.as_ref().map(|kv| kv.value.clone()))
            .collect();
        assert_eq!(
            previous,
            vec![None, Some(b"a".to_vec()), Some(b"b".to_vec())]
        );
    }
}
