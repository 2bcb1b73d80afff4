//! The web console (`--enable-ui`): a single-page app under `/ui/` for browsing and editing
//! keys, watching, and seeing the cluster's members, leases, users, metrics and maintenance.
//!
//! Everything it shows comes from the public JSON gateway (`/v3/...`), `/metrics` and
//! `/health`, called from the browser with the logged-in user's token, so it can do nothing a
//! client with the same token could not, and works the same in front of any member or proxy
//! that serves the gateway. This crate only serves the files: plain HTML, CSS and JavaScript
//! modules with no build step, embedded with `include_bytes!` so nothing is deployed beside
//! the binary and nothing is fetched from the network at run time.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the console lives on the client (and metrics) port.
pub const MOUNT: &str = "/ui";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console is made of; `index.html` is what `/ui/` answers.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/bytes.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/tree.js", JS),
    asset!("js/diff.js", JS),
    asset!("js/keys.js", JS),
    asset!("js/history.js", JS),
    asset!("js/watch.js", JS),
    asset!("js/cluster.js", JS),
    asset!("js/leases.js", JS),
    asset!("js/access.js", JS),
    asset!("js/metrics.js", JS),
    asset!("js/operations.js", JS),
];

/// The page may load only its own files, and talk to any member (the cluster view asks each
/// member's client URL for its status); no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src *; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// `/ui` and everything under it.
pub fn router() -> Router {
    Router::new()
        // Temporary: a browser must not remember it once the console is switched off.
        .route(MOUNT, get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui/", get(|| async { serve("index.html") }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>| async move { serve(&path) }),
        )
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

fn serve(path: &str) -> Response {
    let Some(asset) = find(path) else {
        return (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            "404 page not found\n",
        )
            .into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // The files change with the binary: a browser asks again each time (cheap: they are
    // small) rather than run an old page against a new server.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests;
