//! Streaming calls through the gateway: requests read from the HTTP body as JSON values arrive
//! (a body that never ends is read as it comes, never buffered past the request size limit),
//! responses written as `{"result": ...}` lines, a failure as one `{"error": ...}` line.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::{Channel, Gateway, error_response, grpc_request, http_status, ok_headers};

/// Requests parsed but not yet taken by the call, and response lines not yet sent.
const QUEUE: usize = 16;

/// grpc-gateway's stream error object.
#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}

fn error_line(code: Code, message: &str) -> Bytes {
    let status = http_status(code);
    #[derive(Serialize)]
    struct Line<'a> {
        error: StreamError<'a>,
    }
    let line = Line {
        error: StreamError {
            grpc_code: code as i32,
            http_code: status.as_u16(),
            message,
            http_status: status.canonical_reason().unwrap_or(""),
        },
    };
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn result_line<T: Serialize>(message: &T) -> Result<Bytes, String> {
    #[derive(Serialize)]
    struct Line<'a, T> {
        result: &'a T,
    }
    let mut bytes = serde_json::to_vec(&Line { result: message }).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

/// Reads JSON values from `body` into `requests` as they complete. A value that does not
/// parse, or a body past `max_bytes` without a complete value, is reported on `failed`.
async fn read_requests<Req: DeserializeOwned>(
    body: Body,
    requests: mpsc::Sender<Req>,
    failed: mpsc::Sender<String>,
    max_bytes: usize,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunks = body.into_data_stream();
    loop {
        let chunk = match chunks.next().await {
            Some(Ok(data)) => data,
            Some(Err(e)) => {
                let _ = failed.send(format!("reading the request: {e}")).await;
                return;
            }
            None => break,
        };
        buf.extend_from_slice(&chunk);
        let mut values =
            serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
        loop {
            match values.next() {
                Some(Ok(value)) => {
                    let request = match super::from_json_value(value) {
                        Ok(request) => request,
                        Err(e) => {
                            let _ = failed.send(e).await;
                            return;
                        }
                    };
                    if requests.send(request).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    let _ = failed.send(e.to_string()).await;
                    return;
                }
                None => break,
            }
        }
        let used = values.byte_offset();
        buf.drain(..used);
        if buf.len() > max_bytes {
            let _ = failed
                .send("etcdserver: request is too large".to_string())
                .await;
            return;
        }
    }
    if !buf.iter().all(u8::is_ascii_whitespace) {
        let _ = failed
            .send("unexpected end of JSON input".to_string())
            .await;
    }
}

#[cfg(test)]
pub(super) async fn read_requests_for_tests<Req: DeserializeOwned>(
    body: Body,
    requests: mpsc::Sender<Req>,
    failed: mpsc::Sender<String>,
    max_bytes: usize,
) {
    read_requests(body, requests, failed, max_bytes).await
}

/// The answer: response lines as they come, until the call ends, fails, or the client goes.
fn stream_response<Resp: Serialize + Send + 'static>(
    mut responses: tonic::Streaming<Resp>,
    mut failed: mpsc::Receiver<String>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let (lines, out) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(QUEUE);
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            // An error line is the last one.
            let (line, last) = tokio::select! {
                next = responses.next() => match next {
                    Some(Ok(message)) => match result_line(&message) {
                        Ok(line) => (line, false),
                        Err(e) => (error_line(Code::Internal, &e), true),
                    },
                    Some(Err(status)) => (error_line(status.code(), status.message()), true),
                    None => return,
                },
                Some(why) = failed.recv() => (error_line(Code::InvalidArgument, &why), true),
            };
            if lines.send(Ok(line)).await.is_err() || last {
                return;
            }
        }
    });
    (
        StatusCode::OK,
        ok_headers(),
        Body::from_stream(ReceiverStream::new(out)),
    )
        .into_response()
}

impl Gateway {
    /// A bidirectional stream (watch, lease keep-alive).
    pub(super) async fn bidi<Req, Resp, F, Fut>(
        &self,
        headers: HeaderMap,
        body: Body,
        call: F,
    ) -> Response
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: FnOnce(Channel, tonic::Request<ReceiverStream<Req>>) -> Fut,
        Fut: std::future::Future<
                Output = Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>,
            >,
    {
        let Ok(permit) = self.streams.clone().acquire_owned().await else {
            return error_response(Code::Unavailable, "etcdserver: server stopped");
        };
        let (requests, requests_rx) = mpsc::channel(QUEUE);
        let (failed, failed_rx) = mpsc::channel(1);
        tokio::spawn(read_requests(body, requests, failed, self.max_body_bytes));
        let request = grpc_request(&headers, ReceiverStream::new(requests_rx));
        match call(self.grpc.clone(), request).await {
            Ok(response) => stream_response(response.into_inner(), failed_rx, permit),
            Err(status) => error_response(status.code(), status.message()),
        }
    }

    /// A server stream (election observe, snapshot): one JSON request, many answers.
    pub(super) async fn server_stream<Req, Resp, F, Fut>(
        &self,
        headers: HeaderMap,
        body: Bytes,
        call: F,
    ) -> Response
    where
        Req: DeserializeOwned + Default,
        Resp: Serialize + Send + 'static,
        F: FnOnce(Channel, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<
                Output = Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>,
            >,
    {
        let request: Req = match self.decode_body(&body) {
            Ok(r) => r,
            Err(why) => return error_response(Code::InvalidArgument, &why),
        };
        let Ok(permit) = self.streams.clone().acquire_owned().await else {
            return error_response(Code::Unavailable, "etcdserver: server stopped");
        };
        let (_no_failures, failed_rx) = mpsc::channel(1);
        match call(self.grpc.clone(), grpc_request(&headers, request)).await {
            Ok(response) => stream_response(response.into_inner(), failed_rx, permit),
            Err(status) => error_response(status.code(), status.message()),
        }
    }
}
