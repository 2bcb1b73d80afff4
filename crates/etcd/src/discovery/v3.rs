//! etcd 3.6's v3 discovery (`--discovery-token`, `--discovery-endpoints`, ...): a v3 etcd
//! cluster (ours or etcd's) holds, for each token,
//! - `/_etcd/registry/<token>/_config/size`: how many members the cluster has;
//! - `/_etcd/registry/<token>/members/<member id in hex>`: each member's `name=peer-url`
//!   entries, put by the member itself.
//!
//! The first `size` registrations by create revision are the cluster; a member not among them
//! finds it full. A member waits for the others with a watch on the members prefix. A service
//! that does not answer is asked again with a growing pause (2 s ... 256 s), logging each
//! attempt, as etcd does; a missing or bad size fails at once.

use std::time::Duration;

use etcd_api::etcdserverpb::watch_request::RequestUnion;
use etcd_api::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest, WatchRequest};
use etcd_client::{Client, ConnectOptions, Credentials};
use etcd_transport::TlsInfo;
use tokio_stream::StreamExt;

use crate::config::V3Discovery;

const REGISTRY: &str = "/_etcd/registry";
/// The longest pause between two attempts: 2^8 seconds, as etcd's.
const MAX_BACKOFF_EXPONENT: u32 = 8;

/// etcd 3.6's v3 discovery errors, with its messages.
#[derive(Debug, thiserror::Error)]
pub enum V3DiscoveryError {
    #[error("discovery: invalid peer URL")]
    InvalidUrl,
    #[error("discovery: size key is bad")]
    BadSizeKey,
    #[error("discovery: size key not found")]
    SizeNotFound,
    #[error("discovery: cluster is full")]
    FullCluster,
    /// The settings cannot be used (TLS files, endpoints).
    #[error("{0}")]
    Config(String),
}

/// One registration: its key, its `name=url` entries, and when it was made.
#[derive(Clone, Debug)]
struct Registration {
    key: String,
    entries: String,
    create_revision: i64,
}

pub struct Discovery {
    client: Client,
    request_timeout: Duration,
    token: String,
    self_key: String,
    retries: u32,
}

enum Step<T> {
    Done(T),
    /// The service did not answer: try again after a pause.
    Retry(String),
}

impl Discovery {
    /// Connects to the discovery cluster. `id` is this member's ID (computed with the token as
    /// the cluster token, as etcd 3.6 does).
    pub async fn connect(cfg: &V3Discovery, id: u64) -> Result<Discovery, V3DiscoveryError> {
        let token = cfg
            .token
            .clone()
            .ok_or_else(|| V3DiscoveryError::Config("--discovery-token is not set".into()))?;
        let secure = !cfg.insecure_transport
            || cfg.cert.is_some()
            || cfg.cacert.is_some()
            || cfg.insecure_skip_tls_verify;
        let endpoints: Vec<String> = cfg
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else if secure {
                    format!("https://{e}")
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let tls = if secure || endpoints.iter().any(|e| e.starts_with("https://")) {
            let info = TlsInfo {
                cert_file: cfg.cert.clone(),
                key_file: cfg.key.clone(),
                trusted_ca_file: cfg.cacert.clone(),
                insecure_skip_verify: cfg.insecure_skip_tls_verify,
                ..TlsInfo::default()
            };
            Some(
                info.client_config(&[etcd_transport::ALPN_H2])
                    .map_err(|e| {
                        V3DiscoveryError::Config(format!("--discovery-cert/key/cacert: {e}"))
                    })?,
            )
        } else {
            None
        };
        let options = ConnectOptions {
            tls,
            dial_timeout: cfg.dial_timeout,
            request_timeout: None,
            keepalive_interval: Some(cfg.keepalive_time),
            keepalive_timeout: Some(cfg.keepalive_timeout),
        };
        let credentials = match (&cfg.user, &cfg.password) {
            (Some(user), Some(password)) => Some(Credentials {
                user: user.clone(),
                password: password.clone(),
            }),
            (Some(spec), None) => Some(Credentials::parse(spec).ok_or_else(|| {
                V3DiscoveryError::Config(
                    "--discovery-user needs a password: name:password, or --discovery-password"
                        .into(),
                )
            })?),
            _ => None,
        };
        // A service that does not answer yet is waited for, like any other failure to reach it.
        let mut retries = 0;
        let client = loop {
            let connected = match &credentials {
                Some(c) => Client::connect_as(&endpoints, options.clone(), c.clone()).await,
                None => Client::connect(&endpoints, options.clone()).await,
            };
            match connected {
                Ok(client) => break client,
                Err(e @ etcd_client::ClientError::Connect { .. }) => {
                    retries += 1;
                    pause(retries, "connect", &e.to_string()).await;
                }
                Err(e) => {
                    return Err(V3DiscoveryError::Config(format!(
                        "discovery service at {}: {e}",
                        endpoints.join(",")
                    )));
                }
            }
        };
        Ok(Discovery {
            client,
            request_timeout: cfg.request_timeout,
            self_key: format!("{REGISTRY}/{token}/members/{id:x}"),
            token,
            retries: 0,
        })
    }

    fn size_key(&self) -> String {
        format!("{REGISTRY}/{}/_config/size", self.token)
    }

    fn members_prefix(&self) -> String {
        format!("{REGISTRY}/{}/members", self.token)
    }

    /// etcd's `JoinCluster`: registers `config` and waits for the whole cluster; returns the
    /// initial cluster string.
    pub async fn join_cluster(&mut self, config: &str) -> Result<String, V3DiscoveryError> {
        self.check_cluster().await?;
        self.register_self(config).await?;
        let (mut regs, size, rev) = self.check_cluster().await?;
        while regs.len() < size {
            self.wait_peers(&mut regs, size, rev).await;
        }
        cluster_string(&regs, size)
    }

    async fn back_off(&mut self, step: &str, why: &str) {
        self.retries += 1;
        pause(self.retries, step, why).await;
    }

    async fn check_cluster(&mut self) -> Result<(Vec<Registration>, usize, i64), V3DiscoveryError> {
        loop {
            match self.check_cluster_once().await? {
                Step::Done(found) => {
                    self.retries = 0;
                    return self.find_self(found);
                }
                Step::Retry(why) => self.back_off("cluster status check", &why).await,
            }
        }
    }

    fn find_self(
        &self,
        (regs, size, rev): (Vec<Registration>, usize, i64),
    ) -> Result<(Vec<Registration>, usize, i64), V3DiscoveryError> {
        for (i, r) in regs.iter().enumerate() {
            if r.key == self.self_key {
                break;
            }
            if i + 1 >= size {
                return Err(V3DiscoveryError::FullCluster);
            }
        }
        Ok((regs, size, rev))
    }

    async fn check_cluster_once(
        &mut self,
    ) -> Result<Step<(Vec<Registration>, usize, i64)>, V3DiscoveryError> {
        let size_req = RangeRequest {
            key: self.size_key().into_bytes(),
            ..Default::default()
        };
        let resp = match tokio::time::timeout(self.request_timeout, self.client.kv.range(size_req))
            .await
        {
            Err(_) => return Ok(Step::Retry("context deadline exceeded".into())),
            Ok(Err(status)) => return Ok(Step::Retry(status.message().to_string())),
            Ok(Ok(r)) => r.into_inner(),
        };
        let Some(kv) = resp.kvs.first() else {
            return Err(V3DiscoveryError::SizeNotFound);
        };
        let size: usize = std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| *s > 0)
            .ok_or(V3DiscoveryError::BadSizeKey)? as usize;

        let prefix = self.members_prefix();
        let members_req = RangeRequest {
            range_end: etcd_client::prefix_end(prefix.as_bytes()),
            key: prefix.into_bytes(),
            ..Default::default()
        };
        let resp =
            match tokio::time::timeout(self.request_timeout, self.client.kv.range(members_req))
                .await
            {
                Err(_) => return Ok(Step::Retry("context deadline exceeded".into())),
                Ok(Err(status)) => return Ok(Step::Retry(status.message().to_string())),
                Ok(Ok(r)) => r.into_inner(),
            };
        let rev = resp.header.map(|h| h.revision).unwrap_or_default();
        let mut regs = Vec::new();
        for kv in resp.kvs {
            self.add(
                &mut regs,
                String::from_utf8_lossy(&kv.key).trim().to_string(),
                String::from_utf8_lossy(&kv.value).trim().to_string(),
                kv.create_revision,
            );
        }
        Ok(Step::Done((regs, size, rev)))
    }

    /// Adds a registration found under the members prefix, in create-revision order; one
    /// that is not `name=url` entries is skipped with a warning, as etcd does.
    fn add(&self, regs: &mut Vec<Registration>, key: String, entries: String, rev: i64) {
        if !key.starts_with(&self.members_prefix()) || !entries.contains('=') {
            tracing::warn!(
                member_key = %key,
                member_info = %entries,
                hint = "the key is skipped; delete it from the discovery cluster, or use a new token",
                "invalid peer info returned from discovery service"
            );
            return;
        }
        if regs.iter().any(|r| r.key == key) {
            return;
        }
        tracing::info!(
            plain = %format!("found peer {key} ({entries}) from the discovery service"),
            member_key = %key,
            member_info = %entries,
            "found peer from discovery service"
        );
        regs.push(Registration {
            key,
            entries,
            create_revision: rev,
        });
        regs.sort_by_key(|r| r.create_revision);
    }

    async fn register_self(&mut self, config: &str) -> Result<(), V3DiscoveryError> {
        loop {
            let req = PutRequest {
                key: self.self_key.clone().into_bytes(),
                value: config.as_bytes().to_vec(),
                ..Default::default()
            };
            let why =
                match tokio::time::timeout(self.request_timeout, self.client.kv.put(req)).await {
                    Ok(Ok(_)) => {
                        self.retries = 0;
                        tracing::info!(
                            plain = %format!("registered {} as {config}", self.self_key),
                            member_key = %self.self_key,
                            member_info = config,
                            "register member itself successfully"
                        );
                        return Ok(());
                    }
                    Ok(Err(status)) => status.message().to_string(),
                    Err(_) => "context deadline exceeded".to_string(),
                };
            self.back_off("register member itself", &why).await;
        }
    }

    /// Watches the members prefix from `rev + 1` until `size` members registered (or the
    /// watch breaks, which the caller answers by calling again).
    async fn wait_peers(&mut self, regs: &mut Vec<Registration>, size: usize, rev: i64) {
        tracing::info!(
            plain = %format!("found {} peer(s), waiting for {} more", regs.len(), size - regs.len()),
            cluster_size = size,
            found_peers = regs.len(),
            "waiting for peers from discovery service"
        );
        let prefix = self.members_prefix();
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                range_end: etcd_client::prefix_end(prefix.as_bytes()),
                key: prefix.into_bytes(),
                start_revision: rev + 1,
                ..Default::default()
            })),
        };
        let requests = tokio_stream::iter([create]).chain(tokio_stream::pending());
        let mut stream = match self.client.watch.watch(requests).await {
            Ok(s) => s.into_inner(),
            Err(status) => {
                self.back_off("waiting for other nodes", status.message())
                    .await;
                return;
            }
        };
        while regs.len() < size {
            match stream.next().await {
                Some(Ok(resp)) => {
                    for ev in resp.events {
                        if let Some(kv) = ev.kv {
                            self.add(
                                regs,
                                String::from_utf8_lossy(&kv.key).trim().to_string(),
                                String::from_utf8_lossy(&kv.value).trim().to_string(),
                                kv.create_revision,
                            );
                        }
                    }
                }
                Some(Err(status)) => {
                    self.back_off("waiting for other nodes", status.message())
                        .await;
                    return;
                }
                None => {
                    self.back_off("waiting for other nodes", "the watch ended")
                        .await;
                    return;
                }
            }
        }
        tracing::info!(
            plain = %format!("found {} needed peer(s)", regs.len()),
            cluster_size = size,
            found_peers = regs.len(),
            "found all needed peers from discovery service"
        );
    }
}

/// Waits 2^retries seconds (at most 2^8), saying why and for how long.
async fn pause(retries: u32, step: &str, why: &str) {
    let secs = 1u64 << retries.min(MAX_BACKOFF_EXPONENT);
    tracing::warn!(
        plain = %format!(
            "{step}: error connecting to the discovery service ({why}), retrying in {secs}s"
        ),
        reason = step,
        error = why,
        backoff = %format!("{secs}s"),
        "retry connecting to discovery service"
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

/// etcd's `getInitClusterStr`: the first `size` registrations' entries joined.
fn cluster_string(regs: &[Registration], size: usize) -> Result<String, V3DiscoveryError> {
    let joined = regs
        .iter()
        .take(size)
        .map(|r| r.entries.as_str())
        .collect::<Vec<_>>()
        .join(",");
    for entry in joined.split(',').filter(|e| !e.is_empty()) {
        let (_, url) = entry.split_once('=').ok_or(V3DiscoveryError::InvalidUrl)?;
        url::Url::parse(url).map_err(|_| V3DiscoveryError::InvalidUrl)?;
    }
    Ok(joined)
}
