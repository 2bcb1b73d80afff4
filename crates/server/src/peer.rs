//! The peer transport's async side, on the peer port.
//!
//! Raft messages go over links the Raft thread drives itself (`raft::links`): each member
//! dials one link to each peer, so a peer receives our messages in the order Raft produced
//! them (raft-rs 0.7 assumes in-order delivery). This module makes those links: a dialer task
//! per peer connects, does the TLS handshake and the hello, hands the socket to the Raft
//! thread and redials when the thread says the link broke; the listener side checks a peer's
//! hello and hands its socket over the same way. Everything else between members (snapshots,
//! forwarded lease and promote calls, the member list) is gRPC on the same port.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use etcd_api::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use etcd_api::internalpb::raft_peer_client::RaftPeerClient;
use etcd_api::internalpb::raft_peer_server::{RaftPeer, RaftPeerServer};
use etcd_api::internalpb::{MembersRequest, MembersResponse, PeerAck, SnapshotChunk};
use etcd_client::ConnectOptions;
use etcd_mvcc::Store;
use etcd_transport::{CertIdentity, Conn, StdSocket};
use raft::prelude::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::{Response, Status, Streaming};

use crate::apply::ClusterState;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::membership::Membership;
use crate::raft::links::{HELLO_LEN, LINK_MAGIC, LINK_VERSION, LinkSocket};
use crate::raft::node::MessageSender;
use crate::raft::{PeerLink, RaftInbox, RaftInput};
use crate::refusal::{CLUSTER_MISMATCH, PeerRefusals, REMOVED};
use crate::serve;
use crate::server::EtcdServer;
use crate::snapshot::SnapshotInbox;

/// Largest gRPC message between members: a snapshot chunk, a forwarded call.
const PEER_FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Starts the peer listeners and one sender per peer. A single-member cluster still listens
/// (members may be added later) but sends nowhere.
#[allow(clippy::too_many_arguments)] // each is a distinct piece of the member being wired up
pub async fn start(
    cfg: &ServerConfig,
    member_id: u64,
    cluster_id: u64,
    cluster: &ClusterState,
    inputs: RaftInbox,
    server: Arc<OnceLock<Arc<EtcdServer>>>,
    store: Arc<Store>,
    inbox: SnapshotInbox,
    refusals: Arc<PeerRefusals>,
) -> Result<Box<dyn MessageSender>, ServerError> {
    let snap_dir = cfg.snap_dir();
    let membership = MembershipView {
        boot: cluster.membership.clone(),
        server: server.clone(),
    };
    let service = PeerService {
        cluster_id,
        member_id,
        inputs: inputs.clone(),
        membership: membership.clone(),
        server,
        inbox,
        snap_dir: snap_dir.clone(),
        snapshot_bytes_max: cfg.quota_bytes().saturating_mul(2),
        store: store.clone(),
    };
    let routes = tonic::service::Routes::new(
        RaftPeerServer::new(service).max_decoding_message_size(PEER_FRAME_BYTES_MAX),
    )
    .into_axum_router();
    let peer_tls = &cfg.peer_tls.info;
    let links = Arc::new(LinkAcceptor {
        cluster_id,
        member_id,
        inputs: inputs.clone(),
        membership,
        check_certificate_names: peer_tls.client_cert_auth && !peer_tls.skip_client_san_verify,
    });
    serve::serve_peers(cfg, routes, links).await?;

    let mut sender = PeerSender {
        dialers: BTreeMap::new(),
        inputs,
        member_id,
        cluster_id,
        tls: serve::peer_client_tls(cfg)?,
        runtime: tokio::runtime::Handle::current(),
        store,
        snap_dir,
        refusals,
    };
    sender.update_peers(&cluster.membership.peer_urls());
    Ok(Box::new(sender))
}

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

/// One dialer task per peer, following membership changes, and the snapshot sender.
struct PeerSender {
    /// Per peer: its URLs, and the dialer task's stop signal (dropping it stops the task).
    dialers: BTreeMap<u64, (Vec<String>, oneshot::Sender<()>)>,
    inputs: RaftInbox,
    member_id: u64,
    cluster_id: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Membership changes arrive on the Raft thread, outside the runtime.
    runtime: tokio::runtime::Handle,
    /// Snapshots carry a copy of the backend, staged in `snap_dir`.
    store: Arc<Store>,
    snap_dir: std::path::PathBuf,
    refusals: Arc<PeerRefusals>,
}

impl MessageSender for PeerSender {
    fn update_peers(&mut self, peers: &BTreeMap<u64, Vec<String>>) {
        self.dialers
            .retain(|id, (urls, _)| peers.get(id) == Some(urls));
        for (peer_id, urls) in peers {
            if *peer_id == self.member_id || self.dialers.contains_key(peer_id) || urls.is_empty() {
                continue;
            }
            let (stop_tx, stop_rx) = oneshot::channel();
            self.dialers.insert(*peer_id, (urls.clone(), stop_tx));
            self.runtime.spawn(run_dialer(
                Dialer {
                    hello: Hello {
                        cluster_id: self.cluster_id,
                        from: self.member_id,
                        to: *peer_id,
                    },
                    urls: urls.clone(),
                    tls: self.tls.clone(),
                    inputs: self.inputs.clone(),
                    refusals: self.refusals.clone(),
                },
                stop_rx,
            ));
        }
    }

    /// Streams a snapshot on its own connection, so a large backend does not hold up the
    /// link; Raft hears how it went.
    fn send_snapshot(&self, msg: Message) {
        let to = msg.to;
        let Some((urls, _)) = self.dialers.get(&to) else {
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

/// What a link's hello says: which cluster, and which member talks to which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hello {
    cluster_id: u64,
    from: u64,
    to: u64,
}

impl Hello {
    fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0; HELLO_LEN];
        out[..LINK_MAGIC.len()].copy_from_slice(LINK_MAGIC);
        let mut at = LINK_MAGIC.len();
        out[at] = LINK_VERSION;
        at += 1;
        for v in [self.cluster_id, self.from, self.to] {
            out[at..at + 8].copy_from_slice(&v.to_be_bytes());
            at += 8;
        }
        out
    }

    fn decode(bytes: &[u8; HELLO_LEN]) -> Result<Hello, String> {
        if &bytes[..LINK_MAGIC.len()] != LINK_MAGIC {
            return Err("not a Raft link".into());
        }
        let version = bytes[LINK_MAGIC.len()];
        if version != LINK_VERSION {
            return Err(format!(
                "unsupported Raft link version {version} (this member speaks {LINK_VERSION})"
            ));
        }
        let at = LINK_MAGIC.len() + 1;
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&bytes[at + 8 * i..at + 8 * i + 8]);
            u64::from_be_bytes(w)
        };
        Ok(Hello {
            cluster_id: word(0),
            from: word(1),
            to: word(2),
        })
    }
}

/// How long a peer may take to answer a hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a hello: 0 and nothing else to accept, 1 and a reason to refuse.
async fn write_verdict<S: AsyncWrite + Unpin>(s: &mut S, refusal: Option<&str>) -> io::Result<()> {
    let mut out = Vec::new();
    match refusal {
        None => out.push(0),
        Some(reason) => {
            let reason = &reason.as_bytes()[..reason.len().min(u16::MAX as usize)];
            out.push(1);
            out.extend_from_slice(&(reason.len() as u16).to_be_bytes());
            out.extend_from_slice(reason);
        }
    }
    s.write_all(&out).await?;
    s.flush().await
}

async fn read_verdict<S: AsyncRead + Unpin>(s: &mut S) -> Result<(), String> {
    let mut status = [0; 1];
    s.read_exact(&mut status).await.map_err(|e| e.to_string())?;
    if status[0] == 0 {
        return Ok(());
    }
    let mut len = [0; 2];
    s.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let mut reason = vec![0; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reason).await.map_err(|e| e.to_string())?;
    Err(String::from_utf8_lossy(&reason).into_owned())
}

/// Sends the hello on a fresh connection and waits for the peer's verdict.
async fn say_hello<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    hello: Hello,
) -> Result<(), String> {
    s.write_all(&hello.encode())
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(HELLO_TIMEOUT, read_verdict(s)).await {
        Ok(verdict) => verdict,
        Err(_) => Err("the peer did not answer the Raft link hello".into()),
    }
}

/// Where a peer URL points.
enum PeerTarget {
    Tcp { host: String, port: u16 },
    Unix { path: String },
}

fn parse_peer_url(url: &str) -> Result<(PeerTarget, bool, String), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("bad peer URL {url}: {e}"))?;
    let tls = matches!(parsed.scheme(), "https" | "unixs");
    match parsed.scheme() {
        "http" | "https" => {
            let host = parsed
                .host_str()
                .ok_or_else(|| format!("peer URL {url} has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
            Ok((
                PeerTarget::Tcp {
                    host: host.clone(),
                    port,
                },
                tls,
                host,
            ))
        }
        "unix" | "unixs" => {
            let path = url
                .split_once("://")
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default();
            let host = path.split(':').next().unwrap_or("localhost").to_string();
            Ok((PeerTarget::Unix { path }, tls, host))
        }
        other => Err(format!("unsupported peer URL scheme {other:?}")),
    }
}

/// Connects to `url`, says hello, and returns the link ready for the Raft thread.
async fn dial_link(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    hello: Hello,
) -> Result<Box<PeerLink>, String> {
    let (target, use_tls, host) = parse_peer_url(url)?;
    let tls = if use_tls {
        let config = tls
            .cloned()
            .ok_or_else(|| format!("{url} needs TLS, but no peer TLS is configured"))?;
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
        Some((tokio_rustls::TlsConnector::from(config), name))
    } else {
        None
    };
    let dial_error = |e: io::Error| format!("dial {url}: {e}");
    let dial_timeout = |_| format!("dial {url}: timed out");
    match &target {
        PeerTarget::Tcp { host, port } => {
            let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
            let s = tokio::time::timeout(LINK_DIAL_TIMEOUT, connect)
                .await
                .map_err(dial_timeout)?
                .map_err(dial_error)?;
            open_link(s, tls, hello, url).await
        }
        PeerTarget::Unix { path } => {
            let connect = tokio::net::UnixStream::connect(path);
            let s = tokio::time::timeout(LINK_DIAL_TIMEOUT, connect)
                .await
                .map_err(dial_timeout)?
                .map_err(dial_error)?;
            open_link(s, tls, hello, url).await
        }
    }
}

/// A connected socket that can be handed to the Raft thread once the hello is done.
trait LinkStream: AsyncRead + AsyncWrite + Unpin {
    fn into_link_socket(self) -> io::Result<LinkSocket>;
}

impl LinkStream for tokio::net::TcpStream {
    fn into_link_socket(self) -> io::Result<LinkSocket> {
        LinkSocket::from_std_tcp(self.into_std()?)
    }
}

impl LinkStream for tokio::net::UnixStream {
    fn into_link_socket(self) -> io::Result<LinkSocket> {
        LinkSocket::from_std_unix(self.into_std()?)
    }
}

/// Does the TLS handshake (if asked) and the hello on a connected socket.
async fn open_link<S: LinkStream>(
    mut s: S,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    hello: Hello,
    url: &str,
) -> Result<Box<PeerLink>, String> {
    let Some((connector, name)) = tls else {
        say_hello(&mut s, hello).await?;
        let socket = s.into_link_socket().map_err(|e| e.to_string())?;
        return Ok(Box::new(PeerLink::new(socket, None)));
    };
    let mut t = tokio::time::timeout(LINK_DIAL_TIMEOUT, connector.connect(name, s))
        .await
        .map_err(|_| format!("TLS handshake with {url}: timed out"))?
        .map_err(|e| e.to_string())?;
    say_hello(&mut t, hello).await?;
    let (s, session) = t.into_inner();
    let socket = s.into_link_socket().map_err(|e| e.to_string())?;
    Ok(Box::new(PeerLink::new(socket, Some(session.into()))))
}

const LINK_DIAL_TIMEOUT: Duration = Duration::from_secs(1);

struct Dialer {
    hello: Hello,
    urls: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    inputs: RaftInbox,
    refusals: Arc<PeerRefusals>,
}

/// Keeps a link to one peer up: dials, hands the link to the Raft thread, waits for it to
/// break, and redials with backoff, until `stop` fires or is dropped.
async fn run_dialer(d: Dialer, mut stop: oneshot::Receiver<()>) {
    let peer = d.hello.to;
    let mut backoff = Duration::from_millis(50);
    let mut url_index = 0;
    let mut problem = PeerProblem::default();
    loop {
        let url = &d.urls[url_index % d.urls.len()];
        url_index += 1;
        let started = tokio::time::Instant::now();
        let attempt = async {
            let link = dial_link(url, d.tls.as_ref(), d.hello).await?;
            let (closed_tx, closed_rx) = oneshot::channel();
            d.inputs
                .try_send(RaftInput::LinkUp {
                    peer,
                    link,
                    closed: closed_tx,
                })
                .map_err(|_| "the Raft loop is busy".to_string())?;
            // Dropped without a reason: the Raft thread is stopping or dropped the peer, and
            // `stop` is about to say so. Redialing after the backoff is right either way.
            closed_rx.await.map_err(|_| String::new())
        };
        let failure = tokio::select! {
            _ = &mut stop => return,
            outcome = attempt => match outcome {
                Ok(reason) | Err(reason) => reason,
            },
        };
        if !failure.is_empty() {
            let _ = d.inputs.try_send(RaftInput::Unreachable(peer));
            problem.report(peer, &failure);
            d.refusals.refused(url, &failure).await;
        }
        // Only a link that stayed up resets the backoff: with TLS 1.3 a peer that refuses our
        // certificate does so after the handshake "succeeded", so connecting is no proof.
        if started.elapsed() > Duration::from_secs(1) {
            backoff = Duration::from_millis(50);
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
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
        } else if error.contains(CLUSTER_MISMATCH) {
            "cluster"
        } else if error.contains(REMOVED) {
            "removed"
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
                hint = "check that the peer trusts our CA (--peer-trusted-ca-file) and that our \
                        --peer-cert-file names this member's peer URL host",
                "peer rejected our certificate: remote error: tls: bad certificate"
            ),
            "cluster" => tracing::error!(peer, "request sent was ignored ({error})"),
            "removed" => tracing::error!(peer, "failed to dial {peer} ({error})"),
            _ => tracing::warn!(
                peer,
                error,
                hint = "check that the peer runs and that its advertised peer URL is reachable \
                        from this host (address, port, firewall)",
                "peer is unreachable"
            ),
        }
    }
}

/// The listener side of links: checks a peer's hello and hands its socket to the Raft thread.
pub struct LinkAcceptor {
    cluster_id: u64,
    member_id: u64,
    inputs: RaftInbox,
    membership: MembershipView,
    /// `--peer-client-cert-auth`: the certificate must be valid for the peer URLs of the
    /// member the hello claims to be, as the TLS layer checked it against the address.
    check_certificate_names: bool,
}

impl LinkAcceptor {
    /// Takes a connection whose first byte (already read) was the start of [`LINK_MAGIC`].
    pub async fn accept(&self, mut conn: Conn) {
        let remote = conn.remote_addr().to_string();
        let mut hello = [0; HELLO_LEN];
        hello[0] = LINK_MAGIC[0];
        match tokio::time::timeout(HELLO_TIMEOUT, conn.read_exact(&mut hello[1..])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return tracing::debug!(remote, error = %e, "peer link hello cut short"),
            Err(_) => return tracing::debug!(remote, "peer link sent no hello"),
        }
        let refusal = match Hello::decode(&hello) {
            Err(e) => Some(e),
            Ok(h) if h.cluster_id != self.cluster_id => {
                tracing::error!(
                    from = format!("{:x}", h.from),
                    "request cluster ID mismatch (got {:x} want {:x})",
                    h.cluster_id,
                    self.cluster_id
                );
                // Worded from the dialer's side, which logs it (etcd's text).
                Some(format!(
                    "cluster ID mismatch: peer[{:x}]={:x}, local={:x}",
                    self.member_id, self.cluster_id, h.cluster_id
                ))
            }
            Ok(h) if self.membership.current().removed.contains(&h.from) => {
                tracing::warn!(
                    from = format!("{:x}", h.from),
                    "rejected the stream from peer {:x} since it was removed",
                    h.from
                );
                Some(REMOVED.to_string())
            }
            Ok(h) if let Some(refusal) = self.certificate_refusal(&conn, h.from) => {
                tracing::warn!(
                    remote,
                    from = format!("{:x}", h.from),
                    "rejected the link from peer {:x}: {refusal}",
                    h.from
                );
                Some(refusal)
            }
            Ok(h) if h.to != self.member_id => Some(format!(
                "member {:x} received messages for {:x}",
                self.member_id, h.to
            )),
            Ok(h) => {
                if let Err(e) = write_verdict(&mut conn, None).await {
                    return tracing::debug!(remote, error = %e, "peer link closed during hello");
                }
                let link = match conn.into_std() {
                    Ok((StdSocket::Tcp(s), session)) => LinkSocket::from_std_tcp(s)
                        .map(|socket| PeerLink::new(socket, session.map(Into::into))),
                    Ok((StdSocket::Unix(s), session)) => LinkSocket::from_std_unix(s)
                        .map(|socket| PeerLink::new(socket, session.map(Into::into))),
                    Err(e) => Err(e),
                };
                match link {
                    Ok(link) => {
                        let _ = self.inputs.try_send(RaftInput::LinkAccepted {
                            from: h.from,
                            link: Box::new(link),
                        });
                    }
                    Err(e) => tracing::warn!(remote, error = %e, "cannot take over a peer link"),
                }
                return;
            }
        };
        if let Some(reason) = refusal {
            let _ = write_verdict(&mut conn, Some(&reason)).await;
        }
    }
}

/// The membership as this member knows it: the applied one once the member runs, the
/// bootstrap one before.
#[derive(Clone)]
struct MembershipView {
    boot: Membership,
    server: Arc<OnceLock<Arc<EtcdServer>>>,
}

impl MembershipView {
    fn current(&self) -> Membership {
        match self.server.get() {
            Some(server) => server.cluster_state().membership,
            None => self.boot.clone(),
        }
    }
}

impl LinkAcceptor {
    /// Why the client certificate of `conn` cannot speak for member `from`, if it cannot:
    /// it must be valid (Go's `VerifyHostname`) for the host of one of that member's peer
    /// URLs. Only checked with client-certificate authentication on the peer port.
    fn certificate_refusal(&self, conn: &Conn, from: u64) -> Option<String> {
        if !self.check_certificate_names {
            return None;
        }
        let leaf = conn.peer_certificates().first()?;
        let identity = match CertIdentity::from_der(leaf) {
            Ok(identity) => identity,
            Err(e) => return Some(e.to_string()),
        };
        let peer_urls = self
            .membership
            .current()
            .members
            .get(&from)
            .map(|m| m.peer_urls.clone())
            .unwrap_or_default();
        certificate_speaks_for(&identity, &peer_urls, from).err()
    }
}

/// Whether a certificate may speak for the member with these peer URLs: it must be valid for
/// the host of one of them. A certificate naming no host at all passes, as it passes the
/// transport's address check (etcd's `checkSAN` skips it too); so does a member with no TCP
/// peer URL (unix sockets) or one not known here yet.
fn certificate_speaks_for(
    identity: &CertIdentity,
    peer_urls: &[String],
    member: u64,
) -> Result<(), String> {
    if identity.ip_addresses.is_empty() && identity.dns_names.is_empty() {
        return Ok(());
    }
    let hosts: Vec<String> = peer_urls
        .iter()
        .filter_map(|u| url::Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .filter_map(|u| u.host_str().map(str::to_string))
        .collect();
    if hosts.is_empty() || hosts.iter().any(|h| identity.matches_hostname(h)) {
        return Ok(());
    }
    let valid_for: Vec<String> = identity
        .ip_addresses
        .iter()
        .map(ToString::to_string)
        .chain(identity.dns_names.iter().cloned())
        .collect();
    Err(format!(
        "x509: certificate is valid for {}, not {} (the peer URL host of member {member:x})",
        valid_for.join(", "),
        hosts.join(", ")
    ))
}

struct PeerService {
    cluster_id: u64,
    member_id: u64,
    inputs: RaftInbox,
    membership: MembershipView,
    /// Set once the member has started; lease calls before that find no leader here.
    server: Arc<OnceLock<Arc<EtcdServer>>>,
    inbox: SnapshotInbox,
    snap_dir: std::path::PathBuf,
    snapshot_bytes_max: u64,
    store: Arc<Store>,
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
            .try_send(RaftInput::Peer(Box::new(msg)))
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

    async fn hash_kv(
        &self,
        request: tonic::Request<etcd_api::etcdserverpb::HashKvRequest>,
    ) -> Result<Response<etcd_api::etcdserverpb::HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let store = self.store.clone();
        let hash = tokio::task::spawn_blocking(move || store.hash_kv(revision))
            .await
            .map_err(|e| Status::internal(format!("hash task failed: {e}")))?
            .map_err(ServerError::from)?;
        Ok(Response::new(etcd_api::etcdserverpb::HashKvResponse {
            header: Some(etcd_api::etcdserverpb::ResponseHeader {
                cluster_id: self.cluster_id,
                member_id: self.member_id,
                revision: hash.current_revision,
                raft_term: 0,
            }),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            hash_revision: hash.hash_revision,
        }))
    }

    async fn members(
        &self,
        _request: tonic::Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self.membership.current().members.into_values().collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(ips: &[&str], names: &[&str]) -> CertIdentity {
        CertIdentity {
            common_name: None,
            issuer_common_name: None,
            ip_addresses: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            dns_names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn a_certificate_speaks_only_for_members_at_its_hosts() {
        let urls = ["https://127.0.0.2:2380".to_string()];
        assert!(certificate_speaks_for(&identity(&["127.0.0.2"], &[]), &urls, 2).is_ok());
        let refused = certificate_speaks_for(&identity(&["127.0.0.1"], &["a.example"]), &urls, 2)
            .unwrap_err();
        assert_eq!(
            refused,
            "x509: certificate is valid for 127.0.0.1, a.example, not 127.0.0.2 (the peer URL \
             host of member 2)"
        );
        let by_name = ["https://m2.example:2380".to_string()];
        assert!(certificate_speaks_for(&identity(&[], &["*.example"]), &by_name, 2).is_ok());
        assert!(certificate_speaks_for(&identity(&[], &["m3.example"]), &by_name, 2).is_err());
        // Nothing to tie it to: a certificate without names, a member with no TCP URL.
        assert!(certificate_speaks_for(&identity(&[], &[]), &urls, 2).is_ok());
        let unix = ["unixs://m2.sock".to_string()];
        assert!(certificate_speaks_for(&identity(&["127.0.0.1"], &[]), &unix, 2).is_ok());
    }

    #[test]
    fn a_hello_round_trips_and_a_foreign_one_is_refused() {
        let hello = Hello {
            cluster_id: 0xdead_beef,
            from: 1,
            to: u64::MAX,
        };
        let bytes = hello.encode();
        assert_eq!(bytes[0], 0, "a link must not look like HTTP");
        assert_eq!(Hello::decode(&bytes), Ok(hello));

        let mut newer = bytes;
        newer[LINK_MAGIC.len()] = LINK_VERSION + 1;
        assert!(Hello::decode(&newer).unwrap_err().contains("version"));
        let mut http = bytes;
        http[..5].copy_from_slice(b"GET /");
        assert!(Hello::decode(&http).is_err());
    }

    #[tokio::test]
    async fn the_verdict_carries_the_refusal_reason() {
        let (mut a, mut b) = tokio::io::duplex(256);
        write_verdict(&mut a, Some("cluster ID mismatch: local 1, remote 2"))
            .await
            .unwrap();
        write_verdict(&mut a, None).await.unwrap();
        assert_eq!(
            read_verdict(&mut b).await,
            Err("cluster ID mismatch: local 1, remote 2".to_string())
        );
        assert_eq!(read_verdict(&mut b).await, Ok(()));
    }

    #[test]
    fn peer_urls_name_their_socket_and_tls() {
        let (target, tls, host) = parse_peer_url("https://[::1]:2380").unwrap();
        assert!(tls);
        assert_eq!(host, "::1");
        assert!(matches!(target, PeerTarget::Tcp { port: 2380, .. }));
        let (target, tls, _) = parse_peer_url("unix://localhost:12345").unwrap();
        assert!(!tls);
        assert!(matches!(target, PeerTarget::Unix { path } if path == "localhost:12345"));
        assert!(parse_peer_url("ftp://x").is_err());
    }
}
