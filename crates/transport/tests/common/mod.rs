//! A throwaway PKI for the tests: a CA, server and client certificates, a revoked client and
//! a CRL, all written as PEM files into a temporary directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use etcd_transport::rustls::{ClientConfig, ServerConfig};
use etcd_transport::tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where etcd's own test certificates live when the Go sources are installed.
pub const ETCD_FIXTURES: &str = "/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures";

const CA_SERIAL: &[u8] = &[0x0c, 0xa0];

pub struct Pki {
    pub dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "test-ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.serial_number = Some(SerialNumber::from_slice(CA_SERIAL));
        // Names, so that the root can also serve as its own leaf (see `ca_pair`).
        params.subject_alt_names = vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())];
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
        Pki {
            dir,
            ca_params: params,
            ca_key,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// The CA certificate and its key as a pair, for using the root itself as a leaf.
    pub fn ca_pair(&self) -> Pair {
        let key = self.path("ca.key");
        std::fs::write(&key, self.ca_key.serialize_pem()).unwrap();
        Pair {
            cert: self.ca(),
            key,
            serial: CA_SERIAL.to_vec(),
        }
    }

    /// A leaf certificate usable for both server and client auth.
    pub fn issue(&self, name: &str, cn: &str, sans: &[&str], serial: u8) -> Pair {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from_slice(&[0x10, serial]));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pair = Pair {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
            serial: vec![0x10, serial],
        };
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }

    /// A CRL revoking the given serials, as PEM or DER.
    pub fn crl(&self, name: &str, revoked: &[&[u8]], pem: bool) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - Duration::hours(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let crl = params.signed_by(&issuer).unwrap();
        let path = self.path(name);
        let tmp = self.path(&format!("{name}.tmp"));
        if pem {
            std::fs::write(&tmp, crl.pem().unwrap()).unwrap();
        } else {
            std::fs::write(&tmp, crl.der()).unwrap();
        }
        // Replace by rename, as operators rotating CRLs should.
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

/// Runs a TLS handshake over an in-memory pipe and, if both sides succeed, one round trip.
/// Returns the server side's outcome (the authoritative one: with TLS 1.3 a client learns
/// that its certificate was refused only after its own handshake has finished).
pub async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> Result<server::TlsStream<tokio::io::DuplexStream>, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let name = etcd_transport::TlsInfo::default()
        .server_name_for(server_name)
        .unwrap();
    let (server_result, client_result) = tokio::join!(
        TlsAcceptor::from(server).accept(server_io),
        TlsConnector::from(client).connect(name, client_io)
    );
    let mut server_stream = server_result.map_err(|e| format!("server: {e}"))?;
    let mut client_stream: client::TlsStream<_> =
        client_result.map_err(|e| format!("client: {e}"))?;
    client_stream.write_all(b"ping").await.unwrap();
    client_stream.flush().await.unwrap();
    let mut buf = [0u8; 4];
    server_stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    Ok(server_stream)
}

pub fn fixtures() -> Option<&'static Path> {
    let dir = Path::new(ETCD_FIXTURES);
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: etcd fixtures not found at {ETCD_FIXTURES}");
        None
    }
}
