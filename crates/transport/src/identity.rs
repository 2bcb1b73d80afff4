//! Who a peer certificate names, and whether that is who we allow.
//!
//! Three etcd checks live here, all on the leaf certificate a peer presented:
//! - `--client-cert-allowed-hostname` / `--peer-cert-allowed-hostname`: the certificate must be
//!   valid for that host, by Go's `VerifyHostname` rules (IP SANs for IPs, DNS SANs with a
//!   leading-label wildcard for names, no Common Name fallback);
//! - `--peer-cert-allowed-cn`: the subject Common Name must equal the given one;
//! - the peer listener's SAN check (`checkSAN`): a peer's certificate, if it names any hosts,
//!   must name the address the peer connects from.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

use crate::error::TransportError;

/// The parts of a certificate the identity checks need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject Common Name; the last one when there are several, as in Go.
    pub common_name: Option<String>,
    /// The issuer's Common Name (the last one, as for the subject).
    pub issuer_common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

impl CertIdentity {
    /// Parses a DER certificate. Fails only on a certificate that does not parse at all,
    /// which after a successful handshake cannot happen.
    pub fn from_der(der: &[u8]) -> Result<CertIdentity, TransportError> {
        let cert = parse(der)?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .last()
            .map(str::to_string);
        let issuer_common_name = cert
            .issuer()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .last()
            .map(str::to_string);
        let mut identity = CertIdentity {
            common_name,
            issuer_common_name,
            ..CertIdentity::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => identity.dns_names.push(dns.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            identity.ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(identity)
    }

    /// Go's `x509.Certificate.VerifyHostname`: is this certificate valid for `host`?
    pub fn matches_hostname(&self, host: &str) -> bool {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            return self.ip_addresses.iter().any(|c| c.to_canonical() == ip);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.dns_names
            .iter()
            .any(|pattern| match_hostname(&pattern.to_ascii_lowercase(), &host))
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, TransportError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| TransportError::Tls(rustls::Error::General(format!("x509: {e}"))))
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Go's `matchHostnames`: label by label, `*` allowed only as the whole leftmost label.
fn match_hostname(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    let pattern_labels: Vec<&str> = pattern.split('.').collect();
    let host_labels: Vec<&str> = host.split('.').collect();
    if pattern_labels.len() != host_labels.len() {
        return false;
    }
    pattern_labels
        .iter()
        .zip(&host_labels)
        .enumerate()
        .all(|(i, (p, h))| (i == 0 && *p == "*" && !h.is_empty()) || p == h)
}

/// The allowed identity of TLS peers (`AllowedCN` / `AllowedHostname` in etcd's `TLSInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedIdentity {
    pub common_name: Option<String>,
    pub hostname: Option<String>,
}

impl AllowedIdentity {
    /// Builds the policy; like etcd, CN and hostname are mutually exclusive. Empty strings
    /// count as unset, as flags default to "".
    pub fn new(
        common_name: Option<&str>,
        hostname: Option<&str>,
    ) -> Result<AllowedIdentity, TransportError> {
        let common_name = common_name.filter(|s| !s.is_empty()).map(str::to_string);
        let hostname = hostname.filter(|s| !s.is_empty()).map(str::to_string);
        if let (Some(cn), Some(host)) = (&common_name, &hostname) {
            return Err(TransportError::AllowedCnAndHostname {
                cn: cn.clone(),
                hostname: host.clone(),
            });
        }
        Ok(AllowedIdentity {
            common_name,
            hostname,
        })
    }

    pub fn is_unrestricted(&self) -> bool {
        self.common_name.is_none() && self.hostname.is_none()
    }

    /// Checks a verified peer leaf certificate against the policy.
    pub fn check(&self, cert_der: &[u8]) -> Result<(), TransportError> {
        if self.is_unrestricted() {
            return Ok(());
        }
        let identity = CertIdentity::from_der(cert_der)?;
        let allowed = match (&self.common_name, &self.hostname) {
            (Some(cn), _) => identity.common_name.as_deref() == Some(cn.as_str()),
            (None, Some(host)) => identity.matches_hostname(host),
            (None, None) => true,
        };
        if allowed {
            Ok(())
        } else {
            Err(TransportError::PeerIdentityRejected)
        }
    }
}

/// etcd's peer-listener `checkSAN`: a certificate naming no hosts passes; otherwise the remote
/// IP must be one of its IP SANs or an address one of its DNS SANs resolves to.
///
/// etcd also tries a reverse (PTR) lookup of the remote IP; the standard library offers no
/// reverse lookup, so only forward lookups of the certificate's names are done here. Wildcard
/// names cannot be looked up forward and so only ever match by IP.
pub async fn check_cert_san(cert_der: &[u8], remote_ip: IpAddr) -> Result<(), TransportError> {
    let identity = CertIdentity::from_der(cert_der)?;
    if identity.ip_addresses.is_empty() && identity.dns_names.is_empty() {
        return Ok(());
    }
    let remote_ip = remote_ip.to_canonical();
    if identity
        .ip_addresses
        .iter()
        .any(|ip| ip.to_canonical() == remote_ip)
    {
        return Ok(());
    }
    let mismatch = |detail: String| TransportError::PeerSanMismatch {
        host: remote_ip.to_string(),
        dns_names: identity.dns_names.clone(),
        detail,
    };
    if identity.dns_names.is_empty() {
        return Err(mismatch(String::new()));
    }
    let mut last_error = String::new();
    for name in identity.dns_names.iter().filter(|n| !n.starts_with("*.")) {
        match tokio::net::lookup_host((name.as_str(), 0)).await {
            Ok(addrs) => {
                if addrs
                    .into_iter()
                    .any(|a| a.ip().to_canonical() == remote_ip)
                {
                    return Ok(());
                }
            }
            Err(e) => last_error = format!(" (lookup {name}: {e})"),
        }
    }
    Err(mismatch(last_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn parses_cn_and_sans() {
        let der = cert(Some("example.com"), &["localhost", "127.0.0.1", "::1"]);
        let id = CertIdentity::from_der(&der).unwrap();
        assert_eq!(id.common_name.as_deref(), Some("example.com"));
        assert_eq!(id.dns_names, vec!["localhost".to_string()]);
        assert_eq!(
            id.ip_addresses,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert!(CertIdentity::from_der(b"junk").is_err());
    }

    #[test]
    fn hostname_matching_follows_go() {
        let id = CertIdentity::from_der(&cert(None, &["*.etcd.local", "Example.COM", "10.0.0.1"]))
            .unwrap();
        assert!(id.matches_hostname("a.etcd.local"));
        assert!(!id.matches_hostname("a.b.etcd.local"));
        assert!(!id.matches_hostname("etcd.local"));
        assert!(id.matches_hostname("example.com."));
        assert!(id.matches_hostname("EXAMPLE.com"));
        assert!(id.matches_hostname("10.0.0.1"));
        assert!(id.matches_hostname("::ffff:10.0.0.1"));
        assert!(!id.matches_hostname("10.0.0.2"));
        let cn_only = CertIdentity::from_der(&cert(Some("host.example"), &[])).unwrap();
        assert!(
            !cn_only.matches_hostname("host.example"),
            "no Common Name fallback"
        );
    }

    #[test]
    fn allowed_identity_policy() {
        let der = cert(Some("etcd-peer"), &["peer1.example"]);
        assert!(AllowedIdentity::default().check(&der).is_ok());
        let by_cn = AllowedIdentity::new(Some("etcd-peer"), None).unwrap();
        assert!(by_cn.check(&der).is_ok());
        let wrong_cn = AllowedIdentity::new(Some("other"), Some("")).unwrap();
        assert_eq!(
            wrong_cn.check(&der).unwrap_err().to_string(),
            "client certificate authentication failed"
        );
        let by_host = AllowedIdentity::new(None, Some("peer1.example")).unwrap();
        assert!(by_host.check(&der).is_ok());
        let wrong_host = AllowedIdentity::new(None, Some("peer2.example")).unwrap();
        assert!(wrong_host.check(&der).is_err());
        assert_eq!(
            AllowedIdentity::new(Some("a"), Some("b"))
                .unwrap_err()
                .to_string(),
            "AllowedCN and AllowedHostname are mutually exclusive (cn=\"a\", hostname=\"b\")"
        );
    }

    #[tokio::test]
    async fn san_check_against_remote_address() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.9.8.7".parse().unwrap();
        assert!(check_cert_san(&cert(None, &[]), other).await.is_ok());
        let by_ip = cert(None, &["127.0.0.1"]);
        assert!(check_cert_san(&by_ip, local).await.is_ok());
        assert!(check_cert_san(&by_ip, other).await.is_err());
        let by_name = cert(None, &["localhost"]);
        assert!(check_cert_san(&by_name, local).await.is_ok());
        let err = check_cert_san(&by_name, other).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tls: \"10.9.8.7\" does not match any of DNSNames [\"localhost\"]"),
            "{err}"
        );
    }
}
