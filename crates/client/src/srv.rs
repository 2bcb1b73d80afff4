//! DNS SRV discovery as etcd's `pkg/srv` does it, asked of the resolvers in `/etc/resolv.conf`
//! (hickory's resolver; `/etc/hosts` answers host names first, as Go's resolver does):
//!
//! - [`get_client`]: the client endpoints of a cluster, from `_etcd-client-ssl._tcp.<domain>`
//!   (https) and `_etcd-client._tcp.<domain>` (http), for etcdctl and the gateway;
//! - [`get_cluster`]: the peers of a cluster, from `_etcd-server-ssl._tcp.<domain>` or
//!   `_etcd-server._tcp.<domain>`, as `name=scheme://host:port` entries of an initial cluster,
//!   the member's own entry named after it (found by comparing resolved addresses with its
//!   advertised peer URLs).
//!
//! Targets keep the final dot Go's resolver gives them in client endpoints
//! (`https://m1.example.com.:2379`), and lose it in peer URLs, as etcd's do. Errors read as
//! Go's resolver words them (`lookup _etcd-server._tcp.example.com on 10.0.0.2:53: no such
//! host`), since scripts and operators know those.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

/// How long one lookup may take, all retries included: a nameserver that never answers
/// fails the lookup with a message instead of hanging the start of a member.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);

/// One SRV record: where a service runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvTarget {
    /// The host, with its final dot (`m1.example.com.`).
    pub target: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// The system's resolver, and the nameserver it names in errors.
pub struct Resolver {
    inner: TokioResolver,
    nameserver: String,
}

impl Resolver {
    /// The resolver `/etc/resolv.conf` describes.
    pub fn system() -> Result<Resolver, String> {
        let (config, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
        let nameserver = config
            .name_servers()
            .first()
            .map(|ns| SocketAddr::new(ns.ip, 53).to_string())
            .unwrap_or_else(|| "127.0.0.1:53".to_string());
        let inner = TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Resolver { inner, nameserver })
    }

    /// The SRV records of `_<service>._tcp.<domain>`, ordered as Go's `net.LookupSRV` orders
    /// them: by priority, and within one priority by weight (heaviest first; Go shuffles by
    /// weight, which tests cannot pin down).
    pub async fn lookup_srv(&self, service: &str, domain: &str) -> Result<Vec<SrvTarget>, String> {
        let name = format!("_{service}._tcp.{domain}");
        let fqdn = if name.ends_with('.') {
            name.clone()
        } else {
            format!("{name}.")
        };
        let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, self.inner.srv_lookup(name.as_str()))
            .await
            .map_err(|_| self.lookup_error(&fqdn, "i/o timeout"))?
            .map_err(|e| self.net_error(&fqdn, &e))?;
        let mut targets: Vec<SrvTarget> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvTarget {
                    target: srv.target.to_string(),
                    port: srv.port,
                    priority: srv.priority,
                    weight: srv.weight,
                }),
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return Err(self.lookup_error(&fqdn, "no such host"));
        }
        targets.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then(b.weight.cmp(&a.weight))
                .then(a.target.cmp(&b.target))
        });
        Ok(targets)
    }

    /// Go's `net.ResolveTCPAddr("tcp", host_port)`: an IP literal as it is, a host name to its
    /// first address (IPv4 preferred, as Go prefers it).
    pub async fn resolve_tcp_addr(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let fqdn = if host.ends_with('.') {
            host.to_string()
        } else {
            format!("{host}.")
        };
        let ips = tokio::time::timeout(LOOKUP_TIMEOUT, self.inner.lookup_ip(host))
            .await
            .map_err(|_| self.lookup_error(&fqdn, "i/o timeout"))?
            .map_err(|e| self.net_error(&fqdn, &e))?;
        let ips: Vec<IpAddr> = ips.iter().collect();
        ips.iter()
            .find(|ip| ip.is_ipv4())
            .or(ips.first())
            .map(|ip| SocketAddr::new(*ip, port))
            .ok_or_else(|| self.lookup_error(&fqdn, "no such host"))
    }

    fn net_error(&self, fqdn: &str, e: &hickory_resolver::net::NetError) -> String {
        if e.is_nx_domain() || e.is_no_records_found() {
            self.lookup_error(fqdn, "no such host")
        } else {
            self.lookup_error(fqdn, &e.to_string())
        }
    }

    fn lookup_error(&self, fqdn: &str, what: &str) -> String {
        // Go names the query without its final dot.
        let name = fqdn.strip_suffix('.').unwrap_or(fqdn);
        format!("lookup {name} on {}: {what}", self.nameserver)
    }
}

/// etcd's `GetSRVService`: `etcd-client` becomes `etcd-client-ssl` for https, and a service
/// name (`--discovery-srv-name`) is appended after a dash.
pub fn srv_service(service: &str, service_name: &str, scheme: &str) -> String {
    let service = if scheme == "https" {
        format!("{service}-ssl")
    } else {
        service.to_string()
    };
    if service_name.is_empty() {
        service
    } else {
        format!("{service}-{service_name}")
    }
}

/// `host:port` as Go's `net.JoinHostPort` writes it (brackets around an IPv6 address).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// etcd's `srv.GetClient(service, domain, service_name)`: the https endpoints, then the http
/// ones; an error only when both lookups fail.
pub async fn get_client(
    resolver: &Resolver,
    service: &str,
    domain: &str,
    service_name: &str,
) -> Result<Vec<String>, String> {
    let mut endpoints = Vec::new();
    let mut errors = Vec::new();
    for scheme in ["https", "http"] {
        let name = srv_service(service, service_name, scheme);
        match resolver.lookup_srv(&name, domain).await {
            Ok(targets) => endpoints.extend(
                targets
                    .iter()
                    .map(|t| format!("{scheme}://{}", join_host_port(&t.target, t.port))),
            ),
            Err(e) => errors.push(e),
        }
    }
    if errors.len() == 2 {
        return Err(format!(
            "dns lookup errors: {} and {}",
            errors[0], errors[1]
        ));
    }
    Ok(endpoints)
}

/// A member's advertised peer URL, split as the SRV comparison needs it.
#[derive(Clone, Debug)]
pub struct AdvertisedPeer {
    pub url: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl AdvertisedPeer {
    /// `scheme://host:port` (a path is ignored, as etcd ignores it).
    pub fn parse(url: &str) -> Result<AdvertisedPeer, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("parse {url:?}: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("URL {url:?} has no host"))?
            .to_string();
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("URL {url:?} has no port"))?;
        Ok(AdvertisedPeer {
            url: url.to_string(),
            scheme: parsed.scheme().to_string(),
            host,
            port,
        })
    }
}

/// etcd's `srv.GetCluster(scheme, service, name, domain, apurls)`: one `name=scheme://host:port`
/// per SRV target of `_<service>._tcp.<domain>`. The target whose address is one of this
/// member's advertised peer URLs gets `name`; the others are numbered from 0. A target that
/// does not resolve is skipped; the lookup fails only when no target is left.
pub async fn get_cluster(
    resolver: &Resolver,
    scheme: &str,
    service: &str,
    name: &str,
    domain: &str,
    advertised: &[AdvertisedPeer],
) -> Result<Vec<String>, String> {
    let wrap = |e: String| format!("error querying DNS SRV records for _{service} {e}");
    let mut own_addrs = Vec::with_capacity(advertised.len());
    for peer in advertised {
        let addr = resolver.resolve_tcp_addr(&peer.host, peer.port).await?;
        own_addrs.push((addr, peer));
    }
    let targets = resolver.lookup_srv(service, domain).await.map_err(wrap)?;
    let mut parts = Vec::new();
    let mut last_error = None;
    let mut next_temp_name = 0;
    for target in &targets {
        let addr = match resolver
            .resolve_tcp_addr(target.target.trim_end_matches('.'), target.port)
            .await
        {
            Ok(addr) => addr,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let own = own_addrs.iter().find(|(a, _)| *a == addr).map(|(_, p)| *p);
        let member_name = match own {
            Some(_) => name.to_string(),
            None => {
                next_temp_name += 1;
                (next_temp_name - 1).to_string()
            }
        };
        let url_host = join_host_port(target.target.trim_end_matches('.'), target.port);
        match own {
            Some(peer) if peer.scheme != scheme => {
                last_error = Some(format!(
                    "bootstrap at {scheme}://{url_host} from DNS for {service} has scheme \
                     mismatch with expected peer {}",
                    peer.url
                ));
            }
            _ => parts.push(format!("{member_name}={scheme}://{url_host}")),
        }
    }
    if parts.is_empty() {
        return Err(wrap(
            last_error.unwrap_or_else(|| "no usable targets".into()),
        ));
    }
    Ok(parts)
}

/// The same lookups for callers outside an async context (etcdctl's flag handling): each runs
/// on a thread of its own with a small runtime, so it works whether or not the caller is
/// itself inside a runtime.
pub mod blocking {
    use super::Resolver;

    fn run<T: Send + 'static>(
        f: impl FnOnce(Resolver) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>> + Send + 'static,
    ) -> Result<T, String> {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a DNS lookup: {e}"))?;
            let resolver = Resolver::system()?;
            Ok(rt.block_on(f(resolver)))
        })
        .join()
        .map_err(|_| "the DNS lookup thread panicked".to_string())?
    }

    /// [`super::get_client`], blocking.
    pub fn get_client(
        service: &str,
        domain: &str,
        service_name: &str,
    ) -> Result<Vec<String>, String> {
        let (service, domain, service_name) = (
            service.to_string(),
            domain.to_string(),
            service_name.to_string(),
        );
        run(move |r| {
            Box::pin(async move { super::get_client(&r, &service, &domain, &service_name).await })
        })?
    }
}
