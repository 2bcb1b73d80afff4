//! `--force-new-cluster`: the lone survivor of a 3-member cluster restarts as a one-member
//! cluster with every acknowledged write, serves writes alone, and its old peers are removed
//! members from then on (etcd's disaster recovery when a quorum is lost for good).

mod common;

use std::time::Duration;

use common::cluster::{Cluster, ClusterOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_survivor_restarts_as_a_one_member_cluster_with_its_data() {
    let mut cluster = Cluster::start(ClusterOptions::new(3)).await;
    let mut c = cluster.client(0, Duration::from_secs(10)).await;
    for i in 0..30 {
        c.put(format!("k/{i:02}"), format!("v{i}")).await.unwrap();
    }
    let survivor = 1;
    // The survivor has applied every write before the disaster.
    let mut s = cluster.client(survivor, Duration::from_secs(10)).await;
    assert_eq!(s.get("k/29").await.unwrap().kvs.len(), 1);
    let survivor_id = cluster.members[survivor].id;
    for slot in 0..3 {
        cluster.kill(slot);
    }

    cluster.spawn_with(survivor, &["--force-new-cluster"]);
    cluster.wait_ready(survivor).await;
    let mut s = cluster.client(survivor, Duration::from_secs(10)).await;
    let all = s.get_prefix("k/").await.unwrap();
    assert_eq!(all.kvs.len(), 30);
    s.put("after", "alone").await.unwrap();
    let members = s
        .cluster
        .member_list(etcd_api::etcdserverpb::MemberListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].id, survivor_id);

    // An ordinary restart stays a one-member cluster.
    cluster.kill(survivor);
    cluster.restart(survivor).await;
    let mut s = cluster.client(survivor, Duration::from_secs(10)).await;
    assert_eq!(s.get("after").await.unwrap().kvs[0].value, b"alone");

    // An old peer coming back is told it was removed, as etcd tells it.
    cluster.spawn(0);
    let exit = cluster.wait_exit(0).await;
    assert!(exit.success(), "a removed member exits 0, as etcd");
    assert!(
        cluster.members[0].log().contains("permanently removed"),
        "{}",
        cluster.members[0].log_tail(20)
    );
}
