//! The local certificate and key, reloaded from disk when the files change.
//!
//! etcd re-reads `--cert-file`/`--key-file` on every handshake so that certificates can be
//! rotated without a restart. We do the same, but only re-read when the files' stamps change,
//! and if the new files do not load we keep serving the last good pair (with a warning),
//! rather than failing every handshake during a half-finished rotation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, SignatureScheme};

use crate::error::TransportError;
use crate::pem::{FileStamp, load_certs, load_key};

/// Loads a certificate chain and its private key and checks that they belong together.
pub(crate) fn load_certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TransportError> {
    let chain = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TransportError::malformed(key_file, e))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Some key types cannot report their public key; rustls treats that as unknown, so do we.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TransportError::KeyMismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            })
        }
        Err(e) => Err(TransportError::malformed(cert_file, e)),
    }
}

/// A certificate/key pair that follows its files.
#[derive(Debug)]
pub(crate) struct KeyPairSource {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<KeyPairState>,
}

#[derive(Debug)]
struct KeyPairState {
    /// Stamps of the last attempted load, successful or not, so a broken file is reported
    /// once rather than on every handshake.
    stamps: Option<(FileStamp, FileStamp)>,
    current: Arc<CertifiedKey>,
}

impl KeyPairSource {
    /// Loads the pair now, so that a bad configuration fails at startup like etcd's.
    pub(crate) fn load(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, TransportError> {
        let stamps = Self::stamps(cert_file, key_file).ok();
        let current = Arc::new(load_certified_key(cert_file, key_file, &provider)?);
        Ok(Arc::new(KeyPairSource {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            state: Mutex::new(KeyPairState { stamps, current }),
        }))
    }

    fn stamps(cert_file: &Path, key_file: &Path) -> Result<(FileStamp, FileStamp), TransportError> {
        Ok((FileStamp::of(cert_file)?, FileStamp::of(key_file)?))
    }

    /// The pair to use for the handshake starting now.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock only means another handshake panicked mid-reload; the state is
        // still a valid pair, so keep using it.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stamps = match Self::stamps(&self.cert_file, &self.key_file) {
            Ok(stamps) => stamps,
            Err(err) => {
                if state.stamps.take().is_some() {
                    tracing::warn!(
                        cert_file = %self.cert_file.display(),
                        key_file = %self.key_file.display(),
                        error = %err,
                        "failed to find cert files; serving the previously loaded certificate, restore the files to rotate"
                    );
                }
                return state.current.clone();
            }
        };
        if state.stamps == Some(stamps) {
            return state.current.clone();
        }
        state.stamps = Some(stamps);
        match load_certified_key(&self.cert_file, &self.key_file, &self.provider) {
            Ok(pair) => {
                tracing::info!(
                    cert_file = %self.cert_file.display(),
                    key_file = %self.key_file.display(),
                    "reloaded TLS certificate"
                );
                state.current = Arc::new(pair);
            }
            Err(err) => tracing::warn!(
                cert_file = %self.cert_file.display(),
                key_file = %self.key_file.display(),
                error = %err,
                "failed to reload certificate; serving the previously loaded one, fix the files to rotate"
            ),
        }
        state.current.clone()
    }
}

/// Serves the current pair to every TLS client, whatever name it asks for (etcd does not
/// select certificates by SNI).
#[derive(Debug)]
pub(crate) struct ServerCertResolver(pub(crate) Arc<KeyPairSource>);

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// Presents the current pair whenever a server asks for a client certificate.
#[derive(Debug)]
pub(crate) struct ClientCertResolver(pub(crate) Arc<KeyPairSource>);

impl ResolvesClientCert for ClientCertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_file = dir.join(format!("{name}.crt"));
        let key_file = dir.join(format!("{name}.key"));
        fs::write(&cert_file, cert.pem()).unwrap();
        fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, _) = write_pair(dir.path(), "a");
        let (_, key_b) = write_pair(dir.path(), "b");
        let err = load_certified_key(&cert_a, &key_b, &provider()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tls: private key does not match public key"),
            "{err}"
        );
    }

    #[test]
    fn reloads_rotated_files_and_survives_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a");
        let source = KeyPairSource::load(&cert, &key, provider()).unwrap();
        let first = source.current();
        assert!(
            Arc::ptr_eq(&first, &source.current()),
            "no change, no reload"
        );

        let (cert_b, key_b) = write_pair(dir.path(), "b");
        fs::rename(&key_b, &key).unwrap();
        fs::rename(&cert_b, &cert).unwrap();
        let second = source.current();
        assert_ne!(first.cert[0], second.cert[0], "rotated certificate served");

        fs::write(&cert, "garbage").unwrap();
        assert_eq!(
            second.cert[0],
            source.current().cert[0],
            "last good pair kept"
        );
        fs::remove_file(&cert).unwrap();
        assert_eq!(
            second.cert[0],
            source.current().cert[0],
            "last good pair kept"
        );
    }
}
