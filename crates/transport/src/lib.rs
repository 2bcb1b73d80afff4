//! Listeners and TLS shared by the etcd server and its clients (etcd's `pkg/transport`).
//!
//! - [`url`]: parse `--listen-*-urls` (`http`, `https`, `unix`, `unixs`) into [`ListenUrl`].
//! - [`tls`]: [`TlsInfo`], the TLS flags of one side, and the rustls server and client
//!   configurations built from them (client-certificate auth, CRLs, allowed CN/hostname,
//!   cipher suites, ALPN).
//! - [`selfcert`]: auto-TLS, a self-signed certificate kept in the data directory.
//! - [`listener`]: bind a URL and accept connections, with TLS handshakes that run
//!   concurrently under a deadline, as a [`futures_core::Stream`] for hyper and tonic.
//! - [`identity`]: what a peer certificate names, and etcd's checks on it.
//! - [`h2_authority`]: [`AuthorityRepair`], which lets hyper serve etcdctl 3.4's requests
//!   whose HTTP/2 `:authority` is a URL (`http://127.0.0.1:2379`).
//!
//! Architecture invariant: this crate knows nothing of etcd's API, Raft or storage; it deals
//! only in sockets, certificates and URLs, and (in [`h2_authority`]) in HTTP/2 frames below
//! hyper. It targets Unix (Unix sockets, file modes).
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_transport::TransportError> {
//! use etcd_transport::{ListenOptions, ListenUrl, Listener, TlsInfo};
//! let url: ListenUrl = "https://127.0.0.1:2379".parse()?;
//! let info = TlsInfo {
//!     cert_file: Some("server.crt".into()),
//!     key_file: Some("server.key".into()),
//!     ..TlsInfo::default()
//! };
//! let mut listener = Listener::bind(&url, Some(info.server_config()?), ListenOptions::default()).await?;
//! let conn = listener.accept().await; // TLS established; conn.alpn_protocol() says h2 or http/1.1
//! # drop(conn); Ok(()) }
//! ```

mod cipher;
pub mod error;
pub mod h2_authority;
pub mod identity;
mod keypair;
pub mod listener;
mod pem;
pub mod selfcert;
pub mod tls;
pub mod url;
mod verify;

pub use error::TransportError;
pub use h2_authority::AuthorityRepair;
pub use identity::{AllowedIdentity, CertIdentity, check_cert_san};
pub use listener::{Conn, Incoming, ListenOptions, Listener, RemoteAddr, StdSocket, TlsConnInfo};
pub use selfcert::self_signed;
pub use tls::{ALPN_H2, ALPN_HTTP11, TlsInfo};
pub use url::{ListenAddr, ListenUrl, Scheme, parse_listen_urls};
pub use verify::InsecureServerVerifier;

/// Re-exported so users name the same rustls version as this crate.
pub use rustls;
pub use tokio_rustls;
