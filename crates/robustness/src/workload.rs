//! The clients: each sends one request at a time, as fast as answers come, to one member
//! (moving to the next when its member stops answering), and records each request with when
//! it was sent and answered. Every written value is unique in the run (`c<client>-<n>`), so
//! the checker can tell which request any write in the log came from.

use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, compare, request_op,
    response_op,
};
use etcd_client::{Client, ConnectOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::{Code, Status};

use crate::history::{Operation, Outcome, Request, Response};

pub const PREFIX: &str = "/robustness/";

/// Leases outlive any run: keys go only when their lease is revoked, by a client.
pub const LEASE_TTL_SECONDS: i64 = 3600;

/// How long a client waits for an answer before it counts as unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

pub fn key(i: usize) -> String {
    format!("{PREFIX}key{i}")
}

/// A lazily dialled client of one member: it starts even while its member is down.
pub fn client(url: &str) -> Result<Client, String> {
    let options = ConnectOptions {
        dial_timeout: Duration::from_millis(500),
        request_timeout: Some(REQUEST_TIMEOUT),
        ..ConnectOptions::default()
    };
    let channel = etcd_client::lazy_channel(url, &options).map_err(|e| e.to_string())?;
    Ok(Client::from_channel(channel))
}

/// Only these mean the member refused the request before applying it; anything else (a
/// timeout, a lost connection, a leader change) leaves a write's fate unknown.
fn classify(status: &Status) -> Outcome {
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::OutOfRange
        // "etcdserver: requested lease not found": a put with a revoked lease.
        | Code::NotFound => Outcome::Failed(status.message().to_string()),
        _ => Outcome::Unknown(format!("{:?}: {}", status.code(), status.message())),
    }
}

pub struct Workload {
    pub client: usize,
    pub endpoints: Vec<String>,
    pub keys: usize,
    pub seed: u64,
}

impl Workload {
    /// Runs until `deadline`; times are measured from `start`.
    pub async fn run(self, start: Instant, deadline: Instant) -> Vec<Operation> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let clients: Vec<Client> = self
            .endpoints
            .iter()
            .filter_map(|url| client(url).ok())
            .collect();
        if clients.is_empty() {
            return Vec::new();
        }
        let mut at = self.client % clients.len();
        let mut seen: Vec<Option<String>> = vec![None; self.keys];
        // The lease this client attaches some of its puts to.
        let mut lease = 0;
        let mut ops = Vec::new();
        let mut n = 0u64;
        while Instant::now() < deadline {
            let k = rng.random_range(0..self.keys);
            let key = key(k);
            n += 1;
            let value = format!("c{}-{n}", self.client);
            let request = match rng.random_range(0..100) {
                0..3 if lease == 0 => Request::LeaseGrant,
                0..3 => Request::LeaseRevoke { lease },
                3..40 => Request::Put {
                    key,
                    value,
                    lease: if rng.random_bool(0.3) { lease } else { 0 },
                },
                40..50 => Request::Delete { key },
                50..70 => Request::Get {
                    key,
                    linearizable: true,
                    via_txn: rng.random_bool(0.3),
                },
                70..80 => Request::Get {
                    key,
                    linearizable: false,
                    via_txn: rng.random_bool(0.3),
                },
                80..85 if lease != 0 => Request::LeaseKeepAlive { lease },
                _ => Request::CompareAndSwap {
                    key,
                    expect: seen[k].clone(),
                    value,
                },
            };
            let mut c = clients[at].clone();
            let invoked = start.elapsed();
            let outcome = send(&mut c, &request).await;
            let returned = start.elapsed();
            match &outcome {
                Outcome::Ok(Response::Get { value, .. }) => {
                    seen[k] = value.as_ref().map(|(v, _)| v.clone())
                }
                Outcome::Ok(Response::Put { .. }) => {
                    seen[k] = request.written_value().map(str::to_string)
                }
                Outcome::Ok(Response::Delete { .. }) => seen[k] = None,
                Outcome::Ok(Response::CompareAndSwap {
                    succeeded: true, ..
                }) => seen[k] = request.written_value().map(str::to_string),
                Outcome::Ok(Response::LeaseGrant { id }) => lease = *id,
                // Revoked, or refused because it is already gone: a new one next time.
                Outcome::Ok(Response::LeaseRevoke { .. }) => lease = 0,
                Outcome::Failed(_) if matches!(request, Request::LeaseRevoke { .. }) => lease = 0,
                // Gone (a failed member may have lost it: the checker tells): a new one.
                Outcome::Ok(Response::LeaseKeepAlive { ttl }) if *ttl <= 0 => lease = 0,
                Outcome::Unknown(_) => {
                    // This member may be gone: try the next one, after a breath.
                    at = (at + 1) % clients.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {}
            }
            ops.push(Operation {
                client: self.client,
                invoked_us: invoked.as_micros() as u64,
                returned_us: returned.as_micros() as u64,
                request,
                outcome,
            });
        }
        ops
    }
}

async fn send(c: &mut Client, request: &Request) -> Outcome {
    let revision = |h: Option<etcd_api::etcdserverpb::ResponseHeader>| h.map_or(0, |h| h.revision);
    match request {
        Request::LeaseGrant => match c
            .lease
            .lease_grant(LeaseGrantRequest {
                ttl: LEASE_TTL_SECONDS,
                id: 0,
            })
            .await
        {
            Ok(r) => Outcome::Ok(Response::LeaseGrant {
                id: r.into_inner().id,
            }),
            Err(s) => classify(&s),
        },
        Request::LeaseRevoke { lease } => match c
            .lease
            .lease_revoke(LeaseRevokeRequest { id: *lease })
            .await
        {
            Ok(r) => Outcome::Ok(Response::LeaseRevoke {
                revision: revision(r.into_inner().header),
            }),
            Err(s) => classify(&s),
        },
        Request::LeaseKeepAlive { lease } => {
            let once = LeaseKeepAliveRequest { id: *lease };
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let mut answers = c
                    .lease
                    .lease_keep_alive(tokio_stream::iter([once]))
                    .await?
                    .into_inner();
                answers
                    .message()
                    .await?
                    .ok_or_else(|| Status::unavailable("keep-alive stream ended unanswered"))
            })
            .await;
            match answer {
                Ok(Ok(r)) => Outcome::Ok(Response::LeaseKeepAlive { ttl: r.ttl }),
                // A keep-alive writes nothing: its failure needs no resolving.
                Ok(Err(s)) => Outcome::Unknown(format!("{:?}: {}", s.code(), s.message())),
                Err(_) => Outcome::Unknown("keep-alive timed out".to_string()),
            }
        }
        Request::Put { key, value, lease } => match c
            .kv
            .put(PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                lease: *lease,
                ..PutRequest::default()
            })
            .await
        {
            Ok(r) => Outcome::Ok(Response::Put {
                revision: revision(r.into_inner().header),
            }),
            Err(s) => classify(&s),
        },
        Request::Delete { key } => match c
            .kv
            .delete_range(DeleteRangeRequest {
                key: key.clone().into_bytes(),
                ..DeleteRangeRequest::default()
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                Outcome::Ok(Response::Delete {
                    revision: revision(r.header),
                    deleted: r.deleted,
                })
            }
            Err(s) => classify(&s),
        },
        Request::Get {
            key,
            linearizable,
            via_txn,
        } => {
            let range = RangeRequest {
                key: key.clone().into_bytes(),
                serializable: !linearizable,
                ..RangeRequest::default()
            };
            let answer = if *via_txn {
                read_via_txn(c, range).await
            } else {
                c.kv.range(range).await.map(tonic::Response::into_inner)
            };
            match answer {
                Ok(r) => Outcome::Ok(Response::Get {
                    revision: revision(r.header),
                    value: r.kvs.first().map(|kv| {
                        (
                            String::from_utf8_lossy(&kv.value).into_owned(),
                            kv.mod_revision,
                        )
                    }),
                }),
                // A read changes nothing: its failure needs no resolving.
                Err(s) => Outcome::Unknown(s.message().to_string()),
            }
        }
        Request::CompareAndSwap { key, expect, value } => {
            let compare = match expect {
                Some(v) => Compare {
                    key: key.clone().into_bytes(),
                    target: compare::CompareTarget::Value as i32,
                    result: compare::CompareResult::Equal as i32,
                    target_union: Some(compare::TargetUnion::Value(v.clone().into_bytes())),
                    ..Compare::default()
                },
                None => Compare {
                    key: key.clone().into_bytes(),
                    target: compare::CompareTarget::Version as i32,
                    result: compare::CompareResult::Equal as i32,
                    target_union: Some(compare::TargetUnion::Version(0)),
                    ..Compare::default()
                },
            };
            let txn = TxnRequest {
                compare: vec![compare],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.clone().into_bytes(),
                        value: value.clone().into_bytes(),
                        ..PutRequest::default()
                    })),
                }],
                failure: Vec::new(),
            };
            match c.kv.txn(txn).await {
                Ok(r) => {
                    let r = r.into_inner();
                    Outcome::Ok(Response::CompareAndSwap {
                        revision: revision(r.header),
                        succeeded: r.succeeded,
                    })
                }
                Err(s) => classify(&s),
            }
        }
    }
}

/// A range sent as the only op of a txn; the answer is the range's, under the txn's header.
async fn read_via_txn(c: &mut Client, range: RangeRequest) -> Result<RangeResponse, Status> {
    let txn =
        c.kv.txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(range)),
            }],
            failure: vec![],
        })
        .await?
        .into_inner();
    match txn.responses.into_iter().next().and_then(|op| op.response) {
        Some(response_op::Response::ResponseRange(r)) => Ok(RangeResponse {
            header: txn.header,
            ..r
        }),
        other => Err(Status::internal(format!(
            "a txn of one range answered {other:?}"
        ))),
    }
}
