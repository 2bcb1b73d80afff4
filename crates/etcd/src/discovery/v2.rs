//! etcd 3.4's v2 discovery protocol (`--discovery URL`), against any v2 keys endpoint: ours
//! with `--enable-v2`, etcd's, or a public discovery service.
//!
//! The URL's path is the token directory (`/v2/keys/_etcd/registry/<token>`); its
//! `_config/size` key says how many members the cluster has. Each member:
//! 1. checks the token (size set and a number, not yet full);
//! 2. registers itself: creates `<token>/<member id in hex>` with its `name=peer-url` entries
//!    (a create, so a second registration of the same ID fails: "duplicate id");
//! 3. lists the registrations in creation order: the first `size` are the cluster, and a
//!    member that is not among them finds the cluster full;
//! 4. watches the token directory until `size` members have registered.
//!
//! The members' entries joined are the initial cluster. A discovery service that does not
//! answer is asked again with a growing pause (2 s, 4 s, ... 256 s), logging each attempt, as
//! etcd does; an answer that is wrong fails at once.

use std::time::Duration;

use url::Url;

use super::keys_client::{ERROR_CODE_NODE_EXIST, KeysClient, KeysError, KeysResponse, Node};

/// The longest pause between two attempts: 2^8 seconds, as etcd's `maxExpoentialRetries`.
const MAX_BACKOFF_EXPONENT: u32 = 8;

/// etcd's discovery errors, with its messages.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery: invalid URL")]
    InvalidUrl,
    #[error("discovery: size key is bad")]
    BadSizeKey,
    #[error("discovery: found duplicate id")]
    DuplicateId,
    #[error("discovery: found duplicate name")]
    DuplicateName,
    #[error("discovery: cluster is full")]
    FullCluster,
    #[error("discovery: bad discovery endpoint")]
    BadDiscoveryEndpoint,
    /// The URL or proxy flag cannot be used at all.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Keys(KeysError),
}

impl From<KeysError> for DiscoveryError {
    fn from(e: KeysError) -> DiscoveryError {
        match e {
            KeysError::InvalidJson => DiscoveryError::BadDiscoveryEndpoint,
            other => DiscoveryError::Keys(other),
        }
    }
}

/// The registrations found under the token, the cluster size, and the store index they were
/// read at.
struct Registrations {
    nodes: Vec<Node>,
    /// The token directory's key as the store names it (without the URL's `/v2/keys`).
    dir_key: String,
    size: u64,
    index: u64,
}

pub struct Discovery {
    client: KeysClient,
    /// `scheme://host[:port]` of the discovery URL, for logs.
    endpoint: String,
    /// The token directory: the discovery URL's path.
    token_dir: String,
    /// This member's ID in hex, its key under the token.
    self_name: String,
    retries: u32,
}

/// Go's `path.Join`: slash-separated, cleaned, no trailing slash.
fn join(parts: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in parts.iter().flat_map(|p| p.split('/')) {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The last element of a key.
fn base(key: &str) -> &str {
    key.trim_end_matches('/').rsplit('/').next().unwrap_or(key)
}

/// `--discovery-proxy` as etcd reads it: a URL, or a bare `host:port` taken as http.
pub fn parse_proxy(proxy: &str) -> Result<Option<Url>, DiscoveryError> {
    if proxy.is_empty() {
        return Ok(None);
    }
    match Url::parse(proxy) {
        Ok(u) if u.scheme().starts_with("http") && u.host_str().is_some() => Ok(Some(u)),
        _ => Url::parse(&format!("http://{proxy}"))
            .ok()
            .filter(|u| u.host_str().is_some())
            .map(Some)
            .ok_or_else(|| DiscoveryError::Config(format!("invalid proxy address {proxy:?}"))),
    }
}

impl Discovery {
    /// `id` is this member's ID (from its advertised peer URLs, with the discovery URL as the
    /// cluster token, as etcd computes it).
    pub fn new(durl: &str, proxy: Option<Url>, id: u64) -> Result<Discovery, DiscoveryError> {
        // etcd takes any string and then retries forever against an endpoint that cannot
        // exist; refusing it at once is kinder.
        let unusable = || {
            DiscoveryError::Config(format!(
                "discovery URL {durl:?} is not an http:// or https:// URL; give the URL of a \
                 discovery token, e.g. http://discovery.example.com:2379/v2/keys/_etcd/registry/<token>"
            ))
        };
        let url = match Url::parse(durl) {
            Ok(u) => u,
            Err(url::ParseError::RelativeUrlWithoutBase) => return Err(unusable()),
            Err(e) => return Err(DiscoveryError::Config(format!("parse {durl:?}: {e}"))),
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(unusable());
        }
        let mut endpoint = url.clone();
        endpoint.set_path("");
        endpoint.set_query(None);
        endpoint.set_fragment(None);
        let client = KeysClient::new(endpoint.clone(), proxy).map_err(DiscoveryError::Config)?;
        Ok(Discovery {
            client,
            endpoint: endpoint.as_str().trim_end_matches('/').to_string(),
            token_dir: url.path().to_string(),
            self_name: format!("{id:x}"),
            retries: 0,
        })
    }

    fn self_key(&self) -> String {
        join(&["/", &self.token_dir, &self.self_name])
    }

    /// etcd's `JoinCluster`: registers `config` (this member's `name=url` entries) and waits
    /// for the whole cluster; returns the initial cluster string.
    pub async fn join_cluster(&mut self, config: &str) -> Result<String, DiscoveryError> {
        self.check_cluster().await?;
        self.create_self(config).await?;
        let regs = self.check_cluster().await?;
        let all = self.wait_nodes(regs).await?;
        nodes_to_cluster(&all)
    }

    async fn create_self(&mut self, config: &str) -> Result<(), DiscoveryError> {
        let key = self.self_key();
        let created = match self.client.create(&key, config).await {
            Ok(r) => r,
            Err(KeysError::Etcd { code, .. }) if code == ERROR_CODE_NODE_EXIST => {
                return Err(DiscoveryError::DuplicateId);
            }
            Err(e) => return Err(e.into()),
        };
        // Waits until the registration is visible through the endpoint, as etcd does.
        self.client
            .watch_next(&key, created.node.created_index.saturating_sub(1), false)
            .await?;
        Ok(())
    }

    /// etcd's `checkCluster`, retried while the service does not answer.
    async fn check_cluster(&mut self) -> Result<Registrations, DiscoveryError> {
        loop {
            match self.check_cluster_once().await {
                Err(DiscoveryError::Keys(e @ KeysError::Unreachable(_))) => {
                    tracing::error!(
                        plain = %e.detail(),
                        discovery_url = %self.endpoint,
                        error = %e,
                        "failed to get from discovery server"
                    );
                    self.back_off("cluster status check").await;
                }
                other => return other,
            }
        }
    }

    async fn check_cluster_once(&self) -> Result<Registrations, DiscoveryError> {
        let config_key = join(&["/", &self.token_dir, "_config"]);
        let size_key = join(&[&config_key, "size"]);
        let resp = self.client.get(&size_key).await?;
        let size: u64 = resp
            .node
            .value
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or(DiscoveryError::BadSizeKey)?;

        let listing: KeysResponse = self.client.get(&self.token_dir).await?;
        let mut nodes: Vec<Node> = listing
            .node
            .nodes
            .clone()
            .into_iter()
            .filter(|n| base(&n.key) != base(&config_key))
            .collect();
        nodes.sort_by_key(|n| n.created_index);
        // This member must be among the first `size` registered.
        let self_name = &self.self_name;
        for (i, n) in nodes.iter().enumerate() {
            if base(&n.key) == self_name {
                break;
            }
            if i as u64 >= size - 1 {
                nodes.truncate(size as usize);
                return Err(DiscoveryError::FullCluster);
            }
        }
        Ok(Registrations {
            nodes,
            dir_key: join(&[&listing.node.key]),
            size,
            index: listing.index,
        })
    }

    async fn back_off(&mut self, step: &str) {
        self.retries += 1;
        let secs = 1u64 << self.retries.min(MAX_BACKOFF_EXPONENT);
        tracing::info!(
            plain = %format!("{step}: error connecting to {}, retrying in {secs}s", self.endpoint),
            url = %self.endpoint,
            reason = step,
            backoff = %format!("{secs}s"),
            "retry connecting to discovery service"
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    /// etcd's `waitNodes`: watches the token until `size` members registered.
    async fn wait_nodes(&mut self, mut regs: Registrations) -> Result<Vec<Node>, DiscoveryError> {
        'restart: loop {
            regs.nodes.truncate(regs.size as usize);
            for n in &regs.nodes {
                if base(&n.key) == self.self_name {
                    tracing::info!(
                        plain = %format!("found self {} in the cluster", self.self_name),
                        discovery_url = %self.endpoint,
                        self_id = %self.self_name,
                        "found self from discovery server"
                    );
                } else {
                    tracing::info!(
                        plain = %format!("found peer {} in the cluster", base(&n.key)),
                        discovery_url = %self.endpoint,
                        peer = base(&n.key),
                        "found peer from discovery server"
                    );
                }
            }
            let mut after = regs.index;
            while (regs.nodes.len() as u64) < regs.size {
                let missing = regs.size - regs.nodes.len() as u64;
                tracing::info!(
                    plain = %format!(
                        "found {} peer(s), waiting for {missing} more",
                        regs.nodes.len()
                    ),
                    discovery_url = %self.endpoint,
                    found_peers = regs.nodes.len(),
                    needed_peers = missing,
                    "found peers from discovery server; waiting for more"
                );
                let event = match self.client.watch_next(&self.token_dir, after, true).await {
                    Ok(ev) => ev,
                    Err(e @ KeysError::Unreachable(_)) => {
                        tracing::error!(plain = %e.detail(), error = %e, "discovery watch failed");
                        self.back_off("waiting for other nodes").await;
                        regs = self.check_cluster().await?;
                        continue 'restart;
                    }
                    Err(e) => return Err(e.into()),
                };
                after = event.node.modified_index.max(after + 1);
                // Only a new registration directly under the token counts (etcd also counted
                // any change under it, such as an edit of _config/size).
                let registered = matches!(event.action.as_str(), "create" | "set")
                    && join(&[&regs.dir_key, base(&event.node.key)]) == join(&[&event.node.key])
                    && base(&event.node.key) != "_config"
                    && !regs.nodes.iter().any(|n| n.key == event.node.key);
                if !registered {
                    continue;
                }
                tracing::info!(
                    plain = %format!("found peer {} in the cluster", base(&event.node.key)),
                    discovery_url = %self.endpoint,
                    peer = base(&event.node.key),
                    "found peer from discovery server"
                );
                regs.nodes.push(event.node);
            }
            tracing::info!(
                plain = %format!("found {} needed peer(s)", regs.nodes.len()),
                discovery_url = %self.endpoint,
                found_peers = regs.nodes.len(),
                "found all needed peers from discovery server"
            );
            return Ok(regs.nodes);
        }
    }
}

/// etcd's `nodesToCluster`: the registrations' entries joined; each name once.
fn nodes_to_cluster(nodes: &[Node]) -> Result<String, DiscoveryError> {
    let joined = nodes
        .iter()
        .map(|n| n.value.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut names = std::collections::BTreeSet::new();
    for entry in joined.split(',').filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').ok_or(DiscoveryError::InvalidUrl)?;
        Url::parse(url).map_err(|_| DiscoveryError::InvalidUrl)?;
        names.insert(name);
    }
    if names.len() != nodes.len() {
        return Err(DiscoveryError::DuplicateName);
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(key: &str, value: &str) -> Node {
        Node {
            key: key.into(),
            value: value.into(),
            ..Node::default()
        }
    }

    #[test]
    fn paths_join_as_go() {
        assert_eq!(
            join(&["/", "/v2/keys/_etcd/registry/t", "_config"]),
            "/v2/keys/_etcd/registry/t/_config"
        );
        assert_eq!(join(&["/", "/a/b/", "ff"]), "/a/b/ff");
        assert_eq!(base("/a/b/ff"), "ff");
    }

    #[test]
    fn cluster_from_registrations() {
        let nodes = [
            node("/t/1", "a=http://10.0.0.1:2380"),
            node("/t/2", "b=http://10.0.0.2:2380"),
        ];
        assert_eq!(
            nodes_to_cluster(&nodes).unwrap(),
            "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380"
        );
        let dup = [
            node("/t/1", "a=http://10.0.0.1:2380"),
            node("/t/2", "a=http://10.0.0.2:2380"),
        ];
        assert!(matches!(
            nodes_to_cluster(&dup),
            Err(DiscoveryError::DuplicateName)
        ));
        let bad = [node("/t/1", "no-url-here")];
        assert!(matches!(
            nodes_to_cluster(&bad),
            Err(DiscoveryError::InvalidUrl)
        ));
    }

    #[test]
    fn proxy_flag_as_etcd_reads_it() {
        assert_eq!(parse_proxy("").unwrap(), None);
        assert_eq!(
            parse_proxy("10.0.0.1:3128").unwrap().unwrap().as_str(),
            "http://10.0.0.1:3128/"
        );
        assert_eq!(
            parse_proxy("http://proxy:8080").unwrap().unwrap().as_str(),
            "http://proxy:8080/"
        );
    }

    #[test]
    fn a_url_without_scheme_is_refused() {
        let e = Discovery::new("foo", None, 1).err().unwrap().to_string();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        assert!(Discovery::new("http://127.0.0.1:1/v2/keys/t", None, 1).is_ok());
    }
}
