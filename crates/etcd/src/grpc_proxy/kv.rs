//! The KV service through the proxy: namespaced, with serializable ranges answered from the
//! [`RangeCache`] when they can be, and the cache kept up by what goes through.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use etcd_api::etcdserverpb::kv_client::KvClient;
use etcd_api::etcdserverpb::kv_server::Kv;
use etcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, RequestOp, ResponseOp,
    TxnRequest, TxnResponse, request_op, response_op,
};
use tokio_stream::StreamExt;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::cache::{Lookup, RangeCache};
use super::metrics::ProxyMetrics;
use super::namespace::Namespace;
use super::upstream::{Upstream, outgoing, token, upstream_call};

pub struct KvProxy {
    pub upstream: Arc<Upstream>,
    pub namespace: Namespace,
    pub cache: Arc<Mutex<RangeCache>>,
    pub metrics: Arc<ProxyMetrics>,
}

fn compacted() -> Status {
    Status::out_of_range("etcdserver: mvcc: required revision has been compacted")
}

impl KvProxy {
    fn cache(&self) -> std::sync::MutexGuard<'_, RangeCache> {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that
        // matters more than losing it: start from what is there.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn invalidate(&self, key: &[u8], end: &[u8]) {
        let mut cache = self.cache();
        cache.invalidate(key, end);
        self.metrics.cache_keys.set(cache.len() as i64);
    }

    /// Updates the cache from a txn's operations and their answers (the branch that ran).
    fn learn_from_txn(&self, token: Option<&[u8]>, ops: &[RequestOp], answers: &[ResponseOp]) {
        let now = Instant::now();
        for (op, answer) in ops.iter().zip(answers) {
            match (&op.request, &answer.response) {
                (
                    Some(request_op::Request::RequestPut(put)),
                    Some(response_op::Response::ResponsePut(_)),
                ) => self.invalidate(&put.key, &[]),
                (
                    Some(request_op::Request::RequestDeleteRange(del)),
                    Some(response_op::Response::ResponseDeleteRange(_)),
                ) => self.invalidate(&del.key, &del.range_end),
                (
                    Some(request_op::Request::RequestRange(range)),
                    Some(response_op::Response::ResponseRange(answer)),
                ) => self.cache().add(token, range, answer, now),
                (
                    Some(request_op::Request::RequestTxn(txn)),
                    Some(response_op::Response::ResponseTxn(answer)),
                ) => {
                    let branch = if answer.succeeded {
                        &txn.success
                    } else {
                        &txn.failure
                    };
                    self.learn_from_txn(token, branch, &answer.responses);
                }
                _ => {}
            }
        }
    }
}

#[tonic::async_trait]
impl Kv for KvProxy {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let (metadata, _, range) = request.into_parts();
        let token = token(&metadata);
        let mut miss_key = None;
        if range.serializable {
            match self.cache().get(token.as_deref(), &range, Instant::now()) {
                Lookup::Hit(answer) => {
                    self.metrics.cache_hits.inc();
                    return Ok(Response::new(answer));
                }
                Lookup::Compacted => {
                    self.metrics.cache_hits.inc();
                    return Err(compacted());
                }
                Lookup::Miss(key) => {
                    self.metrics.cache_misses.inc();
                    miss_key = Some(key);
                }
            }
        }
        let upstream_range = self.namespace.range_request(range.clone())?;
        let result = upstream_call!(
            self.upstream,
            KvClient,
            range(outgoing(&metadata, upstream_range))
        );
        let mut answer = result?.into_inner();
        self.namespace.range_response(&mut answer);
        let mut cache = self.cache();
        match miss_key {
            Some(key) => cache.add_keyed(key, &range, &answer, Instant::now()),
            None => cache.add(token.as_deref(), &range, &answer, Instant::now()),
        }
        self.metrics.cache_keys.set(cache.len() as i64);
        Ok(Response::new(answer))
    }

    /// Forwarded chunk for chunk (never cached: a streamed range is a large one), the
    /// namespace stripped from each chunk's keys.
    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<BoxStream<RangeStreamResponse>>, Status> {
        let (metadata, _, range) = request.into_parts();
        let upstream_range = self.namespace.range_request(range)?;
        let result = upstream_call!(
            self.upstream,
            KvClient,
            range_stream(outgoing(&metadata, upstream_range))
        );
        let namespace = self.namespace.clone();
        let chunks = result?.into_inner().map(move |chunk| {
            chunk.map(|mut chunk| {
                if let Some(range) = &mut chunk.range_response {
                    namespace.range_response(range);
                }
                chunk
            })
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let (metadata, _, put) = request.into_parts();
        self.invalidate(&put.key, &[]);
        let put_key = put.key.clone();
        let upstream_put = self.namespace.put_request(put)?;
        let result = upstream_call!(
            self.upstream,
            KvClient,
            put(outgoing(&metadata, upstream_put))
        );
        let mut answer = result?.into_inner();
        // Again once applied: a range that raced with the put may have cached the old value.
        self.invalidate(&put_key, &[]);
        self.namespace.put_response(&mut answer);
        Ok(Response::new(answer))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let (metadata, _, delete) = request.into_parts();
        self.invalidate(&delete.key, &delete.range_end);
        let (key, end) = (delete.key.clone(), delete.range_end.clone());
        let upstream_delete = self.namespace.delete_request(delete)?;
        let result = upstream_call!(
            self.upstream,
            KvClient,
            delete_range(outgoing(&metadata, upstream_delete))
        );
        let mut answer = result?.into_inner();
        self.invalidate(&key, &end);
        self.namespace.delete_response(&mut answer);
        Ok(Response::new(answer))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let (metadata, _, txn) = request.into_parts();
        let upstream_txn = self.namespace.txn_request(txn.clone())?;
        let result = upstream_call!(
            self.upstream,
            KvClient,
            txn(outgoing(&metadata, upstream_txn))
        );
        let mut answer = result?.into_inner();
        self.namespace.txn_response(&mut answer);
        // A txn may say a compared key is current when the cache holds an older answer for
        // it: drop those, as etcd's proxy does.
        for compare in &txn.compare {
            self.invalidate(&compare.key, &compare.range_end);
        }
        let branch = if answer.succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        self.learn_from_txn(token(&metadata).as_deref(), branch, &answer.responses);
        Ok(Response::new(answer))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let (metadata, _, compaction) = request.into_parts();
        let revision = compaction.revision;
        let result = upstream_call!(
            self.upstream,
            KvClient,
            compact(outgoing(&metadata, compaction))
        );
        let answer = result?.into_inner();
        self.cache().compact(revision);
        Ok(Response::new(answer))
    }
}
