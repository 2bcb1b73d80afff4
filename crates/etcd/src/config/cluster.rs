//! `--initial-cluster`: parsing it as etcd does, deriving it from `--name`, and etcd's
//! bootstrap checks of it against this member (`VerifyBootstrap`, `VerifyJoinExisting`).

use std::collections::BTreeSet;

use url::Url;

use super::values::{self, go_quote, go_url_string};
use super::{
    ClusterMember, Config, ConfigError, DEFAULT_LISTEN_CLIENT_URL, DEFAULT_LISTEN_PEER_URL,
    DEFAULT_NAME, url,
};

/// `--initial-cluster` as etcd's `types.NewURLsMap` reads it: comma-separated `name=url`
/// entries, empty entries skipped, repeated names collecting several URLs.
pub(super) fn parse_initial_cluster(s: &str) -> Result<Vec<ClusterMember>, ConfigError> {
    let mut members: Vec<ClusterMember> = Vec::new();
    for entry in s.split(',').filter(|e| !e.is_empty()) {
        let bad = |why: String| {
            ConfigError::Invalid(format!("invalid --initial-cluster {}: {why}", go_quote(s)))
        };
        let Some((name, raw_url)) = entry.split_once('=') else {
            return Err(bad(format!("entry {} is not name=URL", go_quote(entry))));
        };
        if name.is_empty() {
            return Err(bad(format!(
                "entry {} has an empty member name",
                go_quote(entry)
            )));
        }
        let u = values::parse_url(raw_url).map_err(bad)?;
        match members.iter_mut().find(|m| m.name == name) {
            Some(m) => {
                m.peer_urls.push(u);
                m.peer_urls.sort_by_cached_key(go_url_string);
            }
            None => members.push(ClusterMember {
                name: name.to_string(),
                peer_urls: vec![u],
            }),
        }
    }
    Ok(members)
}

/// `scheme://host:port` from `base`'s scheme; `None` if `host` is not a valid URL host.
#[allow(dead_code)] // kept for the default-host and auto-compaction work; tested
fn with_host(base: &Url, host: &str, port: Option<u16>) -> Option<Url> {
    let port = port.map(|p| p.to_string()).unwrap_or_default();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    values::parse_url(&format!("{}://{host}:{port}", base.scheme())).ok()
}

/// etcd's `InitialClusterFromName`: this member alone, under its name ("default" if empty).
pub(super) fn derive_initial_cluster(cfg: &Config) -> Vec<ClusterMember> {
    if cfg.initial_advertise_peer_urls.is_empty() {
        return Vec::new();
    }
    let name = if cfg.name.is_empty() {
        DEFAULT_NAME
    } else {
        &cfg.name
    };
    vec![ClusterMember {
        name: name.to_string(),
        peer_urls: cfg.initial_advertise_peer_urls.clone(),
    }]
}

impl Config {
    /// etcd's `UpdateDefaultClusterFromName` for the machine's default host (found from the
    /// default route, which parsing does not look at): when a listen URL is 0.0.0.0 and the
    /// matching advertise URL is still the localhost default, advertise `host` instead, and
    /// re-derive a name-derived `--initial-cluster`. Returns whether anything changed.
    #[allow(dead_code)] // kept for the default-host and auto-compaction work; tested
    pub fn apply_default_host(&mut self, host: &str) -> bool {
        let mut used = false;
        let default_peer = url(DEFAULT_LISTEN_PEER_URL);
        let derived_before = self.initial_cluster == derive_initial_cluster(self);
        if let (Some(lp), [ap]) = (
            self.listen_peer_urls.first(),
            self.initial_advertise_peer_urls.as_slice(),
        ) && *ap == default_peer
            && lp.host_str() == Some("0.0.0.0")
            && let Some(u) = with_host(ap, host, lp.port_or_known_default())
        {
            self.initial_advertise_peer_urls = vec![u];
            used = true;
        }
        if used && self.name != DEFAULT_NAME && derived_before {
            self.initial_cluster = derive_initial_cluster(self);
        }
        let default_client = url(DEFAULT_LISTEN_CLIENT_URL);
        if let (Some(lc), [ac]) = (
            self.listen_client_urls.first(),
            self.advertise_client_urls.as_slice(),
        ) && *ac == default_client
            && lc.host_str() == Some("0.0.0.0")
            && let Some(u) = with_host(ac, host, lc.port_or_known_default())
        {
            self.advertise_client_urls = vec![u];
            used = true;
        }
        used
    }

    /// etcd's `VerifyBootstrap`, for a member starting a new cluster (no WAL yet): the
    /// cluster must contain this member under its name, with exactly its advertised peer URLs,
    /// and no URL twice. `urls_equal` compares two sorted URL lists the way etcd does
    /// (`netutil.URLStringsEqual`, which resolves host names); it is only asked when the
    /// strings differ.
    pub fn verify_bootstrap(
        &self,
        urls_equal: &dyn Fn(&[String], &[String]) -> bool,
    ) -> Result<(), ConfigError> {
        self.check_local_member()?;
        self.check_advertise_matches_cluster(urls_equal)?;
        self.check_duplicate_urls()?;
        if self.initial_cluster.is_empty() && self.discovery.is_none() {
            return Err(ConfigError::Invalid(
                "initial cluster unset and no discovery URL found".to_string(),
            ));
        }
        Ok(())
    }

    /// Replaces the initial cluster with one found by discovery (`name=url,...`).
    pub fn set_discovered_cluster(&mut self, cluster: &str) -> Result<(), ConfigError> {
        self.initial_cluster = parse_initial_cluster(cluster)?;
        Ok(())
    }

    /// etcd discovery starts from this member alone (`name=advertised peer URLs`): that is
    /// what it registers, and what the bootstrap checks see before the cluster is known.
    pub fn start_from_own_entry(&mut self) {
        self.initial_cluster = derive_initial_cluster(self);
    }

    /// Whether a peer URL appears twice in the initial cluster.
    pub fn has_duplicate_peer_urls(&self) -> bool {
        self.check_duplicate_urls().is_err()
    }

    /// etcd's `VerifyJoinExisting`, for a member joining an existing cluster (no WAL yet).
    pub fn verify_join_existing(&self) -> Result<(), ConfigError> {
        self.check_local_member()?;
        self.check_duplicate_urls()?;
        if self.discovery.is_some() {
            return Err(ConfigError::Invalid(
                "discovery URL should not be set when joining existing initial cluster".to_string(),
            ));
        }
        Ok(())
    }

    fn local_member(&self) -> Option<&ClusterMember> {
        self.initial_cluster.iter().find(|m| m.name == self.name)
    }

    fn check_local_member(&self) -> Result<(), ConfigError> {
        match self.local_member() {
            Some(_) => Ok(()),
            None => Err(ConfigError::Invalid(format!(
                "couldn't find local name {} in the initial cluster configuration",
                go_quote(&self.name)
            ))),
        }
    }

    fn check_duplicate_urls(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for u in self.initial_cluster.iter().flat_map(|m| &m.peer_urls) {
            if !seen.insert(go_url_string(u)) {
                return Err(ConfigError::Invalid(format!(
                    "initial cluster {} has duplicate url",
                    self.initial_cluster_string()
                )));
            }
        }
        Ok(())
    }

    fn check_advertise_matches_cluster(
        &self,
        urls_equal: &dyn Fn(&[String], &[String]) -> bool,
    ) -> Result<(), ConfigError> {
        let mut cluster: Vec<String> = self
            .local_member()
            .map(|m| m.peer_urls.iter().map(go_url_string).collect())
            .unwrap_or_default();
        let mut advertised: Vec<String> = self
            .initial_advertise_peer_urls
            .iter()
            .map(go_url_string)
            .collect();
        cluster.sort();
        advertised.sort();
        if cluster == advertised || urls_equal(&advertised, &cluster) {
            return Ok(());
        }
        let ap_str = advertised.join(",");
        let own = || {
            advertised
                .iter()
                .map(|u| format!("{}={u}", self.name))
                .collect::<Vec<_>>()
                .join(",")
        };
        let missing: Vec<String> = cluster
            .iter()
            .filter(|u| !advertised.contains(u))
            .map(|u| format!("{}={u}", self.name))
            .collect();
        if !missing.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "--initial-cluster has {} but missing from --initial-advertise-peer-urls={ap_str}",
                missing.join(",")
            )));
        }
        let missing: Vec<&String> = advertised.iter().filter(|u| !cluster.contains(u)).collect();
        if !missing.is_empty() {
            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(ConfigError::Invalid(format!(
                "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
                list.join(","),
                own()
            )));
        }
        Err(ConfigError::Invalid(format!(
            "failed to resolve {ap_str} to match --initial-cluster={}",
            own()
        )))
    }
}
