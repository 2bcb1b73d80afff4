//! The Raft loop itself. See the module docs of `raft` for the shape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use etcd_api::internalpb::InternalRequest;
use etcd_failpoints as failpoints;
use etcd_mvcc::Store;
use etcd_wal::Wal;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};
use tokio::sync::{oneshot, watch};

use super::bootstrap::{Bootstrapped, encode_cluster_state};
use super::confchange;
use super::guard::{self, LocalState, Route};
use super::links::{Links, PeerLink};
use super::logger::raft_logger;
use crate::apply::{
    ApplyContext, ApplyResult, ClusterState, META_ALARMS, META_AUTH, META_MEMBERSHIP,
    RevisionEvents, apply_request,
};
use crate::auth::tokens::SimpleTokens;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::lease::SharedLessor;
use crate::snapshot::SnapshotInbox;
use crate::wait::Wait;
use crate::watch::WatchHub;

/// Most inputs handled before the loop looks at `Ready` again: bounds the latency a burst of
/// proposals can add to ticks and to persisting the previous batch.
const INPUT_BATCH_MAX: usize = 4096;
/// etcd's `warnApplyDuration`: an apply slower than this is counted and logged.
const SLOW_APPLY: Duration = Duration::from_millis(100);
/// Proposal bytes handled before the next Ready: with `batch_append` they can all go out in one
/// append message, which must stay well below the peer transport's frame limit.
const INPUT_BATCH_BYTES_MAX: usize = 8 << 20;

/// What other tasks ask of the Raft loop.
pub enum RaftInput {
    /// Encoded [`InternalRequest`] and its request ID; its waiter is already registered.
    Propose { id: u64, data: Vec<u8> },
    /// Asks for a read index; answered once the leader confirmed it is still the leader.
    ReadIndex(oneshot::Sender<Result<u64, ServerError>>),
    /// A message from a peer that came another way than its link (a snapshot).
    Peer(Box<Message>),
    /// The dialer of this peer lost its link or could not make one.
    Unreachable(u64),
    /// A dialer established our link to `peer`; `closed` is how we tell it the link broke.
    LinkUp {
        peer: u64,
        link: Box<PeerLink>,
        closed: oneshot::Sender<String>,
    },
    /// A peer established its link to us.
    LinkAccepted { from: u64, link: Box<PeerLink> },
    /// Stop after making the backend durable; answered once stopped.
    Stop(oneshot::Sender<()>),
    /// A membership change; its waiter (`ConfChange.id`) is already registered.
    ProposeConfChange(Box<ConfChange>),
    /// Hand leadership to this member (we are the leader).
    TransferLeader(u64),
    /// Hand leadership to the voter that is most caught up and recently active (etcd's
    /// transfer before a leader stops).
    TransferLeaderToBest,
    /// How sending a snapshot to this peer went (true: it has it).
    SnapshotStatus(u64, bool),
}

/// Raft facts other tasks read without asking the loop.
#[derive(Default)]
pub struct RaftStatus {
    pub leader: AtomicU64,
    pub term: AtomicU64,
    pub commit_index: AtomicU64,
    pub is_leader: AtomicBool,
    /// Peer messages dropped because they break Raft's rules (`guard`).
    pub refused_peer_messages: AtomicU64,
}

/// The async side of the peer transport: dialers for the links, and snapshots, which go on
/// their own connection. It must not block.
pub trait MessageSender: Send {
    fn send_snapshot(&self, msg: Message);
    /// The members changed: `peers` maps every member (this one included) to its peer URLs.
    fn update_peers(&mut self, _peers: &std::collections::BTreeMap<u64, Vec<String>>) {}
}

/// A member without a peer transport (tests of the loop alone).
pub struct NoPeers;

impl MessageSender for NoPeers {
    fn send_snapshot(&self, msg: Message) {
        tracing::debug!(to = msg.to, "dropping a snapshot: no peer transport");
    }
}

/// A batch of read-index requests waiting for one confirmation round.
struct PendingRead {
    started: Instant,
    waiters: Vec<oneshot::Sender<Result<u64, ServerError>>>,
}

pub struct RaftLoop {
    node: RawNode<MemStorage>,
    wal: Wal,
    store: Arc<Store>,
    inputs: Receiver<RaftInput>,
    links: Links,
    sender: Box<dyn MessageSender>,
    status: Arc<RaftStatus>,
    wait: Arc<Wait>,
    applied_tx: watch::Sender<u64>,
    cluster: ClusterState,
    cluster_view: Arc<RwLock<ClusterState>>,
    lessor: SharedLessor,
    watch_hub: Arc<WatchHub>,
    snapshot_inbox: SnapshotInbox,
    tokens: Arc<SimpleTokens>,
    metrics: Arc<crate::metrics::Metrics>,
    v2: Arc<crate::v2::V2>,
    /// Applied entries between snapshots (`--snapshot-count`).
    snapshot_count: u64,
    /// Entries kept in the log after a snapshot (`--experimental-snapshot-catchup-entries`).
    snapshot_catchup_entries: u64,
    last_snapshot_index: u64,
    election_timeout: Duration,
    strict_reconfig_check: bool,
    member_id: u64,
    tick: Duration,
    read_timeout: Duration,
    reads_waiting: Vec<oneshot::Sender<Result<u64, ServerError>>>,
    reads_in_flight: HashMap<u64, PendingRead>,
    next_read_ctx: u64,
    refusal_log: RefusalLog,
}

pub struct RaftLoopParts {
    pub inputs: Receiver<RaftInput>,
    pub links: Links,
    pub sender: Box<dyn MessageSender>,
    pub status: Arc<RaftStatus>,
    pub wait: Arc<Wait>,
    pub applied_tx: watch::Sender<u64>,
    pub cluster_view: Arc<RwLock<ClusterState>>,
    pub lessor: SharedLessor,
    pub watch_hub: Arc<WatchHub>,
    pub snapshot_inbox: SnapshotInbox,
    pub tokens: Arc<SimpleTokens>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub v2: Arc<crate::v2::V2>,
}

impl RaftLoop {
    pub fn new(
        cfg: &ServerConfig,
        boot: Bootstrapped,
        store: Arc<Store>,
        parts: RaftLoopParts,
    ) -> Result<RaftLoop, ServerError> {
        let raft_cfg = Config {
            id: boot.member_id,
            election_tick: cfg.election_ticks(),
            heartbeat_tick: 1,
            applied: boot.applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 512,
            // Proposals handled in one input batch go out as one append per follower instead of
            // one each: a follower then steps, and acknowledges, one message per batch rather
            // than one per proposal. The input batch is capped in bytes so that a batched
            // append stays far below the peer frame limit.
            batch_append: true,
            check_quorum: true,
            pre_vote: cfg.pre_vote,
            ..Config::default()
        };
        raft_cfg
            .validate()
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        let logger = raft_logger(boot.member_id);
        let mut node = RawNode::new(&raft_cfg, boot.storage, &logger)
            .map_err(|e| ServerError::Raft(e.to_string()))?;

        if boot.fresh {
            // Record the bootstrap membership in the backend, as applied up to the bootstrap
            // entries, before anything else is applied.
            let (membership, alarms, auth) = encode_cluster_state(&boot.cluster);
            let v2 = &parts.v2;
            store.apply(|batch| {
                batch.meta_put(META_MEMBERSHIP, &membership);
                batch.meta_put(META_ALARMS, &alarms);
                batch.meta_put(META_AUTH, &auth);
                if boot.applied > 0 {
                    batch.set_consistent_index(boot.applied, 1);
                    // The bootstrap entries count as applied: the v2 store's mirror of the
                    // membership gets them here.
                    for member in boot.cluster.membership.members.values() {
                        let change = confchange::MemberChange::Added(member.clone());
                        mirror_member_change(batch, v2, &change);
                    }
                }
            })?;
            // Durable at once (one flush in the member's life): a copy of the backend taken
            // any time later (a backup) knows the membership the log starts from.
            store.force_commit()?;
        }
        // A lone voter need not wait an election timeout to find out nobody else is there.
        if boot.cluster.voters == [boot.member_id] {
            node.campaign()
                .map_err(|e| ServerError::Raft(e.to_string()))?;
        }
        *parts
            .cluster_view
            .write()
            .unwrap_or_else(|e| e.into_inner()) = boot.cluster.clone();
        let mut links = parts.links;
        links.set_peers(&boot.cluster.membership.peer_urls());
        Ok(RaftLoop {
            node,
            wal: {
                let mut wal = boot.wal;
                let histogram = parts.metrics.wal_fsync_duration.clone();
                wal.set_fsync_observer(Box::new(move |took| histogram.observe(took.as_secs_f64())));
                wal
            },
            store,
            inputs: parts.inputs,
            links,
            sender: parts.sender,
            status: parts.status,
            wait: parts.wait,
            applied_tx: parts.applied_tx,
            cluster: boot.cluster,
            cluster_view: parts.cluster_view,
            lessor: parts.lessor,
            watch_hub: parts.watch_hub,
            snapshot_inbox: parts.snapshot_inbox,
            tokens: parts.tokens,
            metrics: parts.metrics,
            v2: parts.v2,
            snapshot_count: cfg.snapshot_count.max(1),
            snapshot_catchup_entries: cfg.snapshot_catchup_entries,
            last_snapshot_index: boot.snapshot_index,
            election_timeout: cfg.election_timeout,
            strict_reconfig_check: cfg.strict_reconfig_check,
            member_id: boot.member_id,
            tick: cfg.heartbeat_interval,
            read_timeout: cfg.election_timeout * 2,
            reads_waiting: Vec::new(),
            reads_in_flight: HashMap::new(),
            // Not 1: a restarted member must not reuse the contexts of its previous life while
            // the leader may still hold them.
            next_read_ctx: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
            refusal_log: RefusalLog::default(),
        })
    }

    /// Runs until every input sender is dropped. An error here means this member can no longer
    /// guarantee durability (a WAL or backend write failed); the caller must stop the process.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let mut busy = false;
            let mut batch_bytes = 0;
            for _ in 0..INPUT_BATCH_MAX {
                if batch_bytes >= INPUT_BATCH_BYTES_MAX {
                    break;
                }
                match self.inputs.try_recv() {
                    Ok(RaftInput::Stop(done)) => return self.stop(done),
                    Ok(input) => {
                        busy = true;
                        batch_bytes += input_bytes(&input);
                        self.handle_input(input)?;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.stop_unasked(),
                }
            }
            // Sleep in the poll only when there is nothing to do, and only after one more
            // look at the channel made after announcing the sleep (see `RaftInbox`).
            let mut timeout = Duration::ZERO;
            if !busy {
                self.links.park();
                match self.inputs.try_recv() {
                    Ok(RaftInput::Stop(done)) => return self.stop(done),
                    Ok(input) => {
                        self.links.unpark();
                        self.handle_input(input)?;
                    }
                    Err(TryRecvError::Empty) => {
                        timeout = next_tick.saturating_duration_since(Instant::now());
                    }
                    Err(TryRecvError::Disconnected) => return self.stop_unasked(),
                }
            }
            self.links
                .poll(timeout)
                .map_err(|e| ServerError::Internal(format!("polling the peer links: {e}")))?;
            for msg in self.links.take_received() {
                self.step_peer(msg, Route::Link)?;
            }
            for peer in self.links.take_unreachable() {
                self.node.report_unreachable(peer);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.node.tick();
                self.expire_reads(now);
                next_tick += self.tick;
                if next_tick < now {
                    // We fell behind (a long fsync); do not fire a burst of ticks.
                    next_tick = now + self.tick;
                }
            }
            self.start_read_round();
            self.on_ready()?;
        }
    }

    /// Every input sender is gone: the member is being torn down without a Stop.
    fn stop_unasked(&mut self) -> Result<(), ServerError> {
        self.store.force_commit()?;
        Ok(())
    }

    fn stop(&mut self, done: oneshot::Sender<()>) -> Result<(), ServerError> {
        let result = self.store.force_commit().map_err(ServerError::from);
        tracing::info!("raft loop stopped");
        let _ = done.send(());
        result
    }

    /// Steps a message from a peer into Raft once `guard` finds nothing wrong with it. A
    /// panic inside raft-rs (a bug of ours or theirs, not a lie: lies are refused first) stops
    /// the member with the message and the peer named.
    fn step_peer(&mut self, msg: Message, route: Route) -> Result<(), ServerError> {
        if let Err(problem) = guard::check(&msg, route, &LocalState::of(&self.node)) {
            self.status
                .refused_peer_messages
                .fetch_add(1, Ordering::Relaxed);
            self.refusal_log
                .report(msg.from, msg.get_msg_type(), &problem);
            if route == Route::SnapshotStream {
                let index = msg.get_snapshot().get_metadata().index;
                if let Some(staged) = self.snapshot_inbox.take(index) {
                    let _ = std::fs::remove_file(staged);
                }
            }
            return Ok(());
        }
        let (kind, from, term, index) = (msg.get_msg_type(), msg.from, msg.term, msg.index);
        let node = &mut self.node;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.step(msg))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "raft rejected a peer message");
                Ok(())
            }
            Err(panic) => Err(ServerError::Internal(format!(
                "raft panicked stepping {kind:?} (term {term}, index {index}) from peer \
                 {from:x}: {}",
                panic_text(&panic)
            ))),
        }
    }

    fn handle_input(&mut self, input: RaftInput) -> Result<(), ServerError> {
        match input {
            RaftInput::Propose { id, data } => {
                if let Err(e) = self.node.propose(Vec::new(), data) {
                    self.fail_proposal(id, e);
                }
            }
            RaftInput::ReadIndex(reply) => self.reads_waiting.push(reply),
            RaftInput::Peer(msg) => self.step_peer(*msg, Route::SnapshotStream)?,
            RaftInput::Unreachable(peer) => {
                self.links.mark_down(peer);
                self.node.report_unreachable(peer);
            }
            RaftInput::LinkUp { peer, link, closed } => {
                if let Err(e) = self.links.link_up(peer, link, closed) {
                    tracing::warn!(peer = format!("{peer:x}"), error = %e, "cannot poll a peer link");
                }
            }
            RaftInput::LinkAccepted { from, link } => {
                if let Err(e) = self.links.accept(from, link) {
                    tracing::warn!(from = format!("{from:x}"), error = %e, "cannot poll a peer link");
                }
            }
            RaftInput::ProposeConfChange(cc) => self.propose_conf_change(*cc),
            RaftInput::TransferLeader(target) => self.node.transfer_leader(target),
            RaftInput::TransferLeaderToBest => {
                if let Some(target) = self.best_transferee() {
                    self.node.transfer_leader(target);
                }
            }
            RaftInput::SnapshotStatus(peer, delivered) => {
                let status = if delivered {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.node.report_snapshot(peer, status);
            }
            // Handled by the loop before it gets here.
            RaftInput::Stop(done) => drop(done),
        }
        Ok(())
    }

    /// A snapshot from the leader: the backend file that came with it replaces ours, and the
    /// log restarts after it.
    ///
    /// The WAL records the snapshot before the backend is replaced (as etcd saves it before
    /// applying it): a crash in between leaves the received file staged, and the restart
    /// finishes the restore from it (`bootstrap::finish_staged_restore`). The other order
    /// would leave a backend ahead of a WAL that never heard of the snapshot.
    fn apply_snapshot(&mut self, snap: raft::prelude::Snapshot) -> Result<(), ServerError> {
        let meta = snap.get_metadata().clone();
        let (applied, _) = self.store.consistent_index();
        let staged = if meta.index > applied {
            Some(self.snapshot_inbox.take(meta.index).ok_or_else(|| {
                ServerError::Internal(format!(
                    "raft snapshot at index {} arrived without its backend file",
                    meta.index
                ))
            })?)
        } else {
            None
        };
        self.wal.save_snapshot(etcd_wal::SnapshotMarker {
            index: meta.index,
            term: meta.term,
        })?;
        if let Some(path) = staged {
            failpoints::point(failpoints::names::RAFT_BEFORE_APPLY_SNAP);
            self.store.restore_from(&path, meta.index)?;
            failpoints::point(failpoints::names::RAFT_AFTER_APPLY_SNAP);
            // Watchers never heard of the revisions the snapshot brought: they catch up.
            self.watch_hub.restore();
            let mut cluster = super::bootstrap::load_cluster_state(&self.store)?
                .unwrap_or_else(|| self.cluster.clone());
            cluster.voters = meta.get_conf_state().voters.clone();
            cluster.learners = meta.get_conf_state().learners.clone();
            let peers_before = self.cluster.membership.peer_urls();
            self.cluster = cluster;
            *self.cluster_view.write().unwrap_or_else(|e| e.into_inner()) = self.cluster.clone();
            let peers_after = self.cluster.membership.peer_urls();
            if peers_after != peers_before {
                self.links.set_peers(&peers_after);
                self.sender.update_peers(&peers_after);
            }
            let mut lessor =
                crate::lease::Lessor::new(crate::lease::Lessor::min_ttl_for(self.election_timeout));
            crate::lease::load(&self.store, &mut lessor)?;
            *self.lessor.lock() = lessor;
            self.v2
                .replace(crate::v2::persist::load(&self.store).map_err(ServerError::Internal)?);
            let (restored, _) = self.store.consistent_index();
            tracing::info!(
                snapshot_index = meta.index,
                backend_applied_index = restored,
                "restored the backend from the leader's snapshot"
            );
            self.applied_tx.send_replace(restored);
        }
        self.node
            .mut_store()
            .wl()
            .apply_snapshot(snap)
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        self.last_snapshot_index = meta.index;
        Ok(())
    }

    /// Every `--snapshot-count` applied entries: make the backend durable, record a snapshot
    /// marker in the WAL, and drop log entries (keeping some for slow followers, as etcd).
    fn maybe_snapshot(&mut self) -> Result<(), ServerError> {
        let (applied, _) = self.store.consistent_index();
        if applied < self.last_snapshot_index + self.snapshot_count {
            return Ok(());
        }
        let term = raft::Storage::term(self.node.store(), applied)
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        failpoints::point(failpoints::names::RAFT_BEFORE_SAVE_SNAP);
        // The WAL may drop entries only once the backend durably has them.
        self.store.force_commit()?;
        self.wal.save_snapshot(etcd_wal::SnapshotMarker {
            index: applied,
            term,
        })?;
        failpoints::point(failpoints::names::RAFT_AFTER_SAVE_SNAP);
        let compact_to = applied.saturating_sub(self.snapshot_catchup_entries);
        let first = raft::Storage::first_index(self.node.store())
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        if compact_to > first {
            self.node
                .mut_store()
                .wl()
                .compact(compact_to)
                .map_err(|e| ServerError::Raft(e.to_string()))?;
            self.wal.release_to(compact_to)?;
        }
        tracing::info!(
            applied_index = applied,
            compacted_to = compact_to,
            "snapshot taken"
        );
        self.last_snapshot_index = applied;
        Ok(())
    }

    /// Checks (on the leader, with Raft's view of who is up) and proposes a membership change.
    /// The voter (not this member) with the most of the log among those recently active; the
    /// one that can take over soonest. None when this member leads no one.
    fn best_transferee(&self) -> Option<u64> {
        let raft = &self.node.raft;
        if raft.state != raft::StateRole::Leader {
            return None;
        }
        let prs = raft.prs();
        prs.conf()
            .voters()
            .ids()
            .iter()
            .filter(|id| *id != raft.id)
            .filter_map(|id| prs.get(id).map(|p| (id, p)))
            .max_by_key(|(id, p)| (p.recent_active, p.matched, std::cmp::Reverse(*id)))
            .map(|(id, _)| id)
    }

    fn propose_conf_change(&mut self, cc: ConfChange) {
        let request_id = cc.id;
        let is_leader = self.node.raft.state == StateRole::Leader;
        if self.strict_reconfig_check
            && is_leader
            && let Err(e) = confchange::check_strict(&self.node, &self.cluster, &cc)
        {
            self.wait.trigger(request_id, Err(e));
            return;
        }
        if let Err(e) = self.node.propose_conf_change(Vec::new(), cc) {
            let err = if self.node.raft.leader_id == raft::INVALID_ID {
                ServerError::NoLeader
            } else {
                // raft-rs allows one pending configuration change at a time.
                ServerError::Raft(e.to_string())
            };
            self.wait.trigger(request_id, Err(err));
        }
    }

    /// A proposal raft-rs refused (no leader, or leadership in transfer): answer its waiter now
    /// rather than letting it time out.
    fn fail_proposal(&self, id: u64, e: raft::Error) {
        let err = if self.node.raft.leader_id == raft::INVALID_ID {
            ServerError::NoLeader
        } else {
            ServerError::Raft(e.to_string())
        };
        self.wait.trigger(id, Err(err));
    }

    /// Sends one read-index request for every read that arrived since the last round, so
    /// concurrent linearizable reads share one heartbeat round.
    fn start_read_round(&mut self) {
        if self.reads_waiting.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.reads_waiting);
        if self.node.raft.leader_id == raft::INVALID_ID {
            for w in waiters {
                let _ = w.send(Err(ServerError::NoLeader));
            }
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx = self.next_read_ctx.wrapping_add(1);
        self.node.read_index(read_ctx_bytes(self.member_id, ctx));
        self.reads_in_flight.insert(
            ctx,
            PendingRead {
                started: Instant::now(),
                waiters,
            },
        );
    }

    /// raft-rs drops read-index requests in some cases (leader change, lost messages); their
    /// waiters are released after a while so the caller can retry.
    fn expire_reads(&mut self, now: Instant) {
        let timeout = self.read_timeout;
        self.reads_in_flight
            .retain(|_, pending| now.duration_since(pending.started) < timeout);
    }

    fn on_ready(&mut self) -> Result<(), ServerError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        // The term first: a reader that sees a new leader then also sees its term.
        self.status
            .term
            .store(self.node.raft.term, Ordering::Release);
        if let Some(ss) = ready.ss() {
            let previous_leader = self.status.leader.swap(ss.leader_id, Ordering::AcqRel);
            // etcd counts every new leader seen, the first one included.
            if ss.leader_id != raft::INVALID_ID && ss.leader_id != previous_leader {
                self.metrics.leader_changes_seen_total.inc();
            }
            log_leader_change(
                self.member_id,
                previous_leader,
                ss.leader_id,
                self.node.raft.term,
            );
            let was_leader = self.status.is_leader.load(Ordering::Acquire);
            let is_leader = ss.raft_state == StateRole::Leader;
            self.status.is_leader.store(is_leader, Ordering::Release);
            // Only the leader keeps lease deadlines; a new leader gives every lease its full
            // TTL plus an election timeout, so the change itself expires nothing.
            if is_leader && !was_leader {
                self.lessor
                    .lock()
                    .promote(Instant::now(), self.election_timeout);
            } else if !is_leader && was_leader {
                self.lessor.lock().demote();
            }
        }
        // A leader may send before persisting (Raft paper §10.2.1); followers' replies wait.
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.apply_snapshot(ready.snapshot().clone())?;
        }
        // Committed entries are applied after the new entries are durable and acknowledged,
        // together with those the advance below commits: a follower's ack does not wait for
        // its apply, and one backend transaction covers both sets.
        let mut committed = ready.take_committed_entries();
        failpoints::point(failpoints::names::RAFT_BEFORE_SAVE);
        self.wal.save(ready.hs(), ready.entries())?;
        failpoints::point(failpoints::names::RAFT_AFTER_SAVE);
        {
            let mut core = self.node.mut_store().wl();
            core.append(ready.entries())
                .map_err(|e| ServerError::Raft(e.to_string()))?;
            if let Some(hs) = ready.hs() {
                core.set_hardstate(hs.clone());
            }
        }
        self.send(ready.take_persisted_messages());
        for rs in ready.take_read_states() {
            self.complete_read(&rs.request_ctx, rs.index);
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            let hard_state = {
                let mut core = self.node.mut_store().wl();
                core.mut_hard_state().commit = commit;
                core.hard_state().clone()
            };
            // Recorded in the WAL (written, not synced: a commit-only save), so that what the
            // WAL says is committed keeps up on a lone or idle member, and a copy of the WAL
            // (a backup) knows every entry that was acknowledged.
            self.wal.save(Some(&hard_state), &[])?;
        }
        self.send(light.take_messages());
        committed.extend(light.take_committed_entries());
        self.apply(committed)?;
        self.node.advance_apply();
        self.maybe_snapshot()?;
        self.status
            .commit_index
            .store(self.node.raft.raft_log.committed, Ordering::Release);
        Ok(())
    }

    /// Writes messages to the peers' links now (snapshots go through the async side).
    fn send(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        for msg in messages {
            if msg.get_msg_type() == raft::prelude::MessageType::MsgSnapshot {
                self.sender.send_snapshot(msg);
            } else {
                self.links.queue(&msg);
            }
        }
        self.links.flush_all();
    }

    fn complete_read(&mut self, ctx: &[u8], index: u64) {
        let Some(ctx) = parse_read_ctx(self.member_id, ctx) else {
            return;
        };
        if let Some(pending) = self.reads_in_flight.remove(&ctx) {
            for w in pending.waiters {
                let _ = w.send(Ok(index));
            }
        }
    }

    /// Applies committed entries in one backend transaction, then answers the waiters: a
    /// client hears of its write only once a read would see it.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), ServerError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let last_index = last.index;
        let (applied_before, _) = self.store.consistent_index();
        let member_id = self.member_id;
        let peers_before = self.cluster.membership.peer_urls();
        let node = &mut self.node;
        let cluster = &mut self.cluster;
        let mut results: Vec<(u64, ApplyResult)> = Vec::new();
        let mut conf_results: Vec<u64> = Vec::new();
        let mut removed_self = false;
        let lessor = &self.lessor;
        let tokens = &*self.tokens;
        let metrics = &*self.metrics;
        let v2 = &*self.v2;
        let events = self.store.apply(|batch| {
            let mut lessor = lessor.lock();
            let mut ctx = ApplyContext {
                cluster,
                cluster_changed: false,
                lessor: &mut lessor,
                tokens,
                v2,
                events: RevisionEvents::new(),
            };
            for entry in &entries {
                let already_applied = entry.index <= applied_before;
                match entry.get_entry_type() {
                    EntryType::EntryNormal => {
                        if already_applied || entry.data.is_empty() {
                            // Empty entries are the no-ops a new leader commits.
                        } else {
                            match InternalRequest::decode(entry.data.as_ref()) {
                                Ok(req) => {
                                    let (id, proposer) = (req.id, req.proposer_id);
                                    let started = Instant::now();
                                    let result = apply_request(batch, &mut ctx, req);
                                    let took = started.elapsed();
                                    if took > SLOW_APPLY {
                                        metrics.slow_apply_total.inc();
                                        tracing::warn!(
                                            took = ?took,
                                            expected_duration = ?SLOW_APPLY,
                                            index = entry.index,
                                            hint = "applies wait for the backend: check \
                                                    etcd_disk_backend_commit_duration_seconds, \
                                                    large ranges or txns, and the CPU",
                                            "apply request took too long"
                                        );
                                    }
                                    metrics.count_applied(&result);
                                    if proposer == member_id {
                                        results.push((id, result));
                                    }
                                }
                                Err(e) => tracing::error!(
                                    index = entry.index,
                                    error = %e,
                                    "skipping a log entry that does not decode"
                                ),
                            }
                        }
                    }
                    EntryType::EntryConfChange => {
                        // raft-rs must see every configuration change, even ones the backend
                        // already has, because its own view starts from the bootstrap state.
                        match confchange::apply_entry(
                            node,
                            ctx.cluster,
                            entry,
                            already_applied,
                            member_id,
                        ) {
                            Ok(outcome) => {
                                if let Some(change) = &outcome.change {
                                    mirror_member_change(batch, v2, change);
                                }
                                ctx.cluster_changed |= !already_applied;
                                removed_self |= outcome.removed_self;
                                conf_results.push(outcome.request_id);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "configuration change not applied")
                            }
                        }
                    }
                    EntryType::EntryConfChangeV2 => {
                        let mut cc = ConfChangeV2::default();
                        if let Err(e) = cc.merge_from_bytes(&entry.data) {
                            tracing::error!(index = entry.index, error = %e, "bad conf change");
                        } else if let Ok(cs) = node.apply_conf_change(&cc) {
                            ctx.cluster.voters = cs.voters.clone();
                            ctx.cluster.learners = cs.learners.clone();
                            ctx.cluster_changed |= !already_applied;
                        }
                    }
                }
                if !already_applied {
                    batch.set_consistent_index(entry.index, entry.term);
                }
            }
            if ctx.cluster_changed {
                let (membership, alarms, auth) = encode_cluster_state(ctx.cluster);
                batch.meta_put(META_MEMBERSHIP, &membership);
                batch.meta_put(META_ALARMS, &alarms);
                batch.meta_put(META_AUTH, &auth);
            }
            (ctx.cluster_changed, ctx.events)
        })?;
        let (cluster_changed, events) = events;
        if cluster_changed {
            *self.cluster_view.write().unwrap_or_else(|e| e.into_inner()) = self.cluster.clone();
            let peers_after = self.cluster.membership.peer_urls();
            if peers_after != peers_before {
                self.links.set_peers(&peers_after);
                self.sender.update_peers(&peers_after);
            }
        }
        let revision = self.store.current_revision();
        for id in conf_results {
            results.push((
                id,
                Ok(crate::apply::Applied {
                    revision,
                    response: crate::apply::ApplyResponse::Empty,
                }),
            ));
        }
        // Watchers hear of a change before its writer does, so a client that watches "from now"
        // after its write was answered does not get that write.
        self.publish_events(events);
        for (id, result) in results {
            self.wait.trigger(id, result);
        }
        self.applied_tx.send_replace(last_index);
        if removed_self {
            tracing::error!(
                member = format!("{:x}", self.member_id),
                "the member has been permanently removed from the cluster"
            );
            self.store.force_commit()?;
            return Err(ServerError::Removed);
        }
        Ok(())
    }

    /// Hands the batch's changes to watchers (after the commit, so a watcher that reads back
    /// finds them). Must not block the Raft thread.
    fn publish_events(&self, events: RevisionEvents) {
        self.watch_hub.notify(events, self.store.current_revision());
    }
}

/// Keeps the v2 store's copy of the membership (as etcd lays it out) in step.
fn mirror_member_change(
    batch: &mut etcd_mvcc::ApplyBatch<'_>,
    v2: &crate::v2::V2,
    change: &confchange::MemberChange,
) {
    use crate::v2::members;
    let mut store = v2.lock();
    let now = crate::v2::unix_nanos(std::time::SystemTime::now());
    match change {
        confchange::MemberChange::Added(m) => members::added(&mut store, m, false, now),
        confchange::MemberChange::Promoted(m) => members::added(&mut store, m, true, now),
        confchange::MemberChange::Removed(id) => members::removed(&mut store, *id, now),
    }
    crate::v2::persist::save_changes(batch, &mut store);
}

/// The entry bytes an input adds to the next appends: proposals, and proposals forwarded by
/// followers. Other inputs count as nothing.
fn input_bytes(input: &RaftInput) -> usize {
    match input {
        RaftInput::Propose { data, .. } => data.len(),
        RaftInput::Peer(msg) => msg.entries.iter().map(|e| e.data.len()).sum(),
        _ => 0,
    }
}

/// A read-index context: the member's ID, then its round counter. The leader tracks pending
/// read-index requests by context and silently drops a request whose context is already
/// pending, so contexts must be unique across members, not only within one: with a bare
/// counter, members that started together collided and their reads stalled until the
/// read timeout.
fn read_ctx_bytes(member_id: u64, counter: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&member_id.to_be_bytes());
    ctx.extend_from_slice(&counter.to_be_bytes());
    ctx
}

/// The counter of a context made by [`read_ctx_bytes`] for `member_id`, or `None` if the
/// context is not this member's.
fn parse_read_ctx(member_id: u64, ctx: &[u8]) -> Option<u64> {
    let (member, counter) = ctx.split_at_checked(8)?;
    if member != member_id.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(counter.try_into().ok()?))
}

/// Logs refused peer messages at most once per peer per minute, with what was wrong.
#[derive(Default)]
struct RefusalLog {
    /// When each peer was last logged. Bounded: `from` is whatever the message claims.
    last_logged: HashMap<u64, Instant>,
    /// Refusals since a peer was last logged, said with the next line.
    unlogged: HashMap<u64, u64>,
}

impl RefusalLog {
    const INTERVAL: Duration = Duration::from_secs(60);
    const PEERS_MAX: usize = 64;

    fn report(&mut self, from: u64, kind: MessageType, problem: &str) {
        let now = Instant::now();
        if self
            .last_logged
            .get(&from)
            .is_some_and(|at| now.duration_since(*at) < Self::INTERVAL)
        {
            *self.unlogged.entry(from).or_default() += 1;
            return;
        }
        if self.last_logged.len() >= Self::PEERS_MAX {
            self.last_logged.clear();
            self.unlogged.clear();
        }
        self.last_logged.insert(from, now);
        let also_refused = self.unlogged.remove(&from).unwrap_or(0);
        tracing::warn!(
            peer = format!("{from:x}"),
            also_refused,
            "dropped a {kind:?} from peer {from:x} that breaks Raft's rules: {problem} (a bug \
             or an impostor on the peer port: use peer TLS with --peer-client-cert-auth)"
        );
    }
}

/// The message of a caught panic.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

/// etcd's `raft.node` lines on every member when the leader it follows changes; operators
/// grep for "elected leader" to find elections.
fn log_leader_change(member_id: u64, previous: u64, leader: u64, term: u64) {
    if previous == leader {
        return;
    }
    if previous == 0 {
        tracing::info!(target: "raft", "raft.node: {member_id:x} elected leader {leader:x} at term {term}");
    } else if leader == 0 {
        tracing::info!(target: "raft", "raft.node: {member_id:x} lost leader {previous:x} at term {term}");
    } else {
        tracing::info!(
            target: "raft",
            "raft.node: {member_id:x} changed leader from {previous:x} to {leader:x} at term {term}"
        );
    }
}

#[cfg(test)]
mod read_ctx_tests {
    use super::*;

    #[test]
    fn contexts_of_different_members_never_collide() {
        assert_ne!(read_ctx_bytes(1, 7), read_ctx_bytes(2, 7));
        assert_eq!(parse_read_ctx(1, &read_ctx_bytes(1, 7)), Some(7));
        assert_eq!(parse_read_ctx(2, &read_ctx_bytes(1, 7)), None);
        assert_eq!(parse_read_ctx(1, &[0; 8]), None);
        assert_eq!(parse_read_ctx(1, &[]), None);
    }
}
