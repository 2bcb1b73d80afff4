//! lock and elect: a lease kept alive as a session, then the lock and election services.

use etcd_api::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest, RangeRequest, RangeResponse};
use etcd_api::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use etcd_api::v3lockpb::{LockRequest, UnlockRequest};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::Cx;
use crate::commands::lease::keep_alive_forever;
use crate::exit::{self, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::global::Ctl;

/// concurrency.NewSession: a lease with `ttl` kept alive until the process ends.
async fn session(c: &Ctl, ttl: i64) -> Result<(i64, mpsc::Receiver<()>), String> {
    let mut l = c.client.lease.clone();
    let resp = crate::call!(c, l.lease_grant(LeaseGrantRequest { ttl, id: 0 }))?;
    let done = keep_alive_forever(c.clone(), resp.id, resp.ttl);
    Ok((resp.id, done))
}

/// Revokes the session's lease, best effort (etcd's `Session.Close`).
async fn end_session(c: &Ctl, lease: i64) {
    let mut l = c.client.lease.clone();
    let _ = crate::call!(c, l.lease_revoke(LeaseRevokeRequest { id: lease }));
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

pub async fn lock(cx: Cx) -> i32 {
    if cx.args.is_empty() {
        exit::fail(
            EXIT_BAD_ARGS,
            "lock takes a lock name argument and an optional command to execute",
        );
    }
    let c = cx.client_forever().await;
    let ttl = cx.flags.int("ttl");
    let (lease, mut done) = session(&c, ttl)
        .await
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    let mut lk = c.client.lock.clone();
    let req = LockRequest {
        name: crate::rawarg::bytes(&cx.args[0]),
        lease,
    };
    let locked = tokio::select! {
        r = c.unary(lk.lock(c.req(req))) => r,
        _ = interrupted() => {
            // As etcd's session.Close(): give up the lease, so our queue key goes at once.
            end_session(&c, lease).await;
            exit::fail(EXIT_ERROR, "context canceled")
        }
    };
    let locked = locked.unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    let key = locked.key.clone();
    let unlock = |c: Ctl, key: Vec<u8>| async move {
        let mut lk = c.client.lock.clone();
        crate::call!(c, lk.unlock(UnlockRequest { key })).map(|_| ())
    };
    if cx.args.len() > 1 {
        let rev = locked.header.as_ref().map(|h| h.revision).unwrap_or(0);
        let status = tokio::process::Command::new(&cx.args[1])
            .args(&cx.args[2..])
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).into_owned())
            .env("ETCD_LOCK_REV", rev.to_string())
            .status()
            .await;
        let unlocked = unlock(c.clone(), key).await;
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => exit::fail(
                EXIT_ERROR,
                &s.code()
                    .map(|c| format!("exit status {c}"))
                    .unwrap_or("signal: killed".into()),
            ),
            Err(e) => exit::fail(
                EXIT_ERROR,
                &format!("exec: {}: {e}", crate::gofmt::quote(&cx.args[1])),
            ),
        }
        if let Err(e) = unlocked {
            exit::fail(EXIT_ERROR, &e);
        }
        return 0;
    }
    let mut kv = c.client.kv.clone();
    let k = crate::call!(
        c,
        kv.range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
    )
    .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    if k.kvs.is_empty() {
        exit::fail(EXIT_ERROR, "lock lost on init");
    }
    cx.printer.get(&k);
    tokio::select! {
        _ = interrupted() => {
            if let Err(e) = unlock(c.clone(), key).await {
                exit::fail(EXIT_ERROR, &e);
            }
            0
        }
        _ = done.recv() => exit::fail(EXIT_ERROR, "session expired"),
    }
}

pub async fn elect(cx: Cx) -> i32 {
    if cx.args.len() != 1 && cx.args.len() != 2 {
        exit::fail(
            EXIT_BAD_ARGS,
            "elect takes one election name argument and an optional proposal argument",
        );
    }
    let listen = cx.flags.bool("listen");
    let c = cx.client_forever().await;
    if cx.args.len() == 1 {
        if !listen {
            exit::fail(EXIT_BAD_ARGS, "no proposal argument but -l not set");
        }
        return observe(&cx, &c).await;
    }
    if listen {
        exit::fail(EXIT_BAD_ARGS, "proposal given but -l is set");
    }
    let (lease, mut done) = session(&c, 60)
        .await
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    let mut el = c.client.election.clone();
    let req = CampaignRequest {
        name: crate::rawarg::bytes(&cx.args[0]),
        lease,
        value: crate::rawarg::bytes(&cx.args[1]),
    };
    let resp = tokio::select! {
        r = c.unary(el.campaign(c.req(req))) => r.unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e)),
        _ = interrupted() => {
            // As etcd's session.Close(): give up the lease, so our queue key goes at once.
            end_session(&c, lease).await;
            exit::fail(EXIT_ERROR, "context canceled")
        }
    };
    let leader = resp.leader.unwrap_or_default();
    let mut kv = c.client.kv.clone();
    let got = crate::call!(
        c,
        kv.range(RangeRequest {
            key: leader.key.clone(),
            ..Default::default()
        })
    )
    .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.get(&got);
    tokio::select! {
        _ = interrupted() => {}
        _ = done.recv() => exit::fail(EXIT_ERROR, "elect: session expired"),
    }
    let r = crate::call!(
        c,
        el.resign(ResignRequest {
            leader: Some(leader),
        })
    );
    if let Err(e) = r {
        exit::fail(EXIT_ERROR, &e);
    }
    0
}

async fn observe(cx: &Cx, c: &Ctl) -> i32 {
    let mut el = c.client.election.clone();
    let req = LeaderRequest {
        name: crate::rawarg::bytes(&cx.args[0]),
    };
    let work = async {
        let mut stream = match el.observe(c.req(req)).await {
            Ok(s) => s.into_inner(),
            Err(s) => return exit::status_text(&s),
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(r) => {
                    let kvs: Vec<_> = r.kv.into_iter().collect();
                    let resp = RangeResponse {
                        header: r.header,
                        count: kvs.len() as i64,
                        kvs,
                        more: false,
                    };
                    cx.printer.get(&resp);
                }
                Err(s) => return exit::status_text(&s),
            }
        }
        "elect: observer lost".to_string()
    };
    tokio::select! {
        e = work => {
            let _ = e;
            exit::fail(EXIT_ERROR, "elect: observer lost")
        }
        _ = interrupted() => 0,
    }
}
