//! Handshakes between configurations built from `TlsInfo`: client-certificate auth, CRLs,
//! allowed identities, auto-TLS, and etcd's own fixture certificates.

mod common;

use std::path::Path;

use common::{Pki, fixtures, handshake};
use etcd_transport::{ALPN_H2, ALPN_HTTP11, TlsInfo, self_signed};

fn server_info(pki: &Pki, client_cert_auth: bool) -> TlsInfo {
    let server = pki.issue("server", "server", &["localhost", "127.0.0.1"], 1);
    TlsInfo {
        cert_file: Some(server.cert),
        key_file: Some(server.key),
        trusted_ca_file: Some(pki.ca()),
        client_cert_auth,
        ..TlsInfo::default()
    }
}

fn client_info(pki: &Pki, cert: Option<&common::Pair>) -> TlsInfo {
    TlsInfo {
        cert_file: cert.map(|p| p.cert.clone()),
        key_file: cert.map(|p| p.key.clone()),
        trusted_ca_file: Some(pki.ca()),
        ..TlsInfo::default()
    }
}

#[tokio::test]
async fn client_cert_auth_accepts_good_cert_and_negotiates_h2() {
    let pki = Pki::new();
    let server = server_info(&pki, true).server_config().unwrap();
    let client = pki.issue("client", "root", &[], 2);
    let config = client_info(&pki, Some(&client))
        .client_config(&[ALPN_H2])
        .unwrap();
    let stream = handshake(server.clone(), config, "localhost")
        .await
        .unwrap();
    let (_, conn) = stream.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(ALPN_H2));
    assert_eq!(conn.peer_certificates().map(|c| c.len()), Some(1));

    // HTTP/1.1 clients share the port.
    let config = client_info(&pki, Some(&client))
        .client_config(&[ALPN_HTTP11])
        .unwrap();
    let stream = handshake(server, config, "127.0.0.1").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(ALPN_HTTP11));
}

#[tokio::test]
async fn client_cert_auth_rejects_missing_cert() {
    let pki = Pki::new();
    let server = server_info(&pki, true).server_config().unwrap();
    let config = client_info(&pki, None).client_config(&[]).unwrap();
    let err = handshake(server, config, "localhost").await.unwrap_err();
    assert!(err.starts_with("server:"), "{err}");
}

#[tokio::test]
async fn trusted_ca_alone_requires_client_cert_like_etcd() {
    // etcd's ServerConfig: RequireAndVerifyClientCert when TrustedCAFile != "".
    let pki = Pki::new();
    let server = server_info(&pki, false).server_config().unwrap();
    let config = client_info(&pki, None).client_config(&[]).unwrap();
    assert!(
        handshake(server.clone(), config, "localhost")
            .await
            .is_err()
    );
    let client = pki.issue("client", "root", &[], 2);
    let config = client_info(&pki, Some(&client)).client_config(&[]).unwrap();
    assert!(handshake(server, config, "localhost").await.is_ok());
}

#[tokio::test]
async fn without_ca_or_client_auth_no_cert_is_needed() {
    let pki = Pki::new();
    let mut info = server_info(&pki, false);
    info.trusted_ca_file = None;
    let server = info.server_config().unwrap();
    let config = client_info(&pki, None).client_config(&[]).unwrap();
    let stream = handshake(server, config, "localhost").await.unwrap();
    assert!(stream.get_ref().1.peer_certificates().is_none());
}

#[tokio::test]
async fn client_cert_auth_without_ca_is_a_config_error() {
    let pki = Pki::new();
    let mut info = server_info(&pki, true);
    info.trusted_ca_file = None;
    let err = info.server_config().unwrap_err();
    assert!(err.to_string().contains("--trusted-ca-file"), "{err}");
}

#[tokio::test]
async fn client_from_another_ca_is_rejected() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = server_info(&pki, true).server_config().unwrap();
    let stranger = other.issue("stranger", "root", &[], 2);
    let mut info = client_info(&pki, Some(&stranger));
    info.trusted_ca_file = Some(pki.ca());
    let config = info.client_config(&[]).unwrap();
    assert!(handshake(server, config, "localhost").await.is_err());
}

#[tokio::test]
async fn crl_rejects_revoked_cert_pem_and_der() {
    let pki = Pki::new();
    let good = pki.issue("good", "good", &[], 2);
    let revoked = pki.issue("revoked", "revoked", &[], 3);
    for pem in [true, false] {
        let mut info = server_info(&pki, true);
        info.crl_file = Some(pki.crl("revoke.crl", &[&revoked.serial], pem));
        let server = info.server_config().unwrap();
        let config = client_info(&pki, Some(&revoked))
            .client_config(&[])
            .unwrap();
        let err = handshake(server.clone(), config, "localhost")
            .await
            .unwrap_err();
        assert!(err.contains("Revoked"), "pem={pem}: {err}");
        let config = client_info(&pki, Some(&good)).client_config(&[]).unwrap();
        assert!(
            handshake(server, config, "localhost").await.is_ok(),
            "pem={pem}"
        );
    }
}

#[tokio::test]
async fn crl_file_changes_take_effect_without_restart() {
    let pki = Pki::new();
    let client = pki.issue("client", "client", &[], 2);
    let mut info = server_info(&pki, true);
    info.crl_file = Some(pki.crl("revoke.crl", &[], true));
    let server = info.server_config().unwrap();
    let config = client_info(&pki, Some(&client)).client_config(&[]).unwrap();
    assert!(
        handshake(server.clone(), config.clone(), "localhost")
            .await
            .is_ok()
    );

    pki.crl("revoke.crl", &[&client.serial], true);
    assert!(
        handshake(server.clone(), config.clone(), "localhost")
            .await
            .is_err()
    );

    // A CRL that cannot be read fails closed.
    std::fs::remove_file(pki.path("revoke.crl")).unwrap();
    assert!(handshake(server, config, "localhost").await.is_err());
}

#[tokio::test]
async fn bad_crl_is_a_config_error_naming_the_file() {
    let pki = Pki::new();
    let mut info = server_info(&pki, true);
    let crl = pki.path("bad.crl");
    std::fs::write(&crl, b"\x30\x03\x02\x01\x00").unwrap();
    info.crl_file = Some(crl);
    let err = info.server_config().unwrap_err().to_string();
    assert!(err.contains("bad.crl"), "{err}");
}

#[tokio::test]
async fn allowed_cn_and_hostname() {
    let pki = Pki::new();
    let peer = pki.issue("peer", "etcd-peer", &["peer1.example", "127.0.0.1"], 2);
    let try_with = |cn: Option<&str>, host: Option<&str>| {
        let mut info = server_info(&pki, true);
        info.allowed_cn = cn.map(str::to_string);
        info.allowed_hostname = host.map(str::to_string);
        let server = info.server_config().unwrap();
        let config = client_info(&pki, Some(&peer)).client_config(&[]).unwrap();
        async move { handshake(server, config, "localhost").await }
    };
    assert!(try_with(Some("etcd-peer"), None).await.is_ok());
    let err = try_with(Some("someone-else"), None).await.unwrap_err();
    assert!(err.contains("PeerIdentityRejected"), "{err}");
    assert!(try_with(None, Some("peer1.example")).await.is_ok());
    assert!(try_with(None, Some("127.0.0.1")).await.is_ok());
    assert!(try_with(None, Some("peer2.example")).await.is_err());

    let mut info = server_info(&pki, true);
    info.allowed_cn = Some("a".into());
    info.allowed_hostname = Some("b".into());
    assert!(info.server_config().is_err());
}

#[tokio::test]
async fn client_verifies_server_name() {
    let pki = Pki::new();
    let mut info = server_info(&pki, false);
    info.trusted_ca_file = None;
    let server = info.server_config().unwrap();
    let config = client_info(&pki, None).client_config(&[]).unwrap();
    let err = handshake(server.clone(), config, "other.example")
        .await
        .unwrap_err();
    // The client refuses the certificate and tells the server with an alert.
    assert!(err.contains("BadCertificate"), "{err}");

    let skip = TlsInfo {
        insecure_skip_verify: true,
        ..TlsInfo::default()
    };
    let config = skip.client_config(&[]).unwrap();
    assert!(handshake(server, config, "other.example").await.is_ok());
}

#[tokio::test]
async fn cipher_suites_restrict_tls12_only() {
    let pki = Pki::new();
    let mut info = server_info(&pki, false);
    info.trusted_ca_file = None;
    info.cipher_suites = vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()];
    let server = info.server_config().unwrap();
    let config = client_info(&pki, None).client_config(&[]).unwrap();
    assert!(handshake(server, config, "localhost").await.is_ok());

    info.cipher_suites = vec!["TLS_FOO".into()];
    assert_eq!(
        info.server_config().unwrap_err().to_string(),
        "unexpected TLS cipher suite \"TLS_FOO\""
    );
}

#[tokio::test]
async fn auto_tls_peers_connect_without_verifying_chains() {
    let dir = tempfile::tempdir().unwrap();
    let server_info = self_signed(
        &dir.path().join("a").join("fixtures").join("peer"),
        &["127.0.0.1:2380".to_string()],
        1,
    )
    .unwrap();
    let client_info = self_signed(
        &dir.path().join("b").join("fixtures").join("peer"),
        &["127.0.0.1:2380".to_string()],
        1,
    )
    .unwrap();
    let server = server_info.server_config().unwrap();
    let client = client_info.client_config(&[ALPN_H2]).unwrap();
    let stream = handshake(server.clone(), client, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(ALPN_H2));

    // A verifying client does not trust the self-signed certificate.
    let pki = Pki::new();
    let verifying = client_info_with_ca(&pki.ca());
    assert!(handshake(server, verifying, "127.0.0.1").await.is_err());
}

fn client_info_with_ca(ca: &Path) -> std::sync::Arc<etcd_transport::rustls::ClientConfig> {
    TlsInfo {
        trusted_ca_file: Some(ca.to_path_buf()),
        ..TlsInfo::default()
    }
    .client_config(&[])
    .unwrap()
}

#[tokio::test]
async fn empty_cn_client_check() {
    let pki = Pki::new();
    let with_cn = pki.issue("proxy", "proxy", &[], 2);
    let mut info = client_info(&pki, Some(&with_cn));
    info.empty_cn = true;
    assert_eq!(
        info.client_config(&[]).unwrap_err().to_string(),
        "cert has non empty Common Name (proxy)"
    );
}

/// etcd's e2e tests run our server with these exact files (`--cert-file server.crt
/// --key-file server.key.insecure --trusted-ca-file ca.crt --client-crl-file revoke.crl`), with
/// etcdctl presenting server.crt or server-revoked.crt as its client certificate.
#[tokio::test]
async fn etcd_fixture_certificates() {
    let Some(dir) = fixtures() else { return };
    let server = TlsInfo {
        cert_file: Some(dir.join("server.crt")),
        key_file: Some(dir.join("server.key.insecure")),
        trusted_ca_file: Some(dir.join("ca.crt")),
        client_cert_auth: true,
        crl_file: Some(dir.join("revoke.crl")),
        ..TlsInfo::default()
    }
    .server_config()
    .unwrap();
    let client = |cert: &str, key: &str| {
        TlsInfo {
            cert_file: Some(dir.join(cert)),
            key_file: Some(dir.join(key)),
            trusted_ca_file: Some(dir.join("ca.crt")),
            ..TlsInfo::default()
        }
        .client_config(&[ALPN_H2])
        .unwrap()
    };

    for name in ["localhost", "127.0.0.1"] {
        let stream = handshake(
            server.clone(),
            client("server.crt", "server.key.insecure"),
            name,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(ALPN_H2));
    }
    for (cert, key) in [
        ("server2.crt", "server2.key.insecure"),
        ("server3.crt", "server3.key.insecure"),
        ("server-ecdsa.crt", "server-ecdsa.key.insecure"),
        ("client-nocn.crt", "client-nocn.key.insecure"),
    ] {
        handshake(server.clone(), client(cert, key), "localhost")
            .await
            .unwrap_or_else(|e| panic!("{cert}: {e}"));
    }
    let err = handshake(
        server.clone(),
        client("server-revoked.crt", "server-revoked.key.insecure"),
        "localhost",
    )
    .await
    .unwrap_err();
    assert!(err.contains("Revoked"), "{err}");

    // The ECDSA and IP-only server certificates serve too.
    for (cert, key, name) in [
        ("server-ecdsa.crt", "server-ecdsa.key.insecure", "localhost"),
        ("server-ip.crt", "server-ip.key.insecure", "127.0.0.1"),
        ("server-ipv6.crt", "server-ipv6.key.insecure", "[::1]"),
        (
            "server-wildcard.crt",
            "server-wildcard.key.insecure",
            "a.etcd.local",
        ),
    ] {
        let server = TlsInfo {
            cert_file: Some(dir.join(cert)),
            key_file: Some(dir.join(key)),
            ..TlsInfo::default()
        }
        .server_config()
        .unwrap();
        handshake(server, client("server.crt", "server.key.insecure"), name)
            .await
            .unwrap_or_else(|e| panic!("{cert}: {e}"));
    }

    // etcd's --peer-cert-allowed-cn tests use CN example.com (server.crt) vs example2.com.
    let allowed = |cn: &str| {
        TlsInfo {
            cert_file: Some(dir.join("server.crt")),
            key_file: Some(dir.join("server.key.insecure")),
            trusted_ca_file: Some(dir.join("ca.crt")),
            client_cert_auth: true,
            allowed_cn: Some(cn.to_string()),
            ..TlsInfo::default()
        }
        .server_config()
        .unwrap()
    };
    assert!(
        handshake(
            allowed("example.com"),
            client("server.crt", "server.key.insecure"),
            "localhost"
        )
        .await
        .is_ok()
    );
    assert!(
        handshake(
            allowed("example.com"),
            client("server2.crt", "server2.key.insecure"),
            "localhost"
        )
        .await
        .is_err()
    );
}

/// etcd's `TestCtlV3AuthCertCNWithWithConcurrentOperation` uses one self-signed CA certificate
/// as the server's certificate, the client's certificate and the trusted CA of both. Go accepts
/// a leaf that is itself a trusted root; webpki alone does not.
#[tokio::test]
async fn etcd_fixture_self_signed_root_as_leaf() {
    let Some(dir) = fixtures() else { return };
    let info = TlsInfo {
        cert_file: Some(dir.join("CommonName-root.crt")),
        key_file: Some(dir.join("CommonName-root.key")),
        trusted_ca_file: Some(dir.join("CommonName-root.crt")),
        client_cert_auth: true,
        ..TlsInfo::default()
    };
    let server = info.server_config().unwrap();
    let client = info.client_config(&[ALPN_H2]).unwrap();
    for name in ["localhost", "127.0.0.1", "example.com", "a.example.com"] {
        handshake(server.clone(), client.clone(), name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = handshake(server.clone(), client, "other.example")
        .await
        .unwrap_err();
    assert!(err.contains("BadCertificate"), "{err}");

    // The root stays an ordinary CA for certificates it did not sign.
    let stranger = TlsInfo {
        cert_file: Some(dir.join("server.crt")),
        key_file: Some(dir.join("server.key.insecure")),
        trusted_ca_file: Some(dir.join("CommonName-root.crt")),
        insecure_skip_verify: true,
        ..TlsInfo::default()
    }
    .client_config(&[])
    .unwrap();
    assert!(handshake(server, stranger, "localhost").await.is_err());
}

#[tokio::test]
async fn root_as_leaf_is_still_subject_to_the_crl() {
    let pki = Pki::new();
    let root = pki.ca_pair();
    let mut info = TlsInfo {
        cert_file: Some(root.cert.clone()),
        key_file: Some(root.key.clone()),
        trusted_ca_file: Some(pki.ca()),
        client_cert_auth: true,
        crl_file: Some(pki.crl("revoke.crl", &[], true)),
        ..TlsInfo::default()
    };
    let client = info.client_config(&[]).unwrap();
    let server = info.server_config().unwrap();
    assert!(handshake(server, client.clone(), "localhost").await.is_ok());

    info.crl_file = Some(pki.crl("revoke.crl", &[&root.serial], true));
    let server = info.server_config().unwrap();
    let err = handshake(server, client, "localhost").await.unwrap_err();
    assert!(err.contains("Revoked"), "{err}");
}
