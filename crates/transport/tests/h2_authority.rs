//! etcdctl 3.4's requests, written by hand (no Rust client sends a URL as `:authority`), to a
//! real hyper HTTP/2 server on loopback: reset without [`AuthorityRepair`], answered with it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use etcd_transport::{AuthorityRepair, ListenAddr, ListenOptions, Listener};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;

/// Answers every request with 200 and what hyper saw of its URI.
async fn handle(req: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let authority = req.uri().authority().map_or("", |a| a.as_str()).to_owned();
    let response = Response::builder()
        .header("x-authority", authority)
        .header("x-path", req.uri().path())
        .body(String::from("ok"))
        .expect("response");
    Ok(response)
}

/// A plain-HTTP listener on loopback serving HTTP/2 with hyper, each connection wrapped in
/// [`AuthorityRepair`] if `repair`.
async fn serve(repair: bool) -> SocketAddr {
    let url = "http://127.0.0.1:0".parse().unwrap();
    let mut listener = Listener::bind(&url, None, ListenOptions::default())
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = *listener.local_addr() else {
        panic!("not tcp");
    };
    tokio::spawn(async move {
        loop {
            let conn = listener.accept().await;
            let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            tokio::spawn(async move {
                let service = service_fn(handle);
                let _ = if repair {
                    let io = TokioIo::new(AuthorityRepair::new(conn));
                    builder.serve_connection(io, service).await
                } else {
                    builder.serve_connection(TokioIo::new(conn), service).await
                };
            });
        }
    });
    addr
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string literal, not Huffman-coded (all ours are shorter than 127 bytes).
fn string(s: &str) -> Vec<u8> {
    assert!(s.len() < 127);
    let mut out = vec![s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

/// A client connection, as far as these tests need one.
struct Client {
    stream: TcpStream,
    /// The server's HPACK context, for its responses.
    decoder: loona_hpack::Decoder<'static>,
    input: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Headers(Vec<(String, String)>),
    Reset(u32),
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(PREFACE).await.unwrap();
        stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        Client {
            stream,
            decoder: loona_hpack::Decoder::new(),
            input: Vec::new(),
        }
    }

    /// Sends a GET whose header block is `block`.
    async fn send(&mut self, stream_id: u32, block: &[u8]) {
        let headers = frame(HEADERS, END_HEADERS | END_STREAM, stream_id, block);
        self.stream.write_all(&headers).await.unwrap();
    }

    /// Reads frames until the server answers `stream_id` with headers or a reset.
    async fn outcome(&mut self, stream_id: u32) -> Outcome {
        loop {
            let (kind, flags, id, payload) = timeout(WAIT, self.next_frame())
                .await
                .expect("no answer from the server");
            if kind == SETTINGS && flags & ACK == 0 {
                self.stream
                    .write_all(&frame(SETTINGS, ACK, 0, &[]))
                    .await
                    .unwrap();
            }
            if kind == HEADERS {
                assert_ne!(flags & END_HEADERS, 0, "responses here fit one frame");
                let list = self.decoder.decode(&payload).expect("response headers");
                if id == stream_id {
                    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
                    let list = list.into_iter().map(|(n, v)| (text(n), text(v)));
                    return Outcome::Headers(list.collect());
                }
            }
            if kind == RST_STREAM && id == stream_id {
                let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                return Outcome::Reset(code);
            }
        }
    }

    async fn next_frame(&mut self) -> (u8, u8, u32, Vec<u8>) {
        loop {
            if self.input.len() >= 9 {
                let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]);
                let len = len as usize;
                if self.input.len() >= 9 + len {
                    let id = u32::from_be_bytes(self.input[5..9].try_into().unwrap());
                    let (kind, flags) = (self.input[3], self.input[4]);
                    let payload = self.input[9..9 + len].to_vec();
                    self.input.drain(..9 + len);
                    return (kind, flags, id & 0x7fff_ffff, payload);
                }
            }
            let mut buf = [0; 4096];
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed the connection");
            self.input.extend_from_slice(&buf[..n]);
        }
    }
}

/// etcdctl 3.4's first request: `:authority` a URL, added to the client's HPACK table.
/// Leaves the table as: te (62), :authority (63), :path (64).
fn first_request(authority: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    b.push(0x44); // :path, incremental indexing
    b.extend(string("/etcdserverpb.Maintenance/Status"));
    b.push(0x41); // :authority, incremental indexing
    b.extend(string(authority));
    b.push(0x40);
    b.extend(string("te"));
    b.extend(string("trailers"));
    b
}

/// The next request: the same authority, by reference to the table.
fn second_request() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x04]; // :path, without indexing
    b.extend(string("/etcdserverpb.KV/Range"));
    b.extend([0xbf, 0xbe]); // :authority, te
    b
}

fn header<'a>(outcome: &'a Outcome, name: &str) -> Option<&'a str> {
    let Outcome::Headers(list) = outcome else {
        return None;
    };
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn etcdctl_authority_is_reset_by_h2_alone_and_served_with_the_repair() {
    for repair in [false, true] {
        let addr = serve(repair).await;
        let bad = format!("http://{addr}");
        let mut client = Client::connect(addr).await;

        client.send(1, &first_request(&bad)).await;
        let first = client.outcome(1).await;
        client.send(3, &second_request()).await;
        let second = client.outcome(3).await;

        if !repair {
            // What etcdctl 3.4 sees from a bare hyper/h2 server.
            assert_eq!(first, Outcome::Reset(PROTOCOL_ERROR));
            assert_eq!(second, Outcome::Reset(PROTOCOL_ERROR));
            continue;
        }
        let want_authority = addr.to_string();
        for (outcome, path) in [
            (&first, "/etcdserverpb.Maintenance/Status"),
            (&second, "/etcdserverpb.KV/Range"),
        ] {
            assert_eq!(header(outcome, ":status"), Some("200"), "{outcome:?}");
            assert_eq!(header(outcome, "x-authority"), Some(&*want_authority));
            assert_eq!(header(outcome, "x-path"), Some(path));
        }
    }
}

#[tokio::test]
async fn well_formed_authority_is_served_either_way() {
    for repair in [false, true] {
        let addr = serve(repair).await;
        let mut client = Client::connect(addr).await;
        client.send(1, &first_request(&addr.to_string())).await;
        let first = client.outcome(1).await;
        client.send(3, &second_request()).await;
        let second = client.outcome(3).await;
        for outcome in [&first, &second] {
            assert_eq!(header(outcome, ":status"), Some("200"), "{outcome:?}");
            assert_eq!(header(outcome, "x-authority"), Some(&*addr.to_string()));
        }
    }
}

#[tokio::test]
async fn http1_is_served_through_the_wrapper() {
    let url = "http://127.0.0.1:0".parse().unwrap();
    let mut listener = Listener::bind(&url, None, ListenOptions::default())
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = *listener.local_addr() else {
        panic!("not tcp");
    };
    tokio::spawn(async move {
        let conn = AuthorityRepair::new(listener.accept().await);
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(conn), service_fn(handle))
            .await;
    });
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("x-path: /health\r\n"), "{response}");
}
