//! Listeners: bind a [`ListenUrl`], accept connections, and complete TLS handshakes.
//!
//! Every handshake runs in its own task with a deadline, as etcd's `tlsListener` runs each in
//! its own goroutine, so a client that connects and sends nothing delays nobody else. A failed
//! handshake is logged and dropped; it never ends the listener. Accept errors (such as running
//! out of file descriptors) are retried with a growing pause, as Go's HTTP server does.
//!
//! A server that hands connections to hyper or tonic turns the listener into a stream:
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_transport::TransportError> {
//! use etcd_transport::{ListenOptions, ListenUrl, Listener};
//! let url: ListenUrl = "http://127.0.0.1:2379".parse()?;
//! let listener = Listener::bind(&url, None, ListenOptions::default()).await?;
//! let incoming = listener.into_incoming(); // impl Stream<Item = io::Result<Conn>>
//! # drop(incoming); Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_core::Stream;
use rustls::pki_types::CertificateDer;
use rustls::{ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{TransportError, go_io_message};
use crate::identity::check_cert_san;
use crate::url::{ListenAddr, ListenUrl};

/// Pause after the first failed `accept`, doubling up to [`ACCEPT_BACKOFF_MAX`] (Go's
/// `http.Server` values).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// TCP keep-alive probe interval on accepted connections, etcd's keepalive listener value; it
/// lets the server notice clients that vanished without closing.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// How a listener treats its connections.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    /// Deadline for a TLS handshake (and the SAN check after it); a client that has not
    /// finished by then is disconnected.
    pub handshake_timeout: Duration,
    /// Bound on handshakes in progress; beyond it new connections wait in the kernel's
    /// backlog, so a flood of idle connections costs bounded memory.
    pub pending_handshakes_max: usize,
    /// etcd's peer-listener check that a client certificate's SANs name the address it
    /// connects from (`checkSAN`). Set for peer and metrics listeners unless
    /// `--experimental-peer-skip-client-san-verification`; client listeners do not check.
    pub check_client_san: bool,
    /// A TLS listener that also serves plain connections on the same TCP port (etcd's
    /// `--listen-client-urls http://host:port,https://host:port`): a connection whose first
    /// byte is not a TLS handshake record is served as it is.
    pub plain_too: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            handshake_timeout: Duration::from_secs(10),
            pending_handshakes_max: 1024,
            check_client_san: false,
            plain_too: false,
        }
    }
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Whether the client's first byte starts a TLS handshake; `None` when it closed or said
/// nothing within `timeout`.
async fn starts_with_tls(stream: &tokio::net::TcpStream, timeout: Duration) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == TLS_HANDSHAKE_RECORD),
        _ => None,
    }
}

/// The address a connection comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteAddr {
    Tcp(SocketAddr),
    /// Unix socket peers are usually unnamed.
    Unix(Option<PathBuf>),
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteAddr::Tcp(addr) => write!(f, "{addr}"),
            RemoteAddr::Unix(Some(path)) => write!(f, "{}", path.display()),
            RemoteAddr::Unix(None) => f.write_str("@"),
        }
    }
}

/// What the TLS handshake of a connection settled.
#[derive(Clone, Debug)]
pub struct TlsConnInfo {
    /// The ALPN protocol agreed on (`h2` or `http/1.1`); `None` if the client offered none,
    /// in which case it speaks HTTP/1.1 or sends the HTTP/2 preface directly.
    pub alpn_protocol: Option<Vec<u8>>,
    /// The client's certificate chain, leaf first; empty if it presented none.
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// The SNI name the client asked for.
    pub server_name: Option<String>,
    pub protocol_version: Option<ProtocolVersion>,
}

enum ConnIo {
    Tcp(TcpStream),
    Unix(UnixStream),
    TlsTcp(Box<TlsStream<TcpStream>>),
    TlsUnix(Box<TlsStream<UnixStream>>),
}

/// One accepted connection, TLS already established when the URL is `https`/`unixs`.
pub struct Conn {
    io: ConnIo,
    remote_addr: RemoteAddr,
    tls: Option<TlsConnInfo>,
}

impl Conn {
    pub fn remote_addr(&self) -> &RemoteAddr {
        &self.remote_addr
    }

    /// The handshake's outcome; `None` for plain connections.
    pub fn tls(&self) -> Option<&TlsConnInfo> {
        self.tls.as_ref()
    }

    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.as_ref()?.alpn_protocol.as_deref()
    }

    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        self.tls
            .as_ref()
            .map(|t| &t.peer_certificates[..])
            .unwrap_or(&[])
    }
}

/// An accepted connection taken out of the async runtime, for a protocol that drives the
/// socket itself (the Raft thread's peer links).
pub enum StdSocket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Conn {
    /// The socket, still non-blocking, and its TLS session (`None` for plain connections),
    /// which keeps any plaintext already received.
    pub fn into_std(self) -> io::Result<(StdSocket, Option<rustls::ServerConnection>)> {
        Ok(match self.io {
            ConnIo::Tcp(s) => (StdSocket::Tcp(s.into_std()?), None),
            ConnIo::Unix(s) => (StdSocket::Unix(s.into_std()?), None),
            ConnIo::TlsTcp(t) => {
                let (s, session) = t.into_inner();
                (StdSocket::Tcp(s.into_std()?), Some(session))
            }
            ConnIo::TlsUnix(t) => {
                let (s, session) = t.into_inner();
                (StdSocket::Unix(s.into_std()?), Some(session))
            }
        })
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("remote_addr", &self.remote_addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

macro_rules! delegate {
    ($self:ident, $io:ident => $call:expr) => {
        match &mut $self.get_mut().io {
            ConnIo::Tcp($io) => $call,
            ConnIo::Unix($io) => $call,
            ConnIo::TlsTcp($io) => $call,
            ConnIo::TlsUnix($io) => $call,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            ConnIo::Tcp(io) => io.is_write_vectored(),
            ConnIo::Unix(io) => io.is_write_vectored(),
            ConnIo::TlsTcp(io) => io.is_write_vectored(),
            ConnIo::TlsUnix(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_shutdown(cx))
    }
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum RawConn {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream, RemoteAddr),
}

impl Socket {
    async fn accept(&self) -> io::Result<RawConn> {
        match self {
            Socket::Tcp(l) => {
                let (stream, addr) = l.accept().await?;
                tune_tcp(&stream);
                Ok(RawConn::Tcp(stream, addr))
            }
            Socket::Unix(l) => {
                let (stream, addr) = l.accept().await?;
                let remote = RemoteAddr::Unix(addr.as_pathname().map(Path::to_path_buf));
                Ok(RawConn::Unix(stream, remote))
            }
        }
    }
}

/// Go's defaults for accepted TCP connections: no Nagle delay (request/response traffic), and
/// keep-alive probes so that dead clients are eventually noticed.
fn tune_tcp(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE)
        .with_interval(TCP_KEEPALIVE);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot enable TCP keep-alive");
    }
}

/// Removes the socket file when the listener goes away, as etcd's unix listener does on Close.
struct UnixSocketFile(PathBuf);

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove unix socket file; remove it by hand");
        }
    }
}

/// A bound listener. Dropping it stops listening and abandons handshakes in progress.
pub struct Listener {
    url: ListenUrl,
    local_addr: ListenAddr,
    socket: Socket,
    tls: Option<TlsAcceptor>,
    options: ListenOptions,
    handshakes: JoinSet<Option<Conn>>,
    /// Set after a failed accept: do not accept again before this instant.
    paused_until: Option<Instant>,
    backoff: Duration,
    _socket_file: Option<UnixSocketFile>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("url", &self.url)
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Binds `url`. `tls` is required for `https`/`unixs` URLs and ignored for `http`/`unix`
    /// (the scheme decides, as in etcd).
    pub async fn bind(
        url: &ListenUrl,
        tls: Option<Arc<ServerConfig>>,
        mut options: ListenOptions,
    ) -> Result<Listener, TransportError> {
        options.pending_handshakes_max = options.pending_handshakes_max.max(1);
        let tls = match (url.is_tls(), tls) {
            (true, Some(config)) => Some(TlsAcceptor::from(config)),
            (true, None) => return Err(TransportError::TlsWithoutCert(url.to_string())),
            (false, _) => None,
        };
        let (socket, local_addr, socket_file) = match url.addr() {
            ListenAddr::Tcp(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| listen_error("tcp", addr.to_string(), e))?;
                let local = listener
                    .local_addr()
                    .map_err(|e| listen_error("tcp", addr.to_string(), e))?;
                (Socket::Tcp(listener), ListenAddr::Tcp(local), None)
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)
                    .map_err(|e| listen_error("unix", path.display().to_string(), e))?;
                (
                    Socket::Unix(listener),
                    ListenAddr::Unix(path.clone()),
                    Some(UnixSocketFile(path.clone())),
                )
            }
        };
        Ok(Listener {
            url: url.clone(),
            local_addr,
            socket,
            tls,
            options,
            handshakes: JoinSet::new(),
            paused_until: None,
            backoff: ACCEPT_BACKOFF_MIN,
            _socket_file: socket_file,
        })
    }

    pub fn url(&self) -> &ListenUrl {
        &self.url
    }

    /// The bound address; for TCP with port 0, the port the kernel chose.
    pub fn local_addr(&self) -> &ListenAddr {
        &self.local_addr
    }

    /// The next established connection. Cancel-safe: dropping the future loses no connection
    /// (handshakes continue in their tasks and are returned by a later call).
    pub async fn accept(&mut self) -> Conn {
        loop {
            let can_accept = self.handshakes.len() < self.options.pending_handshakes_max
                && self.paused_until.is_none();
            tokio::select! {
                // Finished handshakes first: they are clients already waiting on us.
                biased;
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match done {
                        Ok(Some(conn)) => return conn,
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, "TLS handshake task failed"),
                    }
                }
                raw = self.socket.accept(), if can_accept => match raw {
                    Ok(raw) => {
                        self.backoff = ACCEPT_BACKOFF_MIN;
                        if let Some(conn) = self.start(raw) {
                            return conn;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            address = %self.local_addr,
                            error = %e,
                            retry_in_ms = self.backoff.as_millis() as u64,
                            "accept failed; retrying (if out of file descriptors, raise the limit)"
                        );
                        self.paused_until = Some(Instant::now() + self.backoff);
                        self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    }
                },
                () = sleep_until(self.paused_until), if self.paused_until.is_some() => {
                    self.paused_until = None;
                }
            }
        }
    }

    /// Returns a plain connection at once; starts the handshake of a TLS one in a task.
    fn start(&mut self, raw: RawConn) -> Option<Conn> {
        let Some(acceptor) = self.tls.clone() else {
            return Some(match raw {
                RawConn::Tcp(s, addr) => Conn {
                    io: ConnIo::Tcp(s),
                    remote_addr: RemoteAddr::Tcp(addr),
                    tls: None,
                },
                RawConn::Unix(s, remote) => Conn {
                    io: ConnIo::Unix(s),
                    remote_addr: remote,
                    tls: None,
                },
            });
        };
        let timeout = self.options.handshake_timeout;
        let check_san = self.options.check_client_san;
        let plain_too = self.options.plain_too;
        match raw {
            RawConn::Tcp(stream, addr) => {
                let remote = RemoteAddr::Tcp(addr);
                self.handshakes.spawn(async move {
                    if plain_too && !starts_with_tls(&stream, timeout).await? {
                        return Some(Conn {
                            io: ConnIo::Tcp(stream),
                            remote_addr: remote,
                            tls: None,
                        });
                    }
                    let san_ip = check_san.then_some(addr.ip());
                    let tls = handshake(acceptor, stream, &remote, timeout, san_ip).await?;
                    Some(Conn {
                        tls: Some(tls_info(&tls)),
                        io: ConnIo::TlsTcp(Box::new(tls)),
                        remote_addr: remote,
                    })
                });
            }
            RawConn::Unix(stream, remote) => {
                self.handshakes.spawn(async move {
                    // etcd's SAN check cannot apply: a unix peer has no address to match.
                    let tls = handshake(acceptor, stream, &remote, timeout, None).await?;
                    Some(Conn {
                        tls: Some(tls_info(&tls)),
                        io: ConnIo::TlsUnix(Box::new(tls)),
                        remote_addr: remote,
                    })
                });
            }
        }
        None
    }

    /// Turns the listener into a stream of connections for hyper or tonic. The stream never
    /// ends and never yields an error; the `Result` is what those servers expect.
    pub fn into_incoming(self) -> Incoming {
        Incoming {
            local_addr: self.local_addr.clone(),
            next: Box::pin(accept_owned(self)),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

fn listen_error(network: &'static str, addr: String, source: io::Error) -> TransportError {
    TransportError::Listen {
        network,
        addr,
        msg: format!("bind: {}", go_io_message(&source)),
        source,
    }
}

/// etcd removes whatever is at the socket path before binding. We remove only a socket (one
/// left by a previous run), never a regular file that happens to have that name.
fn remove_stale_socket(path: &Path) -> Result<(), TransportError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| listen_error("unix", path.display().to_string(), e)),
        _ => Ok(()),
    }
}

fn tls_info<IO>(stream: &TlsStream<IO>) -> TlsConnInfo {
    let (_, conn) = stream.get_ref();
    TlsConnInfo {
        alpn_protocol: conn.alpn_protocol().map(<[u8]>::to_vec),
        peer_certificates: conn
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
        server_name: conn.server_name().map(str::to_string),
        protocol_version: conn.protocol_version(),
    }
}

/// Runs one TLS handshake under the deadline; logs and returns `None` on failure.
async fn handshake<IO>(
    acceptor: TlsAcceptor,
    stream: IO,
    remote: &RemoteAddr,
    timeout: Duration,
    san_ip: Option<std::net::IpAddr>,
) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let result = tokio::time::timeout(timeout, async {
        let tls = acceptor.accept(stream).await.map_err(HandshakeError::Io)?;
        if let Some(ip) = san_ip {
            let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            if let Some(leaf) = leaf {
                check_cert_san(leaf, ip)
                    .await
                    .map_err(HandshakeError::Check)?;
            }
        }
        Ok(tls)
    })
    .await;
    match result {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(HandshakeError::Io(e))) if e.kind() == io::ErrorKind::UnexpectedEof => {
            // Port scanners and TCP health checks connect and leave; not worth a warning.
            tracing::debug!(remote_addr = %remote, error = %e, "connection closed during TLS handshake");
            None
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            if text.to_ascii_lowercase().contains("certificate") {
                // etcd's wording, which operators (and etcd's own tests) search logs for.
                tracing::warn!(
                    remote_addr = %remote,
                    error = %text,
                    "rejected connection: client certificate authentication failed"
                );
            } else {
                tracing::warn!(remote_addr = %remote, error = %text, "rejected connection");
            }
            None
        }
        Err(_) => {
            tracing::debug!(
                remote_addr = %remote,
                timeout_ms = timeout.as_millis() as u64,
                "TLS handshake timed out; closing connection"
            );
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("{0}")]
    Io(io::Error),
    #[error("{0}")]
    Check(TransportError),
}

async fn accept_owned(mut listener: Listener) -> (Listener, Conn) {
    let conn = listener.accept().await;
    (listener, conn)
}

/// The connections of a listener as a [`Stream`], for `serve_with_incoming`-style servers.
pub struct Incoming {
    local_addr: ListenAddr,
    next: Pin<Box<dyn Future<Output = (Listener, Conn)> + Send>>,
}

impl Incoming {
    pub fn local_addr(&self) -> &ListenAddr {
        &self.local_addr
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let (listener, conn) = ready!(self.next.as_mut().poll(cx));
        self.next = Box::pin(accept_owned(listener));
        Poll::Ready(Some(Ok(conn)))
    }
}
