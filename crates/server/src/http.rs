//! The HTTP endpoints of the client port: `/health` and `/version`, with etcd's JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::config::{CLUSTER_VERSION, SERVER_VERSION};
use crate::server::EtcdServer;

/// How long `/health` waits for a linearizable read before calling the member unhealthy
/// (etcd: one second).
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

pub fn routes(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(server)
}

async fn version() -> impl IntoResponse {
    let body = serde_json::json!({
        "etcdserver": SERVER_VERSION,
        "etcdcluster": CLUSTER_VERSION,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// Healthy when no alarm is raised, a leader is known, and a linearizable read completes.
async fn health(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let healthy = check_health(&server).await;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = format!(r#"{{"health":"{healthy}"}}"#);
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn check_health(server: &EtcdServer) -> bool {
    let alarms = server.cluster_state().alarms;
    if let Some(alarm) = alarms.first() {
        tracing::warn!(
            member = format!("{:x}", alarm.member_id),
            alarm = alarm.alarm,
            "/health error due to an alarm"
        );
        return false;
    }
    if server.leader() == 0 {
        tracing::warn!("/health error; no leader");
        return false;
    }
    match tokio::time::timeout(HEALTH_READ_TIMEOUT, server.linearizable_barrier()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "/health error; linearizable read failed");
            false
        }
        Err(_) => {
            tracing::warn!("/health error; linearizable read timed out");
            false
        }
    }
}
