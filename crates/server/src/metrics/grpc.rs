//! `grpc_server_started_total` and `grpc_server_handled_total`, as go-grpc-prometheus counts
//! them: a call is started when its request arrives and handled when its status is known,
//! from the response headers (trailers-only answers) or the trailers at the end of its body;
//! a call whose client went away before the end is `Canceled`. With `--metrics extensive`,
//! also `grpc_server_handling_seconds`, the time from request to status, as etcd enables
//! go-grpc-prometheus's handling-time histogram.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};

use super::Metrics;

/// Every method of the client port's services, which go-grpc-prometheus lists from the start
/// (at zero) so a scrape shows them before any call.
pub const METHODS: &[(&str, &[&str])] = &[
    (
        "etcdserverpb.KV",
        &["Range", "Put", "DeleteRange", "Txn", "Compact"],
    ),
    ("etcdserverpb.Watch", &["Watch"]),
    (
        "etcdserverpb.Lease",
        &[
            "LeaseGrant",
            "LeaseRevoke",
            "LeaseKeepAlive",
            "LeaseTimeToLive",
            "LeaseLeases",
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            "MemberAdd",
            "MemberRemove",
            "MemberUpdate",
            "MemberList",
            "MemberPromote",
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            "Alarm",
            "Status",
            "Defragment",
            "Hash",
            "HashKV",
            "Snapshot",
            "MoveLeader",
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
    ("v3lockpb.Lock", &["Lock", "Unlock"]),
    (
        "v3electionpb.Election",
        &["Campaign", "Proclaim", "Leader", "Observe", "Resign"],
    ),
];

/// grpc-go's code names, in code order.
pub const CODE_NAMES: &[&str] = &[
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// go-grpc-prometheus's kind of a method.
pub fn grpc_type(method: &str) -> &'static str {
    match method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" | "Observe" | "RangeStream" => "server_stream",
        _ => "unary",
    }
}

/// The index in [`CODE_NAMES`] of a `grpc-status` value (Unknown for anything else).
fn code_index(code: &[u8]) -> usize {
    std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c < CODE_NAMES.len())
        .unwrap_or(UNKNOWN)
}

const OK: usize = 0;
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// One method's counters, resolved from their labels once: counting a call then costs
/// atomic adds only, no allocation and no label lookup.
pub struct MethodCounters {
    started: prometheus::IntCounter,
    /// By code, in [`CODE_NAMES`] order.
    handled: Vec<prometheus::IntCounter>,
    /// With `--metrics extensive`.
    handling: Option<prometheus::Histogram>,
}

impl MethodCounters {
    pub fn new(metrics: &Metrics, service: &str, method: &str) -> MethodCounters {
        let kind = grpc_type(method);
        MethodCounters {
            started: metrics
                .grpc_started
                .with_label_values(&[method, service, kind]),
            handled: CODE_NAMES
                .iter()
                .map(|code| {
                    metrics
                        .grpc_handled
                        .with_label_values(&[code, method, service, kind])
                })
                .collect(),
            handling: metrics
                .grpc_handling
                .as_ref()
                .map(|h| h.with_label_values(&[method, service, kind])),
        }
    }
}

/// One call's counters, its status recorded once.
struct Call {
    counters: Arc<MethodCounters>,
    sent_bytes: prometheus::IntCounter,
    done: bool,
    /// When the request arrived, if its handling time is measured.
    started: Option<Instant>,
}

impl Call {
    fn handled(&mut self, code: usize) {
        if self.done {
            return;
        }
        self.done = true;
        self.counters.handled[code].inc();
        if let (Some(histogram), Some(started)) = (&self.counters.handling, self.started) {
            histogram.observe(started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The body was dropped before its trailers: the client cancelled.
        self.handled(CANCELED);
    }
}

/// The middleware on the gRPC router.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let counters = match metrics.grpc_methods.get(path) {
        Some(counters) => counters.clone(),
        // Not one of our methods (answered Unimplemented): labelled as asked, as
        // go-grpc-prometheus does.
        None => match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
            Some((service, method)) => Arc::new(MethodCounters::new(&metrics, service, method)),
            None => return next.run(request).await,
        },
    };
    counters.started.inc();
    let started = counters.handling.as_ref().map(|_| Instant::now());
    let mut call = Call {
        counters,
        sent_bytes: metrics.grpc_sent_bytes.clone(),
        done: false,
        started,
    };
    // Bytes received: the request body as the service reads it.
    let received = metrics.grpc_received_bytes.clone();
    let request = request.map(|body| {
        Body::new(Counted {
            inner: body,
            counter: received,
        })
    });
    let response = next.run(request).await;
    if let Some(code) = response.headers().get("grpc-status") {
        call.handled(code_index(code.as_bytes()));
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
                if let Some(data) = frame.data_ref() {
                    self.call.sent_bytes.inc_by(data.len() as u64);
                }
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .map_or(OK, |c| code_index(c.as_bytes()));
                    self.call.handled(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.call.handled(UNKNOWN),
            Poll::Ready(None) => self.call.handled(OK),
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

/// A request body that counts the bytes read from it.
struct Counted {
    inner: Body,
    counter: prometheus::IntCounter,
}

impl hyper::body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
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
        assert_eq!(CODE_NAMES[code_index(b"1")], "Canceled");
        assert_eq!(CODE_NAMES[code_index(b"16")], "Unauthenticated");
        assert_eq!(CODE_NAMES[code_index(b"99")], "Unknown");
        assert_eq!(grpc_type("Watch"), "bidi_stream");
        assert_eq!(grpc_type("Range"), "unary");
    }
}
