//! `etcd gateway start`: etcd 3.4's L4 gateway. Accepts TCP connections on `--listen-addr`
//! and pipes each, byte for byte, to one of `--endpoints` picked round robin among the ones
//! not known to be down. An endpoint that refuses a connection is set aside and tried again
//! every `--retry-delay`; a client then goes to the next one. Knows nothing of gRPC or TLS:
//! clients speak to the members through it as if directly.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::config::values::parse_go_duration;

const USAGE: &str = "Usage:
  etcd gateway start [flags]

Flags:
      --discovery-srv string        DNS domain used to bootstrap initial cluster
      --discovery-srv-name string   service name to query when using DNS discovery
      --endpoints strings           comma separated etcd cluster endpoints (default [127.0.0.1:2379])
  -h, --help                        help for start
      --insecure-discovery          accept insecure SRV records
      --listen-addr string          listen address (default \"127.0.0.1:23790\")
      --retry-delay duration        duration of delay before retrying failed endpoints (default 1m0s)
      --trusted-ca-file string      path to the client server TLS CA file for verifying the discovered endpoints when discovery-srv is provided.
";

struct Options {
    endpoints: Vec<String>,
    listen_addr: String,
    retry_delay: Duration,
    /// `--discovery-srv`: the endpoints come from `_etcd-client[-ssl]._tcp.<domain>`.
    discovery_srv: String,
    discovery_srv_name: String,
    insecure_discovery: bool,
}

/// Flags may come before or after `start`, as cobra takes them: returns the words that are
/// not flags (the subcommand) and the options.
fn parse(args: &[String]) -> Result<(Vec<String>, Options), String> {
    let mut opts = Options {
        endpoints: vec!["127.0.0.1:2379".to_string()],
        listen_addr: "127.0.0.1:23790".to_string(),
        retry_delay: Duration::from_secs(60),
        discovery_srv: String::new(),
        discovery_srv_name: String::new(),
        insecure_discovery: false,
    };
    let words = crate::subcommand_flags::parse(
        args,
        |name| name == "insecure-discovery",
        |name, value| {
            let value = || value.clone().unwrap_or_default();
            match name {
                "insecure-discovery" => {
                    opts.insecure_discovery = !matches!(value().as_str(), "false" | "0" | "f");
                }
                "endpoints" => {
                    opts.endpoints = value()
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(strip_scheme)
                        .collect();
                }
                "listen-addr" => opts.listen_addr = value(),
                "retry-delay" => {
                    let v = value();
                    opts.retry_delay = parse_go_duration(&v).map_err(|e| {
                        format!(
                            "invalid argument \"{v}\" for \"--retry-delay\" flag: {}",
                            e.message()
                        )
                    })?;
                }
                "discovery-srv" => opts.discovery_srv = value(),
                "discovery-srv-name" => opts.discovery_srv_name = value(),
                "trusted-ca-file" => {}
                _ => return Err(format!("unknown flag: --{name}")),
            }
            Ok(())
        },
    )?;
    if opts.endpoints.is_empty() {
        return Err("no endpoints found".to_string());
    }
    Ok((words, opts))
}

/// etcd's `discoverEndpoints`: the client endpoints from the domain's SRV records; without
/// `--insecure-discovery` only the https ones. An empty answer leaves `--endpoints` in use.
/// `etcd grpc-proxy start` finds its members the same way.
pub(crate) fn discover_endpoints(
    domain: &str,
    service_name: &str,
    insecure_discovery: bool,
) -> Result<Option<Vec<String>>, String> {
    if domain.is_empty() {
        return Ok(None);
    }
    let found = etcd_client::srv::blocking::get_client("etcd-client", domain, service_name)?;
    eprintln!("discovered the cluster {found:?} from {domain}");
    let usable: Vec<String> = found
        .into_iter()
        .filter(|ep| {
            let keep = insecure_discovery || !ep.starts_with("http://");
            if !keep {
                eprintln!("{ep} is insecure; pass --insecure-discovery to use it");
            }
            keep
        })
        .map(|ep| strip_scheme(&ep))
        .collect();
    Ok((!usable.is_empty()).then_some(usable))
}

/// etcd's `stripSchema`: `http://host:port` is `host:port`.
fn strip_scheme(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((_, rest)) => rest.trim_end_matches('/').to_string(),
        None => endpoint.to_string(),
    }
}

/// One member behind the gateway.
struct Remote {
    addr: String,
    down: AtomicBool,
}

struct Proxy {
    remotes: Vec<Remote>,
    next: AtomicUsize,
}

impl Proxy {
    /// Round robin over the endpoints not set aside.
    fn pick(&self) -> Option<&Remote> {
        for _ in 0..self.remotes.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.remotes.len();
            let remote = &self.remotes[i];
            if !remote.down.load(Ordering::Relaxed) {
                return Some(remote);
            }
        }
        None
    }

    async fn serve(self: Arc<Self>, mut client: TcpStream) {
        while let Some(remote) = self.pick() {
            match TcpStream::connect(&remote.addr).await {
                Ok(mut member) => {
                    let _ = client.set_nodelay(true);
                    let _ = member.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut member).await;
                    return;
                }
                Err(e) => {
                    remote.down.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        address = %remote.addr,
                        error = %e,
                        hint = "it is tried again every --retry-delay; check that the member runs",
                        "deactivated endpoint"
                    );
                }
            }
        }
        tracing::warn!(
            "no endpoint is reachable; closing the client connection (check that the members \
             named by --endpoints or --discovery-srv run)"
        );
    }

    /// Tries the endpoints set aside again, every `every`.
    async fn monitor(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            for remote in &self.remotes {
                if remote.down.load(Ordering::Relaxed)
                    && TcpStream::connect(&remote.addr).await.is_ok()
                {
                    remote.down.store(false, Ordering::Relaxed);
                    tracing::info!(address = %remote.addr, "activated endpoint");
                }
            }
        }
    }
}

/// The listen address must not be one of the endpoints: the gateway would proxy to itself.
fn check_not_self(listen: &str, endpoints: &[String]) -> Result<(), String> {
    let listen_addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|_| format!("failed to validate listen address: {listen}"))?
        .collect();
    for ep in endpoints {
        let Ok(addrs) = ep.to_socket_addrs() else {
            return Err(format!("failed to resolve endpoint host: {ep}"));
        };
        for a in addrs {
            if listen_addrs.contains(&a) {
                return Err(format!(
                    "SRV or endpoint ({ep}->{a}) should not resolve to the gateway listen addr ({listen})"
                ));
            }
        }
    }
    Ok(())
}

/// `etcd gateway ...`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (words, opts) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if words != ["start"] {
        eprint!("{USAGE}");
        return ExitCode::FAILURE;
    }
    let mut opts = opts;
    match discover_endpoints(
        &opts.discovery_srv,
        &opts.discovery_srv_name,
        opts.insecure_discovery,
    ) {
        Ok(Some(found)) => opts.endpoints = found,
        Ok(None) => {}
        Err(e) => {
            eprintln!("etcd gateway: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = check_not_self(&opts.listen_addr, &opts.endpoints) {
        println!("{e}");
        return ExitCode::FAILURE;
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("etcd gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(&opts.listen_addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("etcd gateway: cannot listen on {}: {e}", opts.listen_addr);
                return ExitCode::FAILURE;
            }
        };
        let proxy = Arc::new(Proxy {
            remotes: opts
                .endpoints
                .iter()
                .map(|addr| Remote {
                    addr: addr.clone(),
                    down: AtomicBool::new(false),
                })
                .collect(),
            next: AtomicUsize::new(0),
        });
        tokio::spawn(proxy.clone().monitor(opts.retry_delay));
        // etcd's line, which scripts and its tests wait for.
        eprintln!("ready to proxy client requests to {:?}", opts.endpoints);
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    tokio::spawn(proxy.clone().serve(conn));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn flags_as_etcds() {
        let (words, o) = parse(&args(&[
            "--endpoints=http://127.0.0.1:2379,127.0.0.1:22379",
            "start",
            "--listen-addr",
            "127.0.0.1:9",
            "--retry-delay=5s",
        ]))
        .unwrap();
        assert_eq!(words, vec!["start".to_string()]);
        assert_eq!(o.endpoints, vec!["127.0.0.1:2379", "127.0.0.1:22379"]);
        assert_eq!(o.listen_addr, "127.0.0.1:9");
        assert_eq!(o.retry_delay, Duration::from_secs(5));
        assert!(parse(&args(&["--retry-delay=soon"])).is_err());
        assert!(parse(&args(&["--bogus=1"])).is_err());
        assert!(check_not_self("127.0.0.1:2379", &["127.0.0.1:2379".to_string()]).is_err());
    }

    #[tokio::test]
    async fn pipes_to_a_live_endpoint_past_a_dead_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut c, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            c.write_all(&buf).await.unwrap();
        });
        // A port nothing listens on.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let proxy = Arc::new(Proxy {
            remotes: vec![
                Remote {
                    addr: dead.clone(),
                    down: AtomicBool::new(false),
                },
                Remote {
                    addr: live,
                    down: AtomicBool::new(false),
                },
            ],
            next: AtomicUsize::new(0),
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let p = proxy.clone();
        tokio::spawn(async move {
            let (conn, _) = front.accept().await.unwrap();
            p.serve(conn).await;
        });
        let mut client = TcpStream::connect(front_addr).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        assert!(
            proxy.remotes[0].down.load(Ordering::Relaxed),
            "the dead endpoint is set aside"
        );
    }
}
