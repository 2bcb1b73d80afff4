//! DNS SRV discovery of the peers (`--discovery-srv`, `--discovery-srv-name`), and etcd's
//! address comparison of a member's advertised peer URLs with its entry in the cluster.

use etcd_client::srv::{self, AdvertisedPeer, Resolver};

use crate::config::Config;

/// etcd's `GetDNSClusterNames`: the https peers from `_etcd-server-ssl[-name]._tcp.<domain>`
/// and the http ones from `_etcd-server[-name]._tcp.<domain>`, as one initial cluster string.
/// Either kind alone is enough (etcd 3.4 needed the https records to exist even for an http
/// cluster, a bug fixed in 3.5); with neither, the error names both lookups.
pub async fn peers_from_dns(
    cfg: &Config,
    domain: &str,
    service_name: &str,
) -> Result<String, String> {
    let resolver = Resolver::system()?;
    let advertised = cfg
        .initial_advertise_peer_urls
        .iter()
        .map(|u| AdvertisedPeer::parse(u.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    let suffix = if service_name.is_empty() {
        String::new()
    } else {
        format!("-{service_name}")
    };
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (scheme, service) in [("https", "etcd-server-ssl"), ("http", "etcd-server")] {
        let service = format!("{service}{suffix}");
        let found =
            srv::get_cluster(&resolver, scheme, &service, &cfg.name, domain, &advertised).await;
        tracing::info!(
            plain = %format!(
                "get cluster for {service} SRV: {}",
                match &found {
                    Ok(f) => f.join(","),
                    Err(e) => e.clone(),
                }
            ),
            service_scheme = scheme,
            service_name = %service,
            server_name = %cfg.name,
            discovery_srv = domain,
            "get cluster for {service} SRV"
        );
        match found {
            Ok(found) => entries.extend(found),
            Err(e) => errors.push(e),
        }
    }
    if entries.is_empty() {
        let e = errors.join("; ");
        tracing::warn!(
            plain = %format!("couldn't resolve during SRV discovery ({e})"),
            error = %e,
            "failed to resolve during SRV discovery"
        );
        return Err(format!(
            "{e} (check the SRV records of {domain}: _etcd-server-ssl{suffix}._tcp and \
             _etcd-server{suffix}._tcp, and the nameserver in /etc/resolv.conf)"
        ));
    }
    for entry in &entries {
        tracing::info!(
            plain = %format!("got bootstrap from DNS for etcd-server at {entry}"),
            node = %entry,
            "got bootstrap from DNS for etcd-server"
        );
    }
    Ok(entries.join(","))
}

/// etcd's `netutil.URLStringsEqual` for this member: its advertised peer URLs and its entry
/// in the initial cluster name the same addresses once host names are resolved.
pub async fn advertised_matches_cluster(cfg: &Config) -> bool {
    let Some(own) = cfg.initial_cluster.iter().find(|m| m.name == cfg.name) else {
        return false;
    };
    if own.peer_urls.len() != cfg.initial_advertise_peer_urls.len() {
        return false;
    }
    let Ok(resolver) = Resolver::system() else {
        return false;
    };
    let mut resolved = Vec::new();
    for list in [&cfg.initial_advertise_peer_urls, &own.peer_urls] {
        let mut out = Vec::new();
        for u in list {
            let Ok(peer) = AdvertisedPeer::parse(u.as_str()) else {
                return false;
            };
            let Ok(addr) = resolver.resolve_tcp_addr(&peer.host, peer.port).await else {
                return false;
            };
            out.push(format!("{}://{addr}", peer.scheme));
        }
        out.sort();
        resolved.push(out);
    }
    resolved[0] == resolved[1]
}
