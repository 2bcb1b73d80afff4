//! Test certificates: a CA and leaf certificates signed by it, as PEM files.

#![allow(dead_code)]

/// A CA and leaf certificates for the given IP SANs, as PEM files in `dir`.
pub struct Pki {
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    dir: std::path::PathBuf,
}

impl Pki {
    pub fn new(dir: &std::path::Path) -> Pki {
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "etcd test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        Pki {
            ca_params,
            ca_key,
            dir: dir.to_path_buf(),
        }
    }

    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.join("ca.crt")
    }

    /// (certificate, key) files of a leaf for both server and client auth.
    pub fn issue(&self, name: &str, ips: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
        self.issue_cn(name, ips, None)
    }

    /// The same, with this Common Name in the subject (what `--client-cert-auth` takes for the
    /// user when a request has no token).
    pub fn issue_cn(
        &self,
        name: &str,
        ips: &[&str],
        common_name: Option<&str>,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(ips.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        // A subject of its own: a leaf named like its issuer reads as self-issued to OpenSSL.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name.unwrap_or(name));
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_file, key_file) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

/// A client TLS configuration trusting the test CA, presenting `cert` when given.
pub fn client_tls(
    ca: &std::path::Path,
    cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> std::sync::Arc<rustls::ClientConfig> {
    let info = etcd_transport::TlsInfo {
        trusted_ca_file: Some(ca.to_path_buf()),
        cert_file: cert.map(|c| c.0.clone()),
        key_file: cert.map(|c| c.1.clone()),
        ..Default::default()
    };
    info.client_config(&[b"h2"]).unwrap()
}
