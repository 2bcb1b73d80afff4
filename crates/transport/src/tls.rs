//! `TlsInfo`: the TLS flags of one side (client or peer) and the rustls configurations built
//! from them, following etcd's `transport.TLSInfo`.
//!
//! Server side ([`TlsInfo::server_config`]):
//! - the certificate and key are re-read when their files change (etcd re-reads them on every
//!   handshake, for rotation without restart);
//! - with a trusted CA file, a client certificate is *required* and verified, whether or not
//!   `client_cert_auth` is set; this is what etcd does (`ServerConfig` sets
//!   `RequireAndVerifyClientCert` when `TrustedCAFile != "" || ClientCertAuth`);
//! - the CRL file, if any, and the allowed CN/hostname are enforced during the handshake;
//! - ALPN offers `h2` and `http/1.1`, because gRPC and HTTP share the client port.
//!
//! Client side ([`TlsInfo::client_config`]): trusts the CA file (or the system bundle), presents
//! the certificate if one is configured, and skips server verification for auto-TLS
//! (`self_cert`) or `insecure_skip_verify`.
//!
//! ```no_run
//! use etcd_transport::TlsInfo;
//! let info = TlsInfo {
//!     cert_file: Some("server.crt".into()),
//!     key_file: Some("server.key".into()),
//!     trusted_ca_file: Some("ca.crt".into()),
//!     client_cert_auth: true,
//!     ..TlsInfo::default()
//! };
//! let server = info.server_config()?;
//! let client = info.client_config(&[etcd_transport::ALPN_H2])?;
//! # Ok::<(), etcd_transport::TransportError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::cipher::suites;
use crate::error::TransportError;
use crate::identity::{AllowedIdentity, CertIdentity};
use crate::keypair::{ClientCertResolver, KeyPairSource, ServerCertResolver, load_certified_key};
use crate::pem::{CaBundle, load_ca, load_certs, read_file};
use crate::verify::{CaServerVerifier, ClientAuthVerifier, InsecureServerVerifier};

/// ALPN id of HTTP/2 (gRPC).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Where Go's crypto/x509 looks for the system CA bundle on Linux, in its order. Used by
/// clients that are given no CA file, as Go clients use the system roots then.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// TLS settings of one side, as given by flags (`--cert-file`, `--peer-key-file`, ...).
/// `None` and empty strings both mean "not set".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    /// Require client certificates (`--client-cert-auth`). Needs `trusted_ca_file`.
    pub client_cert_auth: bool,
    /// Reject client certificates revoked by this CRL (PEM or DER).
    pub crl_file: Option<PathBuf>,
    /// Client side: accept any server certificate (`--insecure-skip-tls-verify`).
    pub insecure_skip_verify: bool,
    /// Peer listeners: skip checking that a peer's certificate SANs match its address
    /// (`--experimental-peer-skip-client-san-verification`). See [`crate::ListenOptions`].
    pub skip_client_san_verify: bool,
    /// Client side: the name the server certificate must match, instead of the dialled host.
    pub server_name: Option<String>,
    /// Go names of the TLS 1.2 cipher suites to allow (`--cipher-suites`); empty for defaults.
    pub cipher_suites: Vec<String>,
    /// Only accept peers whose certificate has this Common Name (`--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
    /// Only accept peers whose certificate is valid for this host
    /// (`--client-cert-allowed-hostname`, `--peer-cert-allowed-hostname`).
    pub allowed_hostname: Option<String>,
    /// Client side: the certificate must have an empty Common Name (gRPC proxy to server).
    pub empty_cn: bool,
    /// Set by [`crate::self_signed`]: the certificate is self-signed (auto-TLS), so clients
    /// built from this info skip verifying the server's chain, like etcd.
    pub self_cert: bool,
}

fn set(path: &Option<PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}

impl TlsInfo {
    /// True when neither certificate nor key is configured (etcd's `Empty()`).
    pub fn is_empty(&self) -> bool {
        set(&self.cert_file).is_none() && set(&self.key_file).is_none()
    }

    /// Both files of the key pair, or etcd's error naming the one that is missing.
    fn key_pair_files(&self) -> Result<(&Path, &Path), TransportError> {
        match (set(&self.cert_file), set(&self.key_file)) {
            (Some(cert), Some(key)) => Ok((cert, key)),
            (cert, key) => Err(TransportError::MissingKeyPair {
                key: key.map(|p| p.display().to_string()).unwrap_or_default(),
                cert: cert.map(|p| p.display().to_string()).unwrap_or_default(),
            }),
        }
    }

    /// The allowed CN / hostname policy for peer certificates.
    pub fn allowed_identity(&self) -> Result<AllowedIdentity, TransportError> {
        AllowedIdentity::new(self.allowed_cn.as_deref(), self.allowed_hostname.as_deref())
    }

    /// Checks a peer's leaf certificate (DER) against `allowed_cn` / `allowed_hostname`.
    /// [`TlsInfo::server_config`] already does this during the handshake; this is for callers
    /// that verify certificates themselves.
    pub fn check_peer_certificate(&self, cert_der: &[u8]) -> Result<(), TransportError> {
        self.allowed_identity()?.check(cert_der)
    }

    /// The rustls server configuration for listeners of this side.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TransportError> {
        let (cert_file, key_file) = self.key_pair_files()?;
        let identity = self.allowed_identity()?;
        let suites = suites(&self.cipher_suites)?;
        let keys = KeyPairSource::load(cert_file, key_file, suites.provider.clone())?;

        let verifier: Arc<dyn ClientCertVerifier> = match set(&self.trusted_ca_file) {
            Some(ca_file) => Arc::new(ClientAuthVerifier::new(
                load_ca(ca_file)?,
                set(&self.crl_file),
                identity,
                suites.provider.clone(),
            )?),
            None if self.client_cert_auth => return Err(TransportError::ClientCertAuthWithoutCa),
            None => WebPkiClientVerifier::no_client_auth(),
        };

        let mut config = ServerConfig::builder_with_provider(suites.provider)
            .with_protocol_versions(suites.versions)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(ServerCertResolver(keys)));
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        Ok(Arc::new(config))
    }

    /// The rustls client configuration for connecting to servers of this side, offering the
    /// given ALPN protocols (for example `&[ALPN_H2]` for gRPC; none for plain HTTP/1.1).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TransportError> {
        let suites = suites(&self.cipher_suites)?;
        let builder = ClientConfig::builder_with_provider(suites.provider.clone())
            .with_protocol_versions(suites.versions)?;
        let builder = if self.insecure_skip_verify || self.self_cert {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(InsecureServerVerifier::new(
                    suites.provider.clone(),
                )))
        } else {
            let ca = match set(&self.trusted_ca_file) {
                Some(ca_file) => load_ca(ca_file)?,
                None => system_roots(),
            };
            if ca.roots.is_empty() {
                return Err(TransportError::NoRootCertificates);
            }
            let verifier = CaServerVerifier::new(ca, suites.provider.clone())?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        };

        let mut config = if self.is_empty() {
            builder.with_no_client_auth()
        } else {
            let (cert_file, key_file) = self.key_pair_files()?;
            if self.empty_cn {
                check_empty_cn(cert_file)?;
            }
            let keys = KeyPairSource::load(cert_file, key_file, suites.provider)?;
            builder.with_client_cert_resolver(Arc::new(ClientCertResolver(keys)))
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The name to verify a server's certificate against when dialling `host` (a host name,
    /// an IP, or a bracketed IPv6 address): `server_name` when set, else `host`.
    pub fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, TransportError> {
        let name = self
            .server_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(host);
        let bare = name
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(name);
        ServerName::try_from(bare.to_string())
            .map_err(|_| TransportError::InvalidServerName(name.to_string()))
    }

    /// Loads the key pair once, to report a bad certificate or key at startup.
    pub fn validate_key_pair(&self) -> Result<(), TransportError> {
        let (cert_file, key_file) = self.key_pair_files()?;
        let provider = suites(&self.cipher_suites)?.provider;
        load_certified_key(cert_file, key_file, &provider).map(|_| ())
    }
}

impl fmt::Display for TlsInfo {
    /// etcd's `TLSInfo.String()`, as it appears in startup logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |p: &Option<PathBuf>| p.as_deref().map(|p| p.display().to_string());
        write!(
            f,
            "cert = {}, key = {}, trusted-ca = {}, client-cert-auth = {}, crl-file = {}",
            show(&self.cert_file).unwrap_or_default(),
            show(&self.key_file).unwrap_or_default(),
            show(&self.trusted_ca_file).unwrap_or_default(),
            self.client_cert_auth,
            show(&self.crl_file).unwrap_or_default(),
        )
    }
}

/// etcd's `EmptyCN` check: the gRPC proxy's certificate must not carry a Common Name, because
/// the server would take it as a user name.
fn check_empty_cn(cert_file: &Path) -> Result<(), TransportError> {
    let chain = load_certs(cert_file)?;
    let identity = CertIdentity::from_der(&chain[0])?;
    match identity.common_name.filter(|cn| !cn.is_empty()) {
        Some(cn) => Err(TransportError::NonEmptyCommonName(cn)),
        None => Ok(()),
    }
}

/// The first system CA bundle found; certificates that do not parse are skipped, as Go does
/// for the system pool.
fn system_roots() -> CaBundle {
    for file in SYSTEM_CA_FILES {
        let Ok(bytes) = read_file(Path::new(file)) else {
            continue;
        };
        let mut reader = &bytes[..];
        let certs: Vec<_> = rustls_pemfile::certs(&mut reader)
            .filter_map(Result::ok)
            .collect();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certs.iter().cloned());
        if added > 0 {
            return CaBundle { roots, certs };
        }
    }
    CaBundle {
        roots: RootCertStore::empty(),
        certs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_half_key_pairs() {
        assert!(TlsInfo::default().is_empty());
        let half = TlsInfo {
            cert_file: Some("/x/cert.pem".into()),
            key_file: Some("".into()),
            ..TlsInfo::default()
        };
        assert!(!half.is_empty());
        assert_eq!(
            half.server_config().unwrap_err().to_string(),
            "KeyFile and CertFile must both be present[key: , cert: /x/cert.pem]"
        );
        assert_eq!(
            half.client_config(&[]).unwrap_err().to_string(),
            "KeyFile and CertFile must both be present[key: , cert: /x/cert.pem]"
        );
    }

    #[test]
    fn missing_cert_file_is_named() {
        let info = TlsInfo {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..TlsInfo::default()
        };
        assert_eq!(
            info.server_config().unwrap_err().to_string(),
            "open /nonexistent/cert.pem: no such file or directory"
        );
        assert!(info.validate_key_pair().is_err());
    }

    #[test]
    fn display_matches_etcd() {
        let info = TlsInfo {
            cert_file: Some("a.crt".into()),
            key_file: Some("a.key".into()),
            client_cert_auth: true,
            ..TlsInfo::default()
        };
        assert_eq!(
            info.to_string(),
            "cert = a.crt, key = a.key, trusted-ca = , client-cert-auth = true, crl-file = "
        );
    }

    #[test]
    fn server_name_override_and_ipv6() {
        let info = TlsInfo::default();
        assert_eq!(
            info.server_name_for("[::1]").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            info.server_name_for("localhost").unwrap(),
            ServerName::try_from("localhost").unwrap()
        );
        let info = TlsInfo {
            server_name: Some("etcd.example".into()),
            ..TlsInfo::default()
        };
        assert_eq!(
            info.server_name_for("10.0.0.1").unwrap(),
            ServerName::try_from("etcd.example").unwrap()
        );
        assert!(TlsInfo::default().server_name_for("bad name!").is_err());
    }

    #[test]
    fn insecure_client_needs_no_roots() {
        let info = TlsInfo {
            insecure_skip_verify: true,
            ..TlsInfo::default()
        };
        let config = info.client_config(&[ALPN_H2]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
