//! The Lock and Election services, built inside the server on leases, txns and the applied
//! key space, as etcd builds them on its client's concurrency package.
//!
//! Both use the same queue: a contender puts `<name>/<lease in hex>` (attached to its lease)
//! and owns the lock, or leads, once no key under `<name>/` has a smaller create revision.
//! Waiting wakes on every applied entry and looks again; a contender whose lease expires has
//! its key deleted by the revoke, which wakes the next one.

use std::sync::Arc;

use etcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
    compare, range_request, request_op, response_op,
};
use etcd_api::internalpb::internal_request::Request;
use etcd_api::mvccpb::KeyValue;
use tonic::Status;

use super::access;
use crate::apply::ApplyResponse;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// `<name>/` and the range end selecting every key under it.
pub fn prefix_range(name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let end = etcd_client::prefix_end(&prefix);
    (prefix, end)
}

/// The queue key of a contender: `<name>/<lease in hex>`, as etcd's concurrency package.
pub fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = name.to_vec();
    key.extend_from_slice(format!("/{lease:x}").as_bytes());
    key
}

pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

pub fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

pub fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        range_end: Vec::new(),
    }
}

pub async fn txn(server: &EtcdServer, txn: TxnRequest) -> Result<TxnResponse, ServerError> {
    let applied = server.propose(Request::Txn(txn)).await?;
    match applied.response {
        ApplyResponse::Txn(mut resp) => {
            resp.header = server.header(applied.revision);
            Ok(resp)
        }
        other => Err(ServerError::Internal(format!(
            "unexpected apply result {other:?}"
        ))),
    }
}

/// The kvs of the `index`th response of a txn, if it was a range.
pub fn range_kvs(resp: &TxnResponse, index: usize) -> Vec<KeyValue> {
    match resp.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(r)) => r.kvs.clone(),
        _ => Vec::new(),
    }
}

/// Joins the queue under `name` with `key` (creating it with `value` and `lease` unless it
/// exists) and returns the key as stored, with its create revision.
pub async fn enqueue(
    server: &EtcdServer,
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> Result<KeyValue, ServerError> {
    let resp = txn(
        server,
        TxnRequest {
            compare: vec![create_revision_is(key, 0)],
            success: vec![put_op(key, value, lease), get_op(key)],
            failure: vec![get_op(key)],
        },
    )
    .await?;
    let index = if resp.succeeded { 1 } else { 0 };
    range_kvs(&resp, index)
        .into_iter()
        .next()
        .ok_or(ServerError::LeaseNotFound)
}

/// The contender with the smallest create revision under `name`, read locally after a
/// linearizable barrier.
pub async fn first_contender(
    server: &EtcdServer,
    name: &[u8],
) -> Result<Option<KeyValue>, ServerError> {
    server.linearizable_barrier().await?;
    Ok(first_contender_local(server, name)?)
}

fn first_contender_local(
    server: &EtcdServer,
    name: &[u8],
) -> Result<Option<KeyValue>, etcd_mvcc::MvccError> {
    let (key, range_end) = prefix_range(name);
    let resp = server.store.range(&RangeRequest {
        key,
        range_end,
        limit: 1,
        sort_order: range_request::SortOrder::Ascend as i32,
        sort_target: range_request::SortTarget::Create as i32,
        ..Default::default()
    })?;
    Ok(resp.kvs.into_iter().next())
}

/// Waits until `mine` is the first contender under `name`. Fails if `mine` disappears (its
/// lease expired or it was deleted), as etcd's session does.
pub async fn wait_until_first(
    server: &EtcdServer,
    name: &[u8],
    mine: &KeyValue,
) -> Result<(), ServerError> {
    let mut applied = server.applied_rx.clone();
    loop {
        // Mark the current apply position seen before reading, so no change is missed
        // between the read and the wait.
        applied.borrow_and_update();
        let first = first_contender_local(server, name)?;
        match first {
            Some(kv) if kv.key == mine.key && kv.create_revision == mine.create_revision => {
                return Ok(());
            }
            _ => {}
        }
        let still_there = server.store.range(&RangeRequest {
            key: mine.key.clone(),
            ..Default::default()
        })?;
        if still_there
            .kvs
            .first()
            .is_none_or(|kv| kv.create_revision != mine.create_revision)
        {
            return Err(ServerError::LeaseNotFound);
        }
        applied.changed().await.map_err(|_| ServerError::Stopped)?;
    }
}

/// Leaves the queue if the waiting contender goes away (its client canceled the call, so
/// tonic dropped the handler): otherwise the key would hold up everyone behind it until its
/// lease expired. etcd's mutex does the same cleanup on cancellation.
pub struct QueueGuard {
    server: Arc<EtcdServer>,
    key: Vec<u8>,
    create_revision: i64,
    armed: bool,
}

impl QueueGuard {
    pub fn new(server: &Arc<EtcdServer>, mine: &KeyValue) -> QueueGuard {
        QueueGuard {
            server: server.clone(),
            key: mine.key.clone(),
            create_revision: mine.create_revision,
            armed: true,
        }
    }

    /// The contender got what it waited for: keep the key.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let server = self.server.clone();
        let key = std::mem::take(&mut self.key);
        let revision = self.create_revision;
        // Only if the runtime is still there (not during shutdown).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = txn(
                    &server,
                    TxnRequest {
                        compare: vec![create_revision_is(&key, revision)],
                        success: vec![delete_op(&key)],
                        failure: vec![],
                    },
                )
                .await;
            });
        }
    }
}

pub struct LockService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl etcd_api::v3lockpb::lock_server::Lock for LockService {
    async fn lock(
        &self,
        request: tonic::Request<etcd_api::v3lockpb::LockRequest>,
    ) -> Result<tonic::Response<etcd_api::v3lockpb::LockResponse>, Status> {
        // The lock's keys are written and read in the caller's name.
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        access::check(&self.server, &caller, |a| {
            a.prefix(&req.name, true)?;
            a.prefix(&req.name, false)
        })?;
        let key = contender_key(&req.name, req.lease);
        let mine = enqueue(&self.server, &key, b"", req.lease).await?;
        // On an error or a canceled call, the guard takes us out of the queue.
        let guard = QueueGuard::new(&self.server, &mine);
        wait_until_first(&self.server, &req.name, &mine).await?;
        guard.disarm();
        Ok(tonic::Response::new(etcd_api::v3lockpb::LockResponse {
            header: self.server.current_header(),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: tonic::Request<etcd_api::v3lockpb::UnlockRequest>,
    ) -> Result<tonic::Response<etcd_api::v3lockpb::UnlockResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let key = request.into_inner().key;
        access::check(&self.server, &caller, |a| a.delete_key(&key))?;
        let applied = self
            .server
            .propose(Request::DeleteRange(DeleteRangeRequest {
                key,
                ..Default::default()
            }))
            .await?;
        Ok(tonic::Response::new(etcd_api::v3lockpb::UnlockResponse {
            header: self.server.header(applied.revision),
        }))
    }
}
