//! The Lease service. Grant and revoke go through Raft; keep-alive and time-to-live are
//! answered by the leader, which alone keeps deadlines (a follower forwards them).

use std::sync::Arc;

use etcd_api::etcdserverpb::lease_server::Lease;
use etcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use etcd_api::internalpb::internal_request::Request;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Response, Status, Streaming};

use super::access;
use super::kv::unexpected;
use crate::apply::ApplyResponse;
use crate::error::ServerError;
use crate::lease::MAX_LEASE_TTL_SECS;
use crate::server::EtcdServer;

/// Keep-alive answers buffered per stream before the stream stops reading requests.
const KEEPALIVE_RESPONSES_BUFFERED: usize = 16;
/// Renewals of one stream under way at once.
const KEEPALIVES_IN_FLIGHT_MAX: usize = 64;

/// One keep-alive's answer.
async fn renew(server: Arc<EtcdServer>, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    match server.lease_renew(id).await {
        Ok(ttl) => Ok(LeaseKeepAliveResponse {
            header: server.current_header(),
            id,
            ttl,
        }),
        // etcd answers a keep-alive for an unknown lease with TTL 0, not an error.
        Err(ServerError::LeaseNotFound) => Ok(LeaseKeepAliveResponse {
            header: server.current_header(),
            id,
            ttl: 0,
        }),
        Err(e) => Err(Status::from(e)),
    }
}

pub struct LeaseService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: tonic::Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL_SECS {
            return Err(ServerError::LeaseTtlTooLarge.into());
        }
        if req.id == 0 {
            // IDs are chosen by the member that proposes, before Raft, so every member
            // applies the same one.
            req.id = self.server.next_lease_id();
        }
        let applied = self.server.propose(Request::LeaseGrant(req)).await?;
        match applied.response {
            ApplyResponse::LeaseGrant(mut resp) => {
                resp.header = self.server.header(applied.revision);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(
        &self,
        request: tonic::Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        access::check(&self.server, &caller, |a| {
            a.lease_revoke(&access::lease_keys(&self.server)(req.id))
        })?;
        let applied = self
            .server
            .propose_as(Request::LeaseRevoke(req), caller.request_auth())
            .await?;
        Ok(Response::new(LeaseRevokeResponse {
            header: self.server.header(applied.revision),
        }))
    }

    async fn lease_keep_alive(
        &self,
        request: tonic::Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<BoxStream<LeaseKeepAliveResponse>>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_RESPONSES_BUFFERED);
        let server = self.server.clone();
        tokio::spawn(async move {
            // Several renewals of a stream at once, answered in order: on a follower each is
            // a round trip to the leader, and one at a time a stream renewed no faster than
            // one lease per round trip.
            let mut in_flight = futures::stream::FuturesOrdered::new();
            let mut requests_done = false;
            loop {
                tokio::select! {
                    req = requests.next(),
                        if !requests_done && in_flight.len() < KEEPALIVES_IN_FLIGHT_MAX =>
                    {
                        match req {
                            // On the leader a renewal is answered at once: with nothing ahead
                            // of it, it goes straight out, without the queue's overhead.
                            Some(Ok(req))
                                if in_flight.is_empty() && server.leader() == server.member_id =>
                            {
                                let resp = renew(server.clone(), req.id).await;
                                let stop = resp.is_err();
                                if tx.send(resp).await.is_err() || stop {
                                    break;
                                }
                            }
                            Some(Ok(req)) => in_flight.push_back(renew(server.clone(), req.id)),
                            _ => requests_done = true,
                        }
                    }
                    Some(resp) = in_flight.next(), if !in_flight.is_empty() => {
                        let stop = resp.is_err();
                        if tx.send(resp).await.is_err() || stop {
                            break;
                        }
                    }
                    else => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: tonic::Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let resp = self.server.lease_time_to_live(request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: tonic::Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.server.linearizable_barrier().await?;
        let leases = self
            .server
            .lessor
            .lock()
            .ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: self.server.current_header(),
            leases,
        }))
    }
}
