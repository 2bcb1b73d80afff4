//! The JSON gateway against etcd 3.4's: the same requests, sent with curl to `/usr/bin/etcd`
//! and to ours (one member each, fresh), must give the same HTTP status and the same JSON,
//! once the IDs that differ between two clusters (cluster, member, term) are set aside.
//! Skips with a note when /usr/bin/etcd or curl is missing.

mod common;

use std::process::Command;

use common::reference::{CURL, REF_ETCD, Single, available};
use serde_json::Value;

type Server = Single;

/// (HTTP status, body) of a POST.
fn post(server: &Server, path: &str, body: &str) -> (u16, String) {
    request(server, "POST", path, body, &[])
}

fn request(server: &Server, method: &str, path: &str, body: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new(CURL)
        .args([
            "-s",
            "-X",
            method,
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(format!("{}{path}", server.client))
        .args(["-d", body])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The JSON with what differs between two clusters replaced: IDs, terms, sizes, times.
fn normalized(body: &str) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if matches!(
                        k.as_str(),
                        "cluster_id"
                            | "member_id"
                            | "raft_term"
                            | "ID"
                            | "leader"
                            | "memberID"
                            | "token"
                            | "dbSize"
                            | "dbSizeInUse"
                            | "raftTerm"
                            | "TTL"
                            | "peerURLs"
                            | "clientURLs"
                    ) {
                        *child = Value::String("_".into());
                    } else {
                        walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    walk(&mut v);
    v
}

/// How a case is compared: the whole JSON, or (decode errors, whose wording is Go's JSON
/// library's) the status and gRPC code only.
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    Json,
    CodeOnly,
}

#[test]
fn the_gateway_answers_as_etcds_for_every_route() {
    if !available() {
        return;
    }
    use Compare::*;
    // Requests in order; each server starts empty, so revisions agree.
    let cases: &[(&str, &str, Compare)] = &[
        ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#, Json),
        (
            "/v3/kv/put",
            r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#,
            Json,
        ),
        (
            "/v3beta/kv/put",
            r#"{"key":"a2V5Mg==","value":"djI=","lease":"0"}"#,
            Json,
        ),
        ("/v3/kv/range", r#"{"key":"Zm9v"}"#, Json),
        (
            "/v3/kv/range",
            r#"{"key":"AA==","range_end":"AA==","keys_only":true}"#,
            Json,
        ),
        (
            "/v3/kv/range",
            r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
            Json,
        ),
        (
            "/v3/kv/range",
            r#"{"key":"AA==","range_end":"AA==","limit":"1","sort_order":"DESCEND","sort_target":"KEY"}"#,
            Json,
        ),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"result":"EQUAL","target":"VALUE","key":"Zm9v","value":"YmF6"}],"success":[{"request_range":{"key":"Zm9v"}},{"request_put":{"key":"dA==","value":"MQ=="}}],"failure":[{"request_delete_range":{"key":"Zm9v"}}]}"#,
            Json,
        ),
        (
            "/v3/kv/txn",
            r#"{"compare":[{"result":"GREATER","target":"MOD","key":"Zm9v","mod_revision":"100"}],"failure":[{"request_delete_range":{"key":"dA==","prev_kv":true}}]}"#,
            Json,
        ),
        (
            "/v3/kv/deleterange",
            r#"{"key":"Zm9v","prev_kv":true}"#,
            Json,
        ),
        ("/v3/kv/compaction", r#"{"revision":"3"}"#, Json),
        ("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#, Json),
        ("/v3/kv/range", r#"{"key":"Zm9v","revision":"99"}"#, Json),
        ("/v3/lease/grant", r#"{"TTL":60,"ID":"1234"}"#, Json),
        ("/v3/lease/grant", r#"{"TTL":60,"ID":"1234"}"#, Json),
        (
            "/v3/kv/put",
            r#"{"key":"bA==","value":"eA==","lease":"1234"}"#,
            Json,
        ),
        ("/v3/lease/timetolive", r#"{"ID":"1234","keys":true}"#, Json),
        ("/v3/kv/lease/timetolive", r#"{"ID":"1234"}"#, Json),
        ("/v3/lease/leases", "{}", Json),
        ("/v3/kv/lease/leases", "{}", Json),
        ("/v3/lease/revoke", r#"{"ID":"1234"}"#, Json),
        ("/v3/kv/lease/revoke", r#"{"ID":"1234"}"#, Json),
        ("/v3/maintenance/alarm", r#"{"action":"GET"}"#, Json),
        ("/v3/cluster/member/list", "{}", Json),
        (
            "/v3/auth/user/add",
            r#"{"name":"u1","password":"p1"}"#,
            Json,
        ),
        (
            "/v3/auth/user/add",
            r#"{"name":"u1","password":"p1"}"#,
            Json,
        ),
        ("/v3/auth/role/add", r#"{"name":"r1"}"#, Json),
        (
            "/v3/auth/role/grant",
            r#"{"name":"r1","perm":{"permType":"READWRITE","key":"YQ==","range_end":"Yg=="}}"#,
            Json,
        ),
        ("/v3/auth/role/get", r#"{"role":"r1"}"#, Json),
        ("/v3/auth/role/list", "{}", Json),
        ("/v3/auth/user/grant", r#"{"user":"u1","role":"r1"}"#, Json),
        ("/v3/auth/user/get", r#"{"name":"u1"}"#, Json),
        ("/v3/auth/user/list", "{}", Json),
        (
            "/v3/auth/user/changepw",
            r#"{"name":"u1","password":"p2"}"#,
            Json,
        ),
        ("/v3/auth/user/revoke", r#"{"name":"u1","role":"r1"}"#, Json),
        (
            "/v3/auth/role/revoke",
            r#"{"role":"r1","key":"YQ==","range_end":"Yg=="}"#,
            Json,
        ),
        ("/v3/auth/role/delete", r#"{"role":"r1"}"#, Json),
        ("/v3/auth/user/delete", r#"{"name":"u1"}"#, Json),
        ("/v3/auth/user/get", r#"{"name":"nobody"}"#, Json),
        (
            "/v3/auth/authenticate",
            r#"{"name":"nobody","password":"x"}"#,
            Json,
        ),
        ("/v3/lock/lock", r#"{"name":"bG9jaw=="}"#, CodeOnly),
        ("/v3/election/leader", r#"{"name":"ZWxlY3Rpb24="}"#, Json),
        ("/v3/election/proclaim", "{}", Json),
        ("/v3/election/resign", "{}", Json),
        // Bad input: etcd's errors (wording of JSON decode errors is Go's).
        ("/v3/kv/put", r#"{"value":"YmFy"}"#, Json),
        ("/v3/kv/put", r#"{"key":"!!!"}"#, CodeOnly),
        ("/v3/kv/put", "{bad json", CodeOnly),
        ("/v3/kv/range", r#"{"key":123}"#, CodeOnly),
        (
            "/v3/kv/range",
            r#"{"key":"Zm9v","sort_order":"SIDEWAYS"}"#,
            CodeOnly,
        ),
        ("/v3/no/such/route", "{}", Json),
    ];
    let dir = tempfile::tempdir().unwrap();
    let etcd = Single::start(REF_ETCD, &dir.path().join("etcd"), &[], false);
    let ours = Single::start(
        env!("CARGO_BIN_EXE_etcd"),
        &dir.path().join("ours"),
        &[],
        false,
    );
    let mut differences = Vec::new();
    for (path, body, compare) in cases {
        let (want_status, want) = post(&etcd, path, body);
        let (got_status, got) = post(&ours, path, body);
        let same = match compare {
            Json => want_status == got_status && normalized(&want) == normalized(&got),
            CodeOnly => {
                want_status == got_status
                    && normalized(&want).get("code") == normalized(&got).get("code")
            }
        };
        if !same {
            differences.push(format!(
                "POST {path} {body}\n  etcd: {want_status} {want}\n  ours: {got_status} {got}"
            ));
        }
    }
    // A GET where only POST is served.
    let want = request(&etcd, "GET", "/v3/kv/range", "", &["-G"]);
    let got = request(&ours, "GET", "/v3/kv/range", "", &["-G"]);
    if want != got {
        differences.push(format!(
            "GET /v3/kv/range\n  etcd: {want:?}\n  ours: {got:?}"
        ));
    }
    // A watch from revision 1: the created answer, then the history, as lines.
    let watch = r#"{"create_request":{"key":"AA==","range_end":"AA==","start_revision":"1"}}"#;
    let lines = |s: &Server| {
        let (_, body) = request(s, "POST", "/v3/watch", watch, &["-N", "--max-time", "1"]);
        body.lines().map(normalized).collect::<Vec<_>>()
    };
    let (want, got) = (lines(&etcd), lines(&ours));
    if want != got {
        differences.push(format!("POST /v3/watch\n  etcd: {want:?}\n  ours: {got:?}"));
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
