//! Accept the `:authority` that etcdctl 3.4 sends: a URL with its scheme.
//!
//! etcd 3.4's `etcdctl` (grpc-go) dials some endpoints, `endpoint status` among them, with the
//! target `passthrough:///http://127.0.0.1:2379`, so its HTTP/2 requests carry the pseudo-header
//! `:authority: http://127.0.0.1:2379`. Go's server accepts that; the `h2` crate under hyper and
//! tonic resets the stream with `PROTOCOL_ERROR` ("malformed authority"). [`AuthorityRepair`]
//! wraps an accepted connection, below hyper, and repairs such requests on their way in:
//!
//! - Not HTTP/2 (no client preface): every byte passes through untouched.
//! - The first header block of the connection is decoded (HPACK). If its `:authority` is one
//!   that `h2` accepts (the usual case: a gRPC client uses one authority per connection), its
//!   frames are forwarded byte for byte and the wrapper becomes a plain pass-through: after the
//!   first request it costs one branch per read, no copy, no parsing.
//! - Otherwise the connection is rewritten for good: every header block is decoded with the
//!   client's HPACK state, `:authority` is repaired (a `scheme://` prefix stripped; dropped if
//!   still malformed, which `h2` accepts) and the block is re-encoded with literals only, so the
//!   server's HPACK table stays empty and in step. All other frames pass through unchanged.
//!
//! Writes (server to client) are never touched. Everything is bounded: a header block above
//! [`HEADER_BLOCK_BYTES_MAX`], a decoded header list above [`HEADER_LIST_BYTES_MAX`], bad HPACK or
//! a broken HEADERS/CONTINUATION sequence fails the read with [`io::ErrorKind::InvalidData`]
//! (the server would reject all of these too); other frames are streamed, never held whole.
//! HPACK is decoded by the private `hpack` submodule, which says why it is not a crate.
//!
//! Wrap the connection hyper reads, after TLS. An HTTP/1.1 `Upgrade: h2c` connection is
//! passed through unrepaired; etcdctl speaks HTTP/2 with prior knowledge.
//!
//! ```no_run
//! # async fn demo(conn: tokio::net::TcpStream) {
//! use etcd_transport::AuthorityRepair;
//! let io = AuthorityRepair::new(conn); // hand `io` to hyper instead of `conn`
//! # drop(io); }
//! ```

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use hpack::{Decoder, HpackError};

mod hpack;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD_BYTES: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Largest header block handled, counted as the wire bytes (frame headers and padding
/// included) of its HEADERS and CONTINUATION frames. Far above what the server accepts
/// (hyper's header list limit is 16 KiB), so it only stops abuse.
pub const HEADER_BLOCK_BYTES_MAX: usize = 1 << 20;
/// Largest decoded header list, counted as RFC 9113 §6.5.2 does (name + value + 32 per
/// field). Bounds an HPACK "bomb" of one-byte references to a large table entry.
pub const HEADER_LIST_BYTES_MAX: usize = 1 << 20;
/// The client's HPACK table may not outgrow the server's SETTINGS_HEADER_TABLE_SIZE: h2's
/// default, which hyper and tonic do not change. Raise it with the server's setting, or
/// clients that use the larger table will have their connections closed.
const HEADER_TABLE_BYTES_MAX: usize = 4096;
/// Rewritten blocks are cut into frames of this payload size: the default
/// SETTINGS_MAX_FRAME_SIZE, the least any HTTP/2 server accepts.
const FRAME_PAYLOAD_OUT_BYTES_MAX: usize = 16_384;
/// How much is read from the connection at once while frames are parsed.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// A server-side connection whose HTTP/2 requests get their `:authority` repaired; see the
/// [module documentation](self).
pub struct AuthorityRepair<T> {
    io: T,
    state: State,
    /// Read from `io`, not yet processed: `input[..input_len]`, at most one incomplete header
    /// frame ([`HEADER_BLOCK_BYTES_MAX`] + 9) plus one read chunk. The rest of `input` is
    /// zeroed room to read into, kept so that it is not zeroed again on every read.
    input: Vec<u8>,
    input_len: usize,
    /// Processed, not yet handed to the caller (from `output_pos` on). Filled only when empty,
    /// from one processing round, so bounded like `input` (a rewritten block is no larger than
    /// its decoded list).
    output: Vec<u8>,
    output_pos: usize,
    /// `io` returned end of file.
    eof: bool,
}

enum State {
    /// Is the connection HTTP/2? Waiting for the preface or the first byte that differs.
    Preface,
    /// HTTP/2: before the end of the first header block, or rewriting every block.
    Frames(Box<Frames>),
    /// Bytes copied unchanged: HTTP/1.x, or HTTP/2 whose first request was well-formed.
    Passthrough,
    /// A read failed; every later read fails the same way.
    Failed(String),
}

impl<T> AuthorityRepair<T> {
    /// Wraps a connection just accepted (nothing read from it yet).
    pub fn new(io: T) -> Self {
        AuthorityRepair {
            io,
            state: State::Preface,
            input: Vec::new(),
            input_len: 0,
            output: Vec::new(),
            output_pos: 0,
            eof: false,
        }
    }

    /// The wrapped connection, e.g. for its peer address or TLS session.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Whether the connection's header blocks are being rewritten (its first request carried a
    /// malformed `:authority`).
    pub fn is_rewriting(&self) -> bool {
        matches!(&self.state, State::Frames(frames) if frames.rewrite)
    }

    /// Turns what was read into output, until more input is needed.
    fn process(&mut self) -> Result<(), RepairError> {
        if let State::Preface = self.state {
            let n = self.input_len.min(PREFACE.len());
            if self.input[..n] != PREFACE[..n] {
                self.pass_through();
                return Ok(());
            }
            if n < PREFACE.len() {
                return Ok(());
            }
            self.output.extend_from_slice(PREFACE);
            self.consume(PREFACE.len());
            self.state = State::Frames(Box::new(Frames::new()));
        }
        if let State::Frames(frames) = &mut self.state {
            let input = &self.input[..self.input_len];
            let (consumed, done) = frames.process(input, &mut self.output)?;
            self.consume(consumed);
            if done {
                self.pass_through();
            }
        }
        Ok(())
    }

    /// Drops the first `n` bytes of input, and the memory a large header block needed.
    fn consume(&mut self, n: usize) {
        if n == 0 {
            return; // waiting for the rest of a frame: nothing to move
        }
        self.input.copy_within(n..self.input_len, 0);
        self.input_len -= n;
        if self.input.len() > 4 * READ_CHUNK_BYTES && self.input_len < READ_CHUNK_BYTES {
            self.input.truncate(2 * READ_CHUNK_BYTES);
            self.input.shrink_to_fit();
        }
    }

    /// Hands on whatever is buffered and stops looking at the bytes.
    fn pass_through(&mut self) {
        self.output.extend_from_slice(&self.input[..self.input_len]);
        self.input = Vec::new();
        self.input_len = 0;
        self.state = State::Passthrough;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityRepair<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.output_pos < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.output_pos);
                buf.put_slice(&this.output[this.output_pos..this.output_pos + n]);
                this.output_pos += n;
                if this.output_pos == this.output.len() {
                    this.output_pos = 0;
                    let large = this.output.capacity() > 4 * READ_CHUNK_BYTES;
                    if large || matches!(this.state, State::Passthrough) {
                        this.output = Vec::new();
                    } else {
                        this.output.clear();
                    }
                }
                return Poll::Ready(Ok(()));
            }
            match &this.state {
                State::Passthrough => return Pin::new(&mut this.io).poll_read(cx, buf),
                State::Failed(msg) => return Poll::Ready(Err(invalid_data(msg))),
                State::Preface | State::Frames(_) => {}
            }
            if this.eof {
                if let State::Preface = this.state {
                    // A prefix of the preface, then nothing: let the server judge it.
                    this.pass_through();
                    continue;
                }
                // An incomplete frame at most: the server sees the connection end mid-frame
                // either way.
                return Poll::Ready(Ok(()));
            }

            let start = this.input_len;
            if this.input.len() < start + READ_CHUNK_BYTES {
                this.input.resize(start + READ_CHUNK_BYTES, 0);
            }
            let mut chunk = ReadBuf::new(&mut this.input[start..start + READ_CHUNK_BYTES]);
            let polled = Pin::new(&mut this.io).poll_read(cx, &mut chunk);
            let n = chunk.filled().len();
            this.input_len += n;
            match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if n == 0 => this.eof = true,
                Poll::Ready(Ok(())) => {}
            }
            if let Err(e) = this.process() {
                let msg = format!("HTTP/2 :authority repair: {e}");
                tracing::debug!(error = %msg, "closing HTTP/2 connection");
                this.input = Vec::new();
                this.input_len = 0;
                this.state = State::Failed(msg);
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn invalid_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Why a connection's bytes could not be repaired. The server would reject all of these too.
#[derive(Debug, thiserror::Error)]
enum RepairError {
    #[error("header block of stream {stream_id} exceeds {HEADER_BLOCK_BYTES_MAX} bytes")]
    BlockTooLarge { stream_id: u32 },
    #[error("HPACK decoding of the header block of stream {stream_id} failed: {source}")]
    Hpack { stream_id: u32, source: HpackError },
    #[error("frame of type {kind:#x} inside the header block of stream {stream_id}")]
    ExpectedContinuation { stream_id: u32, kind: u8 },
    #[error("CONTINUATION frame for stream {got} inside the header block of stream {expected}")]
    ContinuationStream { expected: u32, got: u32 },
    #[error("CONTINUATION frame for stream {stream_id} without a header block")]
    StrayContinuation { stream_id: u32 },
    #[error("HEADERS frame of stream {stream_id}: {reason}")]
    MalformedHeaders {
        stream_id: u32,
        reason: &'static str,
    },
}

/// The parsed 9-byte header of a frame (RFC 9113 §4.1).
#[derive(Clone, Copy)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHead {
    fn parse(b: &[u8; FRAME_HEAD_BYTES]) -> Self {
        FrameHead {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize,
            kind: b[3],
            flags: b[4],
            stream_id: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        debug_assert!(self.len < 1 << 24);
        out.extend_from_slice(&(self.len as u32).to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&self.stream_id.to_be_bytes());
    }
}

/// The frame parser of an HTTP/2 connection, after the preface.
struct Frames {
    /// Rewriting every header block (the first one had a malformed `:authority`).
    rewrite: bool,
    /// The client's HPACK state: decodes every block the client sent so far.
    decoder: Decoder,
    /// Payload bytes of the frame being passed through, not yet seen.
    payload_left: usize,
    /// The header block being collected, HEADERS seen and END_HEADERS not yet.
    block: Option<Block>,
}

struct Block {
    stream_id: u32,
    end_stream: bool,
    /// The HPACK bytes, padding and priority removed.
    fragment: Vec<u8>,
    /// The frames as received, forwarded if the first block is fine; empty when rewriting.
    raw: Vec<u8>,
    wire_bytes: usize,
}

impl Frames {
    fn new() -> Self {
        Frames {
            rewrite: false,
            decoder: Decoder::new(HEADER_TABLE_BYTES_MAX),
            payload_left: 0,
            block: None,
        }
    }

    /// Processes the complete frames at the start of `input` into `out`. Returns how many
    /// bytes were consumed, and whether the rest of the connection may pass through unchanged.
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), RepairError> {
        let mut pos = 0;
        loop {
            if self.payload_left > 0 {
                let n = self.payload_left.min(input.len() - pos);
                out.extend_from_slice(&input[pos..pos + n]);
                pos += n;
                self.payload_left -= n;
                if self.payload_left > 0 {
                    return Ok((pos, false));
                }
            }
            let Some(head_bytes) = input[pos..].first_chunk::<FRAME_HEAD_BYTES>() else {
                return Ok((pos, false));
            };
            let head = FrameHead::parse(head_bytes);
            if head.kind != FRAME_HEADERS && head.kind != FRAME_CONTINUATION {
                if let Some(block) = &self.block {
                    return Err(RepairError::ExpectedContinuation {
                        stream_id: block.stream_id,
                        kind: head.kind,
                    });
                }
                // Streamed, never buffered whole: DATA frames may be large.
                out.extend_from_slice(head_bytes);
                pos += FRAME_HEAD_BYTES;
                self.payload_left = head.len;
                continue;
            }

            let wire_bytes = FRAME_HEAD_BYTES + head.len;
            let so_far = self.block.as_ref().map_or(0, |b| b.wire_bytes);
            if so_far + wire_bytes > HEADER_BLOCK_BYTES_MAX {
                let stream_id = self.block.as_ref().map_or(head.stream_id, |b| b.stream_id);
                return Err(RepairError::BlockTooLarge { stream_id });
            }
            let Some(frame) = input.get(pos..pos + wire_bytes) else {
                return Ok((pos, false)); // wait for the whole frame
            };
            pos += wire_bytes;
            if let Some(block) = self.collect(head, frame)?
                && self.finish(block, out)?
            {
                return Ok((pos, true));
            }
        }
    }

    /// Adds a HEADERS or CONTINUATION frame to the block; returns the block once complete.
    fn collect(&mut self, head: FrameHead, frame: &[u8]) -> Result<Option<Block>, RepairError> {
        let payload = &frame[FRAME_HEAD_BYTES..];
        if head.kind == FRAME_HEADERS {
            if let Some(block) = &self.block {
                return Err(RepairError::ExpectedContinuation {
                    stream_id: block.stream_id,
                    kind: head.kind,
                });
            }
            self.block = Some(Block {
                stream_id: head.stream_id,
                end_stream: head.flags & FLAG_END_STREAM != 0,
                fragment: header_fragment(head, payload)?.to_vec(),
                raw: if self.rewrite {
                    Vec::new()
                } else {
                    frame.to_vec()
                },
                wire_bytes: frame.len(),
            });
        } else {
            let Some(block) = &mut self.block else {
                return Err(RepairError::StrayContinuation {
                    stream_id: head.stream_id,
                });
            };
            if head.stream_id != block.stream_id {
                return Err(RepairError::ContinuationStream {
                    expected: block.stream_id,
                    got: head.stream_id,
                });
            }
            block.fragment.extend_from_slice(payload);
            if !self.rewrite {
                block.raw.extend_from_slice(frame);
            }
            block.wire_bytes += frame.len();
        }
        if head.flags & FLAG_END_HEADERS != 0 {
            Ok(self.block.take())
        } else {
            Ok(None)
        }
    }

    /// Forwards a complete block, as received or rewritten. Returns true when the first block
    /// was fine and the rest of the connection may pass through.
    fn finish(&mut self, block: Block, out: &mut Vec<u8>) -> Result<bool, RepairError> {
        let headers = self
            .decoder
            .decode(&block.fragment, HEADER_LIST_BYTES_MAX)
            .map_err(|source| RepairError::Hpack {
                stream_id: block.stream_id,
                source,
            })?;
        if !self.rewrite {
            let authority_ok = headers
                .iter()
                .all(|(name, value)| name != b":authority" || is_authority(value));
            if authority_ok {
                out.extend_from_slice(&block.raw);
                return Ok(true);
            }
            tracing::debug!(
                stream_id = block.stream_id,
                "rewriting the HTTP/2 header blocks of a connection whose first :authority is \
                 malformed (etcdctl 3.4 sends a URL)"
            );
            self.rewrite = true;
        }
        let headers = headers.into_iter().filter_map(|(name, value)| {
            if name == b":authority" {
                Some((name, repair_authority(&value)?))
            } else {
                Some((name, value))
            }
        });
        encode_block(block.stream_id, block.end_stream, headers, out);
        Ok(false)
    }
}

/// The HPACK bytes of a HEADERS frame's payload: without padding and priority fields.
fn header_fragment(head: FrameHead, payload: &[u8]) -> Result<&[u8], RepairError> {
    let malformed = |reason| RepairError::MalformedHeaders {
        stream_id: head.stream_id,
        reason,
    };
    let mut rest = payload;
    let mut pad_bytes = 0;
    if head.flags & FLAG_PADDED != 0 {
        let (&n, tail) = rest.split_first().ok_or(malformed("no pad length"))?;
        pad_bytes = usize::from(n);
        rest = tail;
    }
    if head.flags & FLAG_PRIORITY != 0 {
        rest = rest
            .get(5..)
            .ok_or(malformed("priority fields cut short"))?;
    }
    let len = rest
        .len()
        .checked_sub(pad_bytes)
        .ok_or(malformed("padding longer than the payload"))?;
    Ok(&rest[..len])
}

/// Whether `h2` accepts this `:authority` (it parses it with the same function).
fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The `:authority` to forward in place of `value`, or `None` to drop the header.
///
/// `http://127.0.0.1:2379` becomes `127.0.0.1:2379`: a `scheme://` prefix goes, and so does
/// anything from a following `/`, `?` or `#`.
fn repair_authority(value: &[u8]) -> Option<Vec<u8>> {
    if is_authority(value) {
        return Some(value.to_vec());
    }
    let sep = value.windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = (&value[..sep], &value[sep + 3..]);
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let host = &rest[..end];
    is_authority(host).then(|| host.to_vec())
}

/// Encodes `headers` as one header block that leaves the receiver's HPACK table alone
/// (literal without indexing, new name, no Huffman: RFC 7541 §6.2.2), framed as HEADERS plus
/// CONTINUATION frames of at most [`FRAME_PAYLOAD_OUT_BYTES_MAX`].
fn encode_block(
    stream_id: u32,
    end_stream: bool,
    headers: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    out: &mut Vec<u8>,
) {
    let mut block = Vec::new();
    for (name, value) in headers {
        hpack::encode_literal(&name, &value, &mut block);
    }
    let mut rest = &block[..];
    let mut head = FrameHead {
        len: 0,
        kind: FRAME_HEADERS,
        flags: if end_stream { FLAG_END_STREAM } else { 0 },
        stream_id,
    };
    loop {
        let (chunk, tail) = rest.split_at(rest.len().min(FRAME_PAYLOAD_OUT_BYTES_MAX));
        head.len = chunk.len();
        if tail.is_empty() {
            head.flags |= FLAG_END_HEADERS;
        }
        head.write(out);
        out.extend_from_slice(chunk);
        if tail.is_empty() {
            return;
        }
        rest = tail;
        head.kind = FRAME_CONTINUATION;
        head.flags = 0;
    }
}

#[cfg(test)]
mod tests;
