//! etcd 3.4's v2 HTTP API, served on the client port with `--enable-v2`: `/v2/keys`
//! (`keys.rs`), `/v2/members` and `/v2/machines` (`members.rs`), `/v2/stats/*`
//! (`stats.rs`), and v2 auth (`auth.rs`). Without the flag these paths are Go's 404, as etcd.

pub mod auth;
mod form;
mod keys;
mod members;
mod stats;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::server::EtcdServer;

pub fn routes(server: Arc<EtcdServer>) -> Router {
    stats::mark_start();
    Router::new()
        .route("/v2/keys", any(keys::serve))
        .route("/v2/keys/", any(keys::serve))
        .route("/v2/keys/{*rest}", any(keys::serve))
        .route("/v2/members", any(members::serve))
        .route("/v2/members/", any(members::serve))
        .route("/v2/members/{*rest}", any(members::serve))
        .route("/v2/machines", any(members::machines))
        .route("/v2/stats/self", any(stats::self_stats))
        .route("/v2/stats/leader", any(stats::leader_stats))
        .route("/v2/stats/store", any(stats::store_stats))
        .merge(auth::routes())
        .with_state(server)
}

/// Go's `http.Error`: a plain-text body and its headers.
pub fn go_http_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{message}\n"),
    )
        .into_response()
}

/// etcd's allowMethod refusal.
pub fn method_not_allowed(allowed: &'static str) -> Response {
    let mut response = go_http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

/// A path percent-decoded, bad escapes kept as they are.
pub fn decoded_path_lossy(raw: &str) -> String {
    match decode_path(raw) {
        Some(p) => p,
        None => raw.to_string(),
    }
}

/// The request path, percent-decoded as Go's `URL.Path`; `None` when an escape is bad.
pub fn decoded_path(uri: &Uri) -> Option<String> {
    decode_path(uri.path())
}

fn decode_path(raw: &str) -> Option<String> {
    let raw = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
            match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => return None,
            }
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's ServeMux answers a path that is not clean (`//`, `.`, `..`) with a redirect to the
/// clean one before any handler sees it; a v2 key can never name anything outside `/v2/keys`.
pub fn redirect_unclean(decoded: &str, query: Option<&str>) -> Option<Response> {
    let mut clean = crate::v2::path::clean(decoded);
    if decoded.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    if clean == decoded {
        return None;
    }
    let location = match query {
        Some(q) => format!("{clean}?{q}"),
        None => clean,
    };
    // A location that is not a valid header (raw bytes in the path) gets a plain refusal:
    // the unclean path must never reach a handler.
    let Ok(location) = HeaderValue::from_str(&location) else {
        return Some(keys::bad_request());
    };
    let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Some(response)
}
