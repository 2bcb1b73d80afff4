//! Range semantics, shared by concurrent readers and the apply batch.
//!
//! Split in two so readers hold the index lock only for the cheap part: [`plan`] picks
//! revisions from the index (under the lock, together with opening the backend snapshot), and
//! [`finish`] reads the records and applies etcd's filter / sort / limit rules (without it).
//! The rules are etcd's `applierV3backend.Range`, quirks included:
//! - `count` is the number of keys in the range at the revision, before `limit` and before
//!   the min/max revision filters.
//! - With `sort_order` NONE and no filters, the limit is pushed down: the first `limit + 1`
//!   keys in key order are fetched (the extra one decides `more`), then, if the sort target is
//!   not KEY, those are sorted ascending by the target. Any explicit sort order or filter
//!   fetches everything first.
//! - `more` is true when more keys survived filtering than `limit`.

use std::cmp::Ordering;

use etcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use etcd_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use etcd_api::mvccpb::KeyValue;
use redb::ReadableTable;

use crate::MvccError;
use crate::backend::read_kv;
use crate::index::{KeyRange, TreeIndex};
use crate::revision::Revision;

/// The revisions a range will return, picked from the index.
#[derive(Debug)]
pub(crate) struct RangePlan {
    revs: Vec<Revision>,
    count: usize,
    header_rev: i64,
}

/// A response header carrying only the revision; the server fills in the rest.
pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The revision a read at `requested` sees, given the store's current and compacted
/// revisions: 0 or negative means current.
pub(crate) fn read_revision(
    requested: i64,
    current: i64,
    compacted: i64,
) -> Result<i64, MvccError> {
    if requested > current {
        return Err(MvccError::FutureRev);
    }
    let rev = if requested <= 0 { current } else { requested };
    if rev < compacted {
        return Err(MvccError::Compacted);
    }
    Ok(rev)
}

/// How many records to read: etcd pushes `limit + 1` down only for unsorted, unfiltered
/// ranges.
fn fetch_limit(req: &RangeRequest) -> usize {
    let fetch_all = req.sort_order != SortOrder::None as i32
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    if fetch_all || req.limit <= 0 {
        return usize::MAX;
    }
    usize::try_from(req.limit.saturating_add(1)).unwrap_or(usize::MAX)
}

/// Picks the revisions for `req` from `index`; `current`/`compacted` are the revisions of the
/// view the read runs in.
pub(crate) fn plan(
    index: &TreeIndex,
    req: &RangeRequest,
    current: i64,
    compacted: i64,
) -> Result<RangePlan, MvccError> {
    let at = read_revision(req.revision, current, compacted)?;
    let collect = if req.count_only { 0 } else { fetch_limit(req) };
    let (revs, count) = index.revisions(KeyRange::new(&req.key, &req.range_end), at, collect);
    Ok(RangePlan {
        revs,
        count,
        header_rev: current,
    })
}

/// Past this many records, a keys-only range reads them in revision order.
const SORTED_READ_MIN: usize = 1024;

/// The records at `revs`, in the order given; without their values unless `keep_values`.
///
/// Many records of a keys-only range are read in the table's own (revision) order and put
/// back in key order after: a list of a million keys then walks the B-tree's pages once, in
/// order, instead of jumping between them key by key (three times as fast for a keys-only
/// list of 1M keys, bench/data-scale), and each value is dropped as soon as it is read. A
/// range with values is read in key order: read the other way, 20 lists of 257 MiB at once
/// (bench/range-rss) grew the server by 3.6 answers at their peak instead of 1.8.
fn read_records<T>(
    table: &T,
    revs: &[Revision],
    keep_values: bool,
) -> Result<Vec<KeyValue>, MvccError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let read = |rev: Revision| {
        let mut kv = read_kv(table, rev)?;
        if !keep_values {
            kv.value = Vec::new();
        }
        Ok::<_, MvccError>(kv)
    };
    if keep_values || revs.len() < SORTED_READ_MIN {
        return revs.iter().map(|rev| read(*rev)).collect();
    }
    let mut order: Vec<u32> = (0..revs.len() as u32).collect();
    order.sort_unstable_by_key(|&i| revs[i as usize]);
    let mut slots: Vec<Option<KeyValue>> = Vec::with_capacity(revs.len());
    slots.resize_with(revs.len(), || None);
    for i in order {
        slots[i as usize] = Some(read(revs[i as usize])?);
    }
    // Every slot was filled: `order` is a permutation of the indices.
    Ok(slots.into_iter().flatten().collect())
}

/// Records read to estimate an answer's size.
const ESTIMATE_SAMPLES: usize = 32;

/// Whether a plan has more records than an estimate would read.
pub(crate) fn worth_estimating(plan: &RangePlan) -> bool {
    plan.revs.len() > ESTIMATE_SAMPLES
}

/// About how many bytes the planned answer takes: the mean encoded size of up to
/// `ESTIMATE_SAMPLES` records spread over the plan, times the number of records.
pub(crate) fn estimate_bytes<T>(
    table: &T,
    req: &RangeRequest,
    plan: &RangePlan,
) -> Result<u64, MvccError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let records = plan.revs.len();
    if records == 0 {
        return Ok(0);
    }
    let step = records.div_ceil(ESTIMATE_SAMPLES).max(1);
    let (mut sampled_bytes, mut sampled) = (0u64, 0u64);
    for rev in plan.revs.iter().step_by(step) {
        let kv = read_kv(table, *rev)?;
        let bytes = if req.keys_only {
            kv.key.len() + 16
        } else {
            prost::Message::encoded_len(&kv)
        };
        sampled_bytes += bytes as u64;
        sampled += 1;
    }
    Ok(sampled_bytes / sampled * records as u64)
}

/// Reads the planned records from `table` and shapes the response.
pub(crate) fn finish<T>(
    table: &T,
    req: &RangeRequest,
    plan: RangePlan,
) -> Result<RangeResponse, MvccError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    // A keys-only answer needs no value, unless it is sorted by value.
    let keep_values = !req.keys_only || req.sort_target == SortTarget::Value as i32;
    let mut kvs = read_records(table, &plan.revs, keep_values)?;

    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }

    sort(&mut kvs, req.sort_order, req.sort_target);

    let mut more = false;
    if req.limit > 0 {
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        if kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    Ok(RangeResponse {
        header: header(plan.header_rev),
        kvs,
        more,
        count: plan.count as i64,
    })
}

/// Sorts as etcd does. Records arrive in key order; the sort is stable, so ties stay in key
/// order (Go's sort is not stable, but for the small inputs where ties are likely it uses an
/// insertion sort, which is). Unknown orders or targets leave the key order alone.
fn sort(kvs: &mut [KeyValue], order: i32, target: i32) {
    let Ok(target) = SortTarget::try_from(target) else {
        return;
    };
    let mut order = SortOrder::try_from(order).ok();
    // The index yields key order already, so etcd defaults to ascending only for other
    // targets.
    if target != SortTarget::Key && order == Some(SortOrder::None) {
        order = Some(SortOrder::Ascend);
    }
    let cmp: fn(&KeyValue, &KeyValue) -> Ordering = match target {
        SortTarget::Key => |a, b| a.key.cmp(&b.key),
        SortTarget::Version => |a, b| a.version.cmp(&b.version),
        SortTarget::Create => |a, b| a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => |a, b| a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => |a, b| a.value.cmp(&b.value),
    };
    match order {
        Some(SortOrder::Ascend) => kvs.sort_by(cmp),
        Some(SortOrder::Descend) => kvs.sort_by(|a, b| cmp(b, a)),
        Some(SortOrder::None) | None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_revision_rules() {
        assert_eq!(read_revision(0, 10, 5).unwrap(), 10);
        assert_eq!(read_revision(-3, 10, 5).unwrap(), 10);
        assert_eq!(read_revision(5, 10, 5).unwrap(), 5);
        assert!(matches!(read_revision(4, 10, 5), Err(MvccError::Compacted)));
        assert!(matches!(
            read_revision(11, 10, 5),
            Err(MvccError::FutureRev)
        ));
    }

    #[test]
    fn fetch_limit_pushdown() {
        let mut req = RangeRequest {
            limit: 2,
            ..Default::default()
        };
        assert_eq!(fetch_limit(&req), 3);
        req.sort_target = SortTarget::Version as i32;
        assert_eq!(
            fetch_limit(&req),
            3,
            "target alone does not disable pushdown"
        );
        req.sort_order = SortOrder::Ascend as i32;
        assert_eq!(fetch_limit(&req), usize::MAX);
        req.sort_order = 0;
        req.min_create_revision = 1;
        assert_eq!(fetch_limit(&req), usize::MAX);
        req.min_create_revision = 0;
        req.limit = i64::MAX;
        assert!(fetch_limit(&req) >= i64::MAX as usize, "no overflow");
        req.limit = -1;
        assert_eq!(fetch_limit(&req), usize::MAX);
    }
}
