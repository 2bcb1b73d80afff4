//! `grpc_server_started_total` and `grpc_server_handled_total`, as go-grpc-prometheus counts
//! them: a call is started when its request arrives and handled when its status is known,
//! from the response headers (trailers-only answers) or the trailers at the end of its body;
//! a call whose client went away before the end is `Canceled`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};

use super::Metrics;

/// go-grpc-prometheus's kind of a method.
fn grpc_type(method: &str) -> &'static str {
    match method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" | "Observe" => "server_stream",
        _ => "unary",
    }
}

/// grpc-go's name of a status code, as the `grpc_code` label spells it.
fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "Canceled",
        b"2" => "Unknown",
        b"3" => "InvalidArgument",
        b"4" => "DeadlineExceeded",
        b"5" => "NotFound",
        b"6" => "AlreadyExists",
        b"7" => "PermissionDenied",
        b"8" => "ResourceExhausted",
        b"9" => "FailedPrecondition",
        b"10" => "Aborted",
        b"11" => "OutOfRange",
        b"12" => "Unimplemented",
        b"13" => "Internal",
        b"14" => "Unavailable",
        b"15" => "DataLoss",
        b"16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// One call's labels, recorded once.
struct Call {
    metrics: Arc<Metrics>,
    service: String,
    method: String,
    done: bool,
}

impl Call {
    fn handled(&mut self, code: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        self.metrics
            .grpc_handled
            .with_label_values(&[code, &self.method, &self.service, grpc_type(&self.method)])
            .inc();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The body was dropped before its trailers: the client cancelled.
        self.handled("Canceled");
    }
}

/// The middleware on the gRPC router.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let Some((service, method)) = request
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(s, m)| (s.to_string(), m.to_string()))
    else {
        return next.run(request).await;
    };
    metrics
        .grpc_started
        .with_label_values(&[&method, &service, grpc_type(&method)])
        .inc();
    let mut call = Call {
        metrics,
        service,
        method,
        done: false,
    };
    let response = next.run(request).await;
    if let Some(code) = response.headers().get("grpc-status") {
        call.handled(code_name(code.as_bytes()));
        return response;
    }
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(Tracked { inner: body, call }))
}

/// A response body that records the call's status from its trailers.
struct Tracked {
    inner: Body,
    call: Call,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .map_or("OK", |c| code_name(c.as_bytes()));
                    self.call.handled(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.call.handled("Unknown"),
            Poll::Ready(None) => self.call.handled("OK"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_grpc_gos() {
        assert_eq!(code_name(b"1"), "Canceled");
        assert_eq!(code_name(b"16"), "Unauthenticated");
        assert_eq!(grpc_type("Watch"), "bidi_stream");
        assert_eq!(grpc_type("Range"), "unary");
    }
}
