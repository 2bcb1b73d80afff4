//! `--cipher-suites`: Go's cipher suite names mapped onto rustls.
//!
//! Go's rule, which etcd inherits, is that the list restricts only TLS 1.2 and below; TLS 1.3
//! suites are always enabled and not configurable. A name Go does not know is an error
//! (`unexpected TLS cipher suite "X"`); a name Go knows but rustls does not implement (CBC,
//! RC4, 3DES and static-RSA suites, all legacy) is skipped with a warning, so a configuration
//! that worked with etcd still starts, just without those weak suites.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{cipher_suite as suite, default_provider};
use rustls::version::{TLS12, TLS13};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use crate::error::TransportError;

/// TLS 1.2 suites rustls implements, by their Go names (and the short CHACHA20 aliases that
/// etcd's `tlsutil.GetCipherSuite` also accepts).
const SUPPORTED_TLS12: &[(&str, SupportedCipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLS 1.3 suites: Go accepts their names in the list but ignores them.
const TLS13_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows (`tls.CipherSuites()` and `tls.InsecureCipherSuites()`) that rustls lacks.
const LEGACY_NAMES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

static BOTH_VERSIONS: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&TLS13];

/// The crypto provider and protocol versions for a `--cipher-suites` list.
#[derive(Debug, Clone)]
pub(crate) struct Suites {
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) versions: &'static [&'static SupportedProtocolVersion],
}

/// Builds the provider for `names`; an empty list means rustls' defaults.
pub(crate) fn suites(names: &[String]) -> Result<Suites, TransportError> {
    let base = default_provider();
    if names.is_empty() {
        return Ok(Suites {
            provider: Arc::new(base),
            versions: BOTH_VERSIONS,
        });
    }
    let mut tls12: Vec<SupportedCipherSuite> = Vec::new();
    for name in names {
        let name = name.trim();
        if let Some((_, s)) = SUPPORTED_TLS12.iter().find(|(n, _)| *n == name) {
            // Keep the given order (it is a preference list) without duplicates.
            if !tls12.contains(s) {
                tls12.push(*s);
            }
        } else if TLS13_NAMES.contains(&name) {
            // Always enabled, as in Go.
        } else if LEGACY_NAMES.contains(&name) {
            tracing::warn!(
                cipher_suite = name,
                "cipher suite is not supported by this implementation and is skipped; remove it from --cipher-suites"
            );
        } else {
            return Err(TransportError::UnknownCipherSuite(name.to_string()));
        }
    }
    let mut cipher_suites: Vec<SupportedCipherSuite> = base
        .cipher_suites
        .iter()
        .copied()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
        .collect();
    let versions: &'static [&'static SupportedProtocolVersion] = if tls12.is_empty() {
        // Nothing usable left below TLS 1.3; offering TLS 1.2 without suites would only turn
        // into confusing handshake failures.
        TLS13_ONLY
    } else {
        BOTH_VERSIONS
    };
    cipher_suites.extend(tls12);
    Ok(Suites {
        provider: Arc::new(CryptoProvider {
            cipher_suites,
            ..base
        }),
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_list_is_rustls_default() {
        let s = suites(&[]).unwrap();
        assert_eq!(
            s.provider.cipher_suites.len(),
            default_provider().cipher_suites.len()
        );
        assert_eq!(s.versions.len(), 2);
    }

    #[test]
    fn etcd_e2e_list_maps_in_order_after_tls13() {
        let s = suites(&names(&[
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        ]))
        .unwrap();
        let tls12: Vec<_> = s
            .provider
            .cipher_suites
            .iter()
            .filter(|c| matches!(c, SupportedCipherSuite::Tls12(_)))
            .copied()
            .collect();
        assert_eq!(tls12.len(), 6);
        assert_eq!(tls12[0], suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256);
        assert_eq!(tls12[4], suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256);
        assert_eq!(s.provider.cipher_suites.len(), 9, "3 TLS 1.3 + 6 TLS 1.2");
    }

    #[test]
    fn unknown_name_is_etcd_error() {
        let err = suites(&names(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "X"])).unwrap_err();
        assert_eq!(err.to_string(), "unexpected TLS cipher suite \"X\"");
    }

    #[test]
    fn legacy_only_list_leaves_tls13() {
        let s = suites(&names(&[
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "TLS_AES_128_GCM_SHA256",
        ]))
        .unwrap();
        assert_eq!(s.versions, &[&TLS13]);
        assert!(
            s.provider
                .cipher_suites
                .iter()
                .all(|c| matches!(c, SupportedCipherSuite::Tls13(_)))
        );
    }
}
