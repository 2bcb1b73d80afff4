//! Listeners: the client port serves gRPC and HTTP on the same socket (HTTP/2 and HTTP/1.1,
//! plain or TLS), the peer port serves the peer transport: Raft links, told apart by their
//! first byte, and gRPC for the rest.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use etcd_transport::{AuthorityRepair, Conn, ListenOptions, ListenUrl, Listener};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tower::ServiceExt;
use url::Url;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::peer::LinkAcceptor;
use crate::raft::links::LINK_MAGIC;
use crate::server::EtcdServer;
use crate::{grpc, http, tls};

/// The client connections of a member, so that a stopping member can stop accepting and let
/// the requests in flight finish (etcd's gRPC `GracefulStop`): HTTP/2 connections get a GOAWAY
/// and close once their streams are done, HTTP/1.1 ones after the current request.
pub struct ClientDrain {
    graceful: std::sync::Mutex<Option<GracefulShutdown>>,
    stop_accepting: tokio::sync::watch::Sender<bool>,
}

impl ClientDrain {
    fn new() -> Arc<ClientDrain> {
        Arc::new(ClientDrain {
            graceful: std::sync::Mutex::new(Some(GracefulShutdown::new())),
            stop_accepting: tokio::sync::watch::channel(false).0,
        })
    }

    /// A watcher for a new connection; None once draining (the connection is refused).
    fn watcher(&self) -> Option<Watcher> {
        let graceful = self.graceful.lock().unwrap_or_else(|e| e.into_inner());
        graceful.as_ref().map(GracefulShutdown::watcher)
    }

    /// Stops accepting and waits, up to `limit`, for the open connections to finish their
    /// requests. Returns whether they all did (long watches keep theirs open until the limit).
    pub async fn drain(&self, limit: Duration) -> bool {
        self.stop_accepting.send_replace(true);
        let graceful = self
            .graceful
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match graceful {
            Some(g) => tokio::time::timeout(limit, g.shutdown()).await.is_ok(),
            None => true,
        }
    }
}

/// The client port's listeners, bound but not accepting yet: a member serves clients only
/// once its attributes are published through Raft (etcd's `ReadyNotify`), so the first answer
/// a client gets already comes from a member the cluster lists with its name and URLs.
/// Binding first still makes a taken port fail the start at once.
pub struct ClientListeners {
    listeners: Vec<(Url, Listener)>,
    router: Router,
}

pub async fn bind_clients(server: &Arc<EtcdServer>) -> Result<ClientListeners, ServerError> {
    let tls = tls::client_server_config(&server.cfg)?;
    let mut listeners = Vec::new();
    let urls = &server.cfg.listen_client_urls;
    // The same TCP address under http and https is one listener serving both (etcd's cmux).
    let address = |u: &Url| (u.host_str().map(str::to_string), u.port());
    let has_plain_twin = |u: &Url| {
        is_tls(u)
            && urls
                .iter()
                .any(|o| o.scheme() == "http" && address(o) == address(u))
    };
    for url in urls {
        if url.scheme() == "http"
            && urls
                .iter()
                .any(|o| o.scheme() == "https" && address(o) == address(url))
        {
            continue;
        }
        let tls = if is_tls(url) {
            Some(tls.clone().ok_or_else(|| {
                ServerError::Config(format!(
                    "listen URL {url} needs TLS: give --cert-file and --key-file, or --auto-tls"
                ))
            })?)
        } else {
            None
        };
        let options = ListenOptions {
            plain_too: has_plain_twin(url),
            ..ListenOptions::default()
        };
        listeners.push((url.clone(), bind_with(url, tls, options).await?));
    }
    Ok(ClientListeners {
        listeners,
        router: client_router(server),
    })
}

/// `--listen-metrics-urls`: `/metrics` and `/health` only, served from the start (etcd serves
/// them before the member is ready, so a scraper sees it come up).
pub async fn serve_metrics(server: &Arc<EtcdServer>) -> Result<(), ServerError> {
    if server.cfg.listen_metrics_urls.is_empty() {
        return Ok(());
    }
    let tls = tls::client_server_config(&server.cfg)?;
    // The console on the metrics port needs the gateway beside it; without it nothing there
    // reaches the services.
    let gateway = if server.cfg.enable_ui {
        gateway(server, grpc::router(server))
    } else {
        Router::new()
    };
    let router = http::metrics_routes(server.clone(), gateway);
    for url in &server.cfg.listen_metrics_urls {
        let tls = if is_tls(url) {
            Some(tls.clone().ok_or_else(|| {
                ServerError::Config(format!(
                    "metrics URL {url} needs TLS: give --cert-file and --key-file, or --auto-tls"
                ))
            })?)
        } else {
            None
        };
        let listener = bind(url, tls).await?;
        tracing::info!(url = %url, "serving metrics");
        tokio::spawn(accept_loop(listener, router.clone(), None));
    }
    Ok(())
}

impl ClientListeners {
    /// Starts accepting, with etcd's log line per listener, until `drain` drains.
    pub fn serve(self, drain: &Arc<ClientDrain>) {
        for (url, listener) in self.listeners {
            let address = match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                _ => crate::membership::url_string(&url),
            };
            if is_tls(&url) {
                tracing::info!(
                    plain = format!("serving client requests on {address}"),
                    address = %address,
                    "serving client traffic securely"
                );
            } else {
                tracing::info!(
                    plain = format!(
                        "serving insecure client requests on {address}, this is strongly \
                         discouraged!"
                    ),
                    address = %address,
                    "serving client traffic insecurely; this is strongly discouraged!"
                );
            }
            tokio::spawn(accept_loop(
                listener,
                self.router.clone(),
                Some(drain.clone()),
            ));
        }
    }
}

/// A drain for the client connections, handed to [`ClientListeners::serve`].
pub fn client_drain() -> Arc<ClientDrain> {
    ClientDrain::new()
}

/// gRPC and HTTP on one port, told apart as etcd (Go's `grpc.Server` beside an HTTP mux) does:
/// a request with a gRPC content type goes to the gRPC services, any other to the HTTP routes,
/// so a plain `GET /anything` gets `404 page not found`, never an empty gRPC answer.
fn client_router(server: &Arc<EtcdServer>) -> Router {
    let grpc = grpc::router(server);
    let http = http::routes(server.clone(), gateway(server, grpc.clone()));
    Router::new().fallback_service(tower::service_fn(move |request: axum::extract::Request| {
        let target = if is_grpc_request(request.headers()) {
            grpc.clone()
        } else {
            http.clone()
        };
        target.oneshot(request)
    }))
}

/// The JSON gateway over `grpc`, the in-process router of our services.
fn gateway(server: &Arc<EtcdServer>, grpc: Router) -> Router {
    crate::gateway::router(
        grpc,
        server.cfg.max_concurrent_streams,
        server.cfg.max_request_bytes as usize,
    )
}

fn is_grpc_request(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

pub async fn serve_peers(
    cfg: &ServerConfig,
    router: Router,
    links: Arc<LinkAcceptor>,
) -> Result<(), ServerError> {
    let tls = tls::peer_server_config(cfg)?;
    for url in &cfg.listen_peer_urls {
        let tls = if is_tls(url) {
            Some(tls.clone().ok_or_else(|| {
                ServerError::Config(format!(
                    "listen URL {url} needs TLS: give --peer-cert-file and --peer-key-file, or \
                     --peer-auto-tls"
                ))
            })?)
        } else {
            None
        };
        let listener = bind(url, tls).await?;
        let address = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            _ => crate::membership::url_string(url),
        };
        tracing::info!(address = %address, "serving peer traffic");
        tokio::spawn(peer_accept_loop(listener, router.clone(), links.clone()));
    }
    Ok(())
}

pub use tls::peer_client_config as peer_client_tls;

fn is_tls(url: &Url) -> bool {
    matches!(url.scheme(), "https" | "unixs")
}

async fn bind(url: &Url, tls: Option<Arc<rustls::ServerConfig>>) -> Result<Listener, ServerError> {
    bind_with(url, tls, ListenOptions::default()).await
}

async fn bind_with(
    url: &Url,
    tls: Option<Arc<rustls::ServerConfig>>,
    options: ListenOptions,
) -> Result<Listener, ServerError> {
    let listen_url = ListenUrl::parse(&crate::membership::url_string(url))
        .map_err(|e| ServerError::Config(format!("cannot listen on {url}: {e}")))?;
    Listener::bind(&listen_url, tls, options)
        .await
        .map_err(|e| ServerError::Config(format!("cannot listen on {url}: {e}")))
}

async fn accept_loop(mut listener: Listener, router: Router, drain: Option<Arc<ClientDrain>>) {
    let mut stop = drain.as_ref().map(|d| d.stop_accepting.subscribe());
    loop {
        // The listener completes TLS handshakes (with a timeout) before handing connections
        // over, and never fails: bad handshakes are logged and skipped inside it.
        let conn = match &mut stop {
            Some(stop) => tokio::select! {
                conn = listener.accept() => conn,
                _ = stop.wait_for(|s| *s) => return,
            },
            None => listener.accept().await,
        };
        let watcher = match &drain {
            Some(d) => match d.watcher() {
                Some(w) => Some(w),
                None => return,
            },
            None => None,
        };
        // The client certificate's Common Name, for auth (`--client-cert-auth`): each request
        // of the connection carries it, and a request without a token is that user.
        let identities: Vec<etcd_transport::CertIdentity> = conn
            .peer_certificates()
            .iter()
            .filter_map(|der| etcd_transport::CertIdentity::from_der(der).ok())
            .collect();
        let common_name = identities
            .first()
            .and_then(|identity| identity.common_name.clone())
            .filter(|cn| !cn.is_empty());
        match common_name {
            Some(cn) => {
                let cn = crate::grpc::access::ClientCommonName(Arc::from(cn));
                let chain = crate::v2http::auth::ClientCertChainNames::of(&identities);
                let router = router
                    .clone()
                    .layer(axum::Extension(cn))
                    .layer(axum::Extension(chain));
                tokio::spawn(serve_http(conn, Vec::new(), router, watcher));
            }
            None => {
                tokio::spawn(serve_http(conn, Vec::new(), router.clone(), watcher));
            }
        }
    }
}

/// How long a peer connection may stay silent before its first byte says what it is.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The peer port: a connection whose first byte starts [`LINK_MAGIC`] is a Raft link, any
/// other is HTTP (gRPC), served with that byte put back in front.
async fn peer_accept_loop(mut listener: Listener, router: Router, links: Arc<LinkAcceptor>) {
    loop {
        let mut conn = listener.accept().await;
        let (router, links) = (router.clone(), links.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(FIRST_BYTE_TIMEOUT, conn.read(&mut first)).await {
                Ok(Ok(1)) if first[0] == LINK_MAGIC[0] => links.accept(conn).await,
                Ok(Ok(1)) => serve_http(conn, first.to_vec(), router, None).await,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "peer connection failed"),
                Err(_) => tracing::debug!(
                    remote = %conn.remote_addr(),
                    "peer connection sent nothing; closing it"
                ),
            }
        });
    }
}

/// Serves HTTP/1.1 and HTTP/2 on one connection; `prefix` holds bytes already read from it;
/// with a `watcher`, the connection closes gracefully when its drain begins.
async fn serve_http(conn: Conn, prefix: Vec<u8>, router: Router, watcher: Option<Watcher>) {
    let service = TowerToHyperService::new(router);
    let builder = auto::Builder::new(TokioExecutor::new());
    let io = Replay {
        prefix,
        at: 0,
        inner: conn,
    };
    // etcdctl 3.4 sends `:authority` with a scheme (`http://host:port`) on some calls; Go
    // accepts it, h2 would reset the stream. See `AuthorityRepair`.
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(AuthorityRepair::new(io)), service);
    let served = match watcher {
        Some(w) => w.watch(connection).await,
        None => connection.await,
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// A connection with some bytes already read from it, which reads return first.
struct Replay<T> {
    prefix: Vec<u8>,
    at: usize,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn replay_reads_the_prefix_then_the_connection() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"ET / HTTP/1.1")
            .await
            .unwrap();
        drop(a);
        let mut r = Replay {
            prefix: b"G".to_vec(),
            at: 0,
            inner: b,
        };
        let mut all = String::new();
        r.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET / HTTP/1.1");
    }
}
