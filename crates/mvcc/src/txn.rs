//! Transactions: compares, the pre-execution checks, and execution, as etcd's
//! `applierV3backend.Txn` does them.
//!
//! Order matters and is etcd's:
//! 1. Every compare on the path, nested transactions' included, is evaluated against the
//!    state before the transaction (a nested compare does not see the outer writes).
//! 2. If the transaction can write, every put on the path is checked against that same
//!    state: `ignore_value`/`ignore_lease` need the key to exist (KeyNotFound), a lease must
//!    exist (LeaseNotFound).
//! 3. Every range on the path is checked: a revision above the current one is FutureRev,
//!    one below the compacted one is Compacted.
//! 4. The ops run in order in one write scope; reads see earlier writes of the same
//!    transaction.
//!
//! etcd panics if an op still fails in step 4 (a put with `ignore_value` on a key deleted
//! earlier in the same transaction); here the whole transaction is undone and the error
//! returned, which every member does identically.

use std::cmp::Ordering;

use etcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_api::etcdserverpb::request_op::Request;
use etcd_api::etcdserverpb::response_op::Response;
use etcd_api::etcdserverpb::{Compare, ResponseHeader, ResponseOp, TxnRequest, TxnResponse};
use etcd_api::mvccpb::KeyValue;

use etcd_api::etcdserverpb::RangeRequest;
use redb::ReadableTable;

use crate::MvccError;
use crate::apply::{ApplyBatch, Scope};
use crate::backend::{KEY_TABLE, read_kv};
use crate::index::{KeyRange, TreeIndex};
use crate::key_index::KeyAt;
use crate::range::{self, RangePlan, header};
use crate::revision::Revision;

/// Which branch each transaction on the path takes: this one, then its nested transactions
/// in op order.
#[derive(Debug)]
struct TxnPath {
    succeeded: bool,
    nested: Vec<TxnPath>,
}

impl TxnPath {
    fn branch<'r>(&self, req: &'r TxnRequest) -> &'r [etcd_api::etcdserverpb::RequestOp] {
        if self.succeeded {
            &req.success
        } else {
            &req.failure
        }
    }
}

/// etcd's `compareKV`: an absent or mismatched target value compares against zero / empty;
/// an unknown result is true.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let int_target = |v: Option<i64>| v.unwrap_or(0);
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&int_target(match c.target_union {
            Some(TargetUnion::CreateRevision(v)) => Some(v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&int_target(match c.target_union {
            Some(TargetUnion::ModRevision(v)) => Some(v),
            _ => None,
        })),
        Ok(CompareTarget::Version) => kv.version.cmp(&int_target(match c.target_union {
            Some(TargetUnion::Version(v)) => Some(v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&int_target(match c.target_union {
            Some(TargetUnion::Lease(v)) => Some(v),
            _ => None,
        })),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

impl ApplyBatch<'_> {
    /// A transaction; see the module docs for the order of checks. `leases` says whether a
    /// lease ID exists.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        leases: &dyn Fn(i64) -> bool,
    ) -> Result<TxnResponse, MvccError> {
        let before = self.current_revision();
        let path = compare_path(self, req, before)?;
        if !reads_only(req) {
            self.check_puts(req, &path, before, leases)?;
        }
        check_ranges(req, &path, before, self.compact_revision())?;
        self.in_scope(|batch, scope| {
            let mut resp = batch.exec(scope, req, &path)?;
            resp.header = header(scope.view_rev());
            Ok(resp)
        })
    }

    fn check_puts(
        &self,
        req: &TxnRequest,
        path: &TxnPath,
        rev: i64,
        leases: &dyn Fn(i64) -> bool,
    ) -> Result<(), MvccError> {
        let mut nested = path.nested.iter();
        for op in path.branch(req) {
            match &op.request {
                Some(Request::RequestTxn(t)) => {
                    let sub = nested.next().ok_or_else(path_mismatch)?;
                    self.check_puts(t, sub, rev, leases)?;
                }
                Some(Request::RequestPut(p)) => {
                    if (p.ignore_value || p.ignore_lease)
                        && self.index_keys_at(KeyRange::Single(&p.key), rev).is_empty()
                    {
                        return Err(MvccError::KeyNotFound);
                    }
                    if p.lease != 0 && !leases(p.lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn exec(
        &mut self,
        scope: &mut Scope,
        req: &TxnRequest,
        path: &TxnPath,
    ) -> Result<TxnResponse, MvccError> {
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in path.branch(req) {
            let response = match &op.request {
                None => None,
                Some(Request::RequestRange(r)) => {
                    Some(Response::ResponseRange(self.range_at(r, scope.view_rev())?))
                }
                Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.put_in(scope, p)?)),
                Some(Request::RequestDeleteRange(d)) => {
                    Some(Response::ResponseDeleteRange(self.delete_in(scope, d)?))
                }
                Some(Request::RequestTxn(t)) => {
                    let sub = nested.next().ok_or_else(path_mismatch)?;
                    let mut resp = self.exec(scope, t, sub)?;
                    // etcd fills in the revision of the outermost transaction only.
                    resp.header = Some(ResponseHeader::default());
                    Some(Response::ResponseTxn(resp))
                }
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: None,
            succeeded: path.succeeded,
            responses,
        })
    }
}

/// What compares read: which keys a range holds at a revision (from the index) and, for value
/// and lease compares, their records. The apply batch and a read-only transaction both give it.
pub(crate) trait CompareView {
    fn keys_at(&self, range: KeyRange<'_>, rev: i64) -> Vec<(Vec<u8>, KeyAt)>;
    fn record(&self, rev: Revision) -> Result<KeyValue, MvccError>;
}

impl CompareView for ApplyBatch<'_> {
    fn keys_at(&self, range: KeyRange<'_>, rev: i64) -> Vec<(Vec<u8>, KeyAt)> {
        self.index_keys_at(range, rev)
    }

    fn record(&self, rev: Revision) -> Result<KeyValue, MvccError> {
        read_kv(&self.wtxn()?.open_table(KEY_TABLE)?, rev)
    }
}

/// A published index and the backend snapshot that holds its records.
struct PublishedView<'a, T> {
    index: &'a TreeIndex,
    table: &'a T,
}

impl<T> CompareView for PublishedView<'_, T>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    fn keys_at(&self, range: KeyRange<'_>, rev: i64) -> Vec<(Vec<u8>, KeyAt)> {
        self.index.keys_at(range, rev)
    }

    fn record(&self, rev: Revision) -> Result<KeyValue, MvccError> {
        read_kv(self.table, rev)
    }
}

/// Evaluates the compares of `req` and of the nested transactions on the branches taken, all
/// at `rev`.
fn compare_path(view: &dyn CompareView, req: &TxnRequest, rev: i64) -> Result<TxnPath, MvccError> {
    let mut succeeded = true;
    for c in &req.compare {
        if !compare(view, c, rev)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &req.success
    } else {
        &req.failure
    };
    let nested = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestTxn(t)) => Some(compare_path(view, t, rev)),
            _ => None,
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TxnPath { succeeded, nested })
}

/// etcd's `applyCompare`: every key in the range must satisfy the compare; an empty range
/// compares a zero KeyValue, except that a VALUE compare on nothing is false.
fn compare(view: &dyn CompareView, c: &Compare, rev: i64) -> Result<bool, MvccError> {
    let found = view.keys_at(KeyRange::new(&c.key, &c.range_end), rev);
    let target = CompareTarget::try_from(c.target).ok();
    if found.is_empty() {
        return Ok(target != Some(CompareTarget::Value) && compare_kv(c, &KeyValue::default()));
    }
    if matches!(target, Some(CompareTarget::Value | CompareTarget::Lease)) {
        for (_, at) in &found {
            if !compare_kv(c, &view.record(at.modified)?) {
                return Ok(false);
            }
        }
    } else {
        // Versions and revisions are in the index; no need to read the records.
        for (key, at) in found {
            let kv = KeyValue {
                key,
                create_revision: at.created,
                mod_revision: at.modified.main,
                version: at.version,
                ..Default::default()
            };
            if !compare_kv(c, &kv) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// True if `req` only reads: every op on both branches is a range or a transaction that only
/// reads. (etcd serves a txn locally only when its top level holds ranges alone; a nested
/// read-only txn reads the same way, so it is served locally here too.)
pub fn reads_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) => true,
            Some(Request::RequestTxn(t)) => reads_only(t),
            _ => false,
        })
}

/// A transaction that only reads, its compares evaluated and its ranges planned under the
/// index lock; [`PlannedRead::read`] then reads the records without the lock, as a plain
/// range does.
#[derive(Debug)]
pub(crate) struct PlannedRead<'r> {
    /// The revision everything in it reads at.
    pub(crate) revision: i64,
    txn: PlannedTxn<'r>,
}

#[derive(Debug)]
struct PlannedTxn<'r> {
    succeeded: bool,
    ops: Vec<PlannedOp<'r>>,
}

#[derive(Debug)]
enum PlannedOp<'r> {
    Range(&'r RangeRequest, RangePlan),
    Txn(PlannedTxn<'r>),
}

/// Plans a read-only `req` (see [`reads_only`]) at `rev` over the published `index`, with the
/// same checks and answers as the apply batch gives it.
pub(crate) fn plan_read<'r, T>(
    index: &TreeIndex,
    table: &T,
    req: &'r TxnRequest,
    rev: i64,
    compacted: i64,
) -> Result<PlannedRead<'r>, MvccError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    if !reads_only(req) {
        return Err(MvccError::NotReadOnly);
    }
    let path = compare_path(&PublishedView { index, table }, req, rev)?;
    check_ranges(req, &path, rev, compacted)?;
    Ok(PlannedRead {
        revision: rev,
        txn: plan_branch(index, req, &path, rev, compacted)?,
    })
}

fn plan_branch<'r>(
    index: &TreeIndex,
    req: &'r TxnRequest,
    path: &TxnPath,
    rev: i64,
    compacted: i64,
) -> Result<PlannedTxn<'r>, MvccError> {
    let mut nested = path.nested.iter();
    let ops = path
        .branch(req)
        .iter()
        .map(|op| match &op.request {
            Some(Request::RequestRange(r)) => {
                Ok(PlannedOp::Range(r, range::plan(index, r, rev, compacted)?))
            }
            Some(Request::RequestTxn(t)) => {
                let sub = nested.next().ok_or_else(path_mismatch)?;
                Ok(PlannedOp::Txn(plan_branch(index, t, sub, rev, compacted)?))
            }
            _ => Err(MvccError::NotReadOnly),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PlannedTxn {
        succeeded: path.succeeded,
        ops,
    })
}

impl PlannedRead<'_> {
    /// Reads the planned records from `table`, a snapshot at least as new as the plan.
    pub(crate) fn read<T>(self, table: &T) -> Result<TxnResponse, MvccError>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let mut resp = self.txn.read(table)?;
        resp.header = header(self.revision);
        Ok(resp)
    }
}

impl PlannedTxn<'_> {
    fn read<T>(self, table: &T) -> Result<TxnResponse, MvccError>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let responses = self
            .ops
            .into_iter()
            .map(|op| {
                let response = match op {
                    PlannedOp::Range(r, plan) => {
                        Response::ResponseRange(range::finish(table, r, plan)?)
                    }
                    PlannedOp::Txn(t) => {
                        let mut resp = t.read(table)?;
                        // As the apply batch: only the outermost header carries the revision.
                        resp.header = Some(ResponseHeader::default());
                        Response::ResponseTxn(resp)
                    }
                };
                Ok(ResponseOp {
                    response: Some(response),
                })
            })
            .collect::<Result<Vec<_>, MvccError>>()?;
        Ok(TxnResponse {
            header: None,
            succeeded: self.succeeded,
            responses,
        })
    }
}

fn path_mismatch() -> MvccError {
    MvccError::Corrupt("transaction path does not match the request".into())
}

fn check_ranges(
    req: &TxnRequest,
    path: &TxnPath,
    rev: i64,
    compacted: i64,
) -> Result<(), MvccError> {
    let mut nested = path.nested.iter();
    for op in path.branch(req) {
        match &op.request {
            Some(Request::RequestTxn(t)) => {
                let sub = nested.next().ok_or_else(path_mismatch)?;
                check_ranges(t, sub, rev, compacted)?;
            }
            // etcd's checkRequestRange, literally: unlike a plain range, a negative revision
            // below the compacted one is Compacted.
            Some(Request::RequestRange(r)) if r.revision != 0 => {
                if r.revision > rev {
                    return Err(MvccError::FutureRev);
                }
                if r.revision < compacted {
                    return Err(MvccError::Compacted);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(target: CompareTarget, result: CompareResult, tu: Option<TargetUnion>) -> Compare {
        Compare {
            result: result as i32,
            target: target as i32,
            key: b"k".to_vec(),
            range_end: vec![],
            target_union: tu,
        }
    }

    #[test]
    fn compare_kv_rules() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 5,
            mod_revision: 7,
            version: 2,
            value: b"m".to_vec(),
            lease: 9,
        };
        use CompareResult::*;
        use CompareTarget::*;
        assert!(compare_kv(
            &cmp(Value, Equal, Some(TargetUnion::Value(b"m".to_vec()))),
            &kv
        ));
        assert!(compare_kv(
            &cmp(Value, Greater, Some(TargetUnion::Value(b"a".to_vec()))),
            &kv
        ));
        assert!(compare_kv(
            &cmp(Value, Less, Some(TargetUnion::Value(b"z".to_vec()))),
            &kv
        ));
        assert!(
            compare_kv(&cmp(Value, NotEqual, None), &kv),
            "missing value is empty"
        );
        assert!(compare_kv(
            &cmp(Create, Equal, Some(TargetUnion::CreateRevision(5))),
            &kv
        ));
        assert!(compare_kv(
            &cmp(Mod, Greater, Some(TargetUnion::ModRevision(6))),
            &kv
        ));
        assert!(compare_kv(
            &cmp(Version, Less, Some(TargetUnion::Version(3))),
            &kv
        ));
        assert!(compare_kv(
            &cmp(Lease, Equal, Some(TargetUnion::Lease(9))),
            &kv
        ));
        // A target union of the wrong kind compares against zero.
        assert!(compare_kv(
            &cmp(Version, Greater, Some(TargetUnion::Lease(100))),
            &kv
        ));
        // Unknown result: true; unknown target: compares equal.
        let mut c = cmp(Version, Equal, None);
        c.result = 42;
        assert!(compare_kv(&c, &kv));
        let mut c = cmp(Version, Equal, None);
        c.target = 42;
        assert!(compare_kv(&c, &kv));
    }

    #[test]
    fn read_only_detection() {
        use etcd_api::etcdserverpb::{PutRequest, RangeRequest, RequestOp};
        let range = RequestOp {
            request: Some(Request::RequestRange(RangeRequest::default())),
        };
        let put = RequestOp {
            request: Some(Request::RequestPut(PutRequest::default())),
        };
        let empty = RequestOp { request: None };
        let mut req = TxnRequest {
            compare: vec![],
            success: vec![range.clone()],
            failure: vec![range.clone()],
        };
        assert!(reads_only(&req));
        req.failure.push(put);
        assert!(
            !reads_only(&req),
            "a put in the branch not taken still counts"
        );
        req.failure = vec![empty];
        assert!(!reads_only(&req));
    }
}
