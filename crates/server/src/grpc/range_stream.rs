//! `KV.RangeStream` (etcd 3.7): a range answered in chunks, so neither the member nor the
//! client holds the whole answer at once.
//!
//! As etcd: every chunk is a range at one pinned revision (the store's at the start, unless
//! the request names one), starting after the last key sent; the first chunk has 10 keys and
//! each next one twice or half as many as the last while the last's encoded size was under
//! half or over twice `--max-request-bytes`; the last chunk alone carries the header, `more`
//! and `count` (the keys in the whole range at the revision, as Range counts them). Sorting
//! other than by key and the revision filters are refused with etcd's Unimplemented.
//!
//! Memory: the producer hands chunks over a channel of one, and HTTP/2 flow control stops
//! the body from taking more while the client does not read: at most about three chunks
//! (one read, one queued, one being written) exist per stream, whatever the range's size.

use std::sync::Arc;

use etcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use etcd_api::etcdserverpb::{RangeRequest, RangeResponse, RangeStreamResponse};
use prost::Message;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use super::access::{self, Caller};
use crate::error::ServerError;
use crate::server::EtcdServer;

/// Keys in the first chunk (etcd's `initialStreamChunkLimit`).
pub const INITIAL_CHUNK_KEYS: i64 = 10;
/// Chunks read ahead of the one being sent.
const CHUNKS_QUEUED: usize = 1;

pub type ChunkReceiver = mpsc::Receiver<Result<RangeStreamResponse, Status>>;

/// etcd's `checkRangeStreamRequest` after the usual range checks: chunks are ranges in key
/// order, so any other order, and the filters that would leave chunks short, are refused.
pub fn check(r: &RangeRequest) -> Result<(), Status> {
    let default_order = r.sort_order == SortOrder::None as i32
        || (r.sort_target == SortTarget::Key as i32 && r.sort_order == SortOrder::Ascend as i32);
    if !default_order {
        return Err(Status::new(
            Code::Unimplemented,
            "RangeStream does not support custom sort orders",
        ));
    }
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    if filtered {
        return Err(Status::new(
            Code::Unimplemented,
            "RangeStream does not support revision filters",
        ));
    }
    Ok(())
}

/// Starts reading `req` in chunks (the caller has validated it, waited for the linearizable
/// barrier and checked the permission once); the chunks arrive on the receiver, then it
/// closes. A failure midway is the stream's last item.
pub fn start(server: Arc<EtcdServer>, caller: Caller, req: RangeRequest) -> ChunkReceiver {
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    tokio::spawn(async move {
        if let Err(status) = send_chunks(&server, &caller, req, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    rx
}

async fn send_chunks(
    server: &EtcdServer,
    caller: &Caller,
    mut req: RangeRequest,
    tx: &mpsc::Sender<Result<RangeStreamResponse, Status>>,
) -> Result<(), Status> {
    let target_bytes = usize::try_from(server.cfg.max_request_bytes).unwrap_or(usize::MAX);
    let total_limit = if req.limit > 0 { req.limit } else { i64::MAX };
    if req.count_only {
        let resp = server.store.range(&req).map_err(ServerError::from)?;
        let read_at = resp.header.map_or(0, |h| h.revision);
        let last = RangeResponse {
            header: server.header(read_at),
            count: resp.count,
            ..Default::default()
        };
        let _ = tx.send(Ok(chunk(last))).await;
        return Ok(());
    }
    let mut limit = INITIAL_CHUNK_KEYS.min(total_limit);
    let mut sent: i64 = 0;
    let mut pinned: Option<(i64, i64)> = None; // (header revision, count of the whole range)
    loop {
        req.limit = limit;
        let resp = server.store.range(&req).map_err(ServerError::from)?;
        // A permission revoked while streaming ends the stream before the next keys go out.
        access::check(server, caller, |a| a.range(&req))?;
        let (header_rev, count) = *pinned.get_or_insert_with(|| {
            let at = resp.header.map_or(0, |h| h.revision);
            (at, resp.count)
        });
        if req.revision == 0 {
            req.revision = header_rev;
        }
        let size = resp.encoded_len();
        let more = resp.more;
        let next_key = match (more, resp.kvs.last()) {
            (true, Some(last)) => {
                let mut key = last.key.clone();
                key.push(0);
                Some(key)
            }
            _ => None,
        };
        sent = sent.saturating_add(resp.kvs.len() as i64);
        let done = next_key.is_none() || sent >= total_limit;
        let mut out = RangeResponse {
            kvs: resp.kvs,
            ..Default::default()
        };
        if done {
            out.header = server.header(header_rev);
            out.more = more;
            out.count = count;
        }
        if tx.send(Ok(chunk(out))).await.is_err() {
            return Ok(()); // the client went away
        }
        let Some(next_key) = next_key.filter(|_| !done) else {
            return Ok(());
        };
        req.key = next_key;
        limit = next_chunk_keys(limit, size, target_bytes).min(total_limit - sent);
    }
}

fn chunk(range_response: RangeResponse) -> RangeStreamResponse {
    RangeStreamResponse {
        range_response: Some(range_response),
    }
}

/// etcd's `adjustChunkLimit`: double below half the target size, halve above twice it, never
/// below one key (a limit of 0 would mean every key).
pub fn next_chunk_keys(last_keys: i64, last_bytes: usize, target_bytes: usize) -> i64 {
    let keys = if last_bytes < target_bytes / 2 {
        last_keys.saturating_mul(2)
    } else if last_bytes > target_bytes.saturating_mul(2) {
        last_keys / 2
    } else {
        last_keys
    };
    keys.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_follows_the_target() {
        assert_eq!(next_chunk_keys(10, 100, 1000), 20);
        assert_eq!(next_chunk_keys(10, 700, 1000), 10);
        assert_eq!(next_chunk_keys(10, 2001, 1000), 5);
        assert_eq!(next_chunk_keys(1, 5000, 1000), 1);
    }

    #[test]
    fn only_key_order_and_no_filters() {
        let ok = RangeRequest {
            key: b"a".to_vec(),
            sort_target: SortTarget::Key as i32,
            sort_order: SortOrder::Ascend as i32,
            ..Default::default()
        };
        assert!(check(&ok).is_ok());
        let descending = RangeRequest {
            sort_order: SortOrder::Descend as i32,
            ..ok.clone()
        };
        let refused = check(&descending).unwrap_err();
        assert_eq!(refused.code(), Code::Unimplemented);
        assert_eq!(
            refused.message(),
            "RangeStream does not support custom sort orders"
        );
        let filtered = RangeRequest {
            min_mod_revision: 3,
            ..ok
        };
        assert_eq!(
            check(&filtered).unwrap_err().message(),
            "RangeStream does not support revision filters"
        );
    }
}
