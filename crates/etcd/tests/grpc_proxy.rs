//! `etcd grpc-proxy start`: clients reach the member through the proxy for every kind of call
//! (unary, server and bidirectional streams), the proxy starts before its members are up and
//! says so on `/health`, and it refuses a client certificate that carries a Common Name. Then
//! what the proxy adds: `--namespace`, the range cache, watch and keep-alive coalescing (seen
//! on the member's and the proxy's metrics), a watch that outlives a member restart,
//! `--resolver-prefix` registration with `MemberList` naming the proxy, and its flag checks.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use etcd_api::etcdserverpb::{
    CompactionRequest, Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseTimeToLiveRequest, MemberListRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest, WatchResponse, compare, request_op, watch_request,
};
use etcd_api::v3lockpb::LockRequest;
use etcd_client::{Client, ConnectOptions};

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(endpoint: &str, listen: &str) -> Proxy {
    start_proxy_with(endpoint, listen, &[])
}

fn start_proxy_with(endpoint: &str, listen: &str, extra: &[&str]) -> Proxy {
    let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(["grpc-proxy", "start", "--endpoints", endpoint])
        .args(["--listen-addr", listen])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn grpc-proxy");
    Proxy(child)
}

fn health(listen: &str) -> String {
    let out = Command::new("/usr/bin/curl")
        .args(["-s", "--max-time", "3"])
        .arg(format!("http://{listen}/health"))
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

async fn client(listen: &str) -> Client {
    let options = ConnectOptions {
        dial_timeout: Duration::from_secs(1),
        request_timeout: Some(Duration::from_secs(5)),
        ..ConnectOptions::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = Client::connect(&[format!("http://{listen}")], options.clone()).await {
            return c;
        }
        assert!(Instant::now() < deadline, "the proxy never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_of_every_kind_go_through_the_proxy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = format!("127.0.0.1:{}", free_port());
    // Started first: the proxy waits for its member, and says it is not healthy meanwhile.
    let member_port = free_port();
    let _proxy = start_proxy(&format!("127.0.0.1:{member_port}"), &listen);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health(&listen).contains("false") {
        assert!(Instant::now() < deadline, "the proxy did not start alone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let member = common::EtcdProcess::start_at(
        &dir.path().join("m"),
        &format!("http://127.0.0.1:{member_port}"),
        &[],
    )
    .await;
    let mut c = client(&listen).await;
    c.put("through", "proxy").await.expect("put via proxy");
    let got =
        c.kv.range(RangeRequest {
            key: b"through".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range via proxy")
        .into_inner();
    assert_eq!(got.kvs[0].value, b"proxy");

    // A bidirectional stream: a watch sees a put made after it.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"w".to_vec(),
                ..Default::default()
            },
        )),
    })
    .await
    .expect("send");
    let mut events = c
        .watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch via proxy")
        .into_inner();
    let created = events
        .message()
        .await
        .expect("created")
        .expect("a response");
    assert!(created.created);
    c.put("w", "x").await.expect("put");
    let event = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("an event in time")
        .expect("stream")
        .expect("a response");
    assert_eq!(event.events[0].kv.as_ref().expect("kv").value, b"x");

    let lease = c
        .lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("lease via proxy")
        .into_inner();
    assert!(lease.id > 0);
    assert!(health(&listen).contains("true"));
    drop(member);
}

#[test]
fn a_client_certificate_with_a_common_name_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = common::pki::Pki::new(dir.path());
    let (cert, key) = pki.issue("proxy-client", &["127.0.0.1"]);
    let out = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(["grpc-proxy", "start", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--cacert")
        .arg(pki.ca())
        .args(["--listen-addr", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("run grpc-proxy");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cert has non empty Common Name (proxy-client)"),
        "{stderr}"
    );
}

fn http_get(url: &str) -> String {
    let out = Command::new("/usr/bin/curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of an unlabelled metric in a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn serializable(key: &str, revision: i64) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable: true,
        revision,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_cache_and_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let member = common::EtcdProcess::start(&dir.path().join("m"), &[]).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _proxy = start_proxy_with(
        member.client_url.trim_start_matches("http://"),
        &listen,
        &[
            "--namespace",
            "ns/",
            "--metrics-addr",
            &format!("http://{metrics_addr}"),
        ],
    );
    let mut c = client(&listen).await;
    let mut direct = member.client().await;
    direct.put("outside", "x").await.expect("put on the member");

    // Keys live under the namespace on the member, and come back without it.
    c.put("a", "1").await.expect("put via proxy");
    let on_member = direct.get("ns/a").await.expect("get on the member");
    assert_eq!(on_member.kvs[0].value, b"1");
    let everything =
        c.kv.range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .expect("range of everything via proxy")
        .into_inner();
    let keys: Vec<&[u8]> = everything.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![b"a".as_slice()], "only the namespace is seen");

    // A txn: compares and operations namespaced.
    let txn =
        c.kv.txn(TxnRequest {
            compare: vec![Compare {
                key: b"a".to_vec(),
                target: compare::CompareTarget::Value as i32,
                result: compare::CompareResult::Equal as i32,
                target_union: Some(compare::TargetUnion::Value(b"1".to_vec())),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"b".to_vec(),
                    value: b"2".to_vec(),
                    ..Default::default()
                })),
            }],
            ..Default::default()
        })
        .await
        .expect("txn via proxy")
        .into_inner();
    assert!(txn.succeeded);
    assert_eq!(direct.get("ns/b").await.expect("get").kvs[0].value, b"2");

    // The cache: a second serializable read is a hit; a write through the proxy invalidates.
    let first =
        c.kv.range(serializable("a", 0))
            .await
            .expect("range")
            .into_inner();
    let second =
        c.kv.range(serializable("a", 0))
            .await
            .expect("range")
            .into_inner();
    assert_eq!(first, second);
    let own = http_get(&format!("http://{metrics_addr}/proxy/metrics"));
    assert!(
        metric(&own, "etcd_grpc_proxy_cache_hits_total").unwrap_or(0.0) >= 1.0,
        "{own}"
    );
    assert!(
        metric(&own, "etcd_grpc_proxy_cache_keys_total").is_some(),
        "{own}"
    );
    c.put("a", "2").await.expect("put via proxy");
    let fresh =
        c.kv.range(serializable("a", 0))
            .await
            .expect("range")
            .into_inner();
    assert_eq!(fresh.kvs[0].value, b"2");

    // A compaction through the proxy: older revisions are refused with etcd's error.
    let old = first.header.expect("header").revision;
    let now = fresh.header.expect("header").revision;
    c.kv.compact(CompactionRequest {
        revision: now,
        physical: true,
    })
    .await
    .expect("compact via proxy");
    let refused =
        c.kv.range(serializable("a", old))
            .await
            .expect_err("compacted");
    assert_eq!(refused.code(), tonic::Code::OutOfRange);
    assert_eq!(
        refused.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );

    // Locks and lease keys are namespaced too.
    let lease = c
        .lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    let lock = c
        .lock
        .lock(LockRequest {
            name: b"l".to_vec(),
            lease,
        })
        .await
        .expect("lock via proxy")
        .into_inner();
    assert!(lock.key.starts_with(b"l/"), "{:?}", lock.key);
    let held = direct
        .get(format!("ns/{}", String::from_utf8_lossy(&lock.key)))
        .await
        .expect("get lock key");
    assert_eq!(held.count, 1);
    direct
        .kv
        .put(PutRequest {
            key: b"outside-with-lease".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .expect("put with the lease on the member");
    let ttl = c
        .lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: lease,
            keys: true,
        })
        .await
        .expect("time to live via proxy")
        .into_inner();
    assert_eq!(
        ttl.keys,
        vec![lock.key.clone()],
        "keys outside the namespace are hidden"
    );

    // /metrics is the member's, on the listen address and on --metrics-addr.
    for addr in [&listen, &metrics_addr] {
        let page = http_get(&format!("http://{addr}/metrics"));
        assert_eq!(metric(&page, "etcd_server_has_leader"), Some(1.0), "{page}");
    }
}

async fn open_watch(
    c: &mut Client,
    create: WatchCreateRequest,
) -> (
    tokio::sync::mpsc::Sender<WatchRequest>,
    tonic::Streaming<WatchResponse>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    })
    .await
    .expect("send");
    let stream = c
        .watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch via proxy")
        .into_inner();
    (tx, stream)
}

async fn next(stream: &mut tonic::Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a watch response in time")
        .expect("the stream")
        .expect("a response")
}

/// (type, key, value, prev value) of each event.
fn events(r: &WatchResponse) -> Vec<(i32, String, String, Option<String>)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap_or_default();
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                e.prev_kv
                    .as_ref()
                    .map(|p| String::from_utf8_lossy(&p.value).into_owned()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_are_coalesced_and_outlive_a_member_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut member = common::EtcdProcess::start(&dir.path().join("m"), &[]).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let _proxy = start_proxy(member.client_url.trim_start_matches("http://"), &listen);
    let mut c1 = client(&listen).await;
    let mut c2 = client(&listen).await;
    let member_watchers = || {
        metric(
            &http_get(&format!("{}/metrics", member.client_url)),
            "etcd_debugging_mvcc_watcher_total",
        )
    };
    let before = member_watchers().expect("the member counts its watchers");

    // Two clients watch one key from now: one watch on the member.
    let (_t1, mut w1) = open_watch(
        &mut c1,
        WatchCreateRequest {
            key: b"w".to_vec(),
            ..Default::default()
        },
    )
    .await;
    assert!(next(&mut w1).await.created);
    let (_t2, mut w2) = open_watch(
        &mut c2,
        WatchCreateRequest {
            key: b"w".to_vec(),
            prev_kv: true,
            filters: vec![1], // NODELETE
            ..Default::default()
        },
    )
    .await;
    assert!(next(&mut w2).await.created);
    assert_eq!(member_watchers(), Some(before + 1.0));

    // Each takes what it asked for.
    let first = c1
        .put("w", "1")
        .await
        .expect("put")
        .header
        .expect("header")
        .revision;
    c1.put("w", "2").await.expect("put");
    c1.delete("w").await.expect("delete");
    let mut seen1 = Vec::new();
    while seen1.len() < 3 {
        seen1.extend(events(&next(&mut w1).await));
    }
    assert_eq!(
        seen1,
        vec![
            (0, "w".into(), "1".into(), None),
            (0, "w".into(), "2".into(), None),
            (1, "w".into(), "".into(), None),
        ]
    );
    let mut seen2 = Vec::new();
    while seen2.len() < 2 {
        seen2.extend(events(&next(&mut w2).await));
    }
    assert_eq!(
        seen2,
        vec![
            (0, "w".into(), "1".into(), None),
            (0, "w".into(), "2".into(), Some("1".into())),
        ]
    );

    // A watch from a past revision gets the history.
    let (_t3, mut w3) = open_watch(
        &mut c2,
        WatchCreateRequest {
            key: b"w".to_vec(),
            start_revision: first,
            ..Default::default()
        },
    )
    .await;
    assert!(next(&mut w3).await.created);
    let mut seen3 = Vec::new();
    while seen3.len() < 3 {
        seen3.extend(events(&next(&mut w3).await));
    }
    assert_eq!(seen3, seen1);

    // The member restarts: the watch resumes where it was, with nothing lost.
    member.kill();
    member.spawn();
    member.wait_ready().await;
    let mut direct = member.client().await;
    direct.put("w", "3").await.expect("put after the restart");
    let after = events(&next(&mut w1).await);
    assert_eq!(after, vec![(0, "w".into(), "3".into(), None)]);
}

async fn keep_alive_once(c: &mut Client, id: i64) -> LeaseKeepAliveResponse {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(LeaseKeepAliveRequest { id }).await.expect("send");
    let mut answers = c
        .lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("keep-alive via proxy")
        .into_inner();
    tokio::time::timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("an answer in time")
        .expect("the stream")
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alives_and_registration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let member = common::EtcdProcess::start(&dir.path().join("m"), &[]).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let _proxy = start_proxy_with(
        member.client_url.trim_start_matches("http://"),
        &listen,
        &[
            "--resolver-prefix",
            "/proxies",
            "--resolver-ttl",
            "5",
            "--advertise-client-url",
            &listen,
        ],
    );
    let mut c = client(&listen).await;

    // Keep-alives through the proxy, from two streams at once, and of a lease that is not.
    let lease = c
        .lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    let (mut a, mut b) = (c.clone(), c.clone());
    let (one, two) = tokio::join!(
        keep_alive_once(&mut a, lease),
        keep_alive_once(&mut b, lease)
    );
    for answer in [one, two] {
        assert_eq!(answer.id, lease);
        assert!(answer.ttl > 0 && answer.ttl <= 30, "{answer:?}");
    }
    let missing = keep_alive_once(&mut c, lease + 1).await;
    assert_eq!(missing.ttl, 0);

    // The proxy registers itself under the prefix, with etcd's endpoint JSON and a lease.
    let mut direct = member.client().await;
    let key = format!("/proxies/{listen}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let found = direct.get(key.as_str()).await.expect("get");
        if let Some(kv) = found.kvs.first() {
            break kv.clone();
        }
        assert!(Instant::now() < deadline, "the proxy did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(entry.lease != 0);
    let value: serde_json::Value = serde_json::from_slice(&entry.value).expect("JSON");
    assert_eq!(value["Op"], 0);
    assert_eq!(value["Addr"], listen.as_str());
    let meta: serde_json::Value =
        serde_json::from_str(value["Metadata"].as_str().expect("metadata string")).expect("JSON");
    assert!(meta["name"].is_string());

    // MemberList through the proxy names the proxies.
    let members = c
        .cluster
        .member_list(MemberListRequest::default())
        .await
        .expect("member list via proxy")
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].client_ur_ls, vec![listen.clone()]);
    assert_eq!(members[0].name, meta["name"].as_str().unwrap_or_default());
}

#[test]
fn bad_proxy_flags_are_refused() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args(["grpc-proxy", "start"])
            .args(args)
            .args(["--listen-addr", &format!("127.0.0.1:{}", free_port())])
            .output()
            .expect("run grpc-proxy");
        assert!(!out.status.success(), "{args:?} accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // etcd's checks of the resolver settings, word for word.
    assert!(run(&["--resolver-prefix", "/p"]).contains("invalid resolver-ttl 0"));
    assert!(run(&["--resolver-ttl", "5"]).contains("invalid resolver-prefix \"\""));
    assert!(
        run(&[
            "--resolver-prefix",
            "/p",
            "--resolver-ttl",
            "5",
            "--advertise-client-url",
            ""
        ])
        .contains("invalid advertise-client-url \"\"")
    );
    // What this proxy does not do is refused, never silently ignored.
    assert!(run(&["--experimental-leasing-prefix", "x"]).contains("not supported"));
    assert!(run(&["--experimental-serializable-ordering"]).contains("not supported"));
    assert!(run(&["--resolver-ttl", "soon"]).contains("invalid argument \"soon\""));
}
