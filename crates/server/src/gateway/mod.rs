//! The JSON gateway (etcd's grpc-gateway): every v3 RPC as `POST /v3/<service>/<method>` with
//! a JSON body, under `/v3beta/` too, as etcd 3.4 serves it.
//!
//! Like etcd's, the gateway is a gRPC client of this member's own services: each request is
//! decoded from JSON, sent through the gRPC router in process (no socket, but the same
//! validation, auth, limits and errors as any gRPC client gets), and the answer encoded back.
//! The JSON is the protobuf JSON mapping generated from the protos (`etcd-api`, pbjson) with
//! proto field names, as etcd's gateway (`OrigName`) writes: 64-bit integers as strings, bytes
//! as base64, enums by name, default values left out.
//!
//! - Unary calls answer one JSON object; errors are `{"error","message","code"}` with the HTTP
//!   status grpc-gateway gives the gRPC code.
//! - Streams (watch, lease keep-alive, election observe, snapshot) read newline- or
//!   space-separated JSON requests from the body as it arrives and answer one
//!   `{"result": ...}` line per response, or `{"error": ...}` when the stream fails.
//! - The token is the `Authorization` header's value.
//! - Calls in flight are bounded by `--max-concurrent-streams`, as etcd's gateway is bounded by
//!   its one gRPC connection to the server: a call beyond it waits for one to finish.

mod routes;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tonic::Code;

/// The in-process "connection" to our own gRPC services.
pub type Channel = Router;

/// What every route shares.
#[derive(Clone)]
pub struct Gateway {
    grpc: Channel,
    /// One permit per call in flight (`--max-concurrent-streams`).
    streams: Arc<Semaphore>,
    /// The largest request body accepted (`--max-request-bytes` plus JSON's overhead).
    max_body_bytes: usize,
}

/// The routes, to merge into the client port's HTTP router.
pub fn router(grpc: Channel, max_concurrent_streams: u32, max_request_bytes: usize) -> Router {
    let permits = usize::try_from(max_concurrent_streams)
        .unwrap_or(Semaphore::MAX_PERMITS)
        .clamp(1, Semaphore::MAX_PERMITS);
    let gateway = Gateway {
        grpc,
        streams: Arc::new(Semaphore::new(permits)),
        // base64 grows bytes by a third; field names and quotes add a little more.
        max_body_bytes: max_request_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024),
    };
    routes::all(gateway)
}

/// A request as the in-process gRPC call takes it: the token from `Authorization`.
fn grpc_request<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| tonic::metadata::MetadataValue::try_from(v.as_bytes()).ok())
    {
        request.metadata_mut().insert("token", token);
    }
    request
}

/// Decodes a JSON request body; an empty body is the default request, as with grpc-gateway.
/// Like grpc-gateway's decoder, it reads the body's first JSON value and leaves whatever
/// follows unread (`{"key":"YQ=="}xyz` is a put of `a` in etcd, so it is here), and takes
/// `null` as the default request; bytes that are not UTF-8 become U+FFFD, as Go's decoder
/// makes them. The error is
/// the message of an InvalidArgument answer.
fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // Go's decoder takes bytes that are not UTF-8 inside a string as U+FFFD (and outside one
    // they are a syntax error either way); borrowed, no copy, when the body is valid.
    let text = String::from_utf8_lossy(body);
    let value = serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap_or(Ok(serde_json::Value::Null))
        .map_err(|e| e.to_string())?;
    // `null` decodes into a message as nothing at all: the default request.
    if value.is_null() {
        return Ok(T::default());
    }
    from_json_value(value)
}

/// A request from a parsed JSON value, with protobuf's JSON rules that the generated decoders
/// lack: a field set to `null` is a field left out (its default), as grpc-gateway's jsonpb
/// takes it. (Unknown fields are skipped by the decoders themselves.)
fn from_json_value<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, String> {
    fn drop_null_fields(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                fields.retain(|_, v| !v.is_null());
                fields.values_mut().for_each(drop_null_fields);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_fields),
            _ => {}
        }
    }
    drop_null_fields(&mut value);
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The headers of a successful answer, unary or streamed, as grpc-gateway writes them.
fn ok_headers() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (
            header::HeaderName::from_static("grpc-metadata-content-type"),
            HeaderValue::from_static("application/grpc"),
        ),
    ]
}

/// A successful unary answer.
fn json_response<T: Serialize>(message: &T) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => (StatusCode::OK, ok_headers(), body).into_response(),
        Err(e) => error_response(Code::Internal, &format!("cannot encode the answer: {e}")),
    }
}

/// grpc-gateway's error body and HTTP status for a gRPC error.
fn error_response(code: Code, message: &str) -> Response {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
        message: &'a str,
        code: i32,
    }
    let body = serde_json::to_vec(&ErrorBody {
        error: message,
        message,
        code: code as i32,
    })
    .unwrap_or_default();
    (
        http_status(code),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// grpc-gateway's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Gateway {
    /// A whole request body, within the size limit, decoded; the error is the message of an
    /// InvalidArgument answer.
    fn decode_body<Req: DeserializeOwned + Default>(&self, body: &[u8]) -> Result<Req, String> {
        if body.len() > self.max_body_bytes {
            return Err("etcdserver: request is too large".to_string());
        }
        decode(body)
    }

    /// One unary call: JSON in, the call through our gRPC services, JSON out.
    async fn unary<Req, Resp, F, Fut>(&self, headers: HeaderMap, body: Bytes, call: F) -> Response
    where
        Req: DeserializeOwned + Default,
        Resp: Serialize,
        F: FnOnce(Channel, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let request: Req = match self.decode_body(&body) {
            Ok(r) => r,
            Err(why) => return error_response(Code::InvalidArgument, &why),
        };
        let Ok(_permit) = self.streams.acquire().await else {
            return error_response(Code::Unavailable, "etcdserver: server stopped");
        };
        match call(self.grpc.clone(), grpc_request(&headers, request)).await {
            Ok(response) => json_response(response.get_ref()),
            Err(status) => error_response(status.code(), status.message()),
        }
    }
}

#[cfg(test)]
mod tests;
