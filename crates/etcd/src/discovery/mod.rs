//! How a member without a WAL learns its initial cluster, and etcd's checks of it:
//! - static (`--initial-cluster`): as given;
//! - etcd discovery (`--discovery URL`): registers with a v2 keys endpoint and waits for the
//!   other members ([`v2`]); the discovery URL becomes the cluster token, as in etcd, so member
//!   and cluster IDs are etcd's;
//! - DNS SRV discovery (`--discovery-srv DOMAIN`): the peers from `_etcd-server-ssl._tcp` and
//!   `_etcd-server._tcp` records ([`srv`]).
//!
//! A member that already has a WAL ignores all of this: its data dir says who it is.

mod keys_client;
mod srv;
mod v2;
mod v3;

use std::path::Path;

use crate::config::{ClusterState, Config};

/// Why a member could not learn or accept its initial cluster. Each says what to do.
#[derive(Debug)]
pub enum BootstrapFailure {
    /// etcd discovery failed; etcd prints a few lines per kind and exits 1.
    Discovery(v2::DiscoveryError),
    /// etcd 3.6's v3 discovery failed.
    V3Discovery(v3::V3DiscoveryError),
    /// Anything else: one message, exit 1.
    Invalid(String),
}

/// Settles `cfg.initial_cluster` (and, for etcd discovery, the cluster token) for a member
/// whose WAL dir is `wal_dir`, and runs etcd's bootstrap checks.
pub async fn settle_initial_cluster(
    cfg: &mut Config,
    wal_dir: &Path,
) -> Result<(), BootstrapFailure> {
    if has_wal(wal_dir) {
        if cfg.discovery.is_some() {
            tracing::warn!(
                "discovery token ignored since a cluster has already been initialized. Valid log \
                 found at {:?}",
                wal_dir.display().to_string()
            );
        }
        return Ok(());
    }
    if let Some(domain) = cfg.discovery_srv.clone() {
        let service_name = cfg.discovery_srv_name.clone().unwrap_or_default();
        let cluster = srv::peers_from_dns(cfg, &domain, &service_name)
            .await
            .map_err(BootstrapFailure::Invalid)?;
        cfg.set_discovered_cluster(&cluster)
            .map_err(|e| BootstrapFailure::Invalid(e.to_string()))?;
        if !cfg.initial_cluster.iter().any(|m| m.name == cfg.name) {
            return Err(BootstrapFailure::Invalid(format!(
                "cannot find local etcd member {:?} in SRV records",
                cfg.name
            )));
        }
    }
    if cfg.discovery.is_some() || cfg.v3_discovery.is_set() {
        cfg.start_from_own_entry();
    }
    if cfg.initial_cluster_state != ClusterState::New {
        return cfg
            .verify_join_existing()
            .map_err(|e| BootstrapFailure::Invalid(e.to_string()));
    }
    // The advertised peer URLs and the cluster's entry for this member may name the same
    // addresses differently (a host name and its IP): etcd resolves both before comparing.
    // Resolving is only worth its time when the strings differ.
    if cfg.verify_bootstrap(&|_, _| false).is_err() {
        let same_addresses = srv::advertised_matches_cluster(cfg).await;
        cfg.verify_bootstrap(&|_, _| same_addresses)
            .map_err(|e| BootstrapFailure::Invalid(e.to_string()))?;
    }
    if let Some(durl) = cfg.discovery.clone() {
        join_by_discovery(cfg, &durl).await?;
    } else if let Some(token) = cfg.v3_discovery.token.clone() {
        join_by_v3_discovery(cfg, &token).await?;
    }
    Ok(())
}

/// This member's ID as etcd computes it before the cluster is known: from its advertised peer
/// URLs, with `token` as the cluster token.
fn own_id(cfg: &Config, token: &str) -> Result<u64, BootstrapFailure> {
    let own: Vec<(String, url::Url)> = cfg
        .initial_advertise_peer_urls
        .iter()
        .map(|u| (cfg.name.clone(), u.clone()))
        .collect();
    let membership = etcd_server::membership::Membership::from_initial_cluster(&own, token)
        .map_err(|e| BootstrapFailure::Invalid(e.to_string()))?;
    membership
        .members
        .keys()
        .next()
        .copied()
        .ok_or_else(|| BootstrapFailure::Invalid("no advertised peer URL to register".into()))
}

/// etcd 3.6's v3 discovery: registered under the token on the discovery cluster; the token
/// becomes the cluster token, as in etcd 3.6.
async fn join_by_v3_discovery(cfg: &mut Config, token: &str) -> Result<(), BootstrapFailure> {
    tracing::info!(
        plain = %format!(
            "discovery token= {token}, discovery endpoints= {}",
            cfg.v3_discovery.endpoints.join(",")
        ),
        discovery_token = token,
        "bootstrapping by v3 discovery"
    );
    let id = own_id(cfg, token)?;
    let mut discovery = v3::Discovery::connect(&cfg.v3_discovery, id)
        .await
        .map_err(BootstrapFailure::V3Discovery)?;
    let found = discovery
        .join_cluster(&cfg.initial_cluster_string())
        .await
        .map_err(BootstrapFailure::V3Discovery)?;
    cfg.set_discovered_cluster(&found)
        .map_err(|e| BootstrapFailure::Invalid(e.to_string()))?;
    if cfg.has_duplicate_peer_urls() {
        return Err(BootstrapFailure::Invalid(format!(
            "discovery cluster {found} has duplicate url"
        )));
    }
    cfg.initial_cluster_token = token.to_string();
    Ok(())
}

/// etcd discovery: this member's ID from its advertised peer URLs with the discovery URL as the
/// cluster token, registered under the token; the cluster found replaces the initial cluster.
async fn join_by_discovery(cfg: &mut Config, durl: &str) -> Result<(), BootstrapFailure> {
    tracing::info!(plain = %format!("discovery URL= {durl}"), discovery_url = durl, "bootstrapping by discovery");
    let id = own_id(cfg, durl)?;
    let proxy = v2::parse_proxy(cfg.discovery_proxy.as_deref().unwrap_or_default())
        .map_err(BootstrapFailure::Discovery)?;
    if let Some(p) = &proxy {
        tracing::info!(plain = %format!("using proxy {:?}", p.as_str()), proxy_url = %p, "running proxy with discovery");
    }
    let mut discovery = v2::Discovery::new(durl, proxy, id).map_err(BootstrapFailure::Discovery)?;
    let found = discovery
        .join_cluster(&cfg.initial_cluster_string())
        .await
        .map_err(BootstrapFailure::Discovery)?;
    cfg.set_discovered_cluster(&found)
        .map_err(|e| BootstrapFailure::Invalid(e.to_string()))?;
    if cfg.has_duplicate_peer_urls() {
        return Err(BootstrapFailure::Invalid(format!(
            "discovery cluster {found} has duplicate url"
        )));
    }
    cfg.initial_cluster_token = durl.to_string();
    Ok(())
}

impl BootstrapFailure {
    /// Logs the failure as etcd does (its lines, its hints).
    pub fn report(&self, cfg: &Config) {
        let durl = cfg.discovery.as_deref().unwrap_or_default();
        match self {
            BootstrapFailure::Discovery(v2::DiscoveryError::DuplicateId) => {
                tracing::error!(
                    "member {:?} has previously registered with discovery service token ({durl}).",
                    cfg.name
                );
                tracing::error!(
                    "But etcd could not find valid cluster configuration in the given data dir \
                     ({}).",
                    cfg.data_dir.display()
                );
                tracing::info!(
                    "Please check the given data dir path if the previous bootstrap succeeded"
                );
                tracing::info!("or use a new discovery token if the previous bootstrap failed.");
            }
            BootstrapFailure::Discovery(v2::DiscoveryError::DuplicateName) => {
                tracing::error!(
                    "member with duplicated name has registered with discovery service \
                     token({durl})."
                );
                tracing::error!("please check (cURL) the discovery token for more information.");
                tracing::error!(
                    "please do not reuse the discovery token and generate a new one to \
                     bootstrap the cluster."
                );
            }
            BootstrapFailure::Discovery(e) => {
                tracing::error!("failed to join discovery cluster ({e})");
                tracing::info!(
                    "discovery token {durl} was used, but failed to bootstrap the cluster."
                );
                tracing::info!("please generate a new discovery token and try to bootstrap again.");
            }
            BootstrapFailure::V3Discovery(e) => {
                tracing::error!(
                    plain = %format!("failed to join discovery cluster ({e})"),
                    error = %e,
                    "discovery failed to join cluster"
                );
                if matches!(e, v3::V3DiscoveryError::FullCluster) {
                    tracing::info!(
                        "the token's cluster has all its members; use a new discovery token to \
                         bootstrap another cluster, or 'etcdctl member add' to grow this one"
                    );
                }
            }
            BootstrapFailure::Invalid(e) => tracing::error!("{e}"),
        }
    }

    /// The one line for stderr when logs go elsewhere.
    pub fn summary(&self) -> String {
        match self {
            BootstrapFailure::Discovery(e) => format!("failed to join discovery cluster ({e})"),
            BootstrapFailure::V3Discovery(e) => format!("failed to join discovery cluster ({e})"),
            BootstrapFailure::Invalid(e) => e.clone(),
        }
    }
}

/// Whether `wal_dir` holds WAL files: then the member has been bootstrapped before.
pub fn has_wal(wal_dir: &Path) -> bool {
    std::fs::read_dir(wal_dir)
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wal"))))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    /// The ID etcd 3.4 gave a member bootstrapped by discovery (seen in its log: "found self
    /// 543d613e821b63e2 in the cluster"): the advertised peer URL hashed with the discovery URL
    /// as the cluster token.
    #[test]
    fn member_id_as_etcd_computes_it_under_discovery() {
        let peer = url::Url::parse("http://127.0.0.1:24800").unwrap();
        let durl = "http://127.0.0.1:23790/v2/keys/_etcd/registry/tok2";
        let membership = etcd_server::membership::Membership::from_initial_cluster(
            &[("m1".to_string(), peer)],
            durl,
        )
        .unwrap();
        assert_eq!(membership.members.keys().next(), Some(&0x543d613e821b63e2));
    }
}
