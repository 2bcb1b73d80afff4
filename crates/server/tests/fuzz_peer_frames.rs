//! Fuzzing the Raft link framing on stable Rust (proptest): frames come from the network,
//! from members that may be broken or not members at all. Arbitrary bytes never make the
//! decoder panic; any sequence of messages comes back whole through encode and decode, and
//! bytes that arrive split anywhere decode the same once all have come.

use etcd_server::raft::links::{decode_frames, encode_frame};
use proptest::prelude::*;
use protobuf::ProtobufEnum;
use raft::prelude::{Entry, Message, MessageType};

fn message() -> impl Strategy<Value = Message> {
    (
        0i32..19,
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(
            (any::<u64>(), prop::collection::vec(any::<u8>(), 0..100)),
            0..4,
        ),
    )
        .prop_map(|(kind, to, from, term, entries)| {
            let mut m = Message::default();
            m.set_msg_type(MessageType::from_i32(kind).unwrap_or(MessageType::MsgAppend));
            m.to = to;
            m.from = from;
            m.term = term;
            m.entries = entries
                .into_iter()
                .map(|(index, data)| Entry {
                    index,
                    data: data.into(),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
                .into();
            m
        })
}

fn frames_corpus() -> Vec<Vec<u8>> {
    etcd_fuzzing::corpus(env!("CARGO_MANIFEST_DIR"), "peer-frames")
}

/// Raft traffic as a leader sends it: appends with entries, heartbeats, votes, a snapshot
/// message; framed by the real encoder.
fn leader_traffic() -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, kind) in [
        MessageType::MsgRequestVote,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgHeartbeat,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgAppend,
        MessageType::MsgSnapshot,
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.to = 0x8e9e05c52164694d;
        m.from = 0x91bc3c398fb3c146;
        m.term = 3;
        m.index = 40 + i as u64;
        m.log_term = 3;
        m.commit = 39 + i as u64;
        if kind == MessageType::MsgAppend {
            m.entries = (0..3)
                .map(|j| Entry {
                    term: 3,
                    index: m.index + 1 + j,
                    data: format!("put /k/{j} value-{j}").into_bytes().into(),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
                .into();
        }
        if kind == MessageType::MsgSnapshot {
            let meta = m.mut_snapshot().mut_metadata();
            meta.index = 40;
            meta.term = 3;
            meta.mut_conf_state().voters = vec![1, 2, 3];
        }
        encode_frame(&m, &mut bytes).expect("encodes");
    }
    bytes
}

/// Writes the corpus: `cargo test -p etcd-server --test fuzz_peer_frames -- --ignored`.
#[test]
#[ignore = "writes the committed corpus"]
fn write_the_corpus() {
    etcd_fuzzing::write_corpus(
        env!("CARGO_MANIFEST_DIR"),
        "peer-frames",
        "leader-traffic.bin",
        &leader_traffic(),
    );
}

/// The committed corpus is what the encoder writes today, and decodes whole.
#[test]
fn the_corpus_decodes_whole() {
    assert_eq!(frames_corpus(), vec![leader_traffic()]);
    let mut out = Vec::new();
    let bytes = leader_traffic();
    assert_eq!(decode_frames(&bytes, &mut out).expect("valid"), bytes.len());
    assert_eq!(out.len(), 8);
}

etcd_fuzzing::fuzz! {
    target = "peer-frames", cases = 2000;

    /// Real traffic damaged on the wire or by a lying peer: an answer, never a panic.
    fn damaged_corpus_frames_never_panic(bytes in etcd_fuzzing::mutations_of(frames_corpus())) {
        let mut out = Vec::new();
        if let Ok(used) = decode_frames(&bytes, &mut out) {
            prop_assert!(used <= bytes.len());
        }
    }

    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut out = Vec::new();
        if let Ok(used) = decode_frames(&bytes, &mut out) {
            prop_assert!(used <= bytes.len());
        }
    }

    fn messages_survive_framing_however_the_bytes_arrive(
        messages in prop::collection::vec(message(), 0..8),
        split in any::<prop::sample::Index>(),
    ) {
        let mut bytes = Vec::new();
        for m in &messages {
            encode_frame(m, &mut bytes).expect("encodes");
        }
        // The first part alone: whole frames only.
        let cut = split.index(bytes.len() + 1);
        let mut out = Vec::new();
        let used = decode_frames(&bytes[..cut], &mut out).expect("valid frames");
        prop_assert!(used <= cut);
        prop_assert_eq!(&out[..], &messages[..out.len()]);
        // Then the rest, after what was used.
        let mut rest = Vec::new();
        let used_rest = decode_frames(&bytes[used..], &mut rest).expect("valid frames");
        prop_assert_eq!(used + used_rest, bytes.len());
        out.extend(rest);
        prop_assert_eq!(out, messages);
    }
}
