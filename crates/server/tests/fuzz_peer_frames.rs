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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut out = Vec::new();
        if let Ok(used) = decode_frames(&bytes, &mut out) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
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
