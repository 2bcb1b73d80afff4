//! lease grant, revoke, timetolive, list, keep-alive.

use std::time::Duration;

use etcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::exit::{self, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR};
use crate::global::Ctl;
use crate::printer::Format;
use crate::{Cx, gofmt};

fn lease_from_arg(arg: &str) -> i64 {
    gofmt::parse_int_base(arg, 16).unwrap_or_else(|e| {
        exit::fail(
            EXIT_BAD_ARGS,
            &format!("bad lease ID arg ({e}), expecting ID in Hex"),
        )
    })
}

pub async fn grant(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(EXIT_BAD_ARGS, "lease grant command needs TTL argument");
    }
    let ttl = gofmt::parse_int_base(&cx.args[0], 10)
        .unwrap_or_else(|e| exit::fail(EXIT_BAD_ARGS, &format!("bad TTL ({e})")));
    let c = cx.client().await;
    let mut l = c.client.lease.clone();
    let resp = crate::call!(c, l.lease_grant(LeaseGrantRequest { ttl, id: 0 }))
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &format!("failed to grant lease ({e})")));
    cx.printer.grant(&resp);
    0
}

pub async fn revoke(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(EXIT_BAD_ARGS, "lease revoke command needs 1 argument");
    }
    let id = lease_from_arg(&cx.args[0]);
    let c = cx.client().await;
    let mut l = c.client.lease.clone();
    let resp = crate::call!(c, l.lease_revoke(LeaseRevokeRequest { id }))
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &format!("failed to revoke lease ({e})")));
    cx.printer.revoke(id, &resp);
    0
}

pub async fn time_to_live(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(
            EXIT_BAD_ARGS,
            "lease timetolive command needs lease ID as argument",
        );
    }
    let id = lease_from_arg(&cx.args[0]);
    let keys = cx.flags.bool("keys");
    let c = cx.client_forever().await;
    let mut l = c.client.lease.clone();
    let resp = crate::call!(c, l.lease_time_to_live(LeaseTimeToLiveRequest { id, keys }))
        .unwrap_or_else(|e| exit::fail(EXIT_BAD_CONNECTION, &e));
    cx.printer.time_to_live(&resp, keys);
    0
}

pub async fn list(cx: Cx) -> i32 {
    let c = cx.client_forever().await;
    let mut l = c.client.lease.clone();
    let resp = crate::call!(c, l.lease_leases(LeaseLeasesRequest {}))
        .unwrap_or_else(|e| exit::fail(EXIT_BAD_CONNECTION, &e));
    cx.printer.leases(&resp);
    0
}

/// A keep-alive stream for one lease: send a request, read the answer.
pub struct KeepAlive {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: tonic::Streaming<LeaseKeepAliveResponse>,
    id: i64,
    /// A request is out whose answer has not been read.
    sent: bool,
}

impl KeepAlive {
    pub async fn open(c: &Ctl, id: i64) -> Result<KeepAlive, String> {
        let (tx, rx) = mpsc::channel(2);
        // etcd answers the stream's headers with its first response: send before waiting.
        tx.send(LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| "keep-alive stream closed".to_string())?;
        let mut l = c.client.lease.clone();
        let call = l.lease_keep_alive(c.req(ReceiverStream::new(rx)));
        let stream = c.unary(call).await?;
        Ok(KeepAlive {
            tx,
            rx: stream,
            id,
            sent: true,
        })
    }

    /// One round; `Ok(None)` when the lease is gone.
    pub async fn once(&mut self) -> Result<Option<LeaseKeepAliveResponse>, String> {
        if !self.sent {
            self.tx
                .send(LeaseKeepAliveRequest { id: self.id })
                .await
                .map_err(|_| "keep-alive stream closed".to_string())?;
        }
        self.sent = false;
        match self.rx.next().await {
            Some(Ok(r)) if r.ttl <= 0 => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(s)) => Err(exit::status_text(&s)),
            None => Err("keep-alive stream closed".to_string()),
        }
    }
}

/// Keeps a lease alive in the background until it is gone; the returned receiver closes
/// then (concurrency's `Session.Done()`).
pub fn keep_alive_forever(c: Ctl, id: i64, ttl: i64) -> mpsc::Receiver<()> {
    let (done_tx, done_rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let mut ka = match KeepAlive::open(&c, id).await {
            Ok(k) => k,
            Err(_) => return drop(done_tx),
        };
        let mut next_ttl = ttl.max(1);
        loop {
            match ka.once().await {
                Ok(Some(r)) => next_ttl = r.ttl.max(1),
                Ok(None) => return drop(done_tx),
                Err(_) => {
                    // Retry on a fresh stream until the lease's TTL has surely passed.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match KeepAlive::open(&c, id).await {
                        Ok(k) => ka = k,
                        Err(_) => {
                            next_ttl -= 1;
                            if next_ttl <= 0 {
                                return drop(done_tx);
                            }
                        }
                    }
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_millis((next_ttl as u64 * 1000 / 3).max(500))).await;
        }
    });
    done_rx
}

pub async fn keep_alive(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(
            EXIT_BAD_ARGS,
            "lease keep-alive command needs lease ID as argument",
        );
    }
    let id = lease_from_arg(&cx.args[0]);
    let c = cx.client_forever().await;
    let mut ka = KeepAlive::open(&c, id)
        .await
        .unwrap_or_else(|e| exit::fail(EXIT_BAD_CONNECTION, &e));
    if cx.flags.bool("once") {
        match ka.once().await {
            Ok(Some(r)) => cx.printer.keep_alive(&r),
            Ok(None) => exit::fail(EXIT_BAD_CONNECTION, "etcdserver: requested lease not found"),
            Err(e) => exit::fail(EXIT_BAD_CONNECTION, &e),
        }
        return 0;
    }
    loop {
        match ka.once().await {
            Ok(Some(r)) => {
                cx.printer.keep_alive(&r);
                tokio::time::sleep(Duration::from_millis((r.ttl.max(1) as u64) * 1000 / 3)).await;
            }
            Ok(None) => break,
            Err(_) => {
                // clientv3 retries on a new stream; the lease may have expired meanwhile.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(k) = KeepAlive::open(&c, id).await {
                    ka = k;
                }
            }
        }
    }
    if cx.printer.format == Format::Simple {
        println!("lease {id:016x} expired or revoked.");
    }
    0
}
