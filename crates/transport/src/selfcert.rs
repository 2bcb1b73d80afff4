//! Auto-TLS (`--auto-tls`, `--peer-auto-tls`): a self-signed certificate per data directory.
//!
//! Like etcd's `SelfCert`, the certificate and key are written once to `<dir>/cert.pem` and
//! `<dir>/key.pem` (etcd uses `<data-dir>/fixtures/client` and `<data-dir>/fixtures/peer`)
//! and reused on later starts. The certificate names the listen URLs' hosts (IP SANs for IPs,
//! DNS SANs otherwise) and is valid for serving and for client authentication, since peers
//! use it both ways. Nobody can verify a self-signed certificate, so clients built from the
//! returned [`TlsInfo`] skip chain verification (`self_cert`), as etcd does.
//!
//! etcd generates P-521 keys, which ring cannot sign with; we generate P-256. Existing files
//! that do not load (such as a P-521 key left by etcd) are replaced with a warning: nothing
//! pins a self-signed certificate, so replacing it is safe.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::cipher::suites;
use crate::error::TransportError;
use crate::keypair::load_certified_key;
use crate::tls::TlsInfo;

/// File name of the self-signed certificate inside the directory.
pub const SELF_CERT_FILE: &str = "cert.pem";
/// File name of the self-signed certificate's key inside the directory.
pub const SELF_KEY_FILE: &str = "key.pem";

/// Returns TLS settings using the self-signed certificate in `dir`, creating it if absent.
///
/// `hosts` are `host:port` pairs or bare hosts (`127.0.0.1:2380`, `[::1]:2379`, `localhost`);
/// Unix socket paths are ignored. `validity_years` must be at least 1 (etcd's
/// `--self-signed-cert-validity`).
pub fn self_signed(
    dir: &Path,
    hosts: &[String],
    validity_years: u32,
) -> Result<TlsInfo, TransportError> {
    let fail = |reason: String| TransportError::SelfCert {
        dir: dir.to_path_buf(),
        reason,
    };
    if validity_years == 0 {
        return Err(fail(
            "self-signed certificate validity must be greater than 0 years".into(),
        ));
    }
    // 0700 like etcd's fileutil.TouchDirAll: the directory holds a private key.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TransportError::file("mkdir", dir, e))?;

    let cert_file = dir.join(SELF_CERT_FILE);
    let key_file = dir.join(SELF_KEY_FILE);
    let info = TlsInfo {
        cert_file: Some(cert_file.clone()),
        key_file: Some(key_file.clone()),
        self_cert: true,
        ..TlsInfo::default()
    };

    if cert_file.exists() && key_file.exists() {
        let provider = suites(&[])?.provider;
        match load_certified_key(&cert_file, &key_file, &provider) {
            Ok(_) => return Ok(info),
            Err(err) => tracing::warn!(
                dir = %dir.display(),
                error = %err,
                "existing self-signed certificate does not load; generating a new one"
            ),
        }
    }

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(format!("cannot generate ECDSA key: {e}")))?;
    let params = certificate_params(hosts, validity_years).map_err(fail)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| fail(format!("cannot generate x509 certificate: {e}")))?;

    // Key first: the pair is reused only when both files exist, so a crash between the two
    // writes leads to regeneration rather than a certificate without its key.
    write_atomically(&key_file, key.serialize_pem().as_bytes(), 0o600)?;
    tracing::info!(path = %key_file.display(), "created key file");
    write_atomically(&cert_file, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(path = %cert_file.display(), "created cert file");
    Ok(info)
}

fn certificate_params(hosts: &[String], validity_years: u32) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "etcd");
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + Duration::days(365 * i64::from(validity_years));
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    for host in hosts {
        let Some(host) = host_of(host) else { continue };
        let san = match host.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|e| format!("invalid host {host:?}: {e}"))?,
            ),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    Ok(params)
}

/// The host part of `host:port`, `[v6]:port`, a bare host, or a bare IPv6 address; `None` for
/// empty strings and socket paths.
fn host_of(input: &str) -> Option<&str> {
    let input = input.trim();
    let host = if let Some(rest) = input.strip_prefix('[') {
        rest.split_once(']').map(|(h, _)| h)?
    } else {
        match input.rsplit_once(':') {
            Some((h, _)) if !h.contains(':') => h,
            _ => input,
        }
    };
    (!host.is_empty() && !host.contains('/')).then_some(host)
}

/// Writes via a temporary file and rename, so a crash never leaves a truncated file that a
/// later start would try to reuse.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TransportError> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| TransportError::file("open", &tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| TransportError::file("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| TransportError::file("rename", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::CertIdentity;
    use crate::pem::load_certs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn host_parts() {
        assert_eq!(host_of("127.0.0.1:2380"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:2379"), Some("::1"));
        assert_eq!(host_of("::1"), Some("::1"));
        assert_eq!(host_of("localhost"), Some("localhost"));
        assert_eq!(host_of("localhost:2379"), Some("localhost"));
        assert_eq!(host_of("/run/etcd.sock"), None);
        assert_eq!(host_of(""), None);
    }

    #[test]
    fn creates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures").join("peer");
        let hosts = vec![
            "127.0.0.1:2380".to_string(),
            "localhost:2380".to_string(),
            "[::1]:2380".to_string(),
            "127.0.0.1:2381".to_string(),
        ];
        let info = self_signed(&fixtures, &hosts, 1).unwrap();
        assert!(info.self_cert);
        let cert_file = info.cert_file.clone().unwrap();
        let key_file = info.key_file.clone().unwrap();
        assert_eq!(cert_file, fixtures.join("cert.pem"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key_file), 0o600);
        assert_eq!(mode(&fixtures), 0o700);

        let der = load_certs(&cert_file).unwrap().remove(0);
        let id = CertIdentity::from_der(&der).unwrap();
        assert_eq!(id.dns_names, vec!["localhost".to_string()]);
        assert_eq!(
            id.ip_addresses.len(),
            2,
            "deduplicated: {:?}",
            id.ip_addresses
        );
        assert!(id.matches_hostname("::1"));

        let before = (fs::read(&cert_file).unwrap(), fs::read(&key_file).unwrap());
        let again = self_signed(&fixtures, &hosts, 1).unwrap();
        assert_eq!(again, info);
        let after = (fs::read(&cert_file).unwrap(), fs::read(&key_file).unwrap());
        assert_eq!(before, after, "existing files are reused");
        assert!(again.server_config().is_ok());
    }

    #[test]
    fn replaces_files_that_do_not_load() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cert.pem"), "junk").unwrap();
        fs::write(dir.path().join("key.pem"), "junk").unwrap();
        let info = self_signed(dir.path(), &["localhost:1".into()], 1).unwrap();
        assert!(info.validate_key_pair().is_ok());
    }

    #[test]
    fn zero_validity_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        assert!(self_signed(dir.path(), &[], 0).is_err());
    }
}
