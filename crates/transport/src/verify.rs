//! Certificate verifiers: client certificates on our servers, server certificates on our
//! clients, and the "skip verification" verifier for auto-TLS and `--insecure-skip-tls-verify`.
//!
//! Client certificates are verified by webpki against the trusted CA, then checked against
//! the CRL (webpki's own CRL support, so revocation is part of the handshake) and against the
//! allowed CN or hostname. Doing all of it inside the handshake, rather than after it, means
//! every server built from [`crate::TlsInfo::server_config`] enforces it, whatever accepts
//! its connections, and the client gets a proper `bad certificate` alert as with etcd.
//!
//! Both CA-based verifiers also apply Go's rule that a certificate which is itself in the CA
//! file is trusted directly (see `TrustedLeaves`), which webpki lacks and etcd's tests use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::error::TransportError;
use crate::identity::{AllowedIdentity, CertIdentity};
use crate::pem::{CaBundle, FileStamp, load_crls};

type Crls = Arc<Vec<CertificateRevocationListDer<'static>>>;

/// Requires a client certificate signed by a trusted CA, not revoked by the CRL file, and
/// naming the allowed identity.
#[derive(Debug)]
pub(crate) struct ClientAuthVerifier {
    roots: Arc<RootCertStore>,
    leaves: TrustedLeaves,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    identity: AllowedIdentity,
    crl: Option<CrlFile>,
    /// Used when there is no CRL file; with one, the verifier lives in `crl`.
    fixed: Option<Arc<dyn ClientCertVerifier>>,
}

/// etcd re-reads the CRL file for every connection so that a revocation takes effect without
/// a restart. We re-read it only when its stamp changes, and rebuild the webpki verifier then.
#[derive(Debug)]
struct CrlFile {
    path: PathBuf,
    state: Mutex<CrlState>,
}

#[derive(Debug)]
struct CrlState {
    stamp: FileStamp,
    verifier: Arc<dyn ClientCertVerifier>,
    crls: Crls,
}

impl ClientAuthVerifier {
    pub(crate) fn new(
        ca: CaBundle,
        crl_file: Option<&Path>,
        identity: AllowedIdentity,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClientAuthVerifier, TransportError> {
        let roots = Arc::new(ca.roots);
        let hints = roots.subjects();
        let mut verifier = ClientAuthVerifier {
            roots,
            leaves: TrustedLeaves(ca.certs),
            hints,
            provider,
            identity,
            crl: None,
            fixed: None,
        };
        match crl_file {
            Some(path) => {
                let state = verifier.load_crl(path)?;
                verifier.crl = Some(CrlFile {
                    path: path.to_path_buf(),
                    state: Mutex::new(state),
                });
            }
            None => verifier.fixed = Some(verifier.build(Vec::new(), None)?),
        }
        Ok(verifier)
    }

    fn load_crl(&self, path: &Path) -> Result<CrlState, TransportError> {
        let stamp = FileStamp::of(path)?;
        let crls = load_crls(path)?;
        let verifier = self.build(crls.clone(), Some(path))?;
        Ok(CrlState {
            stamp,
            verifier,
            crls: Arc::new(crls),
        })
    }

    fn build(
        &self,
        crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
        crl_path: Option<&Path>,
    ) -> Result<Arc<dyn ClientCertVerifier>, TransportError> {
        WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
            .with_crls(crls)
            // A CRL file covers the CAs that issued it; certificates from other CAs in the
            // bundle have no CRL and must still be accepted, as with etcd.
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| match crl_path {
                Some(path) => TransportError::malformed(path, e),
                None => TransportError::Verifier(e),
            })
    }

    /// The webpki verifier and CRLs to use now, reloading the CRL if its file changed. A CRL
    /// that cannot be read fails the handshake: revocation must fail closed.
    fn current(&self) -> Result<(Arc<dyn ClientCertVerifier>, Crls), TransportError> {
        if let Some(fixed) = &self.fixed {
            return Ok((fixed.clone(), Crls::default()));
        }
        let Some(crl) = &self.crl else {
            return Err(TransportError::ClientCertAuthWithoutCa);
        };
        let stamp = FileStamp::of(&crl.path)?;
        {
            let state = crl.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.stamp == stamp {
                return Ok((state.verifier.clone(), state.crls.clone()));
            }
        }
        // Load outside the lock so concurrent handshakes are not serialised on file I/O.
        let fresh = self.load_crl(&crl.path)?;
        tracing::info!(crl_file = %crl.path.display(), "reloaded certificate revocation list");
        let current = (fresh.verifier.clone(), fresh.crls.clone());
        *crl.state.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(current)
    }
}

fn other_error(err: TransportError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

impl ClientCertVerifier for ClientAuthVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (inner, crls) = self.current().map_err(|e| {
            tracing::warn!(error = %e, "cannot check client certificate revocation; rejecting the connection, fix the CRL file");
            other_error(e)
        })?;
        let verified = match inner.verify_client_cert(end_entity, intermediates, now) {
            Ok(verified) => verified,
            Err(_) if self.leaves.contains(end_entity) => {
                self.leaves.verify(end_entity, now, Purpose::ClientAuth)?;
                check_serial_not_revoked(end_entity, &crls)?;
                ClientCertVerified::assertion()
            }
            Err(e) => return Err(e),
        };
        self.identity.check(end_entity).map_err(other_error)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Accepts any server certificate without checking its chain or name, like Go's
/// `InsecureSkipVerify`, but still checks the handshake signatures, so the peer must hold the
/// private key of the certificate it sent. Used for auto-TLS (self-signed) peers and for
/// `--insecure-skip-tls-verify`; it protects against passive eavesdropping only.
#[derive(Debug)]
pub struct InsecureServerVerifier {
    provider: Arc<CryptoProvider>,
}

impl InsecureServerVerifier {
    pub fn new(provider: Arc<CryptoProvider>) -> InsecureServerVerifier {
        InsecureServerVerifier { provider }
    }
}

impl ServerCertVerifier for InsecureServerVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Go trusts a peer certificate outright when it is itself one of the trusted roots (a chain
/// of one). webpki does not: it refuses a CA certificate as a leaf. etcd's e2e tests rely on
/// Go's rule (one self-signed CA certificate as server cert, client cert and CA), so we apply
/// it when webpki says no, with the checks Go still makes on such a chain.
#[derive(Clone, Debug)]
struct TrustedLeaves(Vec<CertificateDer<'static>>);

#[derive(Clone, Copy, Debug)]
enum Purpose {
    ServerAuth,
    ClientAuth,
}

impl TrustedLeaves {
    fn contains(&self, cert: &CertificateDer<'_>) -> bool {
        self.0.iter().any(|c| c.as_ref() == cert.as_ref())
    }

    /// Validity period and extended key usage, as Go checks them on a one-certificate chain.
    fn verify(
        &self,
        cert: &CertificateDer<'_>,
        now: UnixTime,
        purpose: Purpose,
    ) -> Result<(), rustls::Error> {
        let bad_encoding = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|_| bad_encoding())?;
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = parsed.validity();
        if now_secs < validity.not_before.timestamp() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now_secs > validity.not_after.timestamp() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        if let Some(eku) = parsed.extended_key_usage().map_err(|_| bad_encoding())? {
            let allowed = eku.value.any
                || match purpose {
                    Purpose::ServerAuth => eku.value.server_auth,
                    Purpose::ClientAuth => eku.value.client_auth,
                };
            if !allowed {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::InvalidPurpose,
                ));
            }
        }
        Ok(())
    }
}

/// etcd's own CRL check (`checkCRL`): the certificate's serial must not be listed. Used for
/// trusted-leaf certificates, which webpki's revocation check never sees.
fn check_serial_not_revoked(
    cert: &CertificateDer<'_>,
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<(), rustls::Error> {
    if crls.is_empty() {
        return Ok(());
    }
    let bad_encoding = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|_| bad_encoding())?;
    let serial = parsed.raw_serial();
    for crl in crls {
        // Unparsable CRLs were refused when loaded (webpki parses them first).
        let Ok((_, list)) = x509_parser::parse_x509_crl(crl) else {
            continue;
        };
        if list
            .iter_revoked_certificates()
            .any(|revoked| revoked.raw_serial() == serial)
        {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
    }
    Ok(())
}

/// Verifies servers against a CA bundle with webpki, plus Go's trusted-leaf rule (see
/// [`TrustedLeaves`]), checking the server name against the leaf's SANs in that case.
#[derive(Debug)]
pub(crate) struct CaServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    leaves: TrustedLeaves,
}

impl CaServerVerifier {
    pub(crate) fn new(
        ca: CaBundle,
        provider: Arc<CryptoProvider>,
    ) -> Result<CaServerVerifier, TransportError> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(ca.roots), provider).build()?;
        Ok(CaServerVerifier {
            inner,
            leaves: TrustedLeaves(ca.certs),
        })
    }
}

impl ServerCertVerifier for CaServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(_) if self.leaves.contains(end_entity) => {
                self.leaves.verify(end_entity, now, Purpose::ServerAuth)?;
                let identity = CertIdentity::from_der(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                let name = match server_name {
                    ServerName::DnsName(name) => name.as_ref().to_string(),
                    ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
                    _ => String::new(),
                };
                if !identity.matches_hostname(&name) {
                    return Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName,
                    ));
                }
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
