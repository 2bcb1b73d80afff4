//! `etcd grpc-proxy start`: clients reach the member through the proxy for every kind of call
//! (unary, server and bidirectional streams), the proxy starts before its members are up and
//! says so on `/health`, and it refuses a client certificate that carries a Common Name.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use etcd_api::etcdserverpb::{
    LeaseGrantRequest, RangeRequest, WatchCreateRequest, WatchRequest, watch_request,
};
use etcd_client::{Client, ConnectOptions};

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(endpoint: &str, listen: &str) -> Proxy {
    let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(["grpc-proxy", "start", "--endpoints", endpoint])
        .args(["--listen-addr", listen])
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
