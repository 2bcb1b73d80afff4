//! `/v2/keys`: etcd 3.4's v2 keys API. Parameters are parsed and checked as etcd's
//! parseKeyRequest does; writes and quorum reads go through Raft as a v2 `Request`; plain
//! reads and watches are served from this member's store.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use etcd_api::etcdserverpb::Request as V2Request;
use etcd_api::internalpb::internal_request::Request as Proposal;

use super::form::{FORM_BYTES_MAX, Form};
use super::{go_http_error, method_not_allowed};
use crate::apply::ApplyResponse;
use crate::server::EtcdServer;
use crate::v2::error::{V2Error, code};
use crate::v2::event::Event;
use crate::v2::store::KEYS_PREFIX;
use crate::v2::{Watcher, unix_nanos};

const KEYS_ROUTE: &str = "/v2/keys";

/// What the handler does with a parsed request.
struct KeyRequest {
    v2: V2Request,
    no_value_on_success: bool,
}

pub async fn serve(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    const ALLOWED: [Method; 5] = [
        Method::HEAD,
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
    ];
    if !ALLOWED.contains(req.method()) {
        return method_not_allowed("HEAD,GET,PUT,POST,DELETE");
    }
    let Some(decoded) = super::decoded_path(req.uri()) else {
        return bad_request();
    };
    if let Some(redirect) = super::redirect_unclean(&decoded, req.uri().query()) {
        return redirect;
    }
    let asker = super::auth::Asker::of(&req);
    let mut response = match parse(req, &decoded).await {
        Err(e) => error_response(&e),
        Ok(key_req) => {
            let key = &decoded[KEYS_ROUTE.len()..];
            if !super::auth::key_access(&server, &asker, key, key_req.v2.recursive).await {
                error_response(&V2Error::new(
                    code::UNAUTHORIZED,
                    "Insufficient credentials",
                    0,
                ))
            } else {
                handle(&server, key_req).await
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", server.cluster_id)) {
        response.headers_mut().insert("x-etcd-cluster-id", v);
    }
    response
}

async fn handle(server: &Arc<EtcdServer>, req: KeyRequest) -> Response {
    let KeyRequest {
        mut v2,
        no_value_on_success,
    } = req;
    if v2.method == "GET" && v2.quorum {
        v2.method = "QGET".into();
    }
    match v2.method.as_str() {
        "GET" if v2.wait => watch(server, &v2).await,
        "GET" | "HEAD" => {
            let now = unix_nanos(SystemTime::now());
            let result = server.v2.lock().get(&v2.path, v2.recursive, now);
            match result {
                Ok(event) => event_response(server, &event, no_value_on_success),
                Err(e) => error_response(&trim_cause(e)),
            }
        }
        _ => match server.propose(Proposal::V2(v2)).await {
            Ok(applied) => match applied.response {
                ApplyResponse::V2(Some(Ok(event))) => {
                    event_response(server, &event, no_value_on_success)
                }
                ApplyResponse::V2(Some(Err(e))) => error_response(&trim_cause(e)),
                other => error_response(&V2Error::new(
                    code::RAFT_INTERNAL,
                    format!("received response with no Event/Watcher: {other:?}"),
                    0,
                )),
            },
            Err(e) => error_response(&V2Error::new(code::RAFT_INTERNAL, e.to_string(), 0)),
        },
    }
}

/// etcd's parseKeyRequest.
async fn parse(req: Request, decoded_path: &str) -> Result<KeyRequest, V2Error> {
    let invalid = |field: &str| {
        V2Error::request(
            code::INVALID_FIELD,
            format!("invalid value for \"{field}\""),
        )
    };
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_string);
    let body = read_form_body(req).await?;
    let (form, form_error) = Form::parse(query.as_deref(), body.as_deref());
    if let Some(e) = form_error {
        return Err(V2Error::request(code::INVALID_FORM, e));
    }
    let key = decoded_path
        .strip_prefix(KEYS_ROUTE)
        .ok_or_else(|| V2Error::request(code::INVALID_FORM, "incorrect key prefix"))?;
    let path = crate::v2::path::join(KEYS_PREFIX, key);
    // The path is clean (unclean ones were redirected), so it stays in the keys namespace.
    if !(path == KEYS_PREFIX || path.starts_with(&format!("{KEYS_PREFIX}/"))) {
        return Err(V2Error::request(code::INVALID_FORM, "incorrect key prefix"));
    }

    let prev_index = form
        .uint("prevIndex")
        .map_err(|_| V2Error::request(code::INDEX_NAN, "invalid value for \"prevIndex\""))?;
    let wait_index = form
        .uint("waitIndex")
        .map_err(|_| V2Error::request(code::INDEX_NAN, "invalid value for \"waitIndex\""))?;
    let recursive = form.bool("recursive").map_err(|_| invalid("recursive"))?;
    let sorted = form.bool("sorted").map_err(|_| invalid("sorted"))?;
    let wait = form.bool("wait").map_err(|_| invalid("wait"))?;
    let dir = form.bool("dir").map_err(|_| invalid("dir"))?;
    let quorum = form.bool("quorum").map_err(|_| invalid("quorum"))?;
    let stream = form.bool("stream").map_err(|_| invalid("stream"))?;
    if wait && method != Method::GET {
        return Err(V2Error::request(
            code::INVALID_FIELD,
            "\"wait\" can only be used with GET requests",
        ));
    }
    let prev_value = form.value("prevValue").to_string();
    if form.has("prevValue") && prev_value.is_empty() {
        return Err(V2Error::request(
            code::PREV_VALUE_REQUIRED,
            "\"prevValue\" cannot be empty",
        ));
    }
    let no_value_on_success = form
        .bool("noValueOnSuccess")
        .map_err(|_| invalid("noValueOnSuccess"))?;
    let ttl = if form.value("ttl").is_empty() {
        None
    } else {
        Some(
            form.uint("ttl")
                .map_err(|_| V2Error::request(code::TTL_NAN, "invalid value for \"ttl\""))?,
        )
    };
    let prev_exist =
        if form.has("prevExist") {
            Some(form.bool("prevExist").map_err(|_| {
                V2Error::request(code::INVALID_FIELD, "invalid value for prevExist")
            })?)
        } else {
            None
        };
    let refresh = if form.has("refresh") {
        let refresh = form
            .bool("refresh")
            .map_err(|_| V2Error::request(code::INVALID_FIELD, "invalid value for refresh"))?;
        if refresh {
            if form.has("value") && !form.value("value").is_empty() {
                return Err(V2Error::request(
                    code::REFRESH_VALUE,
                    "A value was provided on a refresh",
                ));
            }
            if ttl.is_none() {
                return Err(V2Error::request(
                    code::REFRESH_TTL_REQUIRED,
                    "No TTL value set",
                ));
            }
        }
        Some(refresh)
    } else {
        None
    };
    let expiration = match ttl {
        None => 0,
        Some(secs) => {
            // Saturates where Go's would overflow: a TTL past the year 2262 is "far away".
            let at = SystemTime::now()
                .checked_add(Duration::from_secs(secs))
                .map_or(i64::MAX, unix_nanos);
            at.max(1)
        }
    };
    Ok(KeyRequest {
        v2: V2Request {
            id: 0,
            method: method.as_str().to_string(),
            path,
            val: form.value("value").to_string(),
            dir,
            prev_value,
            prev_index,
            prev_exist,
            expiration,
            wait,
            since: wait_index,
            recursive,
            sorted,
            quorum,
            time: 0,
            stream,
            refresh,
        },
        no_value_on_success,
    })
}

/// The body of a PUT or POST with a form content type (Go reads no other).
async fn read_form_body(req: Request) -> Result<Option<Vec<u8>>, V2Error> {
    if !matches!(*req.method(), Method::PUT | Method::POST) {
        return Ok(None);
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|ct| ct == "application/x-www-form-urlencoded");
    if !is_form {
        return Ok(None);
    }
    match axum::body::to_bytes(req.into_body(), FORM_BYTES_MAX).await {
        Ok(bytes) => Ok(Some(bytes.to_vec())),
        Err(_) => Err(V2Error::request(code::INVALID_FORM, "http: POST too large")),
    }
}

/// The v2 store's paths carry the `/1` namespace; answers show keys without it.
fn trim_cause(mut e: V2Error) -> V2Error {
    if let Some(rest) = e.cause.strip_prefix(KEYS_PREFIX) {
        e.cause = rest.to_string();
    }
    e
}

fn raft_headers(server: &EtcdServer, headers: &mut HeaderMap, etcd_index: u64) {
    for (name, value) in [
        ("x-etcd-index", etcd_index),
        ("x-raft-index", server.commit_index()),
        ("x-raft-term", server.term()),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
}

fn event_response(server: &EtcdServer, event: &Event, no_value_on_success: bool) -> Response {
    use crate::v2::event::Action;
    let hide_nodes = no_value_on_success
        && matches!(
            event.action,
            Action::Set | Action::CompareAndSwap | Action::Create | Action::Update
        );
    let status = if event.is_created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        event.to_json(KEYS_PREFIX, !hide_nodes),
    )
        .into_response();
    raft_headers(server, response.headers_mut(), event.etcd_index);
    response
}

pub fn error_response(e: &V2Error) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        e.to_json(),
    )
        .into_response();
    response
        .headers_mut()
        .insert("x-etcd-index", HeaderValue::from(e.index));
    response
}

/// `?wait=true`: headers at once, then the first matching event (or, with `stream`, each
/// one as it happens) as a JSON line. The watch ends when the client leaves, or when it fell
/// so far behind that its queue was dropped.
async fn watch(server: &Arc<EtcdServer>, req: &V2Request) -> Response {
    let watcher = match server
        .v2
        .watch(&req.path, req.recursive, req.stream, req.since)
    {
        Ok(w) => w,
        Err(e) => return error_response(&trim_cause(e)),
    };
    let start_index = watcher.start_index;
    let body = Body::from_stream(futures::stream::unfold(
        (watcher, req.stream, false),
        |(mut watcher, stream, done): (Watcher, bool, bool)| async move {
            if done {
                return None;
            }
            let event = watcher.rx.recv().await?;
            let line = Bytes::from(event.to_json(KEYS_PREFIX, true));
            Some((
                Ok::<_, std::convert::Infallible>(line),
                (watcher, stream, !stream),
            ))
        },
    ));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    raft_headers(server, response.headers_mut(), start_index);
    response
}

/// A request the keys handler never reaches (a path that does not decode).
pub fn bad_request() -> Response {
    go_http_error(StatusCode::BAD_REQUEST, "400 Bad Request")
}
