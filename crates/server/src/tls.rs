//! TLS configurations for the client and peer ports, from certificate files or self-signed
//! certificates kept in the data dir (`--auto-tls`, `--peer-auto-tls`), as etcd does.

use std::sync::Arc;

use etcd_transport::{ALPN_H2, TlsInfo, self_signed};

use crate::config::{ServerConfig, TlsSettings};
use crate::error::ServerError;

/// Self-signed certificates are valid this long (etcd's `--self-signed-cert-validity` default).
const SELF_CERT_VALIDITY_YEARS: u32 = 1;

pub fn client_server_config(
    cfg: &ServerConfig,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    resolve(cfg, &cfg.client_tls, "client", &cfg.listen_client_urls)?
        .map(|info| info.server_config().map_err(tls_error))
        .transpose()
}

pub fn peer_server_config(
    cfg: &ServerConfig,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    resolve(cfg, &cfg.peer_tls, "peer", &cfg.listen_peer_urls)?
        .map(|info| info.server_config().map_err(tls_error))
        .transpose()
}

/// How this member dials its peers over TLS: its peer certificate as client identity and the
/// peer CA as trust root; under `--peer-auto-tls`, without verifying the peer, as etcd does.
pub fn peer_client_config(
    cfg: &ServerConfig,
) -> Result<Option<Arc<rustls::ClientConfig>>, ServerError> {
    let Some(mut info) = resolve(cfg, &cfg.peer_tls, "peer", &cfg.listen_peer_urls)? else {
        return Ok(None);
    };
    if cfg.peer_tls.auto && cfg.peer_tls.info.cert_file.is_none() {
        info.insecure_skip_verify = true;
    }
    info.client_config(&[ALPN_H2]).map(Some).map_err(tls_error)
}

/// The certificate files to use: the configured ones, else (with auto-TLS) self-signed ones
/// under `<data-dir>/fixtures/<kind>`, else none.
fn resolve(
    cfg: &ServerConfig,
    settings: &TlsSettings,
    kind: &str,
    urls: &[url::Url],
) -> Result<Option<TlsInfo>, ServerError> {
    if settings.info.cert_file.is_some() || settings.info.key_file.is_some() {
        return Ok(Some(settings.info.clone()));
    }
    if !settings.auto {
        return Ok(None);
    }
    let hosts: Vec<String> = urls
        .iter()
        .filter_map(|u| {
            let host = u.host_str()?;
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            })
        })
        .collect();
    let dir = cfg.data_dir.join("fixtures").join(kind);
    let mut info = self_signed(&dir, &hosts, SELF_CERT_VALIDITY_YEARS).map_err(tls_error)?;
    // Keep the checks the user asked for; only the certificate comes from the data dir.
    info.cipher_suites = settings.info.cipher_suites.clone();
    Ok(Some(info))
}

fn tls_error(e: etcd_transport::TransportError) -> ServerError {
    ServerError::Config(e.to_string())
}
