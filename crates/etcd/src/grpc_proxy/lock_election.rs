//! The Lock and Election services through the proxy, namespaced: lock and election names,
//! and the keys the member answers with, live under `--namespace` like any other key.

use std::sync::Arc;

use etcd_api::v3electionpb::election_client::ElectionClient;
use etcd_api::v3electionpb::election_server::Election;
use etcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use etcd_api::v3lockpb::lock_client::LockClient;
use etcd_api::v3lockpb::lock_server::Lock;
use etcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tokio_stream::StreamExt;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::namespace::Namespace;
use super::upstream::{Upstream, outgoing, upstream_call};

pub struct LockProxy {
    pub upstream: Arc<Upstream>,
    pub namespace: Namespace,
}

#[tonic::async_trait]
impl Lock for LockProxy {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let (metadata, _, mut lock) = request.into_parts();
        lock.name = self.namespace.key(&lock.name);
        let result = upstream_call!(self.upstream, LockClient, lock(outgoing(&metadata, lock)));
        let mut answer = result?.into_inner();
        self.namespace.strip(&mut answer.key);
        Ok(Response::new(answer))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let (metadata, _, mut unlock) = request.into_parts();
        unlock.key = self.namespace.key(&unlock.key);
        upstream_call!(
            self.upstream,
            LockClient,
            unlock(outgoing(&metadata, unlock))
        )
    }
}

pub struct ElectionProxy {
    pub upstream: Arc<Upstream>,
    pub namespace: Namespace,
}

#[tonic::async_trait]
impl Election for ElectionProxy {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let (metadata, _, mut campaign) = request.into_parts();
        campaign.name = self.namespace.key(&campaign.name);
        let result = upstream_call!(
            self.upstream,
            ElectionClient,
            campaign(outgoing(&metadata, campaign))
        );
        let mut answer = result?.into_inner();
        self.namespace.leader_key_in(answer.leader.as_mut());
        Ok(Response::new(answer))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let (metadata, _, mut proclaim) = request.into_parts();
        self.namespace.leader_key_out(proclaim.leader.as_mut());
        upstream_call!(
            self.upstream,
            ElectionClient,
            proclaim(outgoing(&metadata, proclaim))
        )
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let (metadata, _, mut leader) = request.into_parts();
        leader.name = self.namespace.key(&leader.name);
        let result = upstream_call!(
            self.upstream,
            ElectionClient,
            leader(outgoing(&metadata, leader))
        );
        let mut answer = result?.into_inner();
        self.namespace.kv(answer.kv.as_mut());
        Ok(Response::new(answer))
    }

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<BoxStream<LeaderResponse>>, Status> {
        let (metadata, _, mut leader) = request.into_parts();
        leader.name = self.namespace.key(&leader.name);
        let result = upstream_call!(
            self.upstream,
            ElectionClient,
            observe(outgoing(&metadata, leader))
        );
        let namespace = self.namespace.clone();
        let stream = result?.into_inner().map(move |answer| {
            answer.map(|mut a| {
                namespace.kv(a.kv.as_mut());
                a
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let (metadata, _, mut resign) = request.into_parts();
        self.namespace.leader_key_out(resign.leader.as_mut());
        upstream_call!(
            self.upstream,
            ElectionClient,
            resign(outgoing(&metadata, resign))
        )
    }
}
