//! The Raft thread's own connections to its peers.
//!
//! A write is on the critical path of two network crossings (the append out, the ack back),
//! and every hand-off between the Raft thread and an async task on the way costs a thread
//! wake-up, which on a loaded machine costs as much as the work itself. So the Raft thread
//! owns its peer sockets: it writes appends and acks itself the moment Raft produces them
//! (the leader before its own fsync), and a mio poll wakes it when a peer's message arrives,
//! so a message goes from the socket to `step` with no other thread in between. The same poll
//! also waits for the loop's input channel (through a [`mio::Waker`]) and for the next tick.
//!
//! Connections are set up by tokio tasks in `peer` (dial, TLS handshake, the hello that names
//! the cluster and both members); they hand the established socket, and its TLS session,
//! over to this module. After that, a link carries length-prefixed Raft messages one way:
//! from the member that dialed to the one that accepted.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::oneshot;

use super::node::RaftInput;
use crate::peer_stats::{PeerCounters, PeerStats};

/// First bytes of a link's hello. A NUL never starts an HTTP request, so the peer listener
/// tells a link from HTTP and gRPC by the first byte alone.
pub const LINK_MAGIC: &[u8; 5] = b"\0RAFT";
/// Version of the framing after the hello.
pub const LINK_VERSION: u8 = 1;
/// The hello: magic, version, cluster ID, sender, receiver.
pub const HELLO_LEN: usize = LINK_MAGIC.len() + 1 + 3 * 8;
/// Largest frame (one encoded message) accepted: an append batch with large entries.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes queued for one peer, written or not, before further messages to it are dropped and
/// the peer is reported unreachable (Raft then probes instead of piling up appends).
const PENDING_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes read from one inbound link before the loop steps what it has and comes back: one
/// busy peer cannot starve ticks, proposals or the other peers.
const READ_PASS_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Socket reads are done in chunks of this size.
const READ_CHUNK: usize = 64 * 1024;
const WAKER: Token = Token(0);

/// The loop's input channel, paired with the wake-up of its poll.
#[derive(Clone)]
pub struct RaftInbox {
    tx: SyncSender<RaftInput>,
    wake: Arc<InboxWake>,
}

/// Wakes the Raft thread's poll, but only when it is parked: a busy loop drains the channel
/// on its own, and a wake-up is a system call.
pub struct InboxWake {
    parked: AtomicBool,
    waker: Waker,
}

impl RaftInbox {
    /// Same contract as [`SyncSender::try_send`].
    pub fn try_send(&self, input: RaftInput) -> Result<(), TrySendError<RaftInput>> {
        self.tx.try_send(input)?;
        // SeqCst pairs with the loop's store before its last look at the channel: either the
        // loop sees this input, or this sees the loop parked and wakes it.
        if self.wake.parked.swap(false, Ordering::SeqCst)
            && let Err(e) = self.wake.waker.wake()
        {
            tracing::error!(error = %e, "cannot wake the Raft thread");
        }
        Ok(())
    }
}

/// The socket under a link.
pub enum LinkSocket {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl LinkSocket {
    pub fn from_std_tcp(s: std::net::TcpStream) -> io::Result<LinkSocket> {
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        Ok(LinkSocket::Tcp(mio::net::TcpStream::from_std(s)))
    }

    pub fn from_std_unix(s: std::os::unix::net::UnixStream) -> io::Result<LinkSocket> {
        s.set_nonblocking(true)?;
        Ok(LinkSocket::Unix(mio::net::UnixStream::from_std(s)))
    }
}

impl Read for LinkSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LinkSocket::Tcp(s) => s.read(buf),
            LinkSocket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for LinkSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LinkSocket::Tcp(s) => s.write(buf),
            LinkSocket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for LinkSocket {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            LinkSocket::Tcp(s) => s.register(r, t, i),
            LinkSocket::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            LinkSocket::Tcp(s) => s.reregister(r, t, i),
            LinkSocket::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            LinkSocket::Tcp(s) => s.deregister(r),
            LinkSocket::Unix(s) => s.deregister(r),
        }
    }
}

/// An established connection to or from a peer, with its TLS session if it has one.
pub struct PeerLink {
    socket: LinkSocket,
    tls: Option<rustls::Connection>,
}

impl PeerLink {
    pub fn new(socket: LinkSocket, tls: Option<rustls::Connection>) -> PeerLink {
        PeerLink { socket, tls }
    }

    /// Writes `buf[*sent..]` until it is all written (true) or the socket is full (false).
    fn write_from(&mut self, buf: &[u8], sent: &mut usize) -> io::Result<bool> {
        match &mut self.tls {
            None => {
                while *sent < buf.len() {
                    match self.socket.write(&buf[*sent..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(true)
            }
            Some(tls) => loop {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.socket) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if *sent == buf.len() {
                    return Ok(true);
                }
                // Takes what fits in rustls' send buffer, which the loop above just emptied.
                match tls.writer().write(&buf[*sent..])? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => *sent += n,
                }
            },
        }
    }

    /// Reads what the socket has into `buf`, at most about `limit` bytes. Returns whether the
    /// peer closed the link (an error if it closed it uncleanly).
    fn read_into(&mut self, buf: &mut RecvBuf, limit: usize) -> io::Result<ReadOutcome> {
        let mut total = 0;
        loop {
            if total >= limit {
                return Ok(ReadOutcome::MoreToRead);
            }
            let n = match &mut self.tls {
                None => read_chunk(&mut self.socket, buf)?,
                Some(tls) => {
                    // Plaintext rustls already holds comes first.
                    match read_chunk(&mut tls.reader(), buf) {
                        Ok(Some(0)) => return Ok(ReadOutcome::Closed),
                        Ok(Some(n)) => {
                            total += n;
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => return Err(e),
                    }
                    let got = match tls.read_tls(&mut self.socket) {
                        Ok(0) => return Ok(ReadOutcome::Closed),
                        Ok(n) => Some(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    tls.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    // Session tickets, key updates, alerts: rustls may have something to say.
                    while tls.wants_write() {
                        match tls.write_tls(&mut self.socket) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                    match got {
                        Some(_) => continue,
                        None => {
                            // Decrypted records may still be waiting in rustls.
                            match read_chunk(&mut tls.reader(), buf)? {
                                Some(0) => return Ok(ReadOutcome::Closed),
                                Some(n) => {
                                    total += n;
                                    continue;
                                }
                                None => return Ok(ReadOutcome::Drained),
                            }
                        }
                    }
                }
            };
            match n {
                Some(0) => return Ok(ReadOutcome::Closed),
                Some(n) => total += n,
                None => return Ok(ReadOutcome::Drained),
            }
        }
    }
}

enum ReadOutcome {
    /// The socket has nothing more for now.
    Drained,
    /// The read limit was reached before the socket was drained.
    MoreToRead,
    Closed,
}

/// Bytes read from a link and not yet decoded. The vector is kept initialised beyond
/// `filled`, so a read does not zero its chunk first.
#[derive(Default)]
struct RecvBuf {
    bytes: Vec<u8>,
    filled: usize,
}

impl RecvBuf {
    fn data(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }

    fn spare(&mut self) -> &mut [u8] {
        if self.bytes.len() - self.filled < READ_CHUNK {
            self.bytes.resize(self.filled + READ_CHUNK, 0);
        }
        &mut self.bytes[self.filled..]
    }

    /// Drops the first `n` bytes (decoded frames); gives memory back after a large frame.
    fn consume(&mut self, n: usize) {
        self.bytes.copy_within(n..self.filled, 0);
        self.filled -= n;
        if self.bytes.len() > 4 * READ_CHUNK && self.filled < READ_CHUNK {
            self.bytes.truncate(2 * READ_CHUNK);
            self.bytes.shrink_to_fit();
        }
    }
}

/// One read into the spare end of `buf`: `Some(n)` bytes (0 at end of stream), or `None` if
/// nothing is available now.
fn read_chunk(src: &mut impl Read, buf: &mut RecvBuf) -> io::Result<Option<usize>> {
    loop {
        match src.read(buf.spare()) {
            Ok(n) => {
                buf.filled += n;
                return Ok(Some(n));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Appends one frame (length, then the encoded message) to `out`.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) -> Result<(), protobuf::ProtobufError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = msg.write_to_vec(out) {
        out.truncate(start);
        return Err(e);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Decodes the complete frames at the front of `buf` into `out`; returns the bytes they took.
/// A frame longer than [`FRAME_BYTES_MAX`] or a message that does not decode is an error: the
/// stream cannot be trusted after it.
pub fn decode_frames(buf: &[u8], out: &mut Vec<Message>) -> Result<usize, String> {
    let mut at = 0;
    while let Some(header) = buf.get(at..at + 4) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(format!(
                "frame of {len} bytes exceeds the limit of {FRAME_BYTES_MAX}"
            ));
        }
        let Some(body) = buf.get(at + 4..at + 4 + len) else {
            break;
        };
        let msg = Message::parse_from_bytes(body).map_err(|e| format!("bad message: {e}"))?;
        out.push(msg);
        at += 4 + len;
    }
    Ok(at)
}

/// Where the link to one peer is.
enum OutState {
    /// The first connection is being made: messages wait in the pending buffer.
    Connecting,
    Up {
        token: Token,
        link: Box<PeerLink>,
        /// Tells the task that dialed why the link ended (dropped: closed on purpose).
        closed: oneshot::Sender<String>,
    },
    /// The link failed: messages are dropped until the next one is up.
    Down,
}

struct Outbound {
    urls: Vec<String>,
    state: OutState,
    /// Encoded frames not yet written; `sent` bytes of them are.
    pending: Vec<u8>,
    sent: usize,
    counters: Arc<PeerCounters>,
    /// When the last heartbeat to this peer was queued (to find late ones).
    last_heartbeat: Option<Instant>,
    /// When the heartbeat now awaiting its response was queued (for the round trip).
    heartbeat_out: Option<Instant>,
}

struct Inbound {
    from: u64,
    counters: Arc<PeerCounters>,
    link: Box<PeerLink>,
    /// Bytes read and not yet decoded (at most one partial frame after a pass).
    buf: RecvBuf,
}

/// The Raft thread's poll and every peer link.
pub struct Links {
    poll: Poll,
    events: Events,
    wake: Arc<InboxWake>,
    member_id: u64,
    out: HashMap<u64, Outbound>,
    out_tokens: HashMap<Token, u64>,
    inbound: HashMap<Token, Inbound>,
    /// Inbound links whose last pass stopped at the read limit.
    backlog: Vec<Token>,
    next_token: usize,
    received: Vec<Message>,
    unreachable: Vec<u64>,
    stats: Arc<PeerStats>,
    /// A heartbeat later than twice this after the previous one is a send failure (etcd's
    /// `etcd_server_heartbeat_send_failures_total`).
    heartbeat_interval: Duration,
}

impl Links {
    /// The links of `member_id`, and the inbox that feeds `rx` and wakes this poll.
    pub fn new(
        member_id: u64,
        tx: SyncSender<RaftInput>,
        stats: Arc<PeerStats>,
        heartbeat_interval: Duration,
    ) -> io::Result<(Links, RaftInbox)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let wake = Arc::new(InboxWake {
            parked: AtomicBool::new(false),
            waker,
        });
        let links = Links {
            poll,
            events: Events::with_capacity(256),
            wake: wake.clone(),
            member_id,
            out: HashMap::new(),
            out_tokens: HashMap::new(),
            inbound: HashMap::new(),
            backlog: Vec::new(),
            next_token: 1,
            received: Vec::new(),
            unreachable: Vec::new(),
            stats,
            heartbeat_interval,
        };
        Ok((links, RaftInbox { tx, wake }))
    }

    /// Follows the membership: a link per peer, reset when its URLs change.
    pub fn set_peers(&mut self, peers: &BTreeMap<u64, Vec<String>>) {
        let gone: Vec<u64> = self
            .out
            .iter()
            .filter(|(id, o)| peers.get(id) != Some(&o.urls))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(o) = self.out.remove(&id) {
                self.close_out(o.state);
            }
        }
        let stale: Vec<Token> = self
            .inbound
            .iter()
            .filter(|(_, i)| !peers.contains_key(&i.from))
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.drop_inbound(t);
        }
        for (id, urls) in peers {
            if *id == self.member_id || urls.is_empty() || self.out.contains_key(id) {
                continue;
            }
            self.out.insert(
                *id,
                Outbound {
                    urls: urls.clone(),
                    state: OutState::Connecting,
                    pending: Vec::new(),
                    sent: 0,
                    counters: self.stats.peer(*id),
                    last_heartbeat: None,
                    heartbeat_out: None,
                },
            );
        }
    }

    /// Unregisters a link that is being replaced or dropped; returns its dialer's channel.
    fn close_out(&mut self, state: OutState) -> Option<oneshot::Sender<String>> {
        let OutState::Up {
            token,
            mut link,
            closed,
        } = state
        else {
            return None;
        };
        self.out_tokens.remove(&token);
        let _ = link.socket.deregister(self.poll.registry());
        Some(closed)
    }

    /// A dialer established the link to `peer`; a peer removed meanwhile gets none (dropping
    /// the link closes it).
    pub fn link_up(
        &mut self,
        peer: u64,
        mut link: Box<PeerLink>,
        closed: oneshot::Sender<String>,
    ) -> io::Result<()> {
        let token = Token(self.next_token);
        let Some(o) = self.out.get_mut(&peer) else {
            return Ok(());
        };
        if let Err(e) = link.socket.register(
            self.poll.registry(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            // The dialer must hear of it, or it would wait on this link forever.
            let _ = closed.send(format!("cannot poll the link: {e}"));
            return Err(e);
        }
        self.next_token += 1;
        let old = std::mem::replace(
            &mut o.state,
            OutState::Up {
                token,
                link,
                closed,
            },
        );
        if o.sent > 0 {
            // The old link took part of a frame: the new one starts at a frame boundary, and
            // Raft resends what is dropped here.
            o.pending.clear();
            o.sent = 0;
            self.unreachable.push(peer);
        }
        self.out_tokens.insert(token, peer);
        if let Some(replaced) = self.close_out(old) {
            // A dialer whose link is replaced redials, rather than wait on a link that is gone.
            let _ = replaced.send("replaced by a newer link".to_string());
        }
        self.flush(peer);
        Ok(())
    }

    /// A peer dialed us; its link replaces any earlier one from the same peer. Only members
    /// may: anyone else who can reach the peer port could otherwise evict a member's link. A
    /// member we have not heard of yet redials once we have applied its addition.
    pub fn accept(&mut self, from: u64, mut link: Box<PeerLink>) -> io::Result<()> {
        if !self.out.contains_key(&from) {
            tracing::debug!(
                from = format!("{from:x}"),
                "closing a peer link from a member we do not know"
            );
            return Ok(());
        }
        let token = Token(self.next_token);
        link.socket
            .register(self.poll.registry(), token, Interest::READABLE)?;
        self.next_token += 1;
        let stale: Vec<Token> = self
            .inbound
            .iter()
            .filter(|(_, i)| i.from == from)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.drop_inbound(t);
        }
        self.inbound.insert(
            token,
            Inbound {
                from,
                counters: self.stats.peer(from),
                link,
                buf: RecvBuf::default(),
            },
        );
        // Bytes may have arrived before registration; edge-triggered polling would not say so.
        self.backlog.push(token);
        Ok(())
    }

    fn drop_inbound(&mut self, token: Token) {
        if let Some(mut i) = self.inbound.remove(&token) {
            let _ = i.link.socket.deregister(self.poll.registry());
        }
    }

    /// The dialer of `peer` could not make a link (or lost the one it had). A link that is up
    /// is newer than that news (a dialer reports before it redials) and stays.
    pub fn mark_down(&mut self, peer: u64) {
        if let Some(o) = self.out.get_mut(&peer)
            && !matches!(o.state, OutState::Up { .. })
        {
            o.state = OutState::Down;
            o.pending.clear();
            o.sent = 0;
        }
    }

    /// The link to `peer` broke: drop what is queued, tell its dialer (which reconnects) and
    /// Raft (which probes the peer until it answers again).
    fn fail(&mut self, peer: u64, reason: String) {
        if let Some(o) = self.out.get_mut(&peer) {
            let old = std::mem::replace(&mut o.state, OutState::Down);
            o.pending.clear();
            o.sent = 0;
            if let Some(closed) = self.close_out(old) {
                tracing::debug!(peer = format!("{peer:x}"), reason, "peer link failed");
                let _ = closed.send(reason);
            }
        }
        self.unreachable.push(peer);
    }

    /// Queues a message for its peer; call [`Links::flush_all`] after a batch of them.
    pub fn queue(&mut self, msg: &Message) {
        let to = msg.to;
        let Some(o) = self.out.get_mut(&to) else {
            tracing::debug!(
                to = format!("{to:x}"),
                "dropping a message to an unknown peer"
            );
            return;
        };
        let kind = msg.get_msg_type();
        if matches!(o.state, OutState::Down) || o.pending.len() >= PENDING_BYTES_MAX {
            if kind == MessageType::MsgHeartbeat {
                o.counters.send_failed();
            }
            self.unreachable.push(to);
            return;
        }
        let before = o.pending.len();
        if let Err(e) = encode_frame(msg, &mut o.pending) {
            tracing::error!(error = %e, "cannot encode a Raft message");
            return;
        }
        let bytes = o.pending.len() - before;
        o.counters.sent_bytes.inc_by(bytes as u64);
        match kind {
            MessageType::MsgAppend => self.stats.append_sent(bytes, Instant::now()),
            MessageType::MsgHeartbeat => {
                let now = Instant::now();
                if let Some(last) = o.last_heartbeat
                    && now.duration_since(last) > 2 * self.heartbeat_interval
                {
                    self.stats.heartbeat_send_failures.inc();
                    tracing::warn!(
                        to = format!("{to:x}"),
                        heartbeat_interval = ?self.heartbeat_interval,
                        expected_duration = ?(2 * self.heartbeat_interval),
                        exceeded_duration = ?(now.duration_since(last) - 2 * self.heartbeat_interval),
                        hint = "the Raft loop was held up (a slow disk or an overloaded machine): \
                                check etcd_disk_wal_fsync_duration_seconds and the CPU",
                        "leader failed to send out heartbeat on time; took too long, leader is \
                         overloaded likely from slow disk"
                    );
                }
                o.last_heartbeat = Some(now);
                o.heartbeat_out.get_or_insert(now);
            }
            _ => {}
        }
    }

    /// Writes what is queued for every peer, as far as the sockets take it.
    pub fn flush_all(&mut self) {
        let peers: Vec<u64> = self
            .out
            .iter()
            .filter(|(_, o)| o.sent < o.pending.len() && matches!(o.state, OutState::Up { .. }))
            .map(|(id, _)| *id)
            .collect();
        for peer in peers {
            self.flush(peer);
        }
    }

    fn flush(&mut self, peer: u64) {
        let Some(o) = self.out.get_mut(&peer) else {
            return;
        };
        let OutState::Up { link, .. } = &mut o.state else {
            return;
        };
        match link.write_from(&o.pending, &mut o.sent) {
            Ok(true) => {
                o.pending.clear();
                o.sent = 0;
            }
            Ok(false) => {
                // Keep the buffer from growing without bound under a slow reader.
                if o.sent >= o.pending.len() / 2 {
                    o.pending.drain(..o.sent);
                    o.sent = 0;
                }
            }
            Err(e) => self.fail(peer, e.to_string()),
        }
    }

    /// Waits up to `timeout` for socket events or the inbox waker, and reads what arrived.
    /// The loop must look at its input channel after `park` and before calling this with a
    /// non-zero timeout (see [`Links::park`]).
    pub fn poll(&mut self, timeout: Duration) -> io::Result<()> {
        let timeout = if self.backlog.is_empty() {
            timeout
        } else {
            Duration::ZERO
        };
        let result = self.poll.poll(&mut self.events, Some(timeout));
        self.wake.parked.store(false, Ordering::SeqCst);
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut readable = std::mem::take(&mut self.backlog);
        let mut writable = Vec::new();
        let mut out_readable = Vec::new();
        for event in self.events.iter() {
            let token = event.token();
            if token == WAKER {
                continue;
            }
            if let Some(peer) = self.out_tokens.get(&token) {
                if event.is_writable() {
                    writable.push(*peer);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    out_readable.push(*peer);
                }
            } else if !readable.contains(&token) {
                readable.push(token);
            }
        }
        for peer in writable {
            self.flush(peer);
        }
        for peer in out_readable {
            self.check_out_closed(peer);
        }
        for token in readable {
            self.read_inbound(token);
        }
        Ok(())
    }

    /// Says the loop is about to wait: inputs sent from now on wake the poll. The loop must
    /// then look at its channel once more before polling.
    pub fn park(&self) {
        self.wake.parked.store(true, Ordering::SeqCst);
    }

    pub fn unpark(&self) {
        self.wake.parked.store(false, Ordering::SeqCst);
    }

    /// Nothing is ever sent back on an outbound link except TLS housekeeping: reading tells
    /// whether the peer closed it.
    fn check_out_closed(&mut self, peer: u64) {
        let Some(o) = self.out.get_mut(&peer) else {
            return;
        };
        let OutState::Up { link, .. } = &mut o.state else {
            return;
        };
        let mut scratch = RecvBuf::default();
        loop {
            scratch.filled = 0;
            match link.read_into(&mut scratch, READ_CHUNK) {
                Ok(ReadOutcome::Drained) => return,
                Ok(ReadOutcome::MoreToRead) => {}
                Ok(ReadOutcome::Closed) => {
                    return self.fail(peer, "peer closed the connection".to_string());
                }
                Err(e) => return self.fail(peer, e.to_string()),
            }
        }
    }

    fn read_inbound(&mut self, token: Token) {
        let Some(i) = self.inbound.get_mut(&token) else {
            return;
        };
        let outcome = i.link.read_into(&mut i.buf, READ_PASS_BYTES_MAX);
        let before = self.received.len();
        let decoded = decode_frames(i.buf.data(), &mut self.received);
        let from = i.from;
        // A link speaks for the member that said hello on it, and for no other.
        let mut position = 0;
        self.received.retain(|m| {
            position += 1;
            position <= before || m.from == from
        });
        match decoded {
            Ok(used) => {
                i.buf.consume(used);
                i.counters.received_bytes.inc_by(used as u64);
                self.account_received(before, from);
            }
            Err(e) => {
                tracing::warn!(from = format!("{from:x}"), error = %e, "closing a peer link");
                return self.drop_inbound(token);
            }
        }
        match outcome {
            Ok(ReadOutcome::Drained) => {}
            Ok(ReadOutcome::MoreToRead) => self.backlog.push(token),
            Ok(ReadOutcome::Closed) => self.drop_inbound(token),
            Err(e) => {
                tracing::debug!(from = format!("{from:x}"), error = %e, "peer link closed");
                self.drop_inbound(token);
            }
        }
    }

    /// Counts the appends among the messages received from `from` after the first `before`,
    /// and times the round trip of a heartbeat whose response came.
    fn account_received(&mut self, before: usize, from: u64) {
        let mut now = None;
        for m in &self.received[before..] {
            match m.get_msg_type() {
                MessageType::MsgAppend => {
                    let bytes = m.get_entries().iter().map(|e| e.data.len()).sum();
                    let at = *now.get_or_insert_with(Instant::now);
                    self.stats.append_received(bytes, at);
                }
                MessageType::MsgHeartbeatResponse => {
                    if let Some(o) = self.out.get_mut(&from)
                        && let Some(sent) = o.heartbeat_out.take()
                    {
                        let at = *now.get_or_insert_with(Instant::now);
                        o.counters.round_trip(at.duration_since(sent));
                    }
                }
                _ => {}
            }
        }
    }

    /// Messages read since the last call.
    pub fn take_received(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.received)
    }

    /// Peers found unreachable since the last call (to tell Raft).
    pub fn take_unreachable(&mut self) -> Vec<u64> {
        let mut peers = std::mem::take(&mut self.unreachable);
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, MessageType};

    fn append(to: u64, data: &[u8]) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = to;
        m.from = 1;
        m.term = 3;
        let e = Entry {
            index: 7,
            data: data.to_vec().into(),
            ..Default::default()
        };
        m.entries = vec![e].into();
        m
    }

    #[test]
    fn frames_decode_whole_and_leave_a_partial_one() {
        let mut buf = Vec::new();
        encode_frame(&append(2, b"one"), &mut buf).unwrap();
        encode_frame(&append(2, b"two"), &mut buf).unwrap();
        let full = buf.len();
        encode_frame(&append(2, b"three"), &mut buf).unwrap();
        let mut out = Vec::new();
        // Every cut of the third frame leaves it for the next read.
        for cut in full..buf.len() {
            out.clear();
            assert_eq!(decode_frames(&buf[..cut], &mut out).unwrap(), full);
            assert_eq!(out.len(), 2);
        }
        out.clear();
        assert_eq!(decode_frames(&buf, &mut out).unwrap(), buf.len());
        let data: Vec<&[u8]> = out.iter().map(|m| m.entries[0].data.as_ref()).collect();
        assert_eq!(data, [&b"one"[..], b"two", b"three"]);
    }

    #[test]
    fn oversized_or_garbage_frames_are_errors() {
        let mut out = Vec::new();
        let huge = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes();
        assert!(decode_frames(&huge, &mut out).is_err());
        let garbage = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(decode_frames(&garbage, &mut out).is_err());
        assert!(out.is_empty());
    }

    fn pair() -> (LinkSocket, LinkSocket) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (
            LinkSocket::from_std_unix(a).unwrap(),
            LinkSocket::from_std_unix(b).unwrap(),
        )
    }

    fn test_stats() -> Arc<PeerStats> {
        crate::metrics::Metrics::new().peers.clone()
    }

    fn links(member: u64) -> Links {
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        Links::new(member, tx, test_stats(), Duration::from_millis(100))
            .unwrap()
            .0
    }

    fn one_peer(links: &mut Links, peer: u64) {
        let peers = BTreeMap::from([(peer, vec!["unix://x".to_string()])]);
        links.set_peers(&peers);
    }

    /// Links member 1 (`a`) to member 2 (`b`); the receiver is what the dialer would hold.
    fn connect(a: &mut Links, b: &mut Links) -> oneshot::Receiver<String> {
        let (sa, sb) = pair();
        let (closed_tx, closed_rx) = oneshot::channel();
        a.link_up(2, Box::new(PeerLink::new(sa, None)), closed_tx)
            .unwrap();
        b.accept(1, Box::new(PeerLink::new(sb, None))).unwrap();
        closed_rx
    }

    /// Polls `to` until it has `n` messages (each poll blocks until the socket has news).
    fn receive(to: &mut Links, n: usize) -> Vec<Message> {
        let mut got = Vec::new();
        while got.len() < n {
            to.poll(Duration::from_secs(5)).unwrap();
            got.extend(to.take_received());
        }
        got
    }

    #[test]
    fn messages_queued_while_connecting_go_out_in_order_once_up() {
        let (mut a, mut b) = (links(1), links(2));
        one_peer(&mut a, 2);
        one_peer(&mut b, 1);
        for i in 0..3u8 {
            a.queue(&append(2, &[i]));
        }
        let _closed_rx = connect(&mut a, &mut b);
        a.queue(&append(2, &[3]));
        a.flush_all();
        let got = receive(&mut b, 4);
        let data: Vec<u8> = got.iter().map(|m| m.entries[0].data[0]).collect();
        assert_eq!(data, [0, 1, 2, 3]);
    }

    #[test]
    fn a_closed_link_reports_the_peer_and_tells_its_dialer() {
        let mut a = links(1);
        one_peer(&mut a, 2);
        let (sa, sb) = pair();
        let (closed_tx, mut closed_rx) = oneshot::channel();
        a.link_up(2, Box::new(PeerLink::new(sa, None)), closed_tx)
            .unwrap();
        drop(sb);
        while a.take_unreachable().is_empty() {
            a.poll(Duration::from_secs(5)).unwrap();
        }
        assert!(closed_rx.try_recv().is_ok_and(|r| !r.is_empty()));
        // Down until the dialer brings a new link: messages are dropped and reported.
        a.queue(&append(2, b"x"));
        assert_eq!(a.take_unreachable(), [2]);
    }

    #[test]
    fn a_failed_first_dial_drops_what_waited_and_a_late_report_keeps_a_live_link() {
        let (mut a, mut b) = (links(1), links(2));
        one_peer(&mut a, 2);
        one_peer(&mut b, 1);
        a.queue(&append(2, b"stale"));
        a.mark_down(2);
        let _closed_rx = connect(&mut a, &mut b);
        a.mark_down(2);
        a.queue(&append(2, b"fresh"));
        a.flush_all();
        let got = receive(&mut b, 1);
        assert_eq!(got[0].entries[0].data.as_ref(), b"fresh");
        assert!(b.take_received().is_empty());
    }

    #[test]
    fn only_members_may_link_and_only_in_their_own_name() {
        let (mut a, mut b) = (links(1), links(2));
        one_peer(&mut a, 2);
        // b does not know member 1 yet: its link is closed at once.
        let _closed_rx = connect(&mut a, &mut b);
        while a.take_unreachable().is_empty() {
            a.queue(&append(2, b"x"));
            a.flush_all();
            a.poll(Duration::from_millis(10)).unwrap();
        }
        // Once it does, a message in another member's name is dropped; its own goes through.
        one_peer(&mut b, 1);
        let mut a = links(1);
        one_peer(&mut a, 2);
        let _closed_rx = connect(&mut a, &mut b);
        let mut forged = append(2, b"forged");
        forged.from = 3;
        a.queue(&forged);
        a.queue(&append(2, b"real"));
        a.flush_all();
        let got = receive(&mut b, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].entries[0].data.as_ref(), b"real");
    }

    #[test]
    fn a_replaced_link_tells_its_dialer_to_redial() {
        let mut a = links(1);
        one_peer(&mut a, 2);
        let (first, _keep_first) = pair();
        let (first_tx, mut first_rx) = oneshot::channel();
        a.link_up(2, Box::new(PeerLink::new(first, None)), first_tx)
            .unwrap();
        let (second, _keep_second) = pair();
        let (second_tx, mut second_rx) = oneshot::channel();
        a.link_up(2, Box::new(PeerLink::new(second, None)), second_tx)
            .unwrap();
        assert!(first_rx.try_recv().is_ok_and(|reason| !reason.is_empty()));
        assert!(second_rx.try_recv().is_err(), "the newer link stays up");
    }

    #[test]
    fn a_large_message_crosses_a_full_socket() {
        let (mut a, mut b) = (links(1), links(2));
        one_peer(&mut a, 2);
        one_peer(&mut b, 1);
        let _closed_rx = connect(&mut a, &mut b);
        let big = vec![0x5a; 8 << 20];
        a.queue(&append(2, &big));
        a.flush_all();
        // The socket buffer is far smaller: both sides make progress as their polls fire.
        let mut got = Vec::new();
        while got.is_empty() {
            a.poll(Duration::from_millis(1)).unwrap();
            b.poll(Duration::from_millis(1)).unwrap();
            got.extend(b.take_received());
        }
        assert_eq!(got[0].entries[0].data.len(), big.len());
        assert!(a.take_unreachable().is_empty());
    }

    #[test]
    fn an_inbox_send_wakes_a_parked_poll() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let (mut links, inbox) =
            Links::new(1, tx, test_stats(), Duration::from_millis(100)).unwrap();
        links.park();
        let sender = std::thread::spawn(move || inbox.try_send(RaftInput::Unreachable(9)));
        // Returns on the wake-up, long before the timeout.
        links.poll(Duration::from_secs(60)).unwrap();
        sender.join().unwrap().unwrap();
        assert!(matches!(rx.try_recv(), Ok(RaftInput::Unreachable(9))));
    }
}
