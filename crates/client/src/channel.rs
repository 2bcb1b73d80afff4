//! Opening a gRPC channel to an etcd endpoint: `http://`, `https://`, `unix://` or `unixs://`,
//! with TLS done by our own rustls configuration (so callers control verification, including
//! etcd's insecure-skip-verify and auto-TLS peers).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::{ClientError, DEFAULT_DIAL_TIMEOUT};

#[derive(Clone)]
pub struct ConnectOptions {
    /// TLS for `https://` and `unixs://` endpoints; when `None` those use no client
    /// certificate and are refused.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub dial_timeout: Duration,
    /// Per-request timeout applied by the channel; `None` for none.
    pub request_timeout: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            request_timeout: None,
            keepalive_interval: None,
            keepalive_timeout: None,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

#[derive(Clone, Debug)]
enum Target {
    Tcp { host: String, port: u16 },
    Unix { path: String },
}

#[derive(Clone, Debug)]
struct ParsedEndpoint {
    target: Target,
    tls: bool,
    host_for_tls: String,
}

fn parse_endpoint(endpoint: &str) -> Result<ParsedEndpoint, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    // etcdctl accepts a bare host:port as plain http.
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
    let tls = matches!(url.scheme(), "https" | "unixs");
    match url.scheme() {
        "http" | "https" => {
            let host = url.host_str().ok_or_else(|| invalid("no host"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = url.port().unwrap_or(if tls { 443 } else { 80 });
            Ok(ParsedEndpoint {
                host_for_tls: host.clone(),
                target: Target::Tcp { host, port },
                tls,
            })
        }
        "unix" | "unixs" => {
            // unix://path: the "host" part is the start of a relative path, as etcd reads it.
            let path = with_scheme
                .split_once("://")
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("no socket path"));
            }
            let host = path.split(':').next().unwrap_or("localhost").to_string();
            Ok(ParsedEndpoint {
                target: Target::Unix { path },
                tls,
                host_for_tls: host,
            })
        }
        other => Err(invalid(&format!(
            "unsupported scheme {other:?} (use http, https, unix or unixs)"
        ))),
    }
}

async fn dial(
    endpoint: ParsedEndpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> io::Result<TokioIo<Box<dyn Io>>> {
    let stream: Box<dyn Io> = match &endpoint.target {
        Target::Tcp { host, port } => {
            let tcp = TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            Box::new(tcp)
        }
        Target::Unix { path } => Box::new(UnixStream::connect(path).await?),
    };
    if !endpoint.tls {
        return Ok(TokioIo::new(stream));
    }
    let config = tls.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "TLS endpoint but no TLS configuration",
        )
    })?;
    let name = rustls::pki_types::ServerName::try_from(endpoint.host_for_tls.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls_stream = connector.connect(name, stream).await?;
    Ok(TokioIo::new(Box::new(tls_stream)))
}

/// Connects to the first endpoint that answers within the dial timeout.
pub async fn connect_channel<S: AsRef<str>>(
    endpoints: &[S],
    options: &ConnectOptions,
) -> Result<Channel, ClientError> {
    if endpoints.is_empty() {
        return Err(ClientError::NoEndpoints);
    }
    let mut last_error = None;
    for endpoint in endpoints {
        let endpoint = endpoint.as_ref();
        let parsed = parse_endpoint(endpoint)?;
        match connect_one(&parsed, options).await {
            Ok(channel) => return Ok(channel),
            Err(reason) => {
                last_error = Some(ClientError::Connect {
                    endpoint: endpoint.to_string(),
                    reason,
                })
            }
        }
    }
    Err(last_error.unwrap_or(ClientError::NoEndpoints))
}

/// A channel to `endpoint` that dials on first use (and again after a failure), so a caller
/// can start before the endpoint is up: etcd's grpc-proxy does.
pub fn lazy_channel(endpoint: &str, options: &ConnectOptions) -> Result<Channel, ClientError> {
    let parsed = parse_endpoint(endpoint)?;
    let (builder, connector) =
        channel_parts(&parsed, options).map_err(|reason| ClientError::Connect {
            endpoint: endpoint.to_string(),
            reason,
        })?;
    Ok(builder.connect_with_connector_lazy(connector))
}

/// A dial in progress.
type Dialing =
    std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<TokioIo<Box<dyn Io>>>> + Send>>;
/// What opens a channel's connection, whatever URI tonic asks for.
type DialFn = Box<dyn Fn(Uri) -> Dialing + Send + Sync>;
type Connector = tower::util::ServiceFn<DialFn>;

/// The endpoint settings and the dialer of a channel to `parsed`.
fn channel_parts(
    parsed: &ParsedEndpoint,
    options: &ConnectOptions,
) -> Result<(Endpoint, Connector), String> {
    let authority = match &parsed.target {
        Target::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
        Target::Tcp { host, port } => format!("{host}:{port}"),
        Target::Unix { .. } => "localhost".to_string(),
    };
    let uri: Uri = format!("http://{authority}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let mut builder = Endpoint::from(uri)
        .connect_timeout(options.dial_timeout)
        .tcp_nodelay(true);
    if let Some(t) = options.request_timeout {
        builder = builder.timeout(t);
    }
    if let Some(interval) = options.keepalive_interval {
        builder = builder
            .http2_keep_alive_interval(interval)
            .keep_alive_while_idle(true);
    }
    if let Some(timeout) = options.keepalive_timeout {
        builder = builder.keep_alive_timeout(timeout);
    }
    let parsed = parsed.clone();
    let tls = options.tls.clone();
    let dial_fn: DialFn = Box::new(move |_: Uri| Box::pin(dial(parsed.clone(), tls.clone())));
    Ok((builder, service_fn(dial_fn)))
}

async fn connect_one(parsed: &ParsedEndpoint, options: &ConnectOptions) -> Result<Channel, String> {
    // The URI only names the authority for HTTP/2; the connector decides where to dial.
    let (builder, connector) = channel_parts(parsed, options)?;
    tokio::time::timeout(
        options.dial_timeout,
        builder.connect_with_connector(connector),
    )
    .await
    .map_err(|_| "context deadline exceeded".to_string())?
    .map_err(|e| {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        msg
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_endpoint_form() {
        let e = parse_endpoint("127.0.0.1:2379").unwrap();
        assert!(!e.tls);
        assert!(matches!(e.target, Target::Tcp { ref host, port: 2379 } if host == "127.0.0.1"));
        let e = parse_endpoint("https://localhost:2379").unwrap();
        assert!(e.tls);
        assert_eq!(e.host_for_tls, "localhost");
        let e = parse_endpoint("unix://localhost:1234").unwrap();
        assert!(matches!(e.target, Target::Unix { ref path } if path == "localhost:1234"));
        let e = parse_endpoint("http://[::1]:2379").unwrap();
        assert!(matches!(e.target, Target::Tcp { ref host, .. } if host == "::1"));
        assert!(parse_endpoint("ftp://x:1").is_err());
    }
}
