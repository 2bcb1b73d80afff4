//! `--namespace PREFIX`: every key a client names is taken as `PREFIX + key` on the members,
//! and every key a member answers with is given back without the prefix, so clients of the
//! proxy see a key space of their own. A range to the end of the key space (`range_end` of
//! "\0") becomes a range to the end of the prefix. Unlike etcd 3.4's proxy, lock names and
//! election names are namespaced too, so two namespaces never share a lock.

use etcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse, WatchCreateRequest, request_op,
    response_op,
};
use etcd_api::mvccpb::{Event, KeyValue};
use etcd_api::v3electionpb::LeaderKey;
use etcd_client::prefix_end;
use tonic::Status;

#[derive(Clone, Debug, Default)]
pub struct Namespace {
    prefix: Vec<u8>,
}

fn empty_key() -> Status {
    Status::invalid_argument("etcdserver: key is not provided")
}

impl Namespace {
    pub fn new(prefix: &str) -> Namespace {
        Namespace {
            prefix: prefix.as_bytes().to_vec(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.prefix.is_empty()
    }

    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// A client's `[key, end)` on the members. An empty `end` (one key) stays empty; "\0" (to
    /// the end of the key space) becomes the end of the prefix.
    pub fn interval(&self, key: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        if self.is_empty() {
            return (key.to_vec(), end.to_vec());
        }
        let end = match end {
            [] => Vec::new(),
            [0] => prefix_end(&self.prefix),
            end => self.key(end),
        };
        (self.key(key), end)
    }

    /// Takes the prefix off a key a member answered with. Keys outside the namespace cannot
    /// come back for a namespaced request; such a key is left whole rather than cut wrongly.
    pub fn strip(&self, key: &mut Vec<u8>) {
        if !self.is_empty() && key.starts_with(&self.prefix) {
            key.drain(..self.prefix.len());
        }
    }

    fn strip_kv(&self, kv: &mut KeyValue) {
        self.strip(&mut kv.key);
    }

    pub fn range_request(&self, mut r: RangeRequest) -> Result<RangeRequest, Status> {
        if self.is_empty() {
            return Ok(r);
        }
        if r.key.is_empty() && r.range_end.is_empty() {
            return Err(empty_key());
        }
        (r.key, r.range_end) = self.interval(&r.key, &r.range_end);
        Ok(r)
    }

    pub fn range_response(&self, r: &mut RangeResponse) {
        r.kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    pub fn put_request(&self, mut r: PutRequest) -> Result<PutRequest, Status> {
        if self.is_empty() {
            return Ok(r);
        }
        if r.key.is_empty() {
            return Err(empty_key());
        }
        r.key = self.key(&r.key);
        Ok(r)
    }

    pub fn put_response(&self, r: &mut PutResponse) {
        if let Some(kv) = r.prev_kv.as_mut() {
            self.strip_kv(kv);
        }
    }

    pub fn delete_request(&self, mut r: DeleteRangeRequest) -> Result<DeleteRangeRequest, Status> {
        if self.is_empty() {
            return Ok(r);
        }
        if r.key.is_empty() && r.range_end.is_empty() {
            return Err(empty_key());
        }
        (r.key, r.range_end) = self.interval(&r.key, &r.range_end);
        Ok(r)
    }

    pub fn delete_response(&self, r: &mut DeleteRangeResponse) {
        r.prev_kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    pub fn txn_request(&self, mut r: TxnRequest) -> Result<TxnRequest, Status> {
        if self.is_empty() {
            return Ok(r);
        }
        for c in &mut r.compare {
            self.compare(c);
        }
        for op in r.success.iter_mut().chain(r.failure.iter_mut()) {
            self.request_op(op)?;
        }
        Ok(r)
    }

    fn compare(&self, c: &mut Compare) {
        (c.key, c.range_end) = self.interval(&c.key, &c.range_end);
    }

    fn request_op(&self, op: &mut RequestOp) -> Result<(), Status> {
        match op.request.take() {
            Some(request_op::Request::RequestRange(r)) => {
                op.request = Some(request_op::Request::RequestRange(self.range_request(r)?));
            }
            Some(request_op::Request::RequestPut(r)) => {
                op.request = Some(request_op::Request::RequestPut(self.put_request(r)?));
            }
            Some(request_op::Request::RequestDeleteRange(r)) => {
                op.request = Some(request_op::Request::RequestDeleteRange(
                    self.delete_request(r)?,
                ));
            }
            Some(request_op::Request::RequestTxn(r)) => {
                op.request = Some(request_op::Request::RequestTxn(self.txn_request(r)?));
            }
            None => {}
        }
        Ok(())
    }

    pub fn txn_response(&self, r: &mut TxnResponse) {
        if self.is_empty() {
            return;
        }
        for op in &mut r.responses {
            self.response_op(op);
        }
    }

    fn response_op(&self, op: &mut ResponseOp) {
        match op.response.as_mut() {
            Some(response_op::Response::ResponseRange(r)) => self.range_response(r),
            Some(response_op::Response::ResponsePut(r)) => self.put_response(r),
            Some(response_op::Response::ResponseDeleteRange(r)) => self.delete_response(r),
            Some(response_op::Response::ResponseTxn(r)) => self.txn_response(r),
            None => {}
        }
    }

    pub fn watch_create(&self, r: &mut WatchCreateRequest) {
        if self.is_empty() {
            return;
        }
        (r.key, r.range_end) = self.interval(&r.key, &r.range_end);
    }

    pub fn event(&self, e: &mut Event) {
        if let Some(kv) = e.kv.as_mut() {
            self.strip_kv(kv);
        }
        if let Some(kv) = e.prev_kv.as_mut() {
            self.strip_kv(kv);
        }
    }

    /// The keys attached to a lease, as a client of this namespace may see them: only those
    /// inside it, without the prefix.
    pub fn lease_keys(&self, keys: &mut Vec<Vec<u8>>) {
        if self.is_empty() {
            return;
        }
        keys.retain(|k| k.starts_with(&self.prefix));
        keys.iter_mut().for_each(|k| self.strip(k));
    }

    pub fn kv(&self, kv: Option<&mut KeyValue>) {
        if let Some(kv) = kv {
            self.strip_kv(kv);
        }
    }

    pub fn leader_key_out(&self, leader: Option<&mut LeaderKey>) {
        if let Some(l) = leader
            && !self.is_empty()
        {
            l.name = self.key(&l.name);
            l.key = self.key(&l.key);
        }
    }

    pub fn leader_key_in(&self, leader: Option<&mut LeaderKey>) {
        if let Some(l) = leader {
            self.strip(&mut l.name);
            self.strip(&mut l.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_move_into_the_prefix() {
        let ns = Namespace::new("p/");
        assert_eq!(ns.interval(b"a", b""), (b"p/a".to_vec(), vec![]));
        assert_eq!(ns.interval(b"a", b"c"), (b"p/a".to_vec(), b"p/c".to_vec()));
        // From a key to the end of the key space: to the end of the namespace.
        assert_eq!(ns.interval(b"a", b"\0"), (b"p/a".to_vec(), b"p0".to_vec()));
        assert_eq!(ns.interval(b"", b"\0"), (b"p/".to_vec(), b"p0".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn answers_lose_the_prefix_and_foreign_lease_keys_are_hidden() {
        let ns = Namespace::new("p/");
        let mut r = RangeResponse {
            kvs: vec![KeyValue {
                key: b"p/a".to_vec(),
                ..KeyValue::default()
            }],
            ..RangeResponse::default()
        };
        ns.range_response(&mut r);
        assert_eq!(r.kvs[0].key, b"a");
        let mut keys = vec![b"p/x".to_vec(), b"q/y".to_vec()];
        ns.lease_keys(&mut keys);
        assert_eq!(keys, vec![b"x".to_vec()]);
    }

    #[test]
    fn txns_are_namespaced_all_the_way_down() {
        let ns = Namespace::new("p/");
        let inner = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"k".to_vec(),
                    ..PutRequest::default()
                })),
            }],
            ..TxnRequest::default()
        };
        let txn = TxnRequest {
            compare: vec![Compare {
                key: b"c".to_vec(),
                ..Compare::default()
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(inner)),
            }],
            ..TxnRequest::default()
        };
        let out = ns.txn_request(txn).unwrap();
        assert_eq!(out.compare[0].key, b"p/c");
        let Some(request_op::Request::RequestTxn(inner)) = &out.failure[0].request else {
            panic!("nested txn lost");
        };
        let Some(request_op::Request::RequestPut(put)) = &inner.success[0].request else {
            panic!("nested put lost");
        };
        assert_eq!(put.key, b"p/k");
        assert!(ns.put_request(PutRequest::default()).is_err());
    }
}
