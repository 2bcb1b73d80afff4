//! The Cluster service: member list and membership changes. Adds, removes and promotions are
//! Raft configuration changes; updates of peer URLs are ordinary proposals.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use etcd_api::etcdserverpb::cluster_server::Cluster;
use etcd_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use etcd_api::internalpb::{MemberPeerUrls, MemberRecord, internal_request::Request};
use raft::prelude::ConfChangeType;
use tonic::{Response, Status};

use super::access;
use crate::error::ServerError;
use crate::membership::{member_id, record_to_wire, url_string};
use crate::server::EtcdServer;

/// etcd 3.4 allows one learner at a time.
const LEARNERS_MAX: usize = 1;

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

/// Parses and normalises peer URLs as etcd does (`http`/`https`/`unix`/`unixs`, host and
/// port, no path).
fn parse_peer_urls(urls: &[String]) -> Result<Vec<String>, ServerError> {
    if urls.is_empty() {
        return Err(ServerError::MemberBadUrls);
    }
    let mut parsed = Vec::with_capacity(urls.len());
    for raw in urls {
        let url = url::Url::parse(raw).map_err(|_| ServerError::MemberBadUrls)?;
        let scheme_ok = matches!(url.scheme(), "http" | "https" | "unix" | "unixs");
        if !scheme_ok || url.host_str().is_none() || !matches!(url.path(), "" | "/") {
            return Err(ServerError::MemberBadUrls);
        }
        parsed.push(url_string(&url));
    }
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

/// Fails when another member (not `except`) already has one of these peer URLs.
fn check_urls_unused(server: &EtcdServer, urls: &[String], except: u64) -> Result<(), ServerError> {
    let state = server.cluster_state();
    let taken = state
        .membership
        .members
        .values()
        .filter(|m| m.id != except)
        .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)));
    if taken {
        return Err(ServerError::PeerUrlExists);
    }
    Ok(())
}

/// Adds a member (a Raft configuration change) and returns it; shared by the v3 Cluster
/// service and the v2 members API, which check who asks themselves.
pub(crate) async fn add_member(
    server: &EtcdServer,
    peer_urls: &[String],
    is_learner: bool,
) -> Result<MemberRecord, ServerError> {
    let peer_urls = parse_peer_urls(peer_urls)?;
    check_urls_unused(server, &peer_urls, 0)?;
    let state = server.cluster_state();
    if is_learner && state.learners.len() >= LEARNERS_MAX {
        return Err(ServerError::TooManyLearners);
    }
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let id = member_id(
        &peer_urls,
        &server.cfg.initial_cluster_token,
        Some(now_secs),
    );
    if state.membership.members.contains_key(&id) {
        return Err(ServerError::MemberExists);
    }
    // etcd's ErrIDRemoved, which its gRPC layer answers as "member not found". The ID is
    // hashed from the peer URLs and the second: the same URLs re-added within the second
    // their removed member was added in come out the same.
    if state.membership.removed.contains(&id) {
        return Err(ServerError::MemberNotFound);
    }
    let record = MemberRecord {
        id,
        name: String::new(),
        peer_urls,
        client_urls: Vec::new(),
        is_learner,
    };
    let change = if is_learner {
        ConfChangeType::AddLearnerNode
    } else {
        ConfChangeType::AddNode
    };
    server.propose_conf_change(change, &record).await?;
    Ok(record)
}

/// Removes a member (a Raft configuration change).
pub(crate) async fn remove_member(server: &EtcdServer, id: u64) -> Result<(), ServerError> {
    let record = server
        .cluster_state()
        .membership
        .members
        .get(&id)
        .cloned()
        .ok_or(ServerError::MemberNotFound)?;
    server
        .propose_conf_change(ConfChangeType::RemoveNode, &record)
        .await?;
    Ok(())
}

/// Gives a member new peer URLs (an ordinary proposal).
pub(crate) async fn update_member(
    server: &EtcdServer,
    id: u64,
    peer_urls: &[String],
) -> Result<(), ServerError> {
    let peer_urls = parse_peer_urls(peer_urls)?;
    if !server.cluster_state().membership.members.contains_key(&id) {
        return Err(ServerError::MemberNotFound);
    }
    check_urls_unused(server, &peer_urls, id)?;
    server
        .propose(Request::MemberPeerUrls(MemberPeerUrls {
            member_id: id,
            peer_urls,
        }))
        .await?;
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: tonic::Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        // Membership changes are for admins (the root role) once auth is on, as etcd.
        access::require_admin(&self.server, &(&request).into())?;
        let req = request.into_inner();
        let record = add_member(&self.server, &req.peer_ur_ls, req.is_learner).await?;
        let members = self.server.cluster_state().membership.to_wire();
        Ok(Response::new(MemberAddResponse {
            header: self.server.header(0),
            member: Some(record_to_wire(&record)),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: tonic::Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        // Membership changes are for admins (the root role) once auth is on, as etcd.
        access::require_admin(&self.server, &(&request).into())?;
        remove_member(&self.server, request.into_inner().id).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.server.header(0),
            members: self.server.cluster_state().membership.to_wire(),
        }))
    }

    async fn member_update(
        &self,
        request: tonic::Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        // Membership changes are for admins (the root role) once auth is on, as etcd.
        access::require_admin(&self.server, &(&request).into())?;
        let req = request.into_inner();
        update_member(&self.server, req.id, &req.peer_ur_ls).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.server.header(0),
            members: self.server.cluster_state().membership.to_wire(),
        }))
    }

    async fn member_list(
        &self,
        request: tonic::Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.server.linearizable_barrier().await?;
        }
        let state = self.server.cluster_state();
        Ok(Response::new(MemberListResponse {
            header: self.server.header(0),
            members: state.membership.to_wire(),
        }))
    }

    async fn member_promote(
        &self,
        request: tonic::Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        // Membership changes are for admins (the root role) once auth is on, as etcd.
        access::require_admin(&self.server, &(&request).into())?;
        let resp = self.server.member_promote(request.into_inner().id).await?;
        Ok(Response::new(resp))
    }
}
