//! A bound on the memory that large Range answers take at once (issue 17, etcd 12678: a
//! list of everything by many clients at a time runs a member out of memory).
//!
//! A Range answer exists twice while it is sent: its records as read, then their encoding,
//! held until the client has taken it. Without a bound, twenty clients listing 1 GiB each hold
//! 40 GiB. So a range whose answer is estimated above `SMALL_ANSWER_BYTES` first takes its
//! estimated size, in KiB, from one budget of `BUDGET_BYTES` (all of it when larger), waits
//! while the budget is taken, and gives it back only when the last byte of its answer has
//! left (the permit rides in the response's extensions; `hold_until_sent` moves it into the
//! body). Answers in flight are then bounded by the budget or by one answer, whichever is
//! larger, however many clients ask; small reads never wait.
//!
//! Each range takes all its permits at once (never some, then more), so two ranges can never
//! wait on each other. The estimate comes from the store (`Store::range_within`: the planned
//! records, a sample of their sizes), which answers small ranges in the same read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The answers in flight at once, when they are large.
pub const BUDGET_BYTES: u64 = 256 << 20;
/// Answers estimated below this are not counted: single keys and small lists never wait.
pub const SMALL_ANSWER_BYTES: u64 = 1 << 20;

pub struct ReadBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

/// A range's share of the budget, given back when dropped.
#[derive(Clone)]
pub struct ReadPermit(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl ReadBudget {
    pub fn new(total_bytes: u64) -> ReadBudget {
        let total_kib = u32::try_from(total_bytes / 1024).unwrap_or(u32::MAX).max(1);
        ReadBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Waits until an answer of about `estimate_bytes` may be read; `None` for a small one.
    pub async fn admit(&self, estimate_bytes: u64) -> Option<ReadPermit> {
        if estimate_bytes < SMALL_ANSWER_BYTES {
            return None;
        }
        let kib = u32::try_from(estimate_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        // The semaphore is never closed: acquiring fails only on a closed one.
        let permit = self.permits.clone().acquire_many_owned(kib).await.ok()?;
        Some(ReadPermit(Arc::new(permit)))
    }

    /// KiB of the budget free now (for tests and metrics).
    pub fn available_kib(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The pieces a held answer is handed to HTTP/2 in. hyper asks a body for its next piece only
/// once the connection can take more, but sends a piece whole into h2's queue: tonic encodes a
/// message as one piece, so an answer of 1 GiB would be "sent" (and its budget given back)
/// the moment it was encoded. Handed over in these pieces, the body ends only when all but
/// the last piece has gone out to the client.
const PIECE_BYTES: usize = 64 << 10;

/// Middleware on the gRPC router: a response carrying a [`ReadPermit`] keeps it until its
/// body has been sent or dropped (the client gone).
///
/// Its body's first frame, which encodes the whole answer (tens of milliseconds for tens of
/// MiB), is made on the blocking pool: on an async worker it would hold up every task
/// queued behind it there, the watch events of this connection and others among them (etcd
/// 15402: watch events starved by large range answers on the same connection).
pub async fn hold_until_sent(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let Some(permit) = response.extensions_mut().remove::<ReadPermit>() else {
        return response;
    };
    let (parts, mut body) = response.into_parts();
    let encoding = tokio::task::spawn_blocking(move || {
        let first = futures::executor::block_on(std::future::poll_fn(|cx| {
            hyper::body::Body::poll_frame(Pin::new(&mut body), cx)
        }));
        (first, body)
    });
    Response::from_parts(
        parts,
        Body::new(Held {
            source: Source::Encoding(encoding),
            pending: axum::body::Bytes::new(),
            _permit: permit,
        }),
    )
}

type FirstFrame = Option<Result<Frame<axum::body::Bytes>, axum::Error>>;

/// Where a held answer's frames come from.
enum Source {
    /// The first frame being made on the blocking pool; then the body, for the rest.
    Encoding(tokio::task::JoinHandle<(FirstFrame, Body)>),
    Body(Body),
    /// The encoding task failed; the answer ends.
    Failed,
}

struct Held {
    source: Source,
    /// What is left of the last data frame, handed over `PIECE_BYTES` at a time.
    pending: axum::body::Bytes,
    _permit: ReadPermit,
}

impl hyper::body::Body for Held {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.pending.is_empty() {
            let next = match &mut this.source {
                Source::Encoding(task) => match Pin::new(task).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok((first, body))) => {
                        this.source = Source::Body(body);
                        first
                    }
                    Poll::Ready(Err(e)) => {
                        this.source = Source::Failed;
                        return Poll::Ready(Some(Err(axum::Error::new(e))));
                    }
                },
                Source::Body(body) => match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(next) => next,
                },
                Source::Failed => return Poll::Ready(None),
            };
            match next {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let piece = this.pending.split_to(PIECE_BYTES.min(this.pending.len()));
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty()
            && match &self.source {
                Source::Encoding(_) => false,
                Source::Body(body) => body.is_end_stream(),
                Source::Failed => true,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let Source::Body(body) = &self.source else {
            return SizeHint::default();
        };
        let mut hint = SizeHint::new();
        let inner = body.size_hint();
        let pending = self.pending.len() as u64;
        hint.set_lower(inner.lower().saturating_add(pending));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(pending));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn small_answers_take_nothing() {
        let budget = ReadBudget::new(4 << 20);
        assert!(budget.admit(SMALL_ANSWER_BYTES - 1).await.is_none());
        assert_eq!(budget.available_kib(), 4096);
    }

    #[tokio::test]
    async fn large_answers_share_the_budget_and_wait_for_it() {
        let budget = Arc::new(ReadBudget::new(4 << 20));
        let first = budget.admit(3 << 20).await.expect("a permit");
        assert_eq!(budget.available_kib(), 1024);
        // Larger than the budget: takes all of it, so waits for the first to finish.
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.admit(64 << 20).await })
        };
        tokio::time::timeout(Duration::from_millis(50), async {
            while !waiting.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect_err("must wait while the budget is taken");
        drop(first);
        let second = waiting.await.unwrap().expect("a permit");
        assert_eq!(budget.available_kib(), 0);
        drop(second);
        assert_eq!(budget.available_kib(), 4096);
    }

    #[tokio::test]
    async fn a_large_answer_is_handed_over_in_pieces_with_its_trailers_after() {
        use http_body_util::BodyExt;
        let budget = ReadBudget::new(4 << 20);
        let permit = budget.admit(2 << 20).await.unwrap();
        let data = axum::body::Bytes::from(vec![7u8; PIECE_BYTES * 2 + 5]);
        let mut trailers = axum::http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames = futures::stream::iter(vec![
            Ok::<_, axum::Error>(Frame::data(data.clone())),
            Ok(Frame::trailers(trailers)),
        ]);
        let mut held = Held {
            source: Source::Body(Body::new(http_body_util::StreamBody::new(frames))),
            pending: axum::body::Bytes::new(),
            _permit: permit,
        };
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        let mut saw_trailers = false;
        while let Some(frame) = held.frame().await {
            let frame = frame.unwrap();
            if let Some(piece) = frame.data_ref() {
                assert!(!saw_trailers, "data after the trailers");
                sizes.push(piece.len());
                got.extend_from_slice(piece);
            } else {
                saw_trailers = frame.trailers_ref().is_some();
            }
        }
        assert_eq!(sizes, vec![PIECE_BYTES, PIECE_BYTES, 5]);
        assert_eq!(got, data.to_vec());
        assert!(saw_trailers);
        assert_eq!(budget.available_kib(), 2048, "held until dropped");
        drop(held);
        assert_eq!(budget.available_kib(), 4096);
    }

    #[tokio::test]
    async fn a_permit_is_held_until_the_body_is_dropped() {
        use tower::ServiceExt;
        let budget = Arc::new(ReadBudget::new(4 << 20));
        let permit = budget.admit(2 << 20).await.unwrap();
        let router = axum::Router::new()
            .route(
                "/r",
                axum::routing::get(move || {
                    let permit = permit.clone();
                    async move {
                        let mut response = Response::new(Body::from("answer"));
                        response.extensions_mut().insert(permit);
                        response
                    }
                }),
            )
            .layer(axum::middleware::from_fn(hold_until_sent));
        let response = router
            .oneshot(Request::get("/r").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(response.extensions().get::<ReadPermit>().is_none());
        // The router (and the handler's clone) went with `oneshot`: only the body holds it.
        assert_eq!(budget.available_kib(), 2048);
        drop(response);
        assert_eq!(budget.available_kib(), 4096);
    }

    /// On a runtime with one thread, the held answer's first frame waits (blocking its
    /// thread) for a task of that runtime to let it go: made on the runtime's thread it
    /// would wait for a task that cannot run, and time out.
    #[tokio::test(flavor = "current_thread")]
    async fn the_answer_is_encoded_off_the_async_workers() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let budget = ReadBudget::new(4 << 20);
        let permit = budget.admit(2 << 20).await.unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = std::sync::Mutex::new(Some(released));
        let frames = futures::stream::poll_fn(move |_| {
            let Some(released) = released.lock().unwrap().take() else {
                return Poll::Ready(None);
            };
            let frame = released
                .recv_timeout(std::time::Duration::from_secs(10))
                .map(|()| Frame::data(axum::body::Bytes::from_static(b"answer")))
                .map_err(axum::Error::new);
            Poll::Ready(Some(frame))
        });
        let body = Arc::new(std::sync::Mutex::new(Some(Body::new(
            http_body_util::StreamBody::new(frames),
        ))));
        let router = axum::Router::new()
            .route(
                "/r",
                axum::routing::get(move || {
                    let mut response = Response::new(body.lock().unwrap().take().unwrap());
                    response.extensions_mut().insert(permit.clone());
                    async move { response }
                }),
            )
            .layer(axum::middleware::from_fn(hold_until_sent));
        let response = router
            .oneshot(Request::get("/r").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let reader = tokio::spawn(async move { response.into_body().collect().await });
        let releaser = tokio::spawn(async move {
            tokio::task::yield_now().await;
            release.send(()).unwrap();
        });
        let answer = reader.await.unwrap().expect("the answer, not a timeout");
        assert_eq!(answer.to_bytes().as_ref(), b"answer");
        releaser.await.unwrap();
    }
}
