use super::*;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

async fn get_path(path: &str) -> Response {
    router()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_index_is_served_at_the_mount_with_its_policy() {
    let response = get_path("/ui/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
}

#[tokio::test]
async fn the_bare_mount_redirects_to_the_index() {
    let response = get_path("/ui").await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()[header::LOCATION], "/ui/");
}

#[tokio::test]
async fn unknown_files_and_climbing_out_are_404() {
    for path in [
        "/ui/nope.js",
        "/ui/../Cargo.toml",
        "/ui/js/../../src/lib.rs",
    ] {
        assert_eq!(
            get_path(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn modules_are_served_as_javascript() {
    let response = get_path("/ui/js/main.js").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], JS);
}

/// Every file the page or a module names (`src=`, `href=`, `import ... from './x.js'`) is
/// embedded: a file added to `assets/` but not to `ASSETS` would be a broken page.
#[test]
fn every_referenced_file_is_embedded() {
    let mut missing = Vec::new();
    for asset in ASSETS {
        let text = std::str::from_utf8(asset.body).unwrap();
        let dir = asset.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        for reference in references(text) {
            let resolved = resolve(dir, &reference);
            if find(&resolved).is_none() {
                missing.push(format!("{} -> {reference}", asset.path));
            }
        }
    }
    assert!(missing.is_empty(), "not embedded: {missing:?}");
    // And the check itself sees references: the page loads its entry module.
    assert!(
        references(std::str::from_utf8(find("index.html").unwrap().body).unwrap())
            .contains(&"js/main.js".to_string())
    );
}

/// Relative references in HTML attributes and JS `from '...'` clauses.
fn references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["src=\"", "href=\"", "from './", "from '../"] {
        let mut rest = text;
        while let Some(at) = rest.find(marker) {
            let start = if marker.starts_with("from") {
                at + "from '".len()
            } else {
                at + marker.len()
            };
            let quote = if marker.starts_with("from") {
                '\''
            } else {
                '"'
            };
            let tail = &rest[start..];
            let end = tail.find(quote).unwrap_or(tail.len());
            let reference = &tail[..end];
            if !reference.contains(':') && !reference.starts_with('#') && !reference.is_empty() {
                found.push(reference.trim_start_matches("./").to_string());
            }
            rest = &tail[end..];
        }
    }
    found
}

fn resolve(dir: &str, reference: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in reference.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}
