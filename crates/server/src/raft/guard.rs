//! Checks every Raft message from a peer before raft-rs sees it. raft-rs trusts its peers: it
//! panics on messages no correct member sends (a heartbeat committing past our log, a
//! read-index request without its context entry, an empty proposal), and some lies would
//! break its invariants silently (entries out of order, terms near overflow). Without peer
//! TLS anyone who can reach the peer port can claim a member's name, so a lie must cost the
//! liar its message, never the member its life.
//!
//! The rules are what raft-rs would assert or what a correct member always does; a message
//! that breaks one is dropped and reported (see `Refusals` in `node.rs`).

use raft::prelude::{Message, MessageType};
use raft::{RawNode, storage::MemStorage};

/// Terms and indexes at or past this are lies: a real cluster never gets near, and raft-rs
/// adds to them without overflow checks.
pub const NUMBER_MAX: u64 = u64::MAX / 2;

/// How a message reached us: links carry everything but snapshots, which arrive only on
/// their own stream with the backend file staged beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Link,
    SnapshotStream,
}

/// What the check needs to know of our own Raft state.
pub struct LocalState {
    pub id: u64,
    pub leader_id: u64,
    pub last_index: u64,
}

impl LocalState {
    pub fn of(node: &RawNode<MemStorage>) -> LocalState {
        LocalState {
            id: node.raft.id,
            leader_id: node.raft.leader_id,
            last_index: node.raft.raft_log.last_index(),
        }
    }
}

/// `Ok` when raft-rs may step `msg`; otherwise what is wrong with it.
pub fn check(msg: &Message, route: Route, local: &LocalState) -> Result<(), String> {
    use MessageType::*;
    let kind = msg.get_msg_type();
    match kind {
        // Raft makes these itself; a peer never sends them.
        MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum => {
            return Err(format!(
                "{kind:?} is local to a member, never sent by a peer"
            ));
        }
        MsgSnapshot if route == Route::Link => {
            return Err("a snapshot may only come on the snapshot stream".into());
        }
        _ if route == Route::SnapshotStream && kind != MsgSnapshot => {
            return Err(format!("{kind:?} on the snapshot stream"));
        }
        _ => {}
    }
    if msg.to != local.id {
        return Err(format!("addressed to {:x}, not to us", msg.to));
    }
    if msg.from == 0 || msg.from == local.id {
        return Err(format!("claims to come from {:x}", msg.from));
    }
    for (what, n) in [
        ("term", msg.term),
        ("log term", msg.log_term),
        ("index", msg.index),
        ("commit", msg.commit),
        ("reject hint", msg.reject_hint),
    ] {
        if n >= NUMBER_MAX {
            return Err(format!("{what} {n} is beyond any real log"));
        }
    }
    if msg.request_snapshot != 0 {
        // Only an application asks for a snapshot that way, and ours never does.
        return Err("asks for a snapshot with request_snapshot".into());
    }
    match kind {
        MsgHeartbeat if msg.commit > local.last_index => Err(format!(
            "heartbeat commits to {} but our log ends at {}",
            msg.commit, local.last_index
        )),
        MsgAppend => check_entries(msg),
        MsgAppendResponse if !msg.reject && msg.index > local.last_index => Err(format!(
            "acknowledges index {} but our log ends at {}",
            msg.index, local.last_index
        )),
        // raft-rs takes a message without a term for one of its own member's; a peer's
        // always carries one, but for the forwarded requests below.
        MsgPropose | MsgReadIndex => Ok(()),
        _ if msg.term == 0 => Err(format!("{kind:?} without a term")),
        _ => Ok(()),
    }?;
    match kind {
        MsgPropose if msg.entries.is_empty() => Err("a proposal without entries".into()),
        // Forwarded requests carry no term: raft-rs asserts it when it forwards them again.
        MsgPropose | MsgReadIndex if msg.term != 0 => Err(format!(
            "{kind:?} with term {} (forwarded requests have none)",
            msg.term
        )),
        MsgReadIndex | MsgReadIndexResp if msg.entries.len() != 1 => Err(format!(
            "{kind:?} with {} entries instead of its one context entry",
            msg.entries.len()
        )),
        // A follower forwards it to its leader, and raft-rs asserts that a forwarded message
        // carries no term; the follower that sent it to us set one, so only a leader takes it.
        MsgTransferLeader if msg.term != 0 && local.leader_id != local.id => Err(format!(
            "MsgTransferLeader in term {} to a member that is not the leader",
            msg.term
        )),
        MsgTimeoutNow if msg.from != local.leader_id => Err(format!(
            "MsgTimeoutNow from {:x}, which is not our leader {:x}",
            msg.from, local.leader_id
        )),
        MsgSnapshot => check_snapshot(msg),
        _ => Ok(()),
    }
}

/// The checks that need no Raft state, for a snapshot stream's message before anything of
/// the stream is written to disk.
pub fn check_snapshot_stream(msg: &Message, member_id: u64) -> Result<(), String> {
    if msg.get_msg_type() != MessageType::MsgSnapshot {
        return Err(format!("{:?} on the snapshot stream", msg.get_msg_type()));
    }
    if msg.to != member_id || msg.from == 0 || msg.from == member_id {
        return Err(format!("snapshot from {:x} to {:x}", msg.from, msg.to));
    }
    if msg.term >= NUMBER_MAX {
        return Err(format!("term {} is beyond any real log", msg.term));
    }
    check_snapshot(msg)
}

/// An append's entries follow its index one by one, in terms that never decrease and never
/// pass the leader's term, as a leader's log does.
fn check_entries(msg: &Message) -> Result<(), String> {
    // Every entry but the log's dummy start (index 0) has a term; raft-rs reads a term of 0
    // for an index it does not have, so a 0 would "match" past the end of our log.
    if msg.index > 0 && msg.log_term == 0 {
        return Err(format!("previous entry {} without a term", msg.index));
    }
    if msg.log_term > msg.term {
        return Err(format!(
            "previous entry's term {} is after the leader's term {}",
            msg.log_term, msg.term
        ));
    }
    let mut previous_term = msg.log_term;
    for (offset, entry) in msg.entries.iter().enumerate() {
        let expected = msg.index + 1 + offset as u64;
        if entry.index != expected {
            return Err(format!(
                "entry {} where {expected} should follow",
                entry.index
            ));
        }
        if entry.term == 0 || entry.term < previous_term || entry.term > msg.term {
            return Err(format!(
                "entry {} has term {} (after term {previous_term}, leader's term {})",
                entry.index, entry.term, msg.term
            ));
        }
        previous_term = entry.term;
    }
    Ok(())
}

fn check_snapshot(msg: &Message) -> Result<(), String> {
    let meta = msg.get_snapshot().get_metadata();
    if meta.index == 0 || meta.index >= NUMBER_MAX {
        return Err(format!("snapshot at index {}", meta.index));
    }
    if meta.term == 0 || meta.term > msg.term {
        return Err(format!(
            "snapshot of term {} sent in term {}",
            meta.term, msg.term
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{ConfState, Entry, Snapshot};
    use raft::{Config, StateRole};

    fn local() -> LocalState {
        LocalState {
            id: 1,
            leader_id: 2,
            last_index: 10,
        }
    }

    fn msg(kind: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.to = 1;
        m.from = 2;
        m.term = 3;
        m
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn the_two_known_crashes_are_refused() {
        let mut heartbeat = msg(MessageType::MsgHeartbeat);
        heartbeat.commit = 11;
        assert!(check(&heartbeat, Route::Link, &local()).is_err());
        heartbeat.commit = 10;
        assert!(check(&heartbeat, Route::Link, &local()).is_ok());

        let mut read_index = msg(MessageType::MsgReadIndex);
        read_index.term = 0;
        assert!(check(&read_index, Route::Link, &local()).is_err());
        read_index.mut_entries().push(Entry::default());
        assert!(check(&read_index, Route::Link, &local()).is_ok());
        // Forwarded requests never carry a term; raft-rs panics forwarding one that does.
        read_index.term = 3;
        assert!(check(&read_index, Route::Link, &local()).is_err());
        let mut proposal = msg(MessageType::MsgPropose);
        proposal.term = 0;
        proposal.mut_entries().push(Entry::default());
        assert!(check(&proposal, Route::Link, &local()).is_ok());
        proposal.term = 2;
        assert!(check(&proposal, Route::Link, &local()).is_err());
    }

    #[test]
    fn appends_must_be_a_leaders_log() {
        let mut append = msg(MessageType::MsgAppend);
        append.index = 10;
        append.log_term = 2;
        append.set_entries(vec![entry(11, 2), entry(12, 3)].into());
        assert!(check(&append, Route::Link, &local()).is_ok());

        let mut gap = append.clone();
        gap.set_entries(vec![entry(11, 2), entry(13, 3)].into());
        assert!(check(&gap, Route::Link, &local()).is_err());

        let mut future_term = append.clone();
        future_term.set_entries(vec![entry(11, 4)].into());
        assert!(check(&future_term, Route::Link, &local()).is_err());

        let mut backwards = append.clone();
        backwards.set_entries(vec![entry(11, 3), entry(12, 2)].into());
        assert!(check(&backwards, Route::Link, &local()).is_err());

        let mut overflow = append;
        overflow.index = u64::MAX - 1;
        overflow.set_entries(vec![entry(u64::MAX, 2)].into());
        assert!(check(&overflow, Route::Link, &local()).is_err());
    }

    #[test]
    fn local_types_and_misaddressed_messages_are_refused() {
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgUnreachable,
            MessageType::MsgSnapStatus,
            MessageType::MsgCheckQuorum,
        ] {
            assert!(
                check(&msg(kind), Route::Link, &local()).is_err(),
                "{kind:?}"
            );
        }
        let mut to_other = msg(MessageType::MsgHeartbeat);
        to_other.to = 9;
        assert!(check(&to_other, Route::Link, &local()).is_err());
        let mut from_self = msg(MessageType::MsgHeartbeat);
        from_self.from = 1;
        assert!(check(&from_self, Route::Link, &local()).is_err());
        let mut huge_term = msg(MessageType::MsgRequestVote);
        huge_term.term = u64::MAX;
        assert!(check(&huge_term, Route::Link, &local()).is_err());
    }

    #[test]
    fn snapshots_come_only_on_their_stream_and_only_as_snapshots() {
        let mut snap = msg(MessageType::MsgSnapshot);
        let mut s = Snapshot::default();
        s.mut_metadata().index = 20;
        s.mut_metadata().term = 3;
        s.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2], vec![])));
        snap.set_snapshot(s);
        assert!(check(&snap, Route::Link, &local()).is_err());
        assert!(check(&snap, Route::SnapshotStream, &local()).is_ok());
        let heartbeat = msg(MessageType::MsgHeartbeat);
        assert!(check(&heartbeat, Route::SnapshotStream, &local()).is_err());
        let mut from_the_future = snap;
        from_the_future.mut_snapshot().mut_metadata().term = 4;
        assert!(check(&from_the_future, Route::SnapshotStream, &local()).is_err());
        assert!(check_snapshot_stream(&from_the_future, 1).is_err());
        assert!(check_snapshot_stream(&heartbeat, 1).is_err());
    }

    #[test]
    fn only_a_leader_takes_a_leadership_transfer_with_a_term() {
        let transfer = msg(MessageType::MsgTransferLeader);
        assert!(check(&transfer, Route::Link, &local()).is_err());
        let leader = LocalState {
            leader_id: 1,
            ..local()
        };
        assert!(check(&transfer, Route::Link, &leader).is_ok());
    }

    #[test]
    fn only_the_leader_may_say_timeout_now() {
        let mut timeout_now = msg(MessageType::MsgTimeoutNow);
        assert!(check(&timeout_now, Route::Link, &local()).is_ok());
        timeout_now.from = 3;
        assert!(check(&timeout_now, Route::Link, &local()).is_err());
    }

    /// A small deterministic generator (xorshift64*), so a failure replays exactly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    const TYPES: [MessageType; 19] = [
        MessageType::MsgHup,
        MessageType::MsgBeat,
        MessageType::MsgPropose,
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgRequestVote,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgSnapshot,
        MessageType::MsgHeartbeat,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgUnreachable,
        MessageType::MsgSnapStatus,
        MessageType::MsgCheckQuorum,
        MessageType::MsgTransferLeader,
        MessageType::MsgTimeoutNow,
        MessageType::MsgReadIndex,
        MessageType::MsgReadIndexResp,
        MessageType::MsgRequestPreVote,
        MessageType::MsgRequestPreVoteResponse,
    ];

    /// Member 1 of three with five entries in term 1, as a follower of 2 or as the leader.
    fn node(leader: bool) -> RawNode<MemStorage> {
        let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
        storage.wl().append(&entries).unwrap();
        storage.wl().set_hardstate(raft::prelude::HardState {
            term: 1,
            commit: 3,
            ..Default::default()
        });
        let cfg = Config {
            id: 1,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 3,
            ..Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = RawNode::new(&cfg, storage, &logger).unwrap();
        if leader {
            node.campaign().unwrap();
            let mut vote = msg(MessageType::MsgRequestVoteResponse);
            vote.from = 2;
            vote.term = node.raft.term;
            node.step(vote).unwrap();
            assert_eq!(node.raft.state, StateRole::Leader);
        } else {
            let mut heartbeat = msg(MessageType::MsgHeartbeat);
            heartbeat.term = 2;
            heartbeat.commit = 3;
            node.step(heartbeat).unwrap();
        }
        drain(&mut node);
        node
    }

    /// Persists and acknowledges whatever the node has ready, as the Raft loop does.
    fn drain(node: &mut RawNode<MemStorage>) {
        while node.has_ready() {
            let mut ready = node.ready();
            if !ready.snapshot().is_empty() {
                let snap = ready.snapshot().clone();
                node.mut_store().wl().apply_snapshot(snap).unwrap();
            }
            node.mut_store().wl().append(ready.entries()).unwrap();
            if let Some(hs) = ready.hs() {
                node.mut_store().wl().set_hardstate(hs.clone());
            }
            let _ = ready.take_messages();
            let _ = ready.take_persisted_messages();
            let mut light = node.advance(ready);
            if let Some(commit) = light.commit_index() {
                node.mut_store().wl().mut_hard_state().commit = commit;
            }
            let _ = light.take_messages();
            node.advance_apply();
        }
    }

    fn random_message(rng: &mut Rng, node: &RawNode<MemStorage>) -> (Message, Route) {
        let last = node.raft.raft_log.last_index();
        let term = node.raft.term;
        let plausible = [
            0,
            1,
            2,
            3,
            last.saturating_sub(1),
            last,
            last + 1,
            term,
            term + 1,
        ];
        let extreme = [
            last + 1000,
            NUMBER_MAX - 1,
            NUMBER_MAX,
            u64::MAX - 1,
            u64::MAX,
        ];
        // Mostly numbers a member could send, now and then one no member would.
        let number = |rng: &mut Rng| {
            if rng.next().is_multiple_of(8) {
                rng.pick(&extreme)
            } else {
                rng.pick(&plausible)
            }
        };
        let mut m = Message::default();
        m.set_msg_type(rng.pick(&TYPES));
        m.from = rng.pick(&[2, 2, 3, 3, 0, 1, 4]);
        m.to = rng.pick(&[1, 1, 1, 1, 2]);
        m.term = rng.pick(&[term, term, term, term + 1, term - 1, 0, u64::MAX]);
        m.log_term = number(rng);
        m.index = number(rng);
        m.commit = number(rng);
        m.reject = rng.next().is_multiple_of(2);
        m.reject_hint = number(rng);
        m.request_snapshot = if rng.next().is_multiple_of(10) {
            number(rng)
        } else {
            0
        };
        m.context = vec![0u8; (rng.next() % 3) as usize].into();
        let consecutive = !rng.next().is_multiple_of(4);
        for i in 0..rng.next() % 4 {
            let (index, term) = if consecutive {
                (m.index.wrapping_add(1 + i), m.log_term.min(m.term))
            } else {
                (number(rng), number(rng))
            };
            let mut e = entry(index, term);
            e.data = vec![1, 2, 3].into();
            m.mut_entries().push(e);
        }
        if m.get_msg_type() == MessageType::MsgSnapshot || rng.next().is_multiple_of(8) {
            let mut s = Snapshot::default();
            s.mut_metadata().index = number(rng);
            s.mut_metadata().term = number(rng);
            let voters = if rng.next().is_multiple_of(2) {
                vec![1, 2, 3]
            } else {
                vec![2, 3]
            };
            s.mut_metadata()
                .set_conf_state(ConfState::from((voters, vec![])));
            m.set_snapshot(s);
        }
        let route = if rng.next().is_multiple_of(4) {
            Route::SnapshotStream
        } else {
            Route::Link
        };
        (m, route)
    }

    /// Random messages, their numbers drawn around the log's edges and the extremes: every
    /// one the guard lets through must step (and be persisted) without a raft-rs panic.
    #[test]
    fn nothing_the_guard_lets_through_panics_raft() {
        let seeds = [
            0x9E37_79B9_7F4A_7C15,
            0xD1B5_4A32_D192_ED03,
            0x2545_F491_4F6C_DD1D,
            0x8CB9_2BA7_2F3D_8DD7,
            0x5851_F42D_4C95_7F2D,
            0x1405_7B7E_F767_814F,
        ];
        for (seed, leader) in seeds.iter().flat_map(|s| [(*s, false), (*s, true)]) {
            let mut rng = Rng(seed);
            let mut stepped = 0;
            for round in 0..120 {
                let mut node = node(leader);
                for step in 0..250 {
                    let (m, route) = random_message(&mut rng, &node);
                    if check(&m, route, &LocalState::of(&node)).is_err() {
                        continue;
                    }
                    stepped += 1;
                    let shown = format!("{m:?}");
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let _ = node.step(m);
                        drain(&mut node);
                    }));
                    assert!(
                        outcome.is_ok(),
                        "leader={leader} round {round} step {step}: raft panicked on {shown}"
                    );
                }
            }
            // The draw must reach raft-rs often enough to mean something.
            assert!(
                stepped > 1500,
                "leader={leader}: only {stepped} messages stepped"
            );
        }
    }
}
