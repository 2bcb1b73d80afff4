//! The client-side mutex of etcd's `clientv3/concurrency` (`--stm-locker lock-client`): a
//! waiter puts `<prefix><lease in hex>` with its session lease if absent; it holds the lock
//! once every key under the prefix created before its own is gone, which it waits for by
//! watching the newest such key for its delete.

use etcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op::Response,
    watch_request::RequestUnion,
};
use etcd_api::mvccpb::event::EventType;
use etcd_client::{Client, prefix_end};
use tokio::sync::mpsc;

/// The key a session with `lease` waits on under `prefix`.
pub fn waiter_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// Takes the lock named by `prefix` (ending in `/`) for the session `lease`; returns the key
/// to delete to release it.
pub async fn lock(
    client: &mut Client,
    prefix: &[u8],
    lease: i64,
) -> Result<Vec<u8>, tonic::Status> {
    let key = waiter_key(prefix, lease);
    let create = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: key.clone(),
            target_union: Some(TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.clone(),
                lease,
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })),
        }],
    };
    let response = client.kv.txn(create).await?.into_inner();
    let my_revision = if response.succeeded {
        response.header.map(|h| h.revision).unwrap_or(0)
    } else {
        match response.responses.first().and_then(|r| r.response.as_ref()) {
            Some(Response::ResponseRange(r)) => {
                r.kvs.first().map(|kv| kv.create_revision).unwrap_or(0)
            }
            _ => 0,
        }
    };
    wait_deletes(client, prefix, my_revision - 1).await?;
    Ok(key)
}

pub async fn unlock(client: &mut Client, key: Vec<u8>) -> Result<(), tonic::Status> {
    let delete = DeleteRangeRequest {
        key,
        ..Default::default()
    };
    client.kv.delete_range(delete).await.map(drop)
}

/// Waits until no key under `prefix` created at or before `max_create_revision` is left.
async fn wait_deletes(
    client: &mut Client,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<(), tonic::Status> {
    loop {
        let newest = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            limit: 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            max_create_revision,
            ..Default::default()
        };
        let response = client.kv.range(newest).await?.into_inner();
        let Some(kv) = response.kvs.first() else {
            return Ok(());
        };
        let revision = response.header.map(|h| h.revision).unwrap_or(0);
        wait_delete(client, kv.key.clone(), revision).await?;
    }
}

/// Waits for `key` to be deleted at or after `revision`.
async fn wait_delete(
    client: &mut Client,
    key: Vec<u8>,
    revision: i64,
) -> Result<(), tonic::Status> {
    let (requests, request_rx) = mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            start_revision: revision,
            ..Default::default()
        })),
    };
    // The receiver is alive: it is moved into the stream below.
    let _ = requests.send(create).await;
    let mut responses = crate::run::open_watch(client, request_rx).await?;
    while let Some(response) = responses.message().await? {
        if response.canceled {
            return Err(tonic::Status::aborted(response.cancel_reason));
        }
        if response
            .events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(());
        }
    }
    Err(tonic::Status::unavailable("watch stream closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiter_key_is_prefix_and_hex_lease() {
        assert_eq!(waiter_key(b"stmlock/", 0x694d_7a3b), b"stmlock/694d7a3b");
    }
}
