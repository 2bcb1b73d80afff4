//! Behaviours users follow the seed guides by, as etcd 3.4 has them: a member serves clients
//! only once the cluster lists it, Status reports alarms, the `member add` + `new` pitfall stops
//! the member with the fix, unknown HTTP paths are 404, transport errors are grpc-go's, and the
//! log lines people grep for. Comparisons with `/usr/bin/etcd` skip with a note without it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, ClusterOptions};
use common::{EtcdProcess, free_port};
use etcd_api::etcdserverpb::{
    MemberAddRequest, MemberListRequest, PutRequest, StatusRequest, kv_client::KvClient,
};

const REF_ETCD: &str = "/usr/bin/etcd";
const REF_CTL: &str = "/usr/bin/etcdctl";

fn has_reference() -> bool {
    if Path::new(REF_ETCD).exists() && Path::new(REF_CTL).exists() {
        return true;
    }
    eprintln!("note: {REF_ETCD} or {REF_CTL} missing (Debian etcd-server, etcd-client); skipping");
    false
}

/// Every member of `cluster`, asked through `slot` right after `slot` first answered, lists
/// every member with its name and client URLs.
async fn assert_all_published(cluster: &Cluster, slot: usize, expected_members: usize) {
    let mut c = cluster.client(slot, Duration::from_secs(5)).await;
    let members = c
        .cluster
        .member_list(MemberListRequest::default())
        .await
        .expect("member list")
        .into_inner()
        .members;
    assert_eq!(members.len(), expected_members, "{members:?}");
    for m in &members {
        assert!(
            !m.name.is_empty() && !m.client_ur_ls.is_empty(),
            "member {:x} is listed unstarted through slot {slot}: {members:?}",
            m.id
        );
    }
}

#[tokio::test]
async fn members_answer_only_once_the_cluster_lists_them() {
    let mut cluster = Cluster::start(ClusterOptions::new(3)).await;
    for slot in 0..3 {
        assert_all_published(&cluster, slot, 3).await;
    }
    // A joined member: the harness returns as soon as it answers a read.
    let joined = cluster.add_member().await;
    assert_all_published(&cluster, joined, 4).await;
}

#[tokio::test]
async fn status_reports_an_active_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let etcd =
        EtcdProcess::start(&dir.path().join("a.etcd"), &["--quota-backend-bytes", "1"]).await;
    let mut c = etcd.client().await;
    let refused = c.put("k", "v").await.expect_err("over the quota");
    assert!(
        refused.to_string().contains("database space exceeded"),
        "{refused}"
    );
    let status = c
        .maintenance
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let member_id = status.header.as_ref().unwrap().member_id;
    assert_eq!(
        status.errors,
        [format!("memberID:{member_id} alarm:NOSPACE ")]
    );
}

#[tokio::test]
async fn a_member_added_then_started_new_stops_and_says_how_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let first = EtcdProcess::start(&dir.path().join("first.etcd"), &[]).await;
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let client_url = format!("http://127.0.0.1:{}", free_port());
    let mut c = first.client().await;
    c.cluster
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![peer_url.clone()],
            is_learner: false,
        })
        .await
        .expect("member add");
    // The seed guide's pitfall: the flags `member add` printed, but `new` instead of `existing`.
    let data_dir = dir.path().join("added.etcd");
    let mut added = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(["--name", "added", "--data-dir"])
        .arg(&data_dir)
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("test={},added={peer_url}", first.peer_url),
            "--initial-cluster-state",
            "new",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcd");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = added.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = added.kill();
            panic!("the misconfigured member kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    added
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("cluster ID mismatch"), "{stderr}");
    assert!(
        stderr.contains("must join with --initial-cluster-state existing"),
        "{stderr}"
    );
    assert!(stderr.contains(&data_dir.display().to_string()), "{stderr}");
}

#[tokio::test]
async fn a_member_removed_while_down_stops_when_it_comes_back() {
    let mut cluster = Cluster::start(ClusterOptions::new(3)).await;
    cluster.kill(2);
    cluster.remove_from_membership(2).await;
    // Its own log never says it was removed: only its peers can tell it.
    cluster.spawn(2);
    let exit = cluster.wait_exit(2).await;
    let log = cluster.members[2].log();
    assert!(exit.success(), "exited with {exit}:\n{log}");
    assert!(
        log.contains("the member has been permanently removed from the cluster"),
        "{log}"
    );
    assert!(
        log.contains("the data-dir used by this member must be removed."),
        "{log}"
    );
}

/// A plain HTTP/1.1 GET: the status line, the headers (names lower-cased) and the body.
fn http_get(client_url: &str, path: &str) -> (String, Vec<(String, String)>, String) {
    let address = client_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a full answer");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn unknown_http_paths_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &[]).await;
    for path in ["/metricsz", "/v2/keys/foo", "/etcdserverpb.KV/Range", "/"] {
        let (status, headers, body) = http_get(&etcd.client_url, path);
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
        assert_eq!(body, "404 page not found\n", "{path}");
    }
    let (status, _, body) = http_get(&etcd.client_url, "/version");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, r#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#);
}

#[tokio::test]
async fn a_request_over_the_receive_limit_is_refused_as_grpc_go_does() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &[]).await;
    let channel = tonic::transport::Channel::from_shared(etcd.client_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut kv = KvClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    let put = PutRequest {
        key: b"k".to_vec(),
        value: vec![b'v'; 3_000_000],
        ..PutRequest::default()
    };
    let len = prost::Message::encoded_len(&put);
    let status = kv.put(put).await.expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    // The limit is --max-request-bytes (1.5 MiB) plus etcd's 512 KiB of gRPC overhead.
    assert_eq!(
        status.message(),
        format!("grpc: received message larger than max ({len} vs. 2097152)")
    );
    // Under the transport's limit but over --max-request-bytes: etcd's own error.
    let status = kv
        .put(PutRequest {
            key: b"k".to_vec(),
            value: vec![b'v'; 1_700_000],
            ..PutRequest::default()
        })
        .await
        .expect_err("over --max-request-bytes");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "etcdserver: request is too large");
}

/// Runs a binary with the flags of a one-member cluster on fixed ports, `member list -w json`
/// through etcd's etcdctl and the HTTP answers, then stops it.
fn observe(binary: &str, data_dir: &Path, client: u16, peer: u16) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut child = Command::new(binary)
        .args(["--name", "twin", "--data-dir"])
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("twin={peer_url}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let ctl = |args: &[&str]| {
        Command::new(REF_CTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={client_url}"))
            .args(args)
            .output()
            .expect("etcdctl")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctl(&["endpoint", "health"]).status.success() {
        assert!(Instant::now() < deadline, "{binary} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut seen =
        vec![String::from_utf8_lossy(&ctl(&["member", "list", "-w", "json"]).stdout).into_owned()];
    for path in ["/version", "/health", "/nowhere"] {
        let (status, headers, body) = http_get(&client_url, path);
        let content_type = header(&headers, "content-type")
            .unwrap_or_default()
            .to_string();
        seen.push(format!("{path}: {status} {content_type} {body:?}"));
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[test]
fn member_list_and_http_answers_are_etcds_byte_for_byte() {
    if !has_reference() {
        return;
    }
    // The same flags give the same member and cluster IDs, so the bytes can match exactly.
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let etcds = observe(REF_ETCD, &dir.path().join("etcd"), client, peer);
    let ours = observe(
        env!("CARGO_BIN_EXE_etcd"),
        &dir.path().join("ours"),
        client,
        peer,
    );
    assert_eq!(ours, etcds);
}

/// The lines of `log` that contain `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test]
async fn every_member_logs_the_lines_operators_grep_for() {
    let cluster = Cluster::start(ClusterOptions::new(3)).await;
    let leader = cluster.wait_leader(&[0, 1, 2]).await;
    let leader_id = cluster.members[leader].id;
    for (slot, m) in cluster.members.iter().enumerate() {
        let log = m.log();
        let elected = format!("raft.node: {:x} elected leader ", m.id);
        assert!(
            !lines_with(&log, &elected).is_empty(),
            "member {slot} logged no election:\n{log}"
        );
        assert!(
            !lines_with(&log, "published {Name:").is_empty(),
            "member {slot}:\n{log}"
        );
        assert!(
            !lines_with(&log, "I | etcdserver: ready to serve client requests").is_empty(),
            "member {slot}:\n{log}"
        );
        assert!(
            !lines_with(&log, "serving insecure client requests on 127.0.0.1:").is_empty(),
            "member {slot}:\n{log}"
        );
    }
    let leader_log = cluster.members[leader].log();
    assert!(
        !lines_with(
            &leader_log,
            &format!("INFO: {leader_id:x} became leader at term ")
        )
        .is_empty(),
        "{leader_log}"
    );
}

#[tokio::test]
async fn zap_logs_are_json_lines_with_etcds_messages() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &["--logger", "zap"]).await;
    let log = etcd.log();
    let mut messages = Vec::new();
    for line in log.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["ts"].is_string(),
            "{line}"
        );
        messages.push(entry["msg"].as_str().unwrap_or_default().to_string());
    }
    for expected in [
        "published local member to cluster through raft",
        "ready to serve client requests",
    ] {
        assert!(messages.iter().any(|m| m == expected), "{expected}: {log}");
    }
    assert!(
        messages.iter().any(|m| m.contains(" elected leader ")),
        "{log}"
    );
}
