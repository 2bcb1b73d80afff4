//! endpoint health, status, hashkv (also over every member with `--cluster`).

use std::time::Instant;

use etcd_api::etcdserverpb::{HashKvRequest, MemberListRequest, RangeRequest, StatusRequest};

use crate::Cx;
use crate::exit::{self, EXIT_ERROR};
use crate::global::{ClientCfg, Ctl};
use crate::gofmt;
use crate::printer::{EpHashKv, EpHealth, EpStatus};

pub const STATUS_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.
";

/// `--endpoints`, or with `--cluster` every member's client URLs.
pub async fn endpoints_from_cluster(cx: &Cx) -> Vec<String> {
    if !cx.flags.bool("cluster") {
        return cx.flags.slice("endpoints");
    }
    let mut cfg = cx.cfg();
    cfg.auth = None;
    let c = match cfg.connect(cx.deadline()).await {
        Ok(c) => c,
        Err((_, e)) => exit::fail(EXIT_ERROR, &e),
    };
    let mut cl = c.client.cluster.clone();
    let resp = crate::call!(c, cl.member_list(MemberListRequest::default())).unwrap_or_else(|e| {
        exit::fail(
            EXIT_ERROR,
            &format!("failed to fetch endpoints from etcd cluster member list: {e}"),
        )
    });
    resp.members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect()
}

/// A client of one endpoint only (clientv3's per-endpoint maintenance calls).
pub async fn one(cfg: &ClientCfg, ep: &str, deadline: Option<Instant>) -> Result<Ctl, String> {
    let mut c = cfg.clone();
    c.endpoints = vec![ep.to_string()];
    c.connect(deadline).await.map_err(|(_, e)| e)
}

pub async fn health(cx: Cx) -> i32 {
    let cfg = cx.cfg();
    let eps = endpoints_from_cluster(&cx).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(eps.len().max(1));
    for ep in eps.clone() {
        let cfg = cfg.clone();
        let tx = tx.clone();
        let deadline = cx.deadline();
        tokio::spawn(async move {
            let st = Instant::now();
            let res = match one(&cfg, &ep, deadline).await {
                Ok(c) => {
                    let mut kv = c.client.kv.clone();
                    let req = RangeRequest {
                        key: b"health".to_vec(),
                        ..Default::default()
                    };
                    crate::call!(c, kv.range(req)).map(|_| ())
                }
                Err(e) => Err(e),
            };
            let took = gofmt::format_duration(st.elapsed());
            let h = match res {
                Ok(()) => EpHealth {
                    ep,
                    health: true,
                    took,
                    error: String::new(),
                },
                Err(e) if e == "etcdserver: permission denied" => EpHealth {
                    ep,
                    health: true,
                    took,
                    error: String::new(),
                },
                Err(e) => EpHealth {
                    ep,
                    health: false,
                    took,
                    error: e,
                },
            };
            let _ = tx.send(h).await;
        });
    }
    drop(tx);
    let mut list = Vec::new();
    while let Some(h) = rx.recv().await {
        list.push(h);
    }
    let errs = list.iter().any(|h| !h.error.is_empty());
    cx.printer.endpoint_health(&list);
    if errs {
        exit::fail(EXIT_ERROR, "unhealthy cluster");
    }
    0
}

pub async fn status(cx: Cx) -> i32 {
    let cfg = cx.cfg();
    let mut list = Vec::new();
    let mut failed = false;
    for ep in endpoints_from_cluster(&cx).await {
        let deadline = cx.deadline();
        let res = match one(&cfg, &ep, deadline).await {
            Ok(c) => {
                let mut m = c.client.maintenance.clone();
                crate::call!(c, m.status(StatusRequest {}))
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(resp) => list.push(EpStatus { ep, resp }),
            Err(e) => {
                failed = true;
                eprintln!("Failed to get the status of endpoint {ep} ({e})");
            }
        }
    }
    cx.printer.endpoint_status(&list);
    if failed {
        exit::exit(EXIT_ERROR);
    }
    0
}

pub async fn hashkv(cx: Cx) -> i32 {
    let cfg = cx.cfg();
    let rev = cx.flags.int("rev");
    let mut list = Vec::new();
    let mut last_err = None;
    for ep in endpoints_from_cluster(&cx).await {
        let res = match one(&cfg, &ep, cx.deadline()).await {
            Ok(c) => {
                let mut m = c.client.maintenance.clone();
                crate::call!(c, m.hash_kv(HashKvRequest { revision: rev }))
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(resp) => list.push(EpHashKv { ep, resp }),
            Err(e) => {
                eprintln!("Failed to get the hash of endpoint {ep} ({e})");
                last_err = Some(e);
            }
        }
    }
    cx.printer.endpoint_hashkv(&list);
    if let Some(e) = last_err {
        exit::fail(EXIT_ERROR, &e);
    }
    0
}
