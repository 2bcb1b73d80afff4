//! Fuzzing the snapshot stream a member receives on its peer port (proptest, stable Rust):
//! the chunks come from the network, from a leader that may be broken or from something that
//! is not a member at all. Whatever arrives, the receiver never panics; it accepts a stream
//! only when every chunk's running CRC matches, and then the staged file holds exactly the
//! bytes sent; a stream it refuses (damaged, cut short, too large, for someone else) leaves no
//! file behind.

use std::path::Path;

use etcd_api::internalpb::SnapshotChunk;
use etcd_server::snapshot::receive;
use proptest::prelude::*;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tonic::Status;

const CLUSTER: u64 = 0xc1;
const ME: u64 = 2;
const LEADER: u64 = 1;

fn snapshot_message() -> Vec<u8> {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapshot);
    m.to = ME;
    m.from = LEADER;
    m.term = 3;
    let meta = m.mut_snapshot().mut_metadata();
    meta.index = 40;
    meta.term = 3;
    m.write_to_bytes().expect("encodes")
}

/// The stream a correct leader sends for `data` cut at `cuts`.
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<SnapshotChunk> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    bounds.push(0);
    bounds.push(data.len());
    bounds.sort_unstable();
    bounds.dedup();
    let pieces: Vec<&[u8]> = if bounds.len() < 2 {
        vec![&data[..0]]
    } else {
        bounds.windows(2).map(|w| &data[w[0]..w[1]]).collect()
    };
    let mut crc = 0;
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            crc = crc32c::crc32c_append(crc, piece);
            SnapshotChunk {
                cluster_id: CLUSTER,
                from: LEADER,
                to: ME,
                message: if i == 0 {
                    snapshot_message()
                } else {
                    Vec::new()
                },
                data: piece.to_vec(),
                crc32c: crc,
                last: i + 1 == n,
            }
        })
        .collect()
}

fn run(chunks: Vec<SnapshotChunk>, dir: &Path, max_bytes: u64) -> Result<Vec<u8>, Status> {
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, Status>));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (msg, path) = rt.block_on(receive(stream, CLUSTER, ME, dir, max_bytes))?;
    assert_eq!(msg.get_msg_type(), MessageType::MsgSnapshot);
    let bytes = std::fs::read(&path).expect("the staged file exists");
    std::fs::remove_file(&path).expect("removable");
    Ok(bytes)
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).expect("dir").count()
}

/// One way to damage a correct stream.
#[derive(Debug, Clone)]
enum Damage {
    FlipData { chunk: usize, byte: usize, bit: u8 },
    WrongCrc { chunk: usize },
    CutShort { keep: usize },
    OtherCluster { chunk: usize },
    OtherMember { chunk: usize },
    GarbageMessage(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(chunk, byte, bit)| Damage::FlipData {
            chunk,
            byte,
            bit
        }),
        any::<usize>().prop_map(|chunk| Damage::WrongCrc { chunk }),
        any::<usize>().prop_map(|keep| Damage::CutShort { keep }),
        any::<usize>().prop_map(|chunk| Damage::OtherCluster { chunk }),
        any::<usize>().prop_map(|chunk| Damage::OtherMember { chunk }),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Damage::GarbageMessage),
    ]
}

fn stream_corpus() -> Vec<Vec<u8>> {
    etcd_fuzzing::corpus(env!("CARGO_MANIFEST_DIR"), "snapshot-chunks")
}

/// A stream as a leader sends it (a 3000-byte snapshot in four chunks), each chunk
/// length-delimited as on the wire.
fn leader_stream() -> Vec<u8> {
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut bytes = Vec::new();
    for chunk in chunks(&data, &[700, 1500, 2900]) {
        prost::Message::encode_length_delimited(&chunk, &mut bytes).expect("encodes");
    }
    bytes
}

/// The chunks in `bytes`, up to the first that does not decode.
fn decode_stream(mut bytes: &[u8]) -> Vec<SnapshotChunk> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match <SnapshotChunk as prost::Message>::decode_length_delimited(&mut bytes) {
            Ok(chunk) => out.push(chunk),
            Err(_) => break,
        }
    }
    out
}

/// Writes the corpus: `cargo test -p etcd-server --test fuzz_snapshot_chunks -- --ignored`.
#[test]
#[ignore = "writes the committed corpus"]
fn write_the_corpus() {
    etcd_fuzzing::write_corpus(
        env!("CARGO_MANIFEST_DIR"),
        "snapshot-chunks",
        "leader-stream.bin",
        &leader_stream(),
    );
}

/// The committed corpus is what a leader sends today, and is received whole.
#[test]
fn the_corpus_is_received_whole() {
    assert_eq!(stream_corpus(), vec![leader_stream()]);
    let dir = tempfile::tempdir().unwrap();
    let received = run(decode_stream(&leader_stream()), dir.path(), 1 << 20).expect("intact");
    assert_eq!(received.len(), 3000);
}

etcd_fuzzing::fuzz! {
    target = "snapshot-chunks", cases = 500;

    /// A real stream damaged on the wire: received or refused, never a panic, and a refused
    /// one leaves no file behind.
    fn damaged_corpus_streams_never_panic(bytes in etcd_fuzzing::mutations_of(stream_corpus())) {
        let dir = tempfile::tempdir().unwrap();
        if run(decode_stream(&bytes), dir.path(), 1 << 20).is_err() {
            prop_assert_eq!(files_in(dir.path()), 0);
        }
    }

    fn an_intact_stream_is_received_byte_for_byte(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let got = run(chunks(&data, &cuts), dir.path(), u64::MAX);
        prop_assert_eq!(got.ok(), Some(data));
    }

    fn a_damaged_stream_is_refused_and_leaves_nothing(
        data in prop::collection::vec(any::<u8>(), 1..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        damage in damage(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut stream = chunks(&data, &cuts);
        let n = stream.len();
        match damage {
            Damage::FlipData { chunk, byte, bit } => {
                // Only chunks that carry data can be flipped: the first one at or after
                // `chunk` that has any.
                let Some(at) = (0..n).map(|k| (chunk % n + k) % n)
                    .find(|&k| !stream[k].data.is_empty()) else { return Ok(()); };
                let c = &mut stream[at];
                let i = byte % c.data.len();
                c.data[i] ^= 1 << bit;
            }
            Damage::WrongCrc { chunk } => stream[chunk % n].crc32c ^= 0x5a5a_5a5a,
            Damage::CutShort { keep } => stream.truncate(keep % n),
            Damage::OtherCluster { chunk } => stream[chunk % n].cluster_id += 1,
            Damage::OtherMember { chunk } => stream[chunk % n].to += 1,
            Damage::GarbageMessage(bytes) => {
                // Some garbage still parses as a valid snapshot message; only what the guard
                // refuses must be refused.
                let parsed = Message::parse_from_bytes(&bytes).ok();
                if parsed.is_some_and(|m| m.get_msg_type() == MessageType::MsgSnapshot) {
                    return Ok(());
                }
                stream[0].message = bytes;
            }
        }
        prop_assert!(run(stream, dir.path(), u64::MAX).is_err());
        prop_assert_eq!(files_in(dir.path()), 0);
    }

    fn a_stream_over_the_limit_is_refused_and_leaves_nothing(
        data in prop::collection::vec(any::<u8>(), 2..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let limit = data.len() as u64 - 1;
        let err = run(chunks(&data, &cuts), dir.path(), limit).unwrap_err();
        prop_assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        prop_assert_eq!(files_in(dir.path()), 0);
    }

    fn arbitrary_chunks_never_panic(
        raw in prop::collection::vec(
            (any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..64),
             prop::collection::vec(any::<u8>(), 0..256), any::<u32>(), any::<bool>()),
            0..6,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let stream: Vec<SnapshotChunk> = raw
            .into_iter()
            .map(|(ours, real_message, message, data, crc32c, last)| SnapshotChunk {
                cluster_id: if ours { CLUSTER } else { 7 },
                from: LEADER,
                to: ME,
                message: if real_message { snapshot_message() } else { message },
                data,
                crc32c,
                last,
            })
            .collect();
        let all: Vec<u8> = stream.iter().flat_map(|c| c.data.clone()).collect();
        match run(stream, dir.path(), u64::MAX) {
            // Accepted only if every CRC held: the file is a prefix of what was sent, up to
            // the chunk marked last.
            Ok(bytes) => prop_assert!(all.starts_with(&bytes)),
            Err(_) => prop_assert_eq!(files_in(dir.path()), 0),
        }
    }
}
