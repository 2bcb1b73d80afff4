//! Reading TLS material from files: certificate chains, private keys, CA bundles and CRLs.
//!
//! Accepts what Go's `tls.X509KeyPair`, `tlsutil.NewCertPool` and `x509.ParseCRL` accept, so
//! files that work with etcd work here: PEM certificates, PKCS#1 (`RSA PRIVATE KEY`), SEC1
//! (`EC PRIVATE KEY`) and PKCS#8 (`PRIVATE KEY`) keys, and CRLs in PEM or DER.

use std::fs;
use std::io::BufReader;
use std::path::Path;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::TransportError;

/// Reads a whole file, with Go's `open <path>: <reason>` error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TransportError> {
    fs::read(path).map_err(|e| TransportError::file("open", path, e))
}

/// Loads every `CERTIFICATE` block of a PEM file, leaf first.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let bytes = read_file(path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(&bytes[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::malformed(path, e))?;
    if certs.is_empty() {
        return Err(TransportError::NoCertificatePem {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Loads the first private key (PKCS#1, SEC1 or PKCS#8) of a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let bytes = read_file(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(&bytes[..]))
        .map_err(|e| TransportError::malformed(path, e))?
        .ok_or_else(|| TransportError::NoKeyPem {
            path: path.to_path_buf(),
        })
}

/// A CA bundle: the trust store, and the certificates themselves, which Go also trusts
/// directly when a peer presents one of them as its own certificate.
#[derive(Clone, Debug)]
pub(crate) struct CaBundle {
    pub(crate) roots: RootCertStore,
    pub(crate) certs: Vec<CertificateDer<'static>>,
}

/// Loads a CA bundle. Like Go's `NewCertPool`, a certificate that does not parse is an error
/// rather than silently skipped: a half-loaded trust store would reject clients for no
/// visible reason.
pub(crate) fn load_ca(path: &Path) -> Result<CaBundle, TransportError> {
    let certs = load_certs(path).map_err(|e| match e {
        TransportError::NoCertificatePem { path } => TransportError::NoCaPem { path },
        other => other,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|e| TransportError::malformed(path, format!("x509: {e}")))?;
    }
    Ok(CaBundle { roots, certs })
}

/// Loads the CRLs of a file, which etcd allows to be PEM (`X509 CRL` blocks) or raw DER.
/// The CRLs are parsed and checked against their issuer later, by the verifier.
pub(crate) fn load_crls(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TransportError> {
    let bytes = read_file(path)?;
    let is_pem = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'-');
    if !is_pem {
        if bytes.is_empty() {
            return Err(TransportError::malformed(path, "x509: empty CRL file"));
        }
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = rustls_pemfile::crls(&mut BufReader::new(&bytes[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::malformed(path, e))?;
    if crls.is_empty() {
        return Err(TransportError::malformed(
            path,
            "x509: no \"X509 CRL\" PEM block found",
        ));
    }
    Ok(crls)
}

/// Identifies one version of a file, so a reload happens only when the file changed.
/// The inode is part of it because tools replace certificates by rename, which may keep the
/// size and, within the clock's resolution, the modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    pub(crate) fn of(path: &Path) -> Result<FileStamp, TransportError> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).map_err(|e| TransportError::file("stat", path, e))?;
        Ok(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        assert_eq!(
            load_certs(&missing).unwrap_err().to_string(),
            format!("open {}: no such file or directory", missing.display())
        );
        let empty = write(dir.path(), "empty.pem", b"not pem at all\n");
        let err = load_certs(&empty).unwrap_err().to_string();
        assert!(
            err.starts_with("tls: failed to find any PEM data in certificate input"),
            "{err}"
        );
        assert!(err.contains("empty.pem"), "{err}");
        let err = load_key(&empty).unwrap_err().to_string();
        assert!(
            err.starts_with("tls: failed to find any PEM data in key input"),
            "{err}"
        );
        let err = load_ca(&empty).unwrap_err().to_string();
        assert!(err.contains("trusted CA input"), "{err}");
    }

    #[test]
    fn reads_every_key_format() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let pkcs8 = write(dir.path(), "pkcs8.pem", key.serialize_pem().as_bytes());
        assert!(matches!(load_key(&pkcs8).unwrap(), PrivateKeyDer::Pkcs8(_)));
        let fixtures = Path::new("/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures");
        if fixtures.is_dir() {
            let rsa = load_key(&fixtures.join("server.key.insecure")).unwrap();
            assert!(matches!(rsa, PrivateKeyDer::Pkcs1(_)));
            let ec = load_key(&fixtures.join("server-ecdsa.key.insecure")).unwrap();
            assert!(matches!(ec, PrivateKeyDer::Sec1(_)));
        }
    }

    #[test]
    fn crl_may_be_pem_or_der() {
        let dir = tempfile::tempdir().unwrap();
        let der = write(dir.path(), "a.crl", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert_eq!(load_crls(&der).unwrap().len(), 1);
        let pem = write(
            dir.path(),
            "b.crl",
            b"-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n",
        );
        assert_eq!(
            load_crls(&pem).unwrap()[0].as_ref(),
            &[0x30, 0x03, 0x02, 0x01, 0x00]
        );
        let other = write(
            dir.path(),
            "c.crl",
            b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        );
        assert!(load_crls(&other).is_err());
        let empty = write(dir.path(), "d.crl", b"");
        assert!(load_crls(&empty).is_err());
    }

    #[test]
    fn stamp_changes_on_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "f", b"one");
        let first = FileStamp::of(&path).unwrap();
        assert_eq!(first, FileStamp::of(&path).unwrap());
        let tmp = write(dir.path(), "f.tmp", b"two!");
        fs::rename(&tmp, &path).unwrap();
        assert_ne!(first, FileStamp::of(&path).unwrap());
    }
}
