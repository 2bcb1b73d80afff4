//! Listen URLs: `--listen-client-urls`, `--listen-peer-urls` and `--listen-metrics-urls`.
//!
//! etcd accepts four schemes: `http://host:port`, `https://host:port`, `unix://path` and
//! `unixs://path`. TCP hosts must be IP literals or `localhost` (etcd refuses to bind to other
//! names, see `checkBindURLs`), and no URL may carry a path.
//!
//! ```
//! use etcd_transport::{ListenAddr, ListenUrl};
//! let url: ListenUrl = "https://[::1]:2379".parse().unwrap();
//! assert!(url.is_tls());
//! assert_eq!(url.addr(), &ListenAddr::Tcp("[::1]:2379".parse().unwrap()));
//! ```
//!
//! Unix socket URLs are taken verbatim after `unix://`: etcd's own form `unix://localhost:2379`
//! names a socket file `localhost:2379` in the working directory, and the more common
//! `unix:///run/etcd.sock` names an absolute path (etcd itself rejects the latter; we accept it
//! because it is what users expect).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::TransportError;

/// The scheme of a listen URL: whether it is TCP or a Unix socket, and whether it speaks TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Unix,
    Unixs,
}

impl Scheme {
    /// True for `https` and `unixs`: connections must complete a TLS handshake.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Unixs)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Unix => "unix",
            Scheme::Unixs => "unixs",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a listener binds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP socket; `localhost` has already been resolved to 127.0.0.1, as Go's `net.Listen`
    /// does (it binds the first address of a name, preferring IPv4).
    Tcp(SocketAddr),
    /// A Unix domain socket file.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A parsed, validated listen URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListenUrl {
    scheme: Scheme,
    /// The text after `scheme://`, as written (Go's `url.Host`, or the socket path).
    host: String,
    addr: ListenAddr,
}

impl ListenUrl {
    /// Parses one listen URL; see the module docs for the accepted forms.
    pub fn parse(input: &str) -> Result<Self, TransportError> {
        let input = input.trim();
        let (scheme, rest) = input
            .split_once("://")
            .ok_or_else(|| TransportError::UrlScheme(input.to_string()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "unix" => Scheme::Unix,
            "unixs" => Scheme::Unixs,
            _ => return Err(TransportError::UrlScheme(input.to_string())),
        };
        if rest.contains(['?', '#']) {
            return Err(TransportError::UrlPath(input.to_string()));
        }
        let addr = match scheme {
            Scheme::Unix | Scheme::Unixs => {
                if rest.is_empty() {
                    return Err(TransportError::UrlHostPort(input.to_string()));
                }
                ListenAddr::Unix(PathBuf::from(rest))
            }
            Scheme::Http | Scheme::Https => {
                if rest.contains('/') {
                    return Err(TransportError::UrlPath(input.to_string()));
                }
                ListenAddr::Tcp(parse_bind_host_port(input, rest)?)
            }
        };
        Ok(ListenUrl {
            scheme,
            host: rest.to_string(),
            addr,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// True when connections on this URL must complete a TLS handshake.
    pub fn is_tls(&self) -> bool {
        self.scheme.is_tls()
    }

    /// The address part as written: `127.0.0.1:2379`, `localhost:2379`, `[::1]:2379`, or the
    /// socket path. This is what etcd feeds to auto-TLS as the certificate's hosts.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }
}

impl FromStr for ListenUrl {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListenUrl::parse(s)
    }
}

impl fmt::Display for ListenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)
    }
}

/// Parses a comma-separated flag value such as `--listen-client-urls`.
pub fn parse_listen_urls(input: &str) -> Result<Vec<ListenUrl>, TransportError> {
    let urls = input
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(ListenUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(TransportError::NoUrls);
    }
    Ok(urls)
}

/// Splits `host:port` like Go's `net.SplitHostPort` (brackets required around IPv6) and
/// resolves the host for binding: an IP literal or `localhost`.
fn parse_bind_host_port(url: &str, host_port: &str) -> Result<SocketAddr, TransportError> {
    let bad_form = || TransportError::UrlHostPort(url.to_string());
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(bad_form)?;
        let port = after.strip_prefix(':').ok_or_else(bad_form)?;
        (host, port)
    } else {
        let (host, port) = host_port.rsplit_once(':').ok_or_else(bad_form)?;
        if host.contains(':') {
            // Go: "too many colons in address"; an IPv6 literal needs brackets.
            return Err(bad_form());
        }
        (host, port)
    };
    if host.contains(['[', ']', '@']) || port.contains(['[', ']']) {
        return Err(bad_form());
    }
    let port: u16 = port.parse().map_err(|_| bad_form())?;
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| TransportError::UrlBindHost(url.to_string()))?
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> ListenAddr {
        ListenAddr::Tcp(s.parse().unwrap())
    }

    #[test]
    fn parses_every_form() {
        let cases = [
            ("http://127.0.0.1:2379", Scheme::Http, tcp("127.0.0.1:2379")),
            ("https://10.0.0.1:2380", Scheme::Https, tcp("10.0.0.1:2380")),
            ("http://localhost:2379", Scheme::Http, tcp("127.0.0.1:2379")),
            ("https://[::1]:2379", Scheme::Https, tcp("[::1]:2379")),
            ("http://0.0.0.0:0", Scheme::Http, tcp("0.0.0.0:0")),
            ("HTTP://127.0.0.1:1", Scheme::Http, tcp("127.0.0.1:1")),
            (
                "unix://localhost:2379",
                Scheme::Unix,
                ListenAddr::Unix("localhost:2379".into()),
            ),
            (
                "unixs:///run/etcd.sock",
                Scheme::Unixs,
                ListenAddr::Unix("/run/etcd.sock".into()),
            ),
        ];
        for (input, scheme, addr) in cases {
            let url = ListenUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url.scheme(), scheme, "{input}");
            assert_eq!(url.addr(), &addr, "{input}");
        }
    }

    #[test]
    fn keeps_host_as_written() {
        let url = ListenUrl::parse(" https://localhost:2379 ").unwrap();
        assert_eq!(url.host(), "localhost:2379");
        assert_eq!(url.to_string(), "https://localhost:2379");
        assert!(url.is_tls());
        let url = ListenUrl::parse("unix://localhost:2379").unwrap();
        assert!(!url.is_tls());
        assert_eq!(url.to_string(), "unix://localhost:2379");
    }

    #[test]
    fn rejects_bad_urls_with_etcd_messages() {
        let cases = [
            (
                "ftp://127.0.0.1:1",
                "URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:1",
            ),
            (
                "127.0.0.1:2379",
                "URL scheme must be http, https, unix, or unixs: 127.0.0.1:2379",
            ),
            (
                "http://127.0.0.1",
                "URL address does not have the form \"host:port\": http://127.0.0.1",
            ),
            (
                "http://::1:2379",
                "URL address does not have the form \"host:port\": http://::1:2379",
            ),
            (
                "http://127.0.0.1:port",
                "URL address does not have the form \"host:port\": http://127.0.0.1:port",
            ),
            (
                "http://127.0.0.1:70000",
                "URL address does not have the form \"host:port\": http://127.0.0.1:70000",
            ),
            (
                "http://127.0.0.1:2379/",
                "URL must not contain a path: http://127.0.0.1:2379/",
            ),
            (
                "http://127.0.0.1:2379/v2",
                "URL must not contain a path: http://127.0.0.1:2379/v2",
            ),
            (
                "http://127.0.0.1:2379?a=b",
                "URL must not contain a path: http://127.0.0.1:2379?a=b",
            ),
            (
                "http://example.com:2379",
                "expected IP in URL for binding (http://example.com:2379)",
            ),
            (
                "http://:2379",
                "expected IP in URL for binding (http://:2379)",
            ),
            (
                "unix://",
                "URL address does not have the form \"host:port\": unix://",
            ),
        ];
        for (input, want) in cases {
            let err = ListenUrl::parse(input).expect_err(input);
            assert_eq!(err.to_string(), want, "{input}");
        }
    }

    #[test]
    fn parses_flag_lists() {
        let urls = parse_listen_urls("http://127.0.0.1:1, https://127.0.0.1:2,").unwrap();
        assert_eq!(urls.len(), 2);
        assert_eq!(urls[1].scheme(), Scheme::Https);
        assert_eq!(
            parse_listen_urls(" , ").unwrap_err().to_string(),
            "no valid URLs given"
        );
        assert!(parse_listen_urls("http://127.0.0.1:1,bad").is_err());
    }
}
