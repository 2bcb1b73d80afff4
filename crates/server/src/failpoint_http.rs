//! Failpoint control, as etcd's failpoint builds (gofail) have it: `GOFAIL_FAILPOINTS`
//! configures points at start, and `GOFAIL_HTTP=host:port` serves an endpoint to change them
//! while the member runs:
//! - `PUT /<name>` with a term as the body (`sleep(500)`, `pause`, `return`, `1*panic`, ...);
//! - `GET /<name>`: its term; `GET /`: every configured point, `name=term` per line;
//! - `DELETE /<name>`: off (a thread paused at it goes on).
//!
//! Only in builds with the `failpoints` feature; otherwise both variables are ignored with a
//! warning. The names are in `etcd_failpoints::names`.

use std::sync::OnceLock;

use crate::error::ServerError;

pub const FAILPOINTS_ENV: &str = "GOFAIL_FAILPOINTS";
pub const HTTP_ENV: &str = "GOFAIL_HTTP";

/// Applies `GOFAIL_FAILPOINTS` and starts the `GOFAIL_HTTP` endpoint, once per process.
pub async fn start_from_env() -> Result<(), ServerError> {
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.set(()).is_err() {
        return Ok(());
    }
    let specs = std::env::var(FAILPOINTS_ENV).ok();
    let http = std::env::var(HTTP_ENV).ok().filter(|a| !a.is_empty());
    if !etcd_failpoints::ENABLED {
        if specs.is_some() || http.is_some() {
            tracing::warn!(
                "{FAILPOINTS_ENV} and {HTTP_ENV} are ignored: this etcd was built without \
                 failpoints (cargo build -p etcd --features failpoints)"
            );
        }
        return Ok(());
    }
    if let Some(specs) = specs {
        etcd_failpoints::configure_all(&specs)
            .map_err(|e| ServerError::Config(format!("{FAILPOINTS_ENV}: {e}")))?;
    }
    if etcd_failpoints::power_loss_simulated() {
        tracing::warn!(
            "{}=1: unsynced WAL and backend writes are held in memory, to be lost if this \
             member is killed (power-loss simulation, for tests only)",
            etcd_failpoints::POWER_LOSS_ENV
        );
    }
    let Some(addr) = http else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| ServerError::Config(format!("{HTTP_ENV}={addr}: {e}")))?;
    tracing::warn!(address = %addr, "serving failpoint control (tests only)");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router()).await {
            tracing::warn!(error = %e, "failpoint control stopped");
        }
    });
    Ok(())
}

fn router() -> axum::Router {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get;

    async fn list() -> String {
        etcd_failpoints::list()
            .into_iter()
            .map(|(name, term)| format!("{name}={term}\n"))
            .collect()
    }
    async fn show(Path(name): Path<String>) -> Result<String, StatusCode> {
        etcd_failpoints::list()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, term)| term)
            .ok_or(StatusCode::NOT_FOUND)
    }
    async fn set(Path(name): Path<String>, term: String) -> (StatusCode, String) {
        match etcd_failpoints::configure(&name, &term) {
            Ok(()) => (StatusCode::NO_CONTENT, String::new()),
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
        }
    }
    async fn remove(Path(name): Path<String>) -> StatusCode {
        etcd_failpoints::remove(&name);
        StatusCode::NO_CONTENT
    }
    axum::Router::new()
        .route("/", get(list))
        .route("/{name}", get(show).put(set).delete(remove))
}
