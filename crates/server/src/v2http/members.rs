//! `/v2/members` and `/v2/machines`: the member list in etcd's v2 JSON, and membership changes
//! through the same paths as the v3 Cluster service.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use etcd_api::internalpb::MemberRecord;
use serde::Deserialize;

use super::{go_http_error, method_not_allowed};
use crate::error::ServerError;
use crate::grpc::cluster::{add_member, remove_member, update_member};
use crate::server::EtcdServer;
use crate::v2::json::JsonWriter;

const MEMBERS_ROUTE: &str = "/v2/members";
/// Bodies of member changes are a few URLs.
const MEMBER_BODY_MAX: usize = 64 * 1024;

/// `{"peerURLs": [...]}`, the body of an add or an update.
#[derive(Deserialize)]
struct PeerUrls {
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
}

/// etcd's `{"message": ...}` error (httptypes.HTTPError).
pub fn http_error(status: StatusCode, message: &str) -> Response {
    let mut w = JsonWriter::default();
    w.begin_object();
    w.field_str("message", message);
    w.end_object();
    let mut body = w.finish_line();
    // Go's json.Marshal, unlike its Encoder, adds no newline.
    body.pop();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn write_member(w: &mut JsonWriter, m: &MemberRecord) {
    w.begin_object();
    w.field_str("id", &format!("{:x}", m.id));
    w.field_str("name", &m.name);
    w.begin_array_field("peerURLs");
    for u in &m.peer_urls {
        w.element_str(u);
    }
    w.end_array();
    w.begin_array_field("clientURLs");
    for u in &m.client_urls {
        w.element_str(u);
    }
    w.end_array();
    w.end_object();
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub async fn serve(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    if !matches!(
        *req.method(),
        Method::GET | Method::POST | Method::DELETE | Method::PUT
    ) {
        return method_not_allowed("GET,POST,DELETE,PUT");
    }
    let asker = super::auth::Asker::of(&req);
    if !super::auth::root_write_access(&server, &asker).await {
        return super::auth::no_auth();
    }
    let mut response = handle(&server, req).await;
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", server.cluster_id)) {
        response.headers_mut().insert("x-etcd-cluster-id", v);
    }
    response
}

async fn handle(server: &Arc<EtcdServer>, req: Request) -> Response {
    let sub = req
        .uri()
        .path()
        .strip_prefix(MEMBERS_ROUTE)
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    match *req.method() {
        Method::GET => match sub.as_str() {
            "" => {
                let state = server.cluster_state();
                let mut w = JsonWriter::default();
                w.begin_object();
                w.begin_array_field("members");
                for m in state.membership.members.values() {
                    write_member(&mut w, m);
                }
                w.end_array();
                w.end_object();
                json_response(StatusCode::OK, w.finish_line())
            }
            "leader" => {
                let leader = server.leader();
                let state = server.cluster_state();
                match state.membership.members.get(&leader) {
                    Some(m) if leader != 0 => {
                        let mut w = JsonWriter::default();
                        write_member(&mut w, m);
                        json_response(StatusCode::OK, w.finish_line())
                    }
                    _ => http_error(StatusCode::SERVICE_UNAVAILABLE, "During election"),
                }
            }
            _ => http_error(StatusCode::NOT_FOUND, "Not found"),
        },
        Method::POST => {
            let urls = match read_peer_urls(req).await {
                Ok(u) => u,
                Err(resp) => return resp,
            };
            match add_member(server, &urls, false).await {
                Ok(record) => {
                    let mut w = JsonWriter::default();
                    write_member(&mut w, &record);
                    json_response(StatusCode::CREATED, w.finish_line())
                }
                Err(e) => member_error(e, 0),
            }
        }
        Method::DELETE => {
            let Some(id) = member_id(&sub) else {
                return id_error(&sub);
            };
            match remove_member(server, id).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => member_error(e, id),
            }
        }
        _ => {
            let Some(id) = member_id(&sub) else {
                return id_error(&sub);
            };
            let urls = match read_peer_urls(req).await {
                Ok(u) => u,
                Err(resp) => return resp,
            };
            match update_member(server, id, &urls).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => member_error(e, id),
            }
        }
    }
}

fn member_id(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn id_error(s: &str) -> Response {
    if s.is_empty() {
        return go_http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    http_error(StatusCode::NOT_FOUND, &format!("No such member: {s}"))
}

/// etcd's v2 statuses and messages for membership errors.
fn member_error(e: ServerError, id: u64) -> Response {
    match e {
        ServerError::MemberExists => http_error(StatusCode::CONFLICT, "membership: ID exists"),
        ServerError::PeerUrlExists => {
            http_error(StatusCode::CONFLICT, "membership: peerURL exists")
        }
        ServerError::MemberNotFound => {
            http_error(StatusCode::NOT_FOUND, &format!("No such member: {id:x}"))
        }
        ServerError::MemberBadUrls => http_error(StatusCode::BAD_REQUEST, &e.to_string()),
        other => http_error(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
    }
}

/// The peer URLs of an add or update body, which must be JSON (etcd's unmarshalRequest).
async fn read_peer_urls(req: Request) -> Result<Vec<String>, Response> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let ctype = match ctype.find(';') {
        Some(i) => ctype[..i].trim().to_ascii_lowercase(),
        None => ctype,
    };
    if ctype != "application/json" {
        return Err(http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Bad Content-Type {ctype}, accept application/json"),
        ));
    }
    let body = axum::body::to_bytes(req.into_body(), MEMBER_BODY_MAX)
        .await
        .map_err(|e| http_error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    let parsed: PeerUrls = serde_json::from_slice(&body)
        .map_err(|e| http_error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    for raw in &parsed.peer_urls {
        check_url(raw).map_err(|e| http_error(StatusCode::BAD_REQUEST, &e))?;
    }
    Ok(parsed.peer_urls)
}

/// etcd's types.NewURLs checks, with its messages.
fn check_url(raw: &str) -> Result<(), String> {
    let scheme_error = || format!("URL scheme must be http, https, unix, or unixs: {raw}");
    let url = match url::Url::parse(raw) {
        Ok(url) => url,
        // Go parses a bare word as a relative URL, whose empty scheme is the error.
        Err(url::ParseError::RelativeUrlWithoutBase) => return Err(scheme_error()),
        Err(e) => return Err(format!("parse {raw:?}: {e}")),
    };
    if !matches!(url.scheme(), "http" | "https" | "unix" | "unixs") {
        return Err(scheme_error());
    }
    if url.host_str().is_none() || url.port().is_none() && !raw.contains("]:") {
        return Err(format!(
            "URL address does not have the form \"host:port\": {raw}"
        ));
    }
    if !matches!(url.path(), "" | "/") {
        return Err(format!("URL must not contain a path: {raw}"));
    }
    Ok(())
}

/// `/v2/machines`: every member's client URLs, comma-separated.
pub async fn machines(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return method_not_allowed("GET,HEAD");
    }
    let state = server.cluster_state();
    let mut urls: Vec<String> = state
        .membership
        .members
        .values()
        .flat_map(|m| m.client_urls.iter().cloned())
        .collect();
    urls.sort();
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        urls.join(", "),
    )
        .into_response()
}
