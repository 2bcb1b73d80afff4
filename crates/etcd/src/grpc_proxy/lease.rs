//! The Lease service through the proxy, with keep-alives coalesced: however many clients keep
//! one lease alive, the member sees at most one keep-alive for it in flight, on one stream
//! shared by the whole proxy. A client's keep-alive is answered by the member's answer to a
//! keep-alive sent after the client's arrived, so the TTL it is told is never older than its
//! own request (requests arriving while one is in flight wait for the next round, which then
//! answers them all).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use etcd_api::etcdserverpb::lease_client::LeaseClient;
use etcd_api::etcdserverpb::lease_server::Lease;
use etcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::namespace::Namespace;
use super::upstream::{Upstream, outgoing, upstream_call, upstream_client};

/// Distinct leases with a keep-alive in flight on the shared stream, at most.
const MAX_LEASES_IN_FLIGHT: usize = 65_536;
/// Keep-alives one client stream may have waiting for an answer; past it, the proxy stops
/// reading that client until answers go out.
const MAX_PENDING_PER_CLIENT: usize = 1024;

type Answer = Result<LeaseKeepAliveResponse, Status>;
type Waiter = oneshot::Sender<Answer>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Round {
    /// Answered by the keep-alive in flight.
    in_flight: Vec<Waiter>,
    /// Arrived while one was in flight: answered by the next one.
    next: Vec<Waiter>,
}

#[derive(Default)]
struct HubState {
    requests: Option<mpsc::Sender<LeaseKeepAliveRequest>>,
    generation: u64,
    leases: HashMap<i64, Round>,
}

pub struct KeepAliveHub {
    upstream: Arc<Upstream>,
    state: Mutex<HubState>,
}

impl KeepAliveHub {
    pub fn new(upstream: Arc<Upstream>) -> Arc<KeepAliveHub> {
        Arc::new(KeepAliveHub {
            upstream,
            state: Mutex::new(HubState::default()),
        })
    }

    /// Keeps lease `id` alive once; the receiver gets the member's answer.
    fn keep_alive(self: &Arc<Self>, id: i64) -> oneshot::Receiver<Answer> {
        let (waiter, answer) = oneshot::channel();
        let mut state = lock(&self.state);
        if let Some(round) = state.leases.get_mut(&id) {
            round.next.push(waiter);
            return answer;
        }
        state.leases.insert(
            id,
            Round {
                in_flight: vec![waiter],
                next: Vec::new(),
            },
        );
        self.send(&mut state, id);
        answer
    }

    /// Sends a keep-alive for `id` on the shared stream, opening it if needed.
    fn send(self: &Arc<Self>, state: &mut HubState, id: i64) {
        let open = state.requests.as_ref().is_some_and(|r| !r.is_closed());
        if !open {
            let (requests, outgoing_requests) = mpsc::channel(MAX_LEASES_IN_FLIGHT);
            state.generation += 1;
            state.requests = Some(requests);
            tokio::spawn(
                self.clone()
                    .run_stream(state.generation, ReceiverStream::new(outgoing_requests)),
            );
        }
        let sent = state
            .requests
            .as_ref()
            .is_some_and(|r| r.try_send(LeaseKeepAliveRequest { id }).is_ok());
        if !sent && let Some(round) = state.leases.remove(&id) {
            let busy = Status::unavailable(
                "grpc-proxy: too many lease keep-alives in flight; retry shortly",
            );
            for waiter in round.in_flight.into_iter().chain(round.next) {
                let _ = waiter.send(Err(busy.clone()));
            }
        }
    }

    async fn run_stream(
        self: Arc<Self>,
        generation: u64,
        requests: ReceiverStream<LeaseKeepAliveRequest>,
    ) {
        let (at, mut client) = upstream_client!(self.upstream, LeaseClient);
        let opened = client.lease_keep_alive(requests).await;
        self.upstream.observe(at, &opened);
        let mut inbound = match opened {
            Ok(response) => response.into_inner(),
            Err(status) => return self.fail(generation, status),
        };
        loop {
            match inbound.message().await {
                Ok(Some(answer)) => self.answer(answer),
                Ok(None) => {
                    return self.fail(
                        generation,
                        Status::unavailable("grpc-proxy: the member ended the keep-alive stream"),
                    );
                }
                Err(status) => {
                    self.upstream.observe_error(at, &status);
                    return self.fail(generation, status);
                }
            }
        }
    }

    fn answer(self: &Arc<Self>, answer: LeaseKeepAliveResponse) {
        let mut state = lock(&self.state);
        let Some(round) = state.leases.get_mut(&answer.id) else {
            return;
        };
        let waiters = std::mem::take(&mut round.in_flight);
        if round.next.is_empty() {
            state.leases.remove(&answer.id);
        } else {
            round.in_flight = std::mem::take(&mut round.next);
            self.send(&mut state, answer.id);
        }
        drop(state);
        for waiter in waiters {
            let _ = waiter.send(Ok(answer));
        }
    }

    /// The shared stream of `generation` broke: everyone waiting on it hears why, and the
    /// next keep-alive opens a new one.
    fn fail(&self, generation: u64, status: Status) {
        let mut state = lock(&self.state);
        if state.generation != generation {
            return;
        }
        state.requests = None;
        let leases = std::mem::take(&mut state.leases);
        drop(state);
        for round in leases.into_values() {
            for waiter in round.in_flight.into_iter().chain(round.next) {
                let _ = waiter.send(Err(status.clone()));
            }
        }
    }
}

pub struct LeaseProxy {
    pub upstream: Arc<Upstream>,
    pub namespace: Namespace,
    pub keep_alives: Arc<KeepAliveHub>,
}

#[tonic::async_trait]
impl Lease for LeaseProxy {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let (metadata, _, grant) = request.into_parts();
        upstream_call!(
            self.upstream,
            LeaseClient,
            lease_grant(outgoing(&metadata, grant))
        )
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let (metadata, _, revoke) = request.into_parts();
        upstream_call!(
            self.upstream,
            LeaseClient,
            lease_revoke(outgoing(&metadata, revoke))
        )
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let (metadata, _, ttl) = request.into_parts();
        let result = upstream_call!(
            self.upstream,
            LeaseClient,
            lease_time_to_live(outgoing(&metadata, ttl))
        );
        let mut answer = result?.into_inner();
        self.namespace.lease_keys(&mut answer.keys);
        Ok(Response::new(answer))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let (metadata, _, leases) = request.into_parts();
        upstream_call!(
            self.upstream,
            LeaseClient,
            lease_leases(outgoing(&metadata, leases))
        )
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<BoxStream<LeaseKeepAliveResponse>>, Status> {
        let mut inbound = request.into_inner();
        let (answers, answers_out) = mpsc::channel(MAX_PENDING_PER_CLIENT);
        let hub = self.keep_alives.clone();
        let pending = Arc::new(Semaphore::new(MAX_PENDING_PER_CLIENT));
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = inbound.message() => message,
                    _ = answers.closed() => break,
                };
                let Ok(Some(keep_alive)) = message else { break };
                let Ok(permit) = pending.clone().acquire_owned().await else {
                    break;
                };
                let answer = hub.keep_alive(keep_alive.id);
                let answers = answers.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Ok(answer) = answer.await {
                        let _ = answers.send(answer).await;
                    }
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(answers_out))))
    }
}
