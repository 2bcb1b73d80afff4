//! Corruption checks between members, as etcd's: HashKV compared with every peer.
//!
//! - `--experimental-initial-corrupt-check`: a restarting member (not a new one) hashes its
//!   keys before starting Raft and asks each peer for its hash at the same revision. A peer
//!   with the same compacted revision and another hash means this member's data differs: it
//!   refuses to start with etcd's "<id> found data inconsistency with peers". Peers that are
//!   down, behind or compacted further are logged and passed over, as etcd does.
//! - `--experimental-corrupt-check-time`: the leader hashes, asks the peers at its revision,
//!   waits for a linearizable barrier and hashes again; a follower ahead of the leader, a
//!   follower compacted further, or a hash differing at the same compaction raises the CORRUPT
//!   alarm through Raft, after which every member refuses writes (`etcdserver: corrupt
//!   cluster`) until an operator disarms it.
//!
//! Peers answer from their backend alone (`RaftPeer.HashKv`, `peer.rs`).

use std::sync::Arc;
use std::time::Duration;

use etcd_api::etcdserverpb::{AlarmRequest, AlarmType, HashKvRequest, HashKvResponse};
use etcd_api::internalpb::MemberRecord;
use etcd_api::internalpb::internal_request::Request;
use etcd_api::internalpb::raft_peer_client::RaftPeerClient;
use etcd_client::ConnectOptions;
use etcd_mvcc::{KvHash, Store};

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::serve;
use crate::server::EtcdServer;

/// One peer's answer, or why there is none.
#[derive(Debug, Clone)]
pub struct PeerHash {
    pub id: u64,
    pub urls: Vec<String>,
    pub outcome: Result<HashKvResponse, String>,
}

/// Asks every member but `self_id` for its HashKV at `revision`, all at once, each URL of a
/// member in turn until one answers within the request timeout.
pub async fn peer_hashes(
    cfg: &ServerConfig,
    self_id: u64,
    members: &[MemberRecord],
    revision: i64,
) -> Vec<PeerHash> {
    let tls = match serve::peer_client_tls(cfg) {
        Ok(tls) => tls,
        Err(e) => {
            return members
                .iter()
                .filter(|m| m.id != self_id)
                .map(|m| PeerHash {
                    id: m.id,
                    urls: m.peer_urls.clone(),
                    outcome: Err(e.to_string()),
                })
                .collect();
        }
    };
    let options = ConnectOptions {
        tls,
        dial_timeout: Duration::from_secs(2),
        request_timeout: Some(cfg.request_timeout()),
        ..ConnectOptions::default()
    };
    let asks = members
        .iter()
        .filter(|m| m.id != self_id && !m.peer_urls.is_empty())
        .map(|m| {
            let options = options.clone();
            async move {
                let mut last = String::from("no peer URL");
                for url in &m.peer_urls {
                    match ask(url, &options, revision).await {
                        Ok(resp) => {
                            return PeerHash {
                                id: m.id,
                                urls: m.peer_urls.clone(),
                                outcome: Ok(resp),
                            };
                        }
                        Err(e) => {
                            tracing::warn!(
                                peer = %url,
                                revision,
                                error = %e,
                                hint = "the check is retried next period; check that the peer \
                                        is up and its client URL reachable",
                                "failed hash kv request"
                            );
                            last = e;
                        }
                    }
                }
                PeerHash {
                    id: m.id,
                    urls: m.peer_urls.clone(),
                    outcome: Err(last),
                }
            }
        });
    futures::future::join_all(asks).await
}

async fn ask(url: &str, options: &ConnectOptions, revision: i64) -> Result<HashKvResponse, String> {
    let channel = etcd_client::connect_channel(&[url], options)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = RaftPeerClient::new(channel);
    let call = client.hash_kv(HashKvRequest { revision });
    match tokio::time::timeout(
        options.request_timeout.unwrap_or(Duration::from_secs(5)),
        call,
    )
    .await
    {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The initial check's verdict: how many peers disagree with `local` (hash differs at the
/// same compacted revision). Other differences are logged, as etcd logs them.
pub fn initial_mismatches(self_id: u64, local: &KvHash, peers: &[PeerHash]) -> usize {
    let mut mismatches = 0;
    for p in peers {
        match &p.outcome {
            Ok(resp) if resp.hash != local.hash => {
                if resp.compact_revision == local.compact_revision {
                    tracing::warn!(
                        local_member = format!("{self_id:x}"),
                        local_revision = local.hash_revision,
                        local_hash = local.hash,
                        remote_peer = format!("{:x}", p.id),
                        remote_peer_endpoints = ?p.urls,
                        remote_revision = resp.header.as_ref().map_or(0, |h| h.revision),
                        remote_hash = resp.hash,
                        compact_revision = local.compact_revision,
                        "found different hash values from remote peer"
                    );
                    mismatches += 1;
                } else {
                    tracing::warn!(
                        remote_peer = format!("{:x}", p.id),
                        local_compact_revision = local.compact_revision,
                        remote_compact_revision = resp.compact_revision,
                        "found different compact revision values from remote peer; cannot compare"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                remote_peer = format!("{:x}", p.id),
                local_revision = local.hash_revision,
                error = %e,
                "cannot fetch hash from remote peer; skipping it"
            ),
        }
    }
    mismatches
}

/// `--experimental-initial-corrupt-check` for a restarting member.
pub async fn initial_check(
    cfg: &ServerConfig,
    self_id: u64,
    store: &Arc<Store>,
    members: &[MemberRecord],
) -> Result<(), ServerError> {
    tracing::info!(
        local_member = format!("{self_id:x}"),
        timeout = ?cfg.request_timeout(),
        "starting initial corruption check"
    );
    let local = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.hash_kv(0))
            .await
            .map_err(|e| ServerError::Internal(format!("hash task failed: {e}")))??
    };
    let peers = peer_hashes(cfg, self_id, members, local.hash_revision).await;
    if initial_mismatches(self_id, &local, &peers) > 0 {
        return Err(ServerError::DataInconsistency(self_id));
    }
    tracing::info!(
        local_member = format!("{self_id:x}"),
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// The periodic check's verdict: the members whose answers prove a divergence, given the
/// leader's hash before (`first`) and after (`second`) a barrier. Empty when all agree.
pub fn periodic_mismatches(
    self_id: u64,
    first: &KvHash,
    second: &KvHash,
    peers: &[PeerHash],
) -> Vec<u64> {
    let mut out = Vec::new();
    if second.hash != first.hash
        && second.hash_revision == first.hash_revision
        && second.compact_revision == first.compact_revision
    {
        tracing::warn!(
            revision = first.hash_revision,
            "found hash mismatch: this member's own hash changed without a new revision"
        );
        out.push(self_id);
    }
    for p in peers {
        let Ok(resp) = &p.outcome else { continue };
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let peer = format!("{:x}", p.id);
        if revision > second.hash_revision {
            tracing::warn!(%peer, revision, leader_revision = second.hash_revision,
                "revision from follower must be less than or equal to leader's");
            out.push(p.id);
        }
        if resp.compact_revision > second.compact_revision {
            tracing::warn!(%peer, compact_revision = resp.compact_revision,
                leader_compact_revision = second.compact_revision,
                "compact revision from follower must be less than or equal to leader's");
            out.push(p.id);
        }
        if resp.compact_revision == first.compact_revision && resp.hash != first.hash {
            tracing::warn!(%peer, hash = resp.hash, leader_hash = first.hash,
                revision = first.hash_revision,
                "same compact revision then hashes must match");
            out.push(p.id);
        }
    }
    out.dedup();
    out
}

/// `--experimental-corrupt-check-time`: runs for the life of the member; checks only while
/// it leads.
pub async fn monitor(server: Arc<EtcdServer>, every: Duration) {
    tracing::info!(interval = ?every, "enabled corruption checking");
    loop {
        tokio::time::sleep(every).await;
        if server.leader() != server.member_id {
            continue;
        }
        if let Err(e) = check_once(&server).await {
            tracing::warn!(
                error = %e,
                hint = "the check is retried next period (--experimental-corrupt-check-time)",
                "failed to check hash KV"
            );
        }
    }
}

async fn hash_now(store: &Arc<Store>) -> Result<KvHash, ServerError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.hash_kv(0))
        .await
        .map_err(|e| ServerError::Internal(format!("hash task failed: {e}")))?
        .map_err(ServerError::from)
}

/// One pass of the leader's check; raises the CORRUPT alarm on a divergence.
pub async fn check_once(server: &Arc<EtcdServer>) -> Result<Vec<u64>, ServerError> {
    let first = hash_now(&server.store).await?;
    let members: Vec<MemberRecord> = server
        .cluster_state()
        .membership
        .members
        .into_values()
        .collect();
    let peers = peer_hashes(&server.cfg, server.member_id, &members, first.hash_revision).await;
    server.linearizable_barrier().await?;
    let second = hash_now(&server.store).await?;
    let diverged = periodic_mismatches(server.member_id, &first, &second, &peers);
    if !diverged.is_empty() && !server.has_alarm(AlarmType::Corrupt) {
        tracing::error!(
            members = ?diverged.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>(),
            "data inconsistency between members: raising the CORRUPT alarm; writes are refused \
             until `etcdctl alarm disarm` after the damaged member is replaced"
        );
        // etcd raises it for member 0: the cluster, not one member, is corrupt.
        server
            .propose(Request::Alarm(AlarmRequest {
                action: etcd_api::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                member_id: 0,
                alarm: AlarmType::Corrupt as i32,
            }))
            .await?;
    }
    Ok(diverged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::etcdserverpb::ResponseHeader;

    fn hash(hash: u32, rev: i64, compact: i64) -> KvHash {
        KvHash {
            hash,
            hash_revision: rev,
            compact_revision: compact,
            current_revision: rev,
        }
    }

    fn peer(id: u64, hash: u32, rev: i64, compact: i64) -> PeerHash {
        PeerHash {
            id,
            urls: vec![],
            outcome: Ok(HashKvResponse {
                header: Some(ResponseHeader {
                    revision: rev,
                    ..Default::default()
                }),
                hash,
                compact_revision: compact,
                hash_revision: rev,
            }),
        }
    }

    #[test]
    fn initial_check_counts_only_comparable_disagreements() {
        let local = hash(7, 10, 3);
        let down = PeerHash {
            id: 4,
            urls: vec![],
            outcome: Err("connection refused".into()),
        };
        let peers = [peer(2, 7, 10, 3), peer(3, 9, 10, 5), down];
        assert_eq!(
            initial_mismatches(1, &local, &peers),
            0,
            "other compaction or down"
        );
        assert_eq!(initial_mismatches(1, &local, &[peer(2, 8, 10, 3)]), 1);
    }

    #[test]
    fn periodic_check_names_the_diverged() {
        let first = hash(7, 10, 3);
        assert!(periodic_mismatches(1, &first, &first, &[peer(2, 7, 10, 3)]).is_empty());
        assert_eq!(
            periodic_mismatches(1, &first, &first, &[peer(2, 8, 10, 3)]),
            vec![2]
        );
        assert_eq!(
            periodic_mismatches(1, &first, &first, &[peer(3, 7, 11, 3)]),
            vec![3]
        );
        assert_eq!(
            periodic_mismatches(1, &first, &first, &[peer(3, 5, 10, 4)]),
            vec![3]
        );
        // Our own hash changed at the same revision: we are the damaged one.
        assert_eq!(
            periodic_mismatches(1, &first, &hash(6, 10, 3), &[]),
            vec![1]
        );
        // A write in between is not a divergence.
        assert!(periodic_mismatches(1, &first, &hash(6, 11, 3), &[]).is_empty());
    }
}
