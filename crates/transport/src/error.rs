//! The one error type of this crate.
//!
//! Messages follow etcd's wording where etcd has one, so that an operator can search for
//! them, and name the file or URL at fault so that the message alone says what to fix.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while parsing listen URLs, loading TLS material or binding.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A file could not be opened, read or written (Go: `open /x/cert.pem: no such file or directory`).
    #[error("{op} {}: {msg}", path.display())]
    File {
        op: &'static str,
        path: PathBuf,
        msg: String,
        #[source]
        source: io::Error,
    },

    /// The certificate file holds no `CERTIFICATE` PEM block.
    #[error("tls: failed to find any PEM data in certificate input ({})", path.display())]
    NoCertificatePem { path: PathBuf },

    /// The key file holds no private key PEM block (PKCS#1, SEC1 or PKCS#8).
    #[error("tls: failed to find any PEM data in key input ({})", path.display())]
    NoKeyPem { path: PathBuf },

    /// The trusted CA file holds no certificate.
    #[error("tls: failed to find any PEM data in trusted CA input ({})", path.display())]
    NoCaPem { path: PathBuf },

    /// A PEM or DER structure in a file could not be parsed.
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },

    /// The private key is not the one of the certificate's public key.
    #[error(
        "tls: private key does not match public key (cert {}, key {})",
        cert.display(),
        key.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    /// Only one of the certificate and key files was given.
    #[error("KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")]
    MissingKeyPair { key: String, cert: String },

    /// `--client-cert-auth` without a CA to verify client certificates against.
    #[error(
        "client certificate authentication requires a trusted CA file; set --trusted-ca-file (or --peer-trusted-ca-file)"
    )]
    ClientCertAuthWithoutCa,

    /// A client has no CA to verify servers against.
    #[error(
        "no trusted CA file given and no system CA bundle found; set the CA file (--cacert) or skip verification (--insecure-skip-tls-verify)"
    )]
    NoRootCertificates,

    /// Both an allowed CN and an allowed hostname were configured.
    #[error(
        "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={hostname:?})"
    )]
    AllowedCnAndHostname { cn: String, hostname: String },

    /// A cipher suite name that Go's crypto/tls does not know.
    #[error("unexpected TLS cipher suite {0:?}")]
    UnknownCipherSuite(String),

    /// A client certificate was expected to have an empty CN (gRPC proxy to server).
    #[error("cert has non empty Common Name ({0})")]
    NonEmptyCommonName(String),

    /// The peer certificate does not carry the allowed CN or hostname.
    #[error("client certificate authentication failed")]
    PeerIdentityRejected,

    /// The peer certificate's SANs do not match the address it connects from.
    #[error("tls: {host:?} does not match any of DNSNames {dns_names:?}{detail}")]
    PeerSanMismatch {
        host: String,
        dns_names: Vec<String>,
        /// Extra context, such as a failed lookup; empty when none.
        detail: String,
    },

    /// rustls refused the configuration (no usable cipher suite, bad key type, ...).
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),

    /// rustls refused to build a certificate verifier (bad CA or CRL).
    #[error("tls: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),

    /// A host name is not valid for TLS server-name verification.
    #[error("tls: invalid server name {0:?}")]
    InvalidServerName(String),

    /// Self-signed certificate generation failed.
    #[error("cannot generate self-signed certificate in {}: {reason}", dir.display())]
    SelfCert { dir: PathBuf, reason: String },

    /// The scheme of a listen URL is none of the four etcd accepts.
    #[error("URL scheme must be http, https, unix, or unixs: {0}")]
    UrlScheme(String),

    /// The address of a listen URL is not `host:port`.
    #[error("URL address does not have the form \"host:port\": {0}")]
    UrlHostPort(String),

    /// A listen URL carries a path, query or fragment.
    #[error("URL must not contain a path: {0}")]
    UrlPath(String),

    /// A TCP listen URL names a host that is neither an IP nor `localhost`.
    #[error("expected IP in URL for binding ({0})")]
    UrlBindHost(String),

    /// A list of listen URLs is empty.
    #[error("no valid URLs given")]
    NoUrls,

    /// An https/unixs URL was bound without TLS material.
    #[error("cannot listen on TLS for {0}: KeyFile and CertFile are not presented")]
    TlsWithoutCert(String),

    /// The socket could not be bound (Go: `listen tcp 127.0.0.1:2379: bind: address already in use`).
    #[error("listen {network} {addr}: {msg}")]
    Listen {
        network: &'static str,
        addr: String,
        msg: String,
        #[source]
        source: io::Error,
    },
}

impl TransportError {
    /// Wraps an I/O error on `path` the way Go's `*os.PathError` prints it.
    pub(crate) fn file(op: &'static str, path: &Path, source: io::Error) -> Self {
        TransportError::File {
            op,
            path: path.to_path_buf(),
            msg: go_io_message(&source),
            source,
        }
    }

    pub(crate) fn malformed(path: &Path, reason: impl ToString) -> Self {
        TransportError::Malformed {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Renders an I/O error like Go's syscall errors: lower case and without Rust's
/// `(os error N)` suffix, so `No such file or directory (os error 2)` becomes
/// `no such file or directory`, the text etcd users know.
pub(crate) fn go_io_message(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_error_reads_like_go() {
        let err = std::fs::read("/nonexistent/cert.pem").unwrap_err();
        let err = TransportError::file("open", Path::new("/nonexistent/cert.pem"), err);
        assert_eq!(
            err.to_string(),
            "open /nonexistent/cert.pem: no such file or directory"
        );
    }

    #[test]
    fn cipher_error_matches_etcd() {
        let err = TransportError::UnknownCipherSuite("X".into());
        assert_eq!(err.to_string(), "unexpected TLS cipher suite \"X\"");
    }
}
