//! `EtcdServer`: the handle the gRPC and HTTP services use to propose writes, wait for
//! linearizable reads and read the member's state. It never touches Raft directly: it talks to
//! the Raft loop through its bounded input channel.

use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use etcd_api::etcdserverpb::ResponseHeader;
use etcd_api::internalpb::{InternalRequest, internal_request::Request};
use etcd_mvcc::Store;
use prost::Message as _;
use tokio::sync::{oneshot, watch};

use crate::apply::{Applied, ClusterState};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::raft::{RaftInbox, RaftInput, RaftStatus};
use crate::wait::Wait;

pub struct EtcdServer {
    pub cfg: ServerConfig,
    pub member_id: u64,
    pub cluster_id: u64,
    pub store: Arc<Store>,
    pub(crate) wait: Arc<Wait>,
    pub(crate) raft_inputs: RaftInbox,
    pub(crate) status: Arc<RaftStatus>,
    pub(crate) applied_rx: watch::Receiver<u64>,
    pub(crate) cluster: Arc<RwLock<ClusterState>>,
    pub(crate) lessor: crate::lease::SharedLessor,
    /// How this member dials its peers (lease forwarding to the leader).
    pub(crate) peer_client_tls: Option<Arc<rustls::ClientConfig>>,
    /// The connection lease calls are forwarded over: to which leader, at which peer URLs.
    /// Kept, so a follower's keep-alives (thousands a second under many leases) share one
    /// HTTP/2 connection instead of dialing the leader for each.
    pub(crate) leader_channel: std::sync::Mutex<Option<LeaderChannel>>,
    pub(crate) watch_hub: Arc<crate::watch::WatchHub>,
    /// The simple tokens this member accepts (member-local, replicated by Authenticate).
    pub(crate) tokens: Arc<crate::auth::tokens::SimpleTokens>,
    /// `--auth-token jwt`: tokens are signed and verified instead of kept.
    pub(crate) jwt: Option<crate::auth::jwt::JwtTokens>,
    /// Bounds the bcrypt work running at once (see `start`).
    pub(crate) bcrypt_slots: tokio::sync::Semaphore,
    /// `/metrics`.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The v2 store (`--enable-v2`; kept, and applied, either way: the log may hold v2 writes).
    pub(crate) v2: Arc<crate::v2::V2>,
    /// How many large Range answers may be in memory at once (`read_budget.rs`).
    pub(crate) read_budget: crate::read_budget::ReadBudget,
}

/// A connection to the leader's peer port, for forwarded calls.
pub(crate) struct LeaderChannel {
    leader: u64,
    peer_urls: Vec<String>,
    channel: tonic::transport::Channel,
}

impl EtcdServer {
    /// Runs `f` on the auth store as applied here, under the cluster state's read lock.
    pub(crate) fn with_auth<R>(&self, f: impl FnOnce(&crate::auth::AuthStore) -> R) -> R {
        f(&self.cluster.read().unwrap_or_else(|e| e.into_inner()).auth)
    }

    /// Proposes a member's own request through Raft (no user's permissions apply) and waits
    /// until this member applied it.
    pub async fn propose(&self, request: Request) -> Result<Applied, ServerError> {
        self.propose_as(request, None).await
    }

    /// Proposes a client's request, checked when applied against the permissions of `auth`
    /// (see `grpc::access`) while auth is on.
    pub async fn propose_as(
        &self,
        request: Request,
        auth: Option<etcd_api::internalpb::RequestAuth>,
    ) -> Result<Applied, ServerError> {
        let (id, rx) = self.wait.register();
        let proposal = InternalRequest {
            id,
            proposer_id: self.member_id,
            auth,
            request: Some(request),
        };
        let data = proposal.encode_to_vec();
        if data.len() as u64 > self.cfg.max_request_bytes {
            self.wait.cancel(id);
            return Err(ServerError::RequestTooLarge);
        }
        self.submit_and_wait(id, rx, RaftInput::Propose { id, data })
            .await
    }

    /// Hands `input` (whose waiter `id` is registered) to the Raft loop and waits for the
    /// apply result, or the request timeout. The waiter is removed on every failure path.
    async fn submit_and_wait(
        &self,
        id: u64,
        rx: oneshot::Receiver<crate::apply::ApplyResult>,
        input: RaftInput,
    ) -> Result<Applied, ServerError> {
        if let Err(e) = self.raft_inputs.try_send(input) {
            self.wait.cancel(id);
            return Err(input_error(e));
        }
        match tokio::time::timeout(self.cfg.request_timeout(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => {
                self.wait.cancel(id);
                Err(self.timeout_error())
            }
        }
    }

    /// Waits until this member has applied everything committed before the call: after it,
    /// a local read is linearizable (etcd's ReadIndex path).
    pub async fn linearizable_barrier(&self) -> Result<(), ServerError> {
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout();
        loop {
            let (tx, rx) = oneshot::channel();
            self.raft_inputs
                .try_send(RaftInput::ReadIndex(tx))
                .map_err(input_error)?;
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(index))) => return self.wait_applied(index, deadline).await,
                Ok(Ok(Err(e))) => return Err(e),
                // The read round expired without an answer (raft-rs dropped it): ask again.
                Ok(Err(_)) => continue,
                Err(_) => return Err(self.timeout_error()),
            }
        }
    }

    async fn wait_applied(
        &self,
        index: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), ServerError> {
        let mut rx = self.applied_rx.clone();
        match tokio::time::timeout_at(deadline, rx.wait_for(|applied| *applied >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(self.timeout_error()),
        }
    }

    fn timeout_error(&self) -> ServerError {
        if self.leader() == 0 {
            ServerError::NoLeader
        } else {
            ServerError::Timeout
        }
    }

    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.term(),
        })
    }

    /// A header carrying the store's current revision.
    pub fn current_header(&self) -> Option<ResponseHeader> {
        self.header(self.store.current_revision())
    }

    pub fn leader(&self) -> u64 {
        self.status.leader.load(Ordering::Acquire)
    }

    pub fn is_leader(&self) -> bool {
        self.status.is_leader.load(Ordering::Acquire)
    }

    pub fn term(&self) -> u64 {
        self.status.term.load(Ordering::Acquire)
    }

    pub fn commit_index(&self) -> u64 {
        self.status.commit_index.load(Ordering::Acquire)
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied_rx.borrow()
    }

    /// A copy of the replicated cluster state (members, alarms) as of the last apply.
    pub fn cluster_state(&self) -> ClusterState {
        self.cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether an alarm of this type is raised, without copying the cluster state.
    pub fn has_alarm(&self, alarm: etcd_api::etcdserverpb::AlarmType) -> bool {
        self.cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .has_alarm(alarm)
    }

    pub fn is_learner(&self) -> bool {
        self.cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .learners
            .contains(&self.member_id)
    }
}

/// A full Raft input queue means the member is overloaded: the client should back off.
fn input_error<T>(e: TrySendError<T>) -> ServerError {
    match e {
        TrySendError::Full(_) => ServerError::TooManyRequests,
        TrySendError::Disconnected(_) => ServerError::Stopped,
    }
}

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Leases: answered by the leader, which alone keeps deadlines; a follower forwards to it over
/// the peer port, as etcd does.
impl EtcdServer {
    /// A fresh lease ID: positive, unique per member and start (same scheme as request IDs).
    pub fn next_lease_id(&self) -> i64 {
        let (id, _rx) = self.wait.register();
        self.wait.cancel(id);
        (id & (i64::MAX as u64)) as i64
    }

    /// Keep-alive: resets the lease's deadline; returns its TTL.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, ServerError> {
        match self.lease_leader().await? {
            None => {
                self.wait_applied_committed().await?;
                let ttl = self.lessor.lock().renew(id, std::time::Instant::now())?;
                // Counted by the leader, which renews (etcd's renewed_total).
                self.metrics.lease_renewed_total.inc();
                Ok(ttl)
            }
            Some(mut leader) => {
                let req = etcd_api::etcdserverpb::LeaseKeepAliveRequest { id };
                let resp = leader.lease_renew(req).await.map_err(forwarded_error)?;
                Ok(resp.into_inner().ttl)
            }
        }
    }

    pub async fn lease_time_to_live(
        &self,
        req: etcd_api::etcdserverpb::LeaseTimeToLiveRequest,
    ) -> Result<etcd_api::etcdserverpb::LeaseTimeToLiveResponse, ServerError> {
        use etcd_api::etcdserverpb::LeaseTimeToLiveResponse;
        let resp = match self.lease_leader().await? {
            None => {
                self.wait_applied_committed().await?;
                let lessor = self.lessor.lock();
                match lessor.get(req.id) {
                    Some(lease) => LeaseTimeToLiveResponse {
                        header: None,
                        id: req.id,
                        ttl: lease
                            .remaining_secs(std::time::Instant::now())
                            .unwrap_or(lease.ttl_secs),
                        granted_ttl: lease.ttl_secs,
                        keys: if req.keys {
                            lease.keys.iter().cloned().collect()
                        } else {
                            Vec::new()
                        },
                    },
                    // etcd answers an unknown lease with TTL -1, not an error.
                    None => LeaseTimeToLiveResponse {
                        id: req.id,
                        ttl: -1,
                        ..Default::default()
                    },
                }
            }
            Some(mut leader) => leader
                .lease_time_to_live(req)
                .await
                .map_err(forwarded_error)?
                .into_inner(),
        };
        Ok(LeaseTimeToLiveResponse {
            header: self.current_header(),
            ..resp
        })
    }

    /// `None` when this member is the leader, else a peer client to the leader.
    async fn lease_leader(
        &self,
    ) -> Result<
        Option<etcd_api::internalpb::raft_peer_client::RaftPeerClient<tonic::transport::Channel>>,
        ServerError,
    > {
        let leader = self.leader();
        if leader == 0 {
            return Err(ServerError::NoLeader);
        }
        if leader == self.member_id {
            return Ok(None);
        }
        // Looked up in place, not through `cluster_state()`: that clones the membership and
        // the auth store, and a follower forwards thousands of keep-alives a second.
        let urls = {
            let cluster = self.cluster.read().unwrap_or_else(|e| e.into_inner());
            let urls = &cluster
                .membership
                .members
                .get(&leader)
                .ok_or(ServerError::NoLeader)?
                .peer_urls;
            let cached = self
                .leader_channel
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .filter(|c| c.leader == leader && &c.peer_urls == urls)
                .map(|c| c.channel.clone());
            if let Some(channel) = cached {
                return Ok(Some(
                    etcd_api::internalpb::raft_peer_client::RaftPeerClient::new(channel),
                ));
            }
            urls.clone()
        };
        let options = etcd_client::ConnectOptions {
            tls: self.peer_client_tls.clone(),
            dial_timeout: self.cfg.election_timeout,
            request_timeout: Some(self.cfg.request_timeout()),
            ..Default::default()
        };
        let channel = etcd_client::connect_channel(&urls, &options)
            .await
            .map_err(|_| ServerError::NoLeader)?;
        // Calls racing here each dial; the last one's connection is kept, the others close
        // when their call ends.
        *self
            .leader_channel
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(LeaderChannel {
            leader,
            peer_urls: urls,
            channel: channel.clone(),
        });
        Ok(Some(
            etcd_api::internalpb::raft_peer_client::RaftPeerClient::new(channel),
        ))
    }

    /// Waits until this member applied everything committed so far.
    async fn wait_applied_committed(&self) -> Result<(), ServerError> {
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout();
        self.wait_applied(self.commit_index(), deadline).await
    }
}

/// A forwarded lease call's status, back in our error type.
fn forwarded_error(status: tonic::Status) -> ServerError {
    match status.code() {
        tonic::Code::NotFound => ServerError::LeaseNotFound,
        tonic::Code::Unavailable => ServerError::NoLeader,
        _ => ServerError::Internal(status.message().to_string()),
    }
}

/// Membership changes and leadership transfer.
impl EtcdServer {
    /// Proposes a Raft configuration change for this member record and waits until it is
    /// applied here. The leader checks `--strict-reconfig-check` before proposing.
    pub async fn propose_conf_change(
        &self,
        change: raft::prelude::ConfChangeType,
        record: &etcd_api::internalpb::MemberRecord,
    ) -> Result<crate::apply::Applied, ServerError> {
        let (id, rx) = self.wait.register();
        let cc = crate::raft::confchange::conf_change(change, record, id);
        self.submit_and_wait(id, rx, RaftInput::ProposeConfChange(Box::new(cc)))
            .await
    }

    /// Promotes a learner; only the leader can tell whether it caught up, so a follower
    /// forwards the request to it.
    pub async fn member_promote(
        &self,
        id: u64,
    ) -> Result<etcd_api::etcdserverpb::MemberPromoteResponse, ServerError> {
        let record = self
            .cluster_state()
            .membership
            .members
            .get(&id)
            .cloned()
            .ok_or(ServerError::MemberNotFound)?;
        if !record.is_learner {
            return Err(ServerError::MemberNotLearner);
        }
        match self.lease_leader().await? {
            None => {
                self.propose_conf_change(raft::prelude::ConfChangeType::AddNode, &record)
                    .await?;
            }
            Some(mut leader) => {
                let req = etcd_api::etcdserverpb::MemberPromoteRequest { id };
                leader
                    .member_promote(req)
                    .await
                    .map_err(forwarded_member_error)?;
                // Wait until the promotion is applied here too, so our answer lists it.
                self.linearizable_barrier().await?;
            }
        }
        // etcd's cluster service headers carry no revision.
        Ok(etcd_api::etcdserverpb::MemberPromoteResponse {
            header: self.header(0),
            members: self.cluster_state().membership.to_wire(),
        })
    }

    /// Before a leader stops (etcd's `Stop`): hands leadership to the best-placed voter and
    /// waits (up to the request timeout) until another member leads, so that clients see a
    /// leader change instead of an election timeout. Returns the new leader; None when this
    /// member is not the leader or the only voter.
    pub async fn hand_over_leadership(&self) -> Result<Option<u64>, ServerError> {
        if self.leader() != self.member_id || self.cluster_state().voters.len() < 2 {
            return Ok(None);
        }
        self.raft_inputs
            .try_send(RaftInput::TransferLeaderToBest)
            .map_err(|_| ServerError::TooManyRequests)?;
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout();
        let mut applied = self.applied_rx.clone();
        loop {
            let leader = self.leader();
            if leader != self.member_id && leader != 0 {
                return Ok(Some(leader));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError::Timeout);
            }
            let _ = tokio::time::timeout(self.cfg.heartbeat_interval, applied.changed()).await;
        }
    }

    /// Transfers leadership to `target` (this member must be the leader) and waits for it.
    pub async fn move_leader(&self, target: u64) -> Result<(), ServerError> {
        if self.leader() != self.member_id {
            return Err(ServerError::NotLeader);
        }
        let state = self.cluster_state();
        if !state.voters.contains(&target) {
            return Err(ServerError::BadLeaderTransferee);
        }
        if target == self.member_id {
            return Ok(());
        }
        self.raft_inputs
            .try_send(RaftInput::TransferLeader(target))
            .map_err(|_| ServerError::TooManyRequests)?;
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout();
        let mut applied = self.applied_rx.clone();
        while self.leader() != target {
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError::Timeout);
            }
            // Leadership changes come with new entries (the new leader's no-op); wake on
            // applies, and look again at least every heartbeat.
            let _ = tokio::time::timeout(self.cfg.heartbeat_interval, applied.changed()).await;
        }
        Ok(())
    }
}

fn forwarded_member_error(status: tonic::Status) -> ServerError {
    match status.message() {
        m if m == ServerError::LearnerNotReady.to_string() => ServerError::LearnerNotReady,
        m if m == ServerError::MemberNotFound.to_string() => ServerError::MemberNotFound,
        m if m == ServerError::MemberNotLearner.to_string() => ServerError::MemberNotLearner,
        _ if status.code() == tonic::Code::Unavailable => ServerError::NoLeader,
        m => ServerError::Internal(m.to_string()),
    }
}
