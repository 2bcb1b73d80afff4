//! The membership fault: a member is removed from the cluster (`MemberRemove`), its process
//! killed and its data dir deleted, then a new member is added at the same peer URL
//! (`MemberAdd`) and started on an empty data dir with `--initial-cluster-state existing`.
//! The new member learns everything from the others: the log if it is short enough, a
//! snapshot otherwise (`--snapshot-count 100` makes that the usual way). The replaced member's
//! clients and watches move to other members, as after any failure.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{MemberAddRequest, MemberListRequest, MemberRemoveRequest};

use crate::cluster::{Cluster, lock};
use crate::netproxy::Network;
use crate::workload::client;

/// How long each membership call is retried through the other members.
const CALL_WAIT: Duration = Duration::from_secs(10);

/// Replaces `slot` with a new member, started with `failpoints` (gofail's `name=term;...`)
/// when given; says what happened.
pub async fn replace(
    cluster: &Mutex<Cluster>,
    network: Option<&Network>,
    slot: usize,
    failpoints: Option<&str>,
) -> String {
    let (others, peer_url, name) = {
        let c = lock(cluster);
        let others: Vec<String> = (0..c.members.len())
            .filter(|i| *i != slot)
            .map(|i| c.members[i].client_url.clone())
            .collect();
        (
            others,
            c.members[slot].peer_url.clone(),
            c.members[slot].name.clone(),
        )
    };
    if others.is_empty() {
        return format!("{name} is the only member: not replaced");
    }
    let removed = retry(&others, |url| {
        let peer_url = peer_url.clone();
        async move { remove(&url, &peer_url).await }
    })
    .await;
    if let Err(e) = removed {
        return format!("{name} not removed: {e}");
    }
    if let Err(e) = lock(cluster).wipe(slot) {
        return format!("{name} removed, but its data dir stays: {e}");
    }
    let added = retry(&others, |url| {
        let peer_url = peer_url.clone();
        async move { add(&url, &peer_url).await }
    })
    .await;
    let id = match added {
        Ok(id) => id,
        Err(e) => return format!("{name} removed, but not added again: {e}"),
    };
    if let Some(network) = network {
        network.learn_one(id, slot);
    }
    let started = match failpoints {
        Some(f) => lock(cluster).restart_with_failpoints(slot, f),
        None => lock(cluster).restart(slot),
    };
    format!("{name} removed and replaced by member {id:x} ({started:?})")
}

/// Calls `op` through each of `urls` in turn until one succeeds or [`CALL_WAIT`] passes.
async fn retry<F, Fut, T>(urls: &[String], op: F) -> Result<T, String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + CALL_WAIT;
    let mut last = String::new();
    for attempt in 0.. {
        if Instant::now() > deadline {
            break;
        }
        match op(urls[attempt % urls.len()].clone()).await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// Removes the member at `peer_url`; done also when it is already gone (an earlier attempt
/// that timed out may have been applied).
async fn remove(url: &str, peer_url: &str) -> Result<(), String> {
    let mut c = client(url)?;
    let Some(id) = member_at(&mut c, peer_url).await? else {
        return Ok(());
    };
    match c.cluster.member_remove(MemberRemoveRequest { id }).await {
        Ok(_) => Ok(()),
        Err(e) if e.message().contains("member not found") => Ok(()),
        Err(e) => Err(e.message().to_string()),
    }
}

/// Adds a member at `peer_url`, or finds the one an earlier attempt added; its ID.
async fn add(url: &str, peer_url: &str) -> Result<u64, String> {
    let mut c = client(url)?;
    let added = c
        .cluster
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![peer_url.to_string()],
            is_learner: false,
        })
        .await;
    match added {
        Ok(resp) => resp
            .into_inner()
            .member
            .map(|m| m.id)
            .ok_or_else(|| "MemberAdd answered without the member".to_string()),
        Err(e) => member_at(&mut c, peer_url)
            .await?
            .ok_or_else(|| e.message().to_string()),
    }
}

/// The ID of the member listed at `peer_url`, if any.
async fn member_at(c: &mut etcd_client::Client, peer_url: &str) -> Result<Option<u64>, String> {
    let list = c
        .cluster
        .member_list(MemberListRequest::default())
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    Ok(list
        .members
        .iter()
        .find(|m| m.peer_ur_ls.iter().any(|u| u == peer_url))
        .map(|m| m.id))
}
