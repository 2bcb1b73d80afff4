//! Helpers shared by the integration tests: request builders and a temp store.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use etcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_api::etcdserverpb::request_op::Request;
use etcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use etcd_mvcc::{MvccError, Store, StoreOptions};

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Option<Store>,
}

impl TestStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
        TestStore {
            dir,
            store: Some(store),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    pub fn s(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    pub fn reopen(&mut self) {
        drop(self.store.take());
        self.store = Some(Store::open(&self.path(), StoreOptions::default()).unwrap());
    }
}

pub fn open(path: &Path) -> Store {
    Store::open(path, StoreOptions::default()).unwrap()
}

pub fn no_leases(_: i64) -> bool {
    false
}

pub fn all_leases(_: i64) -> bool {
    true
}

pub fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

pub fn del_req(key: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        range_end: end.into(),
        prev_kv: false,
    }
}

pub fn range_req(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

pub fn put(s: &Store, key: &str, value: &str) -> PutResponse {
    s.apply(|b| b.put(&put_req(key, value), &all_leases))
        .unwrap()
        .unwrap()
}

pub fn try_put(
    s: &Store,
    req: &PutRequest,
    leases: &dyn Fn(i64) -> bool,
) -> Result<PutResponse, MvccError> {
    s.apply(|b| b.put(req, leases)).unwrap()
}

pub fn del(s: &Store, key: &str, end: &str) -> DeleteRangeResponse {
    s.apply(|b| b.delete_range(&del_req(key, end)))
        .unwrap()
        .unwrap()
}

pub fn txn(s: &Store, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
    s.apply(|b| b.txn(req, &all_leases)).unwrap()
}

pub fn get(s: &Store, req: &RangeRequest) -> RangeResponse {
    s.range(req).unwrap()
}

/// (key, value) pairs of a response, as strings.
pub fn kv_pairs(resp: &RangeResponse) -> Vec<(String, String)> {
    resp.kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key.clone()).unwrap(),
                String::from_utf8(kv.value.clone()).unwrap(),
            )
        })
        .collect()
}

pub fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

pub fn rev(resp_header: &Option<etcd_api::etcdserverpb::ResponseHeader>) -> i64 {
    resp_header.as_ref().unwrap().revision
}

pub fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put_req(key, value))),
    }
}

pub fn op_del(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(del_req(key, end))),
    }
}

pub fn op_range(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(range_req(key, end))),
    }
}

pub fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(t)),
    }
}

pub fn cmp(key: &str, target: CompareTarget, result: CompareResult, tu: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        range_end: vec![],
        target_union: Some(tu),
    }
}

pub fn cmp_range(
    key: &str,
    end: &str,
    target: CompareTarget,
    result: CompareResult,
    tu: TargetUnion,
) -> Compare {
    Compare {
        range_end: end.into(),
        ..cmp(key, target, result, tu)
    }
}
