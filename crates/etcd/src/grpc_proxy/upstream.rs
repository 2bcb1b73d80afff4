//! The members the proxy forwards to: one lazily dialled channel per `--endpoints` entry, the
//! one calls currently go to, and the metadata a forwarded call carries.

use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Metadata keys a client call carries that the member must see: the auth token and etcd's
/// "require a leader" marker. Nothing else is copied (transport headers belong to each hop).
const FORWARDED_METADATA: &[&str] = &["token", "authorization", "hasleader"];

pub struct Upstream {
    channels: Vec<Channel>,
    current: AtomicUsize,
    pub endpoints: Vec<String>,
    /// `--max-recv-bytes`: the largest answer taken from a member.
    pub max_recv: usize,
    /// `--max-send-bytes`: the largest request sent to a member.
    pub max_send: usize,
}

impl Upstream {
    /// `channels[i]` reaches `endpoints[i]`; there is at least one.
    pub fn new(
        channels: Vec<Channel>,
        endpoints: Vec<String>,
        max_recv: usize,
        max_send: usize,
    ) -> Upstream {
        assert!(
            !channels.is_empty() && channels.len() == endpoints.len(),
            "one channel per endpoint, at least one"
        );
        Upstream {
            channels,
            current: AtomicUsize::new(0),
            endpoints,
            max_recv,
            max_send,
        }
    }

    /// The channel calls go to now, and its index (for [`Upstream::failed`]).
    pub fn channel(&self) -> (usize, Channel) {
        let at = self.current.load(Ordering::Relaxed) % self.channels.len();
        (at, self.channels[at].clone())
    }

    /// The member at `at` could not be reached: the next call goes to the next one. A call is
    /// not retried by the proxy (a put may have been applied); the client retries as it would
    /// against a member.
    pub fn failed(&self, at: usize) {
        let _ = self
            .current
            .compare_exchange(at, at + 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Notes the outcome of a call made on the channel at `at`.
    pub fn observe<T>(&self, at: usize, result: &Result<T, Status>) {
        if let Err(status) = result {
            self.observe_error(at, status);
        }
    }

    /// Notes an error from the channel at `at`: an unreachable member is left for the next.
    pub fn observe_error(&self, at: usize, status: &Status) {
        if status.code() == Code::Unavailable {
            self.failed(at);
        }
    }
}

/// A client of the current member, with the proxy's message limits (`--max-recv-bytes`,
/// `--max-send-bytes`), and the channel's index for [`Upstream::observe`]:
/// `let (at, client) = upstream_client!(self.upstream, KvClient);`
macro_rules! upstream_client {
    ($upstream:expr, $client:ident) => {{
        let (at, channel) = $upstream.channel();
        let client = $client::new(channel)
            .max_decoding_message_size($upstream.max_recv)
            .max_encoding_message_size($upstream.max_send);
        (at, client)
    }};
}
pub(crate) use upstream_client;

/// One call to the current member, its outcome observed (an unreachable member is left for
/// the next call): `upstream_call!(self.upstream, KvClient, put(request))`.
macro_rules! upstream_call {
    ($upstream:expr, $client:ident, $method:ident($($arg:expr),*)) => {{
        let (at, mut client) = $crate::grpc_proxy::upstream::upstream_client!($upstream, $client);
        let result = client.$method($($arg),*).await;
        $upstream.observe(at, &result);
        result
    }};
}
pub(crate) use upstream_call;

/// A request to the member carrying `message` and the client's forwarded metadata.
pub fn outgoing<T>(incoming: &MetadataMap, message: T) -> Request<T> {
    let mut request = Request::new(message);
    copy_metadata(incoming, request.metadata_mut());
    request
}

pub fn copy_metadata(from: &MetadataMap, to: &mut MetadataMap) {
    for key in FORWARDED_METADATA {
        if let Some(value) = from.get(*key) {
            to.insert(*key, value.clone());
        }
    }
}

/// The client's auth token, if its call carries one.
pub fn token(incoming: &MetadataMap) -> Option<Vec<u8>> {
    incoming.get("token").map(|v| v.as_bytes().to_vec())
}
