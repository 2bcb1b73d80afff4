//! Request checks done before proposing, with etcd's errors (its `v3rpc/key.go` rules): a bad
//! request is refused by the member that received it and never reaches the Raft log.

use std::collections::HashSet;

use etcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op::Request,
};
use tonic::{Code, Status};

use crate::error::ServerError;

pub fn check_range(r: &RangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey.into());
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey.into());
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Status::new(
            Code::InvalidArgument,
            "etcdserver: value is provided",
        ));
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Status::new(
            Code::InvalidArgument,
            "etcdserver: lease is provided",
        ));
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey.into());
    }
    Ok(())
}

/// The size and shape checks of a txn, then the duplicate-key check of each branch.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Status> {
    check_txn_ops(r, max_txn_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Status> {
    let op_count = r.compare.len().max(r.success.len()).max(r.failure.len());
    if op_count > max_txn_ops {
        return Err(ServerError::TooManyOps.into());
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(ServerError::EmptyKey.into());
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        check_op(op, max_txn_ops - op_count)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), Status> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete(r),
        Some(Request::RequestTxn(t)) => check_txn_ops(t, max_txn_ops),
        // An empty op: etcd answers "key not found" for it.
        None => Err(Status::new(
            Code::InvalidArgument,
            "etcdserver: key not found",
        )),
    }
}

/// A deleted key range: `end` empty is the single key `start`, otherwise the keys in
/// `[start, end)` compared byte for byte. As in etcd 3.4's check (an affine string interval),
/// `end == "\0"` is not "every key from `start` on" here, though the delete itself means
/// that: the interval is empty, so such a delete conflicts with no put (found by differential
/// fuzzing against etcd).
struct DeletedRange {
    start: Vec<u8>,
    end: Vec<u8>,
}

impl DeletedRange {
    fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            return key == self.start.as_slice();
        }
        key >= self.start.as_slice() && key < self.end.as_slice()
    }
}

fn intersects(dels: &[DeletedRange], key: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(key))
}

/// A branch may not put one key twice, nor put a key it also deletes; nested txns count, but
/// the two branches of a nested txn exclude each other so they may put the same key.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<DeletedRange>), Status> {
    let duplicate = || Status::from(ServerError::DuplicateKey);
    let mut dels: Vec<DeletedRange> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(DeletedRange {
                start: d.key.clone(),
                end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(txn)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&txn.success)?;
        let (puts_else, dels_else) = check_intervals(&txn.failure)?;
        for key in &puts_then {
            if puts.contains(key) || intersects(&dels, key) {
                return Err(duplicate());
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key)) || intersects(&dels, &key) {
                return Err(duplicate());
            }
            puts.insert(key);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }

    for op in ops {
        let Some(Request::RequestPut(put)) = &op.request else {
            continue;
        };
        if puts.contains(&put.key) || intersects(&dels, &put.key) {
            return Err(duplicate());
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    fn message(r: Result<(), Status>) -> String {
        r.err().map(|s| s.message().to_string()).unwrap_or_default()
    }

    #[test]
    fn duplicate_puts_in_one_branch_are_refused() {
        let t = txn(vec![put("a"), put("a")], vec![]);
        assert_eq!(
            message(check_txn(&t, 128)),
            "etcdserver: duplicate key given in txn request"
        );
        // The same key in both branches is fine: only one runs.
        assert!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128).is_ok());
    }

    #[test]
    fn put_inside_a_deleted_range_is_refused() {
        let t = txn(vec![del("a", "c"), put("b")], vec![]);
        assert!(check_txn(&t, 128).is_err());
        // etcd 3.4 compares the range end as a plain string: "\0" sorts before every key, so
        // a delete "from key" conflicts with nothing here, and etcd applies both.
        let t = txn(vec![del("a", "\0"), put("zzz")], vec![]);
        assert!(check_txn(&t, 128).is_ok());
        let t = txn(vec![del("a", "c"), put("c")], vec![]);
        assert!(check_txn(&t, 128).is_ok());
    }

    #[test]
    fn nested_txn_branches_may_share_keys_but_not_with_the_parent() {
        let nested = RequestOp {
            request: Some(Request::RequestTxn(txn(vec![put("k")], vec![put("k")]))),
        };
        assert!(check_txn(&txn(vec![nested.clone()], vec![]), 128).is_ok());
        assert!(check_txn(&txn(vec![nested, put("k")], vec![]), 128).is_err());
    }

    #[test]
    fn too_many_ops_and_empty_keys() {
        let ops: Vec<RequestOp> = (0..3).map(|i| put(&i.to_string())).collect();
        assert_eq!(
            message(check_txn(&txn(ops, vec![]), 2)),
            "etcdserver: too many operations in txn request"
        );
        assert_eq!(
            message(check_txn(&txn(vec![put("")], vec![]), 2)),
            "etcdserver: key is not provided"
        );
    }
}
