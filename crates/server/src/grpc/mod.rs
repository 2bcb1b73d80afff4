//! The gRPC services of the client port. Handlers validate, then either read the store
//! (after a linearizable barrier unless serializable) or propose through Raft and wait.

pub mod access;
mod auth;
pub(crate) mod cluster;
mod election;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod range_stream;
mod transport_errors;
pub mod validate;
mod watch;

use std::sync::Arc;

use etcd_api::etcdserverpb::{
    AlarmRequest, AlarmType, alarm_request::AlarmAction, auth_server::AuthServer,
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use etcd_api::internalpb::internal_request::Request;
use etcd_api::v3electionpb::election_server::ElectionServer;
use etcd_api::v3lockpb::lock_server::LockServer;
use tonic::service::Routes;

use crate::config::GRPC_OVERHEAD_BYTES;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// Every v3 service as one router, with transport errors in grpc-go's words.
pub fn router(server: &Arc<EtcdServer>) -> axum::Router {
    routes(server)
        .into_axum_router()
        // Innermost: a large Range answer keeps its read budget until its body is sent.
        .layer(axum::middleware::from_fn(
            crate::read_budget::hold_until_sent,
        ))
        .layer(tower::util::MapResponseLayer::new(
            transport_errors::as_grpc_go::<axum::body::Body>,
        ))
        .layer(axum::middleware::from_fn_with_state(
            server.metrics.clone(),
            crate::metrics::grpc::track,
        ))
}

fn routes(server: &Arc<EtcdServer>) -> Routes {
    auth::warm_up(server.cfg.bcrypt_cost);
    let max_recv = server.cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let max_send = usize::MAX;
    Routes::new(
        KvServer::new(kv::KvService {
            server: server.clone(),
        })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(max_send),
    )
    .add_service(
        MaintenanceServer::new(maintenance::MaintenanceService {
            server: server.clone(),
        })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(max_send),
    )
    .add_service(
        ClusterServer::new(cluster::ClusterService {
            server: server.clone(),
        })
        .max_decoding_message_size(max_recv),
    )
    .add_service(
        WatchServer::new(watch::WatchService {
            server: server.clone(),
        })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(max_send),
    )
    .add_service(LeaseServer::new(lease::LeaseService {
        server: server.clone(),
    }))
    .add_service(
        AuthServer::new(auth::AuthService {
            server: server.clone(),
        })
        .max_decoding_message_size(max_recv),
    )
    .add_service(LockServer::new(lock::LockService {
        server: server.clone(),
    }))
    .add_service(ElectionServer::new(election::ElectionService {
        server: server.clone(),
    }))
}

/// etcd's backend quota: a write that would take the stored data past `--quota-backend-bytes`
/// raises the NOSPACE alarm (through Raft, so every member refuses growth) and is refused.
async fn check_quota(server: &EtcdServer, request_bytes: usize) -> Result<(), ServerError> {
    if server.has_alarm(AlarmType::Nospace) {
        return Err(ServerError::NoSpace);
    }
    // etcd charges the backend file size, which only defragmentation shrinks; we charge the
    // bytes the records take, which compaction alone brings down. One atomic load.
    let used = server.store.stored_bytes();
    let cost = request_bytes as u64 + 64;
    if used + cost <= server.cfg.quota_bytes() {
        return Ok(());
    }
    tracing::warn!(
        used_bytes = used,
        quota_bytes = server.cfg.quota_bytes(),
        "backend quota exceeded; raising the NOSPACE alarm (compact, defragment, then \
         `etcdctl alarm disarm`, or raise --quota-backend-bytes)"
    );
    let alarm = AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id: server.member_id,
        alarm: AlarmType::Nospace as i32,
    };
    server.propose(Request::Alarm(alarm)).await?;
    Err(ServerError::NoSpace)
}
