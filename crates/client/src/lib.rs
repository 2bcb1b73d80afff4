//! A client for etcd's v3 API: connection setup (plain, TLS, unix sockets) and typed stubs
//! for every service, plus a few conveniences for the common calls.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_client::ClientError> {
//! let mut client = etcd_client::Client::connect(&["http://127.0.0.1:2379"], Default::default()).await?;
//! client.put("greeting", "hello").await?;
//! let resp = client.get("greeting").await?;
//! assert_eq!(resp.kvs[0].value, b"hello");
//! # Ok(()) }
//! ```

mod auth;
mod channel;
pub mod srv;

use std::time::Duration;

pub use auth::{Credentials, TokenInterceptor, TokenSlot, needs_new_token};
pub use channel::{ConnectOptions, connect_channel, lazy_channel};
use etcd_api::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RangeStreamResponse, auth_client::AuthClient, cluster_client::ClusterClient,
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    watch_client::WatchClient,
};
use etcd_api::v3electionpb::election_client::ElectionClient;
use etcd_api::v3lockpb::lock_client::LockClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Calls `$client.$stub.$method($req)`; when the token turned out expired or stale,
/// authenticates once and calls again.
macro_rules! retry_once {
    ($client:ident, $stub:ident . $method:ident ( $req:ident )) => {{
        let response = match $client.$stub.$method($req.clone()).await {
            Err(status) if $client.should_refresh(&status) => {
                $client.authenticate().await?;
                $client.$stub.$method($req).await?
            }
            other => other?,
        };
        Ok(response.into_inner())
    }};
}

/// The channel every stub uses: the connection, with the client's token added to requests.
pub type AuthedChannel = InterceptedService<Channel, TokenInterceptor>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
}

/// A connection to an etcd cluster with a stub for each v3 service. Stubs are cheap to clone
/// (they share the one channel).
#[derive(Clone)]
pub struct Client {
    pub kv: KvClient<AuthedChannel>,
    pub watch: WatchClient<AuthedChannel>,
    pub lease: LeaseClient<AuthedChannel>,
    pub cluster: ClusterClient<AuthedChannel>,
    pub maintenance: MaintenanceClient<AuthedChannel>,
    pub auth: AuthClient<AuthedChannel>,
    pub lock: LockClient<AuthedChannel>,
    pub election: ElectionClient<AuthedChannel>,
    /// The user this client authenticates as, and where its token lives.
    credentials: Option<(Credentials, TokenSlot)>,
}

/// Responses can be as large as the server allows; etcd's clients accept up to 2 GiB - 1.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;
/// The largest request sent, as etcd's clientv3 (`MaxCallSendMsgSize`, 2 MiB): a larger one
/// fails here rather than travel to a server that refuses it anyway.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

impl Client {
    pub async fn connect<S: AsRef<str>>(
        endpoints: &[S],
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        let channel = connect_channel(endpoints, &options).await?;
        Ok(Client::from_channel(channel))
    }

    pub fn from_channel(channel: Channel) -> Client {
        Client::with_token_slot(channel, None)
    }

    /// Connects, then authenticates as `credentials`; every request carries the token, and
    /// the convenience calls below authenticate again once when it expired or went stale.
    pub async fn connect_as<S: AsRef<str>>(
        endpoints: &[S],
        options: ConnectOptions,
        credentials: Credentials,
    ) -> Result<Client, ClientError> {
        let channel = connect_channel(endpoints, &options).await?;
        let slot = TokenSlot::default();
        let mut client = Client::with_token_slot(channel, Some(slot.clone()));
        client.credentials = Some((credentials, slot));
        client.authenticate().await?;
        Ok(client)
    }

    fn with_token_slot(channel: Channel, slot: Option<TokenSlot>) -> Client {
        let authed = InterceptedService::new(channel, TokenInterceptor::new(slot));
        Client {
            kv: KvClient::new(authed.clone())
                .max_decoding_message_size(MAX_RESPONSE_BYTES)
                .max_encoding_message_size(MAX_REQUEST_BYTES),
            watch: WatchClient::new(authed.clone())
                .max_decoding_message_size(MAX_RESPONSE_BYTES)
                .max_encoding_message_size(MAX_REQUEST_BYTES),
            lease: LeaseClient::new(authed.clone()).max_encoding_message_size(MAX_REQUEST_BYTES),
            cluster: ClusterClient::new(authed.clone())
                .max_encoding_message_size(MAX_REQUEST_BYTES),
            maintenance: MaintenanceClient::new(authed.clone())
                .max_decoding_message_size(MAX_RESPONSE_BYTES)
                .max_encoding_message_size(MAX_REQUEST_BYTES),
            auth: AuthClient::new(authed.clone()).max_encoding_message_size(MAX_REQUEST_BYTES),
            lock: LockClient::new(authed.clone()).max_encoding_message_size(MAX_REQUEST_BYTES),
            election: ElectionClient::new(authed).max_encoding_message_size(MAX_REQUEST_BYTES),
            credentials: None,
        }
    }

    /// Gets a fresh token for the client's user (nothing to do without one).
    pub async fn authenticate(&mut self) -> Result<(), ClientError> {
        let Some((credentials, slot)) = &self.credentials else {
            return Ok(());
        };
        let req = etcd_api::etcdserverpb::AuthenticateRequest {
            name: credentials.user.clone(),
            password: credentials.password.clone(),
        };
        let token = self.auth.authenticate(req).await?.into_inner().token;
        if !slot.set(&token) {
            return Err(ClientError::Status(tonic::Status::internal(
                "the server sent a token that is not ASCII",
            )));
        }
        Ok(())
    }

    /// Whether to authenticate again and retry after `status` (clientv3's behaviour).
    fn should_refresh(&self, status: &tonic::Status) -> bool {
        self.credentials.is_some() && needs_new_token(status)
    }

    pub async fn put(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse, ClientError> {
        let req = PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        retry_once!(self, kv.put(req))
    }

    /// A linearizable read of one key.
    pub async fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<RangeResponse, ClientError> {
        let req = RangeRequest {
            key: key.into(),
            ..Default::default()
        };
        retry_once!(self, kv.range(req))
    }

    /// A linearizable read of every key starting with `prefix`.
    pub async fn get_prefix(
        &mut self,
        prefix: impl Into<Vec<u8>>,
    ) -> Result<RangeResponse, ClientError> {
        let key = prefix.into();
        let req = RangeRequest {
            range_end: prefix_end(&key),
            key,
            ..Default::default()
        };
        retry_once!(self, kv.range(req))
    }

    /// `req` through `KV.RangeStream` (etcd 3.7), its chunks merged into the one answer
    /// Range gives (etcd's `GetStreamToGetResponse`): a member holds a chunk at a time, not
    /// the whole answer.
    pub async fn range_streamed(
        &mut self,
        req: RangeRequest,
    ) -> Result<RangeResponse, ClientError> {
        let result: Result<_, ClientError> = retry_once!(self, kv.range_stream(req));
        let mut chunks: tonic::Streaming<RangeStreamResponse> = result?;
        let mut merged = RangeResponse::default();
        while let Some(chunk) = chunks.message().await? {
            merge_range_chunk(&mut merged, chunk.range_response.unwrap_or_default());
        }
        Ok(merged)
    }

    pub async fn delete(
        &mut self,
        key: impl Into<Vec<u8>>,
    ) -> Result<DeleteRangeResponse, ClientError> {
        let req = DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        };
        retry_once!(self, kv.delete_range(req))
    }
}

/// proto.Merge of one RangeStream chunk into the answer so far: keys appended, the header,
/// `more` and `count` taken when set (the last chunk sets them).
pub fn merge_range_chunk(into: &mut RangeResponse, chunk: RangeResponse) {
    into.kvs.extend(chunk.kvs);
    if chunk.header.is_some() {
        into.header = chunk.header;
    }
    into.more |= chunk.more;
    if chunk.count != 0 {
        into.count = chunk.count;
    }
}

/// The range end that selects every key with this prefix (etcd's `GetPrefixRangeEnd`): the
/// prefix with its last byte below 0xff incremented and the rest dropped; `"\0"` (every key)
/// when the prefix is all 0xff or empty.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// How long a dial waits by default, as etcdctl's `--dial-timeout`.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_matches_etcd() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
