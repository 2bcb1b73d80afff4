//! Starting a member: open the backend, bootstrap or resume Raft, start the Raft thread, the
//! peer transport and the client listeners, then publish this member's attributes.

use std::fs;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use etcd_api::internalpb::{MemberAttributes, internal_request::Request};
use etcd_mvcc::{Store, StoreOptions};
use tokio::sync::{mpsc, watch};

use crate::apply::ClusterState;
use crate::auth::jwt::{JwtTokens, TokenKind, parse_token_option};
use crate::auth::tokens::SimpleTokens;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::lease::{self, Lessor, SharedLessor};
use crate::membership::url_string;
use crate::raft::{Links, RaftLoop, RaftLoopParts, RaftStatus, bootstrap};
use crate::refusal::PeerRefusals;
use crate::server::{EtcdServer, unix_millis};
use crate::wait::Wait;
use crate::{peer, serve, tls};

/// Inputs the Raft loop may hold before senders are refused ("too many requests"). Large
/// enough to absorb a burst from thousands of clients between two Ready rounds.
const RAFT_INPUT_CAPACITY: usize = 16 * 1024;

/// Password hashes computed at once, on the blocking pool: an Authenticate storm queues here
/// instead of taking every blocking thread (bcrypt costs tens of milliseconds each).
const BCRYPT_CONCURRENCY: usize = 2;

/// A started member. Dropping it does not stop it; call [`RunningServer::fatal`] to learn
/// when it failed.
pub struct RunningServer {
    pub server: Arc<EtcdServer>,
    fatal_rx: mpsc::Receiver<ServerError>,
    ready_rx: watch::Receiver<bool>,
    /// The client connections, drained before the member stops.
    drain: Arc<serve::ClientDrain>,
}

impl RunningServer {
    /// Resolves once the member's attributes are published through Raft and its client
    /// listeners accept (etcd's `ReadyNotify`; what systemd's READY=1 means).
    pub async fn ready(&self) {
        let mut ready = self.ready_rx.clone();
        // An error means the publishing task is gone, which only happens when the runtime
        // stops; there is nothing left to wait for then.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// [`RunningServer::ready`] as a future that owns what it waits on, for a task of its own.
    pub fn on_ready(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut ready = self.ready_rx.clone();
        async move {
            let _ = ready.wait_for(|r| *r).await;
        }
    }

    /// Resolves when the member hits an error it cannot continue after (a failed WAL or
    /// backend write): the process should exit, as etcd does.
    /// Stops the member as etcd's `Close` does: no new client connections, the requests in
    /// flight answered; then a leader hands leadership to a peer; then the Raft loop stops
    /// after making the WAL and the backend durable. Listeners stop with the process.
    pub async fn shutdown(&self) {
        // First the requests in flight (etcd's GracefulStop of its gRPC servers), for as long
        // as a request may take; open watches are cut at that limit.
        let limit = self.server.cfg.request_timeout();
        if !self.drain.drain(limit).await {
            tracing::info!(
                plain = %format!(
                    "client connections still open after {limit:?} (watches); closing them"
                ),
                "client connections still open after the request timeout; closing them"
            );
        }
        let (member, leader) = (self.server.member_id, self.server.leader());
        if leader != member {
            tracing::info!(
                zap_only = true,
                local_member_id = format!("{member:x}"),
                current_leader_member_id = format!("{leader:x}"),
                "skipped leadership transfer; local server is not leader"
            );
        } else if self.server.cluster_state().voters.len() < 2 {
            tracing::info!(
                zap_only = true,
                local_member_id = format!("{member:x}"),
                current_leader_member_id = format!("{leader:x}"),
                "skipped leadership transfer for single voting member cluster"
            );
        }
        match self.server.hand_over_leadership().await {
            Ok(Some(leader)) => tracing::info!(
                plain = %format!(
                    "{:x} transferred leadership to {leader:x} before stopping",
                    self.server.member_id
                ),
                from = %format!("{:x}", self.server.member_id),
                to = %format!("{leader:x}"),
                "leadership transfer finished"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                plain = %format!(
                    "{:x} failed to transfer leadership ({e}); the others elect a leader after \
                     the election timeout",
                    self.server.member_id
                ),
                error = %e,
                "failed to transfer leadership; the others elect a leader after the election timeout"
            ),
        }
        self.stop_raft().await;
    }

    async fn stop_raft(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A full queue means the loop is busy: try for a while rather than block the runtime.
        let mut input = crate::raft::RaftInput::Stop(tx);
        let mut sent = false;
        for _ in 0..100 {
            match self.server.raft_inputs.try_send(input) {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    input = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => break,
            }
        }
        if sent {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }

    pub async fn fatal(&mut self) -> ServerError {
        self.fatal_rx
            .recv()
            .await
            .unwrap_or_else(|| ServerError::Internal("the Raft loop stopped".into()))
    }
}

/// A data file that cannot be opened: what it is, why, and what the operator can do.
fn damaged(path: &std::path::Path, what: &str, e: &dyn std::fmt::Display) -> ServerError {
    ServerError::Config(format!(
        "cannot open the {what} {}: {e}; if the file is damaged, this member's data is lost: \
         remove the member (etcdctl member remove), clear its data dir and add it back \
         (etcdctl member add, --initial-cluster-state existing) to copy the data from the \
         others, or restore it from a backup (etcdctl snapshot restore)",
        path.display()
    ))
}

pub async fn start(cfg: ServerConfig) -> Result<RunningServer, ServerError> {
    crate::failpoint_http::start_from_env().await?;
    let jwt = match parse_token_option(&cfg.auth_token).map_err(ServerError::Config)? {
        TokenKind::Simple => None,
        TokenKind::Jwt(opts) => Some(JwtTokens::new(&opts).map_err(ServerError::Config)?),
    };
    // etcd's data dir becomes ours before anything opens it.
    crate::etcd_data::prepare(&crate::etcd_data::DataDirPaths::of(&cfg))
        .map_err(|e| ServerError::Config(format!("cannot start on etcd's data dir: {e}")))?;
    create_private_dir(&cfg.member_dir())?;
    let backend_path = cfg.backend_path();
    if let Some(parent) = backend_path.parent() {
        create_private_dir(parent)?;
    }
    let metrics = crate::metrics::Metrics::with_detail(cfg.metrics_extensive);
    // A restart reads the WAL on a thread of its own while the backend opens (each takes a
    // second or more for a large member, and they share nothing).
    let wal_reader = etcd_wal::Wal::exists(&cfg.wal_dir()).then(|| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || crate::raft::open_wal(&cfg))
    });
    let opening = std::time::Instant::now();
    let store = Arc::new(
        Store::open(
            &backend_path,
            StoreOptions {
                batch_interval: cfg.backend_batch_interval,
                batch_limit: cfg.backend_batch_limit,
                lose_unsynced_on_crash: etcd_failpoints::power_loss_simulated(),
            },
        )
        .map_err(|e| damaged(&backend_path, "backend", &e))?,
    );
    tracing::info!(
        zap_only = true,
        path = %backend_path.display(),
        took = ?opening.elapsed(),
        "opened backend db"
    );
    {
        let histogram = metrics.backend_commit_duration.clone();
        store.set_commit_observer(Box::new(move |took| histogram.observe(took.as_secs_f64())));
    }
    let opened_wal: Option<crate::raft::OpenedWal> =
        match wal_reader {
            Some(reader) => Some(reader.await.unwrap_or_else(|e| {
                Err(ServerError::Internal(format!("the WAL reader failed: {e}")))
            })),
            None => None,
        };
    let remote = if cfg.initial_cluster_state_new || opened_wal.is_some() {
        None
    } else {
        Some(peer::fetch_cluster(&cfg).await?)
    };
    let boot = bootstrap(&cfg, &store, remote, opened_wal)?;
    // A new member has nothing to compare yet (etcd checks only an initialized one).
    if cfg.initial_corrupt_check && !boot.fresh {
        let members: Vec<_> = boot.cluster.membership.members.values().cloned().collect();
        crate::corruption::initial_check(&cfg, boot.member_id, &store, &members).await?;
    }
    let member_id = boot.member_id;
    let cluster_id = boot.cluster_id;
    tracing::info!(
        plain = format!("starting member {member_id:x} in cluster {cluster_id:x}"),
        local_member_id = format!("{member_id:x}"),
        cluster_id = format!("{cluster_id:x}"),
        name = %cfg.name,
        data_dir = %cfg.data_dir.display(),
        "starting local member"
    );

    let (inputs_tx, inputs_rx) = sync_channel(RAFT_INPUT_CAPACITY);
    let (links, inputs_tx) = Links::new(
        member_id,
        inputs_tx,
        metrics.peers.clone(),
        cfg.heartbeat_interval,
    )
    .map_err(|e| ServerError::Internal(format!("cannot set up the peer links' poll: {e}")))?;
    let (applied_tx, applied_rx) = watch::channel(boot.applied);
    let status = Arc::new(RaftStatus::default());
    let wait = Arc::new(Wait::new(member_id, unix_millis()));
    let cluster_view = Arc::new(RwLock::new(ClusterState::default()));
    let mut lessor = Lessor::new(Lessor::min_ttl_for(cfg.election_timeout));
    lease::load(&store, &mut lessor)?;
    let lessor = SharedLessor::new(lessor);
    let server_slot = Arc::new(OnceLock::new());
    let snapshot_inbox = crate::snapshot::SnapshotInbox::default();
    let watch_hub = crate::watch::WatchHub::start(&cfg, store.clone())?;
    let tokens = Arc::new(SimpleTokens::new(cfg.auth_token_ttl));
    let v2 = Arc::new(crate::v2::V2::new(
        crate::v2::persist::load(&store)
            .map_err(|e| damaged(&cfg.backend_path(), "v2 store", &e))?,
    ));

    let (fatal_tx, fatal_rx) = mpsc::channel(1);
    let refusals = Arc::new(PeerRefusals::new(
        &cfg,
        member_id,
        cluster_id,
        tls::peer_client_config(&cfg)?,
        status.clone(),
        fatal_tx.clone(),
    ));
    let peers = peer::start(
        &cfg,
        member_id,
        cluster_id,
        &boot.cluster,
        inputs_tx.clone(),
        server_slot.clone(),
        store.clone(),
        snapshot_inbox.clone(),
        refusals,
    )
    .await?;
    let raft_loop = RaftLoop::new(
        &cfg,
        boot,
        store.clone(),
        RaftLoopParts {
            inputs: inputs_rx,
            links,
            sender: peers,
            status: status.clone(),
            wait: wait.clone(),
            applied_tx,
            cluster_view: cluster_view.clone(),
            lessor: lessor.clone(),
            watch_hub: watch_hub.clone(),
            snapshot_inbox,
            tokens: tokens.clone(),
            metrics: metrics.clone(),
            v2: v2.clone(),
        },
    )?;
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            // A panic must stop the member, not leave it serving without Raft: the fatal
            // channel outlives this thread (the peer refusals hold a sender too).
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raft_loop.run()))
                    .unwrap_or_else(|_| {
                        Err(ServerError::Internal("the Raft loop panicked".into()))
                    });
            if let Err(e) = outcome {
                tracing::error!(error = %e, "the Raft loop failed; this member must stop");
                let _ = fatal_tx.blocking_send(e);
            }
        })
        .map_err(|e| ServerError::Internal(format!("cannot start the Raft thread: {e}")))?;

    let server = Arc::new(EtcdServer {
        cfg: cfg.clone(),
        member_id,
        cluster_id,
        store,
        wait,
        raft_inputs: inputs_tx,
        status,
        applied_rx,
        cluster: cluster_view,
        lessor,
        peer_client_tls: tls::peer_client_config(&cfg)?,
        leader_channel: std::sync::Mutex::new(None),
        watch_hub,
        tokens,
        jwt,
        bcrypt_slots: tokio::sync::Semaphore::new(BCRYPT_CONCURRENCY),
        metrics: metrics.clone(),
        v2,
        read_budget: crate::read_budget::ReadBudget::new(crate::read_budget::BUDGET_BYTES),
    });
    // The peer service answers forwarded lease calls with this member's state.
    let _ = server_slot.set(server.clone());
    let clients = serve::bind_clients(&server).await?;
    serve::serve_metrics(&server).await?;
    let (ready_tx, ready_rx) = watch::channel(false);
    let publisher = server.clone();
    let drain = serve::client_drain();
    let serving_drain = drain.clone();
    tokio::spawn(async move {
        publish(&publisher).await;
        tracing::info!("ready to serve client requests");
        clients.serve(&serving_drain);
        let _ = ready_tx.send(true);
    });
    tokio::spawn(lease::run_expiry(server.clone()));
    tokio::spawn(crate::v2::run_expiry(server.clone()));
    if !cfg.corrupt_check_time.is_zero() {
        tokio::spawn(crate::corruption::monitor(
            server.clone(),
            cfg.corrupt_check_time,
        ));
    }
    Ok(RunningServer {
        server,
        fatal_rx,
        ready_rx,
        drain,
    })
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), ServerError> {
    fs::create_dir_all(dir)
        .map_err(|e| ServerError::Config(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // etcd keeps its data dir private (0700): it holds every key and value.
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Publishes this member's name and client URLs through Raft, retrying until it is applied,
/// as etcd does; only then does the member count as started.
async fn publish(server: &EtcdServer) {
    let attrs = MemberAttributes {
        member_id: server.member_id,
        name: server.cfg.name.clone(),
        client_urls: server
            .cfg
            .advertise_client_urls
            .iter()
            .map(url_string)
            .collect(),
    };
    let mut retry_delay = Duration::from_millis(50);
    loop {
        match server
            .propose(Request::MemberAttributes(attrs.clone()))
            .await
        {
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, "publishing member attributes failed; retrying");
                tokio::time::sleep(retry_delay).await;
                retry_delay = (retry_delay * 2).min(Duration::from_secs(1));
            }
        }
    }
    // Go's `%+v` of etcd's member attributes: `{Name:a ClientURLs:[http://x http://y]}`.
    let attributes = format!(
        "{{Name:{} ClientURLs:[{}]}}",
        attrs.name,
        attrs.client_urls.join(" ")
    );
    tracing::info!(
        plain = format!("published {attributes} to cluster {:x}", server.cluster_id),
        local_member_id = format!("{:x}", server.member_id),
        local_member_attributes = attributes,
        request_path = format!("/0/members/{:x}/attributes", server.member_id),
        cluster_id = format!("{:x}", server.cluster_id),
        publish_timeout = ?server.cfg.request_timeout(),
        "published local member to cluster through raft"
    );
    tracing::info!(
        plain = "enabled capabilities for version 3.4",
        cluster_version = crate::config::CLUSTER_VERSION,
        "enabled capabilities for version"
    );
}
