//! What a peer's refusal of our Raft link means for this member. Two refusals are final:
//!
//! - **Removed**: the peer's cluster removed this member (it was down when that happened, so
//!   its own log never said so). It stops, as etcd's "the member has been permanently removed
//!   from the cluster", exiting 0.
//! - **Another cluster**, in etcd's best-known bootstrap mistake: a member added with `etcdctl
//!   member add` but started with `--initial-cluster-state new` makes a cluster of its own
//!   from `--initial-cluster` (another cluster ID, another member ID for itself), so the
//!   running members refuse its messages and it refuses theirs, forever. etcd 3.4 only logs
//!   "cluster ID mismatch" in a loop; we stop the member with what happened and how to fix it.
//!   The sign is unambiguous: the refusing peer's cluster lists a member at our own peer URLs
//!   under a different ID, and we never had a leader. A member whose *peer* is the
//!   misconfigured one sees its own ID in that peer's list, so it is not stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_api::internalpb::MembersRequest;
use etcd_api::internalpb::raft_peer_client::RaftPeerClient;
use etcd_client::ConnectOptions;
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::membership::url_string;
use crate::raft::RaftStatus;

/// What a refusal for belonging to another cluster starts with.
pub const CLUSTER_MISMATCH: &str = "cluster ID mismatch";
/// etcd's words for a removed member's refusal.
pub const REMOVED: &str = "the member has been permanently removed from the cluster";

/// Judges the refusals this member's dialers receive, and stops the member on a final one.
pub struct PeerRefusals {
    member_id: u64,
    cluster_id: u64,
    data_dir: String,
    own_peer_urls: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    status: Arc<RaftStatus>,
    fatal: mpsc::Sender<ServerError>,
    checked: AtomicBool,
}

/// What a peer of another cluster says about the member at our peer URLs.
#[derive(Debug, PartialEq)]
pub struct ForeignCluster {
    pub cluster_id: u64,
    pub members: Vec<etcd_api::internalpb::MemberRecord>,
}

impl PeerRefusals {
    pub fn new(
        cfg: &ServerConfig,
        member_id: u64,
        cluster_id: u64,
        tls: Option<Arc<rustls::ClientConfig>>,
        status: Arc<RaftStatus>,
        fatal: mpsc::Sender<ServerError>,
    ) -> PeerRefusals {
        PeerRefusals {
            member_id,
            cluster_id,
            data_dir: cfg.data_dir.display().to_string(),
            own_peer_urls: cfg
                .initial_advertise_peer_urls
                .iter()
                .map(url_string)
                .collect(),
            tls,
            status,
            fatal,
            checked: AtomicBool::new(false),
        }
    }

    /// Called by a dialer whose peer at `peer_url` refused our link for `reason`.
    pub async fn refused(&self, peer_url: &str, reason: &str) {
        if reason.contains(REMOVED) {
            let _ = self.fatal.try_send(ServerError::Removed);
        } else if reason.contains(CLUSTER_MISMATCH) {
            self.other_cluster(peer_url).await;
        }
    }

    /// The peer at `peer_url` belongs to another cluster: asks it for its members (once per
    /// member lifetime, unless the peer could not be asked: the answer does not change).
    async fn other_cluster(&self, peer_url: &str) {
        if self.status.leader.load(Ordering::Acquire) != 0
            || self.checked.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Some(foreign) = self.fetch_members(peer_url).await else {
            // Unreachable or not ours to judge; let a later refusal try again.
            self.checked.store(false, Ordering::Release);
            return;
        };
        if self.status.leader.load(Ordering::Acquire) != 0 {
            return;
        }
        if let Some(error) = self.diagnose(peer_url, &foreign) {
            // The binary logs it as it stops.
            let _ = self.fatal.try_send(error);
        }
    }

    async fn fetch_members(&self, peer_url: &str) -> Option<ForeignCluster> {
        let options = ConnectOptions {
            tls: self.tls.clone(),
            dial_timeout: Duration::from_secs(2),
            request_timeout: Some(Duration::from_secs(5)),
            ..ConnectOptions::default()
        };
        let channel = etcd_client::connect_channel(&[peer_url], &options)
            .await
            .ok()?;
        let resp = RaftPeerClient::new(channel)
            .members(MembersRequest { cluster_id: 0 })
            .await
            .ok()?
            .into_inner();
        Some(ForeignCluster {
            cluster_id: resp.cluster_id,
            members: resp.members,
        })
    }

    /// The error to stop with, when `foreign` (the cluster of the peer at `peer_url`) holds a
    /// member at our peer URLs under another ID.
    pub fn diagnose(&self, peer_url: &str, foreign: &ForeignCluster) -> Option<ServerError> {
        if foreign.cluster_id == self.cluster_id {
            return None;
        }
        let added_as = foreign.members.iter().find(|m| {
            m.id != self.member_id && m.peer_urls.iter().any(|u| self.own_peer_urls.contains(u))
        })?;
        Some(ServerError::Config(format!(
            "cluster ID mismatch: the member at {peer_url} belongs to cluster {:x}, which lists \
             this member's peer URLs ({}) as member {:x}, but this member started a new cluster \
             {:x} as member {:x}. It was added with `etcdctl member add` and must join with \
             --initial-cluster-state existing (ETCD_INITIAL_CLUSTER_STATE=existing): stop it, \
             remove its data dir {} (it holds nothing yet), and start it again with that flag \
             and the --initial-cluster that `member add` printed",
            foreign.cluster_id,
            self.own_peer_urls.join(","),
            added_as.id,
            self.cluster_id,
            self.member_id,
            self.data_dir,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::internalpb::MemberRecord;

    fn check() -> PeerRefusals {
        let cfg = ServerConfig::single(
            "b",
            "/var/lib/b.etcd".into(),
            "http://127.0.0.1:22379".parse().unwrap(),
            "http://127.0.0.1:22380".parse().unwrap(),
        );
        let (fatal, _) = mpsc::channel(1);
        PeerRefusals::new(&cfg, 0xb0b, 0xe852, None, Arc::default(), fatal)
    }

    fn member(id: u64, url: &str) -> MemberRecord {
        MemberRecord {
            id,
            name: String::new(),
            peer_urls: vec![url.to_string()],
            client_urls: Vec::new(),
            is_learner: false,
        }
    }

    #[test]
    fn a_member_added_but_started_new_is_told_to_join_existing() {
        let foreign = ForeignCluster {
            cluster_id: 0xa7ef,
            members: vec![
                member(0xaaa, "http://127.0.0.1:12380"),
                member(0x7dcf, "http://127.0.0.1:22380"),
            ],
        };
        let error = check()
            .diagnose("http://127.0.0.1:12380", &foreign)
            .expect("diagnosed")
            .to_string();
        assert!(error.contains("belongs to cluster a7ef"), "{error}");
        assert!(error.contains("as member 7dcf"), "{error}");
        assert!(
            error.contains("--initial-cluster-state existing"),
            "{error}"
        );
        assert!(error.contains("/var/lib/b.etcd"), "{error}");
    }

    #[test]
    fn a_peer_of_another_cluster_that_does_not_list_us_is_not_our_mistake() {
        let foreign = ForeignCluster {
            cluster_id: 0xa7ef,
            members: vec![member(0xaaa, "http://127.0.0.1:12380")],
        };
        assert!(
            check()
                .diagnose("http://127.0.0.1:12380", &foreign)
                .is_none()
        );
    }

    #[test]
    fn a_misconfigured_peer_listing_us_under_our_own_id_is_its_mistake() {
        // The healthy member's view: the new member's cluster lists it under its real ID.
        let foreign = ForeignCluster {
            cluster_id: 0xa7ef,
            members: vec![member(0xb0b, "http://127.0.0.1:22380")],
        };
        assert!(
            check()
                .diagnose("http://127.0.0.1:12380", &foreign)
                .is_none()
        );
    }

    #[test]
    fn the_same_cluster_is_no_mismatch() {
        let foreign = ForeignCluster {
            cluster_id: 0xe852,
            members: vec![member(0x7dcf, "http://127.0.0.1:22380")],
        };
        assert!(
            check()
                .diagnose("http://127.0.0.1:12380", &foreign)
                .is_none()
        );
    }
}
