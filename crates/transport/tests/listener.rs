//! Listeners over real sockets: TCP and Unix, plain and TLS, and the handshake behaviour that
//! keeps one bad client from holding up the others.

mod common;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::Pki;
use etcd_transport::rustls::ClientConfig;
use etcd_transport::tokio_rustls::TlsConnector;
use etcd_transport::{
    ALPN_H2, Conn, ListenAddr, ListenOptions, ListenUrl, Listener, RemoteAddr, TlsInfo,
};
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn url(s: &str) -> ListenUrl {
    s.parse().unwrap()
}

fn tcp_addr(listener: &Listener) -> SocketAddr {
    match listener.local_addr() {
        ListenAddr::Tcp(addr) => *addr,
        other => panic!("not tcp: {other}"),
    }
}

/// Echoes one message on an accepted connection.
async fn echo_once(mut conn: Conn) {
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).await.unwrap();
    conn.write_all(&buf).await.unwrap();
    conn.flush().await.unwrap();
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    stream.write_all(b"hello").await.unwrap();
    stream.flush().await.unwrap();
    let mut buf = [0u8; 5];
    timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello");
}

struct Tls {
    pki: Pki,
    server: TlsInfo,
}

fn tls_setup(client_cert_auth: bool) -> Tls {
    let pki = Pki::new();
    let pair = pki.issue("server", "server", &["localhost", "127.0.0.1"], 1);
    let server = TlsInfo {
        cert_file: Some(pair.cert),
        key_file: Some(pair.key),
        trusted_ca_file: client_cert_auth.then(|| pki.ca()),
        client_cert_auth,
        ..TlsInfo::default()
    };
    Tls { pki, server }
}

fn client_config(tls: &Tls, cert: Option<&common::Pair>) -> Arc<ClientConfig> {
    TlsInfo {
        cert_file: cert.map(|p| p.cert.clone()),
        key_file: cert.map(|p| p.key.clone()),
        trusted_ca_file: Some(tls.pki.ca()),
        ..TlsInfo::default()
    }
    .client_config(&[ALPN_H2])
    .unwrap()
}

async fn tls_connect<IO: AsyncRead + AsyncWrite + Unpin>(
    config: Arc<ClientConfig>,
    io: IO,
) -> std::io::Result<etcd_transport::tokio_rustls::client::TlsStream<IO>> {
    let name = TlsInfo::default().server_name_for("localhost").unwrap();
    TlsConnector::from(config).connect(name, io).await
}

#[tokio::test]
async fn plain_tcp_round_trip() {
    let mut listener = Listener::bind(&url("http://127.0.0.1:0"), None, ListenOptions::default())
        .await
        .unwrap();
    let addr = tcp_addr(&listener);
    assert_ne!(addr.port(), 0);
    let client = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        ping(&mut stream).await;
        stream.local_addr().unwrap()
    });
    let conn = timeout(WAIT, listener.accept()).await.unwrap();
    assert!(conn.tls().is_none());
    let remote = conn.remote_addr().clone();
    echo_once(conn).await;
    assert_eq!(remote, RemoteAddr::Tcp(client.await.unwrap()));
}

#[tokio::test]
async fn localhost_binds_ipv4_loopback() {
    let listener = Listener::bind(&url("http://localhost:0"), None, ListenOptions::default())
        .await
        .unwrap();
    assert!(tcp_addr(&listener).ip().is_loopback());
    assert!(tcp_addr(&listener).is_ipv4());
}

#[tokio::test]
async fn unix_socket_round_trip_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.sock");
    // A socket file left by a previous run is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());

    let u = url(&format!("unix://{}", path.display()));
    let mut listener = Listener::bind(&u, None, ListenOptions::default())
        .await
        .unwrap();
    assert_eq!(listener.local_addr(), &ListenAddr::Unix(path.clone()));
    let client_path = path.clone();
    let client = tokio::spawn(async move {
        let mut stream = UnixStream::connect(client_path).await.unwrap();
        ping(&mut stream).await;
    });
    let conn = timeout(WAIT, listener.accept()).await.unwrap();
    assert!(matches!(conn.remote_addr(), RemoteAddr::Unix(_)));
    echo_once(conn).await;
    client.await.unwrap();

    drop(listener);
    assert!(
        !path.exists(),
        "socket file removed when the listener closes"
    );
}

#[tokio::test]
async fn unix_listener_never_deletes_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.db");
    std::fs::write(&path, b"precious").unwrap();
    let u = url(&format!("unix://{}", path.display()));
    assert!(
        Listener::bind(&u, None, ListenOptions::default())
            .await
            .is_err()
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[tokio::test]
async fn unixs_tls_round_trip() {
    let tls = tls_setup(true);
    let client_pair = tls.pki.issue("client", "root", &[], 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.sock");
    let u = url(&format!("unixs://{}", path.display()));
    let mut listener = Listener::bind(
        &u,
        Some(tls.server.server_config().unwrap()),
        ListenOptions::default(),
    )
    .await
    .unwrap();
    let config = client_config(&tls, Some(&client_pair));
    let client = tokio::spawn(async move {
        let io = UnixStream::connect(path).await.unwrap();
        let mut stream = tls_connect(config, io).await.unwrap();
        ping(&mut stream).await;
    });
    let conn = timeout(WAIT, listener.accept()).await.unwrap();
    assert_eq!(conn.alpn_protocol(), Some(ALPN_H2));
    assert_eq!(conn.peer_certificates().len(), 1);
    echo_once(conn).await;
    client.await.unwrap();
}

#[tokio::test]
async fn silent_client_does_not_block_the_next_one() {
    let tls = tls_setup(false);
    let options = ListenOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ListenOptions::default()
    };
    let mut listener = Listener::bind(
        &url("https://127.0.0.1:0"),
        Some(tls.server.server_config().unwrap()),
        options,
    )
    .await
    .unwrap();
    let addr = tcp_addr(&listener);

    // Connects and says nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();

    let config = client_config(&tls, None);
    let client = tokio::spawn(async move {
        let io = TcpStream::connect(addr).await.unwrap();
        let mut stream = tls_connect(config, io).await.unwrap();
        ping(&mut stream).await;
    });
    let conn = timeout(WAIT, listener.accept())
        .await
        .expect("a silent client must not block accept");
    echo_once(conn).await;
    client.await.unwrap();

    // The silent client is disconnected once the handshake deadline passes. Keep accepting in
    // the background, as a server does, so the handshake task runs to its end.
    let accepting = tokio::spawn(async move { listener.accept().await });
    let mut buf = [0u8; 1];
    let read = timeout(WAIT, silent.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    accepting.abort();
}

#[tokio::test]
async fn failed_handshakes_do_not_stop_the_listener() {
    let tls = tls_setup(true);
    let good = tls.pki.issue("good", "root", &[], 2);
    let mut listener = Listener::bind(
        &url("https://127.0.0.1:0"),
        Some(tls.server.server_config().unwrap()),
        ListenOptions::default(),
    )
    .await
    .unwrap();
    let addr = tcp_addr(&listener);

    let no_cert = client_config(&tls, None);
    let good_cert = client_config(&tls, Some(&good));
    let clients = tokio::spawn(async move {
        // Rejected: no client certificate. Its reads fail once the server's alert arrives.
        let io = TcpStream::connect(addr).await.unwrap();
        if let Ok(mut stream) = tls_connect(no_cert, io).await {
            let _ = stream.write_all(b"hello").await;
            let mut buf = [0u8; 1];
            let read = timeout(WAIT, stream.read(&mut buf)).await.unwrap();
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
        // Garbage instead of a ClientHello.
        let mut garbage = TcpStream::connect(addr).await.unwrap();
        garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // Accepted.
        let io = TcpStream::connect(addr).await.unwrap();
        let mut stream = tls_connect(good_cert, io).await.unwrap();
        ping(&mut stream).await;
    });
    let conn = timeout(WAIT, listener.accept()).await.unwrap();
    assert_eq!(conn.peer_certificates().len(), 1);
    echo_once(conn).await;
    clients.await.unwrap();
}

#[tokio::test]
async fn peer_listener_checks_client_san_against_address() {
    let tls = tls_setup(true);
    let local = tls.pki.issue("local", "peer", &["127.0.0.1"], 2);
    let elsewhere = tls.pki.issue("elsewhere", "peer", &["10.9.8.7"], 3);
    let options = ListenOptions {
        check_client_san: true,
        ..ListenOptions::default()
    };
    let mut listener = Listener::bind(
        &url("https://127.0.0.1:0"),
        Some(tls.server.server_config().unwrap()),
        options,
    )
    .await
    .unwrap();
    let addr = tcp_addr(&listener);
    let bad = client_config(&tls, Some(&elsewhere));
    let good = client_config(&tls, Some(&local));
    let clients = tokio::spawn(async move {
        let io = TcpStream::connect(addr).await.unwrap();
        let mut stream = tls_connect(bad, io).await.unwrap();
        let _ = stream.write_all(b"hello").await;
        let mut buf = [0u8; 5];
        let read = timeout(WAIT, stream.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

        let io = TcpStream::connect(addr).await.unwrap();
        let mut stream = tls_connect(good, io).await.unwrap();
        ping(&mut stream).await;
    });
    let conn = timeout(WAIT, listener.accept()).await.unwrap();
    echo_once(conn).await;
    clients.await.unwrap();
}

#[tokio::test]
async fn incoming_stream_yields_connections() {
    let listener = Listener::bind(&url("http://127.0.0.1:0"), None, ListenOptions::default())
        .await
        .unwrap();
    let addr = tcp_addr(&listener);
    let mut incoming = listener.into_incoming();
    assert_eq!(incoming.local_addr(), &ListenAddr::Tcp(addr));
    let client = tokio::spawn(async move {
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            ping(&mut stream).await;
        }
    });
    for _ in 0..2 {
        let next = timeout(WAIT, poll_fn(|cx| Pin::new(&mut incoming).poll_next(cx)))
            .await
            .unwrap();
        echo_once(next.unwrap().unwrap()).await;
    }
    client.await.unwrap();
}

#[tokio::test]
async fn bind_errors_name_the_address() {
    let err = Listener::bind(&url("https://127.0.0.1:0"), None, ListenOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot listen on TLS for https://127.0.0.1:0: KeyFile and CertFile are not presented"
    );

    let first = Listener::bind(&url("http://127.0.0.1:0"), None, ListenOptions::default())
        .await
        .unwrap();
    let taken = format!("http://{}", tcp_addr(&first));
    let err = Listener::bind(&url(&taken), None, ListenOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "listen tcp {}: bind: address already in use",
            tcp_addr(&first)
        )
    );
}

#[test]
fn connection_types_fit_hyper_and_tonic() {
    fn io<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>() {}
    fn stream<T: Stream<Item = std::io::Result<Conn>> + Unpin + Send + 'static>() {}
    fn send<T: Send + 'static>() {}
    io::<Conn>();
    stream::<etcd_transport::Incoming>();
    send::<Listener>();
}
