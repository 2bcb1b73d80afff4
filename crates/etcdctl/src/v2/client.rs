//! etcd's v2 client (`go.etcd.io/etcd/client`) over hyper: the endpoint list it shuffles,
//! pins and syncs from the member list, the order it tries endpoints in, its timeouts, its
//! redirects, and its errors, worded as Go's `net/http` and etcd's client word them (these are
//! what etcdctl prints).
//!
//! One request to one endpoint ([`Client::do_action`] takes them in turn):
//! - `--timeout` bounds everything up to the response headers (dial, TLS, sending, waiting),
//!   except for watches (`wait=true`), as etcd's `HeaderTimeoutPerRequest`;
//! - the command's deadline (`--total-timeout`) bounds the whole, body included; when it
//!   passes, the command fails with `context deadline exceeded` at once, whatever endpoints
//!   are left;
//! - a failure moves on to the next endpoint, and all of them failing reads
//!   `client: etcd cluster is unavailable or misconfigured; error #0: ...`, except for
//!   one-shot requests (creates and deletes, which must not be applied twice) that stop at
//!   the first failure;
//! - a 5xx answer counts as a failure (`has no leader`, `returns server error`), a 3xx is
//!   followed (10 at most).
//!
//! Each request has its own connection: etcdctl makes a handful per run.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_transport::TlsInfo;
use etcd_transport::rustls::pki_types::ServerName;
use etcd_transport::rustls::{self, AlertDescription, CertificateError, ClientConfig};
use etcd_transport::tokio_rustls::TlsConnector;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::gourl::GoUrl;
use crate::gofmt;
use crate::rawarg;

/// Go's dial timeout for etcdctl (`defaultDialTimeout`), capped by `--total-timeout`.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// `net/http`'s `TLSHandshakeTimeout` in etcd's transport.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a response body we read: far above any v2 answer, and a bound all the same.
const MAX_BODY_BYTES: usize = 1 << 30;
/// `DefaultCheckRedirect`: the tenth redirect is the last one followed.
const MAX_REDIRECTS: usize = 10;

/// What went wrong with one endpoint, in Go's words; `conn` marks what etcdctl's
/// `isConnectionError` takes for a connection problem (dial and read failures, timeouts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpError {
    pub text: String,
    pub conn: bool,
}

impl EpError {
    pub fn other(text: impl Into<String>) -> EpError {
        EpError {
            text: text.into(),
            conn: false,
        }
    }
}

/// The errors of etcd's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Every endpoint failed (`ClusterError`).
    Cluster(Vec<EpError>),
    /// The command's deadline passed (`context.DeadlineExceeded`).
    Deadline,
    /// `ErrNoEndpoints`.
    NoEndpoints,
    /// Anything else: a one-shot request's failure, an answer that did not decode, ...
    Other(EpError),
}

impl ClientError {
    pub fn other(text: impl Into<String>) -> ClientError {
        ClientError::Other(EpError::other(text))
    }

    /// etcdctl's `isConnectionError`.
    pub fn is_connection_error(&self) -> bool {
        match self {
            ClientError::Cluster(errs) => errs.iter().all(|e| e.conn),
            // Go's deadline error is a `net.Error` whose `Timeout()` is true.
            ClientError::Deadline => true,
            ClientError::NoEndpoints => false,
            ClientError::Other(e) => e.conn,
        }
    }

    /// `ClusterError.Detail`: one line per endpoint; empty for other errors.
    pub fn detail(&self) -> Option<String> {
        match self {
            ClientError::Cluster(errs) => Some(
                errs.iter()
                    .enumerate()
                    .map(|(i, e)| format!("error #{i}: {}\n", e.text))
                    .collect(),
            ),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Cluster(errs) => {
                f.write_str("client: etcd cluster is unavailable or misconfigured")?;
                for (i, e) in errs.iter().enumerate() {
                    writeln!(f, "; error #{i}: {}", e.text)?;
                }
                Ok(())
            }
            ClientError::Deadline => f.write_str("context deadline exceeded"),
            ClientError::NoEndpoints => f.write_str("client: no endpoints available"),
            ClientError::Other(e) => f.write_str(&e.text),
        }
    }
}

/// One request, built for whichever endpoint it goes to.
pub struct Action {
    pub method: &'static str,
    pub url: Box<dyn Fn(&GoUrl) -> GoUrl + Send + Sync>,
    /// `None`: no body at all (Go's nil body); `Some` (even empty): a body, printed by
    /// `--debug`.
    pub body: Option<Vec<u8>>,
    pub content_type: Option<&'static str>,
    /// Not retried on another endpoint (creates with `prevExist=false`, deletes).
    pub one_shot: bool,
    /// A watch: no header timeout.
    pub wait: bool,
}

impl Action {
    pub fn new(
        method: &'static str,
        url: impl Fn(&GoUrl) -> GoUrl + Send + Sync + 'static,
    ) -> Action {
        Action {
            method,
            url: Box::new(url),
            body: None,
            content_type: None,
            one_shot: false,
            wait: false,
        }
    }
    pub fn body(mut self, content_type: &'static str, body: Vec<u8>) -> Action {
        self.content_type = Some(content_type);
        self.body = Some(body);
        self
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    }
}

/// TLS for `https` endpoints: built up front when files were given (a bad file fails the
/// command before any request, as etcd's transport does), else on first use with the
/// system roots.
#[derive(Clone)]
enum Tls {
    Ready(Arc<ClientConfig>),
    Lazy(TlsInfo),
}

/// How requests reach a server: etcd's `transport.NewTransport`.
#[derive(Clone)]
pub struct Transport {
    tls: Tls,
    server_name: Option<String>,
    dial_timeout: Duration,
}

impl Transport {
    pub fn new(info: TlsInfo, dial_timeout: Duration) -> Result<Transport, String> {
        let server_name = info.server_name.clone().filter(|s| !s.is_empty());
        let files_given =
            info.cert_file.is_some() || info.key_file.is_some() || info.trusted_ca_file.is_some();
        let tls = if files_given {
            Tls::Ready(info.client_config(&[]).map_err(|e| e.to_string())?)
        } else {
            Tls::Lazy(info)
        };
        Ok(Transport {
            tls,
            server_name,
            dial_timeout,
        })
    }

    fn tls_config(&self) -> Result<Arc<ClientConfig>, String> {
        match &self.tls {
            Tls::Ready(c) => Ok(c.clone()),
            Tls::Lazy(info) => info.client_config(&[]).map_err(|e| e.to_string()),
        }
    }

    /// One HTTP/1.1 exchange, up to the response headers.
    pub async fn round_trip(
        &self,
        url: &GoUrl,
        method: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
        auth: Option<&(String, String)>,
    ) -> Result<hyper::Response<Incoming>, EpError> {
        let (secure, unix) = match url.scheme.as_str() {
            "http" => (false, false),
            "https" => (true, false),
            "unix" => (false, true),
            "unixs" => (true, true),
            s => {
                return Err(EpError::other(format!(
                    "unsupported protocol scheme {}",
                    gofmt::quote(s)
                )));
            }
        };
        if url.host.is_empty() {
            return Err(EpError::other("http: no Host in request URL"));
        }
        let port = match url.port() {
            "" if secure => "443",
            "" => "80",
            p => p,
        };
        let hostname = url.hostname();
        let addr = if hostname.contains(':') {
            format!("[{hostname}]:{port}")
        } else {
            format!("{hostname}:{port}")
        };
        let stream: Box<dyn Io> = if unix {
            Box::new(dial_unix(&addr, self.dial_timeout).await?)
        } else {
            Box::new(dial_tcp(hostname, port, self.dial_timeout).await?)
        };
        let stream: Box<dyn Io> = if secure {
            let config = self.tls_config().map_err(EpError::other)?;
            let name = self.server_name.as_deref().unwrap_or(hostname);
            let name = ServerName::try_from(name.to_string()).map_err(|_| {
                EpError::other(format!("tls: invalid server name {}", gofmt::quote(name)))
            })?;
            let connect = TlsConnector::from(config).connect(name, stream);
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connect).await {
                Err(_) => return Err(EpError::other("net/http: TLS handshake timeout")),
                Ok(Err(e)) => return Err(EpError::other(io_text(&e))),
                Ok(Ok(s)) => Box::new(s),
            }
        } else {
            stream
        };

        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| EpError::other(hyper_text(&e, false)))?;
        // The connection is driven beside the request; it ends with the response's body.
        tokio::spawn(async move {
            let _ = conn.await;
        });

        let mut req = hyper::Request::builder()
            .method(method)
            .uri(url.request_uri())
            .header("Host", &url.host)
            .header("User-Agent", "Go-http-client/1.1");
        if let Some(b) = body {
            req = req.header("Content-Length", b.len().to_string());
        } else if method == "PUT" || method == "POST" {
            req = req.header("Content-Length", "0");
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        if let Some((user, pass)) = auth {
            let mut cred = rawarg::bytes(user);
            cred.push(b':');
            cred.extend(rawarg::bytes(pass));
            req = req.header("Authorization", format!("Basic {}", gofmt::base64(&cred)));
        }
        let req = req
            .body(Full::new(Bytes::from(
                body.map(<[u8]>::to_vec).unwrap_or_default(),
            )))
            .map_err(|e| EpError::other(format!("net/http: invalid request: {e}")))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| EpError::other(hyper_text(&e, false)))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The text Go's `syscall.Errno` gives an OS error: glibc's, lower-cased.
pub fn errno_text(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => s[..i].to_string(),
        _ => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// The DNS server Go's resolver asks (and names in its errors): the first of resolv.conf.
pub fn nameserver() -> String {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|s| {
            s.lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .map(|a| a.trim().to_string())
                .next()
        })
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

async fn dial_tcp(host: &str, port: &str, timeout: Duration) -> Result<TcpStream, EpError> {
    let deadline = Instant::now() + timeout;
    let port_num: u16 = port.parse().map_err(|_| EpError {
        text: format!("dial tcp: lookup tcp/{port}: unknown port"),
        conn: true,
    })?;
    let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port_num)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host, port_num));
            match tokio::time::timeout_at(deadline.into(), lookup).await {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(_)) => Vec::new(),
                Err(_) => {
                    return Err(EpError {
                        text: format!("dial tcp: lookup {host}: i/o timeout"),
                        conn: true,
                    });
                }
            }
        }
    };
    if addrs.is_empty() {
        return Err(EpError {
            text: format!(
                "dial tcp: lookup {host} on {}:53: no such host",
                nameserver()
            ),
            conn: true,
        });
    }
    let mut first_err = None;
    for a in &addrs {
        match tokio::time::timeout_at(deadline.into(), TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(format!("dial tcp {a}: connect: {}", errno_text(&e)));
            }
            Err(_) => {
                first_err.get_or_insert(format!("dial tcp {a}: i/o timeout"));
                break;
            }
        }
    }
    Err(EpError {
        text: first_err.unwrap_or_default(),
        conn: true,
    })
}

async fn dial_unix(addr: &str, timeout: Duration) -> Result<UnixStream, EpError> {
    match tokio::time::timeout(timeout, UnixStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(EpError {
            text: format!("dial unix {addr}: connect: {}", errno_text(&e)),
            conn: true,
        }),
        Err(_) => Err(EpError {
            text: format!("dial unix {addr}: i/o timeout"),
            conn: true,
        }),
    }
}

/// Go's `crypto/tls` alert texts.
fn alert_text(a: &AlertDescription) -> String {
    use AlertDescription as A;
    match a {
        A::CloseNotify => "close notify",
        A::UnexpectedMessage => "unexpected message",
        A::BadRecordMac => "bad record MAC",
        A::DecryptionFailed => "decryption failed",
        A::RecordOverflow => "record overflow",
        A::DecompressionFailure => "decompression failure",
        A::HandshakeFailure => "handshake failure",
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "revoked certificate",
        A::CertificateExpired => "expired certificate",
        A::CertificateUnknown => "unknown certificate",
        A::IllegalParameter => "illegal parameter",
        A::UnknownCA => "unknown certificate authority",
        A::AccessDenied => "access denied",
        A::DecodeError => "error decoding message",
        A::DecryptError => "error decrypting message",
        A::ProtocolVersion => "protocol version not supported",
        A::InsufficientSecurity => "insufficient security level",
        A::InternalError => "internal error",
        A::InappropriateFallback => "inappropriate fallback",
        A::UserCanceled => "user canceled",
        A::NoRenegotiation => "no renegotiation",
        A::MissingExtension => "missing extension",
        A::UnsupportedExtension => "unsupported extension",
        A::UnrecognisedName => "unrecognized name",
        A::CertificateRequired => "certificate required",
        A::NoApplicationProtocol => "no application protocol",
        other => return format!("alert({})", u8::from(*other)),
    }
    .to_string()
}

/// A rustls error as Go's `crypto/tls` and `crypto/x509` word the same failure.
fn tls_text(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "x509: certificate signed by unknown authority".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "x509: certificate is not valid for the requested name".to_string()
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                "x509: certificate has expired or is not yet valid".to_string()
            }
            other => format!("x509: {other:?}"),
        },
        rustls::Error::AlertReceived(a) => format!("remote error: tls: {}", alert_text(a)),
        rustls::Error::InvalidMessage(_) => {
            "tls: first record does not look like a TLS handshake".to_string()
        }
        other => format!("tls: {other}"),
    }
}

fn io_text(e: &io::Error) -> String {
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return tls_text(t);
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return "EOF".to_string();
    }
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    ) {
        return format!("read: {}", errno_text(e));
    }
    errno_text(e)
}

/// A hyper error as Go's `net/http` words it; `in_body`: while reading the body, where a
/// connection closed early is Go's `io.ErrUnexpectedEOF`.
fn hyper_text(e: &hyper::Error, in_body: bool) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if in_body && io.kind() == io::ErrorKind::UnexpectedEof {
                return "unexpected EOF".to_string();
            }
            return io_text(io);
        }
        src = s.source();
    }
    if e.is_incomplete_message() {
        return if in_body { "unexpected EOF" } else { "EOF" }.to_string();
    }
    if e.is_parse() || e.is_parse_status() {
        return format!(
            "net/http: HTTP/1.x transport connection broken: malformed HTTP response ({e})"
        );
    }
    e.to_string()
}

/// Go's `http.StatusText` for the 5xx codes etcd's client names.
fn status_text(code: u16) -> &'static str {
    match code {
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

enum OneError {
    Deadline,
    Ep(EpError),
}

/// Go's rand.Perm-style shuffle (`shuffleEndpoints`).
fn shuffle<T: Clone>(v: &[T]) -> Vec<T> {
    use rand::Rng;
    let n = v.len();
    let mut p = vec![0usize; n];
    let mut rng = rand::rng();
    for i in 0..n {
        let j = rng.random_range(0..=i);
        p[i] = p[j];
        p[j] = i;
    }
    p.into_iter().map(|k| v[k].clone()).collect()
}

/// etcd's `httpClusterClient`.
pub struct Client {
    transport: Transport,
    endpoints: Vec<GoUrl>,
    pinned: usize,
    credentials: Option<(String, String)>,
    header_timeout: Duration,
    /// `--debug`: each request as a cURL command on stderr.
    pub debug: bool,
}

pub struct Config {
    pub transport: Transport,
    pub endpoints: Vec<String>,
    pub header_timeout: Duration,
    pub credentials: Option<(String, String)>,
}

fn parse_endpoints(eps: &[String]) -> Result<Vec<GoUrl>, ClientError> {
    if eps.is_empty() {
        return Err(ClientError::NoEndpoints);
    }
    eps.iter()
        .map(|e| GoUrl::parse(e).map_err(ClientError::other))
        .collect()
}

impl Client {
    pub fn new(cfg: Config) -> Result<Client, ClientError> {
        let eps = parse_endpoints(&cfg.endpoints)?;
        Ok(Client {
            transport: cfg.transport,
            endpoints: shuffle(&eps),
            pinned: 0,
            credentials: cfg.credentials,
            header_timeout: cfg.header_timeout,
            debug: false,
        })
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.to_string()).collect()
    }

    /// `Sync`: the endpoints become the client URLs of the members.
    pub async fn sync(&mut self, deadline: Option<Instant>) -> Result<(), ClientError> {
        let members = super::member::list(self, deadline).await?;
        let urls: Vec<String> = members.into_iter().flat_map(|m| m.client_urls).collect();
        let neps = parse_endpoints(&urls)?;
        let mut old: Vec<String> = self.endpoints();
        let mut new: Vec<String> = neps.iter().map(|e| e.to_string()).collect();
        old.sort();
        new.sort();
        if old == new {
            return Ok(());
        }
        self.endpoints = shuffle(&neps);
        self.pinned = 0;
        Ok(())
    }

    /// `httpClusterClient.Do`: the pinned endpoint first, then the others in turn.
    pub async fn do_action(
        &mut self,
        act: &Action,
        deadline: Option<Instant>,
    ) -> Result<HttpResponse, ClientError> {
        let eps = self.endpoints.clone();
        let n = eps.len();
        if n == 0 {
            return Err(ClientError::NoEndpoints);
        }
        let pinned = self.pinned;
        let mut errs: Vec<EpError> = Vec::new();
        for i in pinned..pinned + n {
            let k = i % n;
            let err = match self.follow_redirects(&eps[k], act, deadline).await {
                Err(OneError::Deadline) => return Err(ClientError::Deadline),
                Err(OneError::Ep(e)) => e,
                Ok(resp) if resp.status / 100 == 5 => {
                    let text = if resp.status == 500 || resp.status == 503 {
                        format!("client: etcd member {} has no leader", eps[k])
                    } else {
                        format!(
                            "client: etcd member {} returns server error [{}]",
                            eps[k],
                            status_text(resp.status)
                        )
                    };
                    EpError::other(text)
                }
                Ok(resp) => {
                    if k != pinned {
                        self.pinned = k;
                    }
                    return Ok(resp);
                }
            };
            errs.push(err);
            if act.one_shot {
                self.pinned = (k + 1) % n;
                return Err(ClientError::Other(errs.swap_remove(0)));
            }
        }
        Err(ClientError::Cluster(errs))
    }

    async fn follow_redirects(
        &self,
        ep: &GoUrl,
        act: &Action,
        deadline: Option<Instant>,
    ) -> Result<HttpResponse, OneError> {
        let mut location: Option<GoUrl> = None;
        for i in 0..=MAX_REDIRECTS {
            let _ = i;
            let resp = self.send(ep, act, location.as_ref(), deadline).await?;
            if resp.status / 100 != 3 {
                return Ok(resp);
            }
            let hdr = resp.header("Location");
            if hdr.is_empty() {
                return Err(OneError::Ep(EpError::other("location header not set")));
            }
            match GoUrl::parse(&hdr) {
                Ok(u) => location = Some(u),
                Err(_) => {
                    return Err(OneError::Ep(EpError::other(format!(
                        "location header not valid URL: {hdr}"
                    ))));
                }
            }
        }
        Err(OneError::Ep(EpError::other("client: too many redirects")))
    }

    /// `simpleHTTPClient.Do`: one request to one endpoint, body read in full.
    async fn send(
        &self,
        ep: &GoUrl,
        act: &Action,
        location: Option<&GoUrl>,
        deadline: Option<Instant>,
    ) -> Result<HttpResponse, OneError> {
        let url = match location {
            Some(l) => l.clone(),
            None => (act.url)(ep),
        };
        if self.debug {
            let mut cmd = format!("curl -X {} {url}", act.method);
            if let Some(b) = &act.body {
                cmd.push_str(&format!(" -d {}", gofmt::quote_bytes(b)));
            }
            super::eprint_line(&format!("cURL Command: {cmd}"));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(OneError::Deadline);
        }
        let header_deadline =
            (!act.wait && !self.header_timeout.is_zero()).then(|| now + self.header_timeout);
        let until = match (deadline, header_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let rt = self.transport.round_trip(
            &url,
            act.method,
            act.body.as_deref(),
            act.content_type,
            self.credentials.as_ref(),
        );
        let res = match until {
            Some(u) => tokio::time::timeout_at(u.into(), rt).await,
            None => Ok(rt.await),
        };
        let resp = match res {
            Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(OneError::Deadline);
            }
            Err(_) => {
                return Err(OneError::Ep(EpError::other(format!(
                    "client: endpoint {ep} exceeded header timeout"
                ))));
            }
            Ok(Err(e)) => return Err(OneError::Ep(e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let read = read_body(body);
        let body = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), read).await {
                Ok(b) => b,
                Err(_) => return Err(OneError::Deadline),
            },
            None => read.await,
        };
        match body {
            Ok(body) => Ok(HttpResponse {
                status,
                headers: parts.headers,
                body,
            }),
            Err(e) => Err(OneError::Ep(e)),
        }
    }
}

async fn read_body(mut body: Incoming) -> Result<Vec<u8>, EpError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| EpError::other(hyper_text(&e, true)))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_BODY_BYTES {
                return Err(EpError::other("client: response body over 1 GiB"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_errors_print_as_gos() {
        let e = ClientError::Cluster(vec![
            EpError {
                text: "dial tcp 127.0.0.1:2379: connect: connection refused".into(),
                conn: true,
            },
            EpError {
                text: "client: endpoint http://x exceeded header timeout".into(),
                conn: false,
            },
        ]);
        assert_eq!(
            e.to_string(),
            "client: etcd cluster is unavailable or misconfigured; error #0: dial tcp \
             127.0.0.1:2379: connect: connection refused\n; error #1: client: endpoint \
             http://x exceeded header timeout\n"
        );
        assert_eq!(
            e.detail().unwrap(),
            "error #0: dial tcp 127.0.0.1:2379: connect: connection refused\nerror #1: \
             client: endpoint http://x exceeded header timeout\n"
        );
        assert!(!e.is_connection_error());
        assert!(ClientError::Deadline.is_connection_error());
    }

    #[test]
    fn os_errors_read_as_go_errnos() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(errno_text(&e), "connection refused");
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(errno_text(&e), "no such file or directory");
    }

    #[test]
    fn shuffles_keep_every_endpoint() {
        let v: Vec<u32> = (0..10).collect();
        let mut s = shuffle(&v);
        s.sort();
        assert_eq!(s, v);
    }
}
