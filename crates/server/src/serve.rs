//! Listeners: the client port serves gRPC and HTTP on the same socket (HTTP/2 and HTTP/1.1,
//! plain or TLS), the peer port serves the peer transport.

use std::sync::Arc;

use axum::Router;
use etcd_transport::{AuthorityRepair, ListenOptions, ListenUrl, Listener};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use url::Url;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::server::EtcdServer;
use crate::{grpc, http, tls};

pub async fn serve_clients(server: &Arc<EtcdServer>) -> Result<(), ServerError> {
    let router = grpc::routes(server)
        .into_axum_router()
        .merge(http::routes(server.clone()));
    let tls = tls::client_server_config(&server.cfg)?;
    for url in &server.cfg.listen_client_urls {
        let tls = if is_tls(url) {
            Some(tls.clone().ok_or_else(|| {
                ServerError::Config(format!(
                    "listen URL {url} needs TLS: give --cert-file and --key-file, or --auto-tls"
                ))
            })?)
        } else {
            None
        };
        let listener = bind(url, tls).await?;
        tracing::info!(url = %url, "serving client traffic");
        tokio::spawn(accept_loop(listener, router.clone()));
    }
    Ok(())
}

pub async fn serve_peers(cfg: &ServerConfig, router: Router) -> Result<(), ServerError> {
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
        tracing::info!(url = %url, "serving peer traffic");
        tokio::spawn(accept_loop(listener, router.clone()));
    }
    Ok(())
}

pub use tls::peer_client_config as peer_client_tls;

fn is_tls(url: &Url) -> bool {
    matches!(url.scheme(), "https" | "unixs")
}

async fn bind(url: &Url, tls: Option<Arc<rustls::ServerConfig>>) -> Result<Listener, ServerError> {
    let listen_url = ListenUrl::parse(&crate::membership::url_string(url))
        .map_err(|e| ServerError::Config(format!("cannot listen on {url}: {e}")))?;
    Listener::bind(&listen_url, tls, ListenOptions::default())
        .await
        .map_err(|e| ServerError::Config(format!("cannot listen on {url}: {e}")))
}

async fn accept_loop(mut listener: Listener, router: Router) {
    loop {
        // The listener completes TLS handshakes (with a timeout) before handing connections
        // over, and never fails: bad handshakes are logged and skipped inside it.
        let conn = listener.accept().await;
        let router = router.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(router);
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                // etcdctl 3.4 sends `:authority` with a scheme (`http://host:port`) on some
                // calls; Go accepts it, h2 would reset the stream. See `AuthorityRepair`.
                .serve_connection_with_upgrades(TokioIo::new(AuthorityRepair::new(conn)), service)
                .await
            {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
}
