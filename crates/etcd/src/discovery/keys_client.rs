//! The few calls of etcd's v2 keys API that discovery makes (get, create, watch), against the
//! one endpoint of a discovery URL, over HTTP/1.1 (or HTTPS), optionally through an HTTP proxy
//! (`--discovery-proxy`): plain requests in absolute form, TLS through a CONNECT tunnel, as Go's
//! `http.ProxyURL` does.
//!
//! Errors keep the distinction etcd's discovery acts on: no answer at all ([`KeysError::
//! Unreachable`], retried), an etcd error answer ([`KeysError::Etcd`]), and an answer that is not
//! etcd's JSON ([`KeysError::InvalidJson`]: the URL is not a v2 keys endpoint).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_transport::TlsInfo;
use etcd_transport::rustls::ClientConfig;
use etcd_transport::rustls::pki_types::ServerName;
use etcd_transport::tokio_rustls::TlsConnector;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// etcd's v2 client `DefaultRequestTimeout`, for gets and creates (watches wait unbounded).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's discovery transport dial timeout.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// A discovery answer lists a handful of members; anything near this is not one.
const MAX_BODY_BYTES: usize = 4 << 20;

/// The v2 error code for "Key already exists".
pub const ERROR_CODE_NODE_EXIST: u64 = 105;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The endpoint did not answer (dial, TLS, connection or timeout): etcd's `ClusterError`.
    #[error("client: etcd cluster is unavailable or misconfigured; error #0: {0}")]
    Unreachable(String),
    /// etcd answered with a v2 error, worded as etcd's client words it.
    #[error("{code}: {message} ({cause}) [{index}]")]
    Etcd {
        code: u64,
        message: String,
        cause: String,
        index: u64,
    },
    /// The answer is not etcd's JSON: the URL is not a v2 keys endpoint.
    #[error(
        "client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint."
    )]
    InvalidJson,
}

impl KeysError {
    /// etcd's `ClusterError.Detail()`, which its discovery logs before each retry.
    pub fn detail(&self) -> String {
        match self {
            KeysError::Unreachable(e) => format!("error #0: {e}"),
            other => other.to_string(),
        }
    }
}

/// A v2 node, as far as discovery reads it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub created_index: u64,
    #[serde(default)]
    pub modified_index: u64,
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// A successful v2 answer: the action, its node, and the store index (`X-Etcd-Index`).
#[derive(Clone, Debug)]
pub struct KeysResponse {
    pub action: String,
    pub node: Node,
    pub index: u64,
}

#[derive(Deserialize)]
struct Body {
    action: String,
    node: Node,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_code: u64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    index: u64,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client of one v2 keys endpoint (`scheme://host:port` of the discovery URL).
pub struct KeysClient {
    endpoint: Url,
    proxy: Option<Url>,
    tls: Option<Arc<ClientConfig>>,
}

impl KeysClient {
    /// `endpoint` has no path: keys are full paths (`/v2/keys/_etcd/registry/<token>/...`).
    pub fn new(endpoint: Url, proxy: Option<Url>) -> Result<KeysClient, String> {
        let tls = if endpoint.scheme() == "https" {
            // Go's default: the system's CA bundle, no client certificate.
            Some(
                TlsInfo::default()
                    .client_config(&[])
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        Ok(KeysClient {
            endpoint,
            proxy,
            tls,
        })
    }

    /// `GET key` (not recursive, not sorted: etcd's client defaults).
    pub async fn get(&self, key: &str) -> Result<KeysResponse, KeysError> {
        let query = "quorum=false&recursive=false&sorted=false";
        timed(self.request("GET", key, query, None)).await
    }

    /// `PUT key?prevExist=false`: creates the key, failing with 105 if it exists.
    pub async fn create(&self, key: &str, value: &str) -> Result<KeysResponse, KeysError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("value", value)
            .finish();
        timed(self.request("PUT", key, "prevExist=false", Some(body))).await
    }

    /// The first change under `key` after `after_index` (`?wait=true&waitIndex=after+1`).
    pub async fn watch_next(
        &self,
        key: &str,
        after_index: u64,
        recursive: bool,
    ) -> Result<KeysResponse, KeysError> {
        let query = format!(
            "wait=true&waitIndex={}&recursive={recursive}",
            after_index + 1
        );
        self.request("GET", key, &query, None).await
    }

    async fn request(
        &self,
        method: &str,
        key: &str,
        query: &str,
        form: Option<String>,
    ) -> Result<KeysResponse, KeysError> {
        let mut url = self.endpoint.clone();
        url.set_path(key);
        url.set_query(Some(query));
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };

        let stream = self.connect(&host, port).await?;
        // Through a proxy, a plain request names the whole URL; a TLS one went through a
        // CONNECT tunnel and names only the path, as a direct one does.
        let uri = if self.proxy.is_some() && self.tls.is_none() {
            url.to_string()
        } else {
            format!("{}?{query}", url.path())
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| KeysError::Unreachable(e.to_string()))?;
        // The connection is driven beside the request; it ends with the response's body.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("Host", host_header)
            .header("User-Agent", "Go-http-client/1.1");
        if form.is_some() {
            req = req.header("Content-Type", "application/x-www-form-urlencoded");
        }
        let req = req
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|e| KeysError::Unreachable(format!("net/http: invalid request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| KeysError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Etcd-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| KeysError::Unreachable(e.to_string()))?
            .to_bytes();
        match status {
            200 | 201 => {
                let parsed: Body =
                    serde_json::from_slice(&body).map_err(|_| KeysError::InvalidJson)?;
                Ok(KeysResponse {
                    action: parsed.action,
                    node: parsed.node,
                    index,
                })
            }
            // etcd's client takes a 5xx for a member without a leader: try again later.
            500..=599 => Err(KeysError::Unreachable(format!(
                "client: etcd member {} has no leader",
                self.endpoint.as_str().trim_end_matches('/')
            ))),
            _ => {
                let e: ErrorBody =
                    serde_json::from_slice(&body).map_err(|_| KeysError::InvalidJson)?;
                Err(KeysError::Etcd {
                    code: e.error_code,
                    message: e.message,
                    cause: e.cause,
                    index: e.index,
                })
            }
        }
    }

    /// A connection to `host:port`, directly or through the proxy, with TLS when the endpoint
    /// is https.
    async fn connect(&self, host: &str, port: u16) -> Result<Box<dyn Io>, KeysError> {
        let (dial_host, dial_port) = match &self.proxy {
            Some(p) => (
                p.host_str().unwrap_or_default().to_string(),
                p.port_or_known_default().unwrap_or(80),
            ),
            None => (host.to_string(), port),
        };
        let dial = TcpStream::connect((dial_host.trim_matches(['[', ']']), dial_port));
        let mut tcp = match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
            Err(_) => {
                return Err(KeysError::Unreachable(format!(
                    "dial tcp {dial_host}:{dial_port}: i/o timeout"
                )));
            }
            Ok(Err(e)) => {
                return Err(KeysError::Unreachable(format!(
                    "dial tcp {dial_host}:{dial_port}: connect: {}",
                    errno_text(&e)
                )));
            }
            Ok(Ok(s)) => s,
        };
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        if self.proxy.is_some() {
            connect_tunnel(&mut tcp, host, port).await?;
        }
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|_| KeysError::Unreachable(format!("tls: invalid server name {host:?}")))?;
        let tls = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| KeysError::Unreachable(e.to_string()))?;
        Ok(Box::new(tls))
    }
}

/// Opens a tunnel to `host:port` through the proxy at the other end of `tcp`.
async fn connect_tunnel(tcp: &mut TcpStream, host: &str, port: u16) -> Result<(), KeysError> {
    let request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| KeysError::Unreachable(format!("proxyconnect tcp: {}", errno_text(&e))))?;
    // The proxy's answer ends with an empty line; nothing follows it before the tunnel starts.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(KeysError::Unreachable(
                "proxyconnect tcp: answer too long".into(),
            ));
        }
        let n = tcp
            .read(&mut byte)
            .await
            .map_err(|e| KeysError::Unreachable(format!("proxyconnect tcp: {}", errno_text(&e))))?;
        if n == 0 {
            return Err(KeysError::Unreachable("proxyconnect tcp: EOF".into()));
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(KeysError::Unreachable(format!(
            "proxyconnect tcp: {}",
            status_line
                .split_once(' ')
                .map(|x| x.1)
                .unwrap_or(status_line)
        ))),
    }
}

/// Bounds a get or create by etcd's request timeout.
async fn timed(
    f: impl Future<Output = Result<KeysResponse, KeysError>>,
) -> Result<KeysResponse, KeysError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(KeysError::Unreachable("context deadline exceeded".into())))
}

/// An OS error as Go words it: glibc's text, lower-cased, without Rust's "(os error N)".
fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}
