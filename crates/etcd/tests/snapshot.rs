//! Snapshots: with a small `--snapshot-count`, a member that was down while the others
//! compacted their logs catches up from a streamed backend snapshot, and ends with the same
//! data (HashKV) as the rest.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use etcd_api::etcdserverpb::{HashKvRequest, StatusRequest};
use etcd_client::{Client, ConnectOptions};

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    data_dir: std::path::PathBuf,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self, initial_cluster: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args([
                "--name",
                &self.name,
                "--data-dir",
                self.data_dir.to_str().unwrap(),
                "--listen-client-urls",
                &self.client_url,
                "--advertise-client-urls",
                &self.client_url,
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
                "--initial-cluster",
                initial_cluster,
                "--snapshot-count",
                "100",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn client(&self) -> Option<Client> {
        let options = ConnectOptions {
            dial_timeout: Duration::from_millis(500),
            request_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        Client::connect(&[self.client_url.as_str()], options)
            .await
            .ok()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `op` until it succeeds or 20 s pass: on a busy test machine a member can miss
/// heartbeats and start an election, during which requests fail at once with "no leader"; a
/// client retries through that, as etcd's does.
async fn retrying<T, E, F, Fut>(what: &str, mut op: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what} kept failing: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Polls `check` until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_member_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member {
            name: format!("m{i}"),
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            data_dir: dir.path().join(format!("m{i}.etcd")),
            log: dir.path().join(format!("m{i}.log")),
            child: None,
        })
        .collect();
    let initial_cluster = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    for m in members.iter_mut() {
        m.spawn(&initial_cluster);
    }
    let c0_url = members[0].client_url.clone();
    eventually(Duration::from_secs(30), "the cluster to serve", || {
        let url = c0_url.clone();
        async move {
            match Client::connect(&[url.as_str()], Default::default()).await {
                Ok(mut c) => c.put("probe", "1").await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;

    // m2 goes down; the others write well past the entries a log keeps after a snapshot.
    members[2].kill();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let url = members[0].client_url.clone();
            tokio::spawn(async move {
                let c = Client::connect(&[url.as_str()], Default::default())
                    .await
                    .unwrap();
                for i in 0..800 {
                    let key = format!("w{w}/{i:04}");
                    retrying("put", || {
                        let (mut c, key) = (c.clone(), key.clone());
                        async move { c.put(key, vec![b'x'; 64]).await }
                    })
                    .await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let c0 = members[0].client().await.unwrap();
    let target = retrying("get", || {
        let mut c = c0.clone();
        async move { c.get("probe").await }
    })
    .await
    .header
    .unwrap()
    .revision;

    members[2].spawn(&initial_cluster);
    let m2_url = members[2].client_url.clone();
    eventually(Duration::from_secs(60), "m2 to catch up", || {
        let url = m2_url.clone();
        async move {
            let Ok(mut c) = Client::connect(&[url.as_str()], Default::default()).await else {
                return false;
            };
            match c.maintenance.status(StatusRequest {}).await {
                Ok(s) => s.into_inner().header.is_some_and(|h| h.revision >= target),
                Err(_) => false,
            }
        }
    })
    .await;
    let log = std::fs::read_to_string(&members[2].log).unwrap();
    assert!(
        log.contains("restored the backend from the leader's snapshot"),
        "m2 caught up without a snapshot; log:\n{log}"
    );
    let mut hashes = Vec::new();
    for m in &members {
        let c = m.client().await.unwrap();
        let h = retrying("hash_kv", || {
            let mut c = c.clone();
            async move {
                c.maintenance
                    .hash_kv(HashKvRequest { revision: target })
                    .await
            }
        })
        .await
        .into_inner();
        hashes.push(h.hash);
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "members differ: {hashes:?}"
    );
    let c2 = members[2].client().await.unwrap();
    let all = retrying("get_prefix", || {
        let mut c = c2.clone();
        async move { c.get_prefix("w").await }
    })
    .await;
    assert_eq!(all.kvs.len(), 6400);
}
