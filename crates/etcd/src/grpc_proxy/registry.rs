//! `--resolver-prefix`: proxies register themselves in the cluster so clients can find them,
//! and `MemberList` through a proxy names the proxies rather than the members (etcd's design:
//! a client that syncs its endpoints through a proxy keeps talking to proxies).
//!
//! A proxy's entry is `<prefix>/<advertise-client-url>` with etcd's endpoint JSON
//! (`{"Op":0,"Addr":"...","Metadata":"{\"name\":\"<hostname>\"}"}`) under a lease of
//! `--resolver-ttl` seconds, kept alive while the proxy runs and made again after a failure.

use std::sync::Arc;
use std::time::Duration;

use etcd_api::etcdserverpb::cluster_client::ClusterClient;
use etcd_api::etcdserverpb::cluster_server::Cluster;
use etcd_api::etcdserverpb::kv_client::KvClient;
use etcd_api::etcdserverpb::lease_client::LeaseClient;
use etcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, Member, MemberAddRequest, MemberAddResponse,
    MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    PutRequest, RangeRequest,
};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use super::upstream::{Upstream, outgoing, upstream_call, upstream_client};
use etcd_client::prefix_end;

/// etcd's endpoint update, as its naming package stores it.
#[derive(Serialize, Deserialize)]
struct EndpointUpdate {
    #[serde(rename = "Op")]
    op: u8,
    #[serde(rename = "Addr")]
    addr: String,
    #[serde(rename = "Metadata", default)]
    metadata: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct EndpointMeta {
    name: String,
}

/// This machine's name, as Go's `os.Hostname` finds it on Linux.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn entry_value(addr: &str) -> String {
    let meta = serde_json::to_string(&EndpointMeta { name: hostname() })
        .expect("a struct of strings serialises");
    serde_json::to_string(&EndpointUpdate {
        op: 0,
        addr: addr.to_string(),
        metadata: serde_json::Value::String(meta),
    })
    .expect("a struct of strings serialises")
}

/// Keeps this proxy registered under `prefix` for as long as the proxy runs.
pub async fn register(upstream: Arc<Upstream>, prefix: String, addr: String, ttl: i64) {
    loop {
        match register_once(&upstream, &prefix, &addr, ttl).await {
            Ok(()) => tracing::warn!(
                hint = "the proxy registers itself again; if this repeats, check the members",
                "session expired; possible network partition or server restart"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                hint = "the proxy retries every second; check that --endpoints reach the cluster",
                "failed to create a session"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Registers once and keeps the lease alive until that fails.
async fn register_once(
    upstream: &Upstream,
    prefix: &str,
    addr: &str,
    ttl: i64,
) -> Result<(), Status> {
    let (at, mut leases) = upstream_client!(upstream, LeaseClient);
    let granted = leases.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await;
    upstream.observe(at, &granted);
    let lease = granted?.into_inner().id;
    let entry = PutRequest {
        key: format!("{prefix}/{addr}").into_bytes(),
        value: entry_value(addr).into_bytes(),
        lease,
        ..PutRequest::default()
    };
    upstream_call!(upstream, KvClient, put(entry))?;
    tracing::info!(
        address = addr,
        ttl,
        "registered {addr:?} with {ttl}-second lease"
    );
    let (requests, outgoing_requests) = tokio::sync::mpsc::channel(1);
    let mut answers = leases
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(
            outgoing_requests,
        ))
        .await?
        .into_inner();
    let every = Duration::from_millis((ttl.max(1) as u64 * 1000) / 3);
    loop {
        if requests
            .send(LeaseKeepAliveRequest { id: lease })
            .await
            .is_err()
        {
            return Ok(());
        }
        match answers.message().await? {
            Some(answer) if answer.ttl > 0 => {}
            _ => return Ok(()),
        }
        tokio::time::sleep(every).await;
    }
}

pub struct ClusterProxy {
    pub upstream: Arc<Upstream>,
    /// `--advertise-client-url` (etcd's default is 127.0.0.1:23790): when set, MemberList
    /// answers with the proxies, not the members.
    pub advertise: Option<String>,
    pub resolver_prefix: Option<String>,
}

impl ClusterProxy {
    /// The proxies registered under the resolver prefix.
    async fn registered(&self, prefix: &str) -> Vec<Member> {
        let key = format!("{prefix}/").into_bytes();
        let range_end = prefix_end(&key);
        let request = RangeRequest {
            key,
            range_end,
            serializable: true,
            ..RangeRequest::default()
        };
        let answer = upstream_call!(self.upstream, KvClient, range(request));
        let Ok(answer) = answer else {
            return Vec::new();
        };
        let mut members: Vec<Member> = answer
            .into_inner()
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<EndpointUpdate>(&kv.value).ok())
            .filter(|update| update.op == 0)
            .map(|update| {
                let name = update
                    .metadata
                    .as_str()
                    .and_then(|m| serde_json::from_str::<EndpointMeta>(m).ok())
                    .map(|m| m.name)
                    .unwrap_or_default();
                Member {
                    name,
                    client_ur_ls: vec![update.addr],
                    ..Member::default()
                }
            })
            .collect();
        members.sort_by(|a, b| a.client_ur_ls.cmp(&b.client_ur_ls));
        members
    }
}

#[tonic::async_trait]
impl Cluster for ClusterProxy {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let (metadata, _, add) = request.into_parts();
        upstream_call!(
            self.upstream,
            ClusterClient,
            member_add(outgoing(&metadata, add))
        )
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let (metadata, _, remove) = request.into_parts();
        upstream_call!(
            self.upstream,
            ClusterClient,
            member_remove(outgoing(&metadata, remove))
        )
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let (metadata, _, update) = request.into_parts();
        upstream_call!(
            self.upstream,
            ClusterClient,
            member_update(outgoing(&metadata, update))
        )
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if let Some(advertise) = &self.advertise {
            if let Some(prefix) = &self.resolver_prefix {
                let members = self.registered(prefix).await;
                if !members.is_empty() {
                    return Ok(Response::new(MemberListResponse {
                        members,
                        ..MemberListResponse::default()
                    }));
                }
            }
            return Ok(Response::new(MemberListResponse {
                members: vec![Member {
                    name: hostname(),
                    client_ur_ls: vec![advertise.clone()],
                    ..Member::default()
                }],
                ..MemberListResponse::default()
            }));
        }
        let (metadata, _, list) = request.into_parts();
        upstream_call!(
            self.upstream,
            ClusterClient,
            member_list(outgoing(&metadata, list))
        )
    }

    /// etcd 3.4's proxy answers "not implemented"; promoting through a proxy is as safe as
    /// through a member, so it is forwarded.
    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let (metadata, _, promote) = request.into_parts();
        upstream_call!(
            self.upstream,
            ClusterClient,
            member_promote(outgoing(&metadata, promote))
        )
    }
}
