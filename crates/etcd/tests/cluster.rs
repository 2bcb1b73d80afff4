//! Fault tests on 3- and 5-member clusters on loopback, under a client load: SIGKILL and
//! restart, SIGSTOP and SIGCONT, a member cut off from its peers by a proxy, membership changes,
//! a follower catching up after a snapshot. Every test ends with the same checks
//! (`Cluster::check`): no acknowledged write lost, every member at the same revision with the
//! same HashKV, at most one leader per term.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, ClusterOptions, connect};
use etcd_client::ClientError;

const WRITERS: usize = 4;
const PREFIX: &str = "load";

/// Acknowledged writes to wait for between two faults: enough to span several Raft rounds.
const PROGRESS: u64 = 40;
/// Acknowledged writes to wait for while a member is down: it has that much to catch up.
const WHILE_DOWN: u64 = 150;

/// How long a SIGSTOPped member stays stopped: several election timeouts.
const STOPPED_FOR: Duration = Duration::from_millis(1500);

fn others(cluster: &Cluster, slot: usize) -> Vec<usize> {
    cluster.live().into_iter().filter(|s| *s != slot).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leader_then_restart() {
    let mut c = Cluster::start(ClusterOptions::new(3)).await;
    let load = c.start_load(PREFIX, WRITERS);
    load.wait_for_acks(PROGRESS, "before the fault").await;
    let leader = c.wait_leader(&c.live()).await;
    c.step(&format!("SIGKILL leader {leader}"));
    c.kill(leader);
    let survivors = others(&c, leader);
    let new_leader = c.wait_leader(&survivors).await;
    assert_ne!(new_leader, leader);
    load.wait_for_acks(WHILE_DOWN, "with the old leader dead")
        .await;
    c.step("restart");
    c.restart(leader).await;
    load.wait_for_acks(PROGRESS, "after the restart").await;
    c.step("stop the load");
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    c.step("checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_follower_then_restart() {
    let mut c = Cluster::start(ClusterOptions::new(5)).await;
    let load = c.start_load(PREFIX, WRITERS);
    load.wait_for_acks(PROGRESS, "before the fault").await;
    let leader = c.wait_leader(&c.live()).await;
    let follower = (leader + 1) % 5;
    c.step(&format!("SIGKILL follower {follower}"));
    c.kill(follower);
    load.wait_for_acks(WHILE_DOWN, "with a follower dead").await;
    c.step("restart");
    c.restart(follower).await;
    load.wait_for_acks(PROGRESS, "after the restart").await;
    c.step("stop the load");
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    c.step("checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_every_member_then_restart_all() {
    let mut c = Cluster::start(ClusterOptions::new(3)).await;
    let load = c.start_load(PREFIX, WRITERS);
    for round in 0..2 {
        load.wait_for_acks(PROGRESS, &format!("round {round}: before the fault"))
            .await;
        c.step(&format!("round {round}: SIGKILL every member"));
        for slot in c.live() {
            c.kill(slot);
        }
        c.restart_all(&c.live()).await;
    }
    load.wait_for_acks(PROGRESS, "after the last restart").await;
    c.step("stop the load");
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    c.step("checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_leader_then_sigcont() {
    let c = Cluster::start(ClusterOptions::new(3)).await;
    let load = c.start_load(PREFIX, WRITERS);
    load.wait_for_acks(PROGRESS, "before the fault").await;
    let leader = c.wait_leader(&c.live()).await;
    c.step(&format!("SIGSTOP leader {leader}"));
    c.sigstop(leader);
    let new_leader = c.wait_leader(&others(&c, leader)).await;
    assert_ne!(new_leader, leader);
    load.wait_for_acks(WHILE_DOWN, "with the old leader stopped")
        .await;
    tokio::time::sleep(STOPPED_FOR).await;
    c.step("SIGCONT");
    c.sigcont(leader);
    // The old leader wakes up in an old term; it must step down and catch up.
    load.wait_for_acks(PROGRESS, "after SIGCONT").await;
    c.wait_leader(&c.live()).await;
    c.step("stop the load");
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    c.step("checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_follower_then_sigcont() {
    let c = Cluster::start(ClusterOptions::new(5)).await;
    let load = c.start_load(PREFIX, WRITERS);
    load.wait_for_acks(PROGRESS, "before the fault").await;
    let leader = c.wait_leader(&c.live()).await;
    let follower = (leader + 2) % 5;
    c.step(&format!("SIGSTOP follower {follower}"));
    c.sigstop(follower);
    load.wait_for_acks(WHILE_DOWN, "with a follower stopped")
        .await;
    tokio::time::sleep(STOPPED_FOR).await;
    c.step("SIGCONT");
    c.sigcont(follower);
    load.wait_for_acks(PROGRESS, "after SIGCONT").await;
    c.step("stop the load");
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    c.step("checked");
}

/// What a member that cannot reach a quorum must answer: one of etcd's errors, or nothing
/// before the client's deadline.
fn is_unavailable(e: &ClientError) -> bool {
    let ClientError::Status(status) = e else {
        return false;
    };
    let message = status.message();
    message.starts_with("etcdserver: request timed out")
        || message == "etcdserver: no leader"
        || status.code() == tonic::Code::DeadlineExceeded
        || message.contains("Timeout expired")
}

/// Cuts `isolated` off from its peers: on its side, writes and linearizable reads fail; the
/// majority elects a leader (if needed) and goes on; after healing, the member catches up.
async fn partition(size: usize, cut_leader: bool) {
    let c = Cluster::start(ClusterOptions::new(size).proxied()).await;
    let load = c.start_load(PREFIX, WRITERS);
    load.wait_for_acks(PROGRESS, "before the partition").await;
    let leader = c.wait_leader(&c.live()).await;
    let isolated = if cut_leader {
        leader
    } else {
        (leader + 1) % size
    };
    c.step(&format!("isolate member {isolated} (leader {leader})"));
    c.isolate(isolated);

    // The minority side: a write and a linearizable read, sent at once (to a leader that may
    // not know yet that it is cut off), both must fail. The client waits longer than the
    // server's request timeout (5 s + 2 election timeouts).
    let mut writer = connect(c.url(isolated), Duration::from_secs(10))
        .await
        .expect("connect to the isolated member");
    let mut reader = writer.clone();
    let put = tokio::spawn(async move { writer.put("partition-probe", "minority").await });
    let get = tokio::spawn(async move { reader.get("partition-probe").await });

    let majority = others(&c, isolated);
    let majority_leader = c.wait_leader(&majority).await;
    assert_ne!(majority_leader, isolated);
    c.step(&format!("majority leader {majority_leader}"));
    let (put, get) = (put.await.unwrap(), get.await.unwrap());
    let put = match put {
        Ok(resp) => panic!("a write on the isolated member succeeded: {resp:?}"),
        Err(e) if is_unavailable(&e) => e.to_string(),
        Err(e) => panic!("unexpected write error: {e}"),
    };
    let get = match get {
        Ok(resp) => panic!("a linearizable read on the isolated member succeeded: {resp:?}"),
        Err(e) if is_unavailable(&e) => e.to_string(),
        Err(e) => panic!("unexpected read error: {e}"),
    };
    c.step(&format!("minority refused: write {put:?}, read {get:?}"));
    // The majority goes on.
    load.wait_for_acks(PROGRESS, "on the majority side").await;

    c.step("heal");
    c.heal(isolated);
    load.wait_for_acks(PROGRESS, "after healing").await;
    c.step("stop the load");
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    c.step("checked");
    let (identified, unidentified) = c.proxied_connections();
    eprintln!("peer connections: {identified} attributed to a member, {unidentified} not");
    assert!(
        identified > 0,
        "the proxies could not tell who opened any peer connection (is /proc readable?)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_minority_fails_majority_goes_on() {
    partition(5, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_follower_fails_then_catches_up() {
    partition(3, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_add_then_remove_under_load() {
    let mut c = Cluster::start(ClusterOptions::new(3)).await;
    let load = c.start_load(PREFIX, WRITERS);
    load.wait_for_acks(PROGRESS, "before MemberAdd").await;
    c.step("MemberAdd");
    let added = c.add_member().await;
    load.wait_for_acks(PROGRESS, "after MemberAdd").await;
    // Remove the leader: the hardest removal, since the cluster must elect another.
    let leader = c.wait_leader(&c.live()).await;
    c.step(&format!("MemberRemove leader {leader}"));
    c.remove_member(leader).await;
    let new_leader = c.wait_leader(&c.live()).await;
    assert_ne!(new_leader, leader);
    assert!(c.live().contains(&added));
    load.wait_for_acks(PROGRESS, "after MemberRemove").await;
    c.step("stop the load");
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    c.step("checked");
}

/// Entries a member keeps in its log after a snapshot (etcd's catch-up entries), so that a
/// slightly slow follower catches up from the log.
const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_catches_up_from_a_snapshot_after_log_compaction() {
    let mut c = Cluster::start(ClusterOptions::new(3).arg("--snapshot-count", "100")).await;
    let load = c.start_load(PREFIX, 4 * WRITERS);
    load.wait_for_acks(PROGRESS, "before the fault").await;
    let leader = c.wait_leader(&c.live()).await;
    let follower = (leader + 1) % 3;
    c.step(&format!("SIGKILL follower {follower}"));
    c.kill(follower);
    // Snapshots every 100 entries and a log cut to the last 5000 entries after each: once the
    // others are this far ahead, the leader's log no longer reaches back to where the follower
    // stopped, and the follower must be sent a snapshot.
    load.wait_for_acks(SNAPSHOT_CATCH_UP_ENTRIES + 300, "with a follower dead")
        .await;
    c.step("restart");
    c.restart(follower).await;
    load.wait_for_acks(PROGRESS, "after the restart").await;
    c.step("stop the load");
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    c.step("checked");
    assert!(
        c.members[follower]
            .log()
            .contains("restored the backend from the leader's snapshot"),
        "the follower caught up without a snapshot; the test no longer tests what it says"
    );
}

/// Users and roles made while a follower is down reach it in the leader's snapshot, and its
/// auth store is then the same as the others' (same users, roles, permissions, revision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_state_reaches_a_follower_in_a_snapshot() {
    use etcd_api::authpb::{Permission, permission::Type as PermType};
    use etcd_api::etcdserverpb::{
        AuthRoleAddRequest, AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthStatusRequest,
        AuthUserAddRequest, AuthUserGrantRoleRequest, AuthUserListRequest,
    };
    let mut c = Cluster::start(ClusterOptions::new(3).arg("--snapshot-count", "100")).await;
    let leader = c.wait_leader(&c.live()).await;
    let follower = (leader + 1) % 3;
    c.kill(follower);
    let mut admin = c.client(leader, Duration::from_secs(10)).await;
    admin
        .auth
        .user_add(AuthUserAddRequest {
            name: "alice".into(),
            password: "pw".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .auth
        .role_add(AuthRoleAddRequest { name: "r".into() })
        .await
        .unwrap();
    admin
        .auth
        .role_grant_permission(AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: Some(Permission {
                perm_type: PermType::Read as i32,
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
            }),
        })
        .await
        .unwrap();
    admin
        .auth
        .user_grant_role(AuthUserGrantRoleRequest {
            user: "alice".into(),
            role: "r".into(),
        })
        .await
        .unwrap();
    let load = c.start_load(PREFIX, 4 * WRITERS);
    load.wait_for_acks(SNAPSHOT_CATCH_UP_ENTRIES + 300, "with a follower dead")
        .await;
    c.restart(follower).await;
    let acked = load.stop().await;
    c.check(PREFIX, &acked).await;
    assert!(
        c.members[follower]
            .log()
            .contains("restored the backend from the leader's snapshot"),
        "the follower caught up without a snapshot; the test no longer tests what it says"
    );
    let mut revisions = Vec::new();
    for slot in 0..3 {
        let mut m = c.client(slot, Duration::from_secs(10)).await;
        let users = m
            .auth
            .user_list(AuthUserListRequest {})
            .await
            .unwrap()
            .into_inner()
            .users;
        assert_eq!(users, ["alice"], "member {slot}");
        let perms = m
            .auth
            .role_get(AuthRoleGetRequest { role: "r".into() })
            .await
            .unwrap()
            .into_inner()
            .perm;
        assert_eq!(perms.len(), 1, "member {slot}");
        revisions.push(
            m.auth
                .auth_status(AuthStatusRequest {})
                .await
                .unwrap()
                .into_inner()
                .auth_revision,
        );
    }
    assert!(
        revisions.iter().all(|r| *r == revisions[0]),
        "{revisions:?}"
    );
}
