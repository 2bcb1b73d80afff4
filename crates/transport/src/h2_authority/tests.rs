//! Byte streams built by hand, run through [`AuthorityRepair`], checked frame by frame. Expected
//! header lists come from `loona-hpack`, a second HPACK implementation.

use std::task::Waker;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::hpack::tests::Rng;
use super::hpack::{self, HeaderList};
use super::*;

const FRAME_DATA: u8 = 0x0;
const FRAME_PRIORITY: u8 = 0x2;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_WINDOW_UPDATE: u8 = 0x8;

const BAD: &str = "http://127.0.0.1:2379";
const REPAIRED: &str = "127.0.0.1:2379";

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = payload.len();
    FrameHead {
        len,
        kind,
        flags,
        stream_id,
    }
    .write(&mut out);
    out.extend_from_slice(payload);
    out
}

/// The frames a client sends before its first request.
fn preamble() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(FRAME_SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0])); // ENABLE_PUSH = 0
    out.extend(frame(FRAME_WINDOW_UPDATE, 0, 0, &[0, 0x0f, 0, 1]));
    out
}

/// An HPACK string literal, Huffman-coded or not.
fn string(s: &str, huffman: bool) -> Vec<u8> {
    let raw = if huffman {
        hpack::huffman_encode(s.as_bytes())
    } else {
        s.as_bytes().to_vec()
    };
    let mut out = Vec::new();
    hpack::encode_integer(raw.len(), 7, &mut out);
    if huffman {
        out[0] |= 0x80;
    }
    out.extend(raw);
    out
}

/// The first request as grpc-go encodes it: indexed, incrementally indexed and Huffman-coded.
/// Leaves the client's table (newest first): te, user-agent, content-type, :authority, :path.
fn first_block(authority: &str) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    b.push(0x44); // :path, indexed name 4, incremental indexing
    b.extend(string("/etcdserverpb.Maintenance/Status", true));
    b.push(0x41); // :authority, indexed name 1, incremental indexing
    b.extend(string(authority, true));
    b.push(0x40); // new name, incremental indexing
    b.extend(string("content-type", true));
    b.extend(string("application/grpc", false));
    b.push(0x40);
    b.extend(string("user-agent", false));
    b.extend(string("grpc-go/1.26.0", true));
    b.push(0x40);
    b.extend(string("te", false));
    b.extend(string("trailers", false));
    b
}

/// A second request on the same connection: mostly references to the first one's entries.
fn second_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x86, 0x44];
    b.extend(string("/etcdserverpb.KV/Range", true)); // now te is 63 ... :authority 66
    b.extend([0xc2, 0xc1, 0xc0, 0xbf]); // :authority, content-type, user-agent, te
    b.extend([0x0f, 0x08]); // authorization (static 23), without indexing
    b.extend(string("token-1", true));
    b.push(0x10); // never indexed, new name
    b.extend(string("x-secret", false));
    b.extend(string("s3cr3t", true));
    b
}

/// What a fresh `loona-hpack` decoder makes of `blocks`, in order.
fn reference_decode(blocks: &[&[u8]]) -> Vec<HeaderList> {
    let mut decoder = loona_hpack::Decoder::new();
    blocks
        .iter()
        .map(|b| decoder.decode(b).expect("reference decode"))
        .collect()
}

fn with_authority(mut list: HeaderList, authority: Option<&str>) -> HeaderList {
    list.retain_mut(|(name, value)| {
        if name != b":authority" {
            return true;
        }
        authority.map(|a| *value = a.as_bytes().to_vec()).is_some()
    });
    list
}

#[derive(Debug, Clone, PartialEq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

/// Splits a client stream (preface first) into frames.
fn parse(mut bytes: &[u8]) -> Vec<Frame> {
    bytes = bytes.strip_prefix(PREFACE).expect("preface");
    let mut frames = Vec::new();
    while let Some(head) = bytes.first_chunk::<FRAME_HEAD_BYTES>() {
        let head = FrameHead::parse(head);
        let payload = bytes[FRAME_HEAD_BYTES..FRAME_HEAD_BYTES + head.len].to_vec();
        bytes = &bytes[FRAME_HEAD_BYTES + head.len..];
        frames.push(Frame {
            kind: head.kind,
            flags: head.flags,
            stream_id: head.stream_id,
            payload,
        });
    }
    assert!(bytes.is_empty(), "trailing bytes");
    frames
}

/// The header blocks of rewritten output: (stream, END_STREAM, HPACK bytes), each checked to
/// be a HEADERS frame and CONTINUATIONs of at most 16 KiB, with no padding or priority.
fn blocks(frames: &[Frame]) -> Vec<(u32, bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut open: Option<(u32, bool, Vec<u8>)> = None;
    for f in frames {
        match f.kind {
            FRAME_HEADERS => {
                assert!(open.is_none());
                assert_eq!(f.flags & !(FLAG_END_STREAM | FLAG_END_HEADERS), 0);
                open = Some((f.stream_id, f.flags & FLAG_END_STREAM != 0, Vec::new()));
            }
            FRAME_CONTINUATION => {
                assert_eq!(f.flags & !FLAG_END_HEADERS, 0);
                assert_eq!(open.as_ref().map(|b| b.0), Some(f.stream_id));
            }
            _ => {
                assert!(open.is_none(), "frame inside a header block");
                continue;
            }
        }
        assert!(f.payload.len() <= FRAME_PAYLOAD_OUT_BYTES_MAX);
        let block = open.as_mut().expect("open block");
        block.2.extend_from_slice(&f.payload);
        if f.flags & FLAG_END_HEADERS != 0 {
            out.extend(open.take());
        } else {
            assert_eq!(
                f.payload.len(),
                FRAME_PAYLOAD_OUT_BYTES_MAX,
                "short non-final frame"
            );
        }
    }
    assert!(open.is_none(), "unfinished block");
    out
}

/// Decodes each rewritten block with a fresh decoder: they must not depend on one another.
fn decode_each(blocks: &[(u32, bool, Vec<u8>)]) -> Vec<HeaderList> {
    blocks
        .iter()
        .map(|(_, _, b)| {
            loona_hpack::Decoder::new()
                .decode(b)
                .expect("decode output")
        })
        .collect()
}

/// Returns one byte per read, with a `Pending` before each.
struct Trickle<'a> {
    data: &'a [u8],
    ready: bool,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ready {
            this.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.ready = false;
        if let Some((&b, rest)) = this.data.split_first() {
            buf.put_slice(&[b]);
            this.data = rest;
        }
        Poll::Ready(Ok(()))
    }
}

/// Returns `data` once, then `Pending` forever (without waking anyone).
struct Stall<'a>(&'a [u8]);

impl AsyncRead for Stall<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.0.is_empty() {
            return Poll::Pending;
        }
        buf.put_slice(this.0);
        this.0 = &[];
        Poll::Ready(Ok(()))
    }
}

async fn read_all<R: AsyncRead + Unpin>(io: R, read_bytes: usize) -> io::Result<Vec<u8>> {
    let mut io = AuthorityRepair::new(io);
    let mut out = Vec::new();
    let mut buf = vec![0; read_bytes];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Runs `input` through the wrapper three ways: all at once, one byte per read of the
/// connection, one byte per read of the caller. All three must agree.
async fn repair(input: &[u8]) -> io::Result<Vec<u8>> {
    let whole = read_all(input, 64 * 1024).await;
    let trickled = read_all(
        Trickle {
            data: input,
            ready: false,
        },
        64 * 1024,
    )
    .await;
    let sipped = read_all(input, 1).await;
    for other in [&trickled, &sipped] {
        match (&whole, other) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!((a.kind(), a.to_string()), (b.kind(), b.to_string())),
            (a, b) => panic!("read styles disagree: {a:?} vs {b:?}"),
        }
    }
    whole
}

/// A connection whose first request carries etcdctl 3.4's authority, then a second request.
fn etcdctl_stream() -> (Vec<u8>, Vec<HeaderList>) {
    let (b1, b2) = (first_block(BAD), second_block());
    let mut input = preamble();
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &b1));
    input.extend(frame(FRAME_DATA, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]));
    input.extend(frame(FRAME_WINDOW_UPDATE, 0, 1, &[0, 0, 0x40, 0]));
    input.extend(frame(
        FRAME_HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        3,
        &b2,
    ));
    input.extend(frame(FRAME_PING, 0, 0, &[7; 8]));
    (input, reference_decode(&[&b1, &b2]))
}

#[tokio::test]
async fn good_authority_passes_through_byte_for_byte() {
    let b1 = first_block(REPAIRED);
    let (head, tail) = b1.split_at(10);
    let mut padded = vec![4];
    padded.extend_from_slice(head);
    padded.extend([0; 4]);
    let mut input = preamble();
    input.extend(frame(FRAME_HEADERS, FLAG_PADDED, 1, &padded));
    input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, tail));
    input.extend(frame(FRAME_DATA, FLAG_END_STREAM, 1, &[0; 5]));
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &second_block()));
    // Past the first request nothing is looked at, not even a bad authority.
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 5, &first_block(BAD)));
    input.extend(frame(FRAME_PING, 0, 0, &[1; 8]));

    assert_eq!(repair(&input).await.unwrap(), input);

    let mut io = AuthorityRepair::new(&input[..]);
    let mut out = Vec::new();
    io.read_to_end(&mut out).await.unwrap();
    assert!(matches!(io.state, State::Passthrough));
    assert!(!io.is_rewriting());
    assert!(io.input.capacity() == 0 && io.output.capacity() == 0);
}

#[tokio::test]
async fn no_authority_passes_through() {
    let mut input = preamble();
    input.extend(frame(
        FRAME_HEADERS,
        FLAG_END_HEADERS,
        1,
        &[0x83, 0x86, 0x84],
    ));
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &first_block(BAD)));
    assert_eq!(repair(&input).await.unwrap(), input);
}

#[tokio::test]
async fn bad_authority_is_repaired_on_every_request() {
    let (input, expected) = etcdctl_stream();
    let output = repair(&input).await.unwrap();

    let frames = parse(&output);
    let kinds: Vec<_> = frames
        .iter()
        .map(|f| (f.kind, f.flags, f.stream_id))
        .collect();
    let end_both = FLAG_END_HEADERS | FLAG_END_STREAM;
    assert_eq!(
        kinds,
        [
            (FRAME_SETTINGS, 0, 0),
            (FRAME_WINDOW_UPDATE, 0, 0),
            (FRAME_HEADERS, FLAG_END_HEADERS, 1),
            (FRAME_DATA, FLAG_END_STREAM, 1),
            (FRAME_WINDOW_UPDATE, 0, 1),
            (FRAME_HEADERS, end_both, 3),
            (FRAME_PING, 0, 0),
        ]
    );
    // Frames other than HEADERS are untouched.
    let input_frames = parse(&input);
    for i in [0, 1, 3, 4, 6] {
        assert_eq!(frames[i], input_frames[i]);
    }

    let want: Vec<_> = expected
        .into_iter()
        .map(|l| with_authority(l, Some(REPAIRED)))
        .collect();
    assert_eq!(
        want[1][3],
        (b":authority".to_vec(), REPAIRED.as_bytes().to_vec())
    );
    assert_eq!(decode_each(&blocks(&frames)), want);

    let mut io = AuthorityRepair::new(&input[..]);
    io.read_to_end(&mut Vec::new()).await.unwrap();
    assert!(io.is_rewriting());
}

#[tokio::test]
async fn unrepairable_authority_is_dropped() {
    let b1 = first_block("unix:///var/run/etcd.sock");
    let mut input = preamble();
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &b1));
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &second_block()));
    let expected = reference_decode(&[&b1, &second_block()]);

    let output = repair(&input).await.unwrap();
    let want: Vec<_> = expected
        .into_iter()
        .map(|l| with_authority(l, None))
        .collect();
    assert_eq!(decode_each(&blocks(&parse(&output))), want);
}

#[test]
fn authority_repairs() {
    let cases: &[(&str, Option<&str>)] = &[
        ("127.0.0.1:2379", Some("127.0.0.1:2379")),
        ("[::1]:2379", Some("[::1]:2379")),
        ("etcd-0.etcd:2379", Some("etcd-0.etcd:2379")),
        ("http://127.0.0.1:2379", Some("127.0.0.1:2379")),
        ("https://host:2379", Some("host:2379")),
        ("https://host:2379/", Some("host:2379")),
        ("http://[::1]:2379", Some("[::1]:2379")),
        ("unixs://localhost:2379", Some("localhost:2379")),
        ("unix:///var/run/etcd.sock", None),
        ("http://", None),
        ("://host", None),
        ("1http://host", None),
        ("", None),
        ("host name", None),
    ];
    for &(input, want) in cases {
        let got = repair_authority(input.as_bytes());
        assert_eq!(got.as_deref(), want.map(str::as_bytes), "{input:?}");
        if let Some(got) = got {
            assert!(is_authority(&got));
        }
    }
}

#[tokio::test]
async fn continuation_frames_are_joined() {
    let b1 = first_block(BAD);
    let mut input = preamble();
    input.extend(frame(FRAME_HEADERS, FLAG_END_STREAM, 1, &b1[..3]));
    input.extend(frame(FRAME_CONTINUATION, 0, 1, &b1[3..20]));
    input.extend(frame(FRAME_CONTINUATION, 0, 1, &[]));
    input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &b1[20..]));

    let frames = parse(&repair(&input).await.unwrap());
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2].flags, FLAG_END_HEADERS | FLAG_END_STREAM);
    let want = with_authority(reference_decode(&[&b1]).remove(0), Some(REPAIRED));
    assert_eq!(decode_each(&blocks(&frames)), [want]);
}

#[tokio::test]
async fn large_blocks_are_split_into_continuations() {
    let mut b1 = first_block(BAD);
    b1.extend([0x00]); // new name, without indexing
    b1.extend(string("x-big", false));
    b1.extend(string(&"v".repeat(40_000), false));
    let mut input = preamble();
    let chunks: Vec<&[u8]> = b1.chunks(16_384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let (kind, mut flags) = match i {
            0 => (FRAME_HEADERS, FLAG_END_STREAM),
            _ => (FRAME_CONTINUATION, 0),
        };
        if i == chunks.len() - 1 {
            flags |= FLAG_END_HEADERS;
        }
        input.extend(frame(kind, flags, 1, chunk));
    }

    let frames = parse(&repair(&input).await.unwrap());
    let heads: Vec<_> = frames[2..]
        .iter()
        .map(|f| (f.kind, f.flags, f.payload.len()))
        .collect();
    let total: usize = heads.iter().map(|h| h.2).sum();
    assert_eq!(
        heads,
        [
            (FRAME_HEADERS, FLAG_END_STREAM, 16_384),
            (FRAME_CONTINUATION, 0, 16_384),
            (FRAME_CONTINUATION, FLAG_END_HEADERS, total - 2 * 16_384),
        ]
    );
    let want = with_authority(reference_decode(&[&b1]).remove(0), Some(REPAIRED));
    assert_eq!(decode_each(&blocks(&frames)), [want]);
}

#[tokio::test]
async fn padding_and_priority_are_dropped() {
    let b1 = first_block(BAD);
    let mut payload = vec![10]; // pad length
    payload.extend([0x80, 0, 0, 3, 200]); // exclusive dependency on stream 3, weight 201
    payload.extend_from_slice(&b1);
    payload.extend([0; 10]);
    let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM;
    let mut input = preamble();
    input.extend(frame(FRAME_PRIORITY, 0, 3, &[0, 0, 0, 1, 15]));
    input.extend(frame(FRAME_HEADERS, flags, 1, &payload));

    let frames = parse(&repair(&input).await.unwrap());
    assert_eq!(frames[2], parse(&input)[2]); // the PRIORITY frame
    assert_eq!(frames[3].flags, FLAG_END_HEADERS | FLAG_END_STREAM);
    let want = with_authority(reference_decode(&[&b1]).remove(0), Some(REPAIRED));
    assert_eq!(decode_each(&blocks(&frames)), [want]);
}

#[tokio::test]
async fn http1_passes_through() {
    let inputs: [&[u8]; 5] = [
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n\r\n",
        b"POST /v3/kv/range HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        b"PRI * HTTP/1.1\r\n\r\n", // differs from the preface at byte 12
        b"PRI * HTT",              // a prefix of the preface, then the end
        b"",
    ];
    for input in inputs {
        assert_eq!(repair(input).await.unwrap(), input);
    }
    let mut long = b"GET / HTTP/1.1\r\n".to_vec();
    long.extend(vec![b'x'; 100_000]);
    assert_eq!(repair(&long).await.unwrap(), long);
}

#[test]
fn http1_is_recognized_from_its_first_byte() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = [0; 64];

    let mut io = AuthorityRepair::new(Stall(b"G"));
    let mut buf = ReadBuf::new(&mut out);
    assert!(matches!(
        Pin::new(&mut io).poll_read(&mut cx, &mut buf),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(buf.filled(), b"G");

    // A prefix of the preface: wait for the rest.
    let mut io = AuthorityRepair::new(Stall(b"PRI * HTTP/2.0"));
    let mut buf = ReadBuf::new(&mut out);
    assert!(Pin::new(&mut io).poll_read(&mut cx, &mut buf).is_pending());
    assert!(buf.filled().is_empty());
}

/// Inputs each broken in one way, after a well-formed start.
fn malformed_streams() -> Vec<(&'static str, Vec<u8>)> {
    let bad_first = frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &first_block(BAD));
    let with = |frames: &[Vec<u8>]| -> Vec<u8> {
        let mut input = preamble();
        frames.iter().for_each(|f| input.extend_from_slice(f));
        input
    };
    let mut bomb = vec![0x40];
    bomb.extend(string("x-a", false));
    bomb.extend(string(&"v".repeat(4000), false));
    bomb.extend([0xbe; 300]);
    let mut oversized = vec![frame(FRAME_HEADERS, 0, 1, &first_block(BAD))];
    oversized.extend((0..70).map(|_| frame(FRAME_CONTINUATION, 0, 1, &[0x82; 16_384])));
    let mut huge_head = Vec::new();
    FrameHead {
        len: (1 << 24) - 1,
        kind: FRAME_HEADERS,
        flags: FLAG_END_HEADERS,
        stream_id: 1,
    }
    .write(&mut huge_head);

    vec![
        (
            "table index 62 out of range",
            with(&[frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0xbe])]),
        ),
        (
            "table index 254 out of range",
            with(&[
                bad_first.clone(),
                frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &[0xff, 0x7f]),
            ]),
        ),
        (
            "dynamic table size update to 8192",
            with(&[frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS,
                1,
                &[0x3f, 0xe1, 0x3f],
            )]),
        ),
        (
            "Huffman string holds the EOS symbol",
            with(&[
                bad_first.clone(),
                frame(FRAME_HEADERS, 4, 3, &[0x41, 0x84, 0xff, 0xff, 0xff, 0xff]),
            ]),
        ),
        (
            "CONTINUATION frame for stream 3 inside the header block of stream 1",
            with(&[
                frame(FRAME_HEADERS, 0, 1, &[0x82]),
                frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 3, &[0x84]),
            ]),
        ),
        (
            "CONTINUATION frame for stream 1 without a header block",
            with(&[
                bad_first.clone(),
                frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &[0x84]),
            ]),
        ),
        (
            "frame of type 0x0 inside the header block of stream 1",
            with(&[
                frame(FRAME_HEADERS, 0, 1, &[0x82]),
                frame(FRAME_DATA, 0, 1, &[]),
            ]),
        ),
        (
            "frame of type 0x1 inside the header block of stream 1",
            with(&[
                frame(FRAME_HEADERS, 0, 1, &[0x82]),
                frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &[0x82]),
            ]),
        ),
        (
            "header block of stream 1 exceeds 1048576 bytes",
            with(&oversized),
        ),
        (
            "header block of stream 1 exceeds 1048576 bytes",
            with(&[huge_head]),
        ),
        (
            "decoded header list exceeds 1048576 bytes",
            with(&[frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &bomb)]),
        ),
        (
            "padding longer than the payload",
            with(&[frame(
                FRAME_HEADERS,
                FLAG_PADDED | FLAG_END_HEADERS,
                1,
                &[200, 0x82],
            )]),
        ),
        (
            "priority fields cut short",
            with(&[frame(
                FRAME_HEADERS,
                FLAG_PRIORITY | FLAG_END_HEADERS,
                1,
                &[0; 3],
            )]),
        ),
    ]
}

#[tokio::test]
async fn malformed_input_fails_the_read() {
    for (message, input) in malformed_streams() {
        let err = repair(&input).await.expect_err(message);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{message}");
        assert!(err.to_string().contains(message), "{err} lacks {message:?}");

        // The failure sticks.
        let mut io = AuthorityRepair::new(&input[..]);
        assert!(io.read_to_end(&mut Vec::new()).await.is_err());
        assert!(io.read(&mut [0; 16]).await.is_err());
    }
}

#[tokio::test]
async fn oversized_header_frame_fails_before_its_payload_arrives() {
    let mut input = preamble();
    FrameHead {
        len: (1 << 24) - 1,
        kind: FRAME_HEADERS,
        flags: FLAG_END_HEADERS,
        stream_id: 1,
    }
    .write(&mut input);
    // Stall(…) never returns more: the error must come from the frame header alone.
    let mut io = AuthorityRepair::new(Stall(&input));
    let err = io.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn truncated_streams_end_cleanly() {
    let (input, _) = etcdctl_stream();
    let full = repair(&input).await.unwrap();
    for len in 0..input.len() {
        let out = read_all(&input[..len], 64 * 1024).await.unwrap();
        assert!(full.starts_with(&out), "prefix of {len} bytes");
    }
}

#[tokio::test]
async fn mutated_streams_never_panic() {
    let (input, _) = etcdctl_stream();
    let mut rng = Rng(0x5eed);
    for round in 0..3_000 {
        let mut mutated = input.clone();
        for _ in 0..1 + rng.below(4) {
            let at = PREFACE.len() + rng.below(mutated.len() - PREFACE.len());
            mutated[at] = rng.next() as u8;
        }
        let result = if round % 10 == 0 {
            repair(&mutated).await
        } else {
            read_all(&mutated[..], 64 * 1024).await
        };
        if let Err(e) = result {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
    }
}

#[tokio::test]
async fn writes_pass_through() {
    let (ours, mut theirs) = tokio::io::duplex(1024);
    let mut io = AuthorityRepair::new(ours);
    io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    io.flush().await.unwrap();
    io.shutdown().await.unwrap();
    let mut got = Vec::new();
    theirs.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n");
}

#[test]
fn wrapper_is_send_and_unpin() {
    fn check<T: Send + Sync + Unpin>() {}
    check::<AuthorityRepair<tokio::net::TcpStream>>();
}
