//! alarm, defrag, move-leader, version.

use etcd_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, MoveLeaderRequest, StatusRequest, alarm_request,
};

use crate::Cx;
use crate::commands::endpoint::{endpoints_from_cluster, one};
use crate::exit::{self, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::gofmt;

pub fn version() -> i32 {
    println!("etcdctl version: {}", crate::VERSION);
    println!("API version: {}", crate::API_VERSION);
    0
}

pub async fn alarm_list(cx: Cx) -> i32 {
    if !cx.args.is_empty() {
        exit::fail(EXIT_BAD_ARGS, "alarm list command accepts no arguments");
    }
    let c = cx.client().await;
    let mut m = c.client.maintenance.clone();
    let req = AlarmRequest {
        action: alarm_request::AlarmAction::Get as i32,
        member_id: 0,
        alarm: 0,
    };
    let resp = crate::call!(c, m.alarm(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.alarm(&resp);
    0
}

pub async fn alarm_disarm(cx: Cx) -> i32 {
    if !cx.args.is_empty() {
        exit::fail(EXIT_BAD_ARGS, "alarm disarm command accepts no arguments");
    }
    let c = cx.client().await;
    let mut m = c.client.maintenance.clone();
    // clientv3 disarms every listed alarm one by one; the answer has no header.
    let list = crate::call!(
        c,
        m.alarm(AlarmRequest {
            action: alarm_request::AlarmAction::Get as i32,
            member_id: 0,
            alarm: 0,
        })
    )
    .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    let mut ret = AlarmResponse::default();
    for a in list.alarms {
        let req = AlarmRequest {
            action: alarm_request::AlarmAction::Deactivate as i32,
            member_id: a.member_id,
            alarm: a.alarm,
        };
        let r = crate::call!(c, m.alarm(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
        ret.alarms.extend(r.alarms);
    }
    cx.printer.alarm(&ret);
    0
}

pub async fn defrag(cx: Cx) -> i32 {
    let data_dir = cx.flags.str("data-dir");
    if !data_dir.is_empty() {
        let db = std::path::Path::new(&data_dir)
            .join("member")
            .join("snap")
            .join("db");
        if let Err(e) = etcdutl::defrag::defrag_file(&db) {
            eprintln!("Failed to defragment etcd data[{data_dir}] ({e})");
            exit::exit(EXIT_ERROR);
        }
        return 0;
    }
    let cfg = cx.cfg();
    let mut failures = 0;
    for ep in endpoints_from_cluster(&cx).await {
        let res = match one(&cfg, &ep, cx.deadline()).await {
            Ok(c) => {
                let mut m = c.client.maintenance.clone();
                crate::call!(c, m.defragment(DefragmentRequest {})).map(|_| ())
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => println!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}] ({e})");
                failures += 1;
            }
        }
    }
    if failures != 0 {
        exit::exit(EXIT_ERROR);
    }
    0
}

pub async fn move_leader(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(EXIT_BAD_ARGS, "move-leader command needs 1 argument");
    }
    let target =
        gofmt::parse_uint_base(&cx.args[0], 16).unwrap_or_else(|e| exit::fail(EXIT_BAD_ARGS, &e));
    let cfg = cx.cfg();
    let deadline = cx.deadline();
    let eps = cx.flags.slice("endpoints");
    let mut leader = None;
    for ep in &eps {
        let c = one(&cfg, ep, deadline)
            .await
            .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
        let mut m = c.client.maintenance.clone();
        let resp = crate::call!(c, m.status(StatusRequest {}))
            .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
        let member_id = resp.header.as_ref().map(|h| h.member_id).unwrap_or(0);
        if member_id == resp.leader {
            leader = Some((c, resp.leader));
            break;
        }
    }
    let Some((c, leader_id)) = leader else {
        exit::fail(
            EXIT_BAD_ARGS,
            &format!("no leader endpoint given at [{}]", eps.join(" ")),
        )
    };
    let mut m = c.client.maintenance.clone();
    let resp = crate::call!(c, m.move_leader(MoveLeaderRequest { target_id: target }))
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.move_leader(leader_id, target, &resp);
    0
}
