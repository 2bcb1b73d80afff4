//! The peer transport: Raft messages between members over gRPC on the peer port.
//!
//! Each member keeps one client stream to each peer, so a peer receives our messages in the
//! order Raft produced them (raft-rs 0.7 assumes in-order delivery). Queues are bounded: when a
//! peer is slow or down, messages to it are dropped and the peer is reported unreachable to
//! Raft, which then probes it instead of piling up.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_api::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use etcd_api::internalpb::raft_peer_client::RaftPeerClient;
use etcd_api::internalpb::raft_peer_server::{RaftPeer, RaftPeerServer};
use etcd_api::internalpb::{MembersRequest, MembersResponse, PeerAck, PeerMessages, SnapshotChunk};
use etcd_client::ConnectOptions;
use etcd_mvcc::Store;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Response, Status, Streaming};

use crate::apply::ClusterState;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::raft::RaftInput;
use crate::raft::node::MessageSender;
use crate::serve;
use crate::server::EtcdServer;
use crate::snapshot::SnapshotInbox;

/// Messages queued for one peer before further ones are dropped.
const PEER_QUEUE_CAPACITY: usize = 4096;
/// Messages sent in one frame of the stream.
const FRAME_MESSAGES_MAX: usize = 256;
/// A frame stops taking messages once it holds this many bytes, so that many large messages
/// queued together never add up to more than [`PEER_FRAME_BYTES_MAX`].
const FRAME_BYTES_SOFT_MAX: usize = 8 << 20;
/// Largest frame accepted from a peer: a batch of append messages with large entries.
const PEER_FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Starts the peer listeners and one sender per peer. A single-member cluster still listens
/// (members may be added later) but sends nowhere.
#[allow(clippy::too_many_arguments)] // each is a distinct piece of the member being wired up
pub async fn start(
    cfg: &ServerConfig,
    member_id: u64,
    cluster_id: u64,
    cluster: &ClusterState,
    inputs: SyncSender<RaftInput>,
    server: Arc<OnceLock<Arc<EtcdServer>>>,
    store: Arc<Store>,
    inbox: SnapshotInbox,
) -> Result<Box<dyn MessageSender>, ServerError> {
    let snap_dir = cfg
        .backend_path()
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let service = PeerService {
        cluster_id,
        member_id,
        inputs: inputs.clone(),
        cluster: cluster.clone(),
        server,
        inbox,
        snap_dir: snap_dir.clone(),
        snapshot_bytes_max: cfg.quota_bytes().saturating_mul(2),
    };
    let routes = tonic::service::Routes::new(
        RaftPeerServer::new(service).max_decoding_message_size(PEER_FRAME_BYTES_MAX),
    )
    .into_axum_router();
    serve::serve_peers(cfg, routes).await?;

    let mut sender = PeerSender {
        queues: BTreeMap::new(),
        inputs,
        member_id,
        cluster_id,
        tls: serve::peer_client_tls(cfg)?,
        runtime: tokio::runtime::Handle::current(),
        store,
        snap_dir,
    };
    sender.update_peers(&cluster.membership.peer_urls());
    Ok(Box::new(sender))
}

/// One bounded queue and one stream task per peer; the set follows membership changes.
/// Asks the members named in `--initial-cluster` (other than this one) for the cluster's ID
/// and members, for a member joining with `--initial-cluster-state existing`.
pub async fn fetch_cluster(cfg: &ServerConfig) -> Result<crate::raft::RemoteCluster, ServerError> {
    let own: Vec<String> = cfg
        .initial_advertise_peer_urls
        .iter()
        .map(crate::membership::url_string)
        .collect();
    let options = ConnectOptions {
        tls: serve::peer_client_tls(cfg)?,
        dial_timeout: Duration::from_secs(2),
        request_timeout: Some(Duration::from_secs(5)),
        ..ConnectOptions::default()
    };
    let mut errors = Vec::new();
    for (_, url) in &cfg.initial_cluster {
        let url = crate::membership::url_string(url);
        if own.contains(&url) {
            continue;
        }
        let channel = match etcd_client::connect_channel(&[url.as_str()], &options).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{url}: {e}"));
                continue;
            }
        };
        match RaftPeerClient::new(channel)
            .members(MembersRequest { cluster_id: 0 })
            .await
        {
            Ok(resp) => {
                let resp = resp.into_inner();
                return Ok(crate::raft::RemoteCluster {
                    cluster_id: resp.cluster_id,
                    members: resp.members,
                });
            }
            Err(status) => errors.push(format!("{url}: {}", status.message())),
        }
    }
    Err(ServerError::Config(format!(
        "cannot fetch the cluster from any member in --initial-cluster ({}); \
         with --initial-cluster-state existing, at least one of them must be running",
        errors.join("; ")
    )))
}

struct PeerSender {
    queues: BTreeMap<u64, (Vec<String>, mpsc::Sender<Message>)>,
    inputs: SyncSender<RaftInput>,
    member_id: u64,
    cluster_id: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Membership changes arrive on the Raft thread, outside the runtime.
    runtime: tokio::runtime::Handle,
    /// Snapshots carry a copy of the backend, staged in `snap_dir`.
    store: Arc<Store>,
    snap_dir: std::path::PathBuf,
}

impl PeerSender {
    /// Streams a snapshot on its own connection, so a large backend does not hold up the
    /// ordered message stream; Raft hears how it went.
    fn send_snapshot(&self, msg: Message) {
        let to = msg.to;
        let Some((urls, _)) = self.queues.get(&to) else {
            return;
        };
        let urls = urls.clone();
        let (tls, store, snap_dir) = (self.tls.clone(), self.store.clone(), self.snap_dir.clone());
        let (cluster_id, inputs) = (self.cluster_id, self.inputs.clone());
        self.runtime.spawn(async move {
            let options = ConnectOptions {
                tls,
                dial_timeout: Duration::from_secs(2),
                ..ConnectOptions::default()
            };
            let result = match etcd_client::connect_channel(&urls, &options).await {
                Ok(channel) => {
                    let client = RaftPeerClient::new(channel)
                        .max_encoding_message_size(PEER_FRAME_BYTES_MAX)
                        .max_decoding_message_size(PEER_FRAME_BYTES_MAX);
                    crate::snapshot::send(client, store, snap_dir, cluster_id, msg).await
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &result {
                tracing::warn!(to = format!("{to:x}"), error = %e, "failed to send a snapshot");
            }
            let _ = inputs.try_send(RaftInput::SnapshotStatus(to, result.is_ok()));
        });
    }
}

impl MessageSender for PeerSender {
    fn update_peers(&mut self, peers: &BTreeMap<u64, Vec<String>>) {
        // Dropping a queue's sender ends its stream task.
        self.queues
            .retain(|id, (urls, _)| peers.get(id) == Some(urls));
        for (peer_id, urls) in peers {
            if *peer_id == self.member_id || self.queues.contains_key(peer_id) || urls.is_empty() {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_CAPACITY);
            self.queues.insert(*peer_id, (urls.clone(), tx));
            self.runtime.spawn(run_peer_stream(PeerStream {
                peer_id: *peer_id,
                urls: urls.clone(),
                member_id: self.member_id,
                cluster_id: self.cluster_id,
                tls: self.tls.clone(),
                queue: Arc::new(std::sync::Mutex::new(rx)),
                inputs: self.inputs.clone(),
            }));
        }
    }

    fn send(&self, messages: Vec<Message>) {
        for msg in messages {
            let to = msg.to;
            let Some((_, queue)) = self.queues.get(&to) else {
                tracing::debug!(
                    to = format!("{to:x}"),
                    "dropping a message to an unknown peer"
                );
                continue;
            };
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(msg);
                continue;
            }
            if queue.try_send(msg).is_err() {
                // Raft will retry after probing; telling it avoids a pile of stale appends.
                let _ = self.inputs.try_send(RaftInput::Unreachable(to));
            }
        }
    }
}

struct PeerStream {
    peer_id: u64,
    urls: Vec<String>,
    member_id: u64,
    cluster_id: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Shared with the [`QueueFrames`] body of the current call, which is its only user while
    /// the call lasts; the lock is never contended.
    queue: Arc<std::sync::Mutex<mpsc::Receiver<Message>>>,
    inputs: SyncSender<RaftInput>,
}

impl PeerStream {
    fn poll_queue(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        lock_queue(&self.queue).poll_recv(cx)
    }
}

fn lock_queue(
    queue: &std::sync::Mutex<mpsc::Receiver<Message>>,
) -> std::sync::MutexGuard<'_, mpsc::Receiver<Message>> {
    queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request body of a peer stream: frames built straight from the peer's queue when hyper
/// polls for more, so a message goes from the Raft thread to the connection with no task of
/// ours in between (each task hop is a wake-up on the replication critical path). Backpressure
/// is hyper's: it polls only when the HTTP/2 stream has window, and a full queue makes the
/// Raft thread report the peer unreachable.
struct QueueFrames {
    queue: Arc<std::sync::Mutex<mpsc::Receiver<Message>>>,
    cluster_id: u64,
    from: u64,
    to: u64,
}

impl tokio_stream::Stream for QueueFrames {
    type Item = PeerMessages;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerMessages>> {
        let mut queue = lock_queue(&self.queue);
        let first = match queue.poll_recv(cx) {
            Poll::Ready(Some(m)) => m,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let mut messages = Vec::with_capacity(queue.len().min(FRAME_MESSAGES_MAX - 1) + 1);
        let mut frame_bytes = 0;
        let mut next = Some(first);
        while let Some(m) = next {
            if let Ok(bytes) = m.write_to_bytes() {
                frame_bytes += bytes.len();
                messages.push(bytes);
            }
            if messages.len() >= FRAME_MESSAGES_MAX || frame_bytes >= FRAME_BYTES_SOFT_MAX {
                break;
            }
            next = queue.try_recv().ok();
        }
        Poll::Ready(Some(PeerMessages {
            cluster_id: self.cluster_id,
            from: self.from,
            to: self.to,
            messages,
        }))
    }
}

/// Keeps one stream open to the peer, reconnecting with backoff; messages that arrive while
/// the peer is unreachable are dropped and reported.
async fn run_peer_stream(mut p: PeerStream) {
    let mut backoff = Duration::from_millis(50);
    let mut url_index = 0;
    let mut problem = PeerProblem::default();
    loop {
        let url = &p.urls[url_index % p.urls.len()];
        url_index += 1;
        let options = ConnectOptions {
            tls: p.tls.clone(),
            dial_timeout: Duration::from_secs(1),
            ..ConnectOptions::default()
        };
        let started = tokio::time::Instant::now();
        let failure = match etcd_client::connect_channel(&[url], &options).await {
            Ok(channel) => stream_to_peer(&mut p, channel).await,
            Err(e) => Some(e.to_string()),
        };
        let _ = p.inputs.try_send(RaftInput::Unreachable(p.peer_id));
        let Some(failure) = failure else {
            return; // the member is stopping
        };
        problem.report(p.peer_id, &failure);
        // Only a stream that stayed up resets the backoff: with TLS 1.3 a peer that refuses our
        // certificate does so after the handshake "succeeded", so connecting is no proof.
        if started.elapsed() > Duration::from_secs(1) {
            backoff = Duration::from_millis(50);
        }
        if drain_as_unreachable(&mut p, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Logs each distinct peer problem once, rather than once per retry.
#[derive(Default)]
struct PeerProblem {
    last: Option<&'static str>,
}

impl PeerProblem {
    fn report(&mut self, peer_id: u64, error: &str) {
        let kind = if error.contains("BadCertificate")
            || error.contains("CertificateUnknown")
            || error.contains("bad certificate")
        {
            "certificate"
        } else if error.contains("cluster ID mismatch") {
            "cluster"
        } else {
            "unreachable"
        };
        if self.last == Some(kind) {
            return;
        }
        self.last = Some(kind);
        let peer = format!("{peer_id:x}");
        match kind {
            // The peer refused our certificate; say it in etcd's (Go's) words.
            "certificate" => tracing::warn!(
                peer,
                error,
                "peer rejected our certificate: remote error: tls: bad certificate"
            ),
            "cluster" => tracing::error!(peer, error, "peer refused our stream"),
            _ => tracing::warn!(peer, error, "peer is unreachable"),
        }
    }
}

/// Sends queued messages on one stream until it fails (returns the reason) or the queue
/// closes (returns `None`).
async fn stream_to_peer(p: &mut PeerStream, channel: tonic::transport::Channel) -> Option<String> {
    let mut client = RaftPeerClient::new(channel)
        .max_encoding_message_size(PEER_FRAME_BYTES_MAX)
        .max_decoding_message_size(PEER_FRAME_BYTES_MAX);
    let frames = QueueFrames {
        queue: p.queue.clone(),
        cluster_id: p.cluster_id,
        from: p.member_id,
        to: p.peer_id,
    };
    let result = client.stream(frames).await;
    // A closed queue means the member is stopping (or dropped this peer), not that it failed.
    if lock_queue(&p.queue).is_closed() {
        return None;
    }
    Some(match result {
        Err(status) => {
            let mut text = status.message().to_string();
            let mut source = std::error::Error::source(&status);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
        Ok(_) => "peer closed the stream".to_string(),
    })
}

/// Waits `delay` while dropping queued messages (reporting the peer unreachable). Returns true
/// when the queue is closed (the member is stopping).
async fn drain_as_unreachable(p: &mut PeerStream, delay: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        match tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| p.poll_queue(cx))).await {
            Ok(Some(_)) => {
                let _ = p.inputs.try_send(RaftInput::Unreachable(p.peer_id));
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

struct PeerService {
    cluster_id: u64,
    member_id: u64,
    inputs: SyncSender<RaftInput>,
    cluster: ClusterState,
    /// Set once the member has started; lease calls before that find no leader here.
    server: Arc<OnceLock<Arc<EtcdServer>>>,
    inbox: SnapshotInbox,
    snap_dir: std::path::PathBuf,
    snapshot_bytes_max: u64,
}

impl PeerService {
    /// The local server, if this member is the leader: forwarded lease calls are answered
    /// only by the leader, never forwarded again (no loops between members).
    fn leader_server(&self) -> Result<&Arc<EtcdServer>, Status> {
        match self.server.get() {
            Some(server) if server.leader() == self.member_id => Ok(server),
            _ => Err(Status::from(ServerError::NoLeader)),
        }
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn stream(
        &self,
        request: tonic::Request<Streaming<PeerMessages>>,
    ) -> Result<Response<PeerAck>, Status> {
        let mut frames = request.into_inner();
        while let Some(frame) = frames.next().await {
            let frame = frame?;
            if frame.cluster_id != self.cluster_id {
                tracing::error!(
                    remote_cluster = format!("{:x}", frame.cluster_id),
                    local_cluster = format!("{:x}", self.cluster_id),
                    from = format!("{:x}", frame.from),
                    "refusing messages from a member of another cluster (cluster ID mismatch)"
                );
                return Err(Status::failed_precondition(format!(
                    "cluster ID mismatch: local {:x}, remote {:x}",
                    self.cluster_id, frame.cluster_id
                )));
            }
            if frame.to != self.member_id {
                return Err(Status::failed_precondition(format!(
                    "member {:x} received messages for {:x}",
                    self.member_id, frame.to
                )));
            }
            for raw in frame.messages {
                let msg = match Message::parse_from_bytes(&raw) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(from = format!("{:x}", frame.from), error = %e, "dropping an undecodable peer message");
                        continue;
                    }
                };
                // A full Raft queue means the loop is behind; Raft recovers from lost messages.
                let _ = self.inputs.try_send(RaftInput::Peer(msg));
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(
        &self,
        request: tonic::Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<PeerAck>, Status> {
        let (msg, path) = crate::snapshot::receive(
            request.into_inner(),
            self.cluster_id,
            self.member_id,
            &self.snap_dir,
            self.snapshot_bytes_max,
        )
        .await?;
        let index = msg.get_snapshot().get_metadata().index;
        tracing::info!(
            from = format!("{:x}", msg.from),
            snapshot_index = index,
            "received snapshot"
        );
        self.inbox.put(index, path);
        self.inputs
            .try_send(RaftInput::Peer(msg))
            .map_err(|_| Status::unavailable("raft loop busy; retry the snapshot"))?;
        Ok(Response::new(PeerAck {}))
    }

    async fn lease_renew(
        &self,
        request: tonic::Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let server = self.leader_server()?;
        let id = request.into_inner().id;
        let ttl = server.lease_renew(id).await?;
        Ok(Response::new(LeaseKeepAliveResponse {
            header: server.current_header(),
            id,
            ttl,
        }))
    }

    async fn lease_time_to_live(
        &self,
        request: tonic::Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let server = self.leader_server()?;
        Ok(Response::new(
            server.lease_time_to_live(request.into_inner()).await?,
        ))
    }

    async fn member_promote(
        &self,
        request: tonic::Request<etcd_api::etcdserverpb::MemberPromoteRequest>,
    ) -> Result<Response<etcd_api::etcdserverpb::MemberPromoteResponse>, Status> {
        let server = self.leader_server()?;
        Ok(Response::new(
            server.member_promote(request.into_inner().id).await?,
        ))
    }

    async fn members(
        &self,
        _request: tonic::Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        // The applied membership once the member runs; the bootstrap one before.
        let members = match self.server.get() {
            Some(server) => server.cluster_state().membership,
            None => self.cluster.membership.clone(),
        };
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: members.members.into_values().collect(),
        }))
    }
}
