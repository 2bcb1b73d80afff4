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

impl ClusterService {
    fn check_urls_unused(&self, urls: &[String], except: u64) -> Result<(), ServerError> {
        let state = self.server.cluster_state();
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
        let peer_urls = parse_peer_urls(&req.peer_ur_ls)?;
        self.check_urls_unused(&peer_urls, 0)?;
        let state = self.server.cluster_state();
        if req.is_learner && state.learners.len() >= LEARNERS_MAX {
            return Err(ServerError::TooManyLearners.into());
        }
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = member_id(
            &peer_urls,
            &self.server.cfg.initial_cluster_token,
            Some(now_secs),
        );
        if state.membership.members.contains_key(&id) {
            return Err(ServerError::MemberExists.into());
        }
        let record = MemberRecord {
            id,
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner: req.is_learner,
        };
        let change = if req.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        self.server.propose_conf_change(change, &record).await?;
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
        let id = request.into_inner().id;
        let record = self
            .server
            .cluster_state()
            .membership
            .members
            .get(&id)
            .cloned()
            .ok_or(ServerError::MemberNotFound)?;
        self.server
            .propose_conf_change(ConfChangeType::RemoveNode, &record)
            .await?;
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
        let peer_urls = parse_peer_urls(&req.peer_ur_ls)?;
        if !self
            .server
            .cluster_state()
            .membership
            .members
            .contains_key(&req.id)
        {
            return Err(ServerError::MemberNotFound.into());
        }
        self.check_urls_unused(&peer_urls, req.id)?;
        self.server
            .propose(Request::MemberPeerUrls(MemberPeerUrls {
                member_id: req.id,
                peer_urls,
            }))
            .await?;
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
