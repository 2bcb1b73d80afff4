//! The plain HTTP side of the client port: `/health` and `/version` with etcd's JSON, the JSON
//! gateway (`gateway/`) under `/v3/` and `/v3beta/`, Go's `404 page not found` for any other
//! path, and etcd's CORS headers (`--cors`) on every answer. With `--enable-ui`, the web
//! console (`etcd-console`) under `/ui/`.
//! Requests with a gRPC content type never get here (see `serve::client_router`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::config::{CLUSTER_VERSION, SERVER_VERSION};
use crate::server::EtcdServer;

/// How long `/health` waits for a linearizable read before calling the member unhealthy
/// (etcd: one second).
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Go's `text/plain` content type, which etcd 3.4's `/health` and error pages carry.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

pub fn routes(server: Arc<EtcdServer>, gateway: Router) -> Router {
    let cors = Arc::new(CorsPolicy::new(&server.cfg.cors));
    let v2 = if server.cfg.enable_v2 {
        crate::v2http::routes(server.clone())
    } else {
        Router::new()
    };
    let console = console(&server);
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/livez", get(crate::probes::livez))
        .route("/readyz", get(crate::probes::readyz))
        .fallback(not_found)
        .with_state(server.clone())
        .merge(gateway)
        .merge(v2)
        .merge(console)
        .layer(middleware::from_fn_with_state(cors, with_cors))
}

/// The web console when `--enable-ui` is set; without it `/ui/` is Go's 404 like any path.
fn console(server: &EtcdServer) -> Router {
    if server.cfg.enable_ui {
        etcd_console::router()
    } else {
        Router::new()
    }
}

/// The `--listen-metrics-urls` listeners: `/metrics`, `/health` and the probes. With
/// `--enable-ui` also the console and the JSON gateway it talks to (`gateway`), so operators
/// can keep the console on the metrics network only; the gateway there checks the same auth.
pub fn metrics_routes(server: Arc<EtcdServer>, gateway: Router) -> Router {
    let with_ui = if server.cfg.enable_ui {
        console(&server).merge(gateway)
    } else {
        Router::new()
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/livez", get(crate::probes::livez))
        .route("/readyz", get(crate::probes::readyz))
        .fallback(not_found)
        .with_state(server)
        .merge(with_ui)
}

/// Go's `http.NotFound`, byte for byte: what etcd answers on a path it does not serve.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, TEXT_PLAIN),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        "404 page not found\n",
    )
        .into_response()
}

/// Prometheus' text exposition of this member's metrics.
pub async fn metrics(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        server.metrics.render(&server),
    )
}

/// `/version`'s body; the field order is etcd's (a struct keeps it, a JSON map would sort).
#[derive(Serialize)]
struct Versions {
    etcdserver: &'static str,
    etcdcluster: &'static str,
}

async fn version() -> impl IntoResponse {
    let body = Versions {
        etcdserver: SERVER_VERSION,
        etcdcluster: CLUSTER_VERSION,
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&body).unwrap_or_default(),
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
    (status, [(header::CONTENT_TYPE, TEXT_PLAIN)], body)
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

/// `--cors`: which origins may read our HTTP answers from a browser.
struct CorsPolicy {
    any: bool,
    origins: Vec<String>,
}

impl CorsPolicy {
    fn new(origins: &[String]) -> CorsPolicy {
        CorsPolicy {
            any: origins.iter().any(|o| o == "*"),
            origins: origins.to_vec(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request, if it gets CORS headers at all.
    fn allow_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = request.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o == text)
            .then(|| origin.clone())
    }
}

/// etcd's CORS handling: the headers on every answer to an allowed origin, and `OPTIONS`
/// (a browser's preflight) answered 200 with no body, whatever the path.
async fn with_cors(State(cors): State<Arc<CorsPolicy>>, request: Request, next: Next) -> Response {
    let origin = cors.allow_origin(request.headers());
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        next.run(request).await
    };
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
        );
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("accept, content-type, authorization"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_origin(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h
    }

    #[test]
    fn cors_star_allows_every_request_even_without_an_origin() {
        let policy = CorsPolicy::new(&["*".to_string()]);
        assert_eq!(policy.allow_origin(&HeaderMap::new()).unwrap(), "*");
    }

    #[test]
    fn cors_list_echoes_only_a_listed_origin() {
        let policy = CorsPolicy::new(&["http://a.example".to_string()]);
        assert_eq!(
            policy
                .allow_origin(&headers_with_origin("http://a.example"))
                .unwrap(),
            "http://a.example"
        );
        assert!(
            policy
                .allow_origin(&headers_with_origin("http://b.example"))
                .is_none()
        );
        assert!(policy.allow_origin(&HeaderMap::new()).is_none());
    }

    #[test]
    fn version_keys_are_in_etcds_order() {
        let body = serde_json::to_string(&Versions {
            etcdserver: SERVER_VERSION,
            etcdcluster: CLUSTER_VERSION,
        })
        .unwrap();
        assert_eq!(body, r#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#);
    }
}
