//! Running a benchmark: connections and clients, the rate limiter, the progress bar, and
//! collecting each request's latency.
//!
//! As etcd's benchmark: `--conns` connections are opened and client `i` uses connection
//! `i % conns`; clients take the next request from one shared generator, and each sends its
//! next request only after the previous one answered. Connections and their clients are spread
//! over one single-threaded runtime per core (see [`Clients`]).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest,
    StatusRequest, TxnRequest,
};
use etcd_client::{Client, ConnectOptions};
use tokio::sync::mpsc;

use crate::report::{Sample, Stats};

/// Opens a watch stream fed by `requests`. etcd's server sends a stream's response headers,
/// which the call waits for, only with its first message: the caller queues its first
/// request (or starts what sends it) before calling, or the call waits forever.
pub async fn open_watch(
    client: &mut Client,
    requests: mpsc::Receiver<etcd_api::etcdserverpb::WatchRequest>,
) -> Result<tonic::Streaming<etcd_api::etcdserverpb::WatchResponse>, tonic::Status> {
    let call = client
        .watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(requests));
    Ok(call.await?.into_inner())
}

/// Opens a keep-alive stream fed by `requests`; the first request must be queued first, as
/// for [`open_watch`].
pub async fn open_keep_alive(
    client: &mut Client,
    requests: mpsc::Receiver<LeaseKeepAliveRequest>,
) -> Result<tonic::Streaming<etcd_api::etcdserverpb::LeaseKeepAliveResponse>, tonic::Status> {
    let call = client
        .lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(requests));
    Ok(call.await?.into_inner())
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Client(#[from] etcd_client::ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("no leader found among endpoints {0:?}")]
    NoLeader(Vec<String>),
}

/// How to reach the cluster (the global flags).
#[derive(Clone)]
pub struct ConnectConfig {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub target_leader: bool,
    pub options: ConnectOptions,
    /// `--user`: every client authenticates as this user.
    pub credentials: Option<etcd_client::Credentials>,
}

/// A client for these endpoints, authenticated when the benchmark runs as a user.
pub async fn connect<S: AsRef<str>>(
    endpoints: &[S],
    options: ConnectOptions,
    credentials: Option<etcd_client::Credentials>,
) -> Result<Client, etcd_client::ClientError> {
    match credentials {
        Some(c) => Client::connect_as(endpoints, options, c).await,
        None => Client::connect(endpoints, options).await,
    }
}

/// Endpoints as given, with `http://` (`https://` when TLS is configured) added to a bare
/// `host:port`, as etcd's client does.
pub fn normalize_endpoints(endpoints: &[String], tls: bool) -> Vec<String> {
    let scheme = if tls { "https" } else { "http" };
    endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.contains("://") {
                e.to_string()
            } else {
                format!("{scheme}://{e}")
            }
        })
        .collect()
}

/// Which client uses which connection: client `i` shares connection `i % conns`.
pub fn connection_of_client(client: usize, conns: usize) -> usize {
    client % conns.max(1)
}

/// The endpoint of the current leader, found by asking each endpoint for its status.
async fn leader_endpoint(config: &ConnectConfig) -> Result<String, BenchError> {
    for endpoint in &config.endpoints {
        let Ok(mut client) = connect(
            &[endpoint],
            config.options.clone(),
            config.credentials.clone(),
        )
        .await
        else {
            continue;
        };
        let Ok(status) = client.maintenance.status(StatusRequest {}).await else {
            continue;
        };
        let status = status.into_inner();
        let member = status.header.map(|h| h.member_id).unwrap_or(0);
        if status.leader != 0 && status.leader == member {
            return Ok(endpoint.clone());
        }
    }
    Err(BenchError::NoLeader(config.endpoints.clone()))
}

/// The clients of a run, each with the runtime its connection lives on.
///
/// A tonic connection is driven by tasks on the runtime it was opened on. On one multi-thread
/// runtime, every request then crosses threads between the client's task and its connection's
/// tasks, and each request costs its own `writev`; the load generator shares the cores with
/// the servers it measures, so that cost lowers what it measures. Instead, connections are
/// spread over one single-threaded runtime per core ([`shards`]), and each client runs on the
/// runtime of its connection: a request and its connection meet on one thread, and requests
/// made in the same turn go out in one write.
pub struct Clients {
    clients: Vec<Client>,
    runtimes: Vec<tokio::runtime::Handle>,
}

impl std::ops::Deref for Clients {
    type Target = Vec<Client>;
    fn deref(&self) -> &Vec<Client> {
        &self.clients
    }
}

impl std::ops::DerefMut for Clients {
    fn deref_mut(&mut self) -> &mut Vec<Client> {
        &mut self.clients
    }
}

/// One single-threaded runtime per core, started on first use and kept for the life of the
/// process.
fn shards() -> &'static [tokio::runtime::Handle] {
    static SHARDS: std::sync::OnceLock<Vec<tokio::runtime::Handle>> = std::sync::OnceLock::new();
    SHARDS.get_or_init(|| {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..count)
            .filter_map(|i| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                let handle = runtime.handle().clone();
                std::thread::Builder::new()
                    .name(format!("bench-shard-{i}"))
                    .spawn(move || runtime.block_on(std::future::pending::<()>()))
                    .ok()?;
                Some(handle)
            })
            .collect()
    })
}

/// Opens `conns` connections and returns `clients` clients over them. Connection `i` tries
/// the endpoints starting from endpoint `i`, spreading connections over the cluster, and is
/// opened on shard `i % shards` (see [`Clients`]).
pub async fn make_clients(config: &ConnectConfig) -> Result<Clients, BenchError> {
    if config.conns == 0 || config.clients == 0 {
        return Err(BenchError::Usage(
            "--conns and --clients must be positive".into(),
        ));
    }
    let endpoints = if config.target_leader {
        vec![leader_endpoint(config).await?]
    } else {
        config.endpoints.clone()
    };
    let shards = shards();
    let mut conns = Vec::with_capacity(config.conns);
    for i in 0..config.conns {
        let mut rotated = endpoints.clone();
        rotated.rotate_left(i % endpoints.len().max(1));
        let options = config.options.clone();
        let credentials = config.credentials.clone();
        let connect = async move { connect(&rotated, options, credentials).await };
        let (client, runtime) = match shards.get(i % shards.len().max(1)) {
            Some(shard) => {
                let client = shard
                    .spawn(connect)
                    .await
                    .map_err(|e| BenchError::Usage(format!("connection task failed: {e}")))??;
                (client, shard.clone())
            }
            None => (connect.await?, tokio::runtime::Handle::current()),
        };
        conns.push((client, runtime));
    }
    let (clients, runtimes) = (0..config.clients)
        .map(|i| conns[connection_of_client(i, config.conns)].clone())
        .unzip();
    Ok(Clients { clients, runtimes })
}

/// One request of a benchmark.
pub enum Op {
    Put(PutRequest),
    Range(RangeRequest),
    /// The range through etcd 3.7's `KV.RangeStream`, every chunk read (and dropped as read).
    RangeStream(RangeRequest),
    Txn(TxnRequest),
    /// One keep-alive of the client's own lease on a stream opened for it, as etcd's
    /// `KeepAliveOnce`. The lease is granted (TTL 100 s) before the client's first request,
    /// outside the measured time.
    LeaseKeepAliveOnce,
    /// One STM transaction, retried until it commits.
    Stm(crate::stm::StmTxn),
    /// One password check and token.
    Authenticate(etcd_api::etcdserverpb::AuthenticateRequest),
}

/// TTL of the lease each `lease-keepalive` client keeps alive, as etcd's benchmark.
const KEEPALIVE_LEASE_TTL_SECS: i64 = 100;

/// TTL of a client's session lease (`--stm-locker lock-rpc|lock-client`), as etcd's sessions.
const SESSION_TTL_SECS: i64 = 60;

/// State a client keeps between its requests.
#[derive(Default)]
struct ClientState {
    lease_id: Option<i64>,
    /// Keeps the session lease alive while the client runs.
    keep_alive: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ClientState {
    fn drop(&mut self) {
        if let Some(task) = self.keep_alive.take() {
            task.abort();
        }
    }
}

/// Grants a session lease and keeps it alive every third of its TTL, as etcd's sessions.
async fn start_session(client: &mut Client, state: &mut ClientState) -> Result<(), tonic::Status> {
    let grant = LeaseGrantRequest {
        ttl: SESSION_TTL_SECS,
        id: 0,
    };
    let id = client.lease.lease_grant(grant).await?.into_inner().id;
    let (requests, request_rx) = mpsc::channel(1);
    // A first renewal, queued before the stream opens (see `open_keep_alive`).
    let _ = requests.send(LeaseKeepAliveRequest { id }).await;
    let mut responses = open_keep_alive(client, request_rx).await?;
    state.lease_id = Some(id);
    state.keep_alive = Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(SESSION_TTL_SECS as u64 / 3));
        loop {
            tick.tick().await;
            if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
                break;
            }
            if !matches!(responses.message().await, Ok(Some(_))) {
                break;
            }
        }
    }));
    Ok(())
}

/// Work done before the clock starts for `op`.
async fn prepare(
    client: &mut Client,
    state: &mut ClientState,
    op: &Op,
) -> Result<(), tonic::Status> {
    if matches!(op, Op::Stm(txn) if txn.locker.needs_session()) && state.lease_id.is_none() {
        return start_session(client, state).await;
    }
    if matches!(op, Op::LeaseKeepAliveOnce) && state.lease_id.is_none() {
        let grant = LeaseGrantRequest {
            ttl: KEEPALIVE_LEASE_TTL_SECS,
            id: 0,
        };
        state.lease_id = Some(client.lease.lease_grant(grant).await?.into_inner().id);
    }
    Ok(())
}

async fn execute(client: &mut Client, state: &ClientState, op: Op) -> Result<(), tonic::Status> {
    match op {
        Op::Put(r) => client.kv.put(r).await.map(drop),
        Op::Range(r) => client.kv.range(r).await.map(drop),
        Op::RangeStream(r) => {
            let mut chunks = client.kv.range_stream(r).await?.into_inner();
            while chunks.message().await?.is_some() {}
            Ok(())
        }
        Op::Txn(r) => client.kv.txn(r).await.map(drop),
        Op::Authenticate(r) => client.auth.authenticate(r).await.map(drop),
        Op::Stm(txn) => crate::stm::run_locked(client, state.lease_id.unwrap_or(0), &txn).await,
        Op::LeaseKeepAliveOnce => {
            let request = LeaseKeepAliveRequest {
                id: state.lease_id.unwrap_or(0),
            };
            let mut responses = client
                .lease
                .lease_keep_alive(tokio_stream::once(request))
                .await?
                .into_inner();
            match responses.message().await? {
                Some(r) if r.ttl > 0 => Ok(()),
                Some(_) => Err(tonic::Status::not_found(
                    "etcdserver: requested lease not found",
                )),
                None => Err(tonic::Status::unavailable("keep alive stream closed")),
            }
        }
    }
}

/// Spaces requests `1/rate` apart across all clients; no limit when the rate is 0.
pub struct Limiter {
    interval: Option<Duration>,
    next: std::sync::Mutex<Instant>,
}

impl Limiter {
    pub fn new(rate_per_sec: u64) -> Limiter {
        Limiter {
            interval: (rate_per_sec > 0)
                .then(|| Duration::from_nanos(1_000_000_000 / rate_per_sec)),
            next: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Reserves the next slot and returns when it is due. The lock is released before waiting.
    pub fn reserve(&self, now: Instant) -> Option<Instant> {
        let interval = self.interval?;
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (*next).max(now);
        *next = slot + interval;
        Some(slot)
    }

    pub async fn wait(&self) {
        if let Some(slot) = self.reserve(Instant::now()) {
            tokio::time::sleep_until(slot.into()).await;
        }
    }
}

/// Stops drawing if the run ends early (an error) without `finish`.
impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A progress bar on stdout, drawn only when stdout is a terminal.
pub struct Progress {
    done: Arc<AtomicUsize>,
    task: Option<tokio::task::JoinHandle<()>>,
    total: usize,
}

const PROGRESS_WIDTH: usize = 50;

fn progress_line(done: usize, total: usize) -> String {
    let filled = (done * PROGRESS_WIDTH)
        .checked_div(total)
        .unwrap_or(PROGRESS_WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "\r {done} / {total} [{}{}] {percent}%",
        "=".repeat(filled),
        " ".repeat(PROGRESS_WIDTH - filled.min(PROGRESS_WIDTH))
    )
}

impl Progress {
    pub fn start(total: usize) -> Progress {
        let done = Arc::new(AtomicUsize::new(0));
        let task = std::io::stdout().is_terminal().then(|| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    let mut out = std::io::stdout().lock();
                    let _ = write!(
                        out,
                        "{}",
                        progress_line(done.load(Ordering::Relaxed), total)
                    );
                    let _ = out.flush();
                }
            })
        });
        Progress { done, task, total }
    }

    /// Counts `n` more items done.
    pub fn add(&self, n: usize) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn finish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            println!(
                "{}",
                progress_line(self.done.load(Ordering::Relaxed), self.total)
            );
        }
    }
}

/// Runs `total` requests made by `make_op` over `clients`, at most `rate` per second, and
/// returns the statistics.
pub async fn run(
    clients: Clients,
    total: usize,
    rate: u64,
    mut make_op: impl FnMut(usize) -> Op + Send + 'static,
) -> Stats {
    let (samples, elapsed) = run_tagged(clients, total, rate, move |i| (make_op(i), 0)).await;
    Stats::new(&samples, elapsed)
}

/// As [`run`], for requests tagged by `make_op` (e.g. reads and writes), returning every
/// sample with its tag and the run's duration.
pub async fn run_tagged(
    clients: Clients,
    total: usize,
    rate: u64,
    make_op: impl FnMut(usize) -> (Op, u8) + Send + 'static,
) -> (Vec<Sample>, Duration) {
    // Workers take the next request under a short synchronous lock: no producer task and no
    // channel between them, so a request costs no extra task wake-up.
    let next_op = Arc::new(std::sync::Mutex::new((0usize, make_op)));
    let limiter = Arc::new(Limiter::new(rate));
    let progress = Progress::start(total);
    let started = Instant::now();
    let Clients { clients, runtimes } = clients;
    let mut workers = Vec::with_capacity(clients.len());
    for (i, mut client) in clients.into_iter().enumerate() {
        // A client pushed through `DerefMut` has no runtime of its own: it runs on ours.
        let runtime = runtimes
            .get(i)
            .cloned()
            .unwrap_or_else(tokio::runtime::Handle::current);
        let next_op = next_op.clone();
        let limiter = limiter.clone();
        let done = progress.done.clone();
        workers.push(runtime.spawn(async move {
            let mut samples = Vec::new();
            let mut state = ClientState::default();
            loop {
                let next = {
                    let mut guard = next_op.lock().unwrap_or_else(|e| e.into_inner());
                    let (issued, make_op) = &mut *guard;
                    if *issued >= total {
                        None
                    } else {
                        *issued += 1;
                        Some(make_op(*issued - 1))
                    }
                };
                let Some((op, tag)) = next else { break };
                limiter.wait().await;
                let start_unix_secs = unix_secs();
                let result = match prepare(&mut client, &mut state, &op).await {
                    Ok(()) => {
                        let start = Instant::now();
                        let result = execute(&mut client, &state, op).await;
                        (start.elapsed(), result)
                    }
                    Err(e) => (Duration::ZERO, Err(e)),
                };
                samples.push(Sample {
                    latency: result.0,
                    error: result.1.err().map(|e| e.message().to_string()),
                    tag,
                    start_unix_secs,
                });
                done.fetch_add(1, Ordering::Relaxed);
            }
            samples
        }));
    }
    let mut samples = Vec::with_capacity(total);
    for worker in workers {
        if let Ok(s) = worker.await {
            samples.extend(s);
        }
    }
    let elapsed = started.elapsed();
    progress.finish();
    (samples, elapsed)
}

/// The current Unix time in whole seconds, for `--sample`.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Every `interval`, compacts to the current revision minus `index_delta`, as etcd's
/// `--compact-interval` does. Returns the task so the caller can stop it.
pub fn spawn_compactor(
    mut client: Client,
    interval: Duration,
    index_delta: i64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let range = RangeRequest {
                key: b"foo".to_vec(),
                ..Default::default()
            };
            let revision = match client.kv.range(range).await {
                Ok(r) => r.into_inner().header.map(|h| h.revision).unwrap_or(0),
                Err(e) => {
                    eprintln!("compact: cannot read the current revision: {}", e.message());
                    continue;
                }
            };
            let compact = CompactionRequest {
                revision: (revision - index_delta).max(0),
                physical: false,
            };
            if compact.revision == 0 {
                continue;
            }
            if let Err(e) = client.kv.compact(compact).await {
                eprintln!("compact: {}", e.message());
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_round_robin_over_connections() {
        let assignment: Vec<usize> = (0..5).map(|c| connection_of_client(c, 2)).collect();
        assert_eq!(assignment, vec![0, 1, 0, 1, 0]);
        assert_eq!(connection_of_client(3, 1), 0);
    }

    #[test]
    fn endpoints_get_a_scheme() {
        let given = ["127.0.0.1:2379".into(), " https://a:1".into(), "".into()];
        let e = normalize_endpoints(&given, false);
        assert_eq!(e, vec!["http://127.0.0.1:2379", "https://a:1"]);
        assert_eq!(
            normalize_endpoints(&given[..1], true),
            vec!["https://127.0.0.1:2379"]
        );
    }

    #[test]
    fn limiter_spaces_requests() {
        let limiter = Limiter::new(10);
        let now = Instant::now();
        let a = limiter.reserve(now).unwrap();
        let b = limiter.reserve(now).unwrap();
        let c = limiter.reserve(now).unwrap();
        assert_eq!(b - a, Duration::from_millis(100));
        assert_eq!(c - b, Duration::from_millis(100));
        assert!(Limiter::new(0).reserve(now).is_none());
        // Beyond a billion per second the spacing is zero, not a division by zero.
        assert!(Limiter::new(u64::MAX).reserve(now).is_some());
    }

    #[test]
    fn progress_line_fills() {
        assert!(progress_line(5, 10).contains("5 / 10 ["));
        assert!(progress_line(5, 10).ends_with("] 50%"));
        assert!(progress_line(0, 0).ends_with("] 100%"));
    }
}
