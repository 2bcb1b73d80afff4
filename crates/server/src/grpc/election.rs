//! The Election service: campaign, proclaim, leader, observe, resign, on the contender queue
//! of `lock.rs`.

use std::sync::Arc;

use etcd_api::etcdserverpb::TxnRequest;
use etcd_api::v3electionpb::election_server::Election;
use etcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Code, Response, Status};

use super::access;
use super::lock::{
    QueueGuard, contender_key, create_revision_is, delete_op, enqueue, first_contender, put_op,
    txn, wait_until_first,
};
use crate::error::ServerError;
use crate::server::EtcdServer;

/// Leader changes buffered per Observe stream; a slow observer misses intermediate leaders
/// (it always gets the latest), as with etcd.
const OBSERVE_BUFFERED: usize = 8;

fn not_leader() -> Status {
    Status::new(Code::Unknown, "election: not leader")
}

fn no_leader() -> Status {
    Status::new(Code::Unknown, "election: no leader")
}

fn missing_leader_key() -> Status {
    Status::new(Code::Unknown, "\"leader\" field must be provided")
}

pub struct ElectionService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: tonic::Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        let key = contender_key(&req.name, req.lease);
        // The election's keys are written and read in the caller's name.
        access::check(&self.server, &caller, |a| {
            a.prefix(&req.name, true)?;
            a.prefix(&req.name, false)
        })?;
        let mut mine = enqueue(&self.server, &key, &req.value, req.lease).await?;
        if mine.value != req.value {
            // Campaigning again with a key we already hold: take the new value, as etcd.
            let resp = txn(
                &self.server,
                TxnRequest {
                    compare: vec![create_revision_is(&key, mine.create_revision)],
                    success: vec![put_op(&key, &req.value, req.lease)],
                    failure: vec![],
                },
            )
            .await?;
            if !resp.succeeded {
                return Err(not_leader());
            }
            mine.value = req.value.clone();
        }
        let guard = QueueGuard::new(&self.server, &mine);
        wait_until_first(&self.server, &req.name, &mine).await?;
        guard.disarm();
        Ok(Response::new(CampaignResponse {
            header: self.server.current_header(),
            leader: Some(LeaderKey {
                name: req.name,
                key,
                rev: mine.create_revision,
                lease: req.lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: tonic::Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(missing_leader_key)?;
        access::check(&self.server, &caller, |a| a.delete_key(&leader.key))?;
        let resp = txn(
            &self.server,
            TxnRequest {
                compare: vec![create_revision_is(&leader.key, leader.rev)],
                success: vec![put_op(&leader.key, &req.value, leader.lease)],
                failure: vec![],
            },
        )
        .await?;
        if !resp.succeeded {
            return Err(not_leader());
        }
        Ok(Response::new(ProclaimResponse {
            header: resp.header,
        }))
    }

    async fn leader(
        &self,
        request: tonic::Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let name = request.into_inner().name;
        access::check(&self.server, &caller, |a| a.prefix(&name, false))?;
        let kv = first_contender(&self.server, &name)
            .await?
            .ok_or_else(no_leader)?;
        Ok(Response::new(LeaderResponse {
            header: self.server.current_header(),
            kv: Some(kv),
        }))
    }

    async fn observe(
        &self,
        request: tonic::Request<LeaderRequest>,
    ) -> Result<Response<BoxStream<LeaderResponse>>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let name = request.into_inner().name;
        access::check(&self.server, &caller, |a| a.prefix(&name, false))?;
        let server = self.server.clone();
        let (tx, rx) = mpsc::channel(OBSERVE_BUFFERED);
        server.linearizable_barrier().await?;
        tokio::spawn(async move {
            let mut applied = server.applied_rx.clone();
            let mut last_sent: Option<(Vec<u8>, i64)> = None;
            loop {
                applied.borrow_and_update();
                let current = match first_contender(&server, &name).await {
                    Ok(kv) => kv,
                    Err(ServerError::Stopped) => return,
                    // A transient error (no leader): look again on the next apply.
                    Err(_) => None,
                };
                if let Some(kv) = current {
                    let seen = (kv.key.clone(), kv.mod_revision);
                    if last_sent.as_ref() != Some(&seen) {
                        let resp = LeaderResponse {
                            header: server.current_header(),
                            kv: Some(kv),
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                        last_sent = Some(seen);
                    }
                }
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: tonic::Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let caller = access::caller(&self.server, &(&request).into())?;
        let leader = request.into_inner().leader.ok_or_else(missing_leader_key)?;
        access::check(&self.server, &caller, |a| a.delete_key(&leader.key))?;
        let resp = txn(
            &self.server,
            TxnRequest {
                compare: vec![create_revision_is(&leader.key, leader.rev)],
                success: vec![delete_op(&leader.key)],
                failure: vec![],
            },
        )
        .await?;
        Ok(Response::new(ResignResponse {
            header: resp.header,
        }))
    }
}
