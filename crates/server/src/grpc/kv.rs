//! The KV service: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use etcd_api::etcdserverpb::kv_server::Kv;
use etcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, RequestOp, TxnRequest,
    TxnResponse, request_op,
};
use etcd_api::internalpb::internal_request::Request;
use tonic::codegen::BoxStream;
use tonic::{Response, Status};

use super::{access, check_quota, range_stream, validate};
use crate::apply::ApplyResponse;
use crate::error::ServerError;
use crate::server::EtcdServer;
use etcd_mvcc::Bounded;

pub struct KvService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: tonic::Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        validate::check_range(&req)?;
        if !req.serializable
            && !etcd_failpoints::switched_on(
                etcd_failpoints::names::UNSAFE_STALE_LINEARIZABLE_READS,
            )
        {
            self.server.linearizable_barrier().await?;
        }
        access::check(&self.server, &caller, |a| a.range(&req))?;
        self.server.metrics.range_total.inc();
        // A large answer waits for its share of the read budget, kept until it is sent;
        // any other is read at once.
        let store = &self.server.store;
        let (mut resp, permit) = match store
            .range_within(&req, crate::read_budget::SMALL_ANSWER_BYTES)
            .map_err(ServerError::from)?
        {
            Bounded::Answer(resp) => (resp, None),
            Bounded::TooLarge(estimate) => {
                let permit = self.server.read_budget.admit(estimate).await;
                // Reading a large answer takes a worker for tens of milliseconds: off the
                // async workers, so the watch events and small requests they run meanwhile,
                // on this connection and others, are not held up behind it (etcd 15402).
                let (store, read) = (store.clone(), req.clone());
                let resp = tokio::task::spawn_blocking(move || store.range(&read))
                    .await
                    .map_err(|e| Status::internal(format!("range task failed: {e}")))?
                    .map_err(ServerError::from)?;
                (resp, permit)
            }
        };
        // A permission change while reading: the answer may hold what is no longer allowed.
        access::check(&self.server, &caller, |a| a.range(&req))?;
        // The revision the read saw, as etcd answers: a client that lists at revision R and
        // then watches from R + 1 (Kubernetes' reflectors do) must not miss the write at R, so
        // the header may not name a revision newer than the data.
        let read_at = resp
            .header
            .map_or_else(|| self.server.store.current_revision(), |h| h.revision);
        resp.header = self.server.header(read_at);
        let mut response = Response::new(resp);
        if let Some(permit) = permit {
            response.extensions_mut().insert(permit);
        }
        Ok(response)
    }

    async fn range_stream(
        &self,
        request: tonic::Request<RangeRequest>,
    ) -> Result<Response<BoxStream<RangeStreamResponse>>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        validate::check_range(&req)?;
        range_stream::check(&req)?;
        if !req.serializable {
            self.server.linearizable_barrier().await?;
        }
        access::check(&self.server, &caller, |a| a.range(&req))?;
        self.server.metrics.range_total.inc();
        let chunks = range_stream::start(self.server.clone(), caller, req);
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(chunks),
        )))
    }

    async fn put(
        &self,
        request: tonic::Request<PutRequest>,
    ) -> Result<Response<PutResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        validate::check_put(&req)?;
        access::check(&self.server, &caller, |a| {
            a.put(&req, &access::lease_keys(&self.server))
        })?;
        check_quota(&self.server, req.key.len() + req.value.len()).await?;
        let applied = self
            .server
            .propose_as(Request::Put(req), caller.request_auth())
            .await?;
        match applied.response {
            ApplyResponse::Put(mut resp) => {
                resp.header = self.server.header(applied.revision);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: tonic::Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        validate::check_delete(&req)?;
        access::check(&self.server, &caller, |a| a.delete_range(&req))?;
        let applied = self
            .server
            .propose_as(Request::DeleteRange(req), caller.request_auth())
            .await?;
        match applied.response {
            ApplyResponse::DeleteRange(mut resp) => {
                resp.header = self.server.header(applied.revision);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(
        &self,
        request: tonic::Request<TxnRequest>,
    ) -> Result<Response<TxnResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        validate::check_txn(&req, self.server.cfg.max_txn_ops)?;
        access::check(&self.server, &caller, |a| {
            a.txn(&req, &access::lease_keys(&self.server))
        })?;
        if etcd_mvcc::txn_reads_only(&req) {
            return self.read_only_txn(&caller, req).await;
        }
        check_quota(&self.server, txn_put_bytes(&req)).await?;
        let applied = self
            .server
            .propose_as(Request::Txn(req), caller.request_auth())
            .await?;
        match applied.response {
            ApplyResponse::Txn(mut resp) => {
                resp.header = self.server.header(applied.revision);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        request: tonic::Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let req = request.into_inner();
        let physical = req.physical;
        let applied = self.server.propose(Request::Compaction(req)).await?;
        if physical {
            // As etcd: answer once the compacted records are gone from this member's backend.
            // They are deleted a batch at a time beside the writes; this only waits.
            let store = self.server.store.clone();
            tokio::task::spawn_blocking(move || store.wait_compactions_deleted())
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(Response::new(CompactionResponse {
            header: self.server.header(applied.revision),
        }))
    }
}

impl KvService {
    /// A txn that only reads is served by this member like a range, without a log entry, as
    /// etcd serves it: after a ReadIndex barrier unless it is serializable.
    async fn read_only_txn(
        &self,
        caller: &access::Caller,
        req: TxnRequest,
    ) -> Result<Response<TxnResponse>, Status> {
        if !is_serializable(&req)
            && !etcd_failpoints::switched_on(
                etcd_failpoints::names::UNSAFE_STALE_LINEARIZABLE_READS,
            )
        {
            self.server.linearizable_barrier().await?;
        }
        let mut resp = self
            .server
            .store
            .read_txn(&req)
            .map_err(ServerError::from)?;
        // A permission change while reading: the answer may hold what is no longer allowed.
        access::check(&self.server, caller, |a| {
            a.txn(&req, &access::lease_keys(&self.server))
        })?;
        self.server.metrics.count_txn(&resp);
        let read_at = resp
            .header
            .map_or_else(|| self.server.store.current_revision(), |h| h.revision);
        resp.header = self.server.header(read_at);
        Ok(Response::new(resp))
    }
}

/// etcd's rule: a read-only txn whose ranges are all serializable may be served from this
/// member's state without asking the leader. Unlike etcd 3.4, a txn with no range at all
/// (compares only) is not: it is linearizable here, so a compare-only txn on a follower cannot
/// answer from the past.
fn is_serializable(txn: &TxnRequest) -> bool {
    let mut ops = txn.success.iter().chain(&txn.failure).peekable();
    ops.peek().is_some()
        && ops.all(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => r.serializable,
            Some(request_op::Request::RequestTxn(t)) => is_serializable(t),
            _ => false,
        })
}

fn txn_put_bytes(txn: &TxnRequest) -> usize {
    fn op_bytes(op: &RequestOp) -> usize {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => p.key.len() + p.value.len(),
            Some(request_op::Request::RequestTxn(t)) => txn_put_bytes(t),
            _ => 0,
        }
    }
    txn.success
        .iter()
        .chain(txn.failure.iter())
        .map(op_bytes)
        .sum()
}

pub(super) fn unexpected(response: ApplyResponse) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {response:?}"))
}
