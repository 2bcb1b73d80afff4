//! grpc-gateway's routes of etcd 3.4 (`rpc.pb.gw.go`, `v3lock.pb.gw.go`, `v3election.pb.gw.go`):
//! path to RPC. Served under `/v3/` and `/v3beta/` (etcd 3.4 rewrites the latter to the
//! former); anything else under them is grpc-gateway's `Not Found`, a GET its `Method Not
//! Allowed`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use etcd_api::etcdserverpb::auth_client::AuthClient;
use etcd_api::etcdserverpb::cluster_client::ClusterClient;
use etcd_api::etcdserverpb::kv_client::KvClient;
use etcd_api::etcdserverpb::lease_client::LeaseClient;
use etcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use etcd_api::etcdserverpb::watch_client::WatchClient;
use etcd_api::etcdserverpb::*;
use etcd_api::v3electionpb::election_client::ElectionClient;
use etcd_api::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
use etcd_api::v3lockpb::lock_client::LockClient;
use etcd_api::v3lockpb::{LockRequest, UnlockRequest};

use super::Gateway;

/// grpc-gateway's answers for a path it does not have and a method it does not take.
async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Not Found\n")
}

async fn method_not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A unary RPC: `unary!(Client, method, Request)`.
macro_rules! unary {
    ($client:ident, $method:ident, $req:ty) => {
        post(
            |State(gw): State<Gateway>, headers: HeaderMap, body: Bytes| async move {
                gw.unary(
                    headers,
                    body,
                    |channel, request: tonic::Request<$req>| async move {
                        $client::new(channel)
                            .max_decoding_message_size(usize::MAX)
                            .$method(request)
                            .await
                    },
                )
                .await
            },
        )
        .fallback(method_not_allowed)
    };
}

fn kv() -> Router<Gateway> {
    Router::new()
        .route("/kv/range", unary!(KvClient, range, RangeRequest))
        .route("/kv/put", unary!(KvClient, put, PutRequest))
        .route(
            "/kv/deleterange",
            unary!(KvClient, delete_range, DeleteRangeRequest),
        )
        .route("/kv/txn", unary!(KvClient, txn, TxnRequest))
        .route(
            "/kv/compaction",
            unary!(KvClient, compact, CompactionRequest),
        )
        .route("/watch", streaming_watch())
}

fn streaming_watch() -> MethodRouter<Gateway> {
    post(
        |State(gw): State<Gateway>, headers: HeaderMap, body: Body| async move {
            gw.bidi(headers, body, |channel, request| async move {
                WatchClient::new(channel)
                    .max_decoding_message_size(usize::MAX)
                    .watch(request)
                    .await
            })
            .await
        },
    )
    .fallback(method_not_allowed)
}

fn lease() -> Router<Gateway> {
    let revoke = || unary!(LeaseClient, lease_revoke, LeaseRevokeRequest);
    let time_to_live = || unary!(LeaseClient, lease_time_to_live, LeaseTimeToLiveRequest);
    let leases = || unary!(LeaseClient, lease_leases, LeaseLeasesRequest);
    Router::new()
        .route(
            "/lease/grant",
            unary!(LeaseClient, lease_grant, LeaseGrantRequest),
        )
        .route("/lease/revoke", revoke())
        .route("/kv/lease/revoke", revoke())
        .route("/lease/timetolive", time_to_live())
        .route("/kv/lease/timetolive", time_to_live())
        .route("/lease/leases", leases())
        .route("/kv/lease/leases", leases())
        .route(
            "/lease/keepalive",
            post(
                |State(gw): State<Gateway>, headers: HeaderMap, body: Body| async move {
                    gw.bidi(headers, body, |channel, request| async move {
                        LeaseClient::new(channel).lease_keep_alive(request).await
                    })
                    .await
                },
            )
            .fallback(method_not_allowed),
        )
}

fn cluster() -> Router<Gateway> {
    Router::new()
        .route(
            "/cluster/member/add",
            unary!(ClusterClient, member_add, MemberAddRequest),
        )
        .route(
            "/cluster/member/remove",
            unary!(ClusterClient, member_remove, MemberRemoveRequest),
        )
        .route(
            "/cluster/member/update",
            unary!(ClusterClient, member_update, MemberUpdateRequest),
        )
        .route(
            "/cluster/member/list",
            unary!(ClusterClient, member_list, MemberListRequest),
        )
        .route(
            "/cluster/member/promote",
            unary!(ClusterClient, member_promote, MemberPromoteRequest),
        )
}

fn maintenance() -> Router<Gateway> {
    Router::new()
        .route(
            "/maintenance/alarm",
            unary!(MaintenanceClient, alarm, AlarmRequest),
        )
        .route(
            "/maintenance/status",
            unary!(MaintenanceClient, status, StatusRequest),
        )
        .route(
            "/maintenance/defragment",
            unary!(MaintenanceClient, defragment, DefragmentRequest),
        )
        // etcd registers Hash and HashKV on the same path; the first, Hash, answers.
        .route(
            "/maintenance/hash",
            unary!(MaintenanceClient, hash, HashRequest),
        )
        .route(
            "/maintenance/transfer-leadership",
            unary!(MaintenanceClient, move_leader, MoveLeaderRequest),
        )
        .route(
            "/maintenance/snapshot",
            post(
                |State(gw): State<Gateway>, headers: HeaderMap, body: Bytes| async move {
                    gw.server_stream(
                        headers,
                        body,
                        |channel, request: tonic::Request<SnapshotRequest>| async move {
                            MaintenanceClient::new(channel)
                                .max_decoding_message_size(usize::MAX)
                                .snapshot(request)
                                .await
                        },
                    )
                    .await
                },
            )
            .fallback(method_not_allowed),
        )
}

fn auth() -> Router<Gateway> {
    Router::new()
        .route(
            "/auth/enable",
            unary!(AuthClient, auth_enable, AuthEnableRequest),
        )
        .route(
            "/auth/disable",
            unary!(AuthClient, auth_disable, AuthDisableRequest),
        )
        .route(
            "/auth/authenticate",
            unary!(AuthClient, authenticate, AuthenticateRequest),
        )
        .route(
            "/auth/user/add",
            unary!(AuthClient, user_add, AuthUserAddRequest),
        )
        .route(
            "/auth/user/get",
            unary!(AuthClient, user_get, AuthUserGetRequest),
        )
        .route(
            "/auth/user/list",
            unary!(AuthClient, user_list, AuthUserListRequest),
        )
        .route(
            "/auth/user/delete",
            unary!(AuthClient, user_delete, AuthUserDeleteRequest),
        )
        .route(
            "/auth/user/changepw",
            unary!(
                AuthClient,
                user_change_password,
                AuthUserChangePasswordRequest
            ),
        )
        .route(
            "/auth/user/grant",
            unary!(AuthClient, user_grant_role, AuthUserGrantRoleRequest),
        )
        .route(
            "/auth/user/revoke",
            unary!(AuthClient, user_revoke_role, AuthUserRevokeRoleRequest),
        )
        .route(
            "/auth/role/add",
            unary!(AuthClient, role_add, AuthRoleAddRequest),
        )
        .route(
            "/auth/role/get",
            unary!(AuthClient, role_get, AuthRoleGetRequest),
        )
        .route(
            "/auth/role/list",
            unary!(AuthClient, role_list, AuthRoleListRequest),
        )
        .route(
            "/auth/role/delete",
            unary!(AuthClient, role_delete, AuthRoleDeleteRequest),
        )
        .route(
            "/auth/role/grant",
            unary!(
                AuthClient,
                role_grant_permission,
                AuthRoleGrantPermissionRequest
            ),
        )
        .route(
            "/auth/role/revoke",
            unary!(
                AuthClient,
                role_revoke_permission,
                AuthRoleRevokePermissionRequest
            ),
        )
}

fn lock_and_election() -> Router<Gateway> {
    Router::new()
        .route("/lock/lock", unary!(LockClient, lock, LockRequest))
        .route("/lock/unlock", unary!(LockClient, unlock, UnlockRequest))
        .route(
            "/election/campaign",
            unary!(ElectionClient, campaign, CampaignRequest),
        )
        .route(
            "/election/proclaim",
            unary!(ElectionClient, proclaim, ProclaimRequest),
        )
        .route(
            "/election/leader",
            unary!(ElectionClient, leader, LeaderRequest),
        )
        .route(
            "/election/resign",
            unary!(ElectionClient, resign, ResignRequest),
        )
        .route(
            "/election/observe",
            post(
                |State(gw): State<Gateway>, headers: HeaderMap, body: Bytes| async move {
                    gw.server_stream(
                        headers,
                        body,
                        |channel, request: tonic::Request<LeaderRequest>| async move {
                            ElectionClient::new(channel).observe(request).await
                        },
                    )
                    .await
                },
            )
            .fallback(method_not_allowed),
        )
}

/// Every route, under `/v3` and `/v3beta`.
pub fn all(gateway: Gateway) -> Router {
    let services = Router::new()
        .merge(kv())
        .merge(lease())
        .merge(cluster())
        .merge(maintenance())
        .merge(auth())
        .merge(lock_and_election())
        .fallback(not_found);
    Router::new()
        .nest("/v3", services.clone())
        .nest("/v3beta", services)
        .with_state(gateway)
}
