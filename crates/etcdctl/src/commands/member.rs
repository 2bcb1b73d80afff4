//! member add, remove, update, list, promote.

use etcd_api::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest,
};

use crate::exit::{self, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::printer::Format;
use crate::{Cx, gofmt};

pub const LIST_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.
";

fn member_id(cx: &Cx) -> u64 {
    if cx.args.len() != 1 {
        exit::fail(EXIT_BAD_ARGS, "member ID is not provided");
    }
    gofmt::parse_uint_base(&cx.args[0], 16).unwrap_or_else(|e| {
        exit::fail(
            EXIT_BAD_ARGS,
            &format!("bad member ID arg ({e}), expecting ID in Hex"),
        )
    })
}

pub async fn add(cx: Cx) -> i32 {
    if cx.args.is_empty() {
        exit::fail(EXIT_BAD_ARGS, "member name not provided");
    }
    if cx.args.len() > 1 {
        let mut ev = "too many arguments".to_string();
        for s in &cx.args {
            if s.to_lowercase().starts_with("http") {
                ev.push_str(&format!(", did you mean --peer-urls={s}"));
            }
        }
        exit::fail(EXIT_BAD_ARGS, &ev);
    }
    let name = cx.args[0].clone();
    let peer_urls = cx.flags.str("peer-urls");
    if peer_urls.is_empty() {
        exit::fail(EXIT_BAD_ARGS, "member peer urls not provided");
    }
    let urls: Vec<String> = peer_urls.split(',').map(String::from).collect();
    let c = cx.client().await;
    let mut cl = c.client.cluster.clone();
    let req = MemberAddRequest {
        peer_ur_ls: urls,
        is_learner: cx.flags.bool("learner"),
    };
    let resp = crate::call!(c, cl.member_add(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.member_add(&resp);
    if cx.printer.format == Format::Simple {
        let new_id = resp.member.as_ref().map(|m| m.id).unwrap_or(0);
        let mut conf = Vec::new();
        for m in &resp.members {
            for u in &m.peer_ur_ls {
                let n = if m.id == new_id {
                    name.clone()
                } else {
                    m.name.clone()
                };
                conf.push(format!("{n}={u}"));
            }
        }
        println!();
        println!("ETCD_NAME={}", gofmt::quote(&name));
        println!("ETCD_INITIAL_CLUSTER={}", gofmt::quote(&conf.join(",")));
        println!(
            "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
            gofmt::quote(&peer_urls)
        );
        println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
    }
    0
}

pub async fn remove(cx: Cx) -> i32 {
    let id = member_id(&cx);
    let c = cx.client().await;
    let mut cl = c.client.cluster.clone();
    let resp = crate::call!(c, cl.member_remove(MemberRemoveRequest { id }))
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.member_remove(id, &resp);
    0
}

pub async fn update(cx: Cx) -> i32 {
    let id = member_id(&cx);
    let peer_urls = cx.flags.str("peer-urls");
    if peer_urls.is_empty() {
        exit::fail(EXIT_BAD_ARGS, "member peer urls not provided");
    }
    let c = cx.client().await;
    let mut cl = c.client.cluster.clone();
    let req = MemberUpdateRequest {
        id,
        peer_ur_ls: peer_urls.split(',').map(String::from).collect(),
    };
    let resp =
        crate::call!(c, cl.member_update(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.member_update(id, &resp);
    0
}

pub async fn list(cx: Cx) -> i32 {
    let c = cx.client().await;
    let mut cl = c.client.cluster.clone();
    let resp = crate::call!(c, cl.member_list(MemberListRequest::default()))
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.member_list(&resp);
    0
}

pub async fn promote(cx: Cx) -> i32 {
    let id = member_id(&cx);
    let c = cx.client().await;
    let mut cl = c.client.cluster.clone();
    let resp = crate::call!(c, cl.member_promote(MemberPromoteRequest { id }))
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    cx.printer.member_promote(id, &resp);
    0
}
