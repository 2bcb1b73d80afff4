//! The Lock and Election services: mutual exclusion in create-revision order, release on
//! unlock and on lease expiry, and leader observation.

mod common;

use std::time::Duration;

use common::EtcdProcess;
use etcd_api::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
use etcd_api::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
use etcd_api::v3lockpb::{LockRequest, UnlockRequest};
use etcd_client::Client;

async fn lease(c: &mut Client) -> i64 {
    c.lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id
}

#[tokio::test]
async fn lock_is_exclusive_and_passes_on_unlock_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("lock.etcd"), &[]).await;
    let mut a = etcd.client().await;
    let mut b = etcd.client().await;
    let (la, lb) = (lease(&mut a).await, lease(&mut a).await);

    let held = a
        .lock
        .lock(LockRequest {
            name: b"m".to_vec(),
            lease: la,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(held.key.starts_with(b"m/"));

    // B queues behind A.
    let mut b_lock = b.lock.clone();
    let waiter = tokio::spawn(async move {
        b_lock
            .lock(LockRequest {
                name: b"m".to_vec(),
                lease: lb,
            })
            .await
            .map(|r| r.into_inner().key)
    });
    // B must still be waiting while A holds the lock: a bounded check of a negative.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), async {
            while !waiter.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_err(),
        "B got the lock while A held it"
    );
    a.lock
        .unlock(UnlockRequest { key: held.key })
        .await
        .unwrap();
    let b_key = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("B never got the lock after A unlocked")
        .unwrap()
        .unwrap();

    // A queues again; revoking B's lease (as its expiry would) releases the lock to A.
    let mut a_lock = a.lock.clone();
    let again = tokio::spawn(async move {
        a_lock
            .lock(LockRequest {
                name: b"m".to_vec(),
                lease: la,
            })
            .await
            .map(|r| r.into_inner().key)
    });
    b.lease
        .lease_revoke(LeaseRevokeRequest { id: lb })
        .await
        .unwrap();
    let a_key = tokio::time::timeout(Duration::from_secs(10), again)
        .await
        .expect("A never got the lock after B's lease was revoked")
        .unwrap()
        .unwrap();
    assert_ne!(a_key, b_key);
}

#[tokio::test]
async fn election_campaign_proclaim_observe_resign() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("elect.etcd"), &[]).await;
    let mut a = etcd.client().await;
    let la = lease(&mut a).await;
    let lb = lease(&mut a).await;

    let none = a
        .election
        .leader(LeaderRequest {
            name: b"e".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(none.message(), "election: no leader");

    let leader = a
        .election
        .campaign(CampaignRequest {
            name: b"e".to_vec(),
            lease: la,
            value: b"a".to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .leader
        .unwrap();
    let mut observe = a
        .election
        .observe(LeaderRequest {
            name: b"e".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = observe.message().await.unwrap().unwrap().kv.unwrap();
    assert_eq!(first.value, b"a");

    a.election
        .proclaim(ProclaimRequest {
            leader: Some(leader.clone()),
            value: b"a2".to_vec(),
        })
        .await
        .unwrap();
    let second = observe.message().await.unwrap().unwrap().kv.unwrap();
    assert_eq!(second.value, b"a2");

    // A second candidate waits, then leads once the first resigns.
    let mut b_election = a.election.clone();
    let candidate = tokio::spawn(async move {
        b_election
            .campaign(CampaignRequest {
                name: b"e".to_vec(),
                lease: lb,
                value: b"b".to_vec(),
            })
            .await
            .map(|r| r.into_inner())
    });
    a.election
        .resign(ResignRequest {
            leader: Some(leader),
        })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), candidate)
        .await
        .expect("the second candidate never became leader")
        .unwrap()
        .unwrap();
    let third = observe.message().await.unwrap().unwrap().kv.unwrap();
    assert_eq!(third.value, b"b");
    let now = a
        .election
        .leader(LeaderRequest {
            name: b"e".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.kv.unwrap().value, b"b");
}

#[tokio::test]
async fn a_canceled_waiter_leaves_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("cancel.etcd"), &[]).await;
    let mut a = etcd.client().await;
    let (la, lb, lc) = (
        lease(&mut a).await,
        lease(&mut a).await,
        lease(&mut a).await,
    );
    let held = a
        .lock
        .lock(LockRequest {
            name: b"q".to_vec(),
            lease: la,
        })
        .await
        .unwrap()
        .into_inner();

    // B queues, then gives up: its call is canceled while its lease stays alive.
    let mut b_lock = a.lock.clone();
    let b_waiting = tokio::time::timeout(
        Duration::from_millis(300),
        b_lock.lock(LockRequest {
            name: b"q".to_vec(),
            lease: lb,
        }),
    )
    .await;
    assert!(b_waiting.is_err(), "B should have been waiting");

    // C queues behind; when A unlocks, C must not be stuck behind B's abandoned key.
    let mut c_lock = a.lock.clone();
    let c = tokio::spawn(async move {
        c_lock
            .lock(LockRequest {
                name: b"q".to_vec(),
                lease: lc,
            })
            .await
            .map(|r| r.into_inner().key)
    });
    a.lock
        .unlock(UnlockRequest { key: held.key })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), c)
        .await
        .expect("C stayed stuck behind B's abandoned queue key")
        .unwrap()
        .unwrap();
}
