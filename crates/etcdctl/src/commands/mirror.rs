//! make-mirror: copy a prefix to another cluster, then follow its changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest, request_op, watch_request,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::Cx;
use crate::exit::{self, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::global::{ClientCfg, Ctl, SecureCfg};

fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), etcd_client::prefix_end(prefix))
    }
}

/// `strings.Replace(key, prefix, dest, 1)`.
fn modify(key: &[u8], prefix: &[u8], dest: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        let mut v = dest.to_vec();
        v.extend_from_slice(key);
        return v;
    }
    match key.windows(prefix.len()).position(|w| w == prefix) {
        Some(i) => {
            let mut v = key[..i].to_vec();
            v.extend_from_slice(dest);
            v.extend_from_slice(&key[i + prefix.len()..]);
            v
        }
        None => key.to_vec(),
    }
}

pub async fn make_mirror(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(EXIT_BAD_ARGS, "make-mirror takes one destination argument");
    }
    let f = &cx.flags;
    let dest_cfg = ClientCfg {
        endpoints: vec![cx.args[0].clone()],
        dial_timeout: f.dur("dial-timeout"),
        keepalive_time: f.dur("keepalive-time"),
        keepalive_timeout: f.dur("keepalive-timeout"),
        secure: SecureCfg {
            cert: f.str("dest-cert"),
            key: f.str("dest-key"),
            cacert: f.str("dest-cacert"),
            insecure_transport: f.bool("dest-insecure-transport"),
            ..Default::default()
        },
        auth: None,
    };
    let dc = dest_cfg.must_connect(None).await;
    let c = cx.client_forever().await;
    let prefix = f.str("prefix").into_bytes();
    let mut dest = f.str("dest-prefix").into_bytes();
    let no_dest = f.bool("no-dest-prefix");
    let total = Arc::new(AtomicI64::new(0));
    let t2 = total.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            println!("{}", t2.load(Ordering::Relaxed));
        }
    });
    if no_dest && !dest.is_empty() {
        exit::fail(
            EXIT_BAD_ARGS,
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        );
    }
    if !no_dest && dest.is_empty() {
        dest = prefix.clone();
    }
    let err = mirror(&c, &dc, &prefix, &dest, &total).await;
    exit::fail(EXIT_ERROR, &err)
}

async fn mirror(c: &Ctl, dc: &Ctl, prefix: &[u8], dest: &[u8], total: &AtomicI64) -> String {
    let (key, end) = prefix_range(prefix);
    let mut kv = c.client.kv.clone();
    let mut dkv = dc.client.kv.clone();
    // SyncBase: everything under the prefix at one revision, in batches.
    let mut rev = 0;
    let mut from = key.clone();
    loop {
        let req = RangeRequest {
            key: from.clone(),
            range_end: end.clone(),
            limit: 1000,
            revision: rev,
            ..Default::default()
        };
        let r = match crate::call!(c, kv.range(req)) {
            Ok(r) => r,
            Err(e) => return e,
        };
        if rev == 0 {
            rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
        }
        for item in &r.kvs {
            let put = PutRequest {
                key: modify(&item.key, prefix, dest),
                value: item.value.clone(),
                ..Default::default()
            };
            if let Err(e) = crate::call!(dc, dkv.put(put)) {
                return e;
            }
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !r.more || r.kvs.is_empty() {
            break;
        }
        from = r.kvs[r.kvs.len() - 1].key.clone();
        from.push(0);
    }
    // SyncUpdates: the watch from the next revision, one txn per revision.
    let (tx, rx) = mpsc::channel(1);
    let _ = tx
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key,
                    range_end: end,
                    start_revision: rev + 1,
                    ..Default::default()
                },
            )),
        })
        .await;
    let mut w = c.client.watch.clone();
    let mut stream = match w.watch(c.req(ReceiverStream::new(rx))).await {
        Ok(s) => s.into_inner(),
        Err(s) => return exit::status_text(&s),
    };
    let _keep = tx;
    while let Some(item) = stream.next().await {
        let wr = match item {
            Ok(r) => r,
            Err(s) => return exit::status_text(&s),
        };
        if wr.compact_revision != 0 {
            return "etcdserver: mvcc: required revision has been compacted".into();
        }
        let mut last_rev = 0;
        let mut ops: Vec<RequestOp> = Vec::new();
        for ev in &wr.events {
            let kv = ev.kv.clone().unwrap_or_default();
            if last_rev != 0 && kv.mod_revision > last_rev {
                let t = TxnRequest {
                    success: std::mem::take(&mut ops),
                    ..Default::default()
                };
                if let Err(e) = crate::call!(dc, dkv.txn(t)) {
                    return e;
                }
            }
            last_rev = kv.mod_revision;
            let op = if ev.r#type == 1 {
                request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: modify(&kv.key, prefix, dest),
                    ..Default::default()
                })
            } else {
                request_op::Request::RequestPut(PutRequest {
                    key: modify(&kv.key, prefix, dest),
                    value: kv.value.clone(),
                    ..Default::default()
                })
            };
            ops.push(RequestOp { request: Some(op) });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            let t = TxnRequest {
                success: ops,
                ..Default::default()
            };
            if let Err(e) = crate::call!(dc, dkv.txn(t)) {
                return e;
            }
        }
    }
    "watch closed".into()
}
