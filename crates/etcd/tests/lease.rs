//! Leases end to end: grant, attach, keep-alive, time-to-live, revoke, expiry through Raft,
//! and leases surviving a restart.

mod common;

use std::time::{Duration, Instant};

use common::EtcdProcess;
use etcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest,
};
use etcd_client::Client;

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    let resp = c
        .lease
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.id > 0);
    resp.id
}

async fn put_with_lease(c: &mut Client, key: &str, lease: i64) {
    c.kv.put(PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn grant_attach_ttl_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("l.etcd"), &[]).await;
    let mut c = etcd.client().await;

    // TTLs below the minimum (1.5 election timeouts) are raised to it.
    let short = c
        .lease
        .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(short.ttl, 2);

    let id = grant(&mut c, 60).await;
    put_with_lease(&mut c, "a", id).await;
    put_with_lease(&mut c, "b", id).await;
    let ttl = c
        .lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 60);
    assert!(ttl.ttl > 50 && ttl.ttl <= 60, "{}", ttl.ttl);
    assert_eq!(ttl.keys, vec![b"a".to_vec(), b"b".to_vec()]);

    // A key put again without the lease leaves it.
    c.put("b", "no lease").await.unwrap();
    let leases = c
        .lease
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(leases.leases.iter().any(|l| l.id == id));

    let before = c.get("a").await.unwrap().header.unwrap().revision;
    let revoked = c
        .lease
        .lease_revoke(LeaseRevokeRequest { id })
        .await
        .unwrap()
        .into_inner();
    // The attached key goes in one new revision.
    assert_eq!(revoked.header.unwrap().revision, before + 1);
    assert!(c.get("a").await.unwrap().kvs.is_empty());
    assert_eq!(c.get("b").await.unwrap().kvs[0].value, b"no lease");
    let gone = c
        .lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.ttl, -1);
    let status = c
        .lease
        .lease_revoke(LeaseRevokeRequest { id })
        .await
        .unwrap_err();
    assert_eq!(status.message(), "etcdserver: requested lease not found");
}

/// etcd takes any ID but 0 from the client, negative ones too (found by differential
/// fuzzing against etcd 3.4: ours refused them as "lease not found").
#[tokio::test]
async fn client_chosen_negative_ids_are_granted() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("l.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let resp = c
        .lease
        .lease_grant(LeaseGrantRequest { ttl: 0, id: -1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.id, -1);
    assert!(resp.ttl > 0, "raised to the minimum TTL: {resp:?}");
    put_with_lease(&mut c, "k", -1).await;
    let ttl = c
        .lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id: -1, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.keys, vec![b"k".to_vec()]);
    c.lease
        .lease_revoke(LeaseRevokeRequest { id: -1 })
        .await
        .unwrap();
    let left =
        c.kv.range(etcd_api::etcdserverpb::RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(left.kvs.is_empty());
}

#[tokio::test]
async fn expiry_removes_keys_within_ttl_plus_an_election_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("x.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let id = grant(&mut c, 3).await;
    let granted = Instant::now();
    put_with_lease(&mut c, "ephemeral", id).await;

    // Watch the key disappear: poll reads until it is gone, bounded by TTL + election timeout
    // + the expiry check interval.
    let bound = Duration::from_secs(3) + Duration::from_secs(1) + Duration::from_millis(1500);
    loop {
        if c.get("ephemeral").await.unwrap().kvs.is_empty() {
            break;
        }
        assert!(
            granted.elapsed() < bound,
            "lease did not expire in {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        granted.elapsed() >= Duration::from_secs(3),
        "expired before its TTL"
    );
}

#[tokio::test]
async fn keep_alive_extends_and_unknown_lease_gets_ttl_zero() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("k.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let id = grant(&mut c, 3).await;
    put_with_lease(&mut c, "kept", id).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = c
        .lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let start = Instant::now();
    // Keep it alive past twice its TTL.
    while start.elapsed() < Duration::from_secs(7) {
        tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
        let resp = responses.message().await.unwrap().unwrap();
        assert_eq!((resp.id, resp.ttl), (id, 3));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(c.get("kept").await.unwrap().kvs.len(), 1);
    tx.send(LeaseKeepAliveRequest { id: 12345 }).await.unwrap();
    let resp = responses.message().await.unwrap().unwrap();
    assert_eq!((resp.id, resp.ttl), (12345, 0));
}

#[tokio::test]
async fn leases_and_leased_keys_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdProcess::start(&dir.path().join("r.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let id = grant(&mut c, 600).await;
    put_with_lease(&mut c, "durable", id).await;
    etcd.kill();
    etcd.spawn();
    etcd.wait_ready().await;
    let mut c = etcd.client().await;
    let ttl = c
        .lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 600);
    // Remaining TTLs are refreshed at restart, as etcd does.
    assert!(ttl.ttl > 590, "{}", ttl.ttl);
    assert_eq!(ttl.keys, vec![b"durable".to_vec()]);
    assert_eq!(c.get("durable").await.unwrap().kvs[0].lease, id);
    // Revoking after the restart still deletes the key: the attachment was rebuilt.
    c.lease
        .lease_revoke(LeaseRevokeRequest { id })
        .await
        .unwrap();
    assert!(c.get("durable").await.unwrap().kvs.is_empty());
}

/// Renews each of `ids` in turn over one keep-alive stream, all sent at once; returns the
/// answers' (id, TTL), in the order they came.
async fn keep_alive_each(c: &mut Client, ids: &[i64]) -> Vec<(i64, i64)> {
    let (requests, request_rx) = tokio::sync::mpsc::channel(ids.len().max(1));
    for &id in ids {
        requests.send(LeaseKeepAliveRequest { id }).await.unwrap();
    }
    let mut answers = c
        .lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(request_rx))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::with_capacity(ids.len());
    while got.len() < ids.len() {
        let answer = answers.message().await.unwrap().expect("stream ended");
        got.push((answer.id, answer.ttl));
    }
    got
}

/// Renews `id` `times` times over one keep-alive stream; returns the TTLs answered.
async fn keep_alive_times(c: &mut Client, id: i64, times: usize) -> Vec<i64> {
    keep_alive_each(c, &vec![id; times])
        .await
        .into_iter()
        .map(|(answered, ttl)| {
            assert_eq!(answered, id);
            ttl
        })
        .collect()
}

/// A follower forwards lease calls to the leader over a connection it keeps; when the leader
/// moves, they go to the new leader (a connection kept to the old one would reach a member
/// that no longer renews leases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_forwards_lease_calls_across_a_leader_change() {
    use common::cluster::{Cluster, ClusterOptions};
    let cluster = Cluster::start(ClusterOptions::new(3)).await;
    let leader = cluster.wait_leader(&[0, 1, 2]).await;
    let follower = (0..3).find(|s| *s != leader).unwrap();
    let next_leader = (0..3).find(|s| *s != leader && *s != follower).unwrap();
    let mut f = cluster.client(follower, Duration::from_secs(5)).await;

    let id = grant(&mut f, 60).await;
    put_with_lease(&mut f, "forwarded", id).await;
    assert_eq!(keep_alive_times(&mut f, id, 50).await, vec![60; 50]);

    let mut l = cluster.client(leader, Duration::from_secs(5)).await;
    l.maintenance
        .move_leader(etcd_api::etcdserverpb::MoveLeaderRequest {
            target_id: cluster.members[next_leader].id,
        })
        .await
        .unwrap();
    assert_eq!(cluster.wait_leader(&[0, 1, 2]).await, next_leader);

    // Still a follower, it now forwards to the new leader, which renews.
    assert_eq!(keep_alive_times(&mut f, id, 5).await, vec![60; 5]);
    let ttl = f
        .lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert!(ttl.ttl > 50 && ttl.ttl <= 60, "TTL {}", ttl.ttl);
    assert_eq!(ttl.keys, vec![b"forwarded".to_vec()]);
    // An unknown lease through the follower: TTL 0, as etcd answers.
    assert_eq!(keep_alive_times(&mut f, id + 1, 1).await, vec![0]);

    // Renewals of several leases on one stream, many under way at once through the follower,
    // are answered in the order asked.
    let leases = [
        (grant(&mut f, 70).await, 70),
        (grant(&mut f, 80).await, 80),
        (id, 60),
    ];
    let asked: Vec<i64> = (0..90).map(|i| leases[i % 3].0).collect();
    let expected: Vec<(i64, i64)> = (0..90).map(|i| leases[i % 3]).collect();
    assert_eq!(keep_alive_each(&mut f, &asked).await, expected);
}
